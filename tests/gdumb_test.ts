import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";

import { ArrayDataset, type Dataset } from "../lib/data/dataset.ts";
import { mlp } from "../lib/models/mlp.ts";
import type { ModuleState } from "../lib/nn/module.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { Rng } from "../lib/random.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { gdumb, GDumbPlugin, gdumbPlugin } from "../lib/plugins/gdumb.ts";
import { againstNaiveOnSplitMNIST, SHARED_DATA, toyBenchmark } from "./_helpers.ts";

/** Sample i has the single feature `ids[i]` (its identity) and label `labels[i]`. */
function idData(ids: number[], labels: number[]): ArrayDataset {
  return new ArrayDataset({ x: Float32Array.from(ids), y: labels, inputShape: [1] });
}

function ids(d: Dataset): number[] {
  return Array.from(d.batch(Int32Array.from({ length: d.length }, (_, i) => i)).x);
}

Deno.test("GDumb greedy sampler: fill, then evict from the largest class (hand-computed)", () => {
  const g = new GDumbPlugin(4);
  const rng = new Rng(0);
  // Four samples of class 0 fill the memory.
  g.addSamples(idData([0, 1, 2, 3], [0, 0, 0, 0]), rng);
  assert.deepEqual([...g.classCounts], [[0, 4]]);
  // Class 1 (0 < 4): evicts a 0; second 1 (1 < 3): evicts another 0.
  g.addSamples(idData([10, 11], [1, 1]), rng);
  assert.deepEqual([...g.classCounts], [[0, 2], [1, 2]]);
  // Class 2 (0 < 2): classes 0 and 1 tie as largest, the earliest (0) gives up a sample.
  // Class 1 again (2 is not < 2): dropped. Class 2 again (1 < 2): evicts from class 1.
  g.addSamples(idData([20, 12, 21], [2, 1, 2]), rng);
  assert.deepEqual([...g.classCounts], [[0, 1], [1, 1], [2, 2]]);
  const m = ids(g.memory);
  assert.equal(m.length, 4);
  assert.ok([0, 1, 2, 3].includes(m[0]) && [10, 11].includes(m[1]), `${m}`);
  assert.deepEqual(m.slice(2), [20, 21]);
  assert.deepEqual(Array.from(g.memory.targets), [0, 1, 2, 2]);
  // Once full and balanced, the counts stay within one of each other.
  const big = new GDumbPlugin(10);
  const labels = Array.from({ length: 200 }, (_, i) => (i < 100 ? i % 2 : 2 + (i % 3)));
  big.addSamples(idData(labels.map((_, i) => i), labels), new Rng(1));
  // Classes in order of arrival: i = 100 has label 2 + 100 % 3 = 3, then 4, then 2.
  assert.deepEqual([...big.classCounts], [[0, 2], [1, 2], [3, 2], [4, 2], [2, 2]]);
  assert.equal(new Set(ids(big.memory)).size, 10);
});

Deno.test("GDumb: trains on the memory only, updated with each experience in stream order", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 }); // 40 training samples each
  const model = mlp({ input: 64, hidden: [8], outputs: 6, seed: 0 });
  const plugin = gdumbPlugin({ memSize: 30 });
  const seen: { dataset: Dataset; samples: number }[] = [];
  let samples = 0;
  const spy: Plugin = {
    beforeTrainingExp(ctx) {
      seen.push({ dataset: ctx.dataset!, samples: 0 });
      samples = 0;
    },
    afterTrainingIteration(ctx) {
      samples += ctx.batch!.n;
    },
    afterTrainingExp() {
      seen[seen.length - 1].samples = samples;
    },
  };
  const s = naive({ model, batchSize: 8, epochs: 2, seed: 0, plugins: [plugin, spy] });
  const counts: number[][] = [];
  for (const e of bench.train) {
    await s.train(e);
    counts.push([...plugin.classCounts.values()]);
    const last = seen[seen.length - 1];
    assert.equal(last.dataset, plugin.memory, "the training set is the memory");
    assert.equal(last.samples, 2 * plugin.memory.length, "2 epochs over the memory");
  }
  // 20 samples per class. Experience 0: 30 of 40 kept, 15 + 15. Experience 1: each new sample
  // evicts from the largest class while its class is smaller: 15,15,0,0 → ... → 7,7,8,8, then
  // every further sample finds its class as large as the largest one and is dropped.
  assert.deepEqual(counts, [[15, 15], [7, 7, 8, 8], [5, 5, 5, 5, 5, 5]]);
  s.dispose();
  model.dispose();
});

