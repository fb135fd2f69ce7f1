/**
 * ER-ACE, experience replay with the asymmetric cross-entropy: Caccia et al., "New Insights on
 * Reducing Abrupt Representation Change in Online Continual Learning" (ICLR 2022). Avalanche's
 * `ER_ACE` strategy and `ACECriterion`.
 *
 * The memory part shared with ER-AML (`er_aml.ts`) lives here too: a reservoir memory, the
 * loader that appends a memory minibatch to each minibatch, and the split of a minibatch's rows
 * into incoming and replayed samples.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Dataset } from "../data/dataset.ts";
import {
  batchesPerEpoch,
  type BatchPart,
  type BatchPlan,
  batchPlan,
  checkBatchSize,
  type DataLoader,
  sampleOrder,
} from "../data/loader.ts";
import { crossEntropy } from "../nn/losses.ts";
import type { Rng } from "../random.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import { ReservoirSamplingBuffer, type StoragePolicyState } from "./storage_policy.ts";

// ---------------------------------------------------------------------------------------------
// The loss
// ---------------------------------------------------------------------------------------------

/**
 * The asymmetric cross-entropy (Avalanche's `ACECriterion`): the incoming samples' cross-entropy
 * over the classes present among them only (the other logits are left out of their softmax, so
 * they get no gradient from these samples), the replayed samples' plain cross-entropy over every
 * class, and the mean of the two. Without replayed samples, the incoming term alone.
 *
 * @param outIn logits of the incoming samples [n, C]
 * @param yIn their labels
 * @param outMem logits of the replayed samples [m, C]
 * @param yMem their labels
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { aceLoss } from "./er_ace.ts";
 * // Class 2 is absent from the incoming samples: its logit, however large, does not count
 * // (each sample's softmax is over classes 0 and 1 only, whose logits are equal).
 * const l = aceLoss(tf.tensor2d([[0, 0, 50], [0, 0, 50]]), [0, 1]);
 * console.assert(Math.abs(l.dataSync()[0] - Math.LN2) < 1e-5);
 * ```
 */
export function aceLoss(
  outIn: tf.Tensor,
  yIn: ArrayLike<number>,
  outMem?: tf.Tensor,
  yMem?: ArrayLike<number>,
): tf.Scalar {
  const n = yIn.length;
  if (outIn.rank !== 2 || outIn.shape[0] !== n || n === 0) {
    throw new RangeError(
      `aceLoss needs the incoming logits as [n, classes] with n = ${n} labels (n ≥ 1), got ` +
        `[${outIn.shape}]`,
    );
  }
  const present = [...new Set(Array.from(yIn))].sort((a, b) => a - b);
  const width = outIn.shape[1]!;
  for (const c of present) {
    if (!(Number.isInteger(c) && c >= 0 && c < width)) {
      throw new RangeError(`aceLoss: label ${c} is outside the ${width} logits`);
    }
  }
  const position = new Map(present.map((c, k) => [c, k]));
  return tf.tidy(() => {
    // Only the present classes' columns enter the softmax: the others get exactly zero gradient.
    // (A product with a 0/1 matrix rather than a gather: its gradient runs on every backend.)
    const sel = new Float32Array(width * present.length);
    present.forEach((c, k) => sel[c * present.length + k] = 1);
    const cols = tf.matMul(outIn as tf.Tensor2D, tf.tensor2d(sel, [width, present.length]));
    const local = tf.tensor1d(Array.from(yIn, (c) => position.get(c)!), "int32");
    const current = crossEntropy(cols, local);
    const m = yMem?.length ?? 0;
    if (!outMem || m === 0) return current;
    if (outMem.rank !== 2 || outMem.shape[0] !== m) {
      throw new RangeError(
        `aceLoss: ${m} memory labels for memory logits of shape [${outMem.shape}]`,
      );
    }
    const memory = crossEntropy(outMem, tf.tensor1d(Array.from(yMem!), "int32"));
    return tf.div(tf.add(current, memory), 2) as tf.Scalar;
  });
}

// ---------------------------------------------------------------------------------------------
// Memory and loader shared by ER-ACE and ER-AML
// ---------------------------------------------------------------------------------------------

/**
 * Minibatches of the current data, each followed by `batchSizeMem` memory samples. The memory
 * samples come from shuffled passes over the memory cut into full chunks (a pass's short rest is
 * skipped, then a new pass is shuffled), and the passes run on across the epochs of one
 * experience: Avalanche's endless `cycle` over a `DataLoader(buffer, batch_size_mem,
 * shuffle=True, drop_last=True)`, made once per experience.
 */
