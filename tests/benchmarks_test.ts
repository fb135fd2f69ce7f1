import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { ArrayDataset, type Dataset } from "../lib/data/dataset.ts";
import {
  classIncremental,
  composePermutations,
  FMNIST_STATS,
  imageGeometry,
  MNIST_STATS,
  newInstances,
  type OnlineExperience,
  permuted,
  permutedMNIST,
  randomPermutations,
  rotated,
  rotatedMNIST,
  rotateImages,
  splitFMNIST,
  splitMNIST,
  splitOnline,
  subsample,
  taskIncremental,
  toArrayDatasets,
} from "../lib/benchmarks/mod.ts";
import { syntheticImages } from "../datasets/mod.ts";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/** A dataset with `counts[c]` samples of class c, features = [index, class, ...pattern]. */
function toy(counts: number[], features = 6, seed = 0): ArrayDataset {
  const y: number[] = [];
  counts.forEach((n, c) => {
    for (let k = 0; k < n; k++) y.push(c);
  });
  // Interleave classes deterministically so that class blocks are not contiguous.
  const order = y.map((_, i) => i).sort((a, b) =>
    ((a * 7919 + seed) % 97) - ((b * 7919 + seed) % 97) || a - b
  );
  const ys = order.map((i) => y[i]);
  const x = new Float32Array(ys.length * features);
  ys.forEach((c, i) => {
    x[i * features] = i;
    x[i * features + 1] = c;
    for (let k = 2; k < features; k++) x[i * features + k] = (i * 31 + k * 17) % 101;
  });
  return new ArrayDataset({ x, y: ys, inputShape: [features] });
}

function classCounts(d: Dataset): Map<number, number> {
  const m = new Map<number, number>();
  for (const y of d.targets) m.set(y, (m.get(y) ?? 0) + 1);
  return m;
}

/** First feature of every sample (its index in the toy source). */
function ids(d: Dataset): number[] {
  const b = d.batch(Int32Array.from({ length: d.length }, (_, i) => i));
  return Array.from({ length: d.length }, (_, i) => b.x[i * d.sampleSize]);
}

function features(d: Dataset, i: number): Float32Array {
  return d.batch([i]).x;
}

/** numpy.rot90 (counter-clockwise) of one rows×cols image. */
function rot90(img: ArrayLike<number>, rows: number, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < cols; r++) {
    for (let c = 0; c < rows; c++) out.push(img[c * cols + (cols - 1 - r)]);
  }
  return out;
}

const counts10 = [12, 9, 15, 10, 11, 8, 13, 10, 14, 9];
const train10 = toy(counts10);
const test10 = toy(counts10.map((n) => Math.ceil(n / 3)), 6, 5);

// ---------------------------------------------------------------------------------------------
// classIncremental / taskIncremental
// ---------------------------------------------------------------------------------------------

