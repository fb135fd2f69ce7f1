/**
 * AR1 with latent replay (Maltoni & Lomonaco, "Continuous Learning in Single-Incremental-Task
 * Scenarios", Neural Networks 2019; Pellegrini et al., "Latent Replay for Real-Time Continual
 * Learning", IROS 2020), as Avalanche's `AR1` strategy: CWR* on the output layer, Synaptic
 * Intelligence on the layers below it, and a replay memory of activations at a latent layer.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { DatasetLoader } from "../data/loader.ts";
import { Classifier } from "../models/mlp.ts";
import { Sequential } from "../nn/layers.ts";
import type { Module } from "../nn/module.ts";
import { sgd } from "../optim/optimizers.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import { CWRStarPlugin, type CWRStarState } from "./cwr_star.ts";
import {
  SynapticIntelligencePlugin,
  type SynapticIntelligenceState,
} from "./synaptic_intelligence.ts";

/** Options of {@link AR1Plugin}. */
export interface AR1PluginOptions {
  /** The model: a {@link Classifier} whose features are a `Sequential` (`mlp`, `cnn`). */
  model: Module;
  /**
   * Index in `model.features.layers` of the latent replay layer (Avalanche's
   * `latent_layer_num`): activations entering that layer are stored and replayed. Default: the
   * number of feature layers (the features themselves, the head's input, are replayed).
   */
  latentLayerNum?: number;
  /**
   * Name of the first parameter that keeps learning after the first experience (Avalanche's
   * `freeze_below_layer`, exclusive): every parameter before it (in `model.namedParameters()`
   * order) is frozen. Default: the first parameter at or above the latent layer, so that the
   * layers below it, whose activations the memory holds, stay fixed.
   */
  freezeBelowLayer?: string;
  /** Size of the latent replay memory, shared by all classes (`rm_sz`). @default 1500 */
  rmSz?: number;
  /**
   * λ of the Synaptic Intelligence penalty on the layers below the output (Avalanche calls it
   * `ewc_lambda`); 0 leaves SI out. @default 0
   */
  ewcLambda?: number;
}

/** The keys of {@link AR1PluginOptions}, for checking what users pass. */
const AR1_PLUGIN_OPTIONS: OptionSpec<AR1PluginOptions> = {
  model: "object",
  latentLayerNum: "integer",
  freezeBelowLayer: "string",
  rmSz: "integer",
  ewcLambda: "number",
};

/** Latent activations with their labels, as plain data (row-major `[n, ...shape]`). */
export interface LatentMemory {
  /** Shape of one sample's activations. */
  shape: number[];
  x: Float32Array;
  y: Int32Array;
}

/** Plain-data state of {@link AR1Plugin}. */
export interface AR1State {
  /** The replay memory: `x` row-major, `shape` per sample (null before the first experience). */
  rm: { shape: number[]; x: number[]; y: number[] } | null;
  /** Activations of the current experience collected so far (first epoch). */
  cur: { shape: number[]; x: number[]; y: number[] } | null;
  cwr: CWRStarState;
  si: SynapticIntelligenceState | null;
}

function toPlain(m: LatentMemory | undefined): AR1State["rm"] {
  return m ? { shape: [...m.shape], x: Array.from(m.x), y: Array.from(m.y) } : null;
}

function fromPlain(p: AR1State["rm"], what: string): LatentMemory | undefined {
  if (p === null || p === undefined) return undefined;
  const size = p.shape.reduce((a, b) => a * b, 1);
  if (!Array.isArray(p.x) || !Array.isArray(p.y) || p.x.length !== p.y.length * size) {
    throw new RangeError(
      `The AR1 state's ${what} is damaged: ${p.y?.length} labels, ${p.x?.length} values`,
    );
  }
  return { shape: [...p.shape], x: Float32Array.from(p.x), y: Int32Array.from(p.y) };
}

