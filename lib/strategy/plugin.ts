/**
 * Plugins: objects with optional hooks named as Avalanche's callbacks (in camelCase), awaited in
 * the order the plugins are given.
 *
 * @module
 */
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
     * Declares that this plugin's hooks inside the tape are only `beforeBackward`, and that it
     * only adds loss terms there as `LossTerm`s (`ctx.addLoss(lossTerm({ value,
     * withGradient }))`), whose gradients are known without the tape. When every such plugin
     * declares it (and the model and criterion allow), the strategy trains without recording
     * the tape; `strategy.plan()` says which step runs and why. A function is asked at the start
     * of each epoch, for a plugin whose answer depends on the model.
     */
    tapeFree?: boolean | ((ctx: StrategyContext) => boolean);
  }
  & { [K in HookName]?: Hook };

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

/**
 * Avalanche 0.6's name of {@link StrategyPlugin} (`class MyPlugin extends SupervisedPlugin`):
 * the same class, so plugins written against either name are plugins of both.
 */
export { StrategyPlugin as SupervisedPlugin };
