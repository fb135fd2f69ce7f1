/**
 * The batch assembler: turns a loader's {@link BatchPlan} (which samples) into the tensors of a
 * minibatch, by the fastest way the backend and the data allow. Every loader goes through it,
 * so replay's, CoPE's and any plugin's minibatches get the same paths as plain ones:
 *
 * - a run of consecutive samples of a resident dataset, on the heap backends: a view of the
 *   dataset's tensor (no conversion, no copy);
 * - on the heap backends, data filled by JavaScript alone ({@link Dataset.fillsInJs}): inputs
 *   converted straight into the new tensor's memory (no intermediate array);
 * - otherwise: inputs converted into an array the assembler keeps for the next minibatch (fresh
 *   memory costs a page fault per page on first touch), then copied into the tensor; on the
 *   backends that keep a reference to the array instead of copying it, a fresh array each time.
 *
 * The typed arrays of the minibatch (`data`) hold exactly `n` labels and task labels; its
 * inputs are copied out of the tensor the first time a plugin reads `data.x`, so nothing a
 * plugin does with them can reach the tensor or the dataset.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { heapInputs } from "../backends/fused.ts";
import type { Batch } from "../data/dataset.ts";
import { type BatchPart, type BatchPlan, fillPlan, planLabels } from "../data/loader.ts";
import { StagingArray } from "../nn/staging.ts";
import type { ImageTransform } from "../data/augment.ts";
import type { Rng } from "../random.ts";
import { applyImageTransforms } from "./augment.ts";
import { ResidentDataset } from "./resident.ts";

/** A minibatch as tensors, with the typed arrays it came from and the samples it is made of. */
export interface TensorBatch {
  /** Inputs [n, ...inputShape]. */
  x: tf.Tensor;
  /** Class labels [n], int32. */
  y: tf.Tensor1D;
  /** Task labels [n], int32. */
  t: tf.Tensor1D;
  /** Number of samples. */
  n: number;
  /**
   * The same minibatch as typed arrays of exactly `n` samples, owned by this minibatch (`x` is
   * a copy of the inputs made when first read). Valid for the iteration: a plugin that keeps
   * values longer copies them.
   */
  data: Batch;
  /** Which samples of which datasets the minibatch holds, in order (see {@link BatchPlan}). */
  parts: readonly BatchPart[];
}

/** How the last minibatch's inputs were made (for tests and `strategy.plan()`). */
export type InputPath = "view" | "in place" | "copy";

/** Transforms to apply to a minibatch's inputs, with the generator their random choices use. */
export interface BatchTransforms {
  /** The transforms, in order (a dataset's `transforms.train` or `transforms.eval`). */
  readonly transforms: readonly ImageTransform[];
  /** The run's seeded generator. */
  readonly rng: Rng;
}

/** Builds minibatch tensors from plans; one per strategy, reusing its staging array. */
export class BatchAssembler {
  readonly #staging = new StagingArray();
  /** How the last minibatch's inputs were made. */
  lastPath: InputPath | undefined;

  /**
   * The tensors of the minibatch `plan`, of samples of shape `inputShape`, created in the
   * caller's tensor scope. With `transforms`, the inputs are the transformed ones (and so is
   * `data.x`); without, or with an empty list, nothing is added to the plain paths.
   */
  assemble(
    plan: BatchPlan,
    inputShape: readonly number[],
    transforms?: BatchTransforms,
  ): TensorBatch {
    const n = plan.n;
    if (n < 1) throw new RangeError("A minibatch needs at least one sample: the plan is empty");
    const size = inputShape.reduce((a, b) => a * b, 1);
    for (const p of plan.parts) {
      if (p.dataset.sampleSize !== size) {
        throw new RangeError(
          `A minibatch part has samples of shape [${p.dataset.inputShape}] where [${inputShape}] ` +
            `is expected: every part of a minibatch must have the training data's input shape`,
        );
      }
    }
    const y = new Int32Array(n), t = new Int32Array(n);
    planLabels(plan, y, t);
    let x = this.#inputs(plan, inputShape);
    if (transforms && transforms.transforms.length > 0) {
      const shape = [n, ...inputShape];
      const images = x.rank === 4 ? x : x.reshape(shape);
      x = applyImageTransforms(images, transforms.transforms, transforms.rng);
    }
    return {
      x,
      y: tf.tensor1d(y, "int32"),
      t: tf.tensor1d(t, "int32"),
      n,
      data: lazyInputs(x, y, t, n),
      parts: plan.parts,
    };
  }

  #inputs(plan: BatchPlan, inputShape: readonly number[]): tf.Tensor {
    const n = plan.n, shape = [n, ...inputShape];
    const view = residentView(plan);
    if (view) {
      this.lastPath = "view";
      return view;
    }
    const heap = heapInputs();
    if (heap && plan.parts.every((p) => p.dataset.fillsInJs)) {
      // Nothing below makes a tensor, so the heap cannot move while it is written.
      const x = heap.tensor(shape);
      fillPlan(plan, heap.view(x));
      this.lastPath = "in place";
      return x;
    }
    this.lastPath = "copy";
    return this.#staging.tensor(shape, (values) => fillPlan(plan, values));
  }
}

/** A view of a resident dataset's rows when the plan is one run of consecutive samples of one. */
function residentView(plan: BatchPlan): tf.Tensor | undefined {
  if (plan.parts.length !== 1) return undefined;
  const { dataset, indices } = plan.parts[0];
  const first = indices[0];
  for (let k = 1; k < indices.length; k++) if (indices[k] !== first + k) return undefined;
  const rows = dataset.contiguousRows(first, indices.length);
  if (!rows || !(rows.dataset instanceof ResidentDataset)) return undefined;
  return rows.dataset.rowsView(rows.start, indices.length);
}

/** The batch's typed arrays, whose `x` is copied out of the input tensor when first read. */
function lazyInputs(x: tf.Tensor, y: Int32Array, t: Int32Array, n: number): Batch {
  let values: Float32Array | undefined;
  return {
    get x(): Float32Array {
      if (!values) {
        const heap = heapInputs();
        values = heap ? heap.view(x).slice() : Float32Array.from(x.dataSync() as Float32Array);
      }
      return values;
    },
    set x(v: Float32Array) {
      values = v;
    },
    y,
    t,
    n,
  };
}
