// Tests of options checking: the validator of lib/options.ts, then every group of builders with
// a misspelt key and a value of the wrong kind (the exact messages), and the hook-name check.
// Run: deno test -A tests/options_test.ts

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import {
  anyOf,
  checkKind,
  checkOptions,
  closest,
  describeKind,
  describeValue,
  instanceOf,
  oneOf,
} from "../lib/options.ts";
import { setBackend, setup } from "../lib/backend.ts";
import { DatasetError, downloadVerified, loadDataset, syntheticImages } from "../datasets/mod.ts";
import { ArrayDataset } from "../lib/data/dataset.ts";
import { DatasetLoader } from "../lib/data/loader.ts";
import {
  classIncremental,
  newInstances,
  permuted,
  rotated,
  splitOnline,
  subsample,
  taskIncremental,
} from "../lib/benchmarks/generators.ts";
import {
  permutedMNIST,
  rotatedMNIST,
  splitFMNIST,
  splitMNIST,
  toArrayDatasets,
} from "../lib/benchmarks/classic.ts";
import { Conv2d, Linear } from "../lib/nn/layers.ts";
import { BatchNorm2d } from "../lib/nn/norm.ts";
import { BasicBlock } from "../lib/nn/residual.ts";
import { resnet32, slimResNet18 } from "../lib/models/resnet.ts";
import { cnn, mlp, multiHeadMLP } from "../lib/models/mlp.ts";
import { Adam, adam, SGD, sgd } from "../lib/optim/optimizers.ts";
import { residentBenchmark } from "../lib/engine/resident.ts";
import { Hooks } from "../lib/strategy/hooks.ts";
import { EVAL_HOOKS, type Plugin, StrategyPlugin, TRAIN_HOOKS } from "../lib/strategy/plugin.ts";
import { cumulative, jointTraining, naive, withPlugin } from "../lib/strategy/strategies.ts";
import { Strategy } from "../lib/strategy/template.ts";
import { accuracy } from "../lib/metrics/accuracy.ts";
import { confusionMatrix } from "../lib/metrics/confusion.ts";
import { bwt, forgetting, forwardTransfer } from "../lib/metrics/forgetting.ts";
import { loss } from "../lib/metrics/loss.ts";
import { countMacs, macs } from "../lib/metrics/mac.ts";
import { memory } from "../lib/metrics/memory.ts";
import { avalancheName } from "../lib/metrics/names.ts";
import { timing } from "../lib/metrics/timing.ts";
import { csvLogger } from "../lib/loggers/csv.ts";
import { jsonlLogger } from "../lib/loggers/jsonl.ts";
import { progressBar } from "../lib/loggers/progress.ts";
import { progressLogger } from "../lib/loggers/progress_logger.ts";
import { textLogger } from "../lib/loggers/text.ts";
import { agem, AGEMPlugin, agemPlugin } from "../lib/plugins/agem.ts";
import { cope, CoPEPlugin, copePlugin } from "../lib/plugins/cope.ts";
import { cwrStar, CWRStarPlugin, cwrStarPlugin } from "../lib/plugins/cwr_star.ts";
import { evaluation, EvaluationPlugin } from "../lib/plugins/evaluation.ts";
import { ewc, ewcImportances, EWCPlugin, ewcPlugin } from "../lib/plugins/ewc.ts";
import { gdumb, GDumbPlugin, gdumbPlugin } from "../lib/plugins/gdumb.ts";
import { gem, GEMPlugin, gemPlugin, gemProject } from "../lib/plugins/gem.ts";
import { lwf, LwFPlugin, lwfPlugin } from "../lib/plugins/lwf.ts";
import { DERPlugin } from "../lib/plugins/der.ts";
import { bic, BiCPlugin, bicPlugin } from "../lib/plugins/bic.ts";
import { projectGEM, solveGEMDual, solveNonNegativeQP } from "../lib/plugins/qp.ts";
import { replay, ReplayPlugin, replayPlugin } from "../lib/plugins/replay.ts";
import { ReplayDataLoader } from "../lib/plugins/replay_loader.ts";
import {
  classBalanced,
  ClassBalancedStoragePolicy,
  experienceBalanced,
  ExperienceBalancedStoragePolicy,
  reservoir,
} from "../lib/plugins/storage_policy.ts";
import {
  siPlugin,
  synapticIntelligence,
  SynapticIntelligencePlugin,
} from "../lib/plugins/synaptic_intelligence.ts";
import {
  accuracyCurves,
  accuracyMatrixHeatmap,
  compareRuns,
  confusionMatrixPlot,
  forgettingBars,
} from "../lib/notebook/plots.ts";
import { svgToPNG } from "../lib/notebook/render.ts";
import { toHTML, toText } from "../lib/notebook/tables.ts";
import { display } from "../lib/notebook/display.ts";
import { buildModel, buildOptimizer, buildStrategy, loadBenchmark } from "../lib/repro/build.ts";
import { runExperiment, runReproduction, saveResult } from "../lib/repro/run.ts";
import { runComparison } from "../lib/repro/compare.ts";
import { runProgress } from "../lib/repro/progress.ts";
import { runBench } from "../lib/bench/workload.ts";
import { toyBenchmark } from "./_helpers.ts";

await setBackend("wasm");

/** Asserts that `fn` throws an error of class `name` with exactly `message`. */
function throwsExactly(fn: () => unknown, name: string, message: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error, `expected an Error, got ${String(e)}`);
    assert.equal(e.message, message);
    assert.equal(e.name, name);
    return true;
  });
}

/** As {@link throwsExactly}, for a promise. */
async function rejectsExactly(p: () => Promise<unknown>, name: string, message: string) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof Error, `expected an Error, got ${String(e)}`);
    assert.equal(e.message, message);
    assert.equal(e.name, name);
    return true;
  });
}

/** Options accepted by a spec, for passing objects with unknown keys to checkOptions. */
type Of<S> = { [K in keyof S]?: unknown };

const STRATEGY_KEYS = '"model", "optimizer", "criterion", "epochs", "batchSize", ' +
  '"evalBatchSize", "plugins", "evaluator", "seed", "shuffle", "dropLast", "evalEvery", ' +
  '"pevalMode", "name"';

