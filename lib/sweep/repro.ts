/**
 * Reproductions over several seeds, through the sweep engines: every (reproduction, seed) is a
 * run of one sweep folder, so that `deno task repro --all --seeds 0,1,2` uses every core (or a
 * Slurm cluster), skips what an earlier call finished and resumes what was killed. The outcome is
 * one {@link SeedsResult} per reproduction: its accuracy for each seed, their mean ± std, and
 * whether the mean reaches the target; `writeSeedsResults` stores them beside the single-seed
 * results, where `writeSummary` and the notebooks find them.
 *
 * @module
 */
import { join } from "node:path";
import type { BackendName } from "../backend.ts";
import type { ExperimentSpec, ReproConfig, ReproMode } from "../repro/configs.ts";
import { scaleConfig } from "../repro/configs.ts";
import { meanStd } from "../notebook/tables.ts";
import { SEEDS_FILE, type SeedsResult } from "../repro/run.ts";
import { type EngineOptions, runInline, runLocal } from "./local.ts";
import { runSlurm, type SlurmOptions } from "./slurm.ts";
import { type RunConfig, runId, type SweepRunPlan } from "./spec.ts";
import { loadSweep, prepareSweep, writeJSON } from "./store.ts";

/** Options of {@link reproSeeds}. */
export interface ReproSeedsOptions extends EngineOptions {
  /** The mode of every run. @default "full" */
  mode?: ReproMode;
  /** The seeds. */
  seeds: readonly number[];
  /** The sweep folder the runs go to (a cache: reused across calls). */
  out: string;
  /** @default "local" */
  engine?: "local" | "inline" | "slurm";
  workers?: number;
  threads?: number;
  /** @default "auto" */
  backend?: BackendName;
  /** Slurm engine options. */
  slurm?: Omit<SlurmOptions, keyof EngineOptions>;
}

/** The experiment of a scaled reproduction, as a run configuration for a seed. */
export function reproRunConfig(
  config: ReproConfig,
  mode: ReproMode,
  seed: number,
  backend: BackendName,
): RunConfig {
  const s = scaleConfig(config, mode);
  const experiment: ExperimentSpec = {
    name: s.name,
    strategy: s.strategy,
    label: s.label,
    benchmark: s.benchmark,
    model: s.model,
    optimizer: s.optimizer,
    epochs: s.epochs,
    batchSize: s.batchSize,
    params: s.params,
    ...(s.resetOptimizer !== undefined ? { resetOptimizer: s.resetOptimizer } : {}),
    ...(s.dropLast !== undefined ? { dropLast: s.dropLast } : {}),
  };
  return {
    experiment,
    seed,
    backend,
    ...(s.trainPerExperience !== undefined ? { trainPerExperience: s.trainPerExperience } : {}),
    ...(s.testPerExperience !== undefined ? { testPerExperience: s.testPerExperience } : {}),
  };
}

/**
 * Runs every reproduction of `configs` for every seed on an engine and returns, for each, its
 * accuracy per seed, mean and sample std, and whether the mean reaches the target.
 */
export async function reproSeeds(
  configs: readonly ReproConfig[],
  opts: ReproSeedsOptions,
): Promise<SeedsResult[]> {
  const mode = opts.mode ?? "full";
  const backend = opts.backend ?? "auto";
  if (!Array.isArray(opts.seeds) || opts.seeds.length === 0) {
    throw new RangeError("reproSeeds needs seeds, a non-empty list of integers ≥ 0");
  }
  const plans: SweepRunPlan[] = [];
  for (const c of configs) {
    for (const seed of opts.seeds) {
      const config = reproRunConfig(c, mode, seed, backend);
      plans.push({
        id: runId(config),
        label: c.name,
        strategy: c.strategy,
        seed,
        setting: {},
        config,
      });
    }
  }
  await prepareSweep(
    opts.out,
    {
      name: `repro-${mode}`,
      kind: "reproductions",
      mode,
      reproductions: configs.map((c) => c.name),
      seeds: [...opts.seeds],
    },
    plans,
    { resume: true },
  );
  const common: EngineOptions = {
    dataDir: opts.dataDir,
    everyEpochs: opts.everyEpochs,
    retryFailed: opts.retryFailed,
    onProgress: opts.onProgress,
  };
  const engine = opts.engine ?? "local";
  if (engine === "inline") await runInline(opts.out, plans, common);
  else if (engine === "slurm") await runSlurm(opts.out, plans, { ...common, ...opts.slurm });
  else await runLocal(opts.out, plans, { ...common, workers: opts.workers, threads: opts.threads });
  const runs = await loadSweep(opts.out);
  return configs.map((c) => {
    const mine = runs.filter((r) => r.label === c.name);
    const per = opts.seeds.map((seed) => {
      const r = mine.find((x) => x.seed === seed);
      return {
        seed,
        accuracy: r?.state === "done" ? r.accuracy : NaN,
        ...(r?.state === "failed" ? { error: r.error ?? "failed" } : {}),
      };
    });
    const accuracies = per.map((p) => p.accuracy);
    const ok = accuracies.filter(Number.isFinite);
    const { mean, std } = meanStd(accuracies);
    let experienceMeans: number[] | undefined;
    if (c.experienceTarget !== undefined) {
      const finals = mine.filter((r) => r.state === "done").map((r) => r.matrix.at(-1) ?? []);
      const width = Math.max(0, ...finals.map((f) => f.length));
      experienceMeans = Array.from(
        { length: width },
        (_, j) => meanStd(finals.map((f) => f[j])).mean,
      );
    }
    const each = c.experienceTarget === undefined ||
      (experienceMeans!.length > 0 && experienceMeans!.every((v) => v >= c.experienceTarget!));
    return {
      name: c.name,
      label: c.label,
      mode,
      target: c.target,
      ...(c.experienceTarget !== undefined
        ? { experienceTarget: c.experienceTarget, experienceMeans }
        : {}),
      seeds: per,
      n: ok.length,
      mean,
      std,
      reached: ok.length === per.length && mean >= c.target && each,
    };
  });
}

/** Writes (merges by name into) `<root>/seeds.json`, which `writeSummary` tabulates. */
export async function writeSeedsResults(
  root: string,
  results: readonly SeedsResult[],
): Promise<void> {
  const path = join(root, SEEDS_FILE);
  let old: SeedsResult[] = [];
  try {
    old = JSON.parse(await Deno.readTextFile(path)) as SeedsResult[];
  } catch { /* none yet */ }
  const names = new Set(results.map((r) => r.name));
  await Deno.mkdir(root, { recursive: true });
  await writeJSON(path, [...old.filter((r) => !names.has(r.name)), ...results]);
}
