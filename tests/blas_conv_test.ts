// Tests of the blas backend's convolutions on ResNet shapes (lib/backends/blas.ts: im2col, 1×1
// products and the shifted products on the padded grid) and of the fused batch norm
// (lib/backends/fused.ts): each kernel against tfjs' cpu kernels (the composite tf.moments +
// tf.batchNorm for the batch norm) on random shapes, gradients through tf.grads included, with
// the tensor count flat; then a SlimResNet18 training step on blas against the same step on cpu.
// Without --allow-ffi or a BLAS library the blas tests are skipped, and their names say why.
// Run: deno test -A tests/blas_conv_test.ts

import { setBackend } from "../lib/backend.ts";
await setBackend("cpu");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { blasTuning, registerBlasBackend } from "../lib/backends/blas.ts";
import { BATCH_NORM, batchNormTrain, hasFusedKernel } from "../lib/backends/fused.ts";
import { crossEntropy } from "../lib/nn/losses.ts";
import { batchNorm } from "../lib/nn/norm.ts";
import { slimResNet18 } from "../lib/models/resnet.ts";
import "../lib/nn/gradients.ts";

const reg = await registerBlasBackend();
const SKIP = reg.ok ? undefined : reg.reason;

function blasTest(name: string, fn: () => void | Promise<void>): void {
  Deno.test({
    name: SKIP ? `${name} (skipped: ${SKIP})` : name,
    ignore: SKIP !== undefined,
    fn: async () => {
      try {
        await fn();
      } finally {
        await setBackend("cpu");
      }
    },
  });
}

/** Deterministic values in [-1, 1) (xorshift). */
function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

type Values = { shape: number[]; values: Float32Array }[];

/** `fn` on fresh tensors of `inputs` on `backend`: its outputs' values; no tensor is left. */
async function runOn(
  backend: string,
  inputs: { shape: number[]; values: Float32Array }[],
  fn: (...t: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<Values> {
  await setBackend(backend as "cpu");
  const before = tf.memory().numTensors;
  const out = tf.tidy(() => {
    const ts = inputs.map((i) => tf.tensor(i.values.slice(), i.shape));
    const o = fn(...ts);
    return (Array.isArray(o) ? o : [o]).map((t) => ({
      shape: t.shape,
      values: t.dataSync() as Float32Array,
    }));
  });
  assert.equal(tf.memory().numTensors, before, `${backend}: tensors left`);
  return out;
}

function assertClose(got: Values, want: Values, what: string, tol = 1e-4): void {
  assert.equal(got.length, want.length, what);
  got.forEach((g, o) => {
    assert.deepEqual(g.shape, want[o].shape, `${what}: shape of output ${o}`);
    let worst = 0, at = -1;
    for (let i = 0; i < g.values.length; i++) {
      const b = want[o].values[i];
      const err = Math.abs(g.values[i] - b) / (1 + Math.abs(b));
      if (!(err <= worst)) [worst, at] = [err, i];
    }
    assert.ok(
      worst <= tol,
      `${what}: output ${o}[${at}] = ${g.values[at]}, cpu ${want[o].values[at]}`,
    );
  });
}

/** A shape's random values. */
function input(shape: number[], seed: number) {
  return { shape, values: rand(shape.reduce((a, b) => a * b, 1), seed) };
}

/** Convolutions as SlimResNet18 and ResNet-32 have them, and the edges around them. */
const CASES: { x: number[]; k: number[]; stride: number; pad: "same" | "valid" | number }[] = [
  { x: [1, 16, 16, 3], k: [3, 3, 3, 5], stride: 1, pad: 1 }, // a stem (grid)
  { x: [7, 16, 16, 5], k: [3, 3, 5, 16], stride: 1, pad: 1 }, // grid
  { x: [7, 20, 18, 16], k: [3, 3, 16, 5], stride: 1, pad: "same" }, // grid, not square
  { x: [1, 18, 18, 5], k: [3, 3, 5, 3], stride: 1, pad: 0 }, // grid, no padding
  { x: [7, 16, 16, 16], k: [3, 3, 16, 16], stride: 2, pad: 1 }, // im2col
  { x: [7, 8, 8, 5], k: [3, 3, 5, 16], stride: 1, pad: 1 }, // im2col (a small image)
  { x: [1, 9, 9, 3], k: [3, 3, 3, 5], stride: 2, pad: "same" }, // im2col, odd
  { x: [7, 16, 16, 5], k: [1, 1, 5, 16], stride: 2, pad: 0 }, // a 1×1 shortcut
  { x: [7, 8, 8, 16], k: [1, 1, 16, 3], stride: 1, pad: 0 }, // a plain product
  { x: [1, 17, 17, 3], k: [1, 1, 3, 5], stride: 1, pad: "same" },
];

/** Runs `fn` with patch matrices and grids of at most `chunk` elements. */
async function withChunk(chunk: number, fn: () => Promise<void>): Promise<void> {
  const tuning = blasTuning(), saved = tuning.im2colChunk;
  tuning.im2colChunk = chunk;
  try {
    await fn();
  } finally {
    tuning.im2colChunk = saved;
  }
}

blasTest("Conv2D, Conv2DBackpropInput and Conv2DBackpropFilter agree with cpu", async () => {
  let seed = 1;
  for (const chunk of [1 << 22, 3000]) {
    await withChunk(chunk, async () => {
      for (const { x, k, stride, pad } of CASES) {
        const what = `x[${x}] k[${k}] stride ${stride} pad ${pad} chunk ${chunk}`;
        const conv = (a: tf.Tensor, w: tf.Tensor) =>
          tf.conv2d(a as tf.Tensor4D, w as tf.Tensor4D, stride, pad);
        const xs = input(x, seed++), ks = input(k, seed++);
        const want = await runOn("cpu", [xs, ks], conv);
        assertClose(await runOn("blas", [xs, ks], conv), want, `conv2d ${what}`);
        const dy = input(want[0].shape, seed++);
        const grads = (a: tf.Tensor, w: tf.Tensor, g: tf.Tensor) =>
          tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(conv(p, q), g)))([a, w]);
        const wantG = await runOn("cpu", [xs, ks, dy], grads);
        assertClose(await runOn("blas", [xs, ks, dy], grads), wantG, `gradients ${what}`);
      }
    });
  }
});

