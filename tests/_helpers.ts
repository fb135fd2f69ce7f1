/** Shared fixtures of the test suite: a tiny learnable class-incremental benchmark. */
import { syntheticImages } from "../datasets/mod.ts";
import { classIncremental, type ClassIncrementalBenchmark } from "../lib/benchmarks/mod.ts";
import { toArrayDatasets } from "../lib/benchmarks/classic.ts";
import type { Experience } from "../lib/data/experience.ts";
import type {
  EvalResult,
  Strategy,
  StrategyOptions,
  StrategyState,
} from "../lib/strategy/template.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { type OnlineBenchmark, splitMNIST, splitOnline, subsample } from "../lib/benchmarks/mod.ts";
import { type Classifier, mlp } from "../lib/models/mlp.ts";
import { permutedMNIST } from "../lib/benchmarks/classic.ts";
import { setBackend } from "../lib/backend.ts";
import { registerBlasBackend } from "../lib/backends/blas.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";

/** The repository's sibling `shared/datasets` folder, or undefined when absent. */
export const SHARED_DATA: string | undefined = (() => {
  const dir = new URL("../../shared/datasets", import.meta.url).pathname;
  try {
    Deno.statSync(`${dir}/mnist/train-images-idx3-ubyte.gz`);
    return dir;
  } catch {
    console.warn(`shared datasets not found at ${dir}: tests on real data are skipped`);
    return undefined;
  }
})();

/** 4 classes of 8×8 synthetic images in 2 experiences of 2 classes (natural order). */
export function toyBenchmark(
  opts: { n?: number; classes?: number; experiences?: number; seed?: number } = {},
): ClassIncrementalBenchmark {
  const classes = opts.classes ?? 4;
  const n = opts.n ?? 80;
  const data = {
    name: "toy",
    classes,
    train: syntheticImages({ n, classes, rows: 8, cols: 8, seed: opts.seed ?? 1 }),
    test: syntheticImages({
      n: Math.ceil(n / 2),
      classes,
      rows: 8,
      cols: 8,
      seed: (opts.seed ?? 1) + 100,
    }),
  };
  const { train, test } = toArrayDatasets(data, { normalize: false });
  return classIncremental({
    train,
    test,
    experiences: opts.experiences ?? 2,
    fixedClassOrder: Array.from({ length: classes }, (_, i) => i),
    name: "Toy",
  });
}

/** What {@link checkResume} compares. */
export interface ResumeCase {
  /** A strategy whose model starts from `modelSeed` (the resumed run uses another seed). */
  make: (modelSeed: number) => Strategy;
  train: readonly Experience[];
  test: readonly Experience[];
  /** Training experiences before the checkpoint. @default 1 */
  cut?: number;
  /** Evaluate the test stream after every training experience (plugins may depend on it). */
  evalEach?: boolean;
  /** Checks on the resumed strategy right after `restore`. */
  afterRestore?: (resumed: Strategy) => void;
  /** Further checks once both runs ended (before they are disposed). */
  check?: (full: Strategy, resumed: Strategy, saved: StrategyState) => void;
}

/**
 * A run checkpointed after `cut` experiences (through JSON), restored into a strategy with other
 * initial weights and trained on, must end exactly as the uninterrupted run: same evaluation
 * and the same weights. Disposes both runs. Returns the checkpoint.
 */
export async function checkResume(c: ResumeCase): Promise<StrategyState> {
  const cut = c.cut ?? 1;
  const run = async (s: Strategy, exps: readonly Experience[]) => {
    let last: EvalResult | undefined;
    for (const [i, exp] of exps.entries()) {
      await s.train(exp);
      if (c.evalEach || i === exps.length - 1) last = await s.eval(c.test);
    }
    return last!;
  };
  const full = c.make(1);
  const fullEval = await run(full, c.train);

  const first = c.make(1);
  for (const exp of c.train.slice(0, cut)) {
    await first.train(exp);
    if (c.evalEach) await first.eval(c.test);
  }
  const saved: StrategyState = JSON.parse(JSON.stringify(first.checkpoint()));
  first.dispose();
  first.model.dispose();

  const resumed = c.make(99); // other initial weights: everything must come from the checkpoint
  try {
    await resumed.restore(saved);
    c.afterRestore?.(resumed);
    const resumedEval = await run(resumed, c.train.slice(cut));
    assert.deepEqual(resumedEval.experiences, fullEval.experiences);
    assert.deepEqual(resumed.model.stateDict(), full.model.stateDict());
    c.check?.(full, resumed, saved);
  } finally {
    for (const s of [full, resumed]) {
      s.dispose();
      s.model.dispose();
    }
  }
  return saved;
}

