/**
 * Loss functions on logits.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import {
  DISTILLATION,
  distillationWithGrad,
  fusedDistillation,
  fusedSoftmaxCrossEntropy,
  hasFusedKernel,
  SOFTMAX_CE,
} from "../backends/fused.ts";

/** What the strategy template gives a criterion besides outputs and labels. */
export interface CriterionInputs {
  /** The minibatch's inputs (a VAE's criterion compares its reconstruction with them). */
  x: tf.Tensor;
}

/**
 * A criterion: logits [n, C] and int32 labels [n] to a scalar loss. The template also passes
 * the minibatch's inputs, which criteria of models other than classifiers may need
 * (`vaeCriterion`); a classifier's criterion ignores them.
 */
export type Criterion = (
  logits: tf.Tensor,
  labels: tf.Tensor,
  inputs?: CriterionInputs,
) => tf.Scalar;

/**
 * Mean cross-entropy of softmax(logits) against integer labels (PyTorch's `F.cross_entropy`).
 * On the wasm, blas and cpu backends the loss and its gradient come from one fused kernel each
 * way; elsewhere from tfjs' composite log-softmax.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { crossEntropy } from "./losses.ts";
 * await setBackend("cpu");
 * const l = crossEntropy(tf.tensor2d([[0, 0]]), tf.tensor1d([1], "int32"));
 * console.assert(Math.abs(l.dataSync()[0] - Math.LN2) < 1e-6);
 * ```
 */
export function crossEntropy(logits: tf.Tensor, labels: tf.Tensor): tf.Scalar {
  if (
    logits.rank === 2 && logits.dtype === "float32" && labels.dtype === "int32" &&
    hasFusedKernel(SOFTMAX_CE)
  ) {
    return fusedSoftmaxCrossEntropy(logits, labels);
  }
  return compositeCrossEntropy(logits, labels);
}

/** {@link crossEntropy} from tfjs ops (log-softmax, one-hot, mean): runs on every backend. */
export function compositeCrossEntropy(logits: tf.Tensor, labels: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const c = logits.shape[logits.rank - 1];
    const logp = tf.logSoftmax(logits as tf.Tensor2D);
    const onehot = tf.oneHot(labels as tf.Tensor1D, c);
    return tf.neg(tf.mean(tf.sum(tf.mul(onehot, logp), -1))) as tf.Scalar;
  });
}

/**
 * The columns `units` (sorted, distinct) of logits [n, C]: a slice when they are contiguous, else
 * a product with a 0/1 selection matrix (whose gradient, unlike gather's, runs on every backend).
 */
function selectUnits(logits: tf.Tensor, units: readonly number[]): tf.Tensor2D {
  const width = logits.shape[logits.rank - 1]!;
  const n = logits.shape[0];
  const l2 = logits.rank === 2 ? logits as tf.Tensor2D : tf.reshape(logits, [n, width]);
  if (units.length === width && units.every((u, i) => u === i)) return l2 as tf.Tensor2D;
  if (units.every((u, i) => i === 0 || u === units[i - 1] + 1)) {
    return tf.slice(l2, [0, units[0]], [n, units.length]) as tf.Tensor2D;
  }
  const sel = new Float32Array(width * units.length);
  units.forEach((u, j) => sel[u * units.length + j] = 1);
  return tf.matMul(l2 as tf.Tensor2D, tf.tensor2d(sel, [width, units.length]));
}

/**
 * Avalanche's distillation loss: `KL(softmax(prev/T) ‖ softmax(out/T))` over the output units
 * `units` only (softmax taken over those units), summed over units and averaged over the batch
 * (`kl_div(..., reduction="batchmean")`). No `T²` factor, as Avalanche and the
 * bench's PyTorch reference (Hinton et al.'s distillation multiplies by `T²`; scale `alpha` to
 * get it). On the wasm, blas and cpu backends the loss and its gradient are one fused kernel
 * each way.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { distillationLoss } from "./losses.ts";
 * await setBackend("cpu");
 * const same = distillationLoss(tf.tensor2d([[1, 2, 3]]), tf.tensor2d([[1, 2, 3]]), [0, 1], 2);
 * console.assert(Math.abs(same.dataSync()[0]) < 1e-6);
 * ```
 */
export function distillationLoss(
  out: tf.Tensor,
  prevOut: tf.Tensor,
  units: readonly number[],
  temperature: number,
): tf.Scalar {
  const { sorted, fused } = distillationUnits(out, prevOut, units);
  if (fused) return fusedDistillation(out, prevOut, sorted, temperature);
  return compositeDistillation(out, prevOut, sorted, temperature);
}

