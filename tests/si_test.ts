import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import {
  type BenchmarkInfo,
  makeExperience,
  permutedMNIST,
  subsample,
} from "../lib/benchmarks/mod.ts";
import { ArrayDataset } from "../lib/data/dataset.ts";
import { mlp, multiHeadMLP } from "../lib/models/mlp.ts";
import { Module } from "../lib/nn/module.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import {
  siPlugin,
  synapticIntelligence,
  SynapticIntelligencePlugin,
  synapticIntelligencePlugin,
} from "../lib/plugins/synaptic_intelligence.ts";
import { SHARED_DATA, toyBenchmark } from "./_helpers.ts";

function close(a: number, b: number, tol: number, what: string) {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

/** y = x·w with one scalar parameter. */
class OneParam extends Module {
  readonly w: tf.Variable;
  constructor(w0: number) {
    super();
    this.w = this.param("w", tf.tensor1d([w0]));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.mul(x, this.w);
  }
}

/** Quadratic loss ½ mean((y − 2)²) of the model's output. */
const quadratic = (out: tf.Tensor) =>
  tf.tidy(() => tf.mul(0.5, tf.mean(tf.square(tf.sub(out, 2)))) as tf.Scalar);

const INFO: BenchmarkInfo = {
  name: "Quadratic",
  scenario: "domain-incremental",
  numClasses: 1,
  inputShape: [1],
  numExperiences: 2,
};

/** An experience of 4 identical samples with input `x` (one full-batch SGD step per epoch). */
const quadExperience = (id: number, x: number) =>
  makeExperience(
    "train",
    id,
    new ArrayDataset({ x: new Float32Array(4).fill(x), y: [0, 0, 0, 0], inputShape: [1] }),
    INFO,
  );

/**
 * SGD (lr) on ½(x·w − 2)² + λ/2·Ω(w − w*)², by hand. Returns the trajectory and both path sums.
 */
function simulate(w0: number, x: number, steps: number, lr: number, lam = 0, omega = 0, star = 0) {
  let w = w0;
  let pathTotal = 0;
  let pathTask = 0;
  const ws = [w];
  const terms: number[] = [];
  for (let k = 0; k < steps; k++) {
    const gTask = x * (x * w - 2);
    const gTotal = gTask + lam * omega * (w - star);
    terms.push((lam / 2) * omega * (w - star) ** 2);
    const next = w - lr * gTotal;
    pathTotal += gTotal * (next - w);
    pathTask += gTask * (next - w);
    w = next;
    ws.push(w);
  }
  return { w, ws, pathTotal, pathTask, terms };
}

for (const pathGradient of ["total", "task"] as const) {
  Deno.test(`SI path integral and importance match a hand computation (SGD on a quadratic, ${pathGradient} gradient)`, async () => {
    const lr = 0.1, eps = 0.01, lam = 0.5, steps = 5;
    const model = new OneParam(0);
    const si = new SynapticIntelligencePlugin({ lambda: lam, eps, clipTo: Infinity, pathGradient });
    const omegas: number[] = [];
    const termLog: { w: number; term: number }[] = [];
    const probe: Plugin = {
      afterTrainingEpoch() {
        const m = si.pathIntegrals();
        omegas.push(m.get("w")!.dataSync()[0]);
        m.get("w")!.dispose();
      },
      afterBackward(ctx) {
        const t = ctx.lossTerms.get("si");
        if (t) termLog.push({ w: model.w.dataSync()[0], term: t.dataSync()[0] });
      },
    };
    const s = naive({
      model,
      criterion: quadratic,
      optimizer: sgd({ lr }),
      batchSize: 4,
      epochs: steps,
      shuffle: false,
      seed: 0,
      plugins: [si, probe],
    });

    // Experience 0: x = 1, from w = 0 towards 2; no penalty yet.
    await s.train(quadExperience(0, 1));
    const e0 = simulate(0, 1, steps, lr);
    assert.equal(termLog.length, 0);
    // ω = −Σ g·Δθ = lr Σ g², growing with every step of the path.
    e0.ws.slice(1).forEach((_, k) => {
      const byHand = -simulate(0, 1, k + 1, lr).pathTotal;
      close(omegas[k], byHand, 1e-5, `ω after step ${k + 1}`);
      if (k > 0) assert.ok(omegas[k] > omegas[k - 1], "ω grows along the path");
    });
    close(model.w.dataSync()[0], e0.w, 1e-6, "w after experience 0");
    const omega0 = -e0.pathTotal / (e0.w ** 2 + eps);
    close(si.importances.get("w")!.dataSync()[0], omega0, 1e-5, "Ω after experience 0");
    close(si.anchors.get("w")!.dataSync()[0], e0.w, 1e-6, "θ* after experience 0");

    // Experience 1: x = 2 (optimum w = 1), with the penalty λ/2 Ω (w − w*)².
    omegas.length = 0;
    await s.train(quadExperience(1, 2));
    const e1 = simulate(e0.w, 2, steps, lr, lam, omega0, e0.w);
    close(model.w.dataSync()[0], e1.w, 1e-5, "w after experience 1");
    assert.equal(termLog.length, steps);
    termLog.forEach((r, k) => {
      close(r.w, e1.ws[k], 1e-5, `w at step ${k}`);
      close(r.term, e1.terms[k], 1e-5, `"si" term at step ${k}`);
    });
    const path1 = pathGradient === "total" ? e1.pathTotal : e1.pathTask;
    close(omegas[steps - 1], -path1, 1e-4, "ω of experience 1");
    // Avalanche: cumulative += path / (Δ² + ε); Ω = −cumulative.
    const cumulative = -omega0 + path1 / ((e1.w - e0.w) ** 2 + eps);
    close(si.importances.get("w")!.dataSync()[0], -cumulative, 1e-4, "Ω after experience 1");
    assert.ok(-cumulative > omega0, "importance accumulates over experiences");
    s.dispose();
    si.dispose();
    model.dispose();
  });
}

Deno.test("SI clamps importances at clipTo (Avalanche's 0.001 by default)", async () => {
  const model = new OneParam(0);
  const si = siPlugin({ lambda: 1, eps: 0.01 });
  assert.equal(si.clipTo, 0.001);
  const s = naive({
    model,
    criterion: quadratic,
    optimizer: sgd({ lr: 0.1 }),
    batchSize: 4,
    epochs: 3,
    shuffle: false,
    plugins: [si],
  });
  await s.train(quadExperience(0, 1));
  const e0 = simulate(0, 1, 3, 0.1);
  const raw = -e0.pathTotal / (e0.w ** 2 + 0.01);
  assert.ok(raw > 0.001);
  close(si.importances.get("w")!.dataSync()[0], 0.001, 1e-6, "clamped Ω");
  s.dispose();
  si.dispose();
  model.dispose();
});

Deno.test("SI excludedParameters: names, globs with Avalanche's '.*' suffix, RegExps", () => {
  const model = multiHeadMLP({ input: 8, hidden: [4], outputs: 2, seed: 0 });
  model.adapt(quadExperienceFor8(0));
  model.adapt(quadExperienceFor8(1));
  const names = [...model.trainableParameters().keys()];
  assert.ok(names.includes("classifier.head1.weight"), names.join());
  const si = new SynapticIntelligencePlugin(1, 1e-7, ["classifier", /bias$/]);
  assert.deepEqual([...si.trackedParameters(model).keys()], ["features.0.weight"]);
  // The brief's order (lambda, excludedParameters, eps) is accepted too.
  const si2 = new SynapticIntelligencePlugin(1, ["classifier.head?.*"], 0.5);
  assert.equal(si2.eps, 0.5);
  assert.deepEqual([...si2.trackedParameters(model).keys()], [
    "features.0.weight",
    "features.0.bias",
  ]);
  assert.ok(!si2.isTracked("classifier.head1.bias") && si2.isTracked("classifierX.weight"));
  model.dispose();
});

function quadExperienceFor8(task: number) {
  const d = new ArrayDataset({
    x: new Float32Array(16),
    y: [0, 1],
    taskLabels: [task, task],
    inputShape: [8],
  });
  return makeExperience("train", task, d, { ...INFO, inputShape: [8] });
}

Deno.test("SI lambda per experience (the last repeats) and option validation", () => {
  const si = synapticIntelligencePlugin({ lambda: [0, 2, 5] });
  assert.deepEqual([0, 1, 2, 3, 9].map((k) => si.lambdaFor(k)), [0, 2, 5, 5, 5]);
  assert.throws(() => siPlugin({ lambda: -1 }), /SI lambda must be a finite number ≥ 0/);
  assert.throws(() => siPlugin({ lambda: [] }), /empty array/);
  assert.throws(() => siPlugin({ lambda: 1, eps: 0 }), /SI eps must be a finite number > 0, got 0/);
  assert.throws(
    () => siPlugin({ lambda: 1, pathGradient: "x" as never }),
    /pathGradient must be "total" or "task"/,
  );
  assert.throws(
    () => siPlugin({ lambda: 1, excludedParameters: [3 as never] }),
    /excludedParameters\[0\] must be a parameter name/,
  );
  const model = mlp({ input: 64, hidden: [], outputs: 2, seed: 0 });
  assert.throws(() => synapticIntelligence({ model } as never), /needs lambda/);
  const s = synapticIntelligence({ model, lambda: 3, eps: 0.1, batchSize: 5 });
  assert.equal(s.name, "SynapticIntelligence");
  assert.equal(s.batchSize, 5);
  assert.ok(s.plugins[0] instanceof SynapticIntelligencePlugin);
  s.dispose();
  model.dispose();
});

Deno.test("SI keeps the data of a grown head on its old slice; new units start at 0", async () => {
  const bench = toyBenchmark({ n: 40, classes: 4, experiences: 2 });
  const model = mlp({ input: 64, hidden: [], outputs: 2, head: "incremental", seed: 0 });
  const si = new SynapticIntelligencePlugin({ lambda: 1, eps: 0.1 });
  const name = "classifier.classifier.weight";
  let seen: number[][] | undefined;
  const probe: Plugin = {
    beforeTrainingIteration() {
      seen ??= si.importances.get(name)!.arraySync() as number[][];
    },
  };
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [si] });
  await s.train(bench.train[0]);
  const old = si.importances.get(name)!.arraySync() as number[][];
  assert.equal(old[0].length, 2);
  s.plugins.push(probe);
  await s.train(bench.train[1]); // the head grows to 4 units
  assert.deepEqual(seen!.map((r) => r.slice(0, 2)), old);
  assert.ok(seen!.every((r) => r[2] === 0 && r[3] === 0));
  assert.equal((si.importances.get(name)!.arraySync() as number[][])[0].length, 4);
  s.dispose();
  si.dispose();
  model.dispose();
});

