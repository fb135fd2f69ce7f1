import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";

import { ArrayDataset } from "../lib/data/dataset.ts";
import { makeExperience } from "../lib/data/experience.ts";
import { extractFeatures, l2NormalizeRows } from "../lib/models/features.ts";
import { MASK_VALUE } from "../lib/models/heads.ts";
import { Classifier, mlp } from "../lib/models/mlp.ts";
import { classMeansOf, NCMClassifier } from "../lib/models/ncm.ts";
import { Linear, Sequential } from "../lib/nn/layers.ts";
import { binaryCrossEntropyWithLogits, icarlLoss } from "../lib/nn/losses.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { icarl, ICaRLPlugin, icarlPlugin } from "../lib/plugins/icarl.ts";
import {
  ClosestToCenterSelectionStrategy,
  HerdingSelectionStrategy,
  ParametricBuffer,
  RandomExemplarsSelectionStrategy,
} from "../lib/plugins/storage_policy.ts";
import { Rng } from "../lib/random.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { againstNaiveOnSplitMNIST, checkResume, SHARED_DATA, toyBenchmark } from "./_helpers.ts";

function close(a: number, b: number, tol: number, what: string) {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

// Four unit vectors (3-4-5 triangles): mean (0.8, 0.2); squared distances to it 0.08, 0.16,
// 0.64, 0.40, so closest-to-center gives 0, 1, 3, 2. Herding: 0 first (nearest the mean); then
// the pair means (0.9, 0.3), (0.9, −0.3), (0.8, 0.4) are 0.02, 0.26, 0.04 away: 1; then the
// triple means (0.867, 0) and (0.8, 0.467) are 0.044 and 0.071 away: 2; then 3.
const UNIT = [[1, 0], [0.8, 0.6], [0.8, -0.6], [0.6, 0.8]];

Deno.test("herding picks iCaRL's exemplars on a 2-D feature set; closest-to-center differs", () => {
  const f = { values: Float32Array.from(UNIT.flat()), n: 4, dim: 2 };
  const herding = new HerdingSelectionStrategy();
  const ctc = new ClosestToCenterSelectionStrategy();
  assert.deepEqual([...herding.makeSortedIndicesFromFeatures(f)], [0, 1, 2, 3]);
  assert.deepEqual([...ctc.makeSortedIndicesFromFeatures(f)], [0, 1, 3, 2]);
  assert.deepEqual([...herding.makeSortedIndicesFromFeatures(f, 2)], [0, 1]);
  // Through the model's features, with scaled vectors: normalization gives the same orders.
  const scaled = UNIT.map((v, i) => v.map((x) => x * (i + 1) * 3));
  const identity: Classifier = new Classifier(
    new Sequential([]),
    new Linear(2, 2, { seed: 0 }),
    2,
    [2],
    () => identity,
  );
  const data = new ArrayDataset({
    x: Float32Array.from(scaled.flat()),
    y: [0, 0, 0, 0],
    inputShape: [2],
  });
  const rng = new Rng(0);
  assert.deepEqual([...herding.makeSortedIndices(data, rng, { model: identity })], [0, 1, 2, 3]);
  assert.deepEqual([...ctc.makeSortedIndices(data, rng, { model: identity })], [0, 1, 3, 2]);
  // Avalanche's raw features (3, 0), (4.8, 3.6), (7.2, −5.4), (7.2, 9.6): mean (5.55, 1.95),
  // squared distances 10.3, 3.3, 56.7, 61.2.
  assert.deepEqual(
    [...new ClosestToCenterSelectionStrategy({ normalize: false }).makeSortedIndices(data, rng, {
      model: identity,
    })],
    [1, 0, 2, 3],
  );
  // In a ParametricBuffer, updated with the run's model: the first 3 of each order are kept.
  const info = {
    name: "toy",
    scenario: "class-incremental",
    numClasses: 1,
    inputShape: [2],
    numExperiences: 1,
  } as const;
  const exp = makeExperience("train", 0, data, info);
  for (const [sel, kept] of [[herding, [0, 1, 2]], [ctc, [0, 1, 3]]] as const) {
    const buffer = new ParametricBuffer(3, "class", sel);
    buffer.update({ experience: exp, rng: new Rng(0), model: identity });
    const x = new Float32Array(6);
    buffer.buffer.fillBatch([0, 1, 2], x);
    assert.deepEqual([...x], kept.flatMap((i) => scaled[i]).map((v) => Math.fround(v)));
    assert.throws(
      () => new ParametricBuffer(3, "class", sel).update({ experience: exp, rng: new Rng(0) }),
      /reads the model's features/,
    );
  }
  // The random strategy still takes no model.
  const random = new ParametricBuffer(2, "class", new RandomExemplarsSelectionStrategy());
  random.update({ experience: exp, rng: new Rng(0) });
  assert.equal(random.buffer.length, 2);
  identity.dispose();
});

Deno.test("NCM predicts the nearest normalized class mean; classes without a mean are masked", () => {
  // Class 0: (10, 0) and (0, 1), normalized (1, 0), (0, 1): mean (0.5, 0.5) → (0.707, 0.707).
  // Class 2: (1, −1) → (0.707, −0.707). The raw mean (5, 0.5) would point almost along x.
  const f = { values: Float32Array.of(10, 0, 0, 1, 1, -1), n: 3, dim: 2 };
  const means = classMeansOf(f, [0, 0, 2]);
  const s = Math.SQRT1_2;
  close(means.get(0)![0], s, 1e-6, "mean 0 x");
  close(means.get(0)![1], s, 1e-6, "mean 0 y");
  close(means.get(2)![1], -s, 1e-6, "mean 2 y");
  const ncm = new NCMClassifier();
  ncm.fit(f, [0, 0, 2]);
  // (1, −0.2) normalized: (0.981, −0.196); distances 0.943 to class 0 and 0.579 to class 2.
  const q = [1, -0.2], n = Math.hypot(...q), u = q.map((v) => v / n);
  const d0 = Math.hypot(u[0] - s, u[1] - s), d2 = Math.hypot(u[0] - s, u[1] + s);
  const logits = tf.tidy(() => ncm.forward(tf.tensor2d([q]), 4).arraySync()[0]);
  assert.equal(logits.length, 4);
  close(logits[0], -d0, 1e-5, "class 0");
  close(logits[2], -d2, 1e-5, "class 2");
  assert.equal(logits[1], MASK_VALUE);
  assert.equal(logits[3], MASK_VALUE);
  assert.equal(logits.indexOf(Math.max(...logits)), 2);
  // Without normalization means and features stay raw: (5, 0.4) is nearest class 0's (5, 0.5).
  const raw = new NCMClassifier(false);
  raw.fit(f, [0, 0, 2]);
  const rawPred = tf.tidy(() => tf.argMax(raw.forward(tf.tensor2d([[5, 0.4]])), 1).dataSync()[0]);
  assert.equal(rawPred, 0);
  const cos = new NCMClassifier({ metric: "cosine" });
  cos.fit(f, [0, 0, 2]);
  const c = tf.tidy(() => cos.forward(tf.tensor2d([q])).arraySync()[0]);
  close(c[0], u[0] * s + u[1] * s, 1e-5, "cosine 0");
  close(c[2], u[0] * s - u[1] * s, 1e-5, "cosine 2");
  // Means from a model's features, and the state round trip.
  const copy = new NCMClassifier();
  copy.loadState(JSON.parse(JSON.stringify(ncm.state())));
  assert.deepEqual(copy.state(), ncm.state());
  ncm.updateClassMeansDict(new Map([[0, [0, 1]]]), 0.5);
  close(ncm.classMeans.get(0)![1], 0.5 * s + 0.5, 1e-6, "momentum");
  assert.throws(() => new NCMClassifier().forward(tf.zeros([1, 2])), /no class means/);
  const normed = l2NormalizeRows({ values: Float32Array.of(3, 4, 0, 0), n: 2, dim: 2 });
  assert.deepEqual([...normed.values], [0.6, 0.8, 0, 0].map(Math.fround));
});

Deno.test("iCaRL's loss: sigmoid BCE against one-hot labels, old units' targets from the old model", () => {
  const z = [[0, 2, -1], [1, -1, 0.5]];
  const labels = [2, 1];
  const old = [[Math.log(3), 0], [0, -Math.log(3)]]; // sigmoid: [0.75, 0.5], [0.5, 0.25]
  const sig = (x: number) => 1 / (1 + Math.exp(-x));
  const bce = (targets: number[][]) => {
    let sum = 0;
    z.forEach((row, i) =>
      row.forEach((x, j) => {
        const t = targets[i][j];
        sum -= t * Math.log(sig(x)) + (1 - t) * Math.log(1 - sig(x));
      })
    );
    return sum / 6;
  };
  const value = (oldLogits?: number[][], classes: number[] = []) =>
    tf.tidy(() =>
      icarlLoss(
        tf.tensor2d(z),
        tf.tensor1d(labels, "int32"),
        oldLogits && tf.tensor2d(oldLogits),
        classes,
      ).dataSync()[0]
    );
  close(value(), bce([[0, 0, 1], [0, 1, 0]]), 1e-5, "classification only");
  close(value(old, [0, 1]), bce([[0.75, 0.5, 1], [0.5, 0.25, 0]]), 1e-5, "old classes 0, 1");
  close(value(old, [0]), bce([[0.75, 0, 1], [0.5, 1, 0]]), 1e-5, "old class 0");
  const plain = tf.tidy(() =>
    binaryCrossEntropyWithLogits(tf.tensor2d([[50, -50]]), tf.tensor2d([[1, 0]])).dataSync()[0]
  );
  close(plain, 0, 1e-6, "saturated logits stay finite");
  assert.throws(() =>
    icarlLoss(tf.zeros([1, 2]), tf.tensor1d([0], "int32"), tf.zeros([1, 2]), [2])
  );
});

function toyICaRL(seed: number, memSize = 20) {
  return icarl({
    model: mlp({ input: 64, hidden: [16], outputs: 4, seed }),
    optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    batchSize: 8,
    epochs: 2,
    seed: 0,
    memSize,
  });
}

Deno.test("iCaRL: exemplars per class, NME evaluation, flat tensor counts", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 120, classes: 4, experiences: 2 });
  const s = toyICaRL(0);
  const plugin = s.plugins[0] as ICaRLPlugin;
  assert.ok(plugin instanceof ICaRLPlugin);
  await s.train(bench.train[0]);
  assert.deepEqual([...plugin.memory.groups].map(([k, g]) => [k, g.length]), [[0, 10], [1, 10]]);
  assert.deepEqual([...plugin.ncm.classMeans.keys()], [0, 1]);
  await s.eval(bench.test);
  const base = tf.memory().numTensors;
  for (let round = 0; round < 2; round++) {
    await s.train(bench.train[1]);
    await s.eval(bench.test);
    assert.equal(tf.memory().numTensors, base);
  }
  assert.deepEqual([...plugin.memory.groups.values()].map((g) => g.length), [5, 5, 5, 5]);
  assert.deepEqual(plugin.observedClasses, [0, 1, 2, 3]);
  // The evaluation's predictions are the nearest class means of the features.
  const data = bench.test[0].dataset;
  const f = extractFeatures(s.model, data);
  const logits = tf.tidy(() => plugin.ncm.forward(tf.tensor2d(f.values, [f.n, f.dim])));
  const pred = tf.tidy(() => tf.argMax(logits, 1).dataSync());
  logits.dispose();
  const acc = pred.filter((p, i) => p === data.targets[i]).length / data.length;
  const r = await s.eval(bench.test[0]);
  close(r.accuracy, acc, 1e-9, "NME accuracy");
  s.dispose();
  s.model.dispose();
  assert.equal(tf.memory().numTensors, start);
  // fixedMemory false: memSize per class.
  const perClass = icarl({
    model: mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 }),
    memSize: 3,
    fixedMemory: false,
    batchSize: 16,
  });
  for (const e of bench.train) await perClass.train(e);
  const p = perClass.plugins[0] as ICaRLPlugin;
  assert.deepEqual([...p.memory.groups.values()].map((g) => g.length), [3, 3, 3, 3]);
  perClass.dispose();
  perClass.model.dispose();
  assert.throws(() => icarl({ model: mlp(), memorySize: 10 } as never), /did you mean "memSize"/);
  assert.throws(() => new ICaRLPlugin(0), /memSize must be an integer ≥ 1/);
  assert.equal(icarlPlugin({ memSize: 7 }).memSize, 7);
});

