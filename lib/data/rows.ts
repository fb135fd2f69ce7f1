/**
 * Long-form metric rows: one value with every coordinate that locates it, so that tables and
 * plots need no name parsing.
 *
 * @module
 */

/** Training or evaluation. */
export type Phase = "train" | "eval";

/** One metric value. Coordinates that do not apply are null. */
export interface MetricRow {
  /** Metric name, e.g. "accuracy", "loss". */
  metric: string;
  phase: Phase;
  /** Stream name, e.g. "train", "test". */
  stream: string;
  /** Experience id within the stream (null for stream-level values). */
  experience: number | null;
  /** Task label (null when not split by task). */
  task: number | null;
  /** Epoch within the experience being trained (train phase). */
  epoch: number | null;
  /** Global training iteration at which the value was taken. */
  iteration: number | null;
  /** How many training experiences had been completed when the value was taken, minus one (the row of the accuracy matrix); -1 before any training. */
  trainExperience: number;
  value: number;
  /**
   * Granularity of the value: one minibatch, one epoch, one experience or one stream (a whole
   * `train`/`eval` call). Set by the evaluation metrics; absent on the loop's own rows.
   */
  at?: "minibatch" | "epoch" | "experience" | "stream";
  /** The k of a top-k accuracy (metric "topKAccuracy"). */
  k?: number;
  /** Class label of a per-class value ("classAccuracy"), or true class of a confusion-matrix cell. */
  class?: number;
  /** Predicted class of a confusion-matrix cell ("confusionMatrix"). */
  predicted?: number;
}

/**
 * Which metric rows to keep: a predicate, or an object of row fields, each with the value a
 * row must have or a list of accepted values (`{ metric: "accuracy", phase: "eval" }`,
 * `{ experience: null }` for stream-level rows).
 */
export type RowFilter =
  | ((row: MetricRow) => boolean)
  | { readonly [K in keyof MetricRow]?: MetricRow[K] | readonly MetricRow[K][] };

/** Accuracy matrix from eval rows: `m[i][j]` = accuracy on experience j after training experience i. */
export function accuracyMatrix(rows: readonly MetricRow[], stream = "test"): number[][] {
  const m: number[][] = [];
  for (const r of rows) {
    if (r.metric !== "accuracy" || r.phase !== "eval" || r.stream !== stream) continue;
    if (r.experience === null || r.task !== null || r.trainExperience < 0) continue;
    (m[r.trainExperience] ??= [])[r.experience] = r.value;
  }
  return Array.from(m, (row) => Array.from(row ?? [], (v) => v ?? NaN));
}

/** Where the loop's own rows were taken (every coordinate but the metric and its value). */
export type RowCoordinates = Omit<
  MetricRow,
  "metric" | "value" | "at" | "k" | "class" | "predicted"
>;

/**
 * One row per entry of `values` (metric name → value, in that order), all at `where`.
 *
 * @example
 * ```ts
 * import { metricRows } from "./rows.ts";
 * const where = {
 *   phase: "eval", stream: "test", experience: 0, task: null, epoch: null, iteration: 10,
 *   trainExperience: 0,
 * } as const;
 * const rows = metricRows(where, { accuracy: 0.9, loss: 0.3 });
 * console.assert(rows.length === 2 && rows[0].metric === "accuracy" && rows[1].value === 0.3);
 * ```
 */
export function metricRows(where: RowCoordinates, values: Record<string, number>): MetricRow[] {
  return Object.entries(values).map(([metric, value]) => ({
    metric,
    phase: where.phase,
    stream: where.stream,
    experience: where.experience,
    task: where.task,
    epoch: where.epoch,
    iteration: where.iteration,
    trainExperience: where.trainExperience,
    value,
  }));
}
