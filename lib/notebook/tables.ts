/**
 * Tables: metric rows as danfo DataFrames that render as HTML in Jupyter, run summaries
 * (final accuracy, forgetting, backward transfer), and the small pure functions behind them.
 *
 * danfojs-node is loaded on first use (it brings its own tfjs 3.x, about a second to load). Its
 * tfjs shares the process-wide tfjs engine with ours; loading it keeps our kernels registered
 * and turns tfjs's production mode on (which silences the warnings of the second copy).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { createRequire } from "node:module";
import process from "node:process";
import { accuracyMatrix, type MetricRow, type RowFilter } from "../data/rows.ts";
export type { RowFilter } from "../data/rows.ts";
import { JUPYTER_DISPLAY, type MediaBundle } from "./display.ts";
import { writeFileAtomic } from "./render.ts";
import { anyOf, checkOptions, type OptionSpec } from "../options.ts";

/** The danfojs-node module, as {@link loadDanfo} returns it. */
export type Danfo = typeof import("danfojs-node");
/** A danfo DataFrame (danfojs-node). */
export type DataFrame = import("danfojs-node").DataFrame;

/** Metric rows, or anything that holds them (a strategy, an `EvalResult`, an evaluator). */
export type RowSource = readonly MetricRow[] | { readonly rows: readonly MetricRow[] };

/** An accuracy matrix: `m[i][j]` = accuracy on experience j after training experience i. */
export type Matrix = readonly (readonly number[])[];

/** The rows of a {@link RowSource}. */
export function rowsOf(source: RowSource): readonly MetricRow[] {
  if (Array.isArray(source)) return source;
  const rows = (source as { rows?: unknown } | null)?.rows;
  if (Array.isArray(rows)) return rows;
  throw new TypeError(
    `Expected metric rows or an object with a \`rows\` array, got ${kindOf(source)}`,
  );
}

function kindOf(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === "object") return v.constructor?.name ?? "object";
  return `${typeof v} ${String(v)}`;
}

function isMatrix(v: unknown): v is Matrix {
  return Array.isArray(v) && (v.length === 0 || Array.isArray(v[0]));
}

/** The accuracy matrix of a row source on `stream`, or the matrix itself. */
export function matrixOf(source: RowSource | Matrix, stream = "test"): number[][] {
  if (isMatrix(source)) return source.map((row) => [...row]);
  return accuracyMatrix(rowsOf(source), stream);
}

function mean(values: readonly number[]): number {
  const finite = values.filter(Number.isFinite);
  return finite.length ? finite.reduce((a, b) => a + b, 0) / finite.length : NaN;
}

// ------------------------------------------------------------------------ summaries ----

/**
 * Forgetting of each experience at the end of the run (Chaudhry et al., 2018): for every
 * experience j before the last trained one, the best accuracy on j after any earlier training
 * experience minus its final accuracy. With T rows, the result has T − 1 entries (fewer when the
 * matrix has fewer columns); missing (NaN) cells are skipped, and an experience with no earlier
 * value gets NaN.
 *
 * @example
 * ```ts
 * import { forgettingPerExperience } from "./tables.ts";
 * const m = [
 *   [0.9, 0.1, 0.0],
 *   [0.6, 0.8, 0.1],
 *   [0.5, 0.7, 0.9],
 * ];
 * const f = forgettingPerExperience(m); // [0.9 - 0.5, 0.8 - 0.7]
 * console.assert(Math.abs(f[0] - 0.4) < 1e-12 && Math.abs(f[1] - 0.1) < 1e-12);
 * ```
 */
export function forgettingPerExperience(matrix: Matrix): number[] {
  const k = matrix.length - 1;
  if (k < 1) return [];
  const last = matrix[k];
  const out: number[] = [];
  for (let j = 0; j < k && j < last.length; j++) {
    let best = -Infinity;
    for (let l = 0; l < k; l++) {
      const v = matrix[l][j];
      if (Number.isFinite(v) && v > best) best = v;
    }
    out.push(best === -Infinity ? NaN : best - last[j]);
  }
  return out;
}

/** Backward transfer (Lopez-Paz & Ranzato, 2017): mean over j < T − 1 of R[T−1][j] − R[j][j]. */
function backwardTransfer(matrix: Matrix): number {
  const k = matrix.length - 1;
  const diffs: number[] = [];
  for (let j = 0; j < k && j < matrix[k].length; j++) {
    diffs.push(matrix[k][j] - (matrix[j]?.[j] ?? NaN));
  }
  return mean(diffs);
}