Deno.test("GDumb re-initializes the model (and optimizer state) before each experience", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  // Incremental head: output units grow from 2 to 4 to 6 as classes arrive.
  const model = mlp({ input: 64, hidden: [8], outputs: 2, head: "incremental", seed: 0 });
  const initial = model.stateDict();
  const atStart: ModuleState[] = [];
  const spy: Plugin = {
    beforeTrainingExp(ctx) {
      atStart.push(ctx.model.stateDict());
    },
  };
  const s = gdumb({ model, memSize: 30, batchSize: 8, seed: 0, plugins: [spy] });
  assert.equal(s.name, "GDumb");
  const trained: ModuleState[] = [];
  for (const e of bench.train) {
    await s.train(e);
    trained.push(model.stateDict());
  }
  const w = (st: ModuleState, n: string) => st.tensors[n];
  assert.deepEqual(atStart[0].tensors, initial.tensors);
  for (const k of [1, 2]) {
    // Hidden layer back to its initial values, not the trained ones.
    assert.deepEqual(
      w(atStart[k], "features.0.weight"),
      w(initial, "features.0.weight"),
    );
    assert.notDeepEqual(
      w(trained[k - 1], "features.0.weight"),
      w(initial, "features.0.weight"),
    );
    // Output units: the two initial ones as at the start, the grown ones fresh.
    const head = w(atStart[k], "classifier.classifier.weight");
    assert.deepEqual(head.shape, [8, 2 * (k + 1)]);
    const init0 = w(initial, "classifier.classifier.weight");
    for (let r = 0; r < 8; r++) {
      assert.deepEqual(
        head.values.slice(r * head.shape[1], r * head.shape[1] + 2),
        init0.values.slice(r * 2, r * 2 + 2),
      );
    }
  }
  // The grown units added at experience 1 are reset to their values when they appeared.
  const at1 = w(atStart[1], "classifier.classifier.weight");
  const at2 = w(atStart[2], "classifier.classifier.weight");
  for (let r = 0; r < 8; r++) {
    assert.deepEqual(at2.values.slice(r * 6, r * 6 + 4), at1.values.slice(r * 4, r * 4 + 4));
  }
  assert.equal(
    s.optimizer.state().step,
    4,
    "optimizer state restarts with the model (30 / 8 → 4 steps)",
  );
  s.dispose();
  model.dispose();
});

Deno.test("GDumb checkpoint: a run resumed from JSON after experience 0 matches an uninterrupted one", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const make = (modelSeed: number) =>
    gdumb({
      model: mlp({ input: 64, hidden: [16], outputs: 6, seed: modelSeed }),
      memSize: 24,
      batchSize: 8,
      epochs: 2,
      seed: 5,
      optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    });
  const full = make(1);
  for (const e of bench.train) await full.train(e);
  const fullEval = await full.eval(bench.test);

  const first = make(1);
  await first.train(bench.train[0]);
  const saved = JSON.parse(JSON.stringify(first.checkpoint()));
  first.dispose();
  first.model.dispose();

  const resumed = make(99); // other initial weights: the initial state must come from the checkpoint
  await resumed.restore(saved);
  await resumed.train(bench.train[1]);
  await resumed.train(bench.train[2]);
  const resumedEval = await resumed.eval(bench.test);
  assert.deepEqual(resumedEval.experiences, fullEval.experiences);
  assert.deepEqual(resumed.model.stateDict(), full.model.stateDict());
  const mem = (s: typeof full) => ids((s.plugins[0] as GDumbPlugin).memory);
  assert.deepEqual(mem(resumed), mem(full));
  for (const s of [full, resumed]) {
    s.dispose();
    s.model.dispose();
  }
  assert.throws(
    () => new GDumbPlugin(10).loadState({ ...saved.plugins["0:GDumbPlugin"] }),
    /same memSize/,
  );
});

Deno.test("GDumb: no tensor growth across experiences; errors name the value", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const model = mlp({ input: 64, hidden: [16], outputs: 6, seed: 0 });
  const plugin = new GDumbPlugin({ memSize: 30 });
  const s = naive({ model, batchSize: 8, seed: 0, plugins: [plugin] });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  const base = tf.memory().numTensors;
  for (let round = 0; round < 2; round++) {
    for (const e of bench.train) {
      await s.train(e);
      await s.eval(bench.test);
      assert.equal(tf.memory().numTensors, base);
    }
  }
  s.dispose();
  model.dispose();
  plugin.dispose();
  assert.equal(tf.memory().numTensors, start);
  assert.equal(new GDumbPlugin().memSize, 200);
  assert.throws(() => new GDumbPlugin(0), /memSize must be an integer ≥ 1, got 0/);
  assert.throws(() => gdumbPlugin({ memSize: 2.5 }), /got 2.5/);
});

Deno.test({
  name: "GDumb (memSize 1000, 3 epochs) beats Naive on class-incremental Split MNIST" +
    (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const { base, ours: g } = await againstNaiveOnSplitMNIST({
      label: "GDumb",
      method: (opts) => gdumb({ ...opts, memSize: 1000 }),
      trainPerExperience: 1000,
      hidden: [400, 400],
      lr: 0.01,
      batchSize: 32,
      epochs: 3,
    });
    assert.ok(base.meanAccuracy < 0.3, `naive forgets: ${base.meanAccuracy}`);
    assert.ok(g.meanAccuracy > 0.75, `GDumb: ${g.meanAccuracy}`);
    assert.ok(g.meanAccuracy > base.meanAccuracy + 0.4);
  },
});
