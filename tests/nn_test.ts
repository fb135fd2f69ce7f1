// Tests of lib/nn (modules, layers, losses) and lib/models (MLP, CNN, incremental and multi-head
// classifiers). Numeric checks run on both the cpu and the wasm backends.
// Run: deno test -A tests/nn_test.ts

import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { seedGlobal } from "../lib/backend.ts";
import { ArrayDataset } from "../lib/data/dataset.ts";
import { type Experience, makeExperience } from "../lib/data/experience.ts";
import type { ModuleState } from "../lib/nn/module.ts";
import {
  Activation,
  Conv2d,
  conv2dOp,
  Dropout,
  Flatten,
  Linear,
  linearOp,
  MaxPool2d,
  Sequential,
} from "../lib/nn/layers.ts";
import { crossEntropy } from "../lib/nn/losses.ts";
import { quadraticPenalty, sumPenalties } from "../lib/nn/penalties.ts";
import { StagingArray } from "../lib/nn/staging.ts";
import { Classifier, cnn, mlp, multiHeadMLP } from "../lib/models/mlp.ts";
import { IncrementalClassifier, MASK_VALUE, MultiHeadClassifier } from "../lib/models/heads.ts";

const BACKENDS = ["cpu", "wasm"] as const;

/** Runs `fn` once on each backend, leaving wasm active afterwards. */
async function onBackends(fn: (backend: string) => void | Promise<void>): Promise<void> {
  try {
    for (const b of BACKENDS) {
      await setBackend(b);
      await fn(b);
    }
  } finally {
    await setBackend("wasm");
  }
}

function values(t: tf.Tensor): number[] {
  return Array.from(t.dataSync());
}

/** Same shape and values within `tol` (relative to the magnitude, at least 1). */
function assertClose(
  actual: tf.Tensor | number[],
  expected: tf.Tensor | number[],
  tol = 1e-5,
  what = "",
) {
  if (!Array.isArray(actual) && !Array.isArray(expected)) {
    assert.deepEqual(actual.shape, expected.shape, `${what}: shapes differ`);
  }
  const a = Array.isArray(actual) ? actual : values(actual);
  const e = Array.isArray(expected) ? expected : values(expected);
  assert.equal(a.length, e.length, `${what}: sizes differ`);
  for (let i = 0; i < e.length; i++) {
    const err = Math.abs(a[i] - e[i]);
    assert.ok(err <= tol * Math.max(1, Math.abs(e[i])), `${what}[${i}]: ${a[i]} vs ${e[i]}`);
  }
}

/** A tiny experience: `x` rows of `features` values, class labels `y`, task labels `t`. */
function experience(y: number[], t?: number[], features = 4, id = 0): Experience {
  const x = new Float32Array(y.length * features).map((_, i) => (i % 7) / 7);
  const dataset = new ArrayDataset({ x, y, inputShape: [features], taskLabels: t });
  return makeExperience("train", id, dataset, {
    name: "Toy",
    scenario: t ? "task-incremental" : "class-incremental",
    numClasses: 10,
    inputShape: [features],
    numExperiences: 3,
  });
}

/** Sets a variable's value from plain numbers. */
function setValues(v: tf.Variable, data: number[]): void {
  tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
}

/** The parameter name of a tfjs variable (variableGrads keys gradients by variable name). */
function gradsByParam(
  params: Map<string, tf.Variable>,
  grads: tf.NamedTensorMap,
): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const [n, v] of params) if (grads[v.name]) out.set(n, grads[v.name]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Linear

Deno.test("Linear forward equals x @ W + b (hand-computed), flattening higher-rank inputs", async () => {
  await onBackends((b) => {
    const lin = new Linear(3, 2, { seed: 0 });
    setValues(lin.weight, [1, 0, 0, 1, 1, -1]); // W = [[1, 0], [0, 1], [1, -1]]
    setValues(lin.bias!, [0.5, -0.5]);
    tf.tidy(() => {
      // [1, 2, 3] W = [4, -1]; [4, 5, 6] W = [10, -1]; plus b.
      const y = lin.forward(tf.tensor2d([[1, 2, 3], [4, 5, 6]]));
      assert.deepEqual(y.shape, [2, 2]);
      assertClose(y, [4.5, -1.5, 10.5, -1.5], 1e-6, b);
      const y4 = lin.forward(tf.tensor4d([1, 2, 3, 4, 5, 6], [2, 1, 3, 1]));
      assertClose(y4, [4.5, -1.5, 10.5, -1.5], 1e-6, `${b} rank 4`);
    });
    const noBias = new Linear(3, 2, { bias: false, seed: 0 });
    assert.equal(noBias.bias, undefined);
    assert.deepEqual([...noBias.namedParameters().keys()], ["weight"]);
    setValues(noBias.weight, [1, 0, 0, 1, 1, -1]);
    tf.tidy(() => assertClose(noBias.forward(tf.tensor2d([[1, 2, 3]])), [4, -1], 1e-6, b));
    lin.dispose();
    noBias.dispose();
  });
});

Deno.test("Linear rejects bad sizes and inputs of the wrong width, saying which", () => {
  assert.throws(() => new Linear(0, 3), { name: "RangeError", message: /inFeatures .*got 0/ });
  assert.throws(() => new Linear(3, 2.5), {
    name: "RangeError",
    message: /outFeatures .*got 2\.5/,
  });
  const lin = new Linear(3, 2, { seed: 1 });
  assert.throws(
    () => tf.tidy(() => lin.forward(tf.zeros([2, 4]))),
    { name: "RangeError", message: /expects 3 input features but got 4 \(input shape \[2,4\]\)/ },
  );
  lin.dispose();
});

Deno.test("Linear's custom gradient equals the gradient of tf.add(tf.matMul(x, w), b)", async () => {
  await onBackends((b) => {
    tf.tidy(() => {
      const x = tf.randomNormal([5, 4], 0, 1, "float32", 1) as tf.Tensor2D;
      const w = tf.randomNormal([4, 3], 0, 1, "float32", 2) as tf.Tensor2D;
      const bias = tf.randomNormal([3], 0, 1, "float32", 3) as tf.Tensor1D;
      const r = tf.randomNormal([5, 3], 0, 1, "float32", 4);
      // A non-linear loss so that dy is not constant.
      const loss = (y: tf.Tensor) => tf.sum(tf.mul(tf.sin(y), r));
      const custom = tf.grads((x: tf.Tensor, w: tf.Tensor, bb: tf.Tensor) =>
        loss(linearOp(x as tf.Tensor2D, w as tf.Tensor2D, bb as tf.Tensor1D))
      )([x, w, bias]);
      const plain = tf.grads((x: tf.Tensor, w: tf.Tensor, bb: tf.Tensor) =>
        loss(tf.add(tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D), bb))
      )([x, w, bias]);
      assert.equal(custom.length, 3);
      ["dx", "dW", "db"].forEach((n, i) => assertClose(custom[i], plain[i], 1e-5, `${b} ${n}`));
      // The values too.
      assertClose(linearOp(x, w, bias), tf.add(tf.matMul(x, w), bias), 1e-5, `${b} value`);
    });
  });
});

