/**
 * Charts of a continual-learning run, drawn with Observable Plot from long-form metric rows:
 * accuracy curves, the accuracy matrix, forgetting, confusion matrices and run comparisons.
 * Each returns a {@link Figure} (SVG that shows inline in Jupyter, `toPNG`, `save`).
 *
 * @module
 */
import * as Plot from "@observablehq/plot";
import type { MetricRow, Phase } from "../data/rows.ts";
import { type Figure, type LegendEntry, legendWidth, renderPlot } from "./render.ts";
import {
  forgettingPerExperience,
  groupFieldOf,
  type Matrix,
  matrixOf,
  meanStd,
  type NamedRun,
  rowsOf,
  type RowSource,
  runSummary,
} from "./tables.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";

/** Size and title, shared by every chart. */
export interface ChartOptions {
  /** Width in pixels. @default 640 (480 for matrices) */
  width?: number;
  /** Height in pixels. @default 400 (440 for matrices) */
  height?: number;
  /** Title drawn in the top-left corner. @default none */
  title?: string;
}

/** The keys of {@link ChartOptions}, which every chart checks with its own. */
const CHART_OPTIONS: OptionSpec<ChartOptions> = {
  width: "number",
  height: "number",
  title: "string",
};

/** Observable's ten categorical colours, in order. */
export const PALETTE: readonly string[] = [
  "#4269d0",
  "#efb118",
  "#ff725c",
  "#6cc5b0",
  "#3ca951",
  "#ff8ab7",
  "#a463f2",
  "#97bbf5",
  "#9c6b4e",
  "#9498a0",
];

const MAX_LEGEND = 20;

/** `n` distinct colours: {@link PALETTE} up to ten, else samples of the turbo scheme. */
export function colors(n: number): string[] {
  if (n <= PALETTE.length) return PALETTE.slice(0, n);
  const scale = Plot.scale({ color: { type: "linear", scheme: "turbo", domain: [-1, n] } });
  return Array.from({ length: n }, (_, i) => String(scale.apply(i)));
}

function keyword<T extends string>(value: T, name: string, allowed: readonly T[]): T {
  if (!allowed.includes(value)) {
    throw new RangeError(
      `${name} must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, got "${value}"`,
    );
  }
  return value;
}

function size(options: ChartOptions, width: number, height: number): [number, number] {
  const w = options.width ?? width;
  const h = options.height ?? height;
  for (const [name, v] of [["width", w], ["height", h]] as const) {
    if (!Number.isFinite(v) || v < 50) {
      throw new RangeError(`${name} must be a number ≥ 50, got ${v}`);
    }
  }
  return [w, h];
}

function layout(options: ChartOptions, legend: readonly LegendEntry[], w = 640, h = 400) {
  const [width, height] = size(options, w, h);
  return {
    width,
    height,
    marginTop: 30,
    marginRight: legend.length ? legendWidth(legend.map((e) => e.label)) : 20,
    marginBottom: 40,
    marginLeft: 50,
  };
}

function capLegend(entries: LegendEntry[]): LegendEntry[] {
  if (entries.length <= MAX_LEGEND) return entries;
  const more = entries.length - (MAX_LEGEND - 1);
  return [...entries.slice(0, MAX_LEGEND - 1), { label: `+${more} more`, color: "none" }];
}

/** Distinct sorted integers of `xs` when there are few enough to tick each one. */
function integerTicks(xs: readonly number[]): number[] | undefined {
  const distinct = [...new Set(xs)].sort((a, b) => a - b);
  return distinct.length <= 20 && distinct.every(Number.isInteger) ? distinct : undefined;
}

/** True for rows of one experience or stream, not broken down by task or class. */
function plain(r: MetricRow): boolean {
  return r.task === null && (r as { class?: unknown }).class == null;
}

type Granularity = "minibatch" | "epoch" | "experience" | "stream";