/**
 * The units of {@link distillationLoss} sorted and checked, and whether the fused kernel applies
 * (rank-2 float32 outputs of one width).
 */
function distillationUnits(
  out: tf.Tensor,
  prevOut: tf.Tensor,
  units: readonly number[],
): { sorted: number[]; fused: boolean } {
  const width = out.shape[out.rank - 1]!;
  const prevWidth = prevOut.shape[prevOut.rank - 1]!;
  const sorted = [...new Set(units)].sort((a, b) => a - b);
  if (sorted.length === 0) throw new RangeError("distillationLoss needs at least one unit");
  const top = sorted[sorted.length - 1];
  if (sorted[0] < 0 || top >= width || top >= prevWidth) {
    throw new RangeError(
      `distillationLoss: unit ${top} is out of range for outputs of width ${width} (current) and ` +
        `${prevWidth} (previous)`,
    );
  }
  const fused = out.rank === 2 && prevOut.rank === 2 && out.dtype === "float32" &&
    prevOut.dtype === "float32" && width === prevWidth && hasFusedKernel(DISTILLATION);
  return { sorted, fused };
}

/** {@link distillationLoss} from tfjs ops, on every backend (`units` sorted, distinct). */
export function compositeDistillation(
  out: tf.Tensor,
  prevOut: tf.Tensor,
  sorted: readonly number[],
  temperature: number,
): tf.Scalar {
  const n = out.shape[0];
  const logQ = tf.logSoftmax(tf.div(selectUnits(out, sorted), temperature));
  const logP = tf.logSoftmax(tf.div(selectUnits(prevOut, sorted), temperature));
  return tf.div(tf.sum(tf.mul(tf.exp(logP), tf.sub(logP, logQ))), n) as tf.Scalar;
}

/**
 * {@link distillationLoss} and its gradient with respect to `out` (`prevOut` is a constant),
 * computed without the tape: from the fused kernel where it applies (the values the tape gets
 * from it), else by differentiating {@link compositeDistillation} on its own.
 */
export function distillationWithGradient(
  out: tf.Tensor,
  prevOut: tf.Tensor,
  units: readonly number[],
  temperature: number,
): { value: tf.Scalar; outputGrad: tf.Tensor } {
  const { sorted, fused } = distillationUnits(out, prevOut, units);
  if (fused) {
    const [value, outputGrad] = distillationWithGrad(out, prevOut, sorted, temperature);
    return { value, outputGrad };
  }
  const { value, grad } = tf.valueAndGrad((o: tf.Tensor) =>
    compositeDistillation(o, prevOut, sorted, temperature)
  )(out);
  return { value: value as tf.Scalar, outputGrad: grad };
}

/**
 * Mean binary cross-entropy of `sigmoid(logits)` against `targets` in [0, 1], over every element
 * (PyTorch's `BCELoss()(sigmoid(logits), targets)`), computed stably from the logits:
 * `max(z, 0) − z·t + log(1 + e^−|z|)`.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { binaryCrossEntropyWithLogits } from "./losses.ts";
 * await setBackend("cpu");
 * const l = binaryCrossEntropyWithLogits(tf.tensor2d([[0, 0]]), tf.tensor2d([[1, 0]]));
 * console.assert(Math.abs(l.dataSync()[0] - Math.LN2) < 1e-6);
 * ```
 */
export function binaryCrossEntropyWithLogits(logits: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  return tf.tidy(() =>
    tf.mean(
      tf.add(
        tf.sub(tf.relu(logits), tf.mul(logits, targets)),
        tf.log1p(tf.exp(tf.neg(tf.abs(logits)))),
      ),
    ) as tf.Scalar
  );
}

/**
 * iCaRL's training loss (Rebuffi et al. 2017, Algorithm 3; Avalanche's `ICaRLLossPlugin`): a
 * sigmoid binary cross-entropy over every output unit, whose targets are the one-hot labels
 * except on the units of the old classes, where they are the previous model's sigmoid outputs
 * (distillation). `oldLogits` [n, C′] (C′ ≤ C allowed: a head that grew) and `oldClasses` (units
 * below C′) come from the model of the previous experience; without them the loss is the
 * classification term alone.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { icarlLoss } from "./losses.ts";
 * await setBackend("cpu");
 * // Target [sigmoid(0), 1] = [0.5, 1] for logits [0, 0]: mean of ln 2 and ln 2.
 * const l = icarlLoss(tf.tensor2d([[0, 0]]), tf.tensor1d([1], "int32"), tf.tensor2d([[0]]), [0]);
 * console.assert(Math.abs(l.dataSync()[0] - Math.LN2) < 1e-6);
 * ```
 */
