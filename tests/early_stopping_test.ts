import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { benchmarkWithValidationStream } from "../lib/benchmarks/validation.ts";
import { mlp } from "../lib/models/mlp.ts";
import type { ModuleState } from "../lib/nn/module.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { earlyStopping, EarlyStoppingPlugin } from "../lib/plugins/early_stopping.ts";
import { decodeCheckpoint, encodeCheckpoint } from "../lib/checkpoint/files.ts";
import type { StrategyState } from "../lib/strategy/template.ts";
import type { StrategyContext } from "../lib/strategy/context.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { toyBenchmark } from "./_helpers.ts";

/**
 * Writes a crafted validation value after each epoch (or iteration) — the row a periodic
 * evaluation of stream "valid" would write — and keeps the weights it was "measured" on.
 */
function craftedCurve(values: number[], per: "epoch" | "iteration" = "epoch") {
  const weights: ModuleState[] = [];
  const write = (ctx: StrategyContext) => {
    const k = weights.length;
    weights.push(ctx.model.stateDict());
    ctx.rows.push({
      metric: "accuracy",
      phase: "eval",
      stream: "valid",
      experience: null,
      task: null,
      epoch: null,
      iteration: ctx.clock.trainIterations,
      trainExperience: ctx.clock.trainExperiences - 1,
      value: values[k] ?? 0,
    });
  };
  const plugin: Plugin = per === "epoch"
    ? { name: "curve", afterTrainingEpoch: write }
    : { name: "curve", afterTrainingIteration: write };
  return { plugin, weights };
}

const flat = (s: ModuleState) => JSON.stringify(s);

function strategy(plugins: Plugin[], epochs = 10) {
  return naive({
    model: mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 }),
    optimizer: sgd({ lr: 0.05 }),
    epochs,
    batchSize: 16,
    seed: 0,
    plugins,
  });
}