/** A row's `at`, else inferred from its coordinates (the training loop's own rows). */
function granularity(r: MetricRow): Granularity {
  const at = (r as { at?: Granularity }).at;
  if (at) return at;
  if (r.phase === "train" && r.epoch !== null) return "epoch";
  return r.experience !== null ? "experience" : "stream";
}

function fmt(v: number, decimals: number): string {
  return Number.isFinite(v) ? v.toFixed(decimals) : "";
}

// ----------------------------------------------------------------- accuracy curves ----

/** Training progress on the x axis of {@link accuracyCurves}. */
export type CurveX = "auto" | "iteration" | "trainExperience" | "epoch";

/** Options of {@link accuracyCurves}. */
export interface CurveOptions extends ChartOptions {
  /** Metric to draw ("accuracy", "loss", or any metric name in the rows). @default "accuracy" */
  metric?: string;
  /** Evaluation curves, or training curves (one point per epoch). @default "eval" */
  phase?: Phase;
  /** Stream of the rows. @default "test" for eval, "train" for train */
  stream?: string;
  /**
   * x axis: `"trainExperience"` (experiences trained), `"iteration"` (global training
   * iteration), `"epoch"` (epochs trained, counted over the run). `"auto"` picks
   * trainExperience for evaluations after each experience, iteration for periodic ones, and
   * epoch for training curves. @default "auto"
   */
  x?: CurveX;
  /** Draw the stream average (eval only; the stream-level row, else the mean). @default true */
  average?: boolean;
}

const X_LABELS: Record<Exclude<CurveX, "auto">, string> = {
  trainExperience: "Trained experience",
  iteration: "Training iteration",
  epoch: "Epoch",
};

interface Point {
  x: number;
  y: number;
  series: string;
}

function epochIndex(rows: readonly MetricRow[]): Map<string, number> {
  const pairs = [...new Set(rows.map((r) => `${r.trainExperience}:${r.epoch}`))];
  const parsed = pairs.map((p) => p.split(":").map(Number) as [number, number]);
  parsed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return new Map(parsed.map(([t, e], i) => [`${t}:${e}`, i]));
}

function chooseX(
  rows: readonly MetricRow[],
  phase: Phase,
  at: readonly Granularity[],
): Exclude<CurveX, "auto"> {
  if (phase === "train") {
    return at.includes("epoch") && rows.every((r) => r.epoch !== null) ? "epoch" : "iteration";
  }
  // Several evaluations after the same experience at different iterations: periodic evaluation.
  const iterations = new Map<string, number | null>();
  for (const r of rows) {
    const key = `${r.experience}:${r.trainExperience}`;
    if (iterations.has(key) && iterations.get(key) !== r.iteration) {
      return rows.every((r) => r.iteration !== null) ? "iteration" : "trainExperience";
    }
    iterations.set(key, r.iteration);
  }
  return "trainExperience";
}

/** Points sorted by x, one per (series, x): a later row replaces an earlier duplicate. */
function dedupe(points: readonly Point[]): Point[] {
  const byKey = new Map<string, Point>();
  for (const p of points) {
    const key = `${p.series}\u0000${p.x}`;
    byKey.delete(key);
    byKey.set(key, p);
  }
  return [...byKey.values()].sort((a, b) => a.x - b.x);
}

/**
 * Curves of a metric against training progress: for evaluations, one line per test experience
 * (coloured) plus the stream average (black, dashed); for training (`phase: "train"`), one
 * line per training experience with a point per epoch.
 *
 * @example Accuracy on each experience as training goes on
 * ```ts
 * import { accuracyCurves } from "./plots.ts";
 * const row = (trainExperience: number, experience: number | null, value: number) => ({
 *   metric: "accuracy", phase: "eval" as const, stream: "test", experience, task: null,
 *   epoch: null, iteration: 10 * (trainExperience + 1), trainExperience, value,
 * });
 * const rows = [
 *   row(0, 0, 0.9), row(0, 1, 0.1), row(0, null, 0.5),
 *   row(1, 0, 0.6), row(1, 1, 0.8), row(1, null, 0.7),
 * ];
 * const fig = accuracyCurves(rows, { title: "Naive" });
 * console.assert(fig.svg.includes("Naive"));
 * ```
 */
