// Tests of the tape-free training step (lib/nn/direct.ts): which models get it, that the strategy
// template takes it only when no hook runs inside the tape, and that it trains bit for bit as the
// tape does (wasm, and blas where it loads).
// Run: deno test -A tests/direct_test.ts

import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { registerBlasBackend } from "../lib/backends/blas.ts";
import { Classifier, cnn, mlp } from "../lib/models/mlp.ts";
import { Activation, Dropout, Flatten, Linear, Sequential } from "../lib/nn/layers.ts";
import { planDirectStep } from "../lib/engine/direct.ts";
import { compositeCrossEntropy } from "../lib/nn/losses.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { lwf } from "../lib/plugins/lwf.ts";
import { toyBenchmark } from "./_helpers.ts";

const blas = await registerBlasBackend();

/** A Classifier built by hand (mlp() has no Flatten or rate-0 dropout). */
function handMade(layers: () => import("../lib/nn/module.ts").Module[], head = 4): Classifier {
  const build = (): Classifier =>
    new Classifier(new Sequential(layers()), new Linear(8, head, { seed: 9 }), 8, [8, 8, 1], build);
  return build();
}

Deno.test("planDirectStep takes linear/relu classifiers and refuses what it cannot differentiate", () => {
  const yes = [
    mlp({ input: 64, hidden: [8, 8], outputs: 4, seed: 0 }),
    mlp({ input: 64, hidden: [], outputs: 4, seed: 0 }),
    handMade(() => [new Flatten(), new Linear(64, 8, { seed: 1 }), new Activation("relu")]),
    handMade(() => [new Linear(64, 8, { seed: 1 }), new Dropout(0, 3), new Activation("linear")]),
  ];
  for (const m of yes) {
    assert.ok(planDirectStep(m), `planned: ${m.features.constructor.name}`);
    m.dispose();
  }
  class Custom extends Classifier {}
  const base = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const sub = new Custom(base.features, base.classifier, 8, [64], () => base);
  const no: [string, Classifier][] = [
    ["tanh", mlp({ input: 64, hidden: [8], outputs: 4, activation: "tanh", seed: 0 })],
    ["dropout", mlp({ input: 64, hidden: [8], outputs: 4, dropout: 0.5, seed: 0 })],
    ["incremental head", mlp({ input: 64, hidden: [8], outputs: 4, head: "incremental" })],
    ["multi head", mlp({ input: 64, hidden: [8], outputs: 4, head: "multi" })],
    ["cnn", cnn({ input: [8, 8, 1], channels: [2], dense: 8, outputs: 4, seed: 0 })],
    ["subclass", sub],
  ];
  for (const [what, m] of no) assert.equal(planDirectStep(m), undefined, what);
  // Dropout with a rate is fine once the model evaluates (inactive).
  const dropped = no[1][1];
  dropped.eval();
  assert.ok(planDirectStep(dropped));
  for (const [, m] of no) if (m !== sub) m.dispose();
});

/** Trains 2 experiences and returns every parameter's bits and the loss rows. */
async function run(
  backend: "wasm" | "blas",
  opts: { tapeHook: boolean; freezeFirst?: boolean; criterion?: boolean; lwfAlpha?: number },
): Promise<
  { params: Map<string, Uint32Array>; losses: number[]; gradientsCalls: number; grads: string[] }
> {
  await setBackend(backend);
  const engine = tf.engine() as unknown as { gradients: (...a: unknown[]) => unknown };
  const original = engine.gradients;
  let gradientsCalls = 0;
  engine.gradients = function (this: unknown, ...a: unknown[]) {
    gradientsCalls++;
    return original.apply(this, a);
  };
  try {
    const bench = toyBenchmark({ n: 80 });
    const model = mlp({ input: 64, hidden: [16, 12], outputs: 4, seed: 3 });
    if (opts.freezeFirst) {
      for (const [name, v] of model.namedParameters()) {
        if (name.startsWith("features.0.")) v.trainable = false;
      }
    }
    // afterBackward is outside the tape: it does not bring the tape back.
    let grads: string[] = [];
    const seen: Plugin = {
      name: "seen",
      afterBackward: (ctx) => {
        grads = [...ctx.grads!.keys()];
      },
    };
    const plugins: Plugin[] = opts.tapeHook
      ? [seen, { name: "tape", beforeForward: () => {} }]
      : [seen];
    const common = {
      model,
      optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
      batchSize: 16,
      epochs: 2,
      seed: 0,
      plugins,
      criterion: opts.criterion ? compositeCrossEntropy : undefined,
    };
    const s = opts.lwfAlpha === undefined
      ? naive(common)
      : lwf({ ...common, alpha: opts.lwfAlpha, temperature: 2 });
    const losses: number[] = [];
    for (const exp of bench.train) {
      const r = await s.train(exp);
      for (const e of r.epochs) losses.push(e.loss);
    }
    const params = new Map(
      [...model.namedParameters()].map(([n, v]) => [n, new Uint32Array(v.dataSync().buffer)]),
    );
    s.dispose();
    model.dispose();
    return { params, losses, gradientsCalls, grads };
  } finally {
    engine.gradients = original;
    await setBackend("wasm");
  }
}

