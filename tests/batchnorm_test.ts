// Tests of batch normalization (lib/nn/norm.ts): BatchNorm2d and the batchNorm core in training
// and evaluation mode against hand-computed values and against PyTorch (skipped without torch),
// the running statistics, gradients against finite differences and PyTorch, the state dict.
// Run: deno test -A tests/batchnorm_test.ts

import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { batchNorm, BatchNorm2d } from "../lib/nn/norm.ts";
import { runTorch, torchMissing, torchNote } from "./_torch.ts";

const EPS = 1e-5;

function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  what: string,
) {
  assert.equal(actual.length, expected.length, `${what}: lengths differ`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    assert.ok(
      Math.abs(a - e) <= tol * Math.max(1, Math.abs(e)),
      `${what}[${i}]: ${a} vs ${e} (tolerance ${tol})`,
    );
  }
}

function setValues(v: tf.Variable, values: number[]) {
  tf.tidy(() => v.assign(tf.tensor(values, v.shape)));
}

/** Seeded values in [-1, 1) (a small LCG: the tests' data, not the library's randomness). */
function values(n: number, seed: number, scale = 1, shift = 0): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 31 - 1) * scale + shift;
  });
}

// x of shape [2, 1, 2, 2] (NHWC): channel 0 holds 1, 3, 5, 7 and channel 1 holds 10, 20, 30, 40.
const X = [1, 10, 3, 20, 5, 30, 7, 40];
const SHAPE = [2, 1, 2, 2];

Deno.test("BatchNorm2d in training mode normalizes by the batch statistics (hand values)", () => {
  const bn = new BatchNorm2d(2);
  setValues(bn.weight, [2, 0.5]);
  setValues(bn.bias, [1, -1]);
  const y = tf.tidy(() => bn.forward(tf.tensor(X, SHAPE)).dataSync());
  // Channel 0: mean 4, biased variance (9 + 1 + 1 + 9) / 4 = 5; channel 1: mean 25, variance 125.
  const expected = X.map((x, i) =>
    i % 2 === 0 ? 2 * (x - 4) / Math.sqrt(5 + EPS) + 1 : 0.5 * (x - 25) / Math.sqrt(125 + EPS) - 1
  );
  assertClose(y, expected, 1e-5, "output");
  // Running statistics: 0.9 · (0, 1) + 0.1 · (mean, unbiased variance 20/3 and 500/3).
  assertClose(bn.runningMean.dataSync(), [0.4, 2.5], 1e-6, "running mean");
  assertClose(bn.runningVar.dataSync(), [0.9 + 2 / 3, 0.9 + 50 / 3], 1e-6, "running variance");
  bn.dispose();
});

Deno.test("BatchNorm2d in eval mode normalizes by the running statistics and leaves them", () => {
  const bn = new BatchNorm2d(2, { eps: 1e-3 });
  setValues(bn.weight, [2, 0.5]);
  setValues(bn.bias, [1, -1]);
  setValues(bn.runningMean, [4, 20]);
  setValues(bn.runningVar, [4, 100]);
  bn.eval();
  const y = tf.tidy(() => bn.forward(tf.tensor(X, SHAPE)).dataSync());
  const expected = X.map((x, i) =>
    i % 2 === 0 ? 2 * (x - 4) / Math.sqrt(4 + 1e-3) + 1 : 0.5 * (x - 20) / Math.sqrt(100 + 1e-3) - 1
  );
  assertClose(y, expected, 1e-5, "output");
  assert.deepEqual(Array.from(bn.runningMean.dataSync()), [4, 20]);
  assert.deepEqual(Array.from(bn.runningVar.dataSync()), [4, 100]);
  // Back in training mode, the batch statistics normalize again.
  bn.train();
  const t = tf.tidy(() => bn.forward(tf.tensor(X, SHAPE)).dataSync());
  assertClose([t[0]], [2 * (1 - 4) / Math.sqrt(5 + 1e-3) + 1], 1e-5, "training output");
  bn.dispose();
});