export function accuracyCurves(source: RowSource, options: CurveOptions = {}): Figure {
  checkOptions("accuracyCurves", options, {
    ...CHART_OPTIONS,
    metric: "string",
    phase: oneOf("train", "eval"),
    stream: "string",
    x: oneOf("auto", "iteration", "trainExperience", "epoch"),
    average: "boolean",
  });
  const metric = options.metric ?? "accuracy";
  if (typeof metric !== "string" || metric === "") {
    throw new TypeError(`metric must be a non-empty string, got ${JSON.stringify(metric)}`);
  }
  const phase = keyword(options.phase ?? "eval", "phase", ["eval", "train"]);
  const stream = options.stream ?? (phase === "eval" ? "test" : "train");
  const xOpt = keyword(options.x ?? "auto", "x", ["auto", "iteration", "trainExperience", "epoch"]);
  const all = rowsOf(source);
  const matching = all.filter((r) =>
    r.metric === metric && r.phase === phase && r.stream === stream && plain(r)
  );
  // Eval: per-experience and stream values. Train: per-epoch values, else per-minibatch ones.
  const wanted: Granularity[] = phase === "eval"
    ? ["experience", "stream"]
    : matching.some((r) => granularity(r) === "epoch")
    ? ["epoch"]
    : ["minibatch"];
  const rows = matching.filter((r) => wanted.includes(granularity(r)));
  if (rows.length === 0) {
    const have = [...new Set(all.map((r) => `${r.phase}/${r.stream}/${r.metric}`))].sort();
    throw new RangeError(
      `No ${phase} rows of "${metric}" on stream "${stream}"; rows have ${
        have.length ? have.join(", ") : "nothing"
      }`,
    );
  }
  const x = xOpt === "auto" ? chooseX(rows, phase, wanted) : xOpt;
  const epochs = x === "epoch" ? epochIndex(rows.filter((r) => r.epoch !== null)) : undefined;
  const xOf = (r: MetricRow): number | null =>
    x === "trainExperience"
      ? r.trainExperience
      : x === "iteration"
      ? r.iteration
      : r.epoch === null
      ? null
      : epochs!.get(`${r.trainExperience}:${r.epoch}`)!;
  let perExp: Point[] = [];
  const stored: Point[] = [];
  for (const r of rows) {
    const px = xOf(r);
    if (px === null) continue;
    if (r.experience === null) stored.push({ x: px, y: r.value, series: "average" });
    else perExp.push({ x: px, y: r.value, series: `exp ${r.experience}` });
  }
  if (perExp.length === 0 && stored.length === 0) {
    throw new RangeError(`No ${phase} rows of "${metric}" have a value for x = "${x}"`);
  }
  const ids = [...new Set(rows.filter((r) => r.experience !== null).map((r) => r.experience!))]
    .sort((a, b) => a - b);
  const names = ids.map((e) => `exp ${e}`);
  const palette = colors(names.length);
  perExp = dedupe(perExp);
  let average: Point[] = [];
  if (phase === "eval" && (options.average ?? true)) {
    if (stored.length) {
      average = dedupe(stored);
    } else {
      const byX = Map.groupBy(perExp, (p) => p.x);
      average = [...byX].map(([px, ps]) => ({
        x: px,
        y: ps.reduce((s, p) => s + p.y, 0) / ps.length,
        series: "average",
      }));
    }
  }
  const legend = capLegend([
    ...names.map((label, i) => ({ label, color: palette[i] })),
    ...(average.length ? [{ label: "average", color: "black", shape: "dashed" as const }] : []),
  ]);
  const frame = layout(options, legend);
  const xs = [...perExp, ...average].map((p) => p.x);
  const accuracy = metric.toLowerCase().includes("acc");
  const label = metric[0].toUpperCase() + metric.slice(1);
  const ticks = x === "iteration" ? undefined : integerTicks(xs);
  return renderPlot({
    ...frame,
    x: { label: X_LABELS[x], ...(ticks ? { ticks, tickFormat: "d" } : {}) },
    y: accuracy ? { label, domain: [0, 1], grid: true } : { label, grid: true, zero: true },
    color: { type: "ordinal", domain: names, range: palette },
    marks: [
      Plot.line(perExp, { x: "x", y: "y", z: "series", stroke: "series", strokeWidth: 1.5 }),
      Plot.dot(perExp, { x: "x", y: "y", fill: "series", r: 2.5 }),
      ...(average.length
        ? [
          Plot.line(average, {
            x: "x",
            y: "y",
            stroke: "black",
            strokeWidth: 2,
            strokeDasharray: "4,3",
          }),
        ]
        : []),
    ],
  }, { label: `${phase} ${metric} curves`, title: options.title, legend });
}

