/**
 * iCaRL (Rebuffi, Kolesnikov, Sperl and Lampert, "iCaRL: Incremental Classifier and
 * Representation Learning", CVPR 2017), as Avalanche 0.6's `ICaRL` strategy: a memory of
 * exemplars per class chosen by herding, training on the new data and the exemplars with a
 * sigmoid binary cross-entropy that distills the previous model's outputs on the old classes, and
 * classification by the nearest mean of exemplars.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import { concatDatasets, type Dataset } from "../data/dataset.ts";
import { extractFeatures, hasEmbed } from "../models/features.ts";
import { NCMClassifier, type NCMMetric } from "../models/ncm.ts";
import { type Criterion, icarlLoss } from "../nn/losses.ts";
import { isCloneable, type Module, type ModuleState } from "../nn/module.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { anyOf, checkOptions, instanceOf, oneOf, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import {
  ExemplarsSelectionStrategy,
  HerdingSelectionStrategy,
  ParametricBuffer,
  type SampleMemory,
  type StoragePolicyState,
} from "./storage_policy.ts";

// ------------------------------------------------------------------------------ the loss ----

/** Plain-data state of {@link ICaRLLossPlugin}. */
export interface ICaRLLossPluginState {
  version: 1;
  oldClasses: number[];
  oldModel: ModuleState | null;
}

function freeze(model: Module): void {
  for (const v of model.namedParameters().values()) (v as { trainable: boolean }).trainable = false;
  model.eval();
}

/**
 * iCaRL's loss (Avalanche's `ICaRLLossPlugin`, Algorithm 3 of the paper): a plugin that keeps a
 * frozen copy of the model after each experience and gives, as {@link ICaRLLossPlugin.criterion},
 * {@link icarlLoss}: sigmoid binary cross-entropy against the one-hot labels, with the targets of
 * the old classes' units replaced by the copy's sigmoid outputs on the same minibatch. The copy
 * runs in `beforeTrainingIteration`, outside the gradient tape. The criterion must be the
 * strategy's (`criterion: plugin.criterion`); at evaluation it is the classification term only.
 */
export class ICaRLLossPlugin extends StrategyPlugin {
  #old: Module | undefined;
  #oldClasses: number[] = [];
  #oldLogits: tf.Tensor | undefined;

  /** The strategy's criterion: {@link icarlLoss} with the current minibatch's old outputs. */
  readonly criterion: Criterion = (logits, labels) => {
    const old = this.#oldLogits;
    const usable = old !== undefined && !old.isDisposed && old.shape[0] === logits.shape[0];
    return icarlLoss(logits, labels, usable ? old : undefined, this.#oldClasses);
  };

  /** The frozen copy of the model after the last training experience (owned by the plugin). */
  get oldModel(): Module | undefined {
    return this.#old;
  }

  /** The classes of every experience trained so far, sorted. */
  get oldClasses(): readonly number[] {
    return this.#oldClasses;
  }

  /** The previous model's outputs on the minibatch (freed with the iteration's tensors). */
  beforeTrainingIteration(ctx: StrategyContext): void {
    const batch = ctx.batch;
    if (!this.#old || !batch || this.#oldClasses.length === 0) return;
    this.#oldLogits = this.#old.forward(batch.x, {
      taskLabels: batch.t,
      taskLabelsArray: batch.data.t,
    });
  }

  afterTrainingIteration(): void {
    this.#oldLogits = undefined;
  }

