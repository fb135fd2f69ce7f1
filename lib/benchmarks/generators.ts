/**
 * Benchmark generators: turn a training and a test {@link Dataset} into a {@link Benchmark}, with
 * the semantics of Avalanche's `nc_benchmark` (class- and task-incremental), `ni_benchmark` (new
 * instances), `PermutedMNIST`/`RotatedMNIST` (domain-incremental), `split_online_stream` (online
 * CL) and a class-balanced subsampler for quick runs.
 *
 * Everything is deterministic given `seed` (default 0). Experiences are views over the source
 * datasets (subsets, relabelings, shared pixel storage); only rotations copy pixels, once per
 * experience.
 *
 * @module
 */
import { ArrayDataset, type Dataset } from "../data/dataset.ts";
import { Rng } from "../random.ts";
import {
  type Benchmark,
  type BenchmarkInfo,
  type Experience,
  makeExperience,
  makeStream,
  type Scenario,
  type Stream,
  withDataset,
} from "../data/experience.ts";
import { composePermutations, imageGeometry, rotateImages } from "./transforms.ts";
import { anyOf, checkOptions, oneOf, type OptionSpec } from "../options.ts";

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

function checkInt(fn: string, name: string, value: unknown, min: number, fix: string): number {
  if (typeof value !== "number") {
    throw new TypeError(
      `${fn}: ${name} must be an integer >= ${min}, got ${String(value)}; ${fix}`,
    );
  }
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(`${fn}: ${name} must be an integer >= ${min}, got ${value}; ${fix}`);
  }
  return value;
}

function checkSeed(fn: string, seed: unknown): number {
  if (typeof seed !== "number" || !Number.isFinite(seed)) {
    throw new TypeError(`${fn}: seed must be a finite number, got ${String(seed)}`);
  }
  return seed;
}

function checkDatasets(fn: string, train: unknown, test: unknown): void {
  for (const [name, d] of [["train", train], ["test", test]] as const) {
    if (!d || typeof d !== "object" || typeof (d as Dataset).fillX !== "function") {
      throw new TypeError(
        `${fn}: ${name} must be a Dataset (e.g. an ArrayDataset), got ${String(d)}`,
      );
    }
  }
  const a = (train as Dataset).inputShape, b = (test as Dataset).inputShape;
  if (a.join() !== b.join()) {
    throw new RangeError(`${fn}: train input shape [${a}] differs from test input shape [${b}]`);
  }
}

/** The dataset with every task label set to `task` (the dataset itself when already so). */
function withTask(d: Dataset, task: number): Dataset {
  return d.taskLabels.every((t) => t === task) ? d : d.withTaskLabel(task);
}

function maxLabelPlusOne(sets: readonly Dataset[]): number {
  let m = 0;
  for (const d of sets) for (const y of d.targets) if (y + 1 > m) m = y + 1;
  return m;
}

function makeInfo(
  name: string,
  scenario: Scenario,
  numClasses: number,
  inputShape: readonly number[],
  numExperiences: number,
): BenchmarkInfo {
  return { name, scenario, numClasses, inputShape: [...inputShape], numExperiences };
}

function streams(
  info: BenchmarkInfo,
  train: readonly Dataset[],
  test: readonly Dataset[],
): { train: Stream; test: Stream } {
  return {
    train: makeStream("train", train.map((d, i) => makeExperience("train", i, d, info))),
    test: makeStream("test", test.map((d, i) => makeExperience("test", i, d, info))),
  };
}

// ---------------------------------------------------------------------------------------------
// Class- and task-incremental
// ---------------------------------------------------------------------------------------------

/** Options of {@link classIncremental}. */
export interface ClassIncrementalOptions {
  /** Training samples; its distinct labels are the classes to split. */
  train: Dataset;
  /** Test samples, split by the same classes. */
  test: Dataset;
  /** Number of experiences; may be left out when `classesPerExperience` is given. */
  experiences?: number;
  /**
   * How to order the classes when `fixedClassOrder` is not given: `"shuffled"` (default, a seeded
   * permutation as in Avalanche) or `"sorted"` (Avalanche's `shuffle=False`). An array is the
   * same as `fixedClassOrder`.
   */
  classOrder?: "shuffled" | "sorted" | readonly number[];
  /**
   * Explicit class order, overriding the seeded shuffle; e.g. `[0, 1, ..., 9]` gives MNIST's
   * natural order. May hold a subset of the classes: the samples of the others are left out.
   */
  fixedClassOrder?: readonly number[];
  /** Seed of the class shuffle. @default 0 */
  seed?: number;
  /** Number of classes of each experience, for uneven splits, e.g. `[4, 2, 2, 2]`. */
  classesPerExperience?: readonly number[];
  /** Give experience `i` task label `i` (task-incremental). @default false */
  taskLabels?: boolean;
  /**
   * Relabel classes: `"global"` maps the class order to `0..C-1` (Avalanche's
   * `class_ids_from_zero_from_first_exp`); `"per-experience"` maps each experience's classes to
   * `0..k-1` in class order (`class_ids_from_zero_in_each_exp`); `true` picks `"per-experience"`
   * with task labels and `"global"` without; `false` keeps the original labels.
   * @default false
   */
  remapClasses?: boolean | "global" | "per-experience";
  /** Benchmark name. @default "ClassIncremental" or "TaskIncremental" */
  name?: string;
}