// --------------------------------------------------------------------- the matrices ----

/** Options of {@link accuracyMatrixHeatmap}. */
export interface HeatmapOptions extends ChartOptions {
  /** Stream of the eval rows. @default "test" */
  stream?: string;
  /** Decimals of the values written in the cells. @default 2 */
  decimals?: number;
  /** Write values in the cells. @default true up to 20 columns */
  text?: boolean;
}

interface Cell {
  x: string;
  y: string;
  v: number;
  label: string;
}

function cellMarks(cells: Cell[], domain: [number, number], text: boolean): Plot.Markish[] {
  const dark = (c: Cell) => (c.v - domain[0]) / (domain[1] - domain[0] || 1) > 0.6;
  const marks: Plot.Markish[] = [Plot.cell(cells, { x: "x", y: "y", fill: "v", inset: 0.5 })];
  if (text) {
    marks.push(
      Plot.text(cells.filter((c) => !dark(c)), { x: "x", y: "y", text: "label", fill: "black" }),
      Plot.text(cells.filter(dark), { x: "x", y: "y", text: "label", fill: "white" }),
    );
  }
  return marks;
}

function checkDecimals(d: number): number {
  if (!Number.isInteger(d) || d < 0 || d > 10) {
    throw new RangeError(`decimals must be an integer from 0 to 10, got ${d}`);
  }
  return d;
}

/**
 * The accuracy matrix as a heatmap: row i = after training experience i, column j = test
 * experience j, each cell with its value written in it.
 *
 * @example
 * ```ts
 * import { accuracyMatrixHeatmap } from "./plots.ts";
 * const fig = accuracyMatrixHeatmap([[0.9, 0.1], [0.6, 0.8]]);
 * console.assert(fig.svg.includes(">0.60<"));
 * ```
 */
export function accuracyMatrixHeatmap(
  source: RowSource | Matrix,
  options: HeatmapOptions = {},
): Figure {
  checkOptions("accuracyMatrixHeatmap", options, {
    ...CHART_OPTIONS,
    stream: "string",
    decimals: "integer",
    text: "boolean",
  });
  const m = matrixOf(source, options.stream ?? "test");
  if (m.length === 0) {
    throw new RangeError(
      `No accuracy matrix on stream "${options.stream ?? "test"}": no eval rows`,
    );
  }
  const decimals = checkDecimals(options.decimals ?? 2);
  const cols = Math.max(...m.map((r) => r.length));
  const cells: Cell[] = [];
  m.forEach((row, i) =>
    row.forEach((v, j) => {
      if (Number.isFinite(v)) cells.push({ x: `${j}`, y: `${i}`, v, label: fmt(v, decimals) });
    })
  );
  const values = cells.map((c) => c.v);
  const domain: [number, number] = [Math.min(0, ...values), Math.max(1, ...values)];
  const frame = layout(options, [], 480, 440);
  return renderPlot({
    ...frame,
    x: { label: "Evaluated on experience", domain: Array.from({ length: cols }, (_, j) => `${j}`) },
    y: { label: "After training experience", domain: m.map((_, i) => `${i}`) },
    color: { type: "linear", scheme: "blues", domain },
    marks: cellMarks(cells, domain, options.text ?? cols <= 20),
  }, { label: `accuracy matrix ${m.length}×${cols}`, title: options.title });
}

