/**
 * Loss terms whose gradients are known without tfjs' gradient tape.
 *
 * A plugin adds a term to the loss in `beforeBackward` with `ctx.addLoss(term, name)`, where
 * `term` is either a scalar tensor (differentiated by the tape) or a {@link LossTerm}. A
 * `LossTerm` can give both forms: its differentiable value, for a step that records the tape,
 * and its value together with its gradients, for the tape-free step. A plugin whose hooks inside
 * the tape only add `LossTerm`s declares `tapeFree` (see `Plugin.tapeFree`), and the strategy
 * may then train without recording the tape.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";

/** A term's value and its gradients, as the tape-free step needs them. */
export interface TermWithGradient {
  /** The term (a scalar). */
  value: tf.Scalar;
  /** `∂ value / ∂ output`, of the model output's shape, when the term depends on the output. */
  outputGrad?: tf.Tensor;
  /** `∂ value / ∂ parameter`, by parameter name, for the parameters the term depends on. */
  paramGrads?: ReadonlyMap<string, tf.Tensor>;
}

/** A loss term that can be differentiated with or without the tape. */
export interface LossTerm {
  readonly kind: "lossTerm";
  /** The term as a differentiable scalar; called inside the tape. */
  value(): tf.Scalar;
  /** The term's value and its gradients; called outside any tape. */
  withGradient(): TermWithGradient;
}

/**
 * A {@link LossTerm} from its two forms. Each is called at most once, only by the step that
 * needs it, so the unused form costs nothing.
 *
 * @example A term `Σ output²` of the model output
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { lossTerm } from "./terms.ts";
 * await setBackend("cpu");
 * const output = tf.tensor2d([[1, 2]]);
 * const term = lossTerm({
 *   value: () => tf.sum(tf.square(output)) as tf.Scalar,
 *   withGradient: () => ({ value: tf.sum(tf.square(output)) as tf.Scalar, outputGrad: tf.mul(output, 2) }),
 * });
 * console.assert(term.withGradient().value.dataSync()[0] === 5);
 * ```
 */
export function lossTerm(forms: Omit<LossTerm, "kind">): LossTerm {
  return { kind: "lossTerm", value: forms.value, withGradient: forms.withGradient };
}

/** True when `x` is a {@link LossTerm}. */
export function isLossTerm(x: unknown): x is LossTerm {
  return typeof x === "object" && x !== null && (x as LossTerm).kind === "lossTerm";
}
