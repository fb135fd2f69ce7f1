// Tests of lib/plugins/memory.ts: the one memory type of the rehearsal methods (replay storage
// policies, GDumb, GEM, A-GEM), its per-sample fields, and its plain-data states.
import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { ArrayDataset, type Dataset } from "../lib/data/dataset.ts";
import { Rng } from "../lib/random.ts";
import {
  EpisodicMemory,
  type EpisodicMemoryState,
  MemoryDataset,
  SampleMemory,
} from "../lib/plugins/memory.ts";
import {
  ClassBalancedStoragePolicy,
  MemoryDataset as PolicyMemoryDataset,
  ReservoirSamplingBuffer,
} from "../lib/plugins/storage_policy.ts";
import { EpisodicMemory as GEMEpisodicMemory } from "../lib/plugins/gem.ts";

/** Sample i has the features (ids[i], -ids[i]), label ids[i] % 3 and task 1. */
function idData(ids: number[]): ArrayDataset {
  return new ArrayDataset({
    x: Float32Array.from(ids.flatMap((v) => [v, -v])),
    y: ids.map((v) => v % 3),
    taskLabels: ids.map(() => 1),
    inputShape: [2],
  });
}

/** The first feature (the identity) of every sample. */
function ids(d: Dataset): number[] {
  const x = d.batch(Int32Array.from({ length: d.length }, (_, i) => i)).x;
  return Array.from({ length: d.length }, (_, i) => x[2 * i]);
}

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

Deno.test("SampleMemory: store, sample, a per-sample field, state round trip", () => {
  const d = idData(range(20, 100));
  // Store: a view of every sample; sample: a random selection drawn from the run's generator.
  const all = SampleMemory.of(d);
  assert.equal(all.length, 20);
  assert.deepEqual(all.sources, [d], "a view shares its source's storage");
  const picked = new Rng(3).sample(d.length, 5);
  const m = all.select(picked);
  assert.deepEqual(ids(m), [...picked].map((i) => 100 + i));
  assert.deepEqual([...m.targets], [...picked].map((i) => (100 + i) % 3));
  assert.deepEqual([...m.taskLabels], [1, 1, 1, 1, 1]);

  // A named field of two values per sample (say, logits) follows its samples.
  const logits = [...picked].flatMap((i) => [i, 10 * i]);
  const withLogits = m.withField("logits", logits, [2]);
  assert.deepEqual(withLogits.fieldNames, ["logits"]);
  assert.deepEqual(m.fieldNames, [], "withField returns a new memory");
  assert.deepEqual(withLogits.field("logits")!.shape, [2]);
  assert.deepEqual([...withLogits.field("logits")!.values], logits);
  const back2 = withLogits.select([4, 0]);
  assert.deepEqual([...back2.field("logits")!.values], [
    picked[4],
    10 * picked[4],
    picked[0],
    10 * picked[0],
  ]);
  assert.equal(withLogits.field("scores"), undefined);
  // Concatenation keeps the fields of parts that have samples; parts must agree.
  const more = all.select([0]).withField("logits", [-1, -2], [2]);
  const joined = SampleMemory.concat([SampleMemory.empty([2]), withLogits, more]);
  assert.deepEqual(ids(joined), [...ids(withLogits), 100]);
  assert.deepEqual([...joined.field("logits")!.values], [...logits, -1, -2]);
  assert.throws(() => SampleMemory.concat([withLogits, m]), /different fields.*same fields/);
  assert.throws(() => m.withField("logits", [1, 2, 3], [2]), /3 values for 5 samples of 2/);
  assert.throws(() => m.withField("logits", range(5), [0]), /integers ≥ 1, got \[0\]/);
  assert.throws(() => m.withField("", range(5), [1]), /non-empty name/);

  // State round trip through JSON: samples, labels and the field.
  const state = JSON.parse(JSON.stringify(withLogits.materialize()));
  assert.deepEqual(Object.keys(state).sort(), ["fields", "inputShape", "t", "x", "y"]);
  const restored = SampleMemory.fromMaterialized(state);
  assert.deepEqual(ids(restored), ids(withLogits));
  assert.deepEqual(restored.targets, withLogits.targets);
  assert.deepEqual(restored.taskLabels, withLogits.taskLabels);
  assert.deepEqual(restored.field("logits"), withLogits.field("logits"));
  // Without fields the state has exactly the keys it always had (older checkpoints read as is).
  assert.deepEqual(Object.keys(m.materialize()).sort(), ["inputShape", "t", "x", "y"]);
  const old = { x: [7, -7], y: [1], t: [0], inputShape: [2] };
  assert.deepEqual(ids(SampleMemory.fromMaterialized(old)), [7]);
  assert.throws(
    () => SampleMemory.fromMaterialized({ ...old, x: [7] }),
    /1 labels holds 1 inputs/,
  );
  assert.throws(() => SampleMemory.fromMaterialized({} as never), /needs arrays x, y, t/);

  // A copy keeps no reference to its dataset; fields are copied with the samples.
  const copy = SampleMemory.copyOf(withLogits, [1, 2]);
  assert.ok(!copy.sources.includes(d));
  assert.deepEqual(ids(copy), ids(withLogits).slice(1, 3));
  assert.deepEqual([...copy.field("logits")!.values], logits.slice(2, 6));
  assert.deepEqual(ids(SampleMemory.copyOf(d, [19, 0])), [119, 100]);

  // The earlier name is the same class.
  assert.equal(MemoryDataset, SampleMemory);
  assert.equal(PolicyMemoryDataset, SampleMemory);
  assert.ok(MemoryDataset.of(d) instanceof SampleMemory);
  assert.equal(GEMEpisodicMemory, EpisodicMemory);
});

