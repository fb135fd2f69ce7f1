/**
 * Sweep descriptions as plain data, and the runs they expand to.
 *
 * A {@link SweepSpec} names a benchmark, a model, an optimizer, the strategies with their
 * hyperparameters, a grid (or list) of settings and the seeds; {@link expandSweep} turns it into
 * one {@link RunConfig} per (strategy, setting, seed), each fully resolved, and {@link runId}
 * identifies a run by a hash of its resolved configuration. Two sweeps that contain the same run
 * give it the same id, so a sweep started again finds the runs it already finished.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { BackendName } from "../backend.ts";
import type {
  BenchmarkSpec,
  ExperimentSpec,
  ModelSpec,
  OptimizerSpec,
  ParamValue,
  StrategyKey,
} from "../repro/configs.ts";
import { STRATEGY_KEYS } from "../repro/build.ts";
import { anyOf, checkOptions, describeValue, type OptionSpec } from "../options.ts";

/** One strategy of a sweep: its key, its label in tables, its hyperparameters, its own grid. */
export interface SweepStrategy {
  /** The strategy to build (see `buildStrategy`). */
  strategy: StrategyKey;
  /** Its name in tables and figures. @default the key */
  label?: string;
  /** Hyperparameters (see `STRATEGY_PARAMS` for each strategy's keys). @default {} */
  params?: Readonly<Record<string, ParamValue>>;
  /**
   * Settings tried for this strategy only, on top of the sweep's `grid`: a path (as in
   * {@link SweepSpec.grid}) → the values to try.
   */
  grid?: Readonly<Record<string, readonly ParamValue[]>>;
}

/** Slurm resources of each run (see the Slurm engine); flags of the command line override them. */
export interface SweepResources {
  /** CPUs per run (`--cpus-per-task`; also the run's BLAS threads). @default 1 */
  cpusPerTask?: number;
  /** Memory per run in MiB (`--mem`). @default 4096 */
  memMB?: number;
  /** Wall-time limit per run in minutes (`--time`). @default 60 */
  timeMinutes?: number;
  /** Partition (`--partition`). Default: the cluster's default partition. */
  partition?: string;
  /** At most this many runs at once (`--array=...%N`). Default: no limit. */
  maxConcurrent?: number;
}

/** A sweep: what to run, as plain data (a module's export or a JSON file). */
export interface SweepSpec {
  /** The sweep's name (tables, job names). */
  name: string;
  benchmark: BenchmarkSpec;
  model: ModelSpec;
  optimizer: OptimizerSpec;
  /** Epochs per (sub-)experience. */
  epochs: number;
  /** Training minibatch size. */
  batchSize: number;
  /** Drop each epoch's incomplete last minibatch. @default false */
  dropLast?: boolean;
  /** Reset the optimizer's state before each experience. @default false */
  resetOptimizer?: boolean;
  /** Training samples kept per experience. @default all */
  trainPerExperience?: number;
  /** Test samples kept per experience. @default all */
  testPerExperience?: number;
  /** The strategies, each run on every setting and seed. */
  strategies: readonly SweepStrategy[];
  /**
   * Settings to try, as a grid: a path → its values; every combination is run. A path is
   * `optimizer.lr`, `epochs`, `batchSize`, `model.hidden`, `benchmark.experiences`,
   * `params.memSize`, ... (a field of the run's configuration, dotted). @default {}
   */
  grid?: Readonly<Record<string, readonly ParamValue[]>>;
  /**
   * Settings to try, as a list (each an object of path → value), instead of or combined with
   * the grid (every listed setting with every grid point). @default [{}]
   */
  settings?: readonly Readonly<Record<string, ParamValue>>[];
  /** Seeds of every run. @default [0] */
  seeds?: readonly number[];
  /** The tfjs backend every run uses. @default "blas" where it loads, else "wasm" (as `auto`) */
  backend?: BackendName;
  /** Checkpoint inside experiences every N epochs (else after each experience). */
  checkpointEveryEpochs?: number;
  /** Slurm resources. */
  resources?: SweepResources;
}

/** A run of a sweep, resolved: everything that decides its numbers. */
export interface RunConfig {
  /** The experiment: benchmark, model, optimizer, strategy and hyperparameters. */
  experiment: ExperimentSpec;
  seed: number;
  trainPerExperience?: number;
  testPerExperience?: number;
  backend: BackendName;
}

/** A run of a sweep with its id and what sets it apart from the others. */
export interface SweepRunPlan {
  /** {@link runId} of `config`. */
  id: string;
  /** The strategy's label. */
  label: string;
  strategy: StrategyKey;
  seed: number;
  /** The grid/list values of this run, by path (empty without a grid). */
  setting: Record<string, ParamValue>;
  config: RunConfig;
}

const STRATEGY_SPEC: OptionSpec<SweepStrategy> = {
  strategy: "string",
  label: "string",
  params: "object",
  grid: "object",
};

const RESOURCES_SPEC: OptionSpec<SweepResources> = {
  cpusPerTask: "integer",
  memMB: "integer",
  timeMinutes: "integer",
  partition: "string",
  maxConcurrent: "integer",
};