/** One run in figures (see {@link runSummary}). */
export interface RunSummary {
  /** Training experiences evaluated (rows of the accuracy matrix). */
  experiences: number;
  /**
   * Final average accuracy: mean accuracy after the last training experience k over the
   * experiences seen so far, j ≤ k (A_k, Chaudhry et al. 2018).
   */
  finalAccuracy: number;
  /** Mean of {@link forgettingPerExperience} (NaN with fewer than two experiences). */
  forgetting: number;
  /**
   * Backward transfer (Lopez-Paz & Ranzato, 2017): mean over j < k of R[k][j] − R[j][j];
   * negative means forgetting (NaN with fewer than two experiences).
   */
  bwt: number;
}

/**
 * Final average accuracy, average forgetting and backward transfer of a run, from its eval
 * rows on `stream` or from its accuracy matrix.
 *
 * @example
 * ```ts
 * import { runSummary } from "./tables.ts";
 * const s = runSummary([[0.9, 0.1], [0.6, 0.8]]);
 * console.assert(s.experiences === 2 && Math.abs(s.finalAccuracy - 0.7) < 1e-12);
 * console.assert(Math.abs(s.forgetting - 0.3) < 1e-12);
 * ```
 */
export function runSummary(source: RowSource | Matrix, stream = "test"): RunSummary {
  const m = matrixOf(source, stream);
  const last = m[m.length - 1] ?? [];
  return {
    experiences: m.length,
    finalAccuracy: mean(last.slice(0, m.length)),
    forgetting: mean(forgettingPerExperience(m)),
    bwt: backwardTransfer(m),
  };
}

// --------------------------------------------------------------------------- danfo ----

/** Columns of a metric-row table, in order; extra row fields follow as more columns. */
export const ROW_COLUMNS: readonly (keyof MetricRow)[] = [
  "metric",
  "phase",
  "stream",
  "experience",
  "task",
  "epoch",
  "iteration",
  "trainExperience",
  "value",
];
/** Row coordinates that may be null: stored as NaN in a DataFrame (as pandas does). */
const NULLABLE = new Set<string>(["experience", "task", "epoch", "iteration"]);
const STRING_COLUMNS = new Set<string>(["metric", "phase", "stream"]);

let danfo: Danfo | undefined;

/** Snapshot tfjs's global registries, so that danfo's tfjs 3.x cannot replace our kernels. */
function beforeLoad(): () => void {
  tf.enableProdMode();
  const globals = (globalThis as { _tfGlobals?: Map<string, unknown> })._tfGlobals;
  const saved: [Map<unknown, unknown>, Map<unknown, unknown>][] = [];
  for (const name of ["kernelRegistry", "gradRegistry"]) {
    const reg = globals?.get(name);
    if (reg instanceof Map) saved.push([reg, new Map(reg)]);
  }
  const p = process as { noDeprecation?: boolean };
  const noDeprecation = p.noDeprecation;
  p.noDeprecation = true; // its `request` dependency requires the deprecated `punycode`
  return () => {
    p.noDeprecation = noDeprecation;
    for (const [reg, copy] of saved) for (const [k, v] of copy) reg.set(k, v);
  };
}

function afterLoad(mod: Danfo): Danfo {
  mod.tensorflow?.enableProdMode?.();
  const proto = (mod.NDframe ?? mod.DataFrame).prototype as unknown as Record<symbol, unknown>;
  if (!Object.hasOwn(proto, JUPYTER_DISPLAY)) {
    Object.defineProperty(proto, JUPYTER_DISPLAY, {
      value: function (this: FrameLike): MediaBundle {
        return tableBundle(this, formatOf(this));
      },
      configurable: true,
      writable: true,
    });
  }
  danfo = mod;
  return mod;
}

/**
 * Loads danfojs-node (once) and returns it, with every DataFrame and Series rendering as an
 * HTML table in Jupyter. The table functions load it by themselves when the package is in a
 * `node_modules` folder; call this first where it is not.
 *
 * @example
 * ```ts ignore
 * import { loadDanfo } from "./tables.ts";
 * const dfd = await loadDanfo();
 * new dfd.DataFrame({ a: [1, 2] }).print();
 * ```
 */
export async function loadDanfo(): Promise<Danfo> {
  if (danfo) return danfo;
  const restore = beforeLoad();
  let mod: Danfo;
  try {
    mod = await import("danfojs-node");
  } finally {
    restore();
  }
  return afterLoad(mod);
}

