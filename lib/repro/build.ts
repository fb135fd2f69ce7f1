/**
 * Builders behind the reproductions and comparisons: a benchmark from a {@link BenchmarkSpec}, a
 * model from a {@link ModelSpec}, an optimizer from an {@link OptimizerSpec}, and any strategy
 * of the library from its key and hyperparameters.
 *
 * @module
 */
import type { ImageDataset } from "../../datasets/mod.ts";
import { permutedMNIST, splitFMNIST, splitMNIST } from "../benchmarks/classic.ts";
import type { Benchmark, Experience } from "../data/experience.ts";
import { splitOnline, subsample } from "../benchmarks/generators.ts";
import { benchmarkWithValidationStream } from "../benchmarks/validation.ts";
import { type Classifier, mlp } from "../models/mlp.ts";
import { adam, type Optimizer, sgd } from "../optim/optimizers.ts";
import { agem } from "../plugins/agem.ts";
import { cope } from "../plugins/cope.ts";
import { cwrStar } from "../plugins/cwr_star.ts";
import { derpp } from "../plugins/der.ts";
import { ewc } from "../plugins/ewc.ts";
import { gdumb } from "../plugins/gdumb.ts";
import { gem } from "../plugins/gem.ts";
import { gss } from "../plugins/gss.ts";
import { icarl } from "../plugins/icarl.ts";
import { lfl } from "../plugins/lfl.ts";
import { generativeReplay } from "../plugins/generative_replay.ts";
import { lwf } from "../plugins/lwf.ts";
import { mas } from "../plugins/mas.ts";
import { mir } from "../plugins/mir.ts";
import { replay } from "../plugins/replay.ts";
import { rwalk } from "../plugins/rwalk.ts";
import { classBalanced, experienceBalanced } from "../plugins/storage_policy.ts";
import { synapticIntelligence } from "../plugins/synaptic_intelligence.ts";
import type { Plugin } from "../strategy/plugin.ts";
import { cumulative, naive } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import type {
  BenchmarkSpec,
  ModelSpec,
  OptimizerSpec,
  ParamValue,
  StrategyKey,
} from "./configs.ts";
import { checkOptions, type OptionKind, type OptionSpec } from "../options.ts";

/** Where the data come from and how much of them to keep. */
export interface BenchmarkLoadOptions {
  /** MNIST folder (else `PERENNIAL_DATA`, the cache, or a verified download). */
  dataDir?: string;
  /** Use these images instead of MNIST (tests: `syntheticImages` with 10 classes of 28×28). */
  data?: ImageDataset;
  /** Seed of the class order, the permutations, the subsampling and the online split. @default 0 */
  seed?: number;
  /** Training samples kept per experience. @default all */
  trainPerExperience?: number;
  /** Test samples kept per experience. @default all */
  testPerExperience?: number;
}

/** A benchmark ready to run: its test stream, and what to train on for each experience. */
export interface LoadedBenchmark {
  /** The benchmark (training stream before any online split). */
  benchmark: Benchmark;
  /**
   * For each experience of the benchmark, the experiences to train on: itself, or its online
   * sub-experiences.
   */
  groups: Experience[][];
}

/**
 * Loads the benchmark of a spec, subsampled as asked, and cut into online sub-experiences when
 * the spec is online.
 *
 * @example Tiny Split MNIST from synthetic images
 * ```ts
 * import { syntheticImages } from "../../datasets/mod.ts";
 * import { loadBenchmark } from "./build.ts";
 * const data = { name: "synthetic", classes: 10, train: syntheticImages({ n: 200, classes: 10 }),
 *   test: syntheticImages({ n: 100, classes: 10, seed: 2 }) };
 * const { groups } = await loadBenchmark({ name: "splitMNIST", experiences: 5, onlineExperienceSize: 10 }, { data });
 * console.assert(groups.length === 5 && groups[0].length === 4);
 * ```
 */