Deno.test("SampleMemory.tensors: the samples asked for, no tensor left outside the scope", () => {
  const d = idData(range(6, 10));
  const copy = SampleMemory.copyOf(d, [5, 1, 3]);
  const start = tf.memory().numTensors;
  tf.tidy(() => {
    const every = copy.tensors();
    assert.deepEqual(every.x.arraySync(), [[15, -15], [11, -11], [13, -13]]);
    assert.deepEqual([...every.y.dataSync()], [15 % 3, 11 % 3, 13 % 3]);
    assert.deepEqual([...every.tArray], [1, 1, 1]);
    const some = SampleMemory.of(d).tensors(Int32Array.from([2, 2, 0]));
    assert.equal(some.n, 3);
    assert.deepEqual(some.x.arraySync(), [[12, -12], [12, -12], [10, -10]]);
    assert.throws(() => copy.tensors(Int32Array.from([3])), /index 3 is out of range/);
  });
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("EpisodicMemory keeps one SampleMemory per experience; fields survive its state", () => {
  const d = idData(range(12));
  const drawn = new EpisodicMemory();
  const idx = drawn.addRandom(d, 4, new Rng(0));
  assert.deepEqual([...idx], [...new Rng(0).sample(12, 4)], "the same draws as before");
  assert.deepEqual(ids(drawn.part(0)), [...idx]);
  assert.ok(!drawn.part(0).sources.includes(d), "GEM's memory holds copies");
  // Experiences stored with a per-sample score.
  const memory = new EpisodicMemory();
  const first = SampleMemory.copyOf(d, idx).withField("score", [1, 2, 3, 4], [1]);
  const second = SampleMemory.copyOf(d, [7, 8]).withField("score", [0.5, 0.25], [1]);
  memory.addMemory(first);
  memory.addMemory(second);
  assert.deepEqual(memory.sizes, [4, 2]);
  assert.deepEqual(ids(memory.buffer), [...idx, 7, 8]);
  assert.deepEqual([...memory.buffer.field("score")!.values], [1, 2, 3, 4, 0.5, 0.25]);
  assert.deepEqual([...memory.targets], [...idx, 7, 8].map((v) => v % 3));
  assert.deepEqual([...memory.chunk(1).x], [7, -7, 8, -8]);
  assert.deepEqual(memory.chunk(0), drawn.chunk(0));
  const state: EpisodicMemoryState = JSON.parse(JSON.stringify(memory.state()));
  assert.deepEqual(state.experiences[1].fields, { score: { shape: [1], values: [0.5, 0.25] } });
  // Without fields, the state has the keys it always had (older checkpoints read as is).
  assert.deepEqual(Object.keys(drawn.state().experiences[0]).sort(), ["t", "x", "y"]);
  const copy = new EpisodicMemory();
  copy.loadState(state);
  assert.deepEqual(copy.sizes, [4, 2]);
  assert.deepEqual(copy.chunk(0), memory.chunk(0));
  assert.deepEqual(copy.part(1).field("score"), second.field("score"));
  assert.deepEqual(copy.state(), state);
  assert.throws(() => drawn.addMemory(second), /fields \[\], cannot add samples with \[score\]/);
  assert.throws(
    () =>
      memory.addMemory(
        SampleMemory.of(new ArrayDataset({ x: Float32Array.from([1]), y: [0], inputShape: [1] })),
      ),
    /shape \[2\], cannot add samples of shape \[1\]/,
  );
  assert.throws(() => memory.addMemory(d as never), /expects a SampleMemory/);
  assert.throws(() => memory.part(2), /experience 2 does not exist/);
});

Deno.test("storage policies carry per-sample fields through updates and checkpoints", () => {
  const d = idData(range(30, 200));
  // The field of each sample is its identity times 10, so alignment is checked sample by sample.
  const data = SampleMemory.of(d).withField("logit", range(30, 200).map((v) => 10 * v), [1]);
  const aligned = (m: SampleMemory) =>
    assert.deepEqual([...m.field("logit")!.values], ids(m).map((v) => 10 * v));

  const r = new ReservoirSamplingBuffer(8);
  const plain = new ReservoirSamplingBuffer(8);
  r.updateFromDataset(data, new Rng(5));
  plain.updateFromDataset(d, new Rng(5));
  assert.deepEqual(ids(r.buffer), ids(plain.buffer), "a field changes no draw");
  aligned(r.buffer);
  r.resize(5);
  aligned(r.buffer);
  const restored = new ReservoirSamplingBuffer(5);
  restored.loadState(JSON.parse(JSON.stringify(r.state())));
  assert.deepEqual(ids(restored.buffer), ids(r.buffer));
  aligned(restored.buffer);

  const cb = new ClassBalancedStoragePolicy({ memSize: 9 });
  cb.updateFromDataset(data, new Rng(1));
  assert.deepEqual([...cb.groups.values()].map((g) => g.length), [3, 3, 3]);
  aligned(cb.buffer);
  const again = new ClassBalancedStoragePolicy({ memSize: 9 });
  again.loadState(JSON.parse(JSON.stringify(cb.state())));
  aligned(again.buffer);
  assert.deepEqual(ids(again.buffer), ids(cb.buffer));
});
