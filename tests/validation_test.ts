import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import { ArrayDataset } from "../lib/data/dataset.ts";
import { classIncremental, splitMNIST } from "../lib/benchmarks/mod.ts";
import { benchmarkWithValidationStream } from "../lib/benchmarks/validation.ts";
import { holdOutValidation } from "../lib/repro/build.ts";
import { SHARED_DATA, toyBenchmark } from "./_helpers.ts";

/** 2 experiences of 2 classes; class c has 10·(c+1) samples; x[i] = i (to find them back). */
function unbalanced() {
  const y: number[] = [];
  for (let c = 0; c < 4; c++) for (let k = 0; k < 10 * (c + 1); k++) y.push(c);
  const d = new ArrayDataset({ x: Float32Array.from(y, (_, i) => i), y, inputShape: [1] });
  return classIncremental({
    train: d,
    test: d,
    experiences: 2,
    fixedClassOrder: [0, 1, 2, 3],
  });
}

/** The x value (original index) of each sample of a dataset. */
function ids(d: { length: number; batch(i: Int32Array): { x: Float32Array } }): number[] {
  return Array.from(d.batch(Int32Array.from({ length: d.length }, (_, i) => i)).x);
}

function countBy(d: { targets: Int32Array }): Record<number, number> {
  const out: Record<number, number> = {};
  for (const c of d.targets) out[c] = (out[c] ?? 0) + 1;
  return out;
}

Deno.test("class-balanced split: ⌊size · n_c⌋ of every class held out, the rest trained on", () => {
  const b = benchmarkWithValidationStream(unbalanced(), {
    size: 0.3,
    classBalanced: true,
    seed: 3,
  });
  assert.equal(b.valid.length, 2);
  assert.equal(b.valid.name, "valid");
  // Classes of 10, 20, 30, 40 samples: 3, 6, 9, 12 held out.
  assert.deepEqual(countBy(b.valid[0].dataset), { 0: 3, 1: 6 });
  assert.deepEqual(countBy(b.valid[1].dataset), { 2: 9, 3: 12 });
  assert.deepEqual(countBy(b.train[0].dataset), { 0: 7, 1: 14 });
  assert.deepEqual(countBy(b.train[1].dataset), { 2: 21, 3: 28 });
  for (const k of [0, 1]) {
    const v = b.valid[k], t = b.train[k];
    assert.equal(v.stream, "valid");
    assert.equal(t.stream, "train");
    assert.equal(v.id, k);
    assert.deepEqual(v.classes, t.classes);
    // Disjoint, and together the whole experience.
    const all = [...ids(v.dataset), ...ids(t.dataset)].sort((a, b) => a - b);
    const orig = unbalanced().train[k];
    assert.deepEqual(all, ids(orig.dataset).sort((a, b) => a - b));
  }
  assert.deepEqual(b.classesPerExperience, [[0, 1], [2, 3]]);
  assert.equal(b.test, b.test, "the test stream is the same object");
});

Deno.test("same seed, same split; another seed, another one", () => {
  const split = (seed: number, classBalanced: boolean) =>
    benchmarkWithValidationStream(unbalanced(), { size: 0.25, classBalanced, seed, shuffle: true })
      .valid.map((e) => ids(e.dataset));
  for (const cb of [true, false]) {
    assert.deepEqual(split(5, cb), split(5, cb));
    assert.notDeepEqual(split(5, cb), split(6, cb));
  }
});

Deno.test("random split: the last ⌊size · n⌋ samples without shuffle (Avalanche), or the first", () => {
  const base = unbalanced();
  const b = benchmarkWithValidationStream(base, { size: 0.1 });
  // Experience 0 has 30 samples: the last 3 (in dataset order) are held out, as Avalanche 0.6.
  const order0 = ids(base.train[0].dataset);
  assert.deepEqual(ids(b.valid[0].dataset), order0.slice(27));
  assert.deepEqual(ids(b.train[0].dataset), order0.slice(0, 27));
  const f = benchmarkWithValidationStream(base, { size: 0.1, heldOut: "first" });
  assert.deepEqual(ids(f.valid[0].dataset), order0.slice(0, 3));
  assert.deepEqual(ids(f.train[0].dataset), order0.slice(3));
  const c = benchmarkWithValidationStream(base, { size: 5, shuffle: true, seed: 1 });
  assert.deepEqual(c.valid.map((e) => e.dataset.length), [5, 5]);
  assert.deepEqual(c.train.map((e) => e.dataset.length), [25, 65]);
});

Deno.test("holdOutValidation is Avalanche's unshuffled split: the last samples held out", () => {
  const base = toyBenchmark({ n: 200 });
  const v = holdOutValidation(base, 0.05);
  for (const [k, e] of base.train.entries()) {
    const n = e.dataset.length, held = Math.floor(0.05 * n);
    // As benchmark_with_validation_stream without shuffle: training keeps 0..n−held−1, in order.
    const want = ids(e.dataset.subset(Int32Array.from({ length: n - held }, (_, i) => i)));
    assert.deepEqual(ids(v.train[k].dataset), want);
    assert.deepEqual(v.train[k].classes, e.classes);
    assert.equal(v.valid![k].dataset.length, held);
  }
  assert.equal(holdOutValidation(base, 0), base);
  assert.throws(() => holdOutValidation(base, 1), /validationSize must be a fraction in \[0, 1\)/);
});

Deno.test("bad sizes are errors naming the value and the fix", () => {
  const b = unbalanced();
  assert.throws(
    () => benchmarkWithValidationStream(b, { size: 2.5 }),
    /size must be a fraction in \[0, 1\) or a number of samples ≥ 1, got 2.5/,
  );
  assert.throws(
    () => benchmarkWithValidationStream(b, { size: 3, classBalanced: true }),
    /class-balanced split takes size as a fraction/,
  );
  assert.throws(
    () => benchmarkWithValidationStream(b, { size: 0.01 }),
    /leaves experience 0 \(30 samples\) no validation samples/,
  );
  assert.throws(() => benchmarkWithValidationStream(b, { size: 100 }), /more than the 30 samples/);
  assert.throws(
    () => benchmarkWithValidationStream(b, { sise: 0.1 } as never),
    /did you mean "size"/,
  );
});

Deno.test({
  name: "Split MNIST: a 10% class-balanced validation stream of every digit",
  ignore: !SHARED_DATA,
  fn: async () => {
    const bench = await splitMNIST({ experiences: 5, seed: 0, dataDir: SHARED_DATA });
    const b = benchmarkWithValidationStream(bench, { size: 0.1, classBalanced: true, seed: 0 });
    for (const [k, e] of bench.train.entries()) {
      const all = countBy(e.dataset), held = countBy(b.valid[k].dataset);
      for (const c of e.classes) assert.equal(held[c], Math.floor(0.1 * all[c]), `class ${c}`);
      assert.equal(b.train[k].dataset.length + b.valid[k].dataset.length, e.dataset.length);
    }
  },
});