Deno.test("Running statistics after several steps follow PyTorch's update (momentum, unbiased)", () => {
  const momentum = 0.3;
  const bn = new BatchNorm2d(3, { momentum });
  const mean = [0, 0, 0], variance = [1, 1, 1];
  for (let step = 0; step < 4; step++) {
    const xs = values(5 * 2 * 2 * 3, 17 + step, 2, step);
    tf.tidy(() => {
      bn.forward(tf.tensor(xs, [5, 2, 2, 3]));
    });
    for (let c = 0; c < 3; c++) {
      const ch = xs.filter((_, i) => i % 3 === c);
      const m = ch.reduce((a, b) => a + b, 0) / ch.length;
      const unbiased = ch.reduce((a, b) => a + (b - m) ** 2, 0) / (ch.length - 1);
      mean[c] = (1 - momentum) * mean[c] + momentum * m;
      variance[c] = (1 - momentum) * variance[c] + momentum * unbiased;
    }
  }
  assertClose(bn.runningMean.dataSync(), mean, 1e-5, "running mean");
  assertClose(bn.runningVar.dataSync(), variance, 1e-5, "running variance");
  bn.dispose();
});

Deno.test("The batchNorm core normalizes [n, features] inputs as BatchNorm1d does", () => {
  const runningMean = tf.variable(tf.zeros([2])), runningVar = tf.variable(tf.ones([2]));
  const x = [[1, 10], [3, 30], [8, 20]];
  const y = tf.tidy(() =>
    batchNorm(tf.tensor2d(x), { runningMean, runningVar }, true, { momentum: 0.5 }).dataSync()
  );
  // Feature 0: mean 4, biased variance 26/3; feature 1: mean 20, variance 200/3. No weight, bias.
  const expected = x.flatMap(([a, b]) => [
    (a - 4) / Math.sqrt(26 / 3 + EPS),
    (b - 20) / Math.sqrt(200 / 3 + EPS),
  ]);
  assertClose(y, expected, 1e-5, "output");
  assertClose(runningMean.dataSync(), [2, 10], 1e-6, "running mean");
  assertClose(runningVar.dataSync(), [0.5 + 0.5 * 13, 0.5 + 0.5 * 100], 1e-5, "running variance");
  tf.dispose([runningMean, runningVar]);
});

Deno.test("BatchNorm2d gradients in training mode match finite differences", () => {
  const bn = new BatchNorm2d(2);
  setValues(bn.weight, [1.5, -0.7]);
  setValues(bn.bias, [0.2, 0.1]);
  const shape = [3, 2, 2, 2];
  const xs = values(24, 5, 1.5, 0.3), r = values(24, 9);
  const loss = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) =>
    tf.sum(
      tf.mul(
        batchNorm(
          x,
          { runningMean: bn.runningMean, runningVar: bn.runningVar, weight: w, bias: b },
          true,
        ),
        tf.tensor(r, shape),
      ),
    ) as tf.Scalar;
  const [gx, gw, gb] = tf.tidy(() =>
    tf.grads(loss)([tf.tensor(xs, shape), bn.weight, bn.bias]).map((g) => Array.from(g.dataSync()))
  );
  const numeric = (which: number, size: number) =>
    Array.from({ length: size }, (_, i) => {
      const h = 1e-2;
      const at = (d: number) =>
        tf.tidy(() => {
          const inputs = [xs, Array.from(bn.weight.dataSync()), Array.from(bn.bias.dataSync())];
          inputs[which] = inputs[which].map((v, j) => (j === i ? v + d : v));
          return loss(
            tf.tensor(inputs[0], shape),
            tf.tensor1d(inputs[1]),
            tf.tensor1d(inputs[2]),
          ).dataSync()[0];
        });
      return (at(h) - at(-h)) / (2 * h);
    });
  assertClose(gx, numeric(0, 24), 5e-3, "d/dx");
  assertClose(gw, numeric(1, 2), 5e-3, "d/dweight");
  assertClose(gb, numeric(2, 2), 5e-3, "d/dbias");
  // The batch statistics depend on x: the gradient is not that of a fixed affine map.
  assert.ok(Math.abs(gx.reduce((a, b) => a + b, 0)) < 1e-4, "Σ d/dx over a channel is 0");
  bn.dispose();
});

