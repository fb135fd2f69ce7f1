/**
 * The notebook layer: charts (Observable Plot → SVG/PNG), tables (danfo DataFrames rendered as
 * HTML) and Jupyter display helpers, all fed by long-form metric rows.
 *
 * @example A run in a Deno Jupyter notebook
 * ```ts ignore
 * import { accuracyCurves, accuracyMatrixHeatmap, summaryTable } from "./mod.ts";
 * accuracyCurves(strategy); // renders inline as the cell's value
 * accuracyMatrixHeatmap(strategy).save("matrix.png");
 * summaryTable([naiveRun, ewcRun]); // an HTML table that is also a danfo DataFrame
 * ```
 *
 * @module
 */
export {
  display,
  type Displayable,
  type DisplayOptions,
  isJupyter,
  JUPYTER_DISPLAY,
  type MediaBundle,
} from "./display.ts";
export {
  type Decorations,
  type Figure,
  figure,
  type LegendEntry,
  loadResvg,
  PNG_SIGNATURE,
  type PNGOptions,
  renderPlot,
  svgToPNG,
} from "./render.ts";
export {
  accuracyCurves,
  accuracyMatrixHeatmap,
  type ChartOptions,
  type CompareOptions,
  compareRuns,
  confusionMatrixPlot,
  type ConfusionOptions,
  type CurveOptions,
  type CurveX,
  forgettingBars,
  type ForgettingOptions,
  type HeatmapOptions,
  PALETTE,
} from "./plots.ts";
export {
  EVALUATOR_PLOT_KINDS,
  type EvaluatorPlotKind,
  type EvaluatorPlotOptions,
  evaluatorTable,
  plotEvaluator,
} from "./evaluator.ts";
export { liveCurves, type LiveCurvesOptions, LiveCurvesPlugin, type LiveDisplay } from "./live.ts";
export {
  type Danfo,
  type DataFrame,
  filterRows,
  forgettingPerExperience,
  type FrameLike,
  loadDanfo,
  type Matrix,
  type MetricTable,
  type NamedRun,
  ROW_COLUMNS,
  type RowFilter,
  rowsFrom,
  type RowSource,
  type RunSummary,
  runSummary,
  saveTable,
  summaryTable,
  table,
  type TableFormatOptions,
  type TableOptions,
  toCSV,
  toHTML,
  toText,
} from "./tables.ts";