Deno.test("stops at the right epoch of a crafted curve and restores the best weights", async () => {
  const bench = toyBenchmark();
  const before = tf.memory().numTensors;
  // Best 0.7 after epoch 2 (counted as step 3: epochs done); patience 2: the check before the
  // 6th epoch (5 done, 5 − 3 ≥ 2) stops, so 5 epochs run.
  const curve = craftedCurve([0.5, 0.6, 0.7, 0.65, 0.68, 0.9, 0.95]);
  const es = new EarlyStoppingPlugin(2, "valid");
  const s = strategy([curve.plugin, es]);
  const r = await s.train(bench.train[0]);
  assert.equal(r.epochs.length, 5, "the stopped epoch does not run");
  assert.equal(es.best, 0.7);
  assert.equal(es.bestStep, 3);
  assert.equal(flat(s.model.stateDict()), flat(curve.weights[2]), "the weights after epoch 2");
  assert.equal(r.rows.filter((x) => x.phase === "train" && x.metric === "loss").length, 5);
  s.model.dispose();
  s.dispose();
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("min mode with a margin: small gains do not reset the patience", async () => {
  const bench = toyBenchmark();
  // Losses: 1.0, 0.8 (gain 0.2 > 0.1: best), 0.75 (gain 0.05: weights saved, patience not reset),
  // 0.74, then stop before epoch 5 (4 done, best at step 2: 4 − 2 ≥ 2).
  const curve = craftedCurve([1.0, 0.8, 0.75, 0.74, 0.1]);
  const es = earlyStopping({ patience: 2, metric: "Loss_Stream", mode: "min", margin: 0.1 });
  // The curve writes "accuracy" rows: copy them as "loss" rows for this metric.
  const asLoss: Plugin = {
    name: "asLoss",
    afterTrainingEpoch: (ctx) => void ctx.rows.push({ ...ctx.rows.at(-1)!, metric: "loss" }),
  };
  const s = strategy([curve.plugin, asLoss, es]);
  const r = await s.train(bench.train[0]);
  assert.equal(r.epochs.length, 4);
  assert.equal(es.best, 0.8);
  // As Avalanche, the weights saved are those of the last strict improvement (0.74, epoch 3).
  assert.equal(flat(s.model.stateDict()), flat(curve.weights[3]));
  s.model.dispose();
  s.dispose();
});

Deno.test("restoreBest false keeps the last weights; no stop when the curve keeps rising", async () => {
  const bench = toyBenchmark();
  const curve = craftedCurve([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
  const es = earlyStopping({ patience: 1, restoreBest: false });
  const s = strategy([curve.plugin, es], 6);
  const r = await s.train(bench.train[0]);
  assert.equal(r.epochs.length, 6);
  assert.equal(flat(s.model.stateDict()), flat(curve.weights[5]));
  s.model.dispose();
  s.dispose();

  // With restoreBest the last evaluation counts too: the best is the final epoch's.
  const curve2 = craftedCurve([0.1, 0.2, 0.3, 0.2, 0.25, 0.6]);
  const es2 = earlyStopping({ patience: 5 });
  const s2 = strategy([curve2.plugin, es2], 6);
  await s2.train(bench.train[0]);
  assert.equal(flat(s2.model.stateDict()), flat(curve2.weights[5]));
  s2.model.dispose();
  s2.dispose();
});

Deno.test("iteration mode counts iterations of the experience and stops after the iteration", async () => {
  const bench = toyBenchmark(); // 40 samples, batch 16: 3 iterations an epoch
  const curve = craftedCurve([0.5, 0.8, 0.7, 0.6, 0.6, 0.6, 0.6], "iteration");
  const es = earlyStopping({ patience: 3, pevalMode: "iteration" });
  const s = strategy([curve.plugin, es]);
  const r = await s.train(bench.train[0]);
  // Value k is written after iteration k+1; the check before iteration i+1 reads value i−1.
  // Best 0.8 (value 1) seen before iteration 3 (2 done): step 2. Before iteration 6 (5 done):
  // 5 − 2 ≥ 3, stop after it: 5 iterations + the stopped one = 6 iterations, 2 epochs.
  assert.equal(s.clock.trainIterations, 6);
  assert.equal(r.epochs.length, 2);
  assert.equal(es.bestStep, 2);
  assert.equal(flat(s.model.stateDict()), flat(curve.weights[1]));
  s.model.dispose();
  s.dispose();
});

Deno.test("with a real validation stream and periodic evaluation, each experience stops by itself", async () => {
  const bench = benchmarkWithValidationStream(toyBenchmark({ n: 160 }), {
    size: 0.25,
    classBalanced: true,
    seed: 0,
  });
  const before = tf.memory().numTensors;
  const patience = 3;
  const es = earlyStopping({ patience }); // validation accuracy, higher is better
  const s = naive({
    model: mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 }),
    optimizer: sgd({ lr: 0.02, momentum: 0.9 }),
    epochs: 60,
    batchSize: 8,
    evalEvery: 1,
    seed: 0,
    plugins: [es],
  });
  for (const exp of bench.train) {
    const valid = bench.valid![exp.id];
    const r = await s.train(exp, { evalStreams: [valid] });
    const accs = r.rows.filter((x) =>
      x.phase === "eval" && x.stream === "valid" && x.experience === null &&
      x.metric === "accuracy"
    ).map((x) => x.value);
    // The value after c epochs is read before epoch c + 1; the first one counts as step 0. The
    // best is the first epoch count reaching the maximum; training stops `patience` later.
    const first = accs.indexOf(Math.max(...accs)) + 1;
    const bestStep = first === 1 ? 0 : first;
    assert.equal(es.best, Math.max(...accs));
    assert.equal(es.bestStep, bestStep);
    assert.equal(r.epochs.length, bestStep + patience, `curve ${accs}`);
    assert.ok(r.epochs.length < 60);
    // The restored weights give the best validation accuracy again.
    assert.equal((await s.eval(valid)).accuracy, es.best);
  }
  s.model.dispose();
  s.dispose();
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("resumed mid-experience from a checkpoint file, it stops and restores as a run never stopped", async () => {
  const bench = benchmarkWithValidationStream(toyBenchmark({ n: 160 }), {
    size: 0.25,
    classBalanced: true,
    seed: 0,
  });
  const make = () =>
    naive({
      model: mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 }),
      optimizer: sgd({ lr: 0.02, momentum: 0.9 }),
      epochs: 30,
      batchSize: 8,
      evalEvery: 1,
      seed: 0,
      plugins: [earlyStopping({ patience: 3 })],
    });
  const full = make();
  const states: StrategyState[] = [];
  for (const exp of bench.train) {
    await full.train(exp, {
      evalStreams: [bench.valid![exp.id]],
      checkpoint: { everyEpochs: 1, save: (st, at) => void (at.midExperience && states.push(st)) },
    });
  }
  // A state of the second experience, after its best was found (through the file format).
  const mid = states.filter((st) => st.position!.experience === 1)[2];
  const saved = mid.plugins["0:EarlyStoppingPlugin"] as { bestState: unknown; best: number };
  assert.ok(saved.bestState && saved.best > 0, "the state holds best weights");
  const { header, data } = await encodeCheckpoint(mid);
  const file = new Uint8Array([...header, ...data]);
  const restored = (await decodeCheckpoint(file)).state;
  const resumed = make();
  await resumed.train(bench.train[1], { evalStreams: [bench.valid![1]], resume: restored });
  assert.deepEqual(resumed.rows, full.rows);
  assert.equal(JSON.stringify(resumed.model.stateDict()), JSON.stringify(full.model.stateDict()));
  for (const s of [full, resumed]) {
    s.model.dispose();
    s.dispose();
  }
});

Deno.test("state round-trips through JSON; bad settings are errors", () => {
  const es = new EarlyStoppingPlugin(3, "valid_stream", "Top1_Acc_Stream", "max", "epoch", 0.0);
  assert.equal(es.valStream, "valid");
  assert.equal(es.metric, "accuracy");
  const state = { version: 1, best: 0.5, bestStep: 2, bestState: null, fromRow: 7 };
  es.loadState(JSON.parse(JSON.stringify(state)));
  assert.deepEqual(es.state(), state);
  assert.throws(() => earlyStopping({ patience: 0 }), /patience must be an integer ≥ 1, got 0/);
  assert.throws(() => earlyStopping({ patience: 2, mode: "up" as never }), /mode/);
  assert.throws(() => earlyStopping({ patince: 2 } as never), /did you mean "patience"/);
});
