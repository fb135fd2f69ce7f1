/**
 * SCR, supervised contrastive replay: Mai, Li, Kim and Sanner, "Supervised Contrastive Replay:
 * Revisiting the Nearest Class Mean Classifier in Online Class-Incremental Continual Learning"
 * (CVPR Workshops 2021). Avalanche's `SCR` strategy and `SCRLoss`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { extractFeaturesAsync, hasEmbed } from "../models/features.ts";
import { NCMClassifier } from "../models/ncm.ts";
import { Activation, Linear, Sequential } from "../nn/layers.ts";
import type { ModuleState } from "../nn/module.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import {
  ER_MEMORY_OPTIONS,
  type ERMemoryOptions,
  ERMemoryPlugin,
  type ERMemoryState,
} from "./er_ace.ts";
import type { SampleMemory } from "./memory.ts";

// ---------------------------------------------------------------------------------------------
// The loss
// ---------------------------------------------------------------------------------------------

/**
 * The supervised contrastive loss of Khosla et al. (2020) over every row as an anchor
 * (Avalanche's `SCRLoss`, `contrast_mode="all"`): with `s_ij = f_i · f_j / temperature`,
 * `P_i = {j ≠ i : y_j = y_i}` and the softmax of each row over the other rows only (an anchor is
 * never compared with itself),
 * `−(temperature / baseTemperature) · mean_i (1/|P_i|) Σ_{j ∈ P_i} (s_ij − log Σ_{k ≠ i} e^{s_ik})`.
 *
 * SCR passes both views of a minibatch stacked (`[view 1; view 2]`, labels repeated), so every
 * anchor has at least its other view as a positive. It differs from `supConLoss` (ER-AML's term)
 * in leaving the anchor itself out of its softmax: `supConLoss` compares anchors with a separate
 * set of features. Every row needs another row of its class.
 *
 * @param features normalized features [m, d]
 * @param labels their labels (m)
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { scrLoss } from "./scr.ts";
 * // Two samples, each with its identical view, orthogonal to the other class; temperatures 1:
 * // each anchor's softmax is over [its view 1, the other class 0, 0], so −log(e / (e + 2)).
 * const f = tf.tensor2d([[1, 0], [0, 1], [1, 0], [0, 1]]);
 * const l = scrLoss(f, [0, 1, 0, 1], 1, 1);
 * console.assert(Math.abs(l.dataSync()[0] - (Math.log(Math.E + 2) - 1)) < 1e-5);
 * ```
 */
export function scrLoss(
  features: tf.Tensor,
  labels: ArrayLike<number>,
  temperature = 0.1,
  baseTemperature = 0.07,
): tf.Scalar {
  const m = labels.length;
  if (features.rank !== 2 || features.shape[0] !== m || m < 2) {
    throw new RangeError(
      `scrLoss: ${m} labels for features of shape [${features.shape}] (as [m, d], m ≥ 2)`,
    );
  }
  const pos = new Float32Array(m * m);
  const counts = new Float32Array(m);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < m; j++) {
      if (j !== i && labels[i] === labels[j]) {
        pos[i * m + j] = 1;
        counts[i]++;
      }
    }
    if (counts[i] === 0) {
      throw new RangeError(`scrLoss: row ${i} (class ${labels[i]}) has no other row of its class`);
    }
  }
  return tf.tidy(() => {
    const sim = tf.div(
      tf.matMul(features as tf.Tensor2D, features as tf.Tensor2D, false, true),
      temperature,
    );
    // The anchor is left out of its own softmax: a large negative on the diagonal (logSumExp
    // subtracts the row's max, so this is exact to float precision and stays finite).
    const self = tf.mul(tf.eye(m), -1e9);
    const logProb = tf.sub(sim, tf.logSumExp(tf.add(sim, self), 1, true));
    const meanPos = tf.div(
      tf.sum(tf.mul(logProb, tf.tensor2d(pos, [m, m])), 1),
      tf.tensor1d(counts),
    );
    return tf.mul(tf.mean(meanPos), -temperature / baseTemperature) as tf.Scalar;
  });
}

/** Each row divided by its L2 norm (PyTorch's `F.normalize`, eps 1e-12), differentiably. */
function normalizeRows(x: tf.Tensor): tf.Tensor2D {
  const x2 = tf.reshape(x, [x.shape[0], -1]) as tf.Tensor2D;
  return tf.div(x2, tf.maximum(tf.sqrt(tf.sum(tf.square(x2), 1, true)), 1e-12)) as tf.Tensor2D;
}

