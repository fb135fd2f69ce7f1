/**
 * Residual blocks: {@link BasicBlock}, the two-convolution block of ResNet-18/34 and of the CIFAR
 * ResNets, with its shortcut as a projection (option B) or as zero-padded identity (option A).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { Conv2d, drawSeed, Sequential } from "./layers.ts";
import { Module } from "./module.ts";
import { BatchNorm2d, type BatchNormOptions } from "./norm.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";

/**
 * How a {@link BasicBlock} whose output differs in size from its input (a stride, more channels)
 * carries the input over: `"conv"`, a 1×1 strided convolution without bias and a batch norm
 * (He et al.'s option B; Avalanche's `SlimResNet18`, GEM's reduced ResNet-18, PyCIL's
 * `DownsampleB`), or `"pad"`, the input subsampled by the stride with zero channels appended
 * (option A; iCaRL's ResNet-32, PyCIL's `DownsampleA`), which has no parameters.
 */
export type ShortcutKind = "conv" | "pad";

/** Options of {@link BasicBlock}. */
export interface BasicBlockOptions {
  /** Stride of the first convolution (and of the shortcut). @default 1 */
  stride?: number;
  /** The shortcut where the output differs in size from the input. @default "conv" */
  shortcut?: ShortcutKind;
  /** Options of the block's batch norms. @default {} */
  batchNorm?: BatchNormOptions;
  /** Initializer seed (default: drawn from the run's seeded Math.random). */
  seed?: number;
}

const BASIC_BLOCK_OPTIONS: OptionSpec<BasicBlockOptions> = {
  stride: "integer",
  shortcut: oneOf("conv", "pad"),
  batchNorm: "object",
  seed: "number",
};

/**
 * Option A's shortcut: every `stride`-th row and column of the input (PyTorch's
 * `AvgPool2d(kernel_size=1, stride)`), then zero channels up to `outChannels`.
 */
export class ZeroPadShortcut extends Module {
  constructor(readonly inChannels: number, readonly outChannels: number, readonly stride: number) {
    super();
    if (outChannels < inChannels) {
      throw new RangeError(
        `A zero-padding shortcut cannot reduce channels (${inChannels} → ${outChannels}): use ` +
          `shortcut "conv"`,
      );
    }
  }

  forward(x: tf.Tensor): tf.Tensor {
    const [n, h, w, c] = x.shape as [number, number, number, number];
    const s = this.stride;
    let y: tf.Tensor = x;
    if (s > 1) {
      // Pad to whole windows, view each window's pixels as axes and keep the first: a slice and
      // a pad, whose gradients every backend has (a strided slice's may not).
      const oh = Math.ceil(h / s), ow = Math.ceil(w / s);
      if (oh * s !== h || ow * s !== w) {
        y = tf.pad(y, [[0, 0], [0, oh * s - h], [0, ow * s - w], [0, 0]]);
      }
      y = tf.reshape(y, [n, oh, s, ow, s, c]);
      y = tf.reshape(tf.slice(y, [0, 0, 0, 0, 0, 0], [n, oh, 1, ow, 1, c]), [n, oh, ow, c]);
    }
    const extra = this.outChannels - c;
    return extra > 0 ? tf.pad(y, [[0, 0], [0, 0], [0, 0], [0, extra]]) : y;
  }
}

/**
 * The basic residual block: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, both
 * convolutions 3×3 with PyTorch's padding 1 and no bias, `conv1` strided. The shortcut is the
 * identity when the output has the input's size, else as `shortcut` says ({@link ShortcutKind}).
 * Children are named as in Avalanche's `BasicBlock` (`conv1`, `bn1`, `conv2`, `bn2`,
 * `shortcut`, the projection's parts `shortcut.0` and `shortcut.1`), which PyCIL calls `conv_a`,
 * `bn_a`, `conv_b`, `bn_b`, `downsample`. Inputs and outputs are NHWC.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { BasicBlock } from "./residual.ts";
 * await setBackend("cpu");
 * const block = new BasicBlock(4, 8, { stride: 2, seed: 0 });
 * const y = tf.tidy(() => block.forward(tf.ones([2, 6, 6, 4])));
 * console.assert(y.shape.join() === "2,3,3,8");
 * tf.dispose(y);
 * block.dispose();
 * ```
 */
export class BasicBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  /** Undefined: the identity. */
  readonly shortcut: Module | undefined;
  readonly stride: number;

  constructor(readonly inPlanes: number, readonly planes: number, opts: BasicBlockOptions = {}) {
    super();
    checkOptions("BasicBlock", opts, BASIC_BLOCK_OPTIONS);
    const stride = this.stride = opts.stride ?? 1;
    for (
      const [k, v] of [["inPlanes", inPlanes], ["planes", planes], ["stride", stride]] as const
    ) {
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(`BasicBlock ${k} must be a positive integer, got ${v}`);
      }
    }
    const seed = drawSeed(opts.seed);
    const bn = opts.batchNorm ?? {};
    const conv = (cin: number, cout: number, k: number, s: number, i: number) =>
      new Conv2d(cin, cout, k, {
        stride: s,
        padding: k === 3 ? 1 : 0,
        bias: false,
        seed: seed + 10 * i,
      });
    this.conv1 = this.child("conv1", conv(inPlanes, planes, 3, stride, 0));
    this.bn1 = this.child("bn1", new BatchNorm2d(planes, bn));
    this.conv2 = this.child("conv2", conv(planes, planes, 3, 1, 1));
    this.bn2 = this.child("bn2", new BatchNorm2d(planes, bn));
    if (stride !== 1 || inPlanes !== planes) {
      const kind = opts.shortcut ?? "conv";
      this.shortcut = this.child(
        "shortcut",
        kind === "pad"
          ? new ZeroPadShortcut(inPlanes, planes, stride)
          : new Sequential([conv(inPlanes, planes, 1, stride, 2), new BatchNorm2d(planes, bn)]),
      );
    }
  }

  forward(x: tf.Tensor): tf.Tensor {
    const h = tf.relu(this.bn1.forward(this.conv1.forward(x)));
    const out = this.bn2.forward(this.conv2.forward(h));
    return tf.relu(tf.add(out, this.shortcut ? this.shortcut.forward(x) : x));
  }
}
