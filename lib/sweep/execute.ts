/**
 * Runs one run of a sweep in this process: takes its lock, trains it through a resumable run
 * (checkpoints in its folder, so that a killed run resumes where its last checkpoint was and ends
 * with the numbers of an uninterrupted one), writes its rows and result, and records its status.
 * Both engines end here: the local engine's worker processes and Slurm's array tasks run
 * `lib/sweep/worker.ts`, which calls {@link executeRun}.
 *
 * @module
 */
import { hostname } from "node:os";
import { join } from "node:path";
import type { ImageDataset } from "../../datasets/mod.ts";
import { backendInfo, setup } from "../backend.ts";
import { resumable } from "../checkpoint/resumable.ts";
import { type ExperimentResult, runExperiment } from "../repro/run.ts";
import type { RunConfig } from "./spec.ts";
import {
  acquireLock,
  readJSON,
  readStatus,
  releaseLock,
  runDir,
  type RunStatus,
  type StoredResult,
  writeJSON,
  writeStatus,
} from "./store.ts";
import { writeFileAtomic } from "../checkpoint/files.ts";

/** Options of {@link executeRun}. */
export interface ExecuteOptions {
  /** The datasets folder (else `PERENNIAL_DATA`, the cache, or a verified download). */
  dataDir?: string;
  /** Use these images instead of the benchmark's dataset (tests). */
  data?: ImageDataset;
  /** Checkpoint inside experiences every N epochs (else after each call). */
  everyEpochs?: number;
  /** Progress of the run (see `runProgress`). @default "off" */
  progress?: "auto" | "terminal" | "jupyter" | "lines" | "off";
  /** Where progress goes. @default stderr */
  write?: (text: string) => void;
}

/** What became of a run {@link executeRun} was asked to do. */
export type RunOutcome =
  | { state: "done"; result: StoredResult; resumed: boolean }
  | { state: "skipped"; reason: "done" }
  | { state: "busy"; holder: string }
  | { state: "failed"; error: string };

function errorText(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/**
 * Runs run `id` of the sweep in `out` (its `config.json`), unless it is done (skipped) or another
 * live process holds it (busy). A failure is recorded in its `status.json` with the error, and
 * returned, not thrown: the engines report it and go on with the other runs.
 */
export async function executeRun(
  out: string,
  id: string,
  opts: ExecuteOptions = {},
): Promise<RunOutcome> {
  const dir = runDir(out, id);
  const config = await readJSON<RunConfig>(join(dir, "config.json"));
  if (!config) {
    throw new Error(`${dir}/config.json is missing: is ${out} a sweep folder with run ${id}?`);
  }
  const before = await readStatus(out, id);
  if (before?.state === "done") return { state: "skipped", reason: "done" };
  const holder = await acquireLock(out, id);
  if (holder) return { state: "busy", holder: `pid ${holder.pid} on ${holder.host}` };
  const status: RunStatus = {
    state: "running",
    attempts: (before?.attempts ?? 0) + 1,
    completions: before?.completions ?? 0,
    host: hostname(),
    pid: Deno.pid,
    startedAt: new Date().toISOString(),
  };
  try {
    // Read again under the lock: another process may have finished it meanwhile.
    const now = await readStatus(out, id);
    if (now?.state === "done") return { state: "skipped", reason: "done" };
    await writeStatus(out, id, status);
    // The backend, and the global generator seeded as `setup` does, so that a run gives the
    // same numbers in a fresh worker process and after other runs in the same process.
    await setup({ backend: config.backend, seed: config.seed });
    let resumed = false;
    const run: ExperimentResult = await runExperiment(config.experiment, {
      seed: config.seed,
      dataDir: opts.dataDir,
      data: opts.data,
      trainPerExperience: config.trainPerExperience,
      testPerExperience: config.testPerExperience,
      progress: opts.progress ?? "off",
      write: opts.write,
      runner: async (strategy) => {
        const r = await resumable(strategy, { dir, everyEpochs: opts.everyEpochs, keep: 1 });
        resumed = r.resumed !== undefined;
        return r;
      },
    });
    const { rows, ...rest } = run;
    const result: StoredResult = {
      ...rest,
      runId: id,
      backend: backendInfo()?.name ?? run.backend,
      trainSeconds: run.experiences.reduce((s, e) => s + e.trainSeconds, 0),
    };
    const lines = rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
    await writeFileAtomic(join(dir, "rows.jsonl"), [new TextEncoder().encode(lines)]);
    await writeJSON(join(dir, "result.json"), result);
    await writeStatus(out, id, {
      ...status,
      state: "done",
      completions: status.completions + 1,
      resumed,
      finishedAt: new Date().toISOString(),
    });
    return { state: "done", result, resumed };
  } catch (e) {
    const error = errorText(e);
    await writeStatus(out, id, {
      ...status,
      state: "failed",
      error,
      finishedAt: new Date().toISOString(),
    }).catch(() => {});
    return { state: "failed", error };
  } finally {
    await releaseLock(out, id);
  }
}
