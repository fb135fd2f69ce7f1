// Train/eval transform groups: random crop with padding, horizontal flip and normalization on
// NHWC minibatches, from the run's seeded generator, against a plain JavaScript reference.
import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { applyImageTransforms, type CropFlipDraw } from "../lib/engine/augment.ts";
import { BatchAssembler } from "../lib/engine/batches.ts";
import {
  checkTransformGroups,
  normalize,
  randomCrop,
  randomHorizontalFlip,
} from "../lib/data/augment.ts";
import { ArrayDataset, concatDatasets } from "../lib/data/dataset.ts";
import { batchPlan } from "../lib/data/loader.ts";
import { classIncremental } from "../lib/benchmarks/generators.ts";
import { CIFAR10_STATS, cifarTransforms } from "../lib/benchmarks/vision.ts";
import { cnn } from "../lib/models/mlp.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { replay } from "../lib/plugins/replay.ts";
import { Rng } from "../lib/random.ts";
import { checkResume } from "./_helpers.ts";

/** n random images [n, h, w, c] as floats (values 1..255, so that 0 marks padding). */
function images(n: number, h: number, w: number, c: number, seed = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n * h * w * c }, () => 1 + rng.int(255));
}

/** Reference crop-and-flip of one image, pixel by pixel. */
function reference(
  x: Float32Array,
  shape: [number, number, number, number],
  i: number,
  d: CropFlipDraw,
  size: [number, number],
  pad: number,
  fill: number[],
): Float32Array {
  const [, H, W, C] = shape, [h, w] = size;
  const out = new Float32Array(h * w * C);
  for (let r = 0; r < h; r++) {
    for (let col = 0; col < w; col++) {
      const pr = d.top[i] + r, pc = d.left[i] + (d.flip[i] ? w - 1 - col : col);
      const sr = pr - pad, sc = pc - pad;
      for (let ch = 0; ch < C; ch++) {
        out[(r * w + col) * C + ch] = sr >= 0 && sr < H && sc >= 0 && sc < W
          ? x[((i * H + sr) * W + sc) * C + ch]
          : fill[fill.length === 1 ? 0 : ch];
      }
    }
  }
  return out;
}

function run(
  x: Float32Array,
  shape: [number, number, number, number],
  transforms: Parameters<typeof applyImageTransforms>[1],
  seed: number,
): { out: Float32Array; draws: CropFlipDraw[] } {
  const draws: CropFlipDraw[] = [];
  const t = tf.tensor4d(x, shape);
  const y = applyImageTransforms(t, transforms, new Rng(seed), (d) => draws.push(d));
  const out = y.dataSync() as Float32Array;
  tf.dispose([t, y]);
  return { out: Float32Array.from(out), draws };
}

Deno.test("random crop + flip: exactly the reference pixels, offsets in [0, 2·pad], zero border", () => {
  const shape: [number, number, number, number] = [16, 8, 8, 3];
  const x = images(...shape);
  const { out, draws } = run(x, shape, [randomCrop(8, { padding: 2 }), randomHorizontalFlip()], 7);
  assert.equal(draws.length, 1, "crop and flip run as one pass");
  const d = draws[0];
  for (let i = 0; i < 16; i++) {
    assert.ok(d.top[i] >= 0 && d.top[i] <= 4 && d.left[i] >= 0 && d.left[i] <= 4);
    const want = reference(x, shape, i, d, [8, 8], 2, [0]);
    assert.deepEqual(out.subarray(i * 192, (i + 1) * 192), want, `sample ${i}`);
  }
  // Samples shifted down by the crop (top < pad) start with zero rows: the padded border.
  const shifted = [...d.top].findIndex((t) => t === 0);
  assert.ok(shifted >= 0, "some sample has top offset 0 in 16 draws");
  for (let k = 0; k < 2 * 8 * 3; k++) assert.equal(out[shifted * 192 + k], 0);
  // Padding of half the image or more goes through a padded copy: the same reference pixels.
  const wide = run(x, shape, [randomCrop(8, { padding: 4 }), randomHorizontalFlip()], 8);
  for (let i = 0; i < 16; i++) {
    const want = reference(x, shape, i, wide.draws[0], [8, 8], 4, [0]);
    assert.deepEqual(wide.out.subarray(i * 192, (i + 1) * 192), want, `sample ${i}, padding 4`);
  }
  // A crop smaller than the image, and the other backends.
  const small = run(x, shape, [randomCrop([5, 6], { padding: 1 })], 9);
  for (let i = 0; i < 16; i++) {
    const want = reference(x, shape, i, small.draws[0], [5, 6], 1, [0]);
    assert.deepEqual(small.out.subarray(i * 90, (i + 1) * 90), want, `sample ${i}, 5×6 crop`);
  }
  // Every offset 0..4 occurs over a larger batch, and nothing outside it.
  const many = run(images(200, 8, 8, 1), [200, 8, 8, 1], [randomCrop(8, { padding: 2 })], 3);
  assert.deepEqual([...new Set(many.draws[0].top)].sort(), [0, 1, 2, 3, 4]);
  assert.deepEqual([...new Set(many.draws[0].left)].sort(), [0, 1, 2, 3, 4]);
});

