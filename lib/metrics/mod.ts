/**
 * Metrics: long-form rows, pure functions of the accuracy matrix, and the metric family driven
 * by the evaluation plugin (accuracy, loss, forgetting, backward and forward transfer,
 * confusion matrix, timing, memory, MACs).
 *
 * @example
 * ```ts ignore
 * import { accuracy, bwt, forgetting, functional, loss, timing } from "./mod.ts";
 * const metrics = [accuracy({ at: ["epoch", "stream"] }), loss(), forgetting(), bwt(), timing()];
 * const f = functional.averageForgetting(strategy.accuracyMatrix());
 * ```
 *
 * @module
 */
export * from "../data/rows.ts";
/** Pure functions of the accuracy matrix (as Avalanche's `evaluation/functional.py`). */
export * as functional from "./functional.ts";
export * from "./metric.ts";
export * from "./accuracy.ts";
export * from "./loss.ts";
export * from "./forgetting.ts";
export * from "./confusion.ts";
export * from "./timing.ts";
export * from "./memory.ts";
export * from "./mac.ts";
export * from "./names.ts";
export type { PerTask } from "./_accumulate.ts";
