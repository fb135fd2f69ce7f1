/**
 * Internal: metrics that measure something over each window (elapsed time, peak memory) rather
 * than summing minibatch outputs.
 *
 * @module
 */
import type { StrategyContext } from "../strategy/context.ts";
import {
  type Granularity,
  type Metric,
  type MetricHookName,
  WINDOW_END,
  WINDOW_START,
  type Windows,
} from "./metric.ts";
import type { MetricRow, Phase } from "../data/rows.ts";

/** How a windowed metric measures. */
export interface WindowedSpec {
  name: string;
  windows: Windows;
  /** A window opens. */
  start(phase: Phase, at: Granularity, ctx: StrategyContext): void;
  /** Called at the end of every iteration of a phase with open windows, before they close. */
  iteration?(phase: Phase, ctx: StrategyContext): void;
  /** A window closes: its rows. */
  end(phase: Phase, at: Granularity, ctx: StrategyContext): MetricRow[];
}

type Action =
  | { kind: "start" | "end"; phase: Phase; at: Granularity }
  | { kind: "iteration"; phase: Phase };

/** Builds a metric from window start/end callbacks. */
export function windowed(spec: WindowedSpec): Metric {
  const actions = new Map<MetricHookName, Action[]>();
  const push = (h: MetricHookName | undefined, a: Action) => {
    if (!h) return;
    let l = actions.get(h);
    if (!l) actions.set(h, l = []);
    l.push(a);
  };
  for (const phase of ["train", "eval"] as const) {
    const pairs = spec.windows.list.filter(([p]) => p === phase);
    if (pairs.length === 0) continue;
    for (const [, at] of [...pairs].reverse()) {
      push(WINDOW_START[phase][at], { kind: "start", phase, at });
    }
    if (spec.iteration) {
      push(phase === "train" ? "afterTrainingIteration" : "afterEvalIteration", {
        kind: "iteration",
        phase,
      });
    }
    for (const [, at] of pairs) push(WINDOW_END[phase][at], { kind: "end", phase, at });
  }
  const metric: Metric & Record<string, unknown> = { name: spec.name };
  for (const [hook, list] of actions) {
    metric[hook] = (ctx: StrategyContext): MetricRow[] => {
      const rows: MetricRow[] = [];
      for (const a of list) {
        if (a.kind === "start") spec.start(a.phase, a.at, ctx);
        else if (a.kind === "iteration") spec.iteration!(a.phase, ctx);
        else rows.push(...spec.end(a.phase, a.at, ctx));
      }
      return rows;
    };
  }
  return metric;
}
