/**
 * Fixed image transforms used to build domain-incremental benchmarks: geometry inference,
 * rotations (bilinear, about the image centre, zero fill) and pixel permutations.
 *
 * Images are stored channel-last and sample-major: pixel `(r, c)` channel `ch` of sample `i`
 * is at `i * rows * cols * channels + (r * cols + c) * channels + ch`.
 *
 * @module
 */
import { Rng } from "../random.ts";

/** Height, width and channel count of one channel-last image. */
export interface ImageGeometry {
  readonly rows: number;
  readonly cols: number;
  /** @default 1 */
  readonly channels?: number;
}

/**
 * Derives image geometry from a sample's input shape: `[rows, cols]`, `[rows, cols, channels]`,
 * or a flat `[n]` where `n` is a perfect square (one channel, `sqrt(n)` × `sqrt(n)`).
 *
 * @example
 * ```ts
 * import { imageGeometry } from "./transforms.ts";
 * console.assert(imageGeometry([784]).rows === 28);
 * console.assert(imageGeometry([32, 32, 3]).channels === 3);
 * ```
 */
export function imageGeometry(inputShape: readonly number[]): Required<ImageGeometry> {
  if (inputShape.length === 2 || inputShape.length === 3) {
    const [rows, cols, channels = 1] = inputShape;
    return checkGeometry({ rows, cols, channels });
  }
  if (inputShape.length === 1) {
    const side = Math.round(Math.sqrt(inputShape[0]));
    if (side * side === inputShape[0]) {
      return checkGeometry({ rows: side, cols: side, channels: 1 });
    }
  }
  throw new RangeError(
    `Cannot tell the image geometry of input shape [${inputShape}]: use [rows, cols], ` +
      `[rows, cols, channels] or a flat square [rows*cols], or pass imageShape explicitly`,
  );
}

function checkGeometry(g: ImageGeometry): Required<ImageGeometry> {
  const channels = g.channels ?? 1;
  for (const [k, v] of [["rows", g.rows], ["cols", g.cols], ["channels", channels]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`Image ${k} must be a positive integer, got ${v}`);
    }
  }
  return { rows: g.rows, cols: g.cols, channels };
}

/**
 * A precomputed resampling for one rotation: output pixel `p` is
 * `sum(weight[k] * input[source[k]])` for `k` in `offsets[p] .. offsets[p + 1] - 1`
 * (pixel indices `r * cols + c`; neighbours outside the image are dropped, i.e. zero fill).
 */
export interface RotationTable {
  readonly rows: number;
  readonly cols: number;
  readonly degrees: number;
  readonly offsets: Int32Array;
  readonly source: Int32Array;
  readonly weight: Float64Array;
}

/** Exact cos/sin for multiples of 90°, so that quarter turns resample without rounding error. */
function cosSin(degrees: number): [number, number] {
  const d = ((degrees % 360) + 360) % 360;
  if (d === 0) return [1, 0];
  if (d === 90) return [0, 1];
  if (d === 180) return [-1, 0];
  if (d === 270) return [0, -1];
  const a = (d * Math.PI) / 180;
  return [Math.cos(a), Math.sin(a)];
}

function snap(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - r) < 1e-9 ? r : v;
}

/**
 * Builds the bilinear resampling table of a rotation by `degrees` counter-clockwise (as seen on
 * screen, rows pointing down; the convention of torchvision and PIL) about the image centre
 * `((cols - 1) / 2, (rows - 1) / 2)`.
 *
 * @example
 * ```ts
 * import { rotationTable } from "./transforms.ts";
 * const t = rotationTable(28, 28, 90);
 * console.assert(t.offsets.length === 28 * 28 + 1);
 * ```
 */
export function rotationTable(rows: number, cols: number, degrees: number): RotationTable {
  checkGeometry({ rows, cols });
  if (!Number.isFinite(degrees)) {
    throw new RangeError(`Rotation angle must be a finite number of degrees, got ${degrees}`);
  }
  const [cos, sin] = cosSin(degrees);
  const cx = (cols - 1) / 2, cy = (rows - 1) / 2;
  const offsets = new Int32Array(rows * cols + 1);
  const source: number[] = [];
  const weight: number[] = [];
  const add = (r: number, c: number, w: number) => {
    if (w > 0 && r >= 0 && r < rows && c >= 0 && c < cols) {
      source.push(r * cols + c);
      weight.push(w);
    }
  };
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const dx = c - cx, dy = r - cy;
      // Inverse mapping: the output pixel takes the input at the point rotated by -degrees.
      const sc = snap(cx + dx * cos - dy * sin);
      const sr = snap(cy + dx * sin + dy * cos);
      const c0 = Math.floor(sc), r0 = Math.floor(sr);
      const fc = sc - c0, fr = sr - r0;
      add(r0, c0, (1 - fr) * (1 - fc));
      add(r0, c0 + 1, (1 - fr) * fc);
      add(r0 + 1, c0, fr * (1 - fc));
      add(r0 + 1, c0 + 1, fr * fc);
      offsets[r * cols + c + 1] = source.length;
    }
  }
  return {
    rows,
    cols,
    degrees,
    offsets,
    source: Int32Array.from(source),
    weight: Float64Array.from(weight),
  };
}

