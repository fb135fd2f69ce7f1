/**
 * A resumable run: the user's loop of `train` and `eval` calls, checkpointed to files in a
 * folder, so that a run killed at any moment (even `kill -9`) and started again with the same
 * command ends with the numbers of a run never interrupted.
 *
 * The runner counts the calls. Each checkpoint file holds the strategy's state and, in its
 * `perennial.run` metadata, the record of the calls completed (their experiences, results and
 * metric-row ranges) and, for one taken inside a training call, which call it is. On start the
 * latest valid file is restored; the calls it had completed are skipped (they return their
 * recorded results), and a training call it was inside of resumes from the checkpoint with
 * `train(exp, { resume })`.
 *
 * @module
 */
import { join } from "node:path";
import type { Experience } from "../data/experience.ts";
import type {
  CheckpointPoint,
  EvalResult,
  RestoreOptions,
  Strategy,
  StrategyState,
  TrainOptions,
  TrainResult,
} from "../strategy/template.ts";
import { type CheckpointFile, readCheckpoint, saveCheckpoint } from "./files.ts";

/** Name of the metadata entry holding a run's record of calls. */
export const RUN_METADATA = "perennial.run";
const FILE = /^checkpoint-(\d+)\.safetensors$/;
/** Temp files a write interrupted by a crash leaves behind (see `writeFileAtomic`). */
const TEMP = /^\.checkpoint-\d+\.safetensors\.[0-9a-f]+\.tmp$/;

/** The file name of the `seq`-th checkpoint of a run folder. */
export function checkpointFileName(seq: number): string {
  return `checkpoint-${String(seq).padStart(6, "0")}.safetensors`;
}

/** An experience as the run's record names it. */
interface ExperienceRef {
  stream: string;
  id: number;
}

/** A completed call, as recorded in each later checkpoint. */
type CallRecord =
  | {
    kind: "train";
    experiences: ExperienceRef[];
    /** The call's metric rows: `strategy.rows.slice(from, to)`. */
    rows: [number, number];
    result: Omit<TrainResult, "rows">;
  }
  | {
    kind: "eval";
    experiences: ExperienceRef[];
    rows: [number, number];
    result: Omit<EvalResult, "rows">;
  };

/** The `perennial.run` metadata of a checkpoint file. */
interface RunRecord {
  version: 1;
  /** The calls completed before the checkpoint, in order. */
  calls: CallRecord[];
  /** Set on a checkpoint taken inside training call number `calls.length`. */
  current?: {
    experiences: ExperienceRef[];
    /** Index, in the call's experiences, of the one the checkpoint was taken in. */
    experienceIndex: number;
    /** `strategy.rows.length` when the call started. */
    rowsFrom: number;
  };
}

/** Options of {@link resumable}. */
export interface ResumableOptions {
  /** The run's folder (created if absent). One run per folder. */
  dir: string;
  /**
   * Also checkpoint inside an experience, after every N of its epochs, so that a killed run
   * loses at most N epochs. Default: only at the end of each call.
   */
  everyEpochs?: number;
  /** Checkpoint files kept: the newest `keep` (≥ 1). @default 2 */
  keep?: number;
  /** Passed to `strategy.restore` (the training stream, for `cumulative`). */
  restore?: RestoreOptions;
  /** Called after each checkpoint file is written (e.g. to print progress). */
  onCheckpoint?: (saved: SavedCheckpoint) => void;
}

/** A checkpoint file the run wrote (see {@link ResumableOptions.onCheckpoint}). */
export interface SavedCheckpoint {
  path: string;
  bytes: number;
  /** Index of the call (0-based, counting train and eval calls) it was taken in or after. */
  call: number;
  /** After a training call, after an evaluation call, or inside a training call. */
  point: "train" | "eval" | "epochs";
  /** Where in the experience, for `point: "epochs"`. */
  at?: CheckpointPoint;
}

/** What the run started from (see {@link ResumableRun.resumed}). */
export interface ResumeInfo {
  /** The checkpoint file restored. */
  path: string;
  /** Calls the checkpointed run had completed: the first this many calls are skipped. */
  callsDone: number;
  /** True when the checkpoint was taken inside the next training call (it resumes there). */
  midCall: boolean;
}

/** A file of the run folder that was not used, and why. */
export interface RejectedCheckpoint {
  path: string;
  reason: string;
}

