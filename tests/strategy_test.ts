import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../lib/backend.ts";
import { makeExperience } from "../lib/benchmarks/mod.ts";
import { ArrayDataset } from "../lib/data/dataset.ts";
import { mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import type { StrategyContext } from "../lib/strategy/context.ts";
import { DatasetLoader } from "../lib/data/loader.ts";
import { EVAL_HOOKS, type Plugin, StrategyPlugin, TRAIN_HOOKS } from "../lib/strategy/plugin.ts";
import { cumulative, jointTraining, naive, withPlugin } from "../lib/strategy/strategies.ts";
import { replay } from "../lib/plugins/replay.ts";
import { checkResume, toyBenchmark } from "./_helpers.ts";

await setBackend("wasm");

function recorder(log: string[]): Plugin {
  const p: Plugin = { name: "recorder" };
  for (const h of [...TRAIN_HOOKS, ...EVAL_HOOKS]) {
    (p as Record<string, unknown>)[h] = () => {
      log.push(h);
    };
  }
  return p;
}

const ITERATION = [
  "beforeTrainingIteration",
  "beforeForward",
  "afterForward",
  "beforeBackward",
  "afterBackward",
  "beforeUpdate",
  "afterUpdate",
  "afterTrainingIteration",
];

Deno.test("training hooks run in Avalanche's order with the right counts", async () => {
  const bench = toyBenchmark({ n: 40 }); // 20 training samples per experience
  const log: string[] = [];
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = naive({ model, epochs: 2, batchSize: 8, seed: 0, plugins: [recorder(log)] });
  await s.train(bench.train[0]);
  const epoch = [
    "beforeTrainingEpoch",
    ...ITERATION,
    ...ITERATION,
    ...ITERATION,
    "afterTrainingEpoch",
  ];
  assert.deepEqual(log, [
    "beforeTraining",
    "beforeTrainDatasetAdaptation",
    "afterTrainDatasetAdaptation",
    "beforeTrainingExp",
    ...epoch,
    ...epoch,
    "afterTrainingExp",
    "afterTraining",
  ]);
  log.length = 0;
  await s.eval(bench.test);
  const evalExp = (iters: number) => [
    "beforeEvalDatasetAdaptation",
    "afterEvalDatasetAdaptation",
    "beforeEvalExp",
    ...Array.from({ length: iters }, () => [
      "beforeEvalIteration",
      "beforeEvalForward",
      "afterEvalForward",
      "afterEvalIteration",
    ]).flat(),
    "afterEvalExp",
  ];
  // 20 test samples per experience, eval batch 256: one iteration each.
  assert.deepEqual(log, ["beforeEval", ...evalExp(1), ...evalExp(1), "afterEval"]);
  assert.equal(s.clock.trainIterations, 6);
  assert.equal(s.clock.trainExperiences, 1);
  s.dispose();
  model.dispose();
});

Deno.test("StrategyPlugin subclasses get their hooks called, several plugins in order", async () => {
  const log: string[] = [];
  class Counter extends StrategyPlugin {
    n = 0;
    override get name() {
      return "counter";
    }
    afterTrainingIteration() {
      this.n++;
      log.push("counter");
    }
  }
  const counter = new Counter();
  const second: Plugin = { afterTrainingIteration: () => void log.push("second") };
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [counter, second] });
  await s.train(bench.train);
  assert.equal(counter.n, 4);
  assert.deepEqual(log.slice(0, 4), ["counter", "second", "counter", "second"]);
  s.dispose();
  model.dispose();
});

Deno.test("a Promise from a hook inside the gradient tape is an error", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = naive({
    model,
    batchSize: 10,
    plugins: [{ name: "bad", beforeBackward: async () => {} }],
  });
  await assert.rejects(s.train(bench.train[0]), /bad's beforeBackward returned a Promise/);
  s.dispose();
  model.dispose();
});