/**
 * Rotates every image of a sample-major array by `degrees` (counter-clockwise, bilinear, about
 * the centre, zero fill) into a new array of the same type; bytes are rounded to the nearest
 * integer. A rotation by a multiple of 360° returns an exact copy.
 *
 * @example Rotate two 2×2 images by a quarter turn
 * ```ts
 * import { rotateImages } from "./transforms.ts";
 * const out = rotateImages(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), { rows: 2, cols: 2 }, 90);
 * console.assert(out.join() === "2,4,1,3,6,8,5,7");
 * ```
 */
export function rotateImages<T extends Uint8Array | Float32Array>(
  data: T,
  geometry: ImageGeometry,
  degrees: number,
): T {
  const { rows, cols, channels } = checkGeometry(geometry);
  const size = rows * cols * channels;
  if (data.length % size !== 0) {
    throw new RangeError(
      `Image data holds ${data.length} values, not a multiple of ${rows}×${cols}×${channels} = ${size}`,
    );
  }
  const n = data.length / size;
  const bytes = data instanceof Uint8Array;
  const out = (bytes ? new Uint8Array(data.length) : new Float32Array(data.length)) as T;
  const { offsets, source, weight } = rotationTable(rows, cols, degrees);
  const pixels = rows * cols;
  if (channels === 1) {
    // Fast path: exactly four (index, weight) pairs per pixel, padded with zero weights.
    const idx = new Int32Array(pixels * 4), w = new Float64Array(pixels * 4);
    for (let p = 0; p < pixels; p++) {
      for (let k = offsets[p], j = 0; k < offsets[p + 1]; k++, j++) {
        idx[p * 4 + j] = source[k];
        w[p * 4 + j] = weight[k];
      }
    }
    // Bytes go through a clamped view, which rounds to the nearest integer and clamps to 0..255.
    const dst = bytes ? new Uint8ClampedArray(out.buffer, out.byteOffset, out.length) : out;
    for (let base = 0; base < data.length; base += size) {
      for (let p = 0, q = 0; p < pixels; p++, q += 4) {
        dst[base + p] = w[q] * data[base + idx[q]] + w[q + 1] * data[base + idx[q + 1]] +
          w[q + 2] * data[base + idx[q + 2]] + w[q + 3] * data[base + idx[q + 3]];
      }
    }
    return out;
  }
  for (let i = 0; i < n; i++) {
    const base = i * size;
    for (let p = 0; p < pixels; p++) {
      const k0 = offsets[p], k1 = offsets[p + 1];
      for (let ch = 0; ch < channels; ch++) {
        let acc = 0;
        for (let k = k0; k < k1; k++) acc += weight[k] * data[base + source[k] * channels + ch];
        out[base + p * channels + ch] = bytes ? Math.min(255, Math.round(acc)) : acc;
      }
    }
  }
  return out;
}

/**
 * Seeded random feature permutations, one per experience, as Avalanche's `PermutedMNIST` draws
 * them (every one random, the first included).
 *
 * @example
 * ```ts
 * import { randomPermutations } from "./transforms.ts";
 * const [p] = randomPermutations(1, 784, 0);
 * console.assert(new Set(p).size === 784);
 * ```
 */
export function randomPermutations(count: number, size: number, seed = 0): Int32Array[] {
  if (!Number.isInteger(count) || count < 0) {
    throw new RangeError(`Permutation count must be a non-negative integer, got ${count}`);
  }
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(`Permutation size must be a positive integer, got ${size}`);
  }
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => rng.permutation(size));
}

/**
 * Composes two feature permutations in the convention of `ArrayDataset` (feature `k` of the view
 * is raw feature `permutation[k]`): viewing through `inner` then through `outer` equals viewing
 * the raw data through the result, `result[k] = inner[outer[k]]`.
 *
 * @example
 * ```ts
 * import { composePermutations } from "./transforms.ts";
 * const p = composePermutations(Int32Array.of(1, 2, 0), Int32Array.of(2, 0, 1));
 * console.assert(p.join() === "0,1,2");
 * ```
 */
export function composePermutations(inner: Int32Array, outer: Int32Array): Int32Array {
  if (inner.length !== outer.length) {
    throw new RangeError(
      `Cannot compose permutations of ${inner.length} and ${outer.length} features`,
    );
  }
  return outer.map((k) => inner[k]);
}
