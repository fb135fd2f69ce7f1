/**
 * Running a reproduction: the benchmark, model and strategy of a {@link ReproConfig}, trained
 * experience after experience and evaluated on the whole test stream after each one; the result
 * (accuracy matrix, stream accuracy, metric rows, timings) as plain JSON-able data; its figures,
 * its verdict against the target, and the files `deno task repro` writes.
 *
 * @module
 */
import type { ImageDataset } from "../../datasets/mod.ts";
import { backendInfo } from "../backend.ts";
import type { MetricRow } from "../data/rows.ts";
import { JUPYTER_DISPLAY, type MediaBundle } from "../notebook/display.ts";
import { accuracyCurves, accuracyMatrixHeatmap } from "../notebook/plots.ts";
import type { Figure } from "../notebook/render.ts";
import { toHTML, toText } from "../notebook/tables.ts";
import type { Plugin } from "../strategy/plugin.ts";
import type { Experience, Stream } from "../data/experience.ts";
import type { EpochResult, EvalResult, Strategy, TrainResult } from "../strategy/template.ts";
import {
  buildModel,
  buildOptimizer,
  buildStrategy,
  loadBenchmark,
  type LoadedBenchmark,
} from "./build.ts";
import {
  checkMode,
  type ExperimentSpec,
  type ParamValue,
  type ReproConfig,
  reproConfig,
  REPRODUCTIONS,
  type ReproMode,
  scaleConfig,
  type ScaledConfig,
} from "./configs.ts";
import { runProgress, type RunProgressOptions } from "./progress.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";

const PROGRESS_MODES = oneOf("auto", "terminal", "jupyter", "lines", "off");

/** The keys of {@link ReproRunOptions}, for checking what users pass. */
const REPRO_RUN_OPTIONS: OptionSpec<ReproRunOptions> = {
  dataDir: "string",
  data: "object",
  seed: "number",
  progress: PROGRESS_MODES,
  write: "function",
  runner: "function",
  mode: oneOf("full", "quick", "tiny"),
};

/** Options of {@link runExperiment}. */
export interface ExperimentOptions {
  /** MNIST folder (else `PERENNIAL_DATA`, the cache, or a verified download). */
  dataDir?: string;
  /** Use these images instead of MNIST (tests). */
  data?: ImageDataset;
  /**
   * A benchmark loaded before (by {@link loadBenchmark}), to run several strategies on the same
   * data without loading it again; `dataDir`, `data` and the sample counts are then unused.
   */
  loaded?: LoadedBenchmark;
  /** Training samples kept per experience. @default all */
  trainPerExperience?: number;
  /** Test samples kept per experience. @default all */
  testPerExperience?: number;
  /** Seed of the data order, the model's initial weights and the strategy. @default 0 */
  seed?: number;
  /** Progress display (see {@link runProgress}); `"off"` for none. @default "auto" */
  progress?: RunProgressOptions["mode"];
  /** Where progress goes in terminal and line modes. @default stderr */
  write?: (text: string) => void;
  /**
   * What makes the run's `train` and `eval` calls, given the strategy: the strategy itself by
   * default; a resumable run (`lib/checkpoint/resumable.ts`) to checkpoint and resume them.
   */
  runner?: (strategy: Strategy) => Promise<ExperimentRunner>;
}

/** What makes an experiment's calls (see {@link ExperimentOptions.runner}). */
export interface ExperimentRunner {
  train(experiences: Experience[]): Promise<TrainResult>;
  eval(stream: Stream): Promise<EvalResult>;
}

/** Options of {@link runReproduction}. */
export interface ReproRunOptions
  extends Omit<ExperimentOptions, "trainPerExperience" | "testPerExperience" | "loaded"> {
  /** `full` (the published setting), `quick` or `tiny` (see `SCALES`). @default "full" */
  mode?: ReproMode;
}