/** The keys of {@link taskIncremental}'s options (those of {@link classIncremental} but one). */
const TASK_INCREMENTAL_OPTIONS: OptionSpec<Omit<ClassIncrementalOptions, "taskLabels">> = {
  train: "object",
  test: "object",
  experiences: "integer",
  classOrder: anyOf(oneOf("shuffled", "sorted"), "array"),
  fixedClassOrder: "array",
  seed: "number",
  classesPerExperience: "array",
  remapClasses: anyOf("boolean", oneOf("global", "per-experience")),
  name: "string",
};

/** The keys of {@link ClassIncrementalOptions}, for checking what users pass. */
const CLASS_INCREMENTAL_OPTIONS: OptionSpec<ClassIncrementalOptions> = {
  ...TASK_INCREMENTAL_OPTIONS,
  taskLabels: "boolean",
};

/** A benchmark from {@link classIncremental}, with the class split it used. */
export interface ClassIncrementalBenchmark extends Benchmark {
  /** Original class labels in the order they were dealt to experiences. */
  readonly classOrder: readonly number[];
  /** Original class labels of each experience, in class order. */
  readonly originalClassesPerExperience: readonly (readonly number[])[];
  /** Per experience: original label → label the model sees (identity without remapping). */
  readonly classMaps: readonly ReadonlyMap<number, number>[];
}

function resolveClassOrder(fn: string, opts: ClassIncrementalOptions, classes: number[]): number[] {
  let fixed = opts.fixedClassOrder;
  if (Array.isArray(opts.classOrder)) {
    if (fixed && fixed.join() !== opts.classOrder.join()) {
      throw new RangeError(
        `${fn}: classOrder [${opts.classOrder}] and fixedClassOrder [${fixed}] disagree; pass only one`,
      );
    }
    fixed = opts.classOrder as readonly number[];
  } else if (
    opts.classOrder !== undefined && opts.classOrder !== "shuffled" && opts.classOrder !== "sorted"
  ) {
    throw new TypeError(
      `${fn}: classOrder must be "shuffled", "sorted" or an array of classes, got ${
        JSON.stringify(opts.classOrder)
      }`,
    );
  }
  if (fixed) {
    if (!Array.isArray(fixed) || fixed.length === 0) {
      throw new TypeError(`${fn}: fixedClassOrder must be a non-empty array of class labels`);
    }
    const known = new Set(classes);
    const seen = new Set<number>();
    for (const c of fixed) {
      if (!known.has(c)) {
        throw new RangeError(
          `${fn}: fixedClassOrder holds class ${c}, which the training set does not have ` +
            `(its classes: [${classes}])`,
        );
      }
      if (seen.has(c)) throw new RangeError(`${fn}: fixedClassOrder holds class ${c} twice`);
      seen.add(c);
    }
    return [...fixed];
  }
  if (opts.classOrder === "sorted") return [...classes];
  const perm = new Rng(checkSeed(fn, opts.seed ?? 0)).permutation(classes.length);
  return Array.from(perm, (k) => classes[k]);
}

function resolveSplit(fn: string, opts: ClassIncrementalOptions, numClasses: number): number[] {
  const cpe = opts.classesPerExperience;
  if (cpe !== undefined) {
    if (!Array.isArray(cpe) || cpe.length === 0) {
      throw new TypeError(`${fn}: classesPerExperience must be a non-empty array of counts`);
    }
    cpe.forEach((k, i) => {
      if (k === 0) {
        throw new RangeError(
          `${fn}: classesPerExperience[${i}] is 0, which would make experience ${i} empty; ` +
            `give every experience at least one class`,
        );
      }
      checkInt(fn, `classesPerExperience[${i}]`, k, 1, "give each experience a class count");
    });
    if (opts.experiences !== undefined && opts.experiences !== cpe.length) {
      throw new RangeError(
        `${fn}: experiences is ${opts.experiences} but classesPerExperience [${cpe}] has ` +
          `${cpe.length} entries; make them agree or leave experiences out`,
      );
    }
    const sum = cpe.reduce((a, b) => a + b, 0);
    if (sum !== numClasses) {
      throw new RangeError(
        `${fn}: classesPerExperience [${cpe}] adds up to ${sum} but there are ${numClasses} classes`,
      );
    }
    return [...cpe];
  }
  if (opts.experiences === undefined) {
    throw new TypeError(
      `${fn}: pass experiences (the number of experiences) or classesPerExperience`,
    );
  }
  const e = checkInt(fn, "experiences", opts.experiences, 1, "pass the number of experiences");
  if (e > numClasses) {
    throw new RangeError(
      `${fn}: experiences (${e}) exceeds the number of classes (${numClasses}), ` +
        `so some experience would be empty; use at most ${numClasses} experiences`,
    );
  }
  if (numClasses % e !== 0) {
    const base = Math.floor(numClasses / e);
    const example = Array.from({ length: e }, (_, i) => base + (i < numClasses % e ? 1 : 0));
    throw new RangeError(
      `${fn}: ${numClasses} classes cannot be split evenly into experiences = ${e}; ` +
        `pass classesPerExperience (e.g. [${example}]) or a number of experiences dividing ${numClasses}`,
    );
  }
  return new Array(e).fill(numClasses / e);
}

