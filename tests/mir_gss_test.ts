import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../lib/backend.ts";
import { ArrayDataset } from "../lib/data/dataset.ts";
import { mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { gss, GSS_greedyPlugin, gssPlugin, maxCosineSimilarity } from "../lib/plugins/gss.ts";
import {
  mir,
  MIRPlugin,
  mirPlugin,
  ReservoirMemory,
  topK,
  virtualStepIncrease,
} from "../lib/plugins/mir.ts";
import { SampleMemory } from "../lib/plugins/memory.ts";
import { Rng } from "../lib/random.ts";
import type { Strategy } from "../lib/strategy/template.ts";
import { toyBenchmark } from "./_helpers.ts";

await setBackend("wasm");

const softplus = (z: number) => Math.log(1 + Math.exp(z));

Deno.test("MIR: the candidates whose loss rises most after the virtual step (hand-computed)", () => {
  const start = tf.memory().numTensors;
  // A linear model with zero weights: every loss is ln 2 before the step. With the gradient
  // gW = [[-1, 1], [0, 0]] and lr 1, the virtual logits are x·(−gW) = (x0, −x0), so a sample of
  // label 1 has loss softplus(2·x0) and one of label 0 softplus(−2·x0).
  const model = mlp({ input: 2, hidden: [], outputs: 2, seed: 0 });
  const params = model.trainableParameters();
  for (const v of params.values()) tf.tidy(() => v.assign(tf.zerosLike(v)));
  const [wName, bName] = [...params.keys()];
  const before = params.get(wName)!.dataSync().slice();
  const x = [[1, 0], [1, 0], [0, 1], [2, 0]];
  const y = [1, 0, 1, 1];
  const rise = tf.tidy(() => {
    const grads = new Map<string, tf.Tensor>([
      [wName, tf.tensor2d([[-1, 1], [0, 0]])],
      [bName, tf.zeros([2])],
    ]);
    const data = {
      x: tf.tensor2d(x),
      y: tf.tensor1d(y, "int32"),
      t: tf.tensor1d([0, 0, 0, 0], "int32"),
      tArray: new Int32Array(4),
      n: 4,
    };
    return virtualStepIncrease(model, params, grads, 1, data).dataSync();
  });
  const expected = x.map(([x0], i) => softplus((y[i] === 1 ? 2 : -2) * x0) - Math.LN2);
  expected.forEach((e, i) => assert.ok(Math.abs(rise[i] - e) < 1e-5, `sample ${i}: ${rise[i]}`));
  // 3.325, 1.434, 0, −0.566: the two largest are samples 3 and 0.
  assert.deepEqual([...topK(rise, 2)], [3, 0]);
  assert.deepEqual([...params.get(wName)!.dataSync()], [...before], "the model is given back");
  assert.equal(model.training, true);
  model.dispose();
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("GSS: max gradient cosine similarity on a crafted case", () => {
  const start = tf.memory().numTensors;
  const s = tf.tidy(() =>
    maxCosineSimilarity(
      tf.tensor2d([[1, 0], [0, 2], [-1, -1]]),
      tf.tensor2d([[1, 1], [-3, 0], [0, 0], [1, -1]]),
    ).dataSync()
  );
  // (1,1): cos 1/√2 with both axes; (−3,0): cos 1/√2 with (−1,−1); zero: 0; (1,−1): 1/√2 with (1,0).
  const expected = [Math.SQRT1_2, Math.SQRT1_2, 0, Math.SQRT1_2];
  expected.forEach((e, i) => assert.ok(Math.abs(s[i] - e) < 1e-6, `row ${i}: ${s[i]}`));
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("ReservoirMemory: keeps memSize samples, each offered sample with probability memSize/seen", () => {
  const d = new ArrayDataset({
    x: Float32Array.from({ length: 1000 }, (_, i) => i),
    y: new Array(1000).fill(0),
    inputShape: [1],
  });
  const counts = new Float64Array(1000);
  for (let r = 0; r < 200; r++) {
    const m = new ReservoirMemory(100);
    m.add(d.subset(Int32Array.from({ length: 400 }, (_, i) => i)), new Rng(r));
    m.add(d.subset(Int32Array.from({ length: 600 }, (_, i) => 400 + i)), new Rng(1000 + r));
    assert.equal(m.buffer.length, 100);
    assert.equal(m.seen, 1000);
    const b = m.buffer.batch(Int32Array.from({ length: 100 }, (_, i) => i));
    for (const v of b.x) counts[v]++;
  }
  // Each sample is kept with probability 0.1: 20 of 200 runs, early and late samples alike.
  const early = counts.slice(0, 500).reduce((a, b) => a + b) / 500;
  const late = counts.slice(500).reduce((a, b) => a + b) / 500;
  assert.ok(Math.abs(early - 20) < 2 && Math.abs(late - 20) < 2, `${early} ${late}`);
});

async function runAll(s: Strategy, bench: ReturnType<typeof toyBenchmark>, from = 0) {
  for (const exp of bench.train.slice(from)) await s.train(exp);
  return await s.eval(bench.test);
}

Deno.test("MIR: replays the most interfered candidates; tensor counts flat; checkpoint round trip", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 160, classes: 8, experiences: 4 });
  const make = (modelSeed: number) =>
    mir({
      model: mlp({ input: 64, hidden: [16], outputs: 8, seed: modelSeed }),
      memSize: 20,
      subsample: 12,
      batchSizeMem: 4,
      batchSize: 8,
      seed: 3,
      optimizer: sgd({ lr: 0.1 }),
    });
  const full = make(1);
  await full.train(bench.train[0]);
  await full.train(bench.train[1]);
  await full.eval(bench.test);
  const base = tf.memory().numTensors;
  await full.train(bench.train[2]);
  await full.eval(bench.test);
  assert.equal(tf.memory().numTensors, base);
  await full.train(bench.train[3]);
  const fullEval = await full.eval(bench.test);
  assert.equal(tf.memory().numTensors, base);
  const pf = full.plugins[0] as MIRPlugin;
  assert.equal(pf.memory.buffer.length, 20);
  assert.equal(pf.lastCandidates.length, 12);
  assert.equal(pf.lastChosen.length, 4);
  // The replayed are the candidates of largest loss rise.
  const chosenRise = [...pf.lastChosen].map((m) =>
    pf.lastIncrease[[...pf.lastCandidates].indexOf(m)]
  );
  const sorted = [...pf.lastIncrease].sort((a, b) => b - a).slice(0, 4);
  assert.deepEqual(chosenRise, sorted);

  const first = make(1);
  await first.train(bench.train[0]);
  const saved = JSON.parse(JSON.stringify(first.checkpoint()));
  first.dispose();
  first.model.dispose();
  const resumed = make(99);
  await resumed.restore(saved);
  const resumedEval = await runAll(resumed, bench, 1);
  assert.deepEqual(resumedEval.experiences, fullEval.experiences);
  assert.deepEqual(resumed.model.stateDict(), full.model.stateDict());
  assert.deepEqual(
    (resumed.plugins[0] as MIRPlugin).memory.state(),
    pf.memory.state(),
  );
  for (const s of [full, resumed]) {
    s.dispose();
    s.model.dispose();
    (s.plugins[0] as MIRPlugin).dispose();
  }
  assert.equal(tf.memory().numTensors, start);
  assert.throws(() => pf.loadState(null), /Not a MIRPlugin state/);
});

Deno.test("GSS: memory filled then replaced by score; tensor counts flat; checkpoint round trip", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 160, classes: 8, experiences: 4 });
  const make = (modelSeed: number) =>
    gss({
      model: mlp({ input: 64, hidden: [16], outputs: 8, seed: modelSeed }),
      memSize: 24,
      memStrength: 3,
      inputSize: [8, 8],
      batchSize: 8,
      seed: 3,
      optimizer: sgd({ lr: 0.1 }),
    });
  const full = make(1);
  await full.train(bench.train[0]);
  const pf = full.plugins[0] as GSS_greedyPlugin;
  assert.equal(pf.memory.length, 24);
  // The first minibatch enters with score 0.1; later ones with cosines in [−1, 1].
  assert.deepEqual([...pf.scores.slice(0, 8)], new Array(8).fill(Math.fround(0.1)));
  assert.ok([...pf.scores].every((s) => s >= -1 - 1e-6 && s <= 1 + 1e-6));
  await full.train(bench.train[1]);
  await full.eval(bench.test);
  const base = tf.memory().numTensors;
  await full.train(bench.train[2]);
  await full.eval(bench.test);
  assert.equal(tf.memory().numTensors, base);
  await full.train(bench.train[3]);
  const fullEval = await full.eval(bench.test);
  assert.equal(tf.memory().numTensors, base);
  assert.ok(pf.checks > 0);

  const first = make(1);
  await first.train(bench.train[0]);
  const saved = JSON.parse(JSON.stringify(first.checkpoint()));
  first.dispose();
  first.model.dispose();
  const resumed = make(99);
  await resumed.restore(saved);
  const resumedEval = await runAll(resumed, bench, 1);
  assert.deepEqual(resumedEval.experiences, fullEval.experiences);
  assert.deepEqual(resumed.model.stateDict(), full.model.stateDict());
  const pr = resumed.plugins[0] as GSS_greedyPlugin;
  assert.deepEqual(pr.state(), pf.state());
  for (const s of [full, resumed]) {
    s.dispose();
    s.model.dispose();
    (s.plugins[0] as GSS_greedyPlugin).dispose();
  }
  assert.equal(tf.memory().numTensors, start);
  assert.throws(() => pf.loadState(null), /Not a GSS_greedyPlugin state/);
});

Deno.test("MIR and GSS: options, builders and errors", () => {
  assert.equal(mirPlugin({ memSize: 50, subsample: 10, batchSizeMem: 5 }).batchSizeMem, 5);
  assert.equal(new MIRPlugin(500, 50, 10).subsample, 50);
  assert.throws(
    () => mirPlugin({ memSize: 50, subsampel: 10, batchSizeMem: 5 } as never),
    /subsample/,
  );
  assert.throws(() => new MIRPlugin(500, 50), /batchSizeMem/);
  assert.equal(gssPlugin({ memSize: 300, memStrength: 10 }).memSize, 300);
  assert.deepEqual(new GSS_greedyPlugin(300, 10, [1, 28, 28]).inputSize, [1, 28, 28]);
  assert.throws(() => gssPlugin({ memSize: 300, memStrenght: 10 } as never), /memStrength/);
  assert.throws(() => new GSS_greedyPlugin(0), /memSize/);
  assert.equal(SampleMemory.empty().length, 0);
});
