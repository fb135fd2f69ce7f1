/**
 * Learning-rate schedules as a plugin (Avalanche's `LRSchedulerPlugin` around PyTorch's
 * `torch.optim.lr_scheduler`): `stepLR`, `multiStepLR`, `cosineAnnealingLR` and
 * `reduceLROnPlateau`, stepped after every epoch or iteration, with each step's learning rate
 * written to the run's rows (metric `"lr"`).
 *
 * @module
 */
import type { MetricRow } from "../data/rows.ts";
import type { Logger } from "../loggers/logger.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";

// ----------------------------------------------------------------------------- schedules ----

/** Plain-data state of a schedule. */
export type ScheduleState = Record<string, number | null>;

/**
 * A learning-rate schedule with PyTorch's semantics: `step(lr, metric)` advances its epoch
 * counter (`last_epoch`) and returns the learning rate to use from now on, computed from the
 * current one as PyTorch's chainable form does (so the numbers are PyTorch's, bit for bit).
 */
export interface LRSchedule {
  /** PyTorch's class name, e.g. "StepLR". */
  readonly name: string;
  /** Whether `step` needs a metric (ReduceLROnPlateau). */
  readonly needsMetric: boolean;
  /** Starts (or starts again) from `baseLr`, the optimizer's learning rate when it was attached. */
  start(baseLr: number): void;
  /** One step: the new learning rate, from the current one (and the metric, where needed). */
  step(lr: number, metric?: number): number;
  /** What Avalanche's `reset_scheduler` does: `last_epoch = 0` (and `_reset()` where it exists). */
  reset(): void;
  state(): ScheduleState;
  loadState(state: ScheduleState): void;
}

function positive(fn: string, name: string, v: number, integer = false): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new RangeError(
      `${fn}: ${name} must be ${integer ? "an integer" : "a number"} > 0, got ${v}`,
    );
  }
  return v;
}

/** Options of {@link stepLR}. */
export interface StepLROptions {
  /** Epochs (or iterations) between decays. */
  stepSize: number;
  /** Decay factor. @default 0.1 */
  gamma?: number;
}

abstract class EpochSchedule implements LRSchedule {
  abstract readonly name: string;
  readonly needsMetric: boolean = false;
  protected lastEpoch = 0;
  protected baseLr = NaN;

  start(baseLr: number): void {
    this.baseLr = baseLr;
    this.lastEpoch = 0;
  }

  step(lr: number): number {
    this.lastEpoch++;
    return this.next(lr);
  }

  /** The learning rate at `lastEpoch` (just advanced) from the current one. */
  protected abstract next(lr: number): number;

  reset(): void {
    this.lastEpoch = 0;
  }

  state(): ScheduleState {
    return { lastEpoch: this.lastEpoch, baseLr: this.baseLr };
  }

  loadState(s: ScheduleState): void {
    this.lastEpoch = Number(s.lastEpoch);
    this.baseLr = Number(s.baseLr);
  }
}

class StepLR extends EpochSchedule {
  readonly name = "StepLR";
  constructor(readonly stepSize: number, readonly gamma: number) {
    super();
  }
  protected next(lr: number): number {
    // PyTorch: the current lr, times gamma when last_epoch is a nonzero multiple of step_size.
    return this.lastEpoch === 0 || this.lastEpoch % this.stepSize !== 0 ? lr : lr * this.gamma;
  }
}

/**
 * `torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma=0.1)`: the learning rate times
 * `gamma` every `stepSize` steps.
 *
 * @example
 * ```ts
 * import { stepLR } from "./lr_scheduler.ts";
 * const s = stepLR({ stepSize: 2, gamma: 0.5 });
 * s.start(1);
 * let lr = 1;
 * const seen = [lr];
 * for (let i = 0; i < 4; i++) seen.push(lr = s.step(lr));
 * console.assert(seen.join() === "1,1,0.5,0.5,0.25");
 * ```
 */
export function stepLR(opts: StepLROptions): LRSchedule {
  checkOptions("stepLR", opts, { stepSize: "integer", gamma: "number" });
  return new StepLR(
    positive("stepLR", "stepSize", opts.stepSize, true),
    positive("stepLR", "gamma", opts.gamma ?? 0.1),
  );
}