Deno.test({
  name: "BatchNorm2d matches PyTorch: outputs, gradients and running statistics" + torchNote,
  ignore: torchMissing !== undefined,
  fn: async () => {
    const shape = [4, 3, 3, 5], size = 4 * 3 * 3 * 5;
    const steps = [0, 1, 2].map((s) => values(size, 100 + s, 2, s - 1));
    const r = values(size, 7);
    const weight = values(5, 3, 0.5, 1), bias = values(5, 4);
    const bn = new BatchNorm2d(5, { momentum: 0.2 });
    setValues(bn.weight, weight);
    setValues(bn.bias, bias);
    // Step 0 with gradients, then two more training steps, then evaluation on step 0's input.
    const grads = tf.tidy(() => {
      const x = tf.tensor(steps[0], shape);
      const { value, grads } = tf.variableGrads(
        () => tf.sum(tf.mul(bn.forward(x), tf.tensor(r, shape))) as tf.Scalar,
        [bn.weight, bn.bias],
      );
      const gx = tf.grad((x: tf.Tensor) =>
        tf.sum(tf.mul(batchNorm(x, bn, true, { momentum: 0 }), tf.tensor(r, shape)))
      )(x);
      return {
        loss: value.dataSync()[0],
        weight: Array.from(grads[bn.weight.name].dataSync()),
        bias: Array.from(grads[bn.bias.name].dataSync()),
        x: Array.from(gx.dataSync()),
      };
    });
    for (const s of steps.slice(1)) {
      tf.tidy(() => {
        bn.forward(tf.tensor(s, shape));
      });
    }
    bn.eval();
    const evalOut = tf.tidy(() => Array.from(bn.forward(tf.tensor(steps[0], shape)).dataSync()));
    const torch = await runTorch<Record<string, number[]>>(
      `
shape = inp["shape"]
def nchw(v): return torch.tensor(v, dtype=torch.float32).reshape(shape).permute(0, 3, 1, 2)
def flat(t): return t.permute(0, 2, 3, 1).reshape(-1).tolist()
bn = torch.nn.BatchNorm2d(5, momentum=0.2)
with torch.no_grad():
    bn.weight.copy_(torch.tensor(inp["weight"]))
    bn.bias.copy_(torch.tensor(inp["bias"]))
x = nchw(inp["steps"][0]).requires_grad_(True)
loss = (bn(x) * nchw(inp["r"])).sum()
loss.backward()
out = {"loss": [loss.item()], "gx": flat(x.grad), "gw": bn.weight.grad.tolist(), "gb": bn.bias.grad.tolist()}
with torch.no_grad():
    for s in inp["steps"][1:]:
        bn(nchw(s))
    bn.eval()
    out["eval"] = flat(bn(nchw(inp["steps"][0])))
out["mean"] = bn.running_mean.tolist()
out["var"] = bn.running_var.tolist()
print(json.dumps(out))
`,
      { shape, steps, r, weight, bias },
    );
    assertClose([grads.loss], torch.loss, 1e-4, "loss");
    assertClose(grads.x, torch.gx, 1e-4, "d/dx");
    assertClose(grads.weight, torch.gw, 1e-4, "d/dweight");
    assertClose(grads.bias, torch.gb, 1e-4, "d/dbias");
    assertClose(bn.runningMean.dataSync(), torch.mean, 1e-5, "running mean after 3 steps");
    assertClose(bn.runningVar.dataSync(), torch.var, 1e-5, "running variance after 3 steps");
    assertClose(evalOut, torch.eval, 1e-4, "eval output");
    bn.dispose();
  },
});

