/**
 * Gradient-based Sample Selection, greedy variant (GSS-greedy; Aljundi, Lin, Goujaud & Bengio,
 * "Gradient based sample selection for online continual learning", NeurIPS 2019), as Avalanche's
 * `GSS_greedyPlugin`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { StagingArray } from "../nn/staging.ts";
import { flattenGradients, memoryGradients } from "./gem.ts";
import { type MaterializedDataset, type MemoryTensors, SampleMemory } from "./memory.ts";
import { ReplayDataLoader } from "./replay_loader.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";

/**
 * For each row `g` of `grads` [b, P], the largest cosine similarity between `g` and a row of
 * `memGrads` [k, P]: `max_j g·m_j / (|g| |m_j|)`, shape [b]. A zero vector has similarity 0 with
 * everything (its norm is clamped at 1e-30 instead of dividing by zero).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { maxCosineSimilarity } from "./gss.ts";
 * const s = maxCosineSimilarity(tf.tensor2d([[1, 0], [0, 1]]), tf.tensor2d([[1, 1], [-1, 0]]));
 * const [a, b] = s.dataSync();
 * console.assert(Math.abs(a - Math.SQRT1_2) < 1e-6 && Math.abs(b) < 1e-6);
 * ```
 */
export function maxCosineSimilarity(memGrads: tf.Tensor2D, grads: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => {
    const norm = (m: tf.Tensor2D) => tf.maximum(tf.norm(m, 2, 1, true), 1e-30);
    const sim = tf.div(
      tf.matMul(grads, memGrads, false, true),
      tf.mul(norm(grads), tf.transpose(norm(memGrads))),
    );
    return tf.max(sim, 1) as tf.Tensor1D;
  });
}

/**
 * `k` positions drawn without replacement, each with probability proportional to its weight
 * among those not yet drawn (`torch.multinomial(weights, k, replacement=False)`); once only
 * zero weights remain, the rest are drawn uniformly among what is left.
 *
 * @example
 * ```ts
 * import { Rng } from "../random.ts";
 * import { weightedSampleWithoutReplacement } from "./gss.ts";
 * const idx = weightedSampleWithoutReplacement([0, 1, 0, 1], 2, new Rng(0));
 * console.assert([...idx].sort().join() === "1,3");
 * ```
 */
export function weightedSampleWithoutReplacement(
  weights: ArrayLike<number>,
  k: number,
  rng: Rng,
): Int32Array {
  const w = Float64Array.from(weights, (v) => (v > 0 ? v : 0));
  const n = w.length;
  const out = new Int32Array(Math.min(k, n));
  const taken = new Uint8Array(n);
  for (let d = 0; d < out.length; d++) {
    let total = 0;
    for (let i = 0; i < n; i++) if (!taken[i]) total += w[i];
    let pick = -1;
    if (total > 0) {
      let r = rng.next() * total;
      for (let i = 0; i < n; i++) {
        if (taken[i] || w[i] === 0) continue;
        pick = i;
        if ((r -= w[i]) < 0) break;
      }
    } else {
      let r = rng.int(n - d);
      for (let i = 0; i < n; i++) if (!taken[i] && r-- === 0) pick = i;
    }
    taken[pick] = 1;
    out[d] = pick;
  }
  return out;
}

/** Options of {@link GSS_greedyPlugin}. */
export interface GSSOptions {
  /** Samples kept in memory. @default 200 */
  memSize?: number;
  /** Random memory subsets whose gradients each new sample is compared with. @default 5 */
  memStrength?: number;
  /** Shape of one input (Avalanche's `input_size`); only checked against the data's size. */
  inputSize?: readonly number[];
}

/** The keys of {@link GSSOptions}, for checking what users pass. */
const GSS_OPTIONS: OptionSpec<GSSOptions> = {
  memSize: "integer",
  memStrength: "integer",
  inputSize: "array",
};

function positive(what: string, v: unknown, example: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new RangeError(
      `GSS_greedyPlugin ${what} must be an integer ≥ 1, got ${String(v)}, e.g. ${example}`,
    );
  }
  return v;
}

/** The per-sample field of the memory that holds each sample's score. */
const SCORE = "score";

