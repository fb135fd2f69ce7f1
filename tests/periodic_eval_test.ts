import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { forwardTransfer } from "../lib/metrics/forgetting.ts";
import { mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { evaluation } from "../lib/plugins/evaluation.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import type { StrategyOptions, StrategyState } from "../lib/strategy/template.ts";
import { toyBenchmark } from "./_helpers.ts";

/** Records the experience iteration and global iteration of every evaluation's start. */
function evalLog() {
  const at: [number, number][] = [];
  const plugin: Plugin = {
    name: "log",
    beforeEval: (ctx) => void at.push([ctx.clock.experienceIteration, ctx.clock.trainIterations]),
  };
  return { plugin, at };
}

function make(opts: Partial<StrategyOptions> = {}) {
  return naive({
    model: mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 }),
    optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    epochs: 2,
    batchSize: 16, // 40 samples: 3 iterations an epoch, 6 an experience
    seed: 0,
    ...opts,
  });
}

Deno.test("evalEvery N iterations evaluates after iterations N, 2N, ... of each experience", async () => {
  const bench = toyBenchmark();
  const before = tf.memory().numTensors;
  const log = evalLog();
  const s = make({ evalEvery: 2, pevalMode: "iteration", plugins: [log.plugin] });
  for (const exp of bench.train) await s.train(exp, { evalStreams: [bench.test] });
  // Iterations 2, 4, 6 of each experience (the last one is the end: no second evaluation).
  assert.deepEqual(log.at, [[2, 2], [4, 4], [6, 6], [2, 8], [4, 10], [6, 12]]);
  const rows = s.rows.filter((r) => r.phase === "eval" && r.experience === null);
  assert.deepEqual(rows.filter((r) => r.metric === "accuracy").map((r) => r.iteration), [
    2,
    4,
    6,
    8,
    10,
    12,
  ]);
  s.model.dispose();
  s.dispose();

  // Every 4: iteration 4, then once more at the experience's end (Avalanche's final eval).
  const log4 = evalLog();
  const s4 = make({ evalEvery: 4, pevalMode: "iteration", plugins: [log4.plugin] });
  await s4.train(bench.train[0], { evalStreams: [bench.test] });
  assert.deepEqual(log4.at, [[4, 4], [6, 6]]);
  s4.model.dispose();
  s4.dispose();
  assert.equal(tf.memory().numTensors, before, "no tensor left behind");
});

Deno.test("an evaluation in the middle of an epoch changes no training number", async () => {
  const bench = toyBenchmark();
  const plain = make();
  const peval = make({ evalEvery: 1, pevalMode: "iteration" });
  const trainRows = (s: typeof plain) =>
    s.rows.filter((r) => r.phase === "train").map((r) => [r.metric, r.epoch, r.value]);
  for (const exp of bench.train) {
    await plain.train(exp);
    await peval.train(exp, { evalStreams: [bench.test] });
  }
  assert.deepEqual(trainRows(peval), trainRows(plain), "epoch losses and accuracies");
  assert.deepEqual(
    JSON.stringify(peval.model.stateDict()),
    JSON.stringify(plain.model.stateDict()),
    "weights",
  );
  for (const s of [plain, peval]) {
    s.model.dispose();
    s.dispose();
  }
});

Deno.test("evalBefore gives the baseline row (trainExperience −1) and forward transfer", async () => {
  const bench = toyBenchmark();
  const log = evalLog();
  const evaluator = evaluation({ metrics: [forwardTransfer()] });
  const s = make({ evalEvery: 0, plugins: [log.plugin], evaluator });
  await s.train(bench.train[0], { evalStreams: [bench.test], evalBefore: true });
  await s.train(bench.train[1], { evalStreams: [bench.test] });
  assert.deepEqual(log.at, [[0, 0], [6, 6], [6, 12]]);
  const baseline = s.rows.filter((r) =>
    r.phase === "eval" && r.trainExperience === -1 && r.metric === "accuracy"
  );
  assert.equal(baseline.length, 3, "two experiences and the stream, before any training");
  const fwt = s.rows.filter((r) => r.metric === "forwardTransfer");
  assert.ok(fwt.length > 0, "forward transfer is measured");
  const acc = (trainExp: number, exp: number) =>
    s.rows.find((r) =>
      r.phase === "eval" && r.metric === "accuracy" && r.trainExperience === trainExp &&
      r.experience === exp
    )!.value;
  const fwt1 = fwt.find((r) => r.experience === 1)!;
  assert.ok(Math.abs(fwt1.value - (acc(0, 1) - acc(-1, 1))) < 1e-12);
  s.model.dispose();
  s.dispose();
});

Deno.test("a run resumed mid-experience with evaluation by iteration ends as one never stopped", async () => {
  const bench = toyBenchmark();
  const opts = { evalEvery: 2, pevalMode: "iteration" as const, epochs: 3 };
  const full = make(opts);
  let saved: StrategyState | undefined;
  await full.train(bench.train[0], {
    evalStreams: [bench.test],
    evalBefore: true,
    checkpoint: { everyEpochs: 1, save: (st, at) => void (at.midExperience && (saved ??= st)) },
  });
  await full.train(bench.train[1], { evalStreams: [bench.test] });
  assert.equal(saved!.clock.experienceIteration, 3);
  const resumed = make(opts);
  await resumed.train(bench.train[0], {
    evalStreams: [bench.test],
    evalBefore: true, // skipped: the checkpoint is past it
    resume: JSON.parse(JSON.stringify(saved)),
  });
  await resumed.train(bench.train[1], { evalStreams: [bench.test] });
  assert.deepEqual(resumed.rows, full.rows);
  assert.deepEqual(resumed.clock, full.clock);
  for (const s of [full, resumed]) {
    s.model.dispose();
    s.dispose();
  }
});

Deno.test("pevalMode and evalBefore are checked", () => {
  assert.throws(
    () => make({ pevalMode: "iterations" as never }),
    /pevalMode/,
  );
  const s = make();
  assert.throws(
    () => s.train(toyBenchmark().train[0], { evalBefor: true } as never),
    /did you mean "evalBefore"/,
  );
  s.model.dispose();
  s.dispose();
});
