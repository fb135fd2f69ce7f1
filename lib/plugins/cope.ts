/**
 * CoPE, Continual Prototype Evolution: De Lange & Tuytelaars, "Continual Prototype Evolution:
 * Learning Online from Non-Stationary Data Streams" (ICCV 2021). Avalanche's `CoPEPlugin` and
 * `PPPloss`.
 *
 * The model maps inputs to embeddings; each class has a prototype (a unit vector in the
 * embedding space) and samples are classified by their nearest prototype (cosine similarity).
 * The embedding is trained with the pseudo-prototypical proxy loss (PPP-loss), each new
 * minibatch processed together with samples replayed from a class-balanced memory, and the
 * prototypes follow the embeddings with an exponential moving average.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Dataset } from "../data/dataset.ts";
import { MASK_VALUE } from "../models/heads.ts";
import type { Criterion } from "../nn/losses.ts";
import type { Module } from "../nn/module.ts";
import type { Rng } from "../random.ts";
import type { StrategyContext } from "../strategy/context.ts";
import {
  type BatchPart,
  type BatchPlan,
  batchPlan,
  type DataLoader,
  sampleOrder,
} from "../data/loader.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { ClassBalancedStoragePolicy, type StoragePolicyState } from "./storage_policy.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";

// ---------------------------------------------------------------------------------------------
// PPP-loss
// ---------------------------------------------------------------------------------------------

/** Identity whose gradient is zero (PyTorch's `.detach()`). */
const detach = tf.customGrad(
  ((x: tf.Tensor) => ({
    value: tf.clone(x),
    gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
  })) as unknown as Parameters<typeof tf.customGrad>[0],
) as unknown as (x: tf.Tensor) => tf.Tensor;

/**
 * Each sample's embedding scaled to unit length (PyTorch's `F.normalize(x, p=2, dim=1)`), as
 * rows of a [n, d] tensor.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { l2Normalize } from "./cope.ts";
 * const u = l2Normalize(tf.tensor2d([[3, 4]]));
 * console.assert(Math.abs(u.dataSync()[0] - 0.6) < 1e-6);
 * ```
 */
export function l2Normalize(x: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const x2 = x.rank === 2 ? x : tf.reshape(x, [x.shape[0], -1]);
    const norm = tf.sqrt(tf.sum(tf.square(x2), 1, true));
    return tf.div(x2, tf.maximum(norm, 1e-12)) as tf.Tensor2D;
  });
}

/**
 * log(sigmoid(z)) = −softplus(−z). (tfjs' `logSigmoid` reads its input from a closure in its
 * gradient, which fails once the input was freed by a `tidy` inside the gradient tape.)
 */
function logSigmoid(z: tf.Tensor): tf.Tensor {
  return tf.neg(tf.softplus(tf.neg(z)));
}

/** Added to log-probabilities to rule a term out (exp gives exactly 0). */
const BIG = 1e30;

function checkTemperature(fn: string, T: number): void {
  if (typeof T !== "number" || !Number.isFinite(T) || T <= 0) {
    throw new RangeError(`${fn}: T (the softmax temperature) must be a number > 0, got ${T}`);
  }
}

/**
 * The pseudo-prototypical proxy loss (Avalanche's `PPPloss`): a contrastive loss over the
 * prototypes and the samples of the minibatch.
 *
 * For each class `c` of the batch, with `B_c` its samples, `B_k` the others, `p_c` its prototype,
 * `p_k` the other prototypes, and every similarity a dot product of unit vectors divided by `T`:
 * - **attractor**: each `x_i ∈ B_c` should pick `c`: for each candidate `z` among the other
 *   samples of `B_c` (pseudo-prototypes) and `p_c`, `P(z | x_i) = e^{z·x_i} / (e^{z·x_i} +
 *   Σ_k e^{p_k·x_i})`; the term is `log` of the mean of these `|B_c|` probabilities;
 * - **repellor**: each `x_j ∈ B_k` should not pick `c`: for each pseudo-prototype `x_i ∈ B_c`,
 *   the term is `log(1 − (P(x_i | x_j) + P(p_c | x_j)) / 2)`, with `P` as above.
 *
 * The loss is `−(Σ attractor terms + Σ repellor terms) / batch size`. The candidates (pseudo-
 * prototypes and prototypes) are constants: gradients flow through the sample being classified
 * only (Avalanche detaches them). Computed in log space (log-sigmoid, log-sum-exp): the same
 * values as Avalanche's formula, without its overflow for small temperatures.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { PPPloss } from "./cope.ts";
 * const protos = new Map([[0, [1, 0]], [1, [0, 1]]]);
 * const loss = new PPPloss(protos, 0.1).compute(tf.tensor2d([[1, 0], [0, 1]]), [0, 1]);
 * console.assert(loss.dataSync()[0] < 1e-3); // each sample on its own prototype
 * ```
 */
