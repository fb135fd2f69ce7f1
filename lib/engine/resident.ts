/**
 * Datasets held as float32 in one tensor: every input converted once (normalized, permuted,
 * transformed), as PyTorch code often does at load time with `x.float()`.
 *
 * The default datasets keep bytes and convert each minibatch (a quarter of the memory). A
 * resident dataset trades memory for speed where the same inputs are read many times: a test
 * stream evaluated after every experience. On the WebAssembly heap backends ("wasm", "blas") an
 * evaluation minibatch of consecutive samples is then a view of the dataset's tensor
 ({@link ResidentDataset.rowsView}, found through views by {@link Dataset.contiguousRows}): no
 * conversion, no copy. Shuffled training minibatches copy rows instead of converting bytes (the
 * README's speed section has the figures).
 *
 * @example
 * ```ts
 * import { setBackend } from "../backend.ts";
 * import { resident } from "./resident.ts";
 * import { splitMNIST } from "../benchmarks/classic.ts";
 * await setBackend("cpu");
 * const b = await splitMNIST();
 * const test = resident(b.test[0].dataset); // float32, 4 bytes a pixel
 * console.log(test.length, test.inputs.shape);
 * test.dispose();
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { Dataset } from "../data/dataset.ts";
import type { TransformGroups } from "../data/augment.ts";
import { heapInputs } from "../backends/fused.ts";
import { rowsView } from "../backends/views.ts";
import { type Benchmark, makeStream, type Stream, withDataset } from "../data/experience.ts";
import { checkOptions } from "../options.ts";

/** Samples converted per chunk while building a resident dataset from one that makes tensors. */
const CHUNK = 1024;

/**
 * A dataset whose inputs are float32 values held in one tensor of shape `[n, ...inputShape]`
 * (kept outside every scope: call {@link ResidentDataset.dispose} when done), with the labels of
 * its source.
 */
export class ResidentDataset extends Dataset {
  readonly inputShape: readonly number[];
  readonly targets: Int32Array;
  readonly taskLabels: Int32Array;
  /** The inputs, on a heap backend. */
  #store: tf.Tensor | undefined;
  /** The inputs as an array: elsewhere, or read from `#store` under another backend. */
  #array: Float32Array | undefined;
  #disposed = false;
  readonly #transforms: TransformGroups | undefined;

  /** The source's transform groups: resident inputs are transformed per minibatch as theirs. */
  override get transforms(): TransformGroups | undefined {
    return this.#transforms;
  }

  /** Converts every input of `source` once (see {@link resident}). */
  constructor(source: Dataset) {
    super();
    if (!(source instanceof Dataset)) {
      throw new TypeError(`resident: expected a Dataset, got ${String(source)}`);
    }
    const n = source.length, size = source.sampleSize;
    if (n === 0) throw new RangeError("resident: the dataset is empty");
    const bytes = n * size * 4;
    if (bytes > 2 ** 31) {
      throw new RangeError(
        `resident: ${n} samples of ${size} floats need ${(bytes / 2 ** 30).toFixed(1)} GiB, ` +
          `over the 2 GiB one tensor may hold: make a subset (or each experience) resident instead`,
      );
    }
    this.inputShape = [...source.inputShape];
    this.#transforms = source.transforms;
    this.targets = Int32Array.from(source.targets);
    this.taskLabels = Int32Array.from(source.taskLabels);
    const heap = heapInputs();
    if (!heap) {
      this.#array = new Float32Array(n * size);
      fillAll(source, this.#array);
      return;
    }
    const store = tf.keep(heap.tensor([n, ...this.inputShape]));
    try {
      if (source.fillsInJs) fillAll(source, heap.view(store));
      else {
        // The source may make tensors (which can move the heap): fill a chunk, then copy it.
        const chunk = new Float32Array(Math.min(n, CHUNK) * size);
        for (let s = 0; s < n; s += CHUNK) {
          const m = Math.min(CHUNK, n - s);
          source.fillBatch(range(s, m), chunk, 0);
          heap.view(store).set(chunk.subarray(0, m * size), s * size);
        }
      }
    } catch (e) {
      store.dispose();
      throw e;
    }
    this.#store = store;
  }

  /** The inputs as one tensor `[n, ...inputShape]` (owned by the dataset: do not dispose). */
  get inputs(): tf.Tensor {
    this.#check();
    if (!this.#store) {
      this.#store = tf.keep(tf.tensor(this.#array!, [this.length, ...this.inputShape], "float32"));
    }
    return this.#store;
  }

  /** Whether {@link ResidentDataset.dispose} has run. */
  get isDisposed(): boolean {
    return this.#disposed;
  }

  /** The values: a fresh view of the heap (valid until the heap next grows), or the array. */
  #values(): Float32Array {
    this.#check();
    const store = this.#store, heap = heapInputs();
    if (store && heap) return heap.view(store);
    return this.#array ??= store!.dataSync() as Float32Array;
  }

