import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { syntheticImages } from "../datasets/mod.ts";
import { splitMNIST, subsample, taskIncremental } from "../lib/benchmarks/mod.ts";
import { toArrayDatasets } from "../lib/benchmarks/classic.ts";
import type { MultiHeadClassifier } from "../lib/models/heads.ts";
import { type Classifier, mlp, multiHeadMLP } from "../lib/models/mlp.ts";
import { type ForwardOptions, Module } from "../lib/nn/module.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { distillationLoss } from "../lib/nn/losses.ts";
import { lwf, LwFPlugin, lwfPlugin } from "../lib/plugins/lwf.ts";
import { checkResume, SHARED_DATA, toyBenchmark } from "./_helpers.ts";

function close(a: number, b: number, tol: number, what: string) {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

/** batchmean KL(softmax(prev/T) ‖ softmax(cur/T)) over `units`, in float64. */
function klByHand(cur: number[][], prev: number[][], units: number[], T: number): number {
  const logSoftmax = (row: number[]) => {
    const z = units.map((u) => row[u] / T);
    const m = Math.max(...z);
    const lse = m + Math.log(z.reduce((a, v) => a + Math.exp(v - m), 0));
    return z.map((v) => v - lse);
  };
  let s = 0;
  cur.forEach((row, i) => {
    const lq = logSoftmax(row);
    const lp = logSoftmax(prev[i]);
    lp.forEach((v, j) => s += Math.exp(v) * (v - lq[j]));
  });
  return s / cur.length;
}

/** A 4-class toy task-incremental benchmark: 2 tasks of 2 classes, labels 0..1 in each. */
function toyTaskIncremental(n = 80) {
  const data = {
    name: "toy",
    classes: 4,
    train: syntheticImages({ n, classes: 4, rows: 8, cols: 8, seed: 1 }),
    test: syntheticImages({ n: n / 2, classes: 4, rows: 8, cols: 8, seed: 101 }),
  };
  const { train, test } = toArrayDatasets(data, { normalize: false });
  return taskIncremental({ train, test, experiences: 2, fixedClassOrder: [0, 1, 2, 3] });
}

Deno.test("LwF distillation term equals a hand-computed batchmean KL over the old units", () => {
  const cur = [[1, -2, 0.5, 3], [0, 0, 2, -1], [4, 1, -3, 0]];
  const prev = [[0.5, -1, 1, 0], [2, 0, 1, 5], [-1, 3, 0, 2]];
  for (const units of [[0, 1], [0, 2], [1, 2, 3], [0, 1, 2, 3]]) {
    for (const T of [1, 2, 3.5]) {
      const ours = tf.tidy(() =>
        distillationLoss(tf.tensor2d(cur), tf.tensor2d(prev), units, T).dataSync()[0]
      );
      close(ours, klByHand(cur, prev, units, T), 1e-5, `units ${units} T ${T}`);
    }
  }
  // Gradients flow to the current logits only through the selected units (also non-contiguous).
  const g = tf.tidy(() =>
    tf.grad((x: tf.Tensor) => distillationLoss(x, tf.tensor2d(prev), [0, 2], 2))(
      tf.tensor2d(cur),
    ).arraySync() as number[][]
  );
  assert.ok(g.every((r) => r[1] === 0 && r[3] === 0) && g.some((r) => r[0] !== 0));
  assert.throws(
    () => distillationLoss(tf.zeros([1, 2]), tf.zeros([1, 2]), [2], 2),
    /unit 2 is out of range/,
  );
});

Deno.test("LwF adds alpha·KL of the frozen teacher and the model; the teacher never changes", async () => {
  const bench = toyBenchmark({ n: 80, classes: 4, experiences: 2 }); // 40 samples each
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const plugin = new LwFPlugin(0.7, 3);
  const seen: { term: number; hand: number; teacher: string }[] = [];
  let snapshot = "";
  const probe: Plugin = {
    afterBackward(ctx) {
      const t = ctx.lossTerms.get("lwf");
      if (!t) return;
      const teacher = plugin.previousModel!;
      const prevOut = tf.tidy(() => teacher.forward(ctx.batch!.x).arraySync() as number[][]);
      const cur = ctx.output!.arraySync() as number[][];
      seen.push({
        term: t.dataSync()[0],
        hand: 0.7 * klByHand(cur, prevOut, [0, 1], 3),
        teacher: JSON.stringify(teacher.stateDict()),
      });
    },
  };
  const s = naive({
    model,
    batchSize: 10,
    seed: 0,
    optimizer: sgd({ lr: 0.1, momentum: 0.9 }),
    plugins: [plugin, probe],
  });
  await s.train(bench.train[0]);
  assert.equal(seen.length, 0, "no term on the first experience");
  snapshot = JSON.stringify(model.stateDict());
  const teacher = plugin.previousModel!;
  assert.equal(teacher.trainableParameters().size, 0, "the teacher's variables are not trainable");
  assert.equal(teacher.training, false, "the teacher runs in eval mode");
  assert.deepEqual([...plugin.previousClasses.get(0)!].sort(), [0, 1]);
  await s.train(bench.train[1]);
  assert.equal(seen.length, 4);
  for (const r of seen) {
    close(r.term, r.hand, 1e-5, "lwf term");
    assert.equal(r.teacher, snapshot, "the teacher holds the model after experience 0");
  }
  close(seen[0].term, 0, 1e-7, "no drift before the first update");
  assert.ok(seen[3].term > 1e-4, `the model drifted from the teacher: ${seen.map((r) => r.term)}`);
  assert.notEqual(JSON.stringify(model.stateDict()), snapshot, "the model itself trained");
  assert.notEqual(plugin.previousModel, teacher, "a new teacher after experience 1");
  assert.deepEqual([...plugin.previousClasses.get(0)!].sort(), [0, 1, 2, 3]);
  s.dispose();
  plugin.dispose();
  model.dispose();
});

/** A multi-head model that is not a Classifier: LwF runs it once per task. */
class Wrapped extends Module {
  constructor(readonly inner: Classifier) {
    super();
    this.child("inner", inner);
  }
  forward(x: tf.Tensor, opts?: ForwardOptions): tf.Tensor {
    return this.inner.forward(x, opts);
  }
  clone(): Wrapped {
    return new Wrapped(this.inner.clone());
  }
}

Deno.test("LwF on multi-head models distills every old task's head on every sample", async () => {
  const bench = toyTaskIncremental();
  for (const wrap of [false, true]) {
    const inner = multiHeadMLP({ input: 64, hidden: [8], outputs: 2, seed: 0 });
    const model = wrap ? new Wrapped(inner) : inner;
    const plugin = lwfPlugin({ alpha: [5, 2] });
    const seen: { term: number; hand: number }[] = [];
    const probe: Plugin = {
      afterBackward(ctx) {
        const t = ctx.lossTerms.get("lwf");
        if (!t) return;
        const teacher = plugin.previousModel!;
        const tInner = (wrap ? (teacher as Wrapped).inner : teacher) as Classifier;
        const [cur, prev] = tf.tidy(() => {
          const x = ctx.batch!.x;
          const h0 = (inner.classifier as MultiHeadClassifier).heads.get(0)!;
          const p0 = (tInner.classifier as MultiHeadClassifier).heads.get(0)!;
          return [
            h0.forward(inner.embed(x)).arraySync() as number[][],
            p0.forward(tInner.embed(x)).arraySync() as number[][],
          ];
        });
        seen.push({ term: t.dataSync()[0], hand: 2 * klByHand(cur, prev, [0, 1], 2) });
      },
    };
    const s = naive({
      model,
      batchSize: 10,
      seed: 0,
      optimizer: sgd({ lr: 0.1, momentum: 0.9 }),
      plugins: [plugin, probe],
    });
    await s.train(bench.train[0]);
    await s.train(bench.train[1]); // task 1's samples; task 0's head is distilled on them
    assert.ok(seen.length > 0);
    for (const r of seen) close(r.term, r.hand, 1e-5, `multi-head term (wrapped: ${wrap})`);
    assert.ok(seen.some((r) => r.term > 1e-5), `the heads drifted: ${seen.map((r) => r.term)}`);
    assert.deepEqual([...plugin.previousClasses.keys()], [0, 1]);
    // Too few alphas for a third experience is an error that says what to do.
    await assert.rejects(s.train(bench.train[0]), /alpha has 2 values but experience 2/);
    s.dispose();
    plugin.dispose();
    model.dispose();
  }
});

Deno.test("LwF options are validated and builders route them", () => {
  assert.throws(() => new LwFPlugin(-1), /LwF alpha must be a finite number ≥ 0/);
  assert.throws(() => new LwFPlugin([]), /empty array/);
  assert.throws(() => new LwFPlugin([1, NaN]), /alpha\[1\] must be a finite number/);
  assert.throws(() => new LwFPlugin(1, 0), /temperature must be a finite number > 0, got 0/);
  const p = new LwFPlugin();
  assert.equal(p.alpha, 1);
  assert.equal(p.temperature, 2);
  assert.equal(lwfPlugin({ alpha: [0, 1] }).alphaFor(1), 1);
  const model = mlp({ input: 64, hidden: [], outputs: 4, seed: 0 });
  const s = lwf({ model, alpha: 0.5, temperature: 4, epochs: 3 });
  assert.equal(s.name, "LwF");
  assert.equal(s.epochs, 3);
  const plugin = s.plugins[0] as LwFPlugin;
  assert.ok(plugin instanceof LwFPlugin && plugin.alpha === 0.5 && plugin.temperature === 4);
  s.dispose();
  model.dispose();
});

Deno.test("LwF checkpoint: a run resumed after experience 0 matches an uninterrupted one", async () => {
  const bench = toyTaskIncremental(120);
  const make = (modelSeed: number) =>
    lwf({
      model: multiHeadMLP({ input: 64, hidden: [16], outputs: 2, seed: modelSeed }),
      alpha: 2,
      batchSize: 8,
      epochs: 2,
      seed: 11,
      optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    });
  await checkResume({
    make,
    train: bench.train,
    test: bench.test,
    evalEach: true, // evaluation adds task 1's head to the model, not to the teacher
    afterRestore: (resumed) => {
      const plugin = resumed.plugins[0] as LwFPlugin;
      assert.equal(plugin.experiences, 1);
      assert.equal(plugin.previousModel!.trainableParameters().size, 0);
      assert.throws(() => plugin.loadState({ version: 2 }, resumed.ctx), /Not an LwFPlugin state/);
    },
  });
});

Deno.test("LwF holds no growing number of tensors and frees everything on dispose", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 });
  const plugin = new LwFPlugin();
  const s = naive({ model, batchSize: 8, seed: 0, plugins: [plugin] });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  const base = tf.memory().numTensors;
  for (let k = 0; k < 3; k++) {
    for (const exp of bench.train) await s.train(exp);
    await s.eval(bench.test);
    assert.equal(tf.memory().numTensors, base, `after round ${k}`);
  }
  s.dispose();
  model.dispose();
  plugin.dispose();
  assert.equal(tf.memory().numTensors, start);
});

