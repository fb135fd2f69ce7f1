import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../lib/backend.ts";
import { syntheticImages } from "../datasets/mod.ts";
import { permuted, permutedMNIST, subsample, taskIncremental } from "../lib/benchmarks/mod.ts";
import { toArrayDatasets } from "../lib/benchmarks/classic.ts";
import { mlp, multiHeadMLP } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import {
  agem,
  AGEMPlugin,
  agemPlugin,
  agemProject,
  experienceBalancedSample,
} from "../lib/plugins/agem.ts";
import { flattenGradients, memoryGradients } from "../lib/plugins/gem.ts";
import { Rng } from "../lib/random.ts";
import type { StrategyContext } from "../lib/strategy/context.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { Strategy } from "../lib/strategy/template.ts";
import { SHARED_DATA, toyBenchmark } from "./_helpers.ts";

await setBackend("wasm");

function flatValues(
  grads: ReadonlyMap<string, tf.Tensor>,
  params: ReadonlyMap<string, tf.Variable>,
): Float64Array {
  const f = flattenGradients(grads, params);
  const v = Float64Array.from(f.dataSync());
  f.dispose();
  return v;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

const norm = (a: ArrayLike<number>) => Math.sqrt(dot(a, a));

function permutedToy() {
  const { train, test } = toArrayDatasets({
    name: "toy",
    classes: 4,
    train: syntheticImages({ n: 120, classes: 4, rows: 8, cols: 8, seed: 1 }),
    test: syntheticImages({ n: 40, classes: 4, rows: 8, cols: 8, seed: 2 }),
  }, { normalize: false });
  return permuted({ train, test, experiences: 3, seed: 0 });
}

// --------------------------------------------------------------------------- projection ----

Deno.test("agemProject: hand-computed cases, untouched when the dot product is ≥ 0", () => {
  const start = tf.memory().numTensors;
  tf.tidy(() => {
    // g = (1, −1), g_ref = (0, 2): g·g_ref = −2, |g_ref|² = 4, g̃ = g + ½ g_ref = (1, 0).
    const a = agemProject(
      new Map([["w", tf.tensor1d([1, -1])]]),
      new Map([["w", tf.tensor1d([0, 2])]]),
    );
    assert.deepEqual([...a.grads.get("w")!.dataSync()], [1, 0]);
    assert.equal(a.dot.dataSync()[0], -2);
    assert.equal(a.refNorm2.dataSync()[0], 4);
    assert.equal(a.projected.dataSync()[0], 1);
    // g·g_ref = 2 ≥ 0: the same tensor values back.
    const g = tf.tensor1d([1, 1]);
    const b = agemProject(new Map([["w", g]]), new Map([["w", tf.tensor1d([0, 2])]]));
    assert.deepEqual([...b.grads.get("w")!.dataSync()], [1, 1]);
    assert.equal(b.projected.dataSync()[0], 0);
    // Orthogonal (dot = 0) is not projected either.
    const c = agemProject(new Map([["w", g]]), new Map([["w", tf.tensor1d([1, -1])]]));
    assert.equal(c.projected.dataSync()[0], 0);
    // Several parameters, one without a current gradient ("c"), one without a reference ("b"):
    // the dot product runs over "a" only, g_a·r_a = (−1, 0)·(2, 0) = −2, while |g_ref|² counts
    // every reference, 4 + 9 = 13; so g̃_a = g_a + (2/13)·r_a and "b" is kept as it is.
    const d = agemProject(
      new Map<string, tf.Tensor>([["a", tf.tensor1d([-1, 0])], ["b", tf.tensor2d([[5]])]]),
      new Map([["a", tf.tensor1d([2, 0])], ["c", tf.tensor1d([3])]]),
    );
    assert.deepEqual([...d.grads.keys()], ["a", "b"]);
    const ga = d.grads.get("a")!.dataSync();
    assert.ok(Math.abs(ga[0] - (-1 + (2 / 13) * 2)) < 1e-6 && ga[1] === 0);
    assert.deepEqual(d.grads.get("b")!.arraySync(), [[5]]);
    // A zero reference gradient changes nothing (no division by zero).
    const z = agemProject(new Map([["w", g]]), new Map([["w", tf.zeros([2])]]));
    assert.deepEqual([...z.grads.get("w")!.dataSync()], [1, 1]);
    assert.throws(
      () => agemProject(new Map([["w", g]]), new Map([["w", tf.zeros([3])]])),
      /"w" has shape \[2\] but its reference \[3\]/,
    );
  });
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("agemProject on random vectors: g̃·g_ref ≥ −1e-6 and g̃ is the half-space projection", () => {
  const rng = new Rng(4);
  let projected = 0;
  for (let k = 0; k < 40; k++) {
    const gv = Array.from({ length: 9 }, () => rng.normal());
    const rv = Array.from({ length: 9 }, () => rng.normal());
    tf.tidy(() => {
      const r = agemProject(
        new Map<string, tf.Tensor>([["x", tf.tensor2d(gv.slice(0, 6), [2, 3])], [
          "y",
          tf.tensor1d(gv.slice(6)),
        ]]),
        new Map<string, tf.Tensor>([["x", tf.tensor2d(rv.slice(0, 6), [2, 3])], [
          "y",
          tf.tensor1d(rv.slice(6)),
        ]]),
      );
      const out = [...r.grads.get("x")!.dataSync(), ...r.grads.get("y")!.dataSync()];
      const d = dot(gv, rv);
      const expected = d < 0 ? gv.map((v, i) => v - (d / dot(rv, rv)) * rv[i]) : gv;
      out.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5));
      assert.ok(dot(out, rv) >= -1e-6, `g̃·g_ref = ${dot(out, rv)}`);
      if (d < 0) projected++;
    });
  }
  assert.ok(projected >= 10);
});

// ---------------------------------------------------------------------------- the plugin ----

Deno.test("AGEM plugin: after projection g̃·g_ref ≥ 0 on the sampled memory, untouched when already ≥ 0", async () => {
  let projected = 0;
  let untouched = 0;
  for (const bench of [toyBenchmark({ n: 240, classes: 6, experiences: 3 }), permutedToy()]) {
    const model = mlp({ input: 64, hidden: [16], outputs: 6, seed: 0 });
    const plugin = new AGEMPlugin({
      patternsPerExperience: 12,
      sampleSize: 10,
      sampling: "uniform",
    });
    let g: Float64Array | undefined;
    const samples: Int32Array[] = [];
    const before: Plugin = {
      afterBackward(ctx: StrategyContext) {
        g = flatValues(ctx.grads!, ctx.params);
      },
    };
    const after: Plugin = {
      afterBackward(ctx: StrategyContext) {
        if (plugin.memory.size === 0) return;
        const idx = plugin.lastSample;
        samples.push(idx);
        assert.equal(idx.length, Math.min(10, plugin.memory.size));
        assert.equal(new Set(idx).size, idx.length, "drawn without replacement");
        let ref: Float64Array = new Float64Array(0);
        tf.tidy(() => {
          ref = flatValues(memoryGradients(ctx, ctx.params, plugin.memory.gather(idx)), ctx.params);
        });
        const gt = flatValues(ctx.grads!, ctx.params);
        const d = dot(g!, ref);
        if (d >= 0) {
          untouched++;
          assert.deepEqual(gt, g, "dot product ≥ 0: gradient untouched");
          return;
        }
        projected++;
        const alpha = d / dot(ref, ref);
        gt.forEach((v, i) => assert.ok(Math.abs(v - (g![i] - alpha * ref[i])) < 1e-5));
        const after = dot(gt, ref);
        assert.ok(after >= -1e-6 * Math.max(1, norm(gt) * norm(ref)), `g̃·g_ref = ${after}`);
      },
    };
    const s = naive({
      model,
      batchSize: 8,
      seed: 0,
      optimizer: sgd({ lr: 0.1 }),
      plugins: [before, plugin, after],
    });
    for (const exp of bench.train) await s.train(exp);
    const iterations = bench.train.slice(1).map((e) => Math.ceil(e.dataset.length / 8));
    assert.equal(plugin.checks, iterations[0] + iterations[1]);
    assert.equal(samples.length, plugin.checks);
    // Experience 1: memory of 12 > 10, a random draw each iteration; experience 2: 24 samples.
    assert.ok(new Set(samples.map((x) => x.join())).size > samples.length / 2, "fresh draws");
    assert.ok(samples.slice(iterations[0]).some((x) => x.some((i) => i >= 12)));
    s.dispose();
    model.dispose();
    plugin.dispose();
  }
  assert.ok(projected >= 10, `projected: ${projected}`);
  assert.ok(untouched >= 3, `untouched: ${untouched}`);
});

Deno.test("AGEM plugin: merged memory of patternsPerExperience samples per experience; counters", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const model = mlp({ input: 64, hidden: [8], outputs: 6, seed: 0 });
  const s = agem({
    model,
    patternsPerExperience: 7,
    sampleSize: 50,
    batchSize: 10,
    seed: 0,
    sampling: "uniform",
  });
  const plugin = s.plugins[0] as AGEMPlugin;
  let seen: Int32Array[] = [];
  s.plugins.push({ afterBackward: () => void seen.push(plugin.lastSample) });
  for (const exp of bench.train) await s.train(exp);
  assert.deepEqual(plugin.memory.sizes, [7, 7, 7]);
  assert.equal(plugin.memory.size, 21);
  for (let k = 0; k < 3; k++) {
    for (const y of plugin.memory.chunk(k).y) assert.ok(bench.train[k].classes.includes(y));
  }
  // Memory smaller than sampleSize: every sample, in order, without drawing.
  seen = seen.filter((x) => x.length > 0);
  assert.equal(seen.length, plugin.checks);
  assert.deepEqual([...seen[seen.length - 1]], [...Array(14).keys()]);
  assert.ok(plugin.projections > 0 && plugin.projections <= plugin.checks);
  s.dispose();
  model.dispose();
  const before = plugin.projections;
  plugin.dispose();
  assert.equal(plugin.projections, before, "the count survives dispose()");
  assert.equal(plugin.memory.size, 0);
});