/** What happened during one experience of a run. */
export interface ExperienceRecord {
  /** Experience index (of the benchmark, before any online split). */
  experience: number;
  /** Training samples of the experience. */
  trainSamples: number;
  /** Sub-experiences trained (online runs), else 1. */
  steps: number;
  /** Mean training loss over the last epoch of each (sub-)experience. */
  trainLoss: number;
  /** Training accuracy over the last epoch of each (sub-)experience. */
  trainAccuracy: number;
  /** Seconds of training. */
  trainSeconds: number;
  /** Accuracy on the whole test stream after this experience. */
  streamAccuracy: number;
  /** Seconds of the evaluation. */
  evalSeconds: number;
}

/** The outcome of a run, as plain data. A result is a `NamedRun` (`name`, `rows`) for charts. */
export interface ExperimentResult {
  /** The run's name: the label given, else the spec's label. */
  name: string;
  /** The spec's identifier. */
  id: string;
  /** Strategy name in tables and figures. */
  label: string;
  seed: number;
  /** The tfjs backend that ran. */
  backend: string;
  /** Final accuracy over the whole test stream (every test sample), after the last experience. */
  accuracy: number;
  /** `matrix[i][j]`: accuracy on test experience j after training experience i. */
  matrix: number[][];
  /** Accuracy on the whole test stream after each experience. */
  streamAccuracy: number[];
  /** One record per experience. */
  experiences: ExperienceRecord[];
  /**
   * Eval metric rows (accuracy and loss per test experience and for the stream), with
   * `trainExperience` the experience just trained (online sub-experiences are counted as their
   * experience).
   */
  rows: MetricRow[];
  /** Seconds of the whole run (data loading included). */
  seconds: number;
  /** When the run started (ISO 8601). */
  startedAt: string;
}

/** The outcome of a reproduction (what `results/<name>/result.json` holds). */
export interface ReproResult extends ExperimentResult {
  title: string;
  scenario: string;
  paper: string;
  source: string;
  mode: ReproMode;
  /** The target of the published setting. */
  target: number;
  /** The target of each experience, when the published setting has one. */
  experienceTarget?: number;
  /**
   * Whether `accuracy ≥ target` and, with an `experienceTarget`, every test experience's final
   * accuracy reaches it too (meaningful for `full` runs only).
   */
  reached: boolean;
  /** The setting as run (the published one, cut by the mode). */
  setting: ScaledConfig;
}

function summarizeEpochs(epochs: readonly EpochResult[], perSub: number): {
  loss: number;
  accuracy: number;
} {
  const last = epochs.filter((e) => e.epoch === perSub - 1);
  const n = last.reduce((s, e) => s + e.samples, 0);
  if (n === 0) return { loss: NaN, accuracy: NaN };
  return {
    loss: last.reduce((s, e) => s + e.loss * e.samples, 0) / n,
    accuracy: last.reduce((s, e) => s + e.accuracy * e.samples, 0) / n,
  };
}

/**
 * A plugin that resets the optimizer's state before each training experience (Avalanche up to
 * 0.3 did this in every strategy).
 */
export function resetOptimizer(): Plugin {
  return {
    name: "resetOptimizer",
    beforeTrainingExp(ctx) {
      ctx.optimizer.reset();
    },
  };
}

function checkSeed(seed: number): number {
  if (!Number.isInteger(seed) || seed < 0) {
    throw new RangeError(`seed must be an integer ≥ 0, got ${seed}`);
  }
  return seed;
}

/**
 * Runs an experiment: builds the benchmark (or takes `loaded`), the model and the strategy of
 * `spec`, trains experience after experience (an online experience's sub-experiences in one
 * `train` call) and evaluates on the whole test stream after each. The caller picks the backend
 * (`setup`); everything random is seeded by `seed`.
 *
 * @example Naive on a little Split MNIST
 * ```ts ignore
 * import { runExperiment } from "./run.ts";
 * const r = await runExperiment({
 *   name: "naive", label: "Naive", strategy: "naive",
 *   benchmark: { name: "splitMNIST", experiences: 5 },
 *   model: { hidden: [400, 400], outputs: 10 }, optimizer: { name: "sgd", lr: 0.01, momentum: 0.9 },
 *   epochs: 1, batchSize: 128, params: {},
 * }, { dataDir: "data", trainPerExperience: 1000 });
 * console.log(r.accuracy, r.matrix);
 * ```
 */
