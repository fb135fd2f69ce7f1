/**
 * The ResNets of continual-learning papers on CIFAR-sized images, as {@link Classifier}s (a
 * backbone `features`, whose output `embed` returns, and a single, incremental or multi-head
 * `classifier`): {@link slimResNet18} (Avalanche's `SlimResNet18`), {@link reducedResNet18}
 * (GEM's and A-GEM's reduced ResNet-18, the same network) and {@link resnet32} (iCaRL's
 * ResNet-32, as PyCIL's `resnet32`). Images are NHWC (`[32, 32, 3]` by default); flat inputs
 * with as many values are reshaped.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { Conv2d, drawSeed, Flatten, Sequential } from "../nn/layers.ts";
import { Module } from "../nn/module.ts";
import { BatchNorm2d } from "../nn/norm.ts";
import { AvgPool2d } from "../nn/pooling.ts";
import { BasicBlock, type ShortcutKind } from "../nn/residual.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";
import { Classifier, HEAD_KINDS, type HeadKind, makeHead } from "./mlp.ts";

/** One stage of a {@link ResNetBackbone}: `blocks` basic blocks of `planes` channels. */
export interface ResNetStage {
  planes: number;
  blocks: number;
  /** Stride of the stage's first block. */
  stride: number;
}

/** What a {@link ResNetBackbone} is made of. */
export interface ResNetSpec {
  /** Input image shape [height, width, channels]. */
  input: [number, number, number];
  /** Channels of the 3×3 stem convolution. */
  stem: number;
  stages: ResNetStage[];
  shortcut: ShortcutKind;
  /** Window (and stride) of the final average pooling. */
  pool: number;
  seed: number;
}

/**
 * A ResNet without its head: a 3×3 stem convolution (stride 1, padding 1, no bias), a batch norm
 * and a ReLU, then the stages of {@link BasicBlock}s, then average pooling and a flatten. Its
 * children are named as in Avalanche's `ResNet` (`conv1`, `bn1`, `layer1`, `layer2`, ...,
 * each stage a `Sequential` of blocks `0`, `1`, ...), so that a PyTorch state dict maps to
 * `stateDict()` name by name (PyTorch's convolution weights are `[out, in, kh, kw]`, ours
 * `[kh, kw, in, out]`).
 */
export class ResNetBackbone extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly stages: Sequential[] = [];
  readonly pool: AvgPool2d;
  readonly flatten: Flatten = new Flatten();
  /** Size of the output feature vector. */
  readonly featureSize: number;

  constructor(readonly spec: ResNetSpec) {
    super();
    const [h0, w0, c0] = spec.input;
    this.conv1 = this.child(
      "conv1",
      new Conv2d(c0, spec.stem, 3, { padding: 1, bias: false, seed: spec.seed }),
    );
    this.bn1 = this.child("bn1", new BatchNorm2d(spec.stem));
    let planes = spec.stem, h = h0, w = w0;
    spec.stages.forEach((st, i) => {
      const blocks: Module[] = [];
      for (let b = 0; b < st.blocks; b++) {
        blocks.push(
          new BasicBlock(planes, st.planes, {
            stride: b === 0 ? st.stride : 1,
            shortcut: spec.shortcut,
            seed: spec.seed + 1000 * (i + 1) + 100 * b,
          }),
        );
        planes = st.planes;
      }
      // A 3×3 convolution with padding 1 and stride s: ceil(h / s) rows.
      h = Math.ceil(h / st.stride);
      w = Math.ceil(w / st.stride);
      this.stages.push(this.child(`layer${i + 1}`, new Sequential(blocks)));
    });
    const ph = Math.floor(h / spec.pool), pw = Math.floor(w / spec.pool);
    if (ph < 1 || pw < 1) {
      throw new RangeError(
        `ResNet: input [${spec.input}] gives ${h}×${w} feature maps, smaller than the ` +
          `${spec.pool}×${spec.pool} pooling`,
      );
    }
    this.pool = this.child("pool", new AvgPool2d(spec.pool));
    this.featureSize = ph * pw * planes;
  }

  forward(x: tf.Tensor): tf.Tensor {
    const [h, w, c] = this.spec.input;
    if (x.size / x.shape[0] !== h * w * c) {
      throw new RangeError(
        `This ResNet expects NHWC images of ${h}×${w}×${c} = ${h * w * c} values, got shape ` +
          `[${x.shape}]`,
      );
    }
    const img = x.rank === 4 ? x : tf.reshape(x, [x.shape[0], h, w, c]);
    let out = tf.relu(this.bn1.forward(this.conv1.forward(img)));
    for (const s of this.stages) out = s.forward(out);
    return this.flatten.forward(this.pool.forward(out));
  }
}

