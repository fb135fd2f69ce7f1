/**
 * Datasets as compact typed arrays. Samples stay as bytes (or floats) until a minibatch is asked
 * for; subsets, relabelings and concatenations are views that share the underlying storage.
 *
 * @module
 */
import { anyOf, checkOptions, instanceOf, type OptionSpec } from "../options.ts";
import { checkTransformGroups, type TransformGroups } from "./augment.ts";

/** A minibatch as flat typed arrays, ready to become tensors. */
export interface Batch {
  /** Inputs, `n * prod(inputShape)` floats, sample-major. */
  x: Float32Array;
  /** Class labels. */
  y: Int32Array;
  /** Task labels. */
  t: Int32Array;
  /** Number of samples. */
  n: number;
}

/** A minibatch that owns fresh arrays for `samples` samples of `sampleSize` floats. */
function newBatch(samples: number, sampleSize: number): Batch {
  return {
    x: new Float32Array(samples * sampleSize),
    y: new Int32Array(samples),
    t: new Int32Array(samples),
    n: samples,
  };
}

/** Where some consecutive samples of a dataset are stored: consecutive samples of `dataset`. */
export interface ContiguousRows {
  readonly dataset: Dataset;
  /** The first sample's index in `dataset`. */
  readonly start: number;
}

/** Throws unless every entry of `labels` (class or task labels) is an integer ≥ 0. */
function checkLabels(what: string, labels: ArrayLike<number>): void {
  for (let i = 0; i < labels.length; i++) {
    const v = labels[i];
    if (!(Number.isInteger(v) && v >= 0 && v < 2 ** 31)) {
      throw new RangeError(
        `${what}[${i}] is ${v}: labels must be integers ≥ 0 (class ids), not rounded silently`,
      );
    }
  }
}

/** Throws when `i` is not a sample index of a dataset of `length` samples. */
function checkIndex(i: number, length: number): void {
  if (!(Number.isInteger(i) && i >= 0 && i < length)) {
    throw new RangeError(`Sample index ${i} is out of range for a dataset of ${length}`);
  }
}

/**
 * A random-access dataset. Subclasses implement {@link Dataset.fillX}; everything else
 * (batches, subsets, relabeling, concatenation) is shared.
 */
export abstract class Dataset {
  /** Shape of one input sample, e.g. `[28, 28, 1]` or `[784]`. */
  abstract readonly inputShape: readonly number[];
  /** Class label of every sample. */
  abstract readonly targets: Int32Array;
  /** Task label of every sample. */
  abstract readonly taskLabels: Int32Array;
  /** Writes sample `i`'s input into `out` starting at `offset`. */
  abstract fillX(i: number, out: Float32Array, offset: number): void;

  /**
   * Writes the inputs of the samples `indices` one after another into `out`, the first at
   * `offset` (floats). Datasets override it to convert a whole minibatch in one call instead of
   * one call per sample.
   */
  fillBatch(indices: ArrayLike<number>, out: Float32Array, offset = 0): void {
    const size = this.sampleSize;
    for (let k = 0; k < indices.length; k++) this.fillX(indices[k], out, offset + k * size);
  }

  /** Number of samples. */
  get length(): number {
    return this.targets.length;
  }

  /**
   * The transforms the engine applies to minibatches of this dataset, by phase (Avalanche's
   * train and eval transform groups); undefined when there are none. Views (subsets,
   * relabelings) keep their parent's; a concatenation keeps its parts' when they all share
   * the same groups.
   */
  get transforms(): TransformGroups | undefined {
    return undefined;
  }

  /**
   * The same samples with these transform groups (a view, no copy): the engine applies
   * `groups.train` to training minibatches and `groups.eval` to evaluation minibatches.
   *
   * @example
   * ```ts
   * import { ArrayDataset } from "./dataset.ts";
   * import { randomCrop, randomHorizontalFlip } from "./augment.ts";
   * const d = new ArrayDataset({ x: new Uint8Array(2 * 4 * 4 * 3), y: [0, 1], inputShape: [4, 4, 3] });
   * const aug = d.withTransforms({ train: [randomCrop(4, { padding: 1 }), randomHorizontalFlip()], eval: [] });
   * console.assert(aug.transforms?.train.length === 2 && aug.subset([1]).transforms === aug.transforms);
   * ```
   */
  withTransforms(groups: TransformGroups): Dataset {
    return new TransformedDataset(this, checkTransformGroups(groups));
  }

