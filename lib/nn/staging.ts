/**
 * Arrays filled in JavaScript and handed to `tf.tensor`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { tensorCopiesValues } from "../backends/fused.ts";

/**
 * Makes float32 tensors from values written into an array first. Where the backend copies the
 * values it is given (the WebAssembly heap backends), the same array is filled every time, since
 * fresh memory costs a page fault per page on first touch; where it keeps a reference to them
 * (cpu), each tensor gets a fresh array, so that a later fill cannot change an earlier tensor.
 *
 * @example
 * ```ts
 * import { setBackend } from "../backend.ts";
 * import { StagingArray } from "./staging.ts";
 * await setBackend("cpu");
 * const staging = new StagingArray();
 * const a = staging.tensor([2], (out) => out.set([1, 2]));
 * const b = staging.tensor([2], (out) => out.set([3, 4]));
 * console.assert(a.dataSync().join() === "1,2" && b.dataSync().join() === "3,4");
 * ```
 */
export class StagingArray {
  #array = new Float32Array(0);

  /**
   * A new tensor of `shape` whose values `fill` writes into the array it is given (of exactly
   * the tensor's size), right before the tensor is made from it.
   */
  tensor(shape: readonly number[], fill: (out: Float32Array) => void): tf.Tensor {
    let n = 1;
    for (const d of shape) n *= d;
    let out: Float32Array;
    if (tensorCopiesValues()) {
      if (this.#array.length < n) this.#array = new Float32Array(n);
      out = this.#array.subarray(0, n);
    } else out = new Float32Array(n);
    fill(out);
    return tf.tensor(out, [...shape], "float32");
  }
}