export function icarlLoss(
  logits: tf.Tensor,
  labels: tf.Tensor,
  oldLogits?: tf.Tensor,
  oldClasses: readonly number[] = [],
): tf.Scalar {
  const n = logits.shape[0];
  const width = logits.shape[logits.rank - 1]!;
  return tf.tidy(() => {
    const z = tf.reshape(logits, [n, width]);
    let targets: tf.Tensor = tf.cast(
      tf.oneHot(tf.cast(labels, "int32") as tf.Tensor1D, width),
      "float32",
    );
    if (oldLogits && oldClasses.length > 0) {
      const oldWidth = oldLogits.shape[oldLogits.rank - 1]!;
      const top = Math.max(...oldClasses);
      if (Math.min(...oldClasses) < 0 || top >= oldWidth || top >= width) {
        throw new RangeError(
          `icarlLoss: old class ${top} is out of range for outputs of width ${width} (current) ` +
            `and ${oldWidth} (previous model)`,
        );
      }
      // The old classes' columns of sigmoid(oldLogits), moved to their units by a 0/1 matrix.
      const sel = new Float32Array(oldWidth * width);
      const keep = new Float32Array(width).fill(1);
      for (const c of new Set(oldClasses)) {
        sel[c * width + c] = 1;
        keep[c] = 0;
      }
      const old = tf.sigmoid(tf.reshape(oldLogits, [n, oldWidth]) as tf.Tensor2D);
      targets = tf.add(
        tf.mul(targets, tf.tensor2d(keep, [1, width])),
        tf.matMul(old, tf.tensor2d(sel, [oldWidth, width])),
      );
    }
    return binaryCrossEntropyWithLogits(z, targets);
  });
}

/** How {@link vaeLoss} measures the reconstruction. */
export type Reconstruction = "mse" | "bce";

/**
 * The loss of a variational autoencoder, summed over the minibatch: reconstruction plus the KL
 * divergence of the encoder's Gaussian `N(mean, exp(logvar))` from `N(0, I)`,
 * `0.5 · Σ (exp(logvar) + mean² − 1 − logvar)`, that is the negative ELBO up to a constant.
 * The reconstruction is `"mse"`, `Σ (xHat − x)²` (Avalanche 0.6's `VAE_loss`, whose inputs and
 * outputs are normalized pixels), or `"bce"`, `−Σ x·log xHat + (1 − x)·log(1 − xHat)` (pixels
 * in [0, 1]; logs clamped at −100 as PyTorch's `BCELoss`). `x` and `xHat` may have any shapes of
 * the same size.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { vaeLoss } from "./losses.ts";
 * await setBackend("cpu");
 * // (0.5 − 1)² + KL(N(1, e⁰) ‖ N(0, 1)) = 0.25 + 0.5 · (1 + 1 − 1 − 0) = 0.75
 * const l = vaeLoss(tf.tensor2d([[1]]), tf.tensor2d([[0.5]]), tf.tensor2d([[1]]), tf.tensor2d([[0]]));
 * console.assert(Math.abs(l.dataSync()[0] - 0.75) < 1e-6);
 * ```
 */
export function vaeLoss(
  x: tf.Tensor,
  xHat: tf.Tensor,
  mean: tf.Tensor,
  logvar: tf.Tensor,
  reconstruction: Reconstruction = "mse",
): tf.Scalar {
  if (x.size !== xHat.size) {
    throw new RangeError(
      `vaeLoss: the reconstruction has ${xHat.size} values ([${xHat.shape}]) for inputs of ` +
        `${x.size} ([${x.shape}])`,
    );
  }
  if (reconstruction !== "mse" && reconstruction !== "bce") {
    throw new RangeError(
      `vaeLoss: reconstruction must be "mse" or "bce", got ${String(reconstruction)}`,
    );
  }
  const target = x.shape.join() === xHat.shape.join() ? x : tf.reshape(x, xHat.shape);
  let rec: tf.Tensor;
  if (reconstruction === "mse") {
    rec = tf.sum(tf.square(tf.sub(xHat, target)));
  } else {
    const logP = tf.maximum(tf.log(xHat), -100);
    const log1mP = tf.maximum(tf.log(tf.sub(1, xHat)), -100);
    rec = tf.neg(tf.sum(tf.add(tf.mul(target, logP), tf.mul(tf.sub(1, target), log1mP))));
  }
  const kl = tf.mul(
    tf.sum(tf.sub(tf.sub(tf.add(tf.exp(logvar), tf.square(mean)), 1), logvar)),
    0.5,
  );
  return tf.add(rec, kl) as tf.Scalar;
}
