import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { Linear } from "../lib/nn/layers.ts";
import { mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import {
  erAml,
  ERAMLPlugin,
  erAmlPlugin,
  samplePosNeg,
  scaleByNorm,
  supConLoss,
} from "../lib/plugins/er_aml.ts";
import { Rng } from "../lib/random.ts";
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

Deno.test("AML loss: the hand-computed value on 4 samples (2 anchors counted twice against [pos; neg])", () => {
  // Anchors a = (1, 0) of class 0 and b = (0, 1) of class 1, each counted twice as in Avalanche;
  // features [pos_a, pos_b, neg_a, neg_b] = [(1, 0), (0, 1), (0, 1), (1, 0)] of classes
  // [0, 1, 1, 0]. Row a: similarities [1, 0, 0, 1] / temp, its positives pos_a and neg_b (both
  // class 0), each log p = 1/temp − log(2 e^{1/temp} + 2); b the same by symmetry. So the loss is
  // −(temp / baseTemp) (1/temp − log(2 + 2 e^{1/temp})).
  const a = [1, 0];
  const b = [0, 1];
  const anchors = tf.tensor2d([a, b, a, b]);
  const features = tf.tensor2d([a, b, b, a]);
  const ay = [0, 1, 0, 1];
  const fy = [0, 1, 1, 0];
  const l1 = supConLoss(anchors, features, ay, fy, 1, 1);
  close(l1.dataSync()[0], Math.log(2 + 2 * Math.E) - 1);
  const l2 = supConLoss(anchors, features, ay, fy, 0.5, 0.25);
  close(l2.dataSync()[0], -2 * (2 - Math.log(2 + 2 * Math.exp(2))));
  // Avalanche's defaults, temp 0.1 and base 0.07, on a rotated case: a at 0°, b at 90°,
  // features at 30° (class 0) and 120° (class 1) for both anchors' [pos; neg].
  const deg = (d: number) => [Math.cos((d * Math.PI) / 180), Math.sin((d * Math.PI) / 180)];
  const f = [deg(30), deg(120), deg(120), deg(30)];
  const l3 = supConLoss(tf.tensor2d([a, b, a, b]), tf.tensor2d(f), ay, fy);
  const row = (x: number[], own: number) => {
    const s = f.map((v) => (v[0] * x[0] + v[1] * x[1]) / 0.1);
    const z = Math.log(s.reduce((acc, v) => acc + Math.exp(v), 0));
    const pos = f.map((_, j) => j).filter((j) => fy[j] === own);
    return pos.reduce((acc, j) => acc + s[j] - z, 0) / pos.length;
  };
  const expected = -(0.1 / 0.07) * (row(a, 0) + row(b, 1) + row(a, 0) + row(b, 1)) / 4;
  close(l3.dataSync()[0], expected, 1e-4);
  assert.throws(() => supConLoss(anchors, features, [2, 1, 0, 1], fy), /anchor 0 \(class 2\)/);
  const u = scaleByNorm(tf.tensor2d([[3, 4]]));
  close(u.dataSync()[0], 3 / (5 + 1e-5));
  tf.dispose([anchors, features, l1, l2, l3, u]);
});

Deno.test("AML positives and negatives: same class but not itself, another class of the same task", () => {
  // Pool: 0:(y0,t0) 1:(y1,t0) 2:(y0,t1) 3:(y1,t1) 4:(y0,t0, the anchor itself) 5:(y2,t0)
  const poolY = [0, 1, 0, 1, 0, 2];
  const poolT = [0, 0, 1, 1, 0, 0];
  const rng = new Rng(0);
  const counts = new Map<string, number>();
  for (let k = 0; k < 400; k++) {
    const pn = samplePosNeg([0, 3], [0, 0], [4, -1], poolY, poolT, true, rng);
    assert.deepEqual(pn.anchors, [0], "an anchor of class 3 has no positive: left out");
    assert.ok([0, 2].includes(pn.pos[0]), `positive ${pn.pos[0]}`);
    assert.ok([1, 5].includes(pn.neg[0]), `negative of task 0 ${pn.neg[0]}`);
    const key = `${pn.pos[0]},${pn.neg[0]}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  assert.equal(counts.size, 4, "every valid pair is drawn");
  const any = samplePosNeg([0], [0], [4], poolY, poolT, false, new Rng(1));
  assert.ok([1, 3, 5].includes(any.neg[0]));
  assert.deepEqual(samplePosNeg([0], [0], [0], [0], [0], true, rng).anchors, []);
});

Deno.test("ER-AML in a run: CE before replay, then the metric term plus the replayed CE in place of the criterion", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const model = mlp({ input: 64, hidden: [8], outputs: 6, seed: 0 });
  const plugin = new ERAMLPlugin({ memSize: 12, batchSizeMem: 5 });
  const seen: { exp: number; n: number; loss: number; aml?: number; ce: number; mem: number }[] =
    [];
  const probe: Plugin = {
    name: "probe",
    beforeBackward: (ctx) => {
      const ce = ctx.criterion(ctx.output!, ctx.batch!.y).dataSync()[0];
      // The replayed rows' cross-entropy (rows 8 on), by hand.
      const out = ctx.output!.arraySync() as number[][];
      const y = ctx.batch!.data.y;
      const rows = out.slice(8);
      const mem = rows.reduce((acc, o, k) => {
        const z = Math.log(o.reduce((a, v) => a + Math.exp(v), 0));
        return acc - (o[y[8 + k]] - z);
      }, 0) / Math.max(rows.length, 1);
      seen.push({
        exp: ctx.clock.trainExperiences,
        n: ctx.batch!.n,
        loss: ctx.loss!.dataSync()[0],
        aml: ctx.lossTerms.get("aml")?.dataSync()[0],
        ce,
        mem,
      });
    },
  };
  const s = naive({ model, batchSize: 8, seed: 0, plugins: [plugin, probe] });
  for (const e of bench.train) await s.train(e);
  for (const r of seen.filter((r) => r.exp === 0)) {
    assert.equal(r.n, 8);
    assert.equal(r.aml, undefined);
    close(r.loss, r.ce);
  }
  const later = seen.filter((r) => r.exp > 0);
  assert.ok(later.length > 0 && later.every((r) => r.n === 13));
  for (const r of later) {
    assert.ok(Number.isFinite(r.aml!));
    close(r.loss, r.aml!);
    assert.notEqual(r.loss, r.ce);
    // The metric term is ≥ 0 (a mean of −log-probabilities) and adds to the replayed CE.
    assert.ok(r.aml! - r.mem > 1e-3, `AML ${r.aml} vs replayed CE ${r.mem}`);
  }
  s.dispose();
  model.dispose();
  // A model without features before its head is refused before training.
  const bare = new Linear(64, 6, { seed: 0 });
  const s2 = naive({ model: bare, batchSize: 8, plugins: [new ERAMLPlugin()] });
  await assert.rejects(s2.train(bench.train[0]), /needs the features before the head/);
  s2.dispose();
  bare.dispose();
});

Deno.test("ER-AML: options, positional arguments, builders and errors", () => {
  const p = new ERAMLPlugin(300, 20, 0.2, 0.1, false);
  assert.deepEqual([p.memSize, p.batchSizeMem, p.temp, p.baseTemp, p.sameTaskNeg], [
    300,
    20,
    0.2,
    0.1,
    false,
  ]);
  const d = erAmlPlugin();
  assert.deepEqual([d.memSize, d.batchSizeMem, d.temp, d.baseTemp, d.sameTaskNeg], [
    200,
    10,
    0.1,
    0.07,
    true,
  ]);
  assert.throws(() => erAmlPlugin({ tmp: 1 } as never), /unknown option "tmp"/);
  assert.throws(() => new ERAMLPlugin({ temp: 0 }), /temp must be a number > 0/);
  const model = mlp({ input: 4, hidden: [3], outputs: 2, seed: 0 });
  const s = erAml({ model, memSize: 5, batchSizeMem: 3, baseTemp: 0.5 });
  assert.equal(s.name, "ER_AML");
  assert.equal((s.plugins[0] as ERAMLPlugin).baseTemp, 0.5);
  s.dispose();
  model.dispose();
});

Deno.test("ER-AML checkpoint: a run resumed mid-stream matches the uninterrupted one", async () => {
  const make = (modelSeed: number) =>
    erAml({
      model: mlp({ input: 64, hidden: [16], outputs: 4, seed: modelSeed }),
      memSize: 20,
      batchSizeMem: 5,
      batchSize: 10,
      seed: 5,
      optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    });
  await checkOnlineResume(make, (full, resumed) => {
    const [pf, pr] = [full.plugins[0], resumed.plugins[0]] as ERAMLPlugin[];
    assert.deepEqual(pr.state(), pf.state());
  });
});

Deno.test("ER-AML: no tensor growth across experiences, everything freed by dispose()", async () => {
  await assertNoTensorGrowth(new ERAMLPlugin(30, 5));
});

const realName = SHARED_DATA
  ? "ER-AML beats Naive on online class-incremental Split MNIST"
  : "ER-AML on online Split MNIST [skipped: shared datasets not found]";
Deno.test({ name: realName, ignore: !SHARED_DATA }, async () => {
  // As ER-ACE's run (er_ace_test.ts): 500 training samples per experience in online
  // experiences of 10, one epoch, minibatches of 10, a reservoir of 50 replayed 10 at a time.
  const bench = await onlineSplitMNIST(500);
  const run = async (kind: "naive" | "aml") => {
    const model = mlp({ hidden: [100, 100], seed: 1 });
    const opts = { model, batchSize: 10, seed: 4, optimizer: sgd({ lr: 0.05 }) };
    const s = kind === "naive" ? naive(opts) : erAml({ ...opts, memSize: 50, batchSizeMem: 10 });
    for (const exp of bench.train) await s.train(exp);
    const r = await s.eval(bench.test);
    s.dispose();
    model.dispose();
    return r;
  };
  const base = await run("naive");
  const ours = await run("aml");
  console.log(
    `online class-incremental Split MNIST, final accuracy: Naive ${base.accuracy.toFixed(3)}, ` +
      `ER-AML ${ours.accuracy.toFixed(3)} (per experience ${
        ours.experiences.map((e) => e.accuracy.toFixed(2)).join(" ")
      })`,
  );
  assert.ok(
    ours.accuracy > base.accuracy + 0.3,
    `ER-AML ${ours.accuracy} vs Naive ${base.accuracy}`,
  );
});