/** Options of {@link confusionMatrixPlot}. */
export interface ConfusionOptions extends ChartOptions {
  /** Divide each row by its total (recall per true class). @default false */
  normalize?: boolean;
  /** Decimals of normalized values. @default 2 */
  decimals?: number;
  /** Write values in the cells. @default true up to 20 classes */
  text?: boolean;
}

/**
 * A confusion matrix: `matrix[t][p]` = samples of true class t predicted as p; `labels` name
 * the classes (default: their indices).
 *
 * @example
 * ```ts
 * import { confusionMatrixPlot } from "./plots.ts";
 * const fig = confusionMatrixPlot([[8, 2], [1, 9]], ["cat", "dog"]);
 * console.assert(fig.svg.includes(">cat<"));
 * ```
 */
export function confusionMatrixPlot(
  matrix: Matrix,
  labels?: readonly (string | number)[],
  options: ConfusionOptions = {},
): Figure {
  checkOptions("confusionMatrixPlot", options, {
    ...CHART_OPTIONS,
    normalize: "boolean",
    decimals: "integer",
    text: "boolean",
  });
  const n = matrix.length;
  if (n === 0 || matrix.some((r) => !Array.isArray(r) || r.length !== n)) {
    throw new RangeError(
      `A confusion matrix must be square and non-empty, got ${n} rows of lengths ${
        matrix.map((r) => r?.length).join(", ")
      }`,
    );
  }
  const names = (labels ?? matrix.map((_, i) => i)).map(String);
  if (names.length !== n) {
    throw new RangeError(`Got ${names.length} labels for a ${n}×${n} confusion matrix`);
  }
  if (new Set(names).size !== n) {
    throw new RangeError(`Confusion matrix labels must be distinct, got ${names.join(", ")}`);
  }
  const normalize = options.normalize ?? false;
  const decimals = checkDecimals(options.decimals ?? 2);
  const cells: Cell[] = [];
  matrix.forEach((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((count, p) => {
      const v = normalize ? (total > 0 ? count / total : 0) : count;
      const label = normalize || !Number.isInteger(v) ? fmt(v, decimals) : String(v);
      cells.push({ x: names[p], y: names[t], v, label });
    });
  });
  const domain: [number, number] = [0, Math.max(normalize ? 1 : 1, ...cells.map((c) => c.v))];
  const frame = layout(options, [], 480, 440);
  return renderPlot({
    ...frame,
    x: { label: "Predicted", domain: names },
    y: { label: "True", domain: names },
    color: { type: "linear", scheme: "blues", domain },
    marks: cellMarks(cells, domain, options.text ?? n <= 20),
  }, { label: `confusion matrix ${n}×${n}`, title: options.title });
}

// ----------------------------------------------------------------------- forgetting ----

/** Options of {@link forgettingBars}. */
export interface ForgettingOptions extends ChartOptions {
  /** Stream of the eval rows. @default "test" */
  stream?: string;
}

/**
 * Forgetting of each experience at the end of the run (best earlier accuracy − final
 * accuracy, see {@link forgettingPerExperience}) as bars, with their mean as a dashed rule.
 *
 * @example
 * ```ts
 * import { forgettingBars } from "./plots.ts";
 * const fig = forgettingBars([[0.9, 0.1, 0], [0.6, 0.8, 0.1], [0.5, 0.7, 0.9]]);
 * console.assert(fig.svg.includes(">0.400<"));
 * ```
 */