Deno.test("Linear's gradients through variableGrads equal the hand-computed x^T r, sum r, r W^T", async () => {
  await onBackends((b) => {
    const lin = new Linear(2, 2, { seed: 5 });
    setValues(lin.weight, [1, 2, 3, 4]); // W = [[1, 2], [3, 4]]
    setValues(lin.bias!, [0, 0]);
    const xv = [[1, -1], [2, 0.5]];
    const rv = [[1, 0], [0.5, -2]];
    tf.tidy(() => {
      const x = tf.variable(tf.tensor2d(xv), true, `x_${b}`);
      // loss = sum(y * r): dy = r.
      const { grads } = tf.variableGrads(() => tf.sum(tf.mul(lin.forward(x), tf.tensor2d(rv))));
      // dW = x^T r = [[1*1 + 2*0.5, 1*0 + 2*-2], [-1*1 + 0.5*0.5, -1*0 + 0.5*-2]]
      assertClose(grads[lin.weight.name], [2, -4, -0.75, -1], 1e-6, `${b} dW`);
      // db = column sums of r.
      assertClose(grads[lin.bias!.name], [1.5, -2], 1e-6, `${b} db`);
      // dx = r W^T = [[1, 3], [0.5 - 4, 1.5 - 8]]
      assertClose(grads[x.name], [1, 3, -3.5, -6.5], 1e-6, `${b} dx`);
      x.dispose();
    });
    lin.dispose();
  });
});

Deno.test("Linear initialization: uniform within ±1/sqrt(in), reproducible per seed", () => {
  const lin = new Linear(100, 50, { seed: 42 });
  const w = values(lin.weight);
  const bias = values(lin.bias!);
  const bound = 1 / Math.sqrt(100);
  for (const v of [...w, ...bias]) assert.ok(Math.abs(v) <= bound, `|${v}| > ${bound}`);
  // Spread over the whole interval, centered (uniform: mean 0, sd bound/sqrt(3) = 0.0577).
  assert.ok(Math.max(...w) > 0.95 * bound && Math.min(...w) < -0.95 * bound);
  const mean = w.reduce((a, b) => a + b, 0) / w.length;
  const sd = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
  assert.ok(Math.abs(mean) < 0.005, `mean ${mean}`);
  assert.ok(Math.abs(sd - bound / Math.sqrt(3)) < 0.003, `sd ${sd}`);

  const same = new Linear(100, 50, { seed: 42 });
  assert.deepEqual(values(same.weight), w);
  assert.deepEqual(values(same.bias!), bias);
  const other = new Linear(100, 50, { seed: 43 });
  assert.notDeepEqual(values(other.weight), w);
  // Weight and bias are not drawn from the same stream prefix.
  assert.notDeepEqual(bias, w.slice(0, 50));
  // Without a seed: drawn from Math.random, which seedGlobal makes reproducible.
  seedGlobal(3);
  const u1 = new Linear(10, 4);
  seedGlobal(3);
  const u2 = new Linear(10, 4);
  assert.deepEqual(values(u1.weight), values(u2.weight));
  for (const m of [lin, same, other, u1, u2]) m.dispose();
});

Deno.test("resizeOutputs keeps the first columns exactly and inits new ones within the bound", () => {
  const lin = new Linear(9, 2, { seed: 8 });
  const w0 = lin.weight.arraySync() as number[][];
  const b0 = values(lin.bias!);
  lin.resizeOutputs(5, 1);
  assert.equal(lin.outFeatures, 5);
  assert.deepEqual(lin.weight.shape, [9, 5]);
  assert.deepEqual(lin.bias!.shape, [5]);
  const w1 = lin.weight.arraySync() as number[][];
  for (let i = 0; i < 9; i++) assert.deepEqual(w1[i].slice(0, 2), w0[i]);
  assert.deepEqual(values(lin.bias!).slice(0, 2), b0);
  for (const row of w1) for (const v of row.slice(2)) assert.ok(Math.abs(v) <= 1 / 3);
  // Shrinking keeps a prefix too.
  lin.resizeOutputs(1, 2);
  assert.deepEqual((lin.weight.arraySync() as number[][]).map((r) => r[0]), w0.map((r) => r[0]));
  assert.deepEqual(lin.namedParameters().get("weight"), lin.weight);
  lin.dispose();
});

