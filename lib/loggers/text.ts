/**
 * A plain-text logger: a line naming the run, headers at the start of each phase and
 * experience, then one line per metric value with its Avalanche name (as Avalanche's
 * `TextLogger`).
 *
 * @module
 */
import { toConfusionMatrix } from "../metrics/confusion.ts";
import { avalancheName } from "../metrics/names.ts";
import type { MetricRow } from "../data/rows.ts";
import type { Logger } from "./logger.ts";
import { checkRun, type RunInfo } from "./runs.ts";
import { checkOptions } from "../options.ts";

/** Options of {@link textLogger}. */
export interface TextLoggerOptions {
  /** Where to write. @default stdout */
  write?: (text: string) => void;
  /** Digits after the point of non-integer values. @default 4 */
  digits?: number;
  /**
   * The run named in the first line (`-- Run <id> started <time> --`), so that two runs written
   * to one file are told apart; pass a file logger's `.run` to name the same id.
   * @default a fresh `newRun()`
   */
  run?: RunInfo;
}

const encoder = new TextEncoder();

const COUNTS = new Set(["macs", "tensorCount", "confusionMatrix"]);

/**
 * Formats a metric value: counts (and integers beyond 1) as integers, others with `digits`
 * decimals.
 *
 * @example
 * ```ts
 * import { formatValue } from "./text.ts";
 * console.assert(formatValue(1, 4, "accuracy") === "1.0000" && formatValue(1088, 4, "macs") === "1088");
 * ```
 */
export function formatValue(v: number, digits = 4, metric?: string): string {
  if (Number.isInteger(v) && (Math.abs(v) > 1 || (metric !== undefined && COUNTS.has(metric)))) {
    return String(v);
  }
  return v.toFixed(digits);
}

/**
 * A logger writing text lines (to stdout by default, or any `write` function: a file, a
 * notebook cell). Its first output starts with a line naming the run (`-- Run <id> started
 * <time> --`). Confusion-matrix rows of one hook are printed as a matrix.
 *
 * @example Collect the text in a string
 * ```ts
 * import { textLogger } from "./text.ts";
 * let out = "";
 * const logger = textLogger({ write: (s) => void (out += s) });
 * logger.log!([{ metric: "loss", phase: "eval", stream: "test", experience: null, task: null,
 *   epoch: null, iteration: 0, trainExperience: 0, value: 0.5, at: "stream" }]);
 * console.assert(out.includes("Loss_Stream/eval_phase/test_stream/Task000 = 0.5000"));
 * ```
 */
export function textLogger(opts: TextLoggerOptions = {}): Logger & { readonly run: RunInfo } {
  const out = opts.write ?? ((s: string) => void Deno.stdout.writeSync(encoder.encode(s)));
  checkOptions("textLogger", opts, { write: "function", digits: "integer", run: "any" });
  const digits = opts.digits ?? 4;
  const run = checkRun(opts.run);
  let started = false;
  // Written with the first output, not at creation: a logger that never logs prints nothing.
  const write = (text: string) => {
    if (!started) {
      started = true;
      out(`-- Run ${run.id} started ${run.start} --\n`);
    }
    out(text);
  };
  return {
    name: "textLogger",
    run,
    log(rows) {
      const cells: MetricRow[] = [];
      let text = "";
      for (const r of rows) {
        if (r.metric === "confusionMatrix") cells.push(r);
        else text += `\t${avalancheName(r)} = ${formatValue(r.value, digits, r.metric)}\n`;
      }
      if (cells.length) {
        const name = avalancheName(cells[0]).split("/").slice(0, -2).join("/");
        const m = toConfusionMatrix(cells);
        const fmt = (v: number) => formatValue(v, 2, "confusionMatrix");
        const w = Math.max(...m.flat().map((v) => fmt(v).length), 1);
        text += `\t${name} =\n` +
          m.map((row) => "\t\t" + row.map((v) => fmt(v).padStart(w)).join(" ")).join(
            "\n",
          ) + "\n";
      }
      if (text) write(text);
    },
    beforeTraining() {
      write("-- >> Start of training phase << --\n");
    },
    beforeTrainingExp(ctx) {
      const e = ctx.experience!;
      write(`-- Training on experience ${e.id} (task ${e.taskLabel}) from ${e.stream} stream --\n`);
    },
    afterTrainingEpoch(ctx) {
      write(`Epoch ${ctx.clock.epoch - 1} ended.\n`);
    },
    afterTraining() {
      write("-- >> End of training phase << --\n");
    },
    beforeEval() {
      write("-- >> Start of eval phase << --\n");
    },
    beforeEvalExp(ctx) {
      const e = ctx.experience!;
      write(
        `-- Starting eval on experience ${e.id} (task ${e.taskLabel}) from ${e.stream} stream --\n`,
      );
    },
    afterEval() {
      write("-- >> End of eval phase << --\n");
    },
  };
}
