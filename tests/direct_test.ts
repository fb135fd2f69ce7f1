// Tests of the tape-free training step (lib/engine/direct.ts, lib/engine/step.ts): which models get it, that the strategy
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
import { lossTerm } from "../lib/nn/terms.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { lwf } from "../lib/plugins/lwf.ts";
import { ewc } from "../lib/plugins/ewc.ts";
import { synapticIntelligence } from "../lib/plugins/synaptic_intelligence.ts";
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
  opts: {
    tapeHook: boolean;
    freezeFirst?: boolean;
    criterion?: boolean;
    lwfAlpha?: number;
    method?: "ewc" | "si";
  },
): Promise<
  {
    params: Map<string, Uint32Array>;
    losses: number[];
    gradientsCalls: number;
    grads: string[];
    steps: string[];
  }
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
    const steps = new Set<string>();
    const seen: Plugin = {
      name: "seen",
      afterBackward: (ctx) => {
        grads = [...ctx.grads!.keys()];
        steps.add(ctx.step!.step);
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
    const s = opts.method === "ewc"
      ? ewc({ ...common, lambda: 50 })
      : opts.method === "si"
      ? synapticIntelligence({ ...common, lambda: 5 })
      : opts.lwfAlpha === undefined
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
    return { params, losses, gradientsCalls, grads, steps: [...steps] };
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

Deno.test("strategy.plan() says which step runs and why", async () => {
  await setBackend("wasm");
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 1 });
  const plan = (plugins: Plugin[], extra: Record<string, unknown> = {}) =>
    naive({ model, seed: 0, plugins, ...extra }).plan();
  assert.deepEqual(plan([]).step, "tape-free");
  assert.match(plan([]).reasons.join(" "), /no plugin hooks into the tape/);
  const inTape = plan([{ name: "peek", afterForward: () => {} }]);
  assert.equal(inTape.step, "tape");
  assert.deepEqual(inTape.reasons, ["plugin peek runs afterForward inside the tape"]);
  const undeclared = plan([{ name: "penalty", beforeBackward: () => {} }]);
  assert.equal(undeclared.step, "tape");
  assert.match(undeclared.reasons[0], /penalty's beforeBackward .* does not declare tapeFree/);
  const declared = plan([{ name: "terms", tapeFree: true, beforeBackward: () => {} }]);
  assert.equal(declared.step, "tape-free");
  assert.match(declared.reasons.join(" "), /plugin terms add only loss terms/);
  assert.match(
    plan([], { criterion: compositeCrossEntropy }).reasons.join(),
    /criterion is not crossEntropy/,
  );
  const conv = cnn({ input: [8, 8, 1], channels: [2], dense: 8, outputs: 4, seed: 0 });
  assert.match(
    naive({ model: conv, seed: 0 }).plan().reasons.join(),
    /features layer 0 is a ToImage, which has no tape-free backward/,
  );
  assert.equal(lwf({ model, seed: 0 }).plan().step, "tape-free", "LwF declares tapeFree");
  // Planned as training sees the model: its dropout is active then, whatever the mode now.
  const dropped = mlp({ input: 64, hidden: [8], outputs: 4, dropout: 0.5, seed: 1 }).eval();
  assert.match(naive({ model: dropped, seed: 0 }).plan().reasons.join(), /is a Dropout/);
  assert.equal(dropped.training, false, "plan() leaves the mode as it was");
  dropped.dispose();
  // The step of the current epoch is on the context.
  const steps: string[] = [];
  const bench = toyBenchmark({ n: 20 });
  await naive({
    model,
    seed: 0,
    batchSize: 10,
    plugins: [{ name: "probe", afterTrainingIteration: (ctx) => void steps.push(ctx.step!.step) }],
  }).train(bench.train[0]);
  assert.ok(steps.length > 0 && steps.every((s) => s === "tape-free"), steps.join());
  conv.dispose();
  model.dispose();
});

Deno.test("a tapeFree plugin's LossTerm reaches the parameters; a plain tensor there is a clear error", async () => {
  await setBackend("wasm");
  const bench = toyBenchmark({ n: 40 });
  /** Trains with an L2 penalty c·Σw² on the head's weight, on the tape or as a LossTerm. */
  const train = async (asTerm: boolean) => {
    const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 1 });
    const c = 0.05, name = "classifier.weight";
    const l2: Plugin = {
      name: "l2",
      tapeFree: asTerm,
      beforeBackward: (ctx) => {
        const w = ctx.params.get(name)!;
        const value = () => tf.mul(tf.sum(tf.square(w)), c) as tf.Scalar;
        ctx.addLoss(
          asTerm
            ? lossTerm({
              value,
              withGradient: () => ({
                value: value(),
                paramGrads: new Map([[name, tf.mul(w, 2 * c)]]),
              }),
            })
            : value(),
          "l2",
        );
      },
    };
    const s = naive({ model, batchSize: 10, seed: 0, plugins: [l2], optimizer: sgd({ lr: 0.5 }) });
    assert.equal(s.plan().step, asTerm ? "tape-free" : "tape");
    const r = await s.train(bench.train[0]);
    const w = Array.from(model.namedParameters().get(name)!.dataSync());
    s.dispose();
    model.dispose();
    return { loss: r.epochs[0].loss, w };
  };
  const before = tf.memory().numTensors;
  const tape = await train(false), free = await train(true);
  assert.ok(Math.abs(tape.loss - free.loss) < 1e-5, `${tape.loss} vs ${free.loss}`);
  tape.w.forEach((v, i) => assert.ok(Math.abs(v - free.w[i]) < 1e-5, `weight ${i}`));
  assert.equal(tf.memory().numTensors, before, "no tensor left behind");

  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 1 });
  const plain: Plugin = {
    name: "plain",
    tapeFree: true,
    beforeBackward: (ctx) => ctx.addLoss(tf.scalar(0), "x"),
  };
  await assert.rejects(
    () => naive({ model, batchSize: 10, seed: 0, plugins: [plain] }).train(bench.train[0]),
    /loss term "x" is a plain tensor, but the plugin that added it declares tapeFree/,
  );
  const wrong: Plugin = {
    name: "wrong",
    tapeFree: true,
    beforeBackward: (ctx) =>
      ctx.addLoss(
        lossTerm({
          value: () => tf.scalar(0),
          withGradient: () => ({ value: tf.scalar(0), outputGrad: tf.zeros([1]) }),
        }),
        "x",
      ),
  };
  await assert.rejects(
    () => naive({ model, batchSize: 10, seed: 0, plugins: [wrong] }).train(bench.train[0]),
    /loss term "x" has an output gradient of shape \[1\]/,
  );
  model.dispose();
});

for (const backend of ["wasm", "blas"] as const) {
  const skip = backend === "blas" && !blas.ok ? blas.reason : undefined;
  for (const method of ["ewc", "si"] as const) {
    Deno.test({
      name: `${method.toUpperCase()}'s penalty without the tape trains bit for bit as with it ` +
        `(${backend})${skip ? ` (skipped: ${skip})` : ""}`,
      ignore: skip !== undefined,
      fn: async () => {
        const before = tf.memory().numTensors;
        const free = await run(backend, { tapeHook: false, method });
        const tape = await run(backend, { tapeHook: true, method });
        // (EWC's importance pass records its own gradients, outside the training step.)
        assert.deepEqual(free.steps, ["tape-free"], `${method}'s penalty has a tape-free form`);
        assert.deepEqual(tape.steps, ["tape"]);
        assert.deepEqual(free.losses, tape.losses);
        for (const [name, bits] of tape.params) {
          assert.deepEqual(free.params.get(name), bits, name);
        }
        // The penalty moved the run: it differs from plain fine-tuning.
        const plain = await run(backend, { tapeHook: false });
        assert.notDeepEqual(plain.losses, free.losses);
        assert.equal(tf.memory().numTensors, before, "no tensor left behind");
      },
    });
  }
}
