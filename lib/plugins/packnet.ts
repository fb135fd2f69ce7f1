/**
 * PackNet (Mallya & Lazebnik, CVPR 2018), Avalanche's `PackNetPlugin`: task-incremental
 * parameter isolation by iterative pruning, on a {@link PackNetModel}.
 *
 * @module
 */
import { PackNetModel } from "../models/packnet.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { anyOf, checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";

/** The share of free weights to prune: one value, one per task, or a function of the task. */
export type PruneProportion = number | readonly number[] | ((task: number) => number);

/** Options of {@link PackNetPlugin}. */
export interface PackNetPluginOptions {
  /**
   * Epochs of fine-tuning after pruning, at the end of each experience (Avalanche's
   * `post_prune_epochs`); fewer than the strategy's epochs. 0 prunes at the end of the
   * experience with no fine-tuning.
   */
  postPruneEpochs: number;
  /** Share of the free weights pruned after each task (`prune_proportion`). @default 0.5 */
  pruneProportion?: PruneProportion;
}

/** The keys of {@link PackNetPluginOptions}, for checking what users pass. */
const PACKNET_PLUGIN_OPTIONS: OptionSpec<PackNetPluginOptions> = {
  postPruneEpochs: "integer",
  pruneProportion: anyOf("number", "array", "function"),
};

function checkProportion(p: unknown, where: string): number {
  if (typeof p !== "number" || !(p >= 0 && p <= 1)) {
    throw new RangeError(`PackNet pruneProportion${where} must be in [0, 1], got ${String(p)}`);
  }
  return p;
}

/**
 * Calls PackNet's pruning and freezing at the right times (Avalanche's `PackNetPlugin`, checked
 * against `models/packnet.py`):
 * - `beforeTrainingExp`: the optimizer is reset (momentum must not move pruned or frozen
 *   weights), and the experience's task label must be the model's next task;
 * - `beforeTrainingEpoch` of epoch `epochs − postPruneEpochs`: `model.prune(proportion(k))`, `k`
 *   the experience's index, so that the last `postPruneEpochs` epochs fine-tune the kept weights;
 * - `afterUpdate`: the frozen weights are put back exactly (a safeguard against weight decay);
 * - `afterTrainingExp`: `model.freezePruned()`.
 *
 * Differences: `postPruneEpochs` 0 is allowed (pruning at the end of the experience; Avalanche
 * then fails on freezing an unpruned model), and a task label other than the next task's is
 * refused with an error before training rather than in the middle of it.
 *
 * @example
 * ```ts ignore
 * const model = packNetModel({ hidden: [400], head: "multi" });
 * const strategy = naive({ model, epochs: 3, plugins: [new PackNetPlugin(1, 0.5)] });
 * ```
 */
export class PackNetPlugin extends StrategyPlugin {
  readonly postPruneEpochs: number;
  readonly pruneProportion: PruneProportion;
  readonly #proportion: (task: number) => number;

  /**
   * @param postPruneEpochs fine-tuning epochs after pruning (or the options object).
   * @param pruneProportion share of free weights pruned per task. @default 0.5
   */
  constructor(
    postPruneEpochs: number | PackNetPluginOptions,
    pruneProportion: PruneProportion = 0.5,
  ) {
    super();
    const o: PackNetPluginOptions = typeof postPruneEpochs === "object" && postPruneEpochs
      ? checkOptions("PackNetPlugin", postPruneEpochs, PACKNET_PLUGIN_OPTIONS)
      : { postPruneEpochs: postPruneEpochs as number, pruneProportion };
    if (!Number.isInteger(o.postPruneEpochs) || o.postPruneEpochs < 0) {
      throw new RangeError(
        `PackNet postPruneEpochs must be an integer ≥ 0, got ${String(o.postPruneEpochs)}`,
      );
    }
    this.postPruneEpochs = o.postPruneEpochs;
    const p = o.pruneProportion ?? 0.5;
    this.pruneProportion = p;
    if (typeof p === "number") {
      checkProportion(p, "");
      this.#proportion = () => p;
    } else if (Array.isArray(p)) {
      if (p.length === 0) throw new RangeError("PackNet pruneProportion is an empty array");
      p.forEach((x, i) => checkProportion(x, `[${i}]`));
      this.#proportion = (k) => p[Math.min(k, p.length - 1)];
    } else if (typeof p === "function") {
      this.#proportion = (k) => checkProportion(p(k), `(${k})`);
    } else {
      throw new TypeError(
        `PackNet pruneProportion must be a number, an array or a function, got ${String(p)}`,
      );
    }
  }

