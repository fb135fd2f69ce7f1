/**
 * Less-Forgetful Learning (Jung, Ju, Jung and Kim, "Less-forgetting Learning in Deep Neural
 * Networks", 2016, arXiv:1607.00122), as Avalanche's `LFLPlugin`: after each experience the
 * model's head is frozen (the decision boundaries stay) and a frozen copy of the model is kept;
 * while training later experiences, the features the model computes before its head are kept
 * close to the copy's on the new data by a Euclidean (mean squared error) penalty.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { hasEmbed } from "../models/features.ts";
import { isCloneable, type Module, type ModuleState } from "../nn/module.ts";
import type { StrategyContext, TensorBatch } from "../strategy/context.ts";
import { type Plugin, StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { anyOf, checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";

/** Options of {@link LFLPlugin} (and {@link lflPlugin}). */
export interface LFLPluginOptions {
  /**
   * Weight of the feature distance (Avalanche's `lambda_e`), or one per training experience
   * (indexed by the number of experiences completed; too short a list is an error).
   */
  lambdaE: number | readonly number[];
}

/** The keys of {@link LFLPluginOptions}, for checking what users pass. */
const LFL_PLUGIN_OPTIONS: OptionSpec<LFLPluginOptions> = {
  lambdaE: anyOf("number", "array"),
};

/** Plain-data state of {@link LFLPlugin} in checkpoints. */
export interface LFLPluginState {
  version: 1;
  experiences: number;
  previousModel: ModuleState | null;
}

function checkLambdaE(v: unknown): number | number[] {
  const ok = (x: unknown) => typeof x === "number" && Number.isFinite(x) && x >= 0;
  if (Array.isArray(v)) {
    if (v.length === 0) {
      throw new RangeError("LFL lambdaE is an empty list: give one value per experience");
    }
    v.forEach((x, i) => {
      if (!ok(x)) {
        throw new RangeError(`LFL lambdaE[${i}] must be a finite number ≥ 0, got ${String(x)}`);
      }
    });
    return [...v];
  }
  if (!ok(v)) {
    throw new RangeError(
      `LFL lambdaE must be a finite number ≥ 0 or a list of them, got ${String(v)}: ` +
        `e.g. lambdaE: 0.0001`,
    );
  }
  return v as number;
}

/** A module with features before its head (`embed`) and a head (`classifier`), as `Classifier`. */
interface WithHead extends Module {
  embed(x: tf.Tensor, opts?: unknown): tf.Tensor;
  classifier: Module;
}

function checkModel(model: Module): WithHead {
  const head = (model as { classifier?: unknown }).classifier;
  if (!hasEmbed(model) || !(head && typeof (head as Module).namedParameters === "function")) {
    throw new TypeError(
      "LFL compares the features before the head: give it a model with embed() and a classifier " +
        "head (models from mlp, cnn and multiHeadMLP are such Classifiers)",
    );
  }
  return model as WithHead;
}

/**
 * Less-Forgetful Learning (Jung et al. 2016), Avalanche's `LFLPlugin`.
 *
 * - `afterTrainingExp`: keeps a frozen copy of the model (non-trainable parameters, eval mode)
 *   and, from then on, freezes the model's head: its parameters are left out of the optimizer's
 *   step (`ctx.params`) in every later iteration (Avalanche sets `requires_grad = False` on the
 *   last linear layer, so PyTorch's optimizer skips it).
 * - `beforeBackward`, once a copy exists: adds the term `"lfl"`,
 *   `lambdaE_k · mean((embed(x) − embed_prev(x))²)` over the minibatch's inputs (the features
 *   before the head, `model.embed`, of the current model and of the copy, both in eval mode, as
 *   Avalanche's `compute_features`), `k` the number of experiences completed.
 *
 * Checked line by line against Avalanche's `training/plugins/lfl.py`. Differences: Avalanche
 * switches the model to eval mode to compute the features and leaves it there (a model with
 * dropout then trains without it); here the current model's mode is restored after. For a
 * multi-head model Avalanche freezes the last linear layer it finds (one head); here the whole
 * head module is frozen. The features are a second forward pass of the feature extractor, as in
 * Avalanche, and the term is differentiated by the tape (the plugin does not declare `tapeFree`:
 * its gradient reaches the parameters through the features, not the output).
 *
 * @example
 * ```ts ignore
 * import { LFLPlugin, mlp, naive } from "../../mod.ts";
 * const strategy = naive({ model: mlp({ hidden: [256] }), plugins: [new LFLPlugin(1e-4)] });
 * ```
 */