Deno.test("addLoss adds a differentiable term: the loss and gradients include it", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [], outputs: 4, seed: 0 });
  const seen: { loss: number; ce: number; term: number; gradDiff: number }[] = [];
  const plugin: Plugin = {
    beforeBackward(ctx: StrategyContext) {
      const w = ctx.model.namedParameters().get("classifier.weight")!;
      ctx.addLoss(tf.mul(tf.sum(tf.square(w)), 0.5) as tf.Scalar, "l2");
    },
    afterBackward(ctx: StrategyContext) {
      const w = ctx.model.namedParameters().get("classifier.weight")!;
      const b = ctx.batch!;
      // Gradient of the criterion alone, recomputed: the difference must be w (d/dw of 0.5·|w|²).
      const ceGrad = tf.grad((wt: tf.Tensor) =>
        ctx.criterion(
          tf.add(
            tf.matMul(b.x.reshape([b.n, 64]), wt),
            ctx.model.namedParameters().get("classifier.bias")!,
          ),
          b.y,
        )
      )(w);
      const diff = tf.max(tf.abs(tf.sub(tf.sub(ctx.grads!.get("classifier.weight")!, ceGrad), w)));
      const ce = ctx.criterion(ctx.output!, b.y);
      seen.push({
        loss: ctx.loss!.dataSync()[0],
        ce: ce.dataSync()[0],
        term: ctx.lossTerms.get("l2")!.dataSync()[0],
        gradDiff: diff.dataSync()[0],
      });
    },
  };
  const s = naive({
    model,
    batchSize: 10,
    seed: 0,
    plugins: [plugin],
    optimizer: sgd({ lr: 0.1 }),
  });
  await s.train(bench.train[0]);
  assert.equal(seen.length, 2);
  for (const r of seen) {
    assert.ok(Math.abs(r.loss - (r.ce + r.term)) < 1e-4, JSON.stringify(r));
    assert.ok(r.term > 0);
    assert.ok(r.gradDiff < 1e-4, `gradient must include the term: ${r.gradDiff}`);
  }
  s.dispose();
  model.dispose();
});

Deno.test("afterBackward can replace gradients, and removing params from ctx.params freezes them", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const before = model.stateDict();
  const zeroGrads: Plugin = {
    afterBackward(ctx) {
      ctx.grads = new Map([...ctx.grads!].map(([k, g]) => [k, tf.zerosLike(g)]));
    },
  };
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [zeroGrads] });
  await s.train(bench.train[0]);
  assert.deepEqual(model.stateDict().tensors, before.tensors);
  s.dispose();

  const freeze: Plugin = {
    beforeTrainingIteration(ctx) {
      ctx.params.delete("features.0.weight");
      ctx.params.delete("features.0.bias");
    },
  };
  const s2 = naive({ model, batchSize: 10, seed: 0, plugins: [freeze] });
  await s2.train(bench.train[0]);
  const after = model.stateDict().tensors;
  assert.deepEqual(after["features.0.weight"], before.tensors["features.0.weight"]);
  assert.notDeepEqual(after["classifier.weight"], before.tensors["classifier.weight"]);
  s2.dispose();
  model.dispose();
});

Deno.test("plugins can replace the training dataset and the data loader", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const other = bench.train[1].dataset;
  const swap: Plugin = {
    afterTrainDatasetAdaptation(ctx) {
      ctx.dataset = other.subset([0, 1, 2, 3, 4]);
    },
  };
  const s = naive({ model, batchSize: 2, seed: 0, plugins: [swap] });
  const r = await s.train(bench.train[0]);
  assert.equal(r.samples, 5);
  s.dispose();

  const loader: Plugin = {
    beforeTrainingExp(ctx) {
      ctx.dataLoader = new DatasetLoader(ctx.dataset!, { batchSize: 7, dropLast: true });
    },
  };
  const seen: number[] = [];
  const s2 = naive({
    model,
    batchSize: 2,
    seed: 0,
    plugins: [loader, { afterTrainingIteration: (ctx) => void seen.push(ctx.batch!.n) }],
  });
  await s2.train(bench.train[0]);
  assert.deepEqual(seen, [7, 7]);
  s2.dispose();
  model.dispose();
});

