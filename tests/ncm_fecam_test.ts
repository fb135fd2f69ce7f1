import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";

import { splitMNIST, subsample } from "../lib/benchmarks/mod.ts";
import { concatDatasets } from "../lib/data/dataset.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import {
  classCovariancesOf,
  FeCAMClassifier,
  invertSymmetric,
  normalizeCovariance,
  shrinkCovariance,
  symmetricPinv,
} from "../lib/models/fecam.ts";
import { extractFeatures, type Features } from "../lib/models/features.ts";
import { MASK_VALUE } from "../lib/models/heads.ts";
import { mlp } from "../lib/models/mlp.ts";
import { classMeansOf, NCMClassifier } from "../lib/models/ncm.ts";
import { classBalanced } from "../lib/plugins/storage_policy.ts";
import {
  CurrentDataFeCAMUpdate,
  currentDataFeCAMUpdate,
  FeCAMOracle,
  MemoryFeCAMUpdate,
  memoryFeCAMUpdate,
} from "../lib/plugins/update_fecam.ts";
import {
  CurrentDataNCMUpdate,
  MemoryNCMUpdate,
  memoryNCMUpdate,
  NCMOracle,
  ncmOracle,
} from "../lib/plugins/update_ncm.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import type { Strategy } from "../lib/strategy/template.ts";
import { againstNaiveOnSplitMNIST, checkResume, SHARED_DATA, toyBenchmark } from "./_helpers.ts";