export async function loadBenchmark(
  spec: BenchmarkSpec,
  opts: BenchmarkLoadOptions = {},
): Promise<LoadedBenchmark> {
  checkOptions("loadBenchmark", opts, {
    dataDir: "string",
    data: "object",
    seed: "number",
    trainPerExperience: "integer",
    testPerExperience: "integer",
  });
  const seed = opts.seed ?? 0;
  const source = { dataDir: opts.dataDir, data: opts.data };
  let benchmark: Benchmark;
  if (spec.name === "splitMNIST" || spec.name === "splitFashionMNIST") {
    benchmark = await (spec.name === "splitMNIST" ? splitMNIST : splitFMNIST)({
      ...source,
      experiences: spec.experiences,
      seed,
      fixedClassOrder: spec.fixedClassOrder,
      normalize: spec.normalize,
      returnTaskId: spec.taskIncremental ?? false,
      classIdsFromZeroInEachExp: spec.taskIncremental ?? false,
    });
  } else if (spec.name === "permutedMNIST") {
    benchmark = await permutedMNIST({
      ...source,
      experiences: spec.experiences,
      seed,
      normalize: spec.normalize,
      returnTaskId: spec.taskIncremental ?? false,
    });
  } else {
    throw new RangeError(
      `Unknown benchmark ${JSON.stringify((spec as { name: unknown }).name)}: use "splitMNIST", ` +
        `"splitFashionMNIST" or "permutedMNIST"`,
    );
  }
  if (spec.validationSize !== undefined && spec.validationSize !== 0) {
    benchmark = holdOutValidation(benchmark, spec.validationSize);
  }
  if (opts.trainPerExperience !== undefined || opts.testPerExperience !== undefined) {
    benchmark = subsample(benchmark, {
      trainPerExperience: opts.trainPerExperience,
      testPerExperience: opts.testPerExperience,
      seed,
    });
  }
  const size = spec.onlineExperienceSize;
  if (size === undefined) return { benchmark, groups: benchmark.train.map((e) => [e]) };
  const groups: Experience[][] = benchmark.train.map(() => []);
  for (const sub of splitOnline(benchmark.train, { experienceSize: size, seed })) {
    groups[sub.origin.id].push(sub);
  }
  return { benchmark, groups };
}

/**
 * The benchmark with the last `⌊fraction · n⌋` samples of each training experience (in dataset
 * order) held out, as Avalanche's `benchmark_with_validation_stream(benchmark, fraction)` with its
 * default split (`shuffle=False`: the training part keeps the first `n − ⌊fraction · n⌋`
 * indices): {@link benchmarkWithValidationStream} with `shuffle: false`, whose `valid` stream
 * holds the samples removed. The test stream is unchanged.
 *
 * @example
 * ```ts
 * import { syntheticImages } from "../../datasets/mod.ts";
 * import { splitMNIST } from "../benchmarks/classic.ts";
 * import { holdOutValidation } from "./build.ts";
 * const data = { name: "synthetic", classes: 10, train: syntheticImages({ n: 200, classes: 10 }),
 *   test: syntheticImages({ n: 100, classes: 10, seed: 2 }) };
 * const b = await splitMNIST({ data, experiences: 5 });
 * const v = holdOutValidation(b, 0.05);
 * console.assert(v.train[0].dataset.length === 40 - 2 && v.valid?.[0].dataset.length === 2);
 * ```
 */
export function holdOutValidation(benchmark: Benchmark, fraction: number): Benchmark {
  if (typeof fraction !== "number" || !(fraction >= 0 && fraction < 1)) {
    throw new RangeError(
      `validationSize must be a fraction in [0, 1), got ${String(fraction)}: e.g. 0.05`,
    );
  }
  if (fraction === 0) return benchmark;
  return benchmarkWithValidationStream(benchmark, {
    size: fraction,
    shuffle: false,
  });
}

/**
 * An MLP from a spec (784 inputs).
 *
 * @example
 * ```ts
 * import { buildModel } from "./build.ts";
 * const m = buildModel({ hidden: [32], outputs: 10 }, 0);
 * console.assert(m.featureSize === 32);
 * m.dispose();
 * ```
 */
