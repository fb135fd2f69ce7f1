/**
 * The evaluator's own views: `evaluator.plot(kind)` and `evaluator.table(filter)`.
 *
 * The evaluation plugin (layer 6) cannot import the notebook layer (7), which draws. It exposes a
 * hook instead (`installEvaluatorViews`), which this module fills when it is loaded; `mod.ts` and
 * `lib/notebook/mod.ts` load it, so an evaluator built from either draws itself. The same views
 * are also plain functions ({@link plotEvaluator}, {@link evaluatorTable}) over any row source.
 *
 * @module
 */
import type { MetricRow } from "../data/rows.ts";
import { type EvaluationPlugin, installEvaluatorViews } from "../plugins/evaluation.ts";
import {
  accuracyCurves,
  accuracyMatrixHeatmap,
  confusionMatrixPlot,
  type ConfusionOptions,
  type CurveOptions,
  forgettingBars,
  type ForgettingOptions,
  type HeatmapOptions,
} from "./plots.ts";
import type { Figure } from "./render.ts";
import {
  type MetricTable,
  type RowFilter,
  rowsOf,
  type RowSource,
  table,
  type TableFormatOptions,
} from "./tables.ts";

/** The figures `evaluator.plot(kind)` draws. */
export type EvaluatorPlotKind = "curves" | "accuracyMatrix" | "forgetting" | "confusion" | "loss";

/** The kinds of {@link EvaluatorPlotKind}, in the order errors list them. */
export const EVALUATOR_PLOT_KINDS: readonly EvaluatorPlotKind[] = [
  "curves",
  "accuracyMatrix",
  "forgetting",
  "confusion",
  "loss",
];

/** Options of {@link plotEvaluator}: those of the chart the kind draws. */
export type EvaluatorPlotOptions =
  | CurveOptions
  | HeatmapOptions
  | ForgettingOptions
  | ConfusionOptions;

/**
 * The rows of the last confusion matrix among `rows`: those sharing the coordinates of the last
 * `confusionMatrix` row (stream, experience, task, evaluation).
 */
function lastConfusion(rows: readonly MetricRow[]): MetricRow[] {
  const cells = rows.filter((r) =>
    r.metric === "confusionMatrix" && r.class !== undefined && r.predicted !== undefined
  );
  const last = cells[cells.length - 1];
  if (!last) {
    throw new RangeError(
      `No confusion matrix rows: give the evaluator the confusionMatrix() metric`,
    );
  }
  const same = (r: MetricRow) =>
    r.phase === last.phase && r.stream === last.stream && r.experience === last.experience &&
    r.task === last.task && r.trainExperience === last.trainExperience &&
    r.iteration === last.iteration && r.epoch === last.epoch;
  return cells.filter(same);
}

function confusionOf(rows: readonly MetricRow[]): number[][] {
  const cells = lastConfusion(rows);
  let n = 0;
  for (const r of cells) n = Math.max(n, r.class! + 1, r.predicted! + 1);
  const m = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (const r of cells) m[r.class!][r.predicted!] = r.value;
  return m;
}

/**
 * A figure of a run's rows by kind (see `EvaluationPlugin.plot`): `"curves"`
 * ({@link accuracyCurves}), `"accuracyMatrix"` ({@link accuracyMatrixHeatmap}), `"forgetting"`
 * ({@link forgettingBars}), `"confusion"` (the last confusion matrix, {@link confusionMatrixPlot}),
 * `"loss"` (training loss per epoch; `phase: "eval"` for the evaluations').
 *
 * @example
 * ```ts
 * import { plotEvaluator } from "./evaluator.ts";
 * const base = { metric: "accuracy", phase: "eval", stream: "test", task: null, epoch: null,
 *   iteration: 10 } as const;
 * const rows = [
 *   { ...base, experience: 0, trainExperience: 0, value: 0.9 },
 *   { ...base, experience: 0, trainExperience: 1, value: 0.5 },
 *   { ...base, experience: 1, trainExperience: 1, value: 0.8 },
 * ];
 * console.assert(plotEvaluator(rows, "accuracyMatrix").svg.includes(">0.50<"));
 * ```
 */
export function plotEvaluator(
  source: RowSource,
  kind: EvaluatorPlotKind = "curves",
  options: EvaluatorPlotOptions = {},
): Figure {
  if (!EVALUATOR_PLOT_KINDS.includes(kind)) {
    throw new RangeError(
      `plot kind must be one of ${EVALUATOR_PLOT_KINDS.map((k) => `"${k}"`).join(", ")}, got ${
        JSON.stringify(kind)
      }`,
    );
  }
  const rows = rowsOf(source);
  switch (kind) {
    case "curves":
      return accuracyCurves(rows, options as CurveOptions);
    case "loss":
      return accuracyCurves(rows, { metric: "loss", phase: "train", ...options as CurveOptions });
    case "accuracyMatrix":
      return accuracyMatrixHeatmap(rows, options as HeatmapOptions);
    case "forgetting":
      return forgettingBars(rows, options as ForgettingOptions);
    case "confusion":
      return confusionMatrixPlot(confusionOf(rows), undefined, options as ConfusionOptions);
  }
}

/**
 * A run's rows as a table (see `EvaluationPlugin.table`): those passing `filter`, with empty
 * cells where a field does not apply and numbers at `decimals`; shows inline in Jupyter and
 * saves as CSV or HTML.
 *
 * @example
 * ```ts ignore
 * import { evaluatorTable } from "./evaluator.ts";
 * await evaluatorTable(evaluator, { metric: "accuracy", experience: null }).save("acc.csv");
 * ```
 */
export function evaluatorTable(
  source: RowSource,
  filter?: RowFilter,
  options: TableFormatOptions = {},
): MetricTable {
  return table(source, { ...options, ...(filter === undefined ? {} : { filter }) });
}

installEvaluatorViews({
  plot: (evaluator: EvaluationPlugin, kind?: string, options?: object) =>
    plotEvaluator(evaluator, kind as EvaluatorPlotKind, options as EvaluatorPlotOptions),
  table: (evaluator: EvaluationPlugin, filter?: RowFilter, options?: TableFormatOptions) =>
    evaluatorTable(evaluator, filter, options),
});