/**
 * AR1 (Avalanche's `AR1`, checked against `training/supervised/ar1.py`) for the models of this
 * library: a {@link Classifier} split at feature layer `latentLayerNum` into a lower part and an
 * upper part (the rest of the features and the head).
 *
 * - **Every experience**: the lower part runs in evaluation mode, the upper part in training
 *   mode. A {@link CWRStarPlugin} on the output layer (`freezeRemainingModel: false`) and, with
 *   `ewcLambda` > 0, a {@link SynapticIntelligencePlugin} that leaves the output layer out, do
 *   their part (this plugin calls their hooks: SI first, then CWR*, as Avalanche lists them).
 * - **From the second experience**: the parameters before `freezeBelowLayer` are frozen, the
 *   optimizer's state is reset (Avalanche builds a new SGD), and each minibatch holds
 *   `b = ⌊N / ⌊(N + M) / batchSize⌋⌋` new samples (`N` the experience's size, `M` the memory's)
 *   and the next
 *   `batchSize − b` memory activations in memory order (iteration `i` takes the slice
 *   `[i·(batchSize − b), (i+1)·(batchSize − b))`), fed to the upper part. CWR*'s class counts of
 *   the experience include the memory's, and its output layer is reset for all those classes.
 * - **First epoch**: the lower part's activations of every new sample are collected.
 * - **After the experience**: `h = min(⌊rmSz / (k+1)⌋, collected)` random collected activations
 *   (k the experience's index) fill the memory (first experience) or replace `h` random slots.
 *
 * The loss is the criterion's mean over the new and the replayed samples together, as Avalanche
 * computes it on the concatenated minibatch: this plugin adds the term `"latentReplay"`
 * `m/(n+m) · (loss(replayed) − loss(new))`, `n` new and `m` replayed samples. Training accuracy
 * counts the new samples only.
 *
 * Differences from Avalanche: each stored activation keeps the label of its own sample
 * (Avalanche's `_after_training_exp` takes labels from the dataset by positions of the shuffled
 * loader's order, which pairs activations with other samples' labels); the minibatch split uses
 * the memory's size `M` where Avalanche uses `rmSz`, so that, as its docstring intends, an epoch
 * on the new data is also one pass over the memory (with `rmSz`, a memory not yet full runs out
 * before the epoch ends and the last minibatches have no replay: on Split MNIST with 1000
 * samples per experience, final accuracy 0.43 instead of 0.70); and the split guards against a
 * zero divisor. Batch renormalization (Avalanche replaces MobileNet's batch norm
 * layers by batch renorm ones and tunes them per experience) is left out: the models here have
 * no batch normalization layer, so none of its options exist.
 *
 * @example
 * ```ts ignore
 * const model = mlp({ hidden: [400, 400] });
 * const strategy = ar1({ model, latentLayerNum: 2, rmSz: 1500, ewcLambda: 0 });
 * for (const exp of bench.train) await strategy.train(exp);
 * ```
 */
export class AR1Plugin extends StrategyPlugin {
  readonly model: Classifier;
  readonly latentLayerNum: number;
  readonly freezeBelowLayer: string | undefined;
  readonly rmSz: number;
  readonly ewcLambda: number;
  /** CWR* on the output layer. */
  readonly cwr: CWRStarPlugin;
  /** SI below the output layer (undefined when `ewcLambda` is 0). */
  readonly si: SynapticIntelligencePlugin | undefined;
  readonly #frozen: ReadonlySet<string>;
  #rm: LatentMemory | undefined;
  #cur: { shape: number[]; x: Float32Array[]; y: number[] } | undefined;
  #replayMb = 0;
  /** The replayed activations of the current iteration. */
  #replay: { x: tf.Tensor; y: tf.Tensor1D; n: number } | undefined;

