/**
 * BiC, Bias Correction (Wu, Chen, Wang, Ye, Liu, Guo and Fu, "Large Scale Incremental
 * Learning", CVPR 2019), with Avalanche 0.6's names (`BiCPlugin`, `mem_size`, `val_percentage`,
 * `T`, `stage_2_epochs`, `lamb`, `lr`; `BiasLayer`).
 *
 * Stage 1 trains on the experience and a class-balanced replay memory with cross-entropy plus a
 * distillation from the model of the previous experience on the old classes. Stage 2, after each
 * experience but the first, freezes the model and fits a {@link BiasLayer} (`α · z + β` on the
 * new classes' logits) on a small class-balanced validation set held out of the training data,
 * so that the old and new classes it sees are balanced. At evaluation every bias layer applies.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Dataset } from "../data/dataset.ts";
import { checkBatchSize } from "../data/loader.ts";
import { crossEntropy, distillationLoss } from "../nn/losses.ts";
import { isCloneable, type Module, type ModuleState } from "../nn/module.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import { type MaterializedDataset, SampleMemory } from "./memory.ts";
import { ReplayDataLoader } from "./replay_loader.ts";
import { ClassBalancedStoragePolicy, type StoragePolicyState } from "./storage_policy.ts";

// ----------------------------------------------------------------------------- the layer ----

/** Plain-data state of a {@link BiasLayer}. */
export interface BiasLayerState {
  classes: number[];
  alpha: number;
  beta: number;
}

/**
 * Avalanche's `BiasLayer`: two scalars `alpha` and `beta` that map the logits of `classes` (the
 * classes of one experience) to `alpha · z + beta` and leave every other logit as it is. The
 * scalars are plain numbers, not variables: the stage-2 loop differentiates with respect to
 * them as tensors of its own, so a layer holds no tensor and nothing to free.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { BiasLayer } from "./bic.ts";
 * await setBackend("cpu");
 * const layer = new BiasLayer([1], 2, -1);
 * console.assert(layer.forward(tf.tensor2d([[3, 3]])).dataSync().join() === "3,5");
 * ```
 */
export class BiasLayer {
  /** The classes (logit units) corrected, sorted. */
  readonly classes: readonly number[];
  /** Scale of the corrected logits (starts at 1, as Avalanche's). */
  alpha: number;
  /** Shift of the corrected logits (starts at 0). */
  beta: number;

  constructor(classes: readonly number[], alpha = 1, beta = 0) {
    const sorted = [...new Set(classes)].sort((a, b) => a - b);
    if (sorted.length === 0 || sorted.some((c) => !Number.isInteger(c) || c < 0)) {
      throw new RangeError(
        `BiasLayer needs one or more class indices (integers ≥ 0), got [${classes}]`,
      );
    }
    if (!Number.isFinite(alpha) || !Number.isFinite(beta)) {
      throw new RangeError(`BiasLayer: alpha and beta must be finite, got ${alpha}, ${beta}`);
    }
    this.classes = sorted;
    this.alpha = alpha;
    this.beta = beta;
  }

  /** The corrected logits (`[n, C]`) with the layer's own alpha and beta. */
  forward(logits: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.apply(logits, tf.scalar(this.alpha), tf.scalar(this.beta)));
  }

  /**
   * The corrected logits with `alpha` and `beta` given as scalar tensors, differentiable with
   * respect to them (stage 2). The scale is `m · alpha + (1 − m)` and the shift `m · beta` for
   * the class mask `m`, so the other logits are multiplied by exactly 1 and shifted by exactly
   * 0: they come out bit-identical, and the corrected ones are `alpha · z + beta` rounded once.
   */
  apply(logits: tf.Tensor, alpha: tf.Scalar, beta: tf.Scalar): tf.Tensor {
    const width = logits.shape[logits.rank - 1]!;
    const top = this.classes[this.classes.length - 1];
    if (logits.rank !== 2 || top >= width) {
      throw new RangeError(
        `BiasLayer corrects class ${top}: it needs logits [n, C] with C > ${top}, got ` +
          `[${logits.shape}]`,
      );
    }
    const mask = new Float32Array(width);
    for (const c of this.classes) mask[c] = 1;
    const m = tf.tensor1d(mask);
    const scale = tf.add(tf.mul(m, alpha), tf.sub(1, m));
    return tf.add(tf.mul(logits, scale), tf.mul(m, beta));
  }

  /** Plain-data state. */
  state(): BiasLayerState {
    return { classes: [...this.classes], alpha: this.alpha, beta: this.beta };
  }

  /** A layer from {@link BiasLayer.state}. */
  static fromState(s: BiasLayerState): BiasLayer {
    if (!s || !Array.isArray(s.classes)) throw new TypeError("Not a BiasLayer state");
    return new BiasLayer(s.classes, s.alpha, s.beta);
  }
}

