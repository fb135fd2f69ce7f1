/**
 * The vision benchmarks of Avalanche 0.6 (`benchmarks/classic/ccifar10.py`, `ccifar100.py`,
 * `ctiny_imagenet.py`): Split CIFAR-10, Split CIFAR-100, Split CIFAR-110 and Split Tiny
 * ImageNet, with their class orders, task labels, normalization constants and train/eval
 * transform groups.
 *
 * Inputs are channel-last images (`[32, 32, 3]`, `[64, 64, 3]`), the NHWC layout of `Conv2d`
 * and `ToImage`. Pixels stay bytes; they are scaled to [0, 1] and normalized per channel when
 * batched (the dataset's fill), so every reader of a dataset, replay memories and feature
 * extractors included, sees normalized inputs. The train group's random crop then pads with
 * the normalized value of a zero pixel, `-mean / std`: the same numbers as torchvision's
 * pad-crop-flip-then-normalize, since normalization is per channel and crops and flips move
 * whole pixels.
 *
 * @module
 */
import {
  ARCHIVE_DATASETS,
  type ImageDataset,
  loadArchive,
  type LoadOptions,
} from "../../datasets/mod.ts";
import { LOAD_OPTIONS } from "../../datasets/load.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { ArrayDataset, concatDatasets, type Dataset } from "../data/dataset.ts";
import {
  checkTransformGroups,
  type ImageTransform,
  randomCrop,
  randomHorizontalFlip,
  type TransformGroups,
} from "../data/augment.ts";
import { Rng } from "../random.ts";
import { classIncremental, type ClassIncrementalBenchmark } from "./generators.ts";