/** Options of {@link multiStepLR}. */
export interface MultiStepLROptions {
  /** Steps at which the learning rate decays (a milestone listed twice decays twice). */
  milestones: readonly number[];
  /** Decay factor. @default 0.1 */
  gamma?: number;
}

class MultiStepLR extends EpochSchedule {
  readonly name = "MultiStepLR";
  readonly #counts = new Map<number, number>();
  constructor(milestones: readonly number[], readonly gamma: number) {
    super();
    for (const m of milestones) this.#counts.set(m, (this.#counts.get(m) ?? 0) + 1);
  }
  protected next(lr: number): number {
    const k = this.#counts.get(this.lastEpoch);
    return k === undefined ? lr : lr * this.gamma ** k;
  }
}

/**
 * `torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)`: the learning rate
 * times `gamma` at each milestone (`gamma ** k` at one listed k times).
 *
 * @example
 * ```ts
 * import { multiStepLR } from "./lr_scheduler.ts";
 * const s = multiStepLR({ milestones: [1, 3], gamma: 0.1 });
 * s.start(1);
 * console.assert(s.step(1) === 0.1 && s.step(0.1) === 0.1);
 * ```
 */
export function multiStepLR(opts: MultiStepLROptions): LRSchedule {
  checkOptions("multiStepLR", opts, { milestones: "array", gamma: "number" });
  const milestones = [...(opts.milestones ?? [])];
  milestones.forEach((m, i) => {
    if (!Number.isInteger(m) || m < 0) {
      throw new RangeError(`multiStepLR: milestones[${i}] must be an integer ≥ 0, got ${m}`);
    }
  });
  return new MultiStepLR(milestones, positive("multiStepLR", "gamma", opts.gamma ?? 0.1));
}

/** Options of {@link cosineAnnealingLR}. */
export interface CosineAnnealingLROptions {
  /** Steps of a half cosine period (PyTorch's `T_max`). */
  tMax: number;
  /** Smallest learning rate (PyTorch's `eta_min`). @default 0 */
  etaMin?: number;
}

class CosineAnnealingLR extends EpochSchedule {
  readonly name = "CosineAnnealingLR";
  constructor(readonly tMax: number, readonly etaMin: number) {
    super();
  }
  protected next(lr: number): number {
    const t = this.lastEpoch, T = this.tMax, eta = this.etaMin;
    // PyTorch's recursive form (`CosineAnnealingLR.get_lr`), term for term.
    if (t === 0) return lr;
    if ((t - 1 - T) % (2 * T) === 0) {
      return lr + (this.baseLr - eta) * (1 - Math.cos(Math.PI / T)) / 2;
    }
    return (1 + Math.cos(Math.PI * t / T)) / (1 + Math.cos(Math.PI * (t - 1) / T)) * (lr - eta) +
      eta;
  }
}

/**
 * `torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max, eta_min=0)`: the learning rate
 * follows a cosine from its initial value down to `etaMin` over `tMax` steps, and back up.
 *
 * @example
 * ```ts
 * import { cosineAnnealingLR } from "./lr_scheduler.ts";
 * const s = cosineAnnealingLR({ tMax: 2 });
 * s.start(1);
 * const a = s.step(1), b = s.step(a);
 * console.assert(Math.abs(a - 0.5) < 1e-12 && Math.abs(b) < 1e-12);
 * ```
 */
export function cosineAnnealingLR(opts: CosineAnnealingLROptions): LRSchedule {
  checkOptions("cosineAnnealingLR", opts, { tMax: "integer", etaMin: "number" });
  const etaMin = opts.etaMin ?? 0;
  if (!(Number.isFinite(etaMin) && etaMin >= 0)) {
    throw new RangeError(`cosineAnnealingLR: etaMin must be a number ≥ 0, got ${etaMin}`);
  }
  return new CosineAnnealingLR(positive("cosineAnnealingLR", "tMax", opts.tMax, true), etaMin);
}

