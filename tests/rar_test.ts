// Tests of RAR (lib/plugins/rar.ts): MI-FGSM by hand on a linear model, the targets, the
// replayed perturbed memory, flat tensor counts, the state round trip, options, and a short
// Split MNIST run against Naive.
// Run: deno test -A tests/rar_test.ts

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../lib/backend.ts";
import { splitMNIST, subsample } from "../lib/benchmarks/mod.ts";
import { mlp } from "../lib/models/mlp.ts";
import { crossEntropy } from "../lib/nn/losses.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import type { SampleMemory } from "../lib/plugins/memory.ts";
import { fgsmAttack, nearestOtherClass, rar, RARPlugin, rarPlugin } from "../lib/plugins/rar.ts";
import { ReservoirSamplingBuffer } from "../lib/plugins/storage_policy.ts";
import type { StrategyContext } from "../lib/strategy/context.ts";
import { StrategyPlugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { assertNoTensorGrowth, SHARED_DATA, toyBenchmark } from "./_helpers.ts";

await setBackend("wasm");

Deno.test("RAR: MI-FGSM on a linear model moves each step by ε/iter·sign(∂L/∂x), clipped to [0, 1] (hand-computed)", () => {
  const start = tf.memory().numTensors;
  // Identity weights, zero bias: logits = x, so ∂CE/∂x = softmax(x) − onehot(target). At
  // x = (0.5, 0.5) with target 0 that is (−0.5, 0.5): signs (−1, +1).
  const model = mlp({ input: 2, hidden: [], outputs: 2, seed: 0 });
  const [w, b] = [...model.trainableParameters().values()];
  tf.tidy(() => {
    w.assign(tf.eye(2));
    b.assign(tf.zeros([2]));
  });
  const out = tf.tidy(() => {
    const x = tf.tensor2d([[0.5, 0.5], [0.05, 0.95]]);
    const target = tf.tensor1d([0, 0], "int32");
    const grad = tf.grad((v: tf.Tensor) => crossEntropy(model.forward(v), target))(x);
    const g = grad.arraySync() as number[][];
    assert.ok(g[0][0] < 0 && g[0][1] > 0 && g[1][0] < 0 && g[1][1] > 0);
    // iterations 3: two steps of 0.3 / 3 = 0.1 each.
    const moved = fgsmAttack(x, grad, { epsilon: 0.3, iterations: 3, decay: 1 });
    const one = fgsmAttack(x, grad, { epsilon: 0.2, iterations: 2, decay: 1 });
    const none = fgsmAttack(x, grad, { epsilon: 0.2, iterations: 1, decay: 1 });
    const zero = fgsmAttack(x, tf.zerosLike(x), { epsilon: 0.3, iterations: 3, decay: 1 });
    return [moved, one, none, zero].map((t) => t.arraySync() as number[][]);
  });
  const close = (a: number[][], e: number[][]) =>
    a.flat().forEach((v, i) => assert.ok(Math.abs(v - e.flat()[i]) < 1e-6, `${a} vs ${e}`));
  close(out[0], [[0.3, 0.7], [0, 1]]); // the second sample is clipped at 0 and 1
  close(out[1], [[0.4, 0.6], [0, 1]]);
  close(out[2], [[0.5, 0.5], [0.05, 0.95]]);
  close(out[3], [[0.5, 0.5], [0.05, 0.95]]);
  model.dispose();
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("RAR: each memory sample's target is the class of its nearest minibatch sample of another class", () => {
  const start = tf.memory().numTensors;
  const t = tf.tidy(() =>
    nearestOtherClass(
      tf.tensor2d([[0, 0], [10, 0], [3, 3]]),
      new Int32Array([0, 1, 2]),
      tf.tensor2d([[0.1, 0], [1, 0], [9, 0], [2, 2]]),
      new Int32Array([0, 1, 1, 2]),
    )
  );
  // Sample 0 (class 0): nearest is (0.1, 0) of its own class, then (1, 0) of class 1. Sample 1
  // (class 1): (9, 0) is its own class; the nearest other is (2, 2) of class 2. Sample 2: (2, 2)
  // is its own; (1, 0) is nearer than (0.1, 0).
  assert.deepEqual([...t], [1, 2, 1]);
  const alone = tf.tidy(() =>
    nearestOtherClass(
      tf.tensor2d([[0, 0]]),
      new Int32Array([3]),
      tf.tensor2d([[1, 1]]),
      new Int32Array([3]),
    )
  );
  assert.deepEqual([...alone], [3], "no other class: its own label");
  assert.equal(tf.memory().numTensors, start);
});

/**
 * Records, for each training minibatch, how many memory samples it holds, and (after RAR's
 * `afterBackward`, before the memory changes at the experience's end) the memory samples RAR
 * attacked last.
 */
class PartsSpy extends StrategyPlugin {
  memoryRows: number[] = [];
  attacked: { x: Float32Array; y: Int32Array } = { x: new Float32Array(0), y: new Int32Array(0) };
  constructor(readonly rar: RARPlugin) {
    super();
  }
  beforeForward(ctx: StrategyContext): void {
    const m = this.rar.buffer;
    this.memoryRows.push(
      ctx.batch!.parts.filter((p) => p.dataset === m).reduce((s, p) => s + p.indices.length, 0),
    );
  }
  afterBackward(): void {
    if (this.rar.lastIndices.length === 0) return;
    const t = (this.rar.buffer as SampleMemory).tensors(this.rar.lastIndices);
    this.attacked = {
      x: t.x.dataSync().slice() as Float32Array,
      y: t.y.dataSync().slice() as Int32Array,
    };
  }
}

Deno.test("RAR: the minibatch replays memory samples, and the attacked ones are perturbed within ε", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 120 });
  const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 });
  const plugin = new RARPlugin({ batchSizeMem: 6, memSize: 20, epsilonFgsm: 0.1, iterFgsm: 3 });
  const spy = new PartsSpy(plugin);
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [plugin, spy] });
  await s.train(bench.train[0]);
  assert.ok(spy.memoryRows.every((r) => r === 0), "first experience: no memory");
  assert.equal(plugin.lastPerturbed.length, 0, "no attack before the memory holds samples");
  assert.equal(plugin.buffer.length, 20);
  spy.memoryRows = [];
  await s.train(bench.train[1]);
  // 6 memory samples a minibatch, cycling through passes over the 20 (a pass ends short: 6,6,6,2).
  assert.ok(spy.memoryRows.length > 0, "memory replayed");
  assert.ok(spy.memoryRows.every((r) => r >= 1 && r <= 6), `${spy.memoryRows}`);
  // The last attacked samples: the perturbed inputs are within ε = 0.1 of the memory samples
  // (two steps of 0.05), inside [0, 1], and moved; their targets are other classes.
  assert.equal(plugin.lastIndices.length, 6);
  const orig = spy.attacked.x;
  const pert = plugin.lastPerturbed;
  assert.equal(pert.length, orig.length);
  let moved = 0;
  for (let i = 0; i < orig.length; i++) {
    const d = Math.abs(pert[i] - orig[i]);
    assert.ok(
      d <= 0.1 + 1e-6 && pert[i] >= 0 && pert[i] <= 1,
      `value ${i}: ${orig[i]} → ${pert[i]}`,
    );
    if (d > 1e-6) moved++;
  }
  assert.ok(moved > orig.length / 2, `moved ${moved} of ${orig.length}`);
  const labels = spy.attacked.y;
  assert.ok([...plugin.lastTargets].every((t, i) => t !== labels[i]), "targets are other classes");
  s.dispose();
  model.dispose();
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("RAR: no tensor growth across experiences; everything freed at the end", async () => {
  await assertNoTensorGrowth(new RARPlugin(5, 20));
});

