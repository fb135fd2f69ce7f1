/**
 * Image transforms as plain data, grouped as Avalanche groups a dataset's transforms: a `train`
 * group applied to training minibatches and an `eval` group applied to evaluation minibatches.
 * A dataset carries its groups ({@link Dataset.transforms}, set with `withTransforms`); the engine
 * applies them per minibatch on NHWC tensors (`lib/engine/augment.ts`), drawing every random
 * choice from the run's seeded generator.
 *
 * The transforms are torchvision's `RandomCrop(size, padding, fill)`,
 * `RandomHorizontalFlip(p)` and `Normalize(mean, std)`, on images stored channel-last.
 *
 * @module
 */

/** Torchvision's `RandomCrop`: pad each side by `padding`, then crop `size` at a random place. */
export interface RandomCropTransform {
  readonly kind: "randomCrop";
  /** Crop height and width. */
  readonly size: readonly [number, number];
  /** Pixels added on each of the four sides before cropping. */
  readonly padding: number;
  /**
   * Value of the padded pixels, one per channel (or one for all), in the units the dataset
   * yields. A dataset normalized when batched passes the normalized value of a zero pixel,
   * `-mean / std`, so that the result equals torchvision's pad-then-normalize.
   */
  readonly fill: readonly number[];
}

/** Torchvision's `RandomHorizontalFlip`: mirror each image left-right with probability `p`. */
export interface RandomHorizontalFlipTransform {
  readonly kind: "randomHorizontalFlip";
  readonly p: number;
}