/** Options of {@link reduceLROnPlateau}. */
export interface ReduceLROnPlateauOptions {
  /** Whether the metric should go down ("min", a loss) or up ("max"). @default "min" */
  mode?: "min" | "max";
  /** Factor of each reduction (< 1). @default 0.1 */
  factor?: number;
  /** Steps without improvement tolerated before a reduction. @default 10 */
  patience?: number;
  /** Least change that counts as an improvement. @default 1e-4 */
  threshold?: number;
  /** `"rel"`: relative to the best value; `"abs"`: absolute. @default "rel" */
  thresholdMode?: "rel" | "abs";
  /** Steps after a reduction during which bad steps are not counted. @default 0 */
  cooldown?: number;
  /** Smallest learning rate. @default 0 */
  minLr?: number;
  /** A reduction smaller than this is not made. @default 1e-8 */
  eps?: number;
}

const PLATEAU_OPTIONS: OptionSpec<ReduceLROnPlateauOptions> = {
  mode: oneOf("min", "max"),
  factor: "number",
  patience: "integer",
  threshold: "number",
  thresholdMode: oneOf("rel", "abs"),
  cooldown: "integer",
  minLr: "number",
  eps: "number",
};

class ReduceLROnPlateau implements LRSchedule {
  readonly name = "ReduceLROnPlateau";
  readonly needsMetric = true;
  readonly mode: "min" | "max";
  readonly factor: number;
  readonly patience: number;
  readonly threshold: number;
  readonly thresholdMode: "rel" | "abs";
  readonly cooldown: number;
  readonly minLr: number;
  readonly eps: number;
  #best = Infinity;
  #bad = 0;
  #cooldownLeft = 0;
  #lastEpoch = 0;

  constructor(o: Required<ReduceLROnPlateauOptions>) {
    this.mode = o.mode;
    this.factor = o.factor;
    this.patience = o.patience;
    this.threshold = o.threshold;
    this.thresholdMode = o.thresholdMode;
    this.cooldown = o.cooldown;
    this.minLr = o.minLr;
    this.eps = o.eps;
    this.reset();
  }

  start(_baseLr: number): void {
    this.reset();
  }

  #isBetter(a: number, best: number): boolean {
    if (this.mode === "min") {
      return this.thresholdMode === "rel"
        ? a < best * (1 - this.threshold)
        : a < best - this.threshold;
    }
    return this.thresholdMode === "rel"
      ? a > best * (this.threshold + 1)
      : a > best + this.threshold;
  }

  step(lr: number, metric?: number): number {
    if (typeof metric !== "number") {
      throw new TypeError("ReduceLROnPlateau needs a metric at each step (lrScheduler's metric)");
    }
    this.#lastEpoch++;
    if (this.#isBetter(metric, this.#best)) {
      this.#best = metric;
      this.#bad = 0;
    } else {
      this.#bad++;
    }
    if (this.#cooldownLeft > 0) {
      this.#cooldownLeft--;
      this.#bad = 0;
    }
    if (this.#bad > this.patience) {
      const reduced = Math.max(lr * this.factor, this.minLr);
      if (lr - reduced > this.eps) lr = reduced;
      this.#cooldownLeft = this.cooldown;
      this.#bad = 0;
    }
    return lr;
  }

  /** PyTorch's `_reset` (which Avalanche calls), and `last_epoch = 0`. */
  reset(): void {
    this.#best = this.mode === "min" ? Infinity : -Infinity;
    this.#bad = 0;
    this.#cooldownLeft = 0;
    this.#lastEpoch = 0;
  }

  state(): ScheduleState {
    // No value yet (±Infinity, which JSON cannot hold) is null.
    return {
      best: Number.isFinite(this.#best) ? this.#best : null,
      bad: this.#bad,
      cooldownLeft: this.#cooldownLeft,
      lastEpoch: this.#lastEpoch,
    };
  }

  loadState(s: ScheduleState): void {
    this.#best = s.best === null ? (this.mode === "min" ? Infinity : -Infinity) : Number(s.best);
    this.#bad = Number(s.bad);
    this.#cooldownLeft = Number(s.cooldownLeft);
    this.#lastEpoch = Number(s.lastEpoch);
  }
}

