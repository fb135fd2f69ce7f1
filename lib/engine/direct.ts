/**
 * A training step without tfjs' gradient tape, for the models whose backward is known in
 * advance: a {@link Classifier} made of {@link Linear} layers (relu fused or none), flattening
 * and inactive dropout, trained with cross-entropy. Recording the tape costs more than the
 * small kernels it records (clones of every saved tensor, a node per kernel, a scope per
 * gradient), so for such models the tape-free step (`step.ts`) runs this forward and backward.
 *
 * Every kernel is the one the tape path runs, on the same inputs, through the same functions
 * ({@link linearGrad}): losses, gradients and so whole runs are bit-identical.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { hasFusedKernel, LINEAR, linearGrad, SOFTMAX_CE } from "../backends/fused.ts";
import { Classifier } from "../models/mlp.ts";
import { Activation, Dropout, Flatten, Linear, Sequential } from "../nn/layers.ts";
import type { Module } from "../nn/module.ts";

/** One layer of the step: a linear layer and the activation fused into it. */
interface Stage {
  layer: Linear;
  activation: "linear" | "relu";
  /** Names of the layer's parameters in the model (`features.0.weight`, ...). */
  weightName: string;
  biasName: string;
}

/** What the forward kept for the backward: each stage's 2-D input and output. */
interface Trace {
  inputs: tf.Tensor2D[];
  outputs: tf.Tensor2D[];
}

/** The forward and backward of one model, planned by {@link planDirectStep}. */
export class DirectStep {
  readonly #stages: readonly Stage[];

  constructor(stages: readonly Stage[]) {
    this.#stages = stages;
  }

  /**
   * The model's output for `x` (the tensors `Classifier.forward` computes), with what the
   * backward needs. Call outside any gradient tape; the tensors belong to the caller's scope.
   */
  forward(x: tf.Tensor): { output: tf.Tensor; trace: Trace } {
    const trace: Trace = { inputs: [], outputs: [] };
    let h = x;
    for (const s of this.#stages) {
      const x2 = (h.rank === 2 ? h : tf.reshape(h, [h.shape[0], -1])) as tf.Tensor2D;
      h = s.layer.forwardActivated(x2, s.activation);
      trace.inputs.push(x2);
      trace.outputs.push(h as tf.Tensor2D);
    }
    return { output: h, trace };
  }

  /** The mean cross-entropy of `output` against int32 `labels`, and its gradient. */
  crossEntropy(output: tf.Tensor, labels: tf.Tensor): [tf.Scalar, tf.Tensor] {
    return tf.engine().runKernel(SOFTMAX_CE, { logits: output, labels }) as [tf.Scalar, tf.Tensor];
  }

  /**
   * The gradients of the parameters in `trainable` (by name) from the gradient of the loss with
   * respect to the output, as `tf.variableGrads` gives them for this model (same order).
   */
  backward(
    dOutput: tf.Tensor,
    trace: Trace,
    trainable: ReadonlyMap<string, tf.Variable>,
  ): Map<string, tf.Tensor> {
    const stages = this.#stages;
    const learns = stages.map((s) =>
      trainable.get(s.weightName) === s.layer.weight ||
      (s.layer.bias !== undefined && trainable.get(s.biasName) === s.layer.bias)
    );
    const grads = new Map<string, tf.Tensor>();
    let dy = dOutput;
    for (let i = stages.length - 1; i >= 0; i--) {
      const s = stages[i];
      const dz = linearGrad.preActivation(dy, trace.outputs[i], s.activation);
      // The tape's order per layer: input, weight, bias.
      const below = learns.slice(0, i).some(Boolean);
      const dx = below ? linearGrad.input(dz, s.layer.weight) : undefined;
      if (trainable.get(s.weightName) === s.layer.weight) {
        grads.set(s.weightName, linearGrad.weight(trace.inputs[i], dz));
      }
      if (s.layer.bias && trainable.get(s.biasName) === s.layer.bias) {
        grads.set(s.biasName, linearGrad.bias(dz));
      }
      if (!dx) break;
      dy = dx;
    }
    // variableGrads lists gradients in the order of the parameters it was given.
    const ordered = new Map<string, tf.Tensor>();
    for (const name of trainable.keys()) {
      const g = grads.get(name);
      if (g) ordered.set(name, g);
    }
    return ordered;
  }
}

/** True when `m` is an instance of `cls` itself, not of a subclass (which may change forward). */
function isExactly<T extends Module>(
  m: Module,
  cls: abstract new (...args: never[]) => T,
): m is T {
  return Object.getPrototypeOf(m) === cls.prototype;
}

/**
 * A {@link DirectStep} for `model`, or undefined when its forward is not one this module knows:
 * see {@link directStepFor} for the reason.
 */
export function planDirectStep(model: Module): DirectStep | undefined {
  const step = directStepFor(model);
  return typeof step === "string" ? undefined : step;
}

/** What the reasons say has a tape-free backward. */
const TAPE_FREE_LAYERS = "only Linear, a ReLU after it, Flatten and inactive Dropout have one";

/**
 * A {@link DirectStep} for `model`, or why there is none (another class or a subclass, other
 * layers, an active dropout, a task-routed head, a backend without the fused kernels): the
 * caller then records the tape as usual.
 */
export function directStepFor(model: Module): DirectStep | string {
  if (!hasFusedKernel(LINEAR) || !hasFusedKernel(SOFTMAX_CE)) {
    return `the "${tf.getBackend()}" backend has no fused linear and cross-entropy kernels`;
  }
  if (!isExactly(model, Classifier)) {
    return `the model is a ${model.constructor.name}, not a Classifier (a subclass may change forward)`;
  }
  const c = model as Classifier;
  if (!isExactly(c.features, Sequential)) {
    return `the model's features are a ${c.features.constructor.name}, not a Sequential of ` +
      `linear layers (${TAPE_FREE_LAYERS}; convolutions, batch norms and residual blocks train on ` +
      `the tape)`;
  }
  if (!isExactly(c.classifier, Linear)) {
    return `the model's head is a ${c.classifier.constructor.name}, not a Linear layer`;
  }
  const names = new Map<Module, string>();
  for (const [name, m] of model.namedModules()) names.set(m, name);
  const stages: Stage[] = [];
  const add = (layer: Linear, activation: "linear" | "relu") => {
    const name = names.get(layer);
    if (name === undefined) return false;
    stages.push({ layer, activation, weightName: `${name}.weight`, biasName: `${name}.bias` });
    return true;
  };
  const layers = (c.features as Sequential).layers;
  for (let i = 0; i < layers.length; i++) {
    const l = layers[i], next = layers[i + 1];
    if (isExactly(l, Linear)) {
      // Sequential fuses a relu that follows a linear layer.
      const relu = next !== undefined && isExactly(next, Activation) && next.kind === "relu";
      if (!add(l as Linear, relu ? "relu" : "linear")) {
        return `layer ${i} is not named in the model`;
      }
      if (relu) i++;
    } else if (isExactly(l, Activation) && l.kind === "linear") {
      continue;
    } else if (isExactly(l, Flatten)) {
      // Linear layers flatten their input themselves, into the same [n, features] shape.
      continue;
    } else if (isExactly(l, Dropout) && (!l.training || l.rate === 0)) {
      continue;
    } else {
      const what = isExactly(l, Activation) ? `a ${l.kind} activation` : `a ${l.constructor.name}`;
      return `features layer ${i} is ${what}, which has no tape-free backward (${TAPE_FREE_LAYERS})`;
    }
  }
  if (!add(c.classifier as Linear, "linear")) return "the head is not named in the model";
  return new DirectStep(stages);
}
