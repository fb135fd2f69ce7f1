/**
 * Datasets as compact typed arrays. Samples stay as bytes (or floats) until a minibatch is asked
 * for; subsets, relabelings and concatenations are views that share the underlying storage.
 *
 * @module
 */

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

  /** Number of samples. */
  get length(): number {
    return this.targets.length;
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
    const b = into && into.x.length >= n * size && into.y.length >= n ? into : {
      x: new Float32Array(n * size),
      y: new Int32Array(n),
      t: new Int32Array(n),
      n,
    };
    b.n = n;
    for (let k = 0; k < n; k++) {
      const i = indices[k];
      if (!(i >= 0 && i < this.length)) {
        throw new RangeError(`Sample index ${i} is out of range for a dataset of ${this.length}`);
      }
      this.fillX(i, b.x, k * size);
      b.y[k] = this.targets[i];
      b.t[k] = this.taskLabels[i];
    }
    return b;
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
  /** Subtracted after scaling. @default 0 */
  mean?: number;
  /** Divides after subtracting the mean. @default 1 */
  std?: number;
  /** Feature permutation: feature k of a sample is raw feature `permutation[k]`. */
  permutation?: Int32Array;
}

/** Bytes the input caches of all {@link ArrayDataset}s may hold together. */
let cacheBudget = 512 * 2 ** 20;
/** Bytes held now. */
let cacheHeld = 0;
const cacheRelease = new FinalizationRegistry<number>((bytes) => {
  cacheHeld -= bytes;
});

/**
 * Sets how many bytes the input caches of {@link ArrayDataset}s may hold together (512 MiB by
 * default; 0 turns caching off). A dataset stored as bytes (or permuted, or with a scale) keeps
 * its samples' final float32 values once it has converted more than twice its length, e.g. a
 * test set evaluated after every experience or a training set in its third epoch: batches then
 * copy instead of converting. A dataset seen once never pays for a cache. Returns the previous
 * budget.
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
  readonly #scale: number;
  readonly #shift: number;
  readonly #perm: Int32Array | undefined;
  /** Samples converted so far (until a cache is built or refused). */
  #converted = 0;
  /** Every sample's final values, once built; null when refused (over budget, no work). */
  #cache: Float32Array | null | undefined;
  readonly options: Readonly<ArrayDatasetOptions>;

  constructor(opts: ArrayDatasetOptions) {
    super();
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
    const std = opts.std ?? 1;
    if (!(std > 0)) throw new RangeError(`std must be > 0, got ${std}`);
    this.options = opts;
    this.inputShape = [...opts.inputShape];
    this.targets = Int32Array.from(opts.y);
    this.taskLabels = opts.taskLabels ? Int32Array.from(opts.taskLabels) : new Int32Array(n);
    this.#x = opts.x;
    this.#size = size;
    this.#scale = (opts.scale ?? 1) / std;
    this.#shift = -(opts.mean ?? 0) / std;
    this.#perm = opts.permutation;
    if (opts.x instanceof Uint8Array) {
      this.#lut = new Float32Array(256);
      for (let v = 0; v < 256; v++) this.#lut[v] = v * this.#scale + this.#shift;
    }
  }

  fillX(i: number, out: Float32Array, offset: number): void {
    const cache = this.#cache;
    if (cache) {
      const base = i * this.#size;
      out.set(cache.subarray(base, base + this.#size), offset);
      return;
    }
    this.#convert(i, out, offset);
    if (cache === undefined && ++this.#converted > 2 * this.length) this.#buildCache();
  }

  /** Converts every sample once into a cache, when conversion does work and it fits. */
  #buildCache(): void {
    const x = this.#x;
    const plain = x instanceof Float32Array && !this.#perm && this.#scale === 1 &&
      this.#shift === 0;
    const bytes = x.length * 4;
    if (plain || cacheHeld + bytes > cacheBudget) {
      this.#cache = null;
      return;
    }
    const cache = new Float32Array(x.length);
    for (let i = 0, n = this.length; i < n; i++) this.#convert(i, cache, i * this.#size);
    cacheHeld += bytes;
    cacheRelease.register(this, bytes);
    this.#cache = cache;
  }

  /** Sample `i`'s final values into `out` at `offset`. */
  #convert(i: number, out: Float32Array, offset: number): void {
    const size = this.#size;
    const base = i * size;
    const x = this.#x;
    const perm = this.#perm;
    const lut = this.#lut;
    if (lut) {
      if (perm) { for (let k = 0; k < size; k++) out[offset + k] = lut[x[base + perm[k]]]; }
      else for (let k = 0; k < size; k++) out[offset + k] = lut[x[base + k]];
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
}

/** Concatenates datasets of the same input shape (views, no copy). */
export function concatDatasets(parts: Dataset[]): Dataset {
  const nonEmpty = parts.filter((p) => p.length > 0);
  if (parts.length === 0) throw new RangeError("concatDatasets needs at least one dataset");
  if (nonEmpty.length === 0) return parts[0];
  if (nonEmpty.length === 1) return nonEmpty[0];
  return new ConcatDataset(nonEmpty);
}
