import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";

import { ArrayDataset } from "../lib/data/dataset.ts";
import { mlp } from "../lib/models/mlp.ts";
import { Module } from "../lib/nn/module.ts";

import { biasForward, BiasLayer, bic, BiCPlugin, bicPlugin } from "../lib/plugins/bic.ts";
import { Rng } from "../lib/random.ts";
import type { StrategyContext } from "../lib/strategy/context.ts";
import { naive } from "../lib/strategy/strategies.ts";
import {
  againstNaiveOnSplitMNIST,
  assertNoTensorGrowth,
  checkResume,
  SHARED_DATA,
  toyBenchmark,
} from "./_helpers.ts";

function close(a: number, b: number, tol: number, what: string) {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

/** A model whose output is its input: stage 2 then sees the exemplars' inputs as logits. */
class Identity extends Module {
  forward(x: tf.Tensor): tf.Tensor {
    return tf.clone(x);
  }
}

Deno.test("BiasLayer: alpha·z + beta on its classes' logits only, the others bit-identical", () => {
  const z = tf.tensor2d([[0.1, -2.5, 3.3], [7.7, 1.25, -0.3]]);
  const layer = new BiasLayer([2, 1], 0.5, -1);
  const out = layer.forward(z).arraySync() as number[][];
  const zs = z.arraySync() as number[][];
  for (const [i, row] of out.entries()) {
    assert.equal(row[0], zs[i][0]); // untouched, exactly
    close(row[1], 0.5 * zs[i][1] - 1, 1e-6, "class 1");
    close(row[2], 0.5 * zs[i][2] - 1, 1e-6, "class 2");
  }
  assert.deepEqual(layer.classes, [1, 2]);
  // Two layers, one per experience, compose: class 0 by the second only.
  const both = biasForward(z, [layer, new BiasLayer([0], 2, 1)]).arraySync() as number[][];
  close(both[0][0], 2 * 0.1 + 1, 1e-6, "class 0");
  close(both[1][2], 0.5 * -0.3 - 1, 1e-6, "class 2 through both");
  assert.equal(biasForward(z, []), z);
  assert.throws(() => new BiasLayer([3]).forward(z), /C > 3/);
  assert.throws(() => new BiasLayer([]), /one or more/);
  tf.dispose(z);
});

Deno.test("stage 2 moves alpha and beta by SGD with momentum as computed by hand", async () => {
  // Class 0 twice at logits (0, 2), class 1 once; memSize 10 with valPercentage 0.2 holds out
  // one sample of each class with two or more: one (0, 2) of class 0.
  const data = new ArrayDataset({
    x: new Float32Array([0, 2, 0, 2, 5, 5]),
    y: [0, 0, 1],
    inputShape: [2],
  });
  const plugin = new BiCPlugin({ memSize: 10, valPercentage: 0.2, stage2Epochs: 2, lr: 0.1 });
  const ctx = {
    dataset: data,
    rng: new Rng(0),
    model: new Identity(),
    settings: { batchSize: 8, evalBatchSize: 8 },
  } as unknown as StrategyContext;
  plugin.afterTrainDatasetAdaptation(ctx);
  assert.deepEqual([...plugin.validation.keys()], [0]);
  assert.equal(ctx.dataset!.length, 2); // the held-out sample left the training data
  const layer = new BiasLayer([1]);
  const start = tf.memory().numTensors;
  await plugin.trainBiasLayer(ctx, layer);
  assert.equal(tf.memory().numTensors, start);
  // Logits (0, 2α + β), label 0: ∂CE/∂β = p₁, ∂CE/∂α = 2 p₁; β also gets 0.1 β (its penalty).
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  let a = 1, b = 0, va = 0, vb = 0;
  for (let step = 0; step < 2; step++) {
    const p = sig(2 * a + b);
    va = 0.9 * va + 2 * p;
    vb = 0.9 * vb + p + 0.1 * b;
    a -= 0.1 * va;
    b -= 0.1 * vb;
  }
  close(layer.alpha, a, 1e-5, "alpha");
  close(layer.beta, b, 1e-5, "beta");
  assert.ok(layer.alpha < 1 && layer.beta < 0, "the new class's logit is pushed down");
  close(a, 1 - 0.1 * 2 * sig(2) - 0.1 * (0.9 * 2 * sig(2) + 2 * sig(1.5596)), 1e-3, "by hand");
  plugin.dispose();
});

Deno.test("bic: stage 2 leaves the model's weights bit-identical; distillation weight", async () => {
  const bench = toyBenchmark({ n: 120, classes: 4, experiences: 2 });
  const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 });
  const plugin = bicPlugin({ memSize: 24, valPercentage: 0.25, stage2Epochs: 5 });
  // The weight BiC gives the distillation while each minibatch is trained.
  const weights = new Set<number>();
  const spy = { beforeBackward: () => void weights.add(plugin.distillationWeight()) };
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [plugin, spy] });
  await s.train(bench.train[0]);
  assert.equal(plugin.biasLayers.length, 0); // none after the first experience
  assert.deepEqual([...weights], [0]);
  weights.clear();
  await s.train(bench.train[1]);
  assert.deepEqual([...weights], [0.5]); // 2 old classes of 4
  // The teacher is the model copied before stage 2: the model must still equal it.
  assert.deepEqual(model.stateDict(), plugin.oldModel!.stateDict());
  assert.equal(plugin.biasLayers.length, 1);
  const layer = plugin.biasLayers[0];
  assert.deepEqual(layer.classes, [2, 3]);
  assert.ok(layer.alpha !== 1 || layer.beta !== 0, "stage 2 moved the layer");
  assert.equal(plugin.storagePolicy.buffer.length, 24 - 6);
  assert.equal([...plugin.validation.values()].reduce((n, m) => n + m.length, 0), 6);
  s.dispose();
  model.dispose();
});

