/**
 * The confusion matrix, as long-form rows: one row per (true class, predicted class) cell.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { StrategyContext } from "../strategy/context.ts";
import { additive, type HostSums, type Sink } from "./_accumulate.ts";
import {
  GRANULARITY_OPTIONS,
  type GranularityOptions,
  type Metric,
  resolveWindows,
  type RowBase,
} from "./metric.ts";
import { checkOptions } from "../options.ts";
import type { MetricRow } from "../data/rows.ts";

/** Options of {@link confusionMatrix}. */
export interface ConfusionMatrixOptions extends GranularityOptions {
  /** What each value covers. @default ["stream"] */
  at?: GranularityOptions["at"];
  /**
   * Number of classes (rows and columns). Default: the model's output width, which grows with
   * incremental heads.
   */
  numClasses?: number;
  /** Divide each row by the number of samples of its true class (rows sum to 1). @default false */
  normalize?: boolean;
}

/**
 * Confusion matrix (`"confusionMatrix"` rows; Avalanche's `ConfusionMatrix_Stream`): for every
 * true class `class` and predicted class `predicted`, the number of samples (or, with
 * `normalize`, the share of the true class's samples). Rows suit a heat map directly (e.g.
 * Plot's `cell` mark with x: "predicted", y: "class", fill: "value"); {@link toConfusionMatrix}
 * turns them back into a matrix.
 *
 * @example Confusion matrix of each evaluation stream
 * ```ts
 * import { confusionMatrix } from "./confusion.ts";
 * const metric = confusionMatrix({ at: "stream", normalize: true });
 * console.assert(metric.name === "confusionMatrix");
 * ```
 */
export function confusionMatrix(opts: ConfusionMatrixOptions = {}): Metric {
  checkOptions("confusionMatrix", opts, {
    ...GRANULARITY_OPTIONS,
    numClasses: "integer",
    normalize: "boolean",
  });
  const windows = resolveWindows("confusionMatrix", opts, ["stream"]);
  const fixed = opts.numClasses;
  if (fixed !== undefined && (!Number.isInteger(fixed) || fixed < 1)) {
    throw new RangeError(`confusionMatrix numClasses must be an integer ≥ 1, got ${fixed}`);
  }
  const update = (ctx: StrategyContext, sink: Sink) => {
    const out = ctx.output!;
    const width = Math.max(fixed ?? 0, out.shape[out.rank - 1]!);
    const truth = tf.oneHot(ctx.batch!.y, width);
    const pred = tf.oneHot(tf.cast(tf.argMax(out, -1), "int32") as tf.Tensor1D, width);
    sink.device("cm", tf.matMul(tf.cast(truth, "float32"), tf.cast(pred, "float32"), true, false));
  };
  const rows = (sums: HostSums, base: RowBase): MetricRow[] => {
    const cm = sums.get("cm");
    if (!cm) return [];
    const size = fixed ?? cm.shape[0];
    const width = cm.shape[1];
    const out: MetricRow[] = [];
    for (let t = 0; t < size; t++) {
      let total = 0;
      for (let p = 0; p < width; p++) total += cm.data[t * width + p] ?? 0;
      for (let p = 0; p < size; p++) {
        const v = t < cm.shape[0] && p < width ? cm.data[t * width + p] : 0;
        out.push({
          ...base,
          metric: "confusionMatrix",
          class: t,
          predicted: p,
          value: opts.normalize ? (total > 0 ? v / total : 0) : v,
        });
      }
    }
    return out;
  };
  return additive({ name: "confusionMatrix", windows, update, rows });
}

/**
 * The matrix `m[true][predicted]` of confusion-matrix rows. Give it the rows of one window (e.g.
 * the last stream evaluation); cells missing from the rows are 0.
 *
 * @example
 * ```ts
 * import { toConfusionMatrix } from "./confusion.ts";
 * const base = { metric: "confusionMatrix", phase: "eval", stream: "test", experience: null,
 *   task: null, epoch: null, iteration: 0, trainExperience: 0 } as const;
 * const m = toConfusionMatrix([{ ...base, class: 1, predicted: 0, value: 3 }]);
 * console.assert(m[1][0] === 3 && m[0][0] === 0);
 * ```
 */
export function toConfusionMatrix(rows: readonly MetricRow[]): number[][] {
  const cells = rows.filter((r) =>
    r.metric === "confusionMatrix" && r.class !== undefined && r.predicted !== undefined
  );
  let n = 0;
  for (const r of cells) n = Math.max(n, r.class! + 1, r.predicted! + 1);
  const m = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (const r of cells) m[r.class!][r.predicted!] = r.value;
  return m;
}
