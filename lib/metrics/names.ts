/**
 * Avalanche-style names of metric rows, e.g. `Top1_Acc_Stream/eval_phase/test_stream/Task000`,
 * for people and tools that know Avalanche's `EvaluationPlugin` keys. Rows are the data; names
 * are only a rendering of their coordinates.
 *
 * @module
 */
import type { Granularity } from "./metric.ts";
import type { MetricRow } from "../data/rows.ts";
import { anyOf, checkOptions } from "../options.ts";

const SUFFIX: Record<Granularity, string> = {
  minibatch: "MB",
  epoch: "Epoch",
  experience: "Exp",
  stream: "Stream",
};

const RAM_SUFFIX: Record<Granularity, string> = {
  minibatch: "MB",
  epoch: "Epoch",
  experience: "Experience",
  stream: "Stream",
};

/**
 * Granularity of a row: its `at` field, else inferred from its coordinates (the loop's own rows
 * have no `at`: train rows with an epoch are per epoch, eval rows per experience or stream).
 *
 * @example
 * ```ts
 * import { granularityOf } from "./names.ts";
 * const row = { metric: "loss", phase: "train", stream: "train", experience: 0, task: null,
 *   epoch: 1, iteration: 8, trainExperience: 0, value: 0.3 } as const;
 * console.assert(granularityOf(row) === "epoch");
 * ```
 */
export function granularityOf(row: MetricRow): Granularity {
  if (row.at) return row.at;
  if (row.phase === "train" && row.epoch !== null) return "epoch";
  return row.experience !== null ? "experience" : "stream";
}

const TRANSFER: Record<string, string> = {
  forgetting: "Forgetting",
  bwt: "BWT",
  forwardTransfer: "ForwardTransfer",
};

/** Options of {@link avalancheName}. */
export interface AvalancheNameOptions {
  /**
   * Task label shown for rows not split by task (`task: null`); `null` leaves the task out, as
   * Avalanche does for values over several task labels. @default 0
   */
  task?: number | null;
}

function pad3(n: number): string {
  return String(n).padStart(3, "0");
}

/**
 * The name Avalanche's evaluation plugin would give the row:
 * `{Metric}_{MB|Epoch|Exp|Stream}/{phase}_phase/{stream}_stream/Task{ttt}[/Exp{eee}]`, with
 * Avalanche's metric names (`Top1_Acc`, `Top5_Acc`, `Top1_ClassAcc` (class appended),
 * `Loss`, `Time`, `MaxRAMUsage`, `MAC`, `ConfusionMatrix` (true and predicted class
 * appended), `ExperienceForgetting`, `StreamForgetting` (no task), `ExperienceBWT`,
 * `StreamBWT`, `ExperienceForwardTransfer`, `StreamForwardTransfer`). Metrics Avalanche lacks
 * are named alike (`Top1_SeenClassesAcc_Exp`, `MaxTensorMemory_Epoch`, `myMetric_Epoch`).
 *
 * @example
 * ```ts
 * import { avalancheName } from "./names.ts";
 * const row = { metric: "accuracy", phase: "eval", stream: "test", experience: null, task: null,
 *   epoch: null, iteration: 10, trainExperience: 0, value: 0.9, at: "stream" } as const;
 * console.assert(avalancheName(row) === "Top1_Acc_Stream/eval_phase/test_stream/Task000");
 * ```
 */
export function avalancheName(row: MetricRow, opts: AvalancheNameOptions = {}): string {
  checkOptions("avalancheName", opts, { task: anyOf("integer", "null") });
  const at = granularityOf(row);
  const g = SUFFIX[at];
  let base: string;
  let withTask = true;
  let tail = "";
  switch (row.metric) {
    case "accuracy":
      base = `Top1_Acc_${g}`;
      break;
    case "topKAccuracy":
      base = `Top${row.k ?? 1}_Acc_${g}`;
      break;
    case "classAccuracy":
      base = `Top1_ClassAcc_${g}`;
      tail = `/${row.class}`;
      break;
    case "seenClassesAccuracy":
      base = `Top1_SeenClassesAcc_${g}`;
      break;
    case "loss":
      base = `Loss_${g}`;
      break;
    case "time":
      base = `Time_${g}`;
      break;
    case "ram":
      base = `MaxRAMUsage_${RAM_SUFFIX[at]}`;
      break;
    case "tensorMemory":
      base = `MaxTensorMemory_${g}`;
      break;
    case "tensorCount":
      base = `MaxTensorCount_${g}`;
      break;
    case "macs":
      base = `MAC_${g}`;
      break;
    case "confusionMatrix":
      base = `ConfusionMatrix_${g}`;
      tail = `/${row.class}/${row.predicted}`;
      break;
    default:
      if (row.metric in TRANSFER) {
        const stream = at === "stream";
        base = `${stream ? "Stream" : "Experience"}${TRANSFER[row.metric]}`;
        withTask = !stream;
      } else {
        base = `${row.metric}_${g}`;
      }
  }
  let name = `${base}/${row.phase}_phase/${row.stream}_stream`;
  const task = row.task ?? (opts.task === undefined ? 0 : opts.task);
  if (withTask && task !== null) name += `/Task${pad3(task)}`;
  if (at === "experience" && row.experience !== null) name += `/Exp${pad3(row.experience)}`;
  return name + tail;
}