export function buildModel(spec: ModelSpec, seed?: number): Classifier {
  return mlp({
    input: 784,
    hidden: [...spec.hidden],
    outputs: spec.outputs,
    head: spec.head ?? "single",
    activation: spec.activation ?? "relu",
    dropout: spec.dropout ?? 0,
    seed,
  });
}

/**
 * An optimizer from a spec.
 *
 * @example
 * ```ts
 * import { buildOptimizer } from "./build.ts";
 * console.assert(buildOptimizer({ name: "adam", lr: 1e-3 }).constructor.name === "Adam");
 * ```
 */
export function buildOptimizer(spec: OptimizerSpec): Optimizer {
  if (spec.name === "sgd") return sgd({ lr: spec.lr, momentum: spec.momentum ?? 0 });
  if (spec.name === "adam") return adam({ lr: spec.lr });
  throw new RangeError(
    `Unknown optimizer ${JSON.stringify((spec as { name: unknown }).name)}: use "sgd" or "adam"`,
  );
}

/** What {@link buildStrategy} needs besides the strategy's key. */
export interface StrategyBuildOptions {
  model: Classifier;
  optimizer: Optimizer;
  epochs: number;
  batchSize: number;
  /** @default 256 */
  evalBatchSize?: number;
  /** Seed of the run's generator. */
  seed?: number;
  /** Extra plugins (progress bars). */
  plugins?: Plugin[];
  /** Hyperparameters of the strategy (see {@link STRATEGY_PARAMS}). */
  params?: Readonly<Record<string, ParamValue>>;
  /** Name shown in results. @default the strategy's own */
  name?: string;
  /** Drop each epoch's incomplete last minibatch (Avalanche's `drop_last`). @default false */
  dropLast?: boolean;
}

/** The hyperparameters each strategy reads, with their defaults here (undefined: required). */
export const STRATEGY_PARAMS: Readonly<Record<StrategyKey, Readonly<Record<string, ParamValue>>>> =
  {
    naive: {},
    cumulative: {},
    replay: { memSize: 200, storagePolicy: "experienceBalanced" },
    gdumb: { memSize: 200 },
    cwrStar: {},
    cope: { memSize: 200, nClasses: 10, alpha: 0.99, T: 0.1 },
    lwf: { alpha: 1, temperature: 2 },
    ewc: { lambda: 1, mode: "separate" },
    si: { lambda: 1, eps: 0.1 },
    gem: { patternsPerExperience: 256, memoryStrength: 0.5 },
    agem: { patternsPerExperience: 256, sampleSize: 256 },
    mir: { memSize: 200, subsample: 200, batchSizeMem: 10 },
    gss: { memSize: 200, memStrength: 5 },
    derpp: { memSize: 200, alpha: 0.1, beta: 0.5 },
    icarl: { memSize: 2000 },
    mas: { lambdaReg: 1, alpha: 0.5 },
    rwalk: { ewcLambda: 0.1, ewcAlpha: 0.9, deltaT: 10 },
    lfl: { lambdaE: 0.0001 },
    generativeReplay: {},
  };

/** Hyperparameters a strategy reads only when given (no default in {@link STRATEGY_PARAMS}). */
const OPTIONAL_PARAMS: Readonly<Partial<Record<StrategyKey, readonly string[]>>> = {
  replay: ["batchSizeMem"],
  cope: ["pSize", "maxIterPerBatch", "initAdaptive"],
  ewc: ["decayFactor"],
  gss: ["inputSize"],
  derpp: ["batchSizeMem"],
  generativeReplay: ["replaySize"],
};

/** The keys of {@link StrategyBuildOptions}, for checking what users pass. */
const STRATEGY_BUILD_OPTIONS: OptionSpec<StrategyBuildOptions> = {
  model: "object",
  optimizer: "object",
  epochs: "integer",
  batchSize: "integer",
  evalBatchSize: "integer",
  seed: "number",
  plugins: "array",
  params: "object",
  name: "string",
  dropLast: "boolean",
};

