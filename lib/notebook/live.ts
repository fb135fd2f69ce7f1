/**
 * Live figures: curves that redraw in place after each evaluation, as the run goes on.
 *
 * @module
 */
import type { MetricRow } from "../data/rows.ts";
import type { StrategyContext } from "../strategy/context.ts";
import type { Plugin } from "../strategy/plugin.ts";
import { checkOptions, oneOf } from "../options.ts";
import { display, isJupyter } from "./display.ts";
import { accuracyCurves, type CurveOptions } from "./plots.ts";
import type { Figure } from "./render.ts";

/** Shows a live figure: first with `update: false`, then with `update: true` under the same id. */
export type LiveDisplay = (
  figure: Figure,
  options: { id: string; update: boolean },
) => void | Promise<void>;

/** Options of {@link liveCurves}: those of {@link accuracyCurves} (eval curves), and where to show. */
export interface LiveCurvesOptions extends Omit<CurveOptions, "phase"> {
  /**
   * Shows the figure. @default in Jupyter, one output updated in place through its display id
   * (`Deno.jupyter.display`); elsewhere nothing (the figure goes to `file`)
   */
  display?: LiveDisplay;
  /**
   * Also writes the figure to this file (`.svg` or `.png`) after each evaluation, replacing it
   * atomically. @default none in Jupyter or with `display`, else "live-curves.svg"
   */
  file?: string;
  /** The display id. @default a new random one per plugin */
  id?: string;
}

let created = 0;

/**
 * A plugin that keeps one figure of the evaluation curves up to date: after each evaluation it
 * redraws {@link accuracyCurves} from the run's rows and replaces the figure shown before (in
 * Jupyter through a display id), or rewrites `file` in a terminal.
 *
 * The loop writes an evaluation's stream-level row after the `afterEval` hooks, so the plugin
 * draws the current average itself, as the loop will compute it: per-experience values weighted
 * by their samples.
 *
 * @example
 * ```ts ignore
 * const live = liveCurves({ title: "Naive" });
 * const strategy = naive({ model, plugins: [live] });
 * for (const exp of bench.train) {
 *   await strategy.train(exp);
 *   await strategy.eval(bench.test); // the one figure gains a point per curve
 * }
 * ```
 */
export class LiveCurvesPlugin implements Plugin {
  /** The plugin's name in errors and checkpoints. */
  readonly name = "liveCurves";
  /** The display id of the figure. */
  readonly id: string;
  /** The file written after each evaluation, if any. */
  readonly file: string | undefined;
  #shown = 0;
  #figure: Figure | undefined;
  readonly #curves: CurveOptions;
  readonly #display: LiveDisplay | undefined;
  #first = 0;
  #samples = new Map<number, number>();

  /** Builds the plugin; see {@link LiveCurvesOptions}. */
  constructor(options: LiveCurvesOptions = {}) {
    checkOptions("liveCurves", options, {
      width: "number",
      height: "number",
      title: "string",
      metric: "string",
      stream: "string",
      x: oneOf("auto", "iteration", "trainExperience", "epoch"),
      average: "boolean",
      display: "function",
      file: "string",
      id: "string",
    });
    const { display: show, file, id, ...curves } = options;
    this.#curves = { ...curves, phase: "eval" };
    const jupyter = isJupyter();
    this.#display = show ?? (jupyter ? (fig, o) => display(fig, o) : undefined);
    this.file = file ?? (this.#display ? undefined : "live-curves.svg");
    this.id = id ?? `perennial-live-${++created}-${crypto.randomUUID()}`;
  }

  /** How many times the figure was drawn (the first display, then updates). */
  get shown(): number {
    return this.#shown;
  }

  /** The last figure drawn. */
  get figure(): Figure | undefined {
    return this.#figure;
  }

  /** Notes where this evaluation's rows start. */
  beforeEval(ctx: StrategyContext): void {
    this.#first = ctx.rows.length;
    this.#samples.clear();
  }

  /** Notes each experience's samples, to weight the stream average. */
  afterEvalExp(ctx: StrategyContext): void {
    if (ctx.experience && ctx.dataset) this.#samples.set(ctx.experience.id, ctx.dataset.length);
  }

  /** Redraws and shows the figure. */
  async afterEval(ctx: StrategyContext): Promise<void> {
    const rows = [...ctx.rows, ...this.#pendingAverage(ctx.rows)];
    const fig = accuracyCurves(rows, this.#curves);
    this.#figure = fig;
    if (this.#display) await this.#display(fig, { id: this.id, update: this.#shown > 0 });
    if (this.file) await fig.save(this.file);
    this.#shown++;
  }

  /** The stream-level row of the evaluation under way (the loop adds it after the hooks). */
  #pendingAverage(all: readonly MetricRow[]): MetricRow[] {
    const metric = this.#curves.metric ?? "accuracy";
    const stream = this.#curves.stream ?? "test";
    const current = all.slice(this.#first).filter((r) =>
      r.phase === "eval" && r.metric === metric && r.stream === stream && r.task === null &&
      r.at === undefined && r.class === undefined
    );
    const parts = current.filter((r) => r.experience !== null);
    if (parts.length === 0 || current.some((r) => r.experience === null)) return [];
    let total = 0, sum = 0;
    for (const r of parts) {
      const n = this.#samples.get(r.experience!) ?? 1;
      total += n;
      sum += n * r.value;
    }
    return [{ ...parts[0], experience: null, value: sum / total }];
  }
}

/** The {@link LiveCurvesPlugin}: give it to a strategy's `plugins`. */
export function liveCurves(options: LiveCurvesOptions = {}): LiveCurvesPlugin {
  return new LiveCurvesPlugin(options);
}
