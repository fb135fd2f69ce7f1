/**
 * Rehearsal memories: the samples a continual-learning method keeps from past experiences.
 *
 * One type holds them, {@link SampleMemory}: a dataset whose samples are (source dataset, index)
 * pairs, so that the memory shares its sources' storage, with optional per-sample fields kept
 * alongside inputs and labels (the logits DER stores with each sample, per-sample scores). The
 * replay storage policies and GDumb keep views of the experiences' datasets; GEM and A-GEM
 * ({@link EpisodicMemory}, one memory per experience) keep copies of the samples they pick
 * ({@link SampleMemory.copyOf}), which then do not depend on the experiences' datasets staying
 * alive. Checkpoints hold the samples themselves ({@link SampleMemory.materialize}).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { type Batch, Dataset } from "../data/dataset.ts";
import { StagingArray } from "../nn/staging.ts";
import type { Rng } from "../random.ts";

// ---------------------------------------------------------------------------------------------
// Plain data
// ---------------------------------------------------------------------------------------------

/** A per-sample field as plain data (for checkpoints). */
export interface MaterializedField {
  /** Shape of one sample's values. */
  shape: number[];
  /** The values, sample-major. */
  values: number[];
}

/** A dataset's samples copied out as plain data (for checkpoints). */
export interface MaterializedDataset {
  /** Inputs as the model sees them (after scaling/normalization), sample-major. */
  x: number[];
  /** Class labels. */
  y: number[];
  /** Task labels. */
  t: number[];
  /** Shape of one sample. */
  inputShape: number[];
  /** The memory's per-sample fields, by name (absent when it has none). */
  fields?: Record<string, MaterializedField>;
}

/** Values kept with each sample of a memory (e.g. the model's logits), sample-major. */
export interface SampleField {
  /** Shape of one sample's values (e.g. `[10]` for ten logits). */
  readonly shape: readonly number[];
  /** `length × prod(shape)` values, sample after sample (shared: do not modify). */
  readonly values: Float32Array;
}

/** Memory tensors of some samples, valid in the current tensor scope. */
export interface MemoryTensors {
  /** Inputs [n, ...inputShape]. */
  x: tf.Tensor;
  /** Class labels [n], int32. */
  y: tf.Tensor1D;
  /** Task labels [n], int32. */
  t: tf.Tensor1D;
  /** The task labels as a typed array (what multi-head models read). */
  tArray: Int32Array;
  /** Number of samples. */
  n: number;
}

/** Copies a dataset's samples out as plain data. */
export function materialize(d: Dataset): MaterializedDataset {
  const b = d.batch(Int32Array.from({ length: d.length }, (_, i) => i));
  return {
    x: Array.from(b.x),
    y: Array.from(b.y),
    t: Array.from(b.t),
    inputShape: [...d.inputShape],
  };
}

const product = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

// ---------------------------------------------------------------------------------------------
// Samples copied into a memory
// ---------------------------------------------------------------------------------------------

/** Samples owned by a memory: inputs as float32 values, exactly as the model sees them. */
class CopiedSamples extends Dataset {
  readonly inputShape: readonly number[];
  readonly targets: Int32Array;
  readonly taskLabels: Int32Array;
  /** The inputs, sample-major (never written after construction). */
  readonly values: Float32Array;

  /** Takes the arrays as they are (the caller gives up any other use of them). */
  constructor(x: Float32Array, y: Int32Array, t: Int32Array, inputShape: readonly number[]) {
    super();
    this.inputShape = [...inputShape];
    this.values = x;
    this.targets = y;
    this.taskLabels = t;
  }

  fillX(i: number, out: Float32Array, offset: number): void {
    const size = this.sampleSize;
    out.set(this.values.subarray(i * size, (i + 1) * size), offset);
  }

  override get fillsInJs(): boolean {
    return true;
  }
}

/** The copied samples `m` is made of, when it is all of them in their order. */
function wholeCopy(m: SampleMemory): CopiedSamples | undefined {
  const src = m.sources[0];
  if (m.sources.length !== 1 || !(src instanceof CopiedSamples) || src.length !== m.length) {
    return undefined;
  }
  for (let k = 0; k < m.length; k++) if (m.indexOf[k] !== k) return undefined;
  return src;
}

