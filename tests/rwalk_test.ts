import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { ArrayDataset } from "../lib/data/dataset.ts";
import { makeExperience } from "../lib/data/experience.ts";
import { mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { rwalk, RWALK_EPS, RWalkPlugin, rwalkPlugin } from "../lib/plugins/rwalk.ts";
import {
  againstNaiveOnPermutedMNIST,
  checkResume,
  SHARED_DATA,
  tapeFreeMatchesTape,
  toyBenchmark,
} from "./_helpers.ts";

const values = (t: tf.Tensor) => Array.from(t.dataSync());

/** The gradient of the mean cross-entropy of a linear model `xW + b` ([in, out]), in float64. */
function linearGrad(
  W: number[],
  b: number[],
  x: Float32Array,
  y: Int32Array,
  inputs: number,
): { W: number[]; b: number[] } {
  const out = b.length, n = y.length;
  const gW = new Array(W.length).fill(0), gb = new Array(out).fill(0);
  for (let i = 0; i < n; i++) {
    const z = b.map((bk, k) => {
      let s = bk;
      for (let j = 0; j < inputs; j++) s += x[i * inputs + j] * W[j * out + k];
      return s;
    });
    const m = Math.max(...z);
    const e = z.map((v) => Math.exp(v - m));
    const sum = e.reduce((a, v) => a + v, 0);
    for (let k = 0; k < out; k++) {
      const dz = (e[k] / sum - (y[i] === k ? 1 : 0)) / n;
      gb[k] += dz;
      for (let j = 0; j < inputs; j++) gW[j * out + k] += x[i * inputs + j] * dz;
    }
  }
  return { W: gW, b: gb };
}

Deno.test("RWalk's Fisher, KL-weighted path scores and penalty weights match a hand computation", async () => {
  const inputs = 3, names = ["classifier.weight", "classifier.bias"];
  const model = mlp({ input: inputs, hidden: [], outputs: 2, seed: 0 });
  const xs = [[1, 0.5, -1], [0.2, -1, 2], [-0.5, 1, 0.3], [2, 0.1, 0.4], [-1, -1, 1], [
    0.3,
    2,
    -0.2,
  ]];
  const exps = [[0, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 0]].map((y, id) =>
    makeExperience(
      "train",
      id,
      new ArrayDataset({ x: Float32Array.from(xs.flat()), y, inputShape: [inputs] }),
      {
        name: "toy",
        scenario: "domain-incremental",
        numClasses: 2,
        inputShape: [inputs],
        numExperiences: 2,
      },
    )
  );
  const alpha = 0.7, deltaT = 4, lambda = 2;
  const plugin = new RWalkPlugin(lambda, alpha, deltaT);
  // The hand computation, from the parameters the run went through and its minibatches.
  const vals = () => names.map((n) => values(model.namedParameters().get(n)!));
  let F: number[][] | undefined;
  let L: number[][] = [], S: number[][] = [], ckpt: number[][] = [];
  let past: number[][] | undefined;
  let before: number[][] = [], g: number[][] = [];
  let penaltyChecks = 0;
  const probe: Plugin = {
    name: "byHand",
    beforeTraining() {
      const v = vals();
      L = v.map((p) => p.map(() => 0));
      S = v.map((p) => p.map(() => 0));
      ckpt = v;
    },
    beforeTrainingIteration(ctx) {
      before = vals();
      const d = ctx.batch!.data;
      const gr = linearGrad(before[0], before[1], d.x, d.y, inputs);
      g = [gr.W, gr.b];
      F = F
        ? F.map((f, p) => f.map((v, i) => alpha * g[p][i] ** 2 + (1 - alpha) * v))
        : g.map((gp) => gp.map((v) => v * v));
      // RWalk's Fisher, updated in its own beforeTrainingIteration (it runs first).
      names.forEach((n, p) =>
        values(plugin.importances.get(n)!).forEach((v, i) =>
          assert.ok(Math.abs(v - F![p][i]) <= 1e-5 * Math.max(1, F![p][i]), `F ${n}[${i}]`)
        )
      );
    },
    afterBackward(ctx) {
      const term = ctx.lossTerms.get("rwalk");
      if (ctx.clock.trainExperiences === 0) return assert.equal(term, undefined);
      let hand = 0;
      names.forEach((n, p) => {
        const P = values(plugin.penalties.get(n)!), a = values(plugin.anchors.get(n)!);
        before[p].forEach((x, i) => hand += P[i] * (x - a[i]) ** 2);
      });
      const ours = term!.dataSync()[0];
      assert.ok(Math.abs(ours - lambda * hand) <= 1e-5 * Math.max(1, lambda * hand));
      penaltyChecks++;
    },
    afterTrainingIteration(ctx) {
      const after = vals();
      L = L.map((l, p) => l.map((v, i) => v - g[p][i] * (after[p][i] - before[p][i])));
      if (ctx.clock.trainIterations % deltaT !== 0) return;
      S = S.map((s, p) =>
        s.map((v, i) =>
          v + L[p][i] / (0.5 * F![p][i] * (after[p][i] - ckpt[p][i]) ** 2 + RWALK_EPS)
        )
      );
      L = L.map((l) => l.map(() => 0));
      ckpt = after;
    },
    afterTrainingExp() {
      past = past ? past.map((s, p) => s.map((v, i) => 0.5 * (v + S[p][i]))) : S;
    },
  };
  const s = naive({
    model,
    optimizer: sgd({ lr: 0.5 }),
    batchSize: 2,
    epochs: 2,
    shuffle: false,
    seed: 0,
    plugins: [plugin, probe],
  });
  for (const [k, exp] of exps.entries()) {
    await s.train(exp); // 6 iterations: scores at iterations 4 (k = 0), 8 and 12 (k = 1)
    const maxS = Math.max(...past!.flat()), maxF = Math.max(...F!.flat());
    const scale = Math.max(...past!.flat().map(Math.abs));
    assert.ok(maxS > 0 && maxF > 0);
    names.forEach((n, p) => {
      const ours = values(plugin.scores.get(n)!);
      ours.forEach((v, i) =>
        assert.ok(Math.abs(v - past![p][i]) <= 1e-3 * scale, `S ${n}[${i}]: ${v} vs ${past![p][i]}`)
      );
      // P = F / max F + relu(S) / max S.
      values(plugin.penalties.get(n)!).forEach((v, i) => {
        const hand = F![p][i] / maxF + Math.max(0, past![p][i]) / maxS;
        assert.ok(
          Math.abs(v - hand) <= 1e-3,
          `P ${n}[${i}] after experience ${k}: ${v} vs ${hand}`,
        );
      });
      assert.deepEqual(values(plugin.anchors.get(n)!), values(model.namedParameters().get(n)!));
      // The current experience's scores start again from 0.
      assert.ok(values(plugin.checkpointScores.get(n)!).every((v) => v === 0));
    });
  }
  assert.equal(penaltyChecks, 6, "the penalty is added in every iteration of experience 1");
  assert.equal(plugin.experiences, 2);
  s.dispose();
  plugin.dispose();
  model.dispose();
});

await tapeFreeMatchesTape("RWalk", (model, plugins) =>
  rwalk({
    model,
    ewcLambda: 5,
    deltaT: 3,
    optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    batchSize: 16,
    epochs: 2,
    seed: 0,
    plugins,
  }));

Deno.test("RWalk options are checked with messages that name the fix", () => {
  assert.throws(() => new RWalkPlugin(-1), /RWalk ewcLambda must be a finite number ≥ 0, got -1/);
  assert.throws(() => new RWalkPlugin(0.1, 2), /RWalk ewcAlpha must be in \[0, 1\], got 2/);
  assert.throws(() => new RWalkPlugin(0.1, 0.9, 0), /RWalk deltaT must be an integer ≥ 1, got 0/);
  assert.throws(
    () => rwalkPlugin({ delta_t: 10 } as never),
    /rwalkPlugin: unknown option "delta_t" \(did you mean "deltaT"\?\)/,
  );
  assert.throws(() => rwalkPlugin({ deltaT: 2.5 }), /deltaT must be an integer/);
  const d = rwalkPlugin();
  assert.deepEqual([d.ewcLambda, d.ewcAlpha, d.deltaT], [0.1, 0.9, 10]);
  const model = mlp({ input: 64, hidden: [], outputs: 2, seed: 0 });
  assert.throws(
    () => rwalk({ model, ewcLamda: 1 } as never),
    /rwalk: unknown option "ewcLamda" \(did you mean "ewcLambda"\?\)/,
  );
  const s = rwalk({ model, ewcLambda: 3, ewcAlpha: 0.5, deltaT: 4, batchSize: 4 });
  assert.equal(s.name, "RWalk");
  const p = s.plugins[0] as RWalkPlugin;
  assert.ok(p instanceof RWalkPlugin && p.ewcLambda === 3 && p.ewcAlpha === 0.5 && p.deltaT === 4);
  s.dispose();
  model.dispose();
});

Deno.test("RWalk checkpoint: runs resumed after an experience and mid-experience match an uninterrupted one", async () => {
  const bench = toyBenchmark({ n: 60, experiences: 2 });
  const make = (modelSeed: number) =>
    rwalk({
      model: mlp({ input: 64, hidden: [16], outputs: 4, seed: modelSeed }),
      ewcLambda: 20,
      deltaT: 3,
      batchSize: 8,
      epochs: 2,
      seed: 11,
      optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    });
  await checkResume({
    make,
    train: bench.train,
    test: bench.test,
    evalEach: true,
    afterRestore: (resumed) => assert.equal((resumed.plugins[0] as RWalkPlugin).experiences, 1),
  });
  // Mid-experience: the scores being accumulated and the Fisher travel in the checkpoint.
  const full = make(1);
  for (const exp of bench.train) await full.train(exp);
  const states: unknown[] = [];
  const first = make(1);
  await first.train(bench.train[0]);
  await first.train(bench.train[1], {
    checkpoint: {
      everyEpochs: 1,
      save: (state) => void states.push(JSON.parse(JSON.stringify(state))),
    },
  });
  const mid = make(99);
  // deno-lint-ignore no-explicit-any
  await mid.train(bench.train[1], { resume: states[0] as any });
  assert.deepEqual(mid.model.stateDict(), full.model.stateDict());
  const a = (full.plugins[0] as RWalkPlugin).state(), b = (mid.plugins[0] as RWalkPlugin).state();
  assert.deepEqual(b, a);
  for (const s of [full, first, mid]) {
    (s.plugins[0] as RWalkPlugin).dispose();
    s.dispose();
    s.model.dispose();
  }
});

Deno.test("RWalk holds no growing number of tensors and frees everything on dispose", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 });
  const plugin = new RWalkPlugin(10, 0.9, 3);
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
    ? "RWalk beats Naive on Permuted MNIST (domain-incremental, 3 experiences of 1000 samples)"
    : "RWalk beats Naive on Permuted MNIST (skipped: no shared MNIST data)",
  ignore: !SHARED_DATA,
  fn: async () => {
    const { base, ours } = await againstNaiveOnPermutedMNIST(
      "RWalk",
      (opts) => rwalk({ ...opts, ewcLambda: 10 }),
    );
    assert.ok(ours.meanAccuracy > base.meanAccuracy + 0.05, "RWalk forgets less than Naive");
  },
});
