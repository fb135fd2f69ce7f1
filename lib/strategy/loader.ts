/**
 * Data loaders: how an epoch's minibatches are drawn. Plugins replace the strategy's loader to
 * change the training data (replay mixes memory into each minibatch, for instance).
 *
 * @module
 */
import { acquireBatch, type Batch, type Dataset, releaseBatch } from "../data/dataset.ts";
import type * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random.ts";

/** Produces the minibatches of one epoch. */
export interface DataLoader {
  /** Minibatches per epoch. */
  readonly length: number;
  /** Samples per epoch. */
  readonly samples: number;
  /**
   * The minibatches of one epoch, drawing any randomness from `rng`. With `reuse`, a loader may
   * write every minibatch into the same arrays (sized for the largest, so `x`, `y`, `t` can be
   * longer than `n` samples): each batch is then valid only until the next is requested (or the
   * epoch ends: the buffer goes back to a pool shared by loaders, see `acquireBatch`). The
   * strategy template asks for it (allocating a fresh megabyte array per minibatch costs more
   * than filling it); without it every batch owns its arrays.
   */
  epoch(rng: Rng, reuse?: boolean): Iterable<Batch>;
  /**
   * Optional: the minibatches of {@link DataLoader.epoch} (same order, same randomness), with
   * each one's inputs written into the array `into(n)` returns for its `n` samples (the memory
   * of the tensor that will hold them, on the WebAssembly backends), which is the batch's `x`.
   * Undefined when the loader cannot (its data might allocate tensors while filling, which
   * may move the heap under the array). The strategy template uses it when it can instead of
   * copying `epoch`'s batches.
   *
   * With `adopt`, a loader may instead hand over a minibatch whose inputs already are a tensor
   * (a view of a dataset's memory: {@link Dataset.sharedRows}), without calling `into` for it:
   * `adopt(x)` takes ownership of `x` and returns its values, which nothing may write.
   */
  epochInto?(
    rng: Rng,
    into: (n: number) => Float32Array,
    adopt?: (x: tf.Tensor) => Float32Array,
  ): Iterable<Batch> | undefined;
}

/** Options of {@link DatasetLoader}. */
export interface DatasetLoaderOptions {
  batchSize: number;
  /** Shuffle every epoch. @default true */
  shuffle?: boolean;
  /** Drop the last incomplete minibatch. @default false */
  dropLast?: boolean;
}

/** Checks a batch size, naming the option in the error. */
export function checkBatchSize(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(`${name} must be an integer ≥ 1, got ${v}`);
  }
}

/** Minibatches over one dataset, shuffled each epoch (PyTorch's DataLoader with a seeded generator). */
export class DatasetLoader implements DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;

  constructor(readonly dataset: Dataset, opts: DatasetLoaderOptions) {
    checkBatchSize("batchSize", opts.batchSize);
    this.batchSize = opts.batchSize;
    this.shuffle = opts.shuffle ?? true;
    this.dropLast = opts.dropLast ?? false;
  }

  get length(): number {
    const n = this.dataset.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  get samples(): number {
    return this.dropLast ? this.length * this.batchSize : this.dataset.length;
  }

  *epoch(rng: Rng, reuse = false): Iterable<Batch> {
    const n = this.dataset.length;
    const order = this.#order(rng);
    const buffer = reuse && this.length > 0
      ? acquireBatch(Math.min(n, this.batchSize), this.dataset.sampleSize)
      : undefined;
    try {
      for (let k = 0; k < this.length; k++) {
        yield this.dataset.batch(
          order.subarray(k * this.batchSize, Math.min(n, (k + 1) * this.batchSize)),
          buffer,
        );
      }
    } finally {
      if (buffer) releaseBatch(buffer);
    }
  }

  /** One epoch's sample order: a permutation drawn from `rng` when shuffling. */
  #order(rng: Rng): Int32Array {
    const n = this.dataset.length;
    return this.shuffle ? rng.permutation(n) : Int32Array.from({ length: n }, (_, i) => i);
  }

  /**
   * {@link DataLoader.epochInto}. Without shuffling, each minibatch is a run of consecutive
   * samples: with `adopt`, one the dataset holds as a tensor comes as a view of it.
   */
  epochInto(
    rng: Rng,
    into: (n: number) => Float32Array,
    adopt?: (x: tf.Tensor) => Float32Array,
  ): Iterable<Batch> | undefined {
    return this.dataset.fillsInJs ? this.#epochInto(rng, into, adopt) : undefined;
  }

  *#epochInto(
    rng: Rng,
    into: (n: number) => Float32Array,
    adopt?: (x: tf.Tensor) => Float32Array,
  ): Iterable<Batch> {
    const d = this.dataset, n = d.length, size = d.sampleSize;
    const order = this.#order(rng);
    const largest = Math.min(n, this.batchSize);
    const y = new Int32Array(largest), t = new Int32Array(largest);
    for (let k = 0; k < this.length; k++) {
      const idx = order.subarray(k * this.batchSize, Math.min(n, (k + 1) * this.batchSize));
      const m = idx.length;
      const shared = adopt && !this.shuffle ? d.sharedRows(idx[0], m) : undefined;
      if (shared) {
        const x = adopt!(shared);
        d.labelsInto(idx, y, t);
        yield { x, y: y.subarray(0, m), t: t.subarray(0, m), n: m };
        continue;
      }
      const x = into(m);
      if (x.length !== m * size) {
        throw new RangeError(`epochInto: room for ${x.length} values, ${m * size} needed`);
      }
      // Labels into the reused arrays, inputs into x.
      const b = d.batch(idx, { x, y, t, n: m });
      yield { x, y: b.y.subarray(0, m), t: b.t.subarray(0, m), n: m };
    }
  }
}