/**
 * Splits the classes of a dataset into experiences (Avalanche's `nc_benchmark`). The class order
 * is a seeded permutation unless `fixedClassOrder` is given; classes are dealt in that order,
 * `classesPerExperience[i]` (or `C / experiences`) to experience `i`. The test stream has the
 * same split. With `taskLabels` experience `i` carries task label `i` and the scenario is
 * task-incremental, otherwise every task label is 0.
 *
 * `info.numClasses` is the largest label the model sees plus one (per head with per-experience
 * remapping).
 *
 * @example Split MNIST-like data into 5 experiences of 2 classes, natural order
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { classIncremental } from "./generators.ts";
 * const y = Array.from({ length: 100 }, (_, i) => i % 10);
 * const d = new ArrayDataset({ x: new Uint8Array(100 * 4), y, inputShape: [4] });
 * const b = classIncremental({ train: d, test: d, experiences: 5, fixedClassOrder: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] });
 * console.assert(b.train[1].classes.join() === "2,3");
 * ```
 */
export function classIncremental(opts: ClassIncrementalOptions): ClassIncrementalBenchmark {
  const fn = "classIncremental";
  checkOptions(fn, opts, CLASS_INCREMENTAL_OPTIONS);
  checkDatasets(fn, opts?.train, opts?.test);
  const { train, test } = opts;
  const task = opts.taskLabels ?? false;
  const allClasses = train.classes();
  if (allClasses.length === 0) throw new RangeError(`${fn}: the training set is empty`);
  const order = resolveClassOrder(fn, opts, allClasses);
  const split = resolveSplit(fn, opts, order.length);
  const remapOpt = opts.remapClasses ?? false;
  if (![true, false, "global", "per-experience"].includes(remapOpt)) {
    throw new TypeError(
      `${fn}: remapClasses must be true, false, "global" or "per-experience", got ${
        JSON.stringify(remapOpt)
      }`,
    );
  }
  const remap = remapOpt === true ? (task ? "per-experience" : "global") : remapOpt;

  const original: number[][] = [];
  const maps: Map<number, number>[] = [];
  let pos = 0;
  for (const k of split) {
    const cls = order.slice(pos, pos + k);
    original.push(cls);
    maps.push(
      new Map(
        cls.map((c, j) => [c, remap === "global" ? pos + j : remap === "per-experience" ? j : c]),
      ),
    );
    pos += k;
  }

  const build = (source: Dataset, which: string): Dataset[] => {
    const byClass = source.indicesByClass();
    return original.map((cls, i) => {
      const missing = cls.filter((c) => !byClass.has(c));
      if (missing.length === cls.length) {
        throw new RangeError(
          `${fn}: the ${which} set has no samples of classes [${cls}] of experience ${i}, ` +
            `so that ${which} experience would be empty; check the ${which} labels`,
        );
      }
      const parts = cls.filter((c) => byClass.has(c)).map((c) => byClass.get(c)!);
      const n = parts.reduce((a, p) => a + p.length, 0);
      const idx = new Int32Array(n);
      let o = 0;
      for (const p of parts) {
        idx.set(p, o);
        o += p.length;
      }
      idx.sort();
      const sub = source.subset(idx);
      const map = maps[i];
      const targets = sub.targets.map((y) => map.get(y)!);
      return sub.relabel({ targets, taskLabels: new Int32Array(n).fill(task ? i : 0) });
    });
  };
  const trainSets = build(train, "train");
  const testSets = build(test, "test");
  const name = opts.name ?? (task ? "TaskIncremental" : "ClassIncremental");
  const info = makeInfo(
    name,
    task ? "task-incremental" : "class-incremental",
    maxLabelPlusOne([...trainSets, ...testSets]),
    train.inputShape,
    split.length,
  );
  const s = streams(info, trainSets, testSets);
  return {
    info,
    ...s,
    classesPerExperience: s.train.map((e) => e.classes),
    classOrder: order,
    originalClassesPerExperience: original,
    classMaps: maps,
  };
}

/**
 * Task-incremental split: {@link classIncremental} with `taskLabels: true` and, unless told
 * otherwise, classes remapped to `0..k-1` within each experience (one head per task).
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { taskIncremental } from "./generators.ts";
 * const y = Array.from({ length: 40 }, (_, i) => i % 4);
 * const d = new ArrayDataset({ x: new Float32Array(40), y, inputShape: [1] });
 * const b = taskIncremental({ train: d, test: d, experiences: 2 });
 * console.assert(b.train[1].taskLabel === 1 && b.train[1].classes.join() === "0,1");
 * ```
 */