for (const backend of ["wasm", "blas"] as const) {
  const skip = backend === "blas" && !blas.ok ? blas.reason : undefined;
  for (const freezeFirst of [false, true]) {
    Deno.test({
      name: `the tape-free step trains bit for bit as the tape (${backend}${
        freezeFirst ? ", first layer frozen" : ""
      })${skip ? ` (skipped: ${skip})` : ""}`,
      ignore: skip !== undefined,
      fn: async () => {
        const before = tf.memory().numTensors;
        const direct = await run(backend, { tapeHook: false, freezeFirst });
        const tape = await run(backend, { tapeHook: true, freezeFirst });
        assert.equal(direct.gradientsCalls, 0, "no tape recorded without in-tape hooks");
        assert.ok(tape.gradientsCalls > 0, "a beforeForward hook brings the tape back");
        assert.deepEqual(direct.losses, tape.losses);
        assert.deepEqual(direct.grads, tape.grads, "the same gradients, in the same order");
        assert.equal(direct.grads.length, freezeFirst ? 4 : 6);
        assert.ok(direct.losses.every(Number.isFinite));
        for (const [name, bits] of tape.params) {
          assert.deepEqual(direct.params.get(name), bits, name);
        }
        if (freezeFirst) {
          const init = mlp({ input: 64, hidden: [16, 12], outputs: 4, seed: 3 });
          await setBackend(backend);
          const w0 = new Uint32Array(
            init.namedParameters().get("features.0.weight")!.dataSync().buffer,
          );
          await setBackend("wasm");
          assert.deepEqual(direct.params.get("features.0.weight"), w0, "frozen layer unchanged");
          init.dispose();
        }
        assert.equal(tf.memory().numTensors, before, "no tensor left behind");
      },
    });
  }
}

Deno.test("another criterion keeps the tape", async () => {
  const r = await run("wasm", { tapeHook: false, criterion: true });
  assert.ok(r.gradientsCalls > 0);
});

for (const backend of ["wasm", "blas"] as const) {
  const skip = backend === "blas" && !blas.ok ? blas.reason : undefined;
  for (const alpha of [1, 0.5]) {
    Deno.test({
      name: `LwF's distillation without the tape trains bit for bit as with it (${backend}, ` +
        `alpha ${alpha})${skip ? ` (skipped: ${skip})` : ""}`,
      ignore: skip !== undefined,
      fn: async () => {
        const before = tf.memory().numTensors;
        const direct = await run(backend, { tapeHook: false, lwfAlpha: alpha });
        const tape = await run(backend, { tapeHook: true, lwfAlpha: alpha });
        assert.equal(direct.gradientsCalls, 0, "LwF's beforeBackward has a tape-free form");
        assert.ok(tape.gradientsCalls > 0);
        assert.deepEqual(direct.losses, tape.losses);
        for (const [name, bits] of tape.params) {
          assert.deepEqual(direct.params.get(name), bits, name);
        }
        // The distillation term moved the run: it differs from plain fine-tuning.
        const plain = await run(backend, { tapeHook: false });
        assert.notDeepEqual(plain.losses, direct.losses);
        assert.equal(tf.memory().numTensors, before, "no tensor left behind");
      },
    });
  }
}

Deno.test("a plugin whose loss terms have no tape-free form this time gets the tape", async () => {
  await setBackend("wasm");
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 1 });
  let called = 0, hooked = 0;
  const plugin: Plugin = {
    name: "sometimes",
    outputLossTerms: () => {
      called++;
      return called % 2 === 0 ? [] : undefined;
    },
    beforeBackward: () => {
      hooked++;
    },
  };
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [plugin] });
  await s.train(bench.train[0]);
  // 2 iterations: the first falls back to beforeBackward on the tape, the second does not.
  assert.equal(called, 2);
  assert.equal(hooked, 1);
  const bad: Plugin = {
    name: "bad",
    outputLossTerms: () => [{ name: "x", value: tf.scalar(0), outputGrad: tf.zeros([1]) }],
    beforeBackward: () => {},
  };
  const s2 = naive({ model, batchSize: 10, seed: 0, plugins: [bad] });
  await assert.rejects(
    () => s2.train(bench.train[0]),
    /bad's loss term "x" has a gradient of shape \[1\]/,
  );
  s.dispose();
  s2.dispose();
  model.dispose();
});
