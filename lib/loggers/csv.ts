/**
 * A CSV logger: one long-form row per metric value, appended as the run goes, readable at any
 * time (even after an interruption) by pandas, Polars, a spreadsheet or {@link readCsvRows}.
 * Every row carries its run (`run`, `runStart`), so that runs appended to one file stay apart.
 *
 * @module
 */
import { avalancheName } from "../metrics/names.ts";
import { FILE_LOGGER_OPTIONS, type FileLoggerOptions, LineFile } from "./_files.ts";
import { checkOptions } from "../options.ts";
import type { Logger } from "./logger.ts";
import {
  checkRun,
  filterRuns,
  type LoggedRow,
  type ReadRowsOptions,
  type RunInfo,
} from "./runs.ts";

/** A column of the CSV file: a row field, or "name" (the row's Avalanche name). */
export type CsvColumn = keyof LoggedRow | "name";

/** The columns that mark the run; the logger writes them even when `columns` leaves them out. */
const RUN_COLUMNS: readonly CsvColumn[] = ["run", "runStart"];

/** Columns written by default, in order. */
export const CSV_COLUMNS: readonly CsvColumn[] = [
  "metric",
  "phase",
  "stream",
  "experience",
  "task",
  "epoch",
  "iteration",
  "trainExperience",
  "at",
  "k",
  "class",
  "predicted",
  "value",
  "run",
  "runStart",
];

/** Options of {@link csvLogger}. */
export interface CsvLoggerOptions extends FileLoggerOptions {
  /** File name inside `dir`. @default "metrics.csv" */
  file?: string;
  /**
   * Columns, in order. `run` and `runStart` are added at the end when left out: every row says
   * which run wrote it.
   * @default CSV_COLUMNS
   */
  columns?: readonly CsvColumn[];
}

function field(v: unknown): string {
  if (v === null || v === undefined) return "";
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * One CSV line (with its newline) for a row.
 *
 * @example
 * ```ts
 * import { csvLine } from "./csv.ts";
 * const row = { metric: "loss", phase: "eval", stream: "test", experience: null, task: null,
 *   epoch: null, iteration: 7, trainExperience: 0, value: 0.25 } as const;
 * console.assert(csvLine(row, ["metric", "iteration", "value"]) === "loss,7,0.25\n");
 * ```
 */
export function csvLine(row: LoggedRow, columns: readonly CsvColumn[] = CSV_COLUMNS): string {
  return columns.map((c) => field(c === "name" ? avalancheName(row) : row[c])).join(",") + "\n";
}

/**
 * A logger appending each row to `{dir}/metrics.csv` (header once; each hook's rows in one
 * append, so an interrupted run leaves every complete line readable). An existing file is
 * appended to when its header matches, unless `ifExists` says otherwise. Each row carries the
 * logger's run (`run`: a short random id made when the logger is created, `runStart`: that
 * time), so a second run into the same file stays distinguishable: read one run back with
 * `readCsvRows(path, { run: logger.run.id })`.
 *
 * @example
 * ```ts ignore
 * const csv = csvLogger({ dir: "runs/naive-seed0" });
 * const evaluator = evaluation({ loggers: [csv] });
 * // ... train; later: only this run's rows, even if the file holds earlier runs too
 * const mine = await readCsvRows(csv.path, { run: csv.run.id });
 * ```
 */
export function csvLogger(
  opts: CsvLoggerOptions,
): Logger & { readonly path: string; readonly run: RunInfo } {
  checkOptions("csvLogger", opts, { ...FILE_LOGGER_OPTIONS, columns: "array" });
  const run = checkRun(opts?.run);
  const given = opts?.columns ?? CSV_COLUMNS;
  const columns = [...given, ...RUN_COLUMNS.filter((c) => !given.includes(c))];
  const header = columns.join(",");
  const file = new LineFile(opts, "metrics.csv", header + "\n", (found) => {
    const cols = found.split(",");
    return RUN_COLUMNS.every((c) => !cols.includes(c)) &&
        found === columns.filter((c) => !RUN_COLUMNS.includes(c)).join(",")
      ? "it was written before runs were marked (no run column), and appending would mix " +
        "this run's rows with unmarked ones"
      : "";
  });
  return {
    name: "csvLogger",
    path: file.path,
    run,
    log(rows) {
      file.append(
        rows.map((r) => csvLine({ ...r, run: run.id, runStart: run.start }, columns)).join(""),
      );
    },
  };
}

/** Splits CSV text into records; `complete` tells whether the last one ended with a newline. */
function records(text: string): { fields: string[]; complete: boolean }[] {
  const out: { fields: string[]; complete: boolean }[] = [];
  let fields: string[] = [];
  let cur = "";
  let quoted = false;
  let any = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    any = true;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          cur += '"';
          i++;
        } else quoted = false;
      } else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") {
      fields.push(cur);
      cur = "";
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i++;
      fields.push(cur);
      out.push({ fields, complete: true });
      fields = [];
      cur = "";
      any = false;
    } else cur += ch;
  }
  if (any) {
    fields.push(cur);
    out.push({ fields, complete: false });
  }
  return out;
}