export function taskIncremental(
  opts: Omit<ClassIncrementalOptions, "taskLabels">,
): ClassIncrementalBenchmark {
  checkOptions("taskIncremental", opts, TASK_INCREMENTAL_OPTIONS);
  return classIncremental({
    ...opts,
    taskLabels: true,
    remapClasses: opts.remapClasses ?? true,
    name: opts.name ?? "TaskIncremental",
  });
}

// ---------------------------------------------------------------------------------------------
// New instances
// ---------------------------------------------------------------------------------------------

/** Options of {@link newInstances}. */
export interface NewInstancesOptions {
  train: Dataset;
  test: Dataset;
  /** Number of training experiences. */
  experiences: number;
  /** Seed of the sample shuffle. @default 0 */
  seed?: number;
  /**
   * Give every experience (about) the same number of samples of each class (Avalanche's
   * `balance_experiences`); otherwise the shuffled training set is cut into equal chunks.
   * @default false
   */
  balanceClasses?: boolean;
  /** Benchmark name. @default "NewInstances" */
  name?: string;
}

/**
 * New-instances benchmark (Avalanche's `ni_benchmark`): the same classes throughout, the
 * training samples shuffled and cut into `experiences` disjoint chunks whose sizes differ by at
 * most one (class-balanced with `balanceClasses`). Task labels are all 0.
 *
 * As in Avalanche, the **test stream is a single experience holding the whole test set**, so it
 * is shorter than the training stream.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { newInstances } from "./generators.ts";
 * const y = Array.from({ length: 90 }, (_, i) => i % 3);
 * const d = new ArrayDataset({ x: new Float32Array(90), y, inputShape: [1] });
 * const b = newInstances({ train: d, test: d, experiences: 3, balanceClasses: true });
 * console.assert(b.train.length === 3 && b.train[0].dataset.length === 30 && b.test.length === 1);
 * ```
 */
export function newInstances(opts: NewInstancesOptions): Benchmark {
  const fn = "newInstances";
  checkOptions(fn, opts, {
    train: "object",
    test: "object",
    experiences: "integer",
    seed: "number",
    balanceClasses: "boolean",
    name: "string",
  });
  checkDatasets(fn, opts?.train, opts?.test);
  const { train, test } = opts;
  const e = checkInt(fn, "experiences", opts.experiences, 1, "pass the number of experiences");
  if (e > train.length) {
    throw new RangeError(
      `${fn}: experiences (${e}) exceeds the number of training samples (${train.length}), ` +
        `so some experience would be empty; use at most ${train.length} experiences`,
    );
  }
  if (test.length === 0) throw new RangeError(`${fn}: the test set is empty`);
  const rng = new Rng(checkSeed(fn, opts.seed ?? 0));
  const chunks: number[][] = Array.from({ length: e }, () => []);
  if (opts.balanceClasses) {
    let offset = 0;
    for (const idx of train.indicesByClass().values()) {
      const shuffled = rng.shuffle(Int32Array.from(idx));
      const base = Math.floor(shuffled.length / e), extra = shuffled.length % e;
      let o = 0;
      for (let j = 0; j < e; j++) {
        // Remainders go to experiences in rotating order so that totals stay within one.
        const k = (offset + j) % e;
        const take = base + (j < extra ? 1 : 0);
        for (let t = 0; t < take; t++) chunks[k].push(shuffled[o++]);
      }
      offset = (offset + extra) % e;
    }
  } else {
    const perm = rng.permutation(train.length);
    const base = Math.floor(train.length / e), extra = train.length % e;
    let o = 0;
    for (let k = 0; k < e; k++) {
      const take = base + (k < extra ? 1 : 0);
      for (let t = 0; t < take; t++) chunks[k].push(perm[o++]);
    }
  }
  const trainSets = chunks.map((c) => withTask(train.subset(Int32Array.from(c).sort()), 0));
  const testSet = withTask(test, 0);
  const info = makeInfo(
    opts.name ?? "NewInstances",
    "new-instances",
    maxLabelPlusOne([train, test]),
    train.inputShape,
    e,
  );
  const s = streams(info, trainSets, [testSet]);
  return { info, ...s, classesPerExperience: s.train.map((x) => x.classes) };
}

// ---------------------------------------------------------------------------------------------
// Domain-incremental: permutations and rotations
// ---------------------------------------------------------------------------------------------

function requireArrayDataset(fn: string, name: string, d: Dataset): ArrayDataset {
  if (!(d instanceof ArrayDataset)) {
    throw new TypeError(
      `${fn}: ${name} must be an ArrayDataset (its pixels are shared or resampled), got a ` +
        `${d.constructor.name}; build one with new ArrayDataset({ x, y, inputShape, ... })`,
    );
  }
  return d;
}

