/**
 * The performance benchmark behind `deno task bench`: the same work as the PyTorch reference
 * script (`torch_ref.py`, in the shared bench folder beside the repository; for DER++ and ER-ACE
 * `torch_ref_replay.py`, beside this module), measured strategy by strategy.
 *
 * Workload: class-incremental Split Fashion-MNIST, 5 experiences of 2 classes in the fixed class
 * order 0..9 (experience k holds classes {2k, 2k+1}), inputs scaled to [0, 1] and normalized with
 * mean 0.2860 / std 0.3530; MLP 784-400-400-10 (ReLU); SGD lr 0.01 momentum 0.9; batch 128;
 * 1 epoch per experience; after each experience the whole test stream is evaluated (batch 256).
 * Like the reference, which converts its tensors to float32 when it loads them, each run holds
 * both streams as float32 tensors made before its clock starts (`resident`; `[]` keeps the bytes,
 * converted per minibatch).
 *
 * Strategies are entries of {@link BENCH_STRATEGIES} (`name → (model, opts) => Strategy`), so a
 * new one is a single line there. Measuring ({@link runBench}) is kept apart from printing (the
 * CLI `lib/cli/bench.ts`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { ImageDataset } from "../../datasets/mod.ts";
import { type BackendName, seedGlobal, setBackend } from "../backend.ts";
import { mlp } from "../models/mlp.ts";
import type { Module } from "../nn/module.ts";
import { sgd } from "../optim/optimizers.ts";
import type { Plugin } from "../strategy/plugin.ts";
import { naive } from "../strategy/strategies.ts";
import { replay } from "../plugins/replay.ts";
import { ewc } from "../plugins/ewc.ts";
import { lwf } from "../plugins/lwf.ts";
import { derpp } from "../plugins/der.ts";
import { erAce } from "../plugins/er_ace.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { FMNIST_STATS, splitFMNIST } from "../benchmarks/classic.ts";
import type { ClassIncrementalBenchmark } from "../benchmarks/generators.ts";
import { subsample } from "../benchmarks/generators.ts";
import { residentBenchmark } from "../engine/resident.ts";
import { checkOptions, type OptionSpec } from "../options.ts";

/** The fixed settings of the workload (those of `torch_ref.py`). */
export const BENCH_WORKLOAD: Readonly<{
  benchmark: string;
  experiences: number;
  classOrder: readonly number[];
  normalization: Readonly<{ mean: number; std: number }>;
  input: number;
  hidden: readonly number[];
  outputs: number;
  lr: number;
  momentum: number;
  batchSize: number;
  evalBatchSize: number;
  epochs: number;
}> = Object.freeze({
  benchmark: "SplitFMNIST",
  experiences: 5,
  classOrder: Object.freeze([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
  normalization: FMNIST_STATS,
  input: 784,
  hidden: Object.freeze([400, 400]),
  outputs: 10,
  lr: 0.01,
  momentum: 0.9,
  batchSize: 128,
  evalBatchSize: 256,
  epochs: 1,
});

/** Strategy options a bench entry receives: everything but the model, which comes apart. */
export type BenchStrategyOptions = Omit<StrategyOptions, "model">;

/**
 * Builds one strategy of the bench around a fresh model. It must pass `opts` on (optimizer,
 * batch sizes, epochs, seed and the measuring plugins) and add only its own settings.
 */
export type StrategyFactory = (model: Module, opts: BenchStrategyOptions) => Strategy;

/**
 * The strategies the bench knows, by command-line name. Settings follow `torch_ref.py`
 * (replay: 500 samples experience-balanced, 128 replayed per minibatch; ewc: λ 1000 separate;
 * lwf: α 1, T 2) and, for derpp and erace, `torch_ref_replay.py` beside this module (memory
 * 500, memory minibatches of 128; DER++ α 0.1, β 0.5).
 */
export const BENCH_STRATEGIES: Readonly<Record<string, StrategyFactory>> = Object.freeze({
  naive: (model, opts) => naive({ ...opts, model }),
  // torch_ref.py: 500 samples, experience-balanced, 128 replayed per minibatch of 128 new ones.
  replay: (model, opts) => replay({ ...opts, model, memSize: 500, batchSizeMem: 128 }),
  // torch_ref.py: λ 1000, separate mode (one importance/anchor pair per past experience).
  ewc: (model, opts) => ewc({ ...opts, model, lambda: 1000, mode: "separate" }),
  // torch_ref.py: α 1, T 2 over the classes seen before the current experience.
  lwf: (model, opts) => lwf({ ...opts, model, alpha: 1, temperature: 2 }),
  // torch_ref_replay.py: Mammoth's step, a reservoir of 500 samples and logits, two independent
  // buffer minibatches of 128 (MSE on logits × 0.1, CE × 0.5) besides the minibatch's CE.
  derpp: (model, opts) =>
    derpp({ ...opts, model, memSize: 500, batchSizeMem: 128, alpha: 0.1, beta: 0.5 }),
  // torch_ref_replay.py: a reservoir of 500 samples, 128 of them concatenated to each minibatch
  // of 128 new ones from the second experience on, the asymmetric cross-entropy.
  erace: (model, opts) => erAce({ ...opts, model, memSize: 500, batchSizeMem: 128 }),
});

/** Options of {@link runBench}. */
export interface BenchOptions {
  /**
   * Called after each run (strategy name, repeat index), before the next starts: `--torch` runs
   * the reference there, so that ours and PyTorch's alternate and share the machine's state.
   */
  afterRun?: (strategy: string, repeat: number) => void | Promise<void>;
  /** Strategy names, run in this order. Default: every entry of `factories`. */
  strategies?: readonly string[];
  /** The strategy table. @default BENCH_STRATEGIES */
  factories?: Readonly<Record<string, StrategyFactory>>;
  /** tfjs backend. @default "auto" */
  backend?: BackendName;
  /** Folder with Fashion-MNIST (`<dir>/fashion-mnist/*.gz` or `<dir>/*.gz`); default: the loader's. */
  dataDir?: string;
  /** Use these images instead of loading Fashion-MNIST (tests). */
  data?: ImageDataset;
  /** Runs of each strategy; with more than one, rates and times are medians. @default 1 */
  repeats?: number;
  /** Seed of the model, the shuffling and every sampler. @default 0 */
  seed?: number;
  /** Epochs per experience. @default 1 */
  epochs?: number;
  /** Keep this many training samples per experience (class-balanced), for a quick run. */
  trainLimit?: number;
  /** Keep this many test samples per experience, for a quick run. */
  testLimit?: number;
  /**
   * Streams held as float32 tensors (`residentBenchmark`), converted before each run as the
   * reference converts its tensors at load time: evaluation minibatches are then views and
   * training minibatches copies of rows instead of conversions of bytes. `[]` keeps the bytes.
   * @default ["train", "test"]
   */
  resident?: readonly ("train" | "test")[];
  /** Sample the resident set size every this many training iterations. @default 50 */
  rssEvery?: number;
  /** Status lines (no newline at the end); default: silent. */
  log?: (line: string) => void;
}

/** The keys of {@link BenchOptions}, for checking what users pass. */
const BENCH_OPTIONS: OptionSpec<BenchOptions> = {
  afterRun: "function",
  strategies: "array",
  factories: "object",
  backend: "string",
  dataDir: "string",
  data: "object",
  repeats: "integer",
  seed: "integer",
  epochs: "integer",
  trainLimit: "integer",
  testLimit: "integer",
  resident: "array",
  rssEvery: "integer",
  log: "function",
};

/** The measures of one run of one strategy. */
export interface BenchRun {
  /** All samples trained on per second of training, replayed ones included. */
  train_samples_per_s: number;
  /** Samples of the experiences themselves trained on per second of training. */
  new_samples_per_s: number;
  /** Evaluated samples per second of evaluation. */
  eval_samples_per_s: number;
  /** Seconds spent in `strategy.train`, over all experiences. */
  train_wall_s: number;
  /** Seconds spent in `strategy.eval`, over all evaluations. */
  eval_wall_s: number;
  /** Seconds from building the model to disposing of it. */
  wall_s: number;
  /** Mean of the last row of the accuracy matrix (4 decimals). */
  final_avg_acc: number;
  /** Peak resident set size seen during the run, MiB. */
  peak_rss_mb: number;
  /** Live tensors before building the model. */
  tensors_start: number;
  /** Live tensors after disposing of the strategy and the model. */
  tensors_end: number;
  /** `tensors_end - tensors_start`: 0 unless something leaks. */
  tensors_leaked: number;
}

/** What {@link runBench} returns for each strategy (the bench prints it as one JSON line). */
export interface BenchResult extends BenchRun {
  /** Name of the strategy in the table. */
  strategy: string;
  /** Active tfjs backend ("wasm", "cpu", "tensorflow"). */
  backend: string;
  /** The benchmark ("SplitFMNIST"). */
  benchmark: string;
  /** Seed of the run. */
  seed: number;
  /** Epochs per experience. */
  epochs: number;
  /** Training minibatch size. */
  batch: number;
  /** Evaluation minibatch size. */
  eval_batch: number;
  /** Training samples per experience, after any `trainLimit`. */
  train_sizes: number[];
  /** Test samples per experience, after any `testLimit`. */
  test_sizes: number[];
  /** All samples trained on (first run), replayed ones included. */
  samples_seen: number;
  /** Samples of the experiences themselves trained on (first run). */
  new_samples_seen: number;
  /** Samples evaluated (first run). */
  eval_samples: number;
  /** Row i: accuracy on each test experience after training experience i (first run). */
  acc_matrix: number[][];
  /** Streams held as float32 tensors (option `resident`). */
  resident_streams: string[];
  /** Seconds to load and split the data (once, shared by every strategy). */
  data_load_s: number;
  /** `trainLimit` when the run was subsampled, else null. */
  train_limit: number | null;
  /** `testLimit` when the test stream was subsampled, else null. */
  test_limit: number | null;
  /** True when the workload was reduced (not comparable with the reference). */
  quick: boolean;
  /** Runs of the strategy. */
  repeats: number;
  /** Every run's measures when `repeats > 1`; the top-level rates and times are their medians. */
  runs?: BenchRun[];
}

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError("median of an empty list");
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const round = (v: number, digits: number) => {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
};

function positiveInt(name: string, v: number | undefined, min = 1): void {
  if (v !== undefined && (!Number.isInteger(v) || v < min)) {
    throw new RangeError(`${name} must be an integer ≥ ${min}, got ${v}`);
  }
}

/**
 * Checks strategy names against the table; throws an error naming the unknown one(s) and listing
 * the available names.
 */
export function resolveStrategies(
  names: readonly string[] | undefined,
  factories: Readonly<Record<string, StrategyFactory>> = BENCH_STRATEGIES,
): string[] {
  const available = Object.keys(factories);
  const list = names === undefined ? available : names.map((n) => n.trim()).filter(Boolean);
  if (list.length === 0) {
    throw new RangeError(`No strategy to run: choose among ${available.join(", ")}`);
  }
  const unknown = list.filter((n) => !Object.hasOwn(factories, n));
  if (unknown.length) {
    throw new RangeError(
      `Unknown strategy ${unknown.map((n) => `"${n}"`).join(", ")}: available strategies are ` +
        available.join(", "),
    );
  }
  return list;
}

const rssMiB = () => Deno.memoryUsage().rss / (1024 * 1024);

/**
 * Loads the Split Fashion-MNIST workload (fixed class order, Fashion-MNIST normalization),
 * subsampled when `trainLimit` / `testLimit` are given.
 */
export async function loadBenchWorkload(
  opts: Pick<BenchOptions, "dataDir" | "data" | "seed" | "trainLimit" | "testLimit"> = {},
): Promise<ClassIncrementalBenchmark> {
  checkOptions("loadBenchWorkload", opts, {
    dataDir: "string",
    data: "object",
    seed: "integer",
    trainLimit: "integer",
    testLimit: "integer",
  });
  const seed = opts.seed ?? 0;
  let bench = await splitFMNIST({
    experiences: BENCH_WORKLOAD.experiences,
    fixedClassOrder: BENCH_WORKLOAD.classOrder,
    seed,
    dataDir: opts.dataDir,
    data: opts.data,
  });
  if (opts.trainLimit !== undefined || opts.testLimit !== undefined) {
    bench = subsample(bench, {
      trainPerExperience: opts.trainLimit,
      testPerExperience: opts.testLimit,
      seed,
    });
  }
  return bench;
}

async function runOnce(
  factory: StrategyFactory,
  bench: ClassIncrementalBenchmark,
  cfg: { seed: number; epochs: number; rssEvery: number; log: (s: string) => void; tag: string },
): Promise<
  { run: BenchRun; samples: number; newSamples: number; evalSamples: number; acc: number[][] }
> {
  let peak = rssMiB();
  const sample = () => {
    peak = Math.max(peak, rssMiB());
  };
  const rssPlugin: Plugin = {
    name: "benchRss",
    afterTrainingIteration: (ctx) => {
      if (ctx.clock.trainIterations % cfg.rssEvery === 0) sample();
    },
  };
  const tensorsStart = tf.memory().numTensors;
  const start = performance.now();
  seedGlobal(cfg.seed);
  const model = mlp({
    input: BENCH_WORKLOAD.input,
    hidden: [...BENCH_WORKLOAD.hidden],
    outputs: BENCH_WORKLOAD.outputs,
    seed: cfg.seed,
  });
  let strategy: Strategy | undefined;
  let trainS = 0, evalS = 0, samples = 0, newSamples = 0, evalSamples = 0;
  let acc: number[][];
  try {
    strategy = factory(model, {
      optimizer: sgd({ lr: BENCH_WORKLOAD.lr, momentum: BENCH_WORKLOAD.momentum }),
      epochs: cfg.epochs,
      batchSize: BENCH_WORKLOAD.batchSize,
      evalBatchSize: BENCH_WORKLOAD.evalBatchSize,
      seed: cfg.seed,
      plugins: [rssPlugin],
    });
    for (const exp of bench.train) {
      let t0 = performance.now();
      const tr = await strategy.train(exp);
      const dt = (performance.now() - t0) / 1000;
      trainS += dt;
      samples += tr.samples;
      newSamples += exp.dataset.length * tr.epochs.length;
      sample();
      t0 = performance.now();
      const ev = await strategy.eval(bench.test);
      const de = (performance.now() - t0) / 1000;
      evalS += de;
      evalSamples += ev.samples;
      sample();
      cfg.log(
        `${cfg.tag} exp ${exp.id + 1}/${bench.train.length}: trained ${tr.samples} samples in ` +
          `${dt.toFixed(2)} s (${Math.round(tr.samples / dt)}/s); eval ${ev.samples} in ` +
          `${de.toFixed(2)} s, stream accuracy ${ev.accuracy.toFixed(4)}`,
      );
    }
    acc = strategy.accuracyMatrix("test");
  } finally {
    strategy?.dispose();
    model.dispose();
  }
  const wall = (performance.now() - start) / 1000;
  sample();
  const tensorsEnd = tf.memory().numTensors;
  const last = acc[acc.length - 1] ?? [];
  return {
    run: {
      train_samples_per_s: round(samples / trainS, 1),
      new_samples_per_s: round(newSamples / trainS, 1),
      eval_samples_per_s: round(evalSamples / evalS, 1),
      train_wall_s: round(trainS, 3),
      eval_wall_s: round(evalS, 3),
      wall_s: round(wall, 3),
      final_avg_acc: round(last.reduce((a, b) => a + b, 0) / Math.max(1, last.length), 4),
      peak_rss_mb: round(peak, 1),
      tensors_start: tensorsStart,
      tensors_end: tensorsEnd,
      tensors_leaked: tensorsEnd - tensorsStart,
    },
    samples,
    newSamples,
    evalSamples,
    acc: acc.map((row) => row.map((v) => round(v, 4))),
  };
}

const MEDIAN_KEYS = [
  "train_samples_per_s",
  "new_samples_per_s",
  "eval_samples_per_s",
  "train_wall_s",
  "eval_wall_s",
  "wall_s",
] as const;

/**
 * Runs the workload once (or `repeats` times) per strategy and returns one result per strategy.
 * The backend is set once; each run loads the data anew (untimed; `data_load_s` is the first
 * load), builds a fresh model and strategy from the same seed, and disposes of both before
 * counting live tensors.
 *
 * @example
 * ```ts ignore
 * const [r] = await runBench({ strategies: ["naive"], dataDir: "data" });
 * console.log(r.train_samples_per_s, r.final_avg_acc, r.tensors_leaked);
 * ```
 */
export async function runBench(opts: BenchOptions = {}): Promise<BenchResult[]> {
  checkOptions("runBench", opts, BENCH_OPTIONS);
  const factories = opts.factories ?? BENCH_STRATEGIES;
  const names = resolveStrategies(opts.strategies, factories);
  const repeats = opts.repeats ?? 1;
  const seed = opts.seed ?? 0;
  const epochs = opts.epochs ?? BENCH_WORKLOAD.epochs;
  const rssEvery = opts.rssEvery ?? 50;
  const resident = [...(opts.resident ?? ["train", "test"])];
  positiveInt("repeats", repeats);
  positiveInt("seed", seed, 0);
  positiveInt("epochs", epochs);
  positiveInt("rssEvery", rssEvery);
  positiveInt("trainLimit", opts.trainLimit);
  positiveInt("testLimit", opts.testLimit);
  const log = opts.log ?? (() => {});
  const { dataDir, data, trainLimit, testLimit } = opts;
  const workloadOptions = { dataDir, data, seed, trainLimit, testLimit };

  const backend = await setBackend(opts.backend ?? "auto");
  const skipped = backend.skipped.map((s) => `${s.name}: ${s.reason}`).join("; ");
  log(`backend ${backend.name}${skipped ? ` (skipped ${skipped})` : ""}`);

  const t0 = performance.now();
  const bench = await loadBenchWorkload(workloadOptions);
  const dataLoad = (performance.now() - t0) / 1000;
  const trainSizes = bench.train.map((e) => e.dataset.length);
  const testSizes = bench.test.map((e) => e.dataset.length);
  log(
    `data loaded in ${dataLoad.toFixed(2)} s: train ${trainSizes.join("/")}, test ` +
      `${testSizes.join("/")}, classes ${bench.train.map((e) => `[${e.classes}]`).join(" ")}`,
  );

  const results: BenchResult[] = [];
  for (const name of names) {
    const runs: Awaited<ReturnType<typeof runOnce>>[] = [];
    for (let r = 0; r < repeats; r++) {
      const tag = repeats > 1 ? `${name} run ${r + 1}/${repeats}` : name;
      // Every run gets data of its own, as a fresh process would (and each run of the reference
      // is one): no run inherits another's input caches.
      const data = results.length === 0 && r === 0
        ? bench
        : await loadBenchWorkload(workloadOptions);
      // Before the run's clock and tensor count start, as the reference's load.
      const held = resident.length ? residentBenchmark(data, { streams: resident }) : undefined;
      try {
        runs.push(
          await runOnce(factories[name], held ?? data, { seed, epochs, rssEvery, log, tag }),
        );
      } finally {
        held?.dispose();
      }
      await opts.afterRun?.(name, r);
    }
    const first = runs[0];
    const summary: BenchRun = { ...first.run };
    if (repeats > 1) {
      for (const k of MEDIAN_KEYS) {
        summary[k] = round(median(runs.map((r) => r.run[k])), k.endsWith("_s") ? 3 : 1);
      }
      summary.peak_rss_mb = Math.max(...runs.map((r) => r.run.peak_rss_mb));
      summary.tensors_end = runs[runs.length - 1].run.tensors_end;
      summary.tensors_leaked = summary.tensors_end - summary.tensors_start;
    }
    results.push({
      strategy: name,
      backend: backend.name,
      benchmark: BENCH_WORKLOAD.benchmark,
      seed,
      epochs,
      batch: BENCH_WORKLOAD.batchSize,
      eval_batch: BENCH_WORKLOAD.evalBatchSize,
      train_sizes: trainSizes,
      test_sizes: testSizes,
      samples_seen: first.samples,
      new_samples_seen: first.newSamples,
      eval_samples: first.evalSamples,
      ...summary,
      acc_matrix: first.acc,
      resident_streams: resident,
      data_load_s: round(dataLoad, 3),
      train_limit: opts.trainLimit ?? null,
      test_limit: opts.testLimit ?? null,
      quick: opts.trainLimit !== undefined || opts.testLimit !== undefined,
      repeats,
      ...(repeats > 1 ? { runs: runs.map((r) => r.run) } : {}),
    });
  }
  return results;
}

/** One strategy's figures from `torch_ref.py` (the fields the comparison uses). */
export interface TorchStrategyResult {
  /** Strategy name. */
  strategy: string;
  /** All samples trained on per second, replayed ones included. */
  train_samples_per_s: number;
  /** New samples trained on per second. */
  new_samples_per_s: number;
  /** Training seconds. */
  train_wall_s: number;
  /** Evaluation seconds. */
  eval_wall_s: number;
  /** Samples evaluated. */
  eval_samples: number;
  /** Mean of the last row of the accuracy matrix. */
  final_avg_acc: number;
  /** Accuracy matrix. */
  acc_matrix: number[][];
  /** Other fields (`samples_seen`, `optimizer_steps`, ...). */
  [key: string]: unknown;
}

/** The JSON object `torch_ref.py` prints. */
export interface TorchOutput {
  /** torch version. */
  torch: string;
  /** Python version. */
  python?: string;
  /** The `--threads` argument. */
  threads_arg?: string;
  /** `torch.get_num_threads()`. */
  torch_num_threads?: number;
  /** Seconds to load the data. */
  data_load_s?: number;
  /**
   * Peak resident memory of the reference's process in MiB (all its strategies), when the
   * runner measured it (`runTorchReference` does).
   */
  peak_rss_mb?: number;
  /** One entry per strategy. */
  results: TorchStrategyResult[];
  /** Other fields (`blas_pools`, `train_sizes`, ...). */
  [key: string]: unknown;
}

/** One line of the comparison with the PyTorch reference. */
export interface TorchComparison {
  /** Marks the line as the reference's figures. */
  reference: "torch";
  /** Strategy name. */
  strategy: string;
  /** torch version. */
  torch: string;
  /** `torch.get_num_threads()` of the reference. */
  torch_num_threads: number | null;
  /** The reference's BLAS thread pools as `torch_ref.py` reports them (null when unknown). */
  blas_pools: unknown;
  /** Our backend. */
  backend: string;
  /** The reference's training samples/s, replayed included (median over its runs). */
  train_samples_per_s: number;
  /** The reference's new samples/s (median). */
  new_samples_per_s: number;
  /** The reference's evaluation samples/s (median). */
  eval_samples_per_s: number;
  /** The reference's training seconds (median). */
  train_wall_s: number;
  /** The reference's evaluation seconds (median). */
  eval_wall_s: number;
  /** The reference's final average accuracy (first run). */
  final_avg_acc: number;
  /** The reference's accuracy matrix (first run). */
  acc_matrix: number[][];
  /** Ours / torch training samples per second. */
  ratio_train: number;
  /** Ours / torch evaluation samples per second. */
  ratio_eval: number;
  /**
   * Peak RSS in MiB of the reference's processes that ran this strategy (the largest), or null.
   */
  peak_rss_mb: number | null;
  /** Our peak RSS / the reference's, or null when it was not measured. */
  ratio_rss: number | null;
  /** Our final average accuracy minus torch's. */
  acc_diff: number;
  /** True when our run was reduced (`trainLimit`/`testLimit`) while torch ran the full workload. */
  quick: boolean;
  /** Number of torch runs the figures are medians of. */
  torch_runs: number;
}

/**
 * Pairs our results with the reference's, strategy by strategy (medians when several torch runs
 * are given). Strategies the reference lacks are left out.
 */
export function compareWithTorch(
  ours: readonly BenchResult[],
  torchRuns: readonly TorchOutput[],
): TorchComparison[] {
  if (torchRuns.length === 0) return [];
  const out: TorchComparison[] = [];
  for (const r of ours) {
    const refs = torchRuns.map((t) => t.results.find((x) => x.strategy === r.strategy))
      .filter((x): x is TorchStrategyResult => x !== undefined);
    if (refs.length === 0) continue;
    const med = (f: (x: TorchStrategyResult) => number) => median(refs.map(f));
    const rssRuns = torchRuns.filter((t) => t.results.some((x) => x.strategy === r.strategy))
      .map((t) => t.peak_rss_mb).filter((v): v is number => v! > 0);
    const rss = rssRuns.length ? round(Math.max(...rssRuns), 1) : undefined;
    const train = med((x) => x.train_samples_per_s);
    const evalRate = med((x) => x.eval_samples / x.eval_wall_s);
    out.push({
      reference: "torch",
      strategy: r.strategy,
      torch: torchRuns[0].torch,
      torch_num_threads: torchRuns[0].torch_num_threads ?? null,
      blas_pools: torchRuns[0].blas_pools ?? null,
      backend: r.backend,
      train_samples_per_s: round(train, 1),
      new_samples_per_s: round(med((x) => x.new_samples_per_s), 1),
      eval_samples_per_s: round(evalRate, 1),
      train_wall_s: round(med((x) => x.train_wall_s), 3),
      eval_wall_s: round(med((x) => x.eval_wall_s), 3),
      final_avg_acc: refs[0].final_avg_acc,
      acc_matrix: refs[0].acc_matrix,
      ratio_train: round(r.train_samples_per_s / train, 3),
      ratio_eval: round(r.eval_samples_per_s / evalRate, 3),
      peak_rss_mb: rss ?? null,
      ratio_rss: rss ? round(r.peak_rss_mb / rss, 3) : null,
      acc_diff: round(r.final_avg_acc - refs[0].final_avg_acc, 4),
      quick: r.quick,
      torch_runs: refs.length,
    });
  }
  return out;
}