function danfoSync(): Danfo {
  if (danfo) return danfo;
  const restore = beforeLoad();
  let mod: Danfo;
  try {
    mod = createRequire(import.meta.url)("danfojs-node") as Danfo;
  } catch (e) {
    throw new Error(
      `danfojs-node could not be loaded (${e instanceof Error ? e.message : String(e)}): ` +
        "call `await loadDanfo()` first",
    );
  } finally {
    restore();
  }
  return afterLoad(mod);
}

/** Column names of rows: the {@link ROW_COLUMNS}, then extra fields in first-seen order. */
function columnsOf(rows: readonly MetricRow[]): string[] {
  const cols: string[] = [...ROW_COLUMNS];
  const seen = new Set(cols);
  for (const r of rows) {
    for (const k of Object.keys(r)) {
      if (!seen.has(k)) {
        seen.add(k);
        cols.push(k);
      }
    }
  }
  return cols;
}

/**
 * Column-major values and danfo dtypes for a DataFrame: null coordinates and missing numbers
 * become NaN, other missing values null. The dtypes are given, not inferred: danfo infers from
 * the first values, and a string column that starts with missing values would pass as numbers.
 */
function columnData(
  rows: readonly MetricRow[],
  cols: readonly string[],
): { data: unknown[][]; dtypes: string[] } {
  const data: unknown[][] = [];
  const dtypes: string[] = [];
  for (const c of cols) {
    const raw = rows.map((r) => (r as unknown as Record<string, unknown>)[c]);
    const present = raw.filter((v) => v !== null && v !== undefined);
    const numeric = NULLABLE.has(c) || c === "trainExperience" || c === "value" ||
      (!STRING_COLUMNS.has(c) && present.every((v) => typeof v === "number"));
    const boolean = !numeric && present.length > 0 && present.every((v) => typeof v === "boolean");
    dtypes.push(
      numeric ? (c === "trainExperience" ? "int32" : "float32") : boolean ? "boolean" : "string",
    );
    data.push(raw.map((v) => (v === null || v === undefined) ? (numeric ? NaN : null) : v));
  }
  return { data, dtypes };
}

/** Options of {@link table}: how the frame renders, in Jupyter and when saved. */
export interface TableOptions extends TableFormatOptions {
  /** Keep only these rows: a predicate, or field values to match (see {@link RowFilter}). */
  filter?: RowFilter;
}

/** The fields a {@link RowFilter} object may name: a misspelt one would match nothing. */
const ROW_FILTER_FIELDS: OptionSpec<Required<MetricRow>> = {
  metric: anyOf("string", "array"),
  phase: anyOf("string", "array"),
  stream: anyOf("string", "array"),
  experience: anyOf("number", "null", "array"),
  task: anyOf("number", "null", "array"),
  epoch: anyOf("number", "null", "array"),
  iteration: anyOf("number", "null", "array"),
  trainExperience: anyOf("number", "array"),
  value: anyOf("number", "array"),
  at: anyOf("string", "array"),
  k: anyOf("number", "array"),
  class: anyOf("number", "array"),
  predicted: anyOf("number", "array"),
};

/**
 * The rows of `source` that pass `filter` (all of them without one).
 *
 * @example Stream-level accuracy
 * ```ts
 * import { filterRows } from "./tables.ts";
 * const base = { phase: "eval", stream: "test", task: null, epoch: null, iteration: 0,
 *   trainExperience: 0, metric: "accuracy" } as const;
 * const rows = [{ ...base, experience: 0, value: 0.9 }, { ...base, experience: null, value: 0.8 }];
 * console.assert(filterRows(rows, { experience: null }).length === 1);
 * ```
 */
export function filterRows(source: RowSource, filter?: RowFilter): MetricRow[] {
  const rows = rowsOf(source);
  if (filter === undefined) return [...rows];
  if (typeof filter === "function") return rows.filter((r) => filter(r));
  checkOptions("row filter", filter, ROW_FILTER_FIELDS);
  const tests = Object.entries(filter).map(([k, want]) => {
    const accepted: unknown[] = Array.isArray(want) ? want : [want];
    return (r: MetricRow) =>
      accepted.includes((r as unknown as Record<string, unknown>)[k] ?? null);
  });
  return rows.filter((r) => tests.every((t) => t(r)));
}

/** Where a frame made by {@link table} keeps its format (a symbol: never a column name). */
const TABLE_FORMAT: unique symbol = Symbol("perennial.tableFormat");

