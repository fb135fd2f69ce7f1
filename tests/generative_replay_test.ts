import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { MNIST_STATS } from "../lib/benchmarks/classic.ts";
import { mlp } from "../lib/models/mlp.ts";
import { type MlpVAE, mlpVAE, normalNoise, vaeCriterion } from "../lib/models/vae.ts";
import { BatchNorm1d } from "../lib/nn/layers.ts";
import { vaeLoss } from "../lib/nn/losses.ts";
import { adam, sgd } from "../lib/optim/optimizers.ts";
import { Rng } from "../lib/random.ts";
import type { StrategyContext } from "../lib/strategy/context.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import {
  generativeReplay,
  GenerativeReplayPlugin,
  generativeReplayPlugin,
  vaeTraining,
} from "../lib/plugins/generative_replay.ts";
import { againstNaiveOnSplitMNIST, checkResume, SHARED_DATA, toyBenchmark } from "./_helpers.ts";

function close(a: number, b: number, tol: number, what: string) {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

const rows = (t: tf.Tensor) => t.arraySync() as number[][];

/** A small VAE of 8×8 inputs (the toy benchmark's). */
const smallVAE = (seed: number) =>
  mlpVAE({ shape: [1, 8, 8], nhid: 2, encoderHidden: [16, 8], decoderHidden: [8, 16], seed });

// ------------------------------------------------------------------- the VAE's loss ----

Deno.test("vaeLoss: MSE or BCE reconstruction plus the KL term, summed, by hand", () => {
  const x = [[1, 0, 0.5], [0.25, 1, 0]];
  const xHat = [[0.9, 0.2, 0.5], [0.5, 0.7, 0.1]];
  const mean = [[0.5, -1], [0, 2]];
  const logvar = [[0, 0.5], [-1, 0.2]];
  let mse = 0, bce = 0, kl = 0;
  x.forEach((r, i) =>
    r.forEach((v, j) => {
      const p = xHat[i][j];
      mse += (p - v) ** 2;
      bce -= v * Math.log(p) + (1 - v) * Math.log(1 - p);
    })
  );
  mean.forEach((r, i) =>
    r.forEach((m, j) => kl += 0.5 * (Math.exp(logvar[i][j]) + m * m - 1 - logvar[i][j]))
  );
  const t = [x, xHat, mean, logvar].map((a) => tf.tensor2d(a));
  close(vaeLoss(t[0], t[1], t[2], t[3]).dataSync()[0], mse + kl, 1e-5, "mse + KL");
  close(vaeLoss(t[0], t[1], t[2], t[3], "bce").dataSync()[0], bce + kl, 1e-5, "bce + KL");
  // A perfect reconstruction and the prior's own Gaussian: the loss is 0.
  const zero = vaeLoss(t[0], t[0], tf.zeros([2, 2]), tf.zeros([2, 2])).dataSync()[0];
  close(zero, 0, 1e-7, "no loss at the optimum");
  assert.throws(() => vaeLoss(t[0], t[2], t[2], t[3]), /6 values .* inputs of 6|has 4 values/);
  assert.throws(
    () => vaeLoss(t[0], t[1], t[2], t[3], "l1" as "mse"),
    /reconstruction must be "mse" or "bce", got l1/,
  );
  tf.dispose(t);
});

Deno.test("vaeCriterion: the loss of the VAE's forward output (reconstruction, mean, logvar) and its inputs", () => {
  const vae = smallVAE(3);
  vae.eval();
  const x = tf.randomUniform([5, 1, 8, 8], 0, 1, "float32", 7);
  const out = vae.forward(x); // no rng: decodes the mean
  assert.deepEqual(out.shape, [5, 64 + 4]);
  const { xHat, mean, logvar } = vae.split(out);
  const xs = rows(tf.reshape(x, [5, 64])), ps = rows(xHat), ms = rows(mean), ls = rows(logvar);
  let mse = 0, bce = 0, kl = 0;
  xs.forEach((r, i) =>
    r.forEach((v, j) => {
      mse += (ps[i][j] - v) ** 2;
      bce -= v * Math.log(ps[i][j]) + (1 - v) * Math.log(1 - ps[i][j]);
    })
  );
  ms.forEach((r, i) =>
    r.forEach((m, j) => kl += 0.5 * (Math.exp(ls[i][j]) + m * m - 1 - ls[i][j]))
  );
  const y = tf.zeros([5], "int32");
  close(vaeCriterion(vae)(out, y, { x }).dataSync()[0], mse + kl, 1e-4, "criterion, mse");
  close(vaeCriterion(vae, "bce")(out, y, { x }).dataSync()[0], bce + kl, 1e-4, "criterion, bce");
  assert.throws(() => vaeCriterion(vae)(out, y), /needs the minibatch's inputs/);
  // The decoder's output is a sigmoid: in (0, 1); with stats, normalized as the inputs are.
  assert.ok(ps.flat().every((p) => p > 0 && p < 1));
  const normed = mlpVAE({ shape: [64], nhid: 2, stats: { mean: 0.1307, std: 0.3081 }, seed: 3 });
  const g = normed.generate(4, new Rng(0)).dataSync();
  assert.ok(g.every((v) => v > -0.1307 / 0.3081 - 1e-5 && v < (1 - 0.1307) / 0.3081 + 1e-5));
  tf.dispose([x, out, xHat, mean, logvar, y]);
  vae.dispose();
  normed.dispose();
});

Deno.test("reparameterization and generation are seeded: same seed, same samples", () => {
  const vae = smallVAE(1);
  const x = tf.randomUniform([4, 64], 0, 1, "float32", 2);
  const a = vae.forward(x, { rng: new Rng(5) }).dataSync();
  const b = vae.forward(x, { rng: new Rng(5) }).dataSync();
  const c = vae.forward(x, { rng: new Rng(6) }).dataSync();
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // z = mean + eps · exp(logvar / 2), eps the standard normals of the generator.
  vae.eval();
  const { mean, logvar } = vae.encode(x);
  const eps = normalNoise(new Rng(9), 4, 2);
  const z = tf.add(mean, tf.mul(eps, tf.exp(tf.mul(logvar, 0.5))));
  const sampled = vae.split(vae.forward(x, { rng: new Rng(9) })).xHat;
  assert.deepEqual(sampled.dataSync(), vae.decodeFlat(z).dataSync());
  const g1 = vae.generate(6, new Rng(11)), g2 = vae.generate(6, new Rng(11));
  assert.deepEqual(g1.shape, [6, 1, 8, 8]);
  assert.deepEqual(g1.dataSync(), g2.dataSync());
  assert.deepEqual(
    g1.dataSync(),
    vae.decodeFlat(normalNoise(new Rng(11), 6, 2)).dataSync(),
    "generate decodes z ~ N(0, I) drawn from the generator",
  );
  const copy = vae.clone();
  assert.deepEqual(copy.generate(3, new Rng(1)).dataSync(), vae.generate(3, new Rng(1)).dataSync());
  copy.dispose();
  vae.dispose();
});

Deno.test("BatchNorm1d normalizes by the minibatch in training and by running statistics in eval", () => {
  const bn = new BatchNorm1d(2, { momentum: 0.5 });
  const x = tf.tensor2d([[1, 10], [3, 10], [5, 16]]);
  const out = rows(bn.forward(x));
  // Column 0: mean 3, biased variance 8/3; column 1: mean 12, variance 8.
  const n0 = (v: number) => (v - 3) / Math.sqrt(8 / 3 + 1e-5);
  const n1 = (v: number) => (v - 12) / Math.sqrt(8 + 1e-5);
  out.forEach((r, i) => {
    close(r[0], n0([1, 3, 5][i]), 1e-5, `row ${i} col 0`);
    close(r[1], n1([10, 10, 16][i]), 1e-5, `row ${i} col 1`);
  });
  // Running: 0.5 · 0 + 0.5 · mean; 0.5 · 1 + 0.5 · unbiased variance (4 and 12).
  assert.deepEqual(Array.from(bn.runningMean.dataSync()), [1.5, 6]);
  assert.deepEqual(Array.from(bn.runningVar.dataSync()), [2.5, 6.5]);
  bn.eval();
  const e = rows(bn.forward(tf.tensor2d([[1.5, 6]])));
  close(e[0][0], 0, 1e-6, "eval col 0");
  close(e[0][1], 0, 1e-6, "eval col 1");
  assert.deepEqual(bn.trainableParameters().size, 2, "running statistics are not trained");
  assert.deepEqual(Object.keys(bn.stateDict().tensors).sort(), [
    "bias",
    "runningMean",
    "runningVar",
    "weight",
  ]);
  bn.dispose();
  x.dispose();
});

// ------------------------------------------------------------------------ the plugin ----

/** Records each training minibatch the solver sees, after the plugins before it. */
function probe(): Plugin & { seen: { exp: number; n: number; x: number[][]; y: number[] }[] } {
  const seen: { exp: number; n: number; x: number[][]; y: number[] }[] = [];
  return {
    name: "probe",
    seen,
    beforeTrainingIteration(ctx: StrategyContext) {
      const b = ctx.batch!;
      seen.push({
        exp: ctx.experience!.id,
        n: b.n,
        x: tf.reshape(b.x, [b.n, -1]).arraySync() as number[][],
        y: Array.from(b.data.y),
      });
    },
  };
}

Deno.test("replayed samples come from the old generator, labelled by the old solver's argmax", async () => {
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 });
  const generator = vaeTraining({ model: smallVAE(0), batchSize: 8, seed: 1 });
  const plugin = new GenerativeReplayPlugin(generator, true, 5);
  const p = probe();
  let copiesChecked = false;
  const check: Plugin = {
    name: "check",
    beforeTrainingExp(ctx) {
      if (ctx.experience!.id !== 1) return;
      // The copies are frozen and equal to the solver and generator at the experience's start.
      assert.deepEqual(plugin.oldModel!.stateDict().tensors, ctx.model.stateDict().tensors);
      const current = (generator.model as MlpVAE).clone().eval();
      assert.deepEqual(
        plugin.oldGenerator!.generate(2, new Rng(0)).dataSync(),
        current.generate(2, new Rng(0)).dataSync(),
      );
      current.dispose();
      assert.equal(plugin.oldModel!.trainableParameters().size, 0);
      copiesChecked = true;
    },
  };
  const s = naive({ model, batchSize: 8, seed: 0, plugins: [plugin, check, p] });
  await s.train(bench.train[0]);
  assert.ok(p.seen.every((b) => b.n <= 8), "no replay while the solver is untrained");
  assert.equal(
    generator.clock.trainExperiences,
    1,
    "the generator is trained after the experience",
  );
  assert.equal(plugin.untrainedSolver, false);
  p.seen.length = 0;
  await s.train(bench.train[1]);
  assert.ok(copiesChecked, "the copies were checked");
  assert.equal(generator.clock.trainExperiences, 2);
  for (const b of p.seen) {
    assert.equal(b.n, 8 + 5, "each minibatch of 8 gets replaySize 5 generated samples");
    const gen = tf.tensor2d(b.x.slice(8));
    const labels = Array.from(tf.argMax(plugin.oldModel!.forward(gen), -1).dataSync());
    assert.deepEqual(b.y.slice(8), labels, "labels of the generated samples: old solver's argmax");
    assert.ok(b.y.slice(0, 8).every((y) => y === 2 || y === 3), "current samples first");
    gen.dispose();
  }
  assert.equal(plugin.replayCount(16, 3), 5);
  assert.equal(
    new GenerativeReplayPlugin(null).replayCount(16, 3),
    16,
    "default: the minibatch's size",
  );
  assert.equal(new GenerativeReplayPlugin(null, true, null, true).replayCount(16, 3), 48);
  s.dispose();
  model.dispose();
  generator.model.dispose();
});

