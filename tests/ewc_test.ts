import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import type { IncrementalClassifier } from "../lib/models/heads.ts";
import { mlp } from "../lib/models/mlp.ts";
import type { Module } from "../lib/nn/module.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { ewc, EWCPlugin, ewcPlugin, fitToShape } from "../lib/plugins/ewc.ts";
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

/** λ Σ_e Σ F_e (θ − θ_e)² in float64. */
function directPenalty(
  lambda: number,
  theta: Record<string, number[]>,
  saved: { F: Record<string, number[]>; p: Record<string, number[]> }[],
): number {
  let s = 0;
  for (const e of saved) {
    for (const n of Object.keys(e.F)) {
      e.F[n].forEach((f, i) => s += f * (theta[n][i] - e.p[n][i]) ** 2);
    }
  }
  return lambda * s;
}

const tensors = (r: Record<string, number[]>, model: Module) =>
  new Map(
    Object.entries(r).map(([n, v]) => [n, tf.tensor(v, model.namedParameters().get(n)!.shape)]),
  );

Deno.test("EWC separate penalty equals λ Σ_e Σ F_e (θ − θ_e)² computed by hand", async () => {
  const model = mlp({ input: 2, hidden: [], outputs: 2, seed: 0 }); // weight [2,2], bias [2]
  const plugin = new EWCPlugin(3);
  const saved = [
    {
      F: { "classifier.weight": [1, 2, 0, 0.5], "classifier.bias": [0.25, 4] },
      p: { "classifier.weight": [0.1, -0.2, 0.3, 0.4], "classifier.bias": [1, -1] },
    },
    {
      F: { "classifier.weight": [0, 1, 3, 0.5], "classifier.bias": [2, 0] },
      p: { "classifier.weight": [0.5, 0.2, -0.3, 0.0], "classifier.bias": [0, 2] },
    },
  ];
  assert.equal(plugin.penalty(model), undefined, "no penalty before any experience");
  for (const e of saved) {
    const F = tensors(e.F, model);
    const p = tensors(e.p, model);
    plugin.consolidate(F, p);
    [...F.values(), ...p.values()].forEach((t) => t.dispose());
  }
  assert.equal(plugin.experiences, 2);
  const theta = { "classifier.weight": [1, 0, -1, 2], "classifier.bias": [0.5, 0.5] };
  setParams(model, theta);
  const pen = plugin.penalty(model)!;
  // 3 · [(1·0.81 + 2·0.04 + 0 + 0.5·2.56 + 0.25·0.25 + 4·2.25) + (0 + 1·0.04 + 3·0.49 + 0.5·4 + 2·0.25 + 0)]
  const byHand = 3 * ((0.81 + 0.08 + 1.28 + 0.0625 + 9) + (0.04 + 1.47 + 2 + 0.5));
  close(pen.dataSync()[0], byHand, 1e-5, "penalty");
  close(directPenalty(3, theta, saved), byHand, 1e-12, "hand sum");
  pen.dispose();
  // The importances in force are Σ_e F_e.
  assert.deepEqual(values(plugin.importances.get("classifier.bias")!), [2.25, 4]);

  // Through a strategy: the loss term "ewc" is the penalty at the parameters of the iteration.
  const bench = toyBenchmark({ n: 40, classes: 2, experiences: 1 });
  const small = mlp({ input: 64, hidden: [], outputs: 2, seed: 1 });
  const p2 = new EWCPlugin({ lambda: 5 });
  const F = new Map([...small.namedParameters()].map(([n, v]) => [n, tf.onesLike(v)]));
  const P = new Map([...small.namedParameters()].map(([n, v]) => [n, tf.zerosLike(v)]));
  p2.consolidate(F, P);
  const seen: { term: number; hand: number }[] = [];
  const probe: Plugin = {
    afterBackward(ctx) {
      let s = 0;
      for (const v of ctx.model.namedParameters().values()) {
        s += values(v).reduce((a, x) => a + x * x, 0);
      }
      seen.push({ term: ctx.lossTerms.get("ewc")!.dataSync()[0], hand: 5 * s });
    },
  };
  const s = naive({ model: small, batchSize: 10, seed: 0, plugins: [p2, probe] });
  await s.train(bench.train[0]); // 40 samples: 4 iterations
  assert.equal(seen.length, 4);
  for (const r of seen) close(r.term, r.hand, 1e-4, "loss term");
  [...F.values(), ...P.values()].forEach((t) => t.dispose());
  s.dispose();
  p2.dispose();
  plugin.dispose();
  small.dispose();
  model.dispose();
});