Deno.test("SI checkpoint: a run resumed after experience 0 matches an uninterrupted one", async () => {
  const bench = toyBenchmark({ n: 60, experiences: 2 });
  const make = (modelSeed: number) =>
    synapticIntelligence({
      model: mlp({ input: 64, hidden: [16], outputs: 4, seed: modelSeed }),
      lambda: 100,
      eps: 0.1,
      batchSize: 8,
      epochs: 2,
      seed: 11,
      optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    });
  const full = make(1);
  await full.train(bench.train[0]);
  await full.eval(bench.test);
  await full.train(bench.train[1]);
  const fullEval = await full.eval(bench.test);

  const first = make(1);
  await first.train(bench.train[0]);
  await first.eval(bench.test);
  const saved = JSON.parse(JSON.stringify(first.checkpoint()));
  first.dispose();
  (first.plugins[0] as SynapticIntelligencePlugin).dispose();
  first.model.dispose();

  const resumed = make(99);
  await resumed.restore(saved);
  assert.equal((resumed.plugins[0] as SynapticIntelligencePlugin).experiences, 1);
  await resumed.train(bench.train[1]);
  const resumedEval = await resumed.eval(bench.test);
  assert.deepEqual(resumedEval.experiences, fullEval.experiences);
  assert.deepEqual(resumed.model.stateDict(), full.model.stateDict());
  const [a, b] = [full, resumed].map((s) => s.plugins[0] as SynapticIntelligencePlugin);
  for (const [n, t] of a.importances) {
    assert.deepEqual(Array.from(b.importances.get(n)!.dataSync()), Array.from(t.dataSync()));
  }
  for (const s of [full, resumed]) {
    s.dispose();
    (s.plugins[0] as SynapticIntelligencePlugin).dispose();
    s.model.dispose();
  }
  assert.throws(() => a.loadState({ version: 3 }), /Not a SynapticIntelligencePlugin state/);
});

