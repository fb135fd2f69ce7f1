/**
 * Nearest-class-mean classification (Avalanche's `NCMClassifier`, iCaRL's nearest-mean-of-
 * exemplars rule): each class is represented by the mean of its samples' features, and a sample
 * goes to the class whose mean is nearest.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { type Features, l2NormalizeRows } from "./features.ts";
import { MASK_VALUE } from "./heads.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";

/** How {@link NCMClassifier} scores a sample against a class mean. */
export type NCMMetric = "euclidean" | "cosine";

/** Options of {@link NCMClassifier}. */
export interface NCMClassifierOptions {
  /** L2-normalize the features (and the class means {@link classMeansOf} computes). @default true */
  normalize?: boolean;
  /** Logits: minus the Euclidean distance (Avalanche), or the cosine similarity. @default "euclidean" */
  metric?: NCMMetric;
}

const NCM_OPTIONS: OptionSpec<NCMClassifierOptions> = {
  normalize: "boolean",
  metric: oneOf("euclidean", "cosine"),
};

/**
 * The mean feature of each class (iCaRL's Algorithm 1: `μ_y = 1/|P_y| Σ φ(p)`), keys in
 * increasing order. With `normalize`, each feature is L2-normalized first and each mean after,
 * as iCaRL does, so that every mean lies on the unit sphere as the normalized features do.
 */
export function classMeansOf(
  features: Features,
  labels: ArrayLike<number>,
  normalize = true,
): Map<number, Float32Array> {
  if (labels.length !== features.n) {
    throw new RangeError(`classMeansOf: ${features.n} feature vectors but ${labels.length} labels`);
  }
  const f = normalize ? l2NormalizeRows(features) : features;
  const sums = new Map<number, { sum: Float64Array; count: number }>();
  for (let i = 0; i < f.n; i++) {
    let s = sums.get(labels[i]);
    if (!s) sums.set(labels[i], s = { sum: new Float64Array(f.dim), count: 0 });
    for (let k = 0; k < f.dim; k++) s.sum[k] += f.values[i * f.dim + k];
    s.count++;
  }
  const means = new Map<number, Float32Array>();
  for (const [c, { sum, count }] of [...sums].sort((a, b) => a[0] - b[0])) {
    const m = Float32Array.from(sum, (v) => v / count);
    means.set(c, normalize ? l2NormalizeRows({ values: m, n: 1, dim: f.dim }).values : m);
  }
  return means;
}

/**
 * Nearest-class-mean classifier over features (Avalanche 0.6's `NCMClassifier(normalize=True)`):
 * holds a mean per class and maps features [n, d] to logits [n, C], minus the Euclidean distance
 * to each class mean (the nearest mean scores highest) or, with `metric: "cosine"`, the cosine
 * similarity. Classes without a mean get {@link MASK_VALUE} (Avalanche keeps a zero mean for
 * them, whose distance to a normalized feature is 1: it could then win over a far class).
 *
 * It has no parameters: it is not part of the model, and its means are plain numbers (see
 * {@link NCMClassifier.state}).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { NCMClassifier } from "./ncm.ts";
 * await setBackend("cpu");
 * const ncm = new NCMClassifier();
 * ncm.replaceClassMeansDict(new Map([[0, [1, 0]], [1, [0, 1]]]));
 * const logits = ncm.forward(tf.tensor2d([[5, 1], [0.1, 2]]));
 * console.assert(Array.from(tf.argMax(logits, 1).dataSync()).join() === "0,1");
 * ```
 */
export class NCMClassifier {
  readonly normalize: boolean;
  readonly metric: NCMMetric;
  #means = new Map<number, Float32Array>();

  /** @param normalize L2-normalize features (default true); or all options as an object. */
  constructor(normalize: boolean | NCMClassifierOptions = true) {
    const o = typeof normalize === "object" && normalize !== null
      ? checkOptions("NCMClassifier", normalize, NCM_OPTIONS)
      : { normalize };
    this.normalize = o.normalize ?? true;
    this.metric = o.metric ?? "euclidean";
    if (typeof this.normalize !== "boolean") {
      throw new TypeError(`NCMClassifier: normalize must be true or false, got ${o.normalize}`);
    }
    if (this.metric !== "euclidean" && this.metric !== "cosine") {
      throw new RangeError(`NCMClassifier: metric must be "euclidean" or "cosine"`);
    }
  }

  /** The class means, by class. */
  get classMeans(): ReadonlyMap<number, Float32Array> {
    return this.#means;
  }

  /** Whether any class has a mean (before that, {@link NCMClassifier.forward} cannot classify). */
  get hasMeans(): boolean {
    return this.#means.size > 0;
  }

