/**
 * Continual-learning metrics as pure functions of the accuracy matrix.
 *
 * `R[i][j]` is the accuracy on experience `j` after training on experience `i` (0-based, as
 * `Strategy.accuracyMatrix()` and {@link accuracyMatrix} build it). Entries that were not
 * measured (missing or NaN) are left out of every average; an average with no term is NaN.
 *
 * Definitions (1-based in the papers, 0-based here):
 * - average accuracy after experience k: `A_k = mean_{j ≤ k} R[k][j]` (Chaudhry et al. 2018,
 *   "Riemannian Walk for Incremental Learning");
 * - learning accuracy: `LA_k = mean_{j ≤ k} R[j][j]` (Riemer et al. 2019, "Learning to Learn
 *   without Forgetting by Maximizing Transfer and Minimizing Interference");
 * - forgetting of experience j after experience k: `f_j = max_{l < k} R[l][j] − R[k][j]` for
 *   `j < k`, and the average forgetting `F_k = mean_{j < k} f_j` (Chaudhry et al. 2018);
 * - backward transfer: `BWT = 1/(T−1) Σ_{i < T−1} (R[T−1][i] − R[i][i])` (Lopez-Paz & Ranzato
 *   2017, "Gradient Episodic Memory for Continual Learning");
 * - forward transfer: `FWT = 1/(T−1) Σ_{i ≥ 1} (R[i−1][i] − b[i])`, with `b[i]` the accuracy on
 *   experience i of the model at random initialization (Lopez-Paz & Ranzato 2017).
 *
 * @module
 */
import type { MetricRow } from "../data/rows.ts";
import { checkOptions, oneOf } from "../options.ts";

/** An accuracy matrix: `m[i][j]` = accuracy on experience j after training experience i. */
export type AccuracyMatrix = readonly (readonly number[])[];

function at(m: AccuracyMatrix, i: number, j: number): number {
  const v = m[i]?.[j];
  return typeof v === "number" && Number.isFinite(v) ? v : NaN;
}

function mean(values: number[]): number {
  let s = 0;
  let n = 0;
  for (const v of values) {
    if (Number.isFinite(v)) {
      s += v;
      n++;
    }
  }
  return n ? s / n : NaN;
}

function rowIndex(m: AccuracyMatrix, k: number | undefined, fn: string): number {
  const idx = k ?? m.length - 1;
  if (!Number.isInteger(idx) || idx < 0 || idx >= m.length) {
    throw new RangeError(
      `${fn}: row ${k} is out of range for an accuracy matrix of ${m.length} rows`,
    );
  }
  return idx;
}

/**
 * Average accuracy after training experience `k` (default: the last row): the mean of
 * `R[k][j]` over the experiences seen so far, `j ≤ k` (Chaudhry et al. 2018).
 *
 * @example Two experiences
 * ```ts
 * import { averageAccuracy } from "./functional.ts";
 * console.assert(averageAccuracy([[0.9, 0.1], [0.6, 0.8]]) === 0.7);
 * ```
 */
export function averageAccuracy(m: AccuracyMatrix, k?: number): number {
  const row = rowIndex(m, k, "averageAccuracy");
  return mean(Array.from({ length: row + 1 }, (_, j) => at(m, row, j)));
}

/**
 * Learning accuracy up to experience `k` (default: the last row): the mean of the accuracies
 * right after learning each experience, `R[j][j]` for `j ≤ k` (Riemer et al. 2019). It measures
 * plasticity, where {@link averageAccuracy} mixes plasticity and forgetting.
 *
 * @example
 * ```ts
 * import { learningAccuracy } from "./functional.ts";
 * console.assert(Math.abs(learningAccuracy([[0.9, 0.1], [0.6, 0.8]]) - 0.85) < 1e-12);
 * ```
 */
export function learningAccuracy(m: AccuracyMatrix, k?: number): number {
  const row = rowIndex(m, k, "learningAccuracy");
  return mean(Array.from({ length: row + 1 }, (_, j) => at(m, j, j)));
}

/**
 * Which forgetting: `"chaudhry"`, the best earlier accuracy minus the current one (Chaudhry et
 * al. 2018), or `"avalanche"`, the accuracy right after training the experience minus the
 * current one (Avalanche's `ExperienceForgetting`/`StreamForgetting`). They differ when an
 * experience's accuracy rose after it was trained (backward transfer, then a fall): the max form
 * measures the fall from the peak, Avalanche's only from the first value.
 */
export type ForgettingDefinition = "chaudhry" | "avalanche";

/** Options of {@link forgetting} and {@link averageForgetting}. */
export interface ForgettingOptions {
  /** The definition. @default "chaudhry" */
  definition?: ForgettingDefinition;
}

/** Checks the definition option (a misspelt one is an error, never the default). */
export function forgettingDefinition(
  fn: string,
  opts: ForgettingOptions = {},
): ForgettingDefinition {
  checkOptions(fn, opts, { definition: oneOf("chaudhry", "avalanche") });
  return opts.definition ?? "chaudhry";
}