/** Options of {@link slimResNet18} and {@link reducedResNet18}. */
export interface SlimResNet18Options {
  /** Input image shape [height, width, channels]. @default [32, 32, 3] */
  input?: [number, number, number];
  /** Output units (initial units for incremental and multi heads). @default 10 */
  outputs?: number;
  /** Output head. @default "single" */
  head?: HeadKind;
  /** Width: channels of the first stage (×2, ×4, ×8 in the next ones). @default 20 */
  nf?: number;
  /** Initializer seed (default: drawn from the run's seeded Math.random). */
  seed?: number;
}

const SLIM_OPTIONS: OptionSpec<SlimResNet18Options> = {
  input: "array",
  outputs: "integer",
  head: HEAD_KINDS,
  nf: "integer",
  seed: "number",
};

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${v}`);
  }
}

function checkInput(who: string, input: unknown): [number, number, number] {
  if (!Array.isArray(input) || input.length !== 3) {
    throw new RangeError(
      `${who} input must be [height, width, channels], got ${JSON.stringify(input)}`,
    );
  }
  input.forEach((d, i) => positiveInt(`${who} input[${i}]`, d));
  return input as [number, number, number];
}

function slim(
  who: string,
  opts: SlimResNet18Options,
  rebuild: (seed: number) => Classifier,
): Classifier {
  checkOptions(who, opts, SLIM_OPTIONS);
  const { outputs = 10, head = "single", nf = 20 } = opts;
  const input = checkInput(who, opts.input ?? [32, 32, 3]);
  positiveInt(`${who} outputs`, outputs);
  positiveInt(`${who} nf`, nf);
  const seed = drawSeed(opts.seed);
  const features = new ResNetBackbone({
    input,
    stem: nf,
    stages: [1, 2, 4, 8].map((m, i) => ({ planes: nf * m, blocks: 2, stride: i === 0 ? 1 : 2 })),
    shortcut: "conv",
    pool: 4,
    seed,
  });
  return new Classifier(
    features,
    makeHead(head, features.featureSize, outputs, seed + 99991),
    features.featureSize,
    input,
    () => rebuild(seed),
  );
}

/**
 * Avalanche's `SlimResNet18(nclasses, nf=20)` (`avalanche/models/slim_resnet18.py`, the reduced
 * ResNet-18 of Lopez-Paz and Ranzato's GEM): a 3×3 stem of `nf` channels, four stages of two
 * {@link BasicBlock}s with `nf`, 2`nf`, 4`nf` and 8`nf` channels (strides 1, 2, 2, 2; projection
 * shortcuts), 4×4 average pooling and the head: 8`nf` = 160 features on 32×32 images. Checked
 * against that file (and in `tests/resnet_test.ts` against it in PyTorch: parameter count and
 * outputs with the same weights). Differences: NHWC images; PyTorch's default initialization
 * (as Avalanche's, which sets none) from our seeded generator; `head: "multi"` gives
 * Avalanche's `MTSlimResNet18`.
 *
 * @example
 * ```ts ignore
 * import { slimResNet18 } from "./resnet.ts";
 * const model = slimResNet18({ outputs: 10, head: "incremental", seed: 0 });
 * model.dispose();
 * ```
 */
export function slimResNet18(opts: SlimResNet18Options = {}): Classifier {
  return slim("slimResNet18", opts, (seed) => slimResNet18({ ...opts, seed }));
}

/**
 * The reduced ResNet-18 of GEM (`ResNet18(nclasses, nf=20)` in GEM's `model/common.py`, checked
 * line by line: Avalanche's `slim_resnet18.py` is a copy of it), the network A-GEM also uses on
 * CIFAR: the same network as {@link slimResNet18}, under the name those papers use. (A-GEM's
 * TensorFlow code was not checked.)
 */
export function reducedResNet18(opts: SlimResNet18Options = {}): Classifier {
  return slim("reducedResNet18", opts, (seed) => reducedResNet18({ ...opts, seed }));
}

/** Options of {@link resnet32}. */
export interface ResNet32Options {
  /** Input image shape [height, width, channels]. @default [32, 32, 3] */
  input?: [number, number, number];
  /** Output units (initial units for incremental and multi heads). @default 10 */
  outputs?: number;
  /** Output head. @default "single" */
  head?: HeadKind;
  /** Shortcut where a stage changes size: option A (`"pad"`, iCaRL's) or B (`"conv"`). @default "pad" */
  shortcut?: ShortcutKind;
  /** Initializer seed (default: drawn from the run's seeded Math.random). */
  seed?: number;
}

const RESNET32_OPTIONS: OptionSpec<ResNet32Options> = {
  input: "array",
  outputs: "integer",
  head: HEAD_KINDS,
  shortcut: oneOf("conv", "pad"),
  seed: "number",
};

/**
 * iCaRL's ResNet-32 for CIFAR (Rebuffi et al. 2017), as PyCIL's `resnet32`
 * (`convs/cifar_resnet.py`, after khurramjaved96's `incremental-learning`): a 3×3 stem of 16
 * channels, three stages of five {@link BasicBlock}s with 16, 32 and 64 channels (strides 1, 2,
 * 2), 8×8 average pooling: 64 features on 32×32 images. The shortcut where a stage changes size
 * is option A by default (`DownsampleA`: subsampled input and zero channels, no parameters) or
 * option B (`DownsampleB`, 1×1 convolution and batch norm). Convolution weights are drawn as
 * PyCIL's, normal with standard deviation sqrt(2 / (k²·out)); batch norms start at weight 1 and
 * bias 0. Differences: NHWC images; the head keeps PyTorch's default `Linear` initialization
 * (PyCIL's networks replace the backbone's `fc` by their own heads).
 *
 * @example
 * ```ts ignore
 * import { resnet32 } from "./resnet.ts";
 * const model = resnet32({ outputs: 100, head: "incremental", seed: 0 });
 * model.dispose();
 * ```
 */
export function resnet32(opts: ResNet32Options = {}): Classifier {
  checkOptions("resnet32", opts, RESNET32_OPTIONS);
  const { outputs = 10, head = "single", shortcut = "pad" } = opts;
  const input = checkInput("resnet32", opts.input ?? [32, 32, 3]);
  positiveInt("resnet32 outputs", outputs);
  const seed = drawSeed(opts.seed);
  const features = new ResNetBackbone({
    input,
    stem: 16,
    stages: [16, 32, 64].map((planes, i) => ({ planes, blocks: 5, stride: i === 0 ? 1 : 2 })),
    shortcut,
    pool: 8,
    seed,
  });
  let k = 0;
  for (const m of features.namedModules().values()) {
    if (!(m instanceof Conv2d)) continue;
    const w = m.weight, [kh, kw, , out] = w.shape;
    const std = Math.sqrt(2 / (kh * kw * out));
    // Never seed 0: tfjs' randomNormal takes a seed of 0 for none.
    tf.tidy(() => w.assign(tf.randomNormal(w.shape, 0, std, "float32", seed + 7 * k++ + 1)));
  }
  return new Classifier(
    features,
    makeHead(head, features.featureSize, outputs, seed + 99991),
    features.featureSize,
    input,
    () => resnet32({ ...opts, seed }),
  );
}
