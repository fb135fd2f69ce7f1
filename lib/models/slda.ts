/**
 * Deep Streaming Linear Discriminant Analysis (Hayes and Kanan, "Lifelong Machine Learning with
 * Deep Streaming Linear Discriminant Analysis", CVPR Workshops 2020): a fixed feature extractor
 * followed by a linear discriminant whose class means and shared covariance are updated one
 * sample at a time. The statistics are plain float64 numbers, updated and inverted here, so that
 * a run and a restored one give the same numbers.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { type Features, hasEmbed } from "./features.ts";
import { MASK_VALUE } from "./heads.ts";
import { type ForwardOptions, Module } from "../nn/module.ts";

/** Options of {@link SLDAClassifier}. */
export interface SLDAClassifierOptions {
  /**
   * The fixed feature extractor; null: the raw inputs, flattened, are the features.
   * @default null
   */
  featureExtractor?: Module | null;
  /** Size of a feature vector (Avalanche's `input_size`). */
  inputSize: number;
  /** Number of classes of the whole stream (Avalanche's `num_classes`). */
  numClasses: number;
  /**
   * `"embed"`: the features are the extractor's `embed(x)` (a classifier's features before its
   * head); null: its output. @default null
   */
  outputLayerName?: "embed" | null;
  /** Shrinkage of the covariance towards the identity before it is inverted. @default 1e-4 */
  shrinkageParam?: number;
  /** Update the covariance with every sample (else only the means; see `fitBase`). @default true */
  streamingUpdateSigma?: boolean;
}

/** Plain-data state of {@link SLDAClassifier}: Avalanche's `muK`, `cK`, `Sigma`, `num_updates`. */
export interface SLDAState {
  version: 1;
  inputSize: number;
  numClasses: number;
  /** Class means, row-major [numClasses, inputSize]. */
  muK: number[];
  /** Samples seen per class. */
  cK: number[];
  /** Shared covariance, row-major [inputSize, inputSize]. */
  sigma: number[];
  numUpdates: number;
}

/**
 * The model of Avalanche 0.6's `StreamingLDA` (`training/supervised/deep_slda.py`): a frozen
 * feature extractor and the streaming LDA over its features. `forward(x)` gives the LDA scores
 * `x·W − c` with `W = Λ M` and `c_k = ½ μ_kᵀ Λ μ_k`, where `M` holds the class means as
 * columns and `Λ = ((1 − s)·Σ + s·I)⁻¹` is the precision matrix of the shrunk covariance (`s`:
 * `shrinkageParam`). {@link SLDAClassifier.fit} takes one sample: with `streamingUpdateSigma`,
 * `Σ ← (n·Σ + n/(n+1)·(x − μ_y)(x − μ_y)ᵀ) / (n + 1)` (n: samples seen, the mean before this
 * sample), then `μ_y ← μ_y + (x − μ_y) / (c_y + 1)`, `c_y ← c_y + 1`. As Avalanche, the means
 * start at zero and the covariance at a matrix of ones (replaced by the first update).
 *
 * Checked line by line against Avalanche's `fit`, `predict` and `fit_base`. Where we differ:
 * the statistics are float64 (Avalanche's tensors are float32); `Λ` is applied through a
 * Cholesky factorization of the shrunk covariance, which is positive definite whenever
 * `shrinkageParam > 0` (Avalanche's `pinverse` also accepts a singular one; here that is an
 * error asking for shrinkage); a class never seen scores {@link MASK_VALUE} (Avalanche scores
 * its zero mean, which may win over the classes seen). `fitBase` estimates the covariance with
 * the Oracle Approximating Shrinkage as scikit-learn's `OAS(assume_centered=True)`, which
 * Avalanche calls.
 *
 * The extractor's parameters are this module's (its child `featureExtractor`), never trained.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { SLDAClassifier } from "./slda.ts";
 * await setBackend("cpu");
 * const lda = new SLDAClassifier({ inputSize: 2, numClasses: 2 });
 * lda.fit([0, 0], 0);
 * lda.fit([2, 0], 1);
 * const scores = lda.forward(tf.tensor2d([[0.2, 0], [1.9, 0.1]]));
 * console.assert(Array.from(tf.argMax(scores, 1).dataSync()).join() === "0,1");
 * ```
 */
export class SLDAClassifier extends Module {
  readonly inputSize: number;
  readonly numClasses: number;
  readonly outputLayerName: "embed" | null;
  readonly shrinkageParam: number;
  readonly streamingUpdateSigma: boolean;
  /** The extractor, or null for raw inputs. */
  readonly featureExtractor: Module | null;
  #muK: Float64Array;
  #cK: Float64Array;
  #sigma: Float64Array;
  #numUpdates = 0;
  /** `W` [d, C] and `c` [C] for the statistics after `at` updates. */
  #cache: { at: number; w: Float32Array; c: Float32Array; seen: Float32Array } | undefined;

