/**
 * A JSON Lines logger: one JSON object per metric row and line, appended as the run goes. Every
 * object carries its run (`run`, `runStart`), so that runs appended to one file stay apart.
 *
 * @module
 */
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

/** Options of {@link jsonlLogger}. */
export interface JsonlLoggerOptions extends FileLoggerOptions {
  /** File name inside `dir`. @default "metrics.jsonl" */
  file?: string;
}

/**
 * A logger appending each row as a JSON line to `{dir}/metrics.jsonl` (each hook's rows in one
 * append, so an interrupted run leaves every complete line readable). JSON has no NaN: a NaN
 * value is written as `null` and read back as NaN by {@link readJsonlRows}. Each line carries
 * the logger's run (`run`: a short random id made when the logger is created, `runStart`: that
 * time), so a second run into the same file stays distinguishable.
 *
 * @example
 * ```ts ignore
 * const jsonl = jsonlLogger({ dir: "runs/naive-seed0" });
 * const evaluator = evaluation({ loggers: [jsonl] });
 * // ... train; later: only this run's rows
 * const mine = await readJsonlRows(jsonl.path, { run: jsonl.run.id });
 * ```
 */
export function jsonlLogger(
  opts: JsonlLoggerOptions,
): Logger & { readonly path: string; readonly run: RunInfo } {
  checkOptions("jsonlLogger", opts, FILE_LOGGER_OPTIONS);
  const run = checkRun(opts?.run);
  const file = new LineFile(opts, "metrics.jsonl");
  return {
    name: "jsonlLogger",
    path: file.path,
    run,
    log(rows) {
      file.append(
        rows.map((r) => JSON.stringify({ ...r, run: run.id, runStart: run.start }) + "\n")
          .join(""),
      );
    },
  };
}

/**
 * Parses JSON Lines metrics back into rows, skipping incomplete or malformed lines. Each row
 * keeps its `run` and `runStart` (absent in files from before runs were marked); `opts.run`
 * keeps only the rows of that run.
 *
 * @example
 * ```ts
 * import { parseJsonlRows } from "./jsonl.ts";
 * const text = '{"metric":"loss","phase":"eval","stream":"test","experience":null,"task":null,' +
 *   '"epoch":null,"iteration":1,"trainExperience":0,"value":null}\n{"metric":"lo';
 * const rows = parseJsonlRows(text);
 * console.assert(rows.length === 1 && Number.isNaN(rows[0].value));
 * ```
 */
export function parseJsonlRows(text: string, opts: ReadRowsOptions = {}): LoggedRow[] {
  const lines = text.split("\n");
  lines.pop(); // the part after the last newline is incomplete (or empty)
  const rows: LoggedRow[] = [];
  for (const line of lines) {
    if (line.trim() === "") continue;
    try {
      const r = JSON.parse(line) as LoggedRow & { value: number | null };
      if (!r || typeof r !== "object" || typeof r.metric !== "string") continue;
      if (r.value === null) r.value = NaN;
      rows.push(r as LoggedRow);
    } catch {
      // a line cut by an interruption, or not ours
    }
  }
  return filterRuns(rows, opts);
}

/**
 * Reads a JSON Lines metrics file written by {@link jsonlLogger} (see {@link parseJsonlRows});
 * `opts.run` keeps one run's rows.
 *
 * @example
 * ```ts ignore
 * const rows = await readJsonlRows("runs/x/metrics.jsonl");
 * const one = await readJsonlRows("runs/x/metrics.jsonl", { run: "k3f9a2c1" });
 * ```
 */
export async function readJsonlRows(
  path: string,
  opts: ReadRowsOptions = {},
): Promise<LoggedRow[]> {
  return parseJsonlRows(await Deno.readTextFile(path), opts);
}