/**
 * `torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=10,
 * threshold=1e-4, threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8)`: the learning rate
 * times `factor` once the metric has not improved for more than `patience` steps. Needs the
 * plugin's `metric`.
 *
 * @example
 * ```ts
 * import { reduceLROnPlateau } from "./lr_scheduler.ts";
 * const s = reduceLROnPlateau({ patience: 1, factor: 0.5 });
 * s.start(1);
 * const lrs = [3, 3, 3, 3].reduce((acc, loss) => [...acc, s.step(acc.at(-1)!, loss)], [1]);
 * console.assert(lrs.join() === "1,1,1,0.5,0.5");
 * ```
 */
export function reduceLROnPlateau(opts: ReduceLROnPlateauOptions = {}): LRSchedule {
  const fn = "reduceLROnPlateau";
  checkOptions(fn, opts, PLATEAU_OPTIONS);
  const o: Required<ReduceLROnPlateauOptions> = {
    mode: opts.mode ?? "min",
    factor: opts.factor ?? 0.1,
    patience: opts.patience ?? 10,
    threshold: opts.threshold ?? 1e-4,
    thresholdMode: opts.thresholdMode ?? "rel",
    cooldown: opts.cooldown ?? 0,
    minLr: opts.minLr ?? 0,
    eps: opts.eps ?? 1e-8,
  };
  if (!(o.factor > 0 && o.factor < 1)) {
    throw new RangeError(`${fn}: factor must be in (0, 1), got ${o.factor}`);
  }
  for (const k of ["patience", "cooldown"] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 0) {
      throw new RangeError(`${fn}: ${k} must be an integer ≥ 0, got ${o[k]}`);
    }
  }
  for (const k of ["threshold", "minLr", "eps"] as const) {
    if (!(Number.isFinite(o[k]) && o[k] >= 0)) {
      throw new RangeError(`${fn}: ${k} must be a number ≥ 0, got ${o[k]}`);
    }
  }
  return new ReduceLROnPlateau(o);
}

// -------------------------------------------------------------------------------- plugin ----

/** Options of {@link LRSchedulerPlugin} and {@link lrScheduler}. */
export interface LRSchedulerOptions {
  /**
   * Start the schedule again after each experience (Avalanche's `reset_scheduler`).
   * @default true
   */
  resetEachExperience?: boolean;
  /** Set the optimizer's learning rate back to its initial value after each experience. @default true */
  resetLr?: boolean;
  /** Step after every epoch or every training iteration. @default "epoch" */
  stepGranularity?: "epoch" | "iteration";
  /**
   * The metric a metric-based schedule (ReduceLROnPlateau) gets: `"train_loss"`, the mean
   * training loss since the last step, or `"val_loss"`, the mean loss of each periodic
   * evaluation during training (set `evalEvery` and pass `evalStreams` to `train`).
   */
  metric?: "train_loss" | "val_loss";
  /** Step only while training the first experience (Avalanche's `first_exp_only`). @default false */
  firstExpOnly?: boolean;
  /** Step only during each experience's first epoch (Avalanche's `first_epoch_only`). @default false */
  firstEpochOnly?: boolean;
  /**
   * Loggers that also receive the `lr` rows (the evaluator's loggers get its metrics' rows only:
   * pass the same ones here to see the learning rate there). @default []
   */
  loggers?: readonly Logger[];
}

const LR_SCHEDULER_OPTIONS: OptionSpec<LRSchedulerOptions> = {
  resetEachExperience: "boolean",
  resetLr: "boolean",
  stepGranularity: oneOf("epoch", "iteration"),
  metric: oneOf("train_loss", "val_loss"),
  firstExpOnly: "boolean",
  firstEpochOnly: "boolean",
  loggers: "array",
};

/** Plain-data state of {@link LRSchedulerPlugin}. */
export interface LRSchedulerState {
  version: 1;
  baseLr: number | null;
  schedule: ScheduleState;
  lossSum: number;
  lossCount: number;
  trainedSinceEval: boolean;
  justValidated: boolean;
}

function isSchedule(s: unknown): s is LRSchedule {
  return !!s && typeof s === "object" && typeof (s as LRSchedule).step === "function" &&
    typeof (s as LRSchedule).reset === "function";
}

