// Tests of minibatch building: loaders plan which samples, the engine's assembler turns plans into
// tensors (in place, by copy through a reused staging array, or as views), plugins see exact-length
// arrays.
// Run: deno test -A tests/batching_test.ts

import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import {
  ArrayDataset,
  CACHE_AFTER_PASSES,
  inputCacheUsage,
  setInputCacheBudget,
} from "../lib/data/dataset.ts";
import { batchOf, type BatchPlan, DatasetLoader } from "../lib/data/loader.ts";
import { BatchAssembler } from "../lib/engine/batches.ts";
import { ReplayDataLoader } from "../lib/plugins/replay_loader.ts";
import { Rng } from "../lib/random.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import type { Experience } from "../lib/data/experience.ts";

/** Bytes, normalized (and optionally permuted) when batched. */
function byteData(n: number, size: number, seed: number, permute: boolean): ArrayDataset {
  const rng = new Rng(seed);
  const x = new Uint8Array(n * size);
  for (let i = 0; i < x.length; i++) x[i] = Math.floor(rng.next() * 256);
  return new ArrayDataset({
    x,
    y: Array.from({ length: n }, (_, i) => i % 3),
    inputShape: [size],
    scale: 1 / 255,
    mean: 0.13,
    std: 0.31,
    permutation: permute ? rng.permutation(size) : undefined,
  });
}

/** A training experience of `data` (classes 0..2), for strategies. */
function experienceOf(data: ArrayDataset): Experience {
  return { id: 0, stream: "train", dataset: data, classes: [0, 1, 2] } as unknown as Experience;
}

Deno.test("a dataset converted more than CACHE_AFTER_PASSES times its length caches its inputs: same values, budget kept", () => {
  const prev = setInputCacheBudget(0);
  try {
    for (const permute of [false, true]) {
      const order = new Rng(1).permutation(50);
      const expected = Array.from(byteData(50, 12, 3, permute).batch(order).x);
      setInputCacheBudget(inputCacheUsage().held + 50 * 12 * 4);
      const d = byteData(50, 12, 3, permute);
      const held = inputCacheUsage().held;
      const after = CACHE_AFTER_PASSES;
      for (let pass = 0; pass < after + 2; pass++) {
        assert.deepEqual(Array.from(d.batch(order).x), expected, `pass ${pass}`);
        // Passes 0..after-1 convert; the next conversion starts the cache.
        const grown = inputCacheUsage().held - held;
        assert.equal(grown, pass < after ? 0 : 50 * 12 * 4, `cache after pass ${pass}`);
      }
      // The cache fills as samples are asked for: a dataset whose batches so far covered only
      // some samples still gives every sample its own values once the cache has started.
      setInputCacheBudget(inputCacheUsage().held + 50 * 12 * 4);
      const part = byteData(50, 12, 3, permute);
      const half = order.subarray(0, 25);
      const heldBefore = inputCacheUsage().held;
      for (let pass = 0; pass < 2 * CACHE_AFTER_PASSES + 2; pass++) part.batch(half);
      assert.equal(inputCacheUsage().held - heldBefore, 50 * 12 * 4, "cache started");
      for (let pass = 0; pass < 2; pass++) {
        assert.deepEqual(Array.from(part.batch(order).x), expected, `partly cached, pass ${pass}`);
      }
      setInputCacheBudget(0);
    }
    // Over the budget: converted every time, nothing held.
    const big = byteData(40, 12, 4, false);
    const held = inputCacheUsage().held;
    for (let pass = 0; pass < CACHE_AFTER_PASSES + 2; pass++) {
      big.batch(Int32Array.from({ length: 40 }, (_, i) => i));
    }
    assert.equal(inputCacheUsage().held, held);
  } finally {
    setInputCacheBudget(prev);
  }
  assert.throws(
    () => setInputCacheBudget(-1),
    /input cache budget must be a number of bytes ≥ 0.*got -1/,
  );
});

Deno.test("loaders plan which samples form each minibatch; batchOf gives their arrays", () => {
  const data = byteData(10, 4, 5, false);
  const loader = new DatasetLoader(data, { batchSize: 4, shuffle: false });
  const plans = [...loader.epoch(new Rng(0))];
  assert.deepEqual(plans.map((p) => p.n), [4, 4, 2]);
  assert.deepEqual(plans.map((p) => Array.from(p.parts[0].indices)), [
    [0, 1, 2, 3],
    [4, 5, 6, 7],
    [8, 9],
  ]);
  for (const p of plans) {
    const b = batchOf(p);
    const want = data.batch(p.parts[0].indices);
    assert.deepEqual([b.n, Array.from(b.x), Array.from(b.y)], [
      want.n,
      Array.from(want.x),
      Array.from(want.y),
    ]);
  }
  // Replay: the current part, then the memory part, in one minibatch.
  const memory = byteData(6, 4, 6, false);
  const replay = new ReplayDataLoader(data, memory, { batchSize: 4, batchSizeMem: 3 });
  for (const p of replay.epoch(new Rng(2))) {
    assert.deepEqual(p.parts.map((q) => q.dataset), [data, memory]);
    const [cur, mem] = p.parts.map((q) => q.dataset.batch(q.indices));
    const b = batchOf(p);
    assert.equal(b.n, cur.n + mem.n);
    assert.deepEqual(Array.from(b.x), [...cur.x, ...mem.x]);
    assert.deepEqual(Array.from(b.y), [...cur.y, ...mem.y]);
  }
});

