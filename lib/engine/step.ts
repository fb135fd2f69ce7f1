/**
 * The training step: forward, loss and gradients of one minibatch, by one of two
 * implementations behind one interface.
 *
 * - {@link TapeStep} records tfjs' gradient tape around the differentiable region the strategy
 *   gives it (the hooks inside the tape, the forward, the criterion): anything differentiable
 *   works.
 * - {@link TapeFreeStep} runs a known model's forward and backward without recording the tape
 *   (`direct.ts`), with the same kernels, so results are bit-identical; loss terms that plugins
 *   add must then be {@link LossTerm}s, which give their own gradients.
 *
 * {@link planStep} chooses from what the model, the criterion and the plugins declare, and says
 * why, so that a plugin author can see which step runs (`strategy.plan()`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Module } from "../nn/module.ts";
import { type Criterion, crossEntropy } from "../nn/losses.ts";
import { isLossTerm, type LossTerm } from "../nn/terms.ts";
import type { TensorBatch } from "./batches.ts";
import { type DirectStep, directStepFor } from "./direct.ts";
import { compositeKernels } from "../backends/fused.ts";

/** What a step reads and writes: the part of the hooks' context (`StrategyContext`) it fills in. */
export interface StepState {
  /** The current minibatch (set before `beforeTrainingIteration`; may be replaced there). */
  batch: TensorBatch | undefined;
  /** Model output (logits) for the minibatch, set by the forward pass; `afterForward` may replace it. */
  output: tf.Tensor | undefined;
  /** The loss: the criterion's value, plus terms added with `ctx.addLoss`. */
  loss: tf.Scalar | undefined;
  /** Terms added to the loss in this iteration, by name. */
  lossTerms: Map<string, tf.Scalar>;
  /** Parameters that get gradients in this iteration (plugins may remove some: freezing). */
  params: Map<string, tf.Variable>;
  /** Gradients by parameter name, set after backward; `afterBackward` may replace them. */
  grads: Map<string, tf.Tensor> | undefined;
}

/** Keeps a tensor alive until the end of the iteration (past the tape, which frees the rest). */
export type Keep = <T extends tf.Tensor | undefined>(t: T) => T;

/** The strategy's side of a step. */
export interface DifferentiableRegion {
  /**
   * beforeForward → forward → afterForward → criterion → beforeBackward, setting the state's
   * output and loss and returning the loss: what the tape step differentiates.
   */
  forwardAndLoss(keep: Keep): tf.Scalar;
  /** The beforeBackward hooks alone, once output and loss are set (tape-free step). */
  beforeBackward(): void;
}

/** Which step runs, and why. */
export interface StepPlan {
  readonly step: "tape" | "tape-free";
  /** One sentence per reason. */
  readonly reasons: readonly string[];
  /** The backend the plan was made for (`tf.getBackend()`). */
  readonly backend: string;
  /**
   * The fused kernels (`lib/backends/fused.ts`) this backend lacks, each as
   * `"<kernel> → <composite form>"`: the layers and losses that would call them compute the
   * composite form instead (e.g. every one of them on "webgpu" and tfjs-node).
   */
  readonly composite: readonly string[];
}

/** One implementation of the training step. */
export interface Step {
  readonly plan: StepPlan;
  /** Sets `state.output`, `state.loss`, `state.lossTerms` and `state.grads` for `state.batch`. */
  run(state: StepState, region: DifferentiableRegion, keep: Keep): void;
  /** Adds a loss term the way this step differentiates it (`ctx.addLoss`). */
  addTerm(state: StepState, term: tf.Scalar | LossTerm, name: string, keep: Keep): void;
}

/** Throws when a label is outside the model's outputs. */
export function checkLabels(batch: TensorBatch, output: tf.Tensor): void {
  const width = output.shape[output.rank - 1]!;
  const y = batch.data.y;
  for (let i = 0; i < batch.n; i++) {
    if (y[i] < 0 || y[i] >= width) {
      throw new RangeError(
        `Label ${y[i]} is out of range for a model with ${width} outputs: build the model with ` +
          `at least ${y[i] + 1} outputs, or with head: "incremental" so that it grows`,
      );
    }
  }
}

function addToLoss(state: StepState, value: tf.Scalar, name: string): void {
  if (!state.loss) {
    throw new Error("addLoss can only be called once the loss exists (in beforeBackward)");
  }
  if (value.rank !== 0) {
    throw new RangeError(`addLoss needs a scalar, got shape [${value.shape}] for "${name}"`);
  }
  state.loss = tf.add(state.loss, value) as tf.Scalar;
  state.lossTerms.set(name, value);
}

/** Forward, loss and gradients under tfjs' tape. */
export class TapeStep implements Step {
  constructor(readonly plan: StepPlan) {}

  run(state: StepState, region: DifferentiableRegion, keep: Keep): void {
    const vars = [...state.params.values()];
    const byEngineName = new Map([...state.params].map(([k, v]) => [v.name, k]));
    const { value, grads } = tf.variableGrads(() => region.forwardAndLoss(keep), vars);
    state.loss = value;
    state.grads = new Map(
      Object.entries(grads).map(([k, g]) => [byEngineName.get(k) ?? k, g]),
    );
  }

  addTerm(state: StepState, term: tf.Scalar | LossTerm, name: string, keep: Keep): void {
    addToLoss(state, keep(isLossTerm(term) ? term.value() : term), name);
  }
}

