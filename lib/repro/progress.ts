/**
 * One progress bar for a whole run (every experience, epoch and minibatch, online
 * sub-experiences included): share done, the current experience and epoch, samples/s, time
 * left, and a line per finished experience. It redraws one line in a terminal, updates one output
 * in place in Jupyter (`deno jupyter`), and prints a line every 10 % elsewhere (CI logs).
 *
 * @module
 */
import { formatDuration } from "../loggers/progress.ts";
import { jupyter } from "../loggers/progress_logger.ts";
import type { OnlineExperience } from "../benchmarks/generators.ts";
import type { StrategyContext } from "../strategy/context.ts";
import type { Plugin } from "../strategy/plugin.ts";
import { checkOptions, oneOf } from "../options.ts";

/** Options of {@link runProgress}. */
export interface RunProgressOptions {
  /** Number of (original) training experiences of the run. */
  experiences: number;
  /** Text before the bar, e.g. the run's name. @default "" */
  label?: string;
  /**
   * `"terminal"` redraws a line, `"jupyter"` updates a notebook output, `"lines"` prints a line
   * every 10 %, `"off"` shows nothing. `"auto"`: Jupyter inside `deno jupyter`, else terminal
   * when stderr is a terminal, else lines. @default "auto"
   */
  mode?: "auto" | "terminal" | "jupyter" | "lines" | "off";
  /** Where terminal and line output goes. @default stderr */
  write?: (text: string) => void;
  /** Bar width in characters. @default 24 */
  width?: number;
}

/** A run-level progress plugin, with {@link RunProgress.note} to print lines under the bar. */
export interface RunProgress extends Plugin {
  /** Prints a finished line (e.g. the accuracy after an experience). */
  note(text: string): Promise<void>;
  /** Closes the bar with the total time. */
  done(text?: string): Promise<void>;
}

const encoder = new TextEncoder();
let displays = 0;

function stderrIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/**
 * Where in the run a training iteration is, as a fraction: whole experiences done, plus the
 * share of the current one (its online sub-experiences, epochs and minibatches).
 *
 * @example
 * ```ts
 * import { runFraction } from "./progress.ts";
 * // experience 2 of 4, its 2nd epoch of 2, half of the minibatches: (1 + (1 + 0.5) / 2) / 4
 * console.assert(runFraction({ experience: 1, experiences: 4, epoch: 1, epochs: 2, done: 5, total: 10 }) === 0.4375);
 * ```
 */
export function runFraction(p: {
  experience: number;
  experiences: number;
  sub?: number;
  subs?: number;
  epoch: number;
  epochs: number;
  done: number;
  total: number;
}): number {
  const inEpoch = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
  const inSub = (p.epoch + inEpoch) / Math.max(1, p.epochs);
  const subs = Math.max(1, p.subs ?? 1);
  const inExp = ((p.sub ?? 0) + inSub) / subs;
  return Math.min(1, Math.max(0, (p.experience + inExp) / Math.max(1, p.experiences)));
}

/**
 * A plugin that shows the progress of a whole run.
 *
 * @example
 * ```ts ignore
 * const progress = runProgress({ experiences: 5, label: "si-split-mnist" });
 * const strategy = naive({ model, plugins: [progress] });
 * for (const exp of bench.train) {
 *   await strategy.train(exp);
 *   await progress.note(`after ${exp.id}: ${(await strategy.eval(bench.test)).accuracy}`);
 * }
 * await progress.done();
 * ```
 */