// ---------------------------------------------------------------------------------------------
// The validator

Deno.test("checkOptions: a misspelt key names the closest valid one, ignoring case and _", () => {
  const spec = { model: "object", memSize: "integer", batchSize: "integer" } as const;
  const check = (o: object) => () => checkOptions("replay", o as Of<typeof spec>, spec);
  throwsExactly(
    check({ memorySize: 500 }),
    "TypeError",
    'replay: unknown option "memorySize" (did you mean "memSize"?)',
  );
  throwsExactly(
    check({ batchsize: 8 }),
    "TypeError",
    'replay: unknown option "batchsize" (did you mean "batchSize"?)',
  );
  throwsExactly(
    check({ mem_size: 8 }),
    "TypeError",
    'replay: unknown option "mem_size" (did you mean "memSize"?)',
  );
  // Transpositions count as one edit.
  throwsExactly(
    check({ mmeSize: 8 }),
    "TypeError",
    'replay: unknown option "mmeSize" (did you mean "memSize"?)',
  );
  // Every unknown key at once.
  throwsExactly(
    check({ memorySize: 1, batch_size: 2 }),
    "TypeError",
    'replay: unknown options "memorySize" (did you mean "memSize"?), "batch_size" ' +
      '(did you mean "batchSize"?)',
  );
  assert.equal(closest("memorySize", ["model", "memSize"]), "memSize");
  assert.equal(closest("zzz", ["model", "memSize"]), undefined);
  // Names from other libraries, when edit distance finds nothing.
  assert.equal(closest("learning_rate", ["lr", "momentum"]), "lr");
  assert.equal(closest("train_mb_size", ["model", "batchSize"]), "batchSize");
  assert.equal(closest("learningRate", ["momentum"]), undefined);
});

Deno.test("checkOptions: with nothing close, the message lists every valid key", () => {
  const spec = { lr: "number", momentum: "number", nesterov: "boolean" } as const;
  throwsExactly(
    () => checkOptions("sgd", { zzz: 1 } as Of<typeof spec>, spec),
    "TypeError",
    'sgd: unknown option "zzz"; valid options: "lr", "momentum", "nesterov"',
  );
  throwsExactly(
    () => checkOptions("sgd", { zzz: 1, moment: 0.9 } as Of<typeof spec>, spec),
    "TypeError",
    'sgd: unknown options "zzz", "moment" (did you mean "momentum"?); valid options: "lr", ' +
      '"momentum", "nesterov"',
  );
});

Deno.test("checkOptions: kinds of values, undefined meaning the default", () => {
  class Policy {}
  class Other {}
  const spec = {
    n: "number",
    i: "integer",
    s: "string",
    b: "boolean",
    a: "array",
    f: "function",
    o: "object",
    x: "any",
    m: oneOf("separate", "online"),
    p: instanceOf(Policy),
    l: anyOf("number", "array"),
    t: anyOf("integer", "null"),
  } as const;
  type O = Of<typeof spec>;
  const ok: O = {
    n: 1.5,
    i: 2,
    s: "x",
    b: false,
    a: [],
    f: () => 0,
    o: {},
    x: Symbol(),
    m: "online",
    p: new Policy(),
    l: [1],
    t: null,
  };
  assert.equal(checkOptions("f", ok, spec), ok);
  const undef: O = Object.fromEntries(Object.keys(spec).map((k) => [k, undefined]));
  checkOptions("f", undef, spec);
  checkOptions("f", undefined as O | undefined, spec);
  checkOptions("f", {} as O, spec);
  const bad = (o: O, name: string, message: string) =>
    throwsExactly(() => checkOptions("ewc", o, spec), name, message);
  bad({ n: "1000" }, "TypeError", 'ewc: n must be a number, got the string "1000"');
  bad({ i: "3" }, "TypeError", 'ewc: i must be an integer, got the string "3"');
  bad({ s: 5 }, "TypeError", "ewc: s must be a string, got the number 5");
  bad({ b: "yes" }, "TypeError", 'ewc: b must be true or false, got the string "yes"');
  bad({ a: { length: 1 } }, "TypeError", "ewc: a must be an array, got an object");
  bad({ f: 1 }, "TypeError", "ewc: f must be a function, got the number 1");
  bad({ o: [1, 2] }, "TypeError", "ewc: o must be an object, got an array of 2 items");
  bad({ o: null }, "TypeError", "ewc: o must be an object, got null");
  bad({ p: new Other() }, "TypeError", "ewc: p must be a Policy, got an Other");
  bad({ l: true }, "TypeError", "ewc: l must be a number or an array, got true");
  bad({ t: "0" }, "TypeError", 'ewc: t must be an integer or null, got the string "0"');
  // A string outside the set is a value out of range, with the closest one suggested.
  bad(
    { m: "seperate" },
    "RangeError",
    'ewc: m must be "separate" or "online", got the string "seperate" (did you mean "separate"?)',
  );
  bad(
    { m: "zzz" },
    "RangeError",
    'ewc: m must be "separate" or "online", got the string "zzz"',
  );
  bad({ m: 1 }, "TypeError", 'ewc: m must be "separate" or "online", got the number 1');
  // Not an options object at all.
  throwsExactly(
    () => checkOptions("mlp", 784 as unknown as O, spec),
    "TypeError",
    "mlp expects an options object, got the number 784",
  );
  throwsExactly(
    () => checkOptions("mlp", [16] as unknown as O, spec),
    "TypeError",
    "mlp expects an options object, got an array of 1 item",
  );
});

Deno.test("describeValue, describeKind and checkKind say what they got and what they want", () => {
  assert.equal(describeValue("a"), 'the string "a"');
  assert.equal(describeValue(NaN), "the number NaN");
  assert.equal(describeValue(null), "null");
  assert.equal(describeValue(undefined), "undefined");
  assert.equal(describeValue(new Float32Array(2)), "a Float32Array");
  assert.equal(describeValue(new Map()), "a Map");
  assert.equal(describeValue(Object.create(null)), "an object");
  assert.equal(describeValue(function named() {}), "the function named");
  assert.equal(describeValue("x".repeat(100)).length, 'the string ""'.length + 60);
  assert.equal(describeKind(instanceOf(Map, "Map of datasets")), "a Map of datasets");
  assert.equal(describeKind(anyOf("boolean", oneOf("auto"))), 'true or false or one of "auto"');
  assert.equal(checkKind("f", "k", undefined, "number"), undefined);
  throwsExactly(
    () => checkKind("ewc", "lambda", "1000", "number"),
    "TypeError",
    'ewc: lambda must be a number, got the string "1000"',
  );
});