Deno.test("SI holds no growing number of tensors and frees everything on dispose", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 });
  const si = new SynapticIntelligencePlugin({ lambda: 10, eps: 0.1, pathGradient: "task" });
  const s = naive({ model, batchSize: 8, seed: 0, plugins: [si] });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  const base = tf.memory().numTensors;
  for (let k = 0; k < 3; k++) {
    for (const exp of bench.train) await s.train(exp);
    await s.eval(bench.test);
    assert.equal(tf.memory().numTensors, base, `after round ${k}`);
  }
  assert.equal(si.experiences, 7);
  s.dispose();
  model.dispose();
  si.dispose();
  assert.equal(tf.memory().numTensors, start);
});

Deno.test({
  name: SHARED_DATA
    ? "SI beats Naive on Permuted MNIST (domain-incremental, 3 experiences of 1000 samples)"
    : "SI beats Naive on Permuted MNIST (skipped: no shared MNIST data)",
  ignore: !SHARED_DATA,
  fn: async () => {
    const bench = subsample(await permutedMNIST({ experiences: 3, dataDir: SHARED_DATA }), {
      trainPerExperience: 1000,
      testPerExperience: 1000,
    });
    const run = async (lambda: number | undefined) => {
      const model = mlp({ hidden: [256], seed: 0 });
      const opts = {
        model,
        epochs: 2,
        batchSize: 32,
        seed: 0,
        optimizer: sgd({ lr: 0.01, momentum: 0.9 }),
      };
      const s = lambda === undefined
        ? naive(opts)
        : synapticIntelligence({ ...opts, lambda, eps: 0.1 });
      for (const exp of bench.train) await s.train(exp);
      const r = await s.eval(bench.test);
      s.dispose();
      (s.plugins[0] as SynapticIntelligencePlugin | undefined)?.dispose();
      model.dispose();
      return r.meanAccuracy;
    };
    const naiveAcc = await run(undefined);
    const siAcc = await run(1000);
    console.log(`Permuted MNIST final average accuracy: naive ${naiveAcc}, SI ${siAcc}`);
    assert.ok(siAcc > naiveAcc + 0.05, `SI ${siAcc} vs naive ${naiveAcc}`);
  },
});