export function forgettingBars(
  source: RowSource | Matrix,
  options: ForgettingOptions = {},
): Figure {
  checkOptions("forgettingBars", options, { ...CHART_OPTIONS, stream: "string" });
  const m = matrixOf(source, options.stream ?? "test");
  if (m.length < 2) {
    throw new RangeError(
      `Forgetting needs evaluations after at least 2 training experiences, got ${m.length}`,
    );
  }
  const data = forgettingPerExperience(m)
    .map((f, j) => ({ experience: `${j}`, f, label: fmt(f, 3) }))
    .filter((d) => Number.isFinite(d.f));
  const avg = data.reduce((a, d) => a + d.f, 0) / data.length;
  const legend: LegendEntry[] = data.length
    ? [{ label: "forgetting", color: PALETTE[0], shape: "square" }, {
      label: `mean ${fmt(avg, 3)}`,
      color: "black",
      shape: "dashed",
    }]
    : [];
  const frame = layout(options, legend);
  return renderPlot({
    ...frame,
    x: { label: "Experience", domain: m.slice(0, -1).map((_, j) => `${j}`) },
    y: { label: "Forgetting", grid: true, zero: true },
    marks: [
      Plot.barY(data, { x: "experience", y: "f", fill: PALETTE[0] }),
      Plot.text(data.filter((d) => d.f >= 0), {
        x: "experience",
        y: "f",
        text: "label",
        dy: -7,
        fill: "currentColor",
      }),
      Plot.text(data.filter((d) => d.f < 0), {
        x: "experience",
        y: "f",
        text: "label",
        dy: 9,
        fill: "currentColor",
      }),
      Plot.ruleY([0]),
      ...(data.length ? [Plot.ruleY([avg], { stroke: "black", strokeDasharray: "4,3" })] : []),
    ],
  }, { label: "forgetting per experience", title: options.title, legend });
}

// --------------------------------------------------------------------- comparisons ----

/** Options of {@link compareRuns}. */
export interface CompareOptions extends ChartOptions {
  /**
   * `"curves"`: average accuracy after each training experience, one line per run;
   * `"bars"`: one bar per run of `stat` at the end. @default "curves"
   */
  kind?: "curves" | "bars";
  /** What the bars show. @default "accuracy" (final average accuracy) */
  stat?: "accuracy" | "forgetting" | "bwt";
  /**
   * Which experiences the curves average: those trained so far (`"seen"`, the usual
   * average accuracy A_k) or every evaluated one (`"all"`). @default "seen"
   */
  average?: "seen" | "all";
  /** Stream of the eval rows. @default "test" */
  stream?: string;
  /**
   * Group the runs by these fields (`"label"`, `"strategy"`, a sweep setting such as
   * `"params.memSize"`) and draw each group's mean with a ± one standard deviation band (curves)
   * or error bar (bars), over its runs (seeds, usually). Without it, one line or bar per run.
   */
  by?: readonly string[];
}

function runNames(runs: readonly NamedRun[]): string[] {
  const count = new Map<string, number>();
  return runs.map((r) => {
    const name = String(r.name);
    const k = (count.get(name) ?? 0) + 1;
    count.set(name, k);
    return k === 1 ? name : `${name} (${k})`;
  });
}

/**
 * Several runs (strategies) side by side: average accuracy curves over the experiences, or
 * bars of final accuracy, forgetting or BWT. Strategies can be passed directly: they have a
 * `name` and `rows`.
 *
 * @example
 * ```ts
 * import { compareRuns } from "./plots.ts";
 * const row = (trainExperience: number, experience: number, value: number) => ({
 *   metric: "accuracy", phase: "eval" as const, stream: "test", experience, task: null,
 *   epoch: null, iteration: null, trainExperience, value,
 * });
 * const naive = { name: "Naive", rows: [row(0, 0, 0.9), row(1, 0, 0.2), row(1, 1, 0.9)] };
 * const replay = { name: "Replay", rows: [row(0, 0, 0.9), row(1, 0, 0.7), row(1, 1, 0.8)] };
 * const fig = compareRuns([naive, replay], { kind: "bars" });
 * console.assert(fig.svg.includes(">0.750<"));
 * ```
 */