  constructor(opts: AR1PluginOptions) {
    super();
    if (!opts || typeof opts !== "object") {
      throw new TypeError("AR1Plugin expects an options object { model, ... }");
    }
    checkOptions("AR1Plugin", opts, AR1_PLUGIN_OPTIONS);
    const model = opts.model;
    if (!(model instanceof Classifier) || !(model.features instanceof Sequential)) {
      throw new TypeError(
        "AR1 needs a model that can be split at a layer: a Classifier whose features are a " +
          "Sequential, as mlp() and cnn() build",
      );
    }
    this.model = model;
    const layers = (model.features as Sequential).layers;
    this.latentLayerNum = opts.latentLayerNum ?? layers.length;
    if (
      !Number.isInteger(this.latentLayerNum) || this.latentLayerNum < 0 ||
      this.latentLayerNum > layers.length
    ) {
      throw new RangeError(
        `AR1 latentLayerNum must be an integer in [0, ${layers.length}] (the model has ` +
          `${layers.length} feature layers: ${
            layers.map((l, i) => `${i} ${l.constructor.name}`).join(", ")
          }), got ${String(opts.latentLayerNum)}`,
      );
    }
    this.rmSz = opts.rmSz ?? 1500;
    if (!Number.isInteger(this.rmSz) || this.rmSz < 0) {
      throw new RangeError(`AR1 rmSz must be an integer ≥ 0, got ${String(opts.rmSz)}`);
    }
    this.ewcLambda = opts.ewcLambda ?? 0;
    if (typeof this.ewcLambda !== "number" || !(this.ewcLambda >= 0)) {
      throw new RangeError(`AR1 ewcLambda must be a number ≥ 0, got ${String(opts.ewcLambda)}`);
    }
    const names = [...model.namedParameters().keys()];
    const upper = new Set([
      ...layers.slice(this.latentLayerNum).flatMap((
        l,
        i,
      ) => [...l.namedParameters(`features.${this.latentLayerNum + i}.`).keys()]),
      ...model.classifier.namedParameters("classifier.").keys(),
    ]);
    this.freezeBelowLayer = opts.freezeBelowLayer ?? names.find((n) => upper.has(n));
    if (opts.freezeBelowLayer !== undefined && !names.includes(opts.freezeBelowLayer)) {
      throw new RangeError(
        `AR1 freezeBelowLayer "${opts.freezeBelowLayer}" is not a parameter of the model ` +
          `(parameters: ${names.join(", ")})`,
      );
    }
    const stop = this.freezeBelowLayer === undefined
      ? names.length
      : names.indexOf(this.freezeBelowLayer);
    this.#frozen = new Set(names.slice(0, stop));
    this.cwr = new CWRStarPlugin(model, undefined, false);
    this.si = this.ewcLambda > 0
      ? new SynapticIntelligencePlugin({
        lambda: this.ewcLambda,
        excludedParameters: [this.cwr.cwrLayerName],
      })
      : undefined;
  }

  /** Parameters frozen from the second experience on. */
  get frozenParameters(): ReadonlySet<string> {
    return this.#frozen;
  }

  /** The latent replay memory (undefined before the first experience ends). */
  get memory(): Readonly<LatentMemory> | undefined {
    return this.#rm;
  }

  /** Memory activations per minibatch in the current experience. */
  get replayBatchSize(): number {
    return this.#replayMb;
  }

  /** The lower part's activations (the latent layer's input). */
  lower(x: tf.Tensor): tf.Tensor {
    let h = x;
    for (const l of (this.model.features as Sequential).layers.slice(0, this.latentLayerNum)) {
      h = l.forward(h);
    }
    return h;
  }

  /** The upper part's output for latent activations. */
  upper(h: tf.Tensor): tf.Tensor {
    for (const l of (this.model.features as Sequential).layers.slice(this.latentLayerNum)) {
      h = l.forward(h);
    }
    return this.model.classifier.forward(h);
  }