export async function runExperiment(
  spec: ExperimentSpec,
  opts: ExperimentOptions = {},
): Promise<ExperimentResult> {
  checkOptions("runExperiment", opts, {
    dataDir: "string",
    data: "object",
    loaded: "object",
    trainPerExperience: "integer",
    testPerExperience: "integer",
    seed: "number",
    progress: PROGRESS_MODES,
    write: "function",
    runner: "function",
  });
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const seed = checkSeed(opts.seed ?? 0);
  const { benchmark, groups } = opts.loaded ?? await loadBenchmark(spec.benchmark, {
    dataDir: opts.dataDir,
    data: opts.data,
    seed,
    trainPerExperience: opts.trainPerExperience,
    testPerExperience: opts.testPerExperience,
  });
  const model = buildModel(spec.model, seed);
  const progress = runProgress({
    experiences: groups.length,
    label: spec.name,
    mode: opts.progress ?? "auto",
    write: opts.write,
  });
  const strategy = buildStrategy(spec.strategy, {
    model,
    optimizer: buildOptimizer(spec.optimizer),
    epochs: spec.epochs,
    batchSize: spec.batchSize,
    seed,
    plugins: spec.resetOptimizer ? [resetOptimizer(), progress] : [progress],
    params: spec.params,
    name: spec.label,
    dropLast: spec.dropLast,
  });
  const rows: MetricRow[] = [];
  const experiences: ExperienceRecord[] = [];
  let finalAccuracy = NaN;
  try {
    const calls: ExperimentRunner = opts.runner ? await opts.runner(strategy) : strategy;
    for (let i = 0; i < groups.length; i++) {
      const group = groups[i];
      const train = await calls.train(group);
      const res = await calls.eval(benchmark.test);
      for (const r of res.rows) {
        if (r.phase === "eval") rows.push({ ...r, trainExperience: i, iteration: null });
      }
      const fit = summarizeEpochs(train.epochs, spec.epochs);
      experiences.push({
        experience: i,
        trainSamples: group.reduce((s, e) => s + e.dataset.length, 0),
        steps: group.length,
        trainLoss: fit.loss,
        trainAccuracy: fit.accuracy,
        trainSeconds: train.seconds,
        streamAccuracy: res.accuracy,
        evalSeconds: res.seconds,
      });
      finalAccuracy = res.accuracy;
      await progress.note(
        `after experience ${i + 1}/${groups.length}: test stream accuracy ` +
          `${res.accuracy.toFixed(4)} (per experience ` +
          res.experiences.map((e) => e.accuracy.toFixed(2)).join(" ") + ")",
      );
    }
    await progress.done(`final accuracy ${finalAccuracy.toFixed(4)}`);
  } finally {
    strategy.dispose(); // its plugins' tensors too (importances, memories, old models)
    model.dispose();
  }
  const matrix: number[][] = groups.map((_, i) =>
    benchmark.test.map((_, j) =>
      rows.find((r) =>
        r.metric === "accuracy" && r.trainExperience === i && r.experience === j &&
        r.task === null
      )?.value ?? NaN
    )
  );
  return {
    name: spec.label,
    id: spec.name,
    label: spec.label,
    seed,
    backend: backendInfo()?.name ?? "unknown",
    accuracy: finalAccuracy,
    matrix,
    streamAccuracy: experiences.map((e) => e.streamAccuracy),
    experiences,
    rows,
    seconds: (performance.now() - started) / 1000,
    startedAt,
  };
}

/**
 * Runs a reproduction (by name or configuration) in a mode and returns its {@link ReproResult}:
 * the run, its target and whether it is reached.
 *
 * @example
 * ```ts ignore
 * import { runReproduction } from "./run.ts";
 * const r = await runReproduction("gdumb-split-mnist", { mode: "quick", dataDir: "data" });
 * console.log(r.accuracy, r.reached);
 * ```
 */