// ---------------------------------------------------------------------------------------------
// Strategies

function tinyModel() {
  return mlp({ input: 64, hidden: [4], outputs: 4, seed: 0 });
}

Deno.test("strategy options: naive, cumulative, jointTraining, withPlugin and Strategy", () => {
  const model = tinyModel();
  throwsExactly(
    () => naive({ model, epoch: 3 } as never),
    "TypeError",
    'naive: unknown option "epoch" (did you mean "epochs"?)',
  );
  throwsExactly(
    () => naive({ model, shuffle: "no" } as never),
    "TypeError",
    'naive: shuffle must be true or false, got the string "no"',
  );
  throwsExactly(
    () => cumulative({ model, evalBatchsize: 64 } as never),
    "TypeError",
    'cumulative: unknown option "evalBatchsize" (did you mean "evalBatchSize"?)',
  );
  throwsExactly(
    () => jointTraining({ model, zzz: 1 } as never),
    "TypeError",
    `jointTraining: unknown option "zzz"; valid options: ${STRATEGY_KEYS}`,
  );
  throwsExactly(
    () => withPlugin("Mine", { name: "mine" }, { model, plugin: [] } as never),
    "TypeError",
    'withPlugin("Mine"): unknown option "plugin" (did you mean "plugins"?)',
  );
  throwsExactly(
    () => new Strategy({ model, epoch: 2 } as never),
    "TypeError",
    'Strategy: unknown option "epoch" (did you mean "epochs"?)',
  );
  throwsExactly(
    () => new Strategy({ model, name: 7 } as never),
    "TypeError",
    "Strategy: name must be a string, got the number 7",
  );
  // Avalanche's names are understood as what they mean here.
  throwsExactly(
    () => naive({ model, train_mb_size: 32 } as never),
    "TypeError",
    'naive: unknown option "train_mb_size" (did you mean "batchSize"?)',
  );
  model.dispose();
});

// ---------------------------------------------------------------------------------------------
// Plugins and their strategy builders

Deno.test("plugin options: replay, storage policies and the replay loader", () => {
  const model = tinyModel();
  throwsExactly(
    () => replay({ model, memorySize: 500 } as never),
    "TypeError",
    'replay: unknown option "memorySize" (did you mean "memSize"?)',
  );
  throwsExactly(
    () => replay({ model, memSize: "500" } as never),
    "TypeError",
    'replay: memSize must be an integer, got the string "500"',
  );
  // A typo among the strategy's own options is caught over the union too.
  throwsExactly(
    () => replay({ model, memSize: 10, epoch: 2 } as never),
    "TypeError",
    'replay: unknown option "epoch" (did you mean "epochs"?)',
  );
  throwsExactly(
    () => replayPlugin({ batchSizeMemory: 8 } as never),
    "TypeError",
    'replayPlugin: unknown option "batchSizeMemory" (did you mean "batchSizeMem"?)',
  );
  throwsExactly(
    () => new ReplayPlugin({ storagePolicy: {} } as never),
    "TypeError",
    "ReplayPlugin: storagePolicy must be a StoragePolicy, got an object",
  );
  assert.equal(new ReplayPlugin(50).memSize, 50); // positional form unchanged
  throwsExactly(
    () => experienceBalanced({ memSize: 10, adaptive: true } as never),
    "TypeError",
    'experienceBalanced: unknown option "adaptive" (did you mean "adaptiveSize"?)',
  );
  throwsExactly(
    () => classBalanced({ memSize: 10, totalNumClass: 5 } as never),
    "TypeError",
    'classBalanced: unknown option "totalNumClass" (did you mean "totalNumClasses"?)',
  );
  throwsExactly(
    () => new ClassBalancedStoragePolicy({ memSize: 10, extMem: [] } as never),
    "TypeError",
    "ClassBalancedStoragePolicy: extMem must be a Map, got an array of 0 items",
  );
  // Without memSize, the misspelt key is what is named.
  throwsExactly(
    () => new ExperienceBalancedStoragePolicy({ memsize: 10 } as never),
    "TypeError",
    'ExperienceBalancedStoragePolicy: unknown option "memsize" (did you mean "memSize"?)',
  );
  assert.equal(new ExperienceBalancedStoragePolicy(10, false, 2).maxSize, 10);
  throwsExactly(
    () => reservoir({ maxSize: 10 } as never),
    "TypeError",
    'reservoir: unknown option "maxSize" (did you mean "memSize"?)',
  );
  const d = new ArrayDataset({ x: new Float32Array(4), y: [0, 1, 0, 1], inputShape: [1] });
  throwsExactly(
    () => new ReplayDataLoader(d, d, { batchSize: 2, suffle: true } as never),
    "TypeError",
    'ReplayDataLoader: unknown option "suffle" (did you mean "shuffle"?)',
  );
  model.dispose();
});