function close(a: number, b: number, tol: number, what: string) {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

function closeAll(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) {
  assert.equal(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < b.length; i++) close(a[i], b[i], tol, `${what}[${i}]`);
}

function feats(rows: number[][]): Features {
  return { values: Float32Array.from(rows.flat()), n: rows.length, dim: rows[0].length };
}

Deno.test("FeCAM's covariance transforms and class covariances, by hand", () => {
  // [[2, 1], [1, 4]]: diagonal mean 3, off-diagonal mean 1 → [[5, 2], [2, 7]]; again: 6 and 2
  // → [[11, 4], [4, 13]]; normalized: 4 / √(11·13) off the diagonal, 1 on it.
  closeAll(shrinkCovariance([2, 1, 1, 4], 2), [5, 2, 2, 7], 1e-12, "shrink");
  closeAll(shrinkCovariance([2, 1, 1, 4], 2, 0.5, 2), [3.5, 3, 3, 5.5], 1e-12, "shrink weights");
  closeAll(shrinkCovariance([2, 0, 0, 4], 2), [5, 0, 0, 7], 1e-12, "zero off-diagonal");
  const r = 4 / Math.sqrt(143);
  closeAll(normalizeCovariance([11, 4, 4, 13], 2), [1, r, r, 1], 1e-12, "normalize");
  const fecam = new FeCAMClassifier();
  const out = fecam.applyCovTransforms(new Map([[0, [2, 1, 1, 4]]]));
  closeAll(out.get(0)!, [1, r, r, 1], 1e-12, "shrunk twice, then normalized (Avalanche)");
  // Class 0: (1, 2), (3, 0), (2, 4): mean (2, 2), residuals (−1, 0), (1, −2), (0, 2):
  // Σ rrᵀ = [[2, −2], [−2, 8]], over n − 1 = 2. Class 1: (0, 0), (2, 2): [[2, 2], [2, 2]].
  const covs = classCovariancesOf(feats([[1, 2], [0, 0], [3, 0], [2, 4], [2, 2]]), [0, 1, 0, 0, 1]);
  closeAll(covs.get(0)!, [1, -1, -1, 4], 1e-12, "class 0");
  closeAll(covs.get(1)!, [2, 2, 2, 2], 1e-12, "class 1");
  assert.throws(
    () => classCovariancesOf(feats([[1, 2], [0, 0], [3, 0]]), [0, 1, 0]),
    /class 1 has a single sample/,
  );
});

Deno.test("FeCAM's logits are minus the Mahalanobis distances of the normalized vectors", () => {
  const fecam = new FeCAMClassifier({ tukey: false, shrinkage: false, covnorm: false });
  const means = [[1, 0], [0, 2]];
  const covs = [[2, 0, 0, 1], [1, 0.5, 0.5, 1]];
  fecam.replaceClassMeansDict(new Map([[0, means[0]], [2, means[1]]]));
  fecam.replaceClassCovDict(new Map([[0, covs[0]], [2, covs[1]]]));
  const x = [[3, 4], [-1, 0.5]];
  const unit = (v: number[]) => v.map((a) => a / Math.hypot(...v));
  const expected = x.flatMap((v) => {
    const row = [0, 0, 0, 0];
    [0, 2].forEach((c, i) => {
      const [a, b, , d] = covs[i], det = a * d - b * b;
      const inv = [d / det, -b / det, -b / det, a / det];
      const u = unit(v), m = unit(means[i]);
      const r = [u[0] - m[0], u[1] - m[1]];
      row[c] = -(r[0] * (inv[0] * r[0] + inv[1] * r[1]) + r[1] * (inv[2] * r[0] + inv[3] * r[1]));
    });
    row[1] = MASK_VALUE; // no statistics for class 1
    row[3] = MASK_VALUE; // beyond the classes, up to the width asked for
    return row;
  });
  // First row by hand: x̂ = (0.6, 0.8); to class 0: r = (−0.4, 0.8), rᵀ diag(1/2, 1) r = 0.72.
  close(expected[0], -0.72, 1e-12, "hand value");
  const before = tf.memory().numTensors;
  const input = tf.tensor2d(x);
  const logits = fecam.forward(input, 4);
  closeAll(logits.dataSync(), expected, 1e-5, "logits");
  tf.dispose([input, logits]);
  assert.equal(tf.memory().numTensors, before);
  // Tukey: the features' square roots, in the means (by fit) and in forward.
  const t = new FeCAMClassifier({ shrinkage: false, covnorm: false });
  const f = feats([[1, 4], [9, 0], [4, 16], [0, 1]]);
  t.fit(f, [0, 0, 1, 1], 1);
  closeAll(t.classMeans.get(0)!, [2, 1], 1e-6, "Tukey mean 0: (1 + 3) / 2, (2 + 0) / 2");
  closeAll(t.classCovs.get(0)!, [2, -2, -2, 2], 1e-6, "Tukey covariance 0");
  assert.throws(() => new FeCAMClassifier().forward(tf.zeros([1, 2])), /no class means/);
});

Deno.test("FeCAM inverts covariances as pinv: inverse, pseudo-inverse of singular and indefinite ones", () => {
  const det = 2 * 3 - 1;
  closeAll(
    invertSymmetric([2, 1, 1, 3], 2),
    [3 / det, -1 / det, -1 / det, 2 / det],
    1e-7,
    "inverse",
  );
  closeAll(
    symmetricPinv([2, 1, 1, 3], 2),
    [3 / det, -1 / det, -1 / det, 2 / det],
    1e-6,
    "pinv = inverse",
  );
  closeAll(invertSymmetric([1, 1, 1, 1], 2), [0.25, 0.25, 0.25, 0.25], 1e-6, "singular: pinv");
  closeAll(invertSymmetric([2, 0, 0, -1], 2), [0.5, 0, 0, -1], 1e-6, "indefinite: pinv");
  // 3×3 with a rotation: [[2, 1, 0], [1, 2, 0], [0, 0, 0]] has eigenvalues 3, 1, 0.
  const p = symmetricPinv([2, 1, 0, 1, 2, 0, 0, 0, 0], 3);
  closeAll(p, [2 / 3, -1 / 3, 0, -1 / 3, 2 / 3, 0, 0, 0, 0], 1e-6, "3×3 singular");
  // Through the classifier: a singular covariance without shrinkage, class 0 of (1,1), (2,2),
  // (3,3): Σ = [[1, 1], [1, 1]], Σ⁺ = ¼·J; x = (1, 0): r = (1, 0) − (1, 1)/√2 and
  // rᵀ Σ⁺ r = ¼ (r₁ + r₂)² = ¼ (1 − √2)².
  const raw = new FeCAMClassifier({ tukey: false, shrinkage: false, covnorm: false });
  raw.fit(feats([[1, 1], [2, 2], [3, 3]]), [0, 0, 0], 1);
  const input = tf.tensor2d([[1, 0]]);
  const out = raw.forward(input);
  close(out.dataSync()[0], -0.25 * (1 - Math.SQRT2) ** 2, 1e-5, "singular Mahalanobis");
  tf.dispose([input, out]);
});

Deno.test("FeCAM and NCM updates: momentum weights the new statistics (1 replaces)", () => {
  const fecam = new FeCAMClassifier();
  fecam.updateClassMeansDict(new Map([[0, [1, 1]]]));
  fecam.updateClassMeansDict(new Map([[0, [3, 5]], [1, [1, 0]]]), 0.25);
  closeAll(fecam.classMeans.get(0)!, [1.5, 2], 1e-7, "0.25 · new + 0.75 · old");
  closeAll(fecam.classMeans.get(1)!, [1, 0], 0, "a new class gets its mean");
  fecam.updateClassCovDict(new Map([[0, [1, 0, 0, 1]]]));
  fecam.updateClassCovDict(new Map([[0, [3, 2, 2, 3]]]));
  closeAll(fecam.classCovs.get(0)!, [2, 1, 1, 2], 1e-7, "covariance, momentum 0.5");
  const ncm = new NCMClassifier(false);
  ncm.updateClassMeansDict(new Map([[0, [1, 1]]]));
  ncm.updateClassMeansDict(new Map([[0, [3, 5]]]), 0.25);
  closeAll(ncm.classMeans.get(0)!, [1.5, 2], 1e-7, "NCM as Avalanche 0.6");
  ncm.updateClassMeansDict(new Map([[0, [7, 7]]]), 1);
  closeAll(ncm.classMeans.get(0)!, [7, 7], 0, "momentum 1 replaces");
  const copy = new FeCAMClassifier();
  copy.loadState(JSON.parse(JSON.stringify(fecam.state())));
  assert.deepEqual(copy.state(), fecam.state());
});

/** A naive run on the toy benchmark with `plugin`; `train` trains the given experience ids in turn. */
function toyRun(plugin: Plugin, seed = 0): Strategy {
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed });
  return naive({ model, batchSize: 16, seed: 0, plugins: [plugin] });
}

