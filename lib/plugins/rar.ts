/**
 * Retrospective Adversarial Replay (RAR; Kumari, Wang, Chang & Thrun, "Retrospective Adversarial
 * Replay for Continual Learning", NeurIPS 2022), as Avalanche 0.6's `RARPlugin`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Dataset } from "../data/dataset.ts";
import type { ForwardOptions, Module } from "../nn/module.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { StagingArray } from "../nn/staging.ts";
import { checkBatchSize } from "../data/loader.ts";
import { checkOptions, instanceOf, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import { memoryGradients } from "./gem.ts";
import { SampleMemory } from "./memory.ts";
import { ReplayDataLoader } from "./replay_loader.ts";
import {
  ReservoirSamplingBuffer,
  StoragePolicy,
  type StoragePolicyState,
} from "./storage_policy.ts";

/** Settings of {@link fgsmAttack} (Avalanche's `mifgsm_attack`). */
export interface FGSMSettings {
  /** Bound of the perturbation (L∞); each step moves `epsilon / iterations`. */
  epsilon: number;
  /** Avalanche's `iter_fgsm`: `iterations − 1` steps are taken. */
  iterations: number;
  /** Momentum of the normalized gradient (MI-FGSM). */
  decay: number;
}

/**
 * Momentum iterative FGSM as Avalanche's `mifgsm_attack`: from `x`, `iterations − 1` steps of
 * `epsilon / iterations · sign(g)`, where `g ← decay·g + grad / ‖grad‖₁` accumulates the one
 * input gradient given (Avalanche does not recompute it between steps), each step clipped to
 * [0, 1]. The total move stays below `epsilon`, so Avalanche's early stop on `‖x' − x‖∞ > ε`
 * can never fire and is left out (it would cost a read-back per step). A zero gradient gives no
 * move (Avalanche would divide by zero).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { fgsmAttack } from "./rar.ts";
 * const x = tf.tensor2d([[0.5, 0.5]]);
 * const moved = fgsmAttack(x, tf.tensor2d([[2, -1]]), { epsilon: 0.2, iterations: 2, decay: 1 });
 * const v = moved.dataSync();
 * console.assert(Math.abs(v[0] - 0.6) < 1e-6 && Math.abs(v[1] - 0.4) < 1e-6);
 * ```
 */
export function fgsmAttack(x: tf.Tensor, grad: tf.Tensor, s: FGSMSettings): tf.Tensor {
  return tf.tidy(() => {
    const alpha = s.epsilon / s.iterations;
    const unit = tf.div(grad, tf.maximum(tf.sum(tf.abs(grad)), 1e-30));
    let g: tf.Tensor = tf.zerosLike(grad);
    let out: tf.Tensor = x;
    for (let i = 0; i < s.iterations - 1; i++) {
      g = tf.add(tf.mul(g, s.decay), unit);
      out = tf.clipByValue(tf.add(out, tf.mul(tf.sign(g), alpha)), 0, 1);
    }
    return s.iterations > 1 ? out : tf.clone(x);
  });
}

/**
 * For each row `j` of `bufferFeatures`, the label of the nearest row (Euclidean) of
 * `currentFeatures` whose label differs from `bufferLabels[j]`: the class whose boundary the
 * memory sample is pushed towards. A sample with no other class in the minibatch keeps its own
 * label (an untargeted step). Avalanche's loop keeps overwriting its choice while scanning by
 * increasing distance, which leaves the farthest such sample; the paper (and Avalanche's
 * docstring) asks for the nearest, which is what this returns.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { nearestOtherClass } from "./rar.ts";
 * const t = nearestOtherClass(
 *   tf.tensor2d([[0, 0]]),
 *   new Int32Array([0]),
 *   tf.tensor2d([[0.1, 0], [1, 0], [5, 0]]),
 *   new Int32Array([0, 1, 2]),
 * );
 * console.assert(t[0] === 1);
 * ```
 */
export function nearestOtherClass(
  bufferFeatures: tf.Tensor,
  bufferLabels: Int32Array,
  currentFeatures: tf.Tensor,
  currentLabels: Int32Array,
): Int32Array {
  const d = squaredDistances(bufferFeatures, currentFeatures);
  const dist = d.dataSync();
  d.dispose();
  return nearestFromDistances(dist, bufferLabels, currentLabels);
}