Deno.test("stopTraining ends the experience early", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = naive({
    model,
    batchSize: 2,
    epochs: 5,
    plugins: [{
      afterTrainingIteration: (ctx) => void (ctx.clock.epochIteration === 3 && ctx.stopTraining()),
    }],
  });
  const r = await s.train(bench.train[0]);
  assert.equal(s.clock.trainIterations, 3);
  assert.equal(r.epochs.length, 1);
  s.dispose();
  model.dispose();
});

Deno.test("bad inputs give clear errors", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  assert.throws(() => naive({ model, batchSize: 0 }), /batchSize must be an integer ≥ 1, got 0/);
  assert.throws(() => naive({ model, epochs: 1.5 }), /epochs must be an integer ≥ 1, got 1.5/);
  assert.throws(() => naive({} as never), /needs a model/);

  const wrongInput = mlp({ input: 784, hidden: [8], outputs: 4, seed: 0 });
  const s1 = naive({ model: wrongInput });
  await assert.rejects(s1.train(bench.train[0]), /expects inputs of shape \[784\].*\[64\]/);
  s1.dispose();
  wrongInput.dispose();

  const small = mlp({ input: 64, hidden: [8], outputs: 2, seed: 0 });
  const s2 = naive({ model: small });
  await assert.rejects(
    s2.train(bench.train[1]),
    /Label [23] is out of range for a model with 2 outputs/,
  );
  s2.dispose();
  small.dispose();

  const info = bench.info;
  const ds = new ArrayDataset({ x: new Float32Array(0), y: [], inputShape: [64] });
  assert.throws(() => makeExperience("train", 0, ds, info), /is empty/);

  const s3 = naive({
    model,
    plugins: [{ afterTrainDatasetAdaptation: (ctx) => void (ctx.dataset = ds) }],
  });
  await assert.rejects(s3.train(bench.train[0]), /has no training samples/);
  s3.dispose();

  const s4 = naive({ model, plugins: [{ beforeBackward: (ctx) => ctx.addLoss(tf.scalar(NaN)) }] });
  await assert.rejects(
    s4.train(bench.train[0]),
    /Training loss became NaN.*lower the learning rate/,
  );
  s4.dispose();
  await assert.rejects(naive({ model }).train([]), /empty stream/);
  model.dispose();
});

Deno.test("eval returns accuracy and loss per experience and builds the accuracy matrix", async () => {
  const bench = toyBenchmark({ n: 200 });
  const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 });
  const s = naive({
    model,
    batchSize: 10,
    epochs: 3,
    seed: 0,
    optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
  });
  for (const exp of bench.train) {
    await s.train(exp);
    const r = await s.eval(bench.test);
    assert.equal(r.experiences.length, 2);
    assert.equal(r.samples, bench.test[0].dataset.length + bench.test[1].dataset.length);
    for (const e of r.experiences) assert.ok(e.accuracy >= 0 && e.accuracy <= 1 && e.loss >= 0);
  }
  const m = s.accuracyMatrix();
  assert.equal(m.length, 2);
  assert.ok(m[0][0] > 0.9, `learned experience 0: ${m[0][0]}`);
  assert.ok(m[1][1] > 0.9, `learned experience 1: ${m[1][1]}`);
  assert.ok(m[1][0] < m[0][0] - 0.5, `naive forgets experience 0: ${m[1][0]} vs ${m[0][0]}`);
  s.dispose();
  model.dispose();
});

Deno.test("cumulative trains on everything seen; joint training merges the stream", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const c = cumulative({ model, batchSize: 8, seed: 0 });
  const r0 = await c.train(bench.train[0]);
  const r1 = await c.train(bench.train[1]);
  assert.equal(r0.samples, bench.train[0].dataset.length);
  assert.equal(r1.samples, bench.train[0].dataset.length + bench.train[1].dataset.length);
  c.dispose();
  const j = jointTraining({ model, batchSize: 8, seed: 0 });
  const rj = await j.train(bench.train);
  assert.equal(rj.epochs.length, 1);
  assert.equal(rj.samples, 40);
  assert.equal(j.clock.trainExperiences, 1);
  j.dispose();
  model.dispose();
});