/** `logits` through every layer of `layers`, in order (the input itself when there are none). */
export function biasForward(logits: tf.Tensor, layers: readonly BiasLayer[]): tf.Tensor {
  if (layers.length === 0) return logits;
  return tf.tidy(() => layers.reduce((z, l) => l.forward(z), logits));
}

// ---------------------------------------------------------------------------- the plugin ----

/** Options of {@link BiCPlugin} and {@link bicPlugin}. */
export interface BiCPluginOptions {
  /**
   * Exemplars kept in all, training and validation ones together (Avalanche's `mem_size`).
   * @default 2000
   */
  memSize?: number;
  /** Share of `memSize` held out as validation exemplars for stage 2. @default 0.1 */
  valPercentage?: number;
  /** Distillation temperature (Avalanche's `T`). @default 2 */
  T?: number;
  /** Epochs of the bias-correction stage. @default 200 */
  stage2Epochs?: number;
  /**
   * Weight of the distillation: −1 gives Avalanche's `(1 − λ) · CE + λ · KD` with `λ` the share
   * of old classes among the classes seen; any value ≥ 0 gives `CE + lamb · KD`. @default -1
   */
  lamb?: number;
  /** Learning rate of stage 2 (SGD with momentum 0.9, as Avalanche). @default 0.1 */
  lr?: number;
  /** Memory samples per minibatch. Default: the strategy's batch size. */
  batchSizeMem?: number;
}

const BIC_PLUGIN_OPTIONS: OptionSpec<BiCPluginOptions> = {
  memSize: "integer",
  valPercentage: "number",
  T: "number",
  stage2Epochs: "integer",
  lamb: "number",
  lr: "number",
  batchSizeMem: "integer",
};

/** Plain-data state of {@link BiCPlugin}. */
export interface BiCPluginState {
  version: 1;
  memSize: number;
  valPercentage: number;
  /** Training experiences completed. */
  experiences: number;
  /** For each class seen: the training experience (0-based) it first came in. */
  classExperience: [number, number][];
  biasLayers: BiasLayerState[];
  memory: StoragePolicyState;
  /** The validation exemplars of each class, in the order they are kept. */
  validation: [number, MaterializedDataset][];
  oldModel: ModuleState | null;
}

/** Milestones of stage 2's learning rate (Avalanche's `MultiStepLR([50, 100, 150], 0.1)`). */
const STAGE2_MILESTONES = [50, 100, 150];
/** Weight of stage 2's penalty `β² / 2` (the original code's, kept by Avalanche). */
const STAGE2_BETA_DECAY = 0.1;
/** Stage 2's SGD momentum (Avalanche's). */
const STAGE2_MOMENTUM = 0.9;

function freeze(model: Module): void {
  for (const v of model.namedParameters().values()) (v as { trainable: boolean }).trainable = false;
  model.eval();
}

function positive(name: string, v: number, zero = false): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || (!zero && v === 0)) {
    throw new RangeError(`BiC: ${name} must be a finite number ${zero ? "≥" : ">"} 0, got ${v}`);
  }
  return v;
}