Deno.test("plugins see exact-length batch arrays", async () => {
  const data = byteData(10, 4, 7, false);
  const exp = experienceOf(data);
  const lengths: number[][] = [];
  const probe: Plugin = {
    name: "probe",
    beforeTrainingIteration: (ctx) => {
      const d = ctx.batch!.data;
      lengths.push([d.n, d.x.length, d.y.length, d.t.length, ctx.batch!.x.shape[0]]);
    },
  };
  const model = mlp({ input: 4, hidden: [5], outputs: 3, seed: 0 });
  const s = naive({
    model,
    optimizer: sgd({ lr: 0.1 }),
    batchSize: 4,
    epochs: 1,
    seed: 0,
    plugins: [probe],
  });
  await s.train(exp);
  assert.deepEqual(lengths, [[4, 16, 4, 4, 4], [4, 16, 4, 4, 4], [2, 8, 2, 2, 2]]);
  s.dispose();
  model.dispose();
});

/** The plan of `indices` of `dataset`. */
function planOf(dataset: ArrayDataset, indices: number[]): BatchPlan {
  return { n: indices.length, parts: [{ dataset, indices: Int32Array.from(indices) }] };
}

Deno.test("the assembler copies through one reused staging array, and no minibatch sees another's values", async () => {
  // A subclass may make tensors while filling: it is never written in place.
  class Custom extends ArrayDataset {}
  const x = Float32Array.from({ length: 40 }, (_, i) => i);
  const data = new Custom({ x, y: Array.from({ length: 10 }, (_, i) => i % 3), inputShape: [4] });
  for (const backend of ["wasm", "cpu"] as const) {
    await setBackend(backend);
    const assembler = new BatchAssembler();
    const a = assembler.assemble(planOf(data, [0, 1, 2]), [4]);
    assert.equal(assembler.lastPath, "copy");
    const b = assembler.assemble(planOf(data, [7, 8]), [4]);
    assert.deepEqual(Array.from(a.x.dataSync()), Array.from(x.subarray(0, 12)), backend);
    assert.deepEqual(Array.from(b.x.dataSync()), Array.from(x.subarray(28, 36)), backend);
    assert.deepEqual([a.n, Array.from(a.data.y), b.data.x.length], [3, [0, 1, 2], 8]);
    for (const t of [a.x, a.y, a.t, b.x, b.y, b.t]) t.dispose();
  }
  await setBackend("wasm");
});

Deno.test("byte inputs convert to (v·scale − mean)/std whether or not samples start on a 32-bit word", () => {
  const n = 7, size = 12;
  const backing = new Uint8Array(n * size + 1);
  for (let i = 0; i < backing.length; i++) backing[i] = (i * 37 + 11) & 255;
  const want = (v: number) => Math.fround((v / 255 - 0.13) / 0.31);
  // Offset 0: read four bytes at a time; offset 1: byte by byte; size 10: rows off the word grid.
  for (const [offset, sz] of [[0, size], [1, size], [0, 10]]) {
    const x = backing.subarray(offset, offset + n * sz);
    const d = new ArrayDataset({
      x,
      y: new Int32Array(n),
      inputShape: [sz],
      scale: 1 / 255,
      mean: 0.13,
      std: 0.31,
    });
    const got = d.batch(Int32Array.from([6, 0, 3, 5, 1, 2, 4])).x;
    [6, 0, 3, 5, 1, 2, 4].forEach((i, k) => {
      for (let j = 0; j < sz; j++) {
        assert.ok(
          Math.abs(got[k * sz + j] - want(x[i * sz + j])) < 1e-6,
          `offset ${offset}, size ${sz}, sample ${i}, feature ${j}`,
        );
      }
    });
  }
});