export class PPPloss {
  /**
   * @param pMem prototypes by class (unit vectors, read at each call: the caller may update it).
   * @param T softmax temperature (concentration).
   */
  constructor(readonly pMem: ReadonlyMap<number, ArrayLike<number>>, readonly T = 0.1) {
    if (!pMem || typeof pMem.get !== "function") {
      throw new TypeError("PPPloss needs the prototypes as a Map from class to vector");
    }
    checkTemperature("PPPloss", T);
  }

  /** The loss as a {@link Criterion}-shaped function (embeddings, labels) → scalar. */
  readonly criterion: Criterion = (x, y) => this.compute(x, y);

  /**
   * The PPP-loss of embeddings `x` [n, d] (L2-normalized) with labels `y`. Every class of `y`
   * needs a prototype.
   */
  compute(x: tf.Tensor, y: tf.Tensor | ArrayLike<number>): tf.Scalar {
    const labels = y instanceof tf.Tensor ? Array.from(y.dataSync()) : Array.from(y);
    const bs = x.shape[0];
    if (labels.length !== bs) {
      throw new RangeError(`PPPloss: ${labels.length} labels for ${bs} embeddings`);
    }
    if (bs === 0) throw new RangeError("PPPloss needs at least one sample");
    const d = x.size / bs;
    const protoClasses = [...this.pMem.keys()];
    for (const c of protoClasses) {
      const p = this.pMem.get(c)!;
      if (p.length !== d) {
        throw new RangeError(
          `PPPloss: the prototype of class ${c} has ${p.length} values but the embeddings ${d}: ` +
            `make the model's output size equal to the prototype size`,
        );
      }
    }
    const classes = [...new Set(labels)].sort((a, b) => a - b);
    for (const c of classes) {
      if (!this.pMem.has(c)) {
        throw new RangeError(
          `PPPloss: class ${c} has no prototype (prototypes: ${protoClasses.join(", ")})`,
        );
      }
    }
    const P = protoClasses.length;
    if (P === 1) {
      // One class and one prototype: every probability is 1, the loss 0 (kept on the tape).
      return tf.tidy(() => tf.mul(tf.sum(x), 0) as tf.Scalar);
    }
    // Constants: labels one-hot over the prototypes, pair masks, log of the class sizes.
    const pIdx = labels.map((l) => protoClasses.indexOf(l));
    const count = new Map<number, number>();
    for (const l of labels) count.set(l, (count.get(l) ?? 0) + 1);
    const onehot = new Float32Array(bs * P);
    const same = new Float32Array(bs * bs); // 0 for a pseudo-prototype of the sample, else −BIG
    const diff = new Float32Array(bs * bs); // 1 where the candidate's class is another one
    const eye = new Float32Array(bs * bs);
    for (let j = 0; j < bs; j++) {
      onehot[j * P + pIdx[j]] = 1;
      eye[j * bs + j] = 1;
      for (let i = 0; i < bs; i++) {
        const sameClass = labels[j] === labels[i];
        same[j * bs + i] = sameClass && i !== j ? 0 : -BIG;
        diff[j * bs + i] = sameClass ? 0 : 1;
      }
    }
    const notSelf = new Float32Array(P * P);
    for (let c = 0; c < P; c++) notSelf[c * P + c] = -BIG;
    const protos = new Float32Array(P * d);
    protoClasses.forEach((c, k) => protos.set(Array.from(this.pMem.get(c)!), k * d));
    return tf.tidy(() => {
      const invT = 1 / this.T;
      const x2 = tf.reshape(x, [bs, d]) as tf.Tensor2D;
      const xT = tf.transpose(x2); // the samples classified: gradients flow
      const Y = tf.tensor2d(onehot, [bs, P]);
      // Similarities / T: rows are candidates (detached samples, prototypes), columns samples.
      const sxx = tf.mul(tf.matMul(detach(x2) as tf.Tensor2D, xT), invT); // [bs, bs]
      const spx = tf.mul(tf.matMul(tf.tensor2d(protos, [P, d]), xT), invT); // [P, bs]
      // lseNot[c, i] = log Σ_{k ≠ c} e^{p_k·x_i / T}: the denominator's other prototypes.
      const lseNot = tf.logSumExp(
        tf.add(tf.expandDims(spx, 0), tf.tensor3d(notSelf, [P, P, 1])),
        1,
      ); // [P, bs]
      // Logits of P(candidate j | x_i) with the other prototypes of j's class as alternatives.
      const zPair = tf.sub(sxx, tf.matMul(Y, lseNot)); // [bs, bs]
      const zProto = tf.matMul(Y, tf.sub(spx, lseNot)); // [bs, bs]: row j → prototype of j's class
      // Attractor: log mean over the pseudo-prototypes and the prototype of x_i's class.
      const protoOwn = tf.sum(tf.mul(zProto, tf.tensor2d(eye, [bs, bs])), 0, true); // [1, bs]
      const logNc = tf.tensor1d(labels.map((l) => Math.log(count.get(l)!)));
      const attr = tf.sum(tf.sub(
        tf.logSumExp(
          tf.concat([tf.add(logSigmoid(zPair), tf.tensor2d(same, [bs, bs])), logSigmoid(protoOwn)]),
          0,
        ),
        logNc,
      ));
      // Repellor: log(1 − (P_j + P_c)/2) = log((1 − P_j) + (1 − P_c)) − log 2, candidate j of
      // class c ≠ class of x_i.
      const rep = tf.sum(tf.mul(
        tf.sub(
          tf.logSumExp(tf.stack([logSigmoid(tf.neg(zPair)), logSigmoid(tf.neg(zProto))]), 0),
          Math.LN2,
        ),
        tf.tensor2d(diff, [bs, bs]),
      ));
      return tf.div(tf.neg(tf.add(attr, rep)), bs) as tf.Scalar;
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Replay loader
// ---------------------------------------------------------------------------------------------

/**
 * CoPE's minibatches: each minibatch of new data is processed `repeats` times, each time
 * concatenated with the next `batchSize` samples of the (shuffled, cycled) memory. `repeats` is
 * 1 while the memory is empty, else `min(maxIterPerBatch, ceil(memory / batchSize))`: as
 * Avalanche's `ReplayDataLoader` stopped after `max_it_cnt` iterations, for an online
 * experience of one minibatch.
 */
class CoPEReplayLoader implements DataLoader {
  readonly repeats: number;
  readonly length: number;
  readonly samples: number;

  constructor(
    readonly data: Dataset,
    readonly memory: Dataset | undefined,
    readonly batchSize: number,
    readonly shuffle: boolean,
    maxIterPerBatch: number,
    readonly onBatch: (lastRepeat: boolean) => void,
  ) {
    const m = memory?.length ?? 0;
    this.repeats = m === 0 ? 1 : Math.min(maxIterPerBatch, Math.ceil(m / batchSize));
    const batches = Math.ceil(data.length / batchSize);
    this.length = batches * this.repeats;
    let samples = data.length * this.repeats;
    if (m > 0) {
      for (let k = 0, cursor = 0; k < this.length; k++) {
        if (cursor >= m) cursor = 0;
        const take = Math.min(batchSize, m - cursor);
        samples += take;
        cursor += take;
      }
    }
    this.samples = samples;
  }

  *epoch(rng: Rng): Iterable<BatchPlan> {
    const n = this.data.length;
    const m = this.memory?.length ?? 0;
    const order = sampleOrder(n, this.shuffle, rng);
    let memOrder = sampleOrder(m, this.shuffle && m > 0, rng);
    let cursor = 0;
    for (let start = 0; start < n; start += this.batchSize) {
      const fresh = {
        dataset: this.data,
        indices: order.subarray(start, Math.min(n, start + this.batchSize)),
      };
      for (let r = 0; r < this.repeats; r++) {
        const parts: BatchPart[] = [fresh];
        if (m > 0) {
          if (cursor >= m) {
            if (this.shuffle) memOrder = rng.permutation(m);
            cursor = 0;
          }
          const indices = memOrder.subarray(cursor, Math.min(m, cursor + this.batchSize));
          cursor += indices.length;
          parts.push({ dataset: this.memory!, indices });
        }
        this.onBatch(r === this.repeats - 1);
        yield batchPlan(...parts);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Plugin
// ---------------------------------------------------------------------------------------------

/** Options of {@link CoPEPlugin} and {@link copePlugin}. */
export interface CoPEPluginOptions {
  /** Samples of the class-balanced replay memory. @default 200 */
  memSize?: number;
  /** Classes the model may meet (the width of the nearest-prototype scores). @default 10 */
  nClasses?: number;
  /** Prototype (embedding) size: the model's output size. @default 100 */
  pSize?: number;
  /** Momentum of the prototypes' moving average. @default 0.99 */
  alpha?: number;
  /** Softmax temperature of the PPP-loss and of the scores. @default 0.1 */
  T?: number;
  /**
   * Times each minibatch of new data is processed, each with other samples from the memory
   * (fewer when the memory holds fewer minibatches). Avalanche's `max_it_cnt`. @default 20
   */
  maxIterPerBatch?: number;
  /**
   * Create a class's prototype when the class is first seen in training (the paper's dynamic
   * prototypes). `false` creates the `nClasses` prototypes at the start of training, as
   * Avalanche does. @default true (false with `avalancheCompat`)
   */
  initAdaptive?: boolean;
  /**
   * Behave as Avalanche's `CoPEPlugin` where our defaults differ: `maxIterPerBatch` defaults to
   * 1 (Avalanche's `max_it_cnt`), `initAdaptive` to false (the `nClasses` prototypes made at the
   * start), and in evaluation the output is the one-hot code of the nearest prototype instead of
   * the scores `cos / T`. Values given explicitly win. Training is otherwise the same (the
   * training output stays the scores). @default false
   */
  avalancheCompat?: boolean;
}

/** The keys of {@link CoPEPluginOptions}, for checking what users pass. */
const COPE_PLUGIN_OPTIONS: OptionSpec<CoPEPluginOptions> = {
  memSize: "integer",
  nClasses: "integer",
  pSize: "integer",
  alpha: "number",
  T: "number",
  maxIterPerBatch: "integer",
  initAdaptive: "boolean",
  avalancheCompat: "boolean",
};

/** Plain-data state of {@link CoPEPlugin} (JSON-serializable). */
export interface CoPEState {
  /** `[class, prototype]`. */
  prototypes: [number, number[]][];
  /** Running sums of the current minibatch's embeddings: `[class, sum, count]`. */
  running: [number, number[], number][];
  memory: StoragePolicyState;
}

function checkInt(name: string, v: unknown, min: number, fix: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new RangeError(`CoPE: ${name} must be an integer ≥ ${min}, got ${String(v)}; ${fix}`);
  }
  return v;
}

/**
 * The CoPE plugin (Avalanche's `CoPEPlugin`), for online class-incremental (or data-incremental)
 * streams: one epoch, tiny experiences ({@link splitOnline}), task labels unused.
 *
 * The model's output is the embedding: build it with `pSize` outputs, e.g.
 * `mlp({ hidden: [400, 400], outputs: 32 })` with `pSize: 32`. The plugin L2-normalizes it (as
 * Avalanche appends an `L2Normalization` to the last layer) and:
 * - **prototypes**: one unit vector per class, drawn uniformly in [−1, 1]^pSize from `ctx.rng`
 *   and normalized when the class is first seen (or all `nClasses` at the start with
 *   `initAdaptive: false`, as Avalanche);
 * - **replay**: each minibatch of new data is concatenated with as many samples of a
 *   class-balanced memory of `memSize` samples ({@link ClassBalancedStoragePolicy}: equal share
 *   per class seen, random eviction) and processed up to `maxIterPerBatch` times with fresh
 *   memory samples; the memory is updated with the experience's data after the experience;
 * - **loss**: the criterion's value is replaced by the {@link PPPloss} of the normalized
 *   embeddings (terms other plugins add with `ctx.addLoss` are kept);
 * - **prototype update**: the normalized embeddings of each class are averaged over the
 *   iterations of a minibatch of new data (memory samples included); after its last iteration
 *   `p_c ← normalize(α p_c + (1 − α) normalize(mean_c))`. For an online experience of one
 *   minibatch this is Avalanche's update after each experience;
 * - **prediction**: the outputs (in training and evaluation) become the scores
 *   `cos(embedding, p_c) / T` for each of the `nClasses` classes, {@link MASK_VALUE} for classes
 *   without a prototype, so argmax is the nearest prototype and accuracy metrics work. (Avalanche
 *   outputs the one-hot code of the nearest prototype.)
 *
 * Where we differ from Avalanche by default, and `avalancheCompat: true` does as it does:
 * - evaluation output: the scores give the same argmax as Avalanche's one-hot code, so the same
 *   accuracy, while the loss and top-k accuracy stay informative (a one-hot output ties every
 *   other class and its loss only counts hits);
 * - `maxIterPerBatch` 20, not 1: each new minibatch is trained with up to 20 minibatches of the
 *   memory, using the memory more per new sample (the reproduction in `lib/repro/configs.ts`
 *   sets Avalanche's 1);
 * - `initAdaptive` true, not false: the paper's dynamic prototypes, one made when its class
 *   first arrives, rather than `nClasses` random ones from the start.
 *
 * @example
 * ```ts ignore
 * const bench = splitOnline(await splitMNIST(), { experienceSize: 10 });
 * const model = mlp({ hidden: [400, 400], outputs: 32 });
 * const strategy = naive({ model, batchSize: 10, plugins: [new CoPEPlugin(200, 10, 32)] });
 * for (const exp of bench.train) await strategy.train(exp);
 * ```
 */
export class CoPEPlugin extends StrategyPlugin {
  readonly memSize: number;
  readonly nClasses: number;
  readonly pSize: number;
  readonly alpha: number;
  readonly T: number;
  readonly maxIterPerBatch: number;
  readonly initAdaptive: boolean;
  /** Whether the defaults and the evaluation output are Avalanche's (see {@link CoPEPluginOptions}). */
  readonly avalancheCompat: boolean;
  /** Prototypes by class (unit vectors of `pSize` values); shared with {@link CoPEPlugin.pppLoss}. */
  readonly prototypes: Map<number, Float32Array> = new Map();
  /** The loss, reading {@link CoPEPlugin.prototypes}. */
  readonly pppLoss: PPPloss;
  /** The replay memory. */
  readonly storagePolicy: ClassBalancedStoragePolicy;
  #running = new Map<number, { sum: Float64Array; count: number }>();
  #lastRepeat = true;
  #raw: tf.Tensor | undefined;
  #emb: tf.Tensor2D | undefined;
  #scores: tf.Tensor | undefined;

  /**
   * Positional arguments as Avalanche's constructor (`max_it_cnt` is `maxIterPerBatch`), or an
   * options object.
   */
  constructor(
    memSize: number | CoPEPluginOptions = 200,
    nClasses = 10,
    pSize = 100,
    alpha = 0.99,
    T = 0.1,
    maxIterPerBatch = 20,
  ) {
    super();
    const o: CoPEPluginOptions = typeof memSize === "object" && memSize !== null
      ? checkOptions("CoPEPlugin", memSize, COPE_PLUGIN_OPTIONS)
      : { memSize, nClasses, pSize, alpha, T, maxIterPerBatch };
    this.memSize = checkInt("memSize", o.memSize ?? 200, 0, "pass the replay memory's capacity");
    this.nClasses = checkInt("nClasses", o.nClasses ?? 10, 1, "pass the number of classes");
    this.pSize = checkInt("pSize", o.pSize ?? 100, 1, "pass the model's output size");
    this.alpha = o.alpha ?? 0.99;
    if (typeof this.alpha !== "number" || !(this.alpha >= 0 && this.alpha <= 1)) {
      throw new RangeError(`CoPE: alpha must be a number in [0, 1], got ${String(this.alpha)}`);
    }
    this.T = o.T ?? 0.1;
    checkTemperature("CoPE", this.T);
    this.avalancheCompat = o.avalancheCompat ?? false;
    if (typeof this.avalancheCompat !== "boolean") {
      throw new TypeError(
        `CoPE: avalancheCompat must be true or false, got ${String(o.avalancheCompat)}`,
      );
    }
    this.maxIterPerBatch = checkInt(
      "maxIterPerBatch",
      o.maxIterPerBatch ?? (this.avalancheCompat ? 1 : 20),
      1,
      "pass how many times each minibatch is processed",
    );
    this.initAdaptive = o.initAdaptive ?? !this.avalancheCompat;
    if (typeof this.initAdaptive !== "boolean") {
      throw new TypeError(
        `CoPE: initAdaptive must be true or false, got ${String(o.initAdaptive)}`,
      );
    }
    this.pppLoss = new PPPloss(this.prototypes, this.T);
    this.storagePolicy = new ClassBalancedStoragePolicy({ memSize: this.memSize });
  }

  override get name(): string {
    return "CoPEPlugin";
  }

  beforeTraining(ctx: StrategyContext): void {
    if (!this.initAdaptive) {
      this.#initPrototypes(Array.from({ length: this.nClasses }, (_, c) => c), ctx.rng);
    }
  }

  beforeTrainingExp(ctx: StrategyContext): void {
    const dataset = ctx.dataset!;
    for (const c of dataset.classes()) this.#checkClass(c);
    const memory = this.storagePolicy.buffer;
    ctx.dataLoader = new CoPEReplayLoader(
      dataset,
      memory.length > 0 ? memory : undefined,
      ctx.settings.batchSize,
      ctx.settings.shuffle,
      this.maxIterPerBatch,
      (last) => (this.#lastRepeat = last),
    );
  }

  afterForward(ctx: StrategyContext): void {
    this.#disposeScores();
    const batch = ctx.batch!;
    if (this.initAdaptive) this.#initPrototypes([...new Set(batch.data.y)], ctx.rng);
    this.#raw = ctx.output!;
    this.#emb = this.#embed(ctx.output!);
    // Kept: the strategy reads the output after the gradient tape, which frees what it made.
    this.#scores = tf.keep(this.#score(this.#emb));
    ctx.output = this.#scores;
  }

  beforeBackward(ctx: StrategyContext): void {
    const ppp = this.pppLoss.compute(this.#emb!, ctx.batch!.data.y.subarray(0, ctx.batch!.n));
    if (ctx.lossTerms.size === 0) {
      ctx.loss = ppp;
    } else {
      // Keep the other plugins' terms, drop the criterion's value (gradients cancel exactly).
      const criterion = ctx.criterion(ctx.output!, ctx.batch!.y);
      ctx.loss = tf.add(ppp, tf.sub(ctx.loss!, criterion)) as tf.Scalar;
    }
    ctx.lossTerms.set("ppp", ppp);
  }

  async afterTrainingIteration(ctx: StrategyContext): Promise<void> {
    const batch = ctx.batch!;
    if (this.#raw && !this.#raw.isDisposed) {
      const sums = tf.tidy(() => {
        const onehot = tf.oneHot(batch.y, this.nClasses).toFloat();
        return tf.matMul(tf.transpose(onehot), l2Normalize(this.#raw!));
      });
      // Read asynchronously: the "webgpu" backend has no synchronous read of GPU data.
      const values = await sums.data();
      sums.dispose();
      const counts = new Map<number, number>();
      for (const c of batch.data.y.subarray(0, batch.n)) counts.set(c, (counts.get(c) ?? 0) + 1);
      for (const [c, n] of [...counts].sort((a, b) => a[0] - b[0])) {
        let r = this.#running.get(c);
        if (!r) this.#running.set(c, r = { sum: new Float64Array(this.pSize), count: 0 });
        for (let k = 0; k < this.pSize; k++) r.sum[k] += values[c * this.pSize + k];
        r.count += n;
      }
    }
    this.#raw = undefined;
    this.#emb = undefined;
    this.#disposeScores();
    if (this.#lastRepeat) this.#updatePrototypes();
  }

  afterTrainingExp(ctx: StrategyContext): void {
    this.#updatePrototypes();
    this.storagePolicy.update(ctx);
  }

  afterEvalForward(ctx: StrategyContext): void {
    const scores = this.#score(this.#embed(ctx.output!));
    ctx.output = this.avalancheCompat
      ? tf.tidy(() => tf.oneHot(tf.argMax(scores, 1), this.nClasses).toFloat())
      : scores;
  }

  /** Nearest-prototype scores: `cos(x, p_c) / T`, {@link MASK_VALUE} for classes without one. */
  scores(embeddings: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => this.#score(l2Normalize(embeddings)));
  }

  #embed(output: tf.Tensor): tf.Tensor2D {
    const width = output.size / output.shape[0];
    if (width !== this.pSize) {
      throw new RangeError(
        `CoPE: the model outputs ${width} values per sample but pSize is ${this.pSize}: build the ` +
          `model with ${this.pSize} outputs (e.g. mlp({ outputs: ${this.pSize} })) or pass pSize: ${width}`,
      );
    }
    return l2Normalize(output);
  }

  #score(emb: tf.Tensor2D): tf.Tensor2D {
    const [C, d] = [this.nClasses, this.pSize];
    const protos = new Float32Array(d * C);
    const mask = new Float32Array(C).fill(MASK_VALUE);
    for (const [c, p] of this.prototypes) {
      if (c >= C) continue;
      mask[c] = 0;
      for (let k = 0; k < d; k++) protos[k * C + c] = p[k];
    }
    return tf.tidy(() =>
      tf.add(
        tf.mul(tf.matMul(emb, tf.tensor2d(protos, [d, C])), 1 / this.T),
        tf.tensor1d(mask),
      ) as tf.Tensor2D
    );
  }

  #checkClass(c: number): void {
    if (!(c >= 0 && c < this.nClasses)) {
      throw new RangeError(
        `CoPE: class ${c} is out of range for nClasses = ${this.nClasses}: pass nClasses ≥ ${
          c + 1
        }`,
      );
    }
  }

  #initPrototypes(classes: number[], rng: Rng): void {
    for (const c of classes.sort((a, b) => a - b)) {
      if (this.prototypes.has(c)) continue;
      this.#checkClass(c);
      const p = new Float64Array(this.pSize);
      for (let k = 0; k < this.pSize; k++) p[k] = rng.next() * 2 - 1;
      this.prototypes.set(c, normalized(p));
    }
  }

  #updatePrototypes(): void {
    const a = this.alpha;
    for (const [c, { sum, count }] of this.#running) {
      const mean = normalized(sum.map((v) => v / count));
      const old = this.prototypes.get(c)!;
      this.prototypes.set(
        c,
        normalized(Float64Array.from(old, (v, k) => a * v + (1 - a) * mean[k])),
      );
    }
    this.#running.clear();
  }

  #disposeScores(): void {
    this.#scores?.dispose();
    this.#scores = undefined;
  }

  /** Prototypes, pending running sums and the memory as plain data. */
  state(): CoPEState {
    return {
      prototypes: [...this.prototypes].map(([c, p]) => [c, Array.from(p)]),
      running: [...this.#running].map(([c, r]) => [c, Array.from(r.sum), r.count]),
      memory: this.storagePolicy.state(),
    };
  }

  /** Restores what {@link CoPEPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as CoPEState;
    if (!s || !Array.isArray(s.prototypes) || !s.memory) {
      throw new TypeError("Not a CoPEPlugin state: expected { prototypes, running, memory }");
    }
    for (const [c, p] of s.prototypes) {
      if (!Array.isArray(p) || p.length !== this.pSize) {
        throw new RangeError(
          `The CoPE state has a prototype of ${p?.length} values for class ${c}, pSize is ${this.pSize}`,
        );
      }
    }
    this.prototypes.clear();
    for (const [c, p] of s.prototypes) this.prototypes.set(c, Float32Array.from(p));
    this.#running = new Map(
      (s.running ?? []).map(([c, sum, count]) => [c, { sum: Float64Array.from(sum), count }]),
    );
    this.storagePolicy.loadState(s.memory);
  }

  /** Frees the tensors the plugin holds (none between iterations). */
  dispose(): void {
    this.#disposeScores();
    this.#raw = undefined;
    this.#emb = undefined;
  }
}

function normalized(v: ArrayLike<number>): Float32Array {
  let s = 0;
  for (let k = 0; k < v.length; k++) s += v[k] * v[k];
  const n = Math.max(Math.sqrt(s), 1e-12);
  return Float32Array.from(v as ArrayLike<number>, (x) => x / n);
}

/**
 * A {@link CoPEPlugin} from options.
 *
 * @example
 * ```ts
 * import { copePlugin } from "./cope.ts";
 * const plugin = copePlugin({ memSize: 200, nClasses: 10, pSize: 32 });
 * console.assert(plugin.prototypes.size === 0);
 * ```
 */
export function copePlugin(opts: CoPEPluginOptions = {}): CoPEPlugin {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("copePlugin expects an options object { memSize, nClasses, pSize, ... }");
  }
  checkOptions("copePlugin", opts, COPE_PLUGIN_OPTIONS);
  return new CoPEPlugin(opts);
}

/** Options of {@link cope}: the strategy's, plus the plugin's. */
export interface CoPEOptions extends StrategyOptions, CoPEPluginOptions {}

/** Output size of a model's last layer, when it tells. */
function outputSize(model: Module): number | undefined {
  const head = (model as unknown as { classifier?: { outFeatures?: unknown } }).classifier;
  const n = head?.outFeatures;
  return typeof n === "number" ? n : undefined;
}

/**
 * The CoPE strategy: training with a {@link CoPEPlugin}, for online class-incremental streams
 * (1 epoch, small experiences from {@link splitOnline}, small minibatches). `pSize` defaults to
 * the model's output size (its `classifier`'s units), the model being an embedding network.
 *
 * @example
 * ```ts ignore
 * const bench = splitOnline(await splitMNIST(), { experienceSize: 10 });
 * const strategy = cope({ model: mlp({ hidden: [400, 400], outputs: 32 }), batchSize: 10, memSize: 200 });
 * for (const exp of bench.train) await strategy.train(exp);
 * console.log((await strategy.eval(bench.test)).accuracy);
 * ```
 */
export function cope(opts: CoPEOptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("cope expects an options object { model, ... }");
  }
  checkOptions("cope", opts, { ...STRATEGY_OPTIONS, ...COPE_PLUGIN_OPTIONS });
  const {
    memSize,
    nClasses,
    pSize,
    alpha,
    T,
    maxIterPerBatch,
    initAdaptive,
    avalancheCompat,
    ...rest
  } = opts;
  const plugin = new CoPEPlugin({
    memSize,
    nClasses,
    pSize: pSize ?? (rest.model ? outputSize(rest.model) : undefined),
    alpha,
    T,
    maxIterPerBatch,
    initAdaptive,
    avalancheCompat,
  });
  return withPlugin("CoPE", plugin, rest);
}
