/**
 * The classic continual-learning benchmarks on MNIST and Fashion-MNIST, with Avalanche's
 * semantics: Split MNIST, Split Fashion-MNIST, Permuted MNIST and Rotated MNIST.
 *
 * Data come from {@link loadDataset} (`dataDir` → cache → download); pixels stay bytes, scaled to
 * [0, 1] and normalized with the dataset's mean/std when batched.
 *
 * @module
 */
import { type ImageDataset, loadDataset, type LoadOptions } from "../../datasets/mod.ts";
import { LOAD_OPTIONS } from "../../datasets/load.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";
import { ArrayDataset } from "../data/dataset.ts";
import {
  classIncremental,
  type ClassIncrementalBenchmark,
  permuted,
  type PermutedBenchmark,
  rotated,
  type RotatedBenchmark,
} from "./generators.ts";

/** Per-pixel mean and standard deviation of the [0, 1]-scaled training images. */
export interface PixelStats {
  readonly mean: number;
  readonly std: number;
}

/** Normalization constants of MNIST (the torchvision/Avalanche values). */
export const MNIST_STATS: PixelStats = Object.freeze({ mean: 0.1307, std: 0.3081 });
/** Normalization constants of Fashion-MNIST (the Avalanche values). */
export const FMNIST_STATS: PixelStats = Object.freeze({ mean: 0.2860, std: 0.3530 });

/** Options shared by the classic benchmarks: where the data are and how inputs look. */
export interface ClassicOptions extends LoadOptions {
  /** Normalize the [0, 1] pixels with the dataset's mean/std. @default true */
  normalize?: boolean;
  /** `"flat"`: samples of shape `[784]`; `"image"`: `[28, 28, 1]` (channel-last). @default "flat" */
  inputShape?: "flat" | "image";
  /** Use these data instead of loading them (e.g. synthetic images in tests). */
  data?: ImageDataset;
}

const INPUT_SHAPES = oneOf("flat", "image");

/** The keys of {@link ClassicOptions}, for checking what users pass. */
const CLASSIC_OPTIONS: OptionSpec<ClassicOptions> = {
  ...LOAD_OPTIONS,
  normalize: "boolean",
  inputShape: INPUT_SHAPES,
  data: "object",
};

/** Options of {@link toArrayDatasets}. */
export interface ToArrayDatasetsOptions {
  /** Normalize the [0, 1] pixels with `stats`. @default true */
  normalize?: boolean;
  /** `"flat"`: `[rows * cols]`; `"image"`: `[rows, cols, 1]`. @default "flat" */
  inputShape?: "flat" | "image";
  /** Mean/std to normalize with; measured on the training images when left out. */
  stats?: PixelStats;
}

/**
 * Wraps an {@link ImageDataset}'s splits as byte-backed {@link ArrayDataset}s (no pixel copy),
 * scaled by 1/255 and, by default, normalized.
 *
 * @example
 * ```ts
 * import { syntheticImages } from "../../datasets/mod.ts";
 * import { toArrayDatasets } from "./classic.ts";
 * const split = syntheticImages({ n: 20, classes: 2 });
 * const { train } = toArrayDatasets({ name: "toy", train: split, test: split, classes: 2 }, { inputShape: "image" });
 * console.assert(train.inputShape.join() === "28,28,1");
 * ```
 */
export function toArrayDatasets(
  data: ImageDataset,
  opts: ToArrayDatasetsOptions = {},
): { train: ArrayDataset; test: ArrayDataset } {
  checkOptions("toArrayDatasets", opts, {
    normalize: "boolean",
    inputShape: INPUT_SHAPES,
    stats: "object",
  });
  const shape = opts.inputShape ?? "flat";
  if (shape !== "flat" && shape !== "image") {
    throw new TypeError(`inputShape must be "flat" or "image", got ${JSON.stringify(shape)}`);
  }
  const normalize = opts.normalize ?? true;
  const stats = normalize ? opts.stats ?? measureStats(data.train.images) : { mean: 0, std: 1 };
  if (!(stats.std > 0) || !Number.isFinite(stats.mean)) {
    throw new RangeError(
      `Normalization needs a finite mean and std > 0, got mean ${stats.mean}, std ${stats.std}`,
    );
  }
  const wrap = (s: ImageDataset["train"]) =>
    new ArrayDataset({
      x: s.images,
      y: s.labels,
      inputShape: shape === "flat" ? [s.rows * s.cols] : [s.rows, s.cols, 1],
      scale: 1 / 255,
      mean: stats.mean,
      std: stats.std,
    });
  return { train: wrap(data.train), test: wrap(data.test) };
}