/** Per-channel mean and standard deviation of the [0, 1]-scaled pixels. */
export interface ChannelStats {
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/** CIFAR-10's normalization constants, as Avalanche's `SplitCIFAR10` has them. */
export const CIFAR10_STATS: ChannelStats = Object.freeze({
  mean: Object.freeze([0.4914, 0.4822, 0.4465]),
  std: Object.freeze([0.2023, 0.1994, 0.2010]),
});

/** CIFAR-100's normalization constants, as Avalanche's `SplitCIFAR100` and `SplitCIFAR110`. */
export const CIFAR100_STATS: ChannelStats = Object.freeze({
  mean: Object.freeze([0.5071, 0.4865, 0.4409]),
  std: Object.freeze([0.2673, 0.2564, 0.2762]),
});

/**
 * Tiny ImageNet's normalization constants in Avalanche 0.6's `SplitTinyImageNet`: CIFAR-10's
 * values (its code normalizes with them, not with ImageNet's).
 */
export const TINY_IMAGENET_STATS: ChannelStats = CIFAR10_STATS;

/** ImageNet's constants (torchvision's), for `stats` when ImageNet normalization is wanted. */
export const IMAGENET_STATS: ChannelStats = Object.freeze({
  mean: Object.freeze([0.485, 0.456, 0.406]),
  std: Object.freeze([0.229, 0.224, 0.225]),
});

/**
 * The fill value of padded pixels for a dataset normalized with `stats`: a zero pixel's,
 * `-mean[c] / std[c]` per channel.
 *
 * @example
 * ```ts
 * import { CIFAR10_STATS, zeroPixel } from "./vision.ts";
 * console.assert(Math.abs(zeroPixel(CIFAR10_STATS)[0] + 0.4914 / 0.2023) < 1e-12);
 * ```
 */
export function zeroPixel(stats: ChannelStats): number[] {
  return stats.mean.map((m, c) => -m / stats.std[c]);
}

/**
 * Avalanche's default transform groups for CIFAR (train: `RandomCrop(32, padding=4)`,
 * `RandomHorizontalFlip()`; eval: nothing more) for a dataset normalized with `stats` at fill.
 *
 * @example
 * ```ts
 * import { cifarTransforms, CIFAR10_STATS } from "./vision.ts";
 * const g = cifarTransforms(CIFAR10_STATS);
 * console.assert(g.train.map((t) => t.kind).join() === "randomCrop,randomHorizontalFlip");
 * ```
 */
export function cifarTransforms(stats: ChannelStats): TransformGroups {
  return {
    train: [randomCrop(32, { padding: 4, fill: zeroPixel(stats) }), randomHorizontalFlip(0.5)],
    eval: [],
  };
}

/**
 * Avalanche's default transform groups for Tiny ImageNet (train: `RandomHorizontalFlip()`;
 * eval: nothing more).
 *
 * @example
 * ```ts
 * import { tinyImageNetTransforms } from "./vision.ts";
 * console.assert(tinyImageNetTransforms().train[0].kind === "randomHorizontalFlip");
 * ```
 */
export function tinyImageNetTransforms(): TransformGroups {
  return { train: [randomHorizontalFlip(0.5)], eval: [] };
}

/** Options shared by the vision benchmarks. */
export interface VisionOptions extends LoadOptions {
  /** Number of experiences. */
  experiences?: number;
  /** Seed of the class order. @default 0 */
  seed?: number;
  /** Explicit class order. */
  fixedClassOrder?: readonly number[];
  /** Shuffle the class order with `seed`; `false` gives sorted order. @default true */
  shuffle?: boolean;
  /** Task-incremental: experience `i` gets task label `i`. @default false */
  returnTaskId?: boolean;
  /** Map each experience's classes to `0..k-1` (in class order). @default false */
  classIdsFromZeroInEachExp?: boolean;
  /** Map the class order to `0..C-1`. @default false */
  classIdsFromZeroFromFirstExp?: boolean;
  /** Per-channel normalization constants (default: the benchmark's Avalanche constants). */
  stats?: ChannelStats;
  /** Normalize with `stats` (else the inputs are the [0, 1] pixels). @default true */
  normalize?: boolean;
  /**
   * Training transforms (Avalanche's `train_transform`); `[]` for none. They see normalized
   * inputs: a crop that should pad with black, as torchvision's, takes
   * `fill: zeroPixel(stats)`. @default the benchmark's
   */
  trainTransforms?: readonly ImageTransform[];
  /** Evaluation transforms (Avalanche's `eval_transform`). @default [] */
  evalTransforms?: readonly ImageTransform[];
  /** Use these data instead of loading them (e.g. generated images in tests). */
  data?: ImageDataset;
}

/** Options of {@link splitCIFAR10}, {@link splitCIFAR100} and {@link splitTinyImageNet}. */
export interface SplitVisionOptions extends VisionOptions {
  /**
   * A first experience with half the classes, the rest split evenly over the others
   * (Avalanche's `first_exp_with_half_classes`; not in Split Tiny ImageNet). @default false
   */
  firstExpWithHalfClasses?: boolean;
}

const BASE_OPTIONS: OptionSpec<
  Omit<VisionOptions, "data" | "returnTaskId" | "classIdsFromZeroInEachExp" | "shuffle">
> = {
  ...LOAD_OPTIONS,
  experiences: "integer",
  seed: "number",
  fixedClassOrder: "array",
  classIdsFromZeroFromFirstExp: "boolean",
  stats: "object",
  normalize: "boolean",
  trainTransforms: "array",
  evalTransforms: "array",
};

const TINY_OPTIONS: OptionSpec<VisionOptions> = {
  ...BASE_OPTIONS,
  shuffle: "boolean",
  returnTaskId: "boolean",
  classIdsFromZeroInEachExp: "boolean",
  data: "object",
};

const VISION_OPTIONS: OptionSpec<SplitVisionOptions> = {
  ...TINY_OPTIONS,
  firstExpWithHalfClasses: "boolean",
};

/**
 * Options of {@link splitCIFAR110} (Avalanche's: no task labels, no per-experience class ids, a
 * class order always drawn or given).
 */
export interface SplitCIFAR110Options
  extends Omit<VisionOptions, "data" | "returnTaskId" | "classIdsFromZeroInEachExp" | "shuffle"> {
  /** CIFAR-10 data to use instead of loading them. */
  cifar10?: ImageDataset;
  /** CIFAR-100 data to use instead of loading them. */
  cifar100?: ImageDataset;
}

function checkData(fn: string, data: ImageDataset, expected: string, classes: number): void {
  const ch = data.train.channels ?? 1;
  if (ch !== 3 || (data.test.channels ?? 1) !== 3 || data.classes !== classes) {
    throw new RangeError(
      `${fn}: data must be ${expected}-shaped RGB images with ${classes} classes (as ` +
        `loadDataset returns them), got ${data.train.rows}×${data.train.cols}×${ch} with ` +
        `${data.classes} classes`,
    );
  }
}

/** The splits of `data` as byte-backed datasets normalized per channel. */
function wrap(
  data: ImageDataset,
  stats: ChannelStats,
  normalize: boolean,
): { train: Dataset; test: Dataset } {
  const one = (s: ImageDataset["train"]) =>
    new ArrayDataset({
      x: s.images,
      y: s.labels,
      inputShape: [s.rows, s.cols, s.channels ?? 1],
      scale: 1 / 255,
      mean: normalize ? stats.mean : [0, 0, 0],
      std: normalize ? stats.std : [1, 1, 1],
    });
  return { train: one(data.train), test: one(data.test) };
}

function groupsFor(
  opts: VisionOptions,
  stats: ChannelStats,
  normalize: boolean,
  defaults: (s: ChannelStats) => TransformGroups,
): TransformGroups {
  const base = defaults(normalize ? stats : { mean: [0, 0, 0], std: [1, 1, 1] });
  return {
    train: opts.trainTransforms ?? base.train,
    eval: opts.evalTransforms ?? base.eval,
  };
}

async function dataOf(
  name: "cifar10" | "cifar100" | "tiny-imagenet",
  given: ImageDataset | undefined,
  opts: LoadOptions,
): Promise<ImageDataset> {
  return given ?? await loadArchive(ARCHIVE_DATASETS[name], opts);
}

function loadOptions(opts: VisionOptions): LoadOptions {
  const { dataDir, cacheDir, download, mirrors, onProgress, readTimeoutMs, timeoutMs } = opts;
  const out: LoadOptions = {};
  const set = <K extends keyof LoadOptions>(k: K, v: LoadOptions[K]) => {
    if (v !== undefined) out[k] = v;
  };
  set("dataDir", dataDir);
  set("cacheDir", cacheDir);
  set("download", download);
  set("mirrors", mirrors);
  set("onProgress", onProgress);
  set("readTimeoutMs", readTimeoutMs);
  set("timeoutMs", timeoutMs);
  return out;
}

function remap(fn: string, opts: VisionOptions): false | "global" | "per-experience" {
  if (opts.classIdsFromZeroInEachExp && opts.classIdsFromZeroFromFirstExp) {
    throw new RangeError(
      `${fn}: classIdsFromZeroInEachExp and classIdsFromZeroFromFirstExp are both true; ` +
        `they are mutually exclusive, set at most one`,
    );
  }
  return opts.classIdsFromZeroInEachExp
    ? "per-experience"
    : opts.classIdsFromZeroFromFirstExp
    ? "global"
    : false;
}

/** Classes per experience for `first_exp_with_half_classes`: half, then the rest evenly. */
function halfFirst(fn: string, classes: number, experiences: number): number[] {
  const rest = classes / 2;
  if (experiences < 2 || rest % (experiences - 1) !== 0) {
    throw new RangeError(
      `${fn}: with firstExpWithHalfClasses, the other ${rest} classes must split evenly over ` +
        `experiences - 1 = ${experiences - 1} experiences: pick experiences - 1 dividing ${rest}`,
    );
  }
  return [rest, ...new Array(experiences - 1).fill(rest / (experiences - 1))];
}

async function splitVision(
  fn: string,
  name: "cifar10" | "cifar100" | "tiny-imagenet",
  classes: number,
  shape: string,
  defaultExperiences: number,
  defaultStats: ChannelStats,
  defaults: (s: ChannelStats) => TransformGroups,
  opts: SplitVisionOptions,
): Promise<ClassIncrementalBenchmark> {
  const experiences = opts.experiences ?? defaultExperiences;
  const remapClasses = remap(fn, opts);
  const stats = opts.stats ?? defaultStats;
  const normalize = opts.normalize ?? true;
  const data = await dataOf(name, opts.data, loadOptions(opts));
  checkData(fn, data, shape, classes);
  const { train, test } = wrap(data, stats, normalize);
  const groups = checkTransformGroups(groupsFor(opts, stats, normalize, defaults));
  return classIncremental({
    train: train.withTransforms(groups),
    test: test.withTransforms(groups),
    experiences,
    seed: opts.seed ?? 0,
    fixedClassOrder: opts.fixedClassOrder,
    classOrder: opts.shuffle ?? true ? "shuffled" : "sorted",
    classesPerExperience: opts.firstExpWithHalfClasses
      ? halfFirst(fn, classes, experiences)
      : undefined,
    taskLabels: opts.returnTaskId ?? false,
    remapClasses,
    name: fn,
  });
}

/**
 * Split CIFAR-10 (Avalanche's `SplitCIFAR10`): the 10 classes dealt to `experiences` (default
 * 5) experiences in a seeded class order; inputs `[32, 32, 3]` normalized with
 * {@link CIFAR10_STATS}; training minibatches get `RandomCrop(32, padding=4)` and
 * `RandomHorizontalFlip()` from the run's generator, evaluation minibatches nothing more.
 * Avalanche requires `n_experiences` and draws an unseeded order when `seed` is None; here they
 * default to 5 and 0 (as `splitMNIST`).
 *
 * @example
 * ```ts ignore
 * import { splitCIFAR10 } from "./vision.ts";
 * const b = await splitCIFAR10({ experiences: 5, seed: 1234 }); // PERENNIAL_DATA, cache or download
 * console.log(b.info.inputShape, b.train[0].dataset.transforms?.train.length); // [32, 32, 3] 2
 * ```
 */
export async function splitCIFAR10(
  opts: SplitVisionOptions = {},
): Promise<ClassIncrementalBenchmark> {
  checkOptions("splitCIFAR10", opts, VISION_OPTIONS);
  return await splitVision(
    "SplitCIFAR10",
    "cifar10",
    10,
    "32×32",
    5,
    CIFAR10_STATS,
    cifarTransforms,
    opts,
  );
}

/**
 * Split CIFAR-100 (Avalanche's `SplitCIFAR100`): the 100 (fine) classes dealt to `experiences`
 * (default 10) experiences; normalized with {@link CIFAR100_STATS}; the CIFAR transform groups.
 *
 * @example
 * ```ts ignore
 * import { splitCIFAR100 } from "./vision.ts";
 * const b = await splitCIFAR100({ experiences: 10, returnTaskId: true, classIdsFromZeroInEachExp: true });
 * console.log(b.train[3].taskLabel, b.train[3].classes.length); // 3 10
 * ```
 */
export async function splitCIFAR100(
  opts: SplitVisionOptions = {},
): Promise<ClassIncrementalBenchmark> {
  checkOptions("splitCIFAR100", opts, VISION_OPTIONS);
  return await splitVision(
    "SplitCIFAR100",
    "cifar100",
    100,
    "32×32",
    10,
    CIFAR100_STATS,
    cifarTransforms,
    opts,
  );
}

/**
 * Split Tiny ImageNet (Avalanche's `SplitTinyImageNet`): the 200 classes dealt to
 * `experiences` (default 10) experiences in the order seeded by `seed` (default 0, as
 * Avalanche); inputs `[64, 64, 3]` normalized with {@link TINY_IMAGENET_STATS}; training
 * minibatches get `RandomHorizontalFlip()`. The test stream is the labelled `val` split.
 *
 * @example
 * ```ts ignore
 * import { splitTinyImageNet } from "./vision.ts";
 * const b = await splitTinyImageNet();
 * console.log(b.train.length, b.info.inputShape); // 10 [64, 64, 3]
 * ```
 */
export async function splitTinyImageNet(
  opts: VisionOptions = {},
): Promise<ClassIncrementalBenchmark> {
  checkOptions("splitTinyImageNet", opts, TINY_OPTIONS);
  return await splitVision(
    "SplitTinyImageNet",
    "tiny-imagenet",
    200,
    "64×64",
    10,
    TINY_IMAGENET_STATS,
    () => tinyImageNetTransforms(),
    opts,
  );
}

/**
 * Split CIFAR-110 (Avalanche's `SplitCIFAR110`): CIFAR-10's 10 classes (labels 0–9) as the first
 * experience, then CIFAR-100's 100 classes (labels 10–109) split evenly over the other
 * `experiences - 1` (default 11 in all, ten of 10 classes), their order seeded by `seed` or
 * given by `fixedClassOrder` (CIFAR-100 labels 0–99, as Avalanche). Class-incremental without
 * task labels; both parts normalized with {@link CIFAR100_STATS} and given the CIFAR transform
 * groups, as Avalanche's defaults. Avalanche shuffles CIFAR-100's classes with Python's
 * `random.sample`; here the library's seeded generator does (same seed, other order).
 *
 * @example
 * ```ts ignore
 * import { splitCIFAR110 } from "./vision.ts";
 * const b = await splitCIFAR110({ experiences: 11 });
 * console.log(b.train[0].classes, b.train[1].classes.length); // [0, ..., 9] 10
 * ```
 */
export async function splitCIFAR110(
  opts: SplitCIFAR110Options = {},
): Promise<ClassIncrementalBenchmark> {
  const fn = "SplitCIFAR110";
  const { cifar10: c10, cifar100: c100, ...rest } = opts;
  checkOptions("splitCIFAR110", opts, { ...BASE_OPTIONS, cifar10: "object", cifar100: "object" });
  const experiences = rest.experiences ?? 11;
  if (!(experiences >= 2) || 100 % (experiences - 1) !== 0) {
    throw new RangeError(
      `${fn}: experiences must be 1 + a divisor of 100 (CIFAR-10 first, then CIFAR-100's ` +
        `classes split evenly), got ${experiences}`,
    );
  }
  const stats = rest.stats ?? CIFAR100_STATS;
  const normalize = rest.normalize ?? true;
  const load = loadOptions(rest);
  const data10 = await dataOf("cifar10", c10, load);
  const data100 = await dataOf("cifar100", c100, load);
  checkData(fn, data10, "32×32", 10);
  checkData(fn, data100, "32×32", 100);
  const groups = groupsFor(rest, stats, normalize, cifarTransforms);
  const a = wrap(data10, stats, normalize);
  const b = wrap(data100, stats, normalize);
  const shift = (d: Dataset) => d.mapTargets(Array.from({ length: 100 }, (_, c) => c + 10));
  const train = concatDatasets([a.train, shift(b.train)]).withTransforms(groups);
  const test = concatDatasets([a.test, shift(b.test)]).withTransforms(groups);
  let order100: number[];
  if (rest.fixedClassOrder) {
    order100 = rest.fixedClassOrder.map((c) => c + 10);
  } else {
    order100 = Array.from(new Rng(rest.seed ?? 0).permutation(100), (c) => c + 10);
  }
  return classIncremental({
    train,
    test,
    fixedClassOrder: [...Array.from({ length: 10 }, (_, c) => c), ...order100],
    classesPerExperience: [10, ...new Array(experiences - 1).fill(100 / (experiences - 1))],
    taskLabels: false,
    remapClasses: remap(fn, rest),
    name: fn,
  });
}