Deno.test({
  name: SHARED_DATA
    ? "LwF beats Naive on task-incremental Split MNIST (multi-head; 5 experiences of 1000 samples)"
    : "LwF beats Naive on task-incremental Split MNIST (skipped: no shared MNIST data)",
  ignore: !SHARED_DATA,
  fn: async () => {
    // Task-incremental, LwF's own setting: in class-incremental Split MNIST at this size LwF is
    // within noise of Naive (≈0.19 vs 0.19 at alpha 1; the published gap is 0.23 vs 0.20).
    const bench = subsample(
      await splitMNIST({
        dataDir: SHARED_DATA,
        returnTaskId: true,
        classIdsFromZeroInEachExp: true,
        fixedClassOrder: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      }),
      { trainPerExperience: 1000, testPerExperience: 1000 },
    );
    const run = async (alpha: number | undefined, seed: number) => {
      const model = multiHeadMLP({ hidden: [64], outputs: 2, seed });
      const opts = {
        model,
        epochs: 3,
        batchSize: 32,
        seed,
        optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
      };
      const s = alpha === undefined ? naive(opts) : lwf({ ...opts, alpha, temperature: 2 });
      for (const exp of bench.train) await s.train(exp);
      const r = await s.eval(bench.test);
      s.dispose();
      (s.plugins[0] as LwFPlugin | undefined)?.dispose();
      model.dispose();
      return r.meanAccuracy;
    };
    // Means over three seeds: a single naive run swings by a few points with float rounding.
    const mean = async (alpha: number | undefined) => {
      const accs = [];
      for (const seed of [0, 1, 2]) accs.push(await run(alpha, seed));
      return accs.reduce((a, b) => a + b, 0) / accs.length;
    };
    const naiveAcc = await mean(undefined);
    const lwfAcc = await mean(1);
    console.log(
      `Task-incremental Split MNIST final average accuracy: naive ${naiveAcc}, LwF ${lwfAcc}`,
    );
    assert.ok(lwfAcc > naiveAcc + 0.03, `LwF ${lwfAcc} vs naive ${naiveAcc}`);
  },
});