Deno.test("iCaRL: a checkpointed run resumes to the numbers of an uninterrupted one", async () => {
  const bench = toyBenchmark({ n: 80, classes: 4, experiences: 2 });
  const saved = await checkResume({
    make: (seed) => toyICaRL(seed),
    train: bench.train,
    test: bench.test,
    evalEach: true,
  });
  const state = saved.plugins["0:ICaRLPlugin"] as { classMeans: unknown[] };
  assert.equal(state.classMeans.length, 2);
  // A plain strategy with the plugin and its criterion is iCaRL too.
  const plugin = new ICaRLPlugin(20);
  const s = naive({
    model: mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 }),
    criterion: plugin.criterion,
    plugins: [plugin],
    batchSize: 16,
  });
  await s.train(bench.train[0]);
  assert.equal(plugin.memory.buffer.length, 20);
  s.dispose();
  s.model.dispose();
});

Deno.test({
  name: "iCaRL (memSize 500) beats Naive on class-incremental Split MNIST" +
    (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const { base, ours } = await againstNaiveOnSplitMNIST({
      label: "iCaRL",
      method: (opts) => icarl({ ...opts, memSize: 500 }),
      trainPerExperience: 1000,
      hidden: [400],
      lr: 0.05,
      batchSize: 32,
      epochs: 3,
    });
    assert.ok(base.meanAccuracy < 0.3, `naive forgets: ${base.meanAccuracy}`);
    assert.ok(ours.meanAccuracy > base.meanAccuracy + 0.4, `iCaRL: ${ours.meanAccuracy}`);
  },
});