export function compareRuns(runs: readonly NamedRun[], options: CompareOptions = {}): Figure {
  checkOptions("compareRuns", options, {
    ...CHART_OPTIONS,
    // kind and average: checked below by keyword(), whose message says "one of".
    kind: "string",
    stat: oneOf("accuracy", "forgetting", "bwt"),
    average: "string",
    stream: "string",
    by: "array",
  });
  if (!Array.isArray(runs) || runs.length === 0) {
    throw new RangeError("compareRuns needs a non-empty array of runs ({ name, rows })");
  }
  if (options.by) return compareGroups(runs, options);
  const kind = keyword(options.kind ?? "curves", "kind", ["curves", "bars"]);
  const stat = keyword(options.stat ?? "accuracy", "stat", ["accuracy", "forgetting", "bwt"]);
  const avgOf = keyword(options.average ?? "seen", "average", ["seen", "all"]);
  const stream = options.stream ?? "test";
  const names = runNames(runs);
  const palette = colors(names.length);
  const matrices = runs.map((r) => matrixOf(rowsOf(r), stream));
  if (kind === "bars") {
    const key = stat === "accuracy" ? "finalAccuracy" : stat;
    const data = matrices.map((m, i) => {
      const v = runSummary(m)[key];
      return { run: names[i], v, label: fmt(v, 3) };
    });
    const shown = data.filter((d) => Number.isFinite(d.v));
    const frame = layout(options, []);
    const yLabel = { accuracy: "Final average accuracy", forgetting: "Forgetting", bwt: "BWT" }[
      stat
    ];
    return renderPlot({
      ...frame,
      x: { label: null, domain: names },
      y: stat === "accuracy"
        ? { label: yLabel, domain: [0, 1], grid: true }
        : { label: yLabel, grid: true, zero: true },
      color: { type: "ordinal", domain: names, range: palette },
      marks: [
        Plot.barY(shown, { x: "run", y: "v", fill: "run" }),
        Plot.text(shown.filter((d) => d.v >= 0), {
          x: "run",
          y: "v",
          text: "label",
          dy: -7,
          fill: "currentColor",
        }),
        Plot.text(shown.filter((d) => d.v < 0), {
          x: "run",
          y: "v",
          text: "label",
          dy: 9,
          fill: "currentColor",
        }),
        Plot.ruleY([0]),
      ],
    }, { label: `${stat} by run`, title: options.title });
  }
  const points: Point[] = [];
  matrices.forEach((m, r) =>
    m.forEach((row, i) => {
      const vals = (avgOf === "seen" ? row.slice(0, i + 1) : row).filter(Number.isFinite);
      if (vals.length) {
        points.push({ x: i, y: vals.reduce((a, b) => a + b, 0) / vals.length, series: names[r] });
      }
    })
  );
  if (points.length === 0) {
    throw new RangeError(`No run has eval accuracy rows on stream "${stream}"`);
  }
  const legend = capLegend(names.map((label, i) => ({ label, color: palette[i] })));
  const frame = layout(options, legend);
  const ticks = integerTicks(points.map((p) => p.x));
  return renderPlot({
    ...frame,
    x: { label: X_LABELS.trainExperience, ...(ticks ? { ticks, tickFormat: "d" } : {}) },
    y: { label: "Average accuracy", domain: [0, 1], grid: true },
    color: { type: "ordinal", domain: names, range: palette },
    marks: [
      Plot.line(points, { x: "x", y: "y", z: "series", stroke: "series", strokeWidth: 2 }),
      Plot.dot(points, { x: "x", y: "y", fill: "series", r: 3 }),
    ],
  }, { label: "average accuracy by run", title: options.title, legend });
}

/** The mean and a ± one std range of the finite values (no spread for one value). */
function band(values: readonly number[]): { mean: number; lo: number; hi: number; n: number } {
  const { mean, std } = meanStd(values);
  const spread = Number.isFinite(std) ? std : 0;
  return { mean, lo: mean - spread, hi: mean + spread, n: values.filter(Number.isFinite).length };
}