/**
 * Avalanche 0.6's `LRSchedulerPlugin(scheduler, reset_scheduler=True, reset_lr=True,
 * metric=None, step_granularity="epoch", first_epoch_only=False, first_exp_only=False)`, with a
 * schedule of this module in place of a PyTorch scheduler. Checked line by line against
 * Avalanche's `training/plugins/lr_scheduling.py` and PyTorch 1.13's `lr_scheduler.py`:
 *
 * - the initial learning rate (PyTorch's `initial_lr`, Avalanche's `base_lrs`) is the
 *   optimizer's when training first starts;
 * - `afterTrainingEpoch` (epoch granularity) or `afterTrainingIteration` (iteration
 *   granularity) steps the schedule, unless `metric` is `"val_loss"`; before it, a row
 *   `{ metric: "lr", phase: "train" }` records the learning rate that epoch or iteration used
 *   (in the run's rows, and handed to `loggers`);
 * - `"train_loss"`: the mean loss since the last step weighted by minibatch size, as
 *   Avalanche's rolling `Mean` (by epoch: the epoch's loss row, read back once per epoch; by
 *   iteration: each iteration's loss is read back);
 * - `"val_loss"`: the loss of each evaluation during training, as Avalanche (an evaluation
 *   before any training iteration of the experience, or a second one with no iteration in
 *   between, is ignored); with several evaluation streams only the first steps the schedule;
 * - `afterTrainingExp`: `resetLr` sets the optimizer's `lr` back, `resetEachExperience` starts
 *   the schedule again (`last_epoch = 0`; ReduceLROnPlateau's `_reset`).
 *
 * Differences: an evaluation before training (`evalBefore`) is always ignored (Avalanche's flag
 * may still be set from the previous experience); schedules cannot start at a `last_epoch` of
 * their own (PyTorch's closed form for a first step past 0 is not needed). Put the plugin with
 * others in any order; it touches nothing but `optimizer.lr`.
 *
 * @example
 * ```ts ignore
 * import { LRSchedulerPlugin, mlp, naive, stepLR } from "../../mod.ts";
 * const strategy = naive({ model: mlp(), epochs: 10, plugins: [new LRSchedulerPlugin(stepLR({ stepSize: 3 }))] });
 * ```
 */
export class LRSchedulerPlugin extends StrategyPlugin {
  readonly schedule: LRSchedule;
  readonly resetEachExperience: boolean;
  readonly resetLr: boolean;
  readonly metric: "train_loss" | "val_loss" | undefined;
  readonly stepGranularity: "epoch" | "iteration";
  readonly firstEpochOnly: boolean;
  readonly firstExpOnly: boolean;
  readonly loggers: readonly Logger[];
  #baseLr: number | undefined;
  #lossSum = 0;
  #lossCount = 0;
  #wasTraining = false;
  #trainedSinceEval = false;
  #justValidated = false;

