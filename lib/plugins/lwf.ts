/**
 * Learning without Forgetting (Li and Hoiem, "Learning without Forgetting", ECCV 2016 / TPAMI
 * 2017), as Avalanche's `LwFPlugin` (`LearningWithoutForgetting` regularizer): a frozen copy of
 * the model taken after each experience is the teacher of a distillation term that keeps the
 * outputs of previously seen classes close to what they were.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { Classifier } from "../models/mlp.ts";
import { MultiHeadClassifier } from "../models/heads.ts";
import { distillationLoss, distillationWithGradient } from "../nn/losses.ts";
import { isCloneable, type Module, type ModuleState } from "../nn/module.ts";
import { lossTerm } from "../nn/terms.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { anyOf, checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";

// -------------------------------------------------------------------------------- plugin ----

/** Options of {@link LwFPlugin}. */
export interface LwFPluginOptions {
  /**
   * Weight of the distillation term; an array gives one per training experience (indexed by
   * the number of experiences the plugin has completed; too short an array is an error).
   * @default 1
   */
  alpha?: number | readonly number[];
  /** Softmax temperature of the distillation. @default 2 */
  temperature?: number;
}

/** The keys of {@link LwFPluginOptions}, for checking what users pass. */
const LWF_PLUGIN_OPTIONS: OptionSpec<LwFPluginOptions> = {
  alpha: anyOf("number", "array"),
  temperature: "number",
};

/** Plain-data state of {@link LwFPlugin}. */
export interface LwFPluginState {
  version: 1;
  experiences: number;
  previousClasses: [number, number[]][];
  previousModel: ModuleState | null;
}

function checkAlpha(v: unknown): number | number[] {
  const ok = (x: unknown) => typeof x === "number" && Number.isFinite(x) && x >= 0;
  if (Array.isArray(v)) {
    if (v.length === 0) {
      throw new RangeError("LwF alpha is an empty array: give one per experience");
    }
    v.forEach((x, i) => {
      if (!ok(x)) throw new RangeError(`LwF alpha[${i}] must be a finite number ≥ 0, got ${x}`);
    });
    return [...v];
  }
  if (!ok(v)) {
    throw new RangeError(
      `LwF alpha must be a finite number ≥ 0 or an array of them, got ${String(v)}`,
    );
  }
  return v as number;
}

/** The multi-head classifier of a model, if it has one. */
function multiHeadOf(model: Module): MultiHeadClassifier | undefined {
  for (const m of model.namedModules().values()) if (m instanceof MultiHeadClassifier) return m;
  return undefined;
}

function freeze(model: Module): void {
  for (const v of model.namedParameters().values()) (v as { trainable: boolean }).trainable = false;
  model.eval();
}

/**
 * Learning without Forgetting (Li and Hoiem 2016), Avalanche's `LwFPlugin`.
 *
 * - `afterTrainingExp`: keeps a frozen copy of the model (`model.clone()`; its parameters are
 *   non-trainable variables, so no gradient reaches them, and it runs in eval mode: Avalanche
 *   deep-copies the model in whatever mode it is, `torch_ref.py` uses eval mode; they differ
 *   with dropout, and with batch norm, whose teacher here normalizes by its frozen running
 *   statistics where Avalanche's would use each minibatch's and move its own) and adds the
 *   experience's classes to the classes seen for each task label.
 * - `beforeBackward`, from the second experience on: adds the term `"lwf"`,
 *   `alpha_k · Σ_tasks KL(softmax(prev/T) ‖ softmax(cur/T))` restricted to the previously seen
 *   classes ({@link distillationLoss}), `k` the index of the experience being trained.
 *   - Single-head models: one term on `ctx.output` over the classes seen in any task (Avalanche
 *     keys classes by task label and distills only task 0's for such models; they agree in
 *     class-incremental benchmarks, whose task labels are all 0).
 *   - Multi-head models (with a {@link MultiHeadClassifier}): as Avalanche, every previously seen
 *     task's head is distilled on every sample of the minibatch, each over the classes seen for
 *     that task; the terms are summed. For `Classifier` models the current model's features are
 *     computed once more and fed to the heads; for other modules the model runs once per task.
 *
 * The teacher's forward pass runs inside the gradient tape (the term is built in the synchronous
 * `beforeBackward`).
 *
 * @example
 * ```ts ignore
 * import { LwFPlugin, mlp, naive } from "../../mod.ts";
 * const strategy = naive({ model: mlp(), plugins: [new LwFPlugin(1, 2)] });
 * ```
 */
export class LwFPlugin extends StrategyPlugin {
  /** Distillation weight, or one per experience. */
  readonly alpha: number | readonly number[];
  readonly temperature: number;
  #prev: Module | undefined;
  #prevClasses = new Map<number, Set<number>>();
  #experiences = 0;

