/**
 * Batch normalization: the functional core {@link batchNorm} (shared by the 1-d and 2-d layers:
 * it normalizes every channel of a channels-last tensor) and the layer {@link BatchNorm2d} for
 * NHWC images.
 *
 * Checked against PyTorch's `torch.nn.functional.batch_norm` and `nn.BatchNorm2d`
 * (`torch/nn/modules/batchnorm.py`): in training mode each channel is normalized by the
 * minibatch's mean and biased variance over every axis but the channel's, and the running
 * statistics move by `momentum` towards the minibatch's mean and *unbiased* variance
 * (`running = (1 − momentum) · running + momentum · batch`); in evaluation mode the running
 * statistics normalize. PyTorch's `momentum=None` (a cumulative average, counted by
 * `num_batches_tracked`) and `track_running_stats=False` are not offered; everything else
 * (momentum 0.1, eps 1e-5, weight ones, bias zeros) is PyTorch's default. Data stay NHWC, as
 * `Conv2d` and `MaxPool2d` have them, where PyTorch is NCHW.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { BATCH_NORM, batchNormTrain, hasFusedKernel } from "../backends/fused.ts";
import { Module } from "./module.ts";
import { checkOptions, type OptionSpec } from "../options.ts";

/** Options of the batch-norm layers (the same as `BatchNorm1d`'s). */
export interface BatchNormOptions {
  /** Weight of the newest batch in the running statistics (PyTorch's). @default 0.1 */
  momentum?: number;
  /** Added to the variance. @default 1e-5 */
  eps?: number;
}

/** Options of {@link BatchNorm2d}. */
export type BatchNorm2dOptions = BatchNormOptions;

const BATCH_NORM_OPTIONS: OptionSpec<BatchNormOptions> = { momentum: "number", eps: "number" };

/** What {@link batchNorm} normalizes with: one value per channel each. */
export interface BatchNormParams {
  /** Running mean, updated in place in training mode. */
  runningMean: tf.Variable;
  /** Running (unbiased) variance, updated in place in training mode. */
  runningVar: tf.Variable;
  /** Scale (`γ`); none: 1. */
  weight?: tf.Tensor;
  /** Shift (`β`); none: 0. */
  bias?: tf.Tensor;
}

/**
 * Batch normalization of the last axis (the channels) of `x`: `[n, c]` as `BatchNorm1d`,
 * `[n, h, w, c]` as {@link BatchNorm2d}. With `training`, normalizes by the minibatch's
 * statistics over every other axis and moves the running statistics (the unbiased variance,
 * as PyTorch) by `momentum`; else normalizes by the running statistics. Differentiable in `x`,
 * `weight` and `bias` (the running statistics never reach the output in training mode, so no
 * gradient flows through their update). Call it inside `tf.tidy` or a gradient function. In
 * training mode with a weight and a bias, on the backends of `lib/backends/fused.ts` ("blas",
 * "wasm", "cpu"), the normalization and its gradient are one kernel each (`batchNormTrain`);
 * elsewhere the composite `tf.moments` and `tf.batchNorm` compute the same values.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { batchNorm } from "./norm.ts";
 * await setBackend("cpu");
 * const runningMean = tf.variable(tf.zeros([1])), runningVar = tf.variable(tf.ones([1]));
 * const y = tf.tidy(() => batchNorm(tf.tensor2d([[1], [3]]), { runningMean, runningVar }, true));
 * // Mean 2, biased variance 1: (x − 2) / sqrt(1 + 1e-5).
 * console.assert(Math.abs(y.dataSync()[1] - 1) < 1e-4);
 * // Running: 0.9·0 + 0.1·2 and 0.9·1 + 0.1·2 (the unbiased variance).
 * console.assert(Math.abs(runningMean.dataSync()[0] - 0.2) < 1e-6);
 * console.assert(Math.abs(runningVar.dataSync()[0] - 1.1) < 1e-6);
 * tf.dispose([y, runningMean, runningVar]);
 * ```
 */
