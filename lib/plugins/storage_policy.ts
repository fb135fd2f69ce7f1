/**
 * Storage policies: which past samples a rehearsal memory keeps (Avalanche's
 * `avalanche/training/storage_policy.py`).
 *
 * A memory is a set of views over the experiences' datasets (no pixel is copied): a
 * {@link SampleMemory} (`memory.ts`, also exported here, and under its earlier name
 * `MemoryDataset`) records, for each kept sample, the dataset it came from and its index there,
 * and carries its per-sample fields through every update. Samples are copied only to write a
 * checkpoint ({@link StoragePolicy.state}).
 *
 * - {@link ReservoirSamplingBuffer}: a uniform random sample of everything seen (reservoir
 *   sampling through random weights).
 * - {@link ExperienceBalancedStoragePolicy} (Avalanche's `ExperienceBalancedBuffer`): one
 *   reservoir per experience, the memory split equally among them.
 * - {@link ClassBalancedStoragePolicy} (Avalanche's `ClassBalancedBuffer`): one reservoir per
 *   class, the memory split equally among the classes seen.
 * - {@link ParametricBuffer} (Avalanche's): groups by class, task, experience or none, each
 *   group's samples chosen again by a selection strategy at every update: random, herding
 *   ({@link HerdingSelectionStrategy}) or closest to the class mean
 *   ({@link ClosestToCenterSelectionStrategy}), the last two on the model's features.
 *
 * Avalanche 0.6's names are exported too: `ExemplarsBuffer` ({@link StoragePolicy}),
 * `BalancedExemplarsBuffer` ({@link BalancedStoragePolicy}), `ExperienceBalancedBuffer`
 * ({@link ExperienceBalancedStoragePolicy}) and `ClassBalancedBuffer`
 * ({@link ClassBalancedStoragePolicy}), the same classes under a second name (so a checkpoint
 * written with one name loads into the other), with 0.6's positional parameters.
 *
 * Every random choice draws from the run's generator (`ctx.rng`).
 *
 * @module
 */
import type { Dataset } from "../data/dataset.ts";
import type { Experience } from "../data/experience.ts";
import type { Rng } from "../random.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { extractFeatures, type Features } from "../models/features.ts";
import type { Module } from "../nn/module.ts";
import { type MaterializedDataset, SampleMemory } from "./memory.ts";
import { anyOf, checkOptions, instanceOf, oneOf, type OptionSpec } from "../options.ts";

export {
  materialize,
  type MaterializedDataset,
  type MaterializedField,
  MemoryDataset,
  type SampleField,
  SampleMemory,
} from "./memory.ts";

// ---------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------

/**
 * What a storage policy reads from the run when updated: the experience just trained and the
 * generator; the model and the settings too where a selection strategy reads features
 * ({@link FeatureBasedExemplarsSelectionStrategy}); a strategy's context has them all.
 */
export type StorageContext =
  & Pick<StrategyContext, "experience" | "rng">
  & Partial<Pick<StrategyContext, "model" | "settings">>;

/** Plain-data state of one reservoir group. */
export interface ReservoirGroupState {
  /** Group key (experience index, class label, or 0 for a plain reservoir). */
  key: number;
  /** The group's capacity. */
  maxSize: number;
  /** Number of samples of the group in {@link StoragePolicyState.data}. */
  size: number;
  /** Reservoir weights (descending), or null when they are not drawn yet (initial `extMem`). */
  weights: number[] | null;
}

/** Plain-data state of a storage policy (JSON-serializable). */
export interface StoragePolicyState {
  /** Class name of the policy that wrote it. */
  kind: string;
  /** Total capacity. */
  maxSize: number;
  /** The groups, in order. */
  groups: ReservoirGroupState[];
  /** The samples of every group, concatenated in group order. */
  data: MaterializedDataset;
  /** Policy-specific fields. */
  extra: Record<string, unknown>;
}

function checkSize(fn: string, name: string, v: unknown, fix: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new RangeError(`${fn}: ${name} must be an integer ≥ 0, got ${String(v)}; ${fix}`);
  }
  return v;
}

function requireExperience(fn: string, ctx: StorageContext): Experience {
  if (!ctx || !ctx.experience) {
    throw new TypeError(
      `${fn}.update needs the experience just trained (ctx.experience): call it in afterTrainingExp`,
    );
  }
  if (!ctx.rng || typeof ctx.rng.next !== "function") {
    throw new TypeError(`${fn}.update needs the run's generator (ctx.rng)`);
  }
  return ctx.experience;
}

/**
 * A rehearsal memory (Avalanche's `ExemplarsBuffer`): `buffer` holds the samples kept from past
 * experiences; `update(ctx)` is called after training each experience; `resize` changes the
 * capacity. Balanced policies keep their samples in `groups` (key → samples) and `buffer` is
 * the concatenation of the groups in order.
 */
export abstract class StoragePolicy {
  #maxSize: number;

  /**
   * A policy of capacity `maxSize`.
   * @param maxSize capacity (samples, ≥ 0).
   */
  constructor(maxSize: number) {
    this.#maxSize = checkSize(
      this.constructor.name,
      "maxSize",
      maxSize,
      "pass the number of samples the memory may hold",
    );
  }

  /** Capacity: the most samples the memory holds. */
  get maxSize(): number {
    return this.#maxSize;
  }

  /** Sets the capacity without touching the samples (subclasses resize their groups). */
  protected setMaxSize(n: number): void {
    this.#maxSize = checkSize(this.constructor.name, "maxSize", n, "pass a new capacity");
  }

  /** The samples held (an empty dataset before the first update). */
  abstract get buffer(): Dataset;

  /** The samples by group key (experience index, class label; one group 0 for a reservoir). */
  abstract get groups(): ReadonlyMap<number, Dataset>;

  /** Adds the data of the experience just trained (`ctx.experience`), drawing from `ctx.rng`. */
  abstract update(ctx: StorageContext): void;

  /** Changes the capacity; a smaller one drops samples (the groups keep random subsets). */
  abstract resize(newSize: number): void;

  /** The memory as plain data, samples included, for checkpoints. */
  abstract state(): StoragePolicyState;

  /** Restores what {@link StoragePolicy.state} returned (by a policy of the same class). */
  abstract loadState(state: StoragePolicyState): void;

  /** Throws unless `state` is a state written by a policy of this class. */
  protected checkKind(state: StoragePolicyState): void {
    if (!state || typeof state !== "object" || !Array.isArray(state.groups) || !state.data) {
      throw new TypeError(`Not a storage policy state: ${String(state)}`);
    }
    if (state.kind !== this.constructor.name) {
      throw new TypeError(
        `Cannot load the state of a ${state.kind} into a ${this.constructor.name}: build the ` +
          `plugin with the same storage policy as the checkpointed run`,
      );
    }
  }
}

