/**
 * Early stopping on a validation stream (Avalanche's `EarlyStoppingPlugin`): training of an
 * experience stops once a metric of the periodic evaluation has not improved for `patience`
 * epochs (or iterations), and the best weights come back at the experience's end.
 *
 * @module
 */
import type { MetricRow } from "../data/rows.ts";
import type { ModuleState } from "../nn/module.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";

/** Options of {@link EarlyStoppingPlugin} and {@link earlyStopping}. */
export interface EarlyStoppingOptions {
  /** Epochs (or iterations, see `pevalMode`) without improvement before training stops. */
  patience: number;
  /** The stream whose stream-level rows are watched. @default "valid" */
  valStream?: string;
  /**
   * The metric watched, as the rows name it (`"accuracy"`, `"loss"`, or a metric of the
   * evaluator that shares its rows); Avalanche's `"Top1_Acc_Stream"` and `"Loss_Stream"` are
   * read as `"accuracy"` and `"loss"`. @default "accuracy"
   */
  metric?: string;
  /** `"max"`: higher is better; `"min"`: lower is better. @default "max" */
  mode?: "max" | "min";
  /**
   * Whether `patience` counts epochs (checked before each epoch) or iterations of the
   * experience (checked before each iteration); match the strategy's `pevalMode`.
   * @default "epoch"
   */
  pevalMode?: "epoch" | "iteration";
  /** Least improvement that resets the patience. @default 0 */
  margin?: number;
  /** Load the best weights seen when the experience ends (stopped or not). @default true */
  restoreBest?: boolean;
  /** Print each new best value. @default false */
  verbose?: boolean;
}

const EARLY_STOPPING_OPTIONS: OptionSpec<EarlyStoppingOptions> = {
  patience: "integer",
  valStream: "string",
  metric: "string",
  mode: oneOf("max", "min"),
  pevalMode: oneOf("epoch", "iteration"),
  margin: "number",
  restoreBest: "boolean",
  verbose: "boolean",
};

/** Avalanche's metric names our rows have under another name. */
const AVALANCHE_METRICS: Record<string, string> = {
  Top1_Acc_Stream: "accuracy",
  Loss_Stream: "loss",
};

/** Plain-data state of {@link EarlyStoppingPlugin}. */
export interface EarlyStoppingState {
  version: 1;
  best: number | null;
  bestStep: number | null;
  bestState: ModuleState | null;
  /** The number of the run's rows when the experience started. */
  fromRow: number;
}

/**
 * Avalanche 0.6's `EarlyStoppingPlugin(patience, val_stream_name, metric_name="Top1_Acc_Stream",
 * mode="max", peval_mode="epoch", margin=0.0, verbose=False)`, checked line by line against
 * `training/plugins/early_stopping.py`. It reads the last stream-level value of `metric` on
 * `valStream` in the run's rows, so the strategy must evaluate that stream periodically:
 * `evalEvery` ≥ 1 with the same `pevalMode`, and `train(exp, { evalStreams: [bench.valid] })`.
 *
 * - `beforeTrainingExp`: forgets the best value, step and weights, and the values measured so
 *   far.
 * - `beforeTrainingEpoch` (or `beforeTrainingIteration` with `pevalMode: "iteration"`): the
 *   first value seen becomes the best, at step 0, with the current weights; afterwards a value
 *   strictly better than the best saves the current weights, and one better by more than
 *   `margin` also becomes the best, at the current step (epochs, or iterations, of the
 *   experience). When the step is `patience` or more past the best one, `ctx.stopTraining()`:
 *   before an epoch, that epoch does not run.
 * - `afterTrainingExp` (with `restoreBest`): reads the last value once more, then loads the best
 *   weights. Put the plugin before those whose `afterTrainingExp` reads the weights (EWC's
 *   importances, LwF's teacher).
 *
 * Differences: Avalanche loads the best weights when it stops (in iteration mode the stopped
 * iteration still trains after that) and never at an experience's end otherwise; ours loads them
 * at the experience's end, stopped or not (`restoreBest: false`: never), after looking at the
 * last evaluation too. Avalanche also takes the last value measured before the experience (the
previous experience's, of other weights than those it then saves); ours waits for one measured
during the experience. In `"min"` mode the margin is a decrease by more than `margin` (Avalanche
 * compares the signed difference with `margin`, which lets any decrease count).
 *
 * @example
 * ```ts ignore
 * import { benchmarkWithValidationStream, EarlyStoppingPlugin, mlp, naive, splitMNIST } from "../../mod.ts";
 * const bench = benchmarkWithValidationStream(await splitMNIST(), { size: 0.1, classBalanced: true });
 * const strategy = naive({ model: mlp(), epochs: 20, evalEvery: 1, plugins: [new EarlyStoppingPlugin(2, "valid")] });
 * for (const exp of bench.train) await strategy.train(exp, { evalStreams: [bench.valid] });
 * ```
 */