function formatOf(frame: unknown): TableFormatOptions {
  return (frame as { [TABLE_FORMAT]?: TableFormatOptions })[TABLE_FORMAT] ?? {};
}

/** A danfo DataFrame made by {@link table}: it also saves itself. */
export type MetricTable = DataFrame & {
  /**
   * Writes the table by extension: `.csv` (every row, numbers in full, empty cells where a
   * field does not apply) or `.html` (every row, at the table's precision), atomically.
   */
  save(path: string): Promise<string>;
};

/**
 * All rows in a danfo DataFrame, one row per metric value, columns {@link ROW_COLUMNS} then
 * any extra fields (e.g. `class`). Null coordinates are NaN, as in pandas; {@link rowsFrom}
 * turns them back into null. In Jupyter the frame renders as an HTML table with empty cells
 * where a field does not apply and numbers at `decimals` (default 4); `save(path)` writes it
 * as CSV or HTML.
 *
 * @example Accuracy after each experience
 * ```ts ignore
 * import { table } from "./tables.ts";
 * const df = table(strategy, { decimals: 3 }); // or strategy.rows, or an EvalResult
 * df.query(df["metric"].eq("accuracy")).groupby(["trainExperience"]).col(["value"]).mean();
 * await df.save("runs/x/rows.csv");
 * ```
 */
export function table(source: RowSource, options: TableOptions = {}): MetricTable {
  checkOptions("table", options, { ...TABLE_FORMAT_OPTIONS, filter: anyOf("function", "object") });
  const { filter, ...format } = options;
  checkFormat("table", format);
  const rows = filterRows(source, filter);
  const dfd = danfoSync();
  const cols = columnsOf(rows);
  let frame: DataFrame;
  if (rows.length === 0) {
    frame = new dfd.DataFrame([], { columns: cols });
  } else {
    const { data, dtypes } = columnData(rows, cols);
    frame = new dfd.DataFrame(Object.fromEntries(cols.map((c, i) => [c, data[i]])), {
      columns: cols,
      dtypes,
    });
  }
  // Own, non-enumerable properties: danfo's operations make new frames without them, which then
  // render with the default format.
  Object.defineProperty(frame, TABLE_FORMAT, { value: format, configurable: true });
  Object.defineProperty(frame, "save", {
    value: (path: string) => saveTable(rows, path, format),
    configurable: true,
    writable: true,
  });
  return frame as MetricTable;
}

/** What {@link rowsFrom} and the HTML rendering read from a DataFrame or Series. */
export interface FrameLike {
  /** Column names. */
  readonly columns: readonly string[];
  /** Row-major values (a Series gives a flat array). */
  readonly values: readonly unknown[];
  /** Row labels. @default positions 0..n-1 */
  readonly index?: readonly (string | number)[];
}

function rowMajor(frame: FrameLike): unknown[][] {
  return frame.values.map((v) => (Array.isArray(v) ? v : [v]));
}

/**
 * Metric rows back from a DataFrame made by {@link table} (or any frame with the
 * {@link ROW_COLUMNS}): NaN coordinates become null, and extra columns become fields where
 * they hold a value (missing values, NaN and null are left out).
 *
 * @example
 * ```ts ignore
 * import { rowsFrom, table } from "./tables.ts";
 * const same = rowsFrom(table(rows)); // deep-equal to rows
 * ```
 */
export function rowsFrom(frame: FrameLike): MetricRow[] {
  const cols = [...frame.columns];
  const missing = ROW_COLUMNS.filter((c) => !cols.includes(c));
  if (missing.length) {
    throw new TypeError(`DataFrame lacks the metric row columns ${missing.join(", ")}`);
  }
  return rowMajor(frame).map((values) => {
    const row: Record<string, unknown> = {};
    cols.forEach((c, i) => {
      const v = values[i];
      const absent = v === null || v === undefined || (typeof v === "number" && Number.isNaN(v));
      if (NULLABLE.has(c)) row[c] = absent ? null : v;
      else if ((ROW_COLUMNS as readonly string[]).includes(c)) row[c] = v;
      else if (!absent) row[c] = v;
    });
    return row as unknown as MetricRow;
  });
}

/** A run to summarize or compare: a strategy, or any object with a name and rows. */
export interface NamedRun {
  /** Shown in legends and tables (duplicates get a " (2)" suffix in charts). */
  readonly name: string;
  /** The run's metric rows (eval accuracy rows give its accuracy matrix). */
  readonly rows: readonly MetricRow[];
}