  /**
   * @param schedule the schedule (`stepLR(...)`, ...); or all options with a `schedule` key.
   * @param resetScheduler Avalanche's `reset_scheduler` (default true).
   * @param resetLr Avalanche's `reset_lr` (default true).
   * @param metric `"train_loss"` or `"val_loss"` for ReduceLROnPlateau (default none).
   * @param stepGranularity `"epoch"` (default) or `"iteration"`.
   * @param firstEpochOnly Avalanche's `first_epoch_only` (default false).
   * @param firstExpOnly Avalanche's `first_exp_only` (default false).
   */
  constructor(
    schedule: LRSchedule | (LRSchedulerOptions & { schedule: LRSchedule }),
    resetScheduler?: boolean,
    resetLr?: boolean,
    metric?: "train_loss" | "val_loss" | null,
    stepGranularity?: "epoch" | "iteration",
    firstEpochOnly?: boolean,
    firstExpOnly?: boolean,
  ) {
    super();
    const o: LRSchedulerOptions & { schedule: LRSchedule } = isSchedule(schedule)
      ? {
        schedule,
        resetEachExperience: resetScheduler,
        resetLr,
        metric: metric ?? undefined,
        stepGranularity,
        firstEpochOnly,
        firstExpOnly,
      }
      : checkOptions("LRSchedulerPlugin", schedule, {
        ...LR_SCHEDULER_OPTIONS,
        schedule: "object",
      });
    if (!isSchedule(o.schedule)) {
      throw new TypeError(
        `LRSchedulerPlugin needs a schedule (stepLR, multiStepLR, cosineAnnealingLR, ` +
          `reduceLROnPlateau), got ${String(o.schedule)}`,
      );
    }
    checkOptions("LRSchedulerPlugin", { ...o, schedule: undefined }, {
      ...LR_SCHEDULER_OPTIONS,
      schedule: "any",
    });
    this.schedule = o.schedule;
    this.resetEachExperience = o.resetEachExperience ?? true;
    this.resetLr = o.resetLr ?? true;
    this.metric = o.metric;
    this.stepGranularity = o.stepGranularity ?? "epoch";
    this.firstEpochOnly = o.firstEpochOnly ?? false;
    this.firstExpOnly = o.firstExpOnly ?? false;
    this.loggers = [...(o.loggers ?? [])];
    if (this.schedule.needsMetric && this.metric === undefined) {
      throw new RangeError(
        `${this.schedule.name} steps on a metric: pass metric: "train_loss" or "val_loss"`,
      );
    }
    if (!this.schedule.needsMetric && this.metric !== undefined) {
      throw new RangeError(
        `${this.schedule.name} takes no metric, got metric ${JSON.stringify(this.metric)}: leave ` +
          `it out (only reduceLROnPlateau uses one)`,
      );
    }
  }

  /** The optimizer's learning rate when training first started (undefined before). */
  get baseLr(): number | undefined {
    return this.#baseLr;
  }

  beforeTraining(ctx: StrategyContext): void {
    if (this.#baseLr === undefined) {
      this.#baseLr = ctx.optimizer.lr;
      this.schedule.start(this.#baseLr);
    }
    this.#wasTraining = true;
    this.#trainedSinceEval = false;
  }

  afterTraining(): void {
    this.#wasTraining = false;
  }

  beforeTrainingExp(): void {
    this.#trainedSinceEval = false;
  }

  beforeTrainingIteration(): void {
    this.#justValidated = false;
  }

  async afterTrainingIteration(ctx: StrategyContext): Promise<void> {
    this.#trainedSinceEval = true;
    if (this.stepGranularity !== "iteration") return;
    const n = ctx.batch!.n;
    if (this.metric === "train_loss") {
      this.#lossSum += (await ctx.loss!.data())[0] * n; // asynchronous: "webgpu" has no dataSync
      this.#lossCount += n;
    }
    await this.#record(ctx, ctx.clock.epoch);
    if (this.metric !== "val_loss") this.#trainStep(ctx, ctx.clock.epoch);
  }

  async afterTrainingEpoch(ctx: StrategyContext): Promise<void> {
    if (this.stepGranularity !== "epoch") return;
    const epoch = ctx.clock.epoch - 1;
    if (this.metric === "train_loss") {
      // The epoch's mean loss, weighted by minibatch size: the loop's own row.
      const row = lastRow(
        ctx.rows,
        (r) =>
          r.phase === "train" && r.metric === "loss" && r.at === undefined && r.epoch === epoch,
      );
      if (row) {
        this.#lossSum += row.value;
        this.#lossCount += 1;
      }
    }
    await this.#record(ctx, epoch);
    if (this.metric !== "val_loss") this.#trainStep(ctx, epoch);
  }

  afterEvalExp(ctx: StrategyContext): void {
    if (this.metric !== "val_loss" || !this.#wasTraining) return;
    const exp = ctx.experience!;
    const row = lastRow(
      ctx.rows,
      (r) =>
        r.phase === "eval" && r.metric === "loss" && r.experience === exp.id &&
        r.stream === exp.stream,
    );
    const n = ctx.dataset?.length ?? 0;
    if (row && n) {
      this.#lossSum += row.value * n;
      this.#lossCount += n;
    }
  }

  afterEval(ctx: StrategyContext): void {
    if (this.metric === "val_loss" && this.#wasTraining) {
      if (
        this.#trainedSinceEval && !this.#justValidated && this.#stepAllowed(ctx, ctx.clock.epoch)
      ) {
        this.#apply(ctx, this.#lossSum / this.#lossCount);
      }
      this.#lossSum = this.#lossCount = 0;
    }
    this.#justValidated = true;
  }

  afterTrainingExp(ctx: StrategyContext): void {
    if (this.resetLr && this.#baseLr !== undefined) ctx.optimizer.lr = this.#baseLr;
    if (this.resetEachExperience) this.schedule.reset();
  }

  /** Avalanche's `_check_first_epoch_or_experience`, for the epoch `epoch` of the experience. */
  #stepAllowed(ctx: StrategyContext, epoch: number): boolean {
    if (this.firstExpOnly && ctx.clock.trainExperiences > 0) return false;
    if (this.firstEpochOnly && epoch > 0) return false;
    return true;
  }

  #trainStep(ctx: StrategyContext, epoch: number): void {
    if (this.#stepAllowed(ctx, epoch)) {
      this.#apply(ctx, this.metric === "train_loss" ? this.#lossSum / this.#lossCount : undefined);
    }
    this.#lossSum = this.#lossCount = 0;
  }

  #apply(ctx: StrategyContext, metric: number | undefined): void {
    ctx.optimizer.lr = this.schedule.step(ctx.optimizer.lr, metric);
  }