export async function runReproduction(
  config: string | ReproConfig,
  opts: ReproRunOptions = {},
): Promise<ReproResult> {
  checkOptions("runReproduction", opts, REPRO_RUN_OPTIONS);
  const { mode: modeOption, ...experimentOptions } = opts;
  const base = typeof config === "string" ? reproConfig(config) : config;
  const mode = checkMode(modeOption ?? "full");
  const setting = scaleConfig(base, mode);
  const run = await runExperiment(setting, {
    ...experimentOptions,
    seed: experimentOptions.seed ?? setting.seed,
    trainPerExperience: setting.trainPerExperience,
    testPerExperience: setting.testPerExperience,
  });
  return {
    ...run,
    name: setting.name,
    title: setting.title,
    scenario: setting.scenario,
    paper: setting.paper,
    source: setting.source,
    mode,
    target: setting.target,
    ...(setting.experienceTarget === undefined
      ? {}
      : { experienceTarget: setting.experienceTarget }),
    reached: reachesTargets(run.accuracy, run.matrix, setting),
    setting,
  };
}

/**
 * Whether a run reaches a setting's targets: the final stream accuracy, and every test
 * experience's final accuracy (the last row of `matrix`) when there is an `experienceTarget`.
 *
 * @example
 * ```ts
 * import { reachesTargets } from "./run.ts";
 * const t = { target: 0.88, experienceTarget: 0.88 };
 * console.assert(reachesTargets(0.9, [[0.95, 0.1], [0.92, 0.89]], t));
 * console.assert(!reachesTargets(0.9, [[0.95, 0.1], [0.93, 0.87]], t));
 * ```
 */
export function reachesTargets(
  accuracy: number,
  matrix: readonly (readonly number[])[],
  targets: { target: number; experienceTarget?: number },
): boolean {
  if (!(accuracy >= targets.target)) return false;
  const e = targets.experienceTarget;
  if (e === undefined) return true;
  const last = matrix.at(-1) ?? [];
  return last.length > 0 && last.every((a) => a >= e);
}

/** The target in words for tables: `≥ 0.88`, with `(each ≥ 0.88)` for a per-experience one. */
export function targetText(r: { target: number; experienceTarget?: number }): string {
  const each = r.experienceTarget === undefined ? "" : ` (each ≥ ${r.experienceTarget.toFixed(2)})`;
  return `≥ ${r.target.toFixed(2)}${each}`;
}

// ------------------------------------------------------------------------- display ----

/** A table that renders as HTML in Jupyter and as aligned text elsewhere. */
export interface TableDisplay {
  /** Column names. */
  readonly columns: string[];
  /** Row-major cells. */
  readonly values: unknown[][];
  /** The aligned text form. */
  toString(): string;
  /** `text/html` and `text/plain`. */
  [JUPYTER_DISPLAY](): MediaBundle;
}

/** Wraps columns and rows as a {@link TableDisplay}, with an optional caption above it. */
export function tableDisplay(
  columns: string[],
  values: unknown[][],
  caption?: string,
): TableDisplay {
  const frame = { columns, values };
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  return {
    columns,
    values,
    toString: () => (caption ? `${caption}\n` : "") + toText(frame),
    [JUPYTER_DISPLAY]: () => ({
      "text/html": (caption ? `<p><b>${esc(caption)}</b></p>` : "") + toHTML(frame),
      "text/plain": (caption ? `${caption}\n` : "") + toText(frame),
    }),
  };
}

function paramText(v: ParamValue): string {
  if (Array.isArray(v)) return `[${v.join(", ")}]`;
  return String(v);
}

/**
 * The setting of a reproduction as a two-column table (what, value): benchmark, model,
 * optimizer, epochs, batch size, the strategy's hyperparameters, the target, and what the mode
 * cut.
 *
 * @example
 * ```ts
 * import { reproConfig, scaleConfig } from "./configs.ts";
 * import { settingTable } from "./run.ts";
 * const t = settingTable(scaleConfig(reproConfig("gem-permuted-mnist"), "quick"));
 * console.assert(String(t).includes("memoryStrength"));
 * ```
 */