/**
 * GSS-greedy (Aljundi et al. 2019), as Avalanche's `GSS_greedyPlugin`: a memory of `memSize`
 * samples, each with a score (its largest gradient cosine similarity to random memory subsets
 * when it entered); samples similar to the rest are the first to go.
 *
 * - `beforeTrainingExp`: once the memory holds samples, each minibatch gets as many memory
 *   samples as current ones ({@link ReplayDataLoader}, Avalanche's `ReplayDataLoader` with
 *   `oversample_small_tasks`), drawn from the memory as it stands at the experience's start.
 * - `afterBackward` (at the parameters of the minibatch's forward pass, before the update), for
 *   the b current samples of the minibatch: memory gradients are the criterion's gradients on
 *   `min(memStrength, ⌊size / b⌋)` disjoint random memory subsets of `min(b, size)` samples
 *   (`ctx.rng`), flattened. While the memory has room, the first samples that fit enter it with
 *   their score, the largest cosine similarity of their own gradient to the memory gradients
 *   ({@link maxCosineSimilarity}; 0.1 for the very first samples). Once it is full, the
 *   minibatch's mean gradient is compared likewise; only when its score is negative, b memory
 *   samples are drawn without replacement with weights `(s − min s) / (max s − min s + 0.01)`
 *   ({@link weightedSampleWithoutReplacement}), and each current sample i replaces its drawn
 *   memory sample j with probability `(s_j + 1) / ((c_i + 1) + (s_j + 1))`, where `c_i` is its
 *   own score, which the memory sample then takes.
 *
 * What was checked against Avalanche 0.6 (`avalanche/training/plugins/gss_greedy.py`) and the
 * code it adapts (RaptorMai/online-continual-learning, `gss_greedy_update.py`): the subset sizes
 * and count (`get_rand_mem_grads`), the max cosine over subsets (`cosine_similarity`,
 * `get_each_batch_sample_sim`), the 0.1 first score, the batch test `batch_sim < 0`, the
 * normalized weights with + 0.01, the draw without replacement, the two-column draw with
 * `(c + 1) / 2` and `(s + 1) / 2` (the same probabilities as above) and the score carried over.
 * Departures: Avalanche scores the whole minibatch in `after_forward`, memory samples included
 * (which may store them again, and sizes the subsets by the doubled batch); here only the
 * current samples are offered, as the paper's algorithm does. Avalanche's per-sample
 * `backward()` calls leave the last sample's gradient in `.grad`, so its update adds it to the
 * minibatch gradient; here the update is the minibatch's gradient alone. Its replay memory
 * includes the empty slots of a memory not yet full (zeros of class 0); here only stored samples
 * are replayed. Gradients are taken with the model in evaluation mode, as Avalanche's
 * `model.eval()`. A memory smaller than the minibatch gives one subset of all its samples
 * (Avalanche would take none and fail).
 *
 * @example
 * ```ts ignore
 * const plugin = new GSS_greedyPlugin(300, 10, [1, 28, 28]);
 * const strategy = naive({ model, plugins: [plugin], batchSize: 10, optimizer: sgd({ lr: 0.05 }) });
 * ```
 */
export class GSS_greedyPlugin extends StrategyPlugin {
  readonly memSize: number;
  readonly memStrength: number;
  readonly inputSize: readonly number[] | undefined;
  /** The memory, with each sample's score in its field `"score"`. */
  memory: SampleMemory = SampleMemory.empty();
  /** Minibatches whose mean gradient was compared with a full memory. */
  checks = 0;
  /** Memory samples replaced so far. */
  replaced = 0;
  #staging = new StagingArray();
  #replayed: SampleMemory | undefined;

  /** Avalanche's order: `new GSS_greedyPlugin(memSize?, memStrength?, inputSize?)`, or options. */
  constructor(
    memSize: number | GSSOptions = 200,
    memStrength = 5,
    inputSize?: readonly number[],
  ) {
    super();
    const o: GSSOptions = typeof memSize === "object" && memSize
      ? checkOptions("GSS_greedyPlugin", memSize, GSS_OPTIONS)
      : { memSize: memSize as number, memStrength, inputSize };
    this.memSize = positive("memSize", o.memSize ?? 200, 300);
    this.memStrength = positive("memStrength", o.memStrength ?? 5, 10);
    if (o.inputSize !== undefined) {
      if (!Array.isArray(o.inputSize) || o.inputSize.some((d) => !Number.isInteger(d) || d < 1)) {
        throw new RangeError(
          `GSS_greedyPlugin inputSize must be a list of integers ≥ 1, got ${
            JSON.stringify(o.inputSize)
          }, e.g. [1, 28, 28]`,
        );
      }
      this.inputSize = [...o.inputSize];
    }
  }

