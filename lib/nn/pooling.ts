/**
 * Average pooling of NHWC images: {@link AvgPool2d} (PyTorch's `nn.AvgPool2d` without padding)
 * and {@link GlobalAvgPool2d} (the mean over height and width, PyTorch's
 * `nn.AdaptiveAvgPool2d(1)` followed by a flatten).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { Module } from "./module.ts";

function checkSize(who: string, name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(`${who} ${name} must be a positive integer, got ${v}`);
  }
}

function checkImages(who: string, x: tf.Tensor): asserts x is tf.Tensor4D {
  if (x.rank !== 4) throw new RangeError(`${who} expects NHWC images, got shape [${x.shape}]`);
}

/**
 * Average pooling with a `size`×`size` window moved by `stride` (default `size`), no padding:
 * the output has `floor((h − size) / stride) + 1` rows, as PyTorch's `avg_pool2d(x, size)`.
 * Non-overlapping windows (`stride === size`) are a reshape and a mean, whose gradients every
 * backend has.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { AvgPool2d } from "./pooling.ts";
 * await setBackend("cpu");
 * const y = tf.tidy(() => new AvgPool2d(2).forward(tf.range(0, 16).reshape([1, 4, 4, 1])));
 * console.assert(y.dataSync().join() === "2.5,4.5,10.5,12.5");
 * y.dispose();
 * ```
 */
export class AvgPool2d extends Module {
  constructor(readonly size: number, readonly stride: number = size) {
    super();
    checkSize("AvgPool2d", "size", size);
    checkSize("AvgPool2d", "stride", stride);
  }

  forward(x: tf.Tensor): tf.Tensor {
    checkImages("AvgPool2d", x);
    const [n, h, w, c] = x.shape, k = this.size;
    if (h < k || w < k) {
      throw new RangeError(
        `AvgPool2d of size ${k} needs images of at least ${k}×${k}, got [${x.shape}]`,
      );
    }
    if (this.stride !== k) return tf.avgPool(x, k, this.stride, "valid");
    const oh = Math.floor(h / k), ow = Math.floor(w / k);
    const cropped = oh * k === h && ow * k === w
      ? x
      : tf.slice(x, [0, 0, 0, 0], [n, oh * k, ow * k, c]);
    return tf.mean(tf.reshape(cropped, [n, oh, k, ow, k, c]), [2, 4]);
  }
}

/**
 * The mean of each channel over height and width: `[n, h, w, c]` → `[n, c]` (features for a
 * linear head, as ResNets end).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { GlobalAvgPool2d } from "./pooling.ts";
 * await setBackend("cpu");
 * const y = tf.tidy(() => new GlobalAvgPool2d().forward(tf.ones([2, 3, 3, 4])));
 * console.assert(y.shape.join() === "2,4");
 * y.dispose();
 * ```
 */
export class GlobalAvgPool2d extends Module {
  forward(x: tf.Tensor): tf.Tensor {
    checkImages("GlobalAvgPool2d", x);
    return tf.mean(x, [1, 2]);
  }
}