export class LFLPlugin extends StrategyPlugin {
  /** Weight of the feature distance, or one per experience. */
  readonly lambdaE: number | readonly number[];
  #prev: WithHead | undefined;
  #experiences = 0;

  /** @param lambdaE weight (or one per experience), or all options as an object. */
  constructor(lambdaE: number | readonly number[] | LFLPluginOptions) {
    super();
    const o: LFLPluginOptions =
      typeof lambdaE === "object" && lambdaE !== null && !Array.isArray(lambdaE)
        ? checkOptions("LFLPlugin", lambdaE as LFLPluginOptions, LFL_PLUGIN_OPTIONS)
        : { lambdaE: lambdaE as number | readonly number[] };
    if (o.lambdaE === undefined) {
      throw new TypeError("LFLPlugin needs lambdaE: pass e.g. { lambdaE: 0.0001 }");
    }
    this.lambdaE = checkLambdaE(o.lambdaE);
  }

  /** Number of experiences after which a copy was kept. */
  get experiences(): number {
    return this.#experiences;
  }

  /** The frozen copy of the model after the last experience (owned by the plugin). */
  get previousModel(): Module | undefined {
    return this.#prev;
  }

  /** lambdaE for the training experience with index `k`. */
  lambdaFor(k: number): number {
    if (typeof this.lambdaE === "number") return this.lambdaE;
    if (k >= this.lambdaE.length) {
      throw new RangeError(
        `LFL lambdaE has ${this.lambdaE.length} values but experience ${k} (0-based) is being ` +
          `trained: give one value per training experience`,
      );
    }
    return this.lambdaE[k];
  }

  /**
   * The unweighted feature distance `mean((embed(x) − embed_prev(x))²)` for a minibatch, or
   * undefined before a copy exists. Differentiable; the model's mode is restored.
   */
  distance(model: Module, batch: TensorBatch): tf.Scalar | undefined {
    const prev = this.#prev;
    if (!prev) return undefined;
    const m = checkModel(model);
    const opts = { taskLabels: batch.t, taskLabelsArray: batch.data.t };
    const wasTraining = m.training;
    m.eval();
    let features: tf.Tensor;
    try {
      features = m.embed(batch.x, opts);
    } finally {
      m.train(wasTraining);
    }
    const previous = prev.embed(batch.x, opts);
    return tf.mean(tf.square(tf.sub(features, previous))) as tf.Scalar;
  }

  /** Checks that the model exposes its features and that a lambdaE exists for the experience. */
  beforeTrainingExp(ctx: StrategyContext): void {
    checkModel(ctx.model);
    this.lambdaFor(ctx.clock.trainExperiences);
  }

