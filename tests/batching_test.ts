// Tests of minibatch building: the loaders' reused buffers (only when asked; the template sees
// exact-length views).
// Run: deno test -A tests/batching_test.ts

import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import {
  acquireBatch,
  ArrayDataset,
  type Batch,
  CACHE_AFTER_PASSES,
  inputCacheUsage,
  releaseBatch,
  setInputCacheBudget,
} from "../lib/data/dataset.ts";
import { DatasetLoader } from "../lib/strategy/loader.ts";
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

Deno.test("loaders reuse one buffer only when asked, and the batches stay right", () => {
  const data = byteData(10, 4, 5, false);
  const loader = new DatasetLoader(data, { batchSize: 4, shuffle: false });
  const fresh = [...loader.epoch(new Rng(0))];
  assert.deepEqual(fresh.map((b) => b.n), [4, 4, 2]);
  assert.notEqual(fresh[0].x, fresh[1].x, "without reuse every batch owns its arrays");
  const seen: { x: Float32Array; copy: number[]; n: number }[] = [];
  for (const b of loader.epoch(new Rng(0), true)) {
    seen.push({ x: b.x, copy: Array.from(b.x.subarray(0, b.n * 4)), n: b.n });
  }
  assert.equal(seen[0].x, seen[1].x, "with reuse the arrays are the same");
  assert.equal(seen[2].x, seen[0].x, "the smaller last batch reuses them too");
  seen.forEach((s, k) => assert.deepEqual(s.copy, Array.from(fresh[k].x), `batch ${k}`));

  const memory = byteData(6, 4, 6, false);
  const replay = new ReplayDataLoader(data, memory, { batchSize: 4, batchSizeMem: 3 });
  const a = [...replay.epoch(new Rng(2))];
  assert.notEqual(a[0].x, a[1].x);
  const b: Batch[] = [];
  const copies: number[][] = [];
  for (const batch of replay.epoch(new Rng(2), true)) {
    b.push(batch);
    copies.push(Array.from(batch.x.subarray(0, batch.n * 4)));
  }
  assert.equal(b[0].x, b[1].x);
  copies.forEach((c, k) => assert.deepEqual(c, Array.from(a[k].x), `replay batch ${k}`));
});

Deno.test("with reused buffers, plugins see exact-length batch arrays", async () => {
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

Deno.test("loaders take their reused buffer from a pool: kept across epochs, never shared by two live epochs", () => {
  const data = byteData(10, 4, 5, false);
  const loader = new DatasetLoader(data, { batchSize: 4, shuffle: false });
  const first = [...loader.epoch(new Rng(0), true)].map((b) => b.x);
  const second = [...loader.epoch(new Rng(0), true)].map((b) => b.x);
  // One buffer for a whole epoch, and the same one again in the next epoch (no fresh memory).
  assert.equal(new Set(first).size, 1);
  assert.equal(second[0], first[0]);
  // Two epochs alive at once (an evaluation loop inside a training loop) get their own buffers.
  const a = loader.epoch(new Rng(0), true)[Symbol.iterator]();
  const b = loader.epoch(new Rng(0), true)[Symbol.iterator]();
  const ba = a.next().value!, bb = b.next().value!;
  assert.notEqual(ba.x, bb.x);
  assert.deepEqual(Array.from(ba.x.subarray(0, 16)), Array.from(bb.x.subarray(0, 16)));
  // Leaving an epoch early (break, return) gives its buffer back.
  a.return?.();
  b.return?.();
  const c = acquireBatch(4, 4);
  assert.ok(c.x === ba.x || c.x === bb.x, "a returned buffer is reused");
  assert.equal(c.n, 4);
  releaseBatch(c);
  releaseBatch(c); // twice is harmless: the pool holds it once
  const d = acquireBatch(4, 4), e = acquireBatch(4, 4);
  assert.notEqual(d.x, e.x);
  // A request larger than any pooled buffer gets a fresh one of the right size.
  const big = acquireBatch(1000, 4);
  assert.equal(big.x.length, 4000);
  for (const x of [d, e, big]) releaseBatch(x);
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

Deno.test("epochInto gives epoch's minibatches written into the caller's arrays, for data filled in JavaScript", () => {
  for (const shuffle of [false, true]) {
    const data = byteData(11, 4, 8, false).subset([10, 0, 3, 7, 2, 9, 1, 5, 4, 8, 6]);
    const loader = new DatasetLoader(data, { batchSize: 4, shuffle });
    const want = [...loader.epoch(new Rng(3))];
    const rooms: Float32Array[] = [];
    let k = 0;
    // Checked as they come: y and t are reused, like epoch()'s with reuse.
    for (
      const b of loader.epochInto(new Rng(3), (n) => {
        rooms.push(new Float32Array(n * 4));
        return rooms[rooms.length - 1];
      })!
    ) {
      assert.equal(b.x, rooms[k], "x is the array given");
      assert.deepEqual(Array.from(b.x), Array.from(want[k].x), `x of batch ${k}`);
      assert.deepEqual(Array.from(b.y), Array.from(want[k].y), `y of batch ${k}`);
      assert.deepEqual(Array.from(b.t), Array.from(want[k].t), `t of batch ${k}`);
      k++;
    }
    assert.equal(k, want.length);
  }
  // A dataset that may fill otherwise (a subclass) is read with epoch() instead.
  class Custom extends ArrayDataset {}
  const custom = new Custom({ x: new Float32Array(8), y: [0, 1], inputShape: [4] });
  assert.equal(custom.fillsInJs, false);
  assert.equal(
    new DatasetLoader(custom, { batchSize: 2 }).epochInto(new Rng(0), (n) => new Float32Array(n)),
    undefined,
  );
  assert.equal(byteData(3, 4, 1, false).subset([0, 2]).fillsInJs, true);
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