export class ERReplayLoader implements DataLoader {
  #order: Int32Array = new Int32Array(0);
  #pos = 0;

  /**
   * @param data the current experience's data
   * @param memory the memory (at least `batchSizeMem` samples)
   * @param batchSize current samples per minibatch
   * @param batchSizeMem memory samples per minibatch
   * @param shuffle shuffle the current data each epoch
   * @param dropLast drop the current data's last incomplete minibatch
   */
  constructor(
    readonly data: Dataset,
    readonly memory: Dataset,
    readonly batchSize: number,
    readonly batchSizeMem: number,
    readonly shuffle = true,
    readonly dropLast = false,
  ) {
    checkBatchSize("batchSize", batchSize);
    checkBatchSize("batchSizeMem", batchSizeMem);
    if (memory.length < batchSizeMem) {
      throw new RangeError(
        `ERReplayLoader needs at least batchSizeMem (${batchSizeMem}) memory samples, got ` +
          `${memory.length}`,
      );
    }
  }

  /** Minibatches per epoch: those of the current data. */
  get length(): number {
    return batchesPerEpoch(this.data.length, this.batchSize, this.dropLast);
  }

  /** Samples per epoch, current and memory. */
  get samples(): number {
    const current = this.dropLast ? this.length * this.batchSize : this.data.length;
    return current + this.length * this.batchSizeMem;
  }

  #memoryChunk(rng: Rng): Int32Array {
    if (this.#pos + this.batchSizeMem > this.#order.length) {
      this.#order = rng.permutation(this.memory.length);
      this.#pos = 0;
    }
    const chunk = this.#order.subarray(this.#pos, this.#pos + this.batchSizeMem);
    this.#pos += this.batchSizeMem;
    return chunk;
  }

  *epoch(rng: Rng): Iterable<BatchPlan> {
    const n = this.data.length;
    const order = sampleOrder(n, this.shuffle, rng);
    for (let k = 0; k < this.length; k++) {
      const parts: BatchPart[] = [
        {
          dataset: this.data,
          indices: order.subarray(k * this.batchSize, (k + 1) * this.batchSize),
        },
        { dataset: this.memory, indices: this.#memoryChunk(rng) },
      ];
      yield batchPlan(...parts);
    }
  }
}

/**
 * The rows `rows` of a [n, k] tensor, as the product with a 0/1 matrix: exact, and its gradient
 * runs on every backend (a gather's needs a kernel the wasm backend lacks).
 */
export function selectRows(x: tf.Tensor, rows: readonly number[]): tf.Tensor2D {
  return tf.tidy(() => {
    const n = x.shape[0];
    const sel = new Float32Array(rows.length * n);
    rows.forEach((r, k) => sel[k * n + r] = 1);
    return tf.matMul(tf.tensor2d(sel, [rows.length, n]), x as tf.Tensor2D);
  });
}

/** Rows of a minibatch: those of the incoming samples and those replayed from `memory`. */
export interface SplitRows {
  /** Rows of incoming samples, in order. */
  incoming: number[];
  /** Rows of memory samples, in order. */
  replayed: number[];
  /** For each replayed row, its index in the memory. */
  memoryIndex: number[];
}

/** Splits a minibatch's rows by where they came from (`ctx.batch.parts`). */
export function splitRows(parts: readonly BatchPart[], memory: Dataset | undefined): SplitRows {
  const out: SplitRows = { incoming: [], replayed: [], memoryIndex: [] };
  let row = 0;
  for (const p of parts) {
    for (let i = 0; i < p.indices.length; i++, row++) {
      if (p.dataset === memory) {
        out.replayed.push(row);
        out.memoryIndex.push(p.indices[i]);
      } else {
        out.incoming.push(row);
      }
    }
  }
  return out;
}

/** Options shared by {@link ERACEPlugin} and `ERAMLPlugin`. */
export interface ERMemoryOptions {
  /** Samples of the reservoir memory (Avalanche's `mem_size`). @default 200 */
  memSize?: number;
  /** Memory samples per minibatch (Avalanche's `batch_size_mem`). @default 10 */
  batchSizeMem?: number;
}

/** The keys of {@link ERMemoryOptions}. */
export const ER_MEMORY_OPTIONS: OptionSpec<ERMemoryOptions> = {
  memSize: "integer",
  batchSizeMem: "integer",
};

/** Plain-data state of {@link ERACEPlugin} and `ERAMLPlugin`. */
export interface ERMemoryState {
  /** The reservoir (samples and weights). */
  storagePolicy: StoragePolicyState;
}