/** `[m, n]`: the squared distance (up to a constant order) of each buffer row to each current one. */
function squaredDistances(bufferFeatures: tf.Tensor, currentFeatures: tf.Tensor): tf.Tensor {
  const m = bufferFeatures.shape[0]!, n = currentFeatures.shape[0]!;
  return tf.tidy(() => {
    const a = tf.reshape(bufferFeatures, [m, -1]), b = tf.reshape(currentFeatures, [n, -1]);
    // ‖a‖² + ‖b‖² − 2a·b: the order of distances is all that is used, so no square root.
    return tf.sub(
      tf.add(tf.sum(tf.square(a), 1, true), tf.transpose(tf.sum(tf.square(b), 1, true))),
      tf.mul(tf.matMul(a, b, false, true), 2),
    );
  });
}

/** {@link nearestOtherClass} from the distances `dist` (`[m, n]`, row-major). */
function nearestFromDistances(
  dist: ArrayLike<number>,
  bufferLabels: Int32Array,
  currentLabels: Int32Array,
): Int32Array {
  const m = bufferLabels.length, n = currentLabels.length;
  const out = Int32Array.from(bufferLabels);
  for (let j = 0; j < m; j++) {
    let best = Infinity;
    for (let i = 0; i < n; i++) {
      if (currentLabels[i] !== bufferLabels[j] && dist[j * n + i] < best) {
        best = dist[j * n + i];
        out[j] = currentLabels[i];
      }
    }
  }
  return out;
}

/** Options of {@link RARPlugin} (Avalanche 0.6's parameters, camel-cased). */
export interface RAROptions {
  /** Memory samples per minibatch, and memory samples attacked each iteration. */
  batchSizeMem: number;
  /** Samples kept in memory. @default 200 */
  memSize?: number;
  /** Learning rate of the virtual SGD step the attack is made against. @default 0.1 */
  optLr?: number;
  /**
   * The module whose output is the feature space of the nearest-neighbour search: a name of
   * `model.namedModules()` that takes the model's input (`"features"` for the built-in
   * classifiers). Default: the features before the head (`model.embed`), Avalanche's
   * penultimate node.
   */
  nameExtLayer?: string;
  /** Replay adversarially perturbed memory samples; off, RAR is plain replay. @default true */
  useAdversarialReplay?: boolean;
  /** Weight of the perturbed replay loss. @default 0.4 */
  betaCoef?: number;
  /** Momentum of the normalized gradient in MI-FGSM. @default 1 */
  decayFactorFgsm?: number;
  /** L∞ bound of the perturbation. @default 0.0314 */
  epsilonFgsm?: number;
  /** FGSM iterations (Avalanche's count: `iterFgsm − 1` steps of `epsilonFgsm / iterFgsm`). @default 2 */
  iterFgsm?: number;
  /** Which samples to keep. @default new ReservoirSamplingBuffer(memSize) */
  storagePolicy?: StoragePolicy;
}

/** The keys of {@link RAROptions}, for checking what users pass. */
const RAR_OPTIONS: OptionSpec<RAROptions> = {
  batchSizeMem: "integer",
  memSize: "integer",
  optLr: "number",
  nameExtLayer: "string",
  useAdversarialReplay: "boolean",
  betaCoef: "number",
  decayFactorFgsm: "number",
  epsilonFgsm: "number",
  iterFgsm: "integer",
  storagePolicy: instanceOf(StoragePolicy),
};

function nonNegative(what: string, v: unknown, example: number): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
    throw new RangeError(
      `RARPlugin ${what} must be a finite number ≥ 0, got ${String(v)}, e.g. ${example}`,
    );
  }
  return v;
}