blasTest("FusedConv2D on the grid adds the bias and applies relu as cpu", async () => {
  const xs = input([3, 16, 16, 5], 91), ks = input([3, 3, 5, 4], 92), bs = input([4], 93);
  const f = (a: tf.Tensor, w: tf.Tensor, b: tf.Tensor) =>
    tf.fused.conv2d({
      x: a as tf.Tensor4D,
      filter: w as tf.Tensor4D,
      strides: 1,
      pad: "same",
      bias: b,
      activation: "relu",
    });
  assertClose(await runOn("blas", [xs, ks, bs], f), await runOn("cpu", [xs, ks, bs], f), "fused");
});

blasTest(
  "FusedBatchNorm (evaluation mode) agrees with cpu, and other shapes fall back",
  async () => {
    let seed = 500;
    for (const shape of [[7, 6, 6, 16], [1, 3, 3, 5], [9, 3]]) {
      const c = shape.at(-1)!;
      const xs = input(shape, seed++), ms = input([c], seed++), vs = input([c], seed++);
      vs.values.forEach((v, i) => (vs.values[i] = v + 1.5));
      xs.values.forEach((v, i) => (xs.values[i] = 40 * v + 100)); // a large mean
      ms.values.forEach((v, i) => (ms.values[i] = v + 100));
      const os = input([c], seed++), ss = input([c], seed++);
      const full = (x: tf.Tensor, m: tf.Tensor, v: tf.Tensor, o: tf.Tensor, s: tf.Tensor) =>
        tf.batchNorm(x, m, v, o, s, 1e-5);
      const bare = (x: tf.Tensor, m: tf.Tensor, v: tf.Tensor) => tf.batchNorm(x, m, v);
      const ins = [xs, ms, vs, os, ss];
      assertClose(await runOn("blas", ins, full), await runOn("cpu", ins, full), `[${shape}]`);
      const ins3 = [xs, ms, vs];
      assertClose(
        await runOn("blas", ins3, bare),
        await runOn("cpu", ins3, bare),
        `bare [${shape}]`,
      );
    }
    // Statistics of the input's shape: the wasm kernel's broadcasting.
    const xs = input([2, 3, 4], 1), ms = input([2, 3, 4], 2), vs = input([2, 3, 4], 3);
    vs.values.forEach((v, i) => (vs.values[i] = v + 1.5));
    const f = (x: tf.Tensor, m: tf.Tensor, v: tf.Tensor) => tf.batchNorm(x, m, v);
    assertClose(await runOn("blas", [xs, ms, vs], f), await runOn("cpu", [xs, ms, vs], f), "full");
  },
);

blasTest("Slice agrees with cpu: ranks 1 to 6, whole and partial axes, int32", async () => {
  const cases: [number[], number[], number[]][] = [
    [[7], [2], [4]],
    [[5, 6], [1, 0], [3, -1]],
    [[3, 4, 5], [0, 1, 2], [3, 2, 3]],
    [[2, 4, 2, 4, 2, 3], [0, 0, 0, 0, 0, 0], [2, 4, 1, 4, 1, 3]], // the pad shortcut's
    [[2, 3, 4, 5], [1, 0, 0, 0], [1, 3, 4, 5]], // one contiguous block
    [[2, 3, 4, 5], [0, 1, 1, 2], [2, 2, 3, 3]],
    [[2, 3, 4], [0, 0, 0], [2, 0, 4]], // empty
  ];
  let seed = 900;
  for (const [shape, begin, sz] of cases) {
    const xs = input(shape, seed++);
    const f = (x: tf.Tensor) => tf.slice(x, begin, sz);
    assertClose(await runOn("blas", [xs], f), await runOn("cpu", [xs], f), `slice [${shape}]`);
    const g = (x: tf.Tensor) => tf.slice(tf.cast(tf.mul(x, 100), "int32"), begin, sz);
    assertClose(await runOn("blas", [xs], g), await runOn("cpu", [xs], g), `int [${shape}]`);
  }
});

