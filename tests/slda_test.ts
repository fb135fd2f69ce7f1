import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";

import { ArrayDataset } from "../lib/data/dataset.ts";
import { makeExperience } from "../lib/data/experience.ts";
import { MASK_VALUE } from "../lib/models/heads.ts";
import { mlp } from "../lib/models/mlp.ts";
import { SLDAClassifier } from "../lib/models/slda.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { StreamingLDA, streamingLDA } from "../lib/plugins/slda.ts";
import { evaluation } from "../lib/plugins/evaluation.ts";
import { accuracy } from "../lib/metrics/accuracy.ts";
import { loss } from "../lib/metrics/loss.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { againstNaiveOnSplitMNIST, checkResume, SHARED_DATA, toyBenchmark } from "./_helpers.ts";

function close(a: number, b: number, tol: number, what: string) {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

function closeAll(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) {
  assert.equal(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < b.length; i++) close(a[i], b[i], tol, `${what}[${i}]`);
}

const INFO = {
  name: "tiny",
  scenario: "class-incremental" as const,
  numClasses: 2,
  inputShape: [2],
  numExperiences: 1,
};

Deno.test("SLDA's streaming update: one class gives the batch mean and population covariance", () => {
  const xs = [[1, 2], [3, 0], [2, 4], [6, 2]];
  const lda = new SLDAClassifier({ inputSize: 2, numClasses: 1 });
  closeAll(lda.sigma, [1, 1, 1, 1], 0, "initial Σ (Avalanche: ones)");
  for (const x of xs) lda.fit(x, 0);
  const mean = [3, 2]; // (1+3+2+6)/4, (2+0+4+2)/4
  closeAll(lda.muK, mean, 1e-12, "mean");
  // Population covariance: Σ (x − x̄)(x − x̄)ᵀ / n.
  const r = xs.map((x) => [x[0] - mean[0], x[1] - mean[1]]);
  const cov = [0, 1, 2, 3].map((k) =>
    r.reduce((a, v) => a + v[Math.floor(k / 2)] * v[k % 2], 0) / xs.length
  );
  closeAll(lda.sigma, cov, 1e-12, "covariance");
  assert.deepEqual([...lda.cK], [4]);
  assert.equal(lda.numUpdates, 4);
});

Deno.test("SLDA's streaming update with two classes follows Avalanche's recurrence", () => {
  // (x, y) = ([1, 2], 0), ([3, 0], 1), ([2, 4], 0), by hand:
  // 1st: n = 0, Σ = 0; μ0 = (1, 2).
  // 2nd: r = (3, 0) − μ1 (still 0) = (3, 0); Σ = (1·0 + rrᵀ·1/2) / 2 = [[2.25, 0], [0, 0]]; μ1 = (3, 0).
  // 3rd: r = (2, 4) − (1, 2) = (1, 2); Σ = (2Σ + rrᵀ·2/3) / 3 = [[31/18, 4/9], [4/9, 8/9]];
  //      μ0 = (1.5, 3).
  const lda = new SLDAClassifier({ inputSize: 2, numClasses: 2 });
  lda.fit([1, 2], 0);
  closeAll(lda.sigma, [0, 0, 0, 0], 0, "Σ after one sample");
  lda.fit([3, 0], 1);
  closeAll(lda.sigma, [2.25, 0, 0, 0], 1e-12, "Σ after two");
  lda.fit([2, 4], 0);
  closeAll(lda.sigma, [31 / 18, 4 / 9, 4 / 9, 8 / 9], 1e-12, "Σ after three");
  closeAll(lda.muK, [1.5, 3, 3, 0], 1e-12, "means");
  assert.deepEqual([...lda.cK], [2, 1]);
  // Without streamingUpdateSigma only the means move.
  const fixed = new SLDAClassifier({ inputSize: 2, numClasses: 2, streamingUpdateSigma: false });
  for (const [x, y] of [[[1, 2], 0], [[3, 0], 1], [[2, 4], 0]] as const) fixed.fit(x, y);
  closeAll(fixed.sigma, [1, 1, 1, 1], 0, "fixed Σ");
  closeAll(fixed.muK, [1.5, 3, 3, 0], 1e-12, "fixed means");
});

Deno.test("SLDA predicts as a hand-computed LDA with shrinkage; unseen classes are masked", () => {
  const s = 0.5;
  const lda = new SLDAClassifier({ inputSize: 2, numClasses: 3, shrinkageParam: s });
  lda.fit([1, 2], 0);
  lda.fit([3, 0], 1);
  lda.fit([2, 4], 0);
  // A = (1 − s)Σ + sI, Λ = A⁻¹ (2×2 inverse by hand), W = Λ μ_k, c_k = ½ μ_kᵀ Λ μ_k.
  const sig = [31 / 18, 4 / 9, 4 / 9, 8 / 9];
  const a = [(1 - s) * sig[0] + s, (1 - s) * sig[1], (1 - s) * sig[2], (1 - s) * sig[3] + s];
  const det = a[0] * a[3] - a[1] * a[2];
  const inv = [a[3] / det, -a[1] / det, -a[2] / det, a[0] / det];
  const means = [[1.5, 3], [3, 0]];
  const x = [[2, 2], [0, 1]];
  const expected = x.flatMap((v) =>
    means.map((m) => {
      const w = [inv[0] * m[0] + inv[1] * m[1], inv[2] * m[0] + inv[3] * m[1]];
      return v[0] * w[0] + v[1] * w[1] - 0.5 * (m[0] * w[0] + m[1] * w[1]);
    }).concat([MASK_VALUE])
  );
  const before = tf.memory().numTensors;
  const scores = lda.forward(tf.tensor2d(x));
  closeAll(scores.dataSync(), expected, 1e-5, "scores");
  tf.dispose(scores);
  assert.equal(tf.memory().numTensors, before + 1, "only the input tensor is left");
});

Deno.test("SLDA fitBase: class means and scikit-learn's OAS covariance, by hand", () => {
  // Class 0: (3, 0), (−1, 0) five times each (mean (1, 0)); class 1: (0, 4), (0, 2) five times
  // (mean (0, 3)). Residuals: (±2, 0) and (0, ±1): S = [[2, 0], [0, 0.5]] (n = 20), μ = 1.25,
  // α = mean(S²) = 1.0625, shrinkage = (α + μ²) / ((n + 1)(α − μ²/2)) = 2.625 / 5.90625 = 4/9:
  // Σ = (5/9) S + (4/9) μ I = [[5/3, 0], [0, 5/6]].
  const rows: number[][] = [], labels: number[] = [];
  for (let i = 0; i < 5; i++) {
    rows.push([3, 0], [-1, 0], [0, 4], [0, 2]);
    labels.push(0, 0, 1, 1);
  }
  const lda = new SLDAClassifier({ inputSize: 2, numClasses: 3 });
  lda.fitBase({ values: Float32Array.from(rows.flat()), n: 20, dim: 2 }, labels);
  closeAll(lda.muK, [1, 0, 0, 3, 0, 0], 1e-12, "means");
  assert.deepEqual([...lda.cK], [10, 10, 0]);
  assert.equal(lda.numUpdates, 20);
  closeAll(lda.sigma, [5 / 3, 0, 0, 5 / 6], 1e-12, "OAS covariance");
  // Through the strategy: the same on raw inputs.
  const s = streamingLDA({ inputSize: 2, numClasses: 3, seed: 0 });
  const x = tf.tensor2d(rows);
  s.fitBase(x, labels);
  x.dispose();
  closeAll(s.model.sigma, [5 / 3, 0, 0, 5 / 6], 1e-12, "strategy's fitBase");
  s.dispose();
});

Deno.test("StreamingLDA trains without SGD: fitted statistics, hooks, flat tensor counts", async () => {
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const calls: string[] = [];
  const spy: Plugin = {
    name: "spy",
    beforeForward: () => void calls.push("beforeForward"),
    afterForward: (ctx) => void calls.push(`afterForward ${ctx.output!.shape}`),
    beforeUpdate: () => void calls.push("beforeUpdate"),
    afterUpdate: () => void calls.push("afterUpdate"),
  };
  const start = tf.memory().numTensors;
  const s = new StreamingLDA(null, null, 64, 4, null, 1e-4, true, 1, 20, 256, "cpu", [spy]);
  assert.equal(s.batchSize, 20);
  await s.train(bench.train[0]);
  assert.deepEqual(calls.slice(0, 4), [
    "beforeForward",
    "afterForward 20,4",
    "beforeUpdate",
    "afterUpdate",
  ]);
  // The statistics are those of fitting the samples in the order they were seen.
  const n0 = bench.train[0].dataset.length;
  assert.equal(s.model.numUpdates, n0);
  const d0 = bench.train[0].dataset;
  const all = new Float32Array(n0 * 64);
  d0.fillBatch(Array.from({ length: n0 }, (_, i) => i), all);
  const byClass = [0, 1].map((c) => {
    const idx = [...d0.targets.keys()].filter((i) => d0.targets[i] === c);
    return Array.from(
      { length: 64 },
      (_, k) => idx.reduce((a, i) => a + all[i * 64 + k], 0) / idx.length,
    );
  });
  closeAll(s.model.muK.subarray(0, 128), byClass.flat(), 1e-6, "class means of experience 0");
  const r0 = await s.eval(bench.test);
  const base = tf.memory().numTensors;
  await s.train(bench.train[1]);
  const r1 = await s.eval(bench.test);
  assert.equal(tf.memory().numTensors, base, "tensor count flat over experiences");
  assert.ok(r0.experiences[0].accuracy > 0.9, `experience 0 after training it: ${r0.accuracy}`);
  assert.ok(r1.accuracy > 0.9, `all classes after both: ${r1.accuracy}`);
  assert.equal(s.rows.filter((r) => r.phase === "train" && r.metric === "accuracy").length, 2);
  s.dispose();
  s.model.dispose();
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("StreamingLDA's checkpoint (means, counts, covariance, extractor) restores the same run", async () => {
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const saved = await checkResume({
    make: (seed) =>
      streamingLDA({
        model: mlp({ input: 64, hidden: [8], outputs: 4, seed }),
        outputLayerName: "embed",
        inputSize: 8,
        numClasses: 4,
        batchSize: 16,
        seed: 0,
      }),
    train: bench.train,
    test: bench.test,
    evalEach: true,
    check: (full, resumed) => {
      const a = (full as StreamingLDA).model, b = (resumed as StreamingLDA).model;
      assert.deepEqual(b.ldaState(), a.ldaState());
    },
  });
  const extra = saved.extra as { slda: { numUpdates: number; sigma: number[] } };
  assert.equal(extra.slda.numUpdates, bench.train[0].dataset.length);
  assert.equal(extra.slda.sigma.length, 64);
  // A state of another size is refused, naming both.
  const other = streamingLDA({
    model: mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 }),
    outputLayerName: "embed",
    inputSize: 8,
    numClasses: 5,
  });
  await assert.rejects(() => other.restore(saved), /numClasses 4; this one 8 and 5/);
  other.dispose();
  other.model.dispose();
});

Deno.test("StreamingLDA refuses bad options, naming the value and the fix", () => {
  assert.throws(
    () => streamingLDA({ inputSize: 0, numClasses: 2 }),
    /inputSize must be an integer ≥ 1/,
  );
  assert.throws(() => streamingLDA({ inputSize: 2, numClasses: 0 }), /numClasses must be/);
  assert.throws(
    () => streamingLDA({ inputSize: 2, numClasses: 2, shrinkageParam: 2 }),
    /shrinkageParam must be a number in \[0, 1\].*got 2/,
  );
  assert.throws(
    // @ts-expect-error: a misspelt option
    () => streamingLDA({ inputSize: 2, numClasses: 2, shrinkage: 0.1 }),
    /unknown option "shrinkage" \(did you mean "shrinkageParam"\?\)/,
  );
  assert.throws(
    // @ts-expect-error: SLDA has no optimizer
    () => streamingLDA({ inputSize: 2, numClasses: 2, optimizer: sgd({ lr: 0.1 }) }),
    /unknown option "optimizer"/,
  );
  assert.throws(
    // @ts-expect-error: not a layer name we know
    () => streamingLDA({ inputSize: 2, numClasses: 2, outputLayerName: "fc" }),
    /outputLayerName must be one of "embed" or null, got the string "fc"/,
  );
  assert.throws(
    () => streamingLDA({ inputSize: 2, numClasses: 2, outputLayerName: "embed" }),
    /"embed" needs a model with embed/,
  );
  const backward: Plugin = { name: "gem-like", afterBackward: () => {} };
  assert.throws(
    () => streamingLDA({ inputSize: 2, numClasses: 2, plugins: [backward] }),
    /no backward pass: plugin gem-like has afterBackward/,
  );
  const lda = new SLDAClassifier({ inputSize: 2, numClasses: 2 });
  assert.throws(() => lda.fit([1, 2], 2), /label 2 is outside the 2 classes/);
  assert.throws(() => lda.fit([1, 2, 3], 0), /3 features, not 2/);
  const singular = new SLDAClassifier({ inputSize: 2, numClasses: 2, shrinkageParam: 0 });
  singular.fit([1, 2], 0);
  singular.fit([3, 0], 1);
  assert.throws(() => singular.forward(tf.zeros([1, 2])), /singular .*shrinkageParam > 0/);
});

Deno.test("StreamingLDA's training data must match inputSize and numClasses", async () => {
  const data = new ArrayDataset({ x: new Float32Array([0, 0, 2, 0]), y: [0, 1], inputShape: [2] });
  const exp = makeExperience("train", 0, data, INFO);
  const wide = streamingLDA({ inputSize: 3, numClasses: 2 });
  await assert.rejects(() => wide.train(exp), /features have 2 values, but inputSize is 3/);
  wide.dispose();
  const few = streamingLDA({ inputSize: 2, numClasses: 1 });
  await assert.rejects(() => few.train(exp), /label 1 is outside the 1 classes/);
  few.dispose();
});

Deno.test({
  name: "StreamingLDA on raw pixels beats Naive on class-incremental Split MNIST" +
    (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const { base, ours } = await againstNaiveOnSplitMNIST({
      label: "SLDA on pixels",
      // Not SGD: the strategy options of the comparison (model, optimizer) are Naive's alone.
      // Training minibatches of 500: the precision matrix of the training outputs is computed
      // once per minibatch; the fit is one sample at a time whatever the size.
      method: () => streamingLDA({ inputSize: 784, numClasses: 10, batchSize: 500, seed: 0 }),
      trainPerExperience: 1000,
      hidden: [200],
      lr: 0.01,
      batchSize: 32,
      epochs: 2,
    });
    assert.ok(base.meanAccuracy < 0.3, `naive forgets: ${base.meanAccuracy}`);
    assert.ok(ours.meanAccuracy > 0.8, `SLDA: ${ours.meanAccuracy}`);
  },
});

Deno.test("StreamingLDA works with an evaluator; the 0.6 positional form is the options form", async () => {
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const evaluator = evaluation({ metrics: [accuracy({ at: ["epoch", "stream"] }), loss()] });
  const positional = new StreamingLDA(
    null,
    null,
    64,
    4,
    null,
    0.01,
    true,
    1,
    16,
    64,
    null,
    null,
    evaluator,
  );
  const options = streamingLDA({
    inputSize: 64,
    numClasses: 4,
    shrinkageParam: 0.01,
    batchSize: 16,
    evalBatchSize: 64,
  });
  options.rng.setState(positional.rng.state()); // the same shuffles (0.6's form takes no seed)
  for (const s of [positional, options]) {
    for (const e of bench.train) await s.train(e);
  }
  const r = await positional.eval(bench.test);
  assert.deepEqual(positional.model.ldaState(), options.model.ldaState());
  assert.deepEqual((await options.eval(bench.test)).experiences, r.experiences);
  const last = evaluator.getLastMetrics();
  close(
    last["Top1_Acc_Stream/eval_phase/test_stream/Task000"],
    r.accuracy,
    1e-9,
    "evaluator's accuracy",
  );
  assert.ok(
    Number.isFinite(last["Loss_Stream/eval_phase/test_stream/Task000"]),
    "evaluator's loss",
  );
  const trainAcc = Object.keys(last).find((k) => k.startsWith("Top1_Acc_Epoch/train_phase"));
  assert.ok(trainAcc && last[trainAcc] > 0.5, `training accuracy of the LDA outputs: ${trainAcc}`);
  for (const s of [positional, options]) s.dispose();
});