Deno.test("plugin options: ewc, si and lwf; positional constructors still work", () => {
  const model = tinyModel();
  throwsExactly(
    () => ewc({ model, lamda: 5, epoch: 3, batchsize: 8 } as never),
    "TypeError",
    'ewc: unknown options "lamda" (did you mean "lambda"?), "epoch" (did you mean "epochs"?), ' +
      '"batchsize" (did you mean "batchSize"?)',
  );
  throwsExactly(
    () => ewc({ model, lambda: "1000" } as never),
    "TypeError",
    'ewc: lambda must be a number, got the string "1000"',
  );
  throwsExactly(
    () => ewc({ model, ewc_lambda: 5 } as never),
    "TypeError",
    'ewc: unknown option "ewc_lambda" (did you mean "lambda"?)',
  );
  throwsExactly(
    () => ewcPlugin({ mode: "seperate" } as never),
    "RangeError",
    'ewcPlugin: mode must be "separate" or "online", got the string "seperate" ' +
      '(did you mean "separate"?)',
  );
  throwsExactly(
    () => new EWCPlugin({ lambda: 1, decay: 0.9 } as never),
    "TypeError",
    'EWCPlugin: unknown option "decay" (did you mean "decayFactor"?)',
  );
  const positional = new EWCPlugin(1000, "separate");
  assert.equal(positional.ewcLambda, 1000);
  assert.equal(new EWCPlugin(10, "online", 0.9).decayFactor, 0.9);
  const d = new ArrayDataset({ x: new Float32Array(64 * 2), y: [0, 1], inputShape: [64] });
  throwsExactly(
    () => ewcImportances(model, d, { batchsize: 2 } as never),
    "TypeError",
    'ewcImportances: unknown option "batchsize" (did you mean "batchSize"?)',
  );
  throwsExactly(
    () => synapticIntelligence({ model, lambda: 1, esp: 0.1 } as never),
    "TypeError",
    'synapticIntelligence: unknown option "esp" (did you mean "eps"?)',
  );
  throwsExactly(
    () => siPlugin({ lambda: "1" } as never),
    "TypeError",
    'siPlugin: lambda must be a number or an array, got the string "1"',
  );
  throwsExactly(
    () => new SynapticIntelligencePlugin({ lambda: 1, excludeParameters: [] } as never),
    "TypeError",
    'SynapticIntelligencePlugin: unknown option "excludeParameters" (did you mean ' +
      '"excludedParameters"?)',
  );
  assert.equal(new SynapticIntelligencePlugin(1, 0.1).eps, 0.1);
  throwsExactly(
    () => lwf({ model, temprature: 2 } as never),
    "TypeError",
    'lwf: unknown option "temprature" (did you mean "temperature"?)',
  );
  throwsExactly(
    () => lwfPlugin({ alpha: "1" } as never),
    "TypeError",
    'lwfPlugin: alpha must be a number or an array, got the string "1"',
  );
  throwsExactly(
    () => new LwFPlugin({ alfa: 1 } as never),
    "TypeError",
    'LwFPlugin: unknown option "alfa" (did you mean "alpha"?)',
  );
  assert.equal(new LwFPlugin(1, 3).temperature, 3);
  model.dispose();
});

Deno.test("plugin options: gem, agem, gdumb, cwrStar, cope, evaluation, the QP", async () => {
  const model = tinyModel();
  throwsExactly(
    () => gem({ model, patternsPerExp: 10 } as never),
    "TypeError",
    'gem: unknown option "patternsPerExp" (did you mean "patternsPerExperience"?)',
  );
  throwsExactly(
    () => gemPlugin({ patternsPerExperience: 4, memoryStrenght: 0.5 } as never),
    "TypeError",
    'gemPlugin: unknown option "memoryStrenght" (did you mean "memoryStrength"?)',
  );
  throwsExactly(
    () => new GEMPlugin({ patternsPerExperience: "4" } as never),
    "TypeError",
    'GEMPlugin: patternsPerExperience must be an integer, got the string "4"',
  );
  assert.equal(new GEMPlugin(4, 0.1).memoryStrength, 0.1);
  throwsExactly(
    () => agem({ model, patternsPerExperience: 4, samplesize: 4 } as never),
    "TypeError",
    'agem: unknown option "samplesize" (did you mean "sampleSize"?)',
  );
  throwsExactly(
    () => agemPlugin({ patternsPerExperience: 4, sampleSize: 4, sampling: "uniformly" } as never),
    "RangeError",
    'agemPlugin: sampling must be "experienceBalanced" or "uniform", got the string ' +
      '"uniformly" (did you mean "uniform"?)',
  );
  assert.equal(new AGEMPlugin(4, 8).sampleSize, 8);
  throwsExactly(
    () => new AGEMPlugin({ patternsPerExperience: 4, sampleSize: 4, seed: 1 } as never),
    "TypeError",
    'AGEMPlugin: unknown option "seed"; valid options: "patternsPerExperience", "sampleSize", ' +
      '"sampling"',
  );
  throwsExactly(
    () => gdumb({ model, memsize: 10 } as never),
    "TypeError",
    'gdumb: unknown option "memsize" (did you mean "memSize"?)',
  );
  throwsExactly(
    () => gdumbPlugin({ memSize: "10" } as never),
    "TypeError",
    'gdumbPlugin: memSize must be an integer, got the string "10"',
  );
  throwsExactly(
    () => new GDumbPlugin({ mem_size: 10 } as never),
    "TypeError",
    'GDumbPlugin: unknown option "mem_size" (did you mean "memSize"?)',
  );
  throwsExactly(
    () => cwrStar({ model, freezeRemaining: true } as never),
    "TypeError",
    'cwrStar: unknown option "freezeRemaining" (did you mean "freezeRemainingModel"?)',
  );
  throwsExactly(
    () => cwrStarPlugin({ model, cwrLayerName: 1 } as never),
    "TypeError",
    "cwrStarPlugin: cwrLayerName must be a string, got the number 1",
  );
  throwsExactly(
    () => new CWRStarPlugin({ model, layerName: "classifier" } as never),
    "TypeError",
    'CWRStarPlugin: unknown option "layerName" (did you mean "cwrLayerName"?)',
  );
  assert.equal(new CWRStarPlugin(model, "classifier").cwrLayerName, "classifier");
  throwsExactly(
    () => cope({ model, n_classes: 4 } as never),
    "TypeError",
    'cope: unknown option "n_classes" (did you mean "nClasses"?)',
  );
  throwsExactly(
    () => copePlugin({ temperature: 0.1 } as never),
    "TypeError",
    'copePlugin: unknown option "temperature" (did you mean "T"?)',
  );
  throwsExactly(
    () => new CoPEPlugin({ initAdaptive: "yes" } as never),
    "TypeError",
    'CoPEPlugin: initAdaptive must be true or false, got the string "yes"',
  );
  throwsExactly(
    () => evaluation({ metric: [] } as never),
    "TypeError",
    'evaluation: unknown option "metric" (did you mean "metrics"?)',
  );
  throwsExactly(
    () => new EvaluationPlugin({ loggers: {} } as never),
    "TypeError",
    "EvaluationPlugin: loggers must be an array, got an object",
  );
  throwsExactly(
    () => solveNonNegativeQP([[1]], [1], { tolerance: 1e-9 } as never),
    "TypeError",
    'solveNonNegativeQP: unknown option "tolerance" (did you mean "tol"?)',
  );
  throwsExactly(
    () => solveGEMDual([[1]], [-1], { memory_strength: 0.5 } as never),
    "TypeError",
    'solveGEMDual: unknown option "memory_strength" (did you mean "memoryStrength"?)',
  );
  throwsExactly(
    () => projectGEM([[1, 0]], [1, 1], { qp: { maxIteration: 5 } } as never),
    "TypeError",
    'projectGEM (qp): unknown option "maxIteration" (did you mean "maxIterations"?)',
  );
  // Checked even when no projection is needed (all dot products ≥ 0).
  const G = tf.tensor2d([[1, 0]]);
  const g = tf.tensor1d([1, 1]);
  await rejectsExactly(
    () => gemProject(G, g, { epsilon: 0 } as never),
    "TypeError",
    'gemProjectBlocks: unknown option "epsilon" (did you mean "eps"?)',
  );
  G.dispose();
  g.dispose();
  model.dispose();
});

