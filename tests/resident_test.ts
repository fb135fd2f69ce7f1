// Tests of resident datasets (float32 inputs held in one tensor) and the row views their
// evaluation minibatches are made of on the WebAssembly heap backends.
import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { registerBlasBackend } from "../lib/backends/blas.ts";
import { rowsView } from "../lib/backends/views.ts";
import { concatDatasets, type Dataset } from "../lib/data/dataset.ts";
import { resident, residentBenchmark, ResidentDataset } from "../lib/engine/resident.ts";
import { withDataset } from "../lib/data/experience.ts";
import { mlp } from "../lib/models/mlp.ts";
import { batchOf, DatasetLoader } from "../lib/data/loader.ts";
import { BatchAssembler } from "../lib/engine/batches.ts";
import { naive } from "../lib/strategy/strategies.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { Rng } from "../lib/random.ts";
import { toyBenchmark } from "./_helpers.ts";

const HEAP = (await registerBlasBackend()).ok ? ["wasm", "blas"] : ["wasm"];

async function onBackend<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    await setBackend(name as "wasm");
    return await fn();
  } finally {
    await setBackend("wasm");
  }
}

/** Every input of `d`, as its own fillBatch writes them. */
function allInputs(d: Dataset): Float32Array {
  const out = new Float32Array(d.length * d.sampleSize);
  d.fillBatch(Int32Array.from({ length: d.length }, (_, i) => i), out, 0);
  return out;
}

/** A toy experience's dataset: a subset of bytes, normalized, as benchmarks make them. */
function toyDataset(): Dataset {
  return toyBenchmark({ n: 120 }).test[1].dataset;
}

Deno.test("resident: the same inputs and labels as its source, on every backend", async () => {
  for (const b of ["cpu", ...HEAP]) {
    await onBackend(b, () => {
      const src = toyDataset();
      const before = tf.memory().numTensors;
      const d = resident(src);
      assert.deepEqual(d.inputShape, src.inputShape);
      assert.deepEqual(d.targets, src.targets);
      assert.deepEqual(d.taskLabels, src.taskLabels);
      const expected = allInputs(src);
      assert.deepEqual(allInputs(d), expected, b);
      // Out of order, with an offset: rows land where they are asked.
      const out = new Float32Array(3 * d.sampleSize + 5);
      d.fillBatch([4, 0, 2], out, 5);
      for (const [k, i] of [4, 0, 2].entries()) {
        assert.deepEqual(
          out.subarray(5 + k * d.sampleSize, 5 + (k + 1) * d.sampleSize),
          expected.subarray(i * d.sampleSize, (i + 1) * d.sampleSize),
        );
      }
      assert.deepEqual(d.inputs.shape, [src.length, ...src.inputShape]);
      assert.deepEqual(d.inputs.dataSync(), expected);
      assert.throws(() => d.fillBatch([src.length], out), /index 30 is out of range.*of 30/);
      d.dispose();
      assert.equal(tf.memory().numTensors, before, `${b}: dispose frees the tensor`);
      assert.throws(() => d.fillBatch([0], out), /disposed: make a new one with resident/);
    });
  }
});

Deno.test("resident: a tensor made on one backend is read on another", async () => {
  const src = toyDataset();
  const d = await onBackend(HEAP[HEAP.length - 1], () => resident(src));
  try {
    await onBackend("cpu", () => assert.deepEqual(allInputs(d), allInputs(src)));
  } finally {
    d.dispose();
  }
});

Deno.test("resident: rowsView gives views of the dataset's memory on the heap backends", async () => {
  for (const b of HEAP) {
    await onBackend(b, () => {
      const d = resident(toyDataset());
      const size = d.sampleSize, values = allInputs(d);
      const be = tf.backend() as unknown as {
        dataIdMap: { get(id: tf.DataId): { memoryOffset: number } };
      };
      const v = d.rowsView(3, 5)!;
      assert.deepEqual(v.shape, [5, ...d.inputShape]);
      assert.deepEqual(v.dataSync(), values.subarray(3 * size, 8 * size));
      assert.equal(
        be.dataIdMap.get(v.dataId).memoryOffset,
        be.dataIdMap.get(d.inputs.dataId).memoryOffset + 3 * size * 4,
        "no copy: the view starts inside the dataset's tensor",
      );
      // Kernels read a view as any tensor.
      assert.deepEqual(
        tf.sum(v, 1).dataSync(),
        tf.sum(tf.tensor(values.subarray(3 * size, 8 * size), [5, size]), 1).dataSync(),
      );
      v.dispose();
      assert.equal(d.rowsView(0, d.length + 1), undefined, "rows past the end");
      d.dispose();
    });
  }
  await onBackend("cpu", () => {
    const d = resident(toyDataset());
    assert.equal(d.rowsView(0, 4), undefined, "cpu: no views, batches are copied");
    d.dispose();
  });
});

