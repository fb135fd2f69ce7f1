/**
 * FeCAM (Goswami et al., "FeCAM: Exploiting the Heterogeneity of Class Distributions in
 * Exemplar-Free Continual Learning", NeurIPS 2023): like nearest-class-mean classification, but
 * each class keeps a covariance too, and a sample goes to the class at the smallest Mahalanobis
 * distance. Means and covariances are plain numbers (float64 inverses, float32 storage).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Features } from "./features.ts";
import { MASK_VALUE } from "./heads.ts";
import { classMeansOf } from "./ncm.ts";
import { checkOptions, type OptionSpec } from "../options.ts";

/** Options of {@link FeCAMClassifier} (Avalanche 0.6's names). */
export interface FeCAMClassifierOptions {
  /** Tukey's ladder of powers on the features: `x^tukey1` (`log x` when 0). @default true */
  tukey?: boolean;
  /** Shrink each covariance ({@link shrinkCovariance}, applied twice as Avalanche does). @default true */
  shrinkage?: boolean;
  /** Weight of the mean variance added to the diagonal. @default 1 */
  shrink1?: number;
  /** Weight of the mean off-diagonal covariance added off the diagonal. @default 1 */
  shrink2?: number;
  /** The power of the Tukey transform. @default 0.5 */
  tukey1?: number;
  /** Normalize each covariance to a correlation matrix (after shrinkage). @default true */
  covnorm?: boolean;
}

const FECAM_OPTIONS: OptionSpec<FeCAMClassifierOptions> = {
  tukey: "boolean",
  shrinkage: "boolean",
  shrink1: "number",
  shrink2: "number",
  tukey1: "number",
  covnorm: "boolean",
};

/** Plain-data state of {@link FeCAMClassifier}: per class, its mean and covariance (row-major). */
export interface FeCAMState {
  version: 1;
  means: [number, number[]][];
  covs: [number, number[]][];
}

/**
 * The unbiased covariance of each class's features (Avalanche's `compute_covariance`,
 * `torch.cov`: divided by n − 1), row-major [d, d], keys in increasing order. A class needs two
 * samples at least.
 */
export function classCovariancesOf(
  features: Features,
  labels: ArrayLike<number>,
): Map<number, Float64Array> {
  if (labels.length !== features.n) {
    throw new RangeError(
      `classCovariancesOf: ${features.n} feature vectors but ${labels.length} labels`,
    );
  }
  const d = features.dim, x = features.values;
  const means = classMeansOf(features, labels, false);
  const out = new Map<number, Float64Array>();
  const counts = new Map<number, number>();
  for (let i = 0; i < features.n; i++) counts.set(labels[i], (counts.get(labels[i]) ?? 0) + 1);
  const r = new Float64Array(d);
  for (const c of means.keys()) out.set(c, new Float64Array(d * d));
  for (let i = 0; i < features.n; i++) {
    const y = labels[i], mu = means.get(y)!, cov = out.get(y)!;
    for (let k = 0; k < d; k++) r[k] = x[i * d + k] - mu[k];
    for (let a = 0; a < d; a++) {
      const ra = r[a];
      for (let b = a; b < d; b++) cov[a * d + b] += ra * r[b];
    }
  }
  for (const [c, cov] of out) {
    const n = counts.get(c)!;
    if (n < 2) {
      throw new RangeError(
        `FeCAM: class ${c} has a single sample, whose covariance is undefined: give each class ` +
          `two samples at least (a larger memory)`,
      );
    }
    for (let a = 0; a < d; a++) {
      for (let b = a; b < d; b++) {
        const v = cov[a * d + b] / (n - 1);
        cov[a * d + b] = v;
        cov[b * d + a] = v;
      }
    }
  }
  return out;
}