  /**
   * True when {@link Dataset.fillBatch} only runs JavaScript on the arrays it is given (no
   * tensor made), so that it may write straight into a tensor's memory on the WebAssembly
   * heap, which any new tensor may move. False unless a subclass knows better.
   */
  get fillsInJs(): boolean {
    return false;
  }

  /**
   * The dataset that stores samples `start .. start + n - 1` as consecutive samples of its own,
   * looking through views (relabelings, subsets whose samples are consecutive in the parent, a
   * concatenation's parts); undefined when they are not consecutive anywhere. A dataset that
   * keeps its inputs in a tensor lets the engine hand out such rows without copying them.
   */
  contiguousRows(start: number, n: number): ContiguousRows | undefined {
    if (!(Number.isInteger(start) && start >= 0 && n >= 1 && start + n <= this.length)) {
      return undefined;
    }
    return { dataset: this, start };
  }

  /** Number of floats per sample. */
  get sampleSize(): number {
    let s = 1;
    for (const d of this.inputShape) s *= d;
    return s;
  }

  /** Builds a minibatch of the given sample indices. */
  batch(indices: ArrayLike<number>, into?: Batch): Batch {
    const n = indices.length;
    const size = this.sampleSize;
    const b = into && into.x.length >= n * size && into.y.length >= n ? into : newBatch(n, size);
    b.n = n;
    this.labelsInto(indices, b.y, b.t);
    this.fillBatch(indices, b.x, 0);
    return b;
  }

  /** Writes the class and task labels of the samples `indices` into `y` and `t`, from 0. */
  labelsInto(indices: ArrayLike<number>, y: Int32Array, t: Int32Array): void {
    const length = this.length, targets = this.targets, tasks = this.taskLabels;
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k];
      checkIndex(i, length);
      y[k] = targets[i];
      t[k] = tasks[i];
    }
  }

  /** A view of the samples at `indices` (in that order). */
  subset(indices: ArrayLike<number>): Dataset {
    return new SubsetDataset(this, Int32Array.from(indices));
  }

  /** The same inputs with other class and/or task labels. */
  relabel(labels: { targets?: Int32Array; taskLabels?: Int32Array }): Dataset {
    return new RelabeledDataset(
      this,
      labels.targets ?? this.targets,
      labels.taskLabels ?? this.taskLabels,
    );
  }

  /** The same inputs with every task label set to `task`. */
  withTaskLabel(task: number): Dataset {
    return this.relabel({ taskLabels: new Int32Array(this.length).fill(task) });
  }

  /** The same inputs with class labels mapped through `mapping` (`mapping[old] = new`). */
  mapTargets(mapping: ArrayLike<number>): Dataset {
    const t = new Int32Array(this.length);
    for (let i = 0; i < t.length; i++) {
      const v = mapping[this.targets[i]];
      if (v === undefined) {
        throw new RangeError(`Label ${this.targets[i]} has no entry in the target mapping`);
      }
      t[i] = v;
    }
    return this.relabel({ targets: t });
  }

  /** Sorted distinct class labels present. */
  classes(): number[] {
    return [...new Set(this.targets)].sort((a, b) => a - b);
  }

  /** Sorted distinct task labels present. */
  tasks(): number[] {
    return [...new Set(this.taskLabels)].sort((a, b) => a - b);
  }

  /** Indices of the samples of each class. */
  indicesByClass(): Map<number, Int32Array> {
    const lists = new Map<number, number[]>();
    for (let i = 0; i < this.length; i++) {
      const c = this.targets[i];
      let l = lists.get(c);
      if (!l) lists.set(c, l = []);
      l.push(i);
    }
    return new Map([...lists].sort((a, b) => a[0] - b[0]).map(([c, l]) => [c, Int32Array.from(l)]));
  }
}