export function settingTable(config: ReproConfig | ScaledConfig): TableDisplay {
  const c = config as ScaledConfig;
  const m = c.model;
  const model = `MLP 784-${m.hidden.join("-")}-${m.outputs}` +
    (m.activation && m.activation !== "relu" ? ` (${m.activation})` : "") +
    (m.head === "multi" ? ", one head per task" : "") +
    (m.dropout ? `, dropout ${m.dropout}` : "");
  const o = c.optimizer;
  const optimizer = `${o.name === "sgd" ? "SGD" : "Adam"}, lr ${o.lr}` +
    (o.momentum ? `, momentum ${o.momentum}` : "") +
    (c.resetOptimizer ? ", state reset before each experience" : "");
  const values: unknown[][] = [
    ["strategy", `${c.label} (${c.paper})`],
    ["benchmark", c.scenario],
    ["model", model],
    ["optimizer", optimizer],
    ["epochs", c.epochs],
    ["batch size", c.batchSize],
    ...Object.entries(c.params).map(([k, v]) => [k, paramText(v)]),
    [
      "target",
      `final test-stream accuracy ≥ ${c.target}` +
      (c.experienceTarget === undefined
        ? ""
        : `, and the final accuracy of every test experience ≥ ${c.experienceTarget}`),
    ],
    ["source", c.source],
  ];
  for (const n of c.notes) values.push(["note", n]);
  if (c.mode && c.mode !== "full") {
    values.push(["mode", `${c.mode}: ${c.reductions.join("; ")} (the target is for the full run)`]);
  }
  return tableDisplay(["setting", "value"], values, c.title);
}

/** The sentence of a verdict: target, our number, and whether it is reached. */
export function verdictText(result: ReproResult): string {
  const ours = result.accuracy.toFixed(4);
  const last = result.matrix.at(-1) ?? [];
  const each = result.experienceTarget === undefined || last.length === 0
    ? ""
    : `; every experience ≥ ${result.experienceTarget.toFixed(2)}, our lowest ${
      Math.min(...last).toFixed(4)
    }`;
  const head = `${result.label}, ${result.scenario}: target ≥ ${result.target.toFixed(2)}, ` +
    `ours ${ours}${each}`;
  if (result.mode !== "full") {
    return `${head} in a ${result.mode} run (${result.setting.reductions.join("; ")}): ` +
      `not comparable; the target is checked by the full run.`;
  }
  return `${head}: ${result.reached ? "reached" : "NOT reached"}.`;
}

/**
 * The verdict of a run as a table (target, ours, reached, mode, seconds) with its sentence above
 * it: the last cell of a reproduction notebook.
 */
export function verdict(result: ReproResult): TableDisplay {
  return tableDisplay(
    ["reproduction", "target", "ours", "reached", "mode", "seconds"],
    [[
      result.name,
      targetText(result),
      result.accuracy.toFixed(4),
      result.mode === "full" ? (result.reached ? "yes" : "no") : "n/a (not a full run)",
      result.mode,
      Math.round(result.seconds),
    ]],
    verdictText(result),
  );
}

/**
 * Every result in one table: reproduction, strategy, scenario, target, ours, reached, mode,
 * seconds.
 */
export function reproSummaryTable(results: readonly ReproResult[]): TableDisplay {
  return tableDisplay(
    ["reproduction", "strategy", "target", "ours", "reached", "mode", "seconds"],
    results.map((r) => [
      r.name,
      r.label,
      targetText(r),
      Number.isFinite(r.accuracy) ? r.accuracy.toFixed(4) : "-",
      r.mode === "full" ? (r.reached ? "yes" : "no") : "n/a",
      r.mode,
      Math.round(r.seconds),
    ]),
  );
}

