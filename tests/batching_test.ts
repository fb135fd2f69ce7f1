// Tests of minibatch building: the loaders' reused buffers (only when asked; the template sees
// exact-length views).
// Run: deno test -A tests/batching_test.ts

import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import {
  ArrayDataset,
  type Batch,
  inputCacheUsage,
  setInputCacheBudget,
} from "../lib/data/dataset.ts";
import { DatasetLoader } from "../lib/strategy/loader.ts";
import { ReplayDataLoader } from "../lib/plugins/replay_loader.ts";
import { Rng } from "../lib/random.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import type { Experience } from "../lib/benchmarks/experience.ts";

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

Deno.test("a dataset converted more than twice its length caches its inputs: same values, budget kept", () => {
  const prev = setInputCacheBudget(0);
  try {
    for (const permute of [false, true]) {
      const order = new Rng(1).permutation(50);
      const expected = Array.from(byteData(50, 12, 3, permute).batch(order).x);
      setInputCacheBudget(inputCacheUsage().held + 50 * 12 * 4);
      const d = byteData(50, 12, 3, permute);
      const held = inputCacheUsage().held;
      for (let pass = 0; pass < 4; pass++) {
        assert.deepEqual(Array.from(d.batch(order).x), expected, `pass ${pass}`);
        // Passes 0-1 convert (100 samples = 2× the length); the 101st conversion builds it.
        const grown = inputCacheUsage().held - held;
        assert.equal(grown, pass < 2 ? 0 : 50 * 12 * 4, `cache after pass ${pass}`);
      }
      setInputCacheBudget(0);
    }
    // Over the budget: converted every time, nothing held.
    const big = byteData(40, 12, 4, false);
    const held = inputCacheUsage().held;
    for (let pass = 0; pass < 3; pass++) big.batch(Int32Array.from({ length: 40 }, (_, i) => i));
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
  const exp = {
    id: 0,
    stream: "train",
    dataset: data,
    classes: [0, 1, 2],
  } as unknown as Experience;
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