/**
 * BiC (Wu et al. 2019), Avalanche 0.6's `BiCPlugin(mem_size, ..., val_percentage, T,
 * stage_2_epochs, lamb, lr)`:
 *
 * - `afterTrainDatasetAdaptation`: of each new class, a random `valSize / classes seen` samples
 *   (`valSize = floor(valPercentage · memSize)`, the remainder to the lowest classes) become its
 *   validation exemplars and leave the training data; the old classes' validation exemplars
 *   shrink to the same share (the first ones kept);
 * - `beforeTrainingExp`: minibatches of the experience's data joined by as many samples of the
 *   training memory (a class-balanced memory of `memSize − valSize`);
 * - `beforeBackward`: from the second experience, the distillation {@link distillationLoss}
 *   (KL at temperature `T` over the old classes' units) between the output and that of the
 *   model after the previous experience, whose output goes through the bias layers so far;
 * - `afterTrainingExp`: the copy of the model and the memory's update; from the second
 *   experience, stage 2: a new {@link BiasLayer} on the experience's classes trained on the
 *   validation exemplars for `stage2Epochs` epochs, with the model frozen;
 * - `afterEvalForward`: the output goes through every bias layer.
 *
 * Where Avalanche differs: it keeps the validation exemplars on top of `memSize` in an
 * experience-balanced replay memory; here both come out of `memSize` and the training memory
 * is class-balanced (the paper's split of the exemplars). Its distillation is a cross-entropy
 * whose softmax runs over the batch (`dim=0`); here it is over the classes, as the paper, and a
 * KL (the same gradient as the cross-entropy over classes). It keeps one bias layer (the last
 * experience's); here each experience keeps its own, all applied. Its validation exemplars are
 * each class's first samples; here they are drawn from the run's generator. The model's output
 * on the validation exemplars is computed once per stage 2 (the model is frozen), not per epoch.
 *
 * @example
 * ```ts ignore
 * import { BiCPlugin, mlp, naive } from "../../mod.ts";
 * const strategy = naive({ model: mlp(), plugins: [new BiCPlugin(2000)] });
 * ```
 */
export class BiCPlugin extends StrategyPlugin {
  readonly memSize: number;
  readonly valPercentage: number;
  readonly T: number;
  readonly stage2Epochs: number;
  readonly lamb: number;
  readonly lr: number;
  readonly batchSizeMem: number | undefined;
  /** Validation exemplars in all (`floor(valPercentage · memSize)`). */
  readonly valSize: number;
  /** The training exemplars, class-balanced, `memSize − valSize` of them. */
  readonly storagePolicy: ClassBalancedStoragePolicy;
  #layers: BiasLayer[] = [];
  #validation = new Map<number, SampleMemory>();
  #classExp = new Map<number, number>();
  #experiences = 0;
  #old: Module | undefined;
  #train: Dataset | undefined;

  /**
   * @param memSize exemplars kept (default 2000); or all options as an object.
   * @param valPercentage share held out for stage 2 (default 0.1).
   * @param T distillation temperature (default 2).
   * @param stage2Epochs epochs of stage 2 (default 200).
   * @param lamb distillation weight, −1 for the share of old classes (default −1).
   * @param lr stage 2's learning rate (default 0.1).
   */
  constructor(
    memSize: number | BiCPluginOptions = 2000,
    valPercentage?: number,
    T?: number,
    stage2Epochs?: number,
    lamb?: number,
    lr?: number,
  ) {
    super();
    const o: BiCPluginOptions = typeof memSize === "object" && memSize !== null
      ? checkOptions("BiCPlugin", memSize, BIC_PLUGIN_OPTIONS)
      : { memSize, valPercentage, T, stage2Epochs, lamb, lr };
    this.memSize = o.memSize ?? 2000;
    if (!Number.isInteger(this.memSize) || this.memSize < 2) {
      throw new RangeError(
        `BiC: memSize must be an integer ≥ 2 (training and validation exemplars), got ` +
          String(o.memSize),
      );
    }
    this.valPercentage = positive("valPercentage", o.valPercentage ?? 0.1, true);
    this.valSize = Math.floor(this.valPercentage * this.memSize);
    if (this.valPercentage >= 1 || this.valSize >= this.memSize) {
      throw new RangeError(
        `BiC: valPercentage ${this.valPercentage} leaves no training exemplars of ` +
          `${this.memSize}: give a share below 1`,
      );
    }
    this.T = positive("T", o.T ?? 2);
    this.stage2Epochs = o.stage2Epochs ?? 200;
    if (!Number.isInteger(this.stage2Epochs) || this.stage2Epochs < 0) {
      throw new RangeError(`BiC: stage2Epochs must be an integer ≥ 0, got ${o.stage2Epochs}`);
    }
    this.lamb = o.lamb ?? -1;
    if (this.lamb !== -1) positive("lamb (or −1)", this.lamb, true);
    this.lr = positive("lr", o.lr ?? 0.1);
    if (o.batchSizeMem !== undefined) checkBatchSize("batchSizeMem", o.batchSizeMem);
    this.batchSizeMem = o.batchSizeMem;
    this.storagePolicy = new ClassBalancedStoragePolicy(this.memSize - this.valSize, true);
  }