Deno.test("RAR: state round trip through JSON gives the same memory", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 80 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const plugin = rarPlugin({ batchSizeMem: 4, memSize: 12 });
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [plugin] });
  await s.train(bench.train[0]);
  await s.train(bench.train[1]);
  const saved = JSON.parse(JSON.stringify(plugin.state()));
  const other = new RARPlugin(4, 12);
  other.loadState(saved);
  assert.deepEqual(other.state(), plugin.state());
  assert.equal(other.buffer.length, 12);
  const checkpoint = JSON.parse(JSON.stringify(s.checkpoint()));
  const model2 = mlp({ input: 64, hidden: [8], outputs: 4, seed: 1 });
  const s2 = naive({ model: model2, batchSize: 10, seed: 0, plugins: [new RARPlugin(4, 12)] });
  await s2.restore(checkpoint);
  assert.deepEqual((s2.plugins[0] as RARPlugin).state(), plugin.state());
  assert.throws(() => other.loadState(null), /Not a RARPlugin state/);
  for (const [st, m] of [[s, model], [s2, model2]] as const) {
    st.dispose();
    m.dispose();
  }
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("RAR: options, builders and errors", () => {
  const p = new RARPlugin(10);
  assert.deepEqual(
    [p.memSize, p.optLr, p.betaCoef, p.decayFactorFgsm, p.epsilonFgsm, p.iterFgsm],
    [200, 0.1, 0.4, 1, 0.0314, 2],
  );
  assert.ok(p.storagePolicy instanceof ReservoirSamplingBuffer);
  assert.equal(new RARPlugin(10, 200, 0.1, undefined, false).betaCoef, 0, "off: β is 0");
  assert.equal(rarPlugin({ batchSizeMem: 8, betaCoef: 0.5 }).betaCoef, 0.5);
  assert.throws(() => rarPlugin({ batchSizeMem: 8, epsilonFsgm: 0.1 } as never), /epsilonFgsm/);
  assert.throws(() => rarPlugin({ batchSizeMem: 8, betaCoef: "1" } as never), /betaCoef/);
  assert.throws(() => new RARPlugin(0), /batchSizeMem/);
  assert.throws(() => new RARPlugin(8, 200, -1), /optLr/);
  assert.throws(
    () =>
      rarPlugin({ batchSizeMem: 8, memSize: 100, storagePolicy: new ReservoirSamplingBuffer(50) }),
    /maxSize/,
  );
  assert.equal(
    rarPlugin({ batchSizeMem: 8, storagePolicy: new ReservoirSamplingBuffer(50) }).memSize,
    50,
  );
  const model = mlp({ input: 4, hidden: [], outputs: 2, seed: 0 });
  const s = rar({ model, batchSizeMem: 8, memSize: 30, batchSize: 16 });
  assert.equal((s.plugins[0] as RARPlugin).memSize, 30);
  assert.throws(() => rar({ model, batchSizeMem: 8, memsize: 30 } as never), /memSize/);
  s.dispose();
  model.dispose();
});