  constructor(opts: SLDAClassifierOptions) {
    super();
    const d = opts.inputSize, k = opts.numClasses;
    if (!Number.isInteger(d) || d < 1) {
      throw new RangeError(
        `StreamingLDA: inputSize must be an integer ≥ 1 (the size of a feature vector), got ${d}`,
      );
    }
    if (!Number.isInteger(k) || k < 1) {
      throw new RangeError(
        `StreamingLDA: numClasses must be an integer ≥ 1 (the classes of the stream), got ${k}`,
      );
    }
    const s = opts.shrinkageParam ?? 1e-4;
    if (typeof s !== "number" || !(s >= 0 && s <= 1)) {
      throw new RangeError(
        `StreamingLDA: shrinkageParam must be a number in [0, 1] (the default is 1e-4), got ${s}`,
      );
    }
    const layer = opts.outputLayerName ?? null;
    if (layer !== null && layer !== "embed") {
      throw new RangeError(
        `StreamingLDA: outputLayerName must be "embed" (the features before the head) or null ` +
          `(the model's output), got ${JSON.stringify(layer)}`,
      );
    }
    const fe = opts.featureExtractor ?? null;
    if (fe !== null && !(fe instanceof Module)) {
      throw new TypeError(
        "StreamingLDA: the feature extractor must be a Module (e.g. mlp(...)), or null for raw inputs",
      );
    }
    if (layer === "embed" && (fe === null || !hasEmbed(fe))) {
      throw new TypeError(
        'StreamingLDA: outputLayerName "embed" needs a model with embed(x), such as mlp or cnn',
      );
    }
    this.inputSize = d;
    this.numClasses = k;
    this.outputLayerName = layer;
    this.shrinkageParam = s;
    this.streamingUpdateSigma = opts.streamingUpdateSigma ?? true;
    this.featureExtractor = fe;
    if (fe) this.child("featureExtractor", fe);
    this.#muK = new Float64Array(k * d);
    this.#cK = new Float64Array(k);
    this.#sigma = new Float64Array(d * d).fill(1);
  }

  /** Samples fitted so far (Avalanche's `num_updates`). */
  get numUpdates(): number {
    return this.#numUpdates;
  }

  /** Class means, row-major [numClasses, inputSize] (a copy). */
  get muK(): Float64Array {
    return this.#muK.slice();
  }

  /** Samples seen per class (a copy). */
  get cK(): Float64Array {
    return this.#cK.slice();
  }

  /** The shared covariance, row-major [inputSize, inputSize] (a copy). */
  get sigma(): Float64Array {
    return this.#sigma.slice();
  }

  /** The features of inputs `x`: [n, inputSize] (`opts`: task labels, for the extractor). */
  features(x: tf.Tensor, opts?: ForwardOptions): tf.Tensor2D {
    return tf.tidy(() => {
      const n = x.shape[0];
      const fe = this.featureExtractor;
      let f = x;
      if (fe) {
        f = this.outputLayerName === "embed"
          ? (fe as Module & { embed(x: tf.Tensor, o?: ForwardOptions): tf.Tensor }).embed(x, opts)
          : fe.forward(x, opts);
      }
      if (f.size / n !== this.inputSize) {
        throw new RangeError(
          `StreamingLDA: the features have ${f.size / n} values, but inputSize is ` +
            `${this.inputSize}: give the size of the feature vectors as inputSize`,
        );
      }
      return tf.reshape(f, [n, this.inputSize]) as tf.Tensor2D;
    });
  }

  /** LDA scores [n, numClasses] of inputs `x` (through the feature extractor). */
  forward(x: tf.Tensor, opts?: ForwardOptions): tf.Tensor2D {
    return tf.tidy(() => this.predict(this.features(x, opts)));
  }

  /** LDA scores [n, numClasses] of features [n, inputSize] (Avalanche's `predict`). */
  predict(features: tf.Tensor2D): tf.Tensor2D {
    const { w, c, seen } = this.#discriminant();
    return tf.tidy(() => {
      const scores = tf.sub(
        tf.matMul(features, tf.tensor2d(w, [this.inputSize, this.numClasses])),
        tf.tensor2d(c, [1, this.numClasses]),
      );
      const mask = tf.tensor2d(seen, [1, this.numClasses]);
      return tf.add(tf.mul(scores, mask), tf.mul(tf.sub(1, mask), MASK_VALUE)) as tf.Tensor2D;
    });
  }