/** Options of {@link ArrayDataset}. */
export interface ArrayDatasetOptions {
  /** Inputs, sample-major: `length * prod(inputShape)` values. */
  x: Uint8Array | Float32Array;
  /** Class labels. */
  y: ArrayLike<number>;
  /** Shape of one sample. */
  inputShape: readonly number[];
  /** Task labels (default: all 0). */
  taskLabels?: ArrayLike<number>;
  /** Multiplier applied to raw values first (e.g. 1/255 for bytes). @default 1 */
  scale?: number;
  /**
   * Subtracted after scaling: one number, or one per channel (the last axis of `inputShape`, for
   * channel-last images such as `[32, 32, 3]`). @default 0
   */
  mean?: number | readonly number[];
  /** Divides after subtracting the mean: one number, or one per channel. @default 1 */
  std?: number | readonly number[];
  /** Feature permutation: feature k of a sample is raw feature `permutation[k]`. */
  permutation?: Int32Array;
}

/** The keys of {@link ArrayDatasetOptions}, for checking what users pass. */
const ARRAY_DATASET_OPTIONS: OptionSpec<ArrayDatasetOptions> = {
  x: anyOf(instanceOf(Uint8Array), instanceOf(Float32Array)),
  // Array-likes (arrays, typed arrays): their lengths are checked below.
  y: "any",
  inputShape: "array",
  taskLabels: "any",
  scale: "number",
  mean: anyOf("number", "array"),
  std: anyOf("number", "array"),
  permutation: instanceOf(Int32Array),
};

/** Bytes the input caches of all {@link ArrayDataset}s may hold together. */
let cacheBudget = 512 * 2 ** 20;
/**
 * A dataset starts its cache once it has converted this many times its length. Copying a cached
 * sample instead of converting it saves a little on every pass, while the cache's first touch
 * costs a page fault per page (far more on shared virtual machines than on bare metal): only a
 * dataset converted many times wins it back.
 */
export const CACHE_AFTER_PASSES = 8;
/** Bytes held now. */
let cacheHeld = 0;
/** Whether a 32-bit word holds its first byte lowest (every platform Deno runs on). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const cacheRelease = new FinalizationRegistry<number>((bytes) => {
  cacheHeld -= bytes;
});

/**
 * Sets how many bytes the input caches of {@link ArrayDataset}s may hold together (512 MiB by
 * default; 0 turns caching off). A dataset stored as bytes (or permuted, or with a scale) keeps
 * its samples' final float32 values once it has converted more than {@link CACHE_AFTER_PASSES}
 * times its length, e.g. a test set evaluated after each of many experiences or a training set
 * past its eighth epoch: batches then copy instead of converting, and the cache fills as samples
 * are asked for. A dataset seen a few times never pays for a cache. Returns the previous budget.
 */
export function setInputCacheBudget(bytes: number): number {
  if (!(Number.isFinite(bytes) && bytes >= 0)) {
    throw new RangeError(
      `input cache budget must be a number of bytes ≥ 0 (e.g. 512 * 2 ** 20), got ${bytes}`,
    );
  }
  const prev = cacheBudget;
  cacheBudget = bytes;
  return prev;
}

/** The input caches' budget and the bytes they hold now. */
export function inputCacheUsage(): { budget: number; held: number } {
  return { budget: cacheBudget, held: cacheHeld };
}

/**
 * A dataset stored as one typed array, with a per-feature affine transform
 * `(raw * scale - mean) / std` and an optional fixed feature permutation applied when batching.
 */
export class ArrayDataset extends Dataset {
  readonly inputShape: readonly number[];
  readonly targets: Int32Array;
  readonly taskLabels: Int32Array;
  readonly #x: Uint8Array | Float32Array;
  readonly #size: number;
  readonly #lut: Float32Array | undefined;
  /** The bytes as 32-bit words, when every sample starts on a word (4 bytes per load). */
  readonly #words: Uint32Array | undefined;
  readonly #scale: number;
  readonly #shift: number;
  /** Per-channel scale and shift (channel-last), when mean or std is given per channel. */
  readonly #channels: { scale: Float32Array; shift: Float32Array; lut?: Float32Array } | undefined;
  readonly #perm: Int32Array | undefined;
  /** Samples converted so far (until a cache is built or refused). */
  #converted = 0;
  /** Every sample's final values, once started; null when refused (over budget, no work). */
  #cache: Float32Array | null | undefined;
  /** Which samples the cache holds (1) while it is being filled; undefined once it is full. */
  #filled: Uint8Array | undefined;
  /** Samples the cache holds. */
  #cached = 0;
  readonly options: Readonly<ArrayDatasetOptions>;