// ---------------------------------------------------------------------------------------------
// Hook names

Deno.test("plugin options: bic, bicPlugin and BiCPlugin", () => {
  const model = tinyModel();
  throwsExactly(
    () => bic({ model, memSize: 10, stage_2_epochs: 5 } as never),
    "TypeError",
    'bic: unknown option "stage_2_epochs" (did you mean "stage2Epochs"?)',
  );
  throwsExactly(
    () => bicPlugin({ valPercent: 0.1 } as never),
    "TypeError",
    'bicPlugin: unknown option "valPercent" (did you mean "valPercentage"?)',
  );
  throwsExactly(
    () => new BiCPlugin({ lamb: "1" } as never),
    "TypeError",
    'BiCPlugin: lamb must be a number, got the string "1"',
  );
  assert.equal(new BiCPlugin(100, 0.3).valSize, 30);
  model.dispose();
});

Deno.test("a plugin function named like a hook but none is an error naming the closest hook", () => {
  const model = tinyModel();
  const typo = { name: "myPlugin", beforeBackwards() {} } as Plugin;
  throwsExactly(
    () => naive({ model, plugins: [typo] }),
    "TypeError",
    'Plugin "myPlugin" has a function "beforeBackwards", which is not a lifecycle hook ' +
      '(did you mean "beforeBackward"?)',
  );
  class Mine extends StrategyPlugin {
    afterTrainingExperience(): void {}
  }
  throwsExactly(
    () => new Hooks([new Mine()]),
    "TypeError",
    'Plugin "Mine" has a function "afterTrainingExperience", which is not a lifecycle hook ' +
      '(did you mean "afterTrainingExp"?)',
  );
  const far = { name: "far", afterZzzzzzzzzzzzzzzzzzz: () => {} } as Plugin;
  throwsExactly(
    () => new Hooks([far]),
    "TypeError",
    'Plugin "far" has a function "afterZzzzzzzzzzzzzzzzzzz", which is not a lifecycle hook ' +
      `(the hooks are ${[...TRAIN_HOOKS, ...EVAL_HOOKS].join(", ")}; name helpers otherwise)`,
  );
  // A plugin that gains a misspelt hook after the strategy is built is caught when hooks are
  // read again.
  const later = { name: "later" } as Plugin & Record<string, unknown>;
  const hooks = new Hooks([later]);
  later.beforeUpdat = () => {};
  assert.throws(() => hooks.collect(), /"beforeUpdat".*did you mean "beforeUpdate"/);
  // Names that only start like a hook, other properties and real hooks are fine.
  const fine = {
    name: "fine",
    beforehand() {},
    afterglow: 1,
    before() {},
    beforeTraining() {},
    afterEval() {},
  } as unknown as Plugin;
  new Hooks([fine]);
  model.dispose();
});

Deno.test("no plugin of the library has a function that looks like a misspelt hook", () => {
  const model = tinyModel();
  const plugins: Plugin[] = [
    new ReplayPlugin(10),
    new GDumbPlugin(10),
    new EWCPlugin(1),
    new SynapticIntelligencePlugin(1),
    new LwFPlugin(1),
    new DERPlugin(10, 4, 0.1, 0.5),
    new BiCPlugin(10),
    new GEMPlugin(4),
    new AGEMPlugin(4, 4),
    new CWRStarPlugin(model),
    new CoPEPlugin(10, 4, 4),
    evaluation(),
    progressBar({ write: () => {} }),
    progressLogger({ mode: "lines", write: () => {} }) as Plugin,
    runProgress({ experiences: 1, mode: "off" }),
  ];
  new Hooks(plugins);
  for (const p of plugins) (p as { dispose?: () => void }).dispose?.();
  model.dispose();
});

// ---------------------------------------------------------------------------------------------
// Models, layers, optimizers