Deno.test("AGEM plugin: by default the reference batch takes ⌊sampleSize / k⌋ samples of each experience, with replacement (Avalanche)", async () => {
  const bench = toyBenchmark({ n: 180, classes: 6, experiences: 3 });
  const model = mlp({ input: 64, hidden: [8], outputs: 6, seed: 0 });
  const s = agem({ model, patternsPerExperience: 6, sampleSize: 20, batchSize: 10, seed: 0 });
  const plugin = s.plugins[0] as AGEMPlugin;
  assert.equal(plugin.sampling, "experienceBalanced");
  const seen: { k: number; idx: Int32Array }[] = [];
  s.plugins.push({
    afterBackward: () => void seen.push({ k: plugin.memory.experiences, idx: plugin.lastSample }),
  });
  for (const exp of bench.train) await s.train(exp);
  const drawn = seen.filter((x) => x.k > 0);
  assert.ok(drawn.some((x) => x.k === 1) && drawn.some((x) => x.k === 2));
  let repeats = 0;
  for (const { k, idx } of drawn) {
    const per = Math.floor(20 / k); // 20 with one experience (more than its 6 samples), 10 with two
    assert.equal(idx.length, per * k);
    for (let j = 0; j < k; j++) {
      for (const i of idx.slice(j * per, (j + 1) * per)) assert.ok(i >= 6 * j && i < 6 * (j + 1));
    }
    if (new Set(idx).size < idx.length) repeats++;
  }
  assert.equal(
    repeats,
    drawn.length,
    "drawn with replacement: 10 or 20 draws from 6 samples repeat",
  );
  assert.throws(
    () => new AGEMPlugin({ patternsPerExperience: 4, sampleSize: 8, sampling: "all" as never }),
    /sampling must be "experienceBalanced" or "uniform"/,
  );
  s.dispose();
  model.dispose();
});

