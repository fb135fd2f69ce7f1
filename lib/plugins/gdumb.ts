/**
 * GDumb (Prabhu, Torr and Dokania, "GDumb: A Simple Approach that Questions Our Progress in
 * Continual Learning", ECCV 2020): a greedy class-balanced memory, and a model trained from
 * scratch on the memory alone.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Dataset } from "../data/dataset.ts";
import type { Module, TensorState } from "../nn/module.ts";
import type { Rng } from "../random.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import { type MaterializedDataset, SampleMemory } from "./memory.ts";

/** Options of {@link GDumbPlugin} and {@link gdumbPlugin}. */
export interface GDumbPluginOptions {
  /** Memory capacity (samples). @default 200 */
  memSize?: number;
}

/** The keys of {@link GDumbPluginOptions}, for checking what users pass. */
const GDUMB_PLUGIN_OPTIONS: OptionSpec<GDumbPluginOptions> = { memSize: "integer" };

/** Plain-data state of a {@link GDumbPlugin}. */
export interface GDumbPluginState {
  /** Memory capacity. */
  memSize: number;
  /** Classes in memory, in order of arrival, and the number of samples of each. */
  classes: number[];
  /** Samples of each class, aligned with `classes`. */
  counts: number[];
  /** The memory's samples, class after class. */
  memory: MaterializedDataset;
  /** The model's initial parameters (null before the first training). */
  init: Record<string, TensorState> | null;
}

interface InitTensor {
  shape: number[];
  values: Float32Array;
}

interface ClassRefs {
  src: number[];
  idx: number[];
}

/**
 * GDumb (Prabhu et al. 2020; Avalanche's `GDumbPlugin`).
 *
 * Memory: a greedy class-balancing sampler fed with each experience's samples in stream order.
 * A sample is stored when the memory is not full; otherwise, when its class holds fewer samples
 * than the largest class, a random sample of the largest class (the earliest-arrived one on
 * ties) is evicted to make room; otherwise it is dropped. Class counts thus stay within one of
 * each other once the memory is full.
 *
 * Training: in `afterTrainDatasetAdaptation` the memory is updated with the experience's data
 * (`ctx.experience.dataset`) and `ctx.dataset` is set to the memory: the model is trained on the
 * memory only.
 *
 * Re-initialization: as Avalanche's plugin (and the paper: the model is trained from scratch at
 * each experience), the model's parameters are reset before each experience's training (in
 * `beforeTrainDatasetAdaptation`) to their values at the first `beforeTraining` (a copy of the
 * state dict is kept as plain arrays, so the plugin holds no tensors); the optimizer's state
 * (momentum, Adam moments) is reset as well, since a fresh model must not inherit it. Parameters
 * that appear or grow later (new heads, output units added when the model adapts to new
 * classes) get, as initial values, those they had when they appeared: so the reset model is the
 * initial model adapted to the classes seen, as in Avalanche (which adapts its initial copy).
 *
 * Online streams: every sub-experience updates the memory and retrains the model from its
 * initial state on the whole memory (Avalanche's behaviour). The greedy sampler is itself
 * online (one sample at a time), so the memory is the same as with whole experiences.
 *
 * Classes are keyed by label only (Avalanche's `mem_size` per task in multi-task scenarios is
 * not reproduced: one memory of `memSize` samples serves all tasks).
 *
 * Constructors: `new GDumbPlugin(memSize?)` or `new GDumbPlugin({ memSize })`.
 *
 * @example
 * ```ts ignore
 * const strategy = naive({ model, epochs: 3, plugins: [new GDumbPlugin(1000)] });
 * for (const exp of bench.train) await strategy.train(exp);
 * ```
 */
export class GDumbPlugin extends StrategyPlugin {
  /** Memory capacity (samples). */
  readonly memSize: number;
  #sources: Dataset[] = [];
  #byClass = new Map<number, ClassRefs>();
  #count = 0;
  #cache: SampleMemory | undefined;
  #init: Map<string, InitTensor> | undefined;

  /**
   * A GDumb plugin with an empty memory.
   * @param memSize capacity (samples, default 200), or options `{ memSize }`.
   */
  constructor(memSize?: number | GDumbPluginOptions) {
    super();
    const m = typeof memSize === "object" && memSize !== null
      ? checkOptions("GDumbPlugin", memSize, GDUMB_PLUGIN_OPTIONS).memSize
      : memSize;
    if (m !== undefined && (typeof m !== "number" || !Number.isInteger(m) || m < 1)) {
      throw new RangeError(`GDumb memSize must be an integer ≥ 1, got ${String(m)}`);
    }
    this.memSize = m ?? 200;
  }