/**
 * Retrospective Adversarial Replay (Kumari et al. 2022), as Avalanche 0.6's `RARPlugin`.
 *
 * - `beforeTrainingExp`: once the memory holds samples, each minibatch is the strategy's
 *   `batchSize` current samples followed by `batchSizeMem` memory samples
 *   ({@link ReplayDataLoader}), so memory samples are replayed as they are.
 * - `afterBackward` (adversarial replay on): `batchSizeMem` memory samples are drawn uniformly
 *   without replacement (`ctx.rng`). At the parameters after a virtual SGD step of `optLr` on
 *   the minibatch gradient (Avalanche's copy of the model trained one step), each drawn sample is
 *   given as target the class of its nearest minibatch sample of another class in feature space
 *   ({@link nearestOtherClass}); the gradient of the criterion towards those targets with respect
 *   to the inputs drives MI-FGSM ({@link fgsmAttack}). The gradient of `betaCoef` times the
 *   criterion of the model (real parameters) on the perturbed samples, with their own labels, is
 *   added to `ctx.grads`: what Avalanche's `strategy.loss += beta_coef * criterion(...)` does to
 *   the update. The epoch's reported loss stays the minibatch's.
 * - `afterTrainingExp`: the storage policy (default a reservoir) takes the experience's samples.
 *
 * Compared with Avalanche 0.6 (`avalanche/training/plugins/rar.py`): its current part of the
 * minibatch has `batch_size_mem` samples too; here it keeps the strategy's batch size. The
 * attacked samples come from a shuffled cycle over the memory there, from a uniform draw here.
 * The virtual step and the attack run without dropout (eval mode), and with the minibatch
 * gradient `ctx.grads` (other plugins' terms included) rather than a fresh criterion gradient.
 * The nearest other-class sample is the nearest (see {@link nearestOtherClass}).
 * As Avalanche, the step goes up the gradient of the loss towards the target class (`+ε·sign`),
 * which makes that class less likely; a targeted attack in the paper's words ("towards its
 * nearest neighbour") would go down it. Avalanche's sign is kept so that results compare.
 *
 * Diagnostics: `lastIndices` (memory indices attacked in the last iteration), `lastTargets`
 * (their target classes), `lastPerturbed` (their perturbed inputs, sample-major).
 *
 * @example
 * ```ts ignore
 * const strategy = naive({ model, batchSize: 32, plugins: [new RARPlugin(32, 500)] });
 * ```
 */
export class RARPlugin extends StrategyPlugin {
  readonly batchSizeMem: number;
  readonly memSize: number;
  readonly optLr: number;
  readonly nameExtLayer: string | undefined;
  readonly useAdversarialReplay: boolean;
  /** Weight of the perturbed replay loss: 0 when adversarial replay is off (as Avalanche). */
  readonly betaCoef: number;
  readonly decayFactorFgsm: number;
  readonly epsilonFgsm: number;
  readonly iterFgsm: number;
  readonly storagePolicy: StoragePolicy;
  /** Memory indices of the samples attacked in the last iteration. */
  lastIndices: Int32Array = new Int32Array(0);
  /** Target class of each attacked sample in the last iteration. */
  lastTargets: Int32Array = new Int32Array(0);
  /** The perturbed inputs replayed in the last iteration, sample-major. */
  lastPerturbed: Float32Array = new Float32Array(0);
  #staging = new StagingArray();

  /**
   * Avalanche's order: `new RARPlugin(batchSizeMem, memSize?, optLr?, nameExtLayer?,
   * useAdversarialReplay?, betaCoef?, decayFactorFgsm?, epsilonFgsm?, iterFgsm?,
   * storagePolicy?)`, or every option as an object.
   */
  constructor(
    batchSizeMem: number | RAROptions,
    memSize = 200,
    optLr = 0.1,
    nameExtLayer?: string,
    useAdversarialReplay = true,
    betaCoef = 0.4,
    decayFactorFgsm = 1.0,
    epsilonFgsm = 0.0314,
    iterFgsm = 2,
    storagePolicy?: StoragePolicy,
  ) {
    super();
    const o: RAROptions = typeof batchSizeMem === "object" && batchSizeMem
      ? checkOptions("RARPlugin", batchSizeMem, RAR_OPTIONS)
      : {
        batchSizeMem: batchSizeMem as number,
        memSize,
        optLr,
        nameExtLayer,
        useAdversarialReplay,
        betaCoef,
        decayFactorFgsm,
        epsilonFgsm,
        iterFgsm,
        storagePolicy,
      };
    checkBatchSize("RARPlugin batchSizeMem", o.batchSizeMem);
    this.batchSizeMem = o.batchSizeMem;
    this.memSize = o.memSize ?? o.storagePolicy?.maxSize ?? 200;
    checkBatchSize("RARPlugin memSize", this.memSize);
    if (o.storagePolicy && o.storagePolicy.maxSize !== this.memSize) {
      throw new RangeError(
        `RARPlugin memSize (${this.memSize}) differs from the storage policy's maxSize ` +
          `(${o.storagePolicy.maxSize}): leave memSize out or build the policy with the same size`,
      );
    }
    this.optLr = nonNegative("optLr", o.optLr ?? 0.1, 0.1);
    this.nameExtLayer = o.nameExtLayer;
    this.useAdversarialReplay = o.useAdversarialReplay ?? true;
    this.betaCoef = this.useAdversarialReplay ? nonNegative("betaCoef", o.betaCoef ?? 0.4, 0.4) : 0;
    this.decayFactorFgsm = nonNegative("decayFactorFgsm", o.decayFactorFgsm ?? 1, 1);
    this.epsilonFgsm = nonNegative("epsilonFgsm", o.epsilonFgsm ?? 0.0314, 0.0314);
    this.iterFgsm = o.iterFgsm ?? 2;
    checkBatchSize("RARPlugin iterFgsm", this.iterFgsm);
    this.storagePolicy = o.storagePolicy ?? new ReservoirSamplingBuffer(this.memSize);
  }

