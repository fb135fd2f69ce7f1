// Tests of lib/backends/fused.ts: the fused softmax cross-entropy and epoch accumulators agree
// with tfjs' composite forms on every backend they are registered for, and free what they make.
// (The in-place SGD update is tested with the optimizers, tests/optim_test.ts.)
// Run: deno test -A tests/fused_test.ts

import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "../lib/nn/gradients.ts";
import { registerBlasBackend } from "../lib/backends/blas.ts";
import {
  accumulateBatch,
  BATCH_STATS,
  COLUMN_SUM,
  countCorrect,
  DISTILLATION,
  hasFusedKernel,
  linear,
  SOFTMAX_CE,
  softmaxCrossEntropy,
  TRANSPOSE_2D,
  WEIGHTED_SQUARE,
  weightedSquare,
  weightedSquaredDistance,
} from "../lib/backends/fused.ts";
import { compositeCrossEntropy, crossEntropy } from "../lib/nn/losses.ts";
import { Activation, Linear, Sequential } from "../lib/nn/layers.ts";
import { compositeDistillation, distillationLoss } from "../lib/nn/losses.ts";

const BACKENDS = (await registerBlasBackend()).ok ? ["cpu", "wasm", "blas"] : ["cpu", "wasm"];

async function onBackends(fn: (backend: string) => void): Promise<void> {
  try {
    for (const b of BACKENDS) {
      await setBackend(b as "cpu");
      fn(b);
    }
  } finally {
    await setBackend("wasm");
  }
}

function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  what: string,
) {
  assert.equal(actual.length, expected.length, `${what}: lengths differ`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= tol * Math.max(1, Math.abs(expected[i])),
      `${what}[${i}]: ${actual[i]} vs ${expected[i]}`,
    );
  }
}

Deno.test("softmaxCrossEntropy: values and gradient worked by hand", () => {
  // Row 0: logits [0, 0], label 1 → loss ln 2, softmax [.5, .5]. Row 1: [ln 3, 0], label 0 →
  // softmax [.75, .25], loss −ln .75. Mean over 2 rows; gradient (softmax − onehot) / 2.
  const grad = new Float32Array(4);
  const loss = softmaxCrossEntropy([0, 0, Math.log(3), 0], [1, 0], 2, 2, grad);
  assertClose([loss], [(Math.LN2 - Math.log(0.75)) / 2], 1e-12, "loss");
  assertClose(grad, [0.25, -0.25, -0.125, 0.125], 1e-7, "grad");
  // Huge logits stay finite (the max is subtracted first).
  const big = softmaxCrossEntropy([1000, 0], [0], 1, 2, new Float32Array(2));
  assert.ok(Number.isFinite(big) && big < 1e-6, `loss ${big}`);
  // A label out of range gives NaN, not a silent zero.
  assert.ok(Number.isNaN(softmaxCrossEntropy([0, 0], [2], 1, 2, new Float32Array(2))));
  assert.ok(Number.isNaN(softmaxCrossEntropy([0, 0], [-1], 1, 2, new Float32Array(2))));
});

Deno.test("countCorrect: first largest logit wins ties, as tf.argMax", () => {
  assert.equal(countCorrect([1, 1, 0, 2, 5, 5], [0, 1, 1], 3, 2), 2);
  assert.equal(countCorrect([3, 3, 3], [1], 1, 3), 0);
});

