import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { splitOnline } from "../lib/benchmarks/mod.ts";
import { extractFeatures } from "../lib/models/features.ts";
import { mlp } from "../lib/models/mlp.ts";
import { classMeansOf } from "../lib/models/ncm.ts";
import { Linear } from "../lib/nn/layers.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { supConLoss } from "../lib/plugins/er_aml.ts";
import type { SampleMemory } from "../lib/plugins/memory.ts";
import { scr, scrLoss, SCRPlugin, scrPlugin } from "../lib/plugins/scr.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import {
  assertNoTensorGrowth,
  checkOnlineResume,
  onlineSplitMNIST,
  SHARED_DATA,
  toyBenchmark,
} from "./_helpers.ts";

const close = (a: number, b: number, tol = 1e-5) =>
  assert.ok(Math.abs(a - b) < tol, `${a} vs ${b}`);

Deno.test("SCR loss: the hand-computed value on 4 samples, and supConLoss with the anchor left out", () => {
  // Two views of two samples: a = (1, 0) of class 0 and b = (0, 1) of class 1, each view equal
  // to its sample. Anchor a's softmax is over its other view (s = 1/T) and b's two views (0):
  // its one positive has log p = 1/T − log(e^{1/T} + 2); the same for every row by symmetry.
  const a = [1, 0];
  const b = [0, 1];
  const f = tf.tensor2d([a, b, a, b]);
  const y = [0, 1, 0, 1];
  close(scrLoss(f, y, 1, 1).dataSync()[0], Math.log(Math.E + 2) - 1);
  // T = 0.5, base 0.25: −2 (2 − log(e² + 2)).
  close(scrLoss(f, y, 0.5, 0.25).dataSync()[0], -2 * (2 - Math.log(Math.exp(2) + 2)));
  // A general case, against ER-AML's supConLoss: each row as the anchor against all the other
  // rows (the anchor left out of the features) gives that row's term; SCR's loss is their mean.
  const deg = (d: number) => [Math.cos((d * Math.PI) / 180), Math.sin((d * Math.PI) / 180)];
  const rows = [deg(0), deg(80), deg(20), deg(130)];
  const ry = [0, 1, 0, 1];
  const ours = scrLoss(tf.tensor2d(rows), ry).dataSync()[0];
  let mean = 0;
  for (let i = 0; i < 4; i++) {
    const others = rows.filter((_, j) => j !== i);
    const oy = ry.filter((_, j) => j !== i);
    mean += supConLoss(tf.tensor2d([rows[i]]), tf.tensor2d(others), [ry[i]], oy).dataSync()[0] / 4;
  }
  close(ours, mean, 1e-4);
  // The same rows with the anchor kept in the features differ: supConLoss is not SCR's loss.
  const kept = supConLoss(tf.tensor2d(rows), tf.tensor2d(rows), ry, ry).dataSync()[0];
  assert.ok(Math.abs(kept - ours) > 1e-2, `${kept} vs ${ours}`);
  assert.throws(() => scrLoss(f, [0, 1, 2, 1]), /row 0 \(class 0\) has no other row/);
  assert.throws(() => scrLoss(f, [0, 1]), /2 labels for features of shape \[4,2\]/);
  f.dispose();
});

Deno.test("SCR in a run: the loss is the contrastive one, the head is trained, evaluation is the NCM of the memory", async () => {
  const bench = splitOnline(toyBenchmark({ n: 120, experiences: 2 }), { experienceSize: 10 });
  const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 });
  const plugin = new SCRPlugin({ memSize: 20, batchSizeMem: 5, projectionSize: 8, noise: 0.1 });
  const seen: { n: number; loss: number; scr?: number; params: number }[] = [];
  const probe: Plugin = {
    name: "probe",
    beforeBackward: (ctx) => {
      seen.push({
        n: ctx.batch!.n,
        loss: ctx.loss!.dataSync()[0],
        scr: ctx.lossTerms.get("scr")?.dataSync()[0],
        params: [...ctx.params.keys()].filter((k) => k.startsWith("scr.projection.")).length,
      });
    },
  };
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [plugin, probe] });
  for (const e of bench.train.slice(0, 6)) await s.train(e);
  assert.equal(seen[0].n, 10, "nothing replayed before the memory holds batchSizeMem");
  assert.ok(seen.slice(1).every((r) => r.n === 15), "then 5 memory samples with each minibatch");
  for (const r of seen) {
    close(r.loss, r.scr!);
    assert.equal(r.params, 4, "the projection's 2 weights and 2 biases are optimized");
  }
  assert.deepEqual(plugin.projection!.namedParameters().get("2.weight")!.shape, [16, 8]);
  const before = plugin.projection!.namedParameters().get("0.weight")!.dataSync().slice();
  await s.train(bench.train[6]);
  const after = plugin.projection!.namedParameters().get("0.weight")!.dataSync();
  assert.ok(after.some((v, i) => v !== before[i]), "the optimizer moves the projection head");

  // Evaluation: the NCM logits of the features against the memory's class means.
  const outputs: tf.Tensor[] = [];
  const grab: Plugin = {
    name: "grab",
    afterEvalForward: (ctx) => void outputs.push(tf.keep(tf.clone(ctx.output!))),
  };
  const s2 = naive({ model, batchSize: 10, seed: 0, plugins: [plugin, grab] });
  await s2.eval([bench.test[0]]);
  const memory = plugin.buffer as SampleMemory;
  const expected = classMeansOf(extractFeatures(model, memory), memory.targets);
  assert.deepEqual([...plugin.ncm.classMeans.keys()], [...expected.keys()]);
  for (const [c, m] of expected) {
    plugin.ncm.classMeans.get(c)!.forEach((v, k) => close(v, m[k]));
  }
  const x = bench.test[0].dataset;
  const first = extractFeatures(model, x, { indices: [0, 1] });
  const want = tf.tidy(() =>
    plugin.ncm.forward(tf.tensor2d(first.values, [2, first.dim]), 4).arraySync() as number[][]
  );
  const got = tf.tidy(() => tf.slice(outputs[0], 0, 2).arraySync() as number[][]);
  want.forEach((row, i) => row.forEach((v, k) => close(got[i][k], v, 1e-4)));
  tf.dispose(outputs);
  s.dispose();
  s2.dispose();
  plugin.dispose();
  model.dispose();

  // A model without features before its head is refused before training.
  const bare = new Linear(64, 4, { seed: 0 });
  const s3 = naive({ model: bare, batchSize: 10, plugins: [new SCRPlugin()] });
  await assert.rejects(s3.train(bench.train[0]), /SCR trains and classifies the features/);
  s3.dispose();
  bare.dispose();
});

