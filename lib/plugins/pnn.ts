/**
 * The strategy of Progressive Neural Networks (Avalanche's `PNNStrategy`): fine-tuning of a
 * {@link PNN}, whose columns, lateral adapters and freezing are the model's own (see
 * `lib/models/pnn.ts`).
 *
 * @module
 */
import { PNN, PNN_OPTIONS, type PNNOptions } from "../models/pnn.ts";
import { Strategy, type StrategyOptions } from "../strategy/template.ts";
import { checkOptions } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";

/**
 * Options of {@link pnnStrategy}: the strategy's, with `model` a {@link PNN}, or instead the
 * PNN's own options to build one.
 */
export interface PNNStrategyOptions extends Omit<StrategyOptions, "model">, PNNOptions {
  /** The PNN to train (default: `pnn(...)` of the PNN options given here). */
  model?: PNN;
}

/**
 * Progressive Neural Networks as a strategy (Avalanche's `PNNStrategy`, checked against
 * `training/supervised/strategy_wrappers.py`, which requires a `PNN` model and otherwise trains
 * as Naive): each new task label adds a column to every layer at the model's adaptation, and
 * only the newest columns (and the heads) learn. Meant for task-incremental streams with one
 * task per experience. `seed` seeds the run and, when the PNN is built here, its initializers.
 *
 * @example
 * ```ts ignore
 * const bench = await splitMNIST({ returnTaskId: true, classIdsFromZeroInEachExp: true });
 * const strategy = pnnStrategy({ numLayers: 2, hiddenFeaturesPerColumn: 100, epochs: 1 });
 * for (const exp of bench.train) await strategy.train(exp);
 * console.log((await strategy.eval(bench.test)).meanAccuracy);
 * ```
 */
export function pnnStrategy(opts: PNNStrategyOptions = {}): Strategy {
  checkOptions("pnnStrategy", opts, { ...STRATEGY_OPTIONS, ...PNN_OPTIONS });
  const { numLayers, inFeatures, hiddenFeaturesPerColumn, adapter, seed, model, ...rest } = opts;
  const given = { numLayers, inFeatures, hiddenFeaturesPerColumn, adapter };
  if (model !== undefined) {
    if (!(model instanceof PNN)) {
      throw new TypeError(
        `pnnStrategy needs a PNN model (pnn({ ... })), got ${
          (model as object)?.constructor?.name ?? String(model)
        }`,
      );
    }
    const extra = Object.entries(given).filter(([, v]) => v !== undefined).map(([k]) => k);
    if (extra.length > 0) {
      throw new TypeError(
        `pnnStrategy: ${extra.join(", ")} describe the model to build, but a model was given: ` +
          `pass them to pnn({ ... }) instead`,
      );
    }
  }
  const net = model ?? new PNN({ ...given, seed });
  return new Strategy({ name: "PNNStrategy", ...rest, seed, model: net });
}