Deno.test("fused cross-entropy: loss and gradient equal the composite form on every backend", async () => {
  const n = 37, c = 7;
  const z0 = tf.randomNormal([n, c], 0, 3, "float32", 11);
  const zv = Array.from(z0.dataSync());
  z0.dispose();
  const labels = Array.from({ length: n }, (_, i) => (i * 5) % c);
  await onBackends((b) => {
    assert.ok(hasFusedKernel(SOFTMAX_CE), `${b}: the fused kernel is not registered`);
    const z = tf.tensor2d(zv, [n, c]);
    const y = tf.tensor1d(labels, "int32");
    const fused = tf.valueAndGrad((t: tf.Tensor) => crossEntropy(t, y));
    const plain = tf.valueAndGrad((t: tf.Tensor) => compositeCrossEntropy(t, y));
    const a = fused(z), e = plain(z);
    assertClose(a.value.dataSync(), e.value.dataSync(), 1e-6, `${b} loss`);
    assertClose(a.grad.dataSync(), e.grad.dataSync(), 1e-6, `${b} gradient`);
    // Outside a gradient (evaluation) the kernel runs alone: same value, nothing left behind.
    const before = tf.memory().numTensors;
    const plainLoss = crossEntropy(z, y);
    assertClose(plainLoss.dataSync(), e.value.dataSync(), 1e-6, `${b} loss without a tape`);
    plainLoss.dispose();
    assert.equal(tf.memory().numTensors, before, `${b}: the unused gradient is freed`);
    // A scaled loss scales the gradient (dy is applied).
    const g3 = tf.grad((t: tf.Tensor) => tf.mul(crossEntropy(t, y), 3))(z);
    assertClose(g3.dataSync(), Array.from(e.grad.dataSync(), (v) => 3 * v), 1e-6, `${b} 3×`);
    tf.dispose([z, y, a.value, a.grad, e.value, e.grad, g3]);
  });
});

Deno.test("accumulateBatch: summed loss and correct count equal the composite form", async () => {
  await onBackends((b) => {
    assert.ok(hasFusedKernel(BATCH_STATS), `${b}: the fused kernel is not registered`);
    const logits = tf.tensor2d([[1, 2, 0], [3, 3, 0], [0, 0, 1], [5, 1, 2]]);
    const labels = tf.tensor1d([1, 1, 2, 2], "int32");
    const [s, k] = accumulateBatch(tf.scalar(1.5), tf.scalar(4), tf.scalar(0.25), logits, labels);
    // 1.5 + 0.25·4 = 2.5; rows 0 and 2 are right (row 1 ties: class 0 wins), 4 + 2 = 6.
    assert.deepEqual([s.dataSync()[0], k.dataSync()[0]], [2.5, 6], b);
    tf.dispose([logits, labels, s, k]);
  });
});

/** One backward step of a loss summing `l`'s output on `x`, for `l`'s weight and bias. */
function oneLayerStep(l: Linear, x: tf.Tensor): void {
  const { value, grads } = tf.variableGrads(() => tf.sum(l.forward(x)) as tf.Scalar, [
    l.weight,
    l.bias!,
  ]);
  tf.dispose([value, ...Object.values(grads)]);
}

Deno.test("fused kernels leave tf.memory().numTensors flat over many steps", async () => {
  await onBackends((b) => {
    const w = tf.variable(tf.randomNormal([5, 4], 0, 1, "float32", 3));
    const x = tf.randomNormal([16, 5], 0, 1, "float32", 4);
    const y = tf.tensor1d(Array.from({ length: 16 }, (_, i) => i % 4), "int32");
    let sum = tf.keep(tf.scalar(0)), hits = tf.keep(tf.scalar(0));
    const step = () => {
      const { value, grads } = tf.variableGrads(() => crossEntropy(tf.matMul(x, w), y), [w]);
      tf.tidy(() => w.assign(tf.sub(w, tf.mul(grads[w.name], 0.1))));
      const out = tf.tidy(() => tf.matMul(x, w));
      const [s2, h2] = accumulateBatch(sum, hits, value, out, y);
      tf.dispose([sum, hits, value, out, grads[w.name]]);
      sum = s2;
      hits = h2;
    };
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 200; i++) step();
    assert.equal(tf.memory().numTensors, before, `${b}: tensors leaked`);
    assert.equal(hits.dataSync()[0] <= 16 * 201, true);
    tf.dispose([w, x, y, sum, hits]);
  });
});