export class EarlyStoppingPlugin extends StrategyPlugin {
  readonly patience: number;
  readonly valStream: string;
  readonly metric: string;
  readonly mode: "max" | "min";
  readonly pevalMode: "epoch" | "iteration";
  readonly margin: number;
  readonly restoreBest: boolean;
  readonly verbose: boolean;
  #best: number | undefined;
  #bestStep: number | undefined;
  #bestState: ModuleState | undefined;
  /** The last value found and how many rows were searched for it. */
  #last: number | undefined;
  #scanned = 0;
  /** The number of rows when the experience started: only later ones are read. */
  #fromRow = 0;

  /**
   * @param patience epochs (or iterations) without improvement; or all options as an object.
   * @param valStreamName the validation stream's name (default "valid").
   * @param metricName the metric (default "accuracy"; Avalanche's names are understood).
   * @param mode "max" (default) or "min".
   * @param pevalMode "epoch" (default) or "iteration".
   * @param margin least improvement (default 0).
   * @param verbose print each new best value (default false).
   */
  constructor(
    patience: number | EarlyStoppingOptions,
    valStreamName?: string,
    metricName?: string,
    mode?: "max" | "min",
    pevalMode?: "epoch" | "iteration",
    margin?: number,
    verbose?: boolean,
  ) {
    super();
    const o: EarlyStoppingOptions = typeof patience === "object" && patience !== null
      ? checkOptions("EarlyStoppingPlugin", patience, EARLY_STOPPING_OPTIONS)
      : checkOptions("EarlyStoppingPlugin", {
        patience: patience as number,
        valStream: valStreamName,
        metric: metricName,
        mode,
        pevalMode,
        margin,
        verbose,
      }, EARLY_STOPPING_OPTIONS);
    if (!Number.isInteger(o.patience) || o.patience < 1) {
      throw new RangeError(
        `EarlyStoppingPlugin: patience must be an integer ≥ 1, got ${String(o.patience)}`,
      );
    }
    this.patience = o.patience;
    this.valStream = (o.valStream ?? "valid").replace(/_stream$/, "");
    const metric = o.metric ?? "accuracy";
    this.metric = AVALANCHE_METRICS[metric] ?? metric;
    this.mode = o.mode ?? "max";
    this.pevalMode = o.pevalMode ?? "epoch";
    this.margin = o.margin ?? 0;
    if (!(Number.isFinite(this.margin) && this.margin >= 0)) {
      throw new RangeError(`EarlyStoppingPlugin: margin must be a number ≥ 0, got ${this.margin}`);
    }
    this.restoreBest = o.restoreBest ?? true;
    this.verbose = o.verbose ?? false;
  }

  /** The best value of the current experience so far (undefined before one is seen). */
  get best(): number | undefined {
    return this.#best;
  }

  /** The step (epochs or iterations of the experience) of the best value. */
  get bestStep(): number | undefined {
    return this.#bestStep;
  }