Deno.test("the generator strategy replays its own old samples with mock labels", async () => {
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const p = probe();
  const own = generativeReplayPlugin({ replaySize: 3 });
  const g = vaeTraining({ model: smallVAE(0), batchSize: 8, seed: 1, plugins: [own, p] });
  await g.train(bench.train[0]);
  assert.equal(own.modelIsGenerator, true);
  assert.ok(p.seen.every((b) => b.n <= 8));
  p.seen.length = 0;
  await g.train(bench.train[1]);
  for (const b of p.seen) {
    assert.equal(b.n, 11);
    assert.deepEqual(b.y.slice(8), [0, 0, 0]);
  }
  g.dispose();
  g.model.dispose();
});

Deno.test("weighted replay adds a term whose weight is multiplied after every iteration", async () => {
  const bench = toyBenchmark({ n: 40, experiences: 2 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const generator = vaeTraining({ model: smallVAE(0), batchSize: 10, seed: 1 });
  const plugin = generativeReplayPlugin({
    generatorStrategy: generator,
    isWeightedReplay: true,
    weightReplayLoss: 0.5,
    weightReplayLossFactor: 0.5,
  });
  const terms: number[] = [];
  const sizes: number[] = [];
  const read: Plugin = {
    name: "read",
    beforeTrainingIteration(ctx) {
      sizes.push(ctx.batch!.n);
    },
    afterBackward(ctx) {
      const t = ctx.lossTerms.get("generativeReplay");
      if (t) terms.push(t.dataSync()[0]);
    },
  };
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [plugin, read] });
  assert.equal(s.plan().step, "tape");
  await s.train(bench.train[0]);
  assert.equal(terms.length, 0);
  await s.train(bench.train[1]);
  assert.equal(terms.length, 2, "one term per iteration of the second experience");
  assert.ok(sizes.every((n) => n === 10), "the minibatch is not extended");
  assert.equal(plugin.weightReplayLoss, 0.5 * 0.25);
  s.dispose();
  model.dispose();
  generator.model.dispose();
});