Deno.test("fused Linear (wasm, blas): outputs and gradients equal the composite layer; no unneeded input gradient", async () => {
  const cases = [
    { bias: true, relu: true },
    { bias: true, relu: false },
    { bias: false, relu: true },
    { bias: false, relu: false },
  ];
  for (const c of cases) {
    const results: Record<string, number[][]> = {};
    // cpu computes the composite form (product, bias, relu) for reference.
    for (const b of BACKENDS) {
      await setBackend(b as "wasm");
      const l1 = new Linear(6, 5, { seed: 1, bias: c.bias });
      const l2 = new Linear(5, 3, { seed: 2, bias: c.bias });
      const net = new Sequential(c.relu ? [l1, new Activation("relu"), l2] : [l1, l2]);
      const x = tf.randomNormal([9, 6], 0, 1, "float32", 5);
      const y = tf.tensor1d([0, 1, 2, 0, 1, 2, 0, 1, 2], "int32");
      const params = [...net.trainableParameters().values()];
      const { value, grads } = tf.variableGrads(() => crossEntropy(net.forward(x), y), params);
      results[b] = [
        Array.from(value.dataSync()),
        ...params.map((p) => Array.from(grads[p.name].dataSync())),
      ];
      tf.dispose([x, y, value, ...Object.values(grads)]);
      net.dispose();
    }
    assert.equal(results.blas.length, results.wasm.length);
    results.wasm.forEach((e, i) =>
      assertClose(results.blas[i], e, 1e-5, `${JSON.stringify(c)} #${i}`)
    );
  }
  // The first layer's input is not on the tape: its gradient (a product with Wᵀ) is never
  // computed. One layer: the forward kernel, then one product (dW) and one sum (db).
  for (const b of BACKENDS.filter((b) => b !== "cpu")) {
    await setBackend(b as "wasm");
    const l = new Linear(8, 4, { seed: 3 });
    const x = tf.randomNormal([5, 8], 0, 1, "float32", 6);
    const info = await tf.profile(() => oneLayerStep(l, x));
    const names = info.kernels.map((k) => k.name);
    assert.equal(names.filter((n) => n === "PerennialLinear").length, 1, `${b}: ${names}`);
    assert.equal(names.filter((n) => n === "BatchMatMul").length, 1, `${b}: ${names}`);
    if (b === "wasm") {
      // wasm transposes and sums with the JavaScript kernels (the one Sum is the loss' own).
      assert.ok(names.includes(TRANSPOSE_2D) && names.includes(COLUMN_SUM), `${names}`);
      assert.ok(!names.includes("Transpose"), `${names}`);
      assert.equal(names.filter((n) => n === "Sum").length, 1, `${names}`);
    }
    // With the input a variable, its gradient is computed: a second product.
    const xv = tf.variable(x);
    const info2 = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(() => tf.sum(l.forward(xv)) as tf.Scalar, [
        l.weight,
        xv,
      ]);
      tf.dispose([value, ...Object.values(grads)]);
    });
    assert.equal(info2.kernels.filter((k) => k.name === "BatchMatMul").length, 2, b);
    tf.dispose([x, xv]);
    l.dispose();
  }
  await setBackend("wasm");
});

Deno.test("blas relu and its fused gradient: zeros are +0, NaN propagates", async () => {
  if (!BACKENDS.includes("blas")) return;
  await setBackend("blas");
  const x = tf.tensor2d([[-1, 2], [NaN, 0.5]]);
  const w = tf.eye(2) as tf.Tensor2D;
  const y = linear(x, w, undefined, "relu");
  const v = Array.from(y.dataSync());
  // Row 2 holds a NaN: both its outputs are NaN (NaN · 0 inside the product).
  assert.ok(
    Object.is(v[0], 0) && v[1] === 2 && Number.isNaN(v[2]) && Number.isNaN(v[3]),
    String(v),
  );
  const g = tf.grad((t: tf.Tensor) => linear(t as tf.Tensor2D, w, undefined, "relu"))(
    x,
    tf.tensor2d([[-3, 4], [5, -6]]),
  );
  // Masked where the output is not positive; a NaN output passes NaN, as tfjs' own relu
  // gradient (dy · step(x)) does.
  const gv = Array.from(g.dataSync());
  assert.ok(gv[0] === 0 && gv[1] === 4 && Number.isNaN(gv[2]) && Number.isNaN(gv[3]), String(gv));
  tf.dispose([x, w, y, g]);
  await setBackend("wasm");
});