Deno.test("model and layer options: mlp, multiHeadMLP, cnn, Linear, Conv2d", () => {
  throwsExactly(
    () => mlp({ hiden: [16] } as never),
    "TypeError",
    'mlp: unknown option "hiden" (did you mean "hidden"?)',
  );
  throwsExactly(
    () => mlp({ hidden: 16 } as never),
    "TypeError",
    "mlp: hidden must be an array, got the number 16",
  );
  throwsExactly(
    () => mlp({ activation: "Relu" } as never),
    "RangeError",
    'mlp: activation must be one of "relu", "tanh", "sigmoid", "elu", "leakyRelu", "linear", ' +
      'got the string "Relu" (did you mean "relu"?)',
  );
  throwsExactly(
    () => mlp({ head: "multihead" } as never),
    "RangeError",
    'mlp: head must be one of "single", "incremental", "multi", got the string "multihead" ' +
      '(did you mean "multi"?)',
  );
  throwsExactly(
    () => multiHeadMLP({ head: "multi" } as never),
    "TypeError",
    'multiHeadMLP: unknown option "head"; valid options: "input", "hidden", "outputs", ' +
      '"activation", "dropout", "seed"',
  );
  throwsExactly(
    () => cnn({ channel: [8] } as never),
    "TypeError",
    'cnn: unknown option "channel" (did you mean "channels"?)',
  );
  throwsExactly(
    () => cnn({ dense: "128" } as never),
    "TypeError",
    'cnn: dense must be an integer, got the string "128"',
  );
  throwsExactly(
    () => new Linear(2, 3, { useBias: false } as never),
    "TypeError",
    'Linear: unknown option "useBias" (did you mean "bias"?)',
  );
  throwsExactly(
    () => new Conv2d(1, 2, 3, { strides: 2 } as never),
    "TypeError",
    'Conv2d: unknown option "strides" (did you mean "stride"?)',
  );
  throwsExactly(
    () => new Conv2d(1, 2, 3, { padding: "valdi" } as never),
    "RangeError",
    'Conv2d: padding must be "same" or "valid" or an integer, got the string "valdi" ' +
      '(did you mean "valid"?)',
  );
  throwsExactly(
    () => new BatchNorm2d(4, { epsilon: 1e-3 } as never),
    "TypeError",
    'BatchNorm2d: unknown option "epsilon" (did you mean "eps"?)',
  );
  throwsExactly(
    () => new BasicBlock(4, 8, { shortcut: "zero" } as never),
    "RangeError",
    'BasicBlock: shortcut must be "conv" or "pad", got the string "zero"',
  );
  throwsExactly(
    () => slimResNet18({ head: "multihead" } as never),
    "RangeError",
    'slimResNet18: head must be one of "single", "incremental", "multi", got the string ' +
      '"multihead" ' +
      '(did you mean "multi"?)',
  );
  throwsExactly(
    () => resnet32({ shortcuts: "conv" } as never),
    "TypeError",
    'resnet32: unknown option "shortcuts" (did you mean "shortcut"?)',
  );
});

Deno.test("optimizer options: sgd, adam and their classes", () => {
  throwsExactly(
    () => sgd({ learningRate: 0.5 } as never),
    "TypeError",
    'sgd: unknown option "learningRate" (did you mean "lr"?)',
  );
  throwsExactly(
    () => sgd({ lr: "0.1" } as never),
    "TypeError",
    'sgd: lr must be a number, got the string "0.1"',
  );
  throwsExactly(
    () => new SGD({ weight_decay: 0.1, nestrov: true } as never),
    "TypeError",
    'SGD: unknown options "weight_decay" (did you mean "weightDecay"?), "nestrov" ' +
      '(did you mean "nesterov"?)',
  );
  throwsExactly(
    () => adam({ betas: [0.9, 0.999] } as never),
    "TypeError",
    'adam: unknown option "betas" (did you mean "beta1"?)',
  );
  throwsExactly(
    () => new Adam({ eps: "1e-8" } as never),
    "TypeError",
    'Adam: eps must be a number, got the string "1e-8"',
  );
});

// ---------------------------------------------------------------------------------------------
// Data, datasets, benchmarks

Deno.test("data options: ArrayDataset and DatasetLoader", () => {
  throwsExactly(
    () =>
      new ArrayDataset(
        { x: new Float32Array(2), y: [0, 1], inputShape: [1], tasks: [0, 0] } as never,
      ),
    "TypeError",
    'ArrayDataset: unknown option "tasks"; valid options: "x", "y", "inputShape", "taskLabels", ' +
      '"scale", "mean", "std", "permutation"',
  );
  throwsExactly(
    () => new ArrayDataset({ x: [0, 1], y: [0, 1], inputShape: [1] } as never),
    "TypeError",
    "ArrayDataset: x must be a Uint8Array or a Float32Array, got an array of 2 items",
  );
  const d = new ArrayDataset({ x: new Float32Array(2), y: [0, 1], inputShape: [1] });
  throwsExactly(
    () => new DatasetLoader(d, { batchSize: 1, drop_last: true } as never),
    "TypeError",
    'DatasetLoader: unknown option "drop_last" (did you mean "dropLast"?)',
  );
});

Deno.test("dataset options: loadDataset, syntheticImages and downloadVerified (DatasetErrors)", async () => {
  const isInvalid = (message: string) => (e: unknown) => {
    assert.ok(e instanceof DatasetError && e.code === "invalid-argument", String(e));
    assert.equal(e.message, message);
    return true;
  };
  await assert.rejects(
    () => loadDataset("mnist", { datadir: "/nowhere" } as never),
    isInvalid('loadDataset: unknown option "datadir" (did you mean "dataDir"?)'),
  );
  await assert.rejects(
    () => loadDataset("mnist", { download: "no" } as never),
    isInvalid('loadDataset: download must be true or false, got the string "no"'),
  );
  assert.throws(
    () => syntheticImages({ n: 4, classes: 2, noize: 0 } as never),
    isInvalid('syntheticImages: unknown option "noize" (did you mean "noise"?)'),
  );
  await assert.rejects(
    () => downloadVerified(["http://127.0.0.1:9/x"], "/tmp/never", { expected: {} } as never),
    isInvalid('downloadVerified: unknown option "expected" (did you mean "expect"?)'),
  );
});