Deno.test({
  name: "RAR beats Naive on class-incremental Split MNIST (subsampled)" +
    (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const full = await splitMNIST({ experiences: 5, seed: 0, dataDir: SHARED_DATA });
    const bench = subsample(full, { trainPerExperience: 500, testPerExperience: 200, seed: 0 });
    const run = async (withRar: boolean, useAdversarialReplay = true) => {
      const model = mlp({ hidden: [100], seed: 0 });
      const opts = { model, optimizer: sgd({ lr: 0.05 }), batchSize: 32, epochs: 1, seed: 0 };
      const s = withRar
        ? rar({ ...opts, batchSizeMem: 32, memSize: 200, useAdversarialReplay })
        : naive(opts);
      for (const e of bench.train) await s.train(e);
      const r = await s.eval(bench.test);
      s.dispose();
      model.dispose();
      return r;
    };
    const t0 = performance.now();
    const base = await run(false);
    const ours = await run(true);
    const plain = await run(true, false);
    console.log(
      `Split MNIST (500 train / 200 test per experience, 1 epoch): naive ${
        base.meanAccuracy.toFixed(3)
      }, replay alone ${plain.meanAccuracy.toFixed(3)}, RAR ${ours.meanAccuracy.toFixed(3)} [${
        ours.experiences.map((e) => e.accuracy.toFixed(2))
      }] in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    assert.ok(
      ours.meanAccuracy > base.meanAccuracy + 0.2,
      `${ours.meanAccuracy} vs ${base.meanAccuracy}`,
    );
  },
});