function checkFieldName(name: unknown): string {
  if (typeof name !== "string" || name.length === 0) {
    throw new TypeError(`A memory field needs a non-empty name, got ${String(name)}`);
  }
  return name;
}

function checkFieldShape(name: string, shape: unknown): number[] {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new RangeError(
      `Memory field "${name}": the shape of one sample's values must hold integers ≥ 1, got ` +
        `${JSON.stringify(shape)}; pass e.g. [10] for ten logits a sample`,
    );
  }
  return [...shape];
}

// ---------------------------------------------------------------------------------------------
// The memory
// ---------------------------------------------------------------------------------------------

/**
 * A memory: samples picked from other datasets, each recorded as (source dataset, index), so that
 * the memory shares the sources' storage, with optional named per-sample fields. Selections and
 * concatenations stay one level deep however many times the memory is updated (fields follow
 * their samples), and sources no longer referenced are dropped. A memory is never changed in
 * place: every operation returns a new one.
 *
 * @example Views, a per-sample field, and the samples as tensors
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { SampleMemory } from "./memory.ts";
 * const d = new ArrayDataset({ x: new Float32Array([0, 1, 2, 3]), y: [0, 1, 0, 1], inputShape: [1] });
 * const m = SampleMemory.of(d).select([3, 1]).withField("score", [0.5, 0.25], [1]);
 * console.assert(m.length === 2 && m.targets.join() === "1,1" && m.batch([0]).x[0] === 3);
 * console.assert(m.select([1]).field("score")!.values[0] === 0.25);
 * ```
 */
export class SampleMemory extends Dataset {
  /** Shape of one sample (that of the sources). */
  readonly inputShape: readonly number[];
  /** Class label of every sample (read from the sources). */
  readonly targets: Int32Array;
  /** Task label of every sample (read from the sources). */
  readonly taskLabels: Int32Array;
  /** The datasets the samples come from. */
  readonly sources: readonly Dataset[];
  /** For each sample: position of its dataset in {@link SampleMemory.sources}. */
  readonly sourceOf: Int32Array;
  /** For each sample: its index in its source dataset. */
  readonly indexOf: Int32Array;
  readonly #fields: ReadonlyMap<string, SampleField>;

  /**
   * Builds a memory from sources and (source, index) pairs. Unreferenced sources are dropped.
   * `inputShape` is needed only when there are no samples (default `[1]`). `fields` are values
   * kept with each sample (taken as they are, not copied).
   */
  constructor(
    sources: readonly Dataset[],
    sourceOf: Int32Array,
    indexOf: Int32Array,
    inputShape?: readonly number[],
    fields?: ReadonlyMap<string, SampleField>,
  ) {
    super();
    if (sourceOf.length !== indexOf.length) {
      throw new RangeError(
        `SampleMemory needs as many source ids (${sourceOf.length}) as indices (${indexOf.length})`,
      );
    }
    // Keep only the sources in use, in order of first use.
    const remap = new Int32Array(sources.length).fill(-1);
    const used: Dataset[] = [];
    const src = new Int32Array(sourceOf.length);
    for (let k = 0; k < sourceOf.length; k++) {
      const s = sourceOf[k];
      const d = sources[s];
      if (!d) throw new RangeError(`SampleMemory: source ${s} does not exist`);
      if (!(indexOf[k] >= 0 && indexOf[k] < d.length)) {
        throw new RangeError(
          `SampleMemory: index ${indexOf[k]} is out of range for a source of ${d.length}`,
        );
      }
      if (remap[s] < 0) {
        remap[s] = used.length;
        used.push(d);
      }
      src[k] = remap[s];
    }
    const shape = used[0]?.inputShape ?? inputShape ?? [1];
    for (const d of used) {
      if (d.inputShape.join() !== shape.join()) {
        throw new RangeError(
          `A memory cannot mix samples of input shapes [${shape}] and [${d.inputShape}]`,
        );
      }
    }
    this.inputShape = [...shape];
    this.sources = used;
    this.sourceOf = src;
    this.indexOf = Int32Array.from(indexOf);
    const n = src.length;
    this.targets = new Int32Array(n);
    this.taskLabels = new Int32Array(n);
    for (let k = 0; k < n; k++) {
      const d = used[src[k]];
      this.targets[k] = d.targets[this.indexOf[k]];
      this.taskLabels[k] = d.taskLabels[this.indexOf[k]];
    }
    for (const [name, f] of fields ?? []) {
      checkFieldName(name);
      const size = product(checkFieldShape(name, f?.shape));
      if (!(f.values instanceof Float32Array) || f.values.length !== n * size) {
        throw new RangeError(
          `Memory field "${name}" holds ${f.values?.length} values for ${n} samples of ${size}: ` +
            `give ${n * size} values as a Float32Array`,
        );
      }
    }
    this.#fields = fields ?? new Map();
  }