Deno.test("generative replay keeps the tensor count flat and frees everything on dispose", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const model = mlp({ input: 64, hidden: [16], outputs: 6, seed: 0 });
  const s = generativeReplay({ model, batchSize: 10, seed: 0, replaySize: 10 });
  assert.equal(s.plan().step, "tape-free", "plain replay keeps the solver's tape-free step");
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  await s.train(bench.train[1]);
  await s.eval(bench.test);
  const base = tf.memory().numTensors;
  await s.train(bench.train[2]);
  await s.eval(bench.test);
  assert.equal(tf.memory().numTensors, base);
  s.dispose();
  model.dispose();
  assert.equal(
    tf.memory().numTensors,
    start,
    "the default generator's VAE is freed with the strategy",
  );
});

Deno.test("a checkpoint holds the generator's strategy and the copies: a restored run gives the same numbers", async () => {
  const bench = toyBenchmark({ n: 80, classes: 6, experiences: 3 });
  const make = (seed: number) =>
    generativeReplay({
      model: mlp({ input: 64, hidden: [16], outputs: 6, seed }),
      optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
      batchSize: 10,
      seed: 0,
      replaySize: 6,
      generatorStrategy: vaeTraining({
        model: smallVAE(seed),
        optimizer: adam({ lr: 0.01 }),
        batchSize: 10,
        seed: 1,
        plugins: [generativeReplayPlugin({ replaySize: 6 })],
      }),
    });
  const generatorOf = (s: ReturnType<typeof make>) =>
    (s.plugins[0] as GenerativeReplayPlugin).generatorStrategy!;
  const saved = await checkResume({
    make,
    train: bench.train,
    test: bench.test,
    cut: 2,
    check: (full, resumed) => {
      assert.deepEqual(generatorOf(resumed).model.stateDict(), generatorOf(full).model.stateDict());
      assert.deepEqual(generatorOf(resumed).rng.state(), generatorOf(full).rng.state());
      for (const s of [full, resumed]) generatorOf(s).model.dispose();
    },
  });
  const st = saved.plugins["0:GenerativeReplayPlugin"] as { generator: { name: string } | null };
  assert.equal(st.generator?.name, "VAETraining");
});