  /** Replaces every mean (Avalanche's `replace_class_means_dict`). */
  replaceClassMeansDict(means: ReadonlyMap<number, ArrayLike<number>>): void {
    this.#means = new Map();
    this.updateClassMeansDict(means, 1);
  }

  /**
   * Sets the means of the classes in `means` (Avalanche 0.6's `update_class_means_dict`): a
   * class that has a mean already (not all zeros) gets `momentum · new + (1 − momentum) · old`
   * (1: replace, 0: keep the old one); a new class gets its mean; the classes not in `means`
   * are left alone.
   */
  updateClassMeansDict(means: ReadonlyMap<number, ArrayLike<number>>, momentum = 0.5): void {
    if (!(momentum >= 0 && momentum <= 1)) {
      throw new RangeError(`NCMClassifier: momentum must be in [0, 1], got ${momentum}`);
    }
    const dim = this.dim ?? means.values().next().value?.length;
    for (const [c, m] of [...means].sort((a, b) => a[0] - b[0])) {
      if (!Number.isInteger(c) || c < 0) {
        throw new RangeError(`NCMClassifier: class labels must be integers ≥ 0, got ${c}`);
      }
      if (m.length !== dim) {
        throw new RangeError(`NCMClassifier: class ${c}'s mean has ${m.length} values, not ${dim}`);
      }
      const old = this.#means.get(c);
      this.#means.set(
        c,
        old && momentum < 1 && old.some((v) => v !== 0)
          ? Float32Array.from(old, (v, k) => momentum * m[k] + (1 - momentum) * v)
          : Float32Array.from(m),
      );
    }
  }

  /** Sets the means from labelled features ({@link classMeansOf}, normalized as this classifier). */
  fit(features: Features, labels: ArrayLike<number>): void {
    this.replaceClassMeansDict(classMeansOf(features, labels, this.normalize));
  }

  /** Size of the feature vectors, once a mean is known. */
  get dim(): number | undefined {
    return this.#means.values().next().value?.length;
  }

  /**
   * Logits [n, width] of features [n, d]; `width` (default: the largest class with a mean, plus
   * one) may be larger, to match a model's output.
   */
  forward(features: tf.Tensor, width?: number): tf.Tensor2D {
    const dim = this.dim;
    if (dim === undefined) {
      throw new RangeError("NCMClassifier has no class means yet: fit it on exemplars first");
    }
    const n = features.shape[0];
    if (features.size / n !== dim) {
      throw new RangeError(
        `NCMClassifier: features have ${features.size / n} values, class means ${dim}`,
      );
    }
    const keys = [...this.#means.keys()];
    const w = Math.max(width ?? 0, Math.max(...keys) + 1);
    const table = new Float32Array(w * dim);
    const present = new Float32Array(w);
    for (const [c, m] of this.#means) {
      table.set(m, c * dim);
      present[c] = 1;
    }
    return tf.tidy(() => {
      let x = tf.reshape(features, [n, dim]) as tf.Tensor2D;
      if (this.normalize) x = unitRows(x);
      const means = tf.tensor2d(table, [w, dim]);
      let scores: tf.Tensor2D;
      if (this.metric === "cosine") {
        scores = tf.matMul(unitRows(x), unitRows(means), false, true);
      } else {
        const sq = tf.add(
          tf.sub(tf.sum(tf.square(x), 1, true), tf.mul(tf.matMul(x, means, false, true), 2)),
          tf.reshape(tf.sum(tf.square(means), 1), [1, w]),
        );
        scores = tf.neg(tf.sqrt(tf.relu(sq))) as tf.Tensor2D;
      }
      const mask = tf.tensor2d(present, [1, w]);
      return tf.add(tf.mul(scores, mask), tf.mul(tf.sub(1, mask), MASK_VALUE)) as tf.Tensor2D;
    });
  }

  /** The means as plain data (class, values), in class order. */
  state(): [number, number[]][] {
    return [...this.#means].sort((a, b) => a[0] - b[0]).map(([c, m]) => [c, Array.from(m)]);
  }

  /** Restores what {@link NCMClassifier.state} returned. */
  loadState(state: [number, number[]][]): void {
    if (!Array.isArray(state)) throw new TypeError("Not an NCMClassifier state");
    this.replaceClassMeansDict(new Map(state));
  }
}

/** Rows divided by their norm (zero rows stay zero). */
function unitRows(x: tf.Tensor2D): tf.Tensor2D {
  const norm = tf.sqrt(tf.sum(tf.square(x), 1, true));
  return tf.div(x, tf.maximum(norm, 1e-12)) as tf.Tensor2D;
}