Deno.test("experienceBalancedSample: per-experience counts, offsets, at least one per experience", () => {
  const rng = new Rng(3);
  const idx = experienceBalancedSample([250, 0, 100], 256, rng);
  assert.equal(idx.length, 256);
  assert.ok(idx.slice(0, 128).every((i) => i >= 0 && i < 250));
  assert.ok(idx.slice(128).every((i) => i >= 250 && i < 350));
  assert.equal(experienceBalancedSample([5, 5, 5], 2, rng).length, 3);
  assert.equal(experienceBalancedSample([], 10, rng).length, 0);
});

/** Runs `fn` and counts the tensor read-backs (dataSync, data, arraySync, array) it makes. */
function countReads(fn: () => void): number {
  const proto = tf.Tensor.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  const saved = ["dataSync", "data", "arraySync", "array"].map((k) => [k, proto[k]] as const);
  let reads = 0;
  for (const [k, f] of saved) {
    proto[k] = function (this: unknown, ...a: unknown[]) {
      reads++;
      return f.apply(this, a);
    };
  }
  try {
    fn();
  } finally {
    for (const [k, f] of saved) proto[k] = f;
  }
  return reads;
}

Deno.test("AGEM reads nothing back from the device in its iterations (one count per experience)", async () => {
  assert.equal(countReads(() => tf.tidy(() => void tf.scalar(1).dataSync())), 1, "the spy works");
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const model = mlp({ input: 64, hidden: [8], outputs: 6, seed: 0 });
  const inner = new AGEMPlugin(10, 5);
  let reads = 0, expReads = 0;
  const wrapped: Plugin = {
    name: "wrapped",
    // One asynchronous read per experience: the projection count joins its offset.
    afterTrainingExp: (ctx) => void (expReads += countReads(() => inner.afterTrainingExp(ctx))),
    afterBackward: (ctx) => void (reads += countReads(() => inner.afterBackward(ctx))),
  };
  const s = naive({ model, batchSize: 10, seed: 0, plugins: [wrapped] });
  for (const exp of bench.train) await s.train(exp);
  assert.ok(inner.checks > 0);
  assert.equal(reads, 0);
  assert.ok(expReads <= bench.train.length, `${expReads} reads after experiences`);
  s.dispose();
  model.dispose();
  inner.dispose();
});