Deno.test("EWC running-sum form S(θ−μ)² + C matches the direct sum; the expanded square does not", () => {
  const n = 20000;
  const E = 5;
  let seed = 1;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  // Parameters around 0.5 that move little between experiences: where cancellation bites.
  const thetaE = Array.from({ length: E }, () => Float32Array.from({ length: n }, () => 0));
  const base = Float32Array.from({ length: n }, () => 0.5 + rand());
  thetaE.forEach((t, e) => t.forEach((_, i) => t[i] = base[i] + 1e-3 * (rand() - 0.5) * (e + 1)));
  const FE = Array.from({ length: E }, () => Float32Array.from({ length: n }, () => rand() * 10));
  const theta = Float32Array.from(base, (b) => b + 1e-3 * (rand() - 0.5));
  let direct = 0;
  const directGrad = new Float64Array(n);
  for (let e = 0; e < E; e++) {
    for (let i = 0; i < n; i++) {
      direct += FE[e][i] * (theta[i] - thetaE[e][i]) ** 2;
      directGrad[i] += 2 * FE[e][i] * (theta[i] - thetaE[e][i]);
    }
  }
  const plugin = new EWCPlugin(1);
  for (let e = 0; e < E; e++) {
    const F = new Map([["w", tf.tensor1d(FE[e])]]);
    const P = new Map([["w", tf.tensor1d(thetaE[e])]]);
    plugin.consolidate(F, P);
    F.get("w")!.dispose();
    P.get("w")!.dispose();
  }
  const model = { namedParameters: () => new Map([["w", w]]) } as unknown as Module;
  const w = tf.variable(tf.tensor1d(theta), true, "ewc_precision_w");
  const ours = plugin.penalty(model)!.dataSync()[0];
  const grad = values(
    tf.grad((x: tf.Tensor) => {
      const m = { namedParameters: () => new Map([["w", x]]) } as unknown as Module;
      return plugin.penalty(m)!;
    })(w),
  );
  // θ²ΣF − 2θΣFθ_e + ΣFθ_e², each sum in float32.
  const expanded = tf.tidy(() => {
    const F = FE.map((f) => tf.tensor1d(f));
    const T = thetaE.map((t) => tf.tensor1d(t));
    const sF = tf.addN(F);
    const sFt = tf.addN(F.map((f, e) => tf.mul(f, T[e])));
    const sFt2 = tf.addN(F.map((f, e) => tf.mul(f, tf.square(T[e]))));
    return tf.sum(tf.add(tf.sub(tf.mul(sF, tf.square(w)), tf.mul(2, tf.mul(sFt, w))), sFt2))
      .dataSync()[0];
  });
  const relOurs = Math.abs(ours - direct) / direct;
  const relExpanded = Math.abs(expanded - direct) / direct;
  console.log(
    `penalty ${direct.toExponential(4)}: running-sum rel. error ${relOurs.toExponential(2)}, ` +
      `expanded-square rel. error ${relExpanded.toExponential(2)}`,
  );
  assert.ok(relOurs < 1e-4, `running-sum form error ${relOurs}`);
  assert.ok(relExpanded > 10 * relOurs, `expanded ${relExpanded} vs ours ${relOurs}`);
  let maxErr = 0;
  let maxG = 0;
  grad.forEach((g, i) => {
    maxErr = Math.max(maxErr, Math.abs(g - directGrad[i]));
    maxG = Math.max(maxG, Math.abs(directGrad[i]));
  });
  assert.ok(maxErr < 1e-3 * maxG, `gradient error ${maxErr} (max gradient ${maxG})`);
  w.dispose();
  plugin.dispose();
});