Deno.test("rowsView: disposing a view never frees memory, and a view keeps its source alive", async () => {
  for (const b of HEAP) {
    await onBackend(b, () => {
      const before = tf.memory().numTensors;
      const beforeBuffers = tf.memory().numDataBuffers;
      const values = Float32Array.from({ length: 64 * 100 }, (_, i) => i % 977);
      const source = tf.tensor(values, [64, 100]);
      for (let round = 0; round < 20; round++) {
        const v = rowsView(source, round, 8)!;
        tf.tidy(() => tf.add(v, 1).dataSync());
        v.dispose();
        // Were a view's memory freed, these allocations could land inside the source.
        const filler = tf.tidy(() => tf.fill([8, 100], -1));
        filler.dispose();
      }
      const junk = Array.from({ length: 10 }, () => tf.fill([8, 100], -2));
      assert.deepEqual(source.dataSync(), values, `${b}: the source is intact`);
      tf.dispose(junk);
      // A clone shares the view's data on "blas" (Identity): it outlives the view.
      const view = rowsView(source, 10, 3)!;
      const clone = tf.clone(view);
      view.dispose();
      assert.deepEqual(clone.dataSync(), values.subarray(1000, 1300));
      clone.dispose();
      // The source disposed first: the view still reads it, and the last view frees it.
      const v1 = rowsView(source, 60, 4)!, v2 = rowsView(source, 0, 2)!;
      source.dispose();
      const fresh = tf.fill([64, 100], 7);
      assert.deepEqual(v1.dataSync(), values.subarray(6000, 6400));
      v1.dispose();
      assert.deepEqual(v2.dataSync(), values.subarray(0, 200));
      v2.dispose();
      fresh.dispose();
      assert.equal(tf.memory().numTensors, before);
      assert.equal(tf.memory().numDataBuffers, beforeBuffers, "no data left behind");
      assert.throws(
        () => rowsView(tf.tensor([1, 2]), 1, 2),
        /rows 1 to 2 are outside the source's 2 rows/,
      );
      assert.throws(
        () => rowsView(tf.tensor([1, 2], [2], "int32"), 0, 1),
        /float32 tensor of rank ≥ 1, got int32/,
      );
    });
  }
  await onBackend("cpu", () => {
    const t = tf.tensor([1, 2, 3, 4], [2, 2]);
    assert.equal(rowsView(t, 0, 1), undefined);
    t.dispose();
  });
});

Deno.test("contiguousRows looks through relabeled views, consecutive subsets and concatenations, and such rows are views", async () => {
  await onBackend(HEAP[0], () => {
    const d = resident(toyDataset());
    const size = d.sampleSize, values = allInputs(d);
    const assembler = new BatchAssembler();
    /** The inputs the assembler makes for samples `start ..` of `ds`, and whether it made a view. */
    const rows = (ds: Dataset, start: number, n: number) =>
      tf.tidy(() => {
        const indices = Int32Array.from({ length: n }, (_, k) => start + k);
        const b = assembler.assemble({ n, parts: [{ dataset: ds, indices }] }, ds.inputShape);
        return { values: b.x.dataSync().slice(), view: assembler.lastPath === "view" };
      });
    const relabeled = d.relabel({ targets: d.targets.map((y) => y + 1) });
    assert.deepEqual(relabeled.contiguousRows(2, 3), { dataset: d, start: 2 });
    assert.deepEqual(rows(relabeled, 2, 3), {
      values: values.subarray(2 * size, 5 * size),
      view: true,
    });
    const sub = d.subset([5, 6, 7, 8, 1]);
    assert.deepEqual(sub.contiguousRows(0, 4), { dataset: d, start: 5 });
    assert.deepEqual(rows(sub, 0, 4), { values: values.subarray(5 * size, 9 * size), view: true });
    assert.equal(sub.contiguousRows(3, 2), undefined, "8 then 1: not consecutive");
    assert.equal(rows(sub, 3, 2).view, false);
    const other = resident(toyDataset());
    const cat = concatDatasets([d, other]);
    assert.deepEqual(cat.contiguousRows(d.length + 1, 2), { dataset: other, start: 1 });
    assert.deepEqual(rows(cat, d.length + 1, 2), {
      values: values.subarray(size, 3 * size),
      view: true,
    });
    assert.equal(cat.contiguousRows(d.length - 1, 2), undefined, "straddles two parts");
    assert.equal(d.contiguousRows(0, d.length + 1), undefined, "rows past the end");
    assert.equal(rows(toyDataset(), 0, 2).view, false, "bytes: no view");
    d.dispose();
    other.dispose();
  });
});

