/**
 * The evaluation plugin: runs the metrics at each hook, collects their rows, keeps the last
 * value and the whole curve of each metric (Avalanche's `EvaluationPlugin`), and hands the rows
 * to the loggers.
 *
 * @module
 */
import { accuracy } from "../metrics/accuracy.ts";
import { loss } from "../metrics/loss.ts";
import { type Metric, METRIC_HOOKS, type MetricHookName } from "../metrics/metric.ts";
import { avalancheName } from "../metrics/names.ts";
import type { MetricRow, Phase, RowFilter } from "../data/rows.ts";
import type { Logger } from "../loggers/logger.ts";
import type { StrategyContext } from "../strategy/context.ts";
import type { Plugin } from "../strategy/plugin.ts";
import { checkOptions, type OptionSpec } from "../options.ts";

/** Options of {@link evaluation} and {@link EvaluationPlugin}. */
export interface EvaluationOptions {
  /**
   * Metrics (arrays are flattened, as Avalanche's helpers return lists).
   * @default [accuracy(), loss()] (epoch, experience and stream)
   */
  metrics?: readonly (Metric | readonly Metric[])[];
  /** Loggers that receive the rows. @default [] */
  loggers?: readonly Logger[];
  /** Keep every value of every metric for {@link EvaluationPlugin.getAllMetrics}. @default true */
  collectAll?: boolean;
  /**
   * Also append the rows to the run's rows (`ctx.rows`: `strategy.rows`, and the rows of what
   * `train` and `eval` return), except the top-1 accuracy and loss rows the loop already writes
   * itself (train epochs, eval experiences and streams), which would be duplicates.
   * @default true
   */
  shareRows?: boolean;
  /**
   * Check that each `eval` call gets a whole stream (Avalanche's `strict_checks`): experiences of
   * one stream, ids 0, 1, ..., n − 1 in order, and no fewer than an earlier evaluation of that
   * stream had (experiences carry no link to their stream, so the first evaluation of a stream
   * with ids from 0 sets its length). A partial stream is an error naming what was given.
   * @default false
   */
  strictChecks?: boolean;
}

/**
 * The keyword arguments of Avalanche 0.6's `EvaluationPlugin(*metrics, loggers=..., collect_all=...,
 * strict_checks=...)`, the last argument of `new EvaluationPlugin(...metrics, keywords)`.
 */
export type EvaluationKeywords = Omit<EvaluationOptions, "metrics">;

/** The keys of {@link EvaluationOptions}, for checking what users pass. */
const EVALUATION_OPTIONS: OptionSpec<EvaluationOptions> = {
  metrics: "array",
  loggers: "array",
  collectAll: "boolean",
  shareRows: "boolean",
  strictChecks: "boolean",
};

/** A metric has a name; an options object never has one (the key is not in the spec). */
function isMetricArg(x: unknown): boolean {
  return Array.isArray(x) || (!!x && typeof x === "object" && "name" in x);
}

/**
 * The options of either constructor form: one options object, or Avalanche 0.6's metrics
 * (arrays flattened) then, optionally, its keyword arguments as an object.
 */
function parseEvaluationArgs(args: readonly unknown[]): EvaluationOptions {
  if (args.length === 0) return {};
  const last = args[args.length - 1];
  const hasKeywords = last !== undefined && !isMetricArg(last);
  const metrics = hasKeywords ? args.slice(0, -1) : args;
  if (metrics.length === 0) {
    // Today's form; also Avalanche's with no metric, which keeps our defaults (accuracy, loss).
    return checkOptions("EvaluationPlugin", (last ?? {}) as EvaluationOptions, EVALUATION_OPTIONS);
  }
  metrics.forEach((m, i) => {
    if (!isMetricArg(m)) {
      throw new TypeError(
        `EvaluationPlugin: argument ${i} is not a metric (an object with a name) nor a list of ` +
          `metrics: ${String(m)}; pass new EvaluationPlugin(...metrics, { loggers }) or ` +
          `new EvaluationPlugin({ metrics, loggers })`,
      );
    }
  });
  const keywords = hasKeywords ? last : {};
  if (!keywords || typeof keywords !== "object") {
    throw new TypeError(
      `EvaluationPlugin: the last argument must be a metric or the options { loggers, ` +
        `collectAll, strictChecks }, got ${String(keywords)}`,
    );
  }
  const o = checkOptions("EvaluationPlugin", keywords as EvaluationOptions, EVALUATION_OPTIONS);
  if (o.metrics !== undefined) {
    throw new TypeError(
      "EvaluationPlugin: metrics given both as arguments and as the metrics option; " +
        "pass them one way: new EvaluationPlugin(...metrics, { loggers }) or " +
        "new EvaluationPlugin({ metrics, loggers })",
    );
  }
  return { ...o, metrics: metrics as (Metric | readonly Metric[])[] };
}