Deno.test("EWC importances are the mean over unshuffled minibatches of squared gradients", async () => {
  const bench = toyBenchmark({ n: 20, classes: 2, experiences: 1 }); // 20 training samples
  const model = mlp({ input: 64, hidden: [5], outputs: 2, seed: 3 });
  const plugin = ewcPlugin({ lambda: 1 });
  const s = naive({ model, batchSize: 8, seed: 0, plugins: [plugin] }); // batches 8, 8, 4
  await s.train(bench.train[0]);
  // Independent computation: per minibatch, gradients of the mean cross-entropy by tf.grads.
  const ds = bench.train[0].dataset;
  const names = [...model.trainableParameters().keys()];
  const vars = names.map((n) => model.namedParameters().get(n)!);
  const sums = names.map((_, i) => new Float64Array(vars[i].size));
  assert.equal(ds.length, 20);
  const starts = [0, 8, 16];
  for (const st of starts) {
    const idx = Array.from({ length: Math.min(8, ds.length - st) }, (_, i) => st + i);
    const b = ds.batch(idx);
    const gs = tf.tidy(() => {
      const x = tf.tensor2d(b.x, [b.n, 64]);
      const onehot = tf.oneHot(tf.tensor1d(b.y, "int32"), 2);
      const f = (...ps: tf.Tensor[]) => {
        const [w1, b1, w2, b2] = ps;
        const h = tf.relu(tf.add(tf.matMul(x, w1), b1));
        const logits = tf.add(tf.matMul(h, w2), b2);
        return tf.neg(tf.mean(tf.sum(tf.mul(onehot, tf.logSoftmax(logits)), 1)));
      };
      return tf.grads(f)(vars).map((g) => values(g));
    });
    gs.forEach((g, i) => g.forEach((v, j) => sums[i][j] += v * v));
  }
  names.forEach((n, i) => {
    const ours = values(plugin.importances.get(n)!);
    ours.forEach((v, j) => close(v, sums[i][j] / starts.length, 1e-4, `${n}[${j}]`));
    // One experience: the anchor is the parameters after training.
    assert.deepEqual(values(plugin.anchors.get(n)!), values(vars[i]));
  });
  assert.equal(plugin.constant, 0);
  s.dispose();
  plugin.dispose();
  model.dispose();
});

Deno.test("EWC online mode: F = decay·F_old + F_new, anchored at the latest parameters", () => {
  const model = mlp({ input: 2, hidden: [], outputs: 1, seed: 0 }); // weight [2,1], bias [1]
  const plugin = new EWCPlugin(2, "online", 0.5, true);
  const exps = [
    {
      F: { "classifier.weight": [1, 2], "classifier.bias": [4] },
      p: { "classifier.weight": [1, 1], "classifier.bias": [0] },
    },
    {
      F: { "classifier.weight": [3, 0], "classifier.bias": [1] },
      p: { "classifier.weight": [2, -1], "classifier.bias": [1] },
    },
  ];
  for (const e of exps) {
    const F = tensors(e.F, model);
    const p = tensors(e.p, model);
    plugin.consolidate(F, p);
    [...F.values(), ...p.values()].forEach((t) => t.dispose());
  }
  // 0.5·[1, 2] + [3, 0] = [3.5, 1]; 0.5·4 + 1 = 3.
  assert.deepEqual(values(plugin.importances.get("classifier.weight")!), [3.5, 1]);
  assert.deepEqual(values(plugin.importances.get("classifier.bias")!), [3]);
  assert.deepEqual(values(plugin.anchors.get("classifier.weight")!), [2, -1]);
  setParams(model, { "classifier.weight": [0, 0], "classifier.bias": [3] });
  const pen = plugin.penalty(model)!;
  close(pen.dataSync()[0], 2 * (3.5 * 4 + 1 * 1 + 3 * 4), 1e-6, "online penalty");
  pen.dispose();
  // keepImportanceData: each experience's own importances and parameters.
  assert.equal(plugin.history.length, 2);
  assert.deepEqual(values(plugin.history[1].importances.get("classifier.weight")!), [3, 0]);
  assert.deepEqual(values(plugin.history[0].params.get("classifier.weight")!), [1, 1]);
  plugin.dispose();
  model.dispose();
});

Deno.test("EWC penalizes only the old slice of a grown head; fitToShape pads", async () => {
  const t = fitToShape(tf.tensor2d([[1, 2], [3, 4]]), [2, 3], tf.fill([2, 3], 9));
  assert.deepEqual(t.arraySync(), [[1, 2, 9], [3, 4, 9]]);
  t.dispose();
  const bench = toyBenchmark({ n: 40, classes: 4, experiences: 2 });
  const model = mlp({ input: 64, hidden: [], outputs: 2, head: "incremental", seed: 0 });
  const plugin = new EWCPlugin(1);
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [plugin] });
  await s.train(bench.train[0]);
  const name = "classifier.classifier.weight";
  const before = plugin.importances.get(name)!.arraySync() as number[][];
  assert.equal(before[0].length, 2);
  const head = (model.classifier as IncrementalClassifier).classifier;
  head.resizeOutputs(4, 5);
  const penBefore = tf.tidy(() => plugin.penalty(model)!.dataSync()[0]);
  const after = plugin.importances.get(name)!.arraySync() as number[][];
  assert.deepEqual(after.map((r) => r.slice(0, 2)), before);
  assert.ok(after.every((r) => r[2] === 0 && r[3] === 0), "new units have importance 0");
  // Moving the new units changes nothing; moving an old one does.
  head.weight.assign(tf.add(head.weight, tf.concat([tf.zeros([64, 2]), tf.ones([64, 2])], 1)));
  close(tf.tidy(() => plugin.penalty(model)!.dataSync()[0]), penBefore, 1e-6, "new units free");
  head.weight.assign(tf.add(head.weight, tf.concat([tf.ones([64, 1]), tf.zeros([64, 3])], 1)));
  assert.ok(tf.tidy(() => plugin.penalty(model)!.dataSync()[0]) > penBefore + 1e-6);
  s.dispose();
  plugin.dispose();
  model.dispose();
});

