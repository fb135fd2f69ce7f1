import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { splitMNIST, subsample } from "../lib/benchmarks/mod.ts";
import { mlp } from "../lib/models/mlp.ts";
import { cnn } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { ar1, AR1Plugin, ar1Plugin } from "../lib/plugins/ar1.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import type { StrategyState } from "../lib/strategy/template.ts";
import { checkResume, SHARED_DATA, toyBenchmark } from "./_helpers.ts";

Deno.test("AR1 latent replay: memory of own-labelled activations, minibatch split, concatenated loss", async () => {
  // latentLayerNum 0: the lower part is empty, so the stored activations are the inputs.
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 }); // 40 training samples each
  const model = mlp({ input: 64, hidden: [8], outputs: 6, seed: 0 });
  const seen: { exp: number; n: number; replay: number; lossGap: number }[] = [];
  const spy: Plugin = {
    name: "spy",
    beforeBackward(ctx) {
      const p = s.plugins[0] as AR1Plugin, rm = p.memory, batch = ctx.batch!;
      let lossGap = 0;
      if (ctx.clock.trainExperiences > 0 && rm) {
        // The loss must be the criterion's mean over new and replayed samples together.
        const from = ctx.clock.epochIteration * p.replayBatchSize;
        const to = Math.min(rm.y.length, from + p.replayBatchSize);
        const expected = tf.tidy(() => {
          const rx = tf.tensor2d(rm.x.slice(from * 64, to * 64), [to - from, 64]);
          const out = tf.concat([ctx.output!, model.forward(rx)], 0);
          const y = tf.concat([batch.y, tf.tensor1d(rm.y.slice(from, to), "int32")], 0);
          return ctx.criterion(out, y).dataSync()[0];
        });
        lossGap = Math.abs(expected - ctx.loss!.dataSync()[0]);
        assert.ok(ctx.lossTerms.has("latentReplay"));
      }
      seen.push({
        exp: ctx.clock.trainExperiences,
        n: batch.n,
        replay: p.replayBatchSize,
        lossGap,
      });
    },
  };
  const s = ar1({
    model,
    latentLayerNum: 0,
    rmSz: 12,
    batchSize: 10,
    epochs: 2,
    seed: 0,
    lr: 0.05,
    plugins: [spy],
  });
  const plugin = s.plugins[0] as AR1Plugin;
  const trainX = bench.train.map((e) => {
    const d = e.dataset;
    return d.batch(Int32Array.from({ length: d.length }, (_, i) => i));
  });
  /** Index of the training sample of experience k whose inputs are row j of the memory. */
  const owner = (k: number, j: number) => {
    const rm = plugin.memory!;
    const row = rm.x.slice(j * 64, (j + 1) * 64);
    const b = trainX[k];
    for (let i = 0; i < b.n; i++) {
      if (row.every((v, q) => v === b.x[i * 64 + q])) return i;
    }
    return -1;
  };
  await s.train(bench.train[0]);
  // First experience: plain minibatches of 10, and 12 activations with their own labels.
  assert.ok(seen.every((r) => r.exp === 0 && r.n === 10 && r.replay === 0));
  assert.equal(plugin.memory!.y.length, 12);
  for (let j = 0; j < 12; j++) {
    const i = owner(0, j);
    assert.ok(i >= 0, `memory row ${j} is a sample of experience 0`);
    assert.equal(plugin.memory!.y[j], trainX[0].y[i], `label of memory row ${j}`);
  }
  seen.length = 0;
  await s.train(bench.train[1]);
  // ⌊40 / ⌊(40 + 12) / 10⌋⌋ = 8 new samples and 2 replayed per minibatch; CWR* counts both.
  assert.ok(seen.every((r) => r.exp === 1 && r.n === 8 && r.replay === 2), JSON.stringify(seen[0]));
  for (const r of seen) assert.ok(r.lossGap < 1e-5, `loss gap ${r.lossGap}`);
  const counts = plugin.cwr.currentCounts;
  assert.equal((counts.get(0) ?? 0) + (counts.get(1) ?? 0), 12);
  assert.equal(counts.get(2), 20);
  assert.equal(counts.get(3), 20);
  // After it: ⌊12 / 2⌋ = 6 slots hold experience 1's samples, the other 6 experience 0's.
  let fromNew = 0;
  for (let j = 0; j < 12; j++) {
    const i1 = owner(1, j), i0 = owner(0, j);
    assert.ok(i1 >= 0 || i0 >= 0, `memory row ${j}`);
    if (i1 >= 0) {
      fromNew++;
      assert.equal(plugin.memory!.y[j], trainX[1].y[i1]);
    } else assert.equal(plugin.memory!.y[j], trainX[0].y[i0]);
  }
  assert.equal(fromNew, 6);
  s.dispose();
  model.dispose();
});