  #setModes(): void {
    const layers = (this.model.features as Sequential).layers;
    this.model.eval();
    for (const l of layers.slice(this.latentLayerNum)) l.train();
    this.model.classifier.train();
  }

  async beforeTrainingExp(ctx: StrategyContext): Promise<void> {
    this.#setModes();
    const later = ctx.clock.trainExperiences > 0;
    if (later) ctx.optimizer.reset();
    this.si?.beforeTrainingExp(ctx);
    await this.cwr.beforeTrainingExp(ctx);
    this.#cur = undefined;
    this.#replayMb = 0;
    if (later && this.#rm) {
      const counts = new Map<number, number>();
      for (const c of this.#rm.y) counts.set(c, (counts.get(c) ?? 0) + 1);
      this.cwr.includeClassCounts(counts);
      const n = ctx.dataset!.length, mb = ctx.settings.batchSize;
      const m = this.#rm.y.length;
      const cur = Math.max(1, Math.floor(n / Math.max(1, Math.floor((n + m) / mb))));
      this.#replayMb = Math.max(0, mb - cur);
      ctx.dataLoader = new DatasetLoader(ctx.dataset!, {
        batchSize: Math.min(cur, n),
        shuffle: ctx.settings.shuffle,
        dropLast: ctx.settings.dropLast,
      });
    }
  }

  beforeTrainingEpoch(): void {
    this.#setModes();
  }

  async beforeTrainingIteration(ctx: StrategyContext): Promise<void> {
    const batch = ctx.batch!;
    if (ctx.clock.trainExperiences > 0) {
      for (const name of this.#frozen) ctx.params.delete(name);
    }
    if (ctx.clock.epoch === 0) {
      // The lower part's activations before this iteration's update (Avalanche stores those of
      // the training forward pass).
      const acts = tf.tidy(() => this.lower(batch.x));
      // Read asynchronously: the "webgpu" backend has no synchronous read of GPU data.
      const values = await acts.data() as Float32Array;
      const shape = acts.shape.slice(1);
      if (acts !== batch.x) acts.dispose(); // an empty lower part returns the inputs themselves
      const cur = this.#cur ??= { shape, x: [], y: [] };
      const size = shape.reduce((a, b) => a * b, 1);
      for (let i = 0; i < batch.n; i++) {
        cur.x.push(values.slice(i * size, (i + 1) * size));
        cur.y.push(batch.data.y[i]);
      }
    }
    this.#replay = undefined;
    const rm = this.#rm;
    if (ctx.clock.trainExperiences > 0 && rm && this.#replayMb > 0) {
      const from = ctx.clock.epochIteration * this.#replayMb;
      const to = Math.min(rm.y.length, from + this.#replayMb);
      if (to > from) {
        const size = rm.shape.reduce((a, b) => a * b, 1);
        this.#replay = {
          x: tf.tensor(rm.x.subarray(from * size, to * size), [to - from, ...rm.shape]),
          y: tf.tensor1d(rm.y.subarray(from, to), "int32"),
          n: to - from,
        };
      }
    }
  }

  beforeBackward(ctx: StrategyContext): void {
    const rep = this.#replay;
    if (rep) {
      const replayed = ctx.criterion(this.upper(rep.x), rep.y);
      const fresh = ctx.criterion(ctx.output!, ctx.batch!.y);
      const w = rep.n / (rep.n + ctx.batch!.n);
      ctx.addLoss(tf.mul(tf.sub(replayed, fresh), w) as tf.Scalar, "latentReplay");
    }
    this.si?.beforeBackward(ctx);
  }

  beforeUpdate(ctx: StrategyContext): void {
    this.si?.beforeUpdate(ctx);
  }

  afterUpdate(ctx: StrategyContext): void {
    this.si?.afterUpdate(ctx);
  }

  afterTrainingIteration(): void {
    this.#replay = undefined;
  }

  async afterTrainingExp(ctx: StrategyContext): Promise<void> {
    const cur = this.#cur;
    if (cur && cur.y.length > 0) {
      const k = ctx.clock.trainExperiences;
      const h = Math.min(Math.floor(this.rmSz / (k + 1)), cur.y.length);
      const picked = ctx.rng.sample(cur.y.length, h);
      const size = cur.shape.reduce((a, b) => a * b, 1);
      if (!this.#rm || k === 0) {
        const x = new Float32Array(h * size), y = new Int32Array(h);
        picked.forEach((p, j) => {
          x.set(cur.x[p], j * size);
          y[j] = cur.y[p];
        });
        this.#rm = { shape: cur.shape, x, y };
      } else {
        const rm = this.#rm;
        const slots = ctx.rng.sample(rm.y.length, Math.min(h, rm.y.length));
        slots.forEach((slot, j) => {
          rm.x.set(cur.x[picked[j]], slot * size);
          rm.y[slot] = cur.y[picked[j]];
        });
      }
    }
    this.#cur = undefined;
    this.si?.afterTrainingExp(ctx);
    await this.cwr.afterTrainingExp();
  }

  async beforeEval(): Promise<void> {
    await this.cwr.beforeEval();
  }

  afterEval(): void {
    this.cwr.afterEval();
  }

  /** Memory, collected activations, CWR*'s and SI's states, as plain data. */
  state(): AR1State {
    return {
      rm: toPlain(this.#rm),
      cur: this.#cur
        ? {
          shape: [...this.#cur.shape],
          x: this.#cur.x.flatMap((r) => Array.from(r)),
          y: [...this.#cur.y],
        }
        : null,
      cwr: this.cwr.state(),
      si: this.si ? this.si.state() : null,
    };
  }

  /** Restores what {@link AR1Plugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as AR1State;
    if (!s || typeof s !== "object" || !("rm" in s) || !s.cwr) {
      throw new TypeError("Not an AR1Plugin state: expected { rm, cur, cwr, si }");
    }
    if ((s.si === null) !== (this.si === undefined)) {
      throw new RangeError(
        `The AR1 state was taken ${s.si ? "with" : "without"} SI (ewcLambda > 0) but this ` +
          `plugin has ewcLambda ${this.ewcLambda}`,
      );
    }
    const rm = fromPlain(s.rm, "memory");
    const cur = fromPlain(s.cur, "collected activations");
    this.cwr.loadState(s.cwr);
    if (this.si && s.si) this.si.loadState(s.si);
    this.#rm = rm;
    if (cur) {
      const size = cur.shape.reduce((a, b) => a * b, 1);
      this.#cur = {
        shape: cur.shape,
        x: Array.from({ length: cur.y.length }, (_, i) => cur.x.slice(i * size, (i + 1) * size)),
        y: Array.from(cur.y),
      };
    } else this.#cur = undefined;
  }

  /** Frees CWR*'s and SI's tensors. */
  dispose(): void {
    this.cwr.dispose();
    this.si?.dispose();
  }
}

/**
 * An {@link AR1Plugin} from options.
 *
 * @example
 * ```ts
 * import { setBackend } from "../backend.ts";
 * import { mlp } from "../models/mlp.ts";
 * import { ar1Plugin } from "./ar1.ts";
 * await setBackend("cpu");
 * const model = mlp({ input: 4, hidden: [3, 3], outputs: 2, seed: 0 });
 * const plugin = ar1Plugin({ model, latentLayerNum: 2 }); // replay what enters the 2nd Linear
 * console.assert(plugin.freezeBelowLayer === "features.2.weight");
 * console.assert([...plugin.frozenParameters].join() === "features.0.weight,features.0.bias");
 * model.dispose();
 * ```
 */
export function ar1Plugin(opts: AR1PluginOptions): AR1Plugin {
  return new AR1Plugin(checkOptions("ar1Plugin", opts, AR1_PLUGIN_OPTIONS));
}

/** Options of {@link ar1}: the strategy's, the plugin's, and Avalanche's SGD settings. */
export interface AR1Options extends StrategyOptions, Omit<AR1PluginOptions, "model"> {
  /** Learning rate of the default SGD (not with `optimizer`). @default 0.001 */
  lr?: number;
  /** Momentum of the default SGD. @default 0.9 */
  momentum?: number;
  /** Weight decay of the default SGD. @default 0.0005 */
  l2?: number;
}

const AR1_SGD_OPTIONS = { lr: "number", momentum: "number", l2: "number" } as const;

/**
 * The AR1 strategy (Avalanche's `AR1`), for class-incremental streams: see {@link AR1Plugin}.
 * Avalanche's defaults: SGD with `lr` 0.001, `momentum` 0.9 and weight decay `l2` 0.0005,
 * 4 epochs, minibatches of 128 (training and evaluation), `rmSz` 1500.
 *
 * @example
 * ```ts ignore
 * const bench = await splitMNIST();
 * const strategy = ar1({ model: mlp({ hidden: [400, 400] }), latentLayerNum: 2, lr: 0.01 });
 * for (const exp of bench.train) await strategy.train(exp);
 * console.log((await strategy.eval(bench.test)).accuracy);
 * ```
 */
export function ar1(opts: AR1Options): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("ar1 expects an options object { model, ... }");
  }
  checkOptions("ar1", opts, { ...STRATEGY_OPTIONS, ...AR1_PLUGIN_OPTIONS, ...AR1_SGD_OPTIONS });
  const { latentLayerNum, freezeBelowLayer, rmSz, ewcLambda, lr, momentum, l2, ...rest } = opts;
  if (rest.optimizer && (lr !== undefined || momentum !== undefined || l2 !== undefined)) {
    throw new TypeError(
      "ar1: give either optimizer or lr/momentum/l2 (which build the default SGD), not both",
    );
  }
  const plugin = new AR1Plugin({
    model: rest.model,
    latentLayerNum,
    freezeBelowLayer,
    rmSz,
    ewcLambda,
  });
  return withPlugin("AR1", plugin, {
    ...rest,
    epochs: rest.epochs ?? 4,
    batchSize: rest.batchSize ?? 128,
    evalBatchSize: rest.evalBatchSize ?? 128,
    optimizer: rest.optimizer ??
      sgd({ lr: lr ?? 0.001, momentum: momentum ?? 0.9, weightDecay: l2 ?? 0.0005 }),
  });
}
