import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../lib/backend.ts";
import { splitMNIST, subsample } from "../lib/benchmarks/mod.ts";
import { mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { SHARED_DATA } from "./_helpers.ts";

await setBackend("wasm");

Deno.test({
  name: "Split MNIST end to end: naive learns each experience and forgets the first" +
    (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const full = await splitMNIST({ experiences: 5, seed: 0, dataDir: SHARED_DATA });
    const bench = subsample(full, { testPerExperience: 1000, seed: 0 });
    const before = tf.memory().numTensors;
    const model = mlp({ hidden: [400, 400], seed: 0 });
    const strategy = naive({
      model,
      optimizer: sgd({ lr: 0.01, momentum: 0.9 }),
      batchSize: 128,
      seed: 0,
    });
    for (const exp of bench.train) {
      await strategy.train(exp);
      await strategy.eval(bench.test);
    }
    const m = strategy.accuracyMatrix();
    assert.equal(m.length, 5);
    for (let i = 0; i < 5; i++) assert.ok(m[i][i] > 0.85, `experience ${i} learned: ${m[i][i]}`);
    assert.ok(m[4][0] < 0.2, `experience 0 forgotten at the end: ${m[4][0]} (was ${m[0][0]})`);
    const avg = m[4].reduce((a, b) => a + b, 0) / 5;
    assert.ok(avg > 0.15 && avg < 0.4, `final average accuracy of naive fine-tuning: ${avg}`);
    strategy.dispose();
    model.dispose();
    assert.equal(tf.memory().numTensors, before);
  },
});

Deno.test({
  name: "deno task demo prints the accuracy matrix and the final average accuracy" +
    (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "demo", "--data", SHARED_DATA!, "--train-limit", "300", "--backend", "wasm"],
      cwd: new URL("..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(text, /backend wasm/);
    assert.match(text, /Accuracy matrix/);
    assert.match(text, /Final average accuracy: 0\.\d{4}/);
    assert.equal(text.split("\n").filter((l) => /^after experience \d/.test(l)).length, 5);
    const bad = await new Deno.Command(Deno.execPath(), {
      args: ["task", "demo", "--batch", "0"],
      cwd: new URL("..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(bad.code, 1);
    assert.match(new TextDecoder().decode(bad.stderr), /--batch must be an integer ≥ 1, got "0"/);
  },
});