/** Options of {@link summaryTable} and {@link groupSummary}. */
export interface SummaryOptions {
  /** Stream of the eval rows. @default "test" */
  stream?: string;
  /**
   * Group the runs by these fields and give mean ± std over each group (seeds, usually): a
   * field of the run (`"label"`, `"strategy"`, ...) or of its `setting` (`"params.memSize"`).
   * Without it, one row per run.
   */
  by?: readonly string[];
}

/** A group of runs summarized by {@link groupSummary}: its keys, size, and means and stds. */
export interface GroupSummary {
  /** The values of the `by` fields. */
  keys: Record<string, unknown>;
  /** Runs in the group. */
  n: number;
  /** Mean and sample standard deviation (n − 1; NaN for one run) of each statistic. */
  finalAccuracy: MeanStd;
  forgetting: MeanStd;
  bwt: MeanStd;
  /** Final accuracy over the whole test stream, for runs that carry it (`accuracy`). */
  accuracy: MeanStd;
  /** Seconds of training, for runs that carry it (`trainSeconds`). */
  trainSeconds: MeanStd;
}

/** A mean and a sample standard deviation. */
export interface MeanStd {
  mean: number;
  std: number;
}

/**
 * The mean and sample standard deviation (n − 1) of the finite values; NaN without any, std
 * NaN with one.
 *
 * @example
 * ```ts
 * import { meanStd } from "./tables.ts";
 * const { mean, std } = meanStd([1, 2, 3, NaN]);
 * console.assert(mean === 2 && std === 1);
 * ```
 */
export function meanStd(values: readonly number[]): MeanStd {
  const v = values.filter(Number.isFinite);
  if (v.length === 0) return { mean: NaN, std: NaN };
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  if (v.length === 1) return { mean: m, std: NaN };
  const ss = v.reduce((a, b) => a + (b - m) ** 2, 0);
  return { mean: m, std: Math.sqrt(ss / (v.length - 1)) };
}

/** A run's field for grouping: its own property, else its `setting`'s (sweep runs). */
export function groupFieldOf(run: NamedRun, field: string): unknown {
  const r = run as unknown as Record<string, unknown>;
  if (field in r) return r[field];
  const setting = r.setting as Record<string, unknown> | undefined;
  return setting && field in setting ? setting[field] : undefined;
}

function numberField(run: NamedRun, field: string): number {
  const v = (run as unknown as Record<string, unknown>)[field];
  return typeof v === "number" ? v : NaN;
}

/**
 * Groups runs by the values of `by` (in order of first appearance) and summarizes each group:
 * mean ± std over its runs of the final average accuracy, forgetting and BWT (from each run's
 * accuracy matrix on `stream`), and of `accuracy` and `trainSeconds` where runs carry them (a
 * sweep's runs do). Plain data: what {@link summaryTable} shows and the CLI writes as CSV or
 * Markdown.
 *
 * @example Two seeds of one strategy
 * ```ts
 * import { groupSummary } from "./tables.ts";
 * const row = (trainExperience: number, experience: number, value: number) => ({
 *   metric: "accuracy", phase: "eval" as const, stream: "test", experience, task: null,
 *   epoch: null, iteration: null, trainExperience, value,
 * });
 * const run = (seed: number, a: number) =>
 *   ({ name: "Replay", label: "Replay", seed, rows: [row(0, 0, 0.9), row(1, 0, a), row(1, 1, 0.9)] });
 * const [g] = groupSummary([run(0, 0.7), run(1, 0.5)], { by: ["label"] });
 * console.assert(g.n === 2 && Math.abs(g.finalAccuracy.mean - 0.75) < 1e-12);
 * console.assert(Math.abs(g.finalAccuracy.std - Math.sqrt(0.005)) < 1e-12);
 * ```
 */
