/**
 * Deep Generative Replay (Shin et al., "Continual Learning with Deep Generative Replay", NeurIPS
 * 2017), as Avalanche 0.6's `GenerativeReplayPlugin`, `TrainGeneratorAfterExpPlugin`,
 * `GenerativeReplay` and `VAETraining`: a generator (a VAE) learns the inputs of every experience;
 * while the solver learns a new experience, each minibatch is extended with samples of the
 * previous generator labelled by the previous solver.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Batch } from "../data/dataset.ts";
import { MNIST_STATS } from "../benchmarks/classic.ts";
import {
  type Generator,
  isGenerator,
  MlpVAE,
  mlpVAE,
  RECONSTRUCTIONS,
  vaeCriterion,
} from "../models/vae.ts";
import type { Reconstruction } from "../nn/losses.ts";
import { isCloneable, type Module, type ModuleState } from "../nn/module.ts";
import { adam } from "../optim/optimizers.ts";
import type { StrategyContext, TensorBatch } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import { Strategy, type StrategyOptions, type StrategyState } from "../strategy/template.ts";
import { anyOf, checkOptions, instanceOf, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";

// -------------------------------------------------------------------------------- plugin ----

/** Generator strategies made by {@link generativeReplay}, whose models the plugin disposes. */
const BUILT_GENERATORS = new WeakSet<Strategy>();

/** Options of {@link GenerativeReplayPlugin} (Avalanche's parameters, camelCase). */
export interface GenerativeReplayPluginOptions {
  /**
   * The strategy that trains the generator (e.g. {@link vaeTraining}); it is trained on each
   * experience after the solver. Null: the strategy's own model is the generator (how the
   * generator strategy replays its own samples). @default null
   */
  generatorStrategy?: Strategy | null;
  /** No replay before the first experience has been learned. @default true */
  untrainedSolver?: boolean;
  /** Generated samples per minibatch. Default: as many as the minibatch has. */
  replaySize?: number | null;
  /** Without `replaySize`: the minibatch size times the experience's index. @default false */
  increasingReplaySize?: boolean;
  /** Replay as a separate, weighted loss term instead of extending the minibatch. @default false */
  isWeightedReplay?: boolean;
  /** The weight is multiplied by this after every iteration. @default 1 */
  weightReplayLossFactor?: number;
  /** Initial weight of the replay term. @default 0.0001 */
  weightReplayLoss?: number;
}

const GENERATIVE_REPLAY_PLUGIN_OPTIONS: OptionSpec<GenerativeReplayPluginOptions> = {
  generatorStrategy: anyOf(instanceOf(Strategy, "a strategy"), "null"),
  untrainedSolver: "boolean",
  replaySize: anyOf("integer", "null"),
  increasingReplaySize: "boolean",
  isWeightedReplay: "boolean",
  weightReplayLossFactor: "number",
  weightReplayLoss: "number",
};

/** Plain-data state of {@link GenerativeReplayPlugin}. */
export interface GenerativeReplayPluginState {
  version: 1;
  untrainedSolver: boolean;
  weightReplayLoss: number;
  /** The copies made before the current experience (null before any). */
  oldGenerator: ModuleState | null;
  oldModel: ModuleState | null;
  /** The generator strategy's checkpoint, when it is a strategy of its own. */
  generator: StrategyState | null;
}

function freeze(model: Module): void {
  for (const v of model.namedParameters().values()) (v as { trainable: boolean }).trainable = false;
  model.eval();
}

function copyOf(model: Module, what: string): Module {
  if (!isCloneable(model)) {
    throw new TypeError(
      `Generative replay keeps a copy of the ${what}: give it a clone() method (mlp, cnn and ` +
        `mlpVAE models have one)`,
    );
  }
  const c = model.clone();
  freeze(c);
  return c;
}

