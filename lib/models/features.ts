/**
 * Feature extraction: the embedding a {@link Classifier} computes before its head, for a whole
 * dataset, read back as plain numbers (what exemplar selection and nearest-class-mean
 * classification work on).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Dataset } from "../data/dataset.ts";
import type { Module } from "../nn/module.ts";

/** Feature vectors of `n` samples, row-major (`values[i * dim + k]`). */
export interface Features {
  values: Float32Array;
  n: number;
  dim: number;
}

/** Options of {@link extractFeatures}. */
export interface ExtractFeaturesOptions {
  /** Samples per forward pass. @default 256 */
  batchSize?: number;
  /** Which samples of the dataset, in this order (default: all). */
  indices?: ArrayLike<number>;
  /** L2-normalize each feature vector. @default false */
  normalize?: boolean;
}

/** A module that exposes its features before the head (`Classifier.embed`). */
export interface Embedder extends Module {
  embed(x: tf.Tensor): tf.Tensor;
}

/** Whether `model` has an `embed` method (every {@link Classifier} has). */
export function hasEmbed(model: Module): model is Embedder {
  return typeof (model as { embed?: unknown }).embed === "function";
}

/**
 * The features before the head (`model.embed`) of the samples of `data`, computed in eval mode
 * (dropout off; the model's mode is restored after) and read back. Tensors made here are freed.
 *
 * @example
 * ```ts
 * import { setBackend } from "../backend.ts";
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { extractFeatures } from "./features.ts";
 * import { mlp } from "./mlp.ts";
 * await setBackend("cpu");
 * const model = mlp({ input: 3, hidden: [5], seed: 0 });
 * const data = new ArrayDataset({ x: new Float32Array(12), y: [0, 1, 0, 1], inputShape: [3] });
 * const f = extractFeatures(model, data, { batchSize: 3 });
 * console.assert(f.n === 4 && f.dim === 5 && f.values.length === 20);
 * model.dispose();
 * ```
 */
export function extractFeatures(
  model: Module,
  data: Dataset,
  opts: ExtractFeaturesOptions = {},
): Features {
  const batches = featureBatches(model, data, opts);
  let values = new Float32Array(0), dim = 0;
  for (const { out, start, n } of batches) {
    try {
      const chunk = out.dataSync() as Float32Array;
      if (start === 0) [values, dim] = [new Float32Array(n * out.shape[1]!), out.shape[1]!];
      values.set(chunk, start * dim);
    } finally {
      out.dispose();
    }
  }
  const features = { values, n: batches.n, dim };
  return opts.normalize ? l2NormalizeRows(features) : features;
}

/**
 * {@link extractFeatures}, each batch's features read asynchronously: the same values, on every
 * backend (the "webgpu" backend cannot read GPU data synchronously under Deno).
 */
export async function extractFeaturesAsync(
  model: Module,
  data: Dataset,
  opts: ExtractFeaturesOptions = {},
): Promise<Features> {
  const batches = featureBatches(model, data, opts);
  let values = new Float32Array(0), dim = 0;
  for (const { out, start, n } of batches) {
    try {
      const chunk = await out.data() as Float32Array;
      if (start === 0) [values, dim] = [new Float32Array(n * out.shape[1]!), out.shape[1]!];
      values.set(chunk, start * dim);
    } finally {
      out.dispose();
    }
  }
  const features = { values, n: batches.n, dim };
  return opts.normalize ? l2NormalizeRows(features) : features;
}

/**
 * The batches of {@link extractFeatures}: each one's features `[m, dim]` (the caller reads and
 * disposes it) and where it starts; the model is in evaluation mode until the last one is taken.
 */
function featureBatches(
  model: Module,
  data: Dataset,
  opts: ExtractFeaturesOptions,
): Iterable<{ out: tf.Tensor; start: number; n: number }> & { n: number } {
  if (!hasEmbed(model)) {
    throw new TypeError(
      "extractFeatures needs a model with embed(x) (the features before the head), such as the " +
        "Classifier from mlp or cnn",
    );
  }
  const batchSize = opts.batchSize ?? 256;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`extractFeatures: batchSize must be an integer ≥ 1, got ${batchSize}`);
  }
  const indices = opts.indices ?? Int32Array.from({ length: data.length }, (_, i) => i);
  const n = indices.length;
  const size = data.sampleSize;
  function* batches() {
    const wasTraining = model.training;
    model.eval();
    try {
      const staging = new Float32Array(Math.min(batchSize, Math.max(n, 1)) * size);
      for (let start = 0; start < n; start += batchSize) {
        const m = Math.min(batchSize, n - start);
        const idx = Array.from({ length: m }, (_, i) => indices[start + i]);
        data.fillBatch(idx, staging);
        const out = tf.tidy(() => {
          const x = tf.tensor(staging.subarray(0, m * size), [m, ...data.inputShape]);
          const f = (model as Embedder).embed(x);
          return tf.reshape(f, [m, f.size / m]);
        });
        yield { out, start, n };
      }
    } finally {
      model.train(wasTraining);
    }
  }
  return { n, [Symbol.iterator]: batches };
}

/** Each row divided by its L2 norm (a zero row stays zero), as a new {@link Features}. */
export function l2NormalizeRows(f: Features): Features {
  const out = new Float32Array(f.values.length);
  for (let i = 0; i < f.n; i++) {
    let s = 0;
    for (let k = 0; k < f.dim; k++) s += f.values[i * f.dim + k] ** 2;
    const norm = Math.sqrt(s);
    if (norm === 0) continue;
    for (let k = 0; k < f.dim; k++) out[i * f.dim + k] = f.values[i * f.dim + k] / norm;
  }
  return { values: out, n: f.n, dim: f.dim };
}