Deno.test("bic: tensor counts stay flat over experiences", async () => {
  await assertNoTensorGrowth(bicPlugin({ memSize: 20, valPercentage: 0.2, stage2Epochs: 2 }));
});

Deno.test("bic: a run checkpointed and resumed ends as the uninterrupted one", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const saved = await checkResume({
    make: (seed) =>
      bic({
        model: mlp({ input: 64, hidden: [16], outputs: 6, seed }),
        memSize: 24,
        stage2Epochs: 3,
        batchSize: 10,
        seed: 0,
      }),
    train: bench.train,
    test: bench.test,
    cut: 2,
  });
  assert.ok(JSON.stringify(saved).includes('"biasLayers"'));
});

Deno.test("bic: options are checked", () => {
  assert.throws(
    () => bicPlugin({ memsize: 10 } as never),
    /bicPlugin: unknown option "memsize" \(did you mean "memSize"\?\)/,
  );
  assert.throws(() => new BiCPlugin(10, 1), /valPercentage/);
  assert.throws(() => new BiCPlugin({ T: 0 }), /T must be/);
  assert.throws(() => new BiCPlugin({ lamb: -2 }), /lamb/);
  const p = new BiCPlugin(100, 0.2, 3, 10, 0.5, 0.01);
  assert.deepEqual([p.valSize, p.T, p.stage2Epochs, p.lamb, p.lr], [20, 3, 10, 0.5, 0.01]);
});

Deno.test({
  name: "BiC (memSize 500) beats Naive on class-incremental Split MNIST" +
    (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const { base, ours } = await againstNaiveOnSplitMNIST({
      label: "BiC",
      method: (opts) => bic({ ...opts, memSize: 500 }),
      trainPerExperience: 1000,
      hidden: [200],
      lr: 0.05,
      batchSize: 32,
      epochs: 2,
    });
    assert.ok(base.meanAccuracy < 0.3, `naive forgets: ${base.meanAccuracy}`);
    assert.ok(ours.meanAccuracy > base.meanAccuracy + 0.3, `BiC: ${ours.meanAccuracy}`);
  },
});