Deno.test("the cpu and blas backends give the same exact crops", async () => {
  const shape: [number, number, number, number] = [12, 8, 8, 3];
  const x = images(...shape);
  const ts = [randomCrop(8, { padding: 3, fill: [1, 2, 3] }), randomHorizontalFlip()];
  const want = run(x, shape, ts, 5);
  for (const backend of ["cpu", "blas"] as const) {
    await setBackend(backend);
    assert.deepEqual(run(x, shape, ts, 5).out, want.out, backend);
  }
  await setBackend("wasm");
});

Deno.test("same seed → same crops and flips; another seed → others", () => {
  const shape: [number, number, number, number] = [32, 8, 8, 3];
  const x = images(...shape);
  const ts = [randomCrop(8, { padding: 4 }), randomHorizontalFlip()];
  const a = run(x, shape, ts, 11), b = run(x, shape, ts, 11), c = run(x, shape, ts, 12);
  assert.deepEqual(a.out, b.out);
  assert.deepEqual(a.draws, b.draws);
  assert.notDeepEqual(a.draws[0].top, c.draws[0].top);
  assert.notDeepEqual(a.out, c.out);
});

Deno.test("horizontal flip: about half flipped, each one exactly mirrored", () => {
  const n = 2000;
  const shape: [number, number, number, number] = [n, 4, 5, 2];
  const x = images(...shape, 5);
  const { out, draws } = run(x, shape, [randomHorizontalFlip(0.5)], 21);
  const flips = draws[0].flip.reduce((a, f) => a + f, 0);
  // Binomial(2000, 0.5): mean 1000, sd about 22; 5 sd either side.
  assert.ok(Math.abs(flips - n / 2) < 112, `${flips} of ${n} flipped`);
  const size = 4 * 5 * 2;
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < 4; r++) {
      for (let c = 0; c < 5; c++) {
        for (let ch = 0; ch < 2; ch++) {
          const src = x[i * size + (r * 5 + (draws[0].flip[i] ? 4 - c : c)) * 2 + ch];
          if (out[i * size + (r * 5 + c) * 2 + ch] !== src) {
            assert.fail(
              `sample ${i} (${draws[0].flip[i] ? "flipped" : "kept"}) differs at ${r},${c}`,
            );
          }
        }
      }
    }
  }
  const none = run(x.subarray(0, 40 * size), [40, 4, 5, 2], [randomHorizontalFlip(0)], 1);
  assert.deepEqual(none.out, x.subarray(0, 40 * size));
  const all = run(x.subarray(0, 40 * size), [40, 4, 5, 2], [randomHorizontalFlip(1)], 1);
  assert.equal(all.draws[0].flip.reduce((a, f) => a + f, 0), 40);
});

Deno.test("per-channel fill: the border of a normalized dataset is a zero pixel's value", () => {
  const shape: [number, number, number, number] = [30, 6, 6, 3];
  const x = images(...shape);
  const fill = CIFAR10_STATS.mean.map((m, c) => -m / CIFAR10_STATS.std[c]);
  const { out, draws } = run(x, shape, [randomCrop([6, 6], { padding: 3, fill })], 4);
  for (let i = 0; i < 30; i++) {
    const want = reference(x, shape, i, draws[0], [6, 6], 3, fill);
    const got = out.subarray(i * 108, (i + 1) * 108);
    for (let k = 0; k < 108; k++) assert.ok(Math.abs(got[k] - want[k]) < 1e-4, `${i}:${k}`);
  }
  const i = [...draws[0].top].findIndex((t) => t === 0);
  assert.ok(Math.abs(out[i * 108 + 2] - fill[2]) < 1e-6);
});

Deno.test("normalize: (x - mean[c]) / std[c]; bad transforms are errors naming the value", () => {
  const shape: [number, number, number, number] = [2, 2, 2, 3];
  const x = images(...shape);
  const { out } = run(x, shape, [normalize([1, 2, 3], [2, 4, 8])], 0);
  for (let k = 0; k < x.length; k++) {
    const c = k % 3;
    assert.ok(Math.abs(out[k] - (x[k] - [1, 2, 3][c]) / [2, 4, 8][c]) < 1e-5);
  }
  assert.throws(() => randomCrop(32, { padding: -1 }), /padding must be an integer ≥ 0, got -1/);
  assert.throws(() => randomHorizontalFlip(2), /probability in \[0, 1\], got 2/);
  assert.throws(() => normalize([0, 0], [1]), /mean has 2 values but std has 1/);
  assert.throws(() => normalize(0, 0), /std must be a positive/);
  assert.throws(
    () => checkTransformGroups({ train: [{ kind: "rotate" } as never], eval: [] }),
    /train\[0\] has kind "rotate"/,
  );
  assert.throws(() => checkTransformGroups({ train: [], test: [] } as never), /"test"/);
  const t = tf.zeros([1, 4, 4, 1]);
  assert.throws(
    () => applyImageTransforms(t, [randomCrop(9, { padding: 2 })], new Rng(0)),
    /9×9 is larger than the padded image 8×8/,
  );
  t.dispose();
});