/**
 * What `evaluator.plot()` returns, as this layer knows it: a `Figure` of the notebook layer
 * (`lib/notebook/render.ts`), which also shows inline in Jupyter. `plotEvaluator` there gives it
 * its full type.
 */
export interface EvaluatorFigure {
  /** The standalone SVG document. */
  readonly svg: string;
  /** Width in SVG units. */
  readonly width: number;
  /** Height in SVG units. */
  readonly height: number;
  /** What the figure shows. */
  readonly label: string;
  /** Rasterizes the figure (needs `--allow-ffi`). */
  toPNG(options?: object): Uint8Array;
  /** Writes `.svg` or `.png`, by extension. */
  save(path: string, options?: object): Promise<string>;
}

/**
 * What `evaluator.table()` returns, as this layer knows it: a danfo DataFrame made by the
 * notebook layer's `table` (`MetricTable`), which also shows inline in Jupyter.
 */
export interface EvaluatorTable {
  /** Column names. */
  readonly columns: readonly string[];
  /** Row-major values. */
  readonly values: readonly unknown[];
  /** Writes `.csv` or `.html`, by extension. */
  save(path: string): Promise<string>;
}

/** How `evaluator.table()` formats its numbers and long tables. */
export interface EvaluatorTableOptions {
  /** Decimals of non-integer numbers. @default 4 */
  decimals?: number;
  /** Tables longer than this show their first and last `edgeRows` rows. @default 60 */
  maxRows?: number;
  /** Rows shown at each end of a truncated table. @default 10 */
  edgeRows?: number;
}

/** The drawing and tabulating behind `evaluator.plot()` and `evaluator.table()`. */
export interface EvaluatorViews {
  /** Draws a figure of the evaluator's rows. */
  plot(evaluator: EvaluationPlugin, kind?: string, options?: object): EvaluatorFigure;
  /** Tabulates the evaluator's rows. */
  table(
    evaluator: EvaluationPlugin,
    filter?: RowFilter,
    options?: EvaluatorTableOptions,
  ): EvaluatorTable;
}

let views: EvaluatorViews | undefined;

/**
 * Gives the evaluator its views: the notebook layer calls this when it is loaded. The evaluator
 * sits below the notebook layer, which draws (Observable Plot, danfo), so it cannot import it;
 * the notebook layer fills this hook instead.
 */
export function installEvaluatorViews(v: EvaluatorViews): void {
  views = v;
}

function viewsOrThrow(method: string): EvaluatorViews {
  if (!views) {
    throw new Error(
      `evaluator.${method}() draws with the notebook layer, which is not loaded: import from ` +
        `mod.ts, or import "lib/notebook/evaluator.ts" once`,
    );
  }
  return views;
}

/** A metric curve: the global training iteration of each value, and the values. */
export interface MetricCurve {
  /** Global training iteration at which each value was taken. */
  x: number[];
  /** The values. */
  y: number[];
}

/** Plain-data state of an {@link EvaluationPlugin} (part of strategy checkpoints). */
export interface EvaluationState {
  /** Every row so far. */
  rows: MetricRow[];
  /** The Avalanche name of each row. */
  names: string[];
  /** State of each metric that has one, by `${index}:${name}`. */
  metrics: Record<string, unknown>;
}

function isLoopRow(r: MetricRow): boolean {
  if (r.metric !== "accuracy" && r.metric !== "loss") return false;
  if (r.task !== null || r.k !== undefined || r.class !== undefined) return false;
  return r.phase === "train" ? r.at === "epoch" : r.at === "experience" || r.at === "stream";
}

