/**
 * The baseline strategies: Naive fine-tuning, Cumulative (retrain on everything seen so far) and
 * Joint training (one pass on the concatenation of the whole stream: the usual upper bound), and
 * {@link withPlugin}, which the methods' strategy builders (EWC, LwF, Replay, ...) share.
 *
 * @module
 */
import type { Experience } from "../data/experience.ts";
import { makeExperience } from "../data/experience.ts";
import { concatDatasets, type Dataset } from "../data/dataset.ts";
import type { StrategyContext } from "./context.ts";
import type { Plugin } from "./plugin.ts";
import { checkOptions } from "../options.ts";
import { STRATEGY_OPTIONS } from "./options.ts";
import { type RestoreOptions, Strategy, type StrategyOptions } from "./template.ts";

/**
 * Naive fine-tuning: trains on each experience in turn with no protection against forgetting.
 *
 * @example
 * ```ts ignore
 * const strategy = naive({ model: mlp({ hidden: [400, 400] }), epochs: 1, batchSize: 128 });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function naive(opts: StrategyOptions): Strategy {
  checkOptions("naive", opts, STRATEGY_OPTIONS);
  return new Strategy({ name: "Naive", ...opts });
}

/**
 * A fine-tuning strategy named `name` that runs `plugin` (the method) first, then the plugins of
 * `options.plugins` in their order: how every method's builder (`ewc`, `lwf`, `replay`, ...)
 * makes its strategy. A `name` in `options` wins over `name`.
 *
 * @param name the strategy's name (in results and checkpoints), e.g. "EWC".
 * @param plugin the method's plugin: `strategy.plugins[0]`.
 * @param options the strategy's options (model, optimizer, ..., and the user's plugins).
 *
 * @example
 * ```ts ignore
 * const strategy = withPlugin("MyMethod", new MyPlugin(), { model, plugins: [logger] });
 * // strategy.plugins: [the MyPlugin, logger]
 * ```
 */
export function withPlugin(name: string, plugin: Plugin, options: StrategyOptions): Strategy {
  if (!plugin || typeof plugin !== "object") {
    throw new TypeError(`withPlugin("${name}") needs the method's plugin, got ${String(plugin)}`);
  }
  checkOptions(`withPlugin("${name}")`, options, STRATEGY_OPTIONS);
  return new Strategy({ name, ...options, plugins: [plugin, ...(options.plugins ?? [])] });
}

/** Trains each experience on the union of it and every training experience seen before. */
export class CumulativeStrategy extends Strategy {
  #seen: Experience[] = [];

  protected override trainDatasetAdaptation(ctx: StrategyContext): void {
    const exp = ctx.experience!;
    if (!this.#seen.includes(exp)) this.#seen.push(exp);
    ctx.dataset = concatDatasets(this.#seen.map((e) => e.dataset));
  }

  /** The experiences accumulated so far. */
  get seen(): readonly Experience[] {
    return this.#seen;
  }

  protected override extraState(): Record<string, unknown> {
    return { seen: this.#seen.map((e) => ({ stream: e.stream, id: e.id })) };
  }

  protected override loadExtraState(extra: Record<string, unknown>, opts: RestoreOptions): void {
    const seen = (extra.seen as { stream: string; id: number }[] | undefined) ?? [];
    if (seen.length === 0) return;
    const available = [...(opts.experiences ?? [])];
    this.#seen = seen.map(({ stream, id }) => {
      const e = available.find((x) => x.stream === stream && x.id === id);
      if (!e) {
        throw new RangeError(
          `Cumulative checkpoint refers to experience ${id} of stream "${stream}": pass the training ` +
            `stream as restore(state, { experiences: bench.train })`,
        );
      }
      return e;
    });
  }
}

/** Cumulative training: each experience is trained together with all earlier ones. */
export function cumulative(opts: StrategyOptions): CumulativeStrategy {
  checkOptions("cumulative", opts, STRATEGY_OPTIONS);
  return new CumulativeStrategy({ name: "Cumulative", ...opts });
}

/**
 * Joint training: `train(stream)` trains once on all the stream's experiences merged into one
 * (the offline upper bound). Task labels and classes of every experience are kept.
 */
export class JointTrainingStrategy extends Strategy {
  protected override trainingExperiences(experiences: Experience[]): Experience[] {
    if (experiences.length === 1) return experiences;
    const data: Dataset = concatDatasets(experiences.map((e) => e.dataset));
    return [makeExperience(experiences[0].stream, 0, data, experiences[0].info)];
  }
}

/** Joint training on the whole stream at once. */
export function jointTraining(opts: StrategyOptions): JointTrainingStrategy {
  checkOptions("jointTraining", opts, STRATEGY_OPTIONS);
  return new JointTrainingStrategy({ name: "JointTraining", ...opts });
}
