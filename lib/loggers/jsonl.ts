/**
 * A JSON Lines logger: one JSON object per metric row and line, appended as the run goes.
 *
 * @module
 */
import type { MetricRow } from "../data/rows.ts";
import { FILE_LOGGER_OPTIONS, type FileLoggerOptions, LineFile } from "./_files.ts";
import { checkOptions } from "../options.ts";
import type { Logger } from "./logger.ts";

/** Options of {@link jsonlLogger}. */
export interface JsonlLoggerOptions extends FileLoggerOptions {
  /** File name inside `dir`. @default "metrics.jsonl" */
  file?: string;
}

/**
 * A logger appending each row as a JSON line to `{dir}/metrics.jsonl` (each hook's rows in one
 * append, so an interrupted run leaves every complete line readable). JSON has no NaN: a NaN
 * value is written as `null` and read back as NaN by {@link readJsonlRows}.
 *
 * @example
 * ```ts ignore
 * const evaluator = evaluation({ loggers: [jsonlLogger({ dir: "runs/naive-seed0" })] });
 * ```
 */
export function jsonlLogger(opts: JsonlLoggerOptions): Logger & { readonly path: string } {
  checkOptions("jsonlLogger", opts, FILE_LOGGER_OPTIONS);
  const file = new LineFile(opts, "metrics.jsonl");
  return {
    name: "jsonlLogger",
    path: file.path,
    log(rows) {
      file.append(rows.map((r) => JSON.stringify(r) + "\n").join(""));
    },
  };
}

/**
 * Parses JSON Lines metrics back into rows, skipping incomplete or malformed lines.
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
export function parseJsonlRows(text: string): MetricRow[] {
  const lines = text.split("\n");
  lines.pop(); // the part after the last newline is incomplete (or empty)
  const rows: MetricRow[] = [];
  for (const line of lines) {
    if (line.trim() === "") continue;
    try {
      const r = JSON.parse(line) as MetricRow & { value: number | null };
      if (!r || typeof r !== "object" || typeof r.metric !== "string") continue;
      if (r.value === null) r.value = NaN;
      rows.push(r as MetricRow);
    } catch {
      // a line cut by an interruption, or not ours
    }
  }
  return rows;
}

/**
 * Reads a JSON Lines metrics file written by {@link jsonlLogger} (see {@link parseJsonlRows}).
 *
 * @example
 * ```ts ignore
 * const rows = await readJsonlRows("runs/x/metrics.jsonl");
 * ```
 */
export async function readJsonlRows(path: string): Promise<MetricRow[]> {
  return parseJsonlRows(await Deno.readTextFile(path));
}