export function groupSummary(
  runs: readonly NamedRun[],
  options: SummaryOptions = {},
): GroupSummary[] {
  checkOptions("groupSummary", options, { stream: "string", by: "array" });
  if (!Array.isArray(runs)) {
    throw new TypeError(
      `groupSummary expects an array of runs { name, rows }, got ${kindOf(runs)}`,
    );
  }
  const by = options.by ?? ["name"];
  for (const f of by) {
    if (typeof f !== "string") throw new TypeError(`by: field names are strings, got ${kindOf(f)}`);
  }
  const groups = new Map<string, { keys: Record<string, unknown>; runs: NamedRun[] }>();
  for (const r of runs) {
    const keys = Object.fromEntries(by.map((f) => [f, groupFieldOf(r, f)]));
    const k = JSON.stringify(by.map((f) => keys[f]));
    if (!groups.has(k)) groups.set(k, { keys, runs: [] });
    groups.get(k)!.runs.push(r);
  }
  return [...groups.values()].map(({ keys, runs: g }) => {
    const sums = g.map((r) => runSummary(rowsOf(r), options.stream));
    return {
      keys,
      n: g.length,
      finalAccuracy: meanStd(sums.map((s) => s.finalAccuracy)),
      forgetting: meanStd(sums.map((s) => s.forgetting)),
      bwt: meanStd(sums.map((s) => s.bwt)),
      accuracy: meanStd(g.map((r) => numberField(r, "accuracy"))),
      trainSeconds: meanStd(g.map((r) => numberField(r, "trainSeconds"))),
    };
  });
}

/** "0.8123 ± 0.0101" (the std left out for one run, "n/a" without a value). */
export function formatMeanStd(v: MeanStd, decimals = 4): string {
  if (!Number.isFinite(v.mean)) return "n/a";
  return Number.isFinite(v.std)
    ? `${v.mean.toFixed(decimals)} ± ${v.std.toFixed(decimals)}`
    : v.mean.toFixed(decimals);
}

const GROUP_STATS = ["finalAccuracy", "accuracy", "forgetting", "bwt", "trainSeconds"] as const;

/**
 * {@link groupSummary} as text columns: the `by` fields, `n`, and "mean ± std" of each
 * statistic some run has (for Markdown and CSV).
 */
export function groupSummaryColumns(
  groups: readonly GroupSummary[],
  by: readonly string[],
): { columns: string[]; values: string[][] } {
  const stats = GROUP_STATS.filter((s) => groups.some((g) => Number.isFinite(g[s].mean)));
  return {
    columns: [...by, "n", ...stats],
    values: groups.map((g) => [
      ...by.map((f) => String(g.keys[f] ?? "")),
      String(g.n),
      ...stats.map((s) => formatMeanStd(g[s], s === "trainSeconds" ? 1 : 4)),
    ]),
  };
}

/** A Markdown table of {@link groupSummaryColumns}. */
export function groupSummaryMarkdown(
  groups: readonly GroupSummary[],
  by: readonly string[],
): string {
  const { columns, values } = groupSummaryColumns(groups, by);
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  return [
    `| ${columns.map(esc).join(" | ")} |`,
    `| ${columns.map(() => "---").join(" | ")} |`,
    ...values.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ].join("\n") + "\n";
}

/**
 * One row per run: `run`, `experiences`, `finalAccuracy`, `forgetting` (average, Chaudhry),
 * `bwt`, computed from each run's accuracy matrix on `stream`. With `by`, one row per group of
 * runs ({@link groupSummary}): the `by` fields, `n`, and the mean and sample std of each
 * statistic (`finalAccuracy`, `finalAccuracyStd`, ...; `accuracy` and `trainSeconds` for runs
 * that carry them, as a sweep's do).
 *
 * @example Comparing strategies
 * ```ts ignore
 * import { summaryTable } from "./tables.ts";
 * summaryTable([naiveRun, ewcRun]); // strategies are { name, rows }
 * summaryTable(await loadSweep("runs/sweeps/demo"), { by: ["label"] }); // mean ± std over seeds
 * ```
 */
export function summaryTable(
  runs: readonly NamedRun[],
  options: SummaryOptions = {},
): DataFrame {
  checkOptions("summaryTable", options, { stream: "string", by: "array" });
  if (!Array.isArray(runs)) {
    throw new TypeError(`summaryTable expects an array of { name, rows }, got ${kindOf(runs)}`);
  }
  const dfd = danfoSync();
  if (options.by) {
    const by = options.by;
    const groups = groupSummary(runs, options);
    const stats = GROUP_STATS.filter((s) => groups.some((g) => Number.isFinite(g[s].mean)));
    const cols = [...by, "n", ...stats.flatMap((s) => [s, `${s}Std`])];
    if (groups.length === 0) return new dfd.DataFrame([], { columns: cols });
    const data: Record<string, unknown[]> = {};
    for (const f of by) data[f] = groups.map((g) => String(g.keys[f] ?? ""));
    data.n = groups.map((g) => g.n);
    for (const s of stats) {
      data[s] = groups.map((g) => g[s].mean);
      data[`${s}Std`] = groups.map((g) => g[s].std);
    }
    return new dfd.DataFrame(data, { columns: cols });
  }
  const cols = ["run", "experiences", "finalAccuracy", "forgetting", "bwt"];
  if (runs.length === 0) return new dfd.DataFrame([], { columns: cols });
  const sums = runs.map((r) => runSummary(rowsOf(r), options.stream));
  return new dfd.DataFrame({
    run: runs.map((r) => String(r.name)),
    experiences: sums.map((s) => s.experiences),
    finalAccuracy: sums.map((s) => s.finalAccuracy),
    forgetting: sums.map((s) => s.forgetting),
    bwt: sums.map((s) => s.bwt),
  }, { columns: cols });
}