Deno.test("periodic evaluation with evalEvery", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = naive({ model, batchSize: 8, epochs: 2, evalEvery: 1, seed: 0 });
  const r = await s.train(bench.train, { evalStreams: [bench.test] });
  // 2 experiences × 2 epochs, each eval writes 2 experience rows ×2 metrics + 2 stream rows.
  assert.equal(
    r.rows.filter((x) => x.phase === "eval" && x.experience === null && x.metric === "accuracy")
      .length,
    4,
  );
  assert.equal(s.ctx.phase, "train");
  s.dispose();
  model.dispose();
});

Deno.test("same seed gives identical results; another seed differs (cpu and wasm)", async () => {
  for (const backend of ["cpu", "wasm"] as const) {
    await setBackend(backend);
    const run = async (seed: number) => {
      const bench = toyBenchmark({ n: 60 });
      const model = mlp({ input: 64, hidden: [16], outputs: 4, seed });
      const s = naive({ model, batchSize: 8, epochs: 2, seed });
      const accs: number[] = [];
      for (const exp of bench.train) {
        await s.train(exp);
        accs.push((await s.eval(bench.test)).accuracy);
      }
      const state = model.stateDict();
      s.dispose();
      model.dispose();
      return { accs, state };
    };
    const a = await run(3);
    const b = await run(3);
    const c = await run(4);
    assert.deepEqual(a.accs, b.accs, backend);
    assert.deepEqual(a.state, b.state, backend);
    assert.notDeepEqual(a.state.tensors["classifier.weight"], c.state.tensors["classifier.weight"]);
  }
  await setBackend("wasm");
});

Deno.test("no tensor growth over hundreds of iterations, experiences and evaluations", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 400, experiences: 2 });
  const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 });
  const kept: tf.Tensor[] = [];
  const plugin: Plugin = {
    beforeBackward(ctx) {
      ctx.addLoss(tf.mul(tf.sum(tf.square(ctx.output!)), 1e-6) as tf.Scalar, "tiny");
    },
    afterTrainingExp() {
      kept.forEach((t) => t.dispose());
      kept.length = 0;
      kept.push(tf.keep(tf.zeros([3])));
    },
  };
  const s = naive({ model, batchSize: 4, epochs: 1, seed: 0, plugins: [plugin] });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  const base = tf.memory().numTensors;
  for (let k = 0; k < 3; k++) {
    for (const exp of bench.train) await s.train(exp); // 50 iterations per experience
    await s.eval(bench.test);
  }
  assert.ok(s.clock.trainIterations >= 350, `${s.clock.trainIterations}`);
  assert.equal(tf.memory().numTensors, base);
  s.dispose();
  kept.forEach((t) => t.dispose());
  model.dispose();
  assert.equal(tf.memory().numTensors, start, "strategy and model free everything they made");
});

Deno.test("checkpoint and restore: a resumed run gives the same numbers as an uninterrupted one", async () => {
  const bench = toyBenchmark({ n: 60 });
  const make = (modelSeed: number) => {
    const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: modelSeed });
    return naive({
      model,
      batchSize: 8,
      epochs: 2,
      seed: 11,
      optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    });
  };
  await checkResume({
    make,
    train: bench.train,
    test: bench.test,
    evalEach: true,
    check: (full, resumed) => assert.deepEqual(resumed.accuracyMatrix(), full.accuracyMatrix()),
  });
  await assert.rejects(make(1).restore({ version: 7 } as never), /Not a strategy checkpoint/);
});

Deno.test("plugins added between calls take part in the next call", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = naive({ model, batchSize: 10, seed: 0 });
  await s.train(bench.train[0]);
  let evalExps = 0;
  s.plugins.push({ afterEvalExp: () => void evalExps++ });
  await s.eval(bench.test);
  assert.equal(evalExps, 2);
  s.dispose();
  model.dispose();
});