Deno.test("benchmark options: the classic benchmarks and the generators", async () => {
  await rejectsExactly(
    () => splitMNIST({ experience: 5 } as never),
    "TypeError",
    'splitMNIST: unknown option "experience" (did you mean "experiences"?)',
  );
  await rejectsExactly(
    () => splitFMNIST({ returnTaskID: true, dataDir: 5 } as never),
    "TypeError",
    'splitFMNIST: unknown option "returnTaskID" (did you mean "returnTaskId"?)',
  );
  await rejectsExactly(
    () => permutedMNIST({ seed: "0" } as never),
    "TypeError",
    'permutedMNIST: seed must be a number, got the string "0"',
  );
  await rejectsExactly(
    () => rotatedMNIST({ rotation: [0, 90] } as never),
    "TypeError",
    'rotatedMNIST: unknown option "rotation" (did you mean "rotations"?)',
  );
  await rejectsExactly(
    () => splitMNIST({ inputShape: "images" } as never),
    "RangeError",
    'splitMNIST: inputShape must be "flat" or "image", got the string "images" ' +
      '(did you mean "image"?)',
  );
  const bench = toyBenchmark();
  const { dataset } = bench.train[0];
  const both = { train: dataset, test: dataset };
  throwsExactly(
    () => classIncremental({ ...both, experiences: 2, fixedClassorder: [0, 1] } as never),
    "TypeError",
    'classIncremental: unknown option "fixedClassorder" (did you mean "fixedClassOrder"?)',
  );
  throwsExactly(
    () => classIncremental({ ...both, classOrder: "random" } as never),
    "RangeError",
    'classIncremental: classOrder must be "shuffled" or "sorted" or an array, got the ' +
      'string "random"',
  );
  throwsExactly(
    () => taskIncremental({ ...both, experiences: 1, taskLabels: true } as never),
    "TypeError",
    'taskIncremental: unknown option "taskLabels"; valid options: "train", "test", ' +
      '"experiences", "classOrder", "fixedClassOrder", "seed", "classesPerExperience", ' +
      '"remapClasses", "name"',
  );
  throwsExactly(
    () => newInstances({ ...both, experiences: 2, balance: true } as never),
    "TypeError",
    'newInstances: unknown option "balance" (did you mean "balanceClasses"?)',
  );
  throwsExactly(
    () => permuted({ ...both, experiences: 2, task_labels: true } as never),
    "TypeError",
    'permuted: unknown option "task_labels" (did you mean "taskLabels"?)',
  );
  throwsExactly(
    () => rotated({ ...both, rotations: 90 } as never),
    "TypeError",
    "rotated: rotations must be an array, got the number 90",
  );
  throwsExactly(
    () => splitOnline(bench, { experienceSize: 4, droplast: true } as never),
    "TypeError",
    'splitOnline: unknown option "droplast" (did you mean "dropLast"?)',
  );
  throwsExactly(
    () => subsample(bench, { trainPerExp: 4 } as never),
    "TypeError",
    'subsample: unknown option "trainPerExp" (did you mean "trainPerExperience"?)',
  );
  throwsExactly(
    () =>
      toArrayDatasets({ name: "x", classes: 1, train: {}, test: {} } as never, { std: 1 } as never),
    "TypeError",
    'toArrayDatasets: unknown option "std"; valid options: "normalize", "inputShape", "stats"',
  );
  throwsExactly(
    () => residentBenchmark(bench, { stream: ["test"] } as never),
    "TypeError",
    'residentBenchmark: unknown option "stream" (did you mean "streams"?)',
  );
});

// ---------------------------------------------------------------------------------------------
// Loggers, metrics, notebook

Deno.test("logger options: csv, jsonl, text, progress logger and progress bar", () => {
  throwsExactly(
    () => csvLogger({ dir: "/tmp/x", column: ["value"] } as never),
    "TypeError",
    'csvLogger: unknown option "column" (did you mean "columns"?)',
  );
  throwsExactly(
    () => jsonlLogger({ directory: "/tmp/x" } as never),
    "TypeError",
    'jsonlLogger: unknown option "directory" (did you mean "dir"?)',
  );
  throwsExactly(
    () => jsonlLogger({ dir: "/tmp/x", ifExists: "overwite" } as never),
    "RangeError",
    'jsonlLogger: ifExists must be one of "append", "error", "overwrite", got the string ' +
      '"overwite" (did you mean "overwrite"?)',
  );
  throwsExactly(
    () => textLogger({ precision: 2 } as never),
    "TypeError",
    'textLogger: unknown option "precision"; valid options: "write", "digits", "run"',
  );
  throwsExactly(
    () => progressLogger({ maxLine: 10 } as never),
    "TypeError",
    'progressLogger: unknown option "maxLine" (did you mean "maxLines"?)',
  );
  throwsExactly(
    () => progressBar({ interval: 100 } as never),
    "TypeError",
    'progressBar: unknown option "interval" (did you mean "intervalMs"?)',
  );
  throwsExactly(
    () => progressBar({ live: 1 } as never),
    "TypeError",
    "progressBar: live must be true or false, got the number 1",
  );
});

Deno.test("metric options: every metric, countMacs and avalancheName", () => {
  throwsExactly(
    () => accuracy({ topk: 5 } as never),
    "TypeError",
    'accuracy: unknown option "topk" (did you mean "topK"?)',
  );
  throwsExactly(
    () => accuracy({ perClass: "yes" } as never),
    "TypeError",
    'accuracy: perClass must be true or false, got the string "yes"',
  );
  throwsExactly(
    () => loss({ phases: "train" } as never),
    "TypeError",
    'loss: unknown option "phases" (did you mean "phase"?)',
  );
  throwsExactly(
    () => confusionMatrix({ classes: 10 } as never),
    "TypeError",
    'confusionMatrix: unknown option "classes" (did you mean "numClasses"?)',
  );
  throwsExactly(
    () => timing({ at: 1 } as never),
    "TypeError",
    "timing: at must be a string or an array, got the number 1",
  );
  throwsExactly(
    () => memory({ sample: 10 } as never),
    "TypeError",
    'memory: unknown option "sample" (did you mean "sampleMs"?)',
  );
  throwsExactly(
    () => macs({ granularity: "experience" } as never),
    "TypeError",
    'macs: unknown option "granularity"; valid options: "at", "phase"',
  );
  throwsExactly(
    () => forgetting({ phase: "eval" } as never),
    "TypeError",
    'forgetting: unknown option "phase"; valid options: "at", "definition"',
  );
  throwsExactly(
    () => bwt({ At: "stream" } as never),
    "TypeError",
    'bwt: unknown option "At" (did you mean "at"?)',
  );
  throwsExactly(
    () => forwardTransfer({ at: 2 } as never),
    "TypeError",
    "forwardTransfer: at must be a string or an array, got the number 2",
  );
  const model = tinyModel();
  throwsExactly(
    () => countMacs(model, [64], { task: 0 } as never),
    "TypeError",
    'countMacs: unknown option "task" (did you mean "taskLabel"?)',
  );
  model.dispose();
  const row = {
    metric: "loss",
    phase: "eval",
    stream: "test",
    experience: null,
    task: null,
    epoch: null,
    iteration: 0,
    trainExperience: 0,
    value: 0.5,
  } as const;
  assert.equal(avalancheName(row, { task: null }), "Loss_Stream/eval_phase/test_stream");
  throwsExactly(
    () => avalancheName(row, { task: "0" } as never),
    "TypeError",
    'avalancheName: task must be an integer or null, got the string "0"',
  );
});

