/**
 * Every strategy of the library on three scenarios (Split MNIST class-incremental, Split MNIST
 * task-incremental with one head per task, Permuted MNIST domain-incremental) under one common
 * protocol: the runs behind `notebooks/compare_strategies.ipynb`, a summary table and a figure.
 *
 * @module
 */
import * as Plot from "@observablehq/plot";
import { colors } from "../notebook/plots.ts";
import { type Figure, legendWidth, renderPlot } from "../notebook/render.ts";
import { type DataFrame, loadDanfo, runSummary } from "../notebook/tables.ts";
import { loadBenchmark } from "./build.ts";
import { checkOptions, oneOf } from "../options.ts";
import type {
  BenchmarkSpec,
  ExperimentSpec,
  ModelSpec,
  ParamValue,
  StrategyKey,
} from "./configs.ts";
import { type ExperimentResult, runExperiment, type TableDisplay, tableDisplay } from "./run.ts";
import type { RunProgressOptions } from "./progress.ts";
import type { ImageDataset } from "../../datasets/mod.ts";

/** The scenarios of the comparison. */
export type ScenarioKey = "class" | "task" | "domain";

/** A scenario: its benchmark and the model head it needs. */
export interface ComparisonScenario {
  key: ScenarioKey;
  /** Name in tables and figures. */
  label: string;
  benchmark: BenchmarkSpec;
  /** Output head and units of the model. */
  head: ModelSpec["head"];
  outputs: number;
}

/** The three scenarios. */
export const COMPARISON_SCENARIOS: readonly ComparisonScenario[] = [
  {
    key: "class",
    label: "Split MNIST, class-incremental",
    benchmark: { name: "splitMNIST", experiences: 5 },
    head: "single",
    outputs: 10,
  },
  {
    key: "task",
    label: "Split MNIST, task-incremental",
    benchmark: { name: "splitMNIST", experiences: 5, taskIncremental: true },
    head: "multi",
    outputs: 2,
  },
  {
    key: "domain",
    label: "Permuted MNIST, domain-incremental",
    benchmark: { name: "permutedMNIST", experiences: 5 },
    head: "single",
    outputs: 10,
  },
];

/** A strategy of the comparison, its hyperparameters and where it applies. */
export interface ComparisonStrategy {
  key: StrategyKey;
  label: string;
  params: Readonly<Record<string, ParamValue>>;
  /** The scenarios it is run on. */
  scenarios: readonly ScenarioKey[];
  /** Model outputs instead of the scenario's (CoPE's embedding size). */
  outputs?: number;
  /** Why it skips a scenario. */
  note?: string;
}

const ALL: readonly ScenarioKey[] = ["class", "task", "domain"];

/** Every strategy, with moderate hyperparameters (memories of 500 samples). */
export const COMPARISON_STRATEGIES: readonly ComparisonStrategy[] = [
  { key: "naive", label: "Naive", params: {}, scenarios: ALL },
  { key: "cumulative", label: "Cumulative", params: {}, scenarios: ALL },
  { key: "replay", label: "Replay", params: { memSize: 500 }, scenarios: ALL },
  { key: "gdumb", label: "GDumb", params: { memSize: 500 }, scenarios: ["class", "domain"] },
  {
    key: "cwrStar",
    label: "CWR*",
    params: {},
    scenarios: ["class"],
    note: "CWR* consolidates one output unit per class of a single head: class-incremental only",
  },
  {
    key: "cope",
    label: "CoPE",
    params: { memSize: 500, nClasses: 10, pSize: 32, alpha: 0.99, T: 0.1 },
    scenarios: ["class", "domain"],
    outputs: 32,
    note: "CoPE classifies by nearest prototype with one embedding: no task heads",
  },
  { key: "lwf", label: "LwF", params: { alpha: 1, temperature: 2 }, scenarios: ALL },
  { key: "ewc", label: "EWC", params: { lambda: 1000, mode: "separate" }, scenarios: ALL },
  { key: "si", label: "SI", params: { lambda: 1, eps: 0.1 }, scenarios: ALL },
  {
    key: "gem",
    label: "GEM",
    params: { patternsPerExperience: 256, memoryStrength: 0.5 },
    scenarios: ALL,
  },
  {
    key: "agem",
    label: "A-GEM",
    params: { patternsPerExperience: 256, sampleSize: 256 },
    scenarios: ALL,
  },
];

