import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../lib/backend.ts";
import { syntheticImages } from "../datasets/mod.ts";
import { permuted, permutedMNIST, subsample, taskIncremental } from "../lib/benchmarks/mod.ts";
import { toArrayDatasets } from "../lib/benchmarks/classic.ts";
import { mlp, multiHeadMLP } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import {
  EpisodicMemory,
  flattenGradients,
  gem,
  GEMPlugin,
  gemPlugin,
  gemProject,
  gemProjectBlocks,
  memoryGradients,
  unflattenGradients,
} from "../lib/plugins/gem.ts";
import { projectGEM } from "../lib/plugins/qp.ts";
import { ArrayDataset } from "../lib/data/dataset.ts";
import { Rng } from "../lib/random.ts";
import type { StrategyContext } from "../lib/strategy/context.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { Strategy } from "../lib/strategy/template.ts";
import { checkResume, SHARED_DATA, toyBenchmark } from "./_helpers.ts";

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

// ------------------------------------------------------------------------ tensor pieces ----

Deno.test("gemProject on tensors: hand-computed cases and the Float64 reference", async () => {
  const start = tf.memory().numTensors;
  // G₀ = (1, 0), g = (−1, 1): v = 1, g̃ = (0, 1).
  const G = tf.tensor2d([[1, 0]]);
  const g = tf.tensor1d([-1, 1]);
  const r = await gemProject(G, g);
  assert.ok(r.projected);
  assert.deepEqual([...r.dots], [-1]);
  assert.deepEqual([...r.v], [1]);
  assert.deepEqual([...r.gradient.dataSync()], [0, 1]);
  r.gradient.dispose();
  // Margin γ = 2: v = 2, g̃ = (1, 1).
  const m = await gemProject(G, g, { memoryStrength: 2 });
  assert.deepEqual([...m.gradient.dataSync()], [1, 1]);
  m.gradient.dispose();
  // Satisfied constraints: the same tensor back, nothing projected.
  const ok = await gemProject(G, tf.tensor1d([1, 5]));
  assert.equal(ok.projected, false);
  assert.deepEqual([...ok.gradient.dataSync()], [1, 5]);
  ok.gradient.dispose();
  G.dispose();
  g.dispose();
  // Random small cases against projectGEM (Float64): every constraint holds after projection.
  const rng = new Rng(2);
  let projected = 0;
  for (let k = 0; k < 30; k++) {
    const t = 1 + (k % 4);
    const rows = Array.from({ length: t }, () => Array.from({ length: 7 }, () => rng.normal()));
    const gv = Array.from({ length: 7 }, () => rng.normal());
    const Gt = tf.tensor2d(rows);
    const gt = tf.tensor1d(gv);
    const res = await gemProject(Gt, gt, { memoryStrength: k % 2 ? 0.5 : 0 });
    const ref = projectGEM(rows, gv, { memoryStrength: k % 2 ? 0.5 : 0 });
    assert.equal(res.projected, ref.projected);
    const out = res.gradient.dataSync();
    for (let i = 0; i < 7; i++) assert.ok(Math.abs(out[i] - ref.gradient[i]) < 1e-5);
    for (const row of rows) assert.ok(dot(row, out) >= -1e-5, `G_k·g̃ = ${dot(row, out)}`);
    if (res.projected) projected++;
    if (res.gradient !== gt) res.gradient.dispose();
    Gt.dispose();
    gt.dispose();
  }
  assert.ok(projected >= 10, `projected cases: ${projected}`);
  // Blocks (one per parameter) give the same result as the concatenated vectors.
  const Gv = [[1, -2, 0.5, 3, -1], [-1, 0.5, 2, -0.5, 1]];
  const gv = [-1, 2, -3, 0.5, 1];
  const inputs = [
    { G: tf.tensor2d(Gv.map((r) => r.slice(0, 2))), g: tf.tensor1d(gv.slice(0, 2)) },
    { G: tf.tensor2d(Gv.map((r) => r.slice(2))), g: tf.tensor1d(gv.slice(2)) },
  ];
  const blocks = await gemProjectBlocks(inputs);
  const ref = projectGEM(Gv, gv);
  assert.ok(blocks.projected && ref.projected);
  const joined = [...blocks.gradients[0].dataSync(), ...blocks.gradients[1].dataSync()];
  joined.forEach((v, i) => assert.ok(Math.abs(v - ref.gradient[i]) < 1e-5));
  tf.dispose([...blocks.gradients, ...inputs.flatMap((x) => [x.G, x.g])]);
  await assert.rejects(gemProjectBlocks([]), /at least one block/);
  const [a, b] = [tf.zeros([2, 3]) as tf.Tensor2D, tf.zeros([2]) as tf.Tensor1D];
  await assert.rejects(gemProjectBlocks([{ G: a, g: b }]), /block 0: G has shape \[2,3\]/);
  tf.dispose([a, b]);
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("flattenGradients/unflattenGradients: ctx.params order, zeros for missing gradients", () => {
  const params = new Map<string, tf.Variable>([
    ["a", tf.variable(tf.zeros([2, 2]))],
    ["b", tf.variable(tf.zeros([3]))],
    ["c", tf.variable(tf.zeros([1]))],
  ]);
  const grads = new Map<string, tf.Tensor>([
    ["c", tf.tensor1d([9])],
    ["a", tf.tensor2d([[1, 2], [3, 4]])],
  ]);
  const flat = flattenGradients(grads, params);
  assert.deepEqual([...flat.dataSync()], [1, 2, 3, 4, 0, 0, 0, 9]);
  const back = unflattenGradients(flat, params, (n) => grads.has(n));
  assert.deepEqual([...back.keys()], ["a", "c"]);
  assert.deepEqual(back.get("a")!.shape, [2, 2]);
  assert.deepEqual(back.get("a")!.arraySync(), [[1, 2], [3, 4]]);
  assert.deepEqual([...back.get("c")!.dataSync()], [9]);
  assert.equal(unflattenGradients(flat, params).size, 3);
  assert.throws(() => unflattenGradients(tf.zeros([3]) as tf.Tensor1D, params), /3 values/);
  for (const t of [...params.values(), ...grads.values(), flat, ...back.values()]) t.dispose();
});

Deno.test("EpisodicMemory: random chunks per experience, tensors, state round trip", () => {
  const n = 30;
  const x = Float32Array.from({ length: n * 3 }, (_, i) => i);
  const d = new ArrayDataset({
    x,
    y: Array.from({ length: n }, (_, i) => i % 3),
    taskLabels: Array.from({ length: n }, () => 2),
    inputShape: [3],
  });
  const memory = new EpisodicMemory();
  const idx = memory.addRandom(d, 5, new Rng(0));
  assert.deepEqual([...idx], [...new Rng(0).sample(n, 5)], "drawn from the generator given");
  assert.equal(new Set(idx).size, 5);
  memory.addRandom(d.subset([0, 1, 2]), 5, new Rng(1)); // smaller than 5: all kept
  assert.deepEqual(memory.sizes, [5, 3]);
  assert.equal(memory.size, 8);
  assert.equal(memory.experiences, 2);
  const c = memory.chunk(0);
  for (let k = 0; k < 5; k++) {
    assert.deepEqual([...c.x.subarray(3 * k, 3 * k + 3)], [
      3 * idx[k],
      3 * idx[k] + 1,
      3 * idx[k] + 2,
    ]);
    assert.equal(c.y[k], idx[k] % 3);
    assert.equal(c.t[k], 2);
  }
  const start = tf.memory().numTensors;
  tf.tidy(() => {
    const e1 = memory.experienceTensors(1);
    assert.deepEqual(e1.x.shape, [3, 3]);
    assert.deepEqual([...e1.y.dataSync()].sort(), [0, 1, 2]);
    const gth = memory.gather(Int32Array.from([7, 0]));
    assert.deepEqual(gth.x.arraySync(), [
      [...memory.chunk(1).x.subarray(6, 9)],
      [...c.x.subarray(0, 3)],
    ]);
    assert.deepEqual([...gth.tArray], [2, 2]);
    // A second gather (which may refill the same staging array) leaves the first one's tensor
    // as it was.
    const again = memory.gather(Int32Array.from([1, 2, 3]));
    assert.deepEqual(gth.x.arraySync(), [
      [...memory.chunk(1).x.subarray(6, 9)],
      [...c.x.subarray(0, 3)],
    ]);
    assert.deepEqual(
      again.x.arraySync(),
      [1, 2, 3].map((k) => [...c.x.subarray(3 * k, 3 * k + 3)]),
    );
    assert.throws(() => memory.gather(Int32Array.from([8])), /index 8 is out of range/);
  });
  assert.equal(tf.memory().numTensors, start);
  const copy = new EpisodicMemory();
  copy.loadState(JSON.parse(JSON.stringify(memory.state())));
  assert.deepEqual(copy.sizes, [5, 3]);
  assert.deepEqual(copy.chunk(0), memory.chunk(0));
  assert.throws(() => memory.chunk(2), /experience 2 does not exist/);
  assert.throws(
    () =>
      memory.add({ x: new Float32Array(4), y: new Int32Array(1), t: new Int32Array(1), n: 1 }, [4]),
    /shape \[3\], cannot add samples of shape \[4\]/,
  );
  assert.throws(() => copy.loadState({} as never), /Not an episodic memory state/);
  memory.clear();
  assert.equal(memory.size, 0);
});

// ---------------------------------------------------------------------------- the plugin ----

/**
 * Records, in every iteration with a memory, the minibatch gradient before GEM, the gradient
 * after GEM, and the memory gradients recomputed independently.
 */
function projectionProbe(plugin: GEMPlugin) {
  const records: {
    g: Float64Array;
    gt: Float64Array;
    G: Float64Array[];
    lastDots: number[];
    v?: number[];
  }[] = [];
  let projections = 0;
  let g: Float64Array | undefined;
  const before: Plugin = {
    name: "before",
    afterBackward(ctx: StrategyContext) {
      g = flatValues(ctx.grads!, ctx.params);
    },
  };
  const after: Plugin = {
    name: "after",
    afterBackward(ctx: StrategyContext) {
      if (plugin.memory.experiences === 0) return;
      const G = Array.from({ length: plugin.memory.experiences }, (_, k) => {
        let row: Float64Array = new Float64Array(0);
        tf.tidy(() => {
          const mg = memoryGradients(ctx, ctx.params, plugin.memory.experienceTensors(k));
          row = flatValues(mg, ctx.params);
        });
        return row;
      });
      records.push({
        g: g!,
        gt: flatValues(ctx.grads!, ctx.params),
        G,
        lastDots: [...plugin.lastDots],
        v: plugin.projections > projections ? [...plugin.lastMultipliers] : undefined,
      });
      projections = plugin.projections;
    },
  };
  return { before, after, records };
}

for (const memoryStrength of [0, 0.5]) {
  Deno.test(`GEM plugin (γ = ${memoryStrength}): after projection G_k·g̃ ≥ 0 for every memory, and g̃ is the reference projection`, async () => {
    // Class-incremental toy (memories conflict with nearly every update) and a permuted toy
    // (domain-incremental: many updates already agree with the memories).
    const split = toyBenchmark({ n: 240, classes: 6, experiences: 3 });
    const { train, test } = toArrayDatasets({
      name: "toy",
      classes: 4,
      train: syntheticImages({ n: 120, classes: 4, rows: 8, cols: 8, seed: 1 }),
      test: syntheticImages({ n: 40, classes: 4, rows: 8, cols: 8, seed: 2 }),
    }, { normalize: false });
    const perm = permuted({ train, test, experiences: 3, seed: 0 });
    let projected = 0;
    let untouched = 0;
    let worst = 0;
    for (const bench of [split, perm]) {
      const model = mlp({ input: 64, hidden: [16], outputs: 6, seed: 0 });
      const plugin = new GEMPlugin(12, memoryStrength);
      const probe = projectionProbe(plugin);
      const s = naive({
        model,
        batchSize: 8,
        seed: 0,
        optimizer: sgd({ lr: 0.1 }),
        plugins: [probe.before, plugin, probe.after],
      });
      for (const exp of bench.train) await s.train(exp);
      const { records } = probe;
      assert.equal(records.length, plugin.checks);
      // Experiences 1 and 2 have a memory.
      const iterations = bench.train.slice(1).map((e) => Math.ceil(e.dataset.length / 8));
      assert.equal(records.length, iterations[0] + iterations[1]);
      let here = 0;
      for (const r of records) {
        const ref = projectGEM(r.G, r.g, { memoryStrength });
        r.G.forEach((Gk, k) => {
          const tol = 1e-5 * (1 + norm(Gk) * norm(r.g));
          assert.ok(Math.abs(dot(Gk, r.g) - r.lastDots[k]) < tol, "the plugin's G_k·g");
        });
        if (!ref.projected) {
          untouched++;
          assert.equal(r.v, undefined);
          assert.deepEqual(r.gt, r.g, "no violated constraint: gradient untouched");
          continue;
        }
        here++;
        // The update is the closest vector with G g̃ ≥ 0 (γ = 0), resp. the margin solution.
        for (let i = 0; i < r.g.length; i++) {
          assert.ok(Math.abs(r.gt[i] - ref.gradient[i]) < 1e-5 * (1 + norm(r.g)), `entry ${i}`);
        }
        for (const Gk of r.G) {
          const d = dot(Gk, r.gt);
          worst = Math.min(worst, d / Math.max(1, norm(Gk) * norm(r.gt)));
          // Float32 products: zero up to 1e-6 relative to |G_k||g̃| (scale ≈ 1 here).
          assert.ok(d >= -1e-6 * Math.max(1, norm(Gk) * norm(r.gt)), `G_k·g̃ = ${d}`);
        }
        // v ≥ γ: the update moves at least γ·G_k beyond g along each memory gradient.
        assert.ok(r.v!.every((v) => v >= memoryStrength - 1e-12), `${r.v}`);
      }
      assert.equal(plugin.projections, here);
      projected += here;
      assert.ok(plugin.lastQP?.converged);
      s.dispose();
      model.dispose();
      plugin.dispose();
    }
    assert.ok(projected >= 10, `projected iterations: ${projected}`);
    assert.ok(untouched >= 3, `iterations without violated constraint: ${untouched}`);
    assert.ok(worst >= -1e-6, `${worst}`);
  });
}

Deno.test("GEM plugin keeps patternsPerExperience random samples of each experience", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const run = async (seed: number) => {
    const model = mlp({ input: 64, hidden: [8], outputs: 6, seed: 0 });
    const s = gem({ model, patternsPerExperience: 7, batchSize: 10, seed });
    for (const exp of bench.train) await s.train(exp);
    const plugin = s.plugins[0] as GEMPlugin;
    // strategy.dispose() disposes its plugins (and clears their memory): inspect first.
    cleanups.push(() => {
      s.dispose();
      model.dispose();
    });
    return plugin;
  };
  const cleanups: (() => void)[] = [];
  const p = await run(0);
  assert.deepEqual(p.memory.sizes, [7, 7, 7]);
  for (let k = 0; k < 3; k++) {
    const classes = bench.train[k].classes;
    for (const y of p.memory.chunk(k).y) assert.ok(classes.includes(y), `class ${y} of exp ${k}`);
    // Each stored sample is a sample of the experience.
    const ds = bench.train[k].dataset;
    const all = ds.batch(Int32Array.from({ length: ds.length }, (_, i) => i));
    const rows = new Set(
      Array.from({ length: ds.length }, (_, i) => all.x.subarray(64 * i, 64 * i + 64).join()),
    );
    const c = p.memory.chunk(k);
    for (let i = 0; i < 7; i++) assert.ok(rows.has(c.x.subarray(64 * i, 64 * i + 64).join()));
  }
  const again = await run(0);
  assert.deepEqual(again.memory.state(), p.memory.state(), "same seed, same memory");
  const other = await run(1);
  assert.notDeepEqual(other.memory.chunk(0).y, p.memory.chunk(0).y, "another seed, other samples");
  // An experience smaller than patternsPerExperience is kept whole.
  const model = mlp({ input: 64, hidden: [8], outputs: 6, seed: 0 });
  const s = gem({ model, patternsPerExperience: 1000, batchSize: 10, seed: 0 });
  await s.train(bench.train[0]);
  assert.deepEqual((s.plugins[0] as GEMPlugin).memory.sizes, [bench.train[0].dataset.length]);
  s.dispose();
  model.dispose();
  cleanups.forEach((f) => f());
  assert.deepEqual(p.memory.sizes, [], "strategy.dispose() disposed the plugin");
});

Deno.test("GEM with a multi-head model: memory task labels pick the heads, other heads stay without gradient", async () => {
  const data = {
    name: "toy",
    classes: 4,
    train: syntheticImages({ n: 80, classes: 4, rows: 8, cols: 8, seed: 1 }),
    test: syntheticImages({ n: 40, classes: 4, rows: 8, cols: 8, seed: 2 }),
  };
  const { train, test } = toArrayDatasets(data, { normalize: false });
  const bench = taskIncremental({ train, test, experiences: 2, fixedClassOrder: [0, 1, 2, 3] });
  const model = multiHeadMLP({ input: 64, hidden: [8], outputs: 2, seed: 0 });
  const gradNames: string[][] = [];
  const s = gem({
    model,
    patternsPerExperience: 10,
    memoryStrength: 0,
    batchSize: 8,
    seed: 0,
    optimizer: sgd({ lr: 0.1 }),
    plugins: [{ afterBackward: (ctx) => void gradNames.push([...ctx.grads!.keys()].sort()) }],
  });
  await s.train(bench.train[0]);
  const head0 = model.namedParameters().get("classifier.head0.weight")!.arraySync();
  await s.train(bench.train[1]);
  const plugin = s.plugins[0] as GEMPlugin;
  assert.deepEqual([...new Set(plugin.memory.chunk(0).t)], [0]);
  assert.ok(plugin.checks > 0);
  // During experience 1 only head 1 (and the trunk) get gradients: the memory's head-0
  // component of g̃ is dropped as in Avalanche, so head 0 does not move.
  const last = gradNames[gradNames.length - 1];
  assert.ok(last.includes("classifier.head1.weight") && !last.includes("classifier.head0.weight"));
  assert.deepEqual(model.namedParameters().get("classifier.head0.weight")!.arraySync(), head0);
  const r = await s.eval(bench.test);
  assert.equal(r.experiences.length, 2);
  s.dispose();
  model.dispose();
});

Deno.test("GEM checkpoint: a run resumed after experience 0 (JSON round trip) matches an uninterrupted one", async () => {
  const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });
  const make = (modelSeed: number) =>
    gem({
      model: mlp({ input: 64, hidden: [16], outputs: 6, seed: modelSeed }),
      patternsPerExperience: 10,
      memoryStrength: 0.5,
      batchSize: 8,
      seed: 3,
      optimizer: sgd({ lr: 0.1, momentum: 0.9 }),
    });
  let fullPlugin: GEMPlugin | undefined;
  await checkResume({
    make,
    train: bench.train,
    test: bench.test,
    afterRestore: (resumed) =>
      assert.deepEqual((resumed.plugins[0] as GEMPlugin).memory.sizes, [10]),
    check: (full, resumed) => {
      const [pf, pr] = [full.plugins[0] as GEMPlugin, resumed.plugins[0] as GEMPlugin];
      assert.deepEqual(pr.memory.state(), pf.memory.state());
      assert.equal(pr.projections, pf.projections);
      assert.ok(pf.projections > 0);
      fullPlugin = pf;
    },
  });
  assert.throws(() => fullPlugin!.loadState({ version: 2 }), /Not a GEMPlugin state/);
});