/**
 * FeCAM's covariance shrinkage (Avalanche's `_shrink_cov`): `Σ + shrink1 · v̄ · I + shrink2 ·
 * ō · (1 − I)`, where `v̄` is the mean of the diagonal and `ō` the mean of the off-diagonal
 * entries that are not zero (0 when all are).
 */
export function shrinkCovariance(
  cov: ArrayLike<number>,
  d: number,
  shrink1 = 1,
  shrink2 = 1,
): Float64Array {
  let diag = 0, off = 0, nonZero = 0;
  for (let a = 0; a < d; a++) {
    for (let b = 0; b < d; b++) {
      const v = cov[a * d + b];
      if (a === b) diag += v;
      else if (v !== 0) {
        off += v;
        nonZero++;
      }
    }
  }
  const diagMean = diag / d, offMean = nonZero > 0 ? off / nonZero : 0;
  return Float64Array.from(
    { length: d * d },
    (_, i) => cov[i] + (i % (d + 1) === 0 ? shrink1 * diagMean : shrink2 * offMean),
  );
}

/** A covariance divided by the outer product of its standard deviations (Avalanche's `_normalize_cov`). */
export function normalizeCovariance(cov: ArrayLike<number>, d: number): Float64Array {
  const sd = Float64Array.from({ length: d }, (_, a) => Math.sqrt(cov[a * d + a]));
  return Float64Array.from(
    { length: d * d },
    (_, i) => cov[i] / (sd[Math.floor(i / d)] * sd[i % d]),
  );
}

/**
 * FeCAM's classifier over features (Avalanche 0.6's `FeCAMClassifier(tukey=True,
 * shrinkage=True, shrink1=1.0, shrink2=1.0, tukey1=0.5, covnorm=True)`): logits [n, C] are
 * minus the squared Mahalanobis distance `(x̂ − μ̂_c)ᵀ Σ_c⁻¹ (x̂ − μ̂_c)` of each feature vector to
 * each class, where `x̂` and `μ̂_c` are L2-normalized (the features after the Tukey transform
 * when `tukey`). Means and covariances come from {@link FeCAMClassifier.fit} (or the `update*`
 * and `replace*` methods, as in Avalanche): the features are Tukey-transformed, each class's
 * mean and unbiased covariance taken, each covariance shrunk twice (Avalanche's
 * `apply_cov_transforms` calls `_shrink_cov` twice) and normalized to a correlation matrix.
 *
 * Checked line by line against Avalanche's `fecam.py` and `update_fecam.py`. Where we differ:
 * a class without a mean scores {@link MASK_VALUE} (Avalanche gives such classes a zero mean
 * and an identity covariance in `eval_adaptation`); the columns are class labels (Avalanche
 * stacks them in the dictionary's order); each covariance is inverted in float64, through a Cholesky
 * factorization when it is positive definite (where the pseudo-inverse Avalanche takes with
 * `pinv` is the inverse, but for eigenvalues below `pinv`'s cut-off) and as a pseudo-inverse
 * otherwise ({@link symmetricPinv}): FeCAM's shrinkage adds the mean of the non-zero
 * off-diagonal entries to every off-diagonal one, which can leave a matrix indefinite (features
 * dead for a class), and then, as in Avalanche, a "distance" may be negative.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { FeCAMClassifier } from "./fecam.ts";
 * await setBackend("cpu");
 * const fecam = new FeCAMClassifier({ tukey: false });
 * fecam.replaceClassMeansDict(new Map([[0, [1, 0]], [1, [0, 1]]]));
 * fecam.replaceClassCovDict(new Map([[0, [1, 0, 0, 1]], [1, [1, 0, 0, 1]]]));
 * const logits = fecam.forward(tf.tensor2d([[5, 1], [0.1, 2]]));
 * console.assert(Array.from(tf.argMax(logits, 1).dataSync()).join() === "0,1");
 * ```
 */
