/**
 * Dark Experience Replay, DER and DER++ (Buzzega, Boschini, Porrello, Abati and Calderara, "Dark
 * Experience for General Continual Learning: a Strong, Simple Baseline", NeurIPS 2020), with
 * Avalanche 0.6's names (`DER`, `mem_size`, `batch_size_mem`, `alpha`, `beta`) and Mammoth's
 * training step (`models/der.py`, `models/derpp.py`, `utils/buffer.py`).
 *
 * A reservoir buffer keeps samples of the stream together with the logits the model gave them
 * when they were seen; each step adds to the cross-entropy of the current minibatch
 *
 * - `alpha · MSE(model(x₁), z₁)` on a minibatch `(x₁, z₁)` of the buffer's samples and stored
 *   logits (DER), and
 * - `beta · CE(model(x₂), y₂)` on a second, independently drawn minibatch (DER++).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { BatchPart } from "../data/loader.ts";
import { checkBatchSize } from "../data/loader.ts";
import type { Dataset } from "../data/dataset.ts";
import { StagingArray } from "../nn/staging.ts";
import type { Rng } from "../random.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import { type MaterializedDataset, type MemoryTensors, SampleMemory } from "./memory.ts";

// -------------------------------------------------------------------------------- buffer ----

/** Plain-data state of a {@link LogitsReservoir}. */
export interface LogitsReservoirState {
  version: 1;
  /** Samples offered to the buffer so far (reservoir sampling's counter). */
  seen: number;
  /** The samples with their fields `logits` and `logitsWidth`. */
  memory: MaterializedDataset;
}

/**
 * Mammoth's reservoir `Buffer` of samples with their logits: sample number `s` of the stream
 * (counting from 0) fills the next free slot while the buffer is not full, else replaces slot
 * `r = rng.int(s + 1)` when `r < capacity` (is dropped otherwise), so that every sample seen is
 * in the buffer with the same probability. Samples are kept as (dataset, index) views, as the
 * replay memories keep them; the logits are copied.
 *
 * Logits of different widths (an incremental head that grew between insertions) are stored at
 * the widest width seen, zero-padded, with each sample's own width in the field `logitsWidth`,
 * so that the DER term compares only the units a sample's logits were recorded for.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { Rng } from "../random.ts";
 * import { LogitsReservoir } from "./der.ts";
 * const d = new ArrayDataset({ x: new Float32Array([0, 1, 2]), y: [0, 1, 0], inputShape: [1] });
 * const buffer = new LogitsReservoir(2);
 * buffer.add([{ dataset: d, indices: Int32Array.from([0, 1]) }], new Float32Array([1, 2, 3, 4]), 2, new Rng(0));
 * console.assert(buffer.size === 2 && buffer.memory.field("logits")!.values.join() === "1,2,3,4");
 * ```
 */