Deno.test("GEM: no tensor growth over experiences; everything freed by dispose()", async () => {
  const start = tf.memory().numTensors;
  const bench = toyBenchmark({ n: 160, classes: 8, experiences: 4 });
  const model = mlp({ input: 64, hidden: [16], outputs: 8, seed: 0 });
  const s = gem({ model, patternsPerExperience: 8, batchSize: 8, seed: 0 });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  const base = tf.memory().numTensors;
  for (const exp of bench.train.slice(1)) {
    await s.train(exp);
    await s.eval(bench.test);
    assert.equal(tf.memory().numTensors, base, `after experience ${exp.id}`);
  }
  const plugin = s.plugins[0] as GEMPlugin;
  assert.deepEqual(plugin.memory.sizes, [8, 8, 8, 8]);
  assert.ok(plugin.checks > 0);
  s.dispose();
  model.dispose();
  plugin.dispose();
  assert.equal(plugin.memory.size, 0);
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("GEM: options, builders and errors", () => {
  const model = mlp({ input: 4, hidden: [], outputs: 2, seed: 0 });
  const a = new GEMPlugin(32, 0.25);
  assert.equal(a.patternsPerExperience, 32);
  assert.equal(a.memoryStrength, 0.25);
  assert.equal(a.name, "GEMPlugin");
  assert.equal(new GEMPlugin(5).memoryStrength, 0.5);
  const b = gemPlugin({ patternsPerExperience: 3, memoryStrength: 0, eps: 1e-3 });
  assert.equal(b.eps, 1e-3);
  const extra: Plugin = { name: "extra" };
  const s = gem({ model, patternsPerExperience: 4, memoryStrength: 0.1, plugins: [extra] });
  assert.ok(s instanceof Strategy);
  assert.equal(s.name, "GEM");
  assert.ok(s.plugins[0] instanceof GEMPlugin);
  assert.equal(s.plugins[1], extra);
  assert.equal((s.plugins[0] as GEMPlugin).memoryStrength, 0.1);
  assert.equal((s as unknown as Record<string, unknown>).patternsPerExperience, undefined);
  s.dispose();
  assert.throws(() => new GEMPlugin(0), /patternsPerExperience must be an integer ≥ 1, got 0/);
  assert.throws(() => new GEMPlugin(2.5), /got 2.5: pass how many samples/);
  assert.throws(() => new GEMPlugin(4, -1), /memoryStrength must be a finite number ≥ 0, got -1/);
  assert.throws(() => gemPlugin({ patternsPerExperience: 4, eps: -1 }), /eps must be/);
  assert.throws(() => gem(undefined as never), /gem expects options/);
  assert.throws(() => gem({ model } as never), /patternsPerExperience must be an integer/);
  model.dispose();
});

// --------------------------------------------------------------------------- real data ----

Deno.test({
  name: "GEM beats Naive on Permuted MNIST (domain-incremental, 5 experiences × 1500 samples, " +
    "one epoch, batch 10)" + (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const full = await permutedMNIST({ experiences: 5, seed: 0, dataDir: SHARED_DATA });
    const bench = subsample(full, { trainPerExperience: 1500, testPerExperience: 1000, seed: 0 });
    const start = tf.memory().numTensors;
    const run = async (withGem: boolean) => {
      const model = mlp({ hidden: [100, 100], seed: 0 });
      const opts = { model, optimizer: sgd({ lr: 0.1 }), batchSize: 10, epochs: 1, seed: 0 };
      const s = withGem
        ? gem({ ...opts, patternsPerExperience: 100, memoryStrength: 0.5 })
        : naive(opts);
      for (const exp of bench.train) await s.train(exp);
      const r = await s.eval(bench.test);
      const plugin = s.plugins[0] as GEMPlugin | undefined;
      s.dispose();
      model.dispose();
      plugin?.dispose();
      return { acc: r.meanAccuracy, plugin };
    };
    const base = await run(false);
    const withGem = await run(true);
    console.log(
      `Permuted MNIST final average accuracy: naive ${base.acc.toFixed(4)}, GEM ${
        withGem.acc.toFixed(4)
      } (${withGem.plugin!.projections}/${withGem.plugin!.checks} iterations projected)`,
    );
    assert.ok(base.acc > 0.6, `naive learns: ${base.acc}`);
    assert.ok(withGem.acc > base.acc + 0.03, `GEM ${withGem.acc} vs naive ${base.acc}`);
    assert.equal(tf.memory().numTensors, start);
  },
});