Deno.test("AR1: the layers below the latent layer freeze after the first experience, CWR* on the head", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const model = mlp({ input: 64, hidden: [8, 8], outputs: 6, seed: 0 });
  const params: string[][] = [];
  const modes: boolean[] = [];
  const spy: Plugin = {
    name: "spy",
    beforeTrainingIteration(ctx) {
      if (ctx.clock.epochIteration === 0 && ctx.clock.epoch === 0) {
        params.push([...ctx.params.keys()]);
        modes.push(model.features.children().get("0")!.training);
      }
    },
  };
  const s = ar1({
    model,
    latentLayerNum: 2,
    rmSz: 20,
    ewcLambda: 0.1,
    batchSize: 10,
    seed: 0,
    lr: 0.05,
    plugins: [spy],
  });
  const plugin = s.plugins[0] as AR1Plugin;
  assert.deepEqual([...plugin.frozenParameters], ["features.0.weight", "features.0.bias"]);
  assert.deepEqual(plugin.si!.excludedParameters, ["classifier"]);
  assert.equal(plugin.cwr.cwrLayerName, "classifier");
  await s.train(bench.train[0]);
  const lower = model.namedParameters().get("features.0.weight")!.dataSync().slice();
  const upper = model.namedParameters().get("features.2.weight")!.dataSync().slice();
  await s.train(bench.train[1]);
  assert.deepEqual(model.namedParameters().get("features.0.weight")!.dataSync(), lower);
  assert.notDeepEqual(model.namedParameters().get("features.2.weight")!.dataSync(), upper);
  assert.ok(params[0].includes("features.0.weight"));
  assert.ok(!params[1].includes("features.0.weight") && params[1].includes("features.2.weight"));
  assert.deepEqual(modes, [false, false], "the lower part runs in evaluation mode");
  // The memory holds the first hidden layer's activations (8 values each).
  assert.deepEqual(plugin.memory!.shape, [8]);
  // Evaluation uses CWR*'s consolidated weights for every class seen.
  assert.deepEqual([...plugin.cwr.consolidatedWeights.keys()].sort(), [0, 1, 2, 3]);
  // A convolutional model splits the same way (activations of any shape).
  const c = cnn({ input: [8, 8, 1], channels: [4], dense: 8, outputs: 6, seed: 0 });
  const sc = ar1({ model: c, latentLayerNum: 4, rmSz: 10, batchSize: 10, epochs: 1, seed: 0 });
  await sc.train(bench.train[0]);
  await sc.train(bench.train[1]);
  assert.deepEqual((sc.plugins[0] as AR1Plugin).memory!.shape, [4, 4, 4]);
  for (const x of [s, sc]) x.dispose();
  for (const m of [model, c]) m.dispose();
});

Deno.test("AR1 checkpoint (memory, CWR*, SI) and no tensor growth", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const saved = await checkResume({
    make: (seed) =>
      ar1({
        model: mlp({ input: 64, hidden: [8, 8], outputs: 6, seed }),
        latentLayerNum: 2,
        rmSz: 16,
        ewcLambda: 0.5,
        batchSize: 10,
        epochs: 2,
        seed: 0,
      }),
    train: bench.train,
    test: bench.test,
  });
  const st = saved.plugins["0:AR1Plugin"] as { rm: { y: number[]; shape: number[] }; si: unknown };
  assert.equal(st.rm.y.length, 16);
  assert.deepEqual(st.rm.shape, [8]);
  assert.ok(st.si);
  const start = tf.memory().numTensors;
  const model = mlp({ input: 64, hidden: [8, 8], outputs: 6, seed: 0 });
  const s = ar1({ model, latentLayerNum: 2, rmSz: 16, ewcLambda: 0.5, batchSize: 10, seed: 0 });
  let base = 0;
  for (const [k, exp] of bench.train.entries()) {
    await s.train(exp);
    await s.eval(bench.test);
    if (k === 1) base = tf.memory().numTensors;
    if (k > 1) assert.equal(tf.memory().numTensors, base);
  }
  s.dispose();
  model.dispose();
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("AR1 resumed in the middle of an experience keeps the activations collected before", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const make = (seed: number) =>
    ar1({
      model: mlp({ input: 64, hidden: [8, 8], outputs: 6, seed }),
      latentLayerNum: 2,
      rmSz: 16,
      ewcLambda: 0.5,
      batchSize: 10,
      epochs: 2,
      seed: 0,
    });
  const full = make(1);
  for (const exp of bench.train) await full.train(exp);
  const first = make(1);
  await first.train(bench.train[0]);
  let saved: StrategyState | undefined;
  await first.train(bench.train[1], {
    checkpoint: {
      everyEpochs: 1,
      everyExperience: false,
      save: (state, at) => {
        if (at.midExperience) saved = JSON.parse(JSON.stringify(state));
      },
    },
  });
  const cur = (saved!.plugins["0:AR1Plugin"] as { cur: { y: number[] } }).cur;
  assert.equal(cur.y.length, 40, "the first epoch's activations are in the state");
  const resumed = make(99);
  await resumed.train(bench.train[1], { resume: saved });
  await resumed.train(bench.train[2]);
  assert.deepEqual(resumed.model.stateDict(), full.model.stateDict());
  assert.deepEqual(
    (resumed.plugins[0] as AR1Plugin).memory,
    (full.plugins[0] as AR1Plugin).memory,
  );
  for (const s of [full, first, resumed]) {
    s.dispose();
    s.model.dispose();
  }
});