/** True for an experience cut from a larger one by `splitOnline` (it knows its origin). */
function isOnlineExperience(exp: unknown): boolean {
  return typeof exp === "object" && exp !== null && "origin" in exp;
}

function checkPositive(fn: string, name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new RangeError(`${fn}: ${name} must be an integer ≥ 1, got ${String(v)}`);
  }
  return v;
}

/**
 * The memory side of ER-ACE and ER-AML: a reservoir of `memSize` samples drawn from the run's
 * generator and, once it holds `batchSizeMem` samples, a loader that appends `batchSizeMem`
 * memory samples to each minibatch ({@link ERReplayLoader}). When the memory takes an
 * experience's data depends on the stream, as in Avalanche 0.6:
 * - an online stream (experiences cut by `splitOnline`): after each experience is trained
 *   (`OnlineER_ACE`: each experience is one minibatch, so the memory follows the stream as the
 *   authors' per-minibatch reservoir does);
 * - otherwise: before each experience is trained (`ER_ACE`, "adapted to non-online scenario"),
 *   so the classes being learnt are replayed too, and replay starts with the second experience.
 *   Offered only after training, a large experience's classes would never be replayed while they
 *   are new, and the masked loss alone would never raise them above the old ones.
 */
export abstract class ERMemoryPlugin extends StrategyPlugin {
  /** Memory capacity (samples). */
  readonly memSize: number;
  /** Memory samples per minibatch. */
  readonly batchSizeMem: number;
  /** The reservoir. */
  readonly storagePolicy: ReservoirSamplingBuffer;
  /** The memory being replayed in the current experience (undefined: none yet). */
  protected replaying: Dataset | undefined;

  constructor(fn: string, o: ERMemoryOptions) {
    super();
    this.memSize = checkPositive(fn, "memSize", o.memSize ?? 200);
    this.batchSizeMem = checkPositive(fn, "batchSizeMem", o.batchSizeMem ?? 10);
    this.storagePolicy = new ReservoirSamplingBuffer(this.memSize);
  }

  /** The samples in memory. */
  get buffer(): Dataset {
    return this.storagePolicy.buffer;
  }

  /** Replays the memory once it holds a memory minibatch (offline: with this experience in it). */
  beforeTrainingExp(ctx: StrategyContext): void {
    this.replaying = undefined;
    const online = isOnlineExperience(ctx.experience);
    if (!online) this.storagePolicy.update(ctx);
    const memory = this.storagePolicy.buffer;
    if (memory.length < this.batchSizeMem) return;
    if (!online && ctx.clock.trainExperiences === 0) return;
    this.replaying = memory;
    ctx.dataLoader = new ERReplayLoader(
      ctx.dataset!,
      memory,
      ctx.settings.batchSize,
      this.batchSizeMem,
      ctx.settings.shuffle,
      ctx.settings.dropLast,
    );
  }

  /** Offers an online experience's data to the reservoir (offline ones went in before). */
  afterTrainingExp(ctx: StrategyContext): void {
    this.replaying = undefined;
    if (isOnlineExperience(ctx.experience)) this.storagePolicy.update(ctx);
  }

  /**
   * Puts `value` in place of the criterion's value in the loss, keeping the terms other plugins
   * added (their gradients unchanged, the criterion's cancelled exactly).
   */
  protected replaceLoss(ctx: StrategyContext, value: tf.Scalar, name: string): void {
    if (ctx.lossTerms.size === 0) {
      ctx.loss = value;
    } else {
      const criterion = ctx.criterion(ctx.output!, ctx.batch!.y);
      ctx.loss = tf.add(value, tf.sub(ctx.loss!, criterion)) as tf.Scalar;
    }
    ctx.lossTerms.set(name, value);
  }

  /** The memory (samples and reservoir weights) as plain data. */
  state(): ERMemoryState {
    return { storagePolicy: this.storagePolicy.state() };
  }

  /** Restores what {@link ERMemoryPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as ERMemoryState;
    if (!s || typeof s !== "object" || !s.storagePolicy) {
      throw new TypeError(`Not a ${this.constructor.name} state: expected { storagePolicy }`);
    }
    this.storagePolicy.loadState(s.storagePolicy);
  }

  /** Holds no tensors. */
  dispose(): void {}
}

// ---------------------------------------------------------------------------------------------
// ER-ACE
// ---------------------------------------------------------------------------------------------

/** Options of {@link ERACEPlugin} and {@link erAcePlugin}. */
export type ERACEPluginOptions = ERMemoryOptions;