function measureStats(bytes: Uint8Array): PixelStats {
  const hist = new Float64Array(256);
  for (let i = 0; i < bytes.length; i++) hist[bytes[i]]++;
  let s = 0, s2 = 0;
  for (let v = 0; v < 256; v++) {
    const x = v / 255;
    s += hist[v] * x;
    s2 += hist[v] * x * x;
  }
  const n = Math.max(1, bytes.length);
  const mean = s / n;
  return { mean, std: Math.sqrt(Math.max(s2 / n - mean * mean, 0)) || 1 };
}

async function load(
  name: "mnist" | "fashion-mnist",
  stats: PixelStats,
  opts: ClassicOptions,
): Promise<{ train: ArrayDataset; test: ArrayDataset; rows: number; cols: number }> {
  const { normalize, inputShape, data: given, ...loadOpts } = opts;
  const data = given ?? await loadDataset(name, loadOpts);
  const sets = toArrayDatasets(data, { normalize, inputShape, stats });
  return { ...sets, rows: data.train.rows, cols: data.train.cols };
}

/** Options of {@link splitMNIST} and {@link splitFMNIST}. */
export interface SplitOptions extends ClassicOptions {
  /** Number of experiences. @default 5 */
  experiences?: number;
  /** Seed of the class order. @default 0 */
  seed?: number;
  /** Explicit class order; `[0, 1, ..., 9]` gives the natural order. */
  fixedClassOrder?: readonly number[];
  /** Shuffle the class order with `seed` (Avalanche's `shuffle`); `false` gives sorted order. @default true */
  shuffle?: boolean;
  /** Number of classes of each experience, for uneven splits. */
  classesPerExperience?: readonly number[];
  /** Task-incremental: experience `i` gets task label `i`. @default false */
  returnTaskId?: boolean;
  /** Map each experience's classes to `0..k-1` (in class order). @default false */
  classIdsFromZeroInEachExp?: boolean;
  /** Map the class order to `0..9`. @default false */
  classIdsFromZeroFromFirstExp?: boolean;
}

/** The keys of {@link SplitOptions}, for checking what users pass. */
const SPLIT_OPTIONS: OptionSpec<SplitOptions> = {
  ...CLASSIC_OPTIONS,
  experiences: "integer",
  seed: "number",
  fixedClassOrder: "array",
  shuffle: "boolean",
  classesPerExperience: "array",
  returnTaskId: "boolean",
  classIdsFromZeroInEachExp: "boolean",
  classIdsFromZeroFromFirstExp: "boolean",
};

async function split(
  fn: string,
  dataset: "mnist" | "fashion-mnist",
  stats: PixelStats,
  opts: SplitOptions,
): Promise<ClassIncrementalBenchmark> {
  const {
    experiences = 5,
    seed = 0,
    fixedClassOrder,
    shuffle = true,
    classesPerExperience,
    returnTaskId = false,
    classIdsFromZeroInEachExp = false,
    classIdsFromZeroFromFirstExp = false,
    ...rest
  } = opts;
  if (classIdsFromZeroInEachExp && classIdsFromZeroFromFirstExp) {
    throw new RangeError(
      `${fn}: classIdsFromZeroInEachExp and classIdsFromZeroFromFirstExp are both true; ` +
        `they are mutually exclusive, set at most one`,
    );
  }
  const { train, test } = await load(dataset, stats, rest);
  return classIncremental({
    train,
    test,
    experiences: classesPerExperience && opts.experiences === undefined
      ? classesPerExperience.length
      : experiences,
    seed,
    fixedClassOrder,
    classOrder: shuffle ? "shuffled" : "sorted",
    classesPerExperience,
    taskLabels: returnTaskId,
    remapClasses: classIdsFromZeroInEachExp
      ? "per-experience"
      : classIdsFromZeroFromFirstExp
      ? "global"
      : false,
    name: fn,
  });
}

/**
 * Split MNIST (Avalanche's `SplitMNIST`): the 10 digits dealt to `experiences` (default 5)
 * experiences in a seeded random class order (`fixedClassOrder: [0, ..., 9]` for the natural
 * order); class-incremental, or task-incremental with `returnTaskId`.
 *
 * @example
 * ```ts
 * import { splitMNIST } from "./classic.ts";
 * const b = await splitMNIST({ fixedClassOrder: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] });
 * console.log(b.info.name, b.train[0].classes); // SplitMNIST [0, 1]
 * ```
 */
