/**
 * A progress logger: a bar with rate and time left for each training epoch and each evaluated
 * experience, closed by a line with the metric values of that epoch or experience. It redraws
 * one line in a terminal, keeps one live-updating output in Jupyter (`deno jupyter`), and
 * prints one line per epoch and experience elsewhere. It never reads tensors back.
 *
 * @module
 */
import type { MetricRow } from "../data/rows.ts";
import type { StrategyContext } from "../strategy/context.ts";
import type { Logger } from "./logger.ts";
import { formatDuration } from "./progress.ts";
import { formatValue } from "./text.ts";
import { checkOptions, oneOf } from "../options.ts";

/** A MIME bundle for Jupyter. */
export type MimeBundle = Record<string, string>;

/** Jupyter's `display` (Deno.jupyter.display), or a stand-in. */
export type DisplayFn = (
  bundle: MimeBundle,
  opts: { raw: true; update?: boolean; display_id: string },
) => void | Promise<void>;

/** Options of {@link progressLogger}. */
export interface ProgressLoggerOptions {
  /**
   * `"terminal"` redraws a line, `"jupyter"` updates a notebook output in place, `"lines"` prints
   * a line per epoch and experience. `"auto"`: Jupyter inside `deno jupyter`, else terminal when
   * stderr is a terminal (or `write` is given and `live` is true), else lines.
   * @default "auto"
   */
  mode?: "auto" | "terminal" | "jupyter" | "lines";
  /** Where terminal and line output goes. @default stderr */
  write?: (text: string) => void;
  /** Redraw in place in `"auto"` mode with a custom `write`. @default false */
  live?: boolean;
  /** Jupyter's display function. @default Deno.jupyter.display */
  display?: DisplayFn;
  /** Bar width in characters. @default 24 */
  width?: number;
  /** Minimum milliseconds between redraws. @default 200 (500 in Jupyter) */
  intervalMs?: number;
  /** Show a bar for each evaluated experience too. @default true */
  eval?: boolean;
  /** Lines kept in the Jupyter output. @default 200 */
  maxLines?: number;
}

const encoder = new TextEncoder();

/**
 * `Deno.jupyter` when running inside `deno jupyter`, else undefined (accessing `Deno.jupyter`
 * elsewhere throws).
 *
 * @example
 * ```ts
 * import { jupyter } from "./progress_logger.ts";
 * console.assert(jupyter() === undefined); // not in a notebook
 * ```
 */
export function jupyter(): { display: DisplayFn } | undefined {
  try {
    const j = (Deno as unknown as { jupyter?: { display?: unknown } }).jupyter;
    return j && typeof j.display === "function" ? (j as { display: DisplayFn }) : undefined;
  } catch {
    return undefined;
  }
}

function stderrIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