  /**
   * @param alpha weight (default 1) or one per experience; or all options as an object.
   * @param temperature softmax temperature (default 2).
   */
  constructor(alpha: number | readonly number[] | LwFPluginOptions = 1, temperature?: number) {
    super();
    const o: LwFPluginOptions = typeof alpha === "object" && alpha !== null && !Array.isArray(alpha)
      ? checkOptions("LwFPlugin", alpha as LwFPluginOptions, LWF_PLUGIN_OPTIONS)
      : { alpha: alpha as number | number[], temperature };
    this.alpha = checkAlpha(o.alpha ?? 1);
    this.temperature = o.temperature ?? 2;
    if (
      typeof this.temperature !== "number" || !Number.isFinite(this.temperature) ||
      this.temperature <= 0
    ) {
      throw new RangeError(
        `LwF temperature must be a finite number > 0, got ${String(o.temperature)}`,
      );
    }
  }

  /** Number of experiences after which a teacher was saved. */
  get experiences(): number {
    return this.#experiences;
  }

  /** The frozen copy of the model after the last training experience (owned by the plugin). */
  get previousModel(): Module | undefined {
    return this.#prev;
  }

  /** Classes seen so far, by task label. */
  get previousClasses(): ReadonlyMap<number, ReadonlySet<number>> {
    return this.#prevClasses;
  }

  /** The alpha for the training experience with index `k`. */
  alphaFor(k: number): number {
    if (typeof this.alpha === "number") return this.alpha;
    if (k >= this.alpha.length) {
      throw new RangeError(
        `LwF alpha has ${this.alpha.length} values but experience ${k} (0-based) is being ` +
          `trained: give one alpha per training experience`,
      );
    }
    return this.alpha[k];
  }

