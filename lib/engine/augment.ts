/**
 * Applying a dataset's image transforms (`lib/data/augment.ts`) to a minibatch of NHWC inputs,
 * with kernels only: random crops with padding and horizontal flips become one
 * `tf.image.cropAndResize` with a box per sample (reversed left-right for the flipped ones),
 * nearest-neighbour, whose sampling points all lie within a quarter pixel of the pixel they
 * stand for, which makes it exact: every output pixel is one input pixel or the fill value. The
 * padding is the kernel's extrapolation value when the crop is the image's size (CIFAR's
 * `RandomCrop(32, padding=4)`), else a padded copy.
 * Normalization is one broadcast subtract and divide. Random choices are drawn per sample from
 * the generator given (the run's), in a fixed order, so the same seed gives the same crops.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { ImageTransform } from "../data/augment.ts";
import type { Rng } from "../random.ts";

/** The random choices of one crop-and-flip for a minibatch (for tests and inspection). */
export interface CropFlipDraw {
  /** Row offset of each sample's crop in the padded image, `0 .. H + 2p - h`. */
  readonly top: Int32Array;
  /** Column offset of each sample's crop in the padded image. */
  readonly left: Int32Array;
  /** 1 where the sample is mirrored left-right. */
  readonly flip: Uint8Array;
}

/**
 * Applies `transforms` in order to `x` ([n, H, W, C]) and returns the result (a new tensor, or
 * `x` itself when the list is empty); `x` is left to its owner. A `randomCrop` followed by a
 * `randomHorizontalFlip` is done in one pass. For each crop, every sample draws its row offset
 * then its column offset (`rng.int`); for each flip, every sample draws one `rng.next()` and is
 * flipped when it is below `p`. `onDraw` sees each pass's draws.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { applyImageTransforms } from "./augment.ts";
 * import { randomCrop, randomHorizontalFlip } from "../data/augment.ts";
 * import { Rng } from "../random.ts";
 * await setBackend("cpu");
 * const x = tf.ones([2, 8, 8, 3]);
 * const y = applyImageTransforms(x, [randomCrop(8, { padding: 2 }), randomHorizontalFlip()], new Rng(0));
 * console.assert(y.shape.join() === "2,8,8,3");
 * tf.dispose([x, y]);
 * ```
 */
export function applyImageTransforms(
  x: tf.Tensor,
  transforms: readonly ImageTransform[],
  rng: Rng,
  onDraw?: (draw: CropFlipDraw) => void,
): tf.Tensor {
  if (transforms.length === 0) return x;
  if (x.rank !== 4) {
    throw new RangeError(
      `Image transforms need NHWC minibatches [n, height, width, channels], got shape [${x.shape}]: ` +
        `give the dataset an image input shape such as [32, 32, 3]`,
    );
  }
  return tf.tidy(() => {
    let out = x as tf.Tensor4D;
    for (let i = 0; i < transforms.length; i++) {
      const t = transforms[i];
      if (t.kind === "normalize") {
        out = normalizeBatch(out, t.mean, t.std);
      } else if (t.kind === "randomCrop") {
        const next = transforms[i + 1];
        const flipP = next?.kind === "randomHorizontalFlip" ? next.p : undefined;
        if (flipP !== undefined) i++;
        out = cropFlip(out, t.size, t.padding, t.fill, flipP, rng, onDraw);
      } else {
        const [, h, w] = out.shape;
        out = cropFlip(out, [h, w], 0, [0], t.p, rng, onDraw);
      }
    }
    return out;
  });
}

function perChannel(what: string, values: readonly number[], channels: number): number[] {
  if (values.length === 1) return new Array(channels).fill(values[0]);
  if (values.length !== channels) {
    throw new RangeError(
      `${what} has ${values.length} values for images of ${channels} channels: give one per ` +
        `channel (or one for all)`,
    );
  }
  return [...values];
}