/**
 * The hooks of an {@link EvaluationPlugin}: every hook a metric may implement (`METRIC_HOOKS`:
 * the training and evaluation hooks, less those inside the gradient tape). Each runs the
 * metrics' hook of that name, records and logs the rows they return, then runs the loggers'.
 */
export type EvaluationHooks = {
  [K in MetricHookName]: (ctx: StrategyContext) => Promise<void>;
};

/**
 * The hook methods of {@link EvaluationPlugin} ({@link EvaluationHooks}). The class defines them
 * in a loop over the hook lists; this declaration, merged into the class, gives them their types.
 */
export interface EvaluationPlugin extends EvaluationHooks {}

/**
 * Runs metrics and loggers as one plugin. Give it to a strategy as `evaluator` (it then runs
 * after every other plugin, so it sees their effects). `rows` holds every row its metrics
 * produced; `getLastMetrics()` and `getAllMetrics()` key values by their Avalanche name
 * ({@link avalancheName}; the task shown for rows over one task label is that label, as in
 * Avalanche).
 *
 * Constructors: `new EvaluationPlugin({ metrics, loggers, collectAll, strictChecks })`, or
 * Avalanche 0.6's `new EvaluationPlugin(...metrics, { loggers, collectAll, strictChecks })`
 * (arrays of metrics flattened, the options object last and optional). With no metric at all,
 * both give the defaults (accuracy and loss) where Avalanche would compute none.
 *
 * @example
 * ```ts ignore
 * const evaluator = new EvaluationPlugin({ metrics: [accuracy(), forgetting()] });
 * const same = new EvaluationPlugin(accuracy(), forgetting(), { loggers: [textLogger()] });
 * const strategy = naive({ model, evaluator });
 * ```
 */
export class EvaluationPlugin implements Plugin {
  /** The plugin's name in errors and checkpoints. */
  readonly name = "evaluation";
  /** The metrics, flattened. */
  readonly metrics: readonly Metric[];
  /** The loggers. */
  readonly loggers: readonly Logger[];
  /** Whether whole curves are kept. */
  readonly collectAll: boolean;
  /** Whether rows are also appended to the run's rows. */
  readonly shareRows: boolean;
  /** Whether each evaluation must be of a whole stream. */
  readonly strictChecks: boolean;
  /** Every row the metrics produced, in order. */
  readonly rows: MetricRow[] = [];
  /** The Avalanche name of each row of {@link EvaluationPlugin.rows}. */
  readonly names: string[] = [];
  #last = new Map<string, number>();
  #all = new Map<string, MetricCurve>();
  #metricHooks = new Map<MetricHookName, Metric[]>();
  #loggerHooks = new Map<MetricHookName, Logger[]>();
  #tasks: Record<Phase, Set<number>> = { train: new Set(), eval: new Set() };

  /** Builds the plugin; see {@link EvaluationOptions}. */
  constructor(opts?: EvaluationOptions);
  /** As Avalanche 0.6: the metrics (or lists of them), then optionally the other options. */
  constructor(...metrics: (Metric | readonly Metric[])[]);
  /** As Avalanche 0.6: the metrics (or lists of them), then the other options. */
  constructor(...args: [...(Metric | readonly Metric[])[], EvaluationKeywords]);
  constructor(...args: unknown[]) {
    const opts = parseEvaluationArgs(args);
    const metrics = (opts.metrics ?? [accuracy(), loss()]).flat() as Metric[];
    metrics.forEach((m, i) => {
      if (!m || typeof m !== "object") {
        throw new TypeError(`metrics[${i}] is not a metric object: ${String(m)}`);
      }
    });
    const loggers = [...(opts.loggers ?? [])];
    loggers.forEach((l, i) => {
      if (!l || typeof l !== "object") {
        throw new TypeError(`loggers[${i}] is not a logger object: ${String(l)}`);
      }
    });
    this.metrics = metrics;
    this.loggers = loggers;
    this.collectAll = opts.collectAll ?? true;
    this.shareRows = opts.shareRows ?? true;
    this.strictChecks = opts.strictChecks ?? false;
    for (const h of METRIC_HOOKS) {
      const ms = metrics.filter((m) => typeof m[h] === "function");
      if (ms.length) this.#metricHooks.set(h, ms);
      const ls = loggers.filter((l) => typeof l[h] === "function");
      if (ls.length) this.#loggerHooks.set(h, ls);
    }
  }