  /** The share pruned after the experience of index `k` (the last array value repeats). */
  proportionFor(k: number): number {
    return this.#proportion(k);
  }

  #model(ctx: StrategyContext): PackNetModel {
    if (!(ctx.model instanceof PackNetModel)) {
      throw new TypeError(
        `PackNetPlugin needs a PackNetModel, got ${ctx.model.constructor.name}: build it with ` +
          `packNetModel({ ... }) or new PackNetModel(mlp({ ... }))`,
      );
    }
    return ctx.model;
  }

  beforeTrainingExp(ctx: StrategyContext): void {
    const model = this.#model(ctx);
    if (this.postPruneEpochs >= ctx.epochs && this.postPruneEpochs > 0) {
      throw new RangeError(
        `PackNet postPruneEpochs (${this.postPruneEpochs}) must be less than the strategy's ` +
          `epochs (${ctx.epochs}): give epochs ≥ ${this.postPruneEpochs + 1}`,
      );
    }
    const exp = ctx.experience!;
    if (exp.taskLabels.length !== 1 || exp.taskLabels[0] !== model.taskCount) {
      throw new RangeError(
        `PackNet trains tasks in order 0, 1, 2, ... one per experience: experience ${exp.id} has ` +
          `task labels [${exp.taskLabels}] but the model's next task is ${model.taskCount} ` +
          `(use a task-incremental benchmark, e.g. splitMNIST({ returnTaskId: true }))`,
      );
    }
    ctx.optimizer.reset();
  }

  async beforeTrainingEpoch(ctx: StrategyContext): Promise<void> {
    const model = this.#model(ctx);
    if (this.postPruneEpochs > 0 && ctx.clock.epoch === ctx.epochs - this.postPruneEpochs) {
      if (!model.pruned) await this.#prune(model, ctx);
    }
  }

  afterUpdate(ctx: StrategyContext): void {
    this.#model(ctx).enforceFrozen();
  }

  async afterTrainingExp(ctx: StrategyContext): Promise<void> {
    const model = this.#model(ctx);
    if (!model.pruned) await this.#prune(model, ctx);
    model.freezePruned();
  }

  /**
   * `model.prune`, its weights first brought to the CPU asynchronously: the "webgpu" backend
   * has no synchronous read of GPU data, and a value read once stays readable.
   */
  async #prune(model: PackNetModel, ctx: StrategyContext): Promise<void> {
    await Promise.all([...model.namedParameters().values()].map((p) => p.data()));
    model.prune(this.proportionFor(ctx.clock.trainExperiences));
  }
}

/**
 * A {@link PackNetPlugin} from options.
 *
 * @example
 * ```ts
 * import { packNetPlugin } from "./packnet.ts";
 * const plugin = packNetPlugin({ postPruneEpochs: 1, pruneProportion: [0.8, 0.5] });
 * console.assert(plugin.proportionFor(0) === 0.8 && plugin.proportionFor(3) === 0.5);
 * ```
 */
export function packNetPlugin(opts: PackNetPluginOptions): PackNetPlugin {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("packNetPlugin expects an options object { postPruneEpochs, ... }");
  }
  return new PackNetPlugin(checkOptions("packNetPlugin", opts, PACKNET_PLUGIN_OPTIONS));
}

/** Options of {@link packNet}: the strategy's (the model a {@link PackNetModel}) and the plugin's. */
export interface PackNetOptions extends StrategyOptions, PackNetPluginOptions {}

/**
 * PackNet: fine-tuning of a {@link PackNetModel} with a {@link PackNetPlugin}, for
 * task-incremental streams.
 *
 * @example
 * ```ts ignore
 * const bench = await splitMNIST({ returnTaskId: true, classIdsFromZeroInEachExp: true });
 * const model = packNetModel({ hidden: [400], outputs: 2, head: "multi" });
 * const strategy = packNet({ model, epochs: 3, postPruneEpochs: 1, pruneProportion: 0.5 });
 * for (const exp of bench.train) await strategy.train(exp);
 * ```
 */
export function packNet(opts: PackNetOptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("packNet expects an options object { model, postPruneEpochs, ... }");
  }
  checkOptions("packNet", opts, { ...STRATEGY_OPTIONS, ...PACKNET_PLUGIN_OPTIONS });
  const { postPruneEpochs, pruneProportion, ...rest } = opts;
  if (!(rest.model instanceof PackNetModel)) {
    throw new TypeError(
      'packNet needs model: a PackNetModel (packNetModel({ hidden: [400], head: "multi" }))',
    );
  }
  return withPlugin("PackNet", new PackNetPlugin({ postPruneEpochs, pruneProportion }), rest);
}