/** The minibatch `batch` followed by `x` (inputs) with labels `y` and task label `task`. */
function extendBatch(batch: TensorBatch, x: tf.Tensor, y: Int32Array, task: number): TensorBatch {
  const m = y.length, n = batch.n + m;
  const labels = new Int32Array(n), tasks = new Int32Array(n);
  labels.set(batch.data.y);
  labels.set(y, batch.n);
  tasks.set(batch.data.t);
  tasks.fill(task, batch.n);
  const inputs = tf.concat([batch.x, x], 0);
  let values: Float32Array | undefined;
  const data: Batch = {
    get x(): Float32Array {
      return values ??= Float32Array.from(inputs.dataSync() as Float32Array);
    },
    set x(v: Float32Array) {
      values = v;
    },
    y: labels,
    t: tasks,
    n,
  };
  return {
    x: inputs,
    y: tf.tensor1d(labels, "int32"),
    t: tf.tensor1d(tasks, "int32"),
    n,
    data,
    parts: batch.parts,
  };
}

/**
 * Generative replay, Avalanche 0.6's `GenerativeReplayPlugin` together with its
 * `TrainGeneratorAfterExpPlugin`, checked against `avalanche/training/plugins/generative_replay.py`
 * and `training/supervised/strategy_wrappers.py` (`GenerativeReplay`, `VAETraining`):
 *
 * - `beforeTraining`: with no generator strategy, the strategy's own model is the generator
 *   (`modelIsGenerator`; replayed samples then get the mock label 0, as Avalanche);
 * - `beforeTrainingExp`, once an experience has been learned (`untrainedSolver` false): frozen
 *   copies of the generator and, unless it is the generator, of the solver (eval mode);
 * - `beforeTrainingIteration` (unless `isWeightedReplay`): `replaySize` samples of the old
 *   generator (default: the minibatch's size; with `increasingReplaySize`, that times the
 *   experience's index) are appended to the minibatch, labelled by the argmax of the old solver,
 *   with the minibatch's first task label;
 * - `beforeBackward` (with `isWeightedReplay`): as many samples through the model, their
 *   criterion times `weightReplayLoss` added as the term `"generativeReplay"`, and the weight
 *   multiplied by `weightReplayLossFactor`;
 * - `afterTrainingExp`: the generator strategy is trained on the experience (Avalanche's
 *   `TrainGeneratorAfterExpPlugin`, merged here), and replay starts from the next experience.
 *
 * The extended minibatch's `parts` list its real samples only (the generated ones follow them).
 * Shin et al. weigh the new task's loss against the replayed one by a ratio `r`; Avalanche (and
 * we) concatenate instead, or weigh the replay alone (`isWeightedReplay`).
 *
 * Samples are drawn from the run's seeded generator (`ctx.rng`). The generator strategy's whole
 * checkpoint is part of this plugin's state, so a restored solver restores its generator too.
 * Avalanche's `GenerativeReplay` strategy puts `TrainGeneratorAfterExpPlugin` and this plugin
 * after the user's plugins; {@link generativeReplay} puts this one first, as our other builders.
 *
 * @example
 * ```ts ignore
 * import { GenerativeReplayPlugin, mlp, mlpVAE, naive, vaeTraining } from "../../mod.ts";
 * const generator = vaeTraining({ model: mlpVAE({ shape: [1, 28, 28], nhid: 2 }) });
 * const strategy = naive({ model: mlp(), plugins: [new GenerativeReplayPlugin(generator)] });
 * ```
 */
export class GenerativeReplayPlugin extends StrategyPlugin {
  generatorStrategy: Strategy | null;
  /** True until an experience has been learned (no replay yet). */
  untrainedSolver: boolean;
  readonly replaySize: number | null;
  readonly increasingReplaySize: boolean;
  readonly isWeightedReplay: boolean;
  readonly weightReplayLossFactor: number;
  /** The current weight of the replay term (`isWeightedReplay`). */
  weightReplayLoss: number;
  #modelIsGenerator = false;
  #oldGenerator: (Module & Generator) | undefined;
  #oldModel: Module | undefined;