Deno.test("bad options are errors naming the value and the fix", () => {
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  assert.throws(
    () => generativeReplay({ model, replaySise: 10 } as never),
    /unknown option "replaySise" \(did you mean "replaySize"\?\)/,
  );
  assert.throws(
    () => generativeReplayPlugin({ replaySize: 0 }),
    /replaySize must be a positive integer or null.*got 0/,
  );
  assert.throws(
    () => new GenerativeReplayPlugin({ weightReplayLoss: -1 }),
    /weightReplayLoss must be a finite number ≥ 0, got -1/,
  );
  assert.throws(
    () => new GenerativeReplayPlugin(naive({ model })),
    /generator strategy's model must have generate\(n, rng\).*got a Classifier/,
  );
  assert.throws(() => vaeTraining({ model }), /vaeTraining needs an MlpVAE model.*got Classifier/);
  assert.throws(
    () => vaeTraining({ model: smallVAE(0), reconstruction: "l2" as "mse" }),
    /reconstruction/,
  );
  assert.throws(() => mlpVAE({ shape: [64], nhid: 0 }), /nhid must be a positive integer, got 0/);
  assert.throws(() => mlpVAE({ shape: [64], nhdi: 2 } as never), /did you mean "nhid"/);
  assert.throws(() => mlpVAE({ shape: [64], stats: { mean: 0, std: 0 } }), /std > 0/);
  assert.throws(() => new BatchNorm1d(4, { momentum: 2 }), /momentum must be in \[0, 1\], got 2/);
  model.dispose();
});