// ---------------------------------------------------------------------------------------------
// Small layers

Deno.test("Activation, Dropout, Flatten, MaxPool2d, Sequential", () => {
  tf.tidy(() => {
    const x = tf.tensor2d([[-2, -0.5, 0, 1.5]]);
    assert.deepEqual(values(new Activation("relu").forward(x)), [0, 0, 0, 1.5]);
    assert.deepEqual(values(new Activation("linear").forward(x)), [-2, -0.5, 0, 1.5]);
    assertClose(new Activation("leakyRelu").forward(x), [-0.02, -0.005, 0, 1.5], 1e-6);
    assertClose(new Activation("tanh").forward(x), [-2, -0.5, 0, 1.5].map(Math.tanh), 1e-6);
    assert.throws(() => new Activation("gelu" as "relu"), {
      name: "RangeError",
      message: /Unknown activation "gelu": use one of relu, tanh/,
    });

    const d = new Dropout(0.5, 7);
    const ones = tf.ones([1, 1000]);
    const kept = values(d.forward(ones));
    // Inverted dropout: zeros or 1 / (1 - 0.5) = 2; about half each.
    assert.ok(kept.every((v) => v === 0 || Math.abs(v - 2) < 1e-6));
    const zeros = kept.filter((v) => v === 0).length;
    assert.ok(zeros > 400 && zeros < 600, `${zeros} zeros`);
    // A new mask every call, identity in eval mode.
    assert.notDeepEqual(values(d.forward(ones)), kept);
    d.eval();
    assert.equal(d.forward(ones), ones);
    assert.throws(() => new Dropout(1), { name: "RangeError", message: /got 1/ });

    const img = tf.tensor4d([1, 5, 3, 2, 0, 9, 4, 4], [1, 2, 4, 1]);
    assert.deepEqual(new Flatten().forward(img).shape, [1, 8]);
    const pooled = new MaxPool2d(2).forward(img);
    assert.deepEqual(pooled.shape, [1, 1, 2, 1]);
    // Windows [[1, 5], [0, 9]] and [[3, 2], [4, 4]].
    assert.deepEqual(values(pooled), [9, 4]);

    const seq = new Sequential([
      new Linear(8, 3, { seed: 1 }),
      new Activation("relu"),
      new Linear(3, 2, { seed: 2 }),
    ]);
    assert.deepEqual([...seq.namedParameters().keys()], [
      "0.weight",
      "0.bias",
      "2.weight",
      "2.bias",
    ]);
    assert.deepEqual(seq.forward(img).shape, [1, 2]);
    assert.equal(seq.countParameters(), 8 * 3 + 3 + 3 * 2 + 2);
    seq.eval();
    assert.ok([...seq.namedModules().values()].every((m) => !m.training));
    seq.train();
    assert.ok([...seq.namedModules().values()].every((m) => m.training));
    seq.dispose();
  });
});

// ---------------------------------------------------------------------------------------------
// Conv2d

Deno.test("Conv2d forward matches tf.conv2d and its gradient matches tfjs' native one", async () => {
  // The reference gradients come from tfjs' own conv2d gradient on the cpu backend (the wasm
  // backend has no Conv2DBackpropFilter kernel, which is why Conv2d computes its own).
  const configs = [
    { stride: 1, padding: "same", h: 5, w: 6 },
    { stride: 2, padding: "same", h: 5, w: 6 },
    { stride: 2, padding: "valid", h: 7, w: 6 },
    { stride: 1, padding: "valid", h: 4, w: 5 },
  ] as const;
  const reference = new Map<string, number[][]>();
  await setBackend("cpu");
  for (const c of configs) {
    tf.tidy(() => {
      const [x, w, bias] = convInputs(c.h, c.w);
      const r = tf.randomNormal(
        [2, Math.ceil(c.h / c.stride), Math.ceil(c.w / c.stride), 4],
        0,
        1,
        "float32",
        9,
      );
      const f = (x: tf.Tensor, w: tf.Tensor, bb: tf.Tensor) => {
        const y = tf.add(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.stride, c.padding), bb);
        return tf.sum(tf.mul(tf.square(y), tf.slice(r, [0, 0, 0, 0], y.shape)));
      };
      reference.set(JSON.stringify(c), tf.grads(f)([x, w, bias]).map(values));
    });
  }
  await onBackends((b) => {
    for (const c of configs) {
      tf.tidy(() => {
        const [x, w, bias] = convInputs(c.h, c.w);
        const r = tf.randomNormal(
          [2, Math.ceil(c.h / c.stride), Math.ceil(c.w / c.stride), 4],
          0,
          1,
          "float32",
          9,
        );
        const f = (x: tf.Tensor, w: tf.Tensor, bb: tf.Tensor) => {
          const y = conv2dOp(
            x as tf.Tensor4D,
            w as tf.Tensor4D,
            bb as tf.Tensor1D,
            c.stride,
            c.padding,
          );
          return tf.sum(tf.mul(tf.square(y), tf.slice(r, [0, 0, 0, 0], y.shape)));
        };
        const got = tf.grads(f)([x, w, bias]);
        const want = reference.get(JSON.stringify(c))!;
        ["dx", "dW", "db"].forEach((n, i) => {
          assert.deepEqual(got[i].shape, [x, w, bias][i].shape);
          assertClose(values(got[i]), want[i], 1e-4, `${b} ${JSON.stringify(c)} ${n}`);
        });
        assertClose(
          conv2dOp(x, w, bias, c.stride, c.padding),
          tf.add(tf.conv2d(x, w, c.stride, c.padding), bias),
          1e-5,
          `${b} value`,
        );
      });
    }
    // The layer itself.
    const conv = new Conv2d(3, 4, 3, { seed: 1, stride: 2 });
    tf.tidy(() => {
      const x = tf.randomNormal([2, 5, 6, 3], 0, 1, "float32", 1);
      const y = conv.forward(x);
      assert.deepEqual(y.shape, [2, 3, 3, 4]);
      assertClose(
        y,
        tf.add(tf.conv2d(x as tf.Tensor4D, conv.weight as tf.Tensor4D, 2, "same"), conv.bias!),
        1e-5,
      );
      const { grads } = tf.variableGrads(() => tf.sum(tf.square(conv.forward(x))));
      assert.deepEqual(Object.keys(grads).sort(), [conv.bias!.name, conv.weight.name].sort());
    });
    assert.throws(() => tf.tidy(() => conv.forward(tf.zeros([1, 5, 5, 2]))), {
      name: "RangeError",
      message: /3 channels, got shape \[1,5,5,2\]/,
    });
    conv.dispose();
  });
  assert.throws(() => new Conv2d(0, 4, 3), { name: "RangeError", message: /inChannels .*got 0/ });
  assert.throws(() => new Conv2d(1, 4, 3, { stride: 0 }), {
    name: "RangeError",
    message: /stride .*got 0/,
  });
});

