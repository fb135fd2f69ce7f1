/**
 * Data loaders say which samples form each minibatch of an epoch: a {@link BatchPlan} names
 * datasets and sample indices, never values. Turning a plan into tensors is the engine's job
 * (`lib/engine/batches.ts`), so every loader (the plain one, replay's, CoPE's, a plugin's own)
 * gets the same fast batch assembly. Plugins replace the strategy's loader to change the
 * training data (replay mixes memory into each minibatch, for instance).
 *
 * @module
 */
import type { Batch, Dataset } from "./dataset.ts";
import type { Rng } from "../random.ts";
import { checkOptions } from "../options.ts";

/** Samples of one dataset within a minibatch, in order. */
export interface BatchPart {
  readonly dataset: Dataset;
  /** Sample indices into `dataset`. */
  readonly indices: Int32Array;
}

/**
 * One minibatch as the samples it is made of: the parts' samples one after another (replay's
 * minibatch is a part of current data followed by a part of memory). A plugin that keeps
 * something per sample (stored logits, scores) finds each sample's origin here.
 */
export interface BatchPlan {
  /** Number of samples, the sum of the parts' lengths. */
  readonly n: number;
  readonly parts: readonly BatchPart[];
}

/** Produces the minibatches of one epoch. */
export interface DataLoader {
  /** Minibatches per epoch. */
  readonly length: number;
  /** Samples per epoch. */
  readonly samples: number;
  /** The minibatches of one epoch, drawing any randomness from `rng`. */
  epoch(rng: Rng): Iterable<BatchPlan>;
}

/** A plan of the given parts (empty parts are left out). */
export function batchPlan(...parts: BatchPart[]): BatchPlan {
  const kept = parts.filter((p) => p.indices.length > 0);
  return { n: kept.reduce((a, p) => a + p.indices.length, 0), parts: kept };
}

/**
 * The plan's samples as typed arrays (inputs converted as the dataset does), in fresh arrays
 * unless `into` has room (its arrays may then be longer than `n` samples).
 */
export function batchOf(plan: BatchPlan, into?: Batch): Batch {
  const size = plan.parts[0]?.dataset.sampleSize ?? 0;
  const n = plan.n;
  const b = into && into.x.length >= n * size && into.y.length >= n ? into : {
    x: new Float32Array(n * size),
    y: new Int32Array(n),
    t: new Int32Array(n),
    n,
  };
  b.n = n;
  planLabels(plan, b.y, b.t);
  fillPlan(plan, b.x);
  return b;
}

/** Writes the class and task labels of the plan's samples, in order, into `y` and `t` from 0. */
export function planLabels(plan: BatchPlan, y: Int32Array, t: Int32Array): void {
  let at = 0;
  for (const { dataset, indices } of plan.parts) {
    dataset.labelsInto(indices, y.subarray(at), t.subarray(at));
    at += indices.length;
  }
}

/** Writes the inputs of the plan's samples, one after another, into `out` (floats) from 0. */
export function fillPlan(plan: BatchPlan, out: Float32Array): void {
  let at = 0;
  for (const { dataset, indices } of plan.parts) {
    dataset.fillBatch(indices, out, at * dataset.sampleSize);
    at += indices.length;
  }
}

/**
 * One pass's sample order over `n` samples: a permutation drawn from `rng` when shuffling,
 * else `0 … n − 1` (and then nothing is drawn).
 */
export function sampleOrder(n: number, shuffle: boolean, rng: Rng): Int32Array {
  if (shuffle) return rng.permutation(n);
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  return order;
}

/** Minibatches per epoch over `n` samples. */
export function batchesPerEpoch(n: number, batchSize: number, dropLast: boolean): number {
  return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
}

/** Checks a batch size, naming the option in the error. */
export function checkBatchSize(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(`${name} must be an integer ≥ 1, got ${v}`);
  }
}

/** Options of {@link DatasetLoader}. */
export interface DatasetLoaderOptions {
  batchSize: number;
  /** Shuffle every epoch. @default true */
  shuffle?: boolean;
  /** Drop the last incomplete minibatch. @default false */
  dropLast?: boolean;
}

/**
 * Minibatches over one dataset, shuffled each epoch (PyTorch's DataLoader with a seeded
 * generator).
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "./dataset.ts";
 * import { DatasetLoader } from "./loader.ts";
 * import { Rng } from "../random.ts";
 * const data = new ArrayDataset({ x: new Float32Array(5), y: [0, 1, 0, 1, 0], inputShape: [1] });
 * const loader = new DatasetLoader(data, { batchSize: 2, shuffle: false });
 * const sizes = [...loader.epoch(new Rng(0))].map((plan) => plan.n);
 * console.assert(sizes.join() === "2,2,1");
 * ```
 */
export class DatasetLoader implements DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;

  constructor(readonly dataset: Dataset, opts: DatasetLoaderOptions) {
    checkOptions("DatasetLoader", opts, {
      batchSize: "integer",
      shuffle: "boolean",
      dropLast: "boolean",
    });
    checkBatchSize("batchSize", opts.batchSize);
    this.batchSize = opts.batchSize;
    this.shuffle = opts.shuffle ?? true;
    this.dropLast = opts.dropLast ?? false;
  }

  get length(): number {
    return batchesPerEpoch(this.dataset.length, this.batchSize, this.dropLast);
  }

  get samples(): number {
    return this.dropLast ? this.length * this.batchSize : this.dataset.length;
  }

  *epoch(rng: Rng): Iterable<BatchPlan> {
    const n = this.dataset.length, size = this.batchSize;
    const order = sampleOrder(n, this.shuffle, rng);
    for (let k = 0; k < this.length; k++) {
      const indices = order.subarray(k * size, Math.min(n, (k + 1) * size));
      yield { n: indices.length, parts: [{ dataset: this.dataset, indices }] };
    }
  }
}