Deno.test("fused distillation (LwF): loss and gradient equal the composite form", async () => {
  const n = 11, w = 6;
  const a0 = tf.randomNormal([n, w], 0, 2, "float32", 21),
    b0 = tf.randomNormal([n, w], 0, 2, "float32", 22);
  const av = Array.from(a0.dataSync()), bv = Array.from(b0.dataSync());
  tf.dispose([a0, b0]);
  await onBackends((b) => {
    assert.ok(hasFusedKernel(DISTILLATION), `${b}: the fused kernel is not registered`);
    for (const units of [[0, 1, 2, 3, 4, 5], [1, 2, 3], [0, 2, 5], [4]]) {
      for (const T of [1, 2]) {
        const out = tf.tensor2d(av, [n, w]), prev = tf.tensor2d(bv, [n, w]);
        const f = tf.valueAndGrad((t: tf.Tensor) => distillationLoss(t, prev, units, T));
        const g = tf.valueAndGrad((t: tf.Tensor) => compositeDistillation(t, prev, units, T));
        const x = f(out), e = g(out);
        const what = `${b} units ${units} T ${T}`;
        assertClose(x.value.dataSync(), e.value.dataSync(), 1e-5, `${what} loss`);
        assertClose(x.grad.dataSync(), e.grad.dataSync(), 1e-5, `${what} gradient`);
        tf.dispose([out, prev, x.value, x.grad, e.value, e.grad]);
      }
    }
  });
  // Identical outputs: zero loss and zero gradient.
  const z = tf.tensor2d([[1, 2, 3]]);
  const same = tf.valueAndGrad((t: tf.Tensor) => distillationLoss(t, z, [0, 2], 2))(z);
  assert.ok(Math.abs(same.value.dataSync()[0]) < 1e-7);
  assertClose(same.grad.dataSync(), [0, 0, 0], 1e-7, "same gradient");
  tf.dispose([z, same.value, same.grad]);
});

Deno.test("weighted squared distance (EWC, SI): value and gradient worked by hand and as the composite form", async () => {
  // 3·[1·(2 − 1)² + 2·(0 − 1)²] = 9; gradient 2·3·w·(x − c) = [6, −12].
  const grad = new Float32Array(2);
  assertClose([weightedSquare([2, 0], [1, 2], [1, 1], 3, grad)], [9], 1e-12, "value");
  assertClose(grad, [6, -12], 1e-7, "grad");
  const shape = [33, 17];
  const vals = (seed: number, lo = 0) =>
    tf.tidy(() => Array.from(tf.randomUniform(shape, lo, 1, "float32", seed).dataSync()));
  const [xv, wv, cv] = [vals(21, -1), vals(22), vals(23, -1)];
  await onBackends((b) => {
    assert.ok(hasFusedKernel(WEIGHTED_SQUARE), `${b}: the fused kernel is not registered`);
    const x = tf.variable(tf.tensor2d(xv, shape as [number, number]));
    const w = tf.tensor2d(wv, shape as [number, number]);
    const c = tf.tensor2d(cv, shape as [number, number]);
    const composite = () => tf.mul(tf.sum(tf.mul(w, tf.square(tf.sub(x, c)))), 500) as tf.Scalar;
    const e = tf.variableGrads(composite, [x]);
    // Added to another loss (dy = 1) and scaled (dy = 0.25): the gradient follows dy.
    const a = tf.variableGrads(
      () => tf.add(weightedSquaredDistance(x, w, c, 500), 0) as tf.Scalar,
      [x],
    );
    const q = tf.variableGrads(
      () => tf.mul(weightedSquaredDistance(x, w, c, 500), 0.25) as tf.Scalar,
      [x],
    );
    assertClose(a.value.dataSync(), e.value.dataSync(), 1e-5, `${b} value`);
    assertClose(a.grads[x.name].dataSync(), e.grads[x.name].dataSync(), 1e-5, `${b} gradient`);
    assertClose(
      q.grads[x.name].dataSync(),
      Array.from(e.grads[x.name].dataSync(), (v) => v / 4),
      1e-5,
      `${b} gradient of a quarter`,
    );
    // Outside a gradient: the value alone, nothing left behind; many steps stay flat.
    const before = tf.memory().numTensors;
    for (let i = 0; i < 50; i++) {
      tf.dispose(weightedSquaredDistance(x, w, c, 2));
      const g = tf.variableGrads(() => weightedSquaredDistance(x, w, c, 2), [x]);
      tf.dispose([g.value, g.grads[x.name]]);
    }
    assert.equal(tf.memory().numTensors, before, `${b}: tensors leaked`);
    const wrong = tf.zeros([17, 33]);
    assert.throws(
      () => weightedSquaredDistance(x, wrong, c),
      /PerennialWeightedSquare: weight has shape \[17,33\] but x has \[33,17\]/,
    );
    tf.dispose([x, w, c, wrong, a.value, a.grads[x.name], q.value, q.grads[x.name], e.value]);
    tf.dispose(e.grads[x.name]);
  });
});