/**
 * Trains a strategy with `plugin` on an online toy stream (experiences of 10 samples), evaluating
 * after each, and asserts that the tensor count stays flat after the first experience and comes
 * back to where it started once everything is disposed. `outputs` is the model's output width.
 */
export async function assertNoTensorGrowth(
  plugin: Plugin,
  opts: { outputs?: number } = {},
): Promise<void> {
  const start = tf.memory().numTensors;
  const bench = splitOnline(toyBenchmark({ n: 120, experiences: 2 }), { experienceSize: 10 });
  const model = mlp({ input: 64, hidden: [16], outputs: opts.outputs ?? 4, seed: 0 });
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [plugin] });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  const base = tf.memory().numTensors;
  for (const exp of bench.train.slice(1)) {
    await s.train(exp);
    await s.eval(bench.test);
    assert.equal(tf.memory().numTensors, base);
  }
  s.dispose();
  plugin.dispose?.();
  model.dispose();
  assert.equal(tf.memory().numTensors, start);
}

/**
 * Online class-incremental Split MNIST from the shared datasets: `trainPerExperience` training
 * and `testPerExperience` test samples of each experience, the training ones cut into online
 * experiences of `experienceSize`.
 */
export async function onlineSplitMNIST(
  trainPerExperience: number,
  opts: { testPerExperience?: number; experienceSize?: number } = {},
): Promise<OnlineBenchmark> {
  const full = await splitMNIST({ dataDir: SHARED_DATA, seed: 0 });
  return splitOnline(
    subsample(full, {
      trainPerExperience,
      testPerExperience: opts.testPerExperience ?? 200,
      seed: 0,
    }),
    { experienceSize: opts.experienceSize ?? 10 },
  );
}

/** Settings of {@link againstNaiveOnSplitMNIST}. */
export interface SplitMNISTComparison {
  /** The method's name in the log line. */
  label: string;
  /** Builds the method's strategy from the shared strategy options. */
  method: (opts: StrategyOptions) => Strategy;
  trainPerExperience: number;
  /** Hidden layer widths of the MLP. */
  hidden: number[];
  lr: number;
  batchSize: number;
  epochs: number;
}

/**
 * Trains Naive and then the method on class-incremental Split MNIST from the shared datasets
 * (`trainPerExperience` training and 500 test samples per experience, SGD with momentum 0.9,
 * the same MLP seed), logs both mean accuracies and returns both evaluations of the test
 * stream, for the caller's assertions.
 */
export async function againstNaiveOnSplitMNIST(
  c: SplitMNISTComparison,
): Promise<{ base: EvalResult; ours: EvalResult }> {
  const full = await splitMNIST({ experiences: 5, seed: 0, dataDir: SHARED_DATA });
  const bench = subsample(full, {
    trainPerExperience: c.trainPerExperience,
    testPerExperience: 500,
    seed: 0,
  });
  const run = async (withMethod: boolean) => {
    const model = mlp({ hidden: c.hidden, seed: 0 });
    const opts: StrategyOptions = {
      model,
      optimizer: sgd({ lr: c.lr, momentum: 0.9 }),
      batchSize: c.batchSize,
      epochs: c.epochs,
      seed: 0,
    };
    const s = withMethod ? c.method(opts) : naive(opts);
    for (const e of bench.train) await s.train(e);
    const r = await s.eval(bench.test);
    s.dispose();
    model.dispose();
    return r;
  };
  const t0 = performance.now();
  const base = await run(false);
  const ours = await run(true);
  console.log(
    `Split MNIST (${c.trainPerExperience} train / 500 test per experience, ${c.epochs} epochs, ` +
      `batch ${c.batchSize}): naive ${base.meanAccuracy.toFixed(3)}, ${c.label} ${
        ours.meanAccuracy.toFixed(3)
      } [${ours.experiences.map((e) => e.accuracy.toFixed(2))}] in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s`,
  );
  return { base, ours };
}

/**
 * {@link checkResume} on an online toy stream (experiences of 10 samples), cut after the fourth
 * experience: the usual check of an online method's checkpoint.
 */
export async function checkOnlineResume(
  make: (modelSeed: number) => Strategy,
  check: ResumeCase["check"],
): Promise<StrategyState> {
  const bench = splitOnline(toyBenchmark({ n: 120, experiences: 2 }), { experienceSize: 10 });
  return await checkResume({ make, train: bench.train, test: bench.test, cut: 4, check });
}