/** Forward, loss and gradients without the tape, for the models {@link directStepFor} knows. */
export class TapeFreeStep implements Step {
  readonly #direct: DirectStep;
  /** Gradients of the terms added in the current iteration, in the order they were added. */
  #termGrads: { name: string; output?: tf.Tensor; params?: ReadonlyMap<string, tf.Tensor> }[] = [];

  constructor(direct: DirectStep, readonly plan: StepPlan) {
    this.#direct = direct;
  }

  run(state: StepState, region: DifferentiableRegion, keep: Keep): void {
    const direct = this.#direct, batch = state.batch!;
    tf.tidy(() => {
      const { output, trace } = direct.forward(batch.x);
      state.output = keep(output);
      checkLabels(batch, output);
      const [loss, dLogits] = direct.crossEntropy(output, batch.y);
      state.loss = loss;
      this.#termGrads = [];
      region.beforeBackward();
      keep(state.loss);
      // Summed as the tape's backward does: the last term's gradient first, the criterion's last.
      const terms = this.#termGrads;
      let dOutput = dLogits;
      let acc: tf.Tensor | undefined;
      for (let k = terms.length - 1; k >= 0; k--) {
        const g = terms[k].output;
        if (g) acc = acc ? tf.add(acc, g) : g;
      }
      if (acc) dOutput = tf.add(acc, dLogits);
      const grads = direct.backward(dOutput, trace, state.params);
      for (const [name, g] of grads) {
        let extra: tf.Tensor | undefined;
        for (let k = terms.length - 1; k >= 0; k--) {
          const pg = terms[k].params?.get(name);
          if (pg) extra = extra ? tf.add(extra, pg) : pg;
        }
        grads.set(name, keep(extra ? tf.add(extra, g) : g));
      }
      state.grads = grads;
      this.#termGrads = [];
    });
  }

  addTerm(state: StepState, term: tf.Scalar | LossTerm, name: string, keep: Keep): void {
    if (!isLossTerm(term)) {
      throw new TypeError(
        `The loss term "${name}" is a plain tensor, but the plugin that added it declares ` +
          `tapeFree, so no tape records it: add it as a LossTerm (lossTerm({ value, withGradient ` +
          `}) from lib/nn/terms.ts), or drop tapeFree from the plugin`,
      );
    }
    const { value, outputGrad, paramGrads } = term.withGradient();
    const output = state.output!;
    if (outputGrad && outputGrad.shape.join() !== output.shape.join()) {
      throw new RangeError(
        `The loss term "${name}" has an output gradient of shape [${outputGrad.shape}] for an ` +
          `output of shape [${output.shape}]`,
      );
    }
    if (paramGrads) {
      for (const [p, g] of paramGrads) {
        const v = state.params.get(p);
        if (v && g.shape.join() !== v.shape.join()) {
          throw new RangeError(
            `The loss term "${name}" has a gradient of shape [${g.shape}] for parameter "${p}" ` +
              `of shape [${v.shape}]`,
          );
        }
      }
    }
    addToLoss(state, keep(value), name);
    this.#termGrads.push({ name, output: outputGrad, params: paramGrads });
  }
}

/** What {@link planStep} needs to know of a plugin. */
export interface PluginDeclaration {
  /** Shown in the reasons. */
  name: string;
  /** Its hooks that run inside the tape (beforeForward, afterForward, beforeBackward). */
  inTape: readonly string[];
  /** Whether it declares that its hooks inside the tape only add {@link LossTerm}s. */
  tapeFree: boolean;
}

/**
 * The step for `model` trained with `criterion` under plugins declaring `plugins`: tape-free
 * when the model is one {@link directStepFor} knows, the criterion is {@link crossEntropy} and
 * every plugin with hooks inside the tape has only `beforeBackward` there and declares
 * `tapeFree`; the tape otherwise. The plan's reasons say which of these failed.
 */
export function planStep(
  model: Module,
  criterion: Criterion,
  plugins: readonly PluginDeclaration[],
): Step {
  const reasons: string[] = [];
  if (criterion !== crossEntropy) reasons.push("the criterion is not crossEntropy");
  for (const p of plugins) {
    const other = p.inTape.filter((h) => h !== "beforeBackward");
    if (other.length > 0) {
      reasons.push(`plugin ${p.name} runs ${other.join(" and ")} inside the tape`);
    } else if (p.inTape.length > 0 && !p.tapeFree) {
      reasons.push(
        `plugin ${p.name}'s beforeBackward may add any differentiable term (it does not declare ` +
          `tapeFree)`,
      );
    }
  }
  const direct = directStepFor(model);
  if (typeof direct === "string") reasons.push(direct);
  const backend = tf.getBackend(), composite = compositeKernels();
  if (reasons.length > 0 || typeof direct === "string") {
    return new TapeStep({ step: "tape", reasons, backend, composite });
  }
  const adding = plugins.filter((p) => p.inTape.length > 0).map((p) => p.name);
  return new TapeFreeStep(direct, {
    step: "tape-free",
    backend,
    composite,
    reasons: [
      "the model is a classifier of linear layers trained with crossEntropy",
      adding.length === 0
        ? "no plugin hooks into the tape"
        : `plugin${adding.length > 1 ? "s" : ""} ${adding.join(", ")} add only loss terms ` +
          `with known gradients`,
    ],
  });
}
