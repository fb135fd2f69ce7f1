/**
 * ER-AML, experience replay with the asymmetric metric-learning loss: Caccia et al., "New
 * Insights on Reducing Abrupt Representation Change in Online Continual Learning" (ICLR 2022).
 * Avalanche's `ER_AML` strategy and `AMLCriterion`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { crossEntropy } from "../nn/losses.ts";
import type { Module } from "../nn/module.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import {
  ER_MEMORY_OPTIONS,
  type ERMemoryOptions,
  ERMemoryPlugin,
  selectRows,
  splitRows,
} from "./er_ace.ts";
import type { SampleMemory } from "./memory.ts";

// ---------------------------------------------------------------------------------------------
// The loss
// ---------------------------------------------------------------------------------------------

/** Each row scaled to unit length as Avalanche's `AMLCriterion` does: `x / (‖x‖ + 1e-5)`. */
export function scaleByNorm(x: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const x2 = (x.rank === 2 ? x : tf.reshape(x, [x.shape[0], -1])) as tf.Tensor2D;
    return tf.div(x2, tf.add(tf.sqrt(tf.sum(tf.square(x2), 1, true)), 1e-5)) as tf.Tensor2D;
  });
}

/**
 * The supervised contrastive term of the AML loss (Avalanche's `AMLCriterion.__sup_con_loss`):
 * with `s_ij = a_i · f_j / temp`, `log p_ij = s_ij − log Σ_k e^{s_ik}` and `P_i` the features
 * of anchor `i`'s class,
 * `−(temp / baseTemp) · mean_i (Σ_{j ∈ P_i} log p_ij / |P_i|)`. Every anchor needs at least one
 * feature of its class.
 *
 * @param anchors anchor features [n, d] (normalized by the caller)
 * @param features features [m, d]
 * @param anchorY anchors' labels
 * @param featureY features' labels
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { supConLoss } from "./er_aml.ts";
 * // One anchor, its positive equal to it and an orthogonal negative, temp = baseTemp = 1:
 * const l = supConLoss(tf.tensor2d([[1, 0]]), tf.tensor2d([[1, 0], [0, 1]]), [0], [0, 1], 1, 1);
 * console.assert(Math.abs(l.dataSync()[0] - Math.log(1 + Math.exp(-1))) < 1e-6);
 * ```
 */
export function supConLoss(
  anchors: tf.Tensor,
  features: tf.Tensor,
  anchorY: ArrayLike<number>,
  featureY: ArrayLike<number>,
  temp = 0.1,
  baseTemp = 0.07,
): tf.Scalar {
  const n = anchorY.length;
  const m = featureY.length;
  if (anchors.shape[0] !== n || features.shape[0] !== m || n === 0 || m === 0) {
    throw new RangeError(
      `supConLoss: ${n} anchor labels for [${anchors.shape}], ${m} feature labels for ` +
        `[${features.shape}] (at least one of each)`,
    );
  }
  const mask = new Float32Array(n * m);
  const counts = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      if (anchorY[i] === featureY[j]) {
        mask[i * m + j] = 1;
        counts[i]++;
      }
    }
    if (counts[i] === 0) {
      throw new RangeError(`supConLoss: anchor ${i} (class ${anchorY[i]}) has no positive`);
    }
  }
  return tf.tidy(() => {
    const sim = tf.div(
      tf.matMul(anchors as tf.Tensor2D, features as tf.Tensor2D, false, true),
      temp,
    );
    // log-softmax over each row (the max subtracted inside: Avalanche's stabilization).
    const logProb = tf.sub(sim, tf.logSumExp(sim, 1, true));
    const meanPos = tf.div(
      tf.sum(tf.mul(logProb, tf.tensor2d(mask, [n, m])), 1),
      tf.tensor1d(counts),
    );
    return tf.mul(tf.mean(meanPos), -temp / baseTemp) as tf.Scalar;
  });
}

/** For each anchor, a positive and a negative picked in a pool (see {@link samplePosNeg}). */
export interface PosNeg {
  /** The anchors that have both (indices into the anchors). */
  anchors: number[];
  /** For each of them, the pool index of its positive. */
  pos: number[];
  /** For each of them, the pool index of its negative. */
  neg: number[];
}