  override get name(): string {
    return "RARPlugin";
  }

  /** The samples in memory. */
  get buffer(): Dataset {
    return this.storagePolicy.buffer;
  }

  /** Replaces the loader with one that appends memory samples to each minibatch. */
  beforeTrainingExp(ctx: StrategyContext): void {
    const memory = this.storagePolicy.buffer;
    if (memory.length === 0) return;
    ctx.dataLoader = new ReplayDataLoader(ctx.dataset!, memory, {
      batchSize: ctx.settings.batchSize,
      batchSizeMem: this.batchSizeMem,
      shuffle: ctx.settings.shuffle,
      dropLast: ctx.settings.dropLast,
      taskBalancedDataLoader: false,
    });
  }

  /** Attacks memory samples and adds the gradient of their weighted loss to the update. */
  async afterBackward(ctx: StrategyContext): Promise<void> {
    const buffer = this.storagePolicy.buffer;
    if (
      !this.useAdversarialReplay || this.betaCoef === 0 || buffer.length === 0 || !ctx.grads ||
      !ctx.batch || ctx.params.size === 0
    ) return;
    const mem = buffer instanceof SampleMemory ? buffer : SampleMemory.of(buffer);
    const k = Math.min(this.batchSizeMem, mem.length);
    const indices = k === mem.length
      ? Int32Array.from({ length: k }, (_, i) => i)
      : ctx.rng.sample(mem.length, k);
    const data = mem.tensors(indices, this.#staging);
    const labels = await data.y.data() as Int32Array;
    const batch = ctx.batch;
    const current = { taskLabels: batch.t, taskLabelsArray: batch.data.t };
    const own = { taskLabels: data.t, taskLabelsArray: data.tArray };
    const grads = new Map([...ctx.grads].filter(([n]) => ctx.params.has(n)));
    const { targets, perturbed } = await this.#attack(ctx, grads, data.x, labels, own, current);
    const replay = { x: perturbed, y: data.y, t: data.t, tArray: data.tArray, n: k };
    const extra = memoryGradients(ctx, ctx.params, replay);
    const next = new Map(ctx.grads);
    for (const [n, g] of extra) {
      const weighted = tf.mul(g, this.betaCoef);
      const mine = next.get(n);
      next.set(n, mine ? tf.add(mine, weighted) : weighted);
    }
    ctx.grads = next;
    this.lastIndices = indices;
    this.lastTargets = targets;
    this.lastPerturbed = await perturbed.data() as Float32Array;
  }

  /**
   * At `θ − optLr·g` and in eval mode: targets by nearest other-class features, the input
   * gradient towards them, MI-FGSM. The parameters get their own values back and the mode is
   * restored, whatever happens.
   */
  async #attack(
    ctx: StrategyContext,
    grads: ReadonlyMap<string, tf.Tensor>,
    x: tf.Tensor,
    labels: Int32Array,
    own: ForwardOptions,
    current: ForwardOptions,
  ): Promise<{ targets: Int32Array; perturbed: tf.Tensor }> {
    const model = ctx.model, batch = ctx.batch!;
    const moved = [...ctx.params].filter(([n]) => grads.has(n));
    const saved = moved.map(([, v]) => tf.clone(v));
    const training = model.training;
    model.train(false);
    try {
      moved.forEach(([n, v]) =>
        tf.tidy(() => v.assign(tf.sub(v, tf.mul(grads.get(n)!, this.optLr))))
      );
      // nearestOtherClass, its distances read asynchronously ("webgpu" has no synchronous read).
      const d = tf.tidy(() =>
        squaredDistances(this.#features(model, x, own), this.#features(model, batch.x, current))
      );
      const dist = await d.data();
      d.dispose();
      const targets = nearestFromDistances(dist, labels, batch.data.y.subarray(0, batch.n));
      const perturbed = tf.tidy(() => {
        const target = tf.tensor1d(targets, "int32");
        const grad = tf.grad((input: tf.Tensor) =>
          ctx.criterion(model.forward(input, own), target)
        )(x);
        return fgsmAttack(x, grad, {
          epsilon: this.epsilonFgsm,
          iterations: this.iterFgsm,
          decay: this.decayFactorFgsm,
        });
      });
      return { targets, perturbed };
    } finally {
      moved.forEach(([, v], i) => v.assign(saved[i]));
      saved.forEach((s) => s.dispose());
      model.train(training);
    }
  }

  /** The feature space of the nearest-neighbour search (see {@link RAROptions.nameExtLayer}). */
  #features(model: Module, x: tf.Tensor, opts: ForwardOptions): tf.Tensor {
    if (this.nameExtLayer === undefined) {
      const embed = (model as { embed?: (x: tf.Tensor, o?: ForwardOptions) => tf.Tensor }).embed;
      if (typeof embed !== "function") {
        throw new TypeError(
          "RARPlugin needs a model with embed(x) (the features before the head), or " +
            "nameExtLayer naming a module that takes the model's input",
        );
      }
      return embed.call(model, x, opts);
    }
    const layer = model.namedModules().get(this.nameExtLayer);
    if (!layer) {
      const names = [...model.namedModules().keys()].filter((n) => n !== "").join(", ");
      throw new RangeError(
        `RARPlugin nameExtLayer "${this.nameExtLayer}" is not a module of the model (${names})`,
      );
    }
    return layer.forward(x, opts);
  }

