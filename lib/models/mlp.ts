/**
 * Ready-made models: multi-layer perceptrons and a small CNN, each with a feature extractor
 * (`features`) and a classifier head (`classifier`) that is single, incremental or multi-head.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import {
  Activation,
  ACTIVATION_NAMES,
  type ActivationName,
  checkActivation,
  Conv2d,
  drawSeed,
  Dropout,
  Flatten,
  Linear,
  MaxPool2d,
  Sequential,
} from "../nn/layers.ts";
import { type Cloneable, type ForwardOptions, Module } from "../nn/module.ts";
import { IncrementalClassifier, MultiHeadClassifier } from "./heads.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";

/** Which output head a model has. */
export type HeadKind = "single" | "incremental" | "multi";

/** A model made of a feature extractor and a classifier head. */
export class Classifier extends Module implements Cloneable {
  constructor(
    readonly features: Module,
    readonly classifier: Module,
    readonly featureSize: number,
    readonly inputShape: readonly number[],
    readonly rebuild: () => Classifier,
  ) {
    super();
    this.child("features", features);
    this.child("classifier", classifier);
  }

  forward(x: tf.Tensor, opts?: ForwardOptions): tf.Tensor {
    return this.classifier.forward(this.features.forward(x, opts), opts);
  }

  /** The feature vector (input of the head) of each sample. */
  embed(x: tf.Tensor, opts?: ForwardOptions): tf.Tensor {
    return this.features.forward(x, opts);
  }

  /**
   * A new model of the same architecture holding a copy of this one's parameters, copied on the
   * device (no read-back: the "webgpu" backend cannot read GPU data synchronously).
   */
  clone(): Classifier {
    const c = this.rebuild();
    c.loadStructure(this.structure());
    const mine = this.namedParameters();
    for (const [n, v] of c.namedParameters()) {
      const src = mine.get(n);
      if (!src || src.shape.join() !== v.shape.join()) {
        throw new RangeError(`Cannot clone parameter "${n}": the copy's structure differs`);
      }
      tf.tidy(() => v.assign(tf.clone(src)));
    }
    c.train(this.training);
    return c;
  }
}

/** The output head of `kind` on `inFeatures` features (`outputs` initial units). */
export function makeHead(
  kind: HeadKind,
  inFeatures: number,
  outputs: number,
  seed: number,
): Module {
  switch (kind) {
    case "single":
      return new Linear(inFeatures, outputs, { seed });
    case "incremental":
      return new IncrementalClassifier(inFeatures, outputs, true, seed);
    case "multi":
      return new MultiHeadClassifier(inFeatures, outputs, seed);
    default:
      throw new RangeError(`Unknown head "${kind}": use "single", "incremental" or "multi"`);
  }
}

/** Options of {@link mlp}. */
export interface MLPOptions {
  /** Input features (inputs of other shapes with this many values are flattened). @default 784 */
  input?: number;
  /** Widths of the hidden layers. @default [400, 400] */
  hidden?: number[];
  /** Output units (initial units for incremental and multi heads). @default 10 */
  outputs?: number;
  /** Hidden activation. @default "relu" */
  activation?: ActivationName;
  /** Dropout rate after each hidden layer. @default 0 */
  dropout?: number;
  /** Output head. @default "single" */
  head?: HeadKind;
  /** Initializer seed (default: drawn from the run's seeded Math.random). */
  seed?: number;
}

/** The option kind of a {@link HeadKind}. */
export const HEAD_KINDS = oneOf("single", "incremental", "multi");

/** The keys of {@link multiHeadMLP}'s options (those of {@link mlp} but `head`). */
const MULTI_HEAD_MLP_OPTIONS: OptionSpec<Omit<MLPOptions, "head">> = {
  input: "integer",
  hidden: "array",
  outputs: "integer",
  activation: oneOf(...ACTIVATION_NAMES),
  dropout: "number",
  seed: "number",
};