/** The keys of {@link SweepSpec}, for checking what users pass. */
export const SWEEP_SPEC_OPTIONS: OptionSpec<SweepSpec> = {
  name: "string",
  benchmark: "object",
  model: "object",
  optimizer: "object",
  epochs: "integer",
  batchSize: "integer",
  dropLast: "boolean",
  resetOptimizer: "boolean",
  trainPerExperience: "integer",
  testPerExperience: "integer",
  strategies: "array",
  grid: "object",
  settings: "array",
  seeds: "array",
  backend: "string",
  checkpointEveryEpochs: "integer",
  resources: anyOf("object"),
};

/** First segments a grid path may start with (fields of the run's configuration). */
const PATH_ROOTS = [
  "benchmark",
  "model",
  "optimizer",
  "epochs",
  "batchSize",
  "dropLast",
  "resetOptimizer",
  "params",
  "trainPerExperience",
  "testPerExperience",
] as const;

/** The form of a path's leaf value, as `ExperimentSpec` has it (top-level scalars). */
const SCALAR_ROOTS = new Set([
  "epochs",
  "batchSize",
  "dropLast",
  "resetOptimizer",
  "trainPerExperience",
  "testPerExperience",
]);

function positiveInt(who: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new RangeError(`${who} must be an integer ≥ 1, got ${describeValue(v)}`);
  }
  return v;
}

function checkPath(path: string, where: string): string[] {
  const parts = path.split(".");
  const root = parts[0];
  if (!(PATH_ROOTS as readonly string[]).includes(root)) {
    throw new RangeError(
      `${where}: unknown setting "${path}": a path starts with one of ${PATH_ROOTS.join(", ")} ` +
        `(e.g. "optimizer.lr", "params.memSize")`,
    );
  }
  if (SCALAR_ROOTS.has(root) ? parts.length !== 1 : parts.length !== 2) {
    throw new RangeError(
      `${where}: setting "${path}" must be ${
        SCALAR_ROOTS.has(root) ? `"${root}" alone` : `"${root}.<field>"`
      }`,
    );
  }
  return parts;
}

/** The cartesian product of a grid, in key order then value order. */
function gridPoints(
  grid: Readonly<Record<string, readonly ParamValue[]>> | undefined,
  where: string,
): Record<string, ParamValue>[] {
  let points: Record<string, ParamValue>[] = [{}];
  for (const [path, values] of Object.entries(grid ?? {})) {
    checkPath(path, where);
    if (!Array.isArray(values) || values.length === 0) {
      throw new RangeError(
        `${where}: grid "${path}" must be a non-empty list of values, got ${describeValue(values)}`,
      );
    }
    const next: Record<string, ParamValue>[] = [];
    for (const p of points) for (const v of values) next.push({ ...p, [path]: v });
    points = next;
  }
  return points;
}

/** JSON with object keys sorted at every level: equal values give equal text. */
export function canonicalJSON(value: unknown): string {
  return JSON.stringify(value, (_k, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]]));
    }
    return v;
  });
}

/**
 * A run's id: the first 16 hex digits of the SHA-256 of its canonical configuration (format
 * version included), so that the same run always gets the same id and any change of setting,
 * seed or backend gives another.
 *
 * @example
 * ```ts
 * import { runId } from "./spec.ts";
 * const config = {
 *   experiment: { name: "r", strategy: "naive" as const, label: "Naive",
 *     benchmark: { name: "splitMNIST" as const, experiences: 5 }, model: { hidden: [100], outputs: 10 },
 *     optimizer: { name: "sgd" as const, lr: 0.1 }, epochs: 1, batchSize: 32, params: {} },
 *   seed: 0, backend: "wasm" as const,
 * };
 * console.assert(runId(config) === runId({ ...config }) && runId(config) !== runId({ ...config, seed: 1 }));
 * console.assert(/^[0-9a-f]{16}$/.test(runId(config)));
 * ```
 */