/** A copy of `d`'s options over other storage/permutation/task labels (targets kept). */
function derive(
  d: ArrayDataset,
  change: { x?: Uint8Array | Float32Array; permutation?: Int32Array; task: number },
): ArrayDataset {
  const o = d.options;
  return new ArrayDataset({
    x: change.x ?? d.raw,
    y: d.targets,
    inputShape: d.inputShape,
    taskLabels: new Int32Array(d.length).fill(change.task),
    scale: o.scale,
    mean: o.mean,
    std: o.std,
    permutation: change.permutation,
  });
}

/** Options of {@link permuted}. */
export interface PermutedOptions {
  /** Training samples; must be an {@link ArrayDataset}. */
  train: Dataset;
  /** Test samples; must be an {@link ArrayDataset}. */
  test: Dataset;
  /** Number of experiences (one permutation each). */
  experiences: number;
  /** Seed of the permutations. @default 0 */
  seed?: number;
  /** Give experience `i` task label `i` (task-incremental); otherwise all 0. @default false */
  taskLabels?: boolean;
  /** Benchmark name. @default "Permuted" */
  name?: string;
}

/** A benchmark from {@link permuted}, with its permutations. */
export interface PermutedBenchmark extends Benchmark {
  /** Permutation of each experience: feature `k` of a sample is source feature `p[k]`. */
  readonly permutations: readonly Int32Array[];
}

/**
 * Permuted benchmark (Avalanche's `PermutedMNIST`): every experience, the first included, sees
 * the whole training (and test) set through its own seeded random feature permutation. The
 * experiences share the source pixel storage (`ArrayDataset`'s `permutation` option, no copies)
 * and keep its `scale`/`mean`/`std`. Domain-incremental with task label 0, or task-incremental
 * with `taskLabels: true`.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { permuted } from "./generators.ts";
 * const d = new ArrayDataset({ x: new Uint8Array(20 * 16), y: new Array(20).fill(0).map((_, i) => i % 2), inputShape: [16], scale: 1 / 255 });
 * const b = permuted({ train: d, test: d, experiences: 3, seed: 1 });
 * console.assert(b.permutations.length === 3 && b.train[2].dataset.length === 20);
 * ```
 */
export function permuted(opts: PermutedOptions): PermutedBenchmark {
  const fn = "permuted";
  checkOptions(fn, opts, {
    train: "object",
    test: "object",
    experiences: "integer",
    seed: "number",
    taskLabels: "boolean",
    name: "string",
  });
  checkDatasets(fn, opts?.train, opts?.test);
  const train = requireArrayDataset(fn, "train", opts.train);
  const test = requireArrayDataset(fn, "test", opts.test);
  const e = checkInt(fn, "experiences", opts.experiences, 1, "pass the number of experiences");
  if (train.length === 0 || test.length === 0) {
    throw new RangeError(`${fn}: the ${train.length === 0 ? "train" : "test"} set is empty`);
  }
  const rng = new Rng(checkSeed(fn, opts.seed ?? 0));
  const size = train.sampleSize;
  const permutations = Array.from({ length: e }, () => rng.permutation(size));
  const task = opts.taskLabels ?? false;
  const view = (d: ArrayDataset, p: Int32Array, i: number) =>
    derive(d, {
      permutation: d.options.permutation ? composePermutations(d.options.permutation, p) : p,
      task: task ? i : 0,
    });
  const trainSets = permutations.map((p, i) => view(train, p, i));
  const testSets = permutations.map((p, i) => view(test, p, i));
  const info = makeInfo(
    opts.name ?? "Permuted",
    task ? "task-incremental" : "domain-incremental",
    maxLabelPlusOne([train, test]),
    train.inputShape,
    e,
  );
  const s = streams(info, trainSets, testSets);
  return { info, ...s, classesPerExperience: s.train.map((x) => x.classes), permutations };
}

/** Options of {@link rotated}. */
export interface RotatedOptions {
  /** Training images; must be an {@link ArrayDataset}. */
  train: Dataset;
  /** Test images; must be an {@link ArrayDataset}. */
  test: Dataset;
  /** Number of experiences; may be left out when `rotations` is given. */
  experiences?: number;
  /** Seed of the random angles. @default 0 */
  seed?: number;
  /** Explicit angle of each experience in degrees (counter-clockwise), overriding the draw. */
  rotations?: readonly number[];
  /** Range `[min, max]` the random integer angles are drawn from. @default [-180, 180] */
  rotationRange?: readonly [number, number];
  /** Image geometry `[rows, cols]` or `[rows, cols, channels]` when the input shape is flat and not square. */
  imageShape?: readonly number[];
  /** Give experience `i` task label `i` (task-incremental); otherwise all 0. @default false */
  taskLabels?: boolean;
  /** Benchmark name. @default "Rotated" */
  name?: string;
}

/** A benchmark from {@link rotated}, with its angles. */
export interface RotatedBenchmark extends Benchmark {
  /** Angle of each experience in degrees, counter-clockwise. */
  readonly rotations: readonly number[];
}

