/**
 * Layers: linear, convolution, pooling, activations, dropout, flatten, sequential.
 *
 * Linear layers compute their gradients with explicit transposes followed by plain matrix
 * products: on the wasm backend `matMul` with a transpose flag is much slower than a transpose
 * followed by a plain product.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import {
  hasFusedKernel,
  LINEAR,
  linear as fusedLinear,
  type LinearActivation,
} from "../backends/fused.ts";
import { type ForwardOptions, Module } from "./module.ts";
import { anyOf, checkOptions, oneOf, type OptionSpec } from "../options.ts";

/** Backends whose own gradient kernels are fast (native matrix products). */
const NATIVE_GRADS: ReadonlySet<string> = new Set(["blas", "tensorflow"]);

/** Seeds for initializers: an explicit seed, else one drawn from Math.random (seeded per run). */
export function drawSeed(seed?: number): number {
  return seed ?? Math.floor(Math.random() * 2 ** 31);
}

/** x @ w + b with a gradient that avoids transposed-flag matmuls. */
export const linearOp: (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor2D = tf
  .customGrad(
    ((x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, save: (ts: tf.Tensor[]) => void) => {
      save([x, w]);
      return {
        value: tf.add(tf.matMul(x, w), b) as tf.Tensor2D,
        gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
          const [sx, sw] = saved as [tf.Tensor2D, tf.Tensor2D];
          return [
            tf.matMul(dy, tf.transpose(sw)),
            tf.matMul(tf.transpose(sx), dy),
            tf.sum(dy, 0),
          ];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  ) as unknown as (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor2D;

/** Padding and output size of one spatial dimension, computed as tfjs' conv2d does. */
function convDim(
  size: number,
  k: number,
  stride: number,
  padding: ConvPadding,
): { out: number; before: number; after: number } {
  if (typeof padding === "number") {
    return {
      out: Math.floor((size + 2 * padding - k) / stride) + 1,
      before: padding,
      after: padding,
    };
  }
  if (padding === "valid") return { out: Math.ceil((size - k + 1) / stride), before: 0, after: 0 };
  const out = Math.ceil(size / stride);
  const total = Math.max(0, (out - 1) * stride + k - size);
  const before = Math.floor(total / 2);
  return { out, before, after: total - before };
}

/** Padding of a convolution: tfjs' "same" or "valid", or PyTorch's zeros on every side. */
export type ConvPadding = "same" | "valid" | number;

/** `padding` as tfjs' conv2d takes it (a number is the same zeros on both sides of each axis). */
function tfPadding(
  padding: ConvPadding,
): "same" | "valid" | [[0, 0], [number, number], [number, number], [0, 0]] {
  return typeof padding === "number"
    ? [[0, 0], [padding, padding], [padding, padding], [0, 0]]
    : padding;
}

/**
 * The image patches a [kh, kw, cin, cout] kernel sees, as a matrix [n * outH * outW, kh*kw*cin]
 * whose column order matches the kernel reshaped to [kh*kw*cin, cout] (im2col).
 */
function im2col(
  x: tf.Tensor4D,
  kh: number,
  kw: number,
  stride: number,
  padding: ConvPadding,
): tf.Tensor2D {
  const [n, h, w, c] = x.shape;
  const dh = convDim(h, kh, stride, padding);
  const dw = convDim(w, kw, stride, padding);
  const xp = dh.before + dh.after + dw.before + dw.after > 0
    ? tf.pad(x, [[0, 0], [dh.before, dh.after], [dw.before, dw.after], [0, 0]])
    : x;
  const cols: tf.Tensor[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      cols.push(
        stride === 1 ? tf.slice(xp, [0, i, j, 0], [n, dh.out, dw.out, c]) : tf.stridedSlice(
          xp,
          [0, i, j, 0],
          [n, i + (dh.out - 1) * stride + 1, j + (dw.out - 1) * stride + 1, c],
          [1, stride, stride, 1],
        ),
      );
    }
  }
  const patches = cols.length === 1 ? cols[0] : tf.concat(cols, 3);
  return tf.reshape(patches, [n * dh.out * dw.out, kh * kw * c]);
}

/**
 * conv2d(x, w) + b on NHWC inputs (no bias when `b` is undefined) with a gradient that needs no
 * `Conv2DBackpropFilter` kernel (the wasm backend has none): the kernel's gradient is
 * im2col(x)ᵀ · dy, the input's gradient the transposed convolution.
 */
export function conv2dOp(
  x: tf.Tensor4D,
  w: tf.Tensor4D,
  b: tf.Tensor1D | undefined,
  stride = 1,
  padding: ConvPadding = "same",
): tf.Tensor4D {
  const pad = tfPadding(padding);
  const op = tf.customGrad(
    ((...args: unknown[]) => {
      const save = args[args.length - 1] as (ts: tf.Tensor[]) => void;
      const [x, w, b] = args.slice(0, -1) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor1D?];
      save([x, w]);
      const y = tf.conv2d(x, w, stride, pad) as tf.Tensor4D;
      return {
        value: b ? tf.add(y, b) as tf.Tensor4D : y,
        gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
          const [sx, sw] = saved as [tf.Tensor4D, tf.Tensor4D];
          const [kh, kw, , cout] = sw.shape;
          const dy2 = tf.reshape(dy, [-1, cout]);
          const cols = im2col(sx, kh, kw, stride, padding);
          const grads = [
            tf.conv2dTranspose(dy, sw, sx.shape, stride, pad),
            tf.reshape(tf.matMul(tf.transpose(cols), dy2), sw.shape),
          ];
          if (b) grads.push(tf.sum(dy2, 0));
          return grads;
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  ) as unknown as (...xs: tf.Tensor[]) => tf.Tensor4D;
  return b ? op(x, w, b) : op(x, w);
}

/** Options of {@link Linear}. */
export interface LinearOptions {
  /** Add a bias. @default true */
  bias?: boolean;
  /** Initializer seed (default: drawn from the run's seeded Math.random). */
  seed?: number;
}

/** The keys of {@link LinearOptions}, for checking what users pass. */
const LINEAR_OPTIONS: OptionSpec<LinearOptions> = { bias: "boolean", seed: "number" };

/**
 * Fully connected layer `y = x W + b`, W of shape [in, out]. Initialized as PyTorch does:
 * uniform in ±1/sqrt(in) for weights and bias.
 */
export class Linear extends Module {
  weight: tf.Variable;
  bias: tf.Variable | undefined;

  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: LinearOptions = {}) {
    super();
    checkOptions("Linear", opts, LINEAR_OPTIONS);
    for (const [k, v] of [["inFeatures", inFeatures], ["outFeatures", outFeatures]] as const) {
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(`Linear ${k} must be a positive integer, got ${v}`);
      }
    }
    const seed = drawSeed(opts.seed);
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.param(
      "weight",
      tf.randomUniform([inFeatures, outFeatures], -bound, bound, "float32", seed),
    );
    this.bias = opts.bias === false
      ? undefined
      : this.param("bias", tf.randomUniform([outFeatures], -bound, bound, "float32", seed + 1));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.forwardActivated(x, "linear");
  }

  /**
   * `activation(x · weight + bias)`: one fused kernel (and only the needed gradients) where the
   * backend has it ("blas", "wasm"), else the product, the bias and the activation.
   */
  forwardActivated(x: tf.Tensor, activation: LinearActivation): tf.Tensor {
    const x2 = x.rank === 2 ? x as tf.Tensor2D : tf.reshape(x, [x.shape[0], -1]) as tf.Tensor2D;
    if (x2.shape[1] !== this.inFeatures) {
      throw new RangeError(
        `Linear layer expects ${this.inFeatures} input features but got ${
          x2.shape[1]
        } (input shape [${x.shape}])`,
      );
    }
    const w = this.weight as tf.Tensor2D, b = this.bias as tf.Tensor1D | undefined;
    if (hasFusedKernel(LINEAR) && x2.dtype === "float32") return fusedLinear(x2, w, b, activation);
    const y = this.#affine(x2, w, b);
    return activation === "relu" ? tf.relu(y) : y;
  }

  #affine(x2: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D | undefined): tf.Tensor {
    if (!b) return tf.matMul(x2, w);
    // Backends with native matrix products (tfjs-node) take tfjs' own gradients, which skip
    // the input gradient where none is needed; cpu keeps the explicit-transpose form (blas and
    // wasm take the fused kernel above).
    if (NATIVE_GRADS.has(tf.getBackend())) return tf.add(tf.matMul(x2, w), b);
    return linearOp(x2, w, b);
  }

  /** Replaces weight and bias by ones with `outFeatures` outputs, keeping the first columns. */
  resizeOutputs(outFeatures: number, seed?: number): void {
    if (outFeatures === this.outFeatures) return;
    const keep = Math.min(outFeatures, this.outFeatures);
    const s = drawSeed(seed);
    const bound = 1 / Math.sqrt(this.inFeatures);
    const w = tf.tidy(() => {
      const fresh = tf.randomUniform([this.inFeatures, outFeatures], -bound, bound, "float32", s);
      return tf.concat([
        tf.slice(this.weight, [0, 0], [-1, keep]),
        tf.slice(fresh, [0, keep], [-1, -1]),
      ], 1);
    });
    this.weight = this.param("weight", w);
    if (this.bias) {
      const b = tf.tidy(() => {
        const fresh = tf.randomUniform([outFeatures], -bound, bound, "float32", s + 1);
        return tf.concat([tf.slice(this.bias!, [0], [keep]), tf.slice(fresh, [keep], [-1])], 0);
      });
      this.bias = this.param("bias", b);
    }
    (this as { outFeatures: number }).outFeatures = outFeatures;
  }
}

/** Activation functions by name. */
export type ActivationName = "relu" | "tanh" | "sigmoid" | "elu" | "leakyRelu" | "linear";

const ACTIVATIONS: Record<ActivationName, (x: tf.Tensor) => tf.Tensor> = {
  relu: (x) => tf.relu(x),
  tanh: (x) => tf.tanh(x),
  sigmoid: (x) => tf.sigmoid(x),
  elu: (x) => tf.elu(x),
  leakyRelu: (x) => tf.leakyRelu(x, 0.01),
  linear: (x) => x,
};

/** Every activation name, in the order errors list them. */
export const ACTIVATION_NAMES: readonly ActivationName[] = Object.keys(
  ACTIVATIONS,
) as ActivationName[];

/** Checks an activation name, with an error listing the valid ones. */
export function checkActivation(name: string): ActivationName {
  if (!(name in ACTIVATIONS)) {
    throw new RangeError(
      `Unknown activation "${name}": use one of ${Object.keys(ACTIVATIONS).join(", ")}`,
    );
  }
  return name as ActivationName;
}

/** An elementwise activation. */
export class Activation extends Module {
  readonly #fn: (x: tf.Tensor) => tf.Tensor;
  constructor(readonly kind: ActivationName) {
    super();
    this.#fn = ACTIVATIONS[checkActivation(kind)];
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.#fn(x);
  }
}

/** Inverted dropout, active only in training mode. */
export class Dropout extends Module {
  #calls = 0;
  constructor(readonly rate: number, readonly seed: number = drawSeed()) {
    super();
    if (!(rate >= 0 && rate < 1)) {
      throw new RangeError(`Dropout rate must be in [0, 1), got ${rate}`);
    }
  }
  forward(x: tf.Tensor): tf.Tensor {
    if (!this.training || this.rate === 0) return x;
    return tf.dropout(x, this.rate, undefined, this.seed + this.#calls++);
  }
}

/** Flattens every dimension but the first. */
export class Flatten extends Module {
  forward(x: tf.Tensor): tf.Tensor {
    return tf.reshape(x, [x.shape[0], -1]);
  }
}

/** Options of {@link Conv2d}. */
export interface Conv2dOptions {
  /** Stride in both directions. @default 1 */
  stride?: number;
  /**
   * tfjs' "same" or "valid", or a number of zero rows and columns on every side (PyTorch's
   * `padding`; "same" and PyTorch's `padding=1` differ for strided 3×3 kernels). @default "same"
   */
  padding?: ConvPadding;
  /** Add a bias (PyTorch's `bias`). @default true */
  bias?: boolean;
  /** Initializer seed (default: drawn from the run's seeded Math.random). */
  seed?: number;
}

/** The keys of {@link Conv2dOptions}, for checking what users pass. */
const CONV2D_OPTIONS: OptionSpec<Conv2dOptions> = {
  stride: "integer",
  padding: anyOf(oneOf("same", "valid"), "integer"),
  bias: "boolean",
  seed: "number",
};

/**
 * 2-D convolution on NHWC inputs with a [kh, kw, in, out] kernel ("same", "valid" or numeric
 * padding), initialized as PyTorch does: uniform in ±1/sqrt(in·k²) for weights and bias.
 */
export class Conv2d extends Module {
  weight: tf.Variable;
  bias: tf.Variable | undefined;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    readonly opts: Conv2dOptions = {},
  ) {
    super();
    checkOptions("Conv2d", opts, CONV2D_OPTIONS);
    const dims = [
      ["inChannels", inChannels],
      ["outChannels", outChannels],
      ["kernelSize", kernelSize],
      ["stride", opts.stride ?? 1],
    ] as const;
    for (const [k, v] of dims) {
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(`Conv2d ${k} must be a positive integer, got ${v}`);
      }
    }
    const padding: unknown = opts.padding ?? "same";
    if (
      padding !== "same" && padding !== "valid" &&
      !(typeof padding === "number" && Number.isInteger(padding) && padding >= 0)
    ) {
      throw new RangeError(
        `Conv2d padding must be "same", "valid" or an integer ≥ 0, got ${JSON.stringify(padding)}`,
      );
    }
    const seed = drawSeed(opts.seed);
    const bound = 1 / Math.sqrt(inChannels * kernelSize * kernelSize);
    this.weight = this.param(
      "weight",
      tf.randomUniform(
        [kernelSize, kernelSize, inChannels, outChannels],
        -bound,
        bound,
        "float32",
        seed,
      ),
    );
    this.bias = opts.bias === false ? undefined : this.param(
      "bias",
      tf.randomUniform([outChannels], -bound, bound, "float32", seed + 1),
    );
  }
  forward(x: tf.Tensor): tf.Tensor {
    if (x.rank !== 4 || x.shape[3] !== this.inChannels) {
      throw new RangeError(
        `Conv2d expects NHWC input with ${this.inChannels} channels, got shape [${x.shape}]`,
      );
    }
    const stride = this.opts.stride ?? 1;
    const padding = this.opts.padding ?? "same";
    // tfjs-node's native kernel gradient is fast; wasm has none and cpu's is much slower than
    // im2col + matMul.
    if (NATIVE_GRADS.has(tf.getBackend())) {
      const y = tf.conv2d(x as tf.Tensor4D, this.weight as tf.Tensor4D, stride, tfPadding(padding));
      return this.bias ? tf.add(y, this.bias) : y;
    }
    return conv2dOp(
      x as tf.Tensor4D,
      this.weight as tf.Tensor4D,
      this.bias as tf.Tensor1D | undefined,
      stride,
      padding,
    );
  }
}

/** 2-D max pooling on NHWC inputs. */
export class MaxPool2d extends Module {
  constructor(readonly size: number = 2, readonly stride: number = size) {
    super();
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.maxPool(x as tf.Tensor4D, this.size, this.stride, "valid");
  }
}

/** Runs children in order; they are named "0", "1", ... */
export class Sequential extends Module {
  readonly layers: Module[];
  constructor(layers: Module[]) {
    super();
    this.layers = layers;
    layers.forEach((l, i) => this.child(String(i), l));
  }
  forward(x: tf.Tensor, opts?: ForwardOptions): tf.Tensor {
    let h = x;
    const layers = this.layers;
    for (let i = 0; i < layers.length; i++) {
      const l = layers[i], next = layers[i + 1];
      // A Linear followed by a relu is one fused kernel where the backend has it.
      if (l instanceof Linear && next instanceof Activation && next.kind === "relu") {
        h = l.forwardActivated(h, "relu");
        i++;
      } else {
        h = l.forward(h, opts);
      }
    }
    return h;
  }
}

/** Options of {@link BatchNorm1d}. */
export interface BatchNorm1dOptions {
  /** Weight of the newest batch in the running statistics (PyTorch's). @default 0.1 */
  momentum?: number;
  /** Added to the variance. @default 1e-5 */
  eps?: number;
}

const BATCH_NORM_OPTIONS: OptionSpec<BatchNorm1dOptions> = { momentum: "number", eps: "number" };

/**
 * Batch normalization over the features of `[n, features]` inputs, as PyTorch's `BatchNorm1d`:
 * in training mode each feature is normalized by the minibatch's mean and (biased) variance and
 * the running statistics move by `momentum` towards them (the unbiased variance); in evaluation
 * mode the running statistics normalize. `weight` (ones) and `bias` (zeros) are trainable; the
 * running statistics are non-trainable parameters, so they are part of `stateDict()`.
 */
export class BatchNorm1d extends Module {
  readonly momentum: number;
  readonly eps: number;
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;
  readonly runningMean: tf.Variable;
  readonly runningVar: tf.Variable;

  constructor(readonly features: number, opts: BatchNorm1dOptions = {}) {
    super();
    checkOptions("BatchNorm1d", opts, BATCH_NORM_OPTIONS);
    if (!Number.isInteger(features) || features < 1) {
      throw new RangeError(`BatchNorm1d features must be a positive integer, got ${features}`);
    }
    this.momentum = opts.momentum ?? 0.1;
    this.eps = opts.eps ?? 1e-5;
    if (!(this.momentum >= 0 && this.momentum <= 1)) {
      throw new RangeError(`BatchNorm1d momentum must be in [0, 1], got ${this.momentum}`);
    }
    if (!(this.eps > 0)) throw new RangeError(`BatchNorm1d eps must be > 0, got ${this.eps}`);
    this.weight = this.param("weight", tf.ones([features]));
    this.bias = this.param("bias", tf.zeros([features]));
    this.runningMean = this.param("runningMean", tf.zeros([features]), false);
    this.runningVar = this.param("runningVar", tf.ones([features]), false);
  }

  forward(x: tf.Tensor): tf.Tensor {
    if (x.rank !== 2 || x.shape[1] !== this.features) {
      throw new RangeError(
        `BatchNorm1d expects inputs of shape [n, ${this.features}], got [${x.shape}]`,
      );
    }
    let mean: tf.Tensor, variance: tf.Tensor;
    if (this.training) {
      const m = tf.moments(x, 0);
      mean = m.mean;
      variance = m.variance;
      const n = x.shape[0]!, k = this.momentum;
      // The running statistics do not reach the output, so no gradient flows through them.
      const unbiased = n > 1 ? tf.mul(variance, n / (n - 1)) : variance;
      this.runningMean.assign(tf.add(tf.mul(this.runningMean, 1 - k), tf.mul(mean, k)));
      this.runningVar.assign(tf.add(tf.mul(this.runningVar, 1 - k), tf.mul(unbiased, k)));
    } else {
      mean = this.runningMean;
      variance = this.runningVar;
    }
    const normalized = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, this.eps)));
    return tf.add(tf.mul(normalized, this.weight), this.bias);
  }
}