Deno.test("notebook options: charts, tables, PNG and display", async () => {
  const m = [[0.9, 0.1], [0.6, 0.8]];
  const rows = [0, 1].flatMap((k) =>
    [0, 1].map((j) => ({
      metric: "accuracy",
      phase: "eval" as const,
      stream: "test",
      experience: j,
      task: null,
      epoch: null,
      iteration: k,
      trainExperience: k,
      value: m[k][j],
    }))
  );
  throwsExactly(
    () => accuracyCurves(rows, { titel: "x" } as never),
    "TypeError",
    'accuracyCurves: unknown option "titel" (did you mean "title"?)',
  );
  throwsExactly(
    () => accuracyCurves(rows, { width: "640" } as never),
    "TypeError",
    'accuracyCurves: width must be a number, got the string "640"',
  );
  throwsExactly(
    () => accuracyMatrixHeatmap(m, { decimal: 2 } as never),
    "TypeError",
    'accuracyMatrixHeatmap: unknown option "decimal" (did you mean "decimals"?)',
  );
  throwsExactly(
    () => confusionMatrixPlot([[1]], undefined, { normalise: true } as never),
    "TypeError",
    'confusionMatrixPlot: unknown option "normalise" (did you mean "normalize"?)',
  );
  throwsExactly(
    () => forgettingBars(m, { streams: "test" } as never),
    "TypeError",
    'forgettingBars: unknown option "streams" (did you mean "stream"?)',
  );
  throwsExactly(
    () => compareRuns([{ name: "a", rows }], { kinds: "bars" } as never),
    "TypeError",
    'compareRuns: unknown option "kinds" (did you mean "kind"?)',
  );
  throwsExactly(
    () => toHTML(rows, { maxrows: 5 } as never),
    "TypeError",
    'toHTML: unknown option "maxrows" (did you mean "maxRows"?)',
  );
  throwsExactly(
    () => toText(rows, { decimals: "2" } as never),
    "TypeError",
    'toText: decimals must be an integer, got the string "2"',
  );
  throwsExactly(
    () => svgToPNG("<svg/>", { dpi: 2 } as never),
    "TypeError",
    'toPNG: unknown option "dpi"; valid options: "scale", "background", "font"',
  );
  await rejectsExactly(
    () => display("x", { displayId: "a" } as never),
    "TypeError",
    'display: unknown option "displayId"; valid options: "id", "update"',
  );
});

// ---------------------------------------------------------------------------------------------
// Backend, reproductions, bench

Deno.test("setup and setBackend options", async () => {
  await rejectsExactly(
    () => setup({ backnd: "cpu" } as never),
    "TypeError",
    'setup: unknown option "backnd" (did you mean "backend"?)',
  );
  await rejectsExactly(
    () => setup({ seed: "0" } as never),
    "TypeError",
    'setup: seed must be a number, got the string "0"',
  );
  await rejectsExactly(
    () => setBackend("wsam" as never),
    "TypeError",
    'Unknown backend "wsam": use one of "auto", "node", "webgpu", "blas", "wasm", "cpu" ' +
      '(did you mean "wasm"?)',
  );
  await rejectsExactly(
    () => setBackend({ backend: "cpu" } as never),
    "TypeError",
    'Unknown backend an object: use one of "auto", "node", "webgpu", "blas", "wasm", "cpu"',
  );
});

Deno.test("reproduction and bench options, and the names of a strategy's hyperparameters", async () => {
  const model = buildModel({ hidden: [4], outputs: 4 }, 0);
  const optimizer = buildOptimizer({ name: "sgd", lr: 0.01 });
  const base = { model, optimizer, epochs: 1, batchSize: 8 };
  throwsExactly(
    () => buildStrategy("ewc", { ...base, params: { lamda: 100 } }),
    "TypeError",
    'ewc params: unknown option "lamda" (did you mean "lambda"?)',
  );
  throwsExactly(
    () => buildStrategy("naive", { ...base, epoch: 1 } as never),
    "TypeError",
    'buildStrategy: unknown option "epoch" (did you mean "epochs"?)',
  );
  buildStrategy("replay", { ...base, params: { memSize: 10, batchSizeMem: 4 } }).dispose();
  model.dispose();
  const spec = { name: "splitMNIST", experiences: 5 } as const;
  await rejectsExactly(
    () => loadBenchmark(spec, { trainPerExp: 10 } as never),
    "TypeError",
    'loadBenchmark: unknown option "trainPerExp" (did you mean "trainPerExperience"?)',
  );
  await rejectsExactly(
    () => runExperiment({} as never, { progres: "off" } as never),
    "TypeError",
    'runExperiment: unknown option "progres" (did you mean "progress"?)',
  );
  await rejectsExactly(
    () => runReproduction("gdumb-split-mnist", { mode: "quik" } as never),
    "RangeError",
    'runReproduction: mode must be one of "full", "quick", "tiny", got the string "quik" ' +
      '(did you mean "quick"?)',
  );
  await rejectsExactly(
    () => runComparison({ scenario: ["x"] } as never),
    "TypeError",
    'runComparison: unknown option "scenario" (did you mean "scenarios"?)',
  );
  await rejectsExactly(
    () => saveResult({} as never, "/tmp/never", { svg: true } as never),
    "TypeError",
    'saveResult: unknown option "svg"; valid options: "png"',
  );
  throwsExactly(
    () => runProgress({ experiences: 1, lable: "x" } as never),
    "TypeError",
    'runProgress: unknown option "lable" (did you mean "label"?)',
  );
  await rejectsExactly(
    () => runBench({ repeat: 2 } as never),
    "TypeError",
    'runBench: unknown option "repeat" (did you mean "repeats"?)',
  );
});
