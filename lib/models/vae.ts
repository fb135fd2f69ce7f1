/**
 * A fully connected variational autoencoder (Kingma and Welling 2014), the generator of
 * generative replay: Avalanche 0.6's `MlpVAE` (`avalanche/models/generator.py`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { Activation, BatchNorm1d, drawSeed, Linear, Sequential } from "../nn/layers.ts";
import { type Criterion, type Reconstruction, vaeLoss } from "../nn/losses.ts";
import { type Cloneable, type ForwardOptions, Module } from "../nn/module.ts";
import type { Rng } from "../random.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";

/** A module that samples inputs (Avalanche's `Generator`): `generate(n, rng)`. */
export interface Generator {
  /** `n` samples of the modelled inputs, `[n, ...shape]`, drawn with `rng`. */
  generate(n: number, rng: Rng): tf.Tensor;
}

/** True when the module can generate samples. */
export function isGenerator(m: unknown): m is Module & Generator {
  return m instanceof Module && typeof (m as unknown as Generator).generate === "function";
}

/** Pixel statistics the decoder's output is normalized with (`(p − mean) / std`). */
export interface OutputStats {
  mean: number;
  std: number;
}

/** Options of {@link mlpVAE} and {@link MlpVAE}. */
export interface MlpVAEOptions {
  /** Shape of one input sample, e.g. `[1, 28, 28]` or `[784]`. */
  shape: readonly number[];
  /** Size of the latent code. @default 16 (Avalanche's `MlpVAE`; `GenerativeReplay` uses 2) */
  nhid?: number;
  /** Widths of the encoder's hidden layers. @default [400, 128] */
  encoderHidden?: readonly number[];
  /** Widths of the decoder's hidden layers. @default [64, 128, 256] */
  decoderHidden?: readonly number[];
  /** Batch normalization after each hidden layer, as Avalanche. @default true */
  batchNorm?: boolean;
  /**
   * Normalize the decoder's sigmoid output as the inputs are (Avalanche's decoder applies
   * MNIST's `Normalize((0.1307,), (0.3081,))`). Default: none, outputs in [0, 1].
   */
  stats?: OutputStats;
  /** Seed of the initializers. Default: drawn from Math.random (seeded by `setup`). */
  seed?: number;
}

const MLP_VAE_OPTIONS: OptionSpec<MlpVAEOptions> = {
  shape: "array",
  nhid: "integer",
  encoderHidden: "array",
  decoderHidden: "array",
  batchNorm: "boolean",
  stats: "object",
  seed: "number",
};

function checkWidths(what: string, v: readonly number[]): number[] {
  if (!Array.isArray(v) || v.length === 0 || !v.every((w) => Number.isInteger(w) && w >= 1)) {
    throw new RangeError(
      `MlpVAE ${what} must be a non-empty array of positive integers, got ${JSON.stringify(v)}`,
    );
  }
  return [...v];
}

/** Linear layers of `widths`, each but the last (unless `lastActivated`) with BN and `act`. */
function mlpStack(
  widths: number[],
  act: "relu" | "leakyRelu",
  batchNorm: boolean,
  seed: number,
  lastActivated: boolean,
): Sequential {
  const layers: Module[] = [];
  for (let i = 0; i + 1 < widths.length; i++) {
    layers.push(new Linear(widths[i], widths[i + 1], { seed: seed + 2 * i }));
    if (i + 2 < widths.length || lastActivated) {
      if (batchNorm) layers.push(new BatchNorm1d(widths[i + 1]));
      layers.push(new Activation(act));
    }
  }
  return new Sequential(layers);
}

/** Standard normal draws of `rng` as a `[rows, cols]` tensor. */
export function normalNoise(rng: Rng, rows: number, cols: number): tf.Tensor2D {
  const values = new Float32Array(rows * cols);
  for (let i = 0; i < values.length; i++) values[i] = rng.normal();
  return tf.tensor2d(values, [rows, cols]);
}