/** The two figures of a run: the accuracy matrix and the accuracy curves. */
export function reproFigures(result: ReproResult): { matrix: Figure; curves: Figure } {
  const suffix = result.mode === "full" ? "" : ` (${result.mode})`;
  return {
    matrix: accuracyMatrixHeatmap(result.matrix, {
      title: `${result.label}: accuracy matrix${suffix}`,
    }),
    curves: accuracyCurves(result.rows, {
      title: `${result.label}: test accuracy after each experience${suffix}`,
    }),
  };
}

// --------------------------------------------------------------------------- files ----

function csvField(v: unknown): string {
  if (v === null || v === undefined) return "";
  const s = typeof v === "number" && !Number.isFinite(v) ? "" : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** CSV text of a header and rows. */
export function toCSV(columns: readonly string[], values: readonly unknown[][]): string {
  return [columns, ...values].map((r) => r.map(csvField).join(",")).join("\n") + "\n";
}

/** The accuracy matrix as CSV: one row per training experience, one column per test one. */
export function matrixCSV(matrix: readonly (readonly number[])[]): string {
  const cols = Math.max(0, ...matrix.map((r) => r.length));
  return toCSV(
    ["after_experience", ...Array.from({ length: cols }, (_, j) => `exp_${j}`)],
    matrix.map((row, i) => [i, ...row]),
  );
}

/** JSON with non-finite numbers as null. */
function json(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v),
    2,
  ) + "\n";
}

/**
 * Writes a result under `dir`: `result.json`, `matrix.csv`, `experiences.csv`, `rows.csv`,
 * `accuracy_matrix.png` and `accuracy_curves.png` (PNG needs `--allow-ffi`; `png: false` writes
 * SVG instead). Returns the paths written.
 */
export async function saveResult(
  result: ReproResult,
  dir: string,
  opts: { png?: boolean } = {},
): Promise<string[]> {
  checkOptions("saveResult", opts, { png: "boolean" });
  await Deno.mkdir(dir, { recursive: true });
  const written: string[] = [];
  const text = async (file: string, content: string) => {
    const path = `${dir}/${file}`;
    await Deno.writeTextFile(`${path}.tmp`, content);
    await Deno.rename(`${path}.tmp`, path);
    written.push(path);
  };
  await text("result.json", json(result));
  await text("matrix.csv", matrixCSV(result.matrix));
  const expCols: (keyof ExperienceRecord)[] = [
    "experience",
    "trainSamples",
    "steps",
    "trainLoss",
    "trainAccuracy",
    "trainSeconds",
    "streamAccuracy",
    "evalSeconds",
  ];
  await text(
    "experiences.csv",
    toCSV(expCols, result.experiences.map((e) => expCols.map((c) => e[c]))),
  );
  const rowCols: (keyof MetricRow)[] = [
    "metric",
    "phase",
    "stream",
    "experience",
    "task",
    "trainExperience",
    "value",
  ];
  await text("rows.csv", toCSV(rowCols, result.rows.map((r) => rowCols.map((c) => r[c]))));
  const ext = opts.png === false ? "svg" : "png";
  const figs = reproFigures(result);
  written.push(await figs.matrix.save(`${dir}/accuracy_matrix.${ext}`));
  written.push(await figs.curves.save(`${dir}/accuracy_curves.${ext}`));
  return written;
}