/** The composite batch norm (tf.moments + tf.batchNorm), for the kernels to agree with. */
function composite(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, eps: number) {
  const { mean, variance } = tf.moments(x, [...Array(x.rank - 1).keys()]);
  return { y: tf.batchNorm(x, mean, variance, b, w, eps), mean, variance };
}

Deno.test("the fused batch norm agrees with the composite form on every backend", async () => {
  const shapes = [[7, 5, 5, 3], [1, 4, 6, 16], [7, 3, 3, 5], [9, 5]];
  let seed = 300;
  for (const backend of SKIP ? ["cpu", "wasm"] : ["cpu", "wasm", "blas"]) {
    for (const shape of shapes) {
      const c = shape.at(-1)!;
      const xs = input(shape, seed++), ws = input([c], seed++), bs = input([c], seed++);
      // Values away from zero mean and unit variance, as a layer's inputs are.
      xs.values.forEach((v, i) => (xs.values[i] = 3 * v + 2));
      const dy = input(shape, seed++);
      const what = `${backend} [${shape}]`;
      const fused = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => {
        const r = batchNormTrain(x, w, b, 1e-5);
        return [r.y, r.mean, r.variance];
      };
      const comp = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => {
        const r = composite(x, w, b, 1e-5);
        return [r.y, r.mean, r.variance];
      };
      assertClose(
        await runOn(backend, [xs, ws, bs], fused),
        await runOn("cpu", [xs, ws, bs], comp),
        `forward ${what}`,
      );
      assert.ok(hasFusedKernel(BATCH_NORM), backend);
      const grads =
        (f: typeof composite) => (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, g: tf.Tensor) =>
          tf.grads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) =>
            tf.sum(tf.mul(f(p, q, r, 1e-5).y, g))
          )(
            [x, w, b],
          );
      assertClose(
        await runOn(backend, [xs, ws, bs, dy], grads(batchNormTrain)),
        await runOn("cpu", [xs, ws, bs, dy], grads(composite)),
        `gradients ${what}`,
      );
    }
  }
});

Deno.test("batchNorm moves the running statistics the same with the fused kernel", async () => {
  await setBackend("cpu");
  const x = tf.tensor(rand(4 * 3 * 3 * 5, 7), [4, 3, 3, 5]);
  const stats = () => ({
    runningMean: tf.variable(tf.zeros([5])),
    runningVar: tf.variable(tf.ones([5])),
    weight: tf.ones([5]),
    bias: tf.zeros([5]),
  });
  const fused = stats(), comp = stats();
  const before = tf.memory().numTensors;
  const y = tf.tidy(() => batchNorm(x, fused, true));
  // The composite form: without a bias, batchNorm keeps it.
  const yc = tf.tidy(() => batchNorm(x, { ...comp, bias: undefined }, true));
  assert.equal(tf.memory().numTensors, before + 2);
  assertClose([{ shape: y.shape, values: y.dataSync() as Float32Array }], [{
    shape: yc.shape,
    values: yc.dataSync() as Float32Array,
  }], "y");
  for (const k of ["runningMean", "runningVar"] as const) {
    const a = fused[k].dataSync(), b = comp[k].dataSync();
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-6, `${k}[${i}]: ${v} vs ${b[i]}`));
  }
  tf.dispose([x, y, yc, ...Object.values(fused), ...Object.values(comp)]);
});

/** Loss before and after one SGD step of SlimResNet18 on `backend`, and the tensor count. */
async function trainStep(backend: string): Promise<number[]> {
  await setBackend(backend as "cpu");
  const model = slimResNet18({ outputs: 10, seed: 3 });
  const x = tf.tensor(rand(4 * 32 * 32 * 3, 11), [4, 32, 32, 3]);
  const y = tf.tensor1d([1, 7, 3, 3], "int32");
  const params = [...model.trainableParameters().values()];
  const before = tf.memory().numTensors;
  const losses: number[] = [];
  for (let i = 0; i < 2; i++) {
    const { value, grads } = tf.variableGrads(() => crossEntropy(model.forward(x), y), params);
    losses.push(value.dataSync()[0]);
    tf.tidy(() => {
      for (const p of params) p.assign(tf.sub(p, tf.mul(grads[p.name], 0.05)));
    });
    tf.dispose([value, ...Object.values(grads)]);
    assert.equal(tf.memory().numTensors, before, `${backend}: tensors after step ${i}`);
  }
  model.eval();
  losses.push(tf.tidy(() => crossEntropy(model.forward(x), y).dataSync()[0]));
  tf.dispose([x, y]);
  model.dispose();
  return losses;
}

blasTest("a SlimResNet18 training step gives the same losses on blas as on cpu", async () => {
  const want = await trainStep("cpu");
  const got = await trainStep("blas");
  got.forEach((l, i) =>
    assert.ok(Math.abs(l - want[i]) < 1e-3, `loss ${i}: blas ${l}, cpu ${want[i]}`)
  );
  // The step moved the loss: the comparison is of a real update.
  assert.ok(Math.abs(want[1] - want[0]) > 1e-3, `losses ${want}`);
});