/** Every strategy key. */
export const STRATEGY_KEYS: readonly StrategyKey[] = Object.keys(STRATEGY_PARAMS) as StrategyKey[];

function num(key: StrategyKey, p: Readonly<Record<string, ParamValue>>, name: string): number {
  const v = p[name] ?? STRATEGY_PARAMS[key][name];
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new TypeError(`${key}: parameter ${name} must be a number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function optNum(p: Readonly<Record<string, ParamValue>>, name: string): number | undefined {
  const v = p[name];
  if (v === undefined) return undefined;
  if (typeof v !== "number") {
    throw new TypeError(`Parameter ${name} must be a number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function numOrList(
  key: StrategyKey,
  p: Readonly<Record<string, ParamValue>>,
  name: string,
): number | readonly number[] {
  const v = p[name] ?? STRATEGY_PARAMS[key][name];
  if (typeof v === "number" || (Array.isArray(v) && v.every((x) => typeof x === "number"))) {
    return v as number | readonly number[];
  }
  throw new TypeError(
    `${key}: parameter ${name} must be a number or a list of numbers, got ${JSON.stringify(v)}`,
  );
}

/**
 * Any strategy of the library, from its key, the common options and its hyperparameters.
 *
 * Hyperparameters by key: `replay` memSize, storagePolicy ("experienceBalanced" |
 * "classBalanced"), batchSizeMem; `gdumb` memSize; `cope` memSize, nClasses, pSize, alpha, T,
 * maxIterPerBatch, initAdaptive; `lwf` alpha (a number or one per experience), temperature;
 * `ewc` lambda, mode ("separate" | "online"), decayFactor; `si` lambda, eps; `gem`
 * patternsPerExperience, memoryStrength; `agem` patternsPerExperience, sampleSize; `mir` memSize,
 * subsample, batchSizeMem; `gss` memSize, memStrength, inputSize; `mas` lambdaReg, alpha;
 * `rwalk` ewcLambda, ewcAlpha, deltaT; `lfl` lambdaE (a number or one per experience);
 * `generativeReplay` replaySize (default: the minibatch's size; the generator is
 * `generativeReplay`'s default VAE).
 *
 * @example
 * ```ts
 * import { buildModel, buildOptimizer, buildStrategy } from "./build.ts";
 * const model = buildModel({ hidden: [16], outputs: 10 }, 0);
 * const s = buildStrategy("ewc", {
 *   model, optimizer: buildOptimizer({ name: "sgd", lr: 0.01 }), epochs: 1, batchSize: 32,
 *   params: { lambda: 100 },
 * });
 * console.assert(s.name === "EWC");
 * s.dispose();
 * model.dispose();
 * ```
 */
export function buildStrategy(key: StrategyKey, opts: StrategyBuildOptions): Strategy {
  checkOptions("buildStrategy", opts, STRATEGY_BUILD_OPTIONS);
  const p = opts.params ?? {};
  const known = STRATEGY_PARAMS[key];
  if (!known) {
    throw new RangeError(`Unknown strategy "${key}": use one of ${STRATEGY_KEYS.join(", ")}`);
  }
  // A misspelt hyperparameter would otherwise run with the default; values are checked below.
  const names = [...Object.keys(known), ...(OPTIONAL_PARAMS[key] ?? [])];
  const paramKinds: Record<string, OptionKind> = Object.fromEntries(names.map((n) => [n, "any"]));
  checkOptions(`${key} params`, p, paramKinds);
  const base: StrategyOptions = {
    model: opts.model,
    optimizer: opts.optimizer,
    epochs: opts.epochs,
    batchSize: opts.batchSize,
    evalBatchSize: opts.evalBatchSize ?? 256,
    seed: opts.seed,
    dropLast: opts.dropLast ?? false,
    plugins: opts.plugins ?? [],
    ...(opts.name ? { name: opts.name } : {}),
  };
  switch (key) {
    case "naive":
      return naive(base);
    case "cumulative":
      return cumulative(base);
    case "replay": {
      const memSize = num(key, p, "memSize");
      const policy = p.storagePolicy ?? known.storagePolicy;
      if (policy !== "classBalanced" && policy !== "experienceBalanced") {
        throw new RangeError(
          `replay: storagePolicy must be "classBalanced" or "experienceBalanced", got ` +
            JSON.stringify(policy),
        );
      }
      return replay({
        ...base,
        memSize,
        storagePolicy: policy === "classBalanced"
          ? classBalanced({ memSize })
          : experienceBalanced({ memSize }),
        batchSizeMem: optNum(p, "batchSizeMem"),
      });
    }
    case "gdumb":
      return gdumb({ ...base, memSize: num(key, p, "memSize") });
    case "cwrStar":
      return cwrStar(base);
    case "cope":
      return cope({
        ...base,
        memSize: num(key, p, "memSize"),
        nClasses: num(key, p, "nClasses"),
        pSize: optNum(p, "pSize"),
        alpha: num(key, p, "alpha"),
        T: num(key, p, "T"),
        maxIterPerBatch: optNum(p, "maxIterPerBatch"),
        initAdaptive: typeof p.initAdaptive === "boolean" ? p.initAdaptive : undefined,
      });
    case "lwf":
      return lwf({
        ...base,
        alpha: numOrList(key, p, "alpha"),
        temperature: num(key, p, "temperature"),
      });
    case "ewc": {
      const mode = p.mode ?? known.mode;
      if (mode !== "separate" && mode !== "online") {
        throw new RangeError(
          `ewc: mode must be "separate" or "online", got ${JSON.stringify(mode)}`,
        );
      }
      return ewc({
        ...base,
        lambda: num(key, p, "lambda"),
        mode,
        decayFactor: optNum(p, "decayFactor"),
      });
    }
    case "si":
      return synapticIntelligence({
        ...base,
        lambda: numOrList(key, p, "lambda"),
        eps: num(key, p, "eps"),
      });
    case "gem":
      return gem({
        ...base,
        patternsPerExperience: num(key, p, "patternsPerExperience"),
        memoryStrength: num(key, p, "memoryStrength"),
      });
    case "agem":
      return agem({
        ...base,
        patternsPerExperience: num(key, p, "patternsPerExperience"),
        sampleSize: num(key, p, "sampleSize"),
      });
    case "mir":
      return mir({
        ...base,
        memSize: num(key, p, "memSize"),
        subsample: num(key, p, "subsample"),
        batchSizeMem: num(key, p, "batchSizeMem"),
      });
    case "gss": {
      const inputSize = p.inputSize;
      if (inputSize !== undefined && !Array.isArray(inputSize)) {
        throw new TypeError(
          `gss: parameter inputSize must be a list of numbers, got ${JSON.stringify(inputSize)}`,
        );
      }
      return gss({
        ...base,
        memSize: num(key, p, "memSize"),
        memStrength: num(key, p, "memStrength"),
        inputSize: inputSize as readonly number[] | undefined,
      });
    }
    case "derpp":
      return derpp({
        ...base,
        memSize: num(key, p, "memSize"),
        batchSizeMem: optNum(p, "batchSizeMem"),
        alpha: num(key, p, "alpha"),
        beta: num(key, p, "beta"),
      });
    case "icarl": {
      const { criterion: _c, ...rest } = base;
      return icarl({ ...rest, memSize: num(key, p, "memSize") });
    }
    case "mas":
      return mas({ ...base, lambdaReg: num(key, p, "lambdaReg"), alpha: num(key, p, "alpha") });
    case "rwalk":
      return rwalk({
        ...base,
        ewcLambda: num(key, p, "ewcLambda"),
        ewcAlpha: num(key, p, "ewcAlpha"),
        deltaT: num(key, p, "deltaT"),
      });
    case "lfl":
      return lfl({ ...base, lambdaE: numOrList(key, p, "lambdaE") });
    case "generativeReplay":
      return generativeReplay({ ...base, replaySize: optNum(p, "replaySize") });
    default:
      throw new RangeError(`Unknown strategy "${key}": use one of ${STRATEGY_KEYS.join(", ")}`);
  }
}
