/**
 * A progress bar plugin: per epoch, the share of minibatches done, samples/s, the running loss
 * and the time left. Redraws one line in a terminal; prints one line per epoch elsewhere. Its
 * first line says which training step runs and why (`strategy.plan()`), and again on a change.
 *
 * @module
 */
import type { StrategyContext } from "../strategy/context.ts";
import type { Plugin } from "../strategy/plugin.ts";
import { checkOptions } from "../options.ts";

/** Options of {@link progressBar}. */
export interface ProgressBarOptions {
  /** Where to write. @default stderr */
  write?: (text: string) => void;
  /** Redraw in place (`\r`). @default true when stderr is a terminal */
  live?: boolean;
  /** Bar width in characters. @default 24 */
  width?: number;
  /** Minimum milliseconds between redraws (each redraw reads the loss back once). @default 200 */
  intervalMs?: number;
  /** Also print the accuracy of each evaluated experience. @default false */
  eval?: boolean;
}

const encoder = new TextEncoder();

function defaultWrite(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

function isTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/** Formats seconds as `1m05s` or `12s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/**
 * A plugin that shows training progress.
 *
 * @example
 * ```ts ignore
 * const strategy = naive({ model, plugins: [progressBar()] });
 * ```
 */
export function progressBar(opts: ProgressBarOptions = {}): Plugin {
  checkOptions("progressBar", opts, {
    write: "function",
    live: "boolean",
    width: "integer",
    intervalMs: "number",
    eval: "boolean",
  });
  const write = opts.write ?? defaultWrite;
  const live = opts.live ?? (opts.write ? false : isTerminal());
  const width = opts.width ?? 24;
  const interval = opts.intervalMs ?? 200;
  let start = 0;
  let last = 0;
  let samples = 0;
  let loss = NaN;
  let total = 0;
  let done = 0;
  let lineOpen = false;
  /** The step line last written: written again only when the plan changes. */
  let shownStep = "";

  const label = (ctx: StrategyContext, epoch: number) => {
    const exp = ctx.experience!;
    const of = exp.stream === "train" ? `/${exp.info.numExperiences}` : "";
    return `[exp ${exp.id + 1}${of} epoch ${epoch}/${ctx.epochs}]`;
  };
  const line = (ctx: StrategyContext, final: boolean) => {
    const elapsed = (performance.now() - start) / 1000;
    const frac = total ? done / total : 1;
    const filled = Math.round(frac * width);
    const bar = "█".repeat(filled) + "░".repeat(width - filled);
    const rate = elapsed > 0 ? Math.round(samples / elapsed) : 0;
    const eta = final
      ? `${formatDuration(elapsed)}`
      : `ETA ${formatDuration(frac > 0 ? elapsed / frac - elapsed : NaN)}`;
    const lossText = Number.isFinite(loss) ? ` loss ${loss.toFixed(4)}` : "";
    return `${label(ctx, final ? ctx.clock.epoch : ctx.clock.epoch + 1)} ${bar} ${
      String(Math.round(frac * 100)).padStart(3)
    }% ${done}/${total} ` +
      `${rate} samples/s${lossText} ${eta}`;
  };

  return {
    name: "progressBar",
    beforeTrainingEpoch(ctx) {
      start = performance.now();
      last = 0;
      samples = 0;
      loss = NaN;
      done = 0;
      total = ctx.dataLoader?.length ?? 0;
    },
    async afterTrainingIteration(ctx) {
      // Which step trains and why, once, and again whenever it changes (a plugin that brings
      // the tape back shows here).
      const step = ctx.step;
      const stepLine = step ? `step: ${step.step} (${step.reasons.join("; ")})` : "";
      if (stepLine && stepLine !== shownStep) {
        write(`${lineOpen ? (live ? "\x1b[K\n" : "\n") : ""}${stepLine}\n`);
        lineOpen = false;
        shownStep = stepLine;
      }
      done++;
      samples += ctx.batch?.n ?? 0;
      const now = performance.now();
      if (live && now - last >= interval) {
        last = now;
        // Read asynchronously: the "webgpu" backend has no synchronous read of GPU data.
        if (ctx.loss) loss = (await ctx.loss.data())[0];
        write(`\r${line(ctx, false)}\x1b[K`);
        lineOpen = true;
      }
    },
    afterTrainingEpoch(ctx) {
      const rows = ctx.rows;
      for (let i = rows.length - 1; i >= 0; i--) {
        if (rows[i].metric === "loss" && rows[i].phase === "train") {
          loss = rows[i].value;
          break;
        }
      }
      write(`${live ? "\r" : ""}${line(ctx, true)}${live ? "\x1b[K" : ""}\n`);
      lineOpen = false;
    },
    afterEvalExp(ctx) {
      if (opts.eval !== true) return;
      const rows = ctx.rows;
      const acc = rows.findLast((r) =>
        r.metric === "accuracy" && r.phase === "eval" && r.experience !== null
      );
      if (lineOpen) write("\n");
      lineOpen = false;
      if (acc) {
        write(`  eval ${acc.stream} exp ${acc.experience}: accuracy ${acc.value.toFixed(4)}\n`);
      }
    },
  };
}
