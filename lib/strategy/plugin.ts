/**
 * Plugins: objects with optional hooks named as Avalanche's callbacks (in camelCase), awaited in
 * the order the plugins are given.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { StrategyContext } from "./context.ts";

/** Hook names in the order of a training run (Avalanche's `SupervisedPlugin`). */
export const TRAIN_HOOKS = [
  "beforeTraining",
  "beforeTrainDatasetAdaptation",
  "afterTrainDatasetAdaptation",
  "beforeTrainingExp",
  "beforeTrainingEpoch",
  "beforeTrainingIteration",
  "beforeForward",
  "afterForward",
  "beforeBackward",
  "afterBackward",
  "beforeUpdate",
  "afterUpdate",
  "afterTrainingIteration",
  "afterTrainingEpoch",
  "afterTrainingExp",
  "afterTraining",
] as const;

/** Hook names of an evaluation run. */
export const EVAL_HOOKS = [
  "beforeEval",
  "beforeEvalDatasetAdaptation",
  "afterEvalDatasetAdaptation",
  "beforeEvalExp",
  "beforeEvalIteration",
  "beforeEvalForward",
  "afterEvalForward",
  "afterEvalIteration",
  "afterEvalExp",
  "afterEval",
] as const;

/** Every hook name. */
export type HookName = typeof TRAIN_HOOKS[number] | typeof EVAL_HOOKS[number];

/**
 * Hooks that run inside the gradient tape: they must be synchronous, and any tensor they add to
 * the loss (`ctx.addLoss`) is differentiated.
 */
export const SYNC_HOOKS: ReadonlySet<HookName> = new Set([
  "beforeForward",
  "afterForward",
  "beforeBackward",
]);

/** A hook: receives the run's context; may be async unless it is one of {@link SYNC_HOOKS}. */
export type Hook = (ctx: StrategyContext) => void | Promise<void>;

/**
 * A plugin. Every hook is optional. `state`/`loadState` make the plugin part of checkpoints.
 *
 * @example A plugin that counts training iterations
 * ```ts
 * import type { Plugin } from "./plugin.ts";
 * let n = 0;
 * const counter: Plugin = { name: "counter", afterTrainingIteration: () => { n++; } };
 * ```
 */
export type Plugin =
  & {
    /** Shown in errors and used as the key of its state in checkpoints. */
    name?: string;
    /** Plain-data state for checkpoints. */
    state?(): unknown;
    /** Restores what {@link Plugin.state} returned. */
    loadState?(state: unknown, ctx: StrategyContext): void | Promise<void>;
    /** Frees the plugin's tensors; called by `strategy.dispose()`. Must be safe to call twice. */
    dispose?(): void;
    /**
     * The tape-free form of `beforeBackward`, for a plugin whose only work inside the tape is
     * adding loss terms that reach the parameters through the model's output (LwF's
     * distillation): each term's value and its gradient with respect to `ctx.output`, or
     * undefined when it cannot give them this time (the iteration then runs on the tape). When
     * every plugin with hooks inside the tape has `beforeBackward` as its only such hook and
     * this method, the strategy trains without recording the tape (`lib/nn/direct.ts`) and
     * calls this where `beforeBackward` would run; otherwise it is never called.
     */
    outputLossTerms?(ctx: StrategyContext): OutputLossTerm[] | undefined;
  }
  & { [K in HookName]?: Hook };

/** A loss term and its gradient with respect to the model's output (see `outputLossTerms`). */
export interface OutputLossTerm {
  /** Its name in `ctx.lossTerms`. */
  name: string;
  /** The term (a scalar), added to `ctx.loss`. */
  value: tf.Scalar;
  /** `∂ value / ∂ ctx.output`, of the output's shape. */
  outputGrad: tf.Tensor;
}

/**
 * Base class for plugins written the Avalanche way (`class MyPlugin extends StrategyPlugin`).
 * It defines no hooks: override the ones you need (camelCase names, e.g. `beforeBackward`).
 */
export abstract class StrategyPlugin implements Plugin {
  /** Name used in errors and checkpoints (default: the class name). */
  get name(): string {
    return this.constructor.name;
  }
}