/**
 * Reservoir sampling (Avalanche's `ReservoirSamplingBuffer`): each sample ever offered gets a
 * uniform random weight from `ctx.rng`, and the memory keeps the `maxSize` samples of largest
 * weight among the old memory and the new data. The memory is thus a uniform random subset of
 * everything seen, whatever the order; shrinking keeps the samples of largest weight (again a
 * uniform random subset).
 *
 * Samples are ordered by decreasing weight; on ties the new data come first (as Avalanche
 * concatenates new data before the old buffer).
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { Rng } from "../random.ts";
 * import { ReservoirSamplingBuffer } from "./storage_policy.ts";
 * const d = new ArrayDataset({ x: new Float32Array(100), y: new Array(100).fill(0), inputShape: [1] });
 * const r = new ReservoirSamplingBuffer(10);
 * r.updateFromDataset(d, new Rng(0));
 * console.assert(r.buffer.length === 10);
 * ```
 */
export class ReservoirSamplingBuffer extends StoragePolicy {
  #data: SampleMemory = SampleMemory.empty();
  /** Sorted descending, aligned with #data; null while not drawn (initial extMem data). */
  #weights: Float64Array | null = new Float64Array(0);

  /**
   * An empty reservoir.
   * @param maxSize capacity of the memory (samples).
   */
  constructor(maxSize: number) {
    super(maxSize);
  }

  /**
   * A reservoir holding `data` already (e.g. a group of an initial `extMem`): their weights are
   * drawn at the next update, in order; a resize before that keeps the first samples.
   */
  static withData(maxSize: number, data: Dataset): ReservoirSamplingBuffer {
    const r = new ReservoirSamplingBuffer(maxSize);
    r.#data = SampleMemory.of(data);
    r.#weights = null;
    r.resize(maxSize);
    return r;
  }

  /** The samples kept, by decreasing weight. */
  get buffer(): SampleMemory {
    return this.#data;
  }

