/**
 * Quadratic penalties that keep parameters close to anchor values, weighted per coordinate by
 * an importance (EWC's Fisher diagonal, Synaptic Intelligence's path integral, and the other
 * regularization methods of the same form).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { weightedSquaredDistance } from "../backends/fused.ts";

/**
 * `scale · Σ importance · (x − anchor)²`, differentiable with respect to `x` only (`importance`
 * and `anchor` are constants of `x`'s shape, which the fused kernel checks). Where the backend
 * has that kernel, the value and its gradient each take one kernel; elsewhere it is the
 * composite form.
 *
 * @param x the parameter (a variable, or any tensor inside a gradient function).
 * @param importance the weight of each coordinate, of `x`'s shape.
 * @param anchor the values `x` is pulled towards, of `x`'s shape.
 * @param scale the factor in front of the sum (EWC's λ, SI's λ/2). @default 1
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { quadraticPenalty } from "./penalties.ts";
 * await setBackend("cpu");
 * // 0.5 · (2 · (3 − 1)² + 1 · (0 − 0)²) = 4
 * const p = quadraticPenalty(tf.tensor1d([3, 0]), tf.tensor1d([2, 1]), tf.tensor1d([1, 0]), 0.5);
 * console.assert(p.dataSync()[0] === 4);
 * ```
 */
export function quadraticPenalty(
  x: tf.Tensor,
  importance: tf.Tensor,
  anchor: tf.Tensor,
  scale = 1,
): tf.Scalar {
  return weightedSquaredDistance(x, importance, anchor, scale);
}

/**
 * The sum of penalty terms, as one scalar: 0 for none, the term itself for one (no extra op),
 * else their `tf.addN`.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { sumPenalties } from "./penalties.ts";
 * await setBackend("cpu");
 * console.assert(sumPenalties([]).dataSync()[0] === 0);
 * console.assert(sumPenalties([tf.scalar(1), tf.scalar(2)]).dataSync()[0] === 3);
 * ```
 */
export function sumPenalties(terms: readonly tf.Tensor[]): tf.Scalar {
  if (terms.length === 0) return tf.scalar(0);
  return (terms.length === 1 ? terms[0] : tf.addN([...terms])) as tf.Scalar;
}