Deno.test("fillBatch converts a minibatch at once with the same bits as sample by sample", () => {
  // Every pair of bytes occurs, in samples of 16 bytes (4 samples at a time, then a tail).
  const size = 16, n = 65536 * 2 / size;
  const x = new Uint8Array(n * size);
  for (let h = 0; h < 65536; h++) {
    x[2 * h] = h & 255;
    x[2 * h + 1] = h >>> 8;
  }
  const transforms = [
    { scale: 1 / 255, mean: 0.2860, std: 0.3530 },
    { scale: 1, mean: 0, std: 1 },
    { scale: -1 / 255, mean: 0.5, std: 0.25 },
    // Values that overflow float32.
    { scale: 1e38, mean: 0, std: 1e-3 },
  ];
  for (const t of transforms) {
    const d = new ArrayDataset({ x, y: new Int32Array(n), inputShape: [size], ...t });
    const order = new Rng(2).permutation(n);
    const bySample = new Float32Array(n * size);
    for (let k = 0; k < n; k++) d.fillX(order[k], bySample, k * size);
    const whole = new Float32Array(n * size);
    d.fillBatch(order, whole);
    const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
    assert.deepEqual(bits(whole), bits(bySample), `transform ${JSON.stringify(t)}`);
    // From an offset (one float in), and through a subset (5 samples: 4 at once, then 1).
    const shifted = new Float32Array(1 + 10 * size);
    d.fillBatch(order.subarray(0, 10), shifted, 1);
    assert.deepEqual(bits(shifted.subarray(1)), bits(bySample.subarray(0, 10 * size)));
    const sub = d.subset(order.subarray(0, 40));
    const viaSubset = new Float32Array(5 * size);
    sub.fillBatch([39, 0, 7, 12, 3], viaSubset);
    [39, 0, 7, 12, 3].forEach((i, k) =>
      assert.deepEqual(
        bits(viaSubset.subarray(k * size, (k + 1) * size)),
        bits(bySample.subarray(i * size, (i + 1) * size)),
      )
    );
  }
  const d = byteData(10, 12, 3, false);
  assert.throws(
    () => d.fillBatch([3, 10], new Float32Array(24)),
    /Sample index 10 is out of range/,
  );
  assert.throws(() => d.subset([1, 2]).fillBatch([2], new Float32Array(12)), /Sample index 2/);
});

Deno.test("the assembler writes inputs in place for data filled in JavaScript, shuffled or not", () => {
  for (const shuffle of [false, true]) {
    const data = byteData(11, 4, 8, false).subset([10, 0, 3, 7, 2, 9, 1, 5, 4, 8, 6]);
    const loader = new DatasetLoader(data, { batchSize: 4, shuffle });
    const assembler = new BatchAssembler();
    let k = 0;
    for (const plan of loader.epoch(new Rng(3))) {
      const want = batchOf(plan);
      tf.tidy(() => {
        const b = assembler.assemble(plan, [4]);
        assert.equal(assembler.lastPath, "in place");
        assert.deepEqual(Array.from(b.x.dataSync()), Array.from(want.x), `x of batch ${k}`);
        assert.deepEqual(Array.from(b.data.x), Array.from(want.x), `data.x of batch ${k}`);
        assert.deepEqual(Array.from(b.y.dataSync()), Array.from(want.y), `y of batch ${k}`);
        assert.deepEqual(Array.from(b.data.t), Array.from(want.t), `t of batch ${k}`);
      });
      k++;
    }
    assert.equal(k, 3);
  }
  class Custom extends ArrayDataset {}
  const custom = new Custom({ x: new Float32Array(8), y: [0, 1], inputShape: [4] });
  assert.equal(custom.fillsInJs, false);
  assert.equal(byteData(3, 4, 1, false).subset([0, 2]).fillsInJs, true);
  const assembler = new BatchAssembler();
  tf.tidy(() => {
    assembler.assemble(planOf(custom, [1, 0]), [4]);
  });
  assert.equal(assembler.lastPath, "copy");
});

Deno.test("inputs written into the tensor's memory stay readable as data.x when the heap grows", async () => {
  const data = byteData(12, 4, 9, false);
  const exp = experienceOf(data);
  const checks: boolean[] = [];
  let big: tf.Tensor | undefined;
  let grow = false, grew = false;
  const heapBytes = () =>
    (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength;
  const probe: Plugin = {
    name: "probe",
    afterForward: () => {},
    afterBackward: (ctx) => {
      // A 64 MiB tensor grows the wasm heap: a view taken before would now be empty.
      if (grow && !big) {
        const bytes = heapBytes();
        big = tf.keep(tf.zeros([16 * 2 ** 20]));
        grew = heapBytes() > bytes;
      }
      const d = ctx.batch!.data;
      checks.push(
        d.x.length === d.n * 4 &&
          Array.from(d.x).every((v, i) => v === ctx.batch!.x.dataSync()[i]),
      );
    },
    afterEvalIteration: (ctx) => {
      const d = ctx.batch!.data;
      checks.push(Array.from(d.x).every((v, i) => v === ctx.batch!.x.dataSync()[i]));
    },
  };
  const model = mlp({ input: 4, hidden: [5], outputs: 3, seed: 0 });
  const s = naive({
    model,
    batchSize: 5,
    evalBatchSize: 5,
    epochs: 1,
    seed: 0,
    plugins: [probe],
  });
  await s.train(exp); // the first run makes the strategy's lasting state
  const before = tf.memory().numTensors;
  checks.length = 0;
  grow = true;
  await s.train(exp);
  await s.eval(exp);
  assert.ok(grew, "the heap grew during the first iteration");
  assert.deepEqual(checks, [true, true, true, true, true, true]);
  big?.dispose();
  // The tensors the inputs were written into are gone with their iterations.
  assert.equal(tf.memory().numTensors, before);
  s.dispose();
  model.dispose();
});