const NULLABLE = new Set(["experience", "task", "epoch", "iteration"]);
const NUMERIC = new Set([
  "experience",
  "task",
  "epoch",
  "iteration",
  "trainExperience",
  "k",
  "class",
  "predicted",
  "value",
]);

/**
 * Parses the text of a CSV metrics file back into rows. Lines that are incomplete (an
 * interrupted write) or malformed are skipped; empty optional fields are left out. Each row
 * keeps its `run` and `runStart` (absent in files from before runs were marked); `opts.run`
 * keeps only the rows of that run (see `splitRuns` to list the runs of a file).
 *
 * @example
 * ```ts
 * import { csvLine, CSV_COLUMNS, parseCsvRows } from "./csv.ts";
 * const row = { metric: "loss", phase: "train", stream: "train", experience: 0, task: null,
 *   epoch: 0, iteration: 5, trainExperience: 0, value: 0.5 } as const;
 * const text = CSV_COLUMNS.join(",") + "\n" + csvLine(row) + "loss,tr";
 * console.assert(parseCsvRows(text).length === 1);
 * ```
 */
export function parseCsvRows(text: string, opts: ReadRowsOptions = {}): LoggedRow[] {
  const recs = records(text);
  if (recs.length === 0 || !recs[0].complete) return [];
  const header = recs[0].fields;
  const rows: LoggedRow[] = [];
  for (const rec of recs.slice(1)) {
    if (!rec.complete || rec.fields.length !== header.length) continue;
    const row: Record<string, unknown> = {};
    let ok = true;
    header.forEach((col, i) => {
      const s = rec.fields[i];
      if (col === "name") return;
      if (NUMERIC.has(col)) {
        if (s === "") {
          if (NULLABLE.has(col)) row[col] = null;
          else if (col === "value" || col === "trainExperience") ok = false;
          return;
        }
        const v = Number(s);
        if (Number.isNaN(v) && s !== "NaN") ok = false;
        row[col] = v;
      } else if (s !== "" || col === "stream" || col === "metric" || col === "phase") {
        row[col] = s;
      }
    });
    if (ok && typeof row.metric === "string" && row.metric !== "") {
      rows.push(row as unknown as LoggedRow);
    }
  }
  return filterRuns(rows, opts);
}

/**
 * Reads a CSV metrics file written by {@link csvLogger} (see {@link parseCsvRows}); `opts.run`
 * keeps one run's rows.
 *
 * @example
 * ```ts ignore
 * const rows = await readCsvRows("runs/x/metrics.csv");
 * const one = await readCsvRows("runs/x/metrics.csv", { run: "k3f9a2c1" });
 * ```
 */
export async function readCsvRows(
  path: string,
  opts: ReadRowsOptions = {},
): Promise<LoggedRow[]> {
  return parseCsvRows(await Deno.readTextFile(path), opts);
}