export async function splitMNIST(opts: SplitOptions = {}): Promise<ClassIncrementalBenchmark> {
  checkOptions("splitMNIST", opts, SPLIT_OPTIONS);
  return await split("SplitMNIST", "mnist", MNIST_STATS, opts);
}

/**
 * Split Fashion-MNIST (Avalanche's `SplitFMNIST`): as {@link splitMNIST} on Fashion-MNIST.
 *
 * @example
 * ```ts
 * import { splitFMNIST } from "./classic.ts";
 * const b = await splitFMNIST({ returnTaskId: true, classIdsFromZeroInEachExp: true });
 * console.log(b.info.scenario, b.train[4].taskLabel); // task-incremental 4
 * ```
 */
export async function splitFMNIST(opts: SplitOptions = {}): Promise<ClassIncrementalBenchmark> {
  checkOptions("splitFMNIST", opts, SPLIT_OPTIONS);
  return await split("SplitFMNIST", "fashion-mnist", FMNIST_STATS, opts);
}

/** Options of {@link permutedMNIST}. */
export interface PermutedMNISTOptions extends ClassicOptions {
  /** Number of experiences. @default 10 */
  experiences?: number;
  /** Seed of the permutations. @default 0 */
  seed?: number;
  /** Task-incremental: experience `i` gets task label `i`. @default false */
  returnTaskId?: boolean;
}

/**
 * Permuted MNIST (Avalanche's `PermutedMNIST`): `experiences` (default 10) copies of MNIST, each
 * seen through its own seeded random pixel permutation (the first included); the pixel bytes are
 * shared, not copied. Domain-incremental, or task-incremental with `returnTaskId`.
 *
 * @example
 * ```ts
 * import { permutedMNIST } from "./classic.ts";
 * const b = await permutedMNIST({ experiences: 3 });
 * console.log(b.info.name, b.permutations.length); // PermutedMNIST 3
 * ```
 */
export async function permutedMNIST(opts: PermutedMNISTOptions = {}): Promise<PermutedBenchmark> {
  checkOptions("permutedMNIST", opts, {
    ...CLASSIC_OPTIONS,
    experiences: "integer",
    seed: "number",
    returnTaskId: "boolean",
  });
  const { experiences = 10, seed = 0, returnTaskId = false, ...rest } = opts;
  const { train, test } = await load("mnist", MNIST_STATS, rest);
  return permuted({
    train,
    test,
    experiences,
    seed,
    taskLabels: returnTaskId,
    name: "PermutedMNIST",
  });
}

/** Options of {@link rotatedMNIST}. */
export interface RotatedMNISTOptions extends ClassicOptions {
  /** Number of experiences (ignored when `rotations` is given). @default 10 */
  experiences?: number;
  /** Seed of the random angles. @default 0 */
  seed?: number;
  /** Explicit angle of each experience in degrees (counter-clockwise). */
  rotations?: readonly number[];
  /** Range the random integer angles are drawn from. @default [-180, 180] */
  rotationRange?: readonly [number, number];
  /** Task-incremental: experience `i` gets task label `i`. @default false */
  returnTaskId?: boolean;
}

/**
 * Rotated MNIST (Avalanche's `RotatedMNIST`): `experiences` (default 10) copies of MNIST, each
 * rotated by a seeded random integer angle in [-180, 180] (or `rotations`), bilinear about the
 * centre with zero fill, precomputed as bytes once per experience (about 55 MB each).
 * Domain-incremental, or task-incremental with `returnTaskId`.
 *
 * @example
 * ```ts
 * import { rotatedMNIST } from "./classic.ts";
 * const b = await rotatedMNIST({ rotations: [0, 45, 90] });
 * console.log(b.info.name, b.rotations); // RotatedMNIST [0, 45, 90]
 * ```
 */
export async function rotatedMNIST(opts: RotatedMNISTOptions = {}): Promise<RotatedBenchmark> {
  checkOptions("rotatedMNIST", opts, {
    ...CLASSIC_OPTIONS,
    experiences: "integer",
    seed: "number",
    rotations: "array",
    rotationRange: "array",
    returnTaskId: "boolean",
  });
  const { experiences, seed = 0, rotations, rotationRange, returnTaskId = false, ...rest } = opts;
  const { train, test, rows, cols } = await load("mnist", MNIST_STATS, rest);
  return rotated({
    train,
    test,
    experiences: rotations ? experiences : experiences ?? 10,
    seed,
    rotations,
    rotationRange,
    imageShape: [rows, cols, 1],
    taskLabels: returnTaskId,
    name: "RotatedMNIST",
  });
}