Deno.test("SCR: options, positional arguments, builders and errors", () => {
  const p = new SCRPlugin(300, 20, 0.2);
  assert.deepEqual([p.memSize, p.batchSizeMem, p.temperature, p.baseTemperature], [
    300,
    20,
    0.2,
    0.07,
  ]);
  const d = scrPlugin();
  assert.deepEqual([d.memSize, d.batchSizeMem, d.temperature, d.noise, d.projectionSize], [
    100,
    100,
    0.1,
    0,
    128,
  ]);
  assert.throws(() => scrPlugin({ temprature: 1 } as never), /unknown option "temprature"/);
  assert.throws(() => new SCRPlugin({ temperature: 0 }), /temperature must be a number > 0/);
  assert.throws(() => new SCRPlugin({ noise: -1 }), /noise must be a number ≥ 0/);
  assert.throws(() => new SCRPlugin({ projectionSize: 0 }), /projectionSize must be an integer/);
  const model = mlp({ input: 4, hidden: [3], outputs: 2, seed: 0 });
  const s = scr({ model, memSize: 5, batchSizeMem: 3, noise: 0.5 });
  assert.equal(s.name, "SCR");
  assert.equal((s.plugins[0] as SCRPlugin).noise, 0.5);
  s.dispose();
  model.dispose();
});

Deno.test("SCR checkpoint: a run resumed mid-stream matches the uninterrupted one", async () => {
  const make = (modelSeed: number) =>
    scr({
      model: mlp({ input: 64, hidden: [16], outputs: 4, seed: modelSeed }),
      memSize: 20,
      batchSizeMem: 5,
      projectionSize: 8,
      noise: 0.1,
      batchSize: 10,
      seed: 5,
      optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    });
  await checkOnlineResume(make, (full, resumed) => {
    const [pf, pr] = [full.plugins[0], resumed.plugins[0]] as SCRPlugin[];
    assert.deepEqual(pr.state(), pf.state());
    assert.deepEqual(pr.ncm.state(), pf.ncm.state());
  });
});

Deno.test("SCR: no tensor growth across experiences, everything freed by dispose()", async () => {
  await assertNoTensorGrowth(new SCRPlugin({ memSize: 30, batchSizeMem: 5, noise: 0.1 }));
});

const realName = SHARED_DATA
  ? "SCR beats Naive on online class-incremental Split MNIST"
  : "SCR on online Split MNIST [skipped: shared datasets not found]";
Deno.test({ name: realName, ignore: !SHARED_DATA }, async () => {
  // As ER-ACE's and ER-AML's runs: 500 training samples per experience in online experiences of
  // 10, one epoch, minibatches of 10 with memory samples replayed, final accuracy on 200 test
  // samples per experience.
  const bench = await onlineSplitMNIST(500);
  const run = async (kind: "naive" | "scr") => {
    const model = mlp({ hidden: [100, 100], seed: 1 });
    const opts = { model, batchSize: 10, seed: 4, optimizer: sgd({ lr: 0.05 }) };
    const s = kind === "naive"
      ? naive(opts)
      : scr({ ...opts, memSize: 100, batchSizeMem: 10, projectionSize: 64 });
    for (const exp of bench.train) await s.train(exp);
    const r = await s.eval(bench.test);
    s.dispose();
    model.dispose();
    return r;
  };
  const base = await run("naive");
  const ours = await run("scr");
  console.log(
    `online class-incremental Split MNIST, final accuracy: Naive ${base.accuracy.toFixed(3)}, ` +
      `SCR ${ours.accuracy.toFixed(3)} (per experience ${
        ours.experiences.map((e) => e.accuracy.toFixed(2)).join(" ")
      })`,
  );
  assert.ok(ours.accuracy > base.accuracy + 0.3, `SCR ${ours.accuracy} vs Naive ${base.accuracy}`);
});
