/**
 * Quadratic penalties that keep parameters close to anchor values, weighted per coordinate by
 * an importance (EWC's Fisher diagonal, Synaptic Intelligence's path integral, and the other
 * regularization methods of the same form).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { hasFusedKernel, WEIGHTED_SQUARE, weightedSquaredDistance } from "../backends/fused.ts";
import { type LossTerm, lossTerm } from "./terms.ts";

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

/** One parameter's part of a {@link quadraticPenaltyTerm}. */
export interface PenaltyEntry {
  /** The parameter's name (its key in `ctx.params`). */
  name: string;
  /** The parameter. */
  x: tf.Tensor;
  /** The weight of each coordinate, of `x`'s shape. */
  importance: tf.Tensor;
  /** The values `x` is pulled towards, of `x`'s shape. */
  anchor: tf.Tensor;
}

/**
 * {@link quadraticPenalty}'s value and its gradient with respect to `x`, without the tape: one
 * kernel where the backend has it (the values the tape gets from it), else the composite form.
 */
export function quadraticPenaltyWithGradient(
  x: tf.Tensor,
  importance: tf.Tensor,
  anchor: tf.Tensor,
  scale = 1,
): { value: tf.Scalar; grad: tf.Tensor } {
  if (
    x.dtype === "float32" && importance.dtype === "float32" && anchor.dtype === "float32" &&
    hasFusedKernel(WEIGHTED_SQUARE)
  ) {
    const attrs = { scale } as unknown as tf.NamedAttrMap;
    const [value, grad] = tf.engine().runKernel(
      WEIGHTED_SQUARE,
      { weight: importance, center: anchor, x },
      attrs,
    ) as [tf.Scalar, tf.Tensor];
    return { value, grad };
  }
  return tf.tidy(() => {
    const d = tf.sub(x, anchor);
    return {
      value: tf.mul(tf.sum(tf.mul(importance, tf.square(d))), scale) as tf.Scalar,
      grad: tf.mul(tf.mul(importance, d), 2 * scale),
    };
  });
}

/**
 * `Σ_entries scale · Σ importance · (x − anchor)² + constant` as a {@link LossTerm}: on the tape
 * the sum of {@link quadraticPenalty} terms, without it the same values with each parameter's
 * gradient, so that a plugin adding it can declare `tapeFree` (EWC, SI).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { quadraticPenaltyTerm } from "./penalties.ts";
 * await setBackend("cpu");
 * const x = tf.tensor1d([3, 0]);
 * const term = quadraticPenaltyTerm(
 *   [{ name: "w", x, importance: tf.tensor1d([2, 1]), anchor: tf.tensor1d([1, 0]) }],
 *   0.5,
 * );
 * const { value, paramGrads } = term.withGradient();
 * console.assert(value.dataSync()[0] === 4 && paramGrads!.get("w")!.dataSync()[0] === 4);
 * ```
 */
export function quadraticPenaltyTerm(
  entries: readonly PenaltyEntry[],
  scale: number,
  constant = 0,
): LossTerm {
  const withConstant = (total: tf.Scalar) =>
    constant === 0 ? total : tf.add(total, constant) as tf.Scalar;
  return lossTerm({
    value: () =>
      withConstant(
        sumPenalties(entries.map((e) => quadraticPenalty(e.x, e.importance, e.anchor, scale))),
      ),
    withGradient: () => {
      const values: tf.Scalar[] = [];
      const paramGrads = new Map<string, tf.Tensor>();
      for (const e of entries) {
        const { value, grad } = quadraticPenaltyWithGradient(e.x, e.importance, e.anchor, scale);
        values.push(value);
        paramGrads.set(e.name, grad);
      }
      return { value: withConstant(sumPenalties(values)), paramGrads };
    },
  });
}