/** What {@link ResumableRun.train} returns. */
export interface RunTrainResult extends TrainResult {
  /**
   * True for a call the checkpointed run had completed: nothing was trained; `epochs`,
   * `samples` and `seconds` are those recorded when it ran, `rows` its metric rows.
   */
  skipped: boolean;
  /**
   * True for a call resumed from a checkpoint taken inside it: `epochs`, `samples` and
   * `seconds` count only what this process trained; `rows` holds every row of the call.
   */
  resumed: boolean;
}

/**
 * What {@link ResumableRun.eval} returns. A skipped call (`skipped: true`) evaluated nothing and
 * returns the result recorded when it ran, with its metric rows.
 */
export interface RunEvalResult extends EvalResult {
  skipped: boolean;
}

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(`${name} must be an integer ≥ 1, got ${v}`);
  }
}

function toList(arg: Experience | Iterable<Experience>, what: string): Experience[] {
  if (arg && typeof (arg as Experience).dataset === "object" && "id" in (arg as Experience)) {
    return [arg as Experience];
  }
  if (arg && typeof (arg as Iterable<Experience>)[Symbol.iterator] === "function") {
    return [...(arg as Iterable<Experience>)];
  }
  throw new TypeError(
    `${what} expects an experience or a stream of experiences, got ${String(arg)}`,
  );
}

const ref = (e: Experience): ExperienceRef => ({ stream: e.stream, id: e.id });

function describeCall(kind: string, refs: readonly ExperienceRef[]): string {
  const streams = [...new Set(refs.map((r) => r.stream))].map((s) => `"${s}"`).join(", ");
  return `${kind}(experience${refs.length === 1 ? "" : "s"} ${
    refs.map((r) => r.id).join(", ")
  } of ${streams})`;
}

function sameRefs(a: readonly ExperienceRef[], b: readonly ExperienceRef[]): boolean {
  return a.length === b.length && a.every((r, i) => r.stream === b[i].stream && r.id === b[i].id);
}

/** The checkpoint files of a run folder, newest first, and the highest sequence number seen. */
async function listFiles(dir: string): Promise<{ files: string[]; maxSeq: number }> {
  const found: { name: string; seq: number }[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const m = entry.isFile ? FILE.exec(entry.name) : null;
      if (m) found.push({ name: entry.name, seq: Number(m[1]) });
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { files: [], maxSeq: 0 };
    throw e;
  }
  found.sort((a, b) => b.seq - a.seq);
  return { files: found.map((f) => join(dir, f.name)), maxSeq: found[0]?.seq ?? 0 };
}

function runRecord(file: CheckpointFile): RunRecord {
  const text = file.metadata[RUN_METADATA];
  if (text === undefined) {
    throw new Error(`it has no ${RUN_METADATA} metadata (not written by a resumable run)`);
  }
  const r = JSON.parse(text) as RunRecord;
  if (!r || r.version !== 1 || !Array.isArray(r.calls)) {
    throw new Error(`its ${RUN_METADATA} metadata is not a version-1 run record`);
  }
  return r;
}

/**
 * The newest valid checkpoint of a run folder (files `checkpoint-<seq>.safetensors`, tried from
 * the highest `seq` down), or undefined when there is none; `rejected` lists the newer files that
 * could not be used (truncated, damaged, not from a resumable run) and why.
 */
export async function latestCheckpoint(
  dir: string,
): Promise<{ latest?: { path: string; file: CheckpointFile }; rejected: RejectedCheckpoint[] }> {
  const { files } = await listFiles(dir);
  const rejected: RejectedCheckpoint[] = [];
  for (const path of files) {
    try {
      const file = await readCheckpoint(path);
      runRecord(file);
      return { latest: { path, file }, rejected };
    } catch (e) {
      rejected.push({ path, reason: (e as Error).message });
    }
  }
  return { rejected };
}

/**
 * A strategy's run of `train` and `eval` calls, checkpointed to a folder so that it can be killed
 * and started again with the same command. Build it with {@link resumable}.
 */
export class ResumableRun {
  /** The strategy trained (restored from the latest checkpoint, if any). */
  readonly strategy: Strategy;
  /** The run folder. */
  readonly dir: string;
  /** The checkpoint the run resumed from, or undefined for a fresh start. */
  readonly resumed: ResumeInfo | undefined;
  /** Newer files of the folder that were skipped on start (damaged or partial), and why. */
  readonly rejected: readonly RejectedCheckpoint[];
  readonly #opts: ResumableOptions;
  readonly #keep: number;
  readonly #record: RunRecord;
  /** The state of a checkpoint taken inside the next training call, until that call resumes. */
  #pending: StrategyState | undefined;
  #call = 0;
  #seq: number;
  #busy = false;