  /** Keeps a frozen copy of the model and adds the experience's classes to the old ones. */
  afterTrainingExp(ctx: StrategyContext): void {
    const model = ctx.model;
    if (!isCloneable(model)) {
      throw new TypeError(
        "iCaRL keeps a copy of the model: give it a clone() method (models from mlp and cnn " +
          "have one)",
      );
    }
    const copy = model.clone();
    freeze(copy);
    this.#old?.dispose();
    this.#old = copy;
    const seen = new Set([...this.#oldClasses, ...ctx.experience!.dataset.classes()]);
    this.#oldClasses = [...seen].sort((a, b) => a - b);
  }

  /** Plain-data state (the copy as a state dict). */
  state(): ICaRLLossPluginState {
    return {
      version: 1,
      oldClasses: [...this.#oldClasses],
      oldModel: this.#old ? this.#old.stateDict() : null,
    };
  }

  /** Restores what {@link ICaRLLossPlugin.state} returned; the copy is rebuilt from `ctx.model`. */
  loadState(state: unknown, ctx: StrategyContext): void {
    const s = state as ICaRLLossPluginState;
    if (!s || s.version !== 1 || !Array.isArray(s.oldClasses)) {
      throw new TypeError(`Not an ICaRLLossPlugin state (version ${String(s?.version)})`);
    }
    let old: Module | undefined;
    if (s.oldModel) {
      if (!isCloneable(ctx.model)) {
        throw new TypeError(
          "iCaRL needs a model with clone() to rebuild its copy from a checkpoint",
        );
      }
      old = ctx.model.clone();
      try {
        old.loadStateDict(s.oldModel);
      } catch (e) {
        old.dispose();
        throw e;
      }
      freeze(old);
    }
    this.dispose();
    this.#old = old;
    this.#oldClasses = [...s.oldClasses];
  }

  /** Frees the copy and forgets the old classes. */
  dispose(): void {
    this.#old?.dispose();
    this.#old = undefined;
    this.#oldClasses = [];
    this.#oldLogits = undefined;
  }
}

// ---------------------------------------------------------------------------- the plugin ----

/** Options of {@link ICaRLPlugin}. */
export interface ICaRLPluginOptions {
  /** Exemplars kept (with `fixedMemory`, in all; without it, per class). */
  memSize: number;
  /**
   * A dataset transform applied to the exemplars before they join an experience's training data
   * (Avalanche's `buffer_transform`; e.g. an augmenting `Dataset`). @default null
   */
  bufferTransform?: ((exemplars: Dataset) => Dataset) | null;
  /**
   * `memSize` is the whole memory, split equally among the classes seen (iCaRL's `m = K / t`);
   * false: `memSize` exemplars per class. @default true
   */
  fixedMemory?: boolean;
  /** How exemplars are chosen. @default new HerdingSelectionStrategy() */
  selectionStrategy?: ExemplarsSelectionStrategy | null;
  /** Nearest-mean logits: minus the Euclidean distance (Avalanche) or the cosine. @default "euclidean" */
  metric?: NCMMetric;
}

const ICARL_PLUGIN_OPTIONS: OptionSpec<ICaRLPluginOptions> = {
  memSize: "integer",
  bufferTransform: anyOf("function", "null"),
  fixedMemory: "boolean",
  selectionStrategy: anyOf(instanceOf(ExemplarsSelectionStrategy), "null"),
  metric: oneOf("euclidean", "cosine"),
};

/** Plain-data state of {@link ICaRLPlugin}. */
export interface ICaRLPluginState {
  version: 1;
  memSize: number;
  fixedMemory: boolean;
  observedClasses: number[];
  memory: StoragePolicyState;
  classMeans: [number, number[]][];
  loss: ICaRLLossPluginState;
}

/**
 * iCaRL (Rebuffi et al. 2017), Avalanche 0.6's `ICaRL(..., memory_size, buffer_transform,
 * fixed_memory)`:
 *
 * - `afterTrainDatasetAdaptation`: the exemplars (through `bufferTransform`) join the
 *   experience's data (Algorithm 3's training set);
 * - training: {@link ICaRLLossPlugin}'s loss (its hooks run from this plugin; the strategy's
 *   criterion must be {@link ICaRLPlugin.criterion}, which {@link icarl} sets);
 * - `afterTrainingExp`: the memory, a class-grouped {@link ParametricBuffer} with herding
 *   selection, takes the new classes' exemplars (Algorithm 4 on the current model's normalized
 *   features) and shrinks the old classes' to their first ones (Algorithm 5); then the class
 *   means of the exemplars' normalized features are computed again ({@link NCMClassifier});
 * - `afterEvalForward`: the output is replaced by the nearest-mean-of-exemplars logits of the
 *   model's features (Algorithm 1), once means exist.
 *
 * Where Avalanche differs: with `fixedMemory` it keeps `ceil(memSize / classes)` per class (the
 * memory may exceed `memSize`); here the classes get `floor` and the remainder goes to the
 * classes seen first, so exactly `memSize` are kept. Avalanche averages each class mean with the
 * mean of horizontally flipped images (images only; flat inputs have none); here the mean is of
 * the exemplars as stored.
 *
 * @example
 * ```ts ignore
 * import { ICaRLPlugin, mlp, naive } from "../../mod.ts";
 * const plugin = new ICaRLPlugin(200);
 * const strategy = naive({ model: mlp(), criterion: plugin.criterion, plugins: [plugin] });
 * ```
 */
export class ICaRLPlugin extends StrategyPlugin {
  readonly memSize: number;
  readonly bufferTransform: ((exemplars: Dataset) => Dataset) | null;
  readonly fixedMemory: boolean;
  /** The exemplars, grouped by class, in herding order within each class. */
  readonly memory: ParametricBuffer;
  /** The nearest-mean-of-exemplars classifier used at evaluation. */
  readonly ncm: NCMClassifier;
  /** The loss and the copy of the previous model. */
  readonly loss: ICaRLLossPlugin = new ICaRLLossPlugin();
  #observed = new Set<number>();

  /**
   * @param memSize exemplars kept; or all options as an object.
   * @param bufferTransform transform of the exemplars' dataset (default none).
   * @param fixedMemory `memSize` in all (default true) rather than per class.
   */
  constructor(
    memSize: number | ICaRLPluginOptions,
    bufferTransform?: ((exemplars: Dataset) => Dataset) | null,
    fixedMemory?: boolean,
  ) {
    super();
    const o: ICaRLPluginOptions = typeof memSize === "object" && memSize !== null
      ? checkOptions("ICaRLPlugin", memSize, ICARL_PLUGIN_OPTIONS)
      : { memSize: memSize as number, bufferTransform, fixedMemory };
    if (typeof o.memSize !== "number" || !Number.isInteger(o.memSize) || o.memSize < 1) {
      throw new RangeError(
        `ICaRL: memSize must be an integer ≥ 1 (exemplars kept), got ${String(o.memSize)}`,
      );
    }
    this.memSize = o.memSize;
    this.bufferTransform = o.bufferTransform ?? null;
    if (this.bufferTransform !== null && typeof this.bufferTransform !== "function") {
      throw new TypeError("ICaRL: bufferTransform must be a function (Dataset → Dataset) or null");
    }
    this.fixedMemory = o.fixedMemory ?? true;
    if (typeof this.fixedMemory !== "boolean") {
      throw new TypeError(`ICaRL: fixedMemory must be true or false, got ${o.fixedMemory}`);
    }
    this.memory = new ParametricBuffer(
      this.memSize,
      "class",
      o.selectionStrategy ?? new HerdingSelectionStrategy(),
    );
    this.ncm = new NCMClassifier({ normalize: true, metric: o.metric ?? "euclidean" });
  }

  /** The criterion the strategy must use (iCaRL's loss). */
  get criterion(): Criterion {
    return this.loss.criterion;
  }

  /** The classes seen in training so far, sorted. */
  get observedClasses(): number[] {
    return [...this.#observed].sort((a, b) => a - b);
  }

  /** Refuses a model without features before its head. */
  beforeTraining(ctx: StrategyContext): void {
    if (!hasEmbed(ctx.model)) {
      throw new TypeError(
        "iCaRL classifies by the features before the head: use a model with embed(x) (mlp, cnn)",
      );
    }
  }

  /** Adds the exemplars to the experience's training data. */
  afterTrainDatasetAdaptation(ctx: StrategyContext): void {
    const exemplars: SampleMemory = this.memory.buffer;
    if (exemplars.length === 0 || !ctx.dataset) return;
    const extra = this.bufferTransform ? this.bufferTransform(exemplars) : exemplars;
    ctx.dataset = concatDatasets([ctx.dataset, extra]);
  }

  beforeTrainingIteration(ctx: StrategyContext): void {
    this.loss.beforeTrainingIteration(ctx);
  }

  afterTrainingIteration(): void {
    this.loss.afterTrainingIteration();
  }

  /** Exemplars of the new classes, shrunk old ones, class means; then the loss's copy. */
  afterTrainingExp(ctx: StrategyContext): void {
    for (const c of ctx.experience!.dataset.classes()) this.#observed.add(c);
    if (!this.fixedMemory) this.memory.resize(this.memSize * this.#observed.size);
    this.memory.update(ctx);
    this.#computeClassMeans(ctx);
    this.loss.afterTrainingExp(ctx);
  }

  #computeClassMeans(ctx: StrategyContext): void {
    const exemplars = this.memory.buffer;
    if (exemplars.length === 0) return;
    const features = extractFeatures(ctx.model, exemplars, {
      batchSize: ctx.settings.evalBatchSize,
    });
    this.ncm.fit(features, exemplars.targets);
  }

  /** Nearest mean of exemplars: replaces the output by the NCM logits of the features. */
  afterEvalForward(ctx: StrategyContext): void {
    const batch = ctx.batch, model = ctx.model;
    if (!this.ncm.hasMeans || !batch || !hasEmbed(model)) return;
    const width = ctx.output ? ctx.output.shape[ctx.output.rank - 1] : undefined;
    ctx.output = this.ncm.forward(model.embed(batch.x), width);
  }

  /** Memory, class means and the loss's copy of the model, as plain data. */
  state(): ICaRLPluginState {
    return {
      version: 1,
      memSize: this.memSize,
      fixedMemory: this.fixedMemory,
      observedClasses: this.observedClasses,
      memory: this.memory.state(),
      classMeans: this.ncm.state(),
      loss: this.loss.state(),
    };
  }

  /** Restores what {@link ICaRLPlugin.state} returned. */
  loadState(state: unknown, ctx: StrategyContext): void {
    const s = state as ICaRLPluginState;
    if (!s || s.version !== 1 || !Array.isArray(s.observedClasses) || !s.memory) {
      throw new TypeError(`Not an ICaRLPlugin state (version ${String(s?.version)})`);
    }
    if (s.memSize !== this.memSize || s.fixedMemory !== this.fixedMemory) {
      throw new RangeError(
        `The checkpoint's iCaRL memory is memSize ${s.memSize}, fixedMemory ${s.fixedMemory}; ` +
          `this plugin's is ${this.memSize}, ${this.fixedMemory}: build it with the same ones`,
      );
    }
    this.memory.loadState(s.memory);
    this.ncm.loadState(s.classMeans);
    this.loss.loadState(s.loss, ctx);
    this.#observed = new Set(s.observedClasses);
  }

  /** Frees the copy of the model. */
  dispose(): void {
    this.loss.dispose();
  }
}

/**
 * An {@link ICaRLPlugin} (herding, fixed memory unless told).
 *
 * @example
 * ```ts
 * import { icarlPlugin } from "./icarl.ts";
 * const plugin = icarlPlugin({ memSize: 200 });
 * console.assert(plugin.memory.maxSize === 200 && plugin.fixedMemory);
 * ```
 */
export function icarlPlugin(opts: ICaRLPluginOptions): ICaRLPlugin {
  return new ICaRLPlugin(checkOptions("icarlPlugin", opts, ICARL_PLUGIN_OPTIONS));
}

/** Options of {@link icarl}: the strategy's options (but the criterion, iCaRL's) plus iCaRL's. */
export interface ICaRLOptions extends Omit<StrategyOptions, "criterion">, ICaRLPluginOptions {}

const { criterion: _criterion, ...STRATEGY_OPTIONS_BUT_CRITERION } = STRATEGY_OPTIONS;

/**
 * iCaRL as a strategy (Avalanche's `ICaRL`): an {@link ICaRLPlugin}, run first among the plugins,
 * and its loss as the criterion.
 *
 * @example iCaRL on class-incremental Split MNIST
 * ```ts ignore
 * import { icarl, mlp, splitMNIST } from "../../mod.ts";
 * const bench = await splitMNIST({ experiences: 5 });
 * const strategy = icarl({ model: mlp(), memSize: 2000 });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function icarl(opts: ICaRLOptions): Strategy {
  checkOptions("icarl", opts, { ...STRATEGY_OPTIONS_BUT_CRITERION, ...ICARL_PLUGIN_OPTIONS });
  const { memSize, bufferTransform, fixedMemory, selectionStrategy, metric, ...rest } = opts;
  const plugin = icarlPlugin({ memSize, bufferTransform, fixedMemory, selectionStrategy, metric });
  return withPlugin("ICaRL", plugin, { ...rest, criterion: plugin.criterion });
}