Deno.test("the updaters' class means: current data (with momentum), memory, oracle", async () => {
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const [e0, e1] = bench.train;
  const meansOf = (s: Strategy, data: typeof e0.dataset, normalize = true) =>
    classMeansOf(extractFeatures(s.model, data), data.targets, normalize);
  const state = (m: ReadonlyMap<number, Float32Array>) => [...m].map(([c, v]) => [c, [...v]]);

  const current = new CurrentDataNCMUpdate();
  let s = toyRun(current);
  await s.train(e0);
  const first = meansOf(s, e0.dataset);
  assert.deepEqual(state(current.classifier.classMeans), state(first));
  await s.train(e0); // the same classes again: the average of the old and the new means
  const second = meansOf(s, e0.dataset);
  for (const c of [0, 1]) {
    const want = first.get(c)!.map((v, k) => 0.5 * second.get(c)![k] + 0.5 * v);
    closeAll(current.classifier.classMeans.get(c)!, want, 1e-6, `momentum, class ${c}`);
  }
  // Evaluation classifies by the nearest mean of the features.
  const r = await s.eval(bench.test[0]);
  const test = bench.test[0].dataset;
  const logits = current.classifier.forward(
    tf.tensor2d(extractFeatures(s.model, test).values, [test.length, 8]),
    4,
  );
  const pred = tf.argMax(logits, 1).dataSync();
  const acc = test.targets.reduce((a, y, i) => a + (pred[i] === y ? 1 : 0), 0) / test.length;
  close(r.accuracy, acc, 1e-9, "evaluation accuracy is the NCM's");
  tf.dispose(logits);
  s.dispose();
  s.model.dispose();

  const memory = new MemoryNCMUpdate(20);
  s = toyRun(memory);
  await s.train(e0);
  await s.train(e1);
  assert.equal(memory.storagePolicy.buffer.length, 20);
  assert.deepEqual(
    state(memory.classifier.classMeans),
    state(meansOf(s, memory.storagePolicy.buffer)),
  );
  s.dispose();
  s.model.dispose();

  const oracle = new NCMOracle();
  s = toyRun(oracle);
  await s.train(e0);
  await s.train(e1);
  const everything = concatDatasets([e0.dataset, e1.dataset]);
  assert.deepEqual(state(oracle.classifier.classMeans), state(meansOf(s, everything)));
  s.dispose();
  s.model.dispose();

  // FeCAM: Tukey-transformed features' means and transformed covariances, momentum 0.5.
  const fc = new CurrentDataFeCAMUpdate();
  s = toyRun(fc);
  await s.train(e0);
  const f0 = fc.classifier.applyTransforms(extractFeatures(s.model, e0.dataset));
  assert.deepEqual(
    state(fc.classifier.classMeans),
    state(classMeansOf(f0, e0.dataset.targets, false)),
  );
  const covs = fc.classifier.applyCovTransforms(classCovariancesOf(f0, e0.dataset.targets));
  for (const c of [0, 1]) closeAll(fc.classifier.classCovs.get(c)!, covs.get(c)!, 1e-6, `cov ${c}`);
  const fr = await s.eval(bench.test);
  assert.ok(
    fr.experiences[0].accuracy > 0.8,
    `FeCAM on experience 0: ${fr.experiences[0].accuracy}`,
  );
  s.dispose();
  s.model.dispose();

  const fm = new MemoryFeCAMUpdate({ memSize: 20, storagePolicy: classBalanced({ memSize: 20 }) });
  s = toyRun(fm);
  await s.train(e0);
  const fmem = fm.classifier.applyTransforms(extractFeatures(s.model, fm.storagePolicy.buffer));
  assert.deepEqual(
    state(fm.classifier.classMeans),
    state(classMeansOf(fmem, fm.storagePolicy.buffer.targets, false)),
  );
  s.dispose();
  s.model.dispose();
});

