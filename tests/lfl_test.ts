import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { ArrayDataset } from "../lib/data/dataset.ts";
import { makeExperience } from "../lib/data/experience.ts";
import { type Classifier, mlp } from "../lib/models/mlp.ts";
import type { TensorBatch } from "../lib/strategy/context.ts";
import type { Module } from "../lib/nn/module.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { lfl, LFLPlugin, lflPlugin } from "../lib/plugins/lfl.ts";
import { againstNaiveOnPermutedMNIST, checkResume, SHARED_DATA, toyBenchmark } from "./_helpers.ts";

const values = (t: tf.Tensor) => Array.from(t.dataSync());

function close(a: number, b: number, tol: number, what: string) {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

function setParams(model: Module, vals: Record<string, number[]>) {
  const params = model.namedParameters();
  for (const [n, v] of Object.entries(vals)) {
    const p = params.get(n)!;
    p.assign(tf.tensor(v, p.shape));
  }
}

/** relu(xW + b) of one sample, W [in, out] row-major. */
function hidden(x: number[], W: number[], b: number[]): { pre: number[]; h: number[] } {
  const out = b.length;
  const pre = b.map((bk, k) => x.reduce((s, xj, j) => s + xj * W[j * out + k], bk));
  return { pre, h: pre.map((v) => Math.max(0, v)) };
}

Deno.test("LFL's penalty is λ · mean((f − f_prev)²) of the features, with its gradient", async () => {
  // 2 inputs → 3 hidden (relu) → 2 outputs: the features are the 3 hidden units.
  const model = mlp({ input: 2, hidden: [3], outputs: 2, seed: 0 });
  const W0 = [0.5, -1, 0.25, 1, 0.5, -0.5], b0 = [0.1, 0.2, -0.1];
  const W1 = [1, -1, 0.5, 0.25, -2, 1], b1 = [0.05, 0];
  const params = {
    "features.0.weight": W0,
    "features.0.bias": b0,
    "classifier.weight": W1,
    "classifier.bias": b1,
  };
  setParams(model, params);
  const xs = [[1, 2], [-1, 0.5], [0.3, -0.2]];
  const ys = [0, 1, 1];
  const exp0 = toyLinear(xs, ys);
  const plugin = new LFLPlugin(0.5);
  const s = naive({
    model,
    batchSize: 3,
    optimizer: sgd({ lr: 1e-30 }), // too small to move a float32 parameter: the model stays put
    seed: 0,
    plugins: [plugin],
  });
  await s.train(exp0); // keeps the copy at these parameters
  assert.equal(plugin.experiences, 1);
  // Move the first layer: the copy keeps the old one.
  const W0b = [0.25, -0.5, 1, 0.5, 0.5, 1.5], b0b = [0, 0.3, 0.2];
  setParams(model, { "features.0.weight": W0b, "features.0.bias": b0b });
  const batch = {
    x: tf.tensor2d(xs),
    t: tf.tensor1d([0, 0, 0], "int32"),
    data: { t: new Int32Array(3) },
  } as unknown as TensorBatch;
  let hand = 0;
  const gW = new Array(6).fill(0), gb = new Array(3).fill(0);
  for (const x of xs) {
    const cur = hidden(x, W0b, b0b), prev = hidden(x, W0, b0);
    cur.h.forEach((h, k) => {
      const d = h - prev.h[k];
      hand += d * d / 9; // mean over 3 samples × 3 features
      const dpre = cur.pre[k] > 0 ? 2 * d / 9 : 0;
      gb[k] += dpre;
      x.forEach((xj, j) => gW[j * 3 + k] += xj * dpre);
    });
  }
  const w = model.namedParameters().get("features.0.weight")!;
  const bias = model.namedParameters().get("features.0.bias")!;
  const { value, grads } = tf.variableGrads(() => plugin.distance(model, batch)!, [w, bias]);
  close(value.dataSync()[0], hand, 1e-5, "distance");
  values(grads[w.name]).forEach((v, i) => close(v, gW[i], 1e-5, `∂/∂W[${i}]`));
  values(grads[bias.name]).forEach((v, i) => close(v, gb[i], 1e-5, `∂/∂b[${i}]`));
  tf.dispose([value, ...Object.values(grads), batch.x, batch.t]);

  // Through the strategy: the term "lfl" is λ · distance, and the head no longer moves.
  const head = (model as Classifier).classifier;
  const headBefore = [...head.namedParameters().values()].map(values);
  const terms: number[] = [];
  const seen: Plugin = {
    name: "seen",
    afterBackward(ctx) {
      terms.push(ctx.lossTerms.get("lfl")!.dataSync()[0]);
      assert.ok(![...ctx.grads!.keys()].some((n) => n.startsWith("classifier.")), "head frozen");
    },
  };
  const s2 = naive({
    model,
    batchSize: 3,
    optimizer: sgd({ lr: 0.1 }),
    shuffle: false,
    seed: 0,
    plugins: [plugin, seen],
  });
  await s2.train(exp0);
  close(terms[0], 0.5 * hand, 1e-5, "loss term");
  assert.deepEqual([...head.namedParameters().values()].map(values), headBefore);
  assert.notDeepEqual(values(model.namedParameters().get("features.0.weight")!), W0b);
  s.dispose();
  s2.dispose();
  plugin.dispose();
  model.dispose();
});

/** One experience with the given 2-input samples. */
function toyLinear(xs: number[][], ys: number[]) {
  const dataset = new ArrayDataset({ x: Float32Array.from(xs.flat()), y: ys, inputShape: [2] });
  return makeExperience("train", 0, dataset, {
    name: "toy",
    scenario: "domain-incremental",
    numClasses: 2,
    inputShape: [2],
    numExperiences: 1,
  });
}

Deno.test("LFL takes one lambdaE per experience, and the first experience has no term", async () => {
  const bench = toyBenchmark({ n: 60, experiences: 3, classes: 3 });
  const model = mlp({ input: 64, hidden: [8], outputs: 3, seed: 2 });
  const plugin = lflPlugin({ lambdaE: [0, 2, 0] });
  const seen: { exp: number; term: boolean }[] = [];
  const s = naive({
    model,
    batchSize: 10,
    seed: 0,
    plugins: [plugin, {
      name: "seen",
      afterBackward: (ctx) =>
        void seen.push({ exp: ctx.clock.trainExperiences, term: ctx.lossTerms.has("lfl") }),
    }],
  });
  for (const exp of bench.train) await s.train(exp);
  for (const k of [0, 1, 2]) {
    const rows = seen.filter((r) => r.exp === k);
    assert.ok(rows.length > 0 && rows.every((r) => r.term === (k === 1)), `experience ${k}`);
  }
  await assert.rejects(() => s.train(bench.train[0]), /lambdaE has 3 values but experience 3/);
  s.dispose();
  plugin.dispose();
  model.dispose();
});

Deno.test("LFL options are checked with messages that name the fix", () => {
  assert.throws(() => new LFLPlugin(-1), /LFL lambdaE must be a finite number ≥ 0 or a list/);
  assert.throws(() => new LFLPlugin([]), /LFL lambdaE is an empty list/);
  assert.throws(() => new LFLPlugin([1, NaN]), /LFL lambdaE\[1\] must be a finite number/);
  assert.throws(
    () => lflPlugin({ lambda_e: 1 } as never),
    /lflPlugin: unknown option "lambda_e" \(did you mean "lambdaE"\?\)/,
  );
  assert.throws(() => new LFLPlugin({} as never), /LFLPlugin needs lambdaE/);
  const model = mlp({ input: 64, hidden: [], outputs: 2, seed: 0 });
  assert.throws(() => lfl({ model } as never), /lfl needs lambdaE/);
  assert.throws(
    () => lfl({ model, lambdaE: 1, epoch: 2 } as never),
    /lfl: unknown option "epoch" \(did you mean "epochs"\?\)/,
  );
  const s = lfl({ model, lambdaE: 1e-4, batchSize: 4 });
  assert.equal(s.name, "LFL");
  assert.equal((s.plugins[0] as LFLPlugin).lambdaE, 1e-4);
  s.dispose();
  model.dispose();
});

Deno.test("LFL checkpoint: a run resumed after experience 0 matches an uninterrupted one", async () => {
  const bench = toyBenchmark({ n: 60, experiences: 2 });
  await checkResume({
    make: (modelSeed) =>
      lfl({
        model: mlp({ input: 64, hidden: [16], outputs: 4, seed: modelSeed }),
        lambdaE: 5,
        batchSize: 8,
        epochs: 2,
        seed: 11,
        optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
      }),
    train: bench.train,
    test: bench.test,
    evalEach: true,
    afterRestore: (resumed) => assert.equal((resumed.plugins[0] as LFLPlugin).experiences, 1),
  });
});

Deno.test("LFL holds no growing number of tensors and frees everything on dispose", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 });
  const plugin = new LFLPlugin(1);
  const s = naive({ model, batchSize: 8, seed: 0, plugins: [plugin] });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  await s.train(bench.train[1]);
  await s.eval(bench.test);
  const base = tf.memory().numTensors;
  for (let k = 0; k < 3; k++) {
    for (const exp of bench.train) await s.train(exp);
    await s.eval(bench.test);
    assert.equal(tf.memory().numTensors, base, `after round ${k}`);
  }
  s.dispose();
  model.dispose();
  plugin.dispose();
  assert.equal(tf.memory().numTensors, start);
});

Deno.test({
  name: SHARED_DATA
    ? "LFL beats Naive on Permuted MNIST (domain-incremental, 3 experiences of 1000 samples)"
    : "LFL beats Naive on Permuted MNIST (skipped: no shared MNIST data)",
  ignore: !SHARED_DATA,
  fn: async () => {
    const { base, ours } = await againstNaiveOnPermutedMNIST(
      "LFL",
      (opts) => lfl({ ...opts, lambdaE: 1 }),
    );
    assert.ok(ours.meanAccuracy > base.meanAccuracy + 0.05, "LFL forgets less than Naive");
  },
});