Deno.test("classIncremental: experiences partition the classes and keep every sample", () => {
  const b = classIncremental({ train: train10, test: test10, experiences: 5, seed: 3 });
  assert.equal(b.info.scenario, "class-incremental");
  assert.equal(b.info.name, "ClassIncremental");
  assert.equal(b.info.numExperiences, 5);
  assert.equal(b.info.numClasses, 10);
  assert.equal(b.train.length, 5);
  assert.equal(b.test.length, 5);
  const seen = new Set<number>();
  b.train.forEach((e, i) => {
    assert.equal(e.id, i);
    assert.equal(e.stream, "train");
    assert.equal(e.classes.length, 2);
    for (const c of e.classes) {
      assert.ok(!seen.has(c), `class ${c} appears twice`);
      seen.add(c);
    }
    assert.deepEqual([...e.classes], [...b.classesPerExperience[i]]);
    assert.deepEqual([...e.classes], [...b.originalClassesPerExperience[i]].sort((a, b) => a - b));
    assert.equal(e.dataset.length, e.classes.reduce((a, c) => a + counts10[c], 0));
    assert.deepEqual(e.taskLabels, [0]);
    assert.deepEqual([...b.test[i].classes], [...e.classes]);
    const testCounts = classCounts(test10);
    assert.equal(b.test[i].dataset.length, e.classes.reduce((a, c) => a + testCounts.get(c)!, 0));
    // The features of each sample still carry its class.
    const bx = e.dataset.batch(Int32Array.from({ length: e.dataset.length }, (_, k) => k));
    for (let k = 0; k < bx.n; k++) assert.equal(bx.x[k * 6 + 1], bx.y[k]);
  });
  assert.deepEqual([...seen].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(b.classOrder.flatMap((c) => c), b.originalClassesPerExperience.flat());
  // Every training sample is in exactly one experience.
  const all = b.train.flatMap((e) => ids(e.dataset)).sort((a, b) => a - b);
  assert.deepEqual(all, Array.from({ length: train10.length }, (_, i) => i));
});

Deno.test("classIncremental: same seed → same class order, different seed → different", () => {
  const order = (seed: number) =>
    classIncremental({ train: train10, test: test10, experiences: 5, seed }).classOrder.join();
  assert.equal(order(7), order(7));
  assert.notEqual(order(7), order(8));
  assert.notEqual(order(0), "0,1,2,3,4,5,6,7,8,9");
  const natural = classIncremental({
    train: train10,
    test: test10,
    experiences: 5,
    fixedClassOrder: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  });
  assert.deepEqual(natural.train.map((e) => e.classes.join()), ["0,1", "2,3", "4,5", "6,7", "8,9"]);
  const sorted = classIncremental({
    train: train10,
    test: test10,
    experiences: 2,
    classOrder: "sorted",
  });
  assert.deepEqual(sorted.classOrder, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

Deno.test("classIncremental: uneven splits and class subsets", () => {
  const b = classIncremental({
    train: train10,
    test: test10,
    classesPerExperience: [4, 3, 3],
    seed: 1,
  });
  assert.deepEqual(b.train.map((e) => e.classes.length), [4, 3, 3]);
  assert.equal(b.info.numExperiences, 3);
  const sub = classIncremental({
    train: train10,
    test: test10,
    experiences: 2,
    fixedClassOrder: [9, 2, 4, 0],
  });
  assert.deepEqual(sub.train.map((e) => e.classes.join()), ["2,9", "0,4"]);
  assert.equal(sub.train[0].dataset.length, counts10[9] + counts10[2]);
});

Deno.test("classIncremental: global remapping numbers classes in order of appearance", () => {
  const b = classIncremental({
    train: train10,
    test: test10,
    experiences: 5,
    seed: 4,
    remapClasses: true,
  });
  b.train.forEach((e, i) => assert.deepEqual([...e.classes], [2 * i, 2 * i + 1]));
  assert.equal(b.info.numClasses, 10);
  for (const s of [b.train, b.test]) {
    for (const e of s) {
      const bx = e.dataset.batch(Int32Array.from({ length: e.dataset.length }, (_, k) => k));
      for (let k = 0; k < bx.n; k++) {
        const original = bx.x[k * 6 + 1];
        assert.equal(bx.y[k], b.classOrder.indexOf(original));
        assert.equal(b.classMaps[e.id].get(original), bx.y[k]);
      }
    }
  }
});

Deno.test("taskIncremental: task label i and classes 0..k-1 in each experience", () => {
  const b = taskIncremental({ train: train10, test: test10, experiences: 5, seed: 2 });
  assert.equal(b.info.scenario, "task-incremental");
  assert.equal(b.info.name, "TaskIncremental");
  assert.equal(b.info.numClasses, 2);
  for (const s of [b.train, b.test]) {
    s.forEach((e, i) => {
      assert.equal(e.taskLabel, i);
      assert.deepEqual(e.taskLabels, [i]);
      assert.deepEqual([...e.classes], [0, 1]);
      const [c0, c1] = b.originalClassesPerExperience[i];
      const bx = e.dataset.batch(Int32Array.from({ length: e.dataset.length }, (_, k) => k));
      for (let k = 0; k < bx.n; k++) {
        assert.equal(bx.y[k], bx.x[k * 6 + 1] === c0 ? 0 : bx.x[k * 6 + 1] === c1 ? 1 : -1);
        assert.equal(bx.t[k], i);
      }
    });
  }
  // Task labels without remapping keep the original classes (Avalanche's default).
  const plain = classIncremental({
    train: train10,
    test: test10,
    experiences: 5,
    seed: 2,
    taskLabels: true,
  });
  assert.equal(plain.info.scenario, "task-incremental");
  assert.deepEqual(
    plain.train.map((e) => e.classes.join()),
    b.originalClassesPerExperience.map((c) => [...c].sort((a, b) => a - b).join()),
  );
  assert.equal(plain.info.numClasses, 10);
});

Deno.test("classIncremental: option errors name the bad value and the fix", () => {
  const base = { train: train10, test: test10 };
  assert.throws(
    () => classIncremental({ ...base, experiences: 3 }),
    (e: Error) =>
      e instanceof RangeError &&
      /10 classes cannot be split evenly into experiences = 3/.test(e.message) &&
      /classesPerExperience \(e\.g\. \[4,3,3\]\)/.test(e.message),
  );
  assert.throws(
    () => classIncremental({ ...base, experiences: 0 }),
    /experiences must be an integer >= 1, got 0/,
  );
  assert.throws(() => classIncremental({ ...base, experiences: 2.5 }), RangeError);
  assert.throws(
    () => classIncremental({ ...base, experiences: 11 }),
    /experiences \(11\) exceeds the number of classes \(10\)/,
  );
  assert.throws(
    () => classIncremental({ ...base, classesPerExperience: [5, 0, 5] }),
    /classesPerExperience\[1\] is 0, which would make experience 1 empty/,
  );
  assert.throws(
    () => classIncremental({ ...base, classesPerExperience: [5, 4] }),
    /classesPerExperience \[5,4\] adds up to 9 but there are 10 classes/,
  );
  assert.throws(
    () => classIncremental({ ...base, experiences: 2, classesPerExperience: [5, 3, 2] }),
    /experiences is 2 but classesPerExperience \[5,3,2\] has 3 entries/,
  );
  assert.throws(
    () => classIncremental({ ...base, experiences: 2, fixedClassOrder: [0, 1, 2, 12] }),
    /fixedClassOrder holds class 12, which the training set does not have/,
  );
  assert.throws(
    () => classIncremental({ ...base, experiences: 2, fixedClassOrder: [1, 1] }),
    /class 1 twice/,
  );
  assert.throws(() => classIncremental({ ...base }), TypeError);
  // A test set without the classes of an experience.
  const partialTest = train10.subset(Int32Array.from(train10.indicesByClass().get(0)!));
  assert.throws(
    () =>
      classIncremental({ train: train10, test: partialTest, experiences: 5, classOrder: "sorted" }),
    /test set has no samples of classes \[2,3\] of experience 1/,
  );
});

// ---------------------------------------------------------------------------------------------
// newInstances
// ---------------------------------------------------------------------------------------------

Deno.test("newInstances: disjoint shuffled chunks covering the train set; one test experience", () => {
  const b = newInstances({ train: train10, test: test10, experiences: 4, seed: 1 });
  assert.equal(b.info.scenario, "new-instances");
  assert.equal(b.info.numExperiences, 4);
  assert.equal(b.test.length, 1);
  assert.equal(b.test[0].dataset.length, test10.length);
  const sizes = b.train.map((e) => e.dataset.length);
  assert.equal(sizes.reduce((a, n) => a + n, 0), train10.length);
  assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `sizes ${sizes}`);
  const all = b.train.flatMap((e) => ids(e.dataset)).sort((a, b) => a - b);
  assert.deepEqual(all, Array.from({ length: train10.length }, (_, i) => i));
  // Shuffled: the first chunk is not the first quarter of the samples.
  assert.notDeepEqual(ids(b.train[0].dataset), Array.from({ length: sizes[0] }, (_, i) => i));
  const again = newInstances({ train: train10, test: test10, experiences: 4, seed: 1 });
  assert.deepEqual(ids(again.train[2].dataset), ids(b.train[2].dataset));
  const other = newInstances({ train: train10, test: test10, experiences: 4, seed: 2 });
  assert.notDeepEqual(ids(other.train[2].dataset), ids(b.train[2].dataset));
});

Deno.test("newInstances: balanceClasses spreads each class evenly", () => {
  const b = newInstances({ train: train10, test: test10, experiences: 3, balanceClasses: true });
  const sizes = b.train.map((e) => e.dataset.length);
  assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `sizes ${sizes}`);
  counts10.forEach((n, c) => {
    const per = b.train.map((e) => classCounts(e.dataset).get(c) ?? 0);
    assert.equal(per.reduce((a, k) => a + k, 0), n);
    assert.ok(Math.max(...per) - Math.min(...per) <= 1, `class ${c}: ${per}`);
  });
  const all = b.train.flatMap((e) => ids(e.dataset)).sort((a, b) => a - b);
  assert.deepEqual(all, Array.from({ length: train10.length }, (_, i) => i));
  assert.throws(
    () => newInstances({ train: train10, test: test10, experiences: 1000 }),
    /experiences \(1000\) exceeds the number of training samples \(111\)/,
  );
  assert.throws(() => newInstances({ train: train10, test: test10, experiences: 0 }), RangeError);
});

// ---------------------------------------------------------------------------------------------
// Transforms and domain-incremental generators
// ---------------------------------------------------------------------------------------------

function images(n: number, rows: number, cols: number, seed = 1): Uint8Array {
  const x = new Uint8Array(n * rows * cols);
  let s = seed;
  for (let i = 0; i < x.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    x[i] = s >>> 24;
  }
  return x;
}

Deno.test("rotateImages: 0° is the identity, 90° is rot90, 180° reverses, 360° is the identity", () => {
  for (const [rows, cols] of [[28, 28], [5, 5], [4, 4]]) {
    const size = rows * cols;
    const x = images(3, rows, cols);
    assert.deepEqual(rotateImages(x, { rows, cols }, 0), x);
    assert.deepEqual(rotateImages(x, { rows, cols }, 360), x);
    assert.deepEqual(rotateImages(x, { rows, cols }, -360), x);
    const r90 = rotateImages(x, { rows, cols }, 90);
    const r180 = rotateImages(x, { rows, cols }, 180);
    const r270 = rotateImages(x, { rows, cols }, -90);
    for (let i = 0; i < 3; i++) {
      const img = x.subarray(i * size, (i + 1) * size);
      assert.deepEqual([...r90.subarray(i * size, (i + 1) * size)], rot90(img, rows, cols));
      assert.deepEqual([...r180.subarray(i * size, (i + 1) * size)], [...img].reverse());
      assert.deepEqual(
        [...r270.subarray(i * size, (i + 1) * size)],
        rot90(rot90(rot90(img, rows, cols), rows, cols), rows, cols),
      );
    }
  }
  // Float data and several channels.
  const f = Float32Array.from(images(2, 3, 3, 2).slice(0, 2 * 9 * 2), (v) => v / 7);
  const rf = rotateImages(f, { rows: 3, cols: 3, channels: 2 }, 180);
  for (let i = 0; i < 2; i++) {
    for (let p = 0; p < 9; p++) {
      for (let ch = 0; ch < 2; ch++) {
        assert.equal(rf[i * 18 + p * 2 + ch], f[i * 18 + (8 - p) * 2 + ch]);
      }
    }
  }
});

Deno.test("rotateImages: 45° is bilinear about the centre with zero fill", () => {
  // A single bright centre pixel of an odd image stays put under any rotation.
  const x = new Uint8Array(25);
  x[12] = 200;
  const r = rotateImages(x, { rows: 5, cols: 5 }, 45);
  assert.equal(r[12], 200);
  // A full white image loses its corners (zero fill) but keeps its centre.
  const w = new Uint8Array(28 * 28).fill(255);
  const rw = rotateImages(w, { rows: 28, cols: 28 }, 45);
  assert.equal(rw[0], 0);
  assert.equal(rw[14 * 28 + 14], 255);
  assert.throws(
    () => rotateImages(new Uint8Array(10), { rows: 3, cols: 3 }, 10),
    /not a multiple of 3×3×1 = 9/,
  );
  assert.throws(() => imageGeometry([10]), /Cannot tell the image geometry of input shape \[10\]/);
  assert.deepEqual(imageGeometry([784]), { rows: 28, cols: 28, channels: 1 });
});

Deno.test("randomPermutations / composePermutations", () => {
  const ps = randomPermutations(3, 50, 9);
  for (const p of ps) {
    assert.deepEqual(
      [...p].sort((a, b) => a - b),
      Array.from({ length: 50 }, (_, i) => i),
    );
  }
  assert.deepEqual(randomPermutations(3, 50, 9), ps);
  assert.notDeepEqual(randomPermutations(3, 50, 10), ps);
  const a = ps[0], b = ps[1];
  const raw = Array.from({ length: 50 }, (_, i) => i * 3);
  const viaTwo = [...b].map((k) => [...a].map((j) => raw[j])[k]);
  assert.deepEqual([...composePermutations(a, b)].map((j) => raw[j]), viaTwo);
});

function byteImages(n: number, rows: number, cols: number, classes: number): ArrayDataset {
  return new ArrayDataset({
    x: images(n, rows, cols, 3),
    y: Array.from({ length: n }, (_, i) => i % classes),
    inputShape: [rows * cols],
    scale: 1 / 255,
    mean: 0.1307,
    std: 0.3081,
  });
}

Deno.test("permuted: every experience a seeded pixel permutation over shared storage", () => {
  const train = byteImages(40, 6, 6, 4), test = byteImages(12, 6, 6, 4);
  const b = permuted({ train, test, experiences: 3, seed: 5 });
  assert.equal(b.info.scenario, "domain-incremental");
  assert.equal(b.info.numClasses, 4);
  assert.equal(b.permutations.length, 3);
  const identity = Array.from({ length: 36 }, (_, i) => i);
  for (const p of b.permutations) {
    assert.deepEqual([...p].sort((a, c) => a - c), identity);
    assert.notDeepEqual([...p], identity); // the first experience is permuted too
  }
  for (const [s, src] of [[b.train, train], [b.test, test]] as const) {
    s.forEach((e, i) => {
      assert.ok(e.dataset instanceof ArrayDataset);
      assert.equal((e.dataset as ArrayDataset).raw, src.raw, "pixels are shared, not copied");
      assert.equal(e.dataset.length, src.length);
      assert.deepEqual(e.taskLabels, [0]);
      assert.deepEqual(e.dataset.targets, src.targets);
      for (const k of [0, 7, src.length - 1]) {
        const orig = features(src, k), perm = features(e.dataset, k);
        for (let f = 0; f < 36; f++) assert.equal(perm[f], orig[b.permutations[i][f]]);
      }
    });
  }
  const same = permuted({ train, test, experiences: 3, seed: 5 });
  assert.deepEqual(same.permutations, b.permutations);
  const other = permuted({ train, test, experiences: 3, seed: 6 });
  assert.notDeepEqual(other.permutations, b.permutations);
  const tasked = permuted({ train, test, experiences: 3, taskLabels: true });
  assert.equal(tasked.info.scenario, "task-incremental");
  assert.deepEqual(tasked.test.map((e) => e.taskLabel), [0, 1, 2]);
  assert.throws(
    () => permuted({ train: train.subset([0, 1]), test, experiences: 2 }),
    (e: Error) => e instanceof TypeError && /train must be an ArrayDataset/.test(e.message),
  );
  assert.throws(
    () => permuted({ train, test, experiences: 0 }),
    /experiences must be an integer >= 1, got 0/,
  );
});

Deno.test("rotated: seeded integer angles, precomputed rotated bytes", () => {
  const train = byteImages(20, 8, 8, 2), test = byteImages(6, 8, 8, 2);
  const b = rotated({ train, test, experiences: 6, seed: 3 });
  assert.equal(b.info.scenario, "domain-incremental");
  assert.equal(b.rotations.length, 6);
  for (const a of b.rotations) {
    assert.ok(Number.isInteger(a) && a >= -180 && a <= 180, `angle ${a}`);
  }
  assert.deepEqual(rotated({ train, test, experiences: 6, seed: 3 }).rotations, b.rotations);
  assert.notDeepEqual(rotated({ train, test, experiences: 6, seed: 4 }).rotations, b.rotations);
  const ranged = rotated({ train, test, experiences: 5, rotationRange: [10, 12] });
  for (const a of ranged.rotations) assert.ok(a >= 10 && a <= 12);

  const fixed = rotated({ train, test, rotations: [0, 90, 180] });
  assert.equal(fixed.info.numExperiences, 3);
  assert.equal((fixed.train[0].dataset as ArrayDataset).raw, train.raw, "0° shares the pixels");
  const r90 = (fixed.train[1].dataset as ArrayDataset).raw;
  const r180 = (fixed.test[2].dataset as ArrayDataset).raw;
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(
      [...r90.subarray(i * 64, (i + 1) * 64)],
      rot90(train.raw.subarray(i * 64, (i + 1) * 64), 8, 8),
    );
    assert.deepEqual(
      [...r180.subarray(i * 64, (i + 1) * 64)],
      [...test.raw.subarray(i * 64, (i + 1) * 64)].reverse(),
    );
  }
  // Normalization is kept: batching the rotated view equals normalizing the rotated bytes.
  const x = features(fixed.train[1].dataset, 2);
  for (let f = 0; f < 64; f++) {
    assert.ok(Math.abs(x[f] - (r90[2 * 64 + f] / 255 - 0.1307) / 0.3081) < 1e-5);
  }
  assert.throws(
    () => rotated({ train, test, experiences: 2, rotations: [0, 90, 180] }),
    /experiences is 2 but rotations \[0,90,180\] has 3 entries/,
  );
  assert.throws(
    () => rotated({ train, test, experiences: 2, rotationRange: [5, 1] }),
    /rotationRange \[5,1\]/,
  );
  assert.throws(() => rotated({ train, test, experiences: 0 }), /got 0/);
  const flat = new ArrayDataset({ x: new Uint8Array(2 * 12), y: [0, 1], inputShape: [12] });
  assert.throws(() => rotated({ train: flat, test: flat, rotations: [90] }), /imageShape/);
  assert.equal(
    rotated({ train: flat, test: flat, rotations: [90], imageShape: [3, 4] }).train.length,
    1,
  );
});

// ---------------------------------------------------------------------------------------------
// splitOnline / subsample
// ---------------------------------------------------------------------------------------------

Deno.test("splitOnline: sub-experiences of experienceSize with their origin", () => {
  const b = classIncremental({
    train: train10,
    test: test10,
    experiences: 5,
    fixedClassOrder: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  });
  const online = splitOnline(b, { experienceSize: 10, seed: 1 });
  const expected = b.train.flatMap((e) => {
    const n = e.dataset.length;
    return Array.from({ length: Math.ceil(n / 10) }, (_, j) => Math.min(10, n - j * 10));
  });
  assert.deepEqual(online.train.map((e) => e.dataset.length), expected);
  assert.equal(online.info.numExperiences, expected.length);
  assert.equal(online.train[0].info, online.info);
  assert.equal(online.test.length, 5);
  assert.equal(online.test[0].info, online.info);
  assert.equal(online.test[0].dataset, b.test[0].dataset);
  assert.equal(online.original, b);
  assert.deepEqual(online.classOrder, b.classOrder);
  online.train.forEach((e: OnlineExperience, i) => {
    assert.equal(e.id, i);
    assert.equal(e.stream, "train");
    assert.ok(e.classes.every((c) => e.origin.classes.includes(c)));
    assert.deepEqual([...e.classes], e.dataset.classes());
    assert.equal(e.isFirst, e.subIndex === 0);
    assert.equal(e.isLast, e.subIndex === e.subCount - 1);
  });
  // Sub-experiences of one origin are disjoint and cover it.
  for (const origin of b.train) {
    const parts = online.train.filter((e) => e.origin === origin);
    const all = parts.flatMap((e) => ids(e.dataset)).sort((a, c) => a - c);
    assert.deepEqual(all, ids(origin.dataset).sort((a, c) => a - c));
  }
  const dropped = splitOnline(b.train, { experienceSize: 10, dropLast: true, shuffle: false });
  assert.ok(dropped.every((e) => e.dataset.length === 10));
  assert.equal(dropped.length, b.train.reduce((a, e) => a + Math.floor(e.dataset.length / 10), 0));
  assert.deepEqual(ids(dropped[0].dataset), ids(b.train[0].dataset).slice(0, 10));
  assert.throws(
    () => splitOnline(b, { experienceSize: 0 }),
    /experienceSize must be an integer >= 1, got 0/,
  );
  assert.throws(
    () => splitOnline(b.train, { experienceSize: 100, dropLast: true }),
    /experience 0 has 21 samples, fewer than experienceSize = 100/,
  );
});

Deno.test("subsample: smaller, class-balanced, same structure", () => {
  const b = classIncremental({
    train: train10,
    test: test10,
    experiences: 2,
    classOrder: "sorted",
  });
  const s = subsample(b, { trainPerExperience: 11, testPerExperience: 4, seed: 2 });
  assert.equal(s.train.length, 2);
  assert.equal(s.info, b.info);
  assert.deepEqual(s.classOrder, b.classOrder);
  for (const e of s.train) {
    assert.equal(e.dataset.length, 11);
    const c = [...classCounts(e.dataset).values()];
    assert.equal(c.length, 5);
    assert.ok(Math.max(...c) - Math.min(...c) <= 1, `counts ${c}`);
  }
  for (const e of s.test) assert.equal(e.dataset.length, 4);
  // Picks are distinct samples of the original experience.
  const picked = ids(s.train[0].dataset);
  assert.equal(new Set(picked).size, picked.length);
  const pool = new Set(ids(b.train[0].dataset));
  assert.ok(picked.every((i) => pool.has(i)));
  // A class with too few samples gives its share to the others.
  const skewed = toy([2, 30, 30]);
  const one = newInstances({ train: skewed, test: skewed, experiences: 1 });
  const small = subsample(one, { trainPerExperience: 20 });
  assert.deepEqual([...classCounts(small.train[0].dataset).entries()].sort(), [[0, 2], [1, 9], [
    2,
    9,
  ]]);
  // Larger than the experience: unchanged.
  assert.equal(subsample(b, { trainPerExperience: 1000 }).train[0], b.train[0]);
  // Online experiences keep their origin.
  const online = subsample(splitOnline(b, { experienceSize: 20 }), { trainPerExperience: 5 });
  assert.ok(online.train.every((e) => e.dataset.length <= 5 && e.origin !== undefined));
  assert.throws(
    () => subsample(b, { trainPerExperience: 0 }),
    /trainPerExperience must be an integer >= 1, got 0/,
  );
});

// ---------------------------------------------------------------------------------------------
// Classic benchmarks
// ---------------------------------------------------------------------------------------------

Deno.test("classics on synthetic data (data option): shapes, names and normalization", async () => {
  const data = {
    name: "toy",
    train: syntheticImages({ n: 200, classes: 10, seed: 1 }),
    test: syntheticImages({ n: 50, classes: 10, seed: 2 }),
    classes: 10,
  };
  const s = await splitMNIST({ data, inputShape: "image" });
  assert.equal(s.info.name, "SplitMNIST");
  assert.deepEqual(s.info.inputShape, [28, 28, 1]);
  assert.equal(s.train.length, 5);
  const raw = await splitFMNIST({
    data,
    normalize: false,
    fixedClassOrder: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  });
  assert.equal(raw.info.name, "SplitFMNIST");
  assert.deepEqual(raw.info.inputShape, [784]);
  const first = raw.train[0].dataset;
  const v = features(first, 0);
  assert.ok(v.every((p) => p >= 0 && p <= 1));
  const t = await splitMNIST({
    data,
    returnTaskId: true,
    classIdsFromZeroInEachExp: true,
    experiences: 2,
  });
  assert.equal(t.info.scenario, "task-incremental");
  assert.deepEqual(t.train[1].classes, [0, 1, 2, 3, 4]);
  await assert.rejects(
    splitMNIST({ data, classIdsFromZeroInEachExp: true, classIdsFromZeroFromFirstExp: true }),
    /mutually exclusive/,
  );
  const p = await permutedMNIST({ data, experiences: 2 });
  assert.equal(p.info.name, "PermutedMNIST");
  assert.equal(p.train.length, 2);
  const r = await rotatedMNIST({ data, rotations: [0, 90] });
  assert.equal(r.info.name, "RotatedMNIST");
  const rr = await rotatedMNIST({ data, experiences: 3 });
  assert.equal(rr.rotations.length, 3);
  const { train } = toArrayDatasets(data, { stats: FMNIST_STATS });
  assert.equal(train.options.mean, FMNIST_STATS.mean);
});

const sharedData = fileURLToPath(new URL("../../shared/datasets", import.meta.url));
const haveMnist = existsSync(`${sharedData}/mnist/train-images-idx3-ubyte.gz`);
const haveFmnist = existsSync(`${sharedData}/fashion-mnist/train-images-idx3-ubyte.gz`);
const loadOpts = {
  dataDir: sharedData,
  download: false,
  cacheDir: `${tmpdir()}/perennial-benchmarks-test-cache`,
};
if (!haveMnist) console.warn(`MNIST tests skipped: ${sharedData}/mnist is absent`);
if (!haveFmnist) console.warn(`Fashion-MNIST tests skipped: ${sharedData}/fashion-mnist is absent`);

Deno.test({
  name: `SplitMNIST on real MNIST${haveMnist ? "" : " (skipped: shared/datasets/mnist absent)"}`,
  ignore: !haveMnist,
  fn: async () => {
    const b = await splitMNIST(loadOpts);
    assert.equal(b.info.name, "SplitMNIST");
    assert.equal(b.info.numClasses, 10);
    assert.equal(b.train.length, 5);
    assert.equal(b.train.reduce((a, e) => a + e.dataset.length, 0), 60000);
    assert.equal(b.test.reduce((a, e) => a + e.dataset.length, 0), 10000);
    assert.notDeepEqual(b.classOrder, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual((await splitMNIST(loadOpts)).classOrder, b.classOrder);
    assert.notDeepEqual((await splitMNIST({ ...loadOpts, seed: 1 })).classOrder, b.classOrder);
    const natural = await splitMNIST({
      ...loadOpts,
      fixedClassOrder: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    });
    assert.deepEqual(natural.train.map((e) => e.classes.join()), [
      "0,1",
      "2,3",
      "4,5",
      "6,7",
      "8,9",
    ]);
    // Known MNIST class counts (train): 5923 zeros and 6742 ones; (test) 980 and 1135.
    assert.equal(natural.train[0].dataset.length, 5923 + 6742);
    assert.equal(natural.test[0].dataset.length, 980 + 1135);
    const x = features(natural.train[0].dataset, 0);
    const min = Math.min(...x);
    assert.ok(Math.abs(min - (0 - MNIST_STATS.mean) / MNIST_STATS.std) < 1e-6);
    assert.equal(x.length, 784);
  },
});

Deno.test({
  name: `PermutedMNIST and RotatedMNIST on real MNIST${
    haveMnist ? "" : " (skipped: shared/datasets/mnist absent)"
  }`,
  ignore: !haveMnist,
  fn: async () => {
    const p = await permutedMNIST({ ...loadOpts, experiences: 2, inputShape: "image" });
    assert.equal(p.info.name, "PermutedMNIST");
    assert.deepEqual(p.info.inputShape, [28, 28, 1]);
    assert.equal(p.train[1].dataset.length, 60000);
    assert.equal(p.test[1].dataset.length, 10000);
    const r = await rotatedMNIST({ ...loadOpts, rotations: [0, 90] });
    assert.equal(r.info.name, "RotatedMNIST");
    const src = (r.train[0].dataset as ArrayDataset).raw;
    const rot = (r.train[1].dataset as ArrayDataset).raw;
    assert.deepEqual([...rot.subarray(0, 784)], rot90(src.subarray(0, 784), 28, 28));
  },
});

Deno.test({
  name: `SplitFMNIST on real Fashion-MNIST${
    haveFmnist ? "" : " (skipped: shared/datasets/fashion-mnist absent)"
  }`,
  ignore: !haveFmnist,
  fn: async () => {
    const b = await splitFMNIST({
      ...loadOpts,
      returnTaskId: true,
      classIdsFromZeroInEachExp: true,
    });
    assert.equal(b.info.name, "SplitFMNIST");
    assert.equal(b.info.scenario, "task-incremental");
    assert.equal(b.info.numClasses, 2);
    assert.equal(b.train.reduce((a, e) => a + e.dataset.length, 0), 60000);
    assert.deepEqual(b.train.map((e) => e.dataset.length), [12000, 12000, 12000, 12000, 12000]);
    assert.deepEqual(b.test.map((e) => e.taskLabel), [0, 1, 2, 3, 4]);
  },
});
