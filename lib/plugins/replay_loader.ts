/**
 * The replay data loader (Avalanche's `ReplayDataLoader`): each minibatch is a minibatch of the
 * current data with a minibatch of the memory appended.
 *
 * @module
 */
import type { Dataset } from "../data/dataset.ts";
import type { Rng } from "../random.ts";
import {
  batchesPerEpoch,
  type BatchPart,
  type BatchPlan,
  batchPlan,
  checkBatchSize,
  type DataLoader,
  sampleOrder,
} from "../data/loader.ts";
import { checkOptions, type OptionSpec } from "../options.ts";

/**
 * Endless minibatches of indices over `n` samples: shuffled passes cut into chunks of `batch`,
 * the last chunk of a pass short when `batch` does not divide `n`, a new shuffle when a pass is
 * exhausted (PyTorch's DataLoader restarted each time it runs out, as Avalanche's replay loader
 * does with `oversample_small_tasks`).
 *
 * @example
 * ```ts
 * import { Rng } from "../random.ts";
 * import { CyclingSampler } from "./replay_loader.ts";
 * const s = new CyclingSampler(5, 2);
 * const rng = new Rng(0);
 * const sizes = [s.next(rng), s.next(rng), s.next(rng), s.next(rng)].map((c) => c.length);
 * console.assert(sizes.join() === "2,2,1,2");
 * ```
 */
export class CyclingSampler {
  #order: Int32Array = new Int32Array(0);
  #pos = 0;

  /**
   * A sampler over `n` samples in chunks of `batch`.
   * @param n number of samples (≥ 1)
   * @param batch chunk size (≥ 1)
   * @param shuffle shuffle each pass (otherwise passes go in index order). @default true
   */
  constructor(readonly n: number, readonly batch: number, readonly shuffle = true) {
    if (!Number.isInteger(n) || n < 1) {
      throw new RangeError(`CyclingSampler needs at least one sample, got n = ${n}`);
    }
    checkBatchSize("CyclingSampler batch", batch);
  }

  /** The next chunk of indices; starts a new pass (drawing its order from `rng`) when needed. */
  next(rng: Rng): Int32Array {
    if (this.#pos >= this.#order.length) {
      this.#order = sampleOrder(this.n, this.shuffle, rng);
      this.#pos = 0;
    }
    const end = Math.min(this.#pos + this.batch, this.n);
    const chunk = this.#order.subarray(this.#pos, end);
    this.#pos = end;
    return chunk;
  }

  /** Samples returned by the first `draws` calls of a fresh sampler. */
  samplesIn(draws: number): number {
    const full = Math.floor(this.n / this.batch);
    const perPass = Math.ceil(this.n / this.batch);
    const passes = Math.floor(draws / perPass);
    const rest = draws - passes * perPass;
    return passes * this.n + Math.min(rest, full) * this.batch;
  }
}

/** Options of {@link ReplayDataLoader}. */
export interface ReplayDataLoaderOptions {
  /** Current samples per minibatch. */
  batchSize: number;
  /** Memory samples per minibatch. @default batchSize */
  batchSizeMem?: number;
  /** Shuffle the current data each epoch and the memory each pass. @default true */
  shuffle?: boolean;
  /** Drop the last incomplete minibatch of current data. @default false */
  dropLast?: boolean;
  /**
   * Split the memory part of each minibatch equally among the memory's task labels (the first
   * `batchSizeMem % tasks` tasks get one more), each task cycling through its own samples.
   * @default false
   */
  taskBalancedDataLoader?: boolean;
}

/** The keys of {@link ReplayDataLoaderOptions}, for checking what users pass. */
const REPLAY_DATA_LOADER_OPTIONS: OptionSpec<ReplayDataLoaderOptions> = {
  batchSize: "integer",
  batchSizeMem: "integer",
  shuffle: "boolean",
  dropLast: "boolean",
  taskBalancedDataLoader: "boolean",
};

/**
 * Minibatches of current data and memory together (Avalanche's `ReplayDataLoader`): each
 * minibatch holds `batchSize` current samples (a shuffled pass over `data`, the last minibatch
 * possibly short) followed by `batchSizeMem` memory samples drawn by cycling through shuffled
 * passes over `memory` ({@link CyclingSampler}: the last chunk of a pass may be short, a new pass
 * starts when one is exhausted). An epoch has as many minibatches as the current data alone.
 * The memory cycling starts afresh each epoch, as Avalanche re-creates the memory loader at each
 * epoch.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { Rng } from "../random.ts";
 * import { ReplayDataLoader } from "./replay_loader.ts";
 * const data = new ArrayDataset({ x: new Float32Array(10), y: new Array(10).fill(1), inputShape: [1] });
 * const memory = new ArrayDataset({ x: new Float32Array(3), y: [0, 0, 0], inputShape: [1] });
 * const loader = new ReplayDataLoader(data, memory, { batchSize: 4, batchSizeMem: 2 });
 * const sizes = [...loader.epoch(new Rng(0))].map((b) => b.n);
 * console.assert(loader.length === 3 && sizes.join() === "6,5,4");
 * ```
 */
export class ReplayDataLoader implements DataLoader {
  /** Current samples per minibatch. */
  readonly batchSize: number;
  /** Memory samples per minibatch. */
  readonly batchSizeMem: number;
  /** Whether the current data and the memory passes are shuffled. */
  readonly shuffle: boolean;
  /** Whether the last incomplete minibatch of current data is dropped. */
  readonly dropLast: boolean;
  /** Whether the memory part is balanced over task labels. */
  readonly taskBalancedDataLoader: boolean;
  /** Memory parts (one, or one per task label) and the memory samples each takes per minibatch. */
  readonly memoryParts: readonly { indices: Int32Array; batch: number; task?: number }[];