// ---------------------------------------------------------------------------------------------
// Plugin
// ---------------------------------------------------------------------------------------------

/** Options of {@link SCRPlugin} and {@link scrPlugin}. */
export interface SCRPluginOptions extends ERMemoryOptions {
  /** Temperature of the contrastive loss (Avalanche's `temperature`). @default 0.1 */
  temperature?: number;
  /** Its base temperature: the loss is scaled by `temperature / baseTemperature`. @default 0.07 */
  baseTemperature?: number;
  /** Output size of the projection head. @default 128 */
  projectionSize?: number;
  /**
   * Standard deviation of the Gaussian noise added to the inputs to make the second view, drawn
   * from the run's generator; 0: the second view is the minibatch itself (Avalanche's default
   * `augmentations`, the identity). @default 0
   */
  noise?: number;
}

const SCR_PLUGIN_OPTIONS: OptionSpec<SCRPluginOptions> = {
  ...ER_MEMORY_OPTIONS,
  temperature: "number",
  baseTemperature: "number",
  projectionSize: "integer",
  noise: "number",
};

/** Plain-data state of {@link SCRPlugin}. */
export interface SCRPluginState extends ERMemoryState {
  /** The projection head, once built: the embedding's size and the head's parameters. */
  projection: { embedSize: number; state: ModuleState } | null;
}

/** The prefix of the projection head's parameters in `ctx.params` (and the optimizer's slots). */
const PARAM_PREFIX = "scr.projection.";

function positiveNumber(name: string, v: unknown, zero = false): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || (!zero && v === 0)) {
    throw new RangeError(
      `SCRPlugin: ${name} must be a number ${zero ? "≥" : ">"} 0, got ${String(v)}`,
    );
  }
  return v;
}

/**
 * SCR (Avalanche's `SCR`, Mai et al. 2021): the model is trained only by a supervised
 * contrastive loss on a projection of its features, over the minibatch and replayed memory
 * samples, and classifies by the nearest class mean of the memory's features.
 *
 * - memory and replay as {@link ERACEPlugin}: a reservoir of `memSize` samples (the run's
 *   generator; on an online stream it takes each experience after training it) and, once it
 *   holds `batchSizeMem`, that many memory samples appended to each minibatch;
 * - projection head: `Linear(d, d) → ReLU → Linear(d, projectionSize)` on `model.embed` (d its
 *   size), as in Avalanche's SCR examples; built on the first iteration (seeded from a fork of
 *   the run's generator), owned by the plugin and trained by the strategy's optimizer (its
 *   parameters join `ctx.params` each iteration);
 * - loss: the criterion's value is replaced by {@link scrLoss} over two views of the whole
 *   minibatch (incoming and replayed), their projections L2-normalized and stacked. Avalanche
 *   makes the second view with `augmentations` (identity by default; crops and flips on
 *   images). Here it is the minibatch itself, or with `noise` the inputs plus Gaussian noise
 *   drawn from the run's generator: on flat vectors (MNIST) an image augmentation has no meaning.
 *   The model's head gets no gradient (it is unused, as in Avalanche's `SCRModel`);
 * - evaluation: the output is replaced by the {@link NCMClassifier} logits (normalized features,
 *   minus the Euclidean distance) of `model.embed`, against the class means of the memory's
 *   normalized features. The means are computed again before each evaluation after training
 *   changed the model or the memory (Avalanche computes them after each training experience,
 *   which gives the same means: evaluation changes neither).
 *
 * Where we differ from Avalanche 0.6: its memory is a class-balanced buffer (`ClassBalancedBuffer`
 * with `adaptive_size`), filled before each experience by its `ReplayPlugin`; here a reservoir as
 * ER-ACE's, so the class means are those of the reservoir's samples of each class. Before the
 * memory holds any sample the output stays the model's own head's.
 *
 * Constructors: `new SCRPlugin(memSize?, batchSizeMem?, temperature?)` (Avalanche's `mem_size`,
 * `batch_size_mem`, `temperature`, defaults 100, 100 and 0.1) or `new SCRPlugin({ ... })`. The
 * model must be a `Classifier` (or have `embed(x)`).
 *
 * @example
 * ```ts ignore
 * const bench = splitOnline(await splitMNIST(), { experienceSize: 10 });
 * const strategy = naive({ model: mlp(), batchSize: 10, plugins: [new SCRPlugin(200, 10)] });
 * for (const exp of bench.train) await strategy.train(exp);
 * ```
 */