  /**
   * The unweighted distillation term for a minibatch (`output`: the current model's logits for
   * `x`), or undefined before the first teacher exists. Differentiable.
   */
  distillation(
    model: Module,
    x: tf.Tensor,
    output: tf.Tensor,
    taskLabelsArray: Int32Array,
  ): tf.Scalar | undefined {
    const prev = this.#prev;
    if (!prev || this.#prevClasses.size === 0) return undefined;
    const T = this.temperature;
    const taskLabels = tf.tensor1d(taskLabelsArray, "int32");
    const heads = multiHeadOf(model);
    const terms: tf.Scalar[] = [];
    if (!heads) {
      const { prevOut, units } = this.#teacherOutput(prev, x, taskLabels, taskLabelsArray);
      terms.push(distillationLoss(output, prevOut, units, T));
    } else if (
      model instanceof Classifier && model.classifier === heads && prev instanceof Classifier &&
      prev.classifier instanceof MultiHeadClassifier
    ) {
      const prevHeads = prev.classifier;
      const feats = model.embed(x, { taskLabels, taskLabelsArray });
      const prevFeats = prev.embed(x, { taskLabels, taskLabelsArray });
      for (const [t, classes] of this.#prevClasses) {
        const cur = heads.heads.get(t);
        const old = prevHeads.heads.get(t);
        if (!cur || !old) continue;
        terms.push(distillationLoss(cur.forward(feats), old.forward(prevFeats), [...classes], T));
      }
    } else {
      const n = x.shape[0];
      for (const [t, classes] of this.#prevClasses) {
        const arr = new Int32Array(n).fill(t);
        const opts = { taskLabels: tf.tensor1d(arr, "int32"), taskLabelsArray: arr };
        terms.push(
          distillationLoss(model.forward(x, opts), prev.forward(x, opts), [...classes], T),
        );
      }
    }
    if (terms.length === 0) return undefined;
    return (terms.length === 1 ? terms[0] : tf.addN(terms)) as tf.Scalar;
  }

  /** A single-head teacher's output for `x`, and every class it was trained on (its units). */
  #teacherOutput(
    prev: Module,
    x: tf.Tensor,
    taskLabels: tf.Tensor1D,
    taskLabelsArray: Int32Array,
  ): { prevOut: tf.Tensor; units: number[] } {
    const units = new Set<number>();
    for (const cs of this.#prevClasses.values()) for (const c of cs) units.add(c);
    return { prevOut: prev.forward(x, { taskLabels, taskLabelsArray }), units: [...units] };
  }

  /** Checks that an alpha exists for the experience about to be trained. */
  beforeTrainingExp(): void {
    this.alphaFor(this.#experiences);
  }

  /**
   * Tape-free with single-head models: the term's gradient with respect to the output is
   * known. Multi-head models distill head by head through the features, on the tape.
   */
  tapeFree(ctx: StrategyContext): boolean {
    return !multiHeadOf(ctx.model);
  }

  /**
   * Adds `alpha_k ·` {@link LwFPlugin.distillation} as the loss term `"lwf"`: differentiated by
   * the tape, or with its output gradient (single heads) on the tape-free step.
   */
  beforeBackward(ctx: StrategyContext): void {
    const batch = ctx.batch, output = ctx.output, prev = this.#prev;
    if (!prev || !batch || !output || this.#prevClasses.size === 0) return;
    const alpha = this.alphaFor(this.#experiences);
    if (alpha === 0) return;
    const model = ctx.model, tasks = batch.data.t;
    ctx.addLoss(
      lossTerm({
        value: () => tf.mul(this.distillation(model, batch.x, output, tasks)!, alpha) as tf.Scalar,
        withGradient: () => {
          const taskLabels = tf.tensor1d(tasks, "int32");
          const { prevOut, units } = this.#teacherOutput(prev, batch.x, taskLabels, tasks);
          const d = distillationWithGradient(output, prevOut, units, this.temperature);
          // The tape multiplies the gradient by alpha unless alpha is 1 (PerennialScaleGrad).
          return {
            value: tf.mul(d.value, alpha) as tf.Scalar,
            outputGrad: alpha === 1 ? d.outputGrad : tf.mul(d.outputGrad, alpha),
          };
        },
      }),
      "lwf",
    );
  }

  /** Saves the frozen teacher and the classes of the experience. */
  afterTrainingExp(ctx: StrategyContext): void {
    const model = ctx.model;
    if (!isCloneable(model)) {
      throw new TypeError(
        "LwF keeps a copy of the model: give it a clone() method (models from mlp, cnn and " +
          "multiHeadMLP have one)",
      );
    }
    const copy = model.clone();
    freeze(copy);
    this.#prev?.dispose();
    this.#prev = copy;
    const data = ctx.experience!.dataset;
    for (let i = 0; i < data.length; i++) {
      const t = data.taskLabels[i];
      let set = this.#prevClasses.get(t);
      if (!set) this.#prevClasses.set(t, set = new Set());
      set.add(data.targets[i]);
    }
    this.#experiences++;
  }

  /** Plain-data state for checkpoints (the teacher as a state dict). */
  state(): LwFPluginState {
    return {
      version: 1,
      experiences: this.#experiences,
      previousClasses: [...this.#prevClasses].map(([t, cs]) => [t, [...cs].sort((a, b) => a - b)]),
      previousModel: this.#prev ? this.#prev.stateDict() : null,
    };
  }

  /** Restores what {@link LwFPlugin.state} returned; the teacher is rebuilt from `ctx.model`. */
  loadState(state: unknown, ctx: StrategyContext): void {
    const s = state as LwFPluginState;
    if (!s || s.version !== 1 || !Array.isArray(s.previousClasses)) {
      throw new TypeError(`Not an LwFPlugin state (version ${String(s?.version)})`);
    }
    let prev: Module | undefined;
    if (s.previousModel) {
      const model = ctx.model;
      const rebuild = (model as { rebuild?: () => Module }).rebuild;
      if (typeof rebuild === "function") prev = rebuild.call(model);
      else if (isCloneable(model)) prev = model.clone();
      else {
        throw new TypeError(
          "LwF needs a model with clone() (or a Classifier) to rebuild its teacher from a checkpoint",
        );
      }
      try {
        prev.loadStateDict(s.previousModel);
      } catch (e) {
        prev.dispose();
        throw e;
      }
      freeze(prev);
    }
    this.dispose();
    this.#prev = prev;
    this.#prevClasses = new Map(s.previousClasses.map(([t, cs]) => [t, new Set(cs)]));
    this.#experiences = Number(s.experiences) || 0;
  }

  /** Frees the teacher and forgets the seen classes. */
  dispose(): void {
    this.#prev?.dispose();
    this.#prev = undefined;
    this.#prevClasses.clear();
    this.#experiences = 0;
  }
}

/**
 * A {@link LwFPlugin} (alpha 1, temperature 2 unless given).
 *
 * @example
 * ```ts
 * import { lwfPlugin } from "./lwf.ts";
 * const plugin = lwfPlugin({ alpha: [0, 0.5, 1.33, 2.25, 3.2], temperature: 2 });
 * console.assert(plugin.alphaFor(2) === 1.33);
 * ```
 */
export function lwfPlugin(opts: LwFPluginOptions = {}): LwFPlugin {
  return new LwFPlugin(checkOptions("lwfPlugin", opts, LWF_PLUGIN_OPTIONS));
}

/** Options of {@link lwf}: the strategy's options plus LwF's. */
export interface LwFOptions extends StrategyOptions, LwFPluginOptions {}

/**
 * A strategy that fine-tunes with a {@link LwFPlugin} (run first among its plugins).
 *
 * @example LwF on Split MNIST
 * ```ts ignore
 * import { lwf, mlp, splitMNIST } from "../../mod.ts";
 * const bench = await splitMNIST({ experiences: 5 });
 * const strategy = lwf({ model: mlp(), alpha: 1, temperature: 2 });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function lwf(opts: LwFOptions): Strategy {
  checkOptions("lwf", opts, { ...STRATEGY_OPTIONS, ...LWF_PLUGIN_OPTIONS });
  const { alpha, temperature, ...rest } = opts;
  const plugin = lwfPlugin({ alpha, temperature });
  return withPlugin("LwF", plugin, rest);
}
