/**
 * The loss metric: the mean of the loop's loss over the samples of each window, accumulated on
 * the device and read back once per reported window.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { StrategyContext } from "../strategy/context.ts";
import {
  additive,
  type HostSums,
  perTaskOption,
  type Sink,
  splitRows,
  TaskSplit,
} from "./_accumulate.ts";
import type { PerTask } from "./_accumulate.ts";
import {
  GRANULARITY_OPTIONS,
  type GranularityOptions,
  type Metric,
  resolveWindows,
  type RowBase,
} from "./metric.ts";
import { checkOptions } from "../options.ts";
import type { MetricRow } from "../data/rows.ts";

/** Options of {@link loss}. */
export interface LossOptions extends GranularityOptions {
  /** What each value covers. @default ["epoch", "experience", "stream"] */
  at?: GranularityOptions["at"];
  /**
   * Rows per task label besides the overall row: `"auto"` when the window holds several task
   * labels, `true` always, `false` never. @default "auto"
   */
  perTask?: PerTask;
}

/**
 * Loss (`"loss"` rows; Avalanche's `Loss_*`): the sample-weighted mean of `ctx.loss` over each
 * window. In training, `ctx.loss` includes the terms plugins add (regularizers), as the loop's
 * own loss rows do. Per-task values of minibatches that mix task labels use the per-sample
 * cross-entropy of the outputs, since a batch-mean loss cannot be split.
 *
 * @example
 * ```ts
 * import { loss } from "./loss.ts";
 * const metric = loss({ at: ["minibatch", "epoch"] });
 * console.assert(metric.name === "loss");
 * ```
 */
export function loss(opts: LossOptions = {}): Metric {
  checkOptions("loss", opts, {
    ...GRANULARITY_OPTIONS,
    // Checked by perTaskOption, whose error names the three values.
    perTask: "any",
  });
  const windows = resolveWindows("loss", opts, ["epoch", "experience", "stream"]);
  const perTask = perTaskOption(opts.perTask);

  const update = (ctx: StrategyContext, sink: Sink) => {
    const batch = ctx.batch!;
    if (!ctx.loss) return;
    const n = batch.n;
    const total = tf.mul(ctx.loss, n);
    sink.host("n", n);
    sink.device("l", total);
    if (perTask === false) return;
    const split = new TaskSplit(batch.data.t, n);
    for (const [t, c] of split.counts()) sink.host(`n@${t}`, c);
    if (split.unique.length === 1) {
      sink.device(`l@${split.unique[0]}`, total);
      return;
    }
    const out = ctx.output!;
    const width = out.shape[out.rank - 1]!;
    const perSample = tf.neg(tf.sum(tf.mul(tf.oneHot(batch.y, width), tf.logSoftmax(out)), -1));
    for (const t of split.unique) sink.device(`l@${t}`, tf.sum(tf.mul(perSample, split.mask(t))));
  };

  const rows = (sums: HostSums, base: RowBase): MetricRow[] => {
    const n = sums.scalar("n");
    if (n === 0) return [];
    const out: MetricRow[] = [{ ...base, metric: "loss", value: sums.scalar("l") / n }];
    for (const t of splitRows(perTask, sums, "n")) {
      out.push({
        ...base,
        metric: "loss",
        task: t,
        value: sums.scalar(`l@${t}`) / sums.scalar(`n@${t}`),
      });
    }
    return out;
  };

  return additive({ name: "loss", windows, update, rows });
}
