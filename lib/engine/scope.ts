/**
 * The tensor scope of one iteration. `tf.tidy` cannot wrap async work, and hooks may be async,
 * so an iteration opens a scope by hand: tensors made in it (the minibatch, hooks' tensors) are
 * freed when it ends, and so are the ones kept past the tape for the iteration (output, loss
 * terms, gradients). A plugin that needs a tensor longer `tf.keep`s it and disposes of it
 * itself.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Keep } from "./step.ts";

/** Runs iterations in their own tensor scope. */
export class IterationScope {
  #kept: tf.Tensor[] = [];

  /** Keeps `t` alive until the end of the current iteration (past any tidy or tape). */
  readonly keep: Keep = <T extends tf.Tensor | undefined>(t: T): T => {
    if (t && !t.isDisposed) {
      tf.keep(t);
      this.#kept.push(t);
    }
    return t;
  };

  /** Runs `fn` in a new scope and frees what it made and kept, even when it throws. */
  async run<R>(fn: () => Promise<R>): Promise<R> {
    tf.engine().startScope();
    try {
      return await fn();
    } finally {
      for (const t of this.#kept) t.dispose();
      this.#kept = [];
      tf.engine().endScope();
    }
  }
}
