// Avalanche 0.6's names and signatures: each builds what our own form builds, and works.
import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { splitOnline } from "../lib/benchmarks/mod.ts";
import { ArrayDataset, type Dataset } from "../lib/data/dataset.ts";
import { type BenchmarkInfo, makeExperience } from "../lib/data/experience.ts";
import type { MetricRow } from "../lib/data/rows.ts";
import { inMemoryLogger } from "../lib/loggers/in_memory.ts";
import { accuracy } from "../lib/metrics/accuracy.ts";
import { bwt, forgetting } from "../lib/metrics/forgetting.ts";
import * as functional from "../lib/metrics/functional.ts";
import { loss } from "../lib/metrics/loss.ts";
import { mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { CoPEPlugin } from "../lib/plugins/cope.ts";
import { EvaluationPlugin } from "../lib/plugins/evaluation.ts";
import { ReplayPlugin } from "../lib/plugins/replay.ts";
import {
  BalancedExemplarsBuffer,
  BalancedStoragePolicy,
  ClassBalancedBuffer,
  ClassBalancedStoragePolicy,
  ExemplarsBuffer,
  ExemplarsSelectionStrategy,
  ExperienceBalancedBuffer,
  ExperienceBalancedStoragePolicy,
  ParametricBuffer,
  RandomExemplarsSelectionStrategy,
  ReservoirSamplingBuffer,
  StoragePolicy,
} from "../lib/plugins/storage_policy.ts";
import { Rng } from "../lib/random.ts";
import type { StrategyContext } from "../lib/strategy/context.ts";
import { StrategyPlugin, SupervisedPlugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import * as mod from "../mod.ts";
import { toyBenchmark } from "./_helpers.ts";

const INFO: BenchmarkInfo = {
  name: "toy",
  scenario: "class-incremental",
  numClasses: 4,
  inputShape: [1],
  numExperiences: 3,
};

/** A dataset whose sample i has the single input value `first + i`, so samples can be told apart. */
function numbered(first: number, y: number[], taskLabels?: number[]): ArrayDataset {
  return new ArrayDataset({
    x: Float32Array.from(y, (_, i) => first + i),
    y,
    taskLabels,
    inputShape: [1],
  });
}

/** The input values of a dataset's samples. */
function values(d: Dataset): number[] {
  const out = new Float32Array(1);
  return Array.from({ length: d.length }, (_, i) => (d.fillX(i, out, 0), out[0]));
}

function groupSizes(p: StoragePolicy): Record<number, number> {
  return Object.fromEntries([...p.groups].map(([k, g]) => [k, g.length]));
}

/** What a ReplayPlugin was built with, to compare two constructions. */
function replaySettings(p: ReplayPlugin) {
  const sp = p.storagePolicy as BalancedStoragePolicy;
  return {
    memSize: p.memSize,
    batchSize: p.batchSize,
    batchSizeMem: p.batchSizeMem,
    taskBalancedDataLoader: p.taskBalancedDataLoader,
    policy: sp.constructor.name,
    maxSize: sp.maxSize,
    adaptiveSize: sp.adaptiveSize,
  };
}

Deno.test("ReplayPlugin: Avalanche 0.6's positional order builds what the options object builds", () => {
  assert.deepEqual(
    replaySettings(new ReplayPlugin(500, 32)),
    replaySettings(new ReplayPlugin({ memSize: 500, batchSize: 32 })),
  );
  const p = new ReplayPlugin(500, 32);
  assert.equal(p.memSize, 500);
  assert.equal(p.batchSize, 32);
  assert.equal(p.batchSizeMem, undefined);
  // All five: (mem_size, batch_size, batch_size_mem, task_balanced_dataloader, storage_policy).
  assert.deepEqual(
    replaySettings(new ReplayPlugin(300, 16, 8, true, new ClassBalancedBuffer(300))),
    replaySettings(
      new ReplayPlugin({
        memSize: 300,
        batchSize: 16,
        batchSizeMem: 8,
        taskBalancedDataLoader: true,
        storagePolicy: new ClassBalancedStoragePolicy({ memSize: 300 }),
      }),
    ),
  );
  // Python's None as null: left out.
  assert.deepEqual(
    replaySettings(new ReplayPlugin(300, null, 8, null, new ClassBalancedBuffer(300))),
    replaySettings(
      new ReplayPlugin({
        memSize: 300,
        batchSizeMem: 8,
        storagePolicy: new ClassBalancedStoragePolicy(300),
      }),
    ),
  );
  // The earlier order still works: a storage policy second.
  const seed = new ReplayPlugin(300, new ClassBalancedStoragePolicy(300), 8, true);
  assert.deepEqual(replaySettings(seed), {
    memSize: 300,
    batchSize: undefined,
    batchSizeMem: 8,
    taskBalancedDataLoader: true,
    policy: "ClassBalancedStoragePolicy",
    maxSize: 300,
    adaptiveSize: true,
  });
  assert.throws(
    () =>
      new (ReplayPlugin as unknown as new (...args: unknown[]) => ReplayPlugin)(
        300,
        new ClassBalancedBuffer(300),
        8,
        false,
        new ClassBalancedBuffer(300),
      ),
    /a storage policy both second .* and fifth/,
  );
  assert.throws(
    () => new ReplayPlugin(300, "classBalanced" as never),
    /second argument must be the batch size .* or a StoragePolicy .*, got classBalanced/,
  );
  assert.throws(
    () => new ReplayPlugin(300, 16, 8, false, new ClassBalancedBuffer(200)),
    /memSize \(300\) differs from the storage policy's maxSize \(200\)/,
  );
});

Deno.test("ReplayPlugin(memSize, batchSize): the batch size is the plugin's current part", async () => {
  // Strategy minibatches of 8; the plugin's batchSize 4 makes each replay minibatch 4 current
  // samples and 4 from memory (batchSizeMem defaults to the current batch size).
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const sizes: number[][] = [];
  const counter = {
    name: "counter",
    beforeTrainingExp: () => void sizes.push([]),
    afterForward: (ctx: StrategyContext) => void sizes.at(-1)!.push(ctx.batch!.n),
  };
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = naive({
    model,
    batchSize: 8,
    seed: 0,
    plugins: [new ReplayPlugin(20, 4), counter],
  });
  for (const exp of bench.train) await s.train(exp);
  assert.ok(sizes[0].every((n) => n <= 8));
  assert.ok(sizes[1].length > 0 && sizes[1].every((n) => n === 8), String(sizes[1]));
  s.dispose();
  model.dispose();
});

Deno.test("SupervisedPlugin is StrategyPlugin: a plugin written against it runs", async () => {
  assert.equal(SupervisedPlugin, StrategyPlugin);
  assert.equal(mod.SupervisedPlugin, StrategyPlugin);
  let epochs = 0;
  class CountEpochs extends SupervisedPlugin {
    afterTrainingEpoch(): void {
      epochs++;
    }
  }
  const plugin = new CountEpochs();
  assert.ok(plugin instanceof StrategyPlugin);
  assert.equal(plugin.name, "CountEpochs");
  const bench = toyBenchmark({ n: 40, experiences: 2 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = naive({ model, batchSize: 8, epochs: 2, seed: 0, plugins: [plugin] });
  await s.train(bench.train[0]);
  assert.equal(epochs, 2);
  s.dispose();
  model.dispose();
});

Deno.test("storage policies under Avalanche 0.6's names, with its positional parameters", () => {
  assert.equal(ExemplarsBuffer, StoragePolicy);
  assert.equal(BalancedExemplarsBuffer, BalancedStoragePolicy);
  assert.equal(ExperienceBalancedBuffer, ExperienceBalancedStoragePolicy);
  assert.equal(ClassBalancedBuffer, ClassBalancedStoragePolicy);
  for (
    const name of [
      "ExemplarsBuffer",
      "BalancedExemplarsBuffer",
      "ExperienceBalancedBuffer",
      "ClassBalancedBuffer",
      "ReservoirSamplingBuffer",
      "ParametricBuffer",
      "ExemplarsSelectionStrategy",
      "RandomExemplarsSelectionStrategy",
    ]
  ) {
    assert.equal(typeof (mod as Record<string, unknown>)[name], "function", name);
  }
  const rng = new Rng(0);
  const d = numbered(0, new Array(20).fill(0));
  const update = (p: StoragePolicy, id: number) =>
    p.update({ experience: makeExperience("train", id, d, INFO), rng });

  // ExperienceBalancedBuffer(max_size, adaptive_size=True, num_experiences=None)
  const adaptive = new ExperienceBalancedBuffer(10);
  const withNone = new ExperienceBalancedBuffer(10, true, null as never);
  for (let i = 0; i < 3; i++) {
    update(adaptive, i);
    update(withNone, i);
  }
  assert.deepEqual(groupSizes(adaptive), { 0: 4, 1: 3, 2: 3 });
  assert.deepEqual(groupSizes(withNone), { 0: 4, 1: 3, 2: 3 });
  const fixed = new ExperienceBalancedBuffer(10, false, 5);
  for (let i = 0; i < 3; i++) update(fixed, i);
  assert.deepEqual(groupSizes(fixed), { 0: 2, 1: 2, 2: 2 });
  assert.throws(() => new ExperienceBalancedBuffer(10, false), /numExperiences must be/);

  // ClassBalancedBuffer(max_size, adaptive_size=True, total_num_classes=None)
  const classes = numbered(0, Array.from({ length: 30 }, (_, i) => i % 3));
  const cb = new ClassBalancedBuffer(10);
  cb.update({ experience: makeExperience("train", 0, classes, INFO), rng });
  assert.deepEqual(groupSizes(cb), { 0: 4, 1: 3, 2: 3 });
  const cbFixed = new ClassBalancedBuffer(10, false, 5);
  cbFixed.update({ experience: makeExperience("train", 0, classes, INFO), rng });
  assert.deepEqual(groupSizes(cbFixed), { 0: 2, 1: 2, 2: 2 });

  // One class under two names: a checkpoint of the one loads into the other.
  const other = new ClassBalancedStoragePolicy({ memSize: 10 });
  other.loadState(cb.state());
  assert.deepEqual(values(other.buffer), values(cb.buffer));

  // ReservoirSamplingBuffer(max_size)
  const r = new ReservoirSamplingBuffer(5);
  update(r, 0);
  assert.equal(r.buffer.length, 5);
});

Deno.test("ParametricBuffer groups by nothing, class, task and experience", () => {
  const rng = new Rng(1);
  const exp = (id: number, d: Dataset) => ({
    experience: makeExperience("train", id, d, INFO),
    rng,
  });

  // groupby None: one group, a random subset of everything offered so far.
  const none = new ParametricBuffer(6);
  assert.equal(none.groupby, null);
  assert.ok(none.selectionStrategy instanceof RandomExemplarsSelectionStrategy);
  none.update(exp(0, numbered(0, new Array(10).fill(0))));
  assert.deepEqual(groupSizes(none), { 0: 6 });
  none.update(exp(1, numbered(100, new Array(10).fill(1))));
  assert.deepEqual(groupSizes(none), { 0: 6 });
  const kept = values(none.buffer);
  assert.equal(new Set(kept).size, 6, "no sample twice");
  assert.ok(kept.every((v) => (v >= 0 && v < 10) || (v >= 100 && v < 110)));

  // groupby "class": each group holds only its class, the capacity split over the classes seen
  // (remainder to the first).
  const byClass = new ParametricBuffer(10, "class");
  const c01 = numbered(0, Array.from({ length: 20 }, (_, i) => i % 2));
  byClass.update(exp(0, c01));
  assert.deepEqual(groupSizes(byClass), { 0: 5, 1: 5 });
  byClass.update(exp(1, numbered(100, new Array(10).fill(2))));
  assert.deepEqual(groupSizes(byClass), { 0: 4, 1: 3, 2: 3 });
  for (const [c, g] of byClass.groups) {
    assert.ok(Array.from(g.targets).every((y) => y === c), `class group ${c}`);
  }
  assert.ok(values(byClass.groups.get(2)!).every((v) => v >= 100));

  // groupby "task": by each sample's task label.
  const byTask = new ParametricBuffer(9, "task");
  byTask.update(exp(0, numbered(0, new Array(12).fill(0), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])));
  assert.deepEqual(groupSizes(byTask), { 0: 3, 1: 3, 2: 3 });
  for (const [t, g] of byTask.groups) {
    assert.ok(Array.from(g.taskLabels).every((l) => l === t), `task group ${t}`);
  }

  // groupby "experience": one group per update, in order.
  const byExp = new ParametricBuffer(10, "experience");
  for (let i = 0; i < 3; i++) byExp.update(exp(i, numbered(100 * i, new Array(10).fill(i))));
  assert.deepEqual(groupSizes(byExp), { 0: 4, 1: 3, 2: 3 });
  for (const [k, g] of byExp.groups) {
    assert.ok(values(g).every((v) => v >= 100 * k && v < 100 * k + 10), `experience group ${k}`);
  }

  // A state restores the groups (samples included) into a buffer of the same grouping.
  const restored = new ParametricBuffer(10, "experience");
  restored.loadState(byExp.state());
  assert.deepEqual(groupSizes(restored), groupSizes(byExp));
  assert.deepEqual(values(restored.buffer), values(byExp.buffer));
  assert.throws(() => new ParametricBuffer(10, "class").loadState(byExp.state()), /groupby/);

  // The options object builds the same.
  const fromOptions = new ParametricBuffer({ memSize: 10, groupby: "class" });
  assert.deepEqual([fromOptions.maxSize, fromOptions.groupby], [10, "class"]);
  assert.throws(() => new ParametricBuffer(10, "klass" as never), /groupby must be "class"/);
  assert.throws(
    () => new ParametricBuffer({ memSize: 10, groupBy: "class" } as never),
    /unknown option "groupBy" \(did you mean "groupby"\?\)/,
  );
  assert.throws(
    () => new ParametricBuffer(10, null, {} as never),
    /selectionStrategy must be an ExemplarsSelectionStrategy/,
  );
});

Deno.test("ParametricBuffer: the selection strategy chooses; random is seeded", () => {
  // A strategy of one's own: prefer the smallest inputs.
  class Smallest extends ExemplarsSelectionStrategy {
    makeSortedIndices(data: Dataset): number[] {
      const v = values(data);
      return v.map((_, i) => i).sort((a, b) => v[a] - v[b]);
    }
  }
  const info = (id: number, d: Dataset, rng: Rng) => ({
    experience: makeExperience("train", id, d, INFO),
    rng,
  });
  const small = new ParametricBuffer(4, null, new Smallest());
  small.update(info(0, numbered(50, new Array(10).fill(0)), new Rng(0)));
  small.update(info(1, numbered(10, new Array(10).fill(1)), new Rng(0)));
  assert.deepEqual(values(small.buffer), [10, 11, 12, 13]);
  // Random selection draws from the run's generator: same seed, same memory.
  const run = (seed: number) => {
    const p = new ParametricBuffer(5, "class");
    const rng = new Rng(seed);
    p.update(info(0, numbered(0, Array.from({ length: 20 }, (_, i) => i % 2)), rng));
    return values(p.buffer);
  };
  assert.deepEqual(run(3), run(3));
  assert.notDeepEqual(run(3), run(4));
});

Deno.test("EvaluationPlugin(...metrics, { loggers, collectAll, strictChecks }) as Avalanche 0.6", async () => {
  const bench = toyBenchmark({ n: 40, experiences: 2 });
  const run = async (evaluator: EvaluationPlugin) => {
    const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
    const s = naive({ model, batchSize: 8, seed: 0, evaluator });
    await s.train(bench.train[0]);
    await s.eval(bench.test);
    s.dispose();
    model.dispose();
  };
  const logged = inMemoryLogger();
  const positional = new EvaluationPlugin(accuracy({ at: ["experience", "stream"] }), loss(), {
    loggers: [logged],
  });
  assert.equal(positional.metrics.length, 2);
  assert.equal(positional.loggers.length, 1);
  assert.equal(positional.collectAll, true);
  await run(positional);
  assert.ok(logged.rows.length > 0);
  assert.deepEqual(logged.rows, positional.rows);
  // The same rows as our options form.
  const own = inMemoryLogger();
  const options = new EvaluationPlugin({
    metrics: [accuracy({ at: ["experience", "stream"] }), loss()],
    loggers: [own],
  });
  await run(options);
  const strip = (rows: MetricRow[]) =>
    rows.map((r) => ({ ...r, value: Math.round(r.value * 1e6) }));
  assert.deepEqual(strip(logged.rows), strip(own.rows));
  assert.deepEqual(Object.keys(positional.getLastMetrics()), Object.keys(options.getLastMetrics()));

  // Lists of metrics are flattened (as Avalanche's helpers return lists); keywords optional.
  const lists = new EvaluationPlugin([accuracy(), loss()], forgetting(), { collectAll: false });
  assert.deepEqual(lists.metrics.map((m) => m.name), ["accuracy", "loss", "forgetting"]);
  assert.equal(lists.collectAll, false);
  assert.equal(new EvaluationPlugin(accuracy(), loss()).metrics.length, 2);
  assert.throws(
    () => new EvaluationPlugin(accuracy(), { collect_all: false } as never),
    /unknown option "collect_all" \(did you mean "collectAll"\?\)/,
  );
  assert.throws(
    () => new EvaluationPlugin(accuracy(), { metrics: [loss()] } as never),
    /metrics given both as arguments and as the metrics option/,
  );
  assert.throws(
    () => new EvaluationPlugin(accuracy(), 3 as never, loss()),
    /argument 1 is not a metric/,
  );

  // strictChecks: an eval of part of a stream is an error.
  const strict = new EvaluationPlugin(accuracy(), { strictChecks: true });
  assert.equal(strict.strictChecks, true);
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = naive({ model, batchSize: 8, seed: 0, evaluator: strict });
  await s.train(bench.train[0]);
  await assert.rejects(() => s.eval(bench.test.slice(1)), /not one whole stream/);
  await s.eval(bench.test);
  await assert.rejects(() => s.eval(bench.test.slice(0, 1)), /the test stream has 2 experiences/);
  s.dispose();
  model.dispose();
});

Deno.test("forgetting as Avalanche computes it, on a hand-computed accuracy matrix", () => {
  // Experience 0 rises after training on 1 (backward transfer), then falls.
  const m = [
    [0.5, 0.1, 0.0],
    [0.9, 0.8, 0.2],
    [0.6, 0.7, 0.9],
  ];
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  // Avalanche: R[j][j] − R[k][j].
  const av = functional.forgetting(m, 2, { definition: "avalanche" });
  close(av[0], 0.5 - 0.6);
  close(av[1], 0.8 - 0.7);
  close(functional.averageForgetting(m, 2, { definition: "avalanche" }), (-0.1 + 0.1) / 2);
  close(functional.forgetting(m, 1, { definition: "avalanche" })[0], 0.5 - 0.9);
  // Chaudhry (the default): max_{l<k} R[l][j] − R[k][j].
  const ch = functional.forgetting(m);
  close(ch[0], 0.9 - 0.6);
  close(ch[1], 0.8 - 0.7);
  assert.deepEqual(functional.forgetting(m, 2, { definition: "chaudhry" }), ch);
  close(functional.averageForgetting(m), 0.2);
  assert.throws(
    () => functional.forgetting(m, 2, { definition: "max" as never }),
    /forgetting: definition must be "chaudhry" or "avalanche", got the string "max"/,
  );
  assert.throws(
    () => forgetting({ defintion: "avalanche" } as never),
    /unknown option "defintion" \(did you mean "definition"\?\)/,
  );
});

Deno.test("forgetting({ definition: 'avalanche' }) rows: R[j][j] − R[k][j], per experience and stream", async () => {
  const bench = toyBenchmark({ n: 90, classes: 6, experiences: 3 });
  const evaluator = new EvaluationPlugin(
    forgetting({ definition: "avalanche" }),
    forgetting(),
    bwt({ at: "experience" }),
  );
  const model = mlp({ input: 64, hidden: [8], outputs: 6, seed: 0 });
  const s = naive({ model, batchSize: 8, seed: 0, optimizer: sgd({ lr: 0.1 }), evaluator });
  for (const exp of bench.train) {
    await s.train(exp);
    await s.eval(bench.test);
  }
  const R = s.accuracyMatrix();
  const rows = evaluator.rows.filter((r) => r.metric === "forgetting");
  // The two metrics alternate; the first of each pair is Avalanche's.
  const k = 2;
  const perExp = rows.filter((r) => r.trainExperience === k && r.experience !== null);
  assert.equal(perExp.length, 4); // experiences 0 and 1, both definitions
  const avalanche = perExp.filter((_, i) => i % 2 === 0);
  const chaudhry = perExp.filter((_, i) => i % 2 === 1);
  avalanche.forEach((r) => {
    const j = r.experience!;
    assert.ok(Math.abs(r.value - (R[j][j] - R[k][j])) < 1e-6);
  });
  chaudhry.forEach((r) => {
    const j = r.experience!;
    const best = Math.max(...R.slice(0, k).map((row) => row[j]));
    assert.ok(Math.abs(r.value - (best - R[k][j])) < 1e-6);
  });
  // Per experience, Avalanche's forgetting is minus the backward transfer.
  const b = evaluator.rows.filter((r) => r.metric === "bwt" && r.trainExperience === k);
  assert.deepEqual(avalanche.map((r) => r.value), b.map((r) => -r.value));
  const stream = rows.filter((r) => r.trainExperience === k && r.experience === null);
  assert.ok(
    Math.abs(stream[0].value - functional.averageForgetting(R, k, { definition: "avalanche" })) <
      1e-6,
  );
  assert.ok(Math.abs(stream[1].value - functional.averageForgetting(R, k)) < 1e-6);
  s.dispose();
  model.dispose();
});

Deno.test("CoPE avalancheCompat: Avalanche's defaults and one-hot evaluation output, nothing else", async () => {
  const compat = new CoPEPlugin({ avalancheCompat: true });
  assert.deepEqual([compat.maxIterPerBatch, compat.initAdaptive], [1, false]);
  const ours = new CoPEPlugin();
  assert.deepEqual([ours.maxIterPerBatch, ours.initAdaptive, ours.avalancheCompat], [
    20,
    true,
    false,
  ]);
  // Values given explicitly win.
  const explicit = new CoPEPlugin({
    avalancheCompat: true,
    maxIterPerBatch: 3,
    initAdaptive: true,
  });
  assert.deepEqual([explicit.maxIterPerBatch, explicit.initAdaptive], [3, true]);
  assert.throws(
    () => new CoPEPlugin({ avalancheCompat: "yes" } as never),
    /avalancheCompat must be true or false/,
  );

  // Two runs alike but for the mode (the defaults it changes given explicitly): the same training
  // (same prototypes, same training outputs), and in evaluation the one-hot code of the argmax
  // of our scores.
  const bench = splitOnline(toyBenchmark({ n: 80, experiences: 2 }), { experienceSize: 10 });
  const run = async (avalancheCompat: boolean) => {
    const train: number[][][] = [];
    const evals: number[][][] = [];
    const plugin = new CoPEPlugin({
      memSize: 20,
      nClasses: 4,
      pSize: 8,
      maxIterPerBatch: 2,
      initAdaptive: false,
      avalancheCompat,
    });
    const recorder = {
      name: "recorder",
      afterForward: (ctx: StrategyContext) =>
        void train.push(ctx.output!.arraySync() as number[][]),
      afterEvalForward: (ctx: StrategyContext) =>
        void evals.push(ctx.output!.arraySync() as number[][]),
    };
    const model = mlp({ input: 64, hidden: [16], outputs: 8, seed: 0 });
    const s = naive({ model, batchSize: 10, seed: 0, plugins: [plugin, recorder] });
    for (const exp of bench.train.slice(0, 6)) await s.train(exp);
    const result = await s.eval(bench.test);
    const prototypes = [...plugin.prototypes].map(([c, p]) => [c, Array.from(p)]);
    s.dispose();
    plugin.dispose();
    model.dispose();
    return { train, evals, prototypes, accuracy: result.accuracy };
  };
  const start = tf.memory().numTensors;
  const a = await run(false);
  const b = await run(true);
  assert.equal(tf.memory().numTensors, start);
  assert.deepEqual(b.prototypes, a.prototypes);
  assert.deepEqual(b.train, a.train);
  assert.equal(b.accuracy, a.accuracy);
  assert.equal(b.evals.length, a.evals.length);
  a.evals.forEach((batch, i) => {
    const expected = batch.map((scores) => {
      const arg = scores.indexOf(Math.max(...scores));
      return scores.map((_, c) => (c === arg ? 1 : 0));
    });
    assert.deepEqual(b.evals[i], expected);
  });
});