/**
 * Picks, for each anchor, one positive (a pool sample of its class, not itself) and one negative
 * (of another class; of the anchor's task too with `sameTaskNeg`), each uniformly among the
 * valid ones, from `rng`. Anchors lacking either are left out.
 *
 * @param self pool index of each anchor (−1 when the anchor is not in the pool)
 */
export function samplePosNeg(
  anchorY: ArrayLike<number>,
  anchorT: ArrayLike<number>,
  self: ArrayLike<number>,
  poolY: ArrayLike<number>,
  poolT: ArrayLike<number>,
  sameTaskNeg: boolean,
  rng: Rng,
): PosNeg {
  const out: PosNeg = { anchors: [], pos: [], neg: [] };
  for (let i = 0; i < anchorY.length; i++) {
    const pos: number[] = [];
    const neg: number[] = [];
    for (let j = 0; j < poolY.length; j++) {
      if (j === self[i]) continue;
      if (poolY[j] === anchorY[i]) pos.push(j);
      else if (!sameTaskNeg || poolT[j] === anchorT[i]) neg.push(j);
    }
    if (pos.length === 0 || neg.length === 0) continue;
    out.anchors.push(i);
    out.pos.push(pos[rng.int(pos.length)]);
    out.neg.push(neg[rng.int(neg.length)]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Plugin
// ---------------------------------------------------------------------------------------------

/** Options of {@link ERAMLPlugin} and {@link erAmlPlugin}. */
export interface ERAMLPluginOptions extends ERMemoryOptions {
  /** Temperature of the supervised contrastive term (Avalanche's `temp`). @default 0.1 */
  temp?: number;
  /** Its base temperature: the term is scaled by `temp / baseTemp`. @default 0.07 */
  baseTemp?: number;
  /** Negatives only among samples of the anchor's task label (`same_task_neg`). @default true */
  sameTaskNeg?: boolean;
}

/** The keys of {@link ERAMLPluginOptions}, for checking what users pass. */
const ER_AML_PLUGIN_OPTIONS: OptionSpec<ERAMLPluginOptions> = {
  ...ER_MEMORY_OPTIONS,
  temp: "number",
  baseTemp: "number",
  sameTaskNeg: "boolean",
};

/** A model that gives the features its head reads (as `Classifier.embed`). */
interface Embedding {
  embed(x: tf.Tensor): tf.Tensor;
}

function embedding(model: Module): Embedding {
  const m = model as unknown as Partial<Embedding>;
  if (typeof m.embed !== "function") {
    throw new TypeError(
      "ER_AML needs the features before the head: give it a model with embed(x), e.g. mlp() " +
        "or cnn() (a Classifier)",
    );
  }
  return m as Embedding;
}

function checkTemperature(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
    throw new RangeError(`ERAMLPlugin: ${name} must be a number > 0, got ${String(v)}`);
  }
  return v;
}

/**
 * ER-AML (Avalanche's `ER_AML`, Caccia et al. 2022): experience replay in which the incoming
 * samples are trained with a metric-learning loss on the features before the head, against
 * positives and negatives taken from the memory, and only the replayed samples with
 * cross-entropy, so that new classes do not drag the old classes' representations.
 *
 * - memory and replay as {@link ERACEPlugin}: a reservoir of `memSize` samples updated after each
 *   experience, and `batchSizeMem` memory samples appended to each minibatch once it holds that
 *   many;
 * - loss, while the memory is replayed: `supConLoss(anchors, [positives; negatives]) + CE(replayed
 *   outputs)` in place of the criterion. Each incoming sample is an anchor (its features
 *   `model.embed(x)`, scaled by their norm, counted twice as in Avalanche) with one positive (same
 *   class) and one negative (another class; same task label with `sameTaskNeg`) drawn uniformly
 *   from the memory and the other incoming samples, by the run's generator; their features go
 *   through the model too (gradients flow through them, as in Avalanche). Anchors without a
 *   positive or a negative are left out of the metric term. While nothing is replayed: the
 *   criterion (cross-entropy), as in Avalanche.
 *
 * Checked against Avalanche 0.6's `AMLCriterion` (`avalanche/training/losses.py`: the
 * `temp / base_temp` scaling, the anchors repeated against `[pos; neg]`, the positive mask by
 * label, `scale_by_norm` with 1e-5) and `ER_AML` (`er_aml.py`: the loss is the metric term plus
 * the buffer's cross-entropy, plain cross-entropy before replay starts). Where we differ: the
 * memory is a reservoir updated after each experience (Avalanche's `ER_AML` uses a class-
 * balanced buffer filled before each experience), and positives and negatives are drawn from the
 * whole memory plus the incoming minibatch, the authors' "augmented buffer" (Avalanche draws them
 * from per-class minibatches of its buffer, which holds the current classes by then).
 *
 * Constructors: `new ERAMLPlugin(memSize?, batchSizeMem?, temp?, baseTemp?, sameTaskNeg?)` or
 * `new ERAMLPlugin({ memSize, batchSizeMem, temp, baseTemp, sameTaskNeg })`. The model must be a
 * `Classifier` (or have `embed(x)`).
 *
 * @example
 * ```ts ignore
 * const bench = splitOnline(await splitMNIST(), { experienceSize: 10 });
 * const strategy = naive({ model: mlp(), batchSize: 10, plugins: [new ERAMLPlugin(200, 10)] });
 * for (const exp of bench.train) await strategy.train(exp);
 * ```
 */
export class ERAMLPlugin extends ERMemoryPlugin {
  /** Temperature of the supervised contrastive term. */
  readonly temp: number;
  /** Base temperature. */
  readonly baseTemp: number;
  /** Whether negatives are taken among samples of the anchor's task label only. */
  readonly sameTaskNeg: boolean;

  /** From options. */
  constructor(options: ERAMLPluginOptions);
  /** Positional: `(mem_size, batch_size_mem, temp, base_temp, same_task_neg)`. */
  constructor(
    memSize?: number | null,
    batchSizeMem?: number | null,
    temp?: number | null,
    baseTemp?: number | null,
    sameTaskNeg?: boolean | null,
  );
  constructor(
    a?: number | ERAMLPluginOptions | null,
    batchSizeMem?: number | null,
    temp?: number | null,
    baseTemp?: number | null,
    sameTaskNeg?: boolean | null,
  ) {
    const o: ERAMLPluginOptions = a !== null && typeof a === "object"
      ? checkOptions("ERAMLPlugin", a, ER_AML_PLUGIN_OPTIONS)
      : {
        memSize: a ?? undefined,
        batchSizeMem: batchSizeMem ?? undefined,
        temp: temp ?? undefined,
        baseTemp: baseTemp ?? undefined,
        sameTaskNeg: sameTaskNeg ?? undefined,
      };
    super("ERAMLPlugin", o);
    this.temp = checkTemperature("temp", o.temp ?? 0.1);
    this.baseTemp = checkTemperature("baseTemp", o.baseTemp ?? 0.07);
    if (o.sameTaskNeg !== undefined && typeof o.sameTaskNeg !== "boolean") {
      throw new TypeError(`ERAMLPlugin: sameTaskNeg must be true or false, got ${o.sameTaskNeg}`);
    }
    this.sameTaskNeg = o.sameTaskNeg ?? true;
  }

  /** Checks that the model gives its features before training starts. */
  beforeTraining(ctx: StrategyContext): void {
    embedding(ctx.model);
  }

  /** Replaces the loss by the metric term plus the replayed samples' cross-entropy. */
  beforeBackward(ctx: StrategyContext): void {
    if (!this.replaying) return;
    const memory = this.replaying as SampleMemory;
    const batch = ctx.batch!;
    const rows = splitRows(batch.parts, memory);
    const { y, t } = batch.data;
    const inY = rows.incoming.map((r) => y[r]);
    const inT = rows.incoming.map((r) => t[r]);
    // The pool: every memory sample, then the incoming samples.
    const M = memory.length;
    const poolY = [...memory.targets, ...inY];
    const poolT = [...memory.taskLabels, ...inT];
    const self = rows.incoming.map((_, k) => M + k);
    const pn = samplePosNeg(inY, inT, self, poolY, poolT, this.sameTaskNeg, ctx.rng);
    const model = embedding(ctx.model);
    // Inputs need no gradient: a gather is fine for them.
    const gatherRows = (r: number[]) => tf.gather(batch.x, tf.tensor1d(r, "int32"));
    const terms: tf.Scalar[] = [];
    if (rows.replayed.length > 0) {
      const out = selectRows(ctx.output!, rows.replayed);
      terms.push(crossEntropy(out, tf.tensor1d(rows.replayed.map((r) => y[r]), "int32")));
    }
    if (pn.anchors.length > 0) {
      const anchors = scaleByNorm(model.embed(gatherRows(pn.anchors.map((i) => rows.incoming[i]))));
      const picked = [...pn.pos, ...pn.neg];
      // Inputs of the picked pool samples: memory ones read from the memory, incoming ones
      // gathered from the minibatch, then put in the order of `picked`.
      const fromMem = [...new Set(picked.filter((j) => j < M))];
      const fromIn = [...new Set(picked.filter((j) => j >= M))];
      const sources: tf.Tensor[] = [];
      if (fromMem.length > 0) sources.push(memory.tensors(Int32Array.from(fromMem)).x);
      if (fromIn.length > 0) sources.push(gatherRows(fromIn.map((j) => rows.incoming[j - M])));
      const at = new Map([...fromMem, ...fromIn].map((j, k) => [j, k]));
      const xs = tf.gather(
        sources.length === 1 ? sources[0] : tf.concat(sources),
        tf.tensor1d(picked.map((j) => at.get(j)!), "int32"),
      );
      const features = scaleByNorm(model.embed(xs));
      const aY = pn.anchors.map((i) => inY[i]);
      terms.push(supConLoss(
        tf.concat([anchors, anchors]),
        features,
        [...aY, ...aY],
        picked.map((j) => poolY[j]),
        this.temp,
        this.baseTemp,
      ));
    }
    if (terms.length === 0) return;
    const aml = (terms.length === 1 ? terms[0] : tf.add(terms[0], terms[1])) as tf.Scalar;
    this.replaceLoss(ctx, aml, "aml");
  }
}

/**
 * An ER-AML plugin ({@link ERAMLPlugin}).
 *
 * @example
 * ```ts
 * import { erAmlPlugin } from "./er_aml.ts";
 * const plugin = erAmlPlugin({ memSize: 500, temp: 0.1, baseTemp: 0.07 });
 * console.assert(plugin.sameTaskNeg);
 * ```
 */
export function erAmlPlugin(opts: ERAMLPluginOptions = {}): ERAMLPlugin {
  return new ERAMLPlugin(checkOptions("erAmlPlugin", opts, ER_AML_PLUGIN_OPTIONS));
}

/** Options of {@link erAml}: the strategy's, plus the plugin's. */
export interface ERAMLOptions extends StrategyOptions, ERAMLPluginOptions {}

/**
 * The ER-AML strategy: fine-tuning with an {@link ERAMLPlugin} (Avalanche's `ER_AML`; the
 * feature extractor is the model's `embed`).
 *
 * @example
 * ```ts ignore
 * const strategy = erAml({ model: mlp(), memSize: 200, batchSizeMem: 10, batchSize: 10 });
 * for (const exp of splitOnline(bench, { experienceSize: 10 }).train) await strategy.train(exp);
 * ```
 */
export function erAml(opts: ERAMLOptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("erAml expects an options object { model, memSize, batchSizeMem, ... }");
  }
  checkOptions("erAml", opts, { ...STRATEGY_OPTIONS, ...ER_AML_PLUGIN_OPTIONS });
  const { memSize, batchSizeMem, temp, baseTemp, sameTaskNeg, ...rest } = opts;
  return withPlugin(
    "ER_AML",
    new ERAMLPlugin({ memSize, batchSizeMem, temp, baseTemp, sameTaskNeg }),
    rest,
  );
}
