/**
 * Accuracy metrics: top-1, top-k, per class, and on the classes seen in training so far. Counts
 * are accumulated on the device and read back once per reported window.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { StrategyContext } from "../strategy/context.ts";
import {
  addByTask,
  additive,
  type HostSums,
  type PerTask,
  perTaskOption,
  type Sink,
  splitRows,
  TaskSplit,
} from "./_accumulate.ts";
import {
  GRANULARITY_OPTIONS,
  type GranularityOptions,
  type Metric,
  resolveWindows,
  type RowBase,
} from "./metric.ts";
import { checkOptions } from "../options.ts";
import type { MetricRow } from "../data/rows.ts";

/** Options of {@link accuracy}. */
export interface AccuracyOptions extends GranularityOptions {
  /** What each value covers. @default ["epoch", "experience", "stream"] */
  at?: GranularityOptions["at"];
  /**
   * Also report top-k accuracy (rows `"topKAccuracy"` with field `k`): a sample counts as correct
   * when its label is among the k largest outputs.
   */
  topK?: number;
  /** Also report the accuracy of each class (rows `"classAccuracy"` with field `class`). @default false */
  perClass?: boolean;
  /**
   * Also report the accuracy on the samples whose class was in a training experience so far
   * (rows `"seenClassesAccuracy"`; windows with no such sample give no row). @default false
   */
  seenClasses?: boolean;
  /**
   * Rows per task label (field `task`) besides the overall row (`task: null`): `"auto"` when
   * the window's samples carry more than one task label, `true` always, `false` never.
   * @default "auto"
   */
  perTask?: PerTask;
}

/**
 * Accuracy: the share of samples whose largest output is their label, per minibatch, epoch,
 * experience or stream (`"accuracy"` rows; Avalanche's `Top1_Acc_*`).
 *
 * @example Epoch, experience and stream accuracy, and top-5 accuracy
 * ```ts
 * import { accuracy } from "./accuracy.ts";
 * const metric = accuracy({ at: ["epoch", "experience", "stream"], topK: 5 });
 * console.assert(metric.name === "accuracy");
 * ```
 */
export function accuracy(opts: AccuracyOptions = {}): Metric {
  checkOptions("accuracy", opts, {
    ...GRANULARITY_OPTIONS,
    topK: "integer",
    perClass: "boolean",
    seenClasses: "boolean",
    // Checked by perTaskOption, whose error names the three values.
    perTask: "any",
  });
  const windows = resolveWindows("accuracy", opts, ["epoch", "experience", "stream"]);
  const perTask = perTaskOption(opts.perTask);
  const k = opts.topK;
  if (k !== undefined && (!Number.isInteger(k) || k < 1)) {
    throw new RangeError(`accuracy topK must be an integer ≥ 1, got ${k}`);
  }
  const perClass = opts.perClass === true;
  const seenClasses = opts.seenClasses === true;
  const seen = new Set<number>();

  const update = (ctx: StrategyContext, sink: Sink) => {
    const batch = ctx.batch!;
    const out = ctx.output!;
    const n = batch.n;
    const y = batch.y;
    const split = perTask === false ? undefined : new TaskSplit(batch.data.t, n);
    sink.host("n", n);
    if (split) { for (const [t, c] of split.counts()) sink.host(`n@${t}`, c); }
    const correct = tf.cast(tf.equal(tf.argMax(out, -1), y), "float32") as tf.Tensor1D;
    addByTask(sink, "c", correct, split);
    if (k !== undefined && k > 1) {
      const width = out.shape[out.rank - 1]!;
      const top = tf.topk(out as tf.Tensor2D, Math.min(k, width)).indices;
      const hit = tf.cast(tf.any(tf.equal(top, tf.expandDims(y, 1)), 1), "float32");
      addByTask(sink, "k", hit, split);
    }
    if (perClass) {
      const width = out.shape[out.rank - 1]!;
      const labels = batch.data.y;
      const counts = new Float64Array(width);
      for (let i = 0; i < n; i++) counts[labels[i]]++;
      sink.host("nc", counts);
      const onehot = tf.oneHot(y, width);
      sink.device("cc", tf.sum(tf.mul(onehot, tf.expandDims(correct, 1)), 0));
    }
    if (seenClasses && seen.size > 0) {
      const labels = batch.data.y;
      const mask = new Float32Array(n);
      let count = 0;
      for (let i = 0; i < n; i++) {
        if (seen.has(labels[i])) {
          mask[i] = 1;
          count++;
        }
      }
      if (count > 0) {
        sink.host("ns", count);
        sink.device("cs", count === n ? tf.sum(correct) : tf.sum(tf.mul(correct, mask)));
      }
    }
  };

  const rows = (sums: HostSums, base: RowBase): MetricRow[] => {
    const n = sums.scalar("n");
    if (n === 0) return [];
    const out: MetricRow[] = [{ ...base, metric: "accuracy", value: sums.scalar("c") / n }];
    const tasks = splitRows(perTask, sums, "n");
    for (const t of tasks) {
      out.push({
        ...base,
        metric: "accuracy",
        task: t,
        value: sums.scalar(`c@${t}`) / sums.scalar(`n@${t}`),
      });
    }
    if (k !== undefined) {
      const key = k > 1 ? "k" : "c";
      out.push({ ...base, metric: "topKAccuracy", k, value: sums.scalar(key) / n });
      for (const t of tasks) {
        out.push({
          ...base,
          metric: "topKAccuracy",
          k,
          task: t,
          value: sums.scalar(`${key}@${t}`) / sums.scalar(`n@${t}`),
        });
      }
    }
    if (perClass) {
      const counts = sums.get("nc")?.data ?? new Float64Array();
      const correct = sums.get("cc")?.data ?? new Float64Array();
      for (let c = 0; c < counts.length; c++) {
        if (counts[c] > 0) {
          out.push({ ...base, metric: "classAccuracy", class: c, value: correct[c] / counts[c] });
        }
      }
    }
    if (seenClasses) {
      const ns = sums.scalar("ns");
      if (ns > 0) {
        out.push({ ...base, metric: "seenClassesAccuracy", value: sums.scalar("cs") / ns });
      }
    }
    return out;
  };

  return additive({
    name: "accuracy",
    windows,
    update,
    rows,
    extra: seenClasses
      ? {
        beforeTrainingExp(ctx) {
          for (const c of ctx.experience?.classes ?? []) seen.add(c);
        },
      }
      : undefined,
    state: seenClasses ? () => ({ seen: [...seen].sort((a, b) => a - b) }) : undefined,
    loadState: seenClasses
      ? (s) => {
        seen.clear();
        for (const c of (s as { seen?: number[] })?.seen ?? []) seen.add(c);
      }
      : undefined,
  });
}