  constructor(opts: ArrayDatasetOptions) {
    super();
    checkOptions("ArrayDataset", opts, ARRAY_DATASET_OPTIONS);
    const size = opts.inputShape.reduce((a, b) => a * b, 1);
    const n = opts.y.length;
    if (!(size > 0) || opts.inputShape.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new RangeError(`inputShape must hold positive integers, got [${opts.inputShape}]`);
    }
    if (opts.x.length !== n * size) {
      throw new RangeError(
        `x holds ${opts.x.length} values but ${n} labels × ${size} features = ${
          n * size
        } were expected`,
      );
    }
    if (opts.taskLabels && opts.taskLabels.length !== n) {
      throw new RangeError(`taskLabels has ${opts.taskLabels.length} entries for ${n} samples`);
    }
    if (opts.permutation && opts.permutation.length !== size) {
      throw new RangeError(
        `permutation has ${opts.permutation.length} entries for ${size} features`,
      );
    }
    const perChannel = Array.isArray(opts.mean) || Array.isArray(opts.std);
    const channelCount = opts.inputShape[opts.inputShape.length - 1];
    const stat = (name: "mean" | "std", fallback: number): number[] => {
      const v = opts[name] ?? fallback;
      const list = typeof v === "number"
        ? new Array(perChannel ? channelCount : 1).fill(v)
        : [...v];
      if (list.length !== (perChannel ? channelCount : 1)) {
        throw new RangeError(
          `${name} has ${list.length} values, but inputShape [${opts.inputShape}] has ` +
            `${channelCount} channels (its last axis): give one ${name} per channel`,
        );
      }
      for (const x of list) {
        if (typeof x !== "number" || !Number.isFinite(x) || (name === "std" && !(x > 0))) {
          throw new RangeError(
            `${name} must hold finite numbers${name === "std" ? " > 0" : ""}, got [${list}]`,
          );
        }
      }
      return list;
    };
    const means = stat("mean", 0), stds = stat("std", 1);
    if (perChannel && opts.permutation) {
      throw new RangeError(
        "A permutation and per-channel mean/std cannot be combined: permute features of " +
          "a dataset normalized with one mean and std",
      );
    }
    const std = stds[0];
    checkLabels("y", opts.y);
    if (opts.taskLabels) checkLabels("taskLabels", opts.taskLabels);
    if (opts.x instanceof Float32Array) {
      const x = opts.x;
      for (let i = 0; i < x.length; i++) {
        if (!Number.isFinite(x[i])) {
          throw new RangeError(
            `x holds ${x[i]} at index ${i} (sample ${Math.floor(i / size)}, feature ${
              i % size
            }): inputs must be finite numbers; clean or drop that sample`,
          );
        }
      }
    }
    this.options = opts;
    this.inputShape = [...opts.inputShape];
    this.targets = Int32Array.from(opts.y);
    this.taskLabels = opts.taskLabels ? Int32Array.from(opts.taskLabels) : new Int32Array(n);
    this.#x = opts.x;
    this.#size = size;
    this.#scale = (opts.scale ?? 1) / std;
    this.#shift = -means[0] / std;
    this.#perm = opts.permutation;
    if (perChannel) {
      const scale = Float32Array.from(stds, (sd) => (opts.scale ?? 1) / sd);
      const shift = Float32Array.from(means, (m, c) => -m / stds[c]);
      let lut: Float32Array | undefined;
      if (opts.x instanceof Uint8Array) {
        // One table per channel: lut[c * 256 + v] is byte v of channel c converted.
        lut = new Float32Array(256 * channelCount);
        for (let c = 0; c < channelCount; c++) {
          for (let v = 0; v < 256; v++) lut[c * 256 + v] = v * scale[c] + shift[c];
        }
      }
      this.#channels = { scale, shift, lut };
    }
    if (opts.x instanceof Uint8Array && !perChannel) {
      this.#lut = new Float32Array(256);
      for (let v = 0; v < 256; v++) this.#lut[v] = v * this.#scale + this.#shift;
      if (LITTLE_ENDIAN && size % 4 === 0 && opts.x.byteOffset % 4 === 0) {
        this.#words = new Uint32Array(opts.x.buffer, opts.x.byteOffset, opts.x.length >> 2);
      }
    }
  }