  beforeTrainingExp(ctx: StrategyContext): void {
    this.#best = this.#bestStep = this.#bestState = undefined;
    // Only values measured during this experience count (see the class's differences).
    this.#last = undefined;
    this.#scanned = this.#fromRow = ctx.rows.length;
  }

  beforeTrainingEpoch(ctx: StrategyContext): void {
    if (this.pevalMode === "epoch") this.#check(ctx);
  }

  beforeTrainingIteration(ctx: StrategyContext): void {
    if (this.pevalMode === "iteration") this.#check(ctx);
  }

  afterTrainingExp(ctx: StrategyContext): void {
    if (!this.restoreBest) return;
    this.#updateBest(ctx);
    if (this.#bestState) ctx.model.loadStateDict(this.#bestState);
    this.#bestState = undefined;
  }

  #step(ctx: StrategyContext): number {
    return this.pevalMode === "epoch" ? ctx.clock.epoch : ctx.clock.experienceIteration;
  }

  #check(ctx: StrategyContext): void {
    if (this.#updateBest(ctx) === undefined || this.#bestStep === undefined) return;
    if (this.#step(ctx) - this.#bestStep >= this.patience) ctx.stopTraining();
  }

  #better(a: number, b: number): boolean {
    return this.mode === "max" ? a > b : a < b;
  }

  /** Avalanche's `_update_best`: undefined until a second value can be compared. */
  #updateBest(ctx: StrategyContext): number | undefined {
    const value = this.#lastValue(ctx.rows);
    if (value === undefined) return undefined;
    if (this.#best === undefined || this.#better(value, this.#best)) {
      this.#bestState = ctx.model.stateDict();
      if (this.#best === undefined) {
        this.#best = value;
        this.#bestStep = 0;
        return undefined;
      }
      const gain = this.mode === "max" ? value - this.#best : this.#best - value;
      if (gain > this.margin) {
        this.#bestStep = this.#step(ctx);
        this.#best = value;
        if (this.verbose) console.log(`EarlyStopping: new best value: ${value}`);
      }
    }
    return this.#best;
  }

  /** The last stream-level value of the metric on the validation stream (rows read once). */
  #lastValue(rows: readonly MetricRow[]): number | undefined {
    if (rows.length < this.#scanned) this.#scanned = this.#fromRow = 0; // other rows now
    for (let i = rows.length - 1; i >= this.#scanned; i--) {
      const r = rows[i];
      if (
        r.phase === "eval" && r.experience === null && r.stream === this.valStream &&
        r.metric === this.metric && r.task === null && r.k === undefined
      ) {
        this.#last = r.value;
        break;
      }
    }
    this.#scanned = rows.length;
    return this.#last;
  }

  state(): EarlyStoppingState {
    return {
      version: 1,
      best: this.#best ?? null,
      bestStep: this.#bestStep ?? null,
      bestState: this.#bestState ?? null,
      fromRow: this.#fromRow,
    };
  }

  loadState(state: unknown): void {
    const s = state as EarlyStoppingState;
    if (!s || s.version !== 1) {
      throw new TypeError("Not an EarlyStoppingPlugin state: expected { version: 1, best, ... }");
    }
    this.#best = s.best ?? undefined;
    this.#bestStep = s.bestStep ?? undefined;
    this.#bestState = s.bestState ?? undefined;
    this.#last = undefined;
    this.#scanned = this.#fromRow = Number(s.fromRow) || 0;
  }
}

/**
 * An {@link EarlyStoppingPlugin} (the validation stream `"valid"`, accuracy, higher is better,
 * unless given).
 *
 * @example
 * ```ts
 * import { earlyStopping } from "./early_stopping.ts";
 * const plugin = earlyStopping({ patience: 3, metric: "loss", mode: "min" });
 * console.assert(plugin.valStream === "valid" && plugin.restoreBest);
 * ```
 */
export function earlyStopping(opts: EarlyStoppingOptions): EarlyStoppingPlugin {
  checkOptions("earlyStopping", opts, EARLY_STOPPING_OPTIONS);
  return new EarlyStoppingPlugin(opts);
}
