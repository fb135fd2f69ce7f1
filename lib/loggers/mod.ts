/**
 * Loggers: where metric rows go (progress bars, text, CSV and JSON Lines files, TensorBoard event
 * files, memory).
 *
 * @example
 * ```ts ignore
 * import { csvLogger, progressLogger } from "./mod.ts";
 * const loggers = [progressLogger(), csvLogger({ dir: "runs/x" })];
 * ```
 *
 * @module
 */
export * from "./logger.ts";
export * from "./progress.ts";
export * from "./progress_logger.ts";
export * from "./text.ts";
export * from "./csv.ts";
export * from "./jsonl.ts";
export * from "./tensorboard.ts";
export * from "./in_memory.ts";
export * from "./runs.ts";
export type { FileLoggerOptions, IfExists } from "./_files.ts";