/**
 * Forgetting of each experience `j < k` after training experience `k` (default: the last row):
 * `f_j = max_{l < k} R[l][j] − R[k][j]` (Chaudhry et al. 2018), or with
 * `{ definition: "avalanche" }` `f_j = R[j][j] − R[k][j]` (Avalanche's, the accuracy right after
 * training on j instead of the maximum). Entry j is NaN when `R[k][j]` or the earlier accuracy it
 * needs (every `R[l][j]`, or `R[j][j]`) is missing.
 *
 * @example
 * ```ts
 * import { forgetting } from "./functional.ts";
 * const m = [[0.9, 0.0, 0.0], [0.7, 0.8, 0.0], [0.5, 0.6, 0.9]];
 * const f = forgetting(m); // [0.9 − 0.5, 0.8 − 0.6]
 * console.assert(Math.abs(f[0] - 0.4) < 1e-12 && Math.abs(f[1] - 0.2) < 1e-12);
 * const rose = [[0.5, 0.0], [0.9, 0.8], [0.6, 0.7]]; // experience 0 improved, then fell
 * const a = forgetting(rose, 2, { definition: "avalanche" }); // [0.5 − 0.6, 0.8 − 0.7]
 * console.assert(Math.abs(a[0] + 0.1) < 1e-12 && Math.abs(forgetting(rose)[0] - 0.3) < 1e-12);
 * ```
 */
export function forgetting(m: AccuracyMatrix, k?: number, opts?: ForgettingOptions): number[] {
  const definition = forgettingDefinition("forgetting", opts);
  const row = rowIndex(m, k, "forgetting");
  return Array.from({ length: row }, (_, j) => {
    const now = at(m, row, j);
    if (definition === "avalanche") return at(m, j, j) - now;
    let best = -Infinity;
    for (let l = 0; l < row; l++) {
      const v = at(m, l, j);
      if (v > best) best = v;
    }
    return best === -Infinity || Number.isNaN(now) ? NaN : best - now;
  });
}

/**
 * Average forgetting after training experience `k` (default: the last row): the mean of
 * {@link forgetting} over `j < k` (Chaudhry et al. 2018; `{ definition: "avalanche" }` for
 * Avalanche's `StreamForgetting`). NaN after the first experience.
 *
 * @example
 * ```ts
 * import { averageForgetting } from "./functional.ts";
 * const m = [[0.9, 0.0, 0.0], [0.7, 0.8, 0.0], [0.5, 0.6, 0.9]];
 * console.assert(Math.abs(averageForgetting(m) - 0.3) < 1e-12);
 * ```
 */
export function averageForgetting(m: AccuracyMatrix, k?: number, opts?: ForgettingOptions): number {
  return mean(forgetting(m, k, opts));
}

/**
 * Backward transfer after training experience `k` (default: the last row, `T − 1`):
 * `1/k Σ_{i < k} (R[k][i] − R[i][i])` (Lopez-Paz & Ranzato 2017). Negative values mean
 * forgetting. NaN after the first experience.
 *
 * @example
 * ```ts
 * import { backwardTransfer } from "./functional.ts";
 * const m = [[0.9, 0.0, 0.0], [0.7, 0.8, 0.0], [0.5, 0.6, 0.9]];
 * // ((0.5 − 0.9) + (0.6 − 0.8)) / 2
 * console.assert(Math.abs(backwardTransfer(m) + 0.3) < 1e-12);
 * ```
 */
export function backwardTransfer(m: AccuracyMatrix, k?: number): number {
  const row = rowIndex(m, k, "backwardTransfer");
  return mean(Array.from({ length: row }, (_, i) => at(m, row, i) - at(m, i, i)));
}

/**
 * Forward transfer: `1/(T−1) Σ_{i ≥ 1} (R[i−1][i] − b[i])` (Lopez-Paz & Ranzato 2017), where
 * `baseline[i]` is the accuracy on experience i of the model at random initialization. It
 * needs the accuracy on experience i measured *before* training on it: evaluate the whole test
 * stream after each training experience, and once before the first one (that evaluation gives
 * the baseline; see {@link accuracyBeforeTraining}). With `k`, only rows up to `k` are used.
 *
 * @example
 * ```ts
 * import { forwardTransfer } from "./functional.ts";
 * const m = [[0.9, 0.3, 0.2], [0.7, 0.8, 0.4], [0.5, 0.6, 0.9]];
 * const b = [0.1, 0.2, 0.3];
 * // ((0.3 − 0.2) + (0.4 − 0.3)) / 2
 * console.assert(Math.abs(forwardTransfer(m, b) - 0.1) < 1e-12);
 * ```
 */
export function forwardTransfer(
  m: AccuracyMatrix,
  baseline: readonly number[],
  k?: number,
): number {
  const last = m.length === 0 ? -1 : rowIndex(m, k, "forwardTransfer");
  const terms: number[] = [];
  for (let i = 1; i <= last + 1; i++) {
    const b = baseline[i];
    terms.push(at(m, i - 1, i) - (typeof b === "number" ? b : NaN));
  }
  return mean(terms);
}

/**
 * The accuracy of each experience of `stream` measured before any training (eval rows with
 * `trainExperience === -1`): the random-initialization baseline of {@link forwardTransfer}.
 * Experiences not evaluated then are NaN.
 *
 * @example
 * ```ts
 * import { accuracyBeforeTraining } from "./functional.ts";
 * const row = { metric: "accuracy", phase: "eval", stream: "test", experience: 1, task: null,
 *   epoch: null, iteration: 0, trainExperience: -1, value: 0.25 } as const;
 * console.assert(accuracyBeforeTraining([row])[1] === 0.25);
 * ```
 */
export function accuracyBeforeTraining(rows: readonly MetricRow[], stream = "test"): number[] {
  const b: number[] = [];
  for (const r of rows) {
    if (r.metric !== "accuracy" || r.phase !== "eval" || r.stream !== stream) continue;
    if (r.experience === null || r.task !== null || r.trainExperience !== -1) continue;
    if (r.at !== undefined && r.at !== "experience") continue;
    b[r.experience] = r.value;
  }
  return Array.from(b, (v) => v ?? NaN);
}
