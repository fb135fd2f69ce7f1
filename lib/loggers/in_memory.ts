/**
 * A logger that keeps the rows in an array: handy in tests and notebooks.
 *
 * @module
 */
import type { MetricRow } from "../data/rows.ts";
import type { Logger } from "./logger.ts";

/** The logger of {@link inMemoryLogger}. */
export interface InMemoryLogger extends Logger {
  /** Every row logged, in order. */
  readonly rows: MetricRow[];
}

/**
 * A logger that appends every row it receives to `rows`.
 *
 * @example
 * ```ts
 * import { inMemoryLogger } from "./in_memory.ts";
 * const logger = inMemoryLogger();
 * logger.log!([{ metric: "loss", phase: "eval", stream: "test", experience: null, task: null,
 *   epoch: null, iteration: 0, trainExperience: 0, value: 0.5 }]);
 * console.assert(logger.rows.length === 1);
 * ```
 */
export function inMemoryLogger(): InMemoryLogger {
  const rows: MetricRow[] = [];
  return {
    name: "inMemoryLogger",
    rows,
    log(batch) {
      rows.push(...batch);
    },
  };
}