/** The keys of {@link MLPOptions}, for checking what users pass. */
const MLP_OPTIONS: OptionSpec<MLPOptions> = { ...MULTI_HEAD_MLP_OPTIONS, head: HEAD_KINDS };

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${v}`);
  }
}

/**
 * A multi-layer perceptron.
 *
 * @example
 * ```ts
 * import { mlp } from "./mlp.ts";
 * const model = mlp({ hidden: [400, 400] }); // 784-400-400-10, ReLU
 * model.dispose();
 * ```
 */
export function mlp(opts: MLPOptions = {}): Classifier {
  checkOptions("mlp", opts, MLP_OPTIONS);
  const {
    input = 784,
    hidden = [400, 400],
    outputs = 10,
    activation = "relu",
    dropout = 0,
    head = "single",
  } = opts;
  positiveInt("mlp input", input);
  positiveInt("mlp outputs", outputs);
  hidden.forEach((h, i) => positiveInt(`mlp hidden[${i}]`, h));
  checkActivation(activation);
  const seed = drawSeed(opts.seed);
  const layers: Module[] = [];
  let width = input;
  hidden.forEach((h, i) => {
    layers.push(new Linear(width, h, { seed: seed + 1000 * i }));
    layers.push(new Activation(activation));
    if (dropout > 0) layers.push(new Dropout(dropout, seed + 1000 * i + 500));
    width = h;
  });
  return new Classifier(
    new Sequential(layers),
    makeHead(head, width, outputs, seed + 99991),
    width,
    [input],
    () => mlp({ ...opts, seed }),
  );
}

/** An MLP with one head per task label, for task-incremental learning. */
export function multiHeadMLP(opts: Omit<MLPOptions, "head"> = {}): Classifier {
  checkOptions("multiHeadMLP", opts, MULTI_HEAD_MLP_OPTIONS);
  return mlp({ ...opts, head: "multi" });
}

/** Options of {@link cnn}. */
export interface CNNOptions {
  /** Input image shape [height, width, channels]. @default [28, 28, 1] */
  input?: [number, number, number];
  /** Channels of each conv block (conv 3×3, ReLU, max-pool 2). @default [32, 64] */
  channels?: number[];
  /** Width of the dense layer after the convolutions. @default 128 */
  dense?: number;
  /** @default 10 */
  outputs?: number;
  /** @default "single" */
  head?: HeadKind;
  /** @default 0 */
  dropout?: number;
  seed?: number;
}

/** The keys of {@link CNNOptions}, for checking what users pass. */
const CNN_OPTIONS: OptionSpec<CNNOptions> = {
  input: "array",
  channels: "array",
  dense: "integer",
  outputs: "integer",
  head: HEAD_KINDS,
  dropout: "number",
  seed: "number",
};

/**
 * A small convolutional network: conv blocks, then a dense layer, then the head. Flat inputs
 * with height × width × channels values are reshaped to images.
 */
export function cnn(opts: CNNOptions = {}): Classifier {
  checkOptions("cnn", opts, CNN_OPTIONS);
  const {
    input = [28, 28, 1],
    channels = [32, 64],
    dense = 128,
    outputs = 10,
    head = "single",
    dropout = 0,
  } = opts;
  input.forEach((d, i) => positiveInt(`cnn input[${i}]`, d));
  channels.forEach((c, i) => positiveInt(`cnn channels[${i}]`, c));
  positiveInt("cnn dense", dense);
  const seed = drawSeed(opts.seed);
  const layers: Module[] = [new ToImage(input)];
  let [h, w, c] = input;
  channels.forEach((ch, i) => {
    layers.push(
      new Conv2d(c, ch, 3, { seed: seed + 1000 * i }),
      new Activation("relu"),
      new MaxPool2d(2),
    );
    c = ch;
    h = Math.floor(h / 2);
    w = Math.floor(w / 2);
    if (h < 1 || w < 1) {
      throw new RangeError(
        `cnn: ${channels.length} pooling blocks are too many for input [${input}]`,
      );
    }
  });
  layers.push(
    new Flatten(),
    new Linear(h * w * c, dense, { seed: seed + 50000 }),
    new Activation("relu"),
  );
  if (dropout > 0) layers.push(new Dropout(dropout, seed + 60000));
  return new Classifier(
    new Sequential(layers),
    makeHead(head, dense, outputs, seed + 99991),
    dense,
    input,
    () => cnn({ ...opts, seed }),
  );
}

/** Reshapes flat inputs to NHWC images. */
class ToImage extends Module {
  constructor(readonly shape: [number, number, number]) {
    super();
  }
  forward(x: tf.Tensor): tf.Tensor {
    const [h, w, c] = this.shape;
    if (x.size / x.shape[0] !== h * w * c) {
      throw new RangeError(
        `cnn expects inputs of ${h}×${w}×${c} = ${h * w * c} values, got shape [${x.shape}]`,
      );
    }
    return x.rank === 4 ? x : tf.reshape(x, [x.shape[0], h, w, c]);
  }
}
