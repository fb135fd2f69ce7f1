/**
 * Reproductions of published continual-learning results (settings and targets of ContinualAI's
 * continual-learning-baselines), shared by `deno task repro` and the notebooks.
 *
 * @example In a notebook
 * ```ts ignore
 * import { reproFigures, runReproduction, verdict } from "../lib/repro/mod.ts";
 * const result = await runReproduction("gdumb-split-mnist", { mode: "quick", dataDir: "data" });
 * reproFigures(result).matrix; // renders inline
 * verdict(result); // target, ours, reached?
 * ```
 *
 * @module
 */
export * from "./configs.ts";
export * from "./build.ts";
export * from "./progress.ts";
export * from "./run.ts";
export * from "./compare.ts";
