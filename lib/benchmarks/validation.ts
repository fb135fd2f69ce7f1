/**
 * Validation streams: each training experience split into the part trained on and a held-out
 * part, as Avalanche 0.6's `benchmark_with_validation_stream` with its two split strategies
 * (`random_validation_split_strategy`, `class_balanced_split_strategy`).
 *
 * @module
 */
import type { Dataset } from "../data/dataset.ts";
import { type Benchmark, type Experience, makeStream, withDataset } from "../data/experience.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";
import { Rng } from "../random.ts";

/** Options of {@link benchmarkWithValidationStream}. */
export interface ValidationStreamOptions {
  /**
   * How much of each training experience goes to the validation stream: a fraction in [0, 1)
   * (`⌊size · n⌋` samples; per class with `classBalanced`), or an integer ≥ 1, a number of
   * samples (not with `classBalanced`). @default 0.5
   */
  size?: number;
  /**
   * Split each class apart (Avalanche's `class_balanced_split_strategy`): the validation part of
   * every class is `⌊size · n_c⌋` of its samples, drawn at random (`seed`). @default false
   */
  classBalanced?: boolean;
  /** Seed of the shuffles. @default 0 */
  seed?: number;
  /**
   * Random split only: shuffle the indices before cutting; without it the validation part is
   * the last samples of the experience (see `heldOut`), in dataset order. @default false
   */
  shuffle?: boolean;
  /**
   * Random split only: which end of the (shuffled or not) order is held out: `"last"`, as
   * Avalanche, or `"first"` (what the reproductions' `validationSize` has always used).
   * @default "last"
   */
  heldOut?: "last" | "first";
}

const VALIDATION_OPTIONS: OptionSpec<ValidationStreamOptions> = {
  size: "number",
  classBalanced: "boolean",
  seed: "number",
  shuffle: "boolean",
  heldOut: oneOf("last", "first"),
};

/** A benchmark with its validation stream. */
export type WithValidation<B extends Benchmark> = B & { readonly valid: Benchmark["train"] };

/**
 * The benchmark with a `valid` stream (Avalanche's `valid_stream`): experience `i` of `valid`
 * holds the samples held out of training experience `i`, which the new `train` stream no longer
 * has; the test stream is unchanged. Validation experiences keep the training experience's id,
 * task labels and extra fields, with `stream` `"valid"`.
 *
 * As Avalanche 0.6 (`benchmark_with_validation_stream`, checked line by line):
 * - random split (default, `split_validation_random`): the indices `0..n−1`, shuffled when
 *   `shuffle` (Avalanche draws a `torch.randperm` from `seed`, ours from our seeded generator:
 *   the same sizes, other samples); the last `⌊size · n⌋` (or `size`) go to validation, the
 *   first ones, in order, to training (`heldOut: "first"` holds out the first ones instead);
 * - class-balanced split (`split_validation_class_balanced`): the indices shuffled, then class by class (in the experience's class
 *   order) the first `⌊size · n_c⌋` of that class to validation, the rest to training; both
 *   parts are grouped by class, as Avalanche's. Avalanche shuffles here with the global
 *   generator even when a seed is given; ours always uses `seed`.
 *
 * Differences: an integer `size` of 1 is one sample (Avalanche reads `1` as the fraction 1.0);
 * a split that leaves an experience's training or validation part empty is an error.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { benchmarkWithValidationStream, classIncremental } from "./mod.ts";
 * const y = Array.from({ length: 40 }, (_, i) => i % 4);
 * const d = new ArrayDataset({ x: new Float32Array(40), y, inputShape: [1] });
 * const b = benchmarkWithValidationStream(classIncremental({ train: d, test: d, experiences: 2 }), {
 *   size: 0.2,
 *   classBalanced: true,
 *   seed: 1,
 * });
 * console.assert(b.valid.length === 2 && b.valid[0].dataset.length === 4);
 * console.assert(b.train[0].dataset.length === 16 && b.valid[0].stream === "valid");
 * ```
 */