Deno.test("AR1: errors name the bad value and the fix", () => {
  const model = mlp({ input: 4, hidden: [3], outputs: 2, seed: 0 });
  assert.throws(
    () => ar1({ model, latentLayer: 1 } as never),
    /unknown option "latentLayer" \(did you mean "latentLayerNum"\?\)/,
  );
  assert.throws(() => ar1Plugin({ model, rmSz: "big" } as never), /rmSz must be an integer/);
  assert.throws(
    () => ar1({ model, latentLayerNum: 5 }),
    /latentLayerNum must be an integer in \[0, 2\] \(the model has 2 feature layers: 0 Linear, 1 Activation\), got 5/,
  );
  assert.throws(() => ar1({ model, rmSz: -1 }), /rmSz must be an integer ≥ 0, got -1/);
  assert.throws(() => ar1({ model, ewcLambda: -2 }), /ewcLambda must be a number ≥ 0, got -2/);
  assert.throws(
    () => ar1({ model, freezeBelowLayer: "features.9.weight" }),
    /freezeBelowLayer "features.9.weight" is not a parameter of the model/,
  );
  assert.throws(
    () => ar1({ model, optimizer: sgd({ lr: 0.1 }), lr: 0.01 }),
    /give either optimizer or lr\/momentum\/l2/,
  );
  assert.throws(
    () => new AR1Plugin({ model: { forward: () => tf.zeros([1]) } as never }),
    /a Classifier whose features are a Sequential/,
  );
  model.dispose();
});

const realName = SHARED_DATA
  ? "AR1 beats Naive on class-incremental Split MNIST (5 experiences, subsampled)"
  : "AR1 beats Naive on class-incremental Split MNIST [skipped: shared datasets not found]";
Deno.test({ name: realName, ignore: !SHARED_DATA }, async () => {
  const full = await splitMNIST({ dataDir: SHARED_DATA, seed: 0 });
  const bench = subsample(full, { trainPerExperience: 1000, testPerExperience: 200, seed: 0 });
  const run = async (kind: "naive" | "ar1") => {
    const model = mlp({ hidden: [256, 256], seed: 1 });
    const common = { model, epochs: 2, batchSize: 32, seed: 3 };
    const s = kind === "naive"
      ? naive({ ...common, optimizer: sgd({ lr: 0.01, momentum: 0.9 }) })
      : ar1({ ...common, latentLayerNum: 2, rmSz: 1500, lr: 0.01 });
    for (const exp of bench.train) await s.train(exp);
    const r = await s.eval(bench.test);
    s.dispose();
    model.dispose();
    return r;
  };
  const base = await run("naive");
  const ours = await run("ar1");
  console.log(
    `class-incremental Split MNIST, final accuracy: Naive ${base.accuracy.toFixed(3)}, AR1 ${
      ours.accuracy.toFixed(3)
    } (per experience ${ours.experiences.map((e) => e.accuracy.toFixed(2)).join(" ")})`,
  );
  assert.ok(base.accuracy < 0.3, `Naive forgets: ${base.accuracy}`);
  assert.ok(ours.accuracy > base.accuracy + 0.3, `AR1 ${ours.accuracy} vs Naive ${base.accuracy}`);
  // Naive keeps only the last experience; AR1 keeps most of them.
  const kept = ours.experiences.filter((e) => e.accuracy > 0.5).length;
  assert.ok(kept >= 4, `experiences above 0.5: ${kept}`);
});