  /** Fits one sample: features `x` (inputSize values) of class `y` (Avalanche's `fit`). */
  fit(x: ArrayLike<number>, y: number): void {
    const d = this.inputSize;
    this.#checkLabel(y);
    if (x.length !== d) {
      throw new RangeError(`StreamingLDA: a sample has ${x.length} features, not ${d}`);
    }
    const mu = this.#muK.subarray(y * d, (y + 1) * d);
    if (this.streamingUpdateSigma) {
      const n = this.#numUpdates, sigma = this.#sigma;
      const r = Float64Array.from(mu, (m, i) => x[i] - m);
      const a = n / (n + 1), b = n / ((n + 1) * (n + 1));
      // Σ ← (n·Σ + rrᵀ·n/(n+1)) / (n+1), on one triangle, mirrored (Σ stays symmetric).
      for (let i = 0; i < d; i++) {
        const ri = r[i] * b, row = i * d;
        for (let j = i; j < d; j++) {
          const v = a * sigma[row + j] + ri * r[j];
          sigma[row + j] = v;
          sigma[j * d + i] = v;
        }
      }
    }
    const count = this.#cK[y];
    for (let i = 0; i < d; i++) mu[i] += (x[i] - mu[i]) / (count + 1);
    this.#cK[y] = count + 1;
    this.#numUpdates++;
  }

  /** Fits each row of `features` with its label, in order. */
  fitBatch(features: Features, labels: ArrayLike<number>): void {
    this.#checkBatch(features, labels);
    const d = features.dim;
    for (let i = 0; i < features.n; i++) {
      this.fit(features.values.subarray(i * d, (i + 1) * d), labels[i]);
    }
  }

