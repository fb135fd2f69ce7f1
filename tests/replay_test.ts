import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import {
  type BenchmarkInfo,
  type Experience,
  makeExperience,
  splitOnline,
} from "../lib/benchmarks/mod.ts";
import { ArrayDataset, type Dataset } from "../lib/data/dataset.ts";
import { mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { Rng } from "../lib/random.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { replay, ReplayPlugin, replayPlugin } from "../lib/plugins/replay.ts";
import { CyclingSampler, ReplayDataLoader } from "../lib/plugins/replay_loader.ts";
import { batchOf } from "../lib/data/loader.ts";
import {
  classBalanced,
  ClassBalancedStoragePolicy,
  experienceBalanced,
  ExperienceBalancedStoragePolicy,
  MemoryDataset,
  reservoir,
  ReservoirSamplingBuffer,
} from "../lib/plugins/storage_policy.ts";
import { againstNaiveOnSplitMNIST, SHARED_DATA, toyBenchmark } from "./_helpers.ts";

const INFO: BenchmarkInfo = {
  name: "ids",
  scenario: "class-incremental",
  numClasses: 10,
  inputShape: [1],
  numExperiences: 5,
};

/** A dataset whose sample i has the single feature `ids[i]` (an identity) and label `labels[i]`. */
function idData(ids: number[], labels: number[], tasks?: number[]): ArrayDataset {
  return new ArrayDataset({
    x: Float32Array.from(ids),
    y: labels,
    taskLabels: tasks,
    inputShape: [1],
  });
}

/** Identities of the samples of a dataset (their single feature). */
function ids(d: Dataset): number[] {
  return Array.from(d.batch(Int32Array.from({ length: d.length }, (_, i) => i)).x);
}

function exp(id: number, data: Dataset): Experience {
  return makeExperience("train", id, data, INFO);
}

/** Experience k: `n` samples with identities 1000k.. and labels `label(i)`. */
function idExperience(k: number, n: number, label: (i: number) => number = () => k): Experience {
  const idList = Array.from({ length: n }, (_, i) => 1000 * k + i);
  return exp(k, idData(idList, idList.map((_, i) => label(i))));
}

const isSubset = (a: number[], b: number[]) => a.every((v) => b.includes(v));

// ---------------------------------------------------------------------------------------------
// Memory views
// ---------------------------------------------------------------------------------------------

Deno.test("MemoryDataset: selections and concatenations stay views one level deep", () => {
  const a = idData([0, 1, 2, 3], [0, 0, 1, 1]);
  const b = idData([10, 11], [2, 2]);
  const m = MemoryDataset.concat([MemoryDataset.of(a).select([3, 1]), MemoryDataset.of(b)]);
  assert.deepEqual(ids(m), [3, 1, 10, 11]);
  assert.deepEqual(Array.from(m.targets), [1, 0, 2, 2]);
  assert.equal(m.sources.length, 2);
  // Many rounds of select/concat: still the two original sources.
  let x = m;
  for (let r = 0; r < 50; r++) x = MemoryDataset.concat([x.select([0]), x.select([1, 2, 3])]);
  assert.deepEqual(ids(x), [3, 1, 10, 11]);
  assert.deepEqual(x.sources, [a, b]);
  // Unused sources are dropped.
  assert.deepEqual(m.select([2]).sources, [b]);
  // Materialized round trip keeps values and labels.
  const back = MemoryDataset.fromMaterialized(JSON.parse(JSON.stringify(m.materialize())));
  assert.deepEqual(ids(back), ids(m));
  assert.deepEqual(back.targets, m.targets);
  assert.equal(MemoryDataset.empty().length, 0);
  assert.throws(() => m.select([4]), /out of range/);
  assert.throws(
    () =>
      MemoryDataset.concat([
        MemoryDataset.of(a),
        MemoryDataset.of(toyBenchmark().train[0].dataset),
      ]),
    /cannot mix samples of input shapes/,
  );
});

// ---------------------------------------------------------------------------------------------
// Storage policies
// ---------------------------------------------------------------------------------------------

Deno.test("experience-balanced (adaptive): memSize 10 over 1, 2, 3 experiences is 10 / 5,5 / 4,3,3, shrinking within members", () => {
  const policy = new ExperienceBalancedStoragePolicy(10);
  const rng = new Rng(0);
  const expected = [[10], [5, 5], [4, 3, 3], [3, 3, 2, 2]];
  let before: number[][] = [];
  for (let k = 0; k < 4; k++) {
    const e = idExperience(k, 20);
    policy.update({ experience: e, rng });
    const groups = [...policy.groups];
    assert.deepEqual(groups.map(([key]) => key), Array.from({ length: k + 1 }, (_, i) => i));
    assert.deepEqual(groups.map(([, g]) => g.length), expected[k]);
    const now = groups.map(([, g]) => ids(g));
    // Each group holds distinct samples of its own experience...
    now.forEach((g, i) => {
      assert.equal(new Set(g).size, g.length);
      assert.ok(g.every((v) => Math.floor(v / 1000) === i), `group ${i}: ${g}`);
    });
    // ...and a shrinking group keeps a subset of what it had.
    before.forEach((g, i) => assert.ok(isSubset(now[i], g), `group ${i} shrank within itself`));
    before = now;
    assert.equal(policy.buffer.length, expected[k].reduce((a, b) => a + b, 0));
    assert.deepEqual(ids(policy.buffer), now.flat(), "buffer = concatenation of the groups");
  }
  // Shrinking keeps a random subset, not the first samples offered.
  assert.notDeepEqual(before[0], [0, 1, 2]);
  // A larger capacity does not add samples; a smaller one subsamples.
  policy.resize(5);
  assert.deepEqual([...policy.groups.values()].map((g) => g.length), [2, 1, 1, 1]);
  assert.ok(isSubset(ids(policy.groups.get(0)!), before[0]));
});

Deno.test("experience-balanced (fixed): memSize / numExperiences each, errors name the fix", () => {
  const policy = new ExperienceBalancedStoragePolicy(10, false, 3);
  const rng = new Rng(1);
  for (let k = 0; k < 3; k++) {
    policy.update({ experience: idExperience(k, 20), rng });
    assert.deepEqual([...policy.groups.values()].map((g) => g.length), new Array(k + 1).fill(3));
  }
  assert.throws(
    () => policy.update({ experience: idExperience(3, 20), rng }),
    /pass a larger total/,
  );
  assert.throws(() => new ExperienceBalancedStoragePolicy(10, false), /numExperiences must be/);
  assert.throws(
    () => new ExperienceBalancedStoragePolicy(10, true, 3),
    /only used with adaptiveSize: false/,
  );
  assert.throws(() => new ExperienceBalancedStoragePolicy(-1), /memSize must be an integer/);
  assert.throws(() => experienceBalanced(undefined as never), /options object/);
  // Small experiences give what they have.
  const small = experienceBalanced({ memSize: 10 });
  small.update({ experience: idExperience(0, 2), rng });
  small.update({ experience: idExperience(1, 20), rng });
  assert.deepEqual([...small.groups.values()].map((g) => g.length), [2, 5]);
});

Deno.test("experience-balanced: extMem groups (Avalanche's ext_mem) and the three constructor forms", () => {
  const ext = new Map<number, Dataset>([[0, idData([1, 2, 3, 4, 5, 6, 7], new Array(7).fill(0))]]);
  const policy = new ExperienceBalancedStoragePolicy(ext, 6);
  assert.deepEqual(ids(policy.buffer), [1, 2, 3, 4, 5, 6]); // cut to its share, weights not yet drawn
  policy.update({ experience: idExperience(1, 10), rng: new Rng(0) });
  assert.deepEqual([...policy.groups.keys()], [0, 1]);
  assert.deepEqual([...policy.groups.values()].map((g) => g.length), [3, 3]);
  assert.ok(isSubset(ids(policy.groups.get(0)!), [1, 2, 3, 4, 5, 6]));
  const o = new ExperienceBalancedStoragePolicy({
    memSize: 8,
    adaptiveSize: false,
    numExperiences: 2,
  });
  assert.equal(o.maxSize, 8);
  assert.equal(o.adaptiveSize, false);
  assert.throws(() => new ExperienceBalancedStoragePolicy("x" as never), /expected memSize/);
});

Deno.test("class-balanced: equal shares over the classes seen, uneven arrival, remainder to the first classes", () => {
  const policy = new ClassBalancedStoragePolicy(10);
  const rng = new Rng(2);
  // Experience 0: classes 0 and 1 (20 samples each).
  policy.update({ experience: idExperience(0, 40, (i) => i % 2), rng });
  assert.deepEqual(policy.seenClasses, [0, 1]);
  assert.deepEqual([...policy.groups.values()].map((g) => g.length), [5, 5]);
  let before = [...policy.groups.values()].map(ids);
  // Experience 1: class 2 only → 4, 3, 3.
  policy.update({ experience: idExperience(1, 20, () => 2), rng });
  assert.deepEqual(policy.seenClasses, [0, 1, 2]);
  assert.deepEqual([...policy.groups.values()].map((g) => g.length), [4, 3, 3]);
  let now = [...policy.groups.values()].map(ids);
  before.forEach((g, i) => assert.ok(isSubset(now[i], g)));
  before = now;
  // Experience 2: classes 4 and 3 (3 with a single sample), ascending order within an experience.
  policy.update({ experience: idExperience(2, 21, (i) => (i === 0 ? 3 : 4)), rng });
  assert.deepEqual(policy.seenClasses, [0, 1, 2, 3, 4]);
  assert.deepEqual([...policy.groups.values()].map((g) => g.length), [2, 2, 2, 1, 2]);
  now = [...policy.groups.values()].map(ids);
  before.forEach((g, i) => assert.ok(isSubset(now[i], g)));
  for (const [c, g] of policy.groups) assert.ok(g.targets.every((y) => y === c));
  // A class seen again gets a sample of old and new together (still its share).
  policy.update({ experience: idExperience(3, 30, () => 0), rng });
  assert.deepEqual([...policy.groups.values()].map((g) => g.length), [2, 2, 2, 1, 2]);
  // Fixed shares.
  const fixed = classBalanced({ memSize: 10, adaptiveSize: false, totalNumClasses: 4 });
  fixed.update({ experience: idExperience(0, 40, (i) => i % 2), rng });
  assert.deepEqual([...fixed.groups.values()].map((g) => g.length), [2, 2]);
  assert.throws(
    () => fixed.update({ experience: idExperience(1, 30, (i) => 2 + (i % 3)), rng }),
    /pass a larger total/,
  );
  assert.throws(() => new ClassBalancedStoragePolicy(10, false), /totalNumClasses must be/);
  assert.throws(
    () => new ClassBalancedStoragePolicy(new Map([[0, idData([1, 2], [0, 1])]]), 10),
    /holds samples of other classes/,
  );
});

Deno.test("reservoir: exactly maxSize samples, a uniform sample of the whole stream (fixed seeds)", () => {
  assert.equal(reservoir({ memSize: 10 }).maxSize, 10);
  const trials = 2000, n = 100, k = 10;
  const hits = new Float64Array(n);
  const rng = new Rng(123);
  for (let t = 0; t < trials; t++) {
    const r = new ReservoirSamplingBuffer(k);
    for (let c = 0; c < 5; c++) {
      const e = idExperience(0, 20);
      r.updateFromDataset(
        idData(ids(e.dataset).map((v) => v + 20 * c), new Array(20).fill(0)),
        rng,
      );
      assert.equal(r.buffer.length, k);
    }
    for (const v of ids(r.buffer)) hits[v]++;
    const w = r.weights;
    for (let i = 1; i < w.length; i++) assert.ok(w[i - 1] >= w[i], "weights sorted descending");
  }
  // Each of the 100 samples is kept with probability 10/100, whichever chunk it came in.
  for (let c = 0; c < 5; c++) {
    const f = hits.slice(20 * c, 20 * c + 20).reduce((a, b) => a + b, 0) / (20 * trials);
    assert.ok(Math.abs(f - 0.1) < 0.01, `chunk ${c} kept with frequency ${f}`);
  }
  for (let i = 0; i < n; i++) {
    assert.ok(
      hits[i] / trials > 0.06 && hits[i] / trials < 0.14,
      `sample ${i}: ${hits[i] / trials}`,
    );
  }
  // Same seed, same memory.
  const run = () => {
    const r = new ReservoirSamplingBuffer(5);
    r.updateFromDataset(idData([1, 2, 3, 4, 5, 6, 7, 8], new Array(8).fill(0)), new Rng(9));
    return ids(r.buffer);
  };
  assert.deepEqual(run(), run());
  // Shrinking keeps the largest weights.
  const r = new ReservoirSamplingBuffer(6);
  r.updateFromDataset(idData([1, 2, 3, 4, 5, 6, 7, 8], new Array(8).fill(0)), new Rng(3));
  const first = ids(r.buffer);
  r.resize(2);
  assert.deepEqual(ids(r.buffer), first.slice(0, 2));
});

Deno.test("storage policies: state round trip through JSON gives the same memory and future", () => {
  const make = [
    () => new ExperienceBalancedStoragePolicy(9),
    () => new ClassBalancedStoragePolicy(9),
    () => new ReservoirSamplingBuffer(9),
  ];
  for (const build of make) {
    const a = build(), b = build();
    const rngA = new Rng(5);
    a.update({ experience: idExperience(0, 30, (i) => i % 3), rng: rngA });
    b.loadState(JSON.parse(JSON.stringify(a.state())));
    assert.deepEqual(ids(b.buffer), ids(a.buffer));
    assert.deepEqual([...b.groups.keys()], [...a.groups.keys()]);
    const rngB = new Rng(rngA.state());
    a.update({ experience: idExperience(1, 30, (i) => 3 + (i % 2)), rng: rngA });
    b.update({ experience: idExperience(1, 30, (i) => 3 + (i % 2)), rng: rngB });
    assert.deepEqual(ids(b.buffer), ids(a.buffer), a.constructor.name);
    assert.deepEqual(Array.from(b.buffer.targets), Array.from(a.buffer.targets));
  }
  assert.throws(
    () => new ClassBalancedStoragePolicy(9).loadState(new ReservoirSamplingBuffer(9).state()),
    /Cannot load the state of a ReservoirSamplingBuffer into a ClassBalancedStoragePolicy/,
  );
});

Deno.test("online streams: sub-experiences of one origin share a group of the experience-balanced memory", () => {
  const bench = splitOnline(toyBenchmark({ n: 80 }), { experienceSize: 10 }); // 2 origins × 4 subs
  const policy = experienceBalanced({ memSize: 12 });
  const rng = new Rng(0);
  for (const e of bench.train) policy.update({ experience: e, rng });
  assert.equal(bench.train.length, 8);
  assert.deepEqual([...policy.groups.keys()], [0, 1]);
  assert.deepEqual([...policy.groups.values()].map((g) => g.length), [6, 6]);
  assert.deepEqual(policy.groups.get(0)!.classes(), [0, 1]);
  assert.deepEqual(policy.groups.get(1)!.classes(), [2, 3]);
});

// ---------------------------------------------------------------------------------------------
// Replay data loader
// ---------------------------------------------------------------------------------------------

Deno.test("cycling sampler: shuffled passes, short last chunk, every sample once per pass", () => {
  const s = new CyclingSampler(7, 3);
  const rng = new Rng(4);
  const chunks = Array.from({ length: 6 }, () => Array.from(s.next(rng)));
  assert.deepEqual(chunks.map((c) => c.length), [3, 3, 1, 3, 3, 1]);
  assert.deepEqual(chunks.slice(0, 3).flat().sort(), [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(chunks.slice(3).flat().sort(), [0, 1, 2, 3, 4, 5, 6]);
  assert.notDeepEqual(chunks.slice(0, 3).flat(), chunks.slice(3).flat(), "reshuffled");
  assert.equal(s.samplesIn(4), 10);
  assert.equal(s.samplesIn(6), 14);
  assert.throws(() => new CyclingSampler(0, 3), /at least one sample/);
});

Deno.test("replay loader: batchSize current + batchSizeMem memory samples, the whole memory before repeats", () => {
  const data = idData(Array.from({ length: 20 }, (_, i) => i), new Array(20).fill(1));
  const memory = idData(Array.from({ length: 7 }, (_, i) => 100 + i), new Array(7).fill(0));
  const loader = new ReplayDataLoader(data, memory, { batchSize: 4, batchSizeMem: 3 });
  assert.equal(loader.length, 5, "as many minibatches as the current data alone");
  const batches = [...loader.epoch(new Rng(0))].map((p) => batchOf(p));
  // Memory chunks: a pass of 7 in chunks of 3 is 3, 3, 1; then a new pass: 3, 3.
  assert.deepEqual(batches.map((b) => b.n), [7, 7, 5, 7, 7]);
  assert.equal(loader.samples, 20 + 13);
  const cur: number[] = [], mem: number[][] = [];
  for (const b of batches) {
    const xs = Array.from(b.x.subarray(0, b.n));
    assert.ok(xs.slice(0, 4).every((v) => v < 100), "current samples first");
    assert.ok(xs.slice(4).every((v) => v >= 100), "memory samples after");
    assert.deepEqual(Array.from(b.y), [1, 1, 1, 1, ...new Array(b.n - 4).fill(0)]);
    cur.push(...xs.slice(0, 4));
    mem.push(xs.slice(4));
  }
  assert.deepEqual(cur.sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
  const firstPass = mem.slice(0, 3).flat();
  assert.deepEqual([...firstPass].sort(), Array.from({ length: 7 }, (_, i) => 100 + i));
  assert.equal(new Set(mem.slice(3).flat()).size, 6, "second pass: no repeats either");
  // Without shuffling: current data in order, memory in order.
  const plain = [
    ...new ReplayDataLoader(data, memory, { batchSize: 8, batchSizeMem: 5, shuffle: false })
      .epoch(new Rng(0)),
  ].map((p) => batchOf(p));
  assert.deepEqual(Array.from(plain[0].x), [0, 1, 2, 3, 4, 5, 6, 7, 100, 101, 102, 103, 104]);
  assert.deepEqual(Array.from(plain[1].x), [8, 9, 10, 11, 12, 13, 14, 15, 105, 106]);
  assert.deepEqual(Array.from(plain[2].x), [16, 17, 18, 19, 100, 101, 102, 103, 104]);
  // dropLast and the default batchSizeMem (= batchSize).
  const d = new ReplayDataLoader(data, memory, { batchSize: 6, dropLast: true });
  assert.equal(d.length, 3);
  assert.deepEqual([...d.epoch(new Rng(1))].map((b) => b.n), [12, 7, 12]);
  assert.throws(
    () => new ReplayDataLoader(data, toyBenchmark().train[0].dataset, { batchSize: 4 }),
    /a memory is tied to one input shape/,
  );
  assert.throws(() => new ReplayDataLoader(data, memory, { batchSize: 0 }), /batchSize must be/);
});

Deno.test("replay loader, task-balanced: the memory part split equally over the memory's tasks", () => {
  const data = idData(
    Array.from({ length: 8 }, (_, i) => i),
    new Array(8).fill(5),
    new Array(8).fill(2),
  );
  const memIds = [100, 101, 102, 103, 104, 105, 106, 200, 201];
  const tasks = [0, 0, 0, 0, 0, 0, 0, 1, 1];
  const memory = idData(memIds, tasks, tasks);
  const loader = new ReplayDataLoader(data, memory, {
    batchSize: 4,
    batchSizeMem: 5,
    taskBalancedDataLoader: true,
  });
  assert.deepEqual(loader.memoryParts.map((p) => [p.task, p.batch]), [[0, 3], [1, 2]]);
  for (const p of loader.epoch(new Rng(0))) {
    const b = batchOf(p);
    assert.equal(b.n, 9);
    assert.deepEqual(Array.from(b.t), [2, 2, 2, 2, 0, 0, 0, 1, 1]);
  }
  assert.throws(
    () =>
      new ReplayDataLoader(data, memory, {
        batchSize: 4,
        batchSizeMem: 1,
        taskBalancedDataLoader: true,
      }),
    /batchSizeMem \(1\) must be at least the number of tasks in the memory \(2\)/,
  );
});

// ---------------------------------------------------------------------------------------------
// The plugin in a strategy
// ---------------------------------------------------------------------------------------------

/** Records, per training iteration, the batch size and the labels in it. */
function batchRecorder(log: { exp: number; n: number; y: number[] }[]): Plugin {
  return {
    name: "batches",
    beforeTrainingIteration(ctx) {
      log.push({ exp: ctx.experience!.id, n: ctx.batch!.n, y: Array.from(ctx.batch!.data.y) });
    },
  };
}

Deno.test("ReplayPlugin: plain batches first, then batchSize current + batchSizeMem memory samples", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 }); // 40 training samples each
  const model = mlp({ input: 64, hidden: [8], outputs: 6, seed: 0 });
  const plugin = new ReplayPlugin(12, undefined, 5);
  const log: { exp: number; n: number; y: number[] }[] = [];
  const s = naive({ model, batchSize: 8, seed: 0, plugins: [plugin, batchRecorder(log)] });
  const sizes: number[][] = [];
  const memLabels: number[][] = [];
  for (const e of bench.train) {
    await s.train(e);
    sizes.push([...plugin.extMem.values()].map((g) => g.length));
    memLabels.push(Array.from(plugin.buffer.targets));
  }
  assert.deepEqual(sizes, [[12], [6, 6], [4, 4, 4]]);
  const byExp = (k: number) => log.filter((r) => r.exp === k);
  assert.ok(byExp(0).every((r) => r.n === 8), "no memory before the first update");
  for (const k of [1, 2]) {
    // 40 current samples: 5 minibatches of 8; memory of 12 in chunks of 5: 5, 5, 2, 5, 5.
    assert.deepEqual(byExp(k).map((r) => r.n), [13, 13, 10, 13, 13]);
    for (const r of byExp(k)) {
      assert.ok(r.y.slice(0, 8).every((y) => bench.train[k].classes.includes(y)), "current first");
      assert.ok(r.y.slice(8).every((y) => y < 2 * k), `memory from earlier experiences: ${r.y}`);
    }
    // The first three memory parts are the whole memory, once.
    const replayed = byExp(k).slice(0, 3).flatMap((r) => r.y.slice(8));
    assert.deepEqual(replayed.sort(), [...memLabels[k - 1]].sort());
  }
  assert.equal(plugin.buffer.length, 12);
  s.dispose();
  model.dispose();
});

Deno.test("ReplayPlugin: options, builders and errors", () => {
  const p = replayPlugin({ storagePolicy: classBalanced({ memSize: 30 }), batchSizeMem: 4 });
  assert.equal(p.memSize, 30);
  assert.ok(p.storagePolicy instanceof ClassBalancedStoragePolicy);
  assert.equal(new ReplayPlugin().memSize, 200);
  assert.ok(new ReplayPlugin().storagePolicy instanceof ExperienceBalancedStoragePolicy);
  assert.throws(
    () => new ReplayPlugin({ memSize: 10, storagePolicy: classBalanced({ memSize: 30 }) }),
    /memSize \(10\) differs from the storage policy's maxSize \(30\)/,
  );
  assert.throws(() => new ReplayPlugin(0), /memSize must be an integer ≥ 1, got 0/);
  assert.throws(() => new ReplayPlugin({ batchSizeMem: 0 }), /batchSizeMem must be/);
  assert.throws(() => new ReplayPlugin({ storagePolicy: {} as never }), /must be a StoragePolicy/);
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = replay({ model, memSize: 50, batchSizeMem: 7, batchSize: 16 });
  assert.equal(s.name, "Replay");
  assert.equal(s.batchSize, 16);
  const plugin = s.plugins[0] as ReplayPlugin;
  assert.equal(plugin.memSize, 50);
  assert.equal(plugin.batchSizeMem, 7);
  assert.equal(plugin.batchSize, undefined, "the strategy's batch size is not copied");
  s.dispose();
  model.dispose();
});

Deno.test("ReplayPlugin in an online stream: tiny sub-experiences, memory grouped by origin", async () => {
  const bench = splitOnline(toyBenchmark({ n: 80 }), { experienceSize: 10 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const log: { exp: number; n: number; y: number[] }[] = [];
  const plugin = replayPlugin({ memSize: 16 });
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [plugin, batchRecorder(log)] });
  for (const e of bench.train) await s.train(e);
  assert.deepEqual([...plugin.extMem.values()].map((g) => g.length), [8, 8]);
  assert.deepEqual(log.map((r) => r.n), [10, 20, 20, 20, 20, 20, 20, 20]);
  s.dispose();
  model.dispose();
  // The class-balanced policy (Avalanche's choice for online replay) works as well.
  const cb = replayPlugin({ storagePolicy: classBalanced({ memSize: 16 }) });
  const m2 = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s2 = naive({ model: m2, batchSize: 10, seed: 0, plugins: [cb] });
  for (const e of bench.train) await s2.train(e);
  assert.deepEqual([...cb.extMem].map(([c, g]) => [c, g.length]), [[0, 4], [1, 4], [2, 4], [3, 4]]);
  s2.dispose();
  m2.dispose();
});

Deno.test("Replay checkpoint: a run resumed from JSON after experience 0 matches an uninterrupted one", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const make = (modelSeed: number) =>
    replay({
      model: mlp({ input: 64, hidden: [16], outputs: 6, seed: modelSeed }),
      memSize: 20,
      batchSize: 8,
      batchSizeMem: 6,
      epochs: 2,
      seed: 11,
      optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    });
  const full = make(1);
  for (const e of bench.train) await full.train(e);
  const fullEval = await full.eval(bench.test);

  const first = make(1);
  await first.train(bench.train[0]);
  const saved = JSON.parse(JSON.stringify(first.checkpoint()));
  first.dispose();
  first.model.dispose();

  const resumed = make(99);
  await resumed.restore(saved);
  await resumed.train(bench.train[1]);
  await resumed.train(bench.train[2]);
  const resumedEval = await resumed.eval(bench.test);
  assert.deepEqual(resumedEval.experiences, fullEval.experiences);
  assert.deepEqual(resumed.model.stateDict(), full.model.stateDict());
  const ids = (s: typeof full) => Array.from((s.plugins[0] as ReplayPlugin).buffer.targets);
  assert.deepEqual(ids(resumed), ids(full));
  for (const s of [full, resumed]) {
    s.dispose();
    s.model.dispose();
  }
});