/** {@link compareRuns} with `by`: each group's mean, with a ± one std band or error bar. */
function compareGroups(runs: readonly NamedRun[], options: CompareOptions): Figure {
  const by = options.by!;
  const kind = keyword(options.kind ?? "curves", "kind", ["curves", "bars"]);
  const stat = keyword(options.stat ?? "accuracy", "stat", ["accuracy", "forgetting", "bwt"]);
  const avgOf = keyword(options.average ?? "seen", "average", ["seen", "all"]);
  const stream = options.stream ?? "test";
  const groups = new Map<string, NamedRun[]>();
  for (const r of runs) {
    const name = by.map((f) => String(groupFieldOf(r, f) ?? "")).join(" · ");
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name)!.push(r);
  }
  const names = [...groups.keys()];
  const palette = colors(names.length);
  const legend = capLegend(names.map((label, i) => ({
    label: `${label} (n=${groups.get(label)!.length})`,
    color: palette[i],
  })));
  if (kind === "bars") {
    const key = stat === "accuracy" ? "finalAccuracy" : stat;
    const data = names.map((name) => {
      const m = band(
        groups.get(name)!.map((r) => runSummary(matrixOf(rowsOf(r), stream))[key]),
      );
      return {
        run: name,
        v: m.mean,
        lo: m.lo,
        hi: m.hi,
        label: fmt(m.mean, 3),
      };
    }).filter((d) => Number.isFinite(d.v));
    const frame = layout(options, []);
    const yLabel =
      { accuracy: "Final average accuracy", forgetting: "Forgetting", bwt: "BWT" }[stat];
    return renderPlot({
      ...frame,
      x: { label: null, domain: names },
      y: stat === "accuracy"
        ? { label: `${yLabel} (mean ± std)`, domain: [0, 1], grid: true }
        : { label: `${yLabel} (mean ± std)`, grid: true, zero: true },
      color: { type: "ordinal", domain: names, range: palette },
      marks: [
        Plot.barY(data, { x: "run", y: "v", fill: "run", fillOpacity: 0.85 }),
        Plot.ruleX(data, {
          x: "run",
          y1: "lo",
          y2: "hi",
          stroke: "currentColor",
          strokeWidth: 1.5,
        }),
        Plot.tickY(data, { x: "run", y: "lo", stroke: "currentColor" }),
        Plot.tickY(data, { x: "run", y: "hi", stroke: "currentColor" }),
        Plot.ruleY([0]),
      ],
    }, { label: `${stat} by group (mean ± std)`, title: options.title });
  }
  const points: { x: number; y: number; lo: number; hi: number; series: string }[] = [];
  for (const name of names) {
    const matrices = groups.get(name)!.map((r) => matrixOf(rowsOf(r), stream));
    const rows = Math.max(0, ...matrices.map((m) => m.length));
    for (let i = 0; i < rows; i++) {
      const per = matrices.map((m) => {
        const row = m[i];
        if (!row) return NaN;
        const vals = (avgOf === "seen" ? row.slice(0, i + 1) : row).filter(Number.isFinite);
        return vals.length ? vals.reduce((a, b) => a + b, 0) / vals.length : NaN;
      });
      const m = band(per);
      if (m.n > 0) {
        points.push({ x: i, y: m.mean, lo: m.lo, hi: m.hi, series: name });
      }
    }
  }
  if (points.length === 0) {
    throw new RangeError(`No run has eval accuracy rows on stream "${stream}"`);
  }
  const frame = layout(options, legend);
  const ticks = integerTicks(points.map((p) => p.x));
  return renderPlot({
    ...frame,
    x: { label: X_LABELS.trainExperience, ...(ticks ? { ticks, tickFormat: "d" } : {}) },
    y: { label: "Average accuracy (mean ± std)", domain: [0, 1], grid: true },
    color: { type: "ordinal", domain: names, range: palette },
    marks: [
      Plot.areaY(points, {
        x: "x",
        y1: "lo",
        y2: "hi",
        z: "series",
        fill: "series",
        fillOpacity: 0.18,
      }),
      Plot.line(points, { x: "x", y: "y", z: "series", stroke: "series", strokeWidth: 2 }),
      Plot.dot(points, { x: "x", y: "y", fill: "series", r: 3 }),
    ],
  }, { label: "average accuracy by group (mean ± std)", title: options.title, legend });
}