/**
 * Rotated benchmark (Avalanche's `RotatedMNIST`): experience `i` sees the whole training (and
 * test) set rotated by one angle, drawn as a seeded random integer in `rotationRange`
 * (default [-180, 180]) or taken from `rotations`. The rotated images are computed once per
 * experience (bilinear interpolation about the image centre, zero fill, rounded back to bytes
 * for byte data) and keep the source's `scale`/`mean`/`std`; an angle that is a multiple of 360°
 * shares the source pixels. Domain-incremental with task label 0, or task-incremental with
 * `taskLabels: true`.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { rotated } from "./generators.ts";
 * const d = new ArrayDataset({ x: new Uint8Array(10 * 64), y: new Array(10).fill(0).map((_, i) => i % 2), inputShape: [8, 8, 1] });
 * const b = rotated({ train: d, test: d, rotations: [0, 90, 180] });
 * console.assert(b.train.length === 3 && b.rotations[1] === 90);
 * ```
 */
export function rotated(opts: RotatedOptions): RotatedBenchmark {
  const fn = "rotated";
  checkOptions(fn, opts, {
    train: "object",
    test: "object",
    experiences: "integer",
    seed: "number",
    rotations: "array",
    rotationRange: "array",
    imageShape: "array",
    taskLabels: "boolean",
    name: "string",
  });
  checkDatasets(fn, opts?.train, opts?.test);
  const train = requireArrayDataset(fn, "train", opts.train);
  const test = requireArrayDataset(fn, "test", opts.test);
  if (train.length === 0 || test.length === 0) {
    throw new RangeError(`${fn}: the ${train.length === 0 ? "train" : "test"} set is empty`);
  }
  let angles: number[];
  if (opts.rotations !== undefined) {
    if (!Array.isArray(opts.rotations) || opts.rotations.length === 0) {
      throw new TypeError(`${fn}: rotations must be a non-empty array of angles in degrees`);
    }
    if (opts.experiences !== undefined && opts.experiences !== opts.rotations.length) {
      throw new RangeError(
        `${fn}: experiences is ${opts.experiences} but rotations [${opts.rotations}] has ` +
          `${opts.rotations.length} entries; make them agree or leave experiences out`,
      );
    }
    opts.rotations.forEach((a, i) => {
      if (typeof a !== "number" || !Number.isFinite(a)) {
        throw new RangeError(`${fn}: rotations[${i}] must be a finite angle in degrees, got ${a}`);
      }
    });
    angles = [...opts.rotations];
  } else {
    if (opts.experiences === undefined) {
      throw new TypeError(`${fn}: pass experiences (the number of experiences) or rotations`);
    }
    const e = checkInt(fn, "experiences", opts.experiences, 1, "pass the number of experiences");
    const [lo, hi] = opts.rotationRange ?? [-180, 180];
    const a = Math.ceil(lo), b = Math.floor(hi);
    if (!Number.isFinite(a) || !Number.isFinite(b) || a > b) {
      throw new RangeError(
        `${fn}: rotationRange [${opts.rotationRange}] holds no whole degree; pass [min, max] with min <= max`,
      );
    }
    const rng = new Rng(checkSeed(fn, opts.seed ?? 0));
    angles = Array.from({ length: e }, () => a + rng.int(b - a + 1));
  }
  const geometry = imageGeometry(opts.imageShape ?? train.inputShape);
  const g = geometry.rows * geometry.cols * geometry.channels;
  if (g !== train.sampleSize) {
    throw new RangeError(
      `${fn}: image shape ${geometry.rows}×${geometry.cols}×${geometry.channels} = ${g} values ` +
        `does not match the ${train.sampleSize} features of a sample; fix imageShape`,
    );
  }
  const task = opts.taskLabels ?? false;
  // Materialize a source permutation first, so rotations act on the image as the model sees it.
  const pixels = (d: ArrayDataset): Uint8Array | Float32Array => {
    const p = d.options.permutation;
    if (!p) return d.raw;
    const raw = d.raw;
    const out = raw instanceof Uint8Array
      ? new Uint8Array(raw.length)
      : new Float32Array(raw.length);
    for (let i = 0, base = 0; i < d.length; i++, base += g) {
      for (let k = 0; k < g; k++) out[base + k] = raw[base + p[k]];
    }
    return out;
  };
  const trainPix = pixels(train), testPix = pixels(test);
  const view = (d: ArrayDataset, pix: Uint8Array | Float32Array, angle: number, i: number) =>
    derive(d, {
      x: angle % 360 === 0 ? pix : rotateImages(pix, geometry, angle),
      task: task ? i : 0,
    });
  const trainSets = angles.map((a, i) => view(train, trainPix, a, i));
  const testSets = angles.map((a, i) => view(test, testPix, a, i));
  const info = makeInfo(
    opts.name ?? "Rotated",
    task ? "task-incremental" : "domain-incremental",
    maxLabelPlusOne([train, test]),
    train.inputShape,
    angles.length,
  );
  const s = streams(info, trainSets, testSets);
  return { info, ...s, classesPerExperience: s.train.map((x) => x.classes), rotations: angles };
}