Deno.test("a solver without a generator strategy must be a generator itself", async () => {
  const bench = toyBenchmark({ n: 40, experiences: 2 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = naive({ model, batchSize: 10, plugins: [new GenerativeReplayPlugin()] });
  await assert.rejects(() => s.train(bench.train[0]), /the strategy's model must be the generator/);
  s.dispose();
  model.dispose();
});

// ------------------------------------------------------------------------- real data ----

Deno.test({
  name: "GenerativeReplay beats Naive on class-incremental Split MNIST (small subsets)",
  ignore: !SHARED_DATA,
  fn: async () => {
    const vaes: MlpVAE[] = [];
    const { base, ours } = await againstNaiveOnSplitMNIST({
      label: "GenerativeReplay",
      // The default generator, seeded (no setup() here to seed Math.random).
      method: (opts) =>
        generativeReplay({
          ...opts,
          replaySize: 32,
          generatorStrategy: vaeTraining({
            model:
              vaes[vaes.push(mlpVAE({ shape: [784], nhid: 2, stats: MNIST_STATS, seed: 0 })) - 1],
            batchSize: opts.batchSize,
            epochs: opts.epochs,
            seed: 1,
            plugins: [generativeReplayPlugin({ replaySize: 32 })],
          }),
        }),
      trainPerExperience: 400,
      hidden: [200],
      lr: 0.01,
      batchSize: 16,
      epochs: 2,
    });
    for (const v of vaes) v.dispose();
    assert.ok(base.meanAccuracy < 0.25, `naive forgets: ${base.meanAccuracy}`);
    assert.ok(
      ours.meanAccuracy > base.meanAccuracy + 0.15,
      `generative replay ${ours.meanAccuracy} vs naive ${base.meanAccuracy}`,
    );
  },
});
