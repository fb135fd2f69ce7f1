/**
 * What a metric is: a plain object with optional hooks named as the strategy's (camelCase
 * Avalanche callbacks) that return the rows it produces. The evaluation plugin
 * (`evaluation({ metrics })`) drives the metrics and hands their rows to the loggers.
 *
 * Granularities: a metric value covers one `"minibatch"`, one `"epoch"`, one `"experience"` or
 * one `"stream"` (everything one `train()` or `eval()` call saw). As in Avalanche, minibatch and
 * epoch values are taken in training and experience and stream values in evaluation, unless
 * a metric's `phase` option says otherwise (there is no eval epoch).
 *
 * @module
 */
import type { StrategyContext } from "../strategy/context.ts";
import { EVAL_HOOKS, type HookName, SYNC_HOOKS, TRAIN_HOOKS } from "../strategy/plugin.ts";
import type { MetricRow, Phase } from "../data/rows.ts";
import { anyOf, type OptionSpec } from "../options.ts";

/** How much a metric value covers. */
export type Granularity = "minibatch" | "epoch" | "experience" | "stream";

/** Every granularity, finest first. */
export const GRANULARITIES: readonly Granularity[] = ["minibatch", "epoch", "experience", "stream"];

/** Hooks a metric may implement (every hook except those inside the gradient tape). */
export type MetricHookName = Exclude<HookName, "beforeForward" | "afterForward" | "beforeBackward">;

/** Hook names a metric may implement, in lifecycle order. */
export const METRIC_HOOKS: readonly MetricHookName[] = [...TRAIN_HOOKS, ...EVAL_HOOKS].filter((
  h,
): h is MetricHookName => !SYNC_HOOKS.has(h));

/** A metric hook: may return rows (or a promise of rows). */
export type MetricHook = (
  ctx: StrategyContext,
) => MetricRow[] | void | Promise<MetricRow[] | void>;

/**
 * A metric: optional hooks returning rows, plus optional checkpoint state and cleanup.
 *
 * @example A metric that counts training iterations per epoch
 * ```ts
 * import type { Metric } from "./metric.ts";
 * import { rowBase } from "./metric.ts";
 * let n = 0;
 * const iterations: Metric = {
 *   name: "iterations",
 *   beforeTrainingEpoch: () => void (n = 0),
 *   afterTrainingIteration: () => void n++,
 *   afterTrainingEpoch: (ctx) => [{ ...rowBase(ctx, "train", "epoch"), metric: "iterations", value: n }],
 * };
 * ```
 */
export type Metric =
  & {
    /** The metric name of its rows (or of the main ones), e.g. "accuracy". */
    readonly name: string;
    /** Plain-data state for checkpoints. */
    state?(): unknown;
    /** Restores what {@link Metric.state} returned. */
    loadState?(state: unknown): void;
    /** Frees tensors the metric holds. */
    dispose?(): void;
  }
  & { [K in MetricHookName]?: MetricHook };

/** The phases and granularities a metric reports, resolved from its options. */
export interface Windows {
  /** [phase, granularity] pairs, finest first within each phase. */
  readonly list: readonly (readonly [Phase, Granularity])[];
  /** True when the pair is reported. */
  has(phase: Phase, at: Granularity): boolean;
}

/** Options every windowed metric accepts. */
export interface GranularityOptions {
  /** What each value covers. */
  at?: Granularity | readonly Granularity[];
  /**
   * Phases in which to report. Default: training for minibatch and epoch, evaluation for
   * experience and stream (Avalanche's choice). Evaluation has no epoch.
   */
  phase?: Phase | readonly Phase[];
}

/**
 * The keys of {@link GranularityOptions}, which every windowed metric checks with its own. The
 * values themselves are checked by {@link resolveWindows}, whose errors list the valid ones.
 */
export const GRANULARITY_OPTIONS: OptionSpec<GranularityOptions> = {
  at: anyOf("string", "array"),
  phase: anyOf("string", "array"),
};

function list<T>(v: T | readonly T[] | undefined): readonly T[] | undefined {
  return v === undefined ? undefined : Array.isArray(v) ? v as readonly T[] : [v as T];
}