Deno.test("tensors: the transforms leave nothing behind", () => {
  const before = tf.memory().numTensors;
  const x = tf.tensor4d(images(8, 8, 8, 3), [8, 8, 8, 3]);
  for (let k = 0; k < 5; k++) {
    const fill = cifarTransforms(CIFAR10_STATS).train[0] as { fill: readonly number[] };
    const ts = [randomCrop(8, { padding: 4, fill: fill.fill }), randomHorizontalFlip()];
    const y = applyImageTransforms(x, [...ts, normalize(0.5, 0.25)], new Rng(k));
    y.dispose();
  }
  x.dispose();
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("ArrayDataset: per-channel mean and std, channel-last", () => {
  const x = Uint8Array.from({ length: 2 * 2 * 2 * 3 }, (_, i) => i * 10);
  const mean = [0.1, 0.2, 0.3], std = [0.5, 0.25, 0.125];
  const d = new ArrayDataset({ x, y: [0, 1], inputShape: [2, 2, 3], scale: 1 / 255, mean, std });
  const b = d.batch([1, 0]).x;
  for (let k = 0; k < 24; k++) {
    const raw = x[(k < 12 ? 12 : -12) + k], c = k % 3;
    assert.ok(Math.abs(b[k] - (raw / 255 - mean[c]) / std[c]) < 1e-5, `feature ${k}`);
  }
  const f = new ArrayDataset({
    x: Float32Array.from(x),
    y: [0, 1],
    inputShape: [2, 2, 3],
    mean,
    std,
  });
  assert.ok(Math.abs(f.batch([0]).x[5] - (50 - 0.3) / 0.125) < 1e-3);
  assert.throws(
    () => new ArrayDataset({ x, y: [0, 1], inputShape: [2, 2, 3], mean: [0, 0] }),
    /mean has 2 values, but inputShape \[2,2,3\] has 3 channels/,
  );
});

/** A 4-class task of 8×8×3 images whose class is the brightest channel, with transform groups. */
function toyVision(groups?: Parameters<typeof checkTransformGroups>[0]) {
  const rng = new Rng(3);
  const n = 64, size = 8 * 8 * 3;
  const x = new Uint8Array(n * size), y = Array.from({ length: n }, (_, i) => i % 4);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < size; k++) x[i * size + k] = rng.int(60) + (k % 3 === y[i] % 3 ? 150 : 0);
  }
  const make = () => {
    const d = new ArrayDataset({ x, y, inputShape: [8, 8, 3], scale: 1 / 255 });
    return groups ? d.withTransforms(groups) : d;
  };
  return classIncremental({
    train: make(),
    test: make(),
    experiences: 2,
    fixedClassOrder: [0, 1, 2, 3],
    name: "ToyVision",
  });
}

async function trainToy(
  groups: Parameters<typeof checkTransformGroups>[0] | undefined,
  seed: number,
): Promise<{ loss: number; rng: unknown; tensors: number[] }> {
  const b = toyVision(groups);
  const model = cnn({ input: [8, 8, 3], channels: [2], dense: 8, outputs: 4, seed: 0 });
  const s = naive({ model, epochs: 2, batchSize: 8, seed });
  const tensors: number[] = [];
  for (const exp of b.train) {
    await s.train(exp);
    await s.eval(b.test);
    tensors.push(tf.memory().numTensors);
  }
  const rngBefore = JSON.stringify(s.rng.state());
  const r = await s.eval(b.test);
  assert.equal(JSON.stringify(s.rng.state()), rngBefore, "an empty eval group draws nothing");
  s.dispose();
  model.dispose();
  return { loss: r.loss, rng: s.rng.state(), tensors };
}

Deno.test("training: the train group is applied per minibatch from the run's generator", async () => {
  const groups = { train: [randomCrop(8, { padding: 2 }), randomHorizontalFlip()], eval: [] };
  const start = tf.memory().numTensors;
  const a = await trainToy(groups, 0);
  assert.equal(tf.memory().numTensors, start, "no tensor left after the runs");
  assert.equal(a.tensors[0], a.tensors[1], "tensor count flat across experiences");
  const again = await trainToy(groups, 0);
  assert.equal(again.loss, a.loss, "same seed, same crops, same numbers");
  const other = await trainToy(groups, 1);
  const plain = await trainToy(undefined, 0);
  assert.notEqual(plain.loss, a.loss, "the crops change training");
  assert.notDeepEqual(plain.rng, a.rng, "the crops draw from the run's generator");
  assert.notEqual(other.loss, a.loss);
});