  /**
   * A loader of current data with memory appended.
   * @param data the current experience's (adapted) data
   * @param memory the replay memory (same input shape, non-empty)
   * @param opts batch sizes and shuffling
   */
  constructor(readonly data: Dataset, readonly memory: Dataset, opts: ReplayDataLoaderOptions) {
    if (!opts || typeof opts !== "object") {
      throw new TypeError("ReplayDataLoader needs options { batchSize, batchSizeMem? }");
    }
    checkOptions("ReplayDataLoader", opts, REPLAY_DATA_LOADER_OPTIONS);
    checkBatchSize("batchSize", opts.batchSize);
    this.batchSize = opts.batchSize;
    this.batchSizeMem = opts.batchSizeMem ?? opts.batchSize;
    checkBatchSize("batchSizeMem", this.batchSizeMem);
    this.shuffle = opts.shuffle ?? true;
    this.dropLast = opts.dropLast ?? false;
    this.taskBalancedDataLoader = opts.taskBalancedDataLoader ?? false;
    if (memory.length === 0) {
      throw new RangeError(
        "ReplayDataLoader needs a non-empty memory: use the plain loader while the memory is empty",
      );
    }
    if (data.length === 0) throw new RangeError("ReplayDataLoader needs current data");
    if (data.inputShape.join() !== memory.inputShape.join()) {
      throw new RangeError(
        `The memory holds samples of shape [${memory.inputShape}] but the current data has ` +
          `[${data.inputShape}]: a memory is tied to one input shape`,
      );
    }
    if (this.taskBalancedDataLoader) {
      const byTask = new Map<number, number[]>();
      memory.taskLabels.forEach((t, i) => {
        let l = byTask.get(t);
        if (!l) byTask.set(t, l = []);
        l.push(i);
      });
      const tasks = [...byTask.keys()].sort((a, b) => a - b);
      if (this.batchSizeMem < tasks.length) {
        throw new RangeError(
          `batchSizeMem (${this.batchSizeMem}) must be at least the number of tasks in the ` +
            `memory (${tasks.length}) with taskBalancedDataLoader: raise batchSizeMem`,
        );
      }
      const base = Math.floor(this.batchSizeMem / tasks.length);
      const rem = this.batchSizeMem % tasks.length;
      this.memoryParts = tasks.map((task, k) => ({
        task,
        indices: Int32Array.from(byTask.get(task)!),
        batch: base + (k < rem ? 1 : 0),
      }));
    } else {
      this.memoryParts = [{
        indices: Int32Array.from({ length: memory.length }, (_, i) => i),
        batch: this.batchSizeMem,
      }];
    }
  }

  /** Minibatches per epoch: those of the current data alone. */
  get length(): number {
    return batchesPerEpoch(this.data.length, this.batchSize, this.dropLast);
  }

  /** Samples per epoch, current and memory. */
  get samples(): number {
    const current = this.dropLast ? this.length * this.batchSize : this.data.length;
    let mem = 0;
    for (const p of this.memoryParts) {
      mem += new CyclingSampler(p.indices.length, p.batch).samplesIn(this.length);
    }
    return current + mem;
  }

  /** The minibatches of one epoch (current data reshuffled, memory cycling restarted). */
  *epoch(rng: Rng): Iterable<BatchPlan> {
    const n = this.data.length;
    const order = sampleOrder(n, this.shuffle, rng);
    const samplers = this.memoryParts.map((p) =>
      new CyclingSampler(p.indices.length, p.batch, this.shuffle)
    );
    for (let k = 0; k < this.length; k++) {
      const current = order.subarray(k * this.batchSize, Math.min(n, (k + 1) * this.batchSize));
      const parts: BatchPart[] = [{ dataset: this.data, indices: current }];
      samplers.forEach((s, j) => {
        const idx = this.memoryParts[j].indices;
        parts.push({ dataset: this.memory, indices: s.next(rng).map((i) => idx[i]) });
      });
      yield batchPlan(...parts);
    }
  }
}