Deno.test("every updater keeps the tensor count flat over experiences", async () => {
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const plugins = [
    new CurrentDataNCMUpdate(),
    new MemoryNCMUpdate(20),
    new NCMOracle(),
    new CurrentDataFeCAMUpdate(),
    new MemoryFeCAMUpdate(20),
    new FeCAMOracle(),
  ];
  for (const p of plugins) {
    const start = tf.memory().numTensors;
    const s = toyRun(p);
    await s.train(bench.train[0]);
    await s.eval(bench.test);
    const base = tf.memory().numTensors;
    await s.train(bench.train[1]);
    await s.eval(bench.test);
    assert.equal(tf.memory().numTensors, base, `${p.name}: flat`);
    s.dispose();
    s.model.dispose();
    assert.equal(tf.memory().numTensors, start, `${p.name}: all freed`);
  }
});

Deno.test("the updaters' checkpoints restore the same run (oracles once given the stream)", async () => {
  const bench = toyBenchmark({ n: 80, experiences: 2 });
  const makers: [string, () => Plugin][] = [
    ["CurrentDataNCMUpdate", () => new CurrentDataNCMUpdate()],
    ["MemoryNCMUpdate", () => new MemoryNCMUpdate(20)],
    ["NCMOracle", () => new NCMOracle()],
    ["CurrentDataFeCAMUpdate", () => new CurrentDataFeCAMUpdate()],
    ["MemoryFeCAMUpdate", () => new MemoryFeCAMUpdate(20)],
    ["FeCAMOracle", () => new FeCAMOracle()],
  ];
  for (const [name, make] of makers) {
    await checkResume({
      make: (seed) => toyRun(make(), seed),
      train: bench.train,
      test: bench.test,
      evalEach: true,
      afterRestore: (s) => {
        const p = s.plugins[0] as { restoreExperiences?: (e: typeof bench.train) => void };
        p.restoreExperiences?.(bench.train);
      },
      check: (full, resumed) => {
        assert.deepEqual(resumed.plugins[0].state!(), full.plugins[0].state!(), name);
      },
    });
  }
  // An oracle restored without its experiences says what to do.
  const first = toyRun(new NCMOracle());
  await first.train(bench.train[0]);
  const saved = JSON.parse(JSON.stringify(first.checkpoint()));
  first.dispose();
  first.model.dispose();
  const again = toyRun(new NCMOracle(), 5);
  await again.restore(saved);
  await assert.rejects(() => again.train(bench.train[1]), /restoreExperiences\(bench\.train\)/);
  again.dispose();
  again.model.dispose();
});

