/**
 * What a logger is: an object that receives the rows the metrics produce, and optionally the
 * lifecycle hooks of the run (to show progress, print headers).
 *
 * @module
 */
import type { MetricHookName } from "../metrics/metric.ts";
import type { MetricRow } from "../data/rows.ts";
import type { StrategyContext } from "../strategy/context.ts";
import type { Hook } from "../strategy/plugin.ts";

/**
 * A logger. The evaluation plugin calls, at each hook: the metrics, then `log` with the rows
 * they produced (if any), then the logger's own hook of that name. Every member is optional.
 *
 * @example A logger that prints stream accuracies
 * ```ts
 * import type { Logger } from "./logger.ts";
 * const printer: Logger = {
 *   log(rows) {
 *     for (const r of rows) if (r.metric === "accuracy" && r.at === "stream") console.log(r.value);
 *   },
 * };
 * ```
 */
export type Logger =
  & {
    /** Shown in errors. */
    name?: string;
    /** Receives the rows produced at one hook, in order. `ctx` is absent outside a run. */
    log?(rows: readonly MetricRow[], ctx?: StrategyContext): void | Promise<void>;
    /** Ends the logger's output (closes displays, files). */
    close?(): void | Promise<void>;
  }
  & { [K in MetricHookName]?: Hook };