Deno.test("the assembler hands out views for unshuffled minibatches of resident data, and copies shuffled ones", async () => {
  await onBackend(HEAP[0], () => {
    const d = resident(toyDataset());
    const assembler = new BatchAssembler();
    const paths = (shuffle: boolean) => {
      const loader = new DatasetLoader(d, { batchSize: 8, shuffle });
      const out: string[] = [];
      for (const plan of loader.epoch(new Rng(0))) {
        const want = batchOf(plan);
        tf.tidy(() => {
          const b = assembler.assemble(plan, d.inputShape);
          out.push(`${assembler.lastPath}:${b.n}`);
          assert.deepEqual(b.x.dataSync(), want.x);
          assert.deepEqual(b.data.y, want.y);
          assert.deepEqual(b.data.t, want.t);
        });
      }
      return out;
    };
    assert.deepEqual(paths(false), ["view:8", "view:8", "view:8", "view:6"]);
    assert.deepEqual(
      paths(true).map((p) => p.split(":")[0]),
      ["in place", "in place", "in place", "in place"],
    );
    d.dispose();
  });
});

/** The model's parameters' values, for comparing runs. */
function weights(m: ReturnType<typeof mlp>): number[][] {
  return [...m.namedParameters().values()].map((p) => Array.from(p.dataSync()));
}

Deno.test("strategy: evaluation and unshuffled training on resident data equal those on bytes, with views and no leak", async () => {
  for (const b of HEAP) {
    await onBackend(b, async () => {
      const bench = toyBenchmark({ n: 200 });
      const held = residentBenchmark(bench, { streams: ["train", "test"] });
      const run = async (data: typeof bench) => {
        const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 3 });
        let writes = 0;
        const probe: Plugin = {
          name: "probe",
          afterEvalForward(ctx) {
            // A shared batch's array is a copy: writing into it must not reach the dataset.
            const x = ctx.batch!.data.x;
            x.fill(1e6);
            writes++;
          },
        };
        const s = naive({
          model,
          batchSize: 16,
          evalBatchSize: 8,
          shuffle: false,
          seed: 1,
          plugins: [probe],
        });
        const evals = [];
        for (const exp of data.train) {
          await s.train(exp);
          const r = await s.eval(data.test);
          evals.push({ experiences: r.experiences, accuracy: r.accuracy, loss: r.loss });
        }
        const w = weights(model);
        s.dispose();
        model.dispose();
        return { evals, w, writes };
      };
      const bytes = await run(bench);
      let views = 0;
      for (const e of [...held.train, ...held.test]) {
        const d = e.dataset as ResidentDataset;
        const shared = d.rowsView.bind(d);
        d.rowsView = (s, n) => {
          const v = shared(s, n);
          if (v) views++;
          return v;
        };
      }
      const before = tf.memory().numTensors;
      const first = await run(held);
      assert.equal(tf.memory().numTensors, before, `${b}: no tensor left by a run`);
      const second = await run(held);
      assert.equal(tf.memory().numTensors, before);
      assert.ok(views > 0, "minibatches were views");
      assert.deepEqual(first.evals, bytes.evals, `${b}: same evaluation`);
      assert.deepEqual(first.w, bytes.w, `${b}: same training`);
      assert.deepEqual(second.evals, first.evals, "the writes into batch arrays reached nothing");
      assert.ok(first.writes > 0);
      held.dispose();
      assert.equal(tf.memory().numTensors, before - held.train.length - held.test.length);
    });
  }
});

Deno.test("residentBenchmark: which streams, other fields kept, clear errors", async () => {
  await onBackend(HEAP[0], () => {
    const bench = toyBenchmark();
    const before = tf.memory().numTensors;
    const held = residentBenchmark(bench);
    assert.ok(held.test.every((e) => e.dataset instanceof ResidentDataset));
    assert.ok(held.train.every((e) => !(e.dataset instanceof ResidentDataset)));
    assert.equal(held.test.name, "test");
    assert.deepEqual(held.classOrder, bench.classOrder);
    assert.deepEqual(held.test.map((e) => e.classes), bench.test.map((e) => e.classes));
    assert.equal(tf.memory().numTensors, before + bench.test.length);
    held[Symbol.dispose]();
    assert.equal(tf.memory().numTensors, before);
    assert.throws(
      () => residentBenchmark(bench, { streams: ["valid"] }),
      /unknown stream "valid": use "train" and\/or "test"/,
    );
    assert.throws(
      () => resident(withDataset(bench.test[0], bench.test[0].dataset).dataset.subset([])),
      /the dataset is empty/,
    );
  });
});