  /** From the second experience on, leaves the head out of the step. */
  beforeTrainingIteration(ctx: StrategyContext): void {
    if (this.#experiences === 0) return;
    const head = new Set(checkModel(ctx.model).classifier.namedParameters().values());
    for (const [name, v] of ctx.params) if (head.has(v)) ctx.params.delete(name);
  }

  /** Adds `lambdaE_k ·` {@link LFLPlugin.distance} as the loss term `"lfl"`. */
  beforeBackward(ctx: StrategyContext): void {
    const batch = ctx.batch;
    if (!this.#prev || !batch) return;
    const lambda = this.lambdaFor(ctx.clock.trainExperiences);
    if (lambda === 0) return;
    ctx.addLoss(tf.mul(this.distance(ctx.model, batch)!, lambda) as tf.Scalar, "lfl");
  }

  /** Keeps a frozen copy of the model; the head is frozen from now on. */
  afterTrainingExp(ctx: StrategyContext): void {
    const model = checkModel(ctx.model);
    if (!isCloneable(model)) {
      throw new TypeError(
        "LFL keeps a copy of the model: give it a clone() method (models from mlp, cnn and " +
          "multiHeadMLP have one)",
      );
    }
    const copy = checkModel(freeze(model.clone()));
    this.#prev?.dispose();
    this.#prev = copy;
    this.#experiences++;
  }

  /** Plain-data state for checkpoints (the copy as a state dict). */
  state(): LFLPluginState {
    return {
      version: 1,
      experiences: this.#experiences,
      previousModel: this.#prev ? this.#prev.stateDict() : null,
    };
  }

  /** Restores what {@link LFLPlugin.state} returned; the copy is rebuilt from `ctx.model`. */
  loadState(state: unknown, ctx: StrategyContext): void {
    const s = state as LFLPluginState;
    if (!s || s.version !== 1) {
      throw new TypeError(`Not an LFLPlugin state (version ${String(s?.version)})`);
    }
    let prev: WithHead | undefined;
    if (s.previousModel) {
      const model = checkModel(ctx.model);
      if (!isCloneable(model)) {
        throw new TypeError("LFL needs a model with clone() to rebuild its copy from a checkpoint");
      }
      prev = checkModel(model.clone());
      try {
        prev.loadStateDict(s.previousModel);
      } catch (e) {
        prev.dispose();
        throw e;
      }
      freeze(prev);
    }
    this.dispose();
    this.#prev = prev;
    this.#experiences = Number(s.experiences) || 0;
  }

  /** Frees the copy and forgets the experiences. */
  dispose(): void {
    this.#prev?.dispose();
    this.#prev = undefined;
    this.#experiences = 0;
  }
}

function freeze<M extends Module>(model: M): M {
  for (const v of model.namedParameters().values()) (v as { trainable: boolean }).trainable = false;
  model.eval();
  return model;
}

/**
 * A {@link LFLPlugin}.
 *
 * @example
 * ```ts
 * import { lflPlugin } from "./lfl.ts";
 * const plugin = lflPlugin({ lambdaE: [0, 1e-4, 2e-4] });
 * console.assert(plugin.lambdaFor(1) === 1e-4);
 * ```
 */
export function lflPlugin(opts: LFLPluginOptions): LFLPlugin {
  return new LFLPlugin(checkOptions("lflPlugin", opts, LFL_PLUGIN_OPTIONS));
}

/** Options of {@link lfl}: the strategy's options plus LFL's. */
export interface LFLOptions extends StrategyOptions, LFLPluginOptions {}

/**
 * A strategy that fine-tunes with a {@link LFLPlugin} (run first among its plugins).
 *
 * @example LFL on Permuted MNIST
 * ```ts ignore
 * import { lfl, mlp, permutedMNIST, sgd } from "../../mod.ts";
 * const bench = await permutedMNIST({ experiences: 4 });
 * const strategy = lfl({ model: mlp({ hidden: [256] }), lambdaE: 1e-4, optimizer: sgd({ lr: 0.01 }),
 *   epochs: 3, batchSize: 128 });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function lfl(opts: LFLOptions): Strategy {
  checkOptions("lfl", opts, { ...STRATEGY_OPTIONS, ...LFL_PLUGIN_OPTIONS });
  const { lambdaE, ...rest } = opts;
  if (lambdaE === undefined) {
    throw new TypeError("lfl needs lambdaE: pass e.g. { lambdaE: 0.0001 }");
  }
  const plugin: Plugin = lflPlugin({ lambdaE });
  return withPlugin("LFL", plugin, rest);
}