  /** A row with the learning rate the epoch (or iteration) just finished used. */
  async #record(ctx: StrategyContext, epoch: number): Promise<void> {
    const exp = ctx.experience!;
    const row: MetricRow = {
      metric: "lr",
      phase: "train",
      stream: exp.stream,
      experience: exp.id,
      task: null,
      epoch,
      iteration: ctx.clock.trainIterations,
      trainExperience: ctx.clock.trainExperiences,
      value: ctx.optimizer.lr,
      at: this.stepGranularity === "epoch" ? "epoch" : "minibatch",
    };
    ctx.rows.push(row);
    for (const l of this.loggers) await l.log?.([row], ctx);
  }

  state(): LRSchedulerState {
    return {
      version: 1,
      baseLr: this.#baseLr ?? null,
      schedule: this.schedule.state(),
      lossSum: this.#lossSum,
      lossCount: this.#lossCount,
      trainedSinceEval: this.#trainedSinceEval,
      justValidated: this.#justValidated,
    };
  }

  loadState(state: unknown): void {
    const s = state as LRSchedulerState;
    if (!s || s.version !== 1 || typeof s.schedule !== "object") {
      throw new TypeError("Not an LRSchedulerPlugin state: expected { version: 1, schedule, ... }");
    }
    this.#baseLr = s.baseLr ?? undefined;
    this.schedule.loadState(s.schedule);
    this.#lossSum = Number(s.lossSum);
    this.#lossCount = Number(s.lossCount);
    this.#trainedSinceEval = !!s.trainedSinceEval;
    this.#justValidated = !!s.justValidated;
  }
}

function lastRow(
  rows: readonly MetricRow[],
  pick: (r: MetricRow) => boolean,
): MetricRow | undefined {
  for (let i = rows.length - 1; i >= 0; i--) if (pick(rows[i])) return rows[i];
  return undefined;
}

/**
 * An {@link LRSchedulerPlugin} stepping `schedule`: put it in any strategy's `plugins`.
 *
 * @example Cosine annealing over 10 epochs, the learning rate in the rows
 * ```ts ignore
 * import { cosineAnnealingLR, lrScheduler, mlp, naive } from "../../mod.ts";
 * const strategy = naive({
 *   model: mlp(),
 *   epochs: 10,
 *   plugins: [lrScheduler(cosineAnnealingLR({ tMax: 10 }))],
 * });
 * // after train: strategy.rows.filter((r) => r.metric === "lr")
 * ```
 */
export function lrScheduler(
  schedule: LRSchedule,
  opts: LRSchedulerOptions = {},
): LRSchedulerPlugin {
  checkOptions("lrScheduler", opts, LR_SCHEDULER_OPTIONS);
  return new LRSchedulerPlugin({ ...opts, schedule });
}