Deno.test("wasm transpose and column sum: the bits of wasm's Transpose and Sum; other inputs go to wasm's", () => {
  const run = (name: string, x: tf.Tensor) => tf.engine().runKernel(name, { x }) as tf.Tensor;
  // Worked by hand.
  const small = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(Array.from(run(TRANSPOSE_2D, small).dataSync()), [1, 4, 2, 5, 3, 6]);
  assert.deepEqual(Array.from(run(COLUMN_SUM, small).dataSync()), [5, 7, 9]);
  // Blocks of 32 with ragged edges, rows not a multiple of 4, one row, one column, and a
  // square side of 256 and more (wasm's own transpose).
  for (const [r, c] of [[128, 784], [33, 65], [7, 400], [1, 9], [9, 1], [300, 260]]) {
    const x = tf.randomNormal([r, c], 0, 3, "float32", r + c);
    const t = run(TRANSPOSE_2D, x), s = run(COLUMN_SUM, x);
    assert.deepEqual(t.shape, [c, r]);
    assert.deepEqual(s.shape, [c]);
    assert.deepEqual(t.dataSync(), tf.transpose(x).dataSync(), `transpose ${r}×${c}`);
    assert.deepEqual(s.dataSync(), tf.sum(x, 0).dataSync(), `column sum ${r}×${c}`);
    tf.dispose([x, t, s]);
  }
  // Not rank 2 or not float32: wasm's kernels (the sum over the first axis); a transpose of
  // another rank is an error naming the shape.
  const x3 = tf.randomNormal([4, 3, 2], 0, 1, "float32", 1);
  assert.deepEqual(run(COLUMN_SUM, x3).dataSync(), tf.sum(x3, 0).dataSync());
  assert.throws(() => run(TRANSPOSE_2D, x3), /rank-2 tensors, got shape \[4,3,2\]/);
  const xi = tf.tensor2d([[1, 2], [3, 4], [5, 6]], undefined, "int32");
  assert.deepEqual(Array.from(run(TRANSPOSE_2D, xi).dataSync()), [1, 3, 5, 2, 4, 6]);
  assert.deepEqual(Array.from(run(COLUMN_SUM, xi).dataSync()), [9, 12]);
  // A Linear's backward on wasm uses them, and frees what it makes.
  const l = new Linear(8, 4, { seed: 3 });
  const x = tf.randomNormal([5, 8], 0, 1, "float32", 6);
  oneLayerStep(l, x);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 50; i++) oneLayerStep(l, x);
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([small, x3, xi, x]);
  l.dispose();
});