  /** The bias layers, one per experience after the first, in order. */
  get biasLayers(): readonly BiasLayer[] {
    return this.#layers;
  }

  /** The validation exemplars of each class. */
  get validation(): ReadonlyMap<number, SampleMemory> {
    return this.#validation;
  }

  /** The frozen copy of the model after the last training experience (owned by the plugin). */
  get oldModel(): Module | undefined {
    return this.#old;
  }

  /** Training experiences completed. */
  get experiences(): number {
    return this.#experiences;
  }

  /** The classes of earlier experiences than the one being trained, sorted. */
  get oldClasses(): number[] {
    return [...this.#classExp].filter(([, e]) => e < this.#experiences).map(([c]) => c)
      .sort((a, b) => a - b);
  }

  /** The validation share of each of `classes` (sorted): equal, the remainder to the first. */
  #valShares(classes: number[]): Map<number, number> {
    const k = classes.length, base = Math.floor(this.valSize / k);
    return new Map(classes.map((c, i) => [c, base + (i < this.valSize - base * k ? 1 : 0)]));
  }

  /** Holds the validation exemplars out of the new data; shrinks the old classes' ones. */
  afterTrainDatasetAdaptation(ctx: StrategyContext): void {
    const data = ctx.dataset;
    if (!data) return;
    const byClass = data.indicesByClass();
    for (const c of byClass.keys()) {
      if (!this.#classExp.has(c)) this.#classExp.set(c, this.#experiences);
    }
    const shares = this.#valShares([...this.#classExp.keys()].sort((a, b) => a - b));
    const train: number[] = [];
    for (const [c, idx] of byClass) {
      const share = shares.get(c)!;
      // A class already held out keeps its exemplars: its new samples all train.
      if (this.#validation.has(c) || share === 0) {
        for (const i of idx) train.push(i);
        continue;
      }
      // At least one sample of each class trains, so that the experience keeps every class.
      const take = Math.min(share, idx.length - 1);
      if (take <= 0) {
        for (const i of idx) train.push(i);
        continue;
      }
      const order = ctx.rng.permutation(idx.length);
      const held = Int32Array.from(order.subarray(0, take), (j) => idx[j]);
      for (const j of order.subarray(take)) train.push(idx[j]);
      this.#validation.set(c, new SampleMemory([data], new Int32Array(take), held));
    }
    for (const [c, m] of this.#validation) {
      const share = shares.get(c) ?? 0;
      if (m.length > share) {
        this.#validation.set(
          c,
          m.select(Int32Array.from({ length: share }, (_, i) => i)),
        );
      }
    }
    train.sort((a, b) => a - b);
    this.#train = data.subset(Int32Array.from(train));
    ctx.dataset = this.#train;
  }

  /** Joins the training exemplars to each minibatch. */
  beforeTrainingExp(ctx: StrategyContext): void {
    const memory = this.storagePolicy.buffer;
    if (memory.length === 0 || !ctx.dataset) return;
    const batchSize = ctx.settings.batchSize;
    ctx.dataLoader = new ReplayDataLoader(ctx.dataset, memory, {
      batchSize,
      batchSizeMem: this.batchSizeMem ?? batchSize,
      shuffle: ctx.settings.shuffle,
      dropLast: ctx.settings.dropLast,
    });
  }