/** Torchvision's `Normalize`: `(x - mean[c]) / std[c]` per channel. */
export interface NormalizeTransform {
  readonly kind: "normalize";
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/** One image transform, as plain data (JSON-serializable). */
export type ImageTransform =
  | RandomCropTransform
  | RandomHorizontalFlipTransform
  | NormalizeTransform;

/** A dataset's transforms by phase, as Avalanche's transform groups `train` and `eval`. */
export interface TransformGroups {
  /** Applied, in order, to every training minibatch. */
  readonly train: readonly ImageTransform[];
  /** Applied, in order, to every evaluation minibatch. */
  readonly eval: readonly ImageTransform[];
}

function positiveInt(what: string, v: unknown): number {
  if (!(typeof v === "number" && Number.isInteger(v) && v >= 1)) {
    throw new RangeError(`${what} must be a positive integer, got ${String(v)}`);
  }
  return v;
}

function finiteList(what: string, v: unknown, positive = false): number[] {
  const list = typeof v === "number" ? [v] : v;
  if (
    !Array.isArray(list) || list.length === 0 ||
    list.some((x) => typeof x !== "number" || !Number.isFinite(x) || (positive && !(x > 0)))
  ) {
    throw new RangeError(
      `${what} must be a ${positive ? "positive " : ""}finite number or a non-empty list of ` +
        `them (one per channel), got ${JSON.stringify(v)}`,
    );
  }
  return [...list];
}

/** Options of {@link randomCrop}. */
export interface RandomCropOptions {
  /** Pixels added on each side before cropping. @default 0 */
  padding?: number;
  /** Value of the padded pixels: one number, or one per channel. @default 0 */
  fill?: number | readonly number[];
}

/**
 * Torchvision's `RandomCrop(size, padding=padding, fill=fill)`: each image is padded by
 * `padding` pixels of `fill` on every side, then a `size` crop is taken at offsets drawn
 * uniformly from `0 .. 2 * padding` (for a crop of the image's own size).
 *
 * @example Avalanche's CIFAR crop
 * ```ts
 * import { randomCrop } from "./augment.ts";
 * const t = randomCrop(32, { padding: 4 });
 * console.assert(t.size.join() === "32,32" && t.padding === 4);
 * ```
 */
export function randomCrop(
  size: number | readonly [number, number],
  opts: RandomCropOptions = {},
): RandomCropTransform {
  const [h, w] = typeof size === "number" ? [size, size] : size;
  positiveInt("randomCrop size", h);
  positiveInt("randomCrop size", w);
  const padding = opts.padding ?? 0;
  if (!(Number.isInteger(padding) && padding >= 0)) {
    throw new RangeError(`randomCrop padding must be an integer ≥ 0, got ${String(padding)}`);
  }
  return Object.freeze({
    kind: "randomCrop",
    size: Object.freeze([h, w]) as readonly [number, number],
    padding,
    fill: Object.freeze(finiteList("randomCrop fill", opts.fill ?? 0)),
  });
}

/**
 * Torchvision's `RandomHorizontalFlip(p)`: mirror each image left-right with probability `p`.
 *
 * @example
 * ```ts
 * import { randomHorizontalFlip } from "./augment.ts";
 * console.assert(randomHorizontalFlip().p === 0.5);
 * ```
 */
export function randomHorizontalFlip(p = 0.5): RandomHorizontalFlipTransform {
  if (!(typeof p === "number" && p >= 0 && p <= 1)) {
    throw new RangeError(`randomHorizontalFlip p must be a probability in [0, 1], got ${p}`);
  }
  return Object.freeze({ kind: "randomHorizontalFlip", p });
}

/**
 * Torchvision's `Normalize(mean, std)` on channel-last images: `(x - mean[c]) / std[c]`.
 *
 * @example CIFAR-10's constants as Avalanche has them
 * ```ts
 * import { normalize } from "./augment.ts";
 * const t = normalize([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]);
 * console.assert(t.mean.length === 3);
 * ```
 */
export function normalize(
  mean: number | readonly number[],
  std: number | readonly number[],
): NormalizeTransform {
  const m = finiteList("normalize mean", mean), s = finiteList("normalize std", std, true);
  if (m.length !== s.length) {
    throw new RangeError(
      `normalize mean has ${m.length} values but std has ${s.length}: give one per channel each`,
    );
  }
  return Object.freeze({ kind: "normalize", mean: Object.freeze(m), std: Object.freeze(s) });
}

/**
 * Checks that `groups` holds a `train` and an `eval` list of transforms this library knows, and
 * returns a frozen copy (or `groups` itself when it is such a copy). Anything else is an error naming the bad entry.
 *
 * @example
 * ```ts
 * import { checkTransformGroups, randomHorizontalFlip } from "./augment.ts";
 * const g = checkTransformGroups({ train: [randomHorizontalFlip()], eval: [] });
 * console.assert(g.train.length === 1);
 * ```
 */
export function checkTransformGroups(groups: TransformGroups): TransformGroups {
  // Groups checked once are returned as they are, so that datasets given the same groups share
  // one object (a concatenation keeps its parts' groups when they are the same object).
  if (checked.has(groups)) return groups;
  if (!groups || typeof groups !== "object") {
    throw new TypeError(`Transform groups must be { train: [...], eval: [...] }, got ${groups}`);
  }
  for (const key of Object.keys(groups)) {
    if (key !== "train" && key !== "eval") {
      throw new RangeError(
        `Unknown transform group ${JSON.stringify(key)}: the groups are "train" and "eval"`,
      );
    }
  }
  const check = (phase: "train" | "eval") => {
    const list = groups[phase] ?? [];
    if (!Array.isArray(list)) {
      throw new TypeError(`Transform group ${phase} must be a list of transforms, got ${list}`);
    }
    list.forEach((t, i) => {
      const kind = (t as { kind?: unknown })?.kind;
      if (kind !== "randomCrop" && kind !== "randomHorizontalFlip" && kind !== "normalize") {
        throw new RangeError(
          `Transform ${phase}[${i}] has kind ${JSON.stringify(kind)}: build transforms with ` +
            `randomCrop, randomHorizontalFlip or normalize`,
        );
      }
    });
    return Object.freeze([...list]);
  };
  const out = Object.freeze({ train: check("train"), eval: check("eval") });
  checked.add(out);
  return out;
}

/** The groups {@link checkTransformGroups} returned. */
const checked = new WeakSet<TransformGroups>();