/**
 * ER-ACE (Avalanche's `ER_ACE`, Caccia et al. 2022): experience replay in which the incoming
 * samples' cross-entropy is taken over the classes present in the incoming minibatch only, so
 * that new classes do not push down the logits of the old ones (the abrupt change of
 * representation the paper shows at each task switch), while the replayed samples keep the full
 * cross-entropy.
 *
 * - memory: a reservoir of `memSize` samples (the run's generator), updated with each
 *   experience's data after training it (Avalanche's `OnlineER_ACE`; with `splitOnline`
 *   experiences of one minibatch, after every minibatch as in the paper);
 * - replay: once the memory holds `batchSizeMem` samples, each minibatch of `batchSize` incoming
 *   samples is followed by `batchSizeMem` memory samples, drawn by cycling through shuffled
 *   passes over the memory (full chunks only), as Avalanche draws `next(replay_loader)` at each
 *   iteration; one forward pass over both;
 * - loss: the criterion's value is replaced by {@link aceLoss} (the mean of the incoming and
 *   replayed terms); while nothing is replayed, the criterion (plain cross-entropy) as in
 *   Avalanche. Terms other plugins add are kept.
 *
 * Constructors: `new ERACEPlugin(memSize?, batchSizeMem?)` (Avalanche's `mem_size`,
 * `batch_size_mem`, defaults 200 and 10) or `new ERACEPlugin({ memSize, batchSizeMem })`.
 *
 * @example
 * ```ts ignore
 * const bench = splitOnline(await splitMNIST(), { experienceSize: 10 });
 * const strategy = naive({ model: mlp(), batchSize: 10, plugins: [new ERACEPlugin(200, 10)] });
 * for (const exp of bench.train) await strategy.train(exp);
 * ```
 */
export class ERACEPlugin extends ERMemoryPlugin {
  /** From options. */
  constructor(options: ERACEPluginOptions);
  /** Avalanche's order: `(mem_size, batch_size_mem)`. */
  constructor(memSize?: number | null, batchSizeMem?: number | null);
  constructor(a?: number | ERACEPluginOptions | null, batchSizeMem?: number | null) {
    const o: ERACEPluginOptions = a !== null && typeof a === "object"
      ? checkOptions("ERACEPlugin", a, ER_MEMORY_OPTIONS)
      : { memSize: a ?? undefined, batchSizeMem: batchSizeMem ?? undefined };
    super("ERACEPlugin", o);
  }

  /** Replaces the loss by the asymmetric cross-entropy while the memory is replayed. */
  beforeBackward(ctx: StrategyContext): void {
    if (!this.replaying) return;
    const batch = ctx.batch!;
    const rows = splitRows(batch.parts, this.replaying);
    if (rows.incoming.length === 0) return;
    const y = batch.data.y;
    const out = ctx.output!;
    const pick = (r: number[]) => selectRows(out, r);
    const ace = aceLoss(
      pick(rows.incoming),
      rows.incoming.map((r) => y[r]),
      rows.replayed.length > 0 ? pick(rows.replayed) : undefined,
      rows.replayed.map((r) => y[r]),
    );
    this.replaceLoss(ctx, ace, "ace");
  }
}

/**
 * An ER-ACE plugin ({@link ERACEPlugin}).
 *
 * @example
 * ```ts
 * import { erAcePlugin } from "./er_ace.ts";
 * const plugin = erAcePlugin({ memSize: 500, batchSizeMem: 10 });
 * console.assert(plugin.memSize === 500);
 * ```
 */
export function erAcePlugin(opts: ERACEPluginOptions = {}): ERACEPlugin {
  return new ERACEPlugin(checkOptions("erAcePlugin", opts, ER_MEMORY_OPTIONS));
}

/** Options of {@link erAce}: the strategy's, plus the plugin's. */
export interface ERACEOptions extends StrategyOptions, ERACEPluginOptions {}

/**
 * The ER-ACE strategy: fine-tuning with an {@link ERACEPlugin} (Avalanche's `ER_ACE`).
 *
 * @example
 * ```ts ignore
 * const strategy = erAce({ model: mlp(), memSize: 200, batchSizeMem: 10, batchSize: 10 });
 * for (const exp of splitOnline(bench, { experienceSize: 10 }).train) await strategy.train(exp);
 * ```
 */
export function erAce(opts: ERACEOptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("erAce expects an options object { model, memSize, batchSizeMem, ... }");
  }
  checkOptions("erAce", opts, { ...STRATEGY_OPTIONS, ...ER_MEMORY_OPTIONS });
  const { memSize, batchSizeMem, ...rest } = opts;
  return withPlugin("ER_ACE", new ERACEPlugin({ memSize, batchSizeMem }), rest);
}