export class LogitsReservoir {
  /** Capacity (samples). */
  readonly capacity: number;
  #seen = 0;
  #size = 0;
  #width = 0;
  #sources: Dataset[] = [];
  #sourceIds = new Map<Dataset, number>();
  #sourceOf: Int32Array;
  #indexOf: Int32Array;
  #logits = new Float32Array(0);
  #widths: Int32Array;
  #memory: SampleMemory | undefined;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`memSize must be an integer ≥ 1, got ${capacity}`);
    }
    this.capacity = capacity;
    this.#sourceOf = new Int32Array(capacity);
    this.#indexOf = new Int32Array(capacity);
    this.#widths = new Int32Array(capacity);
  }

  /** Samples offered so far. */
  get seen(): number {
    return this.#seen;
  }

  /** Samples held. */
  get size(): number {
    return this.#size;
  }

  /** Width the logits are stored at (the widest seen; 0 while empty). */
  get width(): number {
    return this.#width;
  }

  /**
   * Offers the samples of `parts` (in order) with their logits, `width` values a sample
   * (`logits` holds at least `n · width`), drawing replacements from `rng`.
   */
  add(parts: readonly BatchPart[], logits: Float32Array, width: number, rng: Rng): void {
    let n = 0;
    for (const p of parts) n += p.indices.length;
    if (!Number.isInteger(width) || width < 1 || logits.length < n * width) {
      throw new RangeError(
        `DER buffer: ${logits.length} logits for ${n} samples of width ${width}; give the ` +
          `model's output for every sample of the minibatch`,
      );
    }
    if (width > this.#width) this.#widen(width);
    const W = this.#width;
    let row = 0;
    for (const part of parts) {
      let id = this.#sourceIds.get(part.dataset);
      for (const index of part.indices) {
        const slot = this.#seen < this.capacity ? this.#seen : rng.int(this.#seen + 1);
        this.#seen++;
        if (slot < this.capacity) {
          if (id === undefined) {
            id = this.#sources.length;
            this.#sources.push(part.dataset);
            this.#sourceIds.set(part.dataset, id);
          }
          this.#sourceOf[slot] = id;
          this.#indexOf[slot] = index;
          const at = slot * W;
          this.#logits.set(logits.subarray(row * width, (row + 1) * width), at);
          this.#logits.fill(0, at + width, at + W);
          this.#widths[slot] = width;
          if (slot >= this.#size) this.#size = slot + 1;
          this.#memory = undefined;
        }
        row++;
      }
    }
  }

  /** Re-lays the stored logits at a larger width, zero-padded. */
  #widen(width: number): void {
    const old = this.#logits, W = this.#width;
    const next = new Float32Array(this.capacity * width);
    for (let k = 0; k < this.#size; k++) next.set(old.subarray(k * W, (k + 1) * W), k * width);
    this.#logits = next;
    this.#width = width;
    this.#memory = undefined;
  }

  /**
   * The buffer as a memory, in slot order, with the fields `logits` (`[width]`) and
   * `logitsWidth` (`[1]`, each sample's own width).
   */
  get memory(): SampleMemory {
    if (this.#memory) return this.#memory;
    const n = this.#size, W = this.#width;
    if (n === 0) return this.#memory = SampleMemory.empty();
    const m = new SampleMemory(
      this.#sources,
      this.#sourceOf.subarray(0, n),
      this.#indexOf.subarray(0, n),
      undefined,
      new Map([
        ["logits", { shape: [W], values: this.#logits.slice(0, n * W) }],
        ["logitsWidth", { shape: [1], values: Float32Array.from(this.#widths.subarray(0, n)) }],
      ]),
    );
    // The memory keeps only the datasets still referenced: drop the others here too, so that
    // the experiences no sample comes from any more can be freed.
    this.#sources = [...m.sources];
    this.#sourceIds = new Map(this.#sources.map((d, i) => [d, i]));
    this.#sourceOf.set(m.sourceOf);
    this.#indexOf.set(m.indexOf);
    return this.#memory = m;
  }

  /**
   * `min(k, size)` distinct slots drawn uniformly from `rng` (Mammoth's `get_data`:
   * `np.random.choice(size, k, replace=False)`).
   */
  sample(k: number, rng: Rng): Int32Array {
    return rng.sample(this.#size, Math.min(k, this.#size));
  }

  /** The stored logits of `slots` as `[n, width]` values, and each slot's own width. */
  logitsOf(slots: Int32Array): { values: Float32Array; widths: Int32Array } {
    const W = this.#width;
    const values = new Float32Array(slots.length * W);
    const widths = new Int32Array(slots.length);
    slots.forEach((s, k) => {
      values.set(this.#logits.subarray(s * W, (s + 1) * W), k * W);
      widths[k] = this.#widths[s];
    });
    return { values, widths };
  }

  /** Plain-data state (the samples copied out, with their logits). */
  state(): LogitsReservoirState {
    return { version: 1, seen: this.#seen, memory: this.memory.materialize() };
  }

  /** Replaces the content with what {@link LogitsReservoir.state} returned. */
  loadState(state: LogitsReservoirState): void {
    if (!state || state.version !== 1 || !Number.isInteger(state.seen) || !state.memory) {
      throw new TypeError("Not a DER buffer state: expected { version: 1, seen, memory }");
    }
    const n = state.memory.y?.length ?? 0;
    if (n > this.capacity || n > state.seen) {
      throw new RangeError(
        `DER buffer state holds ${n} samples for a capacity of ${this.capacity} after ` +
          `${state.seen} seen: restore it into a plugin of the same memSize`,
      );
    }
    const m = n > 0 ? SampleMemory.fromMaterialized(state.memory) : SampleMemory.empty();
    const logits = m.field("logits"), widths = m.field("logitsWidth");
    if (n > 0 && (!logits || !widths || logits.shape.length !== 1)) {
      throw new RangeError("DER buffer state lacks the fields logits and logitsWidth");
    }
    const W = n > 0 ? logits!.shape[0] : 0;
    this.#seen = state.seen;
    this.#size = n;
    this.#width = W;
    this.#sources = [...m.sources];
    this.#sourceIds = new Map(this.#sources.map((d, i) => [d, i]));
    this.#sourceOf = new Int32Array(this.capacity);
    this.#indexOf = new Int32Array(this.capacity);
    this.#sourceOf.set(m.sourceOf);
    this.#indexOf.set(m.indexOf);
    this.#logits = new Float32Array(this.capacity * W);
    if (n > 0) this.#logits.set(logits!.values);
    this.#widths = new Int32Array(this.capacity);
    if (n > 0) this.#widths.set(widths!.values);
    this.#memory = undefined;
  }

  /** Empties the buffer. */
  clear(): void {
    this.loadState({ version: 1, seen: 0, memory: SampleMemory.empty().materialize() });
  }
}

// --------------------------------------------------------------------------------- terms ----

/**
 * DER's logit term: the mean squared error between `output` ([n, C]) and stored `logits`
 * ([n, W], W ≤ C), over the first W units (PyTorch's `F.mse_loss`, a mean over every value,
 * when W = C). With `widths`, sample i's error covers only its first `widths[i]` units, and the
 * mean is over the values compared. Differentiable.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { derLogitsLoss } from "./der.ts";
 * await setBackend("cpu");
 * const v = derLogitsLoss(tf.tensor2d([[1, 2]]), tf.tensor2d([[0, 0]])).dataSync()[0];
 * console.assert(v === 2.5); // (1² + 2²) / 2
 * ```
 */
export function derLogitsLoss(
  output: tf.Tensor,
  logits: tf.Tensor,
  widths?: ArrayLike<number>,
): tf.Scalar {
  const [n, W] = logits.shape;
  if (output.rank !== 2 || logits.rank !== 2 || output.shape[0] !== n || output.shape[1]! < W!) {
    throw new RangeError(
      `DER: outputs [${output.shape}] cannot be compared with stored logits [${logits.shape}]: ` +
        `the model must give at least as many units as when the logits were stored`,
    );
  }
  return tf.tidy(() => {
    const out = output.shape[1] === W ? output : tf.slice(output, [0, 0], [n!, W!]);
    const sq = tf.square(tf.sub(out, logits));
    let full = true;
    for (let i = 0; widths && i < n!; i++) if (widths[i] !== W) full = false;
    if (full) return tf.mean(sq) as tf.Scalar;
    const mask = new Float32Array(n! * W!);
    let count = 0;
    for (let i = 0; i < n!; i++) {
      const w = Math.min(widths![i], W!);
      mask.fill(1, i * W!, i * W! + w);
      count += w;
    }
    return tf.div(tf.sum(tf.mul(sq, tf.tensor2d(mask, [n!, W!]))), Math.max(count, 1)) as tf.Scalar;
  });
}

// -------------------------------------------------------------------------------- plugin ----

/** DER's default weight of the logit term (Avalanche 0.6's `alpha`). */
export const DER_ALPHA = 0.1;
/** DER++'s default weight of the label term (Avalanche 0.6's `beta`; Mammoth requires one). */
export const DERPP_BETA = 0.5;

/** Options of {@link DERPlugin} and {@link derPlugin}. */
export interface DERPluginOptions {
  /** Buffer capacity (samples). @default 200 */
  memSize?: number;
  /** Samples of each buffer minibatch. Default: the strategy's `batchSize`. */
  batchSizeMem?: number;
  /** Weight of the MSE on stored logits. @default 0.1 */
  alpha?: number;
  /** Weight of the cross-entropy on the buffer's labels: 0 is DER, > 0 DER++. @default 0 */
  beta?: number;
}

/** The keys of {@link DERPluginOptions}, for checking what users pass. */
const DER_PLUGIN_OPTIONS: OptionSpec<DERPluginOptions> = {
  memSize: "integer",
  batchSizeMem: "integer",
  alpha: "number",
  beta: "number",
};

/** Plain-data state of {@link DERPlugin}. */
export interface DERPluginState {
  version: 1;
  buffer: LogitsReservoirState;
}

function checkWeight(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
    throw new RangeError(`DER ${name} must be a finite number ≥ 0, got ${String(v)}`);
  }
  return v;
}

/**
 * DER and DER++ (Buzzega et al. 2020), Avalanche's `DER` as a plugin, each step as Mammoth's
 * `observe()`:
 *
 * - `beforeBackward`, once the buffer holds a sample (from the second minibatch of the stream
 *   on, as Mammoth's `is_empty()`): draws `min(batchSizeMem, size)` distinct buffer samples from
 *   `ctx.rng`, runs the model on them and adds `alpha ·` {@link derLogitsLoss} against their
 *   stored logits as the term `"der"`; with `beta > 0` draws a second, independent minibatch and
 *   adds `beta · criterion(model(x₂), y₂)` as `"derpp"`. The current minibatch's loss is the
 *   strategy's criterion, as in Mammoth.
 * - `afterTrainingIteration`: offers the minibatch's samples (`ctx.batch.parts`) to the
 *   reservoir ({@link LogitsReservoir}) with the outputs the model gave them in this
 *   iteration's forward pass, before the update (Mammoth's `outputs.data`).
 *
 * We follow Mammoth rather than Avalanche 0.6's `DER` where they differ: Avalanche concatenates
 * one buffer minibatch to the current one (one forward pass, the same samples for both terms),
 * keeps a class-balanced buffer and stores logits computed in eval mode after each experience.
 * Mammoth's is the paper's algorithm: one buffer filled by reservoir sampling during training
 * (so the logits are those along the optimization trajectory, the "dark knowledge" the paper is
 * about), and two independent minibatches, which Avalanche's comments list as a difference from
 * the authors' code. The buffer's forward pass runs inside the gradient tape (the plugin does
 * not declare `tapeFree`: its terms depend on the parameters through other inputs).
 *
 * Incremental heads: Mammoth's head has every class from the start, so stored logits are always
 * full width; Avalanche 0.6 does not handle a head that grows. Here each sample's logits are
 * compared with the first units of the current output, as many as were stored for it (the
 * units added since are left to the cross-entropy terms).
 *
 * @example
 * ```ts ignore
 * import { DERPlugin, mlp, naive } from "../../mod.ts";
 * const strategy = naive({ model: mlp(), plugins: [new DERPlugin(500, 32, 0.3, 0.5)] });
 * ```
 */
export class DERPlugin extends StrategyPlugin {
  readonly memSize: number;
  /** Buffer minibatch size (undefined: the strategy's batch size). */
  readonly batchSizeMem: number | undefined;
  readonly alpha: number;
  readonly beta: number;
  /** The reservoir of samples and logits. */
  readonly buffer: LogitsReservoir;
  #staging = new StagingArray();

  /**
   * Avalanche 0.6's order: `(memSize = 200, batchSizeMem, alpha = 0.1, beta = 0)`, or all
   * options as an object. Avalanche's `DER` defaults to `beta = 0.5` (DER++); ours is DER
   * unless `beta` is given ({@link derpp} gives 0.5).
   */
  constructor(
    memSize: number | DERPluginOptions | null = 200,
    batchSizeMem?: number | null,
    alpha?: number | null,
    beta?: number | null,
  ) {
    super();
    const o: DERPluginOptions = memSize !== null && typeof memSize === "object"
      ? checkOptions("DERPlugin", memSize, DER_PLUGIN_OPTIONS)
      : {
        memSize: memSize ?? undefined,
        batchSizeMem: batchSizeMem ?? undefined,
        alpha: alpha ?? undefined,
        beta: beta ?? undefined,
      };
    if (o.memSize !== undefined && typeof o.memSize !== "number") {
      throw new TypeError(`DERPlugin expects memSize (a number) or an options object`);
    }
    this.buffer = new LogitsReservoir(o.memSize ?? 200);
    this.memSize = this.buffer.capacity;
    if (o.batchSizeMem !== undefined) checkBatchSize("batchSizeMem", o.batchSizeMem);
    this.batchSizeMem = o.batchSizeMem;
    this.alpha = checkWeight("alpha", o.alpha ?? DER_ALPHA);
    this.beta = checkWeight("beta", o.beta ?? 0);
  }

  /** The buffer as a memory with the fields `logits` and `logitsWidth`. */
  get memory(): SampleMemory {
    return this.buffer.memory;
  }

  /** The model's output for buffer samples, with their tensors. */
  #forward(ctx: StrategyContext, slots: Int32Array): [tf.Tensor, MemoryTensors] {
    const mt = this.buffer.memory.tensors(slots, this.#staging);
    return [ctx.model.forward(mt.x, { taskLabels: mt.t, taskLabelsArray: mt.tArray }), mt];
  }

  /**
   * Adds the terms `"der"` (alpha · MSE on stored logits) and `"derpp"` (beta · CE). With both
   * weights, the two buffer minibatches (drawn independently, as Mammoth's two `get_data`
   * calls) go through the model in one forward pass of their rows stacked, whose output rows
   * are then split between the two terms: the same values as two passes (the model treats
   * each sample on its own), with one larger product a layer instead of two.
   */
  beforeBackward(ctx: StrategyContext): void {
    if (this.buffer.size === 0 || !ctx.batch) return;
    const k = this.batchSizeMem ?? ctx.settings.batchSize;
    const slots1 = this.alpha > 0 ? this.buffer.sample(k, ctx.rng) : new Int32Array(0);
    const slots2 = this.beta > 0 ? this.buffer.sample(k, ctx.rng) : new Int32Array(0);
    const n1 = slots1.length, n2 = slots2.length;
    const slots = n2 === 0 ? slots1 : n1 === 0 ? slots2 : new Int32Array(n1 + n2);
    if (n1 > 0 && n2 > 0) {
      slots.set(slots1);
      slots.set(slots2, n1);
    }
    const [out, mt] = this.#forward(ctx, slots);
    const rows = (t: tf.Tensor, start: number, n: number) =>
      n === out.shape[0] ? t : tf.slice(t, start, n);
    if (n1 > 0) {
      const { values, widths } = this.buffer.logitsOf(slots1);
      const logits = tf.tensor2d(values, [n1, this.buffer.width]);
      const term = derLogitsLoss(rows(out, 0, n1), logits, widths);
      ctx.addLoss(tf.mul(term, this.alpha) as tf.Scalar, "der");
    }
    if (n2 > 0) {
      const y = rows(mt.y, n1, n2) as tf.Tensor1D;
      ctx.addLoss(tf.mul(ctx.criterion(rows(out, n1, n2), y), this.beta) as tf.Scalar, "derpp");
    }
  }

  /** Offers the minibatch's samples, with the outputs of this iteration, to the reservoir. */
  async afterTrainingIteration(ctx: StrategyContext): Promise<void> {
    const batch = ctx.batch, output = ctx.output;
    if (!batch || !output) return;
    if (output.rank !== 2 || output.shape[0] !== batch.n) {
      throw new RangeError(
        `DER stores one row of logits a sample: the output is [${output.shape}] for ` +
          `${batch.n} samples`,
      );
    }
    const values = (await output.data()) as Float32Array;
    this.buffer.add(batch.parts, values, output.shape[1]!, ctx.rng);
  }

  /** Plain-data state for checkpoints: the buffer's samples, logits and counter. */
  state(): DERPluginState {
    return { version: 1, buffer: this.buffer.state() };
  }

  /** Restores what {@link DERPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as DERPluginState;
    if (!s || s.version !== 1 || !s.buffer) {
      throw new TypeError("Not a DERPlugin state: expected { version: 1, buffer }");
    }
    this.buffer.loadState(s.buffer);
  }

  /** Empties the buffer. */
  dispose(): void {
    this.buffer.clear();
  }
}

/**
 * A {@link DERPlugin} (DER unless `beta` > 0).
 *
 * @example
 * ```ts
 * import { derPlugin } from "./der.ts";
 * const plugin = derPlugin({ memSize: 500, alpha: 0.3, beta: 0.5 });
 * console.assert(plugin.memSize === 500 && plugin.beta === 0.5);
 * ```
 */
export function derPlugin(opts: DERPluginOptions = {}): DERPlugin {
  return new DERPlugin(checkOptions("derPlugin", opts, DER_PLUGIN_OPTIONS));
}

/** Options of {@link der} and {@link derpp}: the strategy's options plus DER's. */
export interface DEROptions extends StrategyOptions, DERPluginOptions {}

/**
 * DER (`beta` 0, the default) or DER++ (`beta` > 0): fine-tuning with a {@link DERPlugin}
 * (run first among its plugins).
 *
 * @example DER++ on Split MNIST
 * ```ts ignore
 * import { der, mlp, splitMNIST } from "../../mod.ts";
 * const bench = await splitMNIST({ experiences: 5 });
 * const strategy = der({ model: mlp(), memSize: 500, alpha: 0.3, beta: 0.5 });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function der(opts: DEROptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("der expects an options object { model, memSize, alpha, beta, ... }");
  }
  checkOptions("der", opts, { ...STRATEGY_OPTIONS, ...DER_PLUGIN_OPTIONS });
  const { memSize, batchSizeMem, alpha, beta, ...rest } = opts;
  const plugin = new DERPlugin({ memSize, batchSizeMem, alpha, beta });
  return withPlugin(plugin.beta > 0 ? "DER++" : "DER", plugin, rest);
}

/** DER++: {@link der} with `beta` {@link DERPP_BETA} (0.5) unless given. */
export function derpp(opts: DEROptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("derpp expects an options object { model, memSize, alpha, beta, ... }");
  }
  checkOptions("derpp", opts, { ...STRATEGY_OPTIONS, ...DER_PLUGIN_OPTIONS });
  return der({ ...opts, beta: opts.beta ?? DERPP_BETA });
}