  private constructor(
    strategy: Strategy,
    opts: ResumableOptions,
    found: { path: string; file: CheckpointFile; record: RunRecord } | undefined,
    rejected: RejectedCheckpoint[],
    maxSeq: number,
  ) {
    this.strategy = strategy;
    this.dir = opts.dir;
    this.#opts = opts;
    this.#keep = opts.keep ?? 2;
    this.#seq = maxSeq;
    this.rejected = rejected;
    this.#record = found?.record ?? { version: 1, calls: [] };
    this.#pending = found?.record.current ? found.file.state : undefined;
    this.resumed = found && {
      path: found.path,
      callsDone: found.record.calls.length,
      midCall: found.record.current !== undefined,
    };
  }

  /** Opens (or creates) the run folder and restores its latest valid checkpoint. */
  static async open(strategy: Strategy, opts: ResumableOptions): Promise<ResumableRun> {
    if (!strategy || typeof strategy.checkpoint !== "function") {
      throw new TypeError(`resumable expects a strategy, got ${String(strategy)}`);
    }
    if (!opts || typeof opts.dir !== "string" || opts.dir === "") {
      throw new TypeError(`resumable needs a folder for its checkpoints: pass { dir: "runs/x" }`);
    }
    if (opts.everyEpochs !== undefined) positiveInt("everyEpochs", opts.everyEpochs);
    if (opts.keep !== undefined) positiveInt("keep", opts.keep);
    await Deno.mkdir(opts.dir, { recursive: true });
    // What a write interrupted by a crash left: never a checkpoint, only in the way.
    for await (const entry of Deno.readDir(opts.dir)) {
      if (entry.isFile && TEMP.test(entry.name)) {
        await Deno.remove(join(opts.dir, entry.name)).catch(() => {});
      }
    }
    const { maxSeq } = await listFiles(opts.dir);
    const { latest, rejected } = await latestCheckpoint(opts.dir);
    const found = latest && { ...latest, record: runRecord(latest.file) };
    if (found) await strategy.restore(found.file.state, opts.restore);
    return new ResumableRun(strategy, opts, found, rejected, maxSeq);
  }

  /** Calls made through this run so far (skipped ones included). */
  get calls(): number {
    return this.#call;
  }