export class SCRPlugin extends ERMemoryPlugin {
  /** Temperature of the contrastive loss. */
  readonly temperature: number;
  /** Base temperature. */
  readonly baseTemperature: number;
  /** Output size of the projection head. */
  readonly projectionSize: number;
  /** Standard deviation of the noise of the second view (0: the minibatch itself). */
  readonly noise: number;
  /** The nearest-class-mean classifier used at evaluation. */
  readonly ncm: NCMClassifier = new NCMClassifier({ normalize: true, metric: "euclidean" });
  #projection: Sequential | undefined;
  #embedSize = 0;
  /** Whether training changed the model or the memory since the class means were computed. */
  #stale = true;

  /** From options. */
  constructor(options: SCRPluginOptions);
  /** Avalanche's order: `(mem_size, batch_size_mem, temperature)`. */
  constructor(memSize?: number | null, batchSizeMem?: number | null, temperature?: number | null);
  constructor(
    a?: number | SCRPluginOptions | null,
    batchSizeMem?: number | null,
    temperature?: number | null,
  ) {
    const o: SCRPluginOptions = a !== null && typeof a === "object"
      ? checkOptions("SCRPlugin", a, SCR_PLUGIN_OPTIONS)
      : {
        memSize: a ?? undefined,
        batchSizeMem: batchSizeMem ?? undefined,
        temperature: temperature ?? undefined,
      };
    // Avalanche's SCR defaults: mem_size 100, batch_size_mem 100.
    super("SCRPlugin", { memSize: o.memSize ?? 100, batchSizeMem: o.batchSizeMem ?? 100 });
    this.temperature = positiveNumber("temperature", o.temperature ?? 0.1);
    this.baseTemperature = positiveNumber("baseTemperature", o.baseTemperature ?? 0.07);
    this.noise = positiveNumber("noise", o.noise ?? 0, true);
    const p = o.projectionSize ?? 128;
    if (!Number.isInteger(p) || p < 1) {
      throw new RangeError(`SCRPlugin: projectionSize must be an integer ≥ 1, got ${p}`);
    }
    this.projectionSize = p;
  }

  /** The projection head (undefined until the first training iteration). */
  get projection(): Sequential | undefined {
    return this.#projection;
  }

  /** Checks that the model gives its features before training starts. */
  beforeTraining(ctx: StrategyContext): void {
    if (!hasEmbed(ctx.model)) {
      throw new TypeError(
        "SCR trains and classifies the features before the head: give it a model with embed(x), " +
          "e.g. mlp() or cnn() (a Classifier)",
      );
    }
  }