function convInputs(h: number, w: number): [tf.Tensor4D, tf.Tensor4D, tf.Tensor1D] {
  return [
    tf.randomNormal([2, h, w, 3], 0, 1, "float32", 1) as tf.Tensor4D,
    tf.randomNormal([3, 3, 3, 4], 0, 1, "float32", 2) as tf.Tensor4D,
    tf.randomNormal([4], 0, 1, "float32", 3) as tf.Tensor1D,
  ];
}

// ---------------------------------------------------------------------------------------------
// Loss

Deno.test("crossEntropy equals the hand-computed mean negative log-likelihood (2x3)", async () => {
  // Row 0: logits [1, 2, 3], label 2: -log softmax = log(e + e^2 + e^3) - 3 = 0.40760596
  // Row 1: logits [1, 1, 1], label 0: log 3 = 1.09861229
  const expected = (Math.log(Math.E + Math.E ** 2 + Math.E ** 3) - 3 + Math.log(3)) / 2;
  assert.ok(Math.abs(expected - 0.75310912) < 1e-7);
  await onBackends((b) => {
    tf.tidy(() => {
      const logits = tf.tensor2d([[1, 2, 3], [1, 1, 1]]);
      const labels = tf.tensor1d([2, 0], "int32");
      const l = crossEntropy(logits, labels);
      assert.equal(l.rank, 0);
      assertClose(l, [expected], 1e-6, b);
      // Its gradient is (softmax - onehot) / n.
      const g = tf.grad((z: tf.Tensor) => crossEntropy(z, labels))(logits);
      const s0 = [1, 2, 3].map((v) => Math.exp(v) / (Math.E + Math.E ** 2 + Math.E ** 3));
      assertClose(
        g,
        [s0[0] / 2, s0[1] / 2, (s0[2] - 1) / 2, (1 / 3 - 1) / 2, 1 / 6, 1 / 6],
        1e-6,
        `${b} grad`,
      );
      // Uniform logits over C classes: log C.
      assertClose(crossEntropy(tf.zeros([4, 10]), tf.tensor1d([0, 3, 9, 5], "int32")), [
        Math.log(10),
      ], 1e-6);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// MLP

Deno.test("mlp(): 784-400-400-10 shapes and parameter count; [n,28,28,1] inputs are flattened", async () => {
  const model = mlp({ seed: 1 });
  assert.equal(model.countParameters(), 784 * 400 + 400 + 400 * 400 + 400 + 400 * 10 + 10);
  assert.equal(model.countParameters(), 478410);
  const shapes = Object.fromEntries([...model.namedParameters()].map(([n, v]) => [n, v.shape]));
  assert.deepEqual(shapes, {
    "features.0.weight": [784, 400],
    "features.0.bias": [400],
    "features.2.weight": [400, 400],
    "features.2.bias": [400],
    "classifier.weight": [400, 10],
    "classifier.bias": [10],
  });
  assert.equal(model.featureSize, 400);
  await onBackends((b) => {
    tf.tidy(() => {
      const flat = tf.randomUniform([3, 784], 0, 1, "float32", 5);
      const out = model.forward(flat);
      assert.deepEqual(out.shape, [3, 10]);
      assertClose(model.forward(tf.reshape(flat, [3, 28, 28, 1])), out, 1e-6, b);
      assert.deepEqual(model.embed(flat).shape, [3, 400]);
      // Hidden layer is ReLU: embeddings are non-negative.
      assert.ok(values(model.embed(flat)).every((v) => v >= 0));
    });
  });
  assert.throws(() => tf.tidy(() => model.forward(tf.zeros([2, 100]))), {
    name: "RangeError",
    message: /784 input features but got 100/,
  });
  assert.throws(() => tf.tidy(() => model.forward(tf.zeros([2, 28, 28, 3]))), {
    name: "RangeError",
    message: /784 input features but got 2352 \(input shape \[2,28,28,3\]\)/,
  });
  model.dispose();
  assert.throws(() => mlp({ hidden: [10, 0] }), {
    name: "RangeError",
    message: /hidden\[1\].*got 0/,
  });
  assert.throws(() => mlp({ activation: "swish" as "relu" }), {
    name: "RangeError",
    message: /"swish"/,
  });
});

Deno.test("mlp(): same seed gives identical weights, different seeds differ", () => {
  const a = mlp({ input: 6, hidden: [5, 4], outputs: 3, seed: 10 });
  const b = mlp({ input: 6, hidden: [5, 4], outputs: 3, seed: 10 });
  const c = mlp({ input: 6, hidden: [5, 4], outputs: 3, seed: 11 });
  assert.deepEqual(a.stateDict(), b.stateDict());
  for (const [n, v] of a.namedParameters()) {
    assert.notDeepEqual(values(v), values(c.namedParameters().get(n)!), `${n} equal across seeds`);
  }
  // Layers within a model are not copies of one another.
  const p = a.namedParameters();
  assert.notDeepEqual(
    values(p.get("features.2.bias")!),
    values(p.get("features.0.bias")!).slice(0, 4),
  );
  for (const m of [a, b, c]) m.dispose();
});

// ---------------------------------------------------------------------------------------------
// State dicts

Deno.test("stateDict / loadStateDict round trip (also through JSON) gives identical outputs", async () => {
  await onBackends((b) => {
    const src = mlp({ input: 6, hidden: [5], outputs: 3, seed: 1 });
    const x = tf.randomNormal([4, 6], 0, 1, "float32", 3);
    const want = tf.tidy(() => src.forward(x));
    for (
      const load of [
        (s: ModuleState) => s,
        (s: ModuleState) => JSON.parse(JSON.stringify(s)) as ModuleState,
      ]
    ) {
      const dst = mlp({ input: 6, hidden: [5], outputs: 3, seed: 2 });
      tf.tidy(() => assert.notDeepEqual(values(dst.forward(x)), values(want)));
      dst.loadStateDict(load(src.stateDict()));
      tf.tidy(() => assert.deepEqual(values(dst.forward(x)), values(want), b));
      assert.deepEqual(dst.stateDict(), src.stateDict());
      dst.dispose();
    }
    tf.dispose([x, want]);
    src.dispose();
  });
});

Deno.test("loadStateDict rejects wrong shapes, missing and extra names, and leaves the model intact", () => {
  const model = mlp({ input: 6, hidden: [5], outputs: 3, seed: 1 });
  const before = model.stateDict();
  const other = mlp({ input: 6, hidden: [5], outputs: 3, seed: 2 }).stateDict();

  const wrongShape = structuredClone(other);
  wrongShape.tensors["classifier.weight"] = { shape: [5, 4], values: new Array(20).fill(0) };
  assert.throws(() => model.loadStateDict(wrongShape), {
    name: "RangeError",
    message: /"classifier\.weight" has shape \[5,3\] but the state has \[5,4\]/,
  });

  const missing = structuredClone(other);
  delete missing.tensors["features.0.bias"];
  assert.throws(() => model.loadStateDict(missing), {
    name: "RangeError",
    message: /lacks parameter "features\.0\.bias"/,
  });

  const extra = structuredClone(other);
  extra.tensors["features.9.weight"] = { shape: [1], values: [0] };
  assert.throws(() => model.loadStateDict(extra), {
    name: "RangeError",
    message:
      /has parameter "features\.9\.weight" that the model lacks \(model has: features\.0\.weight/,
  });

  const shortValues = structuredClone(other);
  shortValues.tensors["classifier.bias"].values.pop();
  assert.throws(() => model.loadStateDict(shortValues), {
    name: "RangeError",
    message: /"classifier\.bias" of shape \[3\] needs 3 values, the state has 2/,
  });

  // None of the failed loads changed a value (the bad tensor came after good ones in order).
  assert.deepEqual(model.stateDict(), before);
  model.dispose();
});

// ---------------------------------------------------------------------------------------------
// CNN

Deno.test("cnn(): [n,10] outputs on [n,784] and [n,28,28,1] inputs; every parameter gets a gradient", async () => {
  const model = cnn({ seed: 4 });
  assert.deepEqual(
    Object.fromEntries([...model.namedParameters()].map(([n, v]) => [n, v.shape])),
    {
      "features.1.weight": [3, 3, 1, 32],
      "features.1.bias": [32],
      "features.4.weight": [3, 3, 32, 64],
      "features.4.bias": [64],
      "features.8.weight": [7 * 7 * 64, 128],
      "features.8.bias": [128],
      "classifier.weight": [128, 10],
      "classifier.bias": [10],
    },
  );
  await onBackends((b) => {
    tf.tidy(() => {
      const flat = tf.randomUniform([2, 784], 0, 1, "float32", 6);
      const out = model.forward(flat);
      assert.deepEqual(out.shape, [2, 10]);
      assertClose(model.forward(tf.reshape(flat, [2, 28, 28, 1])), out, 1e-5, b);
      assert.deepEqual(model.embed(flat).shape, [2, 128]);

      const params = model.trainableParameters();
      const { value, grads } = tf.variableGrads(() =>
        crossEntropy(model.forward(flat), tf.tensor1d([3, 7], "int32"))
      );
      assert.ok(Number.isFinite(value.dataSync()[0]));
      const byName = gradsByParam(params, grads);
      assert.deepEqual(
        [...byName.keys()],
        [...params.keys()],
        `${b}: parameters without gradients`,
      );
      for (const [n, g] of byName) {
        assert.deepEqual(g.shape, params.get(n)!.shape);
        const norm = tf.sum(tf.abs(g)).dataSync()[0];
        assert.ok(Number.isFinite(norm) && norm > 0, `${b} ${n}: gradient norm ${norm}`);
      }
    });
  });
  assert.throws(() => tf.tidy(() => model.forward(tf.zeros([2, 100]))), {
    name: "RangeError",
    message: /28×28×1 = 784 values, got shape \[2,100\]/,
  });
  model.dispose();
  assert.throws(() => cnn({ input: [4, 4, 1], channels: [2, 2, 2] }), /too many/);
});

Deno.test("cnn() trains on wasm: a few plain gradient steps lower the loss", async () => {
  await setBackend("wasm");
  // Plain gradient descent by hand so this test needs nothing from lib/optim.
  const model = cnn({ channels: [4, 8], dense: 16, seed: 2 });
  const x = tf.randomNormal([8, 784], 0, 1, "float32", 1);
  const y = tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], "int32");
  const loss = () => tf.tidy(() => crossEntropy(model.forward(x), y).dataSync()[0]);
  const first = loss();
  for (let i = 0; i < 30; i++) {
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => crossEntropy(model.forward(x), y));
      for (const [, v] of model.trainableParameters()) {
        v.assign(tf.sub(v, tf.mul(grads[v.name], 0.1)));
      }
    });
  }
  const last = loss();
  // Memorizing 8 samples: ~2.28 -> ~0.08 with these seeds.
  assert.ok(last < 0.25 * first, `loss ${first} -> ${last}`);
  tf.dispose([x, y]);
  model.dispose();
});

// ---------------------------------------------------------------------------------------------
// IncrementalClassifier

Deno.test("IncrementalClassifier grows from 2 to 5 units keeping old weights, masks unseen classes", async () => {
  await onBackends((b) => {
    const head = new IncrementalClassifier(4, 2, true, 3);
    assert.equal(head.outFeatures, 2);
    assert.equal(head.adapt(experience([0, 1, 1, 0])), false);
    assert.deepEqual([...head.activeUnits].sort(), [0, 1]);
    const w0 = head.classifier.weight.arraySync() as number[][];
    const b0 = values(head.classifier.bias!);

    assert.equal(head.adapt(experience([4, 3, 4], undefined, 4, 1)), true);
    assert.equal(head.outFeatures, 5);
    assert.deepEqual(head.classifier.weight.shape, [4, 5]);
    const w1 = head.classifier.weight.arraySync() as number[][];
    w0.forEach((row, i) => assert.deepEqual(w1[i].slice(0, 2), row, "old columns changed"));
    assert.deepEqual(values(head.classifier.bias!).slice(0, 2), b0);
    assert.deepEqual([...head.activeUnits].sort(), [0, 1, 3, 4]);

    tf.tidy(() => {
      const x = tf.tensor2d([[1, 2, 3, 4], [-1, 0.5, 0, 2]]);
      const raw = values(tf.add(tf.matMul(x, head.classifier.weight), head.classifier.bias!));
      const out = values(head.forward(x));
      for (let r = 0; r < 2; r++) {
        for (let c = 0; c < 5; c++) {
          if (c === 2) assert.equal(out[r * 5 + c], MASK_VALUE, `${b} unit 2 not masked`);
          else assertClose([out[r * 5 + c]], [raw[r * 5 + c]], 1e-6, `${b} unit ${c}`);
        }
      }
      assert.equal(MASK_VALUE, -1000);
      // Masked units get no gradient.
      const { grads } = tf.variableGrads(() => tf.sum(head.forward(x)));
      const gw = grads[head.classifier.weight.name].arraySync() as number[][];
      for (const row of gw) assert.equal(row[2], 0);
      assert.ok(gw.some((row) => row[3] !== 0));
    });

    // Evaluation adaptation grows nothing here and activates nothing.
    assert.equal(head.adapt(experience([2]), false), false);
    assert.deepEqual([...head.activeUnits].sort(), [0, 1, 3, 4]);
    // Once every unit is active, the output is the plain linear layer.
    head.adapt(experience([2]));
    tf.tidy(() => {
      const x = tf.ones([1, 4]);
      assertClose(head.forward(x), head.classifier.forward(x), 1e-6);
    });
    head.dispose();

    const noMask = new IncrementalClassifier(4, 2, false, 3);
    noMask.adapt(experience([0, 4]));
    tf.tidy(() => {
      const x = tf.ones([1, 4]);
      assert.ok(values(noMask.forward(x)).every((v) => v !== MASK_VALUE));
    });
    noMask.dispose();
  });
});

Deno.test("IncrementalClassifier structure() / loadStructure() and state dicts round trip", () => {
  const head = new IncrementalClassifier(4, 2, true, 3);
  head.adapt(experience([0, 1]));
  head.adapt(experience([4, 3]));
  assert.deepEqual(head.structure(), { outFeatures: 5, activeUnits: [0, 1, 3, 4] });

  const rebuilt = new IncrementalClassifier(4, 2, true, 99);
  rebuilt.loadStructure(JSON.parse(JSON.stringify(head.structure())));
  assert.equal(rebuilt.outFeatures, 5);
  assert.deepEqual([...rebuilt.activeUnits].sort(), [0, 1, 3, 4]);

  // A fresh head loads a grown head's state dict (structure first, then tensors).
  const fresh = new IncrementalClassifier(4, 2, true, 7);
  fresh.loadStateDict(JSON.parse(JSON.stringify(head.stateDict())));
  assert.deepEqual(fresh.structure(), head.structure());
  tf.tidy(() => {
    const x = tf.tensor2d([[1, 2, 3, 4]]);
    assert.deepEqual(values(fresh.forward(x)), values(head.forward(x)));
  });
  for (const m of [head, rebuilt, fresh]) m.dispose();
});

// ---------------------------------------------------------------------------------------------
// MultiHeadClassifier

Deno.test("MultiHeadClassifier: a head per new task, mixed batches routed row by row, padding", async () => {
  await onBackends((b) => {
    const mh = new MultiHeadClassifier(3, 2, 5);
    assert.equal(mh.adapt(experience([0, 1], [0, 0], 3)), true);
    assert.equal(mh.adapt(experience([1, 0], [0, 0], 3)), false, "a known task added a head");
    assert.equal(mh.adapt(experience([0, 2, 1], [1, 1, 1], 3)), true);
    assert.deepEqual([...mh.heads.keys()], [0, 1]);
    assert.equal(mh.heads.get(0)!.outFeatures, 2);
    assert.equal(mh.heads.get(1)!.outFeatures, 3);
    assert.equal(mh.outFeatures, 3);
    assert.deepEqual([...mh.namedParameters().keys()], [
      "head0.weight",
      "head0.bias",
      "head1.weight",
      "head1.bias",
    ]);

    tf.tidy(() => {
      const x = tf.tensor2d([[1, 2, 3], [0.5, -1, 2], [-2, 0, 1], [3, 3, -3]]);
      const tasks = [0, 1, 1, 0];
      for (
        const opts of [
          { taskLabelsArray: Int32Array.from(tasks) },
          { taskLabels: tf.tensor1d(tasks, "int32") },
        ]
      ) {
        const out = mh.forward(x, opts);
        assert.deepEqual(out.shape, [4, 3]);
        const rows = out.arraySync() as number[][];
        tasks.forEach((t, i) => {
          const own = values(mh.heads.get(t)!.forward(tf.slice(x, [i, 0], [1, 3])));
          assertClose(rows[i].slice(0, own.length), own, 1e-6, `${b} row ${i}`);
          if (t === 0) assert.equal(rows[i][2], MASK_VALUE, "smaller head not padded");
        });
      }
      // A batch of one task uses that head alone (padded to the widest head).
      const single = mh.forward(x, { taskLabelsArray: new Int32Array(4) });
      assertClose(tf.slice(single, [0, 0], [4, 2]), mh.heads.get(0)!.forward(x), 1e-6);
      assert.deepEqual(values(tf.slice(single, [0, 2], [4, 1])), [
        MASK_VALUE,
        MASK_VALUE,
        MASK_VALUE,
        MASK_VALUE,
      ]);
    });

    assert.throws(
      () =>
        tf.tidy(() => mh.forward(tf.zeros([2, 3]), { taskLabelsArray: Int32Array.from([0, 2]) })),
      {
        name: "RangeError",
        message: /No head for task label 2 \(heads: 0, 1\)/,
      },
    );
    assert.throws(() => tf.tidy(() => mh.forward(tf.zeros([2, 3]))), {
      name: "TypeError",
      message: /needs task labels/,
    });
    // Gradients through a mixed batch equal those of running each row through its own head.
    tf.tidy(() => {
      const x = tf.tensor2d([[1, 2, 3], [0.5, -1, 2], [-2, 0, 1], [3, 3, -3]]);
      const r = tf.tensor2d([[1, -1, 5], [0.5, 2, -1], [-1, 1, 1], [2, 0.5, 7]]);
      const tasks = [0, 1, 1, 0];
      const mixed = tf.variableGrads(() =>
        tf.sum(tf.mul(mh.forward(x, { taskLabelsArray: Int32Array.from(tasks) }), r))
      ).grads;
      const rowByRow = tf.variableGrads(() =>
        tf.addN(tasks.map((t, i) => {
          const w = mh.heads.get(t)!.outFeatures;
          const y = mh.heads.get(t)!.forward(tf.slice(x, [i, 0], [1, 3]));
          return tf.sum(tf.mul(y, tf.slice(r, [i, 0], [1, w])));
        }))
      ).grads;
      assert.deepEqual(Object.keys(mixed).sort(), Object.keys(rowByRow).sort());
      assert.equal(Object.keys(mixed).length, 4);
      for (const k of Object.keys(mixed)) {
        assertClose(mixed[k], rowByRow[k], 1e-5, `${b} ${k}`);
      }
    });
    assert.throws(
      () =>
        tf.tidy(() => mh.forward(tf.zeros([3, 3]), { taskLabelsArray: Int32Array.from([0, 1]) })),
      { name: "RangeError", message: /2 task labels for a batch of 3 samples/ },
    );
    // A known task whose experience brings more classes grows its head.
    assert.equal(mh.adapt(experience([3], [0], 3)), true);
    assert.equal(mh.heads.get(0)!.outFeatures, 4);
    assert.equal(mh.outFeatures, 4);
    mh.dispose();
  });
});

Deno.test("MultiHeadClassifier structure and state dicts round trip onto a fresh model", () => {
  const mh = new MultiHeadClassifier(3, 2, 5);
  mh.adapt(experience([0, 1], [0, 0], 3));
  mh.adapt(experience([0, 2], [2, 2], 3));
  assert.deepEqual(mh.structure(), { heads: [[0, 2], [2, 3]] });
  const fresh = new MultiHeadClassifier(3, 2, 8);
  fresh.loadStateDict(JSON.parse(JSON.stringify(mh.stateDict())));
  assert.deepEqual(fresh.structure(), mh.structure());
  tf.tidy(() => {
    const x = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
    const opts = { taskLabelsArray: Int32Array.from([2, 0]) };
    assert.deepEqual(values(fresh.forward(x, opts)), values(mh.forward(x, opts)));
  });
  mh.dispose();
  fresh.dispose();
});

// ---------------------------------------------------------------------------------------------
// Classifier: adapt, clone, dispose

Deno.test("Classifier.clone() gives identical outputs and independent parameters", async () => {
  await onBackends((b) => {
    const models: Classifier[] = [
      mlp({ input: 4, hidden: [5], outputs: 3, seed: 1, dropout: 0.2 }),
      mlp({ input: 4, hidden: [5], head: "incremental", outputs: 2, seed: 2 }),
      multiHeadMLP({ input: 4, hidden: [5], seed: 3 }),
      cnn({ input: [4, 4, 1], channels: [2], dense: 3, outputs: 3, seed: 4 }),
    ];
    // Grow the heads first, so that clone() must rebuild structure, not just copy tensors.
    assert.equal(models[1].adapt(experience([0, 3])), true);
    assert.equal(models[2].adapt(experience([0, 1], [0, 0])), true);
    assert.equal(models[2].adapt(experience([0, 2], [1, 1])), true);
    const x = tf.randomNormal([3, 4], 0, 1, "float32", 1);
    const xImg = tf.randomNormal([3, 16], 0, 1, "float32", 2);
    const opts = { taskLabelsArray: Int32Array.from([1, 0, 1]) };
    for (const [i, m] of models.entries()) {
      m.eval(); // dropout off: outputs are deterministic
      const input = i === 3 ? xImg : x;
      const c = m.clone();
      assert.ok(c instanceof Classifier);
      assert.equal(c.training, false);
      assert.deepEqual(c.structure(), m.structure());
      tf.tidy(() =>
        assert.deepEqual(
          values(c.forward(input, opts)),
          values(m.forward(input, opts)),
          `${b} model ${i}`,
        )
      );
      // Independent: other variables, and changing the clone leaves the original alone.
      const mine = [...m.namedParameters().values()];
      for (const v of c.namedParameters().values()) assert.ok(!mine.includes(v));
      const before = tf.tidy(() => values(m.forward(input, opts)));
      for (const v of c.namedParameters().values()) tf.tidy(() => v.assign(tf.zerosLike(v)));
      tf.tidy(() => {
        assert.deepEqual(
          values(m.forward(input, opts)),
          before,
          `${b} model ${i}: original changed`,
        );
        assert.notDeepEqual(values(c.forward(input, opts)), before);
      });
      c.dispose();
      m.dispose();
    }
    tf.dispose([x, xImg]);
  });
});

Deno.test("Classifier.adapt reaches its head; an incremental MLP grows with class 4", () => {
  const model = mlp({ input: 4, hidden: [3], head: "incremental", outputs: 2, seed: 6 });
  assert.equal(model.adapt(experience([0, 1])), false);
  assert.equal(model.adapt(experience([4])), true);
  tf.tidy(() => {
    const out = model.forward(tf.ones([2, 4]));
    assert.deepEqual(out.shape, [2, 5]);
    const rows = out.arraySync() as number[][];
    for (const r of rows) assert.deepEqual([r[2], r[3]], [MASK_VALUE, MASK_VALUE]);
  });
  assert.deepEqual(model.structure(), { classifier: { outFeatures: 5, activeUnits: [0, 1, 4] } });
  model.dispose();
});

Deno.test("dispose() frees every tensor (models, grown heads, forward and backward passes)", async () => {
  await onBackends((b) => {
    const start = tf.memory().numTensors;
    const models: Classifier[] = [
      mlp({ input: 8, hidden: [6, 5], dropout: 0.3, seed: 1 }),
      mlp({ input: 8, hidden: [6], head: "incremental", seed: 2 }),
      multiHeadMLP({ input: 8, hidden: [6], seed: 3 }),
      cnn({ input: [4, 2, 1], channels: [2], dense: 4, seed: 4 }),
    ];
    models[1].adapt(experience([0, 11], undefined, 8));
    models[2].adapt(experience([0, 1], [0, 0], 8));
    models[2].adapt(experience([0, 1, 2], [1, 1, 1], 8));
    const clone = models[2].clone();
    models.push(clone);
    tf.tidy(() => {
      const x = tf.randomNormal([3, 8], 0, 1, "float32", 1);
      const opts = { taskLabelsArray: Int32Array.from([0, 1, 0]) };
      for (const m of models) {
        m.forward(x, opts);
        tf.variableGrads(() => tf.sum(m.forward(x, opts)));
      }
    });
    assert.ok(tf.memory().numTensors > start);
    for (const m of models) m.dispose();
    assert.equal(tf.memory().numTensors, start, `${b}: tensors left after dispose()`);
  });
});

Deno.test("quadraticPenalty: scale · Σ w (x − c)² and its gradient; sumPenalties adds terms", async () => {
  await onBackends((b) => {
    const x = tf.variable(tf.tensor1d([3, 0, -1]));
    const w = tf.tensor1d([2, 1, 0.5]);
    const c = tf.tensor1d([1, 0, 1]);
    const start = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(() => quadraticPenalty(x, w, c, 0.5), [x]);
    // 0.5 · (2·4 + 0 + 0.5·4) = 5; gradient 0.5 · 2 w (x − c) = (4, 0, −1).
    assert.equal(value.dataSync()[0], 5, b);
    assert.deepEqual(values(grads[x.name]), [4, 0, -1], b);
    tf.dispose([value, grads[x.name]]);
    assert.equal(tf.memory().numTensors, start, `${b}: tensors left behind`);
    tf.tidy(() => {
      assert.equal(sumPenalties([]).dataSync()[0], 0);
      const one = quadraticPenalty(x, w, c);
      assert.equal(sumPenalties([one]), one, "one term is returned as is");
      assert.equal(sumPenalties([one, tf.scalar(1)]).dataSync()[0], 11);
    });
    tf.dispose([x, w, c]);
  });
});

Deno.test("StagingArray: a tensor keeps its values when the array is filled again", async () => {
  await onBackends((b) => {
    const staging = new StagingArray();
    const a = staging.tensor([2, 2], (out) => out.set([1, 2, 3, 4]));
    const c = staging.tensor([3], (out) => {
      assert.equal(out.length, 3);
      out.set([5, 6, 7]);
    });
    assert.deepEqual(a.arraySync(), [[1, 2], [3, 4]], b);
    assert.deepEqual(values(c), [5, 6, 7], b);
    tf.dispose([a, c]);
  });
});