/** The common protocol of the comparison. */
export interface ComparisonProtocol {
  /** Training samples per experience (undefined: all). */
  trainPerExperience?: number;
  /** Test samples per experience (undefined: all). */
  testPerExperience?: number;
  /** At most this many Permuted MNIST experiences. */
  permutedExperiences: number;
  hidden: number[];
  epochs: number;
  batchSize: number;
  lr: number;
  momentum: number;
}

/**
 * The protocol: an MLP 784-256-256, SGD (lr 0.01, momentum 0.9), minibatches of 32, one epoch;
 * `full` keeps 2000 training and 1000 test samples per experience and 5 Permuted MNIST
 * experiences, `quick` 300 and 200, and 3 experiences.
 */
export function comparisonProtocol(quick: boolean): ComparisonProtocol {
  return {
    trainPerExperience: quick ? 300 : 2000,
    testPerExperience: quick ? 200 : 1000,
    permutedExperiences: quick ? 3 : 5,
    hidden: [256, 256],
    epochs: 1,
    batchSize: 32,
    lr: 0.01,
    momentum: 0.9,
  };
}

/** One run of the comparison. */
export interface ComparisonRun {
  scenario: ComparisonScenario;
  strategy: ComparisonStrategy;
  result: ExperimentResult;
}

/** Options of {@link runComparison}. */
export interface ComparisonOptions {
  /** The quick protocol. @default false */
  quick?: boolean;
  /** MNIST folder. */
  dataDir?: string;
  /** Images instead of MNIST (tests). */
  data?: ImageDataset;
  /** Strategy keys to run. @default all */
  strategies?: readonly StrategyKey[];
  /** Scenarios to run. @default all */
  scenarios?: readonly ScenarioKey[];
  /** @default 0 */
  seed?: number;
  /** Progress display of each run. @default "auto" */
  progress?: RunProgressOptions["mode"];
  /** Called after each run (e.g. to print a line). */
  onRun?: (run: ComparisonRun) => void | Promise<void>;
}

/** The experiment of a strategy on a scenario under a protocol. */
export function comparisonSpec(
  scenario: ComparisonScenario,
  strategy: ComparisonStrategy,
  protocol: ComparisonProtocol,
): ExperimentSpec {
  const benchmark = scenario.benchmark.name === "permutedMNIST"
    ? { ...scenario.benchmark, experiences: protocol.permutedExperiences }
    : scenario.benchmark;
  return {
    name: `${strategy.key}-${scenario.key}`,
    label: strategy.label,
    strategy: strategy.key,
    benchmark,
    model: {
      hidden: protocol.hidden,
      outputs: strategy.outputs ?? scenario.outputs,
      head: scenario.head,
    },
    optimizer: { name: "sgd", lr: protocol.lr, momentum: protocol.momentum },
    epochs: protocol.epochs,
    batchSize: protocol.batchSize,
    params: strategy.params,
  };
}

/**
 * Runs every strategy on every scenario where it applies (each scenario's data loaded once).
 *
 * @example
 * ```ts ignore
 * const runs = await runComparison({ quick: true, dataDir: "data" });
 * comparisonTable(runs); // accuracy and forgetting by strategy and scenario
 * comparisonFigure(runs);
 * ```
 */
export async function runComparison(opts: ComparisonOptions = {}): Promise<ComparisonRun[]> {
  checkOptions("runComparison", opts, {
    quick: "boolean",
    dataDir: "string",
    data: "object",
    strategies: "array",
    scenarios: "array",
    seed: "number",
    progress: oneOf("auto", "terminal", "jupyter", "lines", "off"),
    onRun: "function",
  });
  const protocol = comparisonProtocol(opts.quick ?? false);
  const seed = opts.seed ?? 0;
  const runs: ComparisonRun[] = [];
  for (const scenario of COMPARISON_SCENARIOS) {
    if (opts.scenarios && !opts.scenarios.includes(scenario.key)) continue;
    const strategies = COMPARISON_STRATEGIES.filter((s) =>
      s.scenarios.includes(scenario.key) && (!opts.strategies || opts.strategies.includes(s.key))
    );
    if (strategies.length === 0) continue;
    const loaded = await loadBenchmark(
      comparisonSpec(scenario, strategies[0], protocol).benchmark,
      {
        dataDir: opts.dataDir,
        data: opts.data,
        seed,
        trainPerExperience: protocol.trainPerExperience,
        testPerExperience: protocol.testPerExperience,
      },
    );
    for (const strategy of strategies) {
      const result = await runExperiment(comparisonSpec(scenario, strategy, protocol), {
        loaded,
        seed,
        progress: opts.progress,
      });
      const run = { scenario, strategy, result };
      runs.push(run);
      await opts.onRun?.(run);
    }
  }
  return runs;
}