  #build(embedSize: number, seed: number): Sequential {
    return new Sequential([
      new Linear(embedSize, embedSize, { seed }),
      new Activation("relu"),
      new Linear(embedSize, this.projectionSize, { seed: seed + 1 }),
    ]);
  }

  /** Builds the projection head on first use, and hands its parameters to the optimizer. */
  beforeTrainingIteration(ctx: StrategyContext): void {
    this.#stale = true;
    if (!this.#projection) {
      const model = ctx.model;
      if (!hasEmbed(model)) return;
      const x = ctx.batch!.x;
      const d = tf.tidy(() => {
        const f = model.embed(tf.slice(x, 0, 1));
        return f.size;
      });
      this.#embedSize = d;
      // A fork: building the head does not move the run's generator.
      this.#projection = this.#build(d, ctx.rng.fork("scr.projection").seed());
    }
    for (const [k, v] of this.#projection.trainableParameters()) {
      ctx.params.set(PARAM_PREFIX + k, v);
    }
  }

  /** Replaces the loss by the contrastive loss over the two views of the whole minibatch. */
  beforeBackward(ctx: StrategyContext): void {
    const projection = this.#projection;
    if (!projection || !hasEmbed(ctx.model)) return;
    const batch = ctx.batch!;
    const x = batch.x;
    let second = x;
    if (this.noise > 0) {
      const z = new Float32Array(x.size);
      for (let i = 0; i < z.length; i++) z[i] = this.noise * ctx.rng.normal();
      second = tf.add(x, tf.tensor(z, x.shape));
    }
    const views = tf.concat([x, second]);
    const f = normalizeRows(projection.forward(ctx.model.embed(views)));
    const y = Array.from(batch.data.y);
    this.replaceLoss(ctx, scrLoss(f, [...y, ...y], this.temperature, this.baseTemperature), "scr");
  }

  /** The class means of the memory's features, with the current model. */
  async computeClassMeans(ctx: StrategyContext): Promise<void> {
    const memory = this.buffer as SampleMemory;
    this.#stale = false;
    if (memory.length === 0) return;
    // Read asynchronously: the "webgpu" backend has no synchronous read of GPU data.
    const features = await extractFeaturesAsync(ctx.model, memory, {
      batchSize: ctx.settings.evalBatchSize,
    });
    this.ncm.fit(features, memory.targets);
  }

  /** Class means again if training ran since they were computed. */
  async beforeEval(ctx: StrategyContext): Promise<void> {
    if (this.#stale && hasEmbed(ctx.model)) await this.computeClassMeans(ctx);
  }

  /** Nearest class mean: replaces the output by the NCM logits of the features. */
  afterEvalForward(ctx: StrategyContext): void {
    const batch = ctx.batch, model = ctx.model;
    if (!this.ncm.hasMeans || !batch || !hasEmbed(model)) return;
    const width = ctx.output ? ctx.output.shape[ctx.output.rank - 1] : undefined;
    ctx.output = this.ncm.forward(model.embed(batch.x), width);
  }

  /** The memory and the projection head as plain data (the class means follow from them). */
  override state(): SCRPluginState {
    const p = this.#projection;
    return {
      ...super.state(),
      projection: p ? { embedSize: this.#embedSize, state: p.stateDict() } : null,
    };
  }

  /** Restores what {@link SCRPlugin.state} returned. */
  override loadState(state: unknown): void {
    const s = state as SCRPluginState;
    if (!s || typeof s !== "object" || !("projection" in s)) {
      throw new TypeError("Not an SCRPlugin state: expected { storagePolicy, projection }");
    }
    super.loadState(s);
    let head: Sequential | undefined;
    if (s.projection) {
      head = this.#build(s.projection.embedSize, 0);
      try {
        head.loadStateDict(s.projection.state);
      } catch (e) {
        head.dispose();
        throw e;
      }
    }
    this.#projection?.dispose();
    this.#projection = head;
    this.#embedSize = s.projection?.embedSize ?? 0;
    this.#stale = true;
  }

  /** Frees the projection head. */
  override dispose(): void {
    this.#projection?.dispose();
    this.#projection = undefined;
  }
}

/**
 * An SCR plugin ({@link SCRPlugin}).
 *
 * @example
 * ```ts
 * import { scrPlugin } from "./scr.ts";
 * const plugin = scrPlugin({ memSize: 200, batchSizeMem: 10, temperature: 0.1 });
 * console.assert(plugin.noise === 0 && plugin.projectionSize === 128);
 * ```
 */
export function scrPlugin(opts: SCRPluginOptions = {}): SCRPlugin {
  return new SCRPlugin(checkOptions("scrPlugin", opts, SCR_PLUGIN_OPTIONS));
}

/** Options of {@link scr}: the strategy's, plus the plugin's. */
export interface SCROptions extends StrategyOptions, SCRPluginOptions {}

/**
 * The SCR strategy: fine-tuning with an {@link SCRPlugin} (Avalanche's `SCR`; the feature
 * extractor is the model's `embed`, the projection head the plugin's).
 *
 * @example
 * ```ts ignore
 * const strategy = scr({ model: mlp(), memSize: 200, batchSizeMem: 10, batchSize: 10 });
 * for (const exp of splitOnline(bench, { experienceSize: 10 }).train) await strategy.train(exp);
 * ```
 */
export function scr(opts: SCROptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("scr expects an options object { model, memSize, batchSizeMem, ... }");
  }
  checkOptions("scr", opts, { ...STRATEGY_OPTIONS, ...SCR_PLUGIN_OPTIONS });
  const { memSize, batchSizeMem, temperature, baseTemperature, projectionSize, noise, ...rest } =
    opts;
  return withPlugin(
    "SCR",
    new SCRPlugin({ memSize, batchSizeMem, temperature, baseTemperature, projectionSize, noise }),
    rest,
  );
}