export class FeCAMClassifier {
  readonly tukey: boolean;
  readonly shrinkage: boolean;
  readonly shrink1: number;
  readonly shrink2: number;
  readonly tukey1: number;
  readonly covnorm: boolean;
  #means = new Map<number, Float32Array>();
  #covs = new Map<number, Float32Array>();
  /** Inverses of the covariances, by class, for the covariances they were made from. */
  #inverses = new Map<number, { of: Float32Array; inv: Float32Array }>();

  /**
   * @param tukey Tukey-transform the features (default true); or all options as an object.
   * @param shrinkage shrink the covariances (default true).
   * @param shrink1 diagonal shrinkage weight (default 1).
   * @param shrink2 off-diagonal shrinkage weight (default 1).
   * @param tukey1 power of the Tukey transform (default 0.5).
   * @param covnorm normalize the covariances (default true).
   */
  constructor(
    tukey: boolean | FeCAMClassifierOptions = true,
    shrinkage?: boolean,
    shrink1?: number,
    shrink2?: number,
    tukey1?: number,
    covnorm?: boolean,
  ) {
    const o: FeCAMClassifierOptions = typeof tukey === "object" && tukey !== null
      ? checkOptions("FeCAMClassifier", tukey, FECAM_OPTIONS)
      : { tukey, shrinkage, shrink1, shrink2, tukey1, covnorm };
    for (const k of ["tukey", "shrinkage", "covnorm"] as const) {
      if (o[k] !== undefined && typeof o[k] !== "boolean") {
        throw new TypeError(`FeCAMClassifier: ${k} must be true or false, got ${String(o[k])}`);
      }
    }
    for (const k of ["shrink1", "shrink2", "tukey1"] as const) {
      const v = o[k];
      if (v !== undefined && (typeof v !== "number" || !Number.isFinite(v) || v < 0)) {
        throw new RangeError(`FeCAMClassifier: ${k} must be a finite number ≥ 0, got ${String(v)}`);
      }
    }
    this.tukey = o.tukey ?? true;
    this.shrinkage = o.shrinkage ?? true;
    this.shrink1 = o.shrink1 ?? 1;
    this.shrink2 = o.shrink2 ?? 1;
    this.tukey1 = o.tukey1 ?? 0.5;
    this.covnorm = o.covnorm ?? true;
  }

  /** The class means (after the Tukey transform), by class. */
  get classMeans(): ReadonlyMap<number, Float32Array> {
    return this.#means;
  }

  /** The class covariances (after shrinkage and normalization), row-major, by class. */
  get classCovs(): ReadonlyMap<number, Float32Array> {
    return this.#covs;
  }