export function benchmarkWithValidationStream<B extends Benchmark>(
  benchmark: B,
  opts: ValidationStreamOptions = {},
): WithValidation<B> {
  const fn = "benchmarkWithValidationStream";
  if (!benchmark || !Array.isArray(benchmark.train) || !Array.isArray(benchmark.test)) {
    throw new TypeError(`${fn}: expected a Benchmark, got ${String(benchmark)}`);
  }
  checkOptions(fn, opts, VALIDATION_OPTIONS);
  const size = opts.size ?? 0.5;
  const classBalanced = opts.classBalanced ?? false;
  const isFraction = size >= 0 && size < 1;
  if (!(Number.isFinite(size) && (isFraction || (Number.isInteger(size) && size >= 1)))) {
    throw new RangeError(
      `${fn}: size must be a fraction in [0, 1) or a number of samples ≥ 1, got ${size}`,
    );
  }
  if (classBalanced && !isFraction) {
    throw new RangeError(
      `${fn}: a class-balanced split takes size as a fraction in [0, 1), got ${size}: e.g. 0.1`,
    );
  }
  const seed = opts.seed ?? 0;
  if (!Number.isFinite(seed)) throw new RangeError(`${fn}: seed must be a number, got ${seed}`);
  const rng = new Rng(seed);
  const trainPart: Experience[] = [];
  const validPart: Experience[] = [];
  for (const e of benchmark.train) {
    const { train, valid } = classBalanced
      ? classBalancedSplit(e.dataset, e.classes, size, rng)
      : randomSplit(e.dataset.length, size, opts.shuffle ?? false, opts.heldOut ?? "last", rng);
    for (const [part, idx] of [["training", train], ["validation", valid]] as const) {
      if (idx.length === 0) {
        throw new RangeError(
          `${fn}: size ${size} leaves experience ${e.id} (${e.dataset.length} samples) no ` +
            `${part} samples: pick a size that keeps some in both parts`,
        );
      }
    }
    trainPart.push(withDataset(e, e.dataset.subset(train)));
    validPart.push({ ...withDataset(e, e.dataset.subset(valid)), stream: "valid" });
  }
  const train = makeStream(benchmark.train.name, trainPart);
  const valid = makeStream("valid", validPart);
  return { ...benchmark, train, valid, classesPerExperience: train.map((e) => e.classes) };
}

/** Avalanche's `split_validation_random`: the last (or first) indices, shuffled or not, held out. */
function randomSplit(
  n: number,
  size: number,
  shuffle: boolean,
  heldOut: "last" | "first",
  rng: Rng,
): { train: Int32Array; valid: Int32Array } {
  const order = shuffle ? rng.permutation(n) : Int32Array.from({ length: n }, (_, i) => i);
  const held = size < 1 ? Math.floor(size * n) : size;
  if (held > n) {
    throw new RangeError(
      `benchmarkWithValidationStream: size ${size} is more than the ${n} samples of an experience`,
    );
  }
  return heldOut === "last"
    ? { train: order.slice(0, n - held), valid: order.slice(n - held) }
    : { train: order.slice(held), valid: order.slice(0, held) };
}

/** Avalanche's `class_balanced_split_strategy`: per class, the first of a shuffled order held out. */
function classBalancedSplit(
  dataset: Dataset,
  classes: readonly number[],
  size: number,
  rng: Rng,
): { train: Int32Array; valid: Int32Array } {
  const order = rng.permutation(dataset.length);
  const byClass = new Map<number, number[]>(classes.map((c) => [c, []]));
  for (const i of order) byClass.get(dataset.targets[i])?.push(i);
  const train: number[] = [], valid: number[] = [];
  for (const c of classes) {
    const idx = byClass.get(c)!;
    const held = Math.floor(size * idx.length);
    valid.push(...idx.slice(0, held));
    train.push(...idx.slice(held));
  }
  return { train: Int32Array.from(train), valid: Int32Array.from(valid) };
}