// ---------------------------------------------------------------------------- HTML ----

/** Options of {@link toHTML} and {@link toText}. */
export interface TableFormatOptions {
  /** Tables longer than this show their first and last `edgeRows` rows. @default 60 */
  maxRows?: number;
  /** Rows shown at each end of a truncated table. @default 10 */
  edgeRows?: number;
  /** Decimals of non-integer numbers. @default 4 */
  decimals?: number;
}

interface Grid {
  columns: string[];
  index: string[];
  rows: unknown[][];
}

function isFrameLike(v: unknown): v is FrameLike {
  return v !== null && typeof v === "object" &&
    Array.isArray((v as FrameLike).columns) && Array.isArray((v as FrameLike).values);
}

function gridOf(source: FrameLike | RowSource): Grid {
  if (isFrameLike(source)) {
    const rows = rowMajor(source);
    const index = source.index ? source.index.map(String) : rows.map((_, i) => String(i));
    return { columns: source.columns.map(String), index, rows };
  }
  const list = rowsOf(source);
  const columns = columnsOf(list);
  return {
    columns,
    index: list.map((_, i) => String(i)),
    rows: list.map((r) => columns.map((c) => (r as unknown as Record<string, unknown>)[c])),
  };
}

/**
 * Formats one cell: integers as they are, other numbers with `decimals`; null, undefined and
 * NaN (how a DataFrame stores a field that does not apply) as empty.
 */
export function formatCell(v: unknown, decimals = 4): string {
  if (v === null || v === undefined || Number.isNaN(v)) return "";
  if (typeof v === "number") {
    if (Number.isInteger(v) || !Number.isFinite(v)) return String(v);
    return v.toFixed(decimals);
  }
  return String(v);
}

const ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for HTML content and attribute values. */
export function escapeHTML(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

const TABLE_FORMAT_OPTIONS: OptionSpec<TableFormatOptions> = {
  maxRows: "integer",
  edgeRows: "integer",
  decimals: "integer",
};

function checkFormat(who: string, options: TableFormatOptions): Required<TableFormatOptions> {
  checkOptions(who, options, TABLE_FORMAT_OPTIONS);
  const { maxRows = 60, edgeRows = 10, decimals = 4 } = options;
  for (const [name, v] of [["maxRows", maxRows], ["edgeRows", edgeRows]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`${name} must be an integer ≥ 1, got ${v}`);
    }
  }
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > 20) {
    throw new RangeError(`decimals must be an integer from 0 to 20, got ${decimals}`);
  }
  return { maxRows, edgeRows, decimals };
}

/** Row positions to show, with -1 standing for the elided middle. */
function visibleRows(n: number, f: Required<TableFormatOptions>): number[] {
  const all = Array.from({ length: n }, (_, i) => i);
  if (n <= f.maxRows) return all;
  const edge = Math.min(f.edgeRows, Math.floor(f.maxRows / 2));
  return [...all.slice(0, edge), -1, ...all.slice(n - edge)];
}

/**
 * An HTML table of a DataFrame, a Series or metric rows: escaped text, numbers with 4
 * decimals, long tables cut to their first and last rows.
 *
 * @example
 * ```ts
 * import { toHTML } from "./tables.ts";
 * const html = toHTML({ columns: ["run", "acc"], values: [["<naive>", 0.123456]] });
 * console.assert(html.includes("&lt;naive&gt;") && html.includes("0.1235"));
 * ```
 */