  /** The distillation weight λ for the experience being trained (0 with no old classes). */
  distillationWeight(): number {
    const old = this.oldClasses.length;
    if (old === 0) return 0;
    if (this.lamb !== -1) return this.lamb;
    let all = 0;
    for (const e of this.#classExp.values()) if (e <= this.#experiences) all++;
    return old / all;
  }

  /**
   * Adds the distillation as the loss term `"bic"`: `λ · KD − λ · CE` for `lamb` −1 (so that the
   * loss is `(1 − λ) · CE + λ · KD`, the criterion recomputed on the output), `lamb · KD` else.
   */
  beforeBackward(ctx: StrategyContext): void {
    const batch = ctx.batch, output = ctx.output, old = this.#old;
    if (!old || !batch || !output) return;
    const units = this.oldClasses, lamb = this.distillationWeight();
    if (units.length === 0 || lamb === 0) return;
    const opts = { taskLabels: batch.t, taskLabelsArray: batch.data.t };
    const prev = biasForward(old.forward(batch.x, opts), this.#layers);
    let term = tf.mul(distillationLoss(output, prev, units, this.T), lamb);
    if (this.lamb === -1) term = tf.sub(term, tf.mul(ctx.criterion(output, batch.y), lamb));
    ctx.addLoss(term as tf.Scalar, "bic");
  }

  /** The teacher, the memory's update, then stage 2 (from the second experience). */
  async afterTrainingExp(ctx: StrategyContext): Promise<void> {
    const model = ctx.model;
    if (!isCloneable(model)) {
      throw new TypeError(
        "BiC keeps a copy of the model: give it a clone() method (models from mlp and cnn " +
          "have one)",
      );
    }
    const copy = model.clone();
    freeze(copy);
    this.#old?.dispose();
    this.#old = copy;
    const exp = ctx.experience!;
    // The memory takes only the training part: validation exemplars must stay unseen by stage 1.
    this.storagePolicy.updateFromDataset(this.#train ?? exp.dataset, ctx.rng);
    this.#train = undefined;
    const first = this.#experiences === 0;
    this.#experiences++;
    if (first) return;
    const classes = [...this.#classExp].filter(([, e]) => e === this.#experiences - 1)
      .map(([c]) => c);
    if (classes.length === 0) return;
    const layer = new BiasLayer(classes);
    await this.trainBiasLayer(ctx, layer);
    this.#layers.push(layer);
  }

  /**
   * Stage 2: fits `layer` (after the bias layers so far) on the validation exemplars with the
   * cross-entropy plus `0.1 · β² / 2`, SGD with momentum 0.9 at `lr`, divided by 10 at epochs
   * 50, 100 and 150, minibatches of the strategy's batch size drawn from `ctx.rng`. The model is
   * only read, in evaluation mode: its weights do not change.
   */
  async trainBiasLayer(ctx: StrategyContext, layer: BiasLayer): Promise<void> {
    const val = [...this.#validation.values()].filter((m) => m.length > 0);
    const n = val.reduce((s, m) => s + m.length, 0);
    if (n === 0 || this.stage2Epochs === 0) return;
    const model = ctx.model, wasTraining = model.training;
    model.eval();
    // The model is frozen: its logits on the exemplars are the same every epoch, so one pass.
    const [logits, labels] = tf.tidy(() => {
      const outs: tf.Tensor[] = [], ys: tf.Tensor[] = [];
      for (const m of val) {
        const step = ctx.settings.evalBatchSize;
        for (let s = 0; s < m.length; s += step) {
          const idx = Int32Array.from({ length: Math.min(step, m.length - s) }, (_, i) => s + i);
          const b = m.tensors(idx);
          outs.push(model.forward(b.x, { taskLabels: b.t, taskLabelsArray: b.tArray }));
          ys.push(b.y);
        }
      }
      const z = biasForward(tf.concat(outs), this.#layers);
      return [tf.keep(z), tf.keep(tf.concat(ys))];
    });
    model.train(wasTraining);
    try {
      const batchSize = ctx.settings.batchSize;
      let va = 0, vb = 0;
      for (let e = 0; e < this.stage2Epochs; e++) {
        const lr = this.lr * 0.1 ** STAGE2_MILESTONES.filter((m) => e >= m).length;
        const order = ctx.rng.permutation(n);
        for (let s = 0; s < n; s += batchSize) {
          const g = tf.tidy(() => {
            const idx = tf.tensor1d(order.subarray(s, Math.min(s + batchSize, n)), "int32");
            const z = tf.gather(logits, idx), y = tf.gather(labels, idx);
            return tf.grads((a: tf.Tensor, b: tf.Tensor) =>
              crossEntropy(layer.apply(z, a as tf.Scalar, b as tf.Scalar), y)
            )([tf.scalar(layer.alpha), tf.scalar(layer.beta)]);
          });
          // Read asynchronously: the "webgpu" backend has no synchronous read of GPU data.
          const [ga, gb] = (await Promise.all(g.map((t) => t.data()))).map((v) => v[0]);
          tf.dispose(g);
          // PyTorch's SGD with momentum: v ← μ·v + g, p ← p − lr·v.
          va = STAGE2_MOMENTUM * va + ga;
          vb = STAGE2_MOMENTUM * vb + gb + STAGE2_BETA_DECAY * layer.beta;
          layer.alpha -= lr * va;
          layer.beta -= lr * vb;
        }
      }
    } finally {
      logits.dispose();
      labels.dispose();
    }
  }

  /** Applies every bias layer to the evaluation output. */
  afterEvalForward(ctx: StrategyContext): void {
    if (this.#layers.length === 0 || !ctx.output) return;
    ctx.output = biasForward(ctx.output, this.#layers);
  }

  /** Memories, bias layers and the copy of the model, as plain data. */
  state(): BiCPluginState {
    return {
      version: 1,
      memSize: this.memSize,
      valPercentage: this.valPercentage,
      experiences: this.#experiences,
      classExperience: [...this.#classExp],
      biasLayers: this.#layers.map((l) => l.state()),
      memory: this.storagePolicy.state(),
      validation: [...this.#validation].map(([c, m]) => [c, m.materialize()]),
      oldModel: this.#old ? this.#old.stateDict() : null,
    };
  }

  /** Restores what {@link BiCPlugin.state} returned; the copy is rebuilt from `ctx.model`. */
  loadState(state: unknown, ctx: StrategyContext): void {
    const s = state as BiCPluginState;
    if (!s || s.version !== 1 || !Array.isArray(s.classExperience) || !s.memory) {
      throw new TypeError(`Not a BiCPlugin state (version ${String(s?.version)})`);
    }
    if (s.memSize !== this.memSize || s.valPercentage !== this.valPercentage) {
      throw new RangeError(
        `The checkpoint's BiC memory is memSize ${s.memSize}, valPercentage ` +
          `${s.valPercentage}; this plugin's is ${this.memSize}, ${this.valPercentage}: build ` +
          `it with the same ones`,
      );
    }
    let old: Module | undefined;
    if (s.oldModel) {
      if (!isCloneable(ctx.model)) {
        throw new TypeError("BiC needs a model with clone() to rebuild its copy from a checkpoint");
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
    const layers = s.biasLayers.map((l) => BiasLayer.fromState(l));
    const validation = new Map(
      s.validation.map(([c, m]) => [c, SampleMemory.fromMaterialized(m)] as const),
    );
    this.storagePolicy.loadState(s.memory);
    this.dispose();
    this.#old = old;
    this.#layers = layers;
    this.#validation = validation;
    this.#classExp = new Map(s.classExperience);
    this.#experiences = s.experiences;
  }

  /** Frees the copy of the model and forgets the bias layers and validation exemplars. */
  dispose(): void {
    this.#old?.dispose();
    this.#old = undefined;
    this.#layers = [];
    this.#validation = new Map();
    this.#classExp = new Map();
    this.#experiences = 0;
    this.#train = undefined;
  }
}

/**
 * A {@link BiCPlugin}.
 *
 * @example
 * ```ts
 * import { bicPlugin } from "./bic.ts";
 * const plugin = bicPlugin({ memSize: 200, valPercentage: 0.1 });
 * console.assert(plugin.valSize === 20 && plugin.storagePolicy.maxSize === 180);
 * ```
 */
export function bicPlugin(opts: BiCPluginOptions = {}): BiCPlugin {
  return new BiCPlugin(checkOptions("bicPlugin", opts, BIC_PLUGIN_OPTIONS));
}

/** Options of {@link bic}: the strategy's plus BiC's. */
export interface BiCOptions extends StrategyOptions, BiCPluginOptions {}

/**
 * BiC as a strategy: a {@link BiCPlugin}, run first among the plugins.
 *
 * @example BiC on class-incremental Split MNIST
 * ```ts ignore
 * import { bic, mlp, splitMNIST } from "../../mod.ts";
 * const bench = await splitMNIST({ experiences: 5 });
 * const strategy = bic({ model: mlp(), memSize: 2000 });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function bic(opts: BiCOptions): Strategy {
  checkOptions("bic", opts, { ...STRATEGY_OPTIONS, ...BIC_PLUGIN_OPTIONS });
  const { memSize, valPercentage, T, stage2Epochs, lamb, lr, batchSizeMem, ...rest } = opts;
  const plugin = bicPlugin({ memSize, valPercentage, T, stage2Epochs, lamb, lr, batchSizeMem });
  return withPlugin("BiC", plugin, rest);
}
