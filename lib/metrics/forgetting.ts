/**
 * Metrics of the accuracy matrix over time: forgetting, backward transfer and forward transfer,
 * per evaluated experience and averaged over the stream. They read the accuracy rows the loop
 * writes at each evaluated experience (`ctx.rows`), so they cost no computation on the device,
 * and they survive a checkpoint restore (the rows are part of it).
 *
 * As in the papers, training experience `i` is assumed to be experience `i` of the stream: the
 * matrix row of an evaluation is the number of training experiences completed minus one, its
 * column the evaluated experience's id. The definitions are those of `functional.ts`.
 *
 * @module
 */
import type { StrategyContext } from "../strategy/context.ts";
import {
  type AccuracyMatrix,
  averageForgetting,
  backwardTransfer,
  type ForgettingDefinition,
  forwardTransfer as forwardTransferOf,
} from "./functional.ts";
import { type Granularity, type Metric, resolveWindows, rowBase } from "./metric.ts";
import type { MetricRow } from "../data/rows.ts";
import { anyOf, checkOptions, oneOf } from "../options.ts";

/** Incrementally indexed eval accuracies of `ctx.rows`: stream → row → experience → value. */
class AccuracyTable {
  readonly #streams = new Map<string, Map<number, Map<number, number>>>();
  #scanned = 0;
  #last: MetricRow | undefined;

  sync(rows: readonly MetricRow[]): void {
    // A restore replaces the rows: start over when the rows we saw are gone.
    if (
      rows.length < this.#scanned || (this.#scanned > 0 && rows[this.#scanned - 1] !== this.#last)
    ) {
      this.#streams.clear();
      this.#scanned = 0;
    }
    for (let i = this.#scanned; i < rows.length; i++) {
      const r = rows[i];
      if (r.metric !== "accuracy" || r.phase !== "eval" || r.experience === null) continue;
      if (r.task !== null || (r.at !== undefined && r.at !== "experience")) continue;
      let s = this.#streams.get(r.stream);
      if (!s) this.#streams.set(r.stream, s = new Map());
      let row = s.get(r.trainExperience);
      if (!row) s.set(r.trainExperience, row = new Map());
      row.set(r.experience, r.value);
    }
    this.#scanned = rows.length;
    this.#last = rows[rows.length - 1];
  }

  /** Rows 0..k of the stream's matrix (NaN where not measured). */
  matrix(stream: string, k: number): number[][] {
    const s = this.#streams.get(stream);
    let width = 0;
    for (const row of s?.values() ?? []) for (const j of row.keys()) width = Math.max(width, j + 1);
    return Array.from(
      { length: k + 1 },
      (_, i) => Array.from({ length: width }, (_, j) => s?.get(i)?.get(j) ?? NaN),
    );
  }

  /** Accuracies measured before any training (row -1). */
  baseline(stream: string): number[] {
    const row = this.#streams.get(stream)?.get(-1);
    const out: number[] = [];
    for (const [j, v] of row ?? []) out[j] = v;
    return Array.from(out, (v) => v ?? NaN);
  }
}

/** Options of {@link forgetting}, {@link bwt} and {@link forwardTransfer}. */
export interface TransferOptions {
  /** Per evaluated experience and/or averaged over each evaluation. @default ["experience", "stream"] */
  at?: "experience" | "stream" | readonly ("experience" | "stream")[];
}

/** Options of {@link forgetting}: the windows, and the definition. */
export interface ForgettingMetricOptions extends TransferOptions {
  /**
   * `"chaudhry"`: the best earlier accuracy minus the current one; `"avalanche"`: the accuracy
   * right after training the experience minus the current one (Avalanche's
   * `ExperienceForgetting`/`StreamForgetting`, whose values this then reproduces).
   * @default "chaudhry"
   */
  definition?: ForgettingDefinition;
}

interface MatrixSpec {
  name: string;
  /** Value for experience j evaluated after training experience k (or NaN for none). */
  experience(m: AccuracyMatrix, baseline: number[], j: number, k: number): number;
  /** Stream value after training experience k (or NaN). */
  stream(m: AccuracyMatrix, baseline: number[], k: number): number;
}

