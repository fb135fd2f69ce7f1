import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { mlp } from "../lib/models/mlp.ts";
import type { ModuleState } from "../lib/nn/module.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import {
  fromScratchTraining,
  FromScratchTrainingPlugin,
  fromScratchTrainingPlugin,
} from "../lib/plugins/from_scratch_training.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { assertNoTensorGrowth, checkResume, toyBenchmark } from "./_helpers.ts";

Deno.test("FromScratchTraining: every experience starts from the initial weights, optimizer reset", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const model = mlp({ input: 64, hidden: [8], outputs: 6, seed: 0 });
  const initial = model.stateDict();
  const starts: { weights: ModuleState; slots: number }[] = [];
  const spy: Plugin = {
    name: "spy",
    beforeTrainingEpoch(ctx) {
      if (ctx.clock.epoch === 0) {
        starts.push({
          weights: ctx.model.stateDict(),
          slots: Object.keys(ctx.optimizer.state().slots).length,
        });
      }
    },
  };
  const s = fromScratchTraining({
    model,
    optimizer: sgd({ lr: 0.1, momentum: 0.9 }),
    batchSize: 10,
    epochs: 2,
    seed: 0,
    plugins: [spy],
  });
  for (const exp of bench.train) await s.train(exp);
  assert.equal(starts.length, 3);
  for (const st of starts) {
    assert.deepEqual(st.weights, initial);
    assert.equal(st.slots, 0, "momentum dropped");
  }
  assert.notDeepEqual(model.stateDict(), initial, "training moved the weights");
  s.dispose();
  model.dispose();
});

Deno.test("FromScratchTraining: training experience k equals a fresh model trained on k alone", async () => {
  const bench = toyBenchmark({ n: 120, classes: 4, experiences: 2 });
  const opts = { batchSize: 10, epochs: 2, shuffle: false, seed: 0 };
  const a = mlp({ input: 64, hidden: [8], outputs: 4, seed: 3 });
  const s = fromScratchTraining({ model: a, optimizer: sgd({ lr: 0.1, momentum: 0.9 }), ...opts });
  for (const exp of bench.train) await s.train(exp);
  const b = mlp({ input: 64, hidden: [8], outputs: 4, seed: 3 });
  const r = naive({ model: b, optimizer: sgd({ lr: 0.1, momentum: 0.9 }), ...opts });
  await r.train(bench.train[1]);
  assert.deepEqual(a.stateDict(), b.stateDict());
  // Without the optimizer reset the momentum of the first experience carries over.
  const c = mlp({ input: 64, hidden: [8], outputs: 4, seed: 3 });
  const keep = fromScratchTraining({
    model: c,
    optimizer: sgd({ lr: 0.1, momentum: 0.9 }),
    resetOptimizer: false,
    ...opts,
  });
  for (const exp of bench.train) await keep.train(exp);
  assert.notDeepEqual(c.stateDict(), b.stateDict());
  for (const x of [s, r, keep]) x.dispose();
  for (const m of [a, b, c]) m.dispose();
});

Deno.test("FromScratchTraining: a grown head is reset too, its new units keep their creation values", async () => {
  const bench = toyBenchmark({ n: 120, classes: 4, experiences: 2 });
  const model = mlp({ input: 64, hidden: [8], outputs: 2, head: "incremental", seed: 0 });
  const plugin = new FromScratchTrainingPlugin();
  let atStart: Float32Array | undefined;
  let initialHead: Float32Array | undefined;
  const spy: Plugin = {
    name: "spy",
    beforeTrainingExp(ctx) {
      if (ctx.clock.trainExperiences === 1) {
        atStart = Float32Array.from(
          ctx.model.namedParameters().get("classifier.classifier.weight")!.dataSync(),
        );
      }
    },
  };
  initialHead = Float32Array.from(
    model.namedParameters().get("classifier.classifier.weight")!.dataSync(),
  );
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [plugin, spy] });
  await s.train(bench.train[0]);
  const grownBefore = model.namedParameters().get("classifier.classifier.weight")!;
  assert.equal(grownBefore.shape[1], 2);
  await s.train(bench.train[1]);
  // The head grew to 4 units at the adaptation; units 0-1 went back to their initial values.
  assert.ok(atStart && atStart.length === 8 * 4);
  for (let i = 0; i < 8; i++) {
    for (let j = 0; j < 2; j++) assert.equal(atStart[i * 4 + j], initialHead![i * 2 + j]);
  }
  const recorded = plugin.initialParameters!.get("classifier.classifier.weight")!;
  assert.deepEqual(recorded.shape, [8, 4]);
  assert.deepEqual(Array.from(recorded.values), Array.from(atStart));
  initialHead = undefined;
  s.dispose();
  model.dispose();
});

Deno.test("FromScratchTraining: checkpoint round trip, no tensor growth, option errors", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const saved = await checkResume({
    make: (seed) =>
      fromScratchTraining({
        model: mlp({ input: 64, hidden: [8], outputs: 6, seed }),
        batchSize: 10,
        seed: 0,
      }),
    train: bench.train,
    test: bench.test,
  });
  const st = saved.plugins["0:FromScratchTrainingPlugin"] as { initial: Record<string, unknown> };
  assert.deepEqual(Object.keys(st.initial).sort(), [
    "classifier.bias",
    "classifier.weight",
    "features.0.bias",
    "features.0.weight",
  ]);
  await assertNoTensorGrowth(new FromScratchTrainingPlugin());
  const model = mlp({ input: 4, hidden: [2], seed: 0 });
  assert.throws(
    () => fromScratchTraining({ model, resetOptimiser: true } as never),
    /unknown option "resetOptimiser" \(did you mean "resetOptimizer"\?\)/,
  );
  assert.throws(
    () => fromScratchTrainingPlugin({ resetOptimizer: 1 } as never),
    /resetOptimizer must be/,
  );
  assert.throws(() => new FromScratchTrainingPlugin("yes" as never), /true or false, got yes/);
  assert.throws(
    () => new FromScratchTrainingPlugin().loadState({ nothing: 1 }),
    /Not a FromScratchTrainingPlugin state/,
  );
  model.dispose();
  assert.ok(tf.memory().numTensors >= 0);
});