Deno.test("EWC options are validated with messages that name the fix", () => {
  assert.throws(() => new EWCPlugin(-1), /EWC lambda must be a finite number ≥ 0, got -1/);
  assert.throws(() => new EWCPlugin(1, "bogus" as never), /mode must be "separate" or "online"/);
  assert.throws(() => new EWCPlugin(1, "online"), /online mode needs decayFactor in \(0, 1\]/);
  assert.throws(() => new EWCPlugin(1, "online", 1.5), /decayFactor in \(0, 1\], got 1.5/);
  assert.throws(() => new EWCPlugin(1, "separate", 0.5), /only used in online mode/);
  assert.throws(
    () => ewcPlugin({ keepImportanceData: "yes" as never }),
    /keepImportanceData must be true or false/,
  );
  assert.equal(ewcPlugin().ewcLambda, 1000);
  const model = mlp({ input: 64, hidden: [], outputs: 2, seed: 0 });
  const s = ewc({ model, lambda: 7, mode: "online", decayFactor: 0.9, batchSize: 4 });
  assert.equal(s.name, "EWC");
  assert.equal(s.batchSize, 4);
  const p = s.plugins[0] as EWCPlugin;
  assert.ok(p instanceof EWCPlugin && p.ewcLambda === 7 && p.mode === "online");
  assert.ok(!("lambda" in (s as unknown as Record<string, unknown>)));
  s.dispose();
  model.dispose();
});

Deno.test("EWC checkpoint: a run resumed after experience 0 matches an uninterrupted one", async () => {
  const bench = toyBenchmark({ n: 60, experiences: 2 });
  const make = (modelSeed: number) =>
    ewc({
      model: mlp({ input: 64, hidden: [16], outputs: 4, seed: modelSeed }),
      lambda: 50,
      batchSize: 8,
      epochs: 2,
      seed: 11,
      optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    });
  const saved = await checkResume({
    make,
    train: bench.train,
    test: bench.test,
    evalEach: true,
    afterRestore: (resumed) => assert.equal((resumed.plugins[0] as EWCPlugin).experiences, 1),
  });
  const wrongMode = new EWCPlugin(1, "online", 0.9);
  assert.throws(() => wrongMode.loadState(saved.plugins["0:EWCPlugin"]), /"separate" mode/);
});

Deno.test("EWC holds no growing number of tensors and frees everything on dispose", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 });
  const plugin = new EWCPlugin(10);
  const s = naive({ model, batchSize: 8, seed: 0, plugins: [plugin] });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  const base = tf.memory().numTensors;
  for (let k = 0; k < 3; k++) {
    for (const exp of bench.train) await s.train(exp);
    await s.eval(bench.test);
    assert.equal(tf.memory().numTensors, base, `after round ${k}`);
  }
  assert.equal(plugin.experiences, 7);
  s.dispose();
  model.dispose();
  plugin.dispose();
  assert.equal(tf.memory().numTensors, start);
});

Deno.test({
  name: SHARED_DATA
    ? "EWC beats Naive on Permuted MNIST (domain-incremental, 3 experiences of 1000 samples)"
    : "EWC beats Naive on Permuted MNIST (skipped: no shared MNIST data)",
  ignore: !SHARED_DATA,
  fn: async () => {
    const { base, ours } = await againstNaiveOnPermutedMNIST(
      "EWC",
      (opts) => ewc({ ...opts, lambda: 1000 }),
    );
    const naiveAcc = base.meanAccuracy, ewcAcc = ours.meanAccuracy;
    assert.ok(ewcAcc > naiveAcc + 0.05, `EWC ${ewcAcc} vs naive ${naiveAcc}`);
  },
});