function matrixMetric(
  spec: MatrixSpec,
  opts: TransferOptions,
): Metric {
  // The values of `at` are checked by resolveWindows, whose errors list the valid ones.
  checkOptions(spec.name, opts, { at: anyOf("string", "array") });
  const windows = resolveWindows(
    spec.name,
    { at: opts.at as Granularity[] | undefined, phase: "eval" },
    ["experience", "stream"],
    ["experience", "stream"],
  );
  const table = new AccuracyTable();
  const emit = (ctx: StrategyContext, at: Granularity, value: number): MetricRow[] =>
    Number.isFinite(value) ? [{ ...rowBase(ctx, "eval", at), metric: spec.name, value }] : [];
  const metric: Metric = { name: spec.name };
  if (windows.has("eval", "experience")) {
    metric.afterEvalExp = (ctx) => {
      const exp = ctx.experience;
      if (!exp) return;
      table.sync(ctx.rows);
      const k = ctx.clock.trainExperiences - 1;
      const m = table.matrix(exp.stream, Math.max(k, 0));
      return emit(ctx, "experience", spec.experience(m, table.baseline(exp.stream), exp.id, k));
    };
  }
  if (windows.has("eval", "stream")) {
    metric.afterEval = (ctx) => {
      const stream = ctx.experiences[0]?.stream;
      const k = ctx.clock.trainExperiences - 1;
      if (stream === undefined || k < 0) return;
      table.sync(ctx.rows);
      return emit(ctx, "stream", spec.stream(table.matrix(stream, k), table.baseline(stream), k));
    };
  }
  return metric;
}

const value = (m: AccuracyMatrix, i: number, j: number) => m[i]?.[j] ?? NaN;

/**
 * Forgetting (`"forgetting"` rows), as Chaudhry et al. 2018: for an experience j evaluated after
 * training experience k > j, `max_{l < k} R[l][j] − R[k][j]`; per stream, the mean over the
 * experiences j < k. With `definition: "avalanche"`, `R[j][j] − R[k][j]`: the accuracy right
 * after training on j instead of the maximum, as Avalanche's `ExperienceForgetting` and
 * `StreamForgetting` compute it (the two agree unless an experience's accuracy rose after it
 * was trained). Evaluate the test stream after each training experience to fill the matrix.
 *
 * @example
 * ```ts
 * import { forgetting } from "./forgetting.ts";
 * const metric = forgetting({ at: ["experience", "stream"] });
 * console.assert(metric.name === "forgetting");
 * const asAvalanche = forgetting({ definition: "avalanche" });
 * console.assert(asAvalanche.name === "forgetting");
 * ```
 */
export function forgetting(opts: ForgettingMetricOptions = {}): Metric {
  const { definition = "chaudhry", ...windows } = opts ?? {};
  // The other matrix metrics take no definition: it is checked here, then taken out.
  checkOptions("forgetting", opts, {
    at: anyOf("string", "array"),
    definition: oneOf("chaudhry", "avalanche"),
  });
  const avalanche = definition === "avalanche";
  return matrixMetric({
    name: "forgetting",
    experience: (m, _b, j, k) => {
      if (k < 1 || j >= k) return NaN;
      if (avalanche) return value(m, j, j) - value(m, k, j);
      let best = -Infinity;
      for (let l = 0; l < k; l++) {
        const v = value(m, l, j);
        if (v > best) best = v;
      }
      return best === -Infinity ? NaN : best - value(m, k, j);
    },
    stream: (m, _b, k) => (k < 1 ? NaN : averageForgetting(m, k, { definition })),
  }, windows);
}

/**
 * Backward transfer (`"bwt"` rows), as Lopez-Paz & Ranzato 2017: for an experience j evaluated
 * after training experience k > j, `R[k][j] − R[j][j]`; per stream, the mean over j < k.
 * Negative values are forgetting.
 *
 * @example
 * ```ts
 * import { bwt } from "./forgetting.ts";
 * console.assert(bwt().name === "bwt");
 * ```
 */
export function bwt(opts: TransferOptions = {}): Metric {
  return matrixMetric({
    name: "bwt",
    experience: (m, _b, j, k) => (k < 1 || j >= k ? NaN : value(m, k, j) - value(m, j, j)),
    stream: (m, _b, k) => (k < 1 ? NaN : backwardTransfer(m, k)),
  }, opts);
}

/**
 * Forward transfer (`"forwardTransfer"` rows), as Lopez-Paz & Ranzato 2017: for experience j,
 * `R[j−1][j] − b[j]`, the accuracy on j just before training on it minus the accuracy of the
 * model at random initialization; per stream, the mean over the experiences measured so far.
 *
 * It needs two evaluations the usual protocol does not do by itself (as Avalanche's
 * `eval_every` / periodic evaluation provides): evaluate the whole test stream once before the
 * first training experience (the baseline b), and after each training experience (which
 * measures the next experience before it is trained on). Without the baseline, no row is
 * written.
 *
 * @example The protocol
 * ```ts ignore
 * const strategy = naive({ model, evaluator: evaluation({ metrics: [forwardTransfer()] }) });
 * await strategy.eval(bench.test); // baseline at random initialization
 * for (const exp of bench.train) {
 *   await strategy.train(exp);
 *   await strategy.eval(bench.test); // includes the next experience, before training on it
 * }
 * ```
 */
export function forwardTransfer(opts: TransferOptions = {}): Metric {
  return matrixMetric({
    name: "forwardTransfer",
    experience: (m, b, j, k) => j >= 1 && j === k + 1 ? value(m, k, j) - (b[j] ?? NaN) : NaN,
    stream: (m, b, k) => forwardTransferOf(m, b, k),
  }, opts);
}