  /** Whether any class has a mean and a covariance (else {@link FeCAMClassifier.forward} cannot classify). */
  get hasMeans(): boolean {
    return [...this.#means.keys()].some((c) => this.#covs.has(c));
  }

  /** Size of the feature vectors, once a mean is known. */
  get dim(): number | undefined {
    return this.#means.values().next().value?.length;
  }

  /** The Tukey transform of features, when `tukey` (Avalanche's `apply_transforms`). */
  applyTransforms(features: Features): Features {
    if (!this.tukey) return features;
    const p = this.tukey1;
    const values = Float32Array.from(features.values, (v) => p === 0 ? Math.log(v) : v ** p);
    return { values, n: features.n, dim: features.dim };
  }

  /** Its inverse, when `tukey` (Avalanche's `apply_invert_transforms`). */
  applyInvertTransforms(features: Features): Features {
    if (!this.tukey) return features;
    const p = this.tukey1;
    const values = Float32Array.from(features.values, (v) => p === 0 ? Math.exp(v) : v ** (1 / p));
    return { values, n: features.n, dim: features.dim };
  }

  /**
   * Shrinkage (twice, when `shrinkage`) then normalization (when `covnorm`) of each covariance
   * (Avalanche's `apply_cov_transforms`).
   */
  applyCovTransforms(
    covs: ReadonlyMap<number, ArrayLike<number>>,
  ): Map<number, Float64Array> {
    const out = new Map<number, Float64Array>();
    for (const [c, cov0] of covs) {
      const d = Math.round(Math.sqrt(cov0.length));
      let cov: Float64Array = Float64Array.from(cov0);
      if (this.shrinkage) {
        cov = shrinkCovariance(cov, d, this.shrink1, this.shrink2);
        cov = shrinkCovariance(cov, d, this.shrink1, this.shrink2);
      }
      if (this.covnorm) cov = normalizeCovariance(cov, d);
      out.set(c, cov);
    }
    return out;
  }

  /**
   * The means and covariances of labelled features as FeCAM keeps them (Avalanche's
   * `_gather_means_and_cov` once the features are extracted): Tukey transform, class means and
   * covariances, covariance transforms.
   */
  meansAndCovs(
    features: Features,
    labels: ArrayLike<number>,
  ): { means: Map<number, Float32Array>; covs: Map<number, Float64Array> } {
    const f = this.applyTransforms(features);
    return {
      means: classMeansOf(f, labels, false),
      covs: this.applyCovTransforms(classCovariancesOf(f, labels)),
    };
  }

  /**
   * Updates the means and covariances from labelled features ({@link FeCAMClassifier.meansAndCovs})
   * with `momentum` (as Avalanche's FeCAM updaters do, with its default 0.5; 1 replaces).
   */
  fit(features: Features, labels: ArrayLike<number>, momentum = 0.5): void {
    const { means, covs } = this.meansAndCovs(features, labels);
    this.updateClassMeansDict(means, momentum);
    this.updateClassCovDict(covs, momentum);
  }

  /**
   * Sets the means of the classes in `means` (Avalanche's `update_class_means_dict`): a class
   * with a mean (not all zeros) gets `momentum · new + (1 − momentum) · old`, a new one its mean.
   */
  updateClassMeansDict(means: ReadonlyMap<number, ArrayLike<number>>, momentum = 0.5): void {
    this.#update(this.#means, means, momentum, 1, "mean");
  }

  /** The same for covariances (Avalanche's `update_class_cov_dict`), row-major [d, d] each. */
  updateClassCovDict(covs: ReadonlyMap<number, ArrayLike<number>>, momentum = 0.5): void {
    this.#update(this.#covs, covs, momentum, 2, "covariance");
  }

  /** Replaces every mean (Avalanche's `replace_class_means_dict`). */
  replaceClassMeansDict(means: ReadonlyMap<number, ArrayLike<number>>): void {
    this.#means = new Map();
    this.updateClassMeansDict(means, 1);
  }

  /** Replaces every covariance (Avalanche's `replace_class_cov_dict`). */
  replaceClassCovDict(covs: ReadonlyMap<number, ArrayLike<number>>): void {
    this.#covs = new Map();
    this.#inverses.clear();
    this.updateClassCovDict(covs, 1);
  }

  #update(
    into: Map<number, Float32Array>,
    values: ReadonlyMap<number, ArrayLike<number>>,
    momentum: number,
    power: 1 | 2,
    what: string,
  ): void {
    if (!(momentum >= 0 && momentum <= 1)) {
      throw new RangeError(`FeCAMClassifier: momentum must be in [0, 1], got ${momentum}`);
    }
    const first = values.values().next().value;
    const d = this.dim ?? (first ? (power === 1 ? first.length : Math.sqrt(first.length)) : 0);
    for (const [c, v] of [...values].sort((a, b) => a[0] - b[0])) {
      if (!Number.isInteger(c) || c < 0) {
        throw new RangeError(`FeCAMClassifier: class labels must be integers ≥ 0, got ${c}`);
      }
      if (v.length !== d ** power) {
        throw new RangeError(
          `FeCAMClassifier: class ${c}'s ${what} has ${v.length} values, not ${d ** power}`,
        );
      }
      const old = into.get(c);
      into.set(
        c,
        old && momentum < 1 && old.some((x) => x !== 0)
          ? Float32Array.from(old, (x, k) => momentum * v[k] + (1 - momentum) * x)
          : Float32Array.from(v),
      );
    }
  }