/**
 * Resolves and validates `at`/`phase` options. Throws a RangeError naming the bad value.
 *
 * @example
 * ```ts
 * import { resolveWindows } from "./metric.ts";
 * const w = resolveWindows("accuracy", { at: ["epoch", "stream"] }, ["epoch"]);
 * console.assert(w.has("train", "epoch") && w.has("eval", "stream") && !w.has("eval", "epoch"));
 * ```
 */
export function resolveWindows(
  metric: string,
  opts: GranularityOptions,
  defaults: readonly Granularity[],
  allowed: readonly Granularity[] = GRANULARITIES,
): Windows {
  const at = list(opts.at) ?? defaults;
  for (const g of at) {
    if (!allowed.includes(g)) {
      throw new RangeError(
        `${metric}: unknown granularity "${g}" in at: use ${
          allowed.map((a) => `"${a}"`).join(", ")
        }`,
      );
    }
  }
  const phases = list(opts.phase);
  for (const p of phases ?? []) {
    if (p !== "train" && p !== "eval") {
      throw new RangeError(`${metric}: unknown phase "${p}": use "train" or "eval"`);
    }
  }
  const pairs: [Phase, Granularity][] = [];
  for (const phase of ["train", "eval"] as const) {
    for (const g of GRANULARITIES) {
      if (!at.includes(g)) continue;
      if (phase === "eval" && g === "epoch") continue;
      const on = phases
        ? phases.includes(phase)
        : (phase === "train") === (g === "minibatch" || g === "epoch");
      if (on) pairs.push([phase, g]);
    }
  }
  if (pairs.length === 0) {
    throw new RangeError(
      `${metric}: at [${at.join(", ")}] with phase [${
        phases?.join(", ") ?? ""
      }] reports nothing (evaluation has no epoch)`,
    );
  }
  const keys = new Set(pairs.map(([p, g]) => `${p}/${g}`));
  return { list: pairs, has: (p, g) => keys.has(`${p}/${g}`) };
}

/** Hook that opens a window of each phase and granularity. */
export const WINDOW_START: Record<Phase, Partial<Record<Granularity, MetricHookName>>> = {
  train: {
    minibatch: "beforeTrainingIteration",
    epoch: "beforeTrainingEpoch",
    experience: "beforeTrainingExp",
    stream: "beforeTraining",
  },
  eval: { minibatch: "beforeEvalIteration", experience: "beforeEvalExp", stream: "beforeEval" },
};

/** Hook that closes a window of each phase and granularity. */
export const WINDOW_END: Record<Phase, Partial<Record<Granularity, MetricHookName>>> = {
  train: {
    minibatch: "afterTrainingIteration",
    epoch: "afterTrainingEpoch",
    experience: "afterTrainingExp",
    stream: "afterTraining",
  },
  eval: { minibatch: "afterEvalIteration", experience: "afterEvalExp", stream: "afterEval" },
};

/** The row coordinates of a value of `phase` and granularity `at`, taken now. */
export type RowBase = Omit<MetricRow, "metric" | "value">;

/**
 * Coordinates of a row taken now, in the loop's conventions: training rows carry the index of
 * the experience being trained (`clock.trainExperiences`), evaluation rows the last completed
 * one; `iteration` is the global training iteration.
 *
 * @example
 * ```ts ignore
 * const row = { ...rowBase(ctx, "eval", "experience"), metric: "accuracy", value: 0.9 };
 * ```
 */
export function rowBase(ctx: StrategyContext, phase: Phase, at: Granularity): RowBase {
  const exp = ctx.experience;
  const clock = ctx.clock;
  const inExperience = at !== "stream";
  let epoch: number | null = null;
  if (phase === "train" && at === "minibatch") epoch = clock.epoch;
  // The loop counts the epoch as done before afterTrainingEpoch.
  if (phase === "train" && at === "epoch") epoch = Math.max(0, clock.epoch - 1);
  return {
    phase,
    stream: (inExperience ? exp?.stream : ctx.experiences[0]?.stream) ?? exp?.stream ?? "",
    experience: inExperience && exp ? exp.id : null,
    task: null,
    epoch,
    iteration: clock.trainIterations,
    trainExperience: phase === "train" ? clock.trainExperiences : clock.trainExperiences - 1,
    at,
  };
}