// ---------------------------------------------------------------------------------------------
// Online streams
// ---------------------------------------------------------------------------------------------

/** A sub-experience of an online stream made by {@link splitOnline}. */
export interface OnlineExperience extends Experience {
  /** The experience it was cut from. */
  readonly origin: Experience;
  /** Position among the sub-experiences of `origin` (0-based). */
  readonly subIndex: number;
  /** Number of sub-experiences `origin` was cut into. */
  readonly subCount: number;
  /** Whether it is the first sub-experience of `origin` (a task boundary just passed). */
  readonly isFirst: boolean;
  /** Whether it is the last sub-experience of `origin` (a task boundary comes next). */
  readonly isLast: boolean;
}

/** A stream of {@link OnlineExperience}s. */
export interface OnlineStream extends ReadonlyArray<OnlineExperience> {
  readonly name: string;
}

/** A benchmark whose training stream was cut by {@link splitOnline}. */
export interface OnlineBenchmark extends Benchmark {
  readonly train: OnlineStream;
  /** The benchmark before splitting. */
  readonly original: Benchmark;
}

/** Options of {@link splitOnline}. */
export interface SplitOnlineOptions {
  /** Samples per sub-experience (the last of each experience may be smaller). */
  experienceSize: number;
  /** Shuffle each experience's samples before cutting. @default true */
  shuffle?: boolean;
  /** Seed of the shuffle. @default 0 */
  seed?: number;
  /** Drop the last sub-experience of an experience when it is smaller than `experienceSize`. @default false */
  dropLast?: boolean;
}

/** The keys of {@link SplitOnlineOptions}, for checking what users pass. */
const SPLIT_ONLINE_OPTIONS: OptionSpec<SplitOnlineOptions> = {
  experienceSize: "integer",
  shuffle: "boolean",
  seed: "number",
  dropLast: "boolean",
};

function splitStream(stream: Stream, opts: SplitOnlineOptions, info?: BenchmarkInfo): OnlineStream {
  const fn = "splitOnline";
  const size = checkInt(
    fn,
    "experienceSize",
    opts?.experienceSize,
    1,
    "pass the samples per sub-experience",
  );
  const rng = new Rng(checkSeed(fn, opts.seed ?? 0));
  const out: OnlineExperience[] = [];
  for (const origin of stream) {
    const n = origin.dataset.length;
    const order = opts.shuffle ?? true
      ? rng.permutation(n)
      : Int32Array.from({ length: n }, (_, i) => i);
    const count = opts.dropLast ? Math.floor(n / size) : Math.ceil(n / size);
    if (count === 0) {
      throw new RangeError(
        `${fn}: experience ${origin.id} has ${n} samples, fewer than experienceSize = ${size}, ` +
          `and dropLast is set, so nothing would be left; lower experienceSize or unset dropLast`,
      );
    }
    for (let j = 0; j < count; j++) {
      const dataset = origin.dataset.subset(order.subarray(j * size, Math.min(n, (j + 1) * size)));
      const base = makeExperience(stream.name, out.length, dataset, info ?? origin.info);
      out.push({
        ...base,
        origin,
        subIndex: j,
        subCount: count,
        isFirst: j === 0,
        isLast: j === count - 1,
      });
    }
  }
  return makeStream(stream.name, out) as unknown as OnlineStream;
}

/**
 * Cuts each experience of a stream into sub-experiences of `experienceSize` samples, as
 * Avalanche's `split_online_stream` does for online continual learning (OCL). Sub-experiences
 * get consecutive ids across the whole stream; each records its `origin` experience, its
 * position in it (`subIndex`/`subCount`, `isFirst`/`isLast`: the task boundaries) and, as
 * `classes`/`taskLabels`, only what its samples actually hold.
 *
 * Given a benchmark, only the training stream is cut; the result's `info.numExperiences` and
 * `classesPerExperience` describe the cut stream, its test stream is unchanged (re-pointed at the
 * new info) and `original` keeps the input. Given a stream, the sub-experiences keep the
 * original experiences' `info`.
 *
 * @example Online stream with 10 samples per step
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { classIncremental, splitOnline } from "./generators.ts";
 * const y = Array.from({ length: 100 }, (_, i) => i % 4);
 * const d = new ArrayDataset({ x: new Float32Array(100), y, inputShape: [1] });
 * const b = splitOnline(classIncremental({ train: d, test: d, experiences: 2 }), { experienceSize: 10 });
 * console.assert(b.train.length === 10 && b.train[4].isLast && b.train[5].origin.id === 1);
 * ```
 */