  fillX(i: number, out: Float32Array, offset: number): void {
    this.fillBatch([i], out, offset);
  }

  override get fillsInJs(): boolean {
    return true;
  }

  override fillBatch(indices: ArrayLike<number>, out: Float32Array, offset = 0): void {
    const size = this.sampleSize, n = this.length, values = this.#values();
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k];
      if (!(Number.isInteger(i) && i >= 0 && i < n)) {
        throw new RangeError(`Sample index ${i} is out of range for a dataset of ${n}`);
      }
      out.set(values.subarray(i * size, (i + 1) * size), offset + k * size);
    }
  }

  /**
   * Samples `start .. start + n - 1` as a tensor that shares this dataset's memory (no copy) on
   * the heap backends; undefined elsewhere. The caller disposes of it and must not write into it.
   */
  rowsView(start: number, n: number): tf.Tensor | undefined {
    this.#check();
    if (!this.#store || start < 0 || n < 1 || start + n > this.length) return undefined;
    return rowsView(this.#store, start, n);
  }

  /** Frees the tensor (minibatch views still alive keep its memory until they are disposed). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#store?.dispose();
    this.#store = undefined;
    this.#array = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #check(): void {
    if (this.#disposed) {
      throw new Error("This resident dataset was disposed: make a new one with resident(dataset)");
    }
  }
}

function range(start: number, n: number): Int32Array {
  const idx = new Int32Array(n);
  for (let k = 0; k < n; k++) idx[k] = start + k;
  return idx;
}

function fillAll(source: Dataset, out: Float32Array): void {
  source.fillBatch(range(0, source.length), out, 0);
}

/**
 * `dataset`'s inputs converted once to float32 and held in one tensor (4 bytes per value: a
 * 10,000-image MNIST test set takes 31 MB). On "wasm" and "blas", evaluation minibatches are
 * then views of it instead of conversions. Dispose of it when done.
 */
export function resident(dataset: Dataset): ResidentDataset {
  return new ResidentDataset(dataset);
}

/** A benchmark with some streams made resident, and the means to free them. */
export type ResidentBenchmark<B extends Benchmark> = B & {
  /** Frees the resident datasets. */
  dispose(): void;
  [Symbol.dispose](): void;
};

/**
 * `benchmark` with the experiences of `streams` (default: the test stream) holding resident
 * datasets ({@link resident}), as PyTorch code that converts its tensors at load time does.
 * Each experience gets its own contiguous tensor, so its evaluation minibatches are views.
 * Every other field is kept. Dispose of the result when done.
 *
 * @example
 * ```ts
 * import { setBackend } from "../backend.ts";
 * import { residentBenchmark } from "./resident.ts";
 * import { splitMNIST } from "../benchmarks/classic.ts";
 * await setBackend("cpu");
 * const b = residentBenchmark(await splitMNIST());
 * // ... strategy.eval(b.test) reads views of the float32 test inputs ...
 * b.dispose();
 * ```
 */
export function residentBenchmark<B extends Benchmark>(
  benchmark: B,
  opts: { streams?: readonly string[] } = {},
): ResidentBenchmark<B> {
  const fn = "residentBenchmark";
  if (!benchmark || !Array.isArray(benchmark.train) || !Array.isArray(benchmark.test)) {
    throw new TypeError(`${fn}: expected a Benchmark, got ${String(benchmark)}`);
  }
  checkOptions(fn, opts, { streams: "array" });
  const names = opts.streams ?? ["test"];
  const known = ["train", "test"];
  for (const s of names) {
    if (!known.includes(s)) {
      throw new RangeError(`${fn}: unknown stream "${s}": use "train" and/or "test"`);
    }
  }
  const made: ResidentDataset[] = [];
  const convert = (s: Stream): Stream => {
    if (!names.includes(s.name)) return s;
    return makeStream(
      s.name,
      s.map((e) => {
        const d = resident(e.dataset);
        made.push(d);
        return withDataset(e, d);
      }),
    );
  };
  try {
    const train = convert(benchmark.train);
    const test = convert(benchmark.test);
    const dispose = () => {
      for (const d of made) d.dispose();
    };
    return { ...benchmark, train, test, dispose, [Symbol.dispose]: dispose };
  } catch (e) {
    for (const d of made) d.dispose();
    throw e;
  }
}
