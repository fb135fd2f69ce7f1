/**
 * Running totals of an epoch or an evaluated experience, kept on the device (the summed loss
 * and the number of correct top-1 predictions) and read back once at the end: a read-back per
 * minibatch would stall the pipeline.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { accumulateBatch } from "../backends/fused.ts";

/** Summed loss and correct predictions over the minibatches added since the last reset. */
export class RunningTotals {
  readonly #lossSum: tf.Variable;
  readonly #correct: tf.Variable;

  constructor() {
    this.#lossSum = tf.tidy(() => tf.variable(tf.scalar(0), false));
    this.#correct = tf.tidy(() => tf.variable(tf.scalar(0), false));
  }

  /** Starts again from zero. */
  reset(): void {
    tf.tidy(() => {
      this.#lossSum.assign(tf.zeros([]));
      this.#correct.assign(tf.zeros([]));
    });
  }

  /** Adds a minibatch: its mean loss (times its size) and its correct predictions. */
  add(loss: tf.Tensor, output: tf.Tensor, labels: tf.Tensor): void {
    tf.tidy(() => {
      const [lossSum, correct] = accumulateBatch(
        this.#lossSum,
        this.#correct,
        loss,
        output,
        labels,
      );
      this.#lossSum.assign(lossSum);
      this.#correct.assign(correct);
    });
  }

  /**
   * The totals (one read-back, asynchronous: the "webgpu" backend has no synchronous read of
   * data on the GPU under Deno).
   */
  async read(): Promise<{ lossSum: number; correct: number }> {
    const [lossSum, correct] = await Promise.all([this.#lossSum.data(), this.#correct.data()]);
    return { lossSum: lossSum[0], correct: correct[0] };
  }

  dispose(): void {
    this.#lossSum.dispose();
    this.#correct.dispose();
  }
}