/**
 * A fully connected VAE, as Avalanche 0.6's `MlpVAE`, checked against
 * `avalanche/models/generator.py`:
 *
 * - encoder: `Linear(D, 400)`, batch norm, leaky relu (slope 0.01), `Linear(400, 128)`, batch
 *   norm, relu; `mean` and `logvar` each a `Linear(128, nhid)` of the encoding;
 * - decoder: `Linear(nhid, 64)`, `Linear(64, 128)`, `Linear(128, 256)` each with batch norm and
 *   relu, then `Linear(256, D)` and a sigmoid, normalized with `stats` when given (Avalanche's
 *   `invTrans`, MNIST's statistics);
 * - `generate(n, rng)`: decodes `z ~ N(0, I)`;
 * - the forward pass samples `z = mean + eps · exp(logvar / 2)` with `eps` drawn from the run's
 *   generator (`opts.rng`, which the strategy template passes); without one it decodes `mean`.
 *
 * Where we differ: Avalanche's `sampling` scales the noise by `0.5 · exp(logvar)`, which is not
 * the standard deviation its KL term assumes (`exp(logvar / 2)`); we use the standard deviation.
 * Avalanche's unused classification head is left out. The forward pass returns one tensor,
 * `[n, D + 2·nhid]`: the flattened reconstruction, then `mean`, then `logvar` (Avalanche returns
 * the triple); {@link MlpVAE.split} takes it apart and {@link vaeCriterion} computes the loss.
 *
 * @example
 * ```ts
 * import { setup } from "../backend.ts";
 * import { Rng } from "../random.ts";
 * import { mlpVAE } from "./vae.ts";
 * await setup({ backend: "cpu", seed: 0 });
 * const vae = mlpVAE({ shape: [4], nhid: 2, encoderHidden: [8], decoderHidden: [8] });
 * const samples = vae.generate(3, new Rng(0));
 * console.assert(samples.shape.join() === "3,4");
 * ```
 */
export class MlpVAE extends Module implements Cloneable, Generator {
  readonly shape: readonly number[];
  readonly inputShape: readonly number[];
  readonly nhid: number;
  readonly stats: OutputStats | undefined;
  readonly encoder: Sequential;
  readonly calcMean: Linear;
  readonly calcLogvar: Linear;
  readonly decoder: Sequential;
  /** Number of values of one sample (`D`). */
  readonly size: number;
  readonly #opts: MlpVAEOptions;

  constructor(opts: MlpVAEOptions) {
    super();
    checkOptions("MlpVAE", opts, MLP_VAE_OPTIONS);
    if (!opts || !Array.isArray(opts.shape)) {
      throw new TypeError("MlpVAE needs the shape of an input sample: { shape: [1, 28, 28] }");
    }
    this.shape = checkWidths("shape", opts.shape);
    this.inputShape = this.shape;
    this.size = this.shape.reduce((a, b) => a * b, 1);
    this.nhid = opts.nhid ?? 16;
    if (!Number.isInteger(this.nhid) || this.nhid < 1) {
      throw new RangeError(`MlpVAE nhid must be a positive integer, got ${opts.nhid}`);
    }
    const enc = checkWidths("encoderHidden", opts.encoderHidden ?? [400, 128]);
    const dec = checkWidths("decoderHidden", opts.decoderHidden ?? [64, 128, 256]);
    if (opts.stats !== undefined) {
      const { mean, std } = opts.stats;
      if (!Number.isFinite(mean) || !(std > 0)) {
        throw new RangeError(
          `MlpVAE stats must be { mean, std } with std > 0, got ${JSON.stringify(opts.stats)}`,
        );
      }
      this.stats = { mean, std };
    }
    const bn = opts.batchNorm ?? true;
    const seed = drawSeed(opts.seed);
    this.#opts = { ...opts, seed };
    this.encoder = this.child(
      "encoder",
      new Sequential([
        new Linear(this.size, enc[0], { seed }),
        ...(bn ? [new BatchNorm1d(enc[0])] : []),
        new Activation("leakyRelu"),
        ...mlpStack(enc, "relu", bn, seed + 100, true).layers,
      ]),
    );
    const last = enc[enc.length - 1];
    this.calcMean = this.child("calcMean", new Linear(last, this.nhid, { seed: seed + 200 }));
    this.calcLogvar = this.child("calcLogvar", new Linear(last, this.nhid, { seed: seed + 300 }));
    this.decoder = this.child(
      "decoder",
      mlpStack([this.nhid, ...dec, this.size], "relu", bn, seed + 400, false),
    );
  }

  /** The encoder's Gaussian for inputs `x` (`[n, ...shape]`). */
  encode(x: tf.Tensor): { mean: tf.Tensor2D; logvar: tf.Tensor2D } {
    const n = x.shape[0]!;
    const h = this.encoder.forward(x.rank === 2 ? x : tf.reshape(x, [n, this.size]));
    return {
      mean: this.calcMean.forward(h) as tf.Tensor2D,
      logvar: this.calcLogvar.forward(h) as tf.Tensor2D,
    };
  }