Deno.test("the evaluator option runs after every other plugin", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const log: string[] = [];
  const s = naive({
    model,
    batchSize: 20,
    evaluator: { name: "evaluator", afterTrainingExp: () => void log.push("evaluator") },
    plugins: [{ afterTrainingExp: () => void log.push("plugin") }],
  });
  await s.train(bench.train[0]);
  assert.deepEqual(log, ["plugin", "evaluator"]);
  assert.equal(s.evaluator?.name, "evaluator");
  s.dispose();
  model.dispose();
});

Deno.test("afterForward may replace the output; the replaced output is what training uses", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const start = tf.memory().numTensors;
  const s = naive({
    model,
    batchSize: 10,
    plugins: [{ afterForward: (ctx) => void (ctx.output = tf.mul(ctx.output!, 0)) }],
  });
  const r = await s.train(bench.train[0]);
  // Zero logits: the loss is ln 4 whatever the weights.
  assert.ok(Math.abs(r.epochs[0].loss - Math.log(4)) < 1e-5, `${r.epochs[0].loss}`);
  s.dispose();
  assert.equal(tf.memory().numTensors, start);
  model.dispose();
});

Deno.test("strategy.dispose() disposes its plugins", () => {
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  let disposed = 0;
  const s = naive({ model, plugins: [{ dispose: () => void disposed++ }, {}] });
  s.dispose();
  assert.equal(disposed, 1);
  model.dispose();
});

Deno.test("dropLast drops each epoch's incomplete last minibatch (plain and replay loaders)", async () => {
  const bench = toyBenchmark({ n: 40, experiences: 2 }); // 20 training samples per experience
  const sizes = (dropLast: boolean | undefined, withReplay: boolean) => {
    const seen: number[][] = [];
    const probe: Plugin = {
      name: "probe",
      beforeTrainingExp: () => void seen.push([]),
      beforeTrainingIteration: (ctx) => void seen[seen.length - 1].push(ctx.batch!.n),
    };
    const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
    const opts = { model, batchSize: 8, seed: 0, plugins: [probe], dropLast };
    const s = withReplay ? replay({ ...opts, memSize: 6, batchSizeMem: 3 }) : naive(opts);
    return { s, model, seen };
  };
  for (const withReplay of [false, true]) {
    for (const dropLast of [undefined, true]) {
      const { s, model, seen } = sizes(dropLast, withReplay);
      assert.equal(s.dropLast, dropLast ?? false);
      for (const exp of bench.train) await s.train(exp);
      // 20 samples in minibatches of 8: 8, 8, 4, or 8, 8 when dropping; replay adds 3 memory
      // samples to each minibatch of the second experience.
      const first = dropLast ? [8, 8] : [8, 8, 4];
      const second = first.map((n) => n + (withReplay ? 3 : 0));
      assert.deepEqual(seen, [first, second], `replay ${withReplay}, dropLast ${dropLast}`);
      s.dispose();
      model.dispose();
    }
  }
});

Deno.test("withPlugin: the method's plugin first, then the user's; the builders use it", () => {
  const model = mlp({ input: 64, hidden: [4], outputs: 4, seed: 0 });
  const method: Plugin = { name: "method" };
  const user: Plugin = { name: "user" };
  const s = withPlugin("Method", method, { model, plugins: [user] });
  assert.equal(s.name, "Method");
  assert.deepEqual(s.plugins, [method, user]);
  assert.deepEqual(withPlugin("Method", method, { model }).plugins, [method]);
  assert.equal(withPlugin("Method", method, { model, name: "Mine" }).name, "Mine");
  assert.throws(
    () => withPlugin("Method", undefined as never, { model }),
    /needs the method's plugin/,
  );
  const r = replay({ model, memSize: 10, plugins: [user] });
  assert.equal(r.name, "Replay");
  assert.equal(r.plugins.length, 2);
  assert.equal(r.plugins[1], user);
  model.dispose();
});