/** One row per run: strategy, scenario, final accuracy, forgetting, BWT, seconds. */
export function comparisonRows(runs: readonly ComparisonRun[]): {
  strategy: string;
  scenario: string;
  accuracy: number;
  forgetting: number;
  bwt: number;
  seconds: number;
}[] {
  return runs.map((r) => {
    const s = runSummary(r.result.matrix);
    return {
      strategy: r.strategy.label,
      scenario: r.scenario.label,
      accuracy: r.result.accuracy,
      forgetting: s.forgetting,
      bwt: s.bwt,
      seconds: r.result.seconds,
    };
  });
}

/**
 * The comparison as one wide table: a row per strategy, the final stream accuracy and the
 * average forgetting in each scenario ("-" where the strategy does not apply).
 */
export function comparisonTable(runs: readonly ComparisonRun[]): TableDisplay {
  const scenarios = COMPARISON_SCENARIOS.filter((s) => runs.some((r) => r.scenario.key === s.key));
  const strategies = COMPARISON_STRATEGIES.filter((s) =>
    runs.some((r) => r.strategy.key === s.key)
  );
  const short: Record<ScenarioKey, string> = {
    class: "class-incr.",
    task: "task-incr.",
    domain: "domain-incr.",
  };
  const columns = ["strategy"];
  for (const s of scenarios) columns.push(`${short[s.key]} accuracy`, `${short[s.key]} forgetting`);
  const values = strategies.map((st) => {
    const row: unknown[] = [st.label];
    for (const sc of scenarios) {
      const run = runs.find((r) => r.strategy.key === st.key && r.scenario.key === sc.key);
      if (!run) {
        row.push("-", "-");
        continue;
      }
      row.push(run.result.accuracy, runSummary(run.result.matrix).forgetting);
    }
    return row;
  });
  return tableDisplay(columns, values);
}

/**
 * The comparison in one figure: final stream accuracy of every strategy, grouped by scenario.
 */
export function comparisonFigure(
  runs: readonly ComparisonRun[],
  options: { title?: string; width?: number; height?: number } = {},
): Figure {
  if (runs.length === 0) throw new RangeError("comparisonFigure needs at least one run");
  const labels = COMPARISON_STRATEGIES.filter((s) => runs.some((r) => r.strategy.key === s.key))
    .map((s) => s.label);
  const scenarios = COMPARISON_SCENARIOS.filter((s) => runs.some((r) => r.scenario.key === s.key))
    .map((s) => s.label);
  const palette = colors(labels.length);
  const data = runs.map((r) => ({
    scenario: r.scenario.label,
    strategy: r.strategy.label,
    accuracy: r.result.accuracy,
  }));
  const width = options.width ?? 900;
  const height = options.height ?? 420;
  const legend = labels.map((label, i) => ({ label, color: palette[i], shape: "square" as const }));
  return renderPlot({
    width,
    height,
    marginTop: 30,
    marginRight: legendWidth(labels),
    marginBottom: 40,
    marginLeft: 50,
    fx: { label: null, domain: scenarios },
    x: { axis: null, domain: labels, paddingInner: 0.1 },
    y: { label: "Final test-stream accuracy", domain: [0, 1], grid: true },
    color: { type: "ordinal", domain: labels, range: palette },
    marks: [
      Plot.barY(data, { fx: "scenario", x: "strategy", y: "accuracy", fill: "strategy" }),
      Plot.ruleY([0]),
    ],
  }, {
    label: "final accuracy by strategy and scenario",
    title: options.title ?? "Every strategy on three scenarios",
    legend,
  });
}

/**
 * The comparison as one danfo DataFrame (HTML in Jupyter): a row per strategy, the final stream
 * accuracy and the average forgetting in each scenario (NaN where the strategy does not apply).
 */
export async function comparisonFrame(runs: readonly ComparisonRun[]): Promise<DataFrame> {
  const dfd = await loadDanfo();
  const t = comparisonTable(runs);
  const data: Record<string, unknown[]> = {};
  t.columns.forEach((c, j) => {
    data[c] = t.values.map((row) => (j > 0 && typeof row[j] !== "number" ? NaN : row[j]));
  });
  return new dfd.DataFrame(data, { columns: t.columns });
}
