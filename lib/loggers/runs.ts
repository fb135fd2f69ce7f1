/**
 * Run marks: every file logger stamps each row with the run that wrote it (a short random id
 * and the run's start time), so that runs appended to one file stay apart even when their
 * iteration counts start over; readers give the mark back and can keep one run.
 *
 * @module
 */
import type { MetricRow } from "../data/rows.ts";

/** The run a logger writes for: an id unique to it, and when it started. */
export interface RunInfo {
  /** Short unique id, e.g. `"k3f9a2c1"` (letters, digits, `.`, `_`, `:`, `-`; at most 64). */
  id: string;
  /** Start time, ISO 8601 in UTC, e.g. `"2025-06-01T12:00:00.000Z"`. */
  start: string;
}

/** A metric row as the file loggers write and read it: the row and the run that wrote it. */
export type LoggedRow = MetricRow & {
  /** Id of the run that wrote the row ({@link RunInfo.id}); absent in files from before runs were marked. */
  run?: string;
  /** Start time of that run ({@link RunInfo.start}). */
  runStart?: string;
};

/** Options of the readers (`readCsvRows`, `parseJsonlRows`, ...). */
export interface ReadRowsOptions {
  /** Keep only the rows of this run id (or of any of these ids). @default every run */
  run?: string | readonly string[];
}

/** One run's rows in a file, as {@link splitRuns} returns them. */
export interface RunRows {
  /** The run id, or `null` for rows written before runs were marked. */
  run: string | null;
  /** The run's start time, or `null` when unknown. */
  start: string | null;
  /** Its rows, in file order. */
  rows: LoggedRow[];
}

const ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz";

/**
 * A fresh run mark: 8 random base-36 characters and the current time. The id comes from
 * `crypto`, not the run's seeded generator: two runs with the same seed must still differ.
 *
 * @example
 * ```ts
 * import { newRun } from "./runs.ts";
 * const run = newRun(); // e.g. { id: "k3f9a2c1", start: "2025-06-01T12:00:00.000Z" }
 * ```
 */
export function newRun(now: Date = new Date()): RunInfo {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  const id = Array.from(bytes, (b) => ID_ALPHABET[b % ID_ALPHABET.length]).join("");
  return { id, start: now.toISOString() };
}

/**
 * `run` checked to be a usable run mark (an id of safe characters, a parseable start time);
 * a fresh {@link newRun} when `undefined`. Anything else is a `TypeError` naming the value.
 *
 * @example
 * ```ts
 * import { checkRun } from "./runs.ts";
 * checkRun({ id: "seed0", start: "2025-06-01T12:00:00.000Z" });
 * ```
 */
export function checkRun(run: RunInfo | undefined): RunInfo {
  if (run === undefined) return newRun();
  const shown = JSON.stringify(run) ?? String(run);
  if (!run || typeof run !== "object") {
    throw new TypeError(
      `run must be { id, start } (e.g. newRun(), or another logger's .run), got ${shown}`,
    );
  }
  if (typeof run.id !== "string" || !/^[A-Za-z0-9._:-]{1,64}$/.test(run.id)) {
    throw new TypeError(
      `run.id must be 1 to 64 letters, digits or . _ : - (it goes into every row), got ${
        JSON.stringify(run.id) ?? String(run.id)
      }`,
    );
  }
  if (typeof run.start !== "string" || Number.isNaN(Date.parse(run.start))) {
    throw new TypeError(
      `run.start must be a date-time string such as "${new Date(0).toISOString()}", got ${
        JSON.stringify(run.start) ?? String(run.start)
      }`,
    );
  }
  return { id: run.id, start: run.start };
}

/**
 * The rows of `rows` that `opts.run` asks for (all of them when it is not given).
 *
 * @example
 * ```ts
 * import { filterRuns } from "./runs.ts";
 * const rows = [{ metric: "loss", phase: "eval", stream: "test", experience: null, task: null,
 *   epoch: null, iteration: 1, trainExperience: 0, value: 1, run: "a" }] as const;
 * console.assert(filterRuns([...rows], { run: "b" }).length === 0);
 * ```
 */
export function filterRuns(rows: LoggedRow[], opts: ReadRowsOptions = {}): LoggedRow[] {
  if (opts.run === undefined) return rows;
  const wanted = new Set(typeof opts.run === "string" ? [opts.run] : opts.run);
  return rows.filter((r) => r.run !== undefined && wanted.has(r.run));
}

/**
 * Group rows by the run that wrote them, runs in the order they first appear (so the last one
 * is the latest appended). Rows without a run mark (older files) form a group with `run: null`.
 *
 * @example
 * ```ts ignore
 * const runs = splitRuns(await readCsvRows("runs/x/metrics.csv"));
 * const latest = runs.at(-1)!.rows;
 * ```
 */
export function splitRuns(rows: readonly LoggedRow[]): RunRows[] {
  const byId = new Map<string | null, RunRows>();
  for (const r of rows) {
    const key = r.run ?? null;
    let group = byId.get(key);
    if (!group) {
      group = { run: key, start: r.runStart ?? null, rows: [] };
      byId.set(key, group);
    }
    group.rows.push(r);
  }
  return [...byId.values()];
}