Deno.test("assembly: no transforms keeps the plain paths; eval takes the eval group", () => {
  const x = Uint8Array.from({ length: 4 * 2 * 2 * 1 }, (_, i) => i + 1);
  const d = new ArrayDataset({ x, y: [0, 1, 0, 1], inputShape: [2, 2, 1] });
  const plan = batchPlan({ dataset: d, indices: Int32Array.of(0, 1, 2, 3) });
  const assembler = new BatchAssembler();
  const rng = new Rng(0);
  const state = JSON.stringify(rng.state());
  tf.tidy(() => {
    const plainBatch = assembler.assemble(plan, d.inputShape);
    const plainPath = assembler.lastPath;
    const empty = assembler.assemble(plan, d.inputShape, { transforms: [], rng });
    assert.equal(assembler.lastPath, plainPath);
    assert.deepEqual(empty.x.dataSync(), plainBatch.x.dataSync());
    assert.equal(JSON.stringify(rng.state()), state, "nothing drawn without random transforms");
    const norm = assembler.assemble(plan, d.inputShape, { transforms: [normalize(1, 2)], rng });
    assert.deepEqual([...norm.x.dataSync()].slice(0, 4), [0, 0.5, 1, 1.5]);
    assert.deepEqual(
      [...norm.data.x].slice(0, 4),
      [0, 0.5, 1, 1.5],
      "data.x is the transformed input",
    );
  });
  // Views and concatenations keep the groups; different groups in a concatenation drop them.
  const g = checkTransformGroups({ train: [randomHorizontalFlip()], eval: [normalize(0, 1)] });
  const t = d.withTransforms(g);
  assert.equal(t.subset([1, 2]).transforms, g);
  assert.equal(t.relabel({ targets: Int32Array.of(1, 1, 1, 1) }).transforms, g);
  assert.equal(concatDatasets([t, d.withTransforms(g)]).transforms, g);
  assert.equal(concatDatasets([t, d]).transforms, undefined);
  assert.equal(d.transforms, undefined);
});

Deno.test("evaluation: the eval group is applied, the train group is not", async () => {
  const evalLoss = async (evalGroup: ReturnType<typeof normalize>[]) => {
    const b = toyVision({ train: [randomCrop(8, { padding: 2 })], eval: evalGroup });
    const model = cnn({ input: [8, 8, 3], channels: [2], dense: 8, outputs: 4, seed: 0 });
    const s = naive({ model, batchSize: 8, seed: 0 });
    const r1 = await s.eval(b.test);
    const r2 = await s.eval(b.test);
    assert.equal(r1.loss, r2.loss, "no random choice at evaluation");
    s.dispose();
    model.dispose();
    return r1.loss;
  };
  const plain = await evalLoss([]);
  const shifted = await evalLoss([normalize(0.5, 0.25)]);
  assert.notEqual(shifted, plain);
  const b = toyVision();
  const model = cnn({ input: [8, 8, 3], channels: [2], dense: 8, outputs: 4, seed: 0 });
  const s = naive({ model, batchSize: 8, seed: 0 });
  assert.equal((await s.eval(b.test)).loss, plain, "an empty eval group is no transform");
  s.dispose();
  model.dispose();
});

Deno.test("checkpoints: a run restored after an experience draws the same crops as one never stopped", async () => {
  const b = toyVision({ train: [randomCrop(8, { padding: 2 }), randomHorizontalFlip()], eval: [] });
  await checkResume({
    make: (seed) =>
      naive({
        model: cnn({ input: [8, 8, 3], channels: [2], dense: 8, outputs: 4, seed }),
        epochs: 2,
        batchSize: 8,
        seed: 0,
      }),
    train: b.train,
    test: b.test,
  });
});

Deno.test("replay: minibatches mixing memory and current data get the train group, tensors flat", async () => {
  const b = toyVision({ train: [randomCrop(8, { padding: 2 }), randomHorizontalFlip()], eval: [] });
  const model = cnn({ input: [8, 8, 3], channels: [2], dense: 8, outputs: 4, seed: 0 });
  const s = replay({ model, memSize: 16, batchSize: 8, seed: 0 });
  await s.train(b.train[0]);
  await s.eval(b.test);
  const base = tf.memory().numTensors;
  await s.train(b.train[1]);
  await s.eval(b.test);
  assert.equal(tf.memory().numTensors, base);
  s.dispose();
  model.dispose();
});