/**
 * Trains Naive and then the method (`method(opts)`, from the same options) on Permuted MNIST
 * from the shared datasets (3 experiences, 1000 training and 1000 test samples each; MLP of 256
 * units, seed 0; SGD lr 0.01 momentum 0.9; 2 epochs of batches of 32), logs both mean accuracies
 * and returns both evaluations of the test stream, for the caller's assertions.
 */
export async function againstNaiveOnPermutedMNIST(
  label: string,
  method: (opts: StrategyOptions) => Strategy,
): Promise<{ base: EvalResult; ours: EvalResult }> {
  const bench = subsample(await permutedMNIST({ experiences: 3, dataDir: SHARED_DATA }), {
    trainPerExperience: 1000,
    testPerExperience: 1000,
  });
  const run = async (withMethod: boolean) => {
    const model = mlp({ hidden: [256], seed: 0 });
    const opts: StrategyOptions = {
      model,
      epochs: 2,
      batchSize: 32,
      seed: 0,
      optimizer: sgd({ lr: 0.01, momentum: 0.9 }),
    };
    const s = withMethod ? method(opts) : naive(opts);
    for (const exp of bench.train) await s.train(exp);
    const r = await s.eval(bench.test);
    (s.plugins[0] as { dispose?: () => void } | undefined)?.dispose?.();
    s.dispose();
    model.dispose();
    return r;
  };
  const base = await run(false);
  const ours = await run(true);
  console.log(
    `Permuted MNIST final average accuracy: naive ${base.meanAccuracy.toFixed(3)} ` +
      `[${base.experiences.map((e) => e.accuracy.toFixed(2))}], ${label} ${
        ours.meanAccuracy.toFixed(3)
      } [${ours.experiences.map((e) => e.accuracy.toFixed(2))}]`,
  );
  return { base, ours };
}

/**
 * Registers, for the wasm and blas backends (blas skipped with its reason where it cannot load),
 * the test that a method trains bit for bit the same with and without the tape: `build(model,
 * plugins)` makes the strategy (its first plugin the method's), trained for two experiences of a
 * toy benchmark once as planned (it must take the tape-free step) and once with a plugin that
 * forces the tape; the epoch losses and every parameter's bits must agree, and no tensor stay.
 */
export async function tapeFreeMatchesTape(
  label: string,
  build: (model: Classifier, plugins: Plugin[]) => Strategy,
): Promise<void> {
  const trainBits = async (tape: boolean) => {
    const bench = toyBenchmark({ n: 80 });
    const model = mlp({ input: 64, hidden: [16, 12], outputs: 4, seed: 3 });
    const steps = new Set<string>();
    const plugins: Plugin[] = [{
      name: "seen",
      afterBackward: (ctx) => void steps.add(ctx.step!.step),
    }];
    if (tape) plugins.push({ name: "tape", beforeForward: () => {} });
    const s = build(model, plugins);
    const losses: number[] = [];
    for (const exp of bench.train) {
      for (const e of (await s.train(exp)).epochs) losses.push(e.loss);
    }
    const params = new Map(
      [...model.namedParameters()].map(([n, v]) => [n, new Uint32Array(v.dataSync().buffer)]),
    );
    (s.plugins[0] as { dispose?: () => void }).dispose?.();
    s.dispose();
    model.dispose();
    return { params, losses, steps: [...steps] };
  };
  const blas = await registerBlasBackend();
  for (const backend of ["wasm", "blas"] as const) {
    const skip = backend === "blas" && !blas.ok ? blas.reason : undefined;
    Deno.test({
      name: `${label} trains bit for bit the same with and without the tape (${backend})` +
        (skip ? ` (skipped: ${skip})` : ""),
      ignore: skip !== undefined,
      fn: async () => {
        await setBackend(backend);
        try {
          const before = tf.memory().numTensors;
          const free = await trainBits(false);
          const tape = await trainBits(true);
          assert.deepEqual(free.steps, ["tape-free"], `${label}'s penalty has a tape-free form`);
          assert.deepEqual(tape.steps, ["tape"]);
          assert.deepEqual(free.losses, tape.losses);
          for (const [name, bits] of tape.params) {
            assert.deepEqual(free.params.get(name), bits, name);
          }
          assert.equal(tf.memory().numTensors, before, "no tensor left behind");
        } finally {
          await setBackend("wasm");
        }
      },
    });
  }
}