/** Reads every `<root>/<name>/result.json`, in the order of `REPRODUCTIONS` then by name. */
export async function loadResults(root: string): Promise<ReproResult[]> {
  const out: ReproResult[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  for (const e of entries) {
    if (!e.isDirectory) continue;
    try {
      const r = JSON.parse(await Deno.readTextFile(`${root}/${e.name}/result.json`)) as ReproResult;
      r.accuracy ??= NaN;
      out.push(r);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  const order = (n: string) => {
    const i = REPRODUCTIONS.findIndex((c) => c.name === n);
    return i < 0 ? Infinity : i;
  };
  return out.sort((a, b) => order(a.name) - order(b.name) || a.name.localeCompare(b.name));
}

/** The file of a results folder that holds the reproductions over seeds (a `SeedsResult[]`). */
export const SEEDS_FILE = "seeds.json";

/** A reproduction run for several seeds (what `deno task repro --seeds` stores). */
export interface SeedsResult {
  name: string;
  /** The strategy's label. */
  label: string;
  mode: ReproMode;
  target: number;
  /** The per-experience target, for reproductions that have one. */
  experienceTarget?: number;
  /**
   * With an `experienceTarget`: each test experience's final accuracy, averaged over the seeds
   * that finished.
   */
  experienceMeans?: number[];
  /** The final test-stream accuracy of each seed (NaN, with the error, for a failed run). */
  seeds: { seed: number; accuracy: number; error?: string }[];
  /** Seeds that finished. */
  n: number;
  /** Mean and sample standard deviation (n − 1) of their accuracies. */
  mean: number;
  std: number;
  /**
   * Every seed finished, the mean reaches the target and, with an `experienceTarget`, each
   * experience's mean final accuracy reaches that.
   */
  reached: boolean;
}

/** Reads `<root>/seeds.json`, or [] when there is none. */
export async function loadSeedsResults(root: string): Promise<SeedsResult[]> {
  try {
    return JSON.parse(await Deno.readTextFile(`${root}/${SEEDS_FILE}`)) as SeedsResult[];
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/**
 * The reproductions over seeds as a table: target, mean ± std, n, the seeds' accuracies, and
 * whether the mean reaches the target.
 */
export function seedsTable(results: readonly SeedsResult[]): TableDisplay {
  return tableDisplay(
    ["reproduction", "strategy", "target", "mean ± std", "n", "seeds", "reached", "mode"],
    results.map((r) => [
      r.name,
      r.label,
      targetText(r) +
      (r.experienceMeans
        ? `; lowest experience mean ${Math.min(...r.experienceMeans).toFixed(4)}`
        : ""),
      Number.isFinite(r.std)
        ? `${r.mean.toFixed(4)} ± ${r.std.toFixed(4)}`
        : Number.isFinite(r.mean)
        ? r.mean.toFixed(4)
        : "n/a",
      r.n,
      r.seeds.map((s) =>
        `${s.seed}: ${Number.isFinite(s.accuracy) ? s.accuracy.toFixed(4) : "failed"}`
      )
        .join(", "),
      r.mode === "full" ? (r.reached ? "yes" : "no") : "n/a (not a full run)",
      r.mode,
    ]),
  );
}

/**
 * Writes `summary.csv` and `summary.md` in `root` from every result found there (and, in
 * `summary.md`, the reproductions over seeds of `seeds.json`); returns the results.
 */
export async function writeSummary(root: string): Promise<ReproResult[]> {
  const results = await loadResults(root);
  const seeds = await loadSeedsResults(root);
  const table = reproSummaryTable(results);
  await Deno.mkdir(root, { recursive: true });
  await Deno.writeTextFile(`${root}/summary.csv`, toCSV(table.columns, table.values));
  const md: string[] = [
    "# Reproductions",
    "",
    "Final top-1 accuracy on the whole test stream after the last experience, against the",
    "targets of ContinualAI's continual-learning-baselines (DER++ and iCaRL, which have no " +
    "baseline on MNIST: the authors' published Mammoth settings, targets from their paper). " +
    "Written by `deno task repro`.",
    "",
    `| ${table.columns.join(" | ")} |`,
    `| ${table.columns.map(() => "---").join(" | ")} |`,
    ...table.values.map((r) => `| ${r.map((v) => String(v)).join(" | ")} |`),
    "",
  ];
  if (seeds.length) {
    const t = seedsTable(seeds);
    md.push(
      "## Over seeds",
      "",
      "The same reproductions for several seeds (`deno task repro --seeds 0,1,2`): mean ± " +
        "sample standard deviation of the final test-stream accuracy; reached when the mean is " +
        "at least the target.",
      "",
      `| ${t.columns.join(" | ")} |`,
      `| ${t.columns.map(() => "---").join(" | ")} |`,
      ...t.values.map((r) => `| ${r.map((v) => String(v)).join(" | ")} |`),
      "",
    );
  }
  await Deno.writeTextFile(`${root}/summary.md`, md.join("\n"));
  return results;
}