  /** The last value of each metric, by Avalanche name (a copy). */
  getLastMetrics(): Record<string, number> {
    return Object.fromEntries(this.#last);
  }

  /** Every value of each metric, by Avalanche name (empty when `collectAll` is false). */
  getAllMetrics(): Record<string, MetricCurve> {
    return Object.fromEntries(
      [...this.#all].map(([k, c]) => [k, { x: [...c.x], y: [...c.y] }]),
    );
  }

  /**
   * A figure of the rows: `"curves"` (accuracy on each test experience against training, the
   * default), `"accuracyMatrix"`, `"forgetting"` (per experience), `"confusion"` (the last
   * confusion matrix; needs the `confusionMatrix` metric), `"loss"` (training loss per epoch,
   * or `phase: "eval"`). `options` go to the chart (`title`, `width`, ...). Shows inline in
   * Jupyter; `.save("x.svg" | "x.png")`. Needs the notebook layer (loaded by `mod.ts`).
   */
  plot(
    kind?: "curves" | "accuracyMatrix" | "forgetting" | "confusion" | "loss",
    options?: object,
  ): EvaluatorFigure {
    return viewsOrThrow("plot").plot(this, kind, options);
  }

  /**
   * The rows (those passing `filter`: a predicate, or field values such as
   * `{ metric: "accuracy", experience: null }`) as a table: empty cells where a field does not
   * apply, numbers at `decimals` (option, default 4). Shows inline in Jupyter;
   * `.save("x.csv" | "x.html")`. Needs the notebook layer (loaded by `mod.ts`).
   */
  table(filter?: RowFilter, options?: EvaluatorTableOptions): EvaluatorTable {
    return viewsOrThrow("table").table(this, filter, options);
  }

  /** Forgets the last values (not the rows nor the curves). */
  resetLastMetrics(): void {
    this.#last.clear();
  }

  /** Rows, names and the metrics' states, as plain data. */
  state(): EvaluationState {
    const metrics: Record<string, unknown> = {};
    this.metrics.forEach((m, i) => {
      if (typeof m.state === "function") metrics[`${i}:${m.name}`] = m.state();
    });
    return { rows: this.rows.map((r) => ({ ...r })), names: [...this.names], metrics };
  }

  /** Restores what {@link EvaluationPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as EvaluationState;
    if (!s || !Array.isArray(s.rows)) {
      throw new TypeError("Not an evaluation plugin state: expected { rows, names, metrics }");
    }
    this.rows.length = 0;
    this.names.length = 0;
    this.#last.clear();
    this.#all.clear();
    s.rows.forEach((r, i) => this.#record({ ...r }, s.names?.[i] ?? avalancheName(r)));
    this.metrics.forEach((m, i) => {
      const ms = s.metrics?.[`${i}:${m.name}`];
      if (ms !== undefined && typeof m.loadState === "function") m.loadState(ms);
    });
  }

  /** Closes the loggers (displays, files). */
  async close(): Promise<void> {
    for (const l of this.loggers) await l.close?.();
  }

  /** Frees the metrics' tensors. */
  dispose(): void {
    for (const m of this.metrics) m.dispose?.();
  }

  #record(row: MetricRow, name: string): void {
    this.rows.push(row);
    this.names.push(name);
    this.#last.set(name, row.value);
    if (this.collectAll) {
      let c = this.#all.get(name);
      if (!c) this.#all.set(name, c = { x: [], y: [] });
      c.x.push(row.iteration ?? 0);
      c.y.push(row.value);
    }
  }

  /** The task label Avalanche would show for a row not split by task. */
  #taskOf(row: MetricRow, ctx: StrategyContext): number | null {
    if (row.task !== null) return row.task;
    const labels = row.experience !== null && ctx.experience
      ? ctx.experience.taskLabels
      : [...this.#tasks[row.phase]];
    if (labels.length === 0) return 0;
    return labels.length === 1 ? labels[0] : null;
  }

  /** Stream name → the most experiences an evaluation of it had (for `strictChecks`). */
  #streamLengths = new Map<string, number>();

  /** Throws unless `ctx.experiences` is a whole stream (see {@link EvaluationOptions.strictChecks}). */
  #checkWholeStream(ctx: StrategyContext): void {
    const exps = ctx.experiences;
    const streams = [...new Set(exps.map((e) => e.stream))];
    const ids = exps.map((e) => e.id);
    const given = `${streams.join(", ")} experiences [${ids.join(", ")}]`;
    const fix = "evaluate the whole stream (strategy.eval(bench.test)) or pass strictChecks: false";
    if (streams.length !== 1 || ids.some((id, i) => id !== i)) {
      throw new RangeError(
        `EvaluationPlugin (strictChecks): eval was given ${given}, not one whole stream; ${fix}`,
      );
    }
    const known = this.#streamLengths.get(streams[0]) ?? 0;
    if (exps.length < known) {
      throw new RangeError(
        `EvaluationPlugin (strictChecks): eval was given ${given}, but the ${streams[0]} ` +
          `stream has ${known} experiences; ${fix}`,
      );
    }
    this.#streamLengths.set(streams[0], exps.length);
  }

