/**
 * From-scratch training: Avalanche's `FromScratchTrainingPlugin`, the baseline that forgets on
 * purpose. The model's parameters go back to their initial values before every experience (and
 * the optimizer's state is dropped), so each experience is learned by a fresh model.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Module, TensorState } from "../nn/module.ts";
import { checkTensorState } from "../nn/module.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import { fitToShape } from "./ewc.ts";

/** Options of {@link FromScratchTrainingPlugin}. */
export interface FromScratchTrainingPluginOptions {
  /** Drop the optimizer's state (momentum, Adam moments) with the weights. @default true */
  resetOptimizer?: boolean;
}

/** The keys of {@link FromScratchTrainingPluginOptions}, for checking what users pass. */
const FROM_SCRATCH_PLUGIN_OPTIONS: OptionSpec<FromScratchTrainingPluginOptions> = {
  resetOptimizer: "boolean",
};

/** Plain-data state of {@link FromScratchTrainingPlugin}: the initial parameters (null before). */
export interface FromScratchTrainingState {
  initial: Record<string, TensorState> | null;
}

interface Initial {
  shape: number[];
  values: Float32Array;
}

/**
 * Resets the model to its initial parameters before each training experience (Avalanche's
 * `FromScratchTrainingPlugin(reset_optimizer=True)`).
 *
 * Checked against Avalanche's `training/plugins/from_scratch_training.py`: the initial values
 * are recorded in `beforeTraining` of the first `train` call; in `beforeTrainingExp` (after the
 * model's adaptation, as there) every parameter is set back to them, parameters that appeared
 * since (new heads) are recorded with the values they have now, and the optimizer is reset. The
 * initial values come from the model's seeded initializers, so a run is reproducible.
 *
 * One difference: a parameter that grew (an incremental head's output layer) is reset too, its
 * old units to their initial values and its new units to the values they were created with;
 * Avalanche skips parameters whose shape changed, so that they keep their trained values.
 *
 * @example
 * ```ts ignore
 * const strategy = naive({ model: mlp(), plugins: [new FromScratchTrainingPlugin()] });
 * ```
 */
export class FromScratchTrainingPlugin extends StrategyPlugin {
  readonly resetOptimizer: boolean;
  #initial: Map<string, Initial> | undefined;

  /** @param resetOptimizer drop the optimizer's state too (or the options object). */
  constructor(resetOptimizer: boolean | FromScratchTrainingPluginOptions = true) {
    super();
    const o = typeof resetOptimizer === "object" && resetOptimizer !== null
      ? checkOptions("FromScratchTrainingPlugin", resetOptimizer, FROM_SCRATCH_PLUGIN_OPTIONS)
      : { resetOptimizer };
    const r = o.resetOptimizer ?? true;
    if (typeof r !== "boolean") {
      throw new TypeError(
        `FromScratchTrainingPlugin resetOptimizer must be true or false, got ${String(r)}`,
      );
    }
    this.resetOptimizer = r;
  }

  /** The recorded initial parameters by name (undefined before the first training). */
  get initialParameters(): ReadonlyMap<string, Initial> | undefined {
    return this.#initial;
  }

  /** Records the model's initial parameters (first call only). */
  beforeTraining(ctx: StrategyContext): void {
    if (!this.#initial) this.#initial = record(ctx.model);
  }

  /** Puts the initial parameters back, records new ones, resets the optimizer. */
  beforeTrainingExp(ctx: StrategyContext): void {
    const init = this.#initial ??= record(ctx.model);
    for (const [name, p] of ctx.model.namedParameters()) {
      const s = init.get(name);
      if (s) {
        tf.tidy(() => {
          const t = tf.tensor(s.values, s.shape, "float32");
          p.assign(sameShape(s.shape, p.shape) ? t : fitToShape(t, p.shape, p));
        });
      }
      if (!s || !sameShape(s.shape, p.shape)) {
        init.set(name, { shape: [...p.shape], values: Float32Array.from(p.dataSync()) });
      }
    }
    if (this.resetOptimizer) ctx.optimizer.reset();
  }

  /** The initial parameters as plain data. */
  state(): FromScratchTrainingState {
    return {
      initial: this.#initial
        ? Object.fromEntries(
          [...this.#initial].map(([n, s]) => [n, { shape: s.shape, values: Array.from(s.values) }]),
        )
        : null,
    };
  }

  /** Restores what {@link FromScratchTrainingPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as FromScratchTrainingState;
    if (!s || typeof s !== "object" || !("initial" in s)) {
      throw new TypeError("Not a FromScratchTrainingPlugin state: expected { initial }");
    }
    if (s.initial === null) {
      this.#initial = undefined;
      return;
    }
    const init = new Map<string, Initial>();
    for (const [n, t] of Object.entries(s.initial)) {
      checkTensorState(`Initial parameter "${n}"`, t);
      init.set(n, { shape: [...t.shape], values: Float32Array.from(t.values) });
    }
    this.#initial = init;
  }

  /** Holds no tensors. */
  dispose(): void {}
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function record(model: Module): Map<string, Initial> {
  return new Map(
    [...model.namedParameters()].map((
      [n, p],
    ) => [n, { shape: [...p.shape], values: Float32Array.from(p.dataSync()) }]),
  );
}

/**
 * A {@link FromScratchTrainingPlugin} from options.
 *
 * @example
 * ```ts
 * import { fromScratchTrainingPlugin } from "./from_scratch_training.ts";
 * const plugin = fromScratchTrainingPlugin({ resetOptimizer: false });
 * console.assert(!plugin.resetOptimizer && plugin.initialParameters === undefined);
 * ```
 */
export function fromScratchTrainingPlugin(
  opts: FromScratchTrainingPluginOptions = {},
): FromScratchTrainingPlugin {
  return new FromScratchTrainingPlugin(
    checkOptions("fromScratchTrainingPlugin", opts, FROM_SCRATCH_PLUGIN_OPTIONS),
  );
}

/** Options of {@link fromScratchTraining}: the strategy's and the plugin's. */
export interface FromScratchTrainingOptions
  extends StrategyOptions, FromScratchTrainingPluginOptions {}

/**
 * Training from scratch on each experience (Avalanche's Naive with a
 * `FromScratchTrainingPlugin`): the lower bound of what a continual learner keeps.
 *
 * @example
 * ```ts ignore
 * const strategy = fromScratchTraining({ model: mlp({ hidden: [400] }), epochs: 1 });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function fromScratchTraining(opts: FromScratchTrainingOptions): Strategy {
  checkOptions("fromScratchTraining", opts, {
    ...STRATEGY_OPTIONS,
    ...FROM_SCRATCH_PLUGIN_OPTIONS,
  });
  const { resetOptimizer, ...rest } = opts;
  return withPlugin("FromScratchTraining", new FromScratchTrainingPlugin({ resetOptimizer }), rest);
}