Deno.test("AGEM with a multi-head model passes the memory's task labels", async () => {
  const { train, test } = toArrayDatasets({
    name: "toy",
    classes: 4,
    train: syntheticImages({ n: 80, classes: 4, rows: 8, cols: 8, seed: 1 }),
    test: syntheticImages({ n: 40, classes: 4, rows: 8, cols: 8, seed: 2 }),
  }, { normalize: false });
  const bench = taskIncremental({ train, test, experiences: 2, fixedClassOrder: [0, 1, 2, 3] });
  const model = multiHeadMLP({ input: 64, hidden: [8], outputs: 2, seed: 0 });
  const s = agem({ model, patternsPerExperience: 10, sampleSize: 4, batchSize: 8, seed: 0 });
  const head0 = () => model.namedParameters().get("classifier.head0.weight")!.arraySync();
  await s.train(bench.train[0]);
  const h0 = head0();
  await s.train(bench.train[1]);
  const plugin = s.plugins[0] as AGEMPlugin;
  assert.ok(plugin.checks > 0);
  assert.deepEqual([...plugin.memory.taskLabels], [
    ...new Array(10).fill(0),
    ...new Array(10).fill(1),
  ]);
  assert.deepEqual(head0(), h0, "head 0 has no current gradient: not written");
  s.dispose();
  model.dispose();
  plugin.dispose();
});

Deno.test("AGEM checkpoint: a run resumed after experience 0 (JSON round trip) matches an uninterrupted one", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const make = (modelSeed: number) =>
    agem({
      model: mlp({ input: 64, hidden: [16], outputs: 6, seed: modelSeed }),
      patternsPerExperience: 10,
      sampleSize: 6,
      batchSize: 8,
      seed: 3,
      optimizer: sgd({ lr: 0.1, momentum: 0.9 }),
    });
  const full = make(1);
  for (const exp of bench.train) await full.train(exp);
  const fullEval = await full.eval(bench.test);

  const first = make(1);
  await first.train(bench.train[0]);
  const saved = JSON.parse(JSON.stringify(first.checkpoint()));
  first.dispose();
  first.model.dispose();
  (first.plugins[0] as AGEMPlugin).dispose();

  const resumed = make(99);
  await resumed.restore(saved);
  assert.deepEqual((resumed.plugins[0] as AGEMPlugin).memory.sizes, [10]);
  await resumed.train(bench.train[1]);
  await resumed.train(bench.train[2]);
  const resumedEval = await resumed.eval(bench.test);
  assert.deepEqual(resumedEval.experiences, fullEval.experiences);
  assert.deepEqual(resumed.model.stateDict(), full.model.stateDict());
  const [pf, pr] = [full.plugins[0] as AGEMPlugin, resumed.plugins[0] as AGEMPlugin];
  assert.deepEqual(pr.memory.state(), pf.memory.state());
  assert.deepEqual(pr.lastSample, pf.lastSample);
  assert.equal(pr.projections, pf.projections);
  assert.equal(pr.checks, pf.checks);
  for (const s of [full, resumed]) {
    s.dispose();
    s.model.dispose();
    (s.plugins[0] as AGEMPlugin).dispose();
  }
  assert.throws(() => pf.loadState(null), /Not an AGEMPlugin state/);
});