  /** The memory: the samples of each class, classes in order of arrival. */
  get memory(): SampleMemory {
    if (this.#cache) return this.#cache;
    const src: number[] = [], idx: number[] = [];
    for (const r of this.#byClass.values()) {
      for (let q = 0; q < r.idx.length; q++) {
        src.push(r.src[q]);
        idx.push(r.idx[q]);
      }
    }
    this.#cache = new SampleMemory(
      this.#sources,
      Int32Array.from(src),
      Int32Array.from(idx),
      this.#sources[0]?.inputShape,
    );
    return this.#cache;
  }

  /** Samples in memory per class (classes in order of arrival). */
  get classCounts(): Map<number, number> {
    return new Map([...this.#byClass].map(([c, r]) => [c, r.idx.length]));
  }

  /**
   * Feeds the samples of `data` to the greedy sampler in index order (what the plugin does with
   * each experience's data), drawing evictions from `rng`.
   */
  addSamples(data: Dataset, rng: Rng): void {
    if (data.length === 0) return;
    const cur = this.memory;
    if (cur.length > 0 && cur.inputShape.join() !== data.inputShape.join()) {
      throw new RangeError(
        `GDumb's memory holds samples of shape [${cur.inputShape}], the new data [${data.inputShape}]`,
      );
    }
    const s = this.#sources.length;
    this.#sources.push(data);
    const y = data.targets;
    for (let i = 0; i < data.length; i++) {
      const c = y[i];
      let refs = this.#byClass.get(c);
      if (this.#count < this.memSize) {
        if (!refs) this.#byClass.set(c, refs = { src: [], idx: [] });
        refs.src.push(s);
        refs.idx.push(i);
        this.#count++;
        continue;
      }
      let largest: number | undefined, most = -1;
      for (const [k, r] of this.#byClass) {
        if (r.idx.length > most) {
          most = r.idx.length;
          largest = k;
        }
      }
      if ((refs?.idx.length ?? 0) >= most) continue;
      const big = this.#byClass.get(largest!)!;
      const j = rng.int(big.idx.length);
      const last = big.idx.length - 1;
      big.src[j] = big.src[last];
      big.idx[j] = big.idx[last];
      big.src.pop();
      big.idx.pop();
      if (big.idx.length === 0) this.#byClass.delete(largest!);
      if (!refs) this.#byClass.set(c, refs = { src: [], idx: [] });
      refs.src.push(s);
      refs.idx.push(i);
    }
    this.#cache = undefined;
    // Rebuild through SampleMemory to drop sources no longer referenced.
    const mem = this.memory;
    this.#sources = [...mem.sources];
    let k = 0;
    for (const r of this.#byClass.values()) {
      for (let q = 0; q < r.idx.length; q++, k++) r.src[q] = mem.sourceOf[k];
    }
  }

  /** Keeps a copy of the model's initial parameters (first call only). */
  beforeTraining(ctx: StrategyContext): void {
    if (!this.#init) {
      this.#init = new Map();
      this.#recordNew(ctx.model);
    }
  }

  /** Resets the model (and the optimizer's state) to the initial parameters. */
  beforeTrainDatasetAdaptation(ctx: StrategyContext): void {
    this.#recordNew(ctx.model);
    const init = this.#init!;
    for (const [name, v] of ctx.model.namedParameters()) {
      const s = init.get(name)!;
      tf.tidy(() => v.assign(tf.tensor(s.values, s.shape, "float32")));
    }
    ctx.optimizer.reset();
  }

  /** Updates the memory with the experience's data and trains on the memory only. */
  afterTrainDatasetAdaptation(ctx: StrategyContext): void {
    this.addSamples(ctx.experience!.dataset, ctx.rng);
    ctx.dataset = this.memory;
  }

  /** Records the initial values of parameters added or grown by the model's adaptation. */
  beforeTrainingExp(ctx: StrategyContext): void {
    this.#recordNew(ctx.model);
  }

  /** As {@link GDumbPlugin.beforeTrainingExp}: evaluation may grow output layers too. */
  beforeEvalExp(ctx: StrategyContext): void {
    if (this.#init) this.#recordNew(ctx.model);
  }

  #recordNew(model: Module): void {
    const init = this.#init ??= new Map();
    for (const [name, v] of model.namedParameters()) {
      const old = init.get(name);
      if (old && old.shape.join() === v.shape.join()) continue;
      const values = v.dataSync() as Float32Array;
      const fresh = { shape: [...v.shape], values: Float32Array.from(values) };
      if (old) copyOverlap(old, fresh);
      init.set(name, fresh);
    }
  }

  /** The memory (samples included) and the initial parameters as plain data. */
  state(): GDumbPluginState {
    const classes = [...this.#byClass.keys()];
    return {
      memSize: this.memSize,
      classes,
      counts: classes.map((c) => this.#byClass.get(c)!.idx.length),
      memory: this.memory.materialize(),
      init: this.#init
        ? Object.fromEntries(
          [...this.#init].map(([n, t]) => [n, { shape: t.shape, values: Array.from(t.values) }]),
        )
        : null,
    };
  }

  /** Restores what {@link GDumbPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as GDumbPluginState;
    if (
      !s || typeof s !== "object" || !Array.isArray(s.classes) || !Array.isArray(s.counts) ||
      !s.memory
    ) {
      throw new TypeError("Not a GDumbPlugin state: expected { classes, counts, memory, init }");
    }
    if (s.memSize !== this.memSize) {
      throw new RangeError(
        `The checkpoint's GDumb memSize is ${s.memSize}, this plugin's ${this.memSize}: build ` +
          `the plugin with the same memSize`,
      );
    }
    const mem = SampleMemory.fromMaterialized(s.memory);
    const total = s.counts.reduce((a, b) => a + b, 0);
    if (total !== mem.length) {
      throw new RangeError(`GDumb state: counts sum to ${total} but the memory has ${mem.length}`);
    }
    this.#sources = mem.length > 0 ? [mem.sources[0]] : [];
    this.#byClass = new Map();
    let k = 0;
    s.classes.forEach((c, j) => {
      const n = s.counts[j];
      this.#byClass.set(c, {
        src: new Array(n).fill(0),
        idx: Array.from({ length: n }, (_, q) => mem.indexOf[k + q]),
      });
      k += n;
    });
    this.#count = total;
    this.#cache = undefined;
    this.#init = s.init
      ? new Map(
        Object.entries(s.init).map((
          [n, t],
        ) => [n, { shape: [...t.shape], values: Float32Array.from(t.values) }]),
      )
      : undefined;
  }

  /** Holds no tensors: nothing to free (present for uniformity with other plugins). */
  dispose(): void {}
}

/** Copies the values of `from` into `to` where their index ranges overlap (same rank). */
function copyOverlap(from: InitTensor, to: InitTensor): void {
  const rank = to.shape.length;
  if (from.shape.length !== rank) return;
  const lim = to.shape.map((d, i) => Math.min(d, from.shape[i]));
  if (lim.some((d) => d === 0)) return;
  const strides = (shape: number[]) => {
    const s = new Array(shape.length).fill(1);
    for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
    return s;
  };
  const sf = strides(from.shape), st = strides(to.shape);
  const pos = new Array(rank).fill(0);
  if (rank === 0) {
    to.values[0] = from.values[0];
    return;
  }
  while (true) {
    let a = 0, b = 0;
    for (let i = 0; i < rank; i++) {
      a += pos[i] * sf[i];
      b += pos[i] * st[i];
    }
    to.values[b] = from.values[a];
    let d = rank - 1;
    while (d >= 0 && ++pos[d] === lim[d]) pos[d--] = 0;
    if (d < 0) return;
  }
}

/**
 * A GDumb plugin ({@link GDumbPlugin}).
 *
 * @example
 * ```ts
 * import { gdumbPlugin } from "./gdumb.ts";
 * const plugin = gdumbPlugin({ memSize: 1000 });
 * console.assert(plugin.memSize === 1000 && plugin.memory.length === 0);
 * ```
 */
export function gdumbPlugin(opts: GDumbPluginOptions = {}): GDumbPlugin {
  return new GDumbPlugin(checkOptions("gdumbPlugin", opts, GDUMB_PLUGIN_OPTIONS));
}

/** Options of {@link gdumb}: the strategy's, plus the plugin's. */
export interface GDumbOptions extends StrategyOptions, GDumbPluginOptions {}

/**
 * The GDumb strategy: a model retrained from its initial state on a greedy class-balanced
 * memory at each experience ({@link GDumbPlugin}; Avalanche's `GDumb`).
 *
 * @example
 * ```ts ignore
 * const strategy = gdumb({ model: mlp(), memSize: 1000, epochs: 3, batchSize: 32 });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function gdumb(opts: GDumbOptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("gdumb expects an options object { model, memSize, ... }");
  }
  checkOptions("gdumb", opts, { ...STRATEGY_OPTIONS, ...GDUMB_PLUGIN_OPTIONS });
  const { memSize, ...rest } = opts;
  const plugin = new GDumbPlugin({ memSize });
  return withPlugin("GDumb", plugin, rest);
}
