/**
 * A sweep's results on disk: one folder per sweep, one folder per run inside it.
 *
 * ```text
 * <out>/sweep.json              the spec and the index of its runs (id, label, strategy, seed, setting)
 * <out>/runs/<id>/config.json   the run's resolved configuration (what its id hashes)
 * <out>/runs/<id>/status.json   pending | running | done | failed, attempts, error, host, times
 * <out>/runs/<id>/lock          held by the process running it (pid and host)
 * <out>/runs/<id>/checkpoint-*.safetensors   its checkpoints (the last one stays)
 * <out>/runs/<id>/rows.jsonl    its eval metric rows, one JSON object a line
 * <out>/runs/<id>/result.json   its result: accuracy matrix, stream accuracy, times, backend
 * <out>/runs/<id>/log.txt       what its worker printed (local and Slurm engines)
 * ```
 *
 * Every file is written atomically (a temp file renamed over it), so a sweep killed at any moment
 * leaves each file as it was or complete. {@link loadSweep} reads it all back as one row per run.
 *
 * @module
 */
import { hostname } from "node:os";
import { join } from "node:path";
import { writeFileAtomic } from "../checkpoint/files.ts";
import type { MetricRow } from "../data/rows.ts";
import type { ParamValue, StrategyKey } from "../repro/configs.ts";
import type { ExperimentResult } from "../repro/run.ts";
import { canonicalJSON, type RunConfig, type SweepRunPlan, type SweepSpec } from "./spec.ts";

/** Format tag of `sweep.json`. */
export const SWEEP_FORMAT = "perennial-sweep/1";

/** What `sweep.json` holds. */
export interface SweepIndex {
  format: typeof SWEEP_FORMAT;
  /** The sweep's name. */
  name: string;
  /** What expanded into the runs: the `SweepSpec`, or another plain-data description. */
  spec: SweepSpec | Record<string, unknown>;
  /** The runs, in expansion order. */
  runs: {
    id: string;
    label: string;
    strategy: StrategyKey;
    seed: number;
    setting: Record<string, ParamValue>;
  }[];
}

/** Where a run stands. */
export type RunState = "pending" | "running" | "done" | "failed";

/** What `status.json` holds. */
export interface RunStatus {
  state: RunState;
  /** Times a process started the run (a resumed run counts again). */
  attempts: number;
  /** Times it finished (1 for a done run: a run is never finished twice). */
  completions: number;
  /** The last error of a failed run. */
  error?: string;
  /** Host and pid of the process of the last attempt. */
  host?: string;
  pid?: number;
  /** When the last attempt started and ended (ISO 8601). */
  startedAt?: string;
  finishedAt?: string;
  /** Whether the last attempt resumed from a checkpoint. */
  resumed?: boolean;
}

/** A run's result as `result.json` holds it (its rows are in `rows.jsonl`). */
export type StoredResult = Omit<ExperimentResult, "rows"> & {
  /** The run's id. */
  runId: string;
  /** Seconds spent training (the sum over experiences). */
  trainSeconds: number;
};

/** The folder of run `id`. */
export function runDir(out: string, id: string): string {
  return join(out, "runs", id);
}

const encoder = new TextEncoder();

/** Writes `value` as JSON (2-space indented) to `path`, atomically. */
export async function writeJSON(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, [encoder.encode(JSON.stringify(value, null, 2) + "\n")]);
}

/** Reads a JSON file, or undefined when it does not exist. */
export async function readJSON<T>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(
      `${path} is not valid JSON (${(e as Error).message}): delete it to redo the run`,
    );
  }
}

/** The sweep's index, or undefined when `out` holds none. */
export function readIndex(out: string): Promise<SweepIndex | undefined> {
  return readJSON<SweepIndex>(join(out, "sweep.json"));
}

/**
 * Writes the sweep's index and each run's `config.json` (for runs that have none). An existing
 * index is replaced only with `resume`; without it, a folder that already holds a sweep is an
 * error naming what it holds, so that nothing written before is overwritten by mistake.
 */
export async function prepareSweep(
  out: string,
  spec: SweepSpec | (Record<string, unknown> & { name: string }),
  runs: readonly SweepRunPlan[],
  opts: { resume?: boolean } = {},
): Promise<void> {
  const existing = await readIndex(out);
  if (existing && !opts.resume) {
    const states = await Promise.all(existing.runs.map((r) => readStatus(out, r.id)));
    const done = states.filter((s) => s?.state === "done").length;
    const same = canonicalJSON(existing.spec) === canonicalJSON(spec);
    throw new Error(
      `${out} already holds the sweep "${existing.name}" (${done} of ` +
        `${existing.runs.length} runs done${same ? "" : ", another spec"}): pass resume ` +
        `(--resume) to go on with it (done runs are kept, killed ones resume from their ` +
        `checkpoints), or choose another output folder`,
    );
  }
  if (existing && existing.format !== SWEEP_FORMAT) {
    throw new Error(`${out}/sweep.json is not a ${SWEEP_FORMAT} index`);
  }
  await Deno.mkdir(join(out, "runs"), { recursive: true });
  for (const r of runs) {
    const dir = runDir(out, r.id);
    await Deno.mkdir(dir, { recursive: true });
    const old = await readJSON<RunConfig>(join(dir, "config.json"));
    if (old && canonicalJSON(old) !== canonicalJSON(r.config)) {
      throw new Error(
        `${dir}/config.json holds another configuration than its id says: the folder was ` +
          `edited by hand; delete it to redo run ${r.label} (seed ${r.seed})`,
      );
    }
    if (!old) await writeJSON(join(dir, "config.json"), r.config);
  }
  const index: SweepIndex = {
    format: SWEEP_FORMAT,
    name: spec.name,
    spec,
    runs: runs.map((r) => ({
      id: r.id,
      label: r.label,
      strategy: r.strategy,
      seed: r.seed,
      setting: r.setting,
    })),
  };
  await writeJSON(join(out, "sweep.json"), index);
}