  /**
   * Avalanche's positional parameters, or all options as an object.
   * @param generatorStrategy the generator's strategy, or null (the model is the generator).
   */
  constructor(
    generatorStrategy: Strategy | null | GenerativeReplayPluginOptions = null,
    untrainedSolver = true,
    replaySize: number | null = null,
    increasingReplaySize = false,
    isWeightedReplay = false,
    weightReplayLossFactor = 1.0,
    weightReplayLoss = 0.0001,
  ) {
    super();
    const o: GenerativeReplayPluginOptions = generatorStrategy !== null &&
        typeof generatorStrategy === "object" && !(generatorStrategy instanceof Strategy)
      ? checkOptions("GenerativeReplayPlugin", generatorStrategy, GENERATIVE_REPLAY_PLUGIN_OPTIONS)
      : {
        generatorStrategy,
        untrainedSolver,
        replaySize,
        increasingReplaySize,
        isWeightedReplay,
        weightReplayLossFactor,
        weightReplayLoss,
      };
    const g = o.generatorStrategy ?? null;
    if (g !== null && !(g instanceof Strategy)) {
      throw new TypeError(
        `GenerativeReplayPlugin generatorStrategy must be a strategy (e.g. vaeTraining({ model: ` +
          `mlpVAE(...) })) or null, got ${String(g)}`,
      );
    }
    if (g && !isGenerator(g.model)) {
      throw new TypeError(
        `GenerativeReplayPlugin: the generator strategy's model must have generate(n, rng) ` +
          `(an MlpVAE from mlpVAE(...)), got a ${g.model.constructor.name}`,
      );
    }
    this.generatorStrategy = g;
    this.untrainedSolver = o.untrainedSolver ?? true;
    this.replaySize = o.replaySize ?? null;
    this.increasingReplaySize = o.increasingReplaySize ?? false;
    this.isWeightedReplay = o.isWeightedReplay ?? false;
    this.weightReplayLossFactor = o.weightReplayLossFactor ?? 1;
    this.weightReplayLoss = o.weightReplayLoss ?? 0.0001;
    if (this.replaySize !== null && (!Number.isInteger(this.replaySize) || this.replaySize < 1)) {
      throw new RangeError(
        `GenerativeReplayPlugin replaySize must be a positive integer or null (the minibatch's ` +
          `size), got ${this.replaySize}`,
      );
    }
    for (
      const [k, v] of [
        ["weightReplayLossFactor", this.weightReplayLossFactor],
        ["weightReplayLoss", this.weightReplayLoss],
      ] as const
    ) {
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
        throw new RangeError(`GenerativeReplayPlugin ${k} must be a finite number ≥ 0, got ${v}`);
      }
    }
  }

  /** Whether the strategy's own model is the generator (set in `beforeTraining`). */
  get modelIsGenerator(): boolean {
    return this.#modelIsGenerator;
  }

  /** The frozen generator copied before the current experience. */
  get oldGenerator(): (Module & Generator) | undefined {
    return this.#oldGenerator;
  }

  /** The frozen solver copied before the current experience (none when it is the generator). */
  get oldModel(): Module | undefined {
    return this.#oldModel;
  }

  /** How many samples to generate for a minibatch of `n` in experience `expIndex`. */
  replayCount(n: number, expIndex: number): number {
    if (this.replaySize) return this.replaySize;
    return this.increasingReplaySize ? n * expIndex : n;
  }

  beforeTraining(ctx: StrategyContext): void {
    if (!this.generatorStrategy) {
      if (!isGenerator(ctx.model)) {
        throw new TypeError(
          "GenerativeReplayPlugin has no generator strategy, so the strategy's model must be the " +
            "generator (with generate(n, rng)): pass generatorStrategy: vaeTraining(...)",
        );
      }
      this.#modelIsGenerator = true;
    }
  }

  #generator(ctx: StrategyContext): Module & Generator {
    return (this.#modelIsGenerator ? ctx.model : this.generatorStrategy!.model) as
      & Module
      & Generator;
  }

  beforeTrainingExp(ctx: StrategyContext): void {
    if (this.untrainedSolver) return;
    this.#disposeCopies();
    this.#oldGenerator = copyOf(this.#generator(ctx), "generator") as Module & Generator;
    if (!this.#modelIsGenerator) this.#oldModel = copyOf(ctx.model, "solver");
  }

  /** Generated inputs and their labels (old solver's argmax, or 0) for `count` samples. */
  replay(ctx: StrategyContext, count: number): { x: tf.Tensor; y: Int32Array } {
    const gen = this.#oldGenerator!;
    const x = gen.generate(count, ctx.rng);
    const inputShape = ctx.dataset?.inputShape ?? ctx.batch!.x.shape.slice(1);
    const size = inputShape.reduce((a, b) => a * b, 1);
    if (x.size !== count * size) {
      throw new RangeError(
        `The generator makes samples of shape [${x.shape.slice(1)}] but the data's are ` +
          `[${inputShape}]: build the generator with shape [${inputShape}]`,
      );
    }
    const xs = x.shape.slice(1).join() === inputShape.join()
      ? x
      : tf.reshape(x, [count, ...inputShape]);
    let y: Int32Array;
    if (this.#oldModel) {
      const batch = ctx.batch!;
      const tasks = new Int32Array(count).fill(batch.data.t[0]);
      y = tf.tidy(() =>
        tf.argMax(
          this.#oldModel!.forward(xs, {
            taskLabels: tf.tensor1d(tasks, "int32"),
            taskLabelsArray: tasks,
          }),
          -1,
        ).dataSync() as Int32Array
      );
      y = Int32Array.from(y);
    } else {
      y = new Int32Array(count);
    }
    return { x: xs, y };
  }

  beforeTrainingIteration(ctx: StrategyContext): void {
    if (this.isWeightedReplay || this.untrainedSolver || !this.#oldGenerator) return;
    const batch = ctx.batch!;
    const count = this.replayCount(batch.n, ctx.experience!.id);
    if (count < 1) return;
    const { x, y } = this.replay(ctx, count);
    ctx.batch = extendBatch(batch, x, y, batch.data.t[0]);
  }

  /** The weighted replay's term needs the tape; plain replay adds nothing inside it. */
  tapeFree(): boolean {
    return !this.isWeightedReplay;
  }

  beforeBackward(ctx: StrategyContext): void {
    if (!this.isWeightedReplay || this.untrainedSolver || !this.#oldGenerator) return;
    const batch = ctx.batch!;
    const count = this.replayCount(batch.n, ctx.experience!.id);
    if (count < 1) return;
    const { x, y } = this.replay(ctx, count);
    const task = batch.data.t[0];
    const tasks = new Int32Array(count).fill(task);
    const out = ctx.model.forward(x, {
      taskLabels: tf.tensor1d(tasks, "int32"),
      taskLabelsArray: tasks,
      rng: ctx.rng,
    });
    const term = ctx.criterion(out, tf.tensor1d(y, "int32"), { x });
    ctx.addLoss(tf.mul(term, this.weightReplayLoss) as tf.Scalar, "generativeReplay");
    this.weightReplayLoss *= this.weightReplayLossFactor;
  }

  /** Trains the generator strategy on the experience; replay starts with the next one. */
  async afterTrainingExp(ctx: StrategyContext): Promise<void> {
    if (this.generatorStrategy && !this.#modelIsGenerator) {
      await this.generatorStrategy.train(ctx.experience!);
    }
    this.untrainedSolver = false;
  }

  /** Plain-data state: the flags, the copies, and the generator strategy's checkpoint. */
  state(): GenerativeReplayPluginState {
    return {
      version: 1,
      untrainedSolver: this.untrainedSolver,
      weightReplayLoss: this.weightReplayLoss,
      oldGenerator: this.#oldGenerator ? this.#oldGenerator.stateDict() : null,
      oldModel: this.#oldModel ? this.#oldModel.stateDict() : null,
      generator: this.generatorStrategy && !this.#modelIsGenerator
        ? this.generatorStrategy.checkpoint()
        : null,
    };
  }

  /** Restores what {@link GenerativeReplayPlugin.state} returned. */
  async loadState(state: unknown, ctx: StrategyContext): Promise<void> {
    const s = state as GenerativeReplayPluginState;
    if (!s || s.version !== 1 || typeof s.untrainedSolver !== "boolean") {
      throw new TypeError(`Not a GenerativeReplayPlugin state (version ${String(s?.version)})`);
    }
    if (s.generator && !this.generatorStrategy) {
      throw new RangeError(
        "This GenerativeReplayPlugin state holds a generator strategy's checkpoint, but the " +
          "plugin has none: build it with the same generatorStrategy",
      );
    }
    this.#modelIsGenerator = !this.generatorStrategy;
    if (s.generator) await this.generatorStrategy!.restore(s.generator);
    const rebuild = (from: Module, saved: ModuleState, what: string): Module => {
      const c = copyOf(from, what);
      try {
        c.loadStateDict(saved);
      } catch (e) {
        c.dispose();
        throw e;
      }
      freeze(c);
      return c;
    };
    const gen = s.oldGenerator
      ? rebuild(this.#generator(ctx), s.oldGenerator, "generator")
      : undefined;
    const old = s.oldModel ? rebuild(ctx.model, s.oldModel, "solver") : undefined;
    this.#disposeCopies();
    this.#oldGenerator = gen as (Module & Generator) | undefined;
    this.#oldModel = old;
    this.untrainedSolver = s.untrainedSolver;
    this.weightReplayLoss = s.weightReplayLoss;
  }

  #disposeCopies(): void {
    this.#oldGenerator?.dispose();
    this.#oldModel?.dispose();
    this.#oldGenerator = undefined;
    this.#oldModel = undefined;
  }

  /**
   * Frees the copies and the generator strategy's own tensors (its model too when
   * {@link generativeReplay} built it; a model given by the user stays theirs).
   */
  dispose(): void {
    this.#disposeCopies();
    const g = this.generatorStrategy;
    if (!g) return;
    g.dispose();
    if (BUILT_GENERATORS.has(g)) {
      BUILT_GENERATORS.delete(g);
      g.model.dispose();
    }
  }
}

/**
 * A {@link GenerativeReplayPlugin} from options.
 *
 * @example
 * ```ts
 * import { generativeReplayPlugin } from "./generative_replay.ts";
 * const plugin = generativeReplayPlugin({ replaySize: 100 });
 * console.assert(plugin.replayCount(16, 3) === 100);
 * ```
 */
export function generativeReplayPlugin(
  opts: GenerativeReplayPluginOptions = {},
): GenerativeReplayPlugin {
  return new GenerativeReplayPlugin(
    checkOptions("generativeReplayPlugin", opts, GENERATIVE_REPLAY_PLUGIN_OPTIONS),
  );
}

// ------------------------------------------------------------------------- strategies ----

/** Options of {@link vaeTraining}: the strategy's options (the model an {@link MlpVAE}) and the loss. */
export interface VAETrainingOptions extends StrategyOptions {
  /** The reconstruction term of the VAE's loss ({@link vaeLoss}). @default "mse" (Avalanche's) */
  reconstruction?: Reconstruction;
}

const VAE_TRAINING_OPTIONS: OptionSpec<Omit<VAETrainingOptions, keyof StrategyOptions>> = {
  reconstruction: RECONSTRUCTIONS,
};

/**
 * Avalanche's `VAETraining`: a strategy that trains an {@link MlpVAE} on the experiences' inputs
 * with the VAE loss ({@link vaeCriterion}, the labels unused; the training "accuracy" it reports
 * is meaningless). Unless given, the optimizer is Adam (lr 0.01, weight decay 1e-4), the one
 * Avalanche's `GenerativeReplay` gives its generator, and `criterion` is the VAE's.
 *
 * @example
 * ```ts
 * import { setup } from "../backend.ts";
 * import { mlpVAE } from "../models/vae.ts";
 * import { vaeTraining } from "./generative_replay.ts";
 * await setup({ backend: "cpu", seed: 0 });
 * const strategy = vaeTraining({ model: mlpVAE({ shape: [784], nhid: 2 }), batchSize: 16 });
 * console.assert(strategy.name === "VAETraining");
 * ```
 */
export function vaeTraining(opts: VAETrainingOptions): Strategy {
  checkOptions("vaeTraining", opts, { ...STRATEGY_OPTIONS, ...VAE_TRAINING_OPTIONS });
  const { reconstruction, ...rest } = opts;
  if (!(rest.model instanceof MlpVAE)) {
    throw new TypeError(
      `vaeTraining needs an MlpVAE model (mlpVAE({ shape, nhid })), got ${
        rest.model ? rest.model.constructor.name : String(rest.model)
      }`,
    );
  }
  return new Strategy({
    ...rest,
    name: rest.name ?? "VAETraining",
    optimizer: rest.optimizer ?? adam({ lr: 0.01, weightDecay: 0.0001 }),
    criterion: rest.criterion ?? vaeCriterion(rest.model, reconstruction),
  });
}

/** Options of {@link generativeReplay}: the solver strategy's and the plugin's. */
export interface GenerativeReplayOptions
  extends StrategyOptions, Omit<GenerativeReplayPluginOptions, "generatorStrategy"> {
  /**
   * The generator's strategy. Default, as Avalanche's `GenerativeReplay`: `vaeTraining` of
   * `mlpVAE({ shape: model.inputShape, nhid: 2, stats: MNIST_STATS })` with Adam (lr 0.01,
   * weight decay 1e-4), the solver's batch sizes and epochs, and a plugin of its own that
   * replays the previous generator's samples with the same replay settings. Its initializers
   * draw their seed from Math.random (seeded by `setup`), as a model built with no seed; its
   * strategy's generator is seeded with `seed + 1` when `seed` is given.
   */
  generatorStrategy?: Strategy;
}

/**
 * Avalanche's `GenerativeReplay`: a solver trained with a {@link GenerativeReplayPlugin} whose
 * generator strategy is trained after each experience.
 *
 * @example Generative replay on Split MNIST
 * ```ts ignore
 * import { adam, generativeReplay, mlp, splitMNIST } from "../../mod.ts";
 * const bench = await splitMNIST({ experiences: 5 });
 * const strategy = generativeReplay({
 *   model: mlp({ hidden: [400, 400] }), optimizer: adam({ lr: 0.001 }), batchSize: 16,
 *   epochs: 10, evalBatchSize: 128, replaySize: 100,
 * });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function generativeReplay(opts: GenerativeReplayOptions): Strategy {
  checkOptions("generativeReplay", opts, {
    ...STRATEGY_OPTIONS,
    ...GENERATIVE_REPLAY_PLUGIN_OPTIONS,
    generatorStrategy: instanceOf(Strategy, "a strategy"),
  });
  const {
    generatorStrategy,
    untrainedSolver,
    replaySize,
    increasingReplaySize,
    isWeightedReplay,
    weightReplayLossFactor,
    weightReplayLoss,
    ...rest
  } = opts;
  const replay = {
    replaySize,
    increasingReplaySize,
    isWeightedReplay,
    weightReplayLossFactor,
    weightReplayLoss,
  };
  let generator = generatorStrategy;
  if (!generator) {
    const shape = (rest.model as { inputShape?: readonly number[] } | undefined)?.inputShape;
    if (!shape) {
      throw new TypeError(
        "generativeReplay builds its default VAE from model.inputShape, which this model lacks: " +
          "pass generatorStrategy: vaeTraining({ model: mlpVAE({ shape, nhid: 2 }) })",
      );
    }
    generator = vaeTraining({
      model: mlpVAE({ shape, nhid: 2, stats: MNIST_STATS }),
      batchSize: rest.batchSize,
      epochs: rest.epochs,
      evalBatchSize: rest.evalBatchSize,
      seed: rest.seed === undefined ? undefined : rest.seed + 1,
      plugins: [generativeReplayPlugin(replay)],
    });
    BUILT_GENERATORS.add(generator);
  }
  const plugin = generativeReplayPlugin({
    generatorStrategy: generator,
    untrainedSolver,
    ...replay,
  });
  return withPlugin("GenerativeReplay", plugin, rest);
}
