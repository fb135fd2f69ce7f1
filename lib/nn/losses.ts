/**
 * Loss functions on logits.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { fusedSoftmaxCrossEntropy, hasFusedKernel, SOFTMAX_CE } from "../backends/fused.ts";

/** A criterion: logits [n, C] and int32 labels [n] to a scalar loss. */
export type Criterion = (logits: tf.Tensor, labels: tf.Tensor) => tf.Scalar;

/**
 * Mean cross-entropy of softmax(logits) against integer labels (PyTorch's `F.cross_entropy`).
 * On the wasm, blas and cpu backends the loss and its gradient come from one fused kernel each
 * way; elsewhere from tfjs' composite log-softmax.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
import { fusedSoftmaxCrossEntropy, hasFusedKernel, SOFTMAX_CE } from "../backends/fused.ts";
 * import { crossEntropy } from "./losses.ts";
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