Deno.test("AGEM: no tensor growth over experiences; everything freed by dispose()", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 160, classes: 8, experiences: 4 });
  const model = mlp({ input: 64, hidden: [16], outputs: 8, seed: 0 });
  const s = agem({ model, patternsPerExperience: 8, sampleSize: 5, batchSize: 8, seed: 0 });
  await s.train(bench.train[0]);
  await s.train(bench.train[1]); // the projection counter is created in the first checked step
  await s.eval(bench.test);
  const base = tf.memory().numTensors;
  for (const exp of bench.train.slice(2)) {
    await s.train(exp);
    await s.eval(bench.test);
    assert.equal(tf.memory().numTensors, base, `after experience ${exp.id}`);
  }
  const plugin = s.plugins[0] as AGEMPlugin;
  assert.deepEqual(plugin.memory.sizes, [8, 8, 8, 8]);
  s.dispose();
  model.dispose();
  plugin.dispose();
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("AGEM: options, builders and errors", () => {
  const model = mlp({ input: 4, hidden: [], outputs: 2, seed: 0 });
  const a = new AGEMPlugin(32, 64);
  assert.equal(a.patternsPerExperience, 32);
  assert.equal(a.sampleSize, 64);
  assert.equal(a.name, "AGEMPlugin");
  assert.equal(agemPlugin({ patternsPerExperience: 3, sampleSize: 2 }).sampleSize, 2);
  const extra: Plugin = { name: "extra" };
  const s = agem({ model, patternsPerExperience: 4, sampleSize: 8, plugins: [extra] });
  assert.ok(s instanceof Strategy);
  assert.equal(s.name, "AGEM");
  assert.ok(s.plugins[0] instanceof AGEMPlugin);
  assert.equal(s.plugins[1], extra);
  assert.equal((s as unknown as Record<string, unknown>).sampleSize, undefined);
  s.dispose();
  assert.throws(() => new AGEMPlugin(0, 1), /patternsPerExperience must be an integer ≥ 1, got 0/);
  assert.throws(() => new AGEMPlugin(4), /sampleSize must be an integer ≥ 1, got undefined/);
  assert.throws(() => new AGEMPlugin(4, 1.5), /sampleSize must be an integer ≥ 1, got 1.5/);
  assert.throws(() => agemPlugin(undefined as never), /agemPlugin expects options/);
  assert.throws(() => agem({ model, patternsPerExperience: 4 } as never), /sampleSize must be/);
  model.dispose();
});

// --------------------------------------------------------------------------- real data ----

Deno.test({
  name: "AGEM beats Naive on Permuted MNIST (domain-incremental, 5 experiences × 2000 samples, " +
    "one epoch, batch 10)" + (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const full = await permutedMNIST({ experiences: 5, seed: 0, dataDir: SHARED_DATA });
    const bench = subsample(full, { trainPerExperience: 2000, testPerExperience: 1000, seed: 0 });
    const start = tf.memory().numTensors;
    const run = async (withAgem: boolean) => {
      const model = mlp({ hidden: [100, 100], seed: 0 });
      const opts = { model, optimizer: sgd({ lr: 0.1 }), batchSize: 10, epochs: 1, seed: 0 };
      const s = withAgem
        ? agem({ ...opts, patternsPerExperience: 256, sampleSize: 256 })
        : naive(opts);
      for (const exp of bench.train) await s.train(exp);
      const r = await s.eval(bench.test);
      const plugin = s.plugins[0] as AGEMPlugin | undefined;
      const projections = plugin ? `${plugin.projections}/${plugin.checks}` : "";
      s.dispose();
      model.dispose();
      plugin?.dispose();
      return { acc: r.meanAccuracy, projections };
    };
    const base = await run(false);
    const withAgem = await run(true);
    console.log(
      `Permuted MNIST final average accuracy: naive ${base.acc.toFixed(4)}, AGEM ${
        withAgem.acc.toFixed(4)
      } (${withAgem.projections} iterations projected)`,
    );
    assert.ok(base.acc > 0.6, `naive learns: ${base.acc}`);
    assert.ok(withAgem.acc > base.acc + 0.03, `AGEM ${withAgem.acc} vs naive ${base.acc}`);
    assert.equal(tf.memory().numTensors, start);
  },
});