  /** One group, key 0: the buffer. */
  get groups(): ReadonlyMap<number, Dataset> {
    return new Map([[0, this.#data]]);
  }

  /** The samples' weights, in buffer order (decreasing); empty until drawn. */
  get weights(): Float64Array {
    return this.#weights ? this.#weights.slice() : new Float64Array(0);
  }

  /** Offers the samples of `ctx.experience.dataset` to the reservoir. */
  update(ctx: StorageContext): void {
    const exp = requireExperience("ReservoirSamplingBuffer", ctx);
    this.updateFromDataset(exp.dataset, ctx.rng);
  }

  /** Draws the weights of data held without them (initial extMem), in order. */
  drawPendingWeights(rng: Rng): void {
    if (this.#weights) return;
    const w = new Float64Array(this.#data.length);
    for (let i = 0; i < w.length; i++) w[i] = rng.next();
    const order = sortDescending(w);
    this.#data = this.#data.select(order);
    this.#weights = Float64Array.from(order, (i) => w[i]);
  }

  /**
   * Offers the samples of `data` (those at `indices` when given, in that order) to the
   * reservoir: each gets a weight `rng.next()`, and the `maxSize` largest weights of old and
   * new samples stay.
   */
  updateFromDataset(data: Dataset, rng: Rng, indices?: ArrayLike<number>): void {
    this.drawPendingWeights(rng);
    const all = SampleMemory.of(data);
    const fresh = indices ? all.select(indices) : all;
    if (fresh.length === 0) return;
    if (this.#data.length > 0 && fresh.inputShape.join() !== this.#data.inputShape.join()) {
      throw new RangeError(
        `Cannot add samples of input shape [${fresh.inputShape}] to a memory of [${this.#data.inputShape}]`,
      );
    }
    const n = fresh.length;
    const w = new Float64Array(n + this.#data.length);
    for (let i = 0; i < n; i++) w[i] = rng.next();
    w.set(this.#weights!, n);
    const keep = sortDescending(w).subarray(0, Math.min(this.maxSize, w.length));
    this.#data = SampleMemory.concat([fresh, this.#data]).select(keep);
    this.#weights = Float64Array.from(keep, (i) => w[i]);
  }

  /** Sets the capacity; a smaller one keeps the samples of largest weight. */
  resize(newSize: number): void {
    this.setMaxSize(newSize);
    if (this.#data.length <= newSize) return;
    const keep = Int32Array.from({ length: newSize }, (_, i) => i);
    this.#data = this.#data.select(keep);
    if (this.#weights) this.#weights = this.#weights.slice(0, newSize);
  }

  /** This reservoir as one group of a state. */
  groupState(key: number): ReservoirGroupState {
    return {
      key,
      maxSize: this.maxSize,
      size: this.#data.length,
      weights: this.#weights ? Array.from(this.#weights) : null,
    };
  }

  /** Rebuilds a reservoir from a group state and its samples. */
  static fromGroupState(g: ReservoirGroupState, data: SampleMemory): ReservoirSamplingBuffer {
    const r = new ReservoirSamplingBuffer(g.maxSize);
    if (g.weights !== null && (!Array.isArray(g.weights) || g.weights.length !== data.length)) {
      throw new RangeError(
        `Reservoir group ${g.key} has ${data.length} samples but ${g.weights?.length} weights`,
      );
    }
    r.#data = data;
    r.#weights = g.weights === null ? null : Float64Array.from(g.weights);
    return r;
  }

  /** The reservoir (samples and weights) as plain data. */
  state(): StoragePolicyState {
    return {
      kind: this.constructor.name,
      maxSize: this.maxSize,
      groups: [this.groupState(0)],
      data: this.#data.materialize(),
      extra: {},
    };
  }

  /** Restores what {@link ReservoirSamplingBuffer.state} returned. */
  loadState(state: StoragePolicyState): void {
    this.checkKind(state);
    const data = SampleMemory.fromMaterialized(state.data);
    const r = ReservoirSamplingBuffer.fromGroupState(state.groups[0], data);
    this.setMaxSize(state.maxSize);
    this.#data = r.#data;
    this.#weights = r.#weights;
  }
}

/** Indices sorted by decreasing weight, ties by increasing index. */
function sortDescending(w: Float64Array): Int32Array {
  const order = Int32Array.from({ length: w.length }, (_, i) => i);
  return order.sort((a, b) => (w[b] - w[a]) || (a - b));
}

/**
 * Base of the balanced policies (Avalanche's `BalancedExemplarsBuffer`): samples kept in groups,
 * each a {@link ReservoirSamplingBuffer}. With `adaptiveSize` the capacity is split equally among
 * the groups seen so far (`floor(maxSize / k)` each, the first `maxSize % k` groups get one
 * more); without it each group gets `floor(maxSize / totalNumGroups)`.
 */
export abstract class BalancedStoragePolicy extends StoragePolicy {
  /** Whether the capacity is split over the groups seen so far. */
  readonly adaptiveSize: boolean;
  /** Without `adaptiveSize`: the number of groups the capacity is divided over. */
  readonly totalNumGroups: number | undefined;
  /** Groups in insertion order. */
  protected readonly groupBuffers: Map<number, ReservoirSamplingBuffer> = new Map();
  #cache: SampleMemory | undefined;

  /**
   * An empty balanced memory.
   * @param maxSize total capacity
   * @param adaptiveSize split the capacity over the groups seen so far
   * @param totalNumGroups without `adaptiveSize`, the number of groups
   * @param groupsName the option's name in errors (`numExperiences`, `totalNumClasses`)
   */
  constructor(
    maxSize: number,
    adaptiveSize: boolean,
    totalNumGroups: number | undefined,
    groupsName: string,
  ) {
    super(maxSize);
    const fn = this.constructor.name;
    if (typeof adaptiveSize !== "boolean") {
      throw new TypeError(`${fn}: adaptiveSize must be true or false, got ${String(adaptiveSize)}`);
    }
    if (adaptiveSize && totalNumGroups !== undefined) {
      throw new RangeError(
        `${fn}: ${groupsName} (${totalNumGroups}) is only used with adaptiveSize: false; ` +
          `leave it out or set adaptiveSize: false`,
      );
    }
    if (!adaptiveSize) {
      if (
        typeof totalNumGroups !== "number" || !Number.isInteger(totalNumGroups) ||
        totalNumGroups < 1
      ) {
        throw new RangeError(
          `${fn}: with adaptiveSize: false, ${groupsName} must be an integer ≥ 1 (the number of ` +
            `groups the memory is divided over), got ${String(totalNumGroups)}`,
        );
      }
    }
    this.adaptiveSize = adaptiveSize;
    this.totalNumGroups = totalNumGroups;
  }

  /** Capacity of each of `numGroups` groups, in group order. */
  groupLengths(numGroups: number): number[] {
    if (numGroups === 0) return [];
    if (!this.adaptiveSize) {
      return new Array(numGroups).fill(Math.floor(this.maxSize / this.totalNumGroups!));
    }
    const base = Math.floor(this.maxSize / numGroups);
    const rem = this.maxSize - base * numGroups;
    return Array.from({ length: numGroups }, (_, i) => base + (i < rem ? 1 : 0));
  }

  /** The samples of every group, concatenated in group order. */
  get buffer(): SampleMemory {
    return this.#cache ??= SampleMemory.concat(
      [...this.groupBuffers.values()].map((g) => g.buffer),
    );
  }

  /** The samples of each group, by key, in order of creation. */
  get groups(): ReadonlyMap<number, Dataset> {
    return new Map([...this.groupBuffers].map(([k, g]) => [k, g.buffer]));
  }

  /** Forgets the cached concatenation after the groups changed. */
  protected changed(): void {
    this.#cache = undefined;
  }

  /** Sets the capacity and resizes every group to its new share (random subsets when shrinking). */
  resize(newSize: number): void {
    this.setMaxSize(newSize);
    this.resizeGroups();
  }

  /** Resizes every group to its share of the capacity. */
  protected resizeGroups(): void {
    const lens = this.groupLengths(this.groupBuffers.size);
    [...this.groupBuffers.values()].forEach((g, i) => g.resize(lens[i]));
    this.changed();
  }

  /** Without `adaptiveSize`, refuses more groups than the capacity was divided over. */
  protected checkGroupCount(numGroups: number, what: string): void {
    if (!this.adaptiveSize && numGroups > this.totalNumGroups!) {
      throw new RangeError(
        `${this.constructor.name}: the memory was divided over ${this.totalNumGroups} ${what} ` +
          `(adaptiveSize: false) but ${what} number ${numGroups} arrived; pass a larger total`,
      );
    }
  }

  /** Restores the groups from a state. */
  protected loadGroups(state: StoragePolicyState): void {
    this.checkKind(state);
    const data = SampleMemory.fromMaterialized(state.data);
    this.setMaxSize(state.maxSize);
    this.groupBuffers.clear();
    let start = 0;
    for (const g of state.groups) {
      const part = data.select(Int32Array.from({ length: g.size }, (_, i) => start + i));
      start += g.size;
      this.groupBuffers.set(g.key, ReservoirSamplingBuffer.fromGroupState(g, part));
    }
    if (start !== data.length) {
      throw new RangeError(
        `Storage policy state: groups hold ${start} samples, data ${data.length}`,
      );
    }
    this.changed();
  }

  /** The groups as plain data, with policy-specific `extra` fields. */
  protected groupsState(extra: Record<string, unknown>): StoragePolicyState {
    return {
      kind: this.constructor.name,
      maxSize: this.maxSize,
      groups: [...this.groupBuffers].map(([k, g]) => g.groupState(k)),
      data: this.buffer.materialize(),
      extra,
    };
  }

  /** Makes groups of an initial external memory, each cut to its share. */
  protected initGroups(extMem: ReadonlyMap<number, Dataset> | undefined, what: string): void {
    if (extMem === undefined) return;
    if (!(extMem instanceof Map)) {
      throw new TypeError(
        `${this.constructor.name}: extMem must be a Map from ${what} to Dataset, got ${
          String(extMem)
        }`,
      );
    }
    const lens = this.groupLengths(extMem.size);
    this.checkGroupCount(extMem.size, what);
    [...extMem].forEach(([k, d], i) => {
      if (!Number.isInteger(k) || !d || typeof (d as Dataset).fillX !== "function") {
        throw new TypeError(
          `${this.constructor.name}: extMem must map integer ${what} keys to Datasets (key ${k})`,
        );
      }
      this.groupBuffers.set(k, ReservoirSamplingBuffer.withData(lens[i], d));
    });
    this.changed();
  }

  /** Draws the reservoir weights of groups that have none yet (initial external memory). */
  protected drawPending(rng: Rng): void {
    for (const g of this.groupBuffers.values()) g.drawPendingWeights(rng);
  }
}

/** Options of {@link ExperienceBalancedStoragePolicy} and {@link experienceBalanced}. */
export interface ExperienceBalancedOptions {
  /** Total capacity (samples). */
  memSize: number;
  /** Split the capacity over the experiences seen so far. @default true */
  adaptiveSize?: boolean;
  /** With `adaptiveSize: false`: the number of experiences the capacity is divided over. */
  numExperiences?: number;
  /**
   * Initial memory (Avalanche's `ext_mem`): group key (experience index) → samples. Each group is
   * cut to its share; its reservoir weights are drawn at the first update.
   */
  extMem?: ReadonlyMap<number, Dataset>;
}

/** The keys of {@link ExperienceBalancedOptions}, for checking what users pass. */
const EXPERIENCE_BALANCED_OPTIONS: OptionSpec<ExperienceBalancedOptions> = {
  memSize: "integer",
  adaptiveSize: "boolean",
  numExperiences: "integer",
  extMem: instanceOf(Map),
};

function onlineOrigin(exp: Experience): string | undefined {
  const origin = (exp as { origin?: Experience }).origin;
  return origin && typeof origin === "object" ? `${origin.stream}\u0000${origin.id}` : undefined;
}

/**
 * One reservoir per experience (Avalanche's `ExperienceBalancedBuffer`, also its older
 * `ExperienceBalancedStoragePolicy`). After each experience a new group gets a uniform random
 * sample of its data; with `adaptiveSize` (default) the capacity is split equally among the
 * experiences seen so far (memSize 10 after 3 experiences: 4, 3, 3) and the older groups are
 * subsampled at random (reservoir weights) when their share shrinks; without it each group gets
 * `floor(memSize / numExperiences)`.
 *
 * Online streams ({@link splitOnline}): consecutive sub-experiences cut from the same original
 * experience (same `origin`) share one group, which keeps a uniform random sample of all of
 * them (reservoir); a new group starts when the origin changes. The capacity is so split over
 * the original experiences, not over hundreds of tiny sub-experiences. (Avalanche's online
 * replay examples use the class-balanced policy: {@link classBalanced}.)
 *
 * Group keys are 0, 1, 2, ... in order of creation (Avalanche keys groups by the count of
 * trained experiences: the same for ordinary streams).
 *
 * Constructors: `(memSize, adaptiveSize?, numExperiences?)` (Avalanche's
 * `ExperienceBalancedBuffer`), `(extMem, memSize, adaptiveSize?, numExperiences?)` (its older
 * `ExperienceBalancedStoragePolicy`) or an options object.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { makeExperience } from "../data/experience.ts";
 * import { Rng } from "../random.ts";
 * import { ExperienceBalancedStoragePolicy } from "./storage_policy.ts";
 * const info = { name: "toy", scenario: "class-incremental", numClasses: 1, inputShape: [1], numExperiences: 3 } as const;
 * const d = new ArrayDataset({ x: new Float32Array(20), y: new Array(20).fill(0), inputShape: [1] });
 * const policy = new ExperienceBalancedStoragePolicy({ memSize: 10 });
 * const rng = new Rng(0);
 * for (let i = 0; i < 3; i++) policy.update({ experience: makeExperience("train", i, d, info), rng });
 * console.assert([...policy.groups.values()].map((g) => g.length).join() === "4,3,3");
 * ```
 */
export class ExperienceBalancedStoragePolicy extends BalancedStoragePolicy {
  #nextKey = 0;
  #lastOrigin: string | undefined;
  #lastKey = -1;

  /** From options. */
  constructor(options: ExperienceBalancedOptions);
  /** As Avalanche's `ExperienceBalancedBuffer(max_size, adaptive_size, num_experiences)`. */
  constructor(memSize: number, adaptiveSize?: boolean, numExperiences?: number);
  /** As Avalanche's older `ExperienceBalancedStoragePolicy(ext_mem, mem_size, adaptive_size, num_experiences)`. */
  constructor(
    extMem: ReadonlyMap<number, Dataset> | undefined,
    memSize: number,
    adaptiveSize?: boolean,
    numExperiences?: number,
  );
  constructor(
    a: ExperienceBalancedOptions | number | ReadonlyMap<number, Dataset> | undefined,
    b?: number | boolean,
    c?: boolean | number,
    d?: number,
  ) {
    const o = parseBalancedArgs<ExperienceBalancedOptions>(
      "ExperienceBalancedStoragePolicy",
      EXPERIENCE_BALANCED_OPTIONS,
      a,
      b,
      c,
      d,
      (memSize, adaptiveSize, total, extMem) => ({
        memSize,
        adaptiveSize,
        numExperiences: total,
        extMem,
      }),
    );
    super(
      checkSize("ExperienceBalancedStoragePolicy", "memSize", o.memSize, "pass the capacity"),
      o.adaptiveSize ?? true,
      o.numExperiences,
      "numExperiences",
    );
    this.initGroups(o.extMem, "experiences");
    if (this.groupBuffers.size > 0) this.#nextKey = Math.max(...this.groupBuffers.keys()) + 1;
  }

  /** Adds a group for `ctx.experience` (or grows its origin's group, online) and rebalances. */
  update(ctx: StorageContext): void {
    const exp = requireExperience("ExperienceBalancedStoragePolicy", ctx);
    this.drawPending(ctx.rng);
    const origin = onlineOrigin(exp);
    const join = origin !== undefined && origin === this.#lastOrigin &&
      this.groupBuffers.has(this.#lastKey);
    const key = join ? this.#lastKey : this.#nextKey;
    const count = this.groupBuffers.size + (join ? 0 : 1);
    this.checkGroupCount(count, "experiences");
    const lens = this.groupLengths(count);
    let group = this.groupBuffers.get(key);
    if (!group) {
      group = new ReservoirSamplingBuffer(lens[count - 1]);
      this.groupBuffers.set(key, group);
      this.#nextKey = key + 1;
    } else {
      group.resize(lens[[...this.groupBuffers.keys()].indexOf(key)]);
    }
    group.updateFromDataset(exp.dataset, ctx.rng);
    this.#lastOrigin = origin;
    this.#lastKey = key;
    this.resizeGroups();
  }

  /** The groups (samples included) as plain data. */
  state(): StoragePolicyState {
    return this.groupsState({
      adaptiveSize: this.adaptiveSize,
      nextKey: this.#nextKey,
      lastOrigin: this.#lastOrigin ?? null,
      lastKey: this.#lastKey,
    });
  }

  /** Restores what {@link ExperienceBalancedStoragePolicy.state} returned. */
  loadState(state: StoragePolicyState): void {
    this.loadGroups(state);
    const e = state.extra ?? {};
    this.#nextKey = Number(e.nextKey ?? this.groupBuffers.size);
    this.#lastOrigin = typeof e.lastOrigin === "string" ? e.lastOrigin : undefined;
    this.#lastKey = Number(e.lastKey ?? -1);
  }
}

/** Options of {@link ClassBalancedStoragePolicy} and {@link classBalanced}. */
export interface ClassBalancedOptions {
  /** Total capacity (samples). */
  memSize: number;
  /** Split the capacity over the classes seen so far. @default true */
  adaptiveSize?: boolean;
  /** With `adaptiveSize: false`: the number of classes the capacity is divided over. */
  totalNumClasses?: number;
  /**
   * Initial memory (Avalanche's `ext_mem`): class label → samples of that class. Each group is cut
   * to its share; its reservoir weights are drawn at the first update.
   */
  extMem?: ReadonlyMap<number, Dataset>;
}

/** The keys of {@link ClassBalancedOptions}, for checking what users pass. */
const CLASS_BALANCED_OPTIONS: OptionSpec<ClassBalancedOptions> = {
  memSize: "integer",
  adaptiveSize: "boolean",
  totalNumClasses: "integer",
  extMem: instanceOf(Map),
};

/**
 * One reservoir per class (Avalanche's `ClassBalancedBuffer`). After each experience, each
 * class present gets its samples offered to its own reservoir; with `adaptiveSize` (default) the
 * capacity is split equally among the classes seen so far (the remainder to the classes seen
 * first: classes are ordered by first arrival, ascending within an experience) and groups that
 * must shrink keep a random subset; without it each class gets
 * `floor(memSize / totalNumClasses)`. A class seen again (online streams, new-instance
 * scenarios) gets a uniform random sample of all its samples so far.
 *
 * Constructors: `(memSize, adaptiveSize?, totalNumClasses?)`,
 * `(extMem, memSize, adaptiveSize?, totalNumClasses?)` or an options object.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { makeExperience } from "../data/experience.ts";
 * import { Rng } from "../random.ts";
 * import { ClassBalancedStoragePolicy } from "./storage_policy.ts";
 * const info = { name: "toy", scenario: "class-incremental", numClasses: 3, inputShape: [1], numExperiences: 1 } as const;
 * const d = new ArrayDataset({ x: new Float32Array(30), y: Array.from({ length: 30 }, (_, i) => i % 3), inputShape: [1] });
 * const policy = new ClassBalancedStoragePolicy({ memSize: 10 });
 * policy.update({ experience: makeExperience("train", 0, d, info), rng: new Rng(0) });
 * console.assert([...policy.groups.values()].map((g) => g.length).join() === "4,3,3");
 * ```
 */
export class ClassBalancedStoragePolicy extends BalancedStoragePolicy {
  /** From options. */
  constructor(options: ClassBalancedOptions);
  /** As Avalanche's `ClassBalancedBuffer(max_size, adaptive_size, total_num_classes)`. */
  constructor(memSize: number, adaptiveSize?: boolean, totalNumClasses?: number);
  /** With an initial external memory (class → samples). */
  constructor(
    extMem: ReadonlyMap<number, Dataset> | undefined,
    memSize: number,
    adaptiveSize?: boolean,
    totalNumClasses?: number,
  );
  constructor(
    a: ClassBalancedOptions | number | ReadonlyMap<number, Dataset> | undefined,
    b?: number | boolean,
    c?: boolean | number,
    d?: number,
  ) {
    const o = parseBalancedArgs<ClassBalancedOptions>(
      "ClassBalancedStoragePolicy",
      CLASS_BALANCED_OPTIONS,
      a,
      b,
      c,
      d,
      (memSize, adaptiveSize, total, extMem) => ({
        memSize,
        adaptiveSize,
        totalNumClasses: total,
        extMem,
      }),
    );
    super(
      checkSize("ClassBalancedStoragePolicy", "memSize", o.memSize, "pass the capacity"),
      o.adaptiveSize ?? true,
      o.totalNumClasses,
      "totalNumClasses",
    );
    if (o.extMem) {
      for (const [k, data] of o.extMem) {
        if (data && data.targets && data.targets.some((y) => y !== k)) {
          throw new RangeError(
            `ClassBalancedStoragePolicy: extMem group ${k} holds samples of other classes; ` +
              `key each group by the class of its samples`,
          );
        }
      }
    }
    this.initGroups(o.extMem, "classes");
  }

  /** Classes seen so far, in the order their groups were created. */
  get seenClasses(): number[] {
    return [...this.groupBuffers.keys()];
  }

  /** Offers each class's samples of `ctx.experience.dataset` to its group and rebalances. */
  update(ctx: StorageContext): void {
    const exp = requireExperience("ClassBalancedStoragePolicy", ctx);
    this.updateFromDataset(exp.dataset, ctx.rng);
  }

  /** Adds the samples of `data` class by class (what {@link ClassBalancedStoragePolicy.update} does). */
  updateFromDataset(data: Dataset, rng: Rng): void {
    this.drawPending(rng);
    if (data.length === 0) return;
    const byClass = data.indicesByClass();
    const newCount = [...byClass.keys()].filter((c) => !this.groupBuffers.has(c)).length;
    const count = this.groupBuffers.size + newCount;
    this.checkGroupCount(count, "classes");
    const lens = this.groupLengths(count);
    for (const c of byClass.keys()) {
      if (!this.groupBuffers.has(c)) this.groupBuffers.set(c, new ReservoirSamplingBuffer(0));
    }
    const keys = [...this.groupBuffers.keys()];
    for (const [c, idx] of byClass) {
      const g = this.groupBuffers.get(c)!;
      g.resize(lens[keys.indexOf(c)]);
      g.updateFromDataset(data, rng, idx);
    }
    this.resizeGroups();
  }

  /** The groups (samples included) as plain data. */
  state(): StoragePolicyState {
    return this.groupsState({ adaptiveSize: this.adaptiveSize });
  }

  /** Restores what {@link ClassBalancedStoragePolicy.state} returned. */
  loadState(state: StoragePolicyState): void {
    this.loadGroups(state);
  }
}

function parseBalancedArgs<O extends { memSize: number }>(
  fn: string,
  spec: OptionSpec<O>,
  a: unknown,
  b: unknown,
  c: unknown,
  d: unknown,
  make: (
    memSize: number,
    adaptiveSize: boolean | undefined,
    total: number | undefined,
    extMem: ReadonlyMap<number, Dataset> | undefined,
  ) => O,
): O {
  // Python's `None` arrives as null from pasted Avalanche code: it means "left out".
  [b, c, d] = [b, c, d].map((v) => (v === null ? undefined : v));
  if (typeof a === "number") {
    return make(a, b as boolean | undefined, c as number | undefined, undefined);
  }
  if (a === undefined || a instanceof Map) {
    if (b === undefined) {
      throw new TypeError(
        `${fn}: pass the capacity: new ${fn}(memSize), new ${fn}(extMem, memSize) or new ${fn}({ memSize })`,
      );
    }
    return make(
      b as number,
      c as boolean | undefined,
      d as number | undefined,
      a as ReadonlyMap<number, Dataset> | undefined,
    );
  }
  if (a && typeof a === "object") {
    // Before looking for memSize: a misspelt key is named as such, not as a missing memSize.
    checkOptions(fn, a as O, spec);
    if ("memSize" in a) return a as O;
  }
  throw new TypeError(
    `${fn}: expected memSize, (extMem, memSize) or an options object { memSize }, got ${String(a)}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

/**
 * A reservoir-sampling memory of `memSize` samples ({@link ReservoirSamplingBuffer}).
 *
 * @example
 * ```ts
 * import { reservoir } from "./storage_policy.ts";
 * const policy = reservoir({ memSize: 500 });
 * console.assert(policy.maxSize === 500);
 * ```
 */
export function reservoir(opts: { memSize: number }): ReservoirSamplingBuffer {
  checkOptions("reservoir", opts, { memSize: "integer" });
  return new ReservoirSamplingBuffer(opts?.memSize);
}

/**
 * An experience-balanced memory ({@link ExperienceBalancedStoragePolicy}).
 *
 * @example
 * ```ts
 * import { experienceBalanced } from "./storage_policy.ts";
 * const policy = experienceBalanced({ memSize: 500 });
 * console.assert(policy.adaptiveSize && policy.buffer.length === 0);
 * ```
 */
export function experienceBalanced(
  opts: ExperienceBalancedOptions,
): ExperienceBalancedStoragePolicy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("experienceBalanced expects an options object { memSize }");
  }
  checkOptions("experienceBalanced", opts, EXPERIENCE_BALANCED_OPTIONS);
  return new ExperienceBalancedStoragePolicy(opts);
}

/**
 * A class-balanced memory ({@link ClassBalancedStoragePolicy}).
 *
 * @example
 * ```ts
 * import { classBalanced } from "./storage_policy.ts";
 * const policy = classBalanced({ memSize: 500 });
 * console.assert(policy.maxSize === 500);
 * ```
 */
export function classBalanced(opts: ClassBalancedOptions): ClassBalancedStoragePolicy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("classBalanced expects an options object { memSize }");
  }
  checkOptions("classBalanced", opts, CLASS_BALANCED_OPTIONS);
  return new ClassBalancedStoragePolicy(opts);
}

// ---------------------------------------------------------------------------------------------
// Avalanche 0.6's names
// ---------------------------------------------------------------------------------------------

// The same classes under Avalanche 0.6's names, rather than subclasses: a state's `kind` is the
// class's name, so a subclass would refuse the checkpoints of runs built with the other name.
export {
  BalancedStoragePolicy as BalancedExemplarsBuffer,
  ClassBalancedStoragePolicy as ClassBalancedBuffer,
  ExperienceBalancedStoragePolicy as ExperienceBalancedBuffer,
  StoragePolicy as ExemplarsBuffer,
};

/**
 * What a selection strategy may read besides the samples and the generator: the model (for
 * strategies that select on features), the evaluation batch size, and how many samples will be
 * kept (a strategy may then order only that many first).
 */
export interface SelectionContext {
  /** The model being trained (Avalanche's `strategy.model`). */
  model?: Module;
  /** Samples per forward pass when features are computed (the strategy's `evalBatchSize`). */
  batchSize?: number;
  /** How many of the first indices the caller keeps; the rest may be left out. */
  count?: number;
}

/**
 * How a {@link ParametricBuffer} chooses the samples of a group (Avalanche's
 * `ExemplarsSelectionStrategy`): the indices of `data` in order of preference; the memory keeps
 * the first ones that fit. `context` gives the model to strategies that select on features.
 */
export abstract class ExemplarsSelectionStrategy {
  /**
   * Indices of `data`, preferred first (at least `context.count` of them when given, all
   * otherwise); random choices draw from `rng` (the run's generator).
   */
  abstract makeSortedIndices(
    data: Dataset,
    rng: Rng,
    context?: SelectionContext,
  ): ArrayLike<number>;
}

/**
 * Random selection (Avalanche's `RandomExemplarsSelectionStrategy`): a uniform random order.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { Rng } from "../random.ts";
 * import { RandomExemplarsSelectionStrategy } from "./storage_policy.ts";
 * const d = new ArrayDataset({ x: new Float32Array(5), y: [0, 1, 2, 3, 4], inputShape: [1] });
 * const order = new RandomExemplarsSelectionStrategy().makeSortedIndices(d, new Rng(0));
 * console.assert([...order].sort().join() === "0,1,2,3,4");
 * ```
 */
export class RandomExemplarsSelectionStrategy extends ExemplarsSelectionStrategy {
  /** A random permutation of `data`'s indices. */
  makeSortedIndices(data: Dataset, rng: Rng): Int32Array {
    return Int32Array.from(rng.permutation(data.length));
  }
}

/** Options of the {@link FeatureBasedExemplarsSelectionStrategy}s. */
export interface FeatureSelectionOptions {
  /**
   * The model whose features (before the head, `embed`) are read; default: the one the buffer
   * is updated with (`ctx.model`), which is what Avalanche's `model` argument usually is.
   */
  model?: Module | null;
  /** L2-normalize the features first, as iCaRL does (false: Avalanche's raw features). @default true */
  normalize?: boolean;
}

const FEATURE_SELECTION_OPTIONS: OptionSpec<FeatureSelectionOptions> = {
  model: anyOf("object", "null"),
  normalize: "boolean",
};

/**
 * Base of the strategies that choose samples by their features (Avalanche's
 * `FeatureBasedExemplarsSelectionStrategy(model, layer_name)`): the features before the model's
 * head ({@link extractFeatures}, eval mode, `context.batchSize` per pass), L2-normalized unless
 * `normalize: false`, go to {@link FeatureBasedExemplarsSelectionStrategy.makeSortedIndicesFromFeatures}.
 * The layer is always the embedding before the head (Avalanche's `layer_name` names any layer).
 */
export abstract class FeatureBasedExemplarsSelectionStrategy extends ExemplarsSelectionStrategy {
  /** A fixed model, or undefined to read the one the buffer is updated with. */
  readonly model: Module | undefined;
  /** Whether features are L2-normalized first. */
  readonly normalize: boolean;

  /** @param model the model whose features are read (default: `ctx.model`); or all options. */
  constructor(model?: Module | null | FeatureSelectionOptions, normalize?: boolean) {
    super();
    const o: FeatureSelectionOptions = model && typeof model === "object" && !isModule(model)
      ? checkOptions(
        this.constructor.name,
        model as FeatureSelectionOptions,
        FEATURE_SELECTION_OPTIONS,
      )
      : { model: model as Module | null | undefined, normalize };
    this.model = o.model ?? undefined;
    this.normalize = o.normalize ?? true;
    if (typeof this.normalize !== "boolean") {
      throw new TypeError(
        `${this.constructor.name}: normalize must be true or false, got ${String(o.normalize)}`,
      );
    }
  }

  /** The features of `data` with the strategy's model (else `context.model`), then the order. */
  makeSortedIndices(data: Dataset, _rng: Rng, context: SelectionContext = {}): Int32Array {
    const model = this.model ?? context.model;
    if (!model) {
      throw new TypeError(
        `${this.constructor.name} reads the model's features: give it a model, or update the ` +
          `buffer with the strategy's context (ctx.model)`,
      );
    }
    if (data.length === 0) return new Int32Array(0);
    const features = extractFeatures(model, data, {
      batchSize: context.batchSize,
      normalize: this.normalize,
    });
    return this.makeSortedIndicesFromFeatures(features, context.count);
  }

  /**
   * Indices of the rows of `features`, preferred first (Avalanche's
   * `make_sorted_indices_from_features`); `count`: only that many are needed.
   */
  abstract makeSortedIndicesFromFeatures(features: Features, count?: number): Int32Array;
}

function isModule(x: unknown): x is Module {
  return typeof (x as Module).forward === "function";
}

/** The mean of the rows, in float64. */
function featureMean(f: Features): Float64Array {
  const mean = new Float64Array(f.dim);
  for (let i = 0; i < f.n; i++) for (let k = 0; k < f.dim; k++) mean[k] += f.values[i * f.dim + k];
  for (let k = 0; k < f.dim; k++) mean[k] /= Math.max(f.n, 1);
  return mean;
}

/**
 * Herding (iCaRL's Algorithm 4, Avalanche's `HerdingSelectionStrategy`): the k-th exemplar is the
 * sample, among those not chosen yet, that brings the mean of the k chosen features closest to
 * the class mean, `p_k = argmin_x ‖μ − (φ(x) + Σ_{j<k} φ(p_j)) / k‖`. Each prefix of the order is
 * thus a good exemplar set of its size, so shrinking the memory (keeping the first ones) is
 * iCaRL's `ReduceExemplarSet`. Ties go to the lower index. Features are L2-normalized first
 * unless `normalize: false` (Avalanche's strategy uses them raw; iCaRL normalizes).
 *
 * @example
 * ```ts
 * import { HerdingSelectionStrategy } from "./storage_policy.ts";
 * const f = { values: Float32Array.of(1, 0, 0.8, 0.6, 0.8, -0.6, 0.6, 0.8), n: 4, dim: 2 };
 * const order = new HerdingSelectionStrategy().makeSortedIndicesFromFeatures(f);
 * console.assert(order.join() === "0,1,2,3");
 * ```
 */
export class HerdingSelectionStrategy extends FeatureBasedExemplarsSelectionStrategy {
  /** Herding order of the rows (the first `count` of them when given). */
  makeSortedIndicesFromFeatures(features: Features, count?: number): Int32Array {
    const { values, n, dim } = features;
    const take = Math.min(n, count ?? n);
    const mean = featureMean(features);
    const sum = new Float64Array(dim);
    const chosen = new Uint8Array(n);
    const order = new Int32Array(take);
    const diff = new Float64Array(dim);
    for (let k = 1; k <= take; k++) {
      // ‖(S + f)/k − μ‖² = ‖a‖² + 2 a·f / k + ‖f‖² / k², with a = S/k − μ: one dot product per
      // candidate (the constant ‖a‖² is left out).
      for (let d = 0; d < dim; d++) diff[d] = sum[d] / k - mean[d];
      let best = -1, bestScore = Infinity;
      for (let i = 0; i < n; i++) {
        if (chosen[i]) continue;
        let dot = 0, sq = 0;
        for (let d = 0; d < dim; d++) {
          const v = values[i * dim + d];
          dot += diff[d] * v;
          sq += v * v;
        }
        const score = 2 * dot / k + sq / (k * k);
        if (score < bestScore) {
          bestScore = score;
          best = i;
        }
      }
      chosen[best] = 1;
      order[k - 1] = best;
      for (let d = 0; d < dim; d++) sum[d] += values[best * dim + d];
    }
    return order;
  }
}

/**
 * Closest to the class mean first (Avalanche's `ClosestToCenterSelectionStrategy`): samples
 * sorted by the distance of their feature to the mean feature (ties: lower index first), on
 * L2-normalized features unless `normalize: false` (Avalanche's raw features).
 *
 * @example
 * ```ts
 * import { ClosestToCenterSelectionStrategy } from "./storage_policy.ts";
 * const f = { values: Float32Array.of(1, 0, 0.8, 0.6, 0.8, -0.6, 0.6, 0.8), n: 4, dim: 2 };
 * const order = new ClosestToCenterSelectionStrategy().makeSortedIndicesFromFeatures(f);
 * console.assert(order.join() === "0,1,3,2");
 * ```
 */
export class ClosestToCenterSelectionStrategy extends FeatureBasedExemplarsSelectionStrategy {
  /** The rows by increasing distance to the mean (the first `count` of them when given). */
  makeSortedIndicesFromFeatures(features: Features, count?: number): Int32Array {
    const { values, n, dim } = features;
    const mean = featureMean(features);
    const dist = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += (values[i * dim + d] - mean[d]) ** 2;
      dist[i] = s;
    }
    const order = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) =>
      (dist[a] - dist[b]) || (a - b)
    );
    return order.subarray(0, Math.min(n, count ?? n));
  }
}

/** How a {@link ParametricBuffer} groups samples (Avalanche's `groupby`; null: one group). */
export type GroupBy = "class" | "task" | "experience" | null;

/** Options of {@link ParametricBuffer}. */
export interface ParametricBufferOptions {
  /** Total capacity (samples), split equally among the groups seen so far. */
  memSize: number;
  /** Grouping: by class label, by task label, by experience, or none (one group). @default null */
  groupby?: GroupBy;
  /** How each group's samples are chosen. @default new RandomExemplarsSelectionStrategy() */
  selectionStrategy?: ExemplarsSelectionStrategy | null;
}

/** The keys of {@link ParametricBufferOptions}, for checking what users pass. */
const PARAMETRIC_BUFFER_OPTIONS: OptionSpec<ParametricBufferOptions> = {
  memSize: "integer",
  groupby: anyOf(oneOf("class", "task", "experience"), "null"),
  selectionStrategy: anyOf(instanceOf(ExemplarsSelectionStrategy), "null"),
};

const GROUPINGS: readonly GroupBy[] = ["class", "task", "experience", null];

/**
 * A memory grouped by class, task, experience or not at all, each group's samples chosen by a
 * selection strategy (Avalanche's `ParametricBuffer(max_size, groupby=None,
 * selection_strategy=None)`). The capacity is split equally among the groups seen so far (the
 * remainder to the groups seen first). At each update, a group that receives samples is chosen
 * again among its memory and the new samples (for random selection: a uniform random subset of
 * both, as Avalanche re-draws the whole group; so, unlike the reservoirs of
 * {@link ClassBalancedStoragePolicy}, older samples are not kept in proportion to all the data
 * seen); a group that shrinks keeps the first samples of its last selection.
 *
 * Group keys: the class label, the task label, the experience's order of arrival (0, 1, 2, ...,
 * one group per update: a sub-experience of an online stream is an experience here, as in
 * Avalanche), or 0 with no grouping.
 *
 * Selection strategies: random (default), {@link HerdingSelectionStrategy},
 * {@link ClosestToCenterSelectionStrategy} (which read the features of the model in `ctx.model`,
 * so update the buffer with the strategy's context), or one's own
 * {@link ExemplarsSelectionStrategy}.
 *
 * Constructors: `(memSize, groupby?, selectionStrategy?)` or an options object.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { makeExperience } from "../data/experience.ts";
 * import { Rng } from "../random.ts";
 * import { ParametricBuffer } from "./storage_policy.ts";
 * const info = { name: "toy", scenario: "class-incremental", numClasses: 2, inputShape: [1], numExperiences: 1 } as const;
 * const d = new ArrayDataset({ x: new Float32Array(20), y: Array.from({ length: 20 }, (_, i) => i % 2), inputShape: [1] });
 * const buffer = new ParametricBuffer(6, "class");
 * buffer.update({ experience: makeExperience("train", 0, d, info), rng: new Rng(0) });
 * console.assert([...buffer.groups.values()].map((g) => g.length).join() === "3,3");
 * ```
 */
export class ParametricBuffer extends BalancedStoragePolicy {
  /** The grouping. */
  readonly groupby: GroupBy;
  /** How each group's samples are chosen. */
  readonly selectionStrategy: ExemplarsSelectionStrategy;
  #updates = 0;

  /** From options. */
  constructor(options: ParametricBufferOptions);
  /** As Avalanche's `ParametricBuffer(max_size, groupby=None, selection_strategy=None)`. */
  constructor(
    memSize: number,
    groupby?: GroupBy,
    selectionStrategy?: ExemplarsSelectionStrategy | null,
  );
  constructor(
    a: ParametricBufferOptions | number,
    groupby?: GroupBy,
    selectionStrategy?: ExemplarsSelectionStrategy | null,
  ) {
    const o: ParametricBufferOptions = typeof a === "number"
      ? { memSize: a, groupby, selectionStrategy }
      : a && typeof a === "object"
      ? checkOptions("ParametricBuffer", a, PARAMETRIC_BUFFER_OPTIONS)
      : (() => {
        throw new TypeError(
          `ParametricBuffer: expected memSize or an options object { memSize, groupby }, got ${
            String(a)
          }`,
        );
      })();
    super(
      checkSize("ParametricBuffer", "memSize", o.memSize, "pass the capacity"),
      true,
      undefined,
      "groups",
    );
    const g = o.groupby ?? null;
    if (!GROUPINGS.includes(g)) {
      throw new RangeError(
        `ParametricBuffer: groupby must be "class", "task", "experience" or null, got ${String(g)}`,
      );
    }
    const sel = o.selectionStrategy ?? new RandomExemplarsSelectionStrategy();
    if (!(sel instanceof ExemplarsSelectionStrategy)) {
      throw new TypeError(
        `ParametricBuffer: selectionStrategy must be an ExemplarsSelectionStrategy (e.g. new ` +
          `RandomExemplarsSelectionStrategy()), got ${String(sel)}`,
      );
    }
    this.groupby = g;
    this.selectionStrategy = sel;
  }

  /** Splits `ctx.experience.dataset` into groups and chooses each receiving group again. */
  update(ctx: StorageContext): void {
    const exp = requireExperience("ParametricBuffer", ctx);
    const data = exp.dataset;
    const key = this.#updates++;
    if (data.length === 0) return;
    const fresh = this.#split(data, key);
    for (const k of fresh.keys()) {
      if (!this.groupBuffers.has(k)) this.groupBuffers.set(k, new ReservoirSamplingBuffer(0));
    }
    const lens = this.groupLengths(this.groupBuffers.size);
    const keys = [...this.groupBuffers.keys()];
    for (const [k, idx] of fresh) {
      const old = this.groupBuffers.get(k)!.buffer;
      const pool = SampleMemory.concat([SampleMemory.of(data).select(idx), old]);
      const size = lens[keys.indexOf(k)];
      const order = this.selectionStrategy.makeSortedIndices(pool, ctx.rng, {
        model: ctx.model,
        batchSize: ctx.settings?.evalBatchSize,
        count: size,
      });
      const chosen = Int32Array.from({ length: Math.min(size, order.length) }, (_, i) => order[i]);
      // Kept in selection order with no reservoir weights: a later shrink keeps the first ones.
      this.groupBuffers.set(k, ReservoirSamplingBuffer.withData(size, pool.select(chosen)));
    }
    this.resizeGroups();
  }

  /** Indices of `data` by group key. */
  #split(data: Dataset, experienceKey: number): Map<number, Int32Array> {
    const all = () => Int32Array.from({ length: data.length }, (_, i) => i);
    switch (this.groupby) {
      case null:
        return new Map([[0, all()]]);
      case "experience":
        return new Map([[experienceKey, all()]]);
      case "class":
        return data.indicesByClass();
      case "task": {
        const lists = new Map<number, number[]>();
        data.taskLabels.forEach((t, i) => {
          let l = lists.get(t);
          if (!l) lists.set(t, l = []);
          l.push(i);
        });
        return new Map(
          [...lists].sort((x, y) => x[0] - y[0]).map(([t, l]) => [t, Int32Array.from(l)]),
        );
      }
    }
  }

  /** The groups (samples included) as plain data. */
  state(): StoragePolicyState {
    return this.groupsState({ groupby: this.groupby, updates: this.#updates });
  }

  /** Restores what {@link ParametricBuffer.state} returned. */
  loadState(state: StoragePolicyState): void {
    this.loadGroups(state);
    const e = state.extra ?? {};
    if ((e.groupby ?? null) !== this.groupby) {
      throw new TypeError(
        `ParametricBuffer: the state groups by ${String(e.groupby)}, this buffer by ` +
          `${String(this.groupby)}: build the buffer with groupby ${JSON.stringify(e.groupby)}`,
      );
    }
    this.#updates = Number(e.updates ?? this.groupBuffers.size);
  }
}