  override get name(): string {
    return "GSS_greedyPlugin";
  }

  /** Scores of the stored samples, in memory order. */
  get scores(): Float32Array {
    return this.memory.field(SCORE)?.values ?? new Float32Array(0);
  }

  /** Replays the memory alongside the current data once it holds samples. */
  beforeTrainingExp(ctx: StrategyContext): void {
    const data = ctx.dataset!;
    if (this.inputSize) {
      const size = this.inputSize.reduce((a, b) => a * b, 1);
      if (size !== data.sampleSize) {
        throw new RangeError(
          `GSS_greedyPlugin inputSize [${this.inputSize}] holds ${size} values but the samples ` +
            `have shape [${data.inputShape}]: pass the shape of one input`,
        );
      }
    }
    this.#replayed = undefined;
    if (this.memory.length === 0) return;
    this.#replayed = this.memory;
    ctx.dataLoader = new ReplayDataLoader(data, this.memory, {
      batchSize: ctx.settings.batchSize,
      batchSizeMem: ctx.settings.batchSize,
      shuffle: ctx.settings.shuffle,
      dropLast: ctx.settings.dropLast,
    });
  }

  /** Offers the minibatch's current samples to the memory. */
  async afterBackward(ctx: StrategyContext): Promise<void> {
    const parts = ctx.batch?.parts ?? [];
    const current = parts.filter((p) => p.dataset !== this.#replayed && p.indices.length > 0);
    if (current.length === 0 || ctx.params.size === 0) return;
    const incoming = SampleMemory.concat(
      current.map((p) => SampleMemory.of(p.dataset).select(p.indices)),
    );
    const training = ctx.model.training;
    ctx.model.train(false);
    try {
      await this.#update(ctx, incoming);
    } finally {
      ctx.model.train(training);
    }
  }

  // Scores and similarities are read asynchronously: "webgpu" has no synchronous read of GPU data.
  async #update(ctx: StrategyContext, incoming: SampleMemory): Promise<void> {
    const b = incoming.length;
    const size = this.memory.length;
    const room = this.memSize - size;
    if (room > 0) {
      const fit = incoming.select(Int32Array.from({ length: Math.min(room, b) }, (_, i) => i));
      let scores: Float32Array;
      if (size === 0) {
        scores = new Float32Array(fit.length).fill(0.1);
      } else {
        const t = tf.tidy(() => this.#sampleScores(ctx, this.#memoryGradients(ctx, b), fit));
        scores = await t.data() as Float32Array;
        t.dispose();
      }
      const entering = fit.withField(SCORE, scores, [1]);
      this.memory = SampleMemory.concat([this.memory, entering]);
      return;
    }
    this.checks++;
    const sims = tf.tidy(() => {
      const memGrads = this.#memoryGradients(ctx, b);
      const mean = flattenGradients(
        memoryGradients(ctx, ctx.params, incoming.tensors(undefined, this.#staging)),
        ctx.params,
      );
      const batchSim = maxCosineSimilarity(memGrads, tf.expandDims(mean, 0) as tf.Tensor2D);
      return tf.concat([batchSim, this.#sampleScores(ctx, memGrads, incoming)]);
    });
    const all = await sims.data() as Float32Array;
    sims.dispose();
    if (!(all[0] < 0)) return;
    const item = all.subarray(1);
    const s = this.scores;
    let lo = Infinity, hi = -Infinity;
    for (const v of s) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const weights = Array.from(s, (v) => (v - lo) / (hi - lo + 0.01));
    const drawn = weightedSampleWithoutReplacement(weights, b, ctx.rng);
    const slots = Int32Array.from({ length: size }, (_, i) => i);
    const nextScores = Float32Array.from(s);
    for (let i = 0; i < drawn.length; i++) {
      const j = drawn[i];
      const keepNew = (item[i] + 1) / 2, keepOld = (s[j] + 1) / 2;
      // The draw picks the memory sample's column with probability keepOld / (keepNew + keepOld).
      if (ctx.rng.next() * (keepNew + keepOld) >= keepNew) {
        slots[j] = size + i;
        nextScores[j] = item[i];
        this.replaced++;
      }
    }
    const pool = SampleMemory.concat([
      this.memory,
      incoming.withField(SCORE, item, [1]),
    ]).select(slots);
    this.memory = pool.withField(SCORE, nextScores, [1]);
  }

  /** Flattened gradients [k, P] of random disjoint memory subsets (`get_rand_mem_grads`). */
  #memoryGradients(ctx: StrategyContext, b: number): tf.Tensor2D {
    const size = this.memory.length;
    const per = Math.min(b, size);
    const subsets = Math.max(1, Math.min(this.memStrength, Math.floor(size / b)));
    const order = ctx.rng.permutation(size);
    const rows: tf.Tensor1D[] = [];
    for (let k = 0; k < subsets; k++) {
      const idx = order.slice(k * per, (k + 1) * per);
      rows.push(this.#flatGradient(ctx, this.memory.tensors(idx, this.#staging)));
    }
    return tf.stack(rows) as tf.Tensor2D;
  }

  /** Each sample's largest cosine similarity to the memory gradients (`get_each_batch_sample_sim`). */
  #sampleScores(ctx: StrategyContext, memGrads: tf.Tensor2D, samples: SampleMemory): tf.Tensor1D {
    const rows: tf.Tensor1D[] = [];
    for (let i = 0; i < samples.length; i++) {
      rows.push(this.#flatGradient(ctx, samples.tensors(Int32Array.of(i), this.#staging)));
    }
    return maxCosineSimilarity(memGrads, tf.stack(rows) as tf.Tensor2D);
  }

  #flatGradient(ctx: StrategyContext, data: MemoryTensors): tf.Tensor1D {
    return flattenGradients(memoryGradients(ctx, ctx.params, data), ctx.params);
  }

  /** Plain-data state: the memory with its scores, and the counters. */
  state(): GSSPluginState {
    return {
      version: 1,
      memory: this.memory.materialize(),
      checks: this.checks,
      replaced: this.replaced,
    };
  }

  /** Restores what {@link GSS_greedyPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as GSSPluginState;
    if (!s || s.version !== 1 || !s.memory) {
      throw new TypeError("Not a GSS_greedyPlugin state: expected { version: 1, memory, ... }");
    }
    this.memory = SampleMemory.fromMaterialized(s.memory);
    this.checks = s.checks ?? 0;
    this.replaced = s.replaced ?? 0;
  }

  /** Empties the memory. */
  dispose(): void {
    this.memory = SampleMemory.empty();
    this.#replayed = undefined;
  }
}

/** Checkpoint state of {@link GSS_greedyPlugin}. */
export interface GSSPluginState {
  version: 1;
  memory: MaterializedDataset;
  checks: number;
  replaced: number;
}

/**
 * A {@link GSS_greedyPlugin} from options.
 *
 * @example
 * ```ts
 * import { gssPlugin } from "./gss.ts";
 * const plugin = gssPlugin({ memSize: 300, memStrength: 10, inputSize: [1, 28, 28] });
 * console.assert(plugin.memStrength === 10);
 * ```
 */
export function gssPlugin(opts: GSSOptions): GSS_greedyPlugin {
  if (!opts || typeof opts !== "object") {
    throw new TypeError(
      "gssPlugin expects options: gssPlugin({ memSize: 300, memStrength: 10, inputSize: [784] })",
    );
  }
  return new GSS_greedyPlugin(checkOptions("gssPlugin", opts, GSS_OPTIONS));
}

/** Options of {@link gss}: the strategy's options and GSS's. */
export interface GSSStrategyOptions extends StrategyOptions, GSSOptions {}

/**
 * A GSS-greedy strategy (Avalanche's `GSS_greedy`): fine-tuning with a {@link GSS_greedyPlugin}
 * first in the plugin list. The plugin is `strategy.plugins[0]`.
 *
 * @example
 * ```ts ignore
 * const strategy = gss({
 *   model: mlp({ hidden: [100, 100] }),
 *   memSize: 300,
 *   memStrength: 10,
 *   inputSize: [1, 28, 28],
 *   optimizer: sgd({ lr: 0.05 }),
 *   batchSize: 10,
 *   epochs: 3,
 * });
 * ```
 */
export function gss(opts: GSSStrategyOptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError(
      "gss expects options: gss({ model, memSize: 300, memStrength: 10, inputSize: [784] })",
    );
  }
  checkOptions("gss", opts, { ...STRATEGY_OPTIONS, ...GSS_OPTIONS });
  const { memSize, memStrength, inputSize, ...rest } = opts;
  return withPlugin("GSS_greedy", new GSS_greedyPlugin({ memSize, memStrength, inputSize }), rest);
}