export function toHTML(source: FrameLike | RowSource, options: TableFormatOptions = {}): string {
  const f = checkFormat("toHTML", options);
  const g = gridOf(source);
  const numeric = g.columns.map((_, c) => g.rows.some((r) => typeof r[c] === "number"));
  const head = `<thead><tr><th></th>${
    g.columns.map((c) => `<th>${escapeHTML(c)}</th>`).join("")
  }</tr></thead>`;
  const body = visibleRows(g.rows.length, f).map((i) => {
    if (i < 0) {
      return `<tr><th>…</th>${g.columns.map(() => "<td>…</td>").join("")}</tr>`;
    }
    const cells = g.rows[i].map((v, c) => {
      const align = numeric[c] ? ` style="text-align:right"` : "";
      return `<td${align}>${escapeHTML(formatCell(v, f.decimals))}</td>`;
    });
    return `<tr><th>${escapeHTML(g.index[i])}</th>${cells.join("")}</tr>`;
  });
  const size = g.rows.length > f.maxRows
    ? `<p>${g.rows.length} rows × ${g.columns.length} columns</p>`
    : "";
  return `<table class="perennial-table">${head}<tbody>${body.join("")}</tbody></table>${size}`;
}

/**
 * A plain-text table (aligned columns) of a DataFrame, a Series or metric rows.
 *
 * @example
 * ```ts
 * import { toText } from "./tables.ts";
 * const text = toText({ columns: ["acc"], values: [[0.5], [0.25]] });
 * console.assert(text.split("\n").length === 3);
 * ```
 */
export function toText(source: FrameLike | RowSource, options: TableFormatOptions = {}): string {
  const f = checkFormat("toText", options);
  const g = gridOf(source);
  const shown = visibleRows(g.rows.length, f);
  const lines: string[][] = [["", ...g.columns]];
  for (const i of shown) {
    lines.push(
      i < 0
        ? ["…", ...g.columns.map(() => "…")]
        : [g.index[i], ...g.rows[i].map((v) => formatCell(v, f.decimals))],
    );
  }
  const widths = lines[0].map((_, c) => Math.max(...lines.map((l) => l[c].length)));
  const numeric = g.columns.map((_, c) => g.rows.some((r) => typeof r[c] === "number"));
  const out = lines.map((l) =>
    l.map((cell, c) => c > 0 && numeric[c - 1] ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))
      .join("  ").trimEnd()
  );
  if (g.rows.length > f.maxRows) out.push(`[${g.rows.length} rows × ${g.columns.length} columns]`);
  return out.join("\n");
}

/** The Jupyter bundle of a table: `text/html` and `text/plain`. */
export function tableBundle(
  source: FrameLike | RowSource,
  options: TableFormatOptions = {},
): MediaBundle {
  return { "text/html": toHTML(source, options), "text/plain": toText(source, options) };
}

// ----------------------------------------------------------------------------- CSV ----

function csvField(v: unknown): string {
  if (v === null || v === undefined || Number.isNaN(v)) return "";
  const text = String(v);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * CSV of a DataFrame, a Series or metric rows: a header line, then one line per row (no index
 * column), numbers in full so that they read back exactly, empty fields where nothing applies.
 *
 * @example
 * ```ts
 * import { toCSV } from "./tables.ts";
 * const csv = toCSV({ columns: ["run", "acc"], values: [["a,b", NaN]] });
 * console.assert(csv === 'run,acc\n"a,b",\n');
 * ```
 */
export function toCSV(source: FrameLike | RowSource): string {
  const g = gridOf(source);
  const lines = [
    g.columns.map(csvField).join(","),
    ...g.rows.map((r) => r.map(csvField).join(",")),
  ];
  return lines.join("\n") + "\n";
}

/**
 * Writes a table by extension, atomically: `.csv` ({@link toCSV}) or `.html` (a small page
 * holding the whole table, {@link toHTML} at `decimals`). Returns the path.
 *
 * @example
 * ```ts ignore
 * import { saveTable } from "./tables.ts";
 * await saveTable(strategy, "runs/x/rows.html", { decimals: 3 });
 * ```
 */
export async function saveTable(
  source: FrameLike | RowSource,
  path: string,
  options: TableFormatOptions = {},
): Promise<string> {
  const format = checkFormat("saveTable", options);
  const ext = path.slice(path.lastIndexOf(".")).toLowerCase();
  let text: string;
  if (ext === ".csv") {
    text = toCSV(source);
  } else if (ext === ".html" || ext === ".htm") {
    const rows = gridOf(source).rows.length;
    const html = toHTML(source, { ...format, maxRows: Math.max(rows, 1) });
    text = `<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n${html}\n` +
      `</body></html>\n`;
  } else {
    throw new RangeError(`Cannot save a table as "${path}": use a .csv or .html file name`);
  }
  await writeFileAtomic(path, new TextEncoder().encode(text));
  return path;
}