Deno.test("Replay: no tensor growth across experiences; everything freed at the end", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const model = mlp({ input: 64, hidden: [16], outputs: 6, seed: 0 });
  const plugin = replayPlugin({ memSize: 30 });
  const s = naive({ model, batchSize: 8, seed: 0, plugins: [plugin] });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  const base = tf.memory().numTensors;
  for (let round = 0; round < 2; round++) {
    for (const e of bench.train) {
      await s.train(e);
      await s.eval(bench.test);
      assert.equal(tf.memory().numTensors, base);
    }
  }
  s.dispose();
  model.dispose();
  plugin.dispose();
  assert.equal(tf.memory().numTensors, start);
});

// ---------------------------------------------------------------------------------------------
// Real data
// ---------------------------------------------------------------------------------------------

Deno.test({
  name: "Replay (memSize 500, batch 128 + 128) beats Naive on class-incremental Split MNIST" +
    (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const { base, ours: rep } = await againstNaiveOnSplitMNIST({
      label: "replay",
      method: (opts) => replay({ ...opts, memSize: 500, batchSizeMem: 128 }),
      trainPerExperience: 2000,
      hidden: [400, 400],
      lr: 0.01,
      batchSize: 128,
      epochs: 2,
    });
    assert.ok(base.meanAccuracy < 0.3, `naive forgets: ${base.meanAccuracy}`);
    assert.ok(rep.meanAccuracy > 0.7, `replay remembers: ${rep.meanAccuracy}`);
    assert.ok(rep.meanAccuracy > base.meanAccuracy + 0.4);
    assert.ok(rep.experiences.every((e) => e.accuracy > 0.5), "every experience retained");
  },
});
