/**
 * Sweeps: many seeds and settings of a continual-learning experiment, run on every core of this
 * machine or on a Slurm cluster, stored one folder per run, and reported as mean ± std.
 *
 * @example From a notebook cell
 * ```ts ignore
 * import { loadSweep, sweep } from "./mod.ts";
 * import { summaryTable } from "../notebook/tables.ts";
 * const runs = await sweep({
 *   name: "naive-vs-replay",
 *   benchmark: { name: "splitMNIST", experiences: 5 },
 *   model: { hidden: [400, 400], outputs: 10 },
 *   optimizer: { name: "sgd", lr: 0.01, momentum: 0.9 },
 *   epochs: 1, batchSize: 128,
 *   strategies: [{ strategy: "naive" }, { strategy: "replay", params: { memSize: 500 } }],
 *   seeds: [0, 1, 2, 3],
 * }, { out: "runs/sweeps/naive-vs-replay", workers: 2 });
 * summaryTable(runs, { by: ["label"] });
 * ```
 *
 * @module
 */
import { resolve } from "node:path";
import { checkOptions, oneOf } from "../options.ts";
import { type EngineOutcome, type EngineProgress, runInline, runLocal } from "./local.ts";
import { sweepProgress, type SweepProgressMode } from "./progress.ts";
import { runSlurm, type SlurmOptions } from "./slurm.ts";
import { expandSweep, type SweepSpec } from "./spec.ts";
import { loadSweep, prepareSweep, type SweepRun } from "./store.ts";

export { canonicalJSON, expandSweep, runId } from "./spec.ts";
export type { RunConfig, SweepResources, SweepRunPlan, SweepSpec, SweepStrategy } from "./spec.ts";
export { loadSweep, readIndex, runDir } from "./store.ts";
export type { RunState, RunStatus, StoredResult, SweepIndex, SweepRun } from "./store.ts";
export { type ExecuteOptions, executeRun, type RunOutcome } from "./execute.ts";
export { runInline, runLocal, workerCommand } from "./local.ts";
export type { EngineOptions, EngineOutcome, EngineProgress, LocalOptions } from "./local.ts";
export { progressLine, sweepProgress, type SweepProgressMode } from "./progress.ts";
export { runSlurm, type SlurmOptions, type SlurmPlan, slurmScript } from "./slurm.ts";
export { reproRunConfig, reproSeeds, type ReproSeedsOptions, writeSeedsResults } from "./repro.ts";

/** Which engine runs a sweep's runs. */
export type SweepEngine = "local" | "inline" | "slurm";

/** Options of {@link sweep}. */
export interface SweepOptions {
  /** The sweep's folder (created; see `lib/sweep/store.ts` for its layout). */
  out: string;
  /**
   * `"local"`: a pool of worker processes on this machine; `"inline"`: one run after another in
   * this process; `"slurm"`: one job array on a Slurm cluster (the folder must be shared with
   * its nodes). @default "local"
   */
  engine?: SweepEngine;
  /** Local engine: worker processes. @default the number of cores */
  workers?: number;
  /** Local engine: BLAS threads of each worker. @default cores / workers */
  threads?: number;
  /** Go on with the sweep the folder holds (else a folder holding one is an error). @default false */
  resume?: boolean;
  /** Run again the runs that failed before. @default false */
  retryFailed?: boolean;
  /** The datasets folder (else `PERENNIAL_DATA`, the cache, or a verified download). */
  dataDir?: string;
  /** Progress display. @default "auto" */
  progress?: SweepProgressMode;
  /** Slurm engine options (resources override the spec's). */
  slurm?: Omit<SlurmOptions, keyof import("./local.ts").EngineOptions>;
}

/**
 * Runs a sweep: expands `spec` into its runs ({@link expandSweep}), writes the folder's index,
 * runs what is not done yet on the engine, and returns every run with its result
 * ({@link loadSweep}). Runs are identified by the hash of their configuration, so a sweep run
 * again (`resume`) skips the runs it finished and resumes the ones that were killed from their
 * checkpoints, with the numbers of an uninterrupted run. A failed run is reported with its
 * error (in the progress and in its `state` and `error`) and not run again unless
 * `retryFailed`.
 */
export async function sweep(spec: SweepSpec, opts: SweepOptions): Promise<SweepRun[]> {
  checkOptions("sweep options", opts, {
    out: "string",
    engine: oneOf("local", "inline", "slurm"),
    workers: "integer",
    threads: "integer",
    resume: "boolean",
    retryFailed: "boolean",
    dataDir: "string",
    progress: oneOf("auto", "terminal", "jupyter", "lines", "off"),
    slurm: "object",
  });
  if (!opts || typeof opts.out !== "string" || opts.out === "") {
    throw new TypeError("sweep needs { out }: the folder its runs are stored in");
  }
  const out = resolve(opts.out);
  const plans = expandSweep(spec);
  await prepareSweep(out, spec, plans, { resume: opts.resume });
  const onProgress: (p: EngineProgress) => void | Promise<void> = sweepProgress(
    spec.name,
    opts.progress ?? "auto",
  );
  const common = {
    dataDir: opts.dataDir ? resolve(opts.dataDir) : undefined,
    everyEpochs: spec.checkpointEveryEpochs,
    retryFailed: opts.retryFailed,
    onProgress,
  };
  const engine = opts.engine ?? "local";
  let _outcomes: EngineOutcome[];
  if (engine === "inline") _outcomes = await runInline(out, plans, common);
  else if (engine === "slurm") {
    _outcomes = await runSlurm(out, plans, {
      ...common,
      ...opts.slurm,
      resources: { ...spec.resources, ...opts.slurm?.resources },
    });
  } else {
    _outcomes = await runLocal(out, plans, {
      ...common,
      workers: opts.workers,
      threads: opts.threads,
    });
  }
  return await loadSweep(out);
}