  /**
   * Fits a base initialization batch at once (Avalanche's `fit_base`): the mean and count of
   * each class present are set from it, the number of updates becomes its size, and the
   * covariance is the Oracle Approximating Shrinkage estimate of the samples minus their class
   * means, taken as centred (scikit-learn's `OAS(assume_centered=True)`).
   */
  fitBase(features: Features, labels: ArrayLike<number>): void {
    this.#checkBatch(features, labels);
    const d = this.inputSize, n = features.n, x = features.values;
    if (n === 0) throw new RangeError("StreamingLDA.fitBase needs at least one sample");
    const sums = new Map<number, Float64Array>(), counts = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const y = labels[i];
      let s = sums.get(y);
      if (!s) sums.set(y, s = new Float64Array(d));
      for (let k = 0; k < d; k++) s[k] += x[i * d + k];
      counts.set(y, (counts.get(y) ?? 0) + 1);
    }
    for (const [y, s] of sums) {
      const c = counts.get(y)!;
      for (let k = 0; k < d; k++) this.#muK[y * d + k] = s[k] / c;
      this.#cK[y] = c;
    }
    this.#numUpdates = n;
    // Empirical covariance of the centred samples (x − μ_y), then OAS shrinkage.
    const emp = new Float64Array(d * d), r = new Float64Array(d);
    for (let i = 0; i < n; i++) {
      const y = labels[i];
      for (let k = 0; k < d; k++) r[k] = x[i * d + k] - this.#muK[y * d + k];
      for (let a = 0; a < d; a++) {
        const ra = r[a];
        for (let b = a; b < d; b++) emp[a * d + b] += ra * r[b];
      }
    }
    let trace = 0, sumSq = 0;
    for (let a = 0; a < d; a++) {
      for (let b = a; b < d; b++) {
        const v = emp[a * d + b] / n;
        emp[a * d + b] = v;
        emp[b * d + a] = v;
        sumSq += a === b ? v * v : 2 * v * v;
      }
      trace += emp[a * d + a];
    }
    const mu = trace / d, alpha = sumSq / (d * d);
    const num = alpha + mu * mu, den = (n + 1) * (alpha - (mu * mu) / d);
    const shrinkage = den === 0 ? 1 : Math.min(num / den, 1);
    for (let i = 0; i < d * d; i++) emp[i] *= 1 - shrinkage;
    for (let a = 0; a < d; a++) emp[a * d + a] += shrinkage * mu;
    this.#sigma = emp;
    this.#cache = undefined;
  }

  /** The statistics as plain data (Avalanche's `save_model`). */
  ldaState(): SLDAState {
    return {
      version: 1,
      inputSize: this.inputSize,
      numClasses: this.numClasses,
      muK: Array.from(this.#muK),
      cK: Array.from(this.#cK),
      sigma: Array.from(this.#sigma),
      numUpdates: this.#numUpdates,
    };
  }

  /** Restores what {@link SLDAClassifier.ldaState} returned (Avalanche's `load_model`). */
  loadLdaState(state: SLDAState): void {
    const s = state;
    if (!s || s.version !== 1 || !Array.isArray(s.muK) || !Array.isArray(s.sigma)) {
      throw new TypeError(`Not a StreamingLDA state (version ${String(s?.version)})`);
    }
    const d = this.inputSize, k = this.numClasses;
    if (s.inputSize !== d || s.numClasses !== k) {
      throw new RangeError(
        `The checkpoint's StreamingLDA has inputSize ${s.inputSize} and numClasses ` +
          `${s.numClasses}; this one ${d} and ${k}: build it with the same ones`,
      );
    }
    if (
      s.muK.length !== k * d || s.cK?.length !== k || s.sigma.length !== d * d ||
      !Number.isInteger(s.numUpdates) || s.numUpdates < 0
    ) {
      throw new RangeError("A StreamingLDA state with arrays of the wrong sizes");
    }
    for (const a of [s.muK, s.cK, s.sigma]) {
      if (!a.every((v) => typeof v === "number" && Number.isFinite(v))) {
        throw new RangeError("A StreamingLDA state with values that are not finite numbers");
      }
    }
    this.#muK = Float64Array.from(s.muK);
    this.#cK = Float64Array.from(s.cK);
    this.#sigma = Float64Array.from(s.sigma);
    this.#numUpdates = s.numUpdates;
    this.#cache = undefined;
  }

  #checkLabel(y: number): void {
    if (!Number.isInteger(y) || y < 0 || y >= this.numClasses) {
      throw new RangeError(
        `StreamingLDA: label ${y} is outside the ${this.numClasses} classes: give numClasses ` +
          `as the number of classes of the whole stream`,
      );
    }
  }

  #checkBatch(features: Features, labels: ArrayLike<number>): void {
    if (features.dim !== this.inputSize) {
      throw new RangeError(
        `StreamingLDA: the features have ${features.dim} values, not inputSize ${this.inputSize}`,
      );
    }
    if (labels.length !== features.n) {
      throw new RangeError(
        `StreamingLDA: ${features.n} feature vectors but ${labels.length} labels`,
      );
    }
    for (let i = 0; i < labels.length; i++) this.#checkLabel(labels[i]);
  }

  /** `W = Λ M` and `c`, computed again only after the statistics changed. */
  #discriminant(): { w: Float32Array; c: Float32Array; seen: Float32Array } {
    if (this.#cache && this.#cache.at === this.#numUpdates) return this.#cache;
    const d = this.inputSize, k = this.numClasses, s = this.shrinkageParam;
    const a = new Float64Array(d * d);
    for (let i = 0; i < d * d; i++) a[i] = (1 - s) * this.#sigma[i];
    for (let i = 0; i < d; i++) a[i * d + i] += s;
    const l = cholesky(a, d);
    if (!l) {
      throw new RangeError(
        `StreamingLDA: the shrunk covariance is singular (shrinkageParam ${s}): use a ` +
          `shrinkageParam > 0, such as the default 1e-4`,
      );
    }
    const w = new Float32Array(d * k), c = new Float32Array(k), seen = new Float32Array(k);
    const col = new Float64Array(d);
    for (let y = 0; y < k; y++) {
      const mu = this.#muK.subarray(y * d, (y + 1) * d);
      col.set(mu);
      choleskySolve(l, d, col);
      let dot = 0;
      for (let i = 0; i < d; i++) {
        w[i * k + y] = col[i];
        dot += mu[i] * col[i];
      }
      c[y] = 0.5 * dot;
      seen[y] = this.#cK[y] > 0 ? 1 : 0;
    }
    this.#cache = { at: this.#numUpdates, w, c, seen };
    return this.#cache;
  }
}

/** The lower Cholesky factor of a symmetric matrix (row-major), or undefined if not positive definite. */
function cholesky(a: Float64Array, d: number): Float64Array | undefined {
  const l = new Float64Array(d * d);
  for (let j = 0; j < d; j++) {
    let s = a[j * d + j];
    const rj = j * d;
    for (let k = 0; k < j; k++) s -= l[rj + k] * l[rj + k];
    if (!(s > 0)) return undefined;
    const ljj = Math.sqrt(s);
    l[rj + j] = ljj;
    for (let i = j + 1; i < d; i++) {
      const ri = i * d;
      let t = a[ri + j];
      for (let k = 0; k < j; k++) t -= l[ri + k] * l[rj + k];
      l[ri + j] = t / ljj;
    }
  }
  return l;
}

/** Solves `L Lᵀ x = b` in place. */
function choleskySolve(l: Float64Array, d: number, b: Float64Array): void {
  for (let i = 0; i < d; i++) {
    let t = b[i];
    for (let k = 0; k < i; k++) t -= l[i * d + k] * b[k];
    b[i] = t / l[i * d + i];
  }
  for (let i = d - 1; i >= 0; i--) {
    let t = b[i];
    for (let k = i + 1; k < d; k++) t -= l[k * d + i] * b[k];
    b[i] = t / l[i * d + i];
  }
}