  /** Decodes latent codes `z` (`[n, nhid]`) to flattened samples `[n, D]`. */
  decodeFlat(z: tf.Tensor): tf.Tensor2D {
    const p = tf.sigmoid(this.decoder.forward(z));
    if (!this.stats) return p as tf.Tensor2D;
    return tf.div(tf.sub(p, this.stats.mean), this.stats.std) as tf.Tensor2D;
  }

  /** The reparameterization trick: `mean + eps · exp(logvar / 2)`, `eps` drawn from `rng`. */
  sampling(mean: tf.Tensor, logvar: tf.Tensor, rng: Rng): tf.Tensor {
    const [n, h] = mean.shape as [number, number];
    return tf.add(mean, tf.mul(normalNoise(rng, n, h), tf.exp(tf.mul(logvar, 0.5))));
  }

  /** `[n, D + 2·nhid]`: the reconstruction (flattened), the mean and the log-variance. */
  forward(x: tf.Tensor, opts?: ForwardOptions): tf.Tensor {
    const { mean, logvar } = this.encode(x);
    const z = opts?.rng ? this.sampling(mean, logvar, opts.rng) : mean;
    return tf.concat([this.decodeFlat(z), mean, logvar], 1);
  }

  /** Takes a forward pass's output apart. */
  split(output: tf.Tensor): { xHat: tf.Tensor2D; mean: tf.Tensor2D; logvar: tf.Tensor2D } {
    const n = output.shape[0]!, d = this.size, h = this.nhid;
    if (output.rank !== 2 || output.shape[1] !== d + 2 * h) {
      throw new RangeError(
        `MlpVAE.split expects a forward output of shape [n, ${d + 2 * h}], got [${output.shape}]`,
      );
    }
    return {
      xHat: tf.slice(output, [0, 0], [n, d]) as tf.Tensor2D,
      mean: tf.slice(output, [0, d], [n, h]) as tf.Tensor2D,
      logvar: tf.slice(output, [0, d + h], [n, h]) as tf.Tensor2D,
    };
  }

  /** `n` samples `[n, ...shape]` decoded from `z ~ N(0, I)` drawn with `rng`. */
  generate(n: number, rng: Rng): tf.Tensor {
    if (!Number.isInteger(n) || n < 1) {
      throw new RangeError(`MlpVAE.generate needs a positive integer count, got ${n}`);
    }
    return tf.tidy(() =>
      tf.reshape(this.decodeFlat(normalNoise(rng, n, this.nhid)), [n, ...this.shape])
    );
  }

  /** A copy (same structure, same parameters and running statistics, same mode). */
  clone(): MlpVAE {
    const c = new MlpVAE(this.#opts);
    c.loadStateDict(this.stateDict());
    c.train(this.training);
    return c;
  }
}

/**
 * An {@link MlpVAE} (`nhid` 16, encoder 400-128, decoder 64-128-256, batch norm).
 *
 * @example
 * ```ts
 * import { setup } from "../backend.ts";
 * import { mlpVAE } from "./vae.ts";
 * await setup({ backend: "cpu", seed: 0 });
 * const vae = mlpVAE({ shape: [1, 28, 28], nhid: 2 });
 * console.assert(vae.size === 784);
 * ```
 */
export function mlpVAE(opts: MlpVAEOptions): MlpVAE {
  return new MlpVAE(opts);
}

/**
 * The criterion of a VAE strategy: {@link vaeLoss} of the minibatch's inputs and `vae`'s forward
 * output (Avalanche's `VAETraining.criterion`, `VAE_loss(mb_x, mb_output)`; the labels are not
 * used). With `"bce"` and a VAE whose outputs are normalized (`stats`), inputs and outputs are
 * brought back to [0, 1] first.
 */
export function vaeCriterion(vae: MlpVAE, reconstruction: Reconstruction = "mse"): Criterion {
  if (reconstruction !== "mse" && reconstruction !== "bce") {
    throw new RangeError(
      `vaeCriterion: reconstruction must be "mse" or "bce", got ${String(reconstruction)}`,
    );
  }
  return (output, _labels, inputs) => {
    if (!inputs) {
      throw new TypeError(
        "The VAE criterion needs the minibatch's inputs: call it as criterion(output, labels, { x })",
      );
    }
    const { xHat, mean, logvar } = vae.split(output);
    let x = tf.reshape(inputs.x, xHat.shape), rec: tf.Tensor = xHat;
    if (reconstruction === "bce" && vae.stats) {
      const { mean: m, std } = vae.stats;
      x = tf.add(tf.mul(x, std), m);
      rec = tf.add(tf.mul(xHat, std), m);
    }
    return vaeLoss(x, rec, mean, logvar, reconstruction);
  };
}

export const RECONSTRUCTIONS = oneOf("mse", "bce");