  #begin(what: string): void {
    if (this.#busy) {
      throw new Error(
        `${what} was called while another call of this run is in progress: await each call`,
      );
    }
    this.#busy = true;
  }

  /** The record of call `c` when the checkpointed run completed it, checked against this call. */
  #recorded(c: number, kind: "train" | "eval", refs: ExperienceRef[]): CallRecord | undefined {
    const rec = this.#record.calls[c];
    const cur = this.#record.current;
    const had = rec
      ? { kind: rec.kind, experiences: rec.experiences }
      : cur && c === this.#record.calls.length
      ? { kind: "train", experiences: cur.experiences }
      : undefined;
    if (had && (had.kind !== kind || !sameRefs(had.experiences, refs))) {
      throw new RangeError(
        `Call ${c} of this run is ${describeCall(kind, refs)}, but the run checkpointed in ` +
          `${this.dir} made ${describeCall(had.kind, had.experiences)} as call ${c}: run the ` +
          `same sequence of calls as the checkpointed run, or give a new dir to start afresh`,
      );
    }
    return rec;
  }

  /**
   * Trains as `strategy.train` does, checkpointing inside the call (every `everyEpochs` epochs)
   * and after it. A call the checkpointed run completed is skipped; one it was inside of
   * resumes where the checkpoint was taken (see {@link RunTrainResult}).
   */
  async train(
    experiences: Experience | Iterable<Experience>,
    opts: Pick<TrainOptions, "evalStreams" | "evalBefore"> = {},
  ): Promise<RunTrainResult> {
    this.#begin("run.train");
    try {
      return await this.#train(toList(experiences, "run.train"), opts);
    } finally {
      this.#busy = false;
    }
  }

  async #train(
    list: Experience[],
    opts: Pick<TrainOptions, "evalStreams" | "evalBefore">,
  ): Promise<RunTrainResult> {
    const s = this.strategy, c = this.#call, refs = list.map(ref);
    const rec = this.#recorded(c, "train", refs);
    if (rec?.kind === "train") {
      this.#call++;
      const rows = s.rows.slice(rec.rows[0], rec.rows[1]);
      return { ...rec.result, rows, skipped: true, resumed: false };
    }
    const cur = this.#record.current;
    const resume = cur ? this.#pending : undefined;
    const from = cur?.experienceIndex ?? 0;
    const rowsFrom = cur?.rowsFrom ?? s.rows.length;
    this.#record.current = undefined;
    this.#pending = undefined;
    let k = from;
    const every = this.#opts.everyEpochs;
    // Only inside experiences: an experience's end inside a call of several is not a point
    // the call can resume from (the call's beforeTraining hooks would run again), and the
    // call's end is checkpointed below, with its result.
    const checkpoint = every === undefined ? undefined : {
      everyEpochs: every,
      everyExperience: false,
      save: async (state: StrategyState, at: CheckpointPoint) => {
        const i = list.findIndex((e, j) =>
          j >= k && e.stream === at.stream && e.id === at.experience
        );
        // A strategy that trains other experiences than those given (joint training merges
        // them) is resumed from the call's start unless the experience is the one given.
        if (i < 0) return;
        k = i;
        const current = { experiences: refs, experienceIndex: i, rowsFrom };
        await this.#write(state, { ...this.#record, current }, "epochs", at);
      },
    };
    const result = await s.train(list.slice(from), {
      evalStreams: opts.evalStreams,
      evalBefore: opts.evalBefore,
      resume,
      restore: this.#opts.restore,
      checkpoint,
    });
    const { rows: _rows, ...rest } = result;
    this.#record.calls.push({
      kind: "train",
      experiences: refs,
      rows: [rowsFrom, s.rows.length],
      result: rest,
    });
    this.#call++;
    await this.#write(await s.checkpointAsync(), this.#record, "train");
    return { ...result, rows: s.rows.slice(rowsFrom), skipped: false, resumed: cur !== undefined };
  }

  /**
   * Evaluates as `strategy.eval` does and checkpoints after it, so that an evaluation is never
   * redone nor lost. A call the checkpointed run completed is skipped (see {@link RunEvalResult}).
   */
  async eval(experiences: Experience | Iterable<Experience>): Promise<RunEvalResult> {
    this.#begin("run.eval");
    try {
      const s = this.strategy, c = this.#call, list = toList(experiences, "run.eval");
      const refs = list.map(ref);
      const rec = this.#recorded(c, "eval", refs);
      if (rec?.kind === "eval") {
        this.#call++;
        return { ...rec.result, rows: s.rows.slice(rec.rows[0], rec.rows[1]), skipped: true };
      }
      const rowsFrom = s.rows.length;
      const result = await s.eval(list);
      const { rows: _rows, ...rest } = result;
      this.#record.calls.push({
        kind: "eval",
        experiences: refs,
        rows: [rowsFrom, s.rows.length],
        result: rest,
      });
      this.#call++;
      await this.#write(await s.checkpointAsync(), this.#record, "eval");
      return { ...result, skipped: false };
    } finally {
      this.#busy = false;
    }
  }

  async #write(
    state: StrategyState,
    record: RunRecord,
    point: SavedCheckpoint["point"],
    at?: CheckpointPoint,
  ): Promise<void> {
    const path = join(this.dir, checkpointFileName(++this.#seq));
    const bytes = await saveCheckpoint(state, path, {
      metadata: { [RUN_METADATA]: JSON.stringify(record) },
    });
    // Older files go only once the new one is on disk.
    const { files } = await listFiles(this.dir);
    for (const old of files.slice(this.#keep)) await Deno.remove(old).catch(() => {});
    const call = point === "epochs" ? this.#call : this.#call - 1;
    this.#opts.onCheckpoint?.({ path, bytes, call, point, ...(at ? { at } : {}) });
  }
}

/**
 * Makes a strategy's loop of `train`/`eval` calls resumable: checkpoints go to files in
 * `opts.dir` (`checkpoint-<seq>.safetensors`, the newest `keep` kept) after each call and,
 * with `everyEpochs`, inside experiences. On start the latest valid file is restored (damaged or
 * partial ones are skipped, see {@link ResumableRun.rejected}); the calls it had completed are
 * skipped, returning their recorded results, and a training call it was taken inside of resumes
 * there. The loop must make the same calls in the same order as the checkpointed run (checked).
 *
 * @example
 * ```ts ignore
 * const strategy = replay({ model: mlp(), memSize: 500, epochs: 3, seed: 0 });
 * const run = await resumable(strategy, { dir: "runs/replay", everyEpochs: 1 });
 * for (const exp of bench.train) {
 *   await run.train(exp);
 *   await run.eval(bench.test);
 * }
 * strategy.accuracyMatrix(); // the same after any number of kill -9 and restarts
 * ```
 */
export function resumable(strategy: Strategy, opts: ResumableOptions): Promise<ResumableRun> {
  return ResumableRun.open(strategy, opts);
}