  async #run(hook: MetricHookName, ctx: StrategyContext): Promise<void> {
    if (hook === "beforeEval" && this.strictChecks) this.#checkWholeStream(ctx);
    if (hook === "beforeTraining") this.#tasks.train.clear();
    if (hook === "beforeEval") this.#tasks.eval.clear();
    if (hook === "beforeTrainingExp" || hook === "beforeEvalExp") {
      const set = this.#tasks[hook === "beforeEvalExp" ? "eval" : "train"];
      for (const t of ctx.experience?.taskLabels ?? []) set.add(t);
    }
    const metrics = this.#metricHooks.get(hook);
    if (metrics) {
      const produced: MetricRow[] = [];
      for (const m of metrics) {
        const rows = await m[hook]!(ctx);
        if (rows && rows.length) produced.push(...rows);
      }
      if (produced.length) {
        for (const row of produced) {
          this.#record(row, avalancheName(row, { task: this.#taskOf(row, ctx) }));
          if (this.shareRows && !isLoopRow(row)) ctx.rows.push(row);
        }
        for (const l of this.loggers) await l.log?.(produced, ctx);
      }
    }
    const loggers = this.#loggerHooks.get(hook);
    if (loggers) { for (const l of loggers) await l[hook]!(ctx); }
  }

  static {
    // One forwarder per hook of the lists (lib/strategy/plugin.ts, less those inside the
    // gradient tape: see METRIC_HOOKS), defined on the prototype as a method would be, where the
    // strategy looks for hooks; a hook added to the lists is then forwarded without an edit here.
    for (const hook of METRIC_HOOKS) {
      const { [hook]: forward } = {
        [hook](this: EvaluationPlugin, ctx: StrategyContext): Promise<void> {
          return this.#run(hook, ctx);
        },
      };
      Object.defineProperty(EvaluationPlugin.prototype, hook, {
        value: forward,
        writable: true,
        enumerable: false,
        configurable: true,
      });
    }
  }
}

/**
 * The evaluation plugin, built from metrics and loggers.
 *
 * @example Metrics and loggers of a run
 * ```ts ignore
 * const evaluator = evaluation({
 *   metrics: [accuracy({ at: ["epoch", "experience", "stream"] }), loss(), forgetting(), bwt()],
 *   loggers: [progressLogger(), csvLogger({ dir: "runs/x" })],
 * });
 * const strategy = naive({ model, evaluator });
 * for (const exp of bench.train) {
 *   await strategy.train(exp);
 *   await strategy.eval(bench.test);
 * }
 * evaluator.getLastMetrics()["StreamForgetting/eval_phase/test_stream"];
 * ```
 */
export function evaluation(opts: EvaluationOptions = {}): EvaluationPlugin {
  return new EvaluationPlugin(checkOptions("evaluation", opts, EVALUATION_OPTIONS));
}