export function splitOnline(stream: Stream, opts: SplitOnlineOptions): OnlineStream;
export function splitOnline(benchmark: Benchmark, opts: SplitOnlineOptions): OnlineBenchmark;
export function splitOnline(
  source: Stream | Benchmark,
  opts: SplitOnlineOptions,
): OnlineStream | OnlineBenchmark {
  checkOptions("splitOnline", opts, SPLIT_ONLINE_OPTIONS);
  if (Array.isArray(source)) return splitStream(source as Stream, opts);
  const b = source as Benchmark;
  if (!b || typeof b !== "object" || !Array.isArray(b.train) || !Array.isArray(b.test)) {
    throw new TypeError(`splitOnline: expected a Stream or a Benchmark, got ${String(source)}`);
  }
  // Count the sub-experiences first so that the new info can be shared by every experience.
  const size = checkInt(
    "splitOnline",
    "experienceSize",
    opts?.experienceSize,
    1,
    "pass the samples per sub-experience",
  );
  let total = 0;
  for (const e of b.train) {
    total += opts.dropLast
      ? Math.floor(e.dataset.length / size)
      : Math.ceil(e.dataset.length / size);
  }
  const info: BenchmarkInfo = { ...b.info, numExperiences: total };
  const train = splitStream(b.train, opts, info);
  const test = makeStream(b.test.name, b.test.map((e) => ({ ...e, info })));
  return {
    ...b,
    info,
    train,
    test,
    classesPerExperience: train.map((e) => e.classes),
    original: b,
  };
}

// ---------------------------------------------------------------------------------------------
// Subsampling
// ---------------------------------------------------------------------------------------------

/** Options of {@link subsample}. */
export interface SubsampleOptions {
  /** Samples kept per training experience (all when the experience is smaller; all when left out). */
  trainPerExperience?: number;
  /** Samples kept per test experience (all when the experience is smaller; all when left out). */
  testPerExperience?: number;
  /** Seed of the picks. @default 0 */
  seed?: number;
}

/**
 * `k` class-balanced sample indices of `d`: every class gets `floor(k / C)` or one more (the
 * extras to random classes), classes with too few samples give theirs up to the others.
 */
function balancedPick(d: Dataset, k: number, rng: Rng): Int32Array {
  if (k >= d.length) return Int32Array.from({ length: d.length }, (_, i) => i);
  const byClass = [...d.indicesByClass().values()];
  const alloc = new Array(byClass.length).fill(0);
  let left = k;
  let active = byClass.map((_, c) => c);
  while (left > 0 && active.length > 0) {
    const share = Math.floor(left / active.length);
    if (share === 0) {
      for (const c of rng.shuffle([...active]).slice(0, left)) alloc[c]++;
      break;
    }
    for (const c of active) {
      const t = Math.min(share, byClass[c].length - alloc[c]);
      alloc[c] += t;
      left -= t;
    }
    active = active.filter((c) => alloc[c] < byClass[c].length);
  }
  const out: number[] = [];
  byClass.forEach((idx, c) => {
    for (const j of rng.sample(idx.length, alloc[c])) out.push(idx[j]);
  });
  return Int32Array.from(out).sort();
}

/**
 * A smaller benchmark of the same structure for quick runs: each training (test) experience keeps
 * `trainPerExperience` (`testPerExperience`) samples, picked class-balanced with a seed. Extra
 * fields of the benchmark and of its experiences (class order, permutations, online `origin`,
 * ...) and `info` are kept; `classesPerExperience` is recomputed.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { classIncremental, subsample } from "./generators.ts";
 * const y = Array.from({ length: 100 }, (_, i) => i % 4);
 * const d = new ArrayDataset({ x: new Float32Array(100), y, inputShape: [1] });
 * const b = subsample(classIncremental({ train: d, test: d, experiences: 2 }), { trainPerExperience: 10 });
 * console.assert(b.train[0].dataset.length === 10);
 * ```
 */
export function subsample<B extends Benchmark>(benchmark: B, opts: SubsampleOptions): B {
  const fn = "subsample";
  if (!benchmark || !Array.isArray(benchmark.train) || !Array.isArray(benchmark.test)) {
    throw new TypeError(`${fn}: expected a Benchmark, got ${String(benchmark)}`);
  }
  checkOptions(fn, opts, {
    trainPerExperience: "integer",
    testPerExperience: "integer",
    seed: "number",
  });
  const trainK = opts?.trainPerExperience === undefined
    ? undefined
    : checkInt(fn, "trainPerExperience", opts.trainPerExperience, 1, "keep at least one sample");
  const testK = opts?.testPerExperience === undefined
    ? undefined
    : checkInt(fn, "testPerExperience", opts.testPerExperience, 1, "keep at least one sample");
  const rng = new Rng(checkSeed(fn, opts?.seed ?? 0));
  const shrink = (s: Stream, k: number | undefined): Stream =>
    makeStream(
      s.name,
      s.map((e) => {
        if (k === undefined || k >= e.dataset.length) return e;
        return withDataset(e, e.dataset.subset(balancedPick(e.dataset, k, rng)));
      }),
    );
  const train = shrink(benchmark.train, trainK);
  const test = shrink(benchmark.test, testK);
  return { ...benchmark, train, test, classesPerExperience: train.map((e) => e.classes) };
}