/** A run's status, or undefined when it never started. */
export function readStatus(out: string, id: string): Promise<RunStatus | undefined> {
  return readJSON<RunStatus>(join(runDir(out, id), "status.json"));
}

/** Writes a run's status. */
export function writeStatus(out: string, id: string, status: RunStatus): Promise<void> {
  return writeJSON(join(runDir(out, id), "status.json"), status);
}

// ---------------------------------------------------------------------------- locks ----

/** Who holds a run's lock. */
export interface LockOwner {
  pid: number;
  host: string;
  since: string;
}

/** True when process `pid` exists on this machine. */
export function processAlive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch (e) {
    // EPERM: it exists but is another user's.
    return e instanceof Deno.errors.PermissionDenied;
  }
}

/**
 * Takes run `id`'s lock for this process: creates `lock` exclusively. A lock left by a process
 * that no longer exists on this host (killed) is taken over; a lock held by a live process, or
 * by another host (a cluster node: its process cannot be checked from here), is not: the
 * holder is returned instead.
 */
export async function acquireLock(out: string, id: string): Promise<LockOwner | undefined> {
  const path = join(runDir(out, id), "lock");
  const me: LockOwner = { pid: Deno.pid, host: hostname(), since: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const f = await Deno.open(path, { write: true, createNew: true });
      try {
        await f.write(encoder.encode(JSON.stringify(me)));
      } finally {
        f.close();
      }
      return undefined;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    const owner = await readJSON<LockOwner>(path).catch(() => undefined);
    if (owner && (owner.host !== me.host || processAlive(owner.pid))) return owner;
    // Stale (its process is gone) or unreadable (a crash between create and write): take it.
    await Deno.remove(path).catch(() => {});
  }
  throw new Error(`Cannot take the lock ${path}: it keeps reappearing`);
}

/** Releases run `id`'s lock if this process holds it. */
export async function releaseLock(out: string, id: string): Promise<void> {
  const path = join(runDir(out, id), "lock");
  const owner = await readJSON<LockOwner>(path).catch(() => undefined);
  if (owner && owner.pid === Deno.pid && owner.host === hostname()) {
    await Deno.remove(path).catch(() => {});
  }
}

/** The holder of run `id`'s lock when it is alive (or on another host), else undefined. */
export async function lockHolder(out: string, id: string): Promise<LockOwner | undefined> {
  const owner = await readJSON<LockOwner>(join(runDir(out, id), "lock")).catch(() => undefined);
  if (!owner) return undefined;
  return owner.host !== hostname() || processAlive(owner.pid) ? owner : undefined;
}

// -------------------------------------------------------------------------- reading ----

/** A run of a sweep as {@link loadSweep} returns it: its plan, status and (when done) result. */
export interface SweepRun {
  id: string;
  /** The strategy's label with its setting (`Replay memSize=200`): the run's name in figures. */
  name: string;
  label: string;
  strategy: StrategyKey;
  seed: number;
  /** The grid/list values of this run, by path. */
  setting: Record<string, ParamValue>;
  state: RunState;
  attempts: number;
  error?: string;
  /** Final accuracy on the whole test stream (NaN until done). */
  accuracy: number;
  /** Accuracy on the whole test stream after each experience. */
  streamAccuracy: number[];
  /** `matrix[i][j]`: accuracy on test experience j after training experience i. */
  matrix: number[][];
  /** Seconds spent training, and the whole run's seconds (NaN until done). */
  trainSeconds: number;
  seconds: number;
  backend?: string;
  /** The eval metric rows (empty until done). */
  rows: MetricRow[];
}

/** Reads a run's `rows.jsonl`. */
export async function readRows(path: string): Promise<MetricRow[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as MetricRow);
}

/**
 * Reads a sweep folder back: one {@link SweepRun} per run of its index, in order, with its
 * state, result and metric rows. The rows are what `summaryTable(runs, { by })` and
 * `compareRuns(runs, { by })` (lib/notebook) aggregate over seeds.
 *
 * @example
 * ```ts ignore
 * import { loadSweep } from "./store.ts";
 * const runs = await loadSweep("runs/sweeps/naive-vs-replay");
 * runs.filter((r) => r.state === "done").map((r) => [r.label, r.seed, r.accuracy]);
 * ```
 */
export async function loadSweep(out: string): Promise<SweepRun[]> {
  const index = await readIndex(out);
  if (!index) {
    throw new Error(`${out} holds no sweep (no sweep.json): run one with sweep(spec, { out })`);
  }
  return await Promise.all(index.runs.map(async (r) => {
    const dir = runDir(out, r.id);
    const status = await readStatus(out, r.id);
    const result = status?.state === "done"
      ? await readJSON<StoredResult>(join(dir, "result.json"))
      : undefined;
    return {
      id: r.id,
      name: r.label,
      label: r.label,
      strategy: r.strategy,
      seed: r.seed,
      setting: r.setting,
      state: result ? "done" : status?.state === "done" ? "failed" : status?.state ?? "pending",
      attempts: status?.attempts ?? 0,
      ...(status?.error ? { error: status.error } : {}),
      accuracy: result?.accuracy ?? NaN,
      streamAccuracy: result?.streamAccuracy ?? [],
      matrix: result?.matrix ?? [],
      trainSeconds: result?.trainSeconds ?? NaN,
      seconds: result?.seconds ?? NaN,
      ...(result ? { backend: result.backend } : {}),
      rows: result ? await readRows(join(dir, "rows.jsonl")) : [],
    };
  }));
}