interface Output {
  /** Shows the unfinished line (throttled by the caller). */
  progress(line: string): void | Promise<void>;
  /** Prints a finished line. */
  line(text: string): void | Promise<void>;
  /** A new output block begins (a new top-level train or eval call). */
  begin(): void;
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

let displayCounter = 0;

function jupyterOutput(display: DisplayFn, maxLines: number): Output {
  let id: string | undefined;
  let lines: string[] = [];
  let current = "";
  const render = async () => {
    const text = [...lines, ...(current ? [current] : [])].join("\n");
    const bundle = {
      "text/plain": text,
      "text/html": `<pre style="margin:0">${escapeHtml(text)}</pre>`,
    };
    if (id === undefined) {
      id = `perennial-progress-${Date.now()}-${displayCounter++}`;
      await display(bundle, { raw: true, display_id: id });
    } else {
      await display(bundle, { raw: true, update: true, display_id: id });
    }
  };
  return {
    progress(line) {
      current = line;
      return render();
    },
    line(text) {
      lines.push(text);
      if (lines.length > maxLines) lines = lines.slice(-maxLines);
      current = "";
      return render();
    },
    begin() {
      id = undefined;
      lines = [];
      current = "";
    },
  };
}

function streamOutput(write: (s: string) => void, live: boolean): Output {
  let open = false;
  return {
    progress(line) {
      if (!live) return;
      write(`\r${line}\x1b[K`);
      open = true;
    },
    line(text) {
      write(live && open ? `\r${text}\x1b[K\n` : `${text}\n`);
      open = false;
    },
    begin() {},
  };
}

const UNIT: Record<string, (v: number) => string> = {
  time: (v) => `${v.toFixed(2)}s`,
  ram: (v) => `${v.toFixed(0)} MiB`,
  tensorMemory: (v) => `${v.toFixed(1)} MiB`,
};

/**
 * A compact summary of rows not split by task or class: `loss 0.1234 accuracy 0.9500 time 1.20s`.
 *
 * @example
 * ```ts
 * import { summarize } from "./progress_logger.ts";
 * const base = { phase: "eval", stream: "test", experience: null, task: null, epoch: null,
 *   iteration: 0, trainExperience: 0 } as const;
 * console.assert(summarize([{ ...base, metric: "loss", value: 0.5 }]) === "loss 0.5000");
 * ```
 */
export function summarize(rows: readonly MetricRow[]): string {
  const parts: string[] = [];
  for (const r of rows) {
    if (r.task !== null || r.class !== undefined || r.predicted !== undefined) continue;
    const label = r.metric === "topKAccuracy" ? `top${r.k}` : r.metric;
    const unit = UNIT[r.metric];
    parts.push(`${label} ${unit ? unit(r.value) : formatValue(r.value, 4, r.metric)}`);
  }
  return parts.join(" ");
}

/**
 * A logger showing progress bars (rate, time left) and the metric values of each epoch,
 * evaluated experience and stream.
 *
 * @example
 * ```ts ignore
 * const evaluator = evaluation({ metrics: [accuracy(), loss()], loggers: [progressLogger()] });
 * ```
 */
export function progressLogger(opts: ProgressLoggerOptions = {}): Logger {
  checkOptions("progressLogger", opts, {
    mode: oneOf("auto", "terminal", "jupyter", "lines"),
    write: "function",
    live: "boolean",
    display: "function",
    width: "integer",
    intervalMs: "number",
    eval: "boolean",
    maxLines: "integer",
  });
  const mode = opts.mode ?? "auto";
  if (!["auto", "terminal", "jupyter", "lines"].includes(mode)) {
    throw new RangeError(
      `progressLogger mode must be "auto", "terminal", "jupyter" or "lines", got "${mode}"`,
    );
  }
  const j = opts.display ? { display: opts.display } : jupyter();
  const resolved = mode !== "auto"
    ? mode
    : j && !opts.write
    ? "jupyter"
    : (opts.write ? opts.live === true : stderrIsTerminal())
    ? "terminal"
    : "lines";
  if (resolved === "jupyter" && !j) {
    throw new Error(
      'progressLogger mode "jupyter" needs `deno jupyter` (or a display function in options)',
    );
  }
  const write = opts.write ?? ((s: string) => void Deno.stderr.writeSync(encoder.encode(s)));
  const out = resolved === "jupyter"
    ? jupyterOutput(j!.display, opts.maxLines ?? 200)
    : streamOutput(write, resolved === "terminal");
  const width = opts.width ?? 24;
  const interval = opts.intervalMs ?? (resolved === "jupyter" ? 500 : 200);
  const showEval = opts.eval !== false;

  let label = "";
  let total = 0;
  let done = 0;
  let samples = 0;
  let start = 0;
  let last = 0;
  let running = "";
  let pending: MetricRow[] = [];
  let depth = 0;

  const bar = (final: boolean) => {
    const elapsed = (performance.now() - start) / 1000;
    const frac = total ? Math.min(1, done / total) : final ? 1 : 0;
    const filled = Math.round(frac * width);
    const rate = elapsed > 0 ? Math.round(samples / elapsed) : 0;
    const time = final
      ? formatDuration(elapsed)
      : `ETA ${formatDuration(frac > 0 ? elapsed / frac - elapsed : NaN)}`;
    return `${label} ${"█".repeat(filled)}${"░".repeat(width - filled)} ` +
      `${String(Math.round(frac * 100)).padStart(3)}% ${done}/${
        total || "?"
      } ${rate} samples/s ${time}`;
  };
  const startBar = (text: string, ctx: StrategyContext) => {
    label = text;
    total = ctx.dataLoader?.length ?? 0;
    done = 0;
    samples = 0;
    start = performance.now();
    last = 0;
    running = "";
  };
  const step = async (ctx: StrategyContext) => {
    done++;
    samples += ctx.batch?.n ?? 0;
    const now = performance.now();
    if (now - last >= interval) {
      last = now;
      await out.progress(bar(false) + (running ? ` | ${running}` : ""));
    }
  };
  const finish = async (rows: MetricRow[], withBar: boolean, head = label) => {
    const summary = summarize(rows);
    if (withBar) await out.line(bar(true) + (summary ? ` | ${summary}` : ""));
    else if (summary) await out.line(`${head} ${summary}`);
  };
  const begin = () => {
    pending = [];
    out.begin();
  };
  const take = (phase: "train" | "eval", at: MetricRow["at"]) => {
    const rows = pending.filter((r) => r.phase === phase && r.at === at);
    pending = pending.filter((r) => !(r.phase === phase && r.at === at));
    return rows;
  };

  return {
    name: "progressLogger",
    log(rows) {
      for (const r of rows) {
        if (r.at === "minibatch") continue;
        pending.push(r);
      }
      const mb = rows.filter((r) => r.at === "minibatch" && r.task === null);
      if (mb.length) running = summarize(mb);
    },
    beforeTraining() {
      if (depth++ === 0) begin();
    },
    beforeTrainingEpoch(ctx) {
      const exp = ctx.experience!;
      const of = exp.stream === "train" ? `/${exp.info.numExperiences}` : "";
      startBar(
        `[train exp ${exp.id + 1}${of} epoch ${ctx.clock.epoch + 1}/${ctx.epochs}]`,
        ctx,
      );
    },
    afterTrainingIteration: step,
    afterTrainingEpoch() {
      return finish(take("train", "epoch"), true);
    },
    afterTrainingExp(ctx) {
      return finish(take("train", "experience"), false, `[train exp ${ctx.experience!.id + 1}]`);
    },
    afterTraining(ctx) {
      depth = Math.max(0, depth - 1);
      return finish(take("train", "stream"), false, `[train ${ctx.experiences[0]?.stream}]`);
    },
    beforeEval() {
      if (depth++ === 0) begin();
    },
    beforeEvalExp(ctx) {
      const exp = ctx.experience!;
      startBar(`[eval ${exp.stream} exp ${exp.id + 1}]`, ctx);
    },
    async afterEvalIteration(ctx) {
      if (showEval) await step(ctx);
    },
    afterEvalExp() {
      return finish(take("eval", "experience"), showEval);
    },
    afterEval(ctx) {
      depth = Math.max(0, depth - 1);
      return finish(take("eval", "stream"), false, `[eval ${ctx.experiences[0]?.stream}]`);
    },
  };
}