export function batchNorm(
  x: tf.Tensor,
  params: BatchNormParams,
  training: boolean,
  opts: BatchNormOptions = {},
): tf.Tensor {
  const momentum = opts.momentum ?? 0.1, eps = opts.eps ?? 1e-5;
  const c = params.runningMean.size;
  if (x.rank < 2 || x.shape[x.rank - 1] !== c) {
    throw new RangeError(
      `Batch norm of ${c} channels expects channels-last inputs [n, ..., ${c}], got [${x.shape}]`,
    );
  }
  const { weight, bias } = params;
  if (!training) {
    return tf.batchNorm(x, params.runningMean, params.runningVar, bias, weight, eps);
  }
  const count = x.size / c;
  if (count < 2) {
    throw new RangeError(
      `Batch norm in training mode needs more than one value per channel, got input [${x.shape}] ` +
        `(as PyTorch: train with minibatches of at least 2 samples, or evaluate in eval mode)`,
    );
  }
  let y: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor;
  if (weight && bias && x.dtype === "float32" && hasFusedKernel(BATCH_NORM)) {
    // One kernel forward and one backward where the composite form is about thirty.
    ({ y, mean, variance } = batchNormTrain(x, weight, bias, eps));
  } else {
    const axes = Array.from({ length: x.rank - 1 }, (_, i) => i);
    ({ mean, variance } = tf.moments(x, axes));
    y = tf.batchNorm(x, mean, variance, bias, weight, eps);
  }
  tf.tidy(() => {
    const { runningMean, runningVar } = params;
    runningMean.assign(tf.add(tf.mul(runningMean, 1 - momentum), tf.mul(mean, momentum)));
    const unbiased = tf.mul(variance, momentum * count / (count - 1));
    runningVar.assign(tf.add(tf.mul(runningVar, 1 - momentum), unbiased));
  });
  return y;
}

/** Checks the options and channel count of a batch-norm layer; returns momentum and eps. */
export function checkBatchNorm(
  who: string,
  features: number,
  opts: BatchNormOptions,
): { momentum: number; eps: number } {
  checkOptions(who, opts, BATCH_NORM_OPTIONS);
  if (!Number.isInteger(features) || features < 1) {
    throw new RangeError(`${who} features must be a positive integer, got ${features}`);
  }
  const momentum = opts.momentum ?? 0.1, eps = opts.eps ?? 1e-5;
  if (!(momentum >= 0 && momentum <= 1)) {
    throw new RangeError(`${who} momentum must be in [0, 1], got ${momentum}`);
  }
  if (!(eps > 0)) throw new RangeError(`${who} eps must be > 0, got ${eps}`);
  return { momentum, eps };
}

/**
 * Batch normalization of the channels of NHWC images, as PyTorch's `BatchNorm2d` (see the module
 * comment for what was checked). `weight` (ones) and `bias` (zeros) are trainable; the running
 * statistics `runningMean` (zeros) and `runningVar` (ones) are non-trainable parameters, so
 * `stateDict()`, checkpoints, `clone()` and `copyFrom` carry them while optimizers and penalties
 * (which take `trainableParameters()`) leave them alone. PyTorch calls them buffers and leaves
 * them out of `parameters()`: compare `trainableParameters()` with PyTorch's parameter count.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { setBackend } from "../backend.ts";
 * import { BatchNorm2d } from "./norm.ts";
 * await setBackend("cpu");
 * const bn = new BatchNorm2d(3);
 * const x = tf.randomNormal([4, 5, 5, 3], 2, 1, "float32", 0);
 * tf.tidy(() => bn.forward(x)); // training mode: batch statistics, running ones move
 * bn.eval();
 * const y = tf.tidy(() => bn.forward(x)); // the running statistics normalize
 * console.assert(y.shape.join() === "4,5,5,3");
 * tf.dispose([x, y]);
 * bn.dispose();
 * ```
 */
export class BatchNorm2d extends Module {
  readonly momentum: number;
  readonly eps: number;
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;
  readonly runningMean: tf.Variable;
  readonly runningVar: tf.Variable;

  constructor(readonly features: number, opts: BatchNorm2dOptions = {}) {
    super();
    const { momentum, eps } = checkBatchNorm("BatchNorm2d", features, opts);
    this.momentum = momentum;
    this.eps = eps;
    this.weight = this.param("weight", tf.ones([features]));
    this.bias = this.param("bias", tf.zeros([features]));
    this.runningMean = this.param("runningMean", tf.zeros([features]), false);
    this.runningVar = this.param("runningVar", tf.ones([features]), false);
  }

  forward(x: tf.Tensor): tf.Tensor {
    if (x.rank !== 4 || x.shape[3] !== this.features) {
      throw new RangeError(
        `BatchNorm2d expects NHWC inputs with ${this.features} channels, got shape [${x.shape}]`,
      );
    }
    return batchNorm(x, this, this.training, this);
  }
}