  /** Adds the experience's data to the memory through the storage policy. */
  afterTrainingExp(ctx: StrategyContext): void {
    this.storagePolicy.update(ctx);
  }

  /** Plain-data state: the storage policy's (memory samples included). */
  state(): RARPluginState {
    return { version: 1, storagePolicy: this.storagePolicy.state() };
  }

  /** Restores what {@link RARPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as RARPluginState;
    if (!s || s.version !== 1 || !s.storagePolicy) {
      throw new TypeError("Not a RARPlugin state: expected { version: 1, storagePolicy }");
    }
    this.storagePolicy.loadState(s.storagePolicy);
  }

  /** Holds no tensors between iterations: the diagnostics are plain arrays. */
  dispose(): void {}
}

/** Checkpoint state of {@link RARPlugin}. */
export interface RARPluginState {
  version: 1;
  storagePolicy: StoragePolicyState;
}

/**
 * A {@link RARPlugin} from options.
 *
 * @example
 * ```ts
 * import { rarPlugin } from "./rar.ts";
 * const plugin = rarPlugin({ batchSizeMem: 10, memSize: 500, epsilonFgsm: 0.05 });
 * console.assert(plugin.epsilonFgsm === 0.05 && plugin.iterFgsm === 2);
 * ```
 */
export function rarPlugin(opts: RAROptions): RARPlugin {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("rarPlugin expects options: rarPlugin({ batchSizeMem: 10, memSize: 500 })");
  }
  return new RARPlugin(checkOptions("rarPlugin", opts, RAR_OPTIONS));
}

/** Options of {@link rar}: the strategy's options and RAR's. */
export interface RARStrategyOptions extends StrategyOptions, RAROptions {}

/**
 * A RAR strategy: fine-tuning with a {@link RARPlugin} first in the plugin list (Avalanche's
 * `Naive(..., plugins=[RARPlugin(...)])`). The plugin is `strategy.plugins[0]`.
 *
 * @example
 * ```ts ignore
 * const strategy = rar({ model: mlp(), batchSizeMem: 32, memSize: 500, batchSize: 32 });
 * ```
 */
export function rar(opts: RARStrategyOptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("rar expects options: rar({ model, batchSizeMem: 10, memSize: 500 })");
  }
  checkOptions("rar", opts, { ...STRATEGY_OPTIONS, ...RAR_OPTIONS });
  const {
    batchSizeMem,
    memSize,
    optLr,
    nameExtLayer,
    useAdversarialReplay,
    betaCoef,
    decayFactorFgsm,
    epsilonFgsm,
    iterFgsm,
    storagePolicy,
    ...rest
  } = opts;
  const plugin = new RARPlugin({
    batchSizeMem,
    memSize,
    optLr,
    nameExtLayer,
    useAdversarialReplay,
    betaCoef,
    decayFactorFgsm,
    epsilonFgsm,
    iterFgsm,
    storagePolicy,
  });
  return withPlugin("RAR", plugin, rest);
}
