/**
 * Tiny, learnable, deterministic synthetic image data for unit tests.
 *
 * @module
 */

import { checkDatasetOptions, DatasetError } from "./errors.ts";
import type { ImageSplit } from "./types.ts";

/** Options of {@link syntheticImages}. */
export interface SyntheticOptions {
  /** Number of images (≥ 0). */
  n: number;
  /** Number of classes, 1..256. */
  classes: number;
  /** Image height (default 28, like MNIST). */
  rows?: number;
  /** Image width (default 28, like MNIST). */
  cols?: number;
  /** Seed of the noise and of the label order (default 0). */
  seed?: number;
  /** Noise level in [0, 1]: 0 = clean patterns, 1 = pure noise (default 0.25). */
  noise?: number;
}

/** mulberry32: small, fast, good-enough seeded PRNG returning floats in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The fixed binary pattern (1 = on) of each class for a given image size. Patterns depend
 * only on (class, rows, cols), not on the seed, and are pairwise distinct.
 */
function classPatterns(classes: number, pixels: number): Uint8Array[] {
  const patterns: Uint8Array[] = [];
  const seen = new Set<string>();
  for (let c = 0; c < classes; c++) {
    for (let attempt = 0;; attempt++) {
      if (attempt > 10_000) {
        throw new DatasetError(
          "invalid-argument",
          `syntheticImages: cannot make ${classes} distinct patterns of ${pixels} pixels: ` +
            `use larger rows/cols`,
        );
      }
      const rng = mulberry32(0x9e3779b9 ^ Math.imul(c + 1, 0x85ebca6b) ^ attempt);
      const p = new Uint8Array(pixels);
      for (let i = 0; i < pixels; i++) p[i] = rng() < 0.5 ? 1 : 0;
      const key = p.join("");
      if (!seen.has(key)) {
        seen.add(key);
        patterns.push(p);
        break;
      }
    }
  }
  return patterns;
}

function checkInt(name: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new DatasetError(
      "invalid-argument",
      `syntheticImages: ${name} must be an integer in ${min}..${max}, got ${v}`,
    );
  }
}

/**
 * Synthetic image classification data: each class is a distinct fixed random binary
 * pattern (the same for every seed), and each image is its class's pattern blended with
 * seeded uniform noise: `pixel = (1 - noise) * (on ? 255 : 0) + noise * U(0, 255)`.
 * Labels are balanced (class counts differ by at most 1) and shuffled by the seed. Same
 * options → same bytes. Different seeds give fresh samples of the same classes, so one
 * seed can serve as train data and another as test data.
 *
 * @example
 * ```ts
 * import { syntheticImages } from "./mod.ts";
 * const train = syntheticImages({ n: 200, classes: 4, rows: 8, cols: 8, seed: 1 });
 * const test = syntheticImages({ n: 40, classes: 4, rows: 8, cols: 8, seed: 2 });
 * console.log(train.images.length); // 200 * 8 * 8
 * ```
 */
export function syntheticImages(opts: SyntheticOptions): ImageSplit {
  checkDatasetOptions("syntheticImages", opts, {
    n: "integer",
    classes: "integer",
    rows: "integer",
    cols: "integer",
    seed: "number",
    noise: "number",
  });
  const { n, classes, rows = 28, cols = 28, seed = 0, noise = 0.25 } = opts;
  checkInt("n", n, 0);
  checkInt("classes", classes, 1, 256);
  checkInt("rows", rows, 1);
  checkInt("cols", cols, 1);
  if (!Number.isFinite(seed)) {
    throw new DatasetError("invalid-argument", `syntheticImages: seed must be finite, got ${seed}`);
  }
  if (!(noise >= 0 && noise <= 1)) {
    throw new DatasetError(
      "invalid-argument",
      `syntheticImages: noise must be in [0, 1], got ${noise}`,
    );
  }
  const pixels = rows * cols;
  if (pixels < 31 && classes > 2 ** pixels) {
    throw new DatasetError(
      "invalid-argument",
      `syntheticImages: ${rows}x${cols} images allow only ${2 ** pixels} distinct patterns, ` +
        `fewer than ${classes} classes: use larger rows/cols`,
    );
  }
  const patterns = classPatterns(classes, pixels);
  const rng = mulberry32(Math.floor(seed) ^ 0x2545f491);

  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) labels[i] = i % classes;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = labels[i];
    labels[i] = labels[j];
    labels[j] = t;
  }

  const images = new Uint8Array(n * pixels);
  const clean = (1 - noise) * 255;
  for (let i = 0; i < n; i++) {
    const p = patterns[labels[i]];
    const base = i * pixels;
    for (let k = 0; k < pixels; k++) {
      images[base + k] = Math.round(p[k] * clean + noise * 255 * rng());
    }
  }
  return { images, labels, n, rows, cols };
}