Deno.test("the updaters refuse bad options and models without features", async () => {
  assert.throws(
    // @ts-expect-error: a misspelt option
    () => memoryNCMUpdate({ memorySize: 10 }),
    /unknown option "memorySize" \(did you mean "memSize"\?\)/,
  );
  assert.throws(() => new MemoryNCMUpdate(0), /memSize must be an integer ≥ 1.*got 0/);
  assert.throws(() => memoryFeCAMUpdate({ memSize: -1 }), /memSize must be an integer ≥ 1/);
  assert.throws(
    // @ts-expect-error: a FeCAM classifier is not an NCM one
    () => ncmOracle({ classifier: new FeCAMClassifier() }),
    /ncmOracle: classifier must be/,
  );
  assert.throws(
    // @ts-expect-error: an NCM classifier is not a FeCAM one
    () => currentDataFeCAMUpdate({ classifier: new NCMClassifier() }),
    /classifier must be/,
  );
  assert.throws(
    // @ts-expect-error: a misspelt option
    () => new FeCAMClassifier({ tukey2: 0.5 }),
    /unknown option "tukey2" \(did you mean "tukey"\?\)/,
  );
  assert.throws(
    () => new FeCAMClassifier(true, true, -1),
    /shrink1 must be a finite number ≥ 0, got -1/,
  );
  // A model without embed: the updater says what it needs.
  const { Linear } = await import("../lib/nn/layers.ts");
  const bare = new Linear(64, 4, { seed: 0 });
  const s = naive({ model: bare, plugins: [new CurrentDataNCMUpdate()] });
  await assert.rejects(
    () => s.train(toyBenchmark().train[0]),
    /CurrentDataNCMUpdate classifies the features before the head/,
  );
  s.dispose();
  bare.dispose();
});

Deno.test({
  name: "MemoryNCMUpdate improves over the plain head of Naive on class-incremental Split MNIST" +
    (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const { base, ours } = await againstNaiveOnSplitMNIST({
      label: "MemoryNCMUpdate (200)",
      method: (opts) => naive({ ...opts, plugins: [new MemoryNCMUpdate(200)] }),
      trainPerExperience: 1000,
      hidden: [200],
      lr: 0.01,
      batchSize: 32,
      epochs: 2,
    });
    assert.ok(base.meanAccuracy < 0.3, `naive forgets: ${base.meanAccuracy}`);
    assert.ok(ours.meanAccuracy > base.meanAccuracy + 0.2, `NCM: ${ours.meanAccuracy}`);
  },
});

Deno.test({
  name: "with features frozen after the first experience, FeCAM beats NCM, which beats the head" +
    (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    // FeCAM's own setting: a feature extractor trained on the first task, then fixed (here the
    // learning rate drops to 0); the class statistics come from each experience's data.
    const full = await splitMNIST({ experiences: 5, seed: 0, dataDir: SHARED_DATA });
    const bench = subsample(full, { trainPerExperience: 1000, testPerExperience: 500, seed: 0 });
    const freeze: Plugin = {
      name: "freezeAfterFirst",
      beforeTrainingExp(ctx) {
        if (ctx.clock.trainExperiences > 0) ctx.optimizer.lr = 0;
      },
    };
    const run = async (plugins: Plugin[]) => {
      const model = mlp({ hidden: [200], seed: 0 });
      const optimizer = sgd({ lr: 0.01, momentum: 0.9 });
      const s = naive({ model, optimizer, epochs: 2, seed: 0, plugins: [freeze, ...plugins] });
      for (const e of bench.train) await s.train(e);
      const r = await s.eval(bench.test);
      s.dispose();
      model.dispose();
      return r.meanAccuracy;
    };
    const head = await run([]);
    const ncm = await run([new CurrentDataNCMUpdate()]);
    const fecam = await run([new CurrentDataFeCAMUpdate()]);
    console.log(
      `Split MNIST, features frozen after experience 0 (1000 train / 500 test per experience): ` +
        `head ${head.toFixed(3)}, NCM ${ncm.toFixed(3)}, FeCAM ${fecam.toFixed(3)}`,
    );
    assert.ok(head < 0.3, `the head knows the first classes only: ${head}`);
    assert.ok(ncm > head + 0.3, `NCM: ${ncm}`);
    assert.ok(fecam > ncm + 0.1, `FeCAM: ${fecam}`);
  },
});