export function runId(config: RunConfig): string {
  const text = canonicalJSON({ format: "perennial-run/1", ...config });
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

function settingText(setting: Record<string, ParamValue>): string {
  return Object.entries(setting).map(([k, v]) =>
    `${k.split(".").pop()}=${Array.isArray(v) ? v.join("x") : v}`
  ).join(" ");
}

/**
 * Checks a sweep description and expands it into its runs: every strategy × every setting (the
 * `settings` list, each combined with every grid point of the sweep's and the strategy's
 * grids) × every seed, in that order. Each run's configuration is resolved (its label says its
 * setting: `Replay memSize=200`) and identified by {@link runId}; two runs with the same
 * configuration are an error.
 *
 * @example
 * ```ts
 * import { expandSweep } from "./spec.ts";
 * const runs = expandSweep({
 *   name: "demo", benchmark: { name: "splitMNIST", experiences: 5 },
 *   model: { hidden: [100], outputs: 10 }, optimizer: { name: "sgd", lr: 0.1 },
 *   epochs: 1, batchSize: 32, backend: "wasm",
 *   strategies: [{ strategy: "naive" }, { strategy: "replay", grid: { "params.memSize": [200, 500] } }],
 *   seeds: [0, 1],
 * });
 * console.assert(runs.length === 6 && runs[2].label === "replay memSize=200");
 * console.assert(runs[5].config.experiment.params.memSize === 500 && runs[5].seed === 1);
 * ```
 */
export function expandSweep(spec: SweepSpec): SweepRunPlan[] {
  if (!spec || typeof spec !== "object") {
    throw new TypeError(`A sweep is an object { name, benchmark, model, ... }, got ${spec}`);
  }
  checkOptions("sweep", spec, SWEEP_SPEC_OPTIONS);
  for (const key of ["name", "benchmark", "model", "optimizer", "epochs", "batchSize"] as const) {
    if (spec[key] === undefined) throw new TypeError(`sweep: "${key}" is missing`);
  }
  if (spec.resources) checkOptions("sweep resources", spec.resources, RESOURCES_SPEC);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(spec.name)) {
    throw new RangeError(
      `sweep name ${JSON.stringify(spec.name)}: use letters, digits, ".", "_" and "-"`,
    );
  }
  positiveInt("sweep epochs", spec.epochs);
  positiveInt("sweep batchSize", spec.batchSize);
  if (!Array.isArray(spec.strategies) || spec.strategies.length === 0) {
    throw new RangeError("sweep: strategies must be a non-empty list of { strategy, params }");
  }
  const seeds = spec.seeds ?? [0];
  if (!Array.isArray(seeds) || seeds.length === 0) {
    throw new RangeError("sweep: seeds must be a non-empty list of integers ≥ 0");
  }
  for (const s of seeds) {
    if (!Number.isInteger(s) || s < 0) {
      throw new RangeError(`sweep: seed ${JSON.stringify(s)} is not an integer ≥ 0`);
    }
  }
  const listed = spec.settings ?? [{}];
  if (!Array.isArray(listed) || listed.length === 0) {
    throw new RangeError("sweep: settings must be a non-empty list of { path: value } objects");
  }
  listed.forEach((s, i) => {
    for (const path of Object.keys(s)) checkPath(path, `sweep settings[${i}]`);
  });
  const backend = spec.backend ?? "auto";
  const base = gridPoints(spec.grid, "sweep grid");
  const runs: SweepRunPlan[] = [];
  const seen = new Map<string, string>();
  spec.strategies.forEach((s, k) => {
    checkOptions(`sweep strategies[${k}]`, s, STRATEGY_SPEC);
    if (!STRATEGY_KEYS.includes(s.strategy)) {
      throw new RangeError(
        `sweep strategies[${k}]: unknown strategy ${JSON.stringify(s.strategy)}: use one of ` +
          STRATEGY_KEYS.join(", "),
      );
    }
    const own = gridPoints(s.grid, `sweep strategies[${k}] grid`);
    const label0 = s.label ?? s.strategy;
    for (const l of listed) {
      for (const g of base) {
        for (const o of own) {
          const setting = { ...l, ...g, ...o };
          const text = settingText(setting);
          const label = text ? `${label0} ${text}` : label0;
          for (const seed of seeds) {
            const config = resolve(spec, s, setting, label, backend, seed);
            const id = runId(config);
            const twin = seen.get(id);
            if (twin !== undefined) {
              throw new RangeError(
                `sweep: runs "${twin}" and "${label}" (seed ${seed}) have the same ` +
                  `configuration: remove one of them`,
              );
            }
            seen.set(id, `${label} (seed ${seed})`);
            runs.push({ id, label, strategy: s.strategy, seed, setting, config });
          }
        }
      }
    }
  });
  return runs;
}

function resolve(
  spec: SweepSpec,
  s: SweepStrategy,
  setting: Record<string, ParamValue>,
  label: string,
  backend: BackendName,
  seed: number,
): RunConfig {
  const experiment = structuredClone({
    name: `${spec.name}/${label}`.replace(/[^A-Za-z0-9._/=-]+/g, "_"),
    strategy: s.strategy,
    label,
    benchmark: spec.benchmark,
    model: spec.model,
    optimizer: spec.optimizer,
    epochs: spec.epochs,
    batchSize: spec.batchSize,
    params: { ...(s.params ?? {}) },
    ...(spec.resetOptimizer !== undefined ? { resetOptimizer: spec.resetOptimizer } : {}),
    ...(spec.dropLast !== undefined ? { dropLast: spec.dropLast } : {}),
  }) as Record<string, unknown>;
  const config: Record<string, unknown> = {
    experiment,
    seed,
    backend,
    ...(spec.trainPerExperience !== undefined
      ? { trainPerExperience: spec.trainPerExperience }
      : {}),
    ...(spec.testPerExperience !== undefined ? { testPerExperience: spec.testPerExperience } : {}),
  };
  for (const [path, value] of Object.entries(setting)) {
    const [root, field] = path.split(".");
    if (root === "trainPerExperience" || root === "testPerExperience") config[root] = value;
    else if (field === undefined) experiment[root] = value;
    else {
      experiment[root] = { ...(experiment[root] as Record<string, unknown>), [field]: value };
    }
  }
  return config as unknown as RunConfig;
}