  /**
   * Logits [n, width] of features [n, d]: minus the squared Mahalanobis distances; `width`
   * (default: the largest class with a mean, plus one) may be larger, to match a model's output.
   */
  forward(features: tf.Tensor, width?: number): tf.Tensor2D {
    const dim = this.dim;
    const classes = [...this.#means.keys()].filter((c) => this.#covs.has(c)).sort((a, b) => a - b);
    if (dim === undefined || classes.length === 0) {
      throw new RangeError(
        "FeCAMClassifier has no class means and covariances yet: fit it on features first",
      );
    }
    const n = features.shape[0];
    if (features.size / n !== dim) {
      throw new RangeError(
        `FeCAMClassifier: features have ${features.size / n} values, class means ${dim}`,
      );
    }
    const k = classes.length;
    const mus = new Float32Array(k * dim), invs = new Float32Array(k * dim * dim);
    classes.forEach((c, i) => {
      mus.set(this.#means.get(c)!, i * dim);
      invs.set(this.#inverse(c, dim), i * dim * dim);
    });
    const w = Math.max(width ?? 0, classes[k - 1] + 1);
    return tf.tidy(() => {
      let x = tf.reshape(features, [n, dim]) as tf.Tensor2D;
      if (this.tukey) x = this.tukey1 === 0 ? tf.log(x) : tf.pow(x, this.tukey1);
      const xn = unitRows(x);
      const mn = unitRows(tf.tensor2d(mus, [k, dim]));
      const diff = tf.sub(tf.expandDims(xn, 0), tf.expandDims(mn, 1)) as tf.Tensor3D; // [k, n, d]
      const left = tf.matMul(diff, tf.tensor3d(invs, [k, dim, dim]));
      const maha = tf.transpose(tf.sum(tf.mul(left, diff), 2)); // [n, k]
      // Columns of the classes present, MASK_VALUE elsewhere.
      const onehot = new Float32Array(k * w), present = new Float32Array(w);
      classes.forEach((c, i) => {
        onehot[i * w + c] = 1;
        present[c] = 1;
      });
      const spread = tf.matMul(tf.neg(maha), tf.tensor2d(onehot, [k, w]));
      const mask = tf.tensor2d(present, [1, w]);
      return tf.add(spread, tf.mul(tf.sub(1, mask), MASK_VALUE)) as tf.Tensor2D;
    });
  }

  #inverse(c: number, d: number): Float32Array {
    const cov = this.#covs.get(c)!;
    const cached = this.#inverses.get(c);
    if (cached && cached.of === cov) return cached.inv;
    const inv = invertSymmetric(cov, d);
    this.#inverses.set(c, { of: cov, inv });
    return inv;
  }

  /** Means and covariances as plain data, in class order. */
  state(): FeCAMState {
    const sorted = (m: Map<number, Float32Array>) =>
      [...m].sort((a, b) => a[0] - b[0]).map(([c, v]) => [c, Array.from(v)] as [number, number[]]);
    return { version: 1, means: sorted(this.#means), covs: sorted(this.#covs) };
  }

  /** Restores what {@link FeCAMClassifier.state} returned. */
  loadState(state: FeCAMState): void {
    if (
      !state || state.version !== 1 || !Array.isArray(state.means) || !Array.isArray(state.covs)
    ) {
      throw new TypeError(`Not a FeCAMClassifier state (version ${String(state?.version)})`);
    }
    this.replaceClassMeansDict(new Map(state.means));
    this.replaceClassCovDict(new Map(state.covs));
  }
}

/** Rows divided by their norm (zero rows stay zero), as `F.normalize`. */
function unitRows(x: tf.Tensor2D): tf.Tensor2D {
  const norm = tf.sqrt(tf.sum(tf.square(x), 1, true));
  return tf.div(x, tf.maximum(norm, 1e-12)) as tf.Tensor2D;
}

/**
 * The inverse of a symmetric matrix through Cholesky when it is positive definite, else its
 * pseudo-inverse ({@link symmetricPinv}).
 */
export function invertSymmetric(a: ArrayLike<number>, d: number): Float32Array {
  const l = new Float64Array(d * d);
  for (let j = 0; j < d; j++) {
    let s = a[j * d + j];
    for (let k = 0; k < j; k++) s -= l[j * d + k] ** 2;
    if (!(s > 0)) return symmetricPinv(a, d);
    const ljj = Math.sqrt(s);
    l[j * d + j] = ljj;
    for (let i = j + 1; i < d; i++) {
      let t = a[i * d + j];
      for (let k = 0; k < j; k++) t -= l[i * d + k] * l[j * d + k];
      l[i * d + j] = t / ljj;
    }
  }
  const inv = new Float32Array(d * d), col = new Float64Array(d);
  for (let e = 0; e < d; e++) {
    col.fill(0);
    col[e] = 1;
    for (let i = 0; i < d; i++) {
      let t = col[i];
      for (let k = 0; k < i; k++) t -= l[i * d + k] * col[k];
      col[i] = t / l[i * d + i];
    }
    for (let i = d - 1; i >= 0; i--) {
      let t = col[i];
      for (let k = i + 1; k < d; k++) t -= l[k * d + i] * col[k];
      col[i] = t / l[i * d + i];
    }
    for (let i = 0; i < d; i++) inv[i * d + e] = col[i];
  }
  return inv;
}

/**
 * The Moore-Penrose pseudo-inverse of a symmetric matrix (as `torch.linalg.pinv`): `V diag(1/λ)
 * Vᵀ` over the eigenvalues with `|λ| > d · ε₃₂ · max |λ|` (torch's default tolerance for a
 * float32 matrix), from a cyclic Jacobi eigendecomposition in float64.
 */
export function symmetricPinv(a: ArrayLike<number>, d: number): Float32Array {
  const m = Float64Array.from(a), v = new Float64Array(d * d);
  for (let i = 0; i < d; i++) v[i * d + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0, diag = 0;
    for (let p = 0; p < d; p++) {
      diag += m[p * d + p] ** 2;
      for (let q = p + 1; q < d; q++) off += m[p * d + q] ** 2;
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < d - 1; p++) {
      for (let q = p + 1; q < d; q++) {
        const apq = m[p * d + q];
        if (apq === 0) continue;
        const theta = (m[q * d + q] - m[p * d + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < d; k++) { // columns p, q
          const kp = m[k * d + p], kq = m[k * d + q];
          m[k * d + p] = c * kp - s * kq;
          m[k * d + q] = s * kp + c * kq;
        }
        for (let k = 0; k < d; k++) { // rows p, q
          const pk = m[p * d + k], qk = m[q * d + k];
          m[p * d + k] = c * pk - s * qk;
          m[q * d + k] = s * pk + c * qk;
        }
        for (let k = 0; k < d; k++) {
          const kp = v[k * d + p], kq = v[k * d + q];
          v[k * d + p] = c * kp - s * kq;
          v[k * d + q] = s * kp + c * kq;
        }
      }
    }
  }
  const values = Float64Array.from({ length: d }, (_, i) => m[i * d + i]);
  const tol = d * 1.1920929e-7 * Math.max(...values.map(Math.abs));
  const out = new Float32Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      let sum = 0;
      for (let k = 0; k < d; k++) {
        if (Math.abs(values[k]) > tol) sum += (v[i * d + k] * v[j * d + k]) / values[k];
      }
      out[i * d + j] = sum;
    }
  }
  return out;
}