  /** Every sample of `dataset`, in order (a memory is returned as is). */
  static of(dataset: Dataset): SampleMemory {
    if (dataset instanceof SampleMemory) return dataset;
    const n = dataset.length;
    return new SampleMemory(
      [dataset],
      new Int32Array(n),
      Int32Array.from({ length: n }, (_, i) => i),
      dataset.inputShape,
    );
  }

  /** An empty memory (of input shape `inputShape`, default `[1]`). */
  static empty(inputShape: readonly number[] = [1]): SampleMemory {
    return new SampleMemory([], new Int32Array(0), new Int32Array(0), inputShape);
  }

  /**
   * The samples of `dataset` at `indices` (default: all, in order) copied into a new memory, as
   * the model sees them: the memory keeps no reference to `dataset`. A memory's fields are
   * copied with its samples.
   */
  static copyOf(dataset: Dataset, indices?: ArrayLike<number>): SampleMemory {
    if (dataset instanceof SampleMemory) {
      const part = indices ? dataset.select(indices) : dataset;
      const b = part.batch(Int32Array.from({ length: part.length }, (_, i) => i));
      return copied(b.x, b.y, b.t, part.inputShape, part.#fields);
    }
    const idx = indices ?? Int32Array.from({ length: dataset.length }, (_, i) => i);
    return SampleMemory.fromBatch(dataset.batch(idx), dataset.inputShape);
  }

  /** The first `batch.n` samples of a minibatch, copied into a new memory. */
  static fromBatch(batch: Batch, inputShape: readonly number[]): SampleMemory {
    const size = product(inputShape);
    if (batch.x.length < batch.n * size || batch.y.length < batch.n || batch.t.length < batch.n) {
      throw new RangeError(
        `Memory chunk of ${batch.n} samples needs ${batch.n * size} inputs and ${batch.n} labels`,
      );
    }
    return copied(
      batch.x.slice(0, batch.n * size),
      batch.y.slice(0, batch.n),
      batch.t.slice(0, batch.n),
      inputShape,
    );
  }

  /** The memories one after the other (shared sources are merged; fields must agree). */
  static concat(parts: readonly SampleMemory[]): SampleMemory {
    const sources: Dataset[] = [];
    const ids = new Map<Dataset, number>();
    let n = 0;
    for (const p of parts) n += p.length;
    const src = new Int32Array(n);
    const idx = new Int32Array(n);
    let k = 0;
    for (const p of parts) {
      const local = p.sources.map((d) => {
        let id = ids.get(d);
        if (id === undefined) {
          ids.set(d, id = sources.length);
          sources.push(d);
        }
        return id;
      });
      for (let i = 0; i < p.length; i++, k++) {
        src[k] = local[p.sourceOf[i]];
        idx[k] = p.indexOf[i];
      }
    }
    const shape = parts.find((p) => p.length > 0)?.inputShape ?? parts[0]?.inputShape;
    return new SampleMemory(sources, src, idx, shape, concatFields(parts));
  }

  /** The samples at `indices` (in that order), as a memory over the same sources. */
  select(indices: ArrayLike<number>): SampleMemory {
    const n = indices.length;
    const src = new Int32Array(n);
    const idx = new Int32Array(n);
    for (let k = 0; k < n; k++) {
      const i = indices[k];
      if (!(i >= 0 && i < this.length)) {
        throw new RangeError(`Sample index ${i} is out of range for a memory of ${this.length}`);
      }
      src[k] = this.sourceOf[i];
      idx[k] = this.indexOf[i];
    }
    const fields = new Map<string, SampleField>();
    for (const [name, f] of this.#fields) {
      const size = product(f.shape);
      const values = new Float32Array(n * size);
      for (let k = 0; k < n; k++) {
        values.set(f.values.subarray(indices[k] * size, (indices[k] + 1) * size), k * size);
      }
      fields.set(name, { shape: f.shape, values });
    }
    return new SampleMemory(this.sources, src, idx, this.inputShape, fields);
  }

  /** Names of the per-sample fields, in the order they were added. */
  get fieldNames(): string[] {
    return [...this.#fields.keys()];
  }

  /** The per-sample field `name`, or undefined when the memory has none of that name. */
  field(name: string): SampleField | undefined {
    return this.#fields.get(name);
  }

  /**
   * The same samples with the field `name` set to `values` (copied): `prod(shape)` values per
   * sample, sample-major, in the memory's order. A field of that name is replaced.
   *
   * @param shape shape of one sample's values, e.g. `[10]` for ten logits.
   */
  withField(name: string, values: ArrayLike<number>, shape: readonly number[]): SampleMemory {
    checkFieldName(name);
    const size = product(checkFieldShape(name, shape));
    if (!values || values.length !== this.length * size) {
      throw new RangeError(
        `Memory field "${name}": ${values?.length} values for ${this.length} samples of ` +
          `${size}; pass ${this.length * size} values, sample after sample`,
      );
    }
    const fields = new Map(this.#fields);
    fields.set(name, { shape: [...shape], values: Float32Array.from(values) });
    return new SampleMemory(this.sources, this.sourceOf, this.indexOf, this.inputShape, fields);
  }

  /** Writes sample `i`'s input (read from its source) into `out` at `offset`. */
  fillX(i: number, out: Float32Array, offset: number): void {
    this.sources[this.sourceOf[i]].fillX(this.indexOf[i], out, offset);
  }

  /** Filled by the sources' own code: JavaScript alone when theirs is. */
  override get fillsInJs(): boolean {
    return this.sources.every((d) => d.fillsInJs);
  }

  /**
   * Each run of consecutive samples from one source is filled by one call of that source's
   * `fillBatch`, which converts a whole minibatch at once.
   */
  override fillBatch(indices: ArrayLike<number>, out: Float32Array, offset = 0): void {
    const n = indices.length, size = this.sampleSize, length = this.length;
    const local = new Int32Array(n);
    let start = 0;
    while (start < n) {
      const first = indices[start];
      if (!(Number.isInteger(first) && first >= 0 && first < length)) {
        throw new RangeError(`Sample index ${first} is out of range for a memory of ${length}`);
      }
      const source = this.sourceOf[first];
      let end = start;
      for (; end < n; end++) {
        const i = indices[end];
        if (!(Number.isInteger(i) && i >= 0 && i < length)) {
          throw new RangeError(`Sample index ${i} is out of range for a memory of ${length}`);
        }
        if (this.sourceOf[i] !== source) break;
        local[end] = this.indexOf[i];
      }
      this.sources[source].fillBatch(local.subarray(start, end), out, offset + start * size);
      start = end;
    }
  }

  /**
   * Tensors of the samples at `indices` (default: every sample, in order), new tensors of the
   * current scope. Inputs are filled into `staging` when given (see {@link StagingArray}); a
   * memory of copies asked for all its samples hands its own array over, with no copy.
   */
  tensors(indices?: Int32Array, staging?: StagingArray): MemoryTensors {
    const shape = [...this.inputShape];
    if (!indices) {
      const own = wholeCopy(this);
      const n = this.length;
      return {
        x: own
          ? tf.tensor(own.values, [n, ...shape], "float32")
          : inputTensor(this, Int32Array.from({ length: n }, (_, i) => i), shape, staging),
        y: tf.tensor1d(this.targets, "int32"),
        t: tf.tensor1d(this.taskLabels, "int32"),
        tArray: this.taskLabels,
        n,
      };
    }
    const total = this.length;
    for (const i of indices) {
      if (!(i >= 0 && i < total)) {
        throw new RangeError(`Memory index ${i} is out of range for a memory of ${total}`);
      }
    }
    const tArray = indices.map((i) => this.taskLabels[i]);
    return {
      x: inputTensor(this, indices, shape, staging),
      y: tf.tensor1d(indices.map((i) => this.targets[i]), "int32"),
      t: tf.tensor1d(tArray, "int32"),
      tArray,
      n: indices.length,
    };
  }

  /** The samples (and fields) copied out as plain data (for a checkpoint). */
  materialize(): MaterializedDataset {
    const m = materialize(this);
    if (this.#fields.size === 0) return m;
    m.fields = Object.fromEntries(
      [...this.#fields].map(([name, f]) => [name, {
        shape: [...f.shape],
        values: Array.from(f.values),
      }]),
    );
    return m;
  }

  /** A memory over a copy of materialized samples (from {@link SampleMemory.materialize}). */
  static fromMaterialized(m: MaterializedDataset): SampleMemory {
    if (
      !m || !Array.isArray(m.x) || !Array.isArray(m.y) || !Array.isArray(m.t) ||
      !Array.isArray(m.inputShape)
    ) {
      throw new TypeError(
        "A materialized dataset needs arrays x, y, t and inputShape (from SampleMemory.materialize)",
      );
    }
    const fields = fieldsFromPlain(m.fields);
    if (m.y.length === 0 && fields.size === 0) return SampleMemory.empty(m.inputShape);
    if (m.x.length !== m.y.length * product(m.inputShape) || m.t.length !== m.y.length) {
      throw new RangeError(
        `A materialized dataset of ${m.y.length} labels holds ${m.x.length} inputs and ` +
          `${m.t.length} task labels for samples of shape [${m.inputShape}]`,
      );
    }
    return copied(
      Float32Array.from(m.x),
      Int32Array.from(m.y),
      Int32Array.from(m.t),
      m.inputShape,
      fields,
    );
  }
}

/**
 * The memory class under its earlier name (the replay storage policies' and GDumb's memory):
 * the same class, so `new`, the static methods and `instanceof` work as before.
 */
export const MemoryDataset: typeof SampleMemory = SampleMemory;
/** The memory type under its earlier name: {@link SampleMemory}. */
export type MemoryDataset = SampleMemory;

/** A memory over arrays it takes over (every sample, in order). */
function copied(
  x: Float32Array,
  y: Int32Array,
  t: Int32Array,
  inputShape: readonly number[],
  fields?: ReadonlyMap<string, SampleField>,
): SampleMemory {
  const own = new CopiedSamples(x, y, t, inputShape);
  const n = own.length;
  return new SampleMemory(
    [own],
    new Int32Array(n),
    Int32Array.from({ length: n }, (_, i) => i),
    inputShape,
    fields,
  );
}

function inputTensor(
  m: SampleMemory,
  indices: Int32Array,
  shape: number[],
  staging: StagingArray | undefined,
): tf.Tensor {
  const n = indices.length;
  const fill = (out: Float32Array) => m.fillBatch(indices, out, 0);
  if (staging) return staging.tensor([n, ...shape], fill);
  const x = new Float32Array(n * m.sampleSize);
  fill(x);
  return tf.tensor(x, [n, ...shape], "float32");
}

/** The fields of the concatenation of `parts` (every part with samples must have the same). */
function concatFields(parts: readonly SampleMemory[]): Map<string, SampleField> {
  const withSamples = parts.filter((p) => p.length > 0);
  const first = withSamples[0] ?? parts[0];
  const out = new Map<string, SampleField>();
  if (!first) return out;
  const names = first.fieldNames;
  withSamples.forEach((p, i) => {
    const mine = p.fieldNames;
    const same = mine.length === names.length && names.every((name) => {
      const a = p.field(name), b = first.field(name)!;
      return a !== undefined && a.shape.join() === b.shape.join();
    });
    if (!same) {
      throw new RangeError(
        `Cannot concatenate memories with different fields: [${names}] and [${mine}] ` +
          `(part ${parts.indexOf(withSamples[i])}); give every part the same fields and shapes`,
      );
    }
  });
  for (const name of names) {
    const shape = first.field(name)!.shape;
    const size = product(shape);
    const values = new Float32Array(withSamples.reduce((a, p) => a + p.length, 0) * size);
    let at = 0;
    for (const p of withSamples) {
      values.set(p.field(name)!.values, at);
      at += p.length * size;
    }
    out.set(name, { shape, values });
  }
  return out;
}

function fieldsFromPlain(
  plain: Record<string, MaterializedField> | undefined,
): Map<string, SampleField> {
  const out = new Map<string, SampleField>();
  if (plain === undefined) return out;
  if (!plain || typeof plain !== "object") {
    throw new TypeError(
      `A materialized dataset's fields must be an object of { shape, values }, got ${
        String(plain)
      }`,
    );
  }
  for (const [name, f] of Object.entries(plain)) {
    if (!f || !Array.isArray(f.values)) {
      throw new TypeError(`Materialized memory field "${name}" needs { shape, values: number[] }`);
    }
    out.set(name, { shape: checkFieldShape(name, f.shape), values: Float32Array.from(f.values) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// One memory per experience (GEM, A-GEM)
// ---------------------------------------------------------------------------------------------

/** Plain-data form of an {@link EpisodicMemory} (for checkpoints). */
export interface EpisodicMemoryState {
  /** Shape of one input sample. */
  inputShape: number[];
  /** The samples stored for each training experience, in order (fields when it has any). */
  experiences: {
    x: number[];
    y: number[];
    t: number[];
    fields?: Record<string, MaterializedField>;
  }[];
}

/**
 * Samples kept from past training experiences, one {@link SampleMemory} per experience, as GEM
 * and A-GEM keep them. {@link EpisodicMemory.add} and {@link EpisodicMemory.addRandom} store
 * copies (typed arrays); tensors are made from them when a gradient needs them (in the
 * iteration's tensor scope), so the memory holds no tensor at all:
 * uploading a few hundred samples is cheaper on the wasm and cpu backends than slicing or
 * gathering a device buffer, and the tensor count cannot grow with the number of experiences.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { Rng } from "../random.ts";
 * import { EpisodicMemory } from "./memory.ts";
 * const d = new ArrayDataset({ x: new Float32Array(10 * 2), y: [0, 1, 0, 1, 0, 1, 0, 1, 0, 1], inputShape: [2] });
 * const memory = new EpisodicMemory();
 * memory.addRandom(d, 4, new Rng(0));
 * console.assert(memory.experiences === 1 && memory.size === 4 && memory.buffer.length === 4);
 * ```
 */
export class EpisodicMemory {
  #parts: SampleMemory[] = [];
  /** Each part's samples as a minibatch, made when first asked for. */
  #chunks: (Batch | undefined)[] = [];
  #all: SampleMemory = SampleMemory.empty();
  #inputShape: number[] | undefined;
  /** Reused staging array of {@link EpisodicMemory.gather}. */
  #staging = new StagingArray();

  /** Number of experiences stored. */
  get experiences(): number {
    return this.#parts.length;
  }

  /** Total number of samples. */
  get size(): number {
    return this.#all.length;
  }

  /** Samples of each stored experience. */
  get sizes(): number[] {
    return this.#parts.map((p) => p.length);
  }

  /** Shape of one input sample (undefined while empty). */
  get inputShape(): readonly number[] | undefined {
    return this.#inputShape;
  }

  /** Every stored sample, experience after experience, as one memory. */
  get buffer(): SampleMemory {
    return this.#all;
  }

  /** Class labels of every stored sample, experience after experience (shared: do not modify). */
  get targets(): Int32Array {
    return this.#all.targets;
  }

  /** Task labels of every stored sample (shared: do not modify). */
  get taskLabels(): Int32Array {
    return this.#all.taskLabels;
  }

  /** The samples stored for experience `k`. */
  part(k: number): SampleMemory {
    const p = this.#parts[k];
    if (!p) {
      throw new RangeError(
        `Memory has ${this.#parts.length} experiences, experience ${k} does not exist`,
      );
    }
    return p;
  }

  /** The stored samples of experience `k` (typed arrays, shared: do not modify). */
  chunk(k: number): Batch {
    const p = this.part(k);
    let c = this.#chunks[k];
    if (!c) {
      const own = wholeCopy(p);
      c = own
        ? { x: own.values, y: own.targets, t: own.taskLabels, n: own.length }
        : p.batch(Int32Array.from({ length: p.length }, (_, i) => i));
      this.#chunks[k] = c;
    }
    return c;
  }

  /** Stores a chunk (one experience's samples, copied). */
  add(batch: Batch, inputShape: readonly number[]): void {
    this.#checkShape(inputShape);
    this.addMemory(SampleMemory.fromBatch(batch, inputShape));
  }

  /**
   * Stores `samples` as the next experience's, as they are (a memory of copies, from
   * {@link SampleMemory.copyOf}, does not depend on the datasets it was taken from). Every
   * experience's samples must have the same per-sample fields.
   */
  addMemory(samples: SampleMemory): void {
    if (!(samples instanceof SampleMemory)) {
      throw new TypeError(
        `EpisodicMemory.addMemory expects a SampleMemory, got ${String(samples)}: wrap a ` +
          `dataset with SampleMemory.copyOf(dataset, indices)`,
      );
    }
    this.#checkShape(samples.inputShape);
    const had = this.#parts.find((p) => p.length > 0)?.fieldNames;
    if (had && samples.length > 0 && had.join() !== samples.fieldNames.join()) {
      throw new RangeError(
        `Memory holds samples with the fields [${had}], cannot add samples with [` +
          `${samples.fieldNames}]: give every experience's samples the same fields`,
      );
    }
    const all = SampleMemory.concat([...this.#parts, samples]);
    this.#parts.push(samples);
    this.#all = all;
    this.#inputShape = [...samples.inputShape];
  }

  /**
   * Stores `min(k, dataset.length)` samples of `dataset` drawn uniformly without replacement
   * from `rng`; returns the indices picked.
   */
  addRandom(dataset: Dataset, k: number, rng: Rng): Int32Array {
    const idx = rng.sample(dataset.length, Math.min(k, dataset.length));
    this.#checkShape(dataset.inputShape);
    this.addMemory(SampleMemory.copyOf(dataset, idx));
    return idx;
  }

  #checkShape(inputShape: readonly number[]): void {
    if (this.#inputShape && this.#inputShape.join() !== inputShape.join()) {
      throw new RangeError(
        `Memory holds samples of shape [${this.#inputShape}], cannot add samples of shape ` +
          `[${inputShape}]: every experience must have the same input shape`,
      );
    }
  }

  /** Tensors of experience `k`'s samples (new tensors of the current scope). */
  experienceTensors(k: number): MemoryTensors {
    return this.part(k).tensors();
  }

  /** Tensors of the samples at `indices` of the merged memory (new tensors of the current scope). */
  gather(indices: Int32Array): MemoryTensors {
    return this.#all.tensors(indices, this.#staging);
  }

  /** Plain-data state. */
  state(): EpisodicMemoryState {
    return {
      inputShape: [...(this.#inputShape ?? [])],
      experiences: this.#parts.map((p, k) => {
        const c = this.chunk(k);
        const e: EpisodicMemoryState["experiences"][number] = {
          x: Array.from(c.x),
          y: Array.from(c.y),
          t: Array.from(c.t),
        };
        if (p.fieldNames.length > 0) e.fields = p.materialize().fields;
        return e;
      }),
    };
  }

  /** Replaces the content with what {@link EpisodicMemory.state} returned. */
  loadState(state: EpisodicMemoryState): void {
    if (
      !state || !Array.isArray(state.inputShape) || !Array.isArray(state.experiences) ||
      state.inputShape.some((d) => !Number.isInteger(d) || d < 1)
    ) {
      throw new TypeError(
        "Not an episodic memory state: expected { inputShape: number[], experiences: [...] }",
      );
    }
    const size = product(state.inputShape);
    const parts = state.experiences.map((e, k) => {
      const n = e?.y?.length;
      if (!Array.isArray(e?.x) || e.x.length !== n * size || e.t?.length !== n) {
        throw new RangeError(
          `Memory state of experience ${k} is inconsistent: ${e?.x?.length} inputs, ` +
            `${n} labels, ${e?.t?.length} task labels for samples of ${size} values`,
        );
      }
      return copied(
        Float32Array.from(e.x),
        Int32Array.from(e.y),
        Int32Array.from(e.t),
        state.inputShape,
        fieldsFromPlain(e.fields),
      );
    });
    this.#parts = parts;
    this.#chunks = [];
    this.#all = SampleMemory.concat(parts);
    this.#inputShape = parts.length > 0 ? [...state.inputShape] : undefined;
  }

  /** Empties the memory. */
  clear(): void {
    this.#parts = [];
    this.#chunks = [];
    this.#all = SampleMemory.empty();
    this.#inputShape = undefined;
  }
}