  fillX(i: number, out: Float32Array, offset: number): void {
    const cache = this.#cache;
    if (cache) {
      const base = i * this.#size;
      const filled = this.#filled;
      if (filled && filled[i] === 0) {
        this.#convert(i, cache, base);
        filled[i] = 1;
        if (++this.#cached === this.length) this.#filled = undefined;
      }
      out.set(cache.subarray(base, base + this.#size), offset);
      return;
    }
    this.#convert(i, out, offset);
    if (cache === undefined && ++this.#converted > this.#cacheAfter()) {
      this.#startCache();
    }
  }

  override get fillsInJs(): boolean {
    // A subclass may fill otherwise.
    return Object.getPrototypeOf(this) === ArrayDataset.prototype;
  }

  override fillBatch(indices: ArrayLike<number>, out: Float32Array, offset = 0): void {
    const size = this.#size, n = indices.length, length = this.length;
    for (let k = 0; k < n; k++) checkIndex(indices[k], length);
    if (this.#cache || this.#cache === undefined && this.#converted + n > this.#cacheAfter()) {
      // Per sample: the cache starts (or fills) at the exact sample fillX would.
      for (let k = 0; k < n; k++) this.fillX(indices[k], out, offset + k * size);
      return;
    }
    const words = this.#words, lut = this.#lut;
    if (words && lut && !this.#perm) {
      // Four samples at a time, word by word: four independent streams of reads keep more
      // cache misses in flight (the bytes of a shuffled minibatch are cold).
      const quarter = size >> 2;
      let k = 0, o = offset;
      for (; k + 4 <= n; k += 4, o += 4 * size) {
        let w0 = indices[k] * quarter, w1 = indices[k + 1] * quarter;
        let w2 = indices[k + 2] * quarter, w3 = indices[k + 3] * quarter;
        for (let j = o, end = o + size; j < end; j += 4) {
          const a = words[w0++], b = words[w1++], c = words[w2++], d = words[w3++];
          out[j] = lut[a & 255];
          out[j + 1] = lut[(a >>> 8) & 255];
          out[j + 2] = lut[(a >>> 16) & 255];
          out[j + 3] = lut[a >>> 24];
          out[j + size] = lut[b & 255];
          out[j + size + 1] = lut[(b >>> 8) & 255];
          out[j + size + 2] = lut[(b >>> 16) & 255];
          out[j + size + 3] = lut[b >>> 24];
          out[j + 2 * size] = lut[c & 255];
          out[j + 2 * size + 1] = lut[(c >>> 8) & 255];
          out[j + 2 * size + 2] = lut[(c >>> 16) & 255];
          out[j + 2 * size + 3] = lut[c >>> 24];
          out[j + 3 * size] = lut[d & 255];
          out[j + 3 * size + 1] = lut[(d >>> 8) & 255];
          out[j + 3 * size + 2] = lut[(d >>> 16) & 255];
          out[j + 3 * size + 3] = lut[d >>> 24];
        }
      }
      for (; k < n; k++, o += size) this.#convert(indices[k], out, o);
      if (this.#cache === undefined) this.#converted += n;
      return;
    }
    for (let k = 0; k < n; k++) this.#convert(indices[k], out, offset + k * size);
    if (this.#cache === undefined) this.#converted += n;
  }

  /** Conversions after which the cache starts. */
  #cacheAfter(): number {
    return CACHE_AFTER_PASSES * this.length;
  }

  /**
   * Starts the cache, when conversion does work and it fits: samples are converted into it as
   * they are asked for, so no batch pays for converting the whole dataset at once.
   */
  #startCache(): void {
    const x = this.#x;
    const plain = x instanceof Float32Array && !this.#perm && this.#scale === 1 &&
      this.#shift === 0 && !this.#channels;
    const bytes = x.length * 4;
    if (plain || cacheHeld + bytes > cacheBudget) {
      this.#cache = null;
      return;
    }
    cacheHeld += bytes;
    cacheRelease.register(this, bytes);
    this.#filled = new Uint8Array(this.length);
    this.#cache = new Float32Array(x.length);
  }

  /** Sample `i`'s final values into `out` at `offset`. */
  #convert(i: number, out: Float32Array, offset: number): void {
    const size = this.#size;
    const base = i * size;
    const x = this.#x;
    const perm = this.#perm;
    const lut = this.#lut;
    const channels = this.#channels;
    if (channels) {
      const cs = channels.scale.length, clut = channels.lut;
      if (clut) {
        for (let k = 0; k < size; k += cs) {
          for (let c = 0, o = offset + k, b = base + k; c < cs; c++) {
            out[o + c] = clut[(c << 8) | x[b + c]];
          }
        }
      } else {
        const { scale, shift } = channels;
        for (let k = 0; k < size; k += cs) {
          for (let c = 0; c < cs; c++) out[offset + k + c] = x[base + k + c] * scale[c] + shift[c];
        }
      }
    } else if (lut) {
      const words = this.#words;
      if (perm) { for (let k = 0; k < size; k++) out[offset + k] = lut[x[base + perm[k]]]; }
      else if (words) {
        // Four bytes per load rather than one.
        for (let k = base >> 2, end = (base + size) >> 2, o = offset; k < end; k++, o += 4) {
          const w = words[k];
          out[o] = lut[w & 255];
          out[o + 1] = lut[(w >>> 8) & 255];
          out[o + 2] = lut[(w >>> 16) & 255];
          out[o + 3] = lut[w >>> 24];
        }
      } else for (let k = 0; k < size; k++) out[offset + k] = lut[x[base + k]];
    } else {
      const a = this.#scale, b = this.#shift;
      if (perm) { for (let k = 0; k < size; k++) out[offset + k] = x[base + perm[k]] * a + b; }
      else if (a === 1 && b === 0) out.set(x.subarray(base, base + size), offset);
      else for (let k = 0; k < size; k++) out[offset + k] = x[base + k] * a + b;
    }
  }

  /** The raw storage (shared, do not modify). */
  get raw(): Uint8Array | Float32Array {
    return this.#x;
  }
}

class SubsetDataset extends Dataset {
  readonly inputShape: readonly number[];
  readonly targets: Int32Array;
  readonly taskLabels: Int32Array;
  readonly #parent: Dataset;
  readonly #idx: Int32Array;

  constructor(parent: Dataset, idx: Int32Array) {
    super();
    for (let k = 0; k < idx.length; k++) {
      if (!(idx[k] >= 0 && idx[k] < parent.length)) {
        throw new RangeError(
          `Subset index ${idx[k]} is out of range for a dataset of ${parent.length}`,
        );
      }
    }
    // Collapse chains of subsets so that lookups stay one level deep.
    if (parent instanceof SubsetDataset) {
      const p = parent.#idx;
      idx = idx.map((i) => p[i]);
      parent = parent.#parent;
    }
    this.#parent = parent;
    this.#idx = idx;
    this.inputShape = parent.inputShape;
    this.targets = idx.map((i) => parent.targets[i]);
    this.taskLabels = idx.map((i) => parent.taskLabels[i]);
  }

  fillX(i: number, out: Float32Array, offset: number): void {
    this.#parent.fillX(this.#idx[i], out, offset);
  }

  override get fillsInJs(): boolean {
    return this.#parent.fillsInJs;
  }

  override get transforms(): TransformGroups | undefined {
    return this.#parent.transforms;
  }

  override fillBatch(indices: ArrayLike<number>, out: Float32Array, offset = 0): void {
    const n = indices.length, idx = this.#idx;
    const mapped = new Int32Array(n);
    for (let k = 0; k < n; k++) {
      const i = indices[k];
      checkIndex(i, idx.length);
      mapped[k] = idx[i];
    }
    this.#parent.fillBatch(mapped, out, offset);
  }

  override contiguousRows(start: number, n: number): ContiguousRows | undefined {
    const idx = this.#idx;
    if (!(Number.isInteger(start) && start >= 0 && n >= 1 && start + n <= idx.length)) {
      return undefined;
    }
    const first = idx[start];
    for (let k = 1; k < n; k++) if (idx[start + k] !== first + k) return undefined;
    return this.#parent.contiguousRows(first, n);
  }
}

class RelabeledDataset extends Dataset {
  readonly inputShape: readonly number[];
  readonly #parent: Dataset;

  constructor(parent: Dataset, readonly targets: Int32Array, readonly taskLabels: Int32Array) {
    super();
    if (targets.length !== parent.length || taskLabels.length !== parent.length) {
      throw new RangeError(
        `Relabeling needs ${parent.length} labels, got ${targets.length} targets and ${taskLabels.length} task labels`,
      );
    }
    this.#parent = parent;
    this.inputShape = parent.inputShape;
  }

  fillX(i: number, out: Float32Array, offset: number): void {
    this.#parent.fillX(i, out, offset);
  }

  override get fillsInJs(): boolean {
    return this.#parent.fillsInJs;
  }

  override get transforms(): TransformGroups | undefined {
    return this.#parent.transforms;
  }

  override fillBatch(indices: ArrayLike<number>, out: Float32Array, offset = 0): void {
    this.#parent.fillBatch(indices, out, offset);
  }

  override contiguousRows(start: number, n: number): ContiguousRows | undefined {
    return this.#parent.contiguousRows(start, n);
  }
}

/** A view of a dataset with other transform groups; everything else is its parent's. */
class TransformedDataset extends Dataset {
  readonly inputShape: readonly number[];
  readonly targets: Int32Array;
  readonly taskLabels: Int32Array;
  readonly #parent: Dataset;
  readonly #groups: TransformGroups;

  constructor(parent: Dataset, groups: TransformGroups) {
    super();
    this.#parent = parent;
    this.#groups = groups;
    this.inputShape = parent.inputShape;
    this.targets = parent.targets;
    this.taskLabels = parent.taskLabels;
  }

  fillX(i: number, out: Float32Array, offset: number): void {
    this.#parent.fillX(i, out, offset);
  }

  override get fillsInJs(): boolean {
    return this.#parent.fillsInJs;
  }

  override get transforms(): TransformGroups | undefined {
    return this.#groups;
  }

  override fillBatch(indices: ArrayLike<number>, out: Float32Array, offset = 0): void {
    this.#parent.fillBatch(indices, out, offset);
  }

  override contiguousRows(start: number, n: number): ContiguousRows | undefined {
    return this.#parent.contiguousRows(start, n);
  }
}

class ConcatDataset extends Dataset {
  readonly inputShape: readonly number[];
  readonly targets: Int32Array;
  readonly taskLabels: Int32Array;
  readonly #parts: Dataset[];
  readonly #starts: Int32Array;

  constructor(parts: Dataset[]) {
    super();
    const shape = parts[0].inputShape;
    for (const p of parts) {
      if (p.inputShape.join() !== shape.join()) {
        throw new RangeError(
          `Cannot concatenate datasets of input shapes [${shape}] and [${p.inputShape}]`,
        );
      }
    }
    this.inputShape = shape;
    this.#parts = parts;
    this.#starts = new Int32Array(parts.length + 1);
    for (let k = 0; k < parts.length; k++) this.#starts[k + 1] = this.#starts[k] + parts[k].length;
    const n = this.#starts[parts.length];
    this.targets = new Int32Array(n);
    this.taskLabels = new Int32Array(n);
    parts.forEach((p, k) => {
      this.targets.set(p.targets, this.#starts[k]);
      this.taskLabels.set(p.taskLabels, this.#starts[k]);
    });
  }

  fillX(i: number, out: Float32Array, offset: number): void {
    const s = this.#starts;
    let lo = 0, hi = this.#parts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (s[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    this.#parts[lo].fillX(i - s[lo], out, offset);
  }

  override get fillsInJs(): boolean {
    return this.#parts.every((p) => p.fillsInJs);
  }

  override get transforms(): TransformGroups | undefined {
    const first = this.#parts[0].transforms;
    return this.#parts.every((p) => p.transforms === first) ? first : undefined;
  }

  override contiguousRows(start: number, n: number): ContiguousRows | undefined {
    const s = this.#starts;
    for (let k = 0; k < this.#parts.length; k++) {
      if (start >= s[k] && start + n <= s[k + 1]) {
        return this.#parts[k].contiguousRows(start - s[k], n);
      }
    }
    return undefined;
  }
}

/** Concatenates datasets of the same input shape (views, no copy). */
export function concatDatasets(parts: Dataset[]): Dataset {
  const nonEmpty = parts.filter((p) => p.length > 0);
  if (parts.length === 0) throw new RangeError("concatDatasets needs at least one dataset");
  if (nonEmpty.length === 0) return parts[0];
  if (nonEmpty.length === 1) return nonEmpty[0];
  return new ConcatDataset(nonEmpty);
}