export function runProgress(opts: RunProgressOptions): RunProgress {
  checkOptions("runProgress", opts, {
    experiences: "integer",
    label: "string",
    mode: oneOf("auto", "terminal", "jupyter", "lines", "off"),
    write: "function",
    width: "integer",
  });
  if (!Number.isInteger(opts?.experiences) || opts.experiences < 1) {
    throw new RangeError(
      `runProgress needs experiences, an integer ≥ 1, got ${String(opts?.experiences)}`,
    );
  }
  const j = jupyter();
  const mode = opts.mode === undefined || opts.mode === "auto"
    ? (j ? "jupyter" : stderrIsTerminal() ? "terminal" : "lines")
    : opts.mode;
  if (mode === "jupyter" && !j) {
    throw new Error('runProgress: mode "jupyter" needs the Deno Jupyter kernel');
  }
  const write = opts.write ?? ((s: string) => void Deno.stderr.writeSync(encoder.encode(s)));
  const width = opts.width ?? 24;
  const label = opts.label ? `${opts.label} ` : "";
  const interval = mode === "jupyter" ? 1000 : 200;
  const lines: string[] = [];
  let id: string | undefined;
  let start = 0;
  let last = 0;
  let lastDecile = -1;
  let samples = 0;
  let done = 0;
  let total = 0;
  let where = "";
  let frac = 0;
  let open = false;

  const bar = (final: boolean) => {
    const elapsed = start ? (performance.now() - start) / 1000 : 0;
    const filled = Math.round(frac * width);
    const rate = elapsed > 0 ? Math.round(samples / elapsed) : 0;
    const time = final
      ? formatDuration(elapsed)
      : `ETA ${formatDuration(frac > 0 ? elapsed / frac - elapsed : NaN)}`;
    return `${label}${"█".repeat(filled)}${"░".repeat(width - filled)} ` +
      `${String(Math.round(frac * 100)).padStart(3)}% ${where} ${rate} samples/s ${time}`;
  };
  const show = async (text: string, final: boolean) => {
    if (mode === "off") return;
    if (mode === "jupyter") {
      const body = [...lines, text].join("\n");
      const bundle = {
        "text/plain": body,
        "text/html": `<pre style="margin:0">${escapeHtml(body)}</pre>`,
      };
      if (id === undefined) {
        id = `perennial-run-progress-${Date.now()}-${displays++}`;
        await j!.display(bundle, { raw: true, display_id: id });
      } else {
        await j!.display(bundle, { raw: true, update: true, display_id: id });
      }
    } else if (mode === "terminal") {
      write(`\r${text}\x1b[K${final ? "\n" : ""}`);
      open = !final;
    } else {
      const decile = Math.floor(frac * 10);
      if (final || decile > lastDecile) {
        lastDecile = decile;
        write(`${text}\n`);
      }
    }
  };
  const note = async (text: string) => {
    if (mode === "off") return;
    if (mode === "jupyter") {
      lines.push(text);
      await show(bar(false), false);
    } else {
      write(`${open ? "\r\x1b[K" : ""}${text}\n`);
      open = false;
      if (mode === "terminal" && start) {
        write(`\r${bar(false)}\x1b[K`);
        open = true;
      }
    }
  };

  return {
    name: "runProgress",
    beforeTrainingEpoch(ctx: StrategyContext) {
      if (!start) start = performance.now();
      done = 0;
      total = ctx.dataLoader?.length ?? 0;
    },
    async afterTrainingIteration(ctx: StrategyContext) {
      done++;
      samples += ctx.batch?.n ?? 0;
      const exp = ctx.experience as OnlineExperience | undefined;
      const origin = exp?.origin ?? exp;
      const experience = origin?.id ?? 0;
      frac = runFraction({
        experience,
        experiences: opts.experiences,
        sub: exp?.subIndex,
        subs: exp?.subCount,
        epoch: ctx.clock.epoch,
        epochs: ctx.epochs,
        done,
        total,
      });
      where = `exp ${experience + 1}/${opts.experiences}` +
        (exp?.subCount ? ` step ${exp.subIndex + 1}/${exp.subCount}` : "") +
        (ctx.epochs > 1 ? ` epoch ${ctx.clock.epoch + 1}/${ctx.epochs}` : "");
      const now = performance.now();
      if (mode === "lines" || now - last >= interval) {
        last = now;
        await show(bar(false), false);
      }
    },
    note,
    async done(text?: string) {
      frac = 1;
      where = "done";
      await show(bar(true) + (text ? ` | ${text}` : ""), true);
    },
  };
}