Deno.test("BatchNorm2d state: running statistics in stateDict, not trainable, same numbers after a JSON round trip", () => {
  const bn = new BatchNorm2d(3, { momentum: 0.25 });
  for (let s = 0; s < 3; s++) {
    tf.tidy(() => {
      bn.forward(tf.tensor(values(36, s, 3, 1), [3, 2, 2, 3]));
    });
  }
  const state = JSON.parse(JSON.stringify(bn.stateDict()));
  assert.deepEqual(Object.keys(state.tensors).sort(), [
    "bias",
    "runningMean",
    "runningVar",
    "weight",
  ]);
  assert.deepEqual([...bn.trainableParameters().keys()], ["weight", "bias"]);
  const other = new BatchNorm2d(3);
  other.loadStateDict(state);
  bn.eval();
  other.eval();
  const x = tf.tensor(values(36, 11), [3, 2, 2, 3]);
  const [a, b] = tf.tidy(() => [bn, other].map((m) => Array.from(m.forward(x).dataSync())));
  assert.deepEqual(b, a, "bit-identical eval outputs after the restore");
  // copyFrom (what clones and teachers use) carries the running statistics too.
  const third = new BatchNorm2d(3);
  third.copyFrom(bn);
  assert.deepEqual(Array.from(third.runningVar.dataSync()), Array.from(bn.runningVar.dataSync()));
  tf.dispose(x);
  for (const m of [bn, other, third]) m.dispose();
});

Deno.test("BatchNorm2d disposes every tensor it makes, in training, evaluation and gradients", () => {
  const bn = new BatchNorm2d(4);
  const x = tf.randomNormal([2, 3, 3, 4], 0, 1, "float32", 1);
  const start = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) {
    tf.tidy(() => bn.forward(x)).dispose();
    const { value, grads } = tf.variableGrads(() => tf.sum(bn.forward(x)) as tf.Scalar, [
      bn.weight,
      bn.bias,
    ]);
    tf.dispose([value, ...Object.values(grads)]);
    bn.eval();
    tf.tidy(() => bn.forward(x)).dispose();
    bn.train();
    assert.equal(tf.memory().numTensors, start, `iteration ${i}`);
  }
  x.dispose();
  bn.dispose();
});

Deno.test("BatchNorm2d errors name the bad value and the fix", () => {
  assert.throws(() => new BatchNorm2d(0), {
    name: "RangeError",
    message: /features must be a positive integer, got 0/,
  });
  assert.throws(() => new BatchNorm2d(3, { momentum: 2 }), {
    name: "RangeError",
    message: /momentum must be in \[0, 1\], got 2/,
  });
  assert.throws(() => new BatchNorm2d(3, { eps: 0 }), {
    name: "RangeError",
    message: /eps must be > 0/,
  });
  assert.throws(
    () => new BatchNorm2d(3, { momentun: 0.1 } as unknown as { momentum: number }),
    /unknown option "momentun" \(did you mean "momentum"\?\)/,
  );
  const bn = new BatchNorm2d(3);
  assert.throws(() => tf.tidy(() => bn.forward(tf.zeros([2, 4, 4, 2]))), {
    name: "RangeError",
    message: /NHWC inputs with 3 channels, got shape \[2,4,4,2\]/,
  });
  assert.throws(() => tf.tidy(() => bn.forward(tf.zeros([1, 1, 1, 3]))), {
    name: "RangeError",
    message: /more than one value per channel.*eval mode/,
  });
  bn.eval();
  tf.tidy(() => bn.forward(tf.zeros([1, 1, 1, 3]))).dispose(); // one sample is fine in eval mode
  bn.dispose();
});