function normalizeBatch(
  x: tf.Tensor4D,
  mean: readonly number[],
  std: readonly number[],
): tf.Tensor4D {
  const c = x.shape[3];
  const m = tf.tensor1d(perChannel("normalize mean", mean, c));
  const s = tf.tensor1d(perChannel("normalize std", std, c));
  return tf.div(tf.sub(x, m), s);
}

/** Crop `size` out of `x` padded by `padding` of `fill`, mirroring the samples drawn to flip. */
function cropFlip(
  x: tf.Tensor4D,
  size: readonly [number, number],
  padding: number,
  fill: readonly number[],
  flipP: number | undefined,
  rng: Rng,
  onDraw: ((draw: CropFlipDraw) => void) | undefined,
): tf.Tensor4D {
  const [n, height, width, channels] = x.shape;
  const [h, w] = size;
  const ph = height + 2 * padding, pw = width + 2 * padding;
  if (h > ph || w > pw) {
    throw new RangeError(
      `randomCrop size ${h}×${w} is larger than the padded image ${ph}×${pw}: crop at most ` +
        `the image size plus twice the padding`,
    );
  }
  const top = new Int32Array(n), left = new Int32Array(n), flip = new Uint8Array(n);
  for (let k = 0; k < n; k++) {
    top[k] = ph === h ? 0 : rng.int(ph - h + 1);
    left[k] = pw === w ? 0 : rng.int(pw - w + 1);
  }
  if (flipP !== undefined) { for (let k = 0; k < n; k++) flip[k] = rng.next() < flipP ? 1 : 0; }
  onDraw?.({ top, left, flip });
  const identity = padding === 0 && h === height && w === width &&
    top.every((v) => v === 0) && left.every((v) => v === 0);
  if (identity && !flip.some((f) => f === 1)) return x;

  const fills = perChannel("randomCrop fill", fill, channels);
  const uniform = fills.every((v) => v === fills[0]);
  // A crop of the image's own size with less padding than half of it reads the padding as
  // cropAndResize's extrapolation (no padded copy); otherwise the padded image is cropped.
  const direct = h === height && w === width && 2 * padding < Math.min(h, w) - 1;
  let src: tf.Tensor4D = uniform ? x : tf.sub(x, tf.tensor1d(fills));
  const value = uniform ? fills[0] : 0;
  let offset = padding, srcH = height, srcW = width;
  if (!direct && padding > 0) {
    const pads: [number, number][] = [[0, 0], [padding, padding], [padding, padding], [0, 0]];
    src = tf.pad(src, pads, value);
    offset = 0;
    srcH = ph;
    srcW = pw;
  }
  // Box of sample i in source pixels: rows top - offset .. + h - 1, columns likewise (reversed
  // when flipped), pulled in by a quarter pixel at both ends, so that every sampling point is
  // within a quarter pixel of the integer it stands for and "nearest" picks exactly that pixel,
  // whatever the rounding of the normalized box coordinates. Points outside the source image
  // (the padding, in the direct case) take the extrapolation value.
  const q = 0.25;
  const boxes = new Float32Array(4 * n);
  const ny = Math.max(srcH - 1, 1), nx = Math.max(srcW - 1, 1);
  for (let i = 0; i < n; i++) {
    const r0 = top[i] - offset, c0 = left[i] - offset;
    const [ya, yb] = h > 1 ? [r0 + q, r0 + h - 1 - q] : [r0, r0];
    let [xa, xb] = w > 1 ? [c0 + q, c0 + w - 1 - q] : [c0, c0];
    if (flip[i]) [xa, xb] = [xb, xa];
    boxes[4 * i] = ya / ny;
    boxes[4 * i + 1] = xa / nx;
    boxes[4 * i + 2] = yb / ny;
    boxes[4 * i + 3] = xb / nx;
  }
  const index = tf.tensor1d(Int32Array.from({ length: n }, (_, i) => i), "int32");
  let out = tf.image.cropAndResize(
    src,
    tf.tensor2d(boxes, [n, 4]),
    index,
    [h, w],
    "nearest",
    value,
  ) as tf.Tensor4D;
  if (!uniform) out = tf.add(out, tf.tensor1d(fills));
  return out;
}
