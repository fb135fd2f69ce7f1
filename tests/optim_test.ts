// Tests of lib/optim/optimizers.ts: SGD and Adam with PyTorch's update rules, their state, and
// their memory use. Numeric checks run on both the cpu and the wasm backends.
// Run: deno test -A tests/optim_test.ts

import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import {
  Adam,
  adam,
  type Optimizer,
  type OptimizerState,
  SGD,
  sgd,
} from "../lib/optim/optimizers.ts";
import { mlp } from "../lib/models/mlp.ts";
import { crossEntropy } from "../lib/nn/losses.ts";

import { registerBlasBackend } from "../lib/backends/blas.ts";

/** cpu and wasm, plus blas (SGD's in-place BLAS update) where a BLAS library loads. */
const BACKENDS = (await registerBlasBackend()).ok ? ["cpu", "wasm", "blas"] : ["cpu", "wasm"];

/** Runs `fn` once on each backend, leaving wasm active afterwards. */
async function onBackends(fn: (backend: string) => void | Promise<void>): Promise<void> {
  try {
    for (const b of BACKENDS) {
      await setBackend(b as "cpu");
      await fn(b);
    }
  } finally {
    await setBackend("wasm");
  }
}

function values(t: tf.Tensor): number[] {
  return Array.from(t.dataSync());
}

/** Float32 results against double-precision references. */
function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol = 1e-6,
  what = "",
) {
  assert.equal(actual.length, expected.length, `${what}: lengths differ`);
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    assert.ok(
      err <= tol * Math.max(1, Math.abs(expected[i])),
      `${what}[${i}]: ${actual[i]} vs ${expected[i]} (|diff| ${err})`,
    );
  }
}

/** One optimizer step on a single parameter "p" with gradient g, inside a tidy scope. */
function stepOnce(opt: Optimizer, p: tf.Variable, g: number[], name = "p"): void {
  tf.tidy(() => {
    opt.step(new Map([[name, p]]), new Map([[name, tf.tensor(g, p.shape)]]));
  });
}

const P0 = [1, -2, 3];
/** Three different gradients, so the momentum recurrence is really exercised. */
const GRADS = [[0.5, -1, 2], [0.25, 0.5, -1], [-1, 2, 0.125]];

/** PyTorch's SGD (torch.optim.SGD._single_tensor_sgd) in plain JS, in double precision. */
function torchSGD(
  p0: number[],
  grads: number[][],
  o: {
    lr: number;
    momentum?: number;
    dampening?: number;
    weightDecay?: number;
    nesterov?: boolean;
  },
): number[] {
  const { lr, momentum = 0, dampening = 0, weightDecay = 0, nesterov = false } = o;
  const p = [...p0];
  let buf: number[] | undefined;
  for (const g0 of grads) {
    let d = g0.map((g, i) => g + weightDecay * p[i]);
    if (momentum !== 0) {
      buf = buf === undefined ? [...d] : buf.map((b, i) => momentum * b + (1 - dampening) * d[i]);
      d = nesterov ? d.map((x, i) => x + momentum * buf![i]) : buf;
    }
    for (let i = 0; i < p.length; i++) p[i] -= lr * d[i];
  }
  return p;
}

/** PyTorch's Adam (torch.optim.Adam, amsgrad off) in plain JS, in double precision. */
function torchAdam(
  p0: number[],
  grads: number[][],
  o: { lr: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number },
): number[] {
  const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0 } = o;
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g0, k) => {
    const t = k + 1;
    for (let i = 0; i < p.length; i++) {
      const g = g0[i] + weightDecay * p[i];
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      const stepSize = lr / (1 - beta1 ** t);
      const denom = Math.sqrt(v[i]) / Math.sqrt(1 - beta2 ** t) + eps;
      p[i] -= stepSize * m[i] / denom;
    }
  });
  return p;
}

// ---------------------------------------------------------------------------------------------
// SGD

Deno.test("SGD without momentum: one step is p - lr * g", async () => {
  await onBackends((b) => {
    const p = tf.variable(tf.tensor1d(P0));
    const opt = sgd({ lr: 0.1 });
    stepOnce(opt, p, GRADS[0]);
    // Hand-computed: [1 - 0.05, -2 + 0.1, 3 - 0.2].
    assertClose(values(p), [0.95, -1.9, 2.8], 1e-7, b);
    stepOnce(opt, p, GRADS[1]);
    assertClose(values(p), [0.925, -1.95, 2.9], 1e-6, b);
    assert.equal(opt.state().step, 2);
    assert.deepEqual(opt.state().slots, {}, "plain SGD keeps no slots");
    opt.dispose();
    p.dispose();
  });
});

Deno.test("SGD momentum 0.9 over 3 steps follows PyTorch's recurrence (buf = g, then 0.9 buf + g)", async () => {
  // Worked by hand for the first coordinate (g = 0.5, 0.25, -1; lr = 0.1):
  //   buf1 = 0.5                     p = 1 - 0.05 = 0.95
  //   buf2 = 0.45 + 0.25 = 0.7       p = 0.95 - 0.07 = 0.88
  //   buf3 = 0.63 - 1 = -0.37        p = 0.88 + 0.037 = 0.917
  const expected = torchSGD(P0, GRADS, { lr: 0.1, momentum: 0.9 });
  assertClose(expected.slice(0, 1), [0.917], 1e-12, "reference");
  await onBackends((b) => {
    const p = tf.variable(tf.tensor1d(P0));
    const opt = new SGD({ lr: 0.1, momentum: 0.9 });
    for (const g of GRADS) stepOnce(opt, p, g);
    assertClose(values(p), expected, 1e-6, b);
    // The buffer after step 3 is -0.37 for the first coordinate.
    const buf = opt.state().slots.p.momentum;
    assert.deepEqual(buf.shape, [3]);
    assertClose(buf.values.slice(0, 1), [-0.37], 1e-6, `${b} momentum buffer`);
    opt.dispose();
    p.dispose();
  });
});

Deno.test("SGD weight decay, dampening and nesterov follow PyTorch's formulas", async () => {
  // Weight decay, one step by hand: d = g + 0.1 p = [0.6, -1.2, 2.3]; p - 0.1 d.
  assertClose(torchSGD(P0, GRADS.slice(0, 1), { lr: 0.1, weightDecay: 0.1 }), [0.94, -1.88, 2.77]);
  // Nesterov, two steps by hand for the first coordinate (lr 0.1, momentum 0.9):
  //   buf1 = 0.5, d1 = 0.5 + 0.45 = 0.95, p = 0.905
  //   buf2 = 0.45 + 0.25 = 0.7, d2 = 0.25 + 0.63 = 0.88, p = 0.817
  assertClose(
    torchSGD(P0, GRADS.slice(0, 2), { lr: 0.1, momentum: 0.9, nesterov: true }).slice(0, 1),
    [0.817],
    1e-12,
  );
  const cases = [
    { lr: 0.1, weightDecay: 0.1 },
    { lr: 0.05, momentum: 0.9, weightDecay: 0.01 },
    { lr: 0.1, momentum: 0.9, nesterov: true },
    { lr: 0.1, momentum: 0.5, nesterov: true, weightDecay: 0.2 },
    { lr: 0.1, momentum: 0.9, dampening: 0.3 },
    { lr: 0.1, momentum: 0.9, dampening: 0.3, weightDecay: 0.1 },
  ];
  await onBackends((b) => {
    for (const c of cases) {
      const p = tf.variable(tf.tensor1d(P0));
      const opt = sgd(c);
      for (const g of GRADS) stepOnce(opt, p, g);
      assertClose(values(p), torchSGD(P0, GRADS, c), 1e-6, `${b} ${JSON.stringify(c)}`);
      opt.dispose();
      p.dispose();
    }
  });
});

Deno.test("SGD never changes data shared with another tensor (in-place BLAS update on blas)", async () => {
  const c = { lr: 0.1, momentum: 0.9, weightDecay: 0.01 };
  const expected = torchSGD(P0, GRADS, c);
  await onBackends((b) => {
    const p = tf.variable(tf.tensor1d(P0));
    const opt = sgd(c);
    const snapshots: tf.Tensor[] = [];
    for (const g of GRADS) {
      // A clone shares the parameter's data on wasm and blas: it must keep the old values.
      const before = tf.clone(p);
      snapshots.push(before);
      stepOnce(opt, p, g);
      // A clone of the momentum buffer too (from the second step on, when it exists).
      const buf = (opt as unknown as { slots: Map<string, Map<string, tf.Variable>> }).slots
        .get("p")?.get("momentum");
      if (buf) snapshots.push(tf.clone(buf));
    }
    assertClose(values(p), expected, 1e-6, `${b} parameter`);
    assertClose(values(snapshots[0]), P0, 0, `${b} clone before step 1`);
    const p1 = torchSGD(P0, GRADS.slice(0, 1), c);
    assertClose(values(snapshots[2]), p1, 1e-6, `${b} clone before step 2`);
    assertClose(values(snapshots[1]), GRADS[0].map((g, i) => g + 0.01 * P0[i]), 1e-6, `${b} buf`);
    tf.dispose(snapshots);
    opt.dispose();
    p.dispose();
  });
});

Deno.test("SGD updates each named parameter with its own gradient and skips unknown names", () => {
  const a: tf.Variable = tf.variable(tf.tensor2d([[1, 2], [3, 4]]));
  const b: tf.Variable = tf.variable(tf.tensor1d([10]));
  const opt = sgd({ lr: 0.5, momentum: 0.9 });
  tf.tidy(() => {
    opt.step(
      new Map([["a", a], ["b", b]]),
      new Map<string, tf.Tensor>([
        ["a", tf.tensor2d([[1, 0], [0, 1]])],
        ["b", tf.tensor1d([2])],
        ["ghost", tf.tensor1d([5])],
      ]),
    );
  });
  assert.deepEqual(values(a), [0.5, 2, 3, 3.5]);
  assert.deepEqual(values(b), [9]);
  assert.deepEqual(Object.keys(opt.state().slots).sort(), ["a", "b"]);
  // A parameter without a gradient is left alone.
  tf.tidy(() => opt.step(new Map([["a", a], ["b", b]]), new Map([["b", tf.tensor1d([0])]])));
  assert.deepEqual(values(a), [0.5, 2, 3, 3.5]);
  // b: buf = 0.9 * 2 + 0 = 1.8; b = 9 - 0.9.
  assertClose(values(b), [8.1]);
  opt.dispose();
  tf.dispose([a, b]);
});

// ---------------------------------------------------------------------------------------------
// Adam

Deno.test("Adam: two steps equal PyTorch's formulas (bias correction, eps outside the sqrt)", async () => {
  // First step by hand: m = 0.1 g, v = 0.001 g^2, m^ = g, v^ = g^2, so p -= lr * g / (|g| + eps).
  const first = torchAdam(P0, GRADS.slice(0, 1), { lr: 0.01 });
  assertClose(first, [1 - 0.01, -2 + 0.01, 3 - 0.01], 1e-7, "reference");
  const cases = [
    { lr: 0.01 },
    { lr: 0.1, beta1: 0.5, beta2: 0.9, eps: 0.1 }, // a large eps shows where it is added
    { lr: 0.05, weightDecay: 0.1 },
  ];
  // eps outside the sqrt: with eps = 0.1 the first step is lr * g / (|g| + 0.1), which for
  // g = 0.5 is 0.1 * 0.5 / 0.6, not 0.1 * 0.5 / sqrt(0.25 + 0.1).
  assertClose(
    torchAdam([0], [[0.5]], { lr: 0.1, beta1: 0.5, beta2: 0.9, eps: 0.1 }),
    [-0.1 * 0.5 / 0.6],
    1e-12,
  );
  await onBackends((b) => {
    for (const c of cases) {
      const p = tf.variable(tf.tensor1d(P0));
      const opt = adam(c);
      stepOnce(opt, p, GRADS[0]);
      assertClose(
        values(p),
        torchAdam(P0, GRADS.slice(0, 1), c),
        1e-6,
        `${b} step 1 ${JSON.stringify(c)}`,
      );
      stepOnce(opt, p, GRADS[1]);
      assertClose(
        values(p),
        torchAdam(P0, GRADS.slice(0, 2), c),
        1e-6,
        `${b} step 2 ${JSON.stringify(c)}`,
      );
      const s = opt.state();
      assert.equal(s.step, 2);
      assert.deepEqual(Object.keys(s.slots.p).sort(), ["m", "v"]);
      // m after two steps: 0.9 * 0.1 g1 + 0.1 g2 (default betas) for the first case.
      if (c.lr === 0.01) {
        assertClose(s.slots.p.m.values, GRADS[0].map((g, i) => 0.09 * g + 0.1 * GRADS[1][i]), 1e-6);
      }
      opt.dispose();
      p.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// State

for (const kind of ["sgd", "adam"] as const) {
  Deno.test(`${kind}: state() / loadState() round trip (through JSON) continues identically`, async () => {
    await onBackends((b) => {
      const make = () =>
        kind === "sgd" ? sgd({ lr: 0.1, momentum: 0.9, weightDecay: 0.01 }) : adam({ lr: 0.05 });
      const p = tf.variable(tf.tensor1d(P0));
      const q = tf.variable(tf.tensor2d([[1, 2], [3, 4]]));
      const gq = [[0.5, 0.5], [-1, 1]];
      const stepBoth = (opt: Optimizer, p: tf.Variable, q: tf.Variable, k: number) =>
        tf.tidy(() =>
          opt.step(
            new Map([["p", p], ["q", q]]),
            new Map([["p", tf.tensor(GRADS[k % 3], [3])], ["q", tf.tensor(gq, [2, 2])]]),
          )
        );
      const a = make();
      stepBoth(a, p, q, 0);
      stepBoth(a, p, q, 1);
      const saved = JSON.parse(JSON.stringify(a.state())) as OptimizerState;
      assert.equal(saved.kind, kind);
      assert.equal(saved.step, 2);
      assert.equal(saved.config.lr, kind === "sgd" ? 0.1 : 0.05);

      // A second optimizer and a copy of the parameters, restored from the saved state.
      const p2 = tf.variable(p.clone());
      const q2 = tf.variable(q.clone());
      const c = make();
      c.lr = 123; // overwritten by loadState
      c.loadState(saved);
      assert.equal(c.lr, a.lr);
      // A fresh optimizer from the same parameters, without the state, for contrast.
      const p3 = tf.variable(p.clone());
      const q3 = tf.variable(q.clone());
      const fresh = make();
      for (let k = 2; k < 5; k++) {
        stepBoth(a, p, q, k);
        stepBoth(c, p2, q2, k);
        stepBoth(fresh, p3, q3, k);
      }
      assert.deepEqual(values(p2), values(p), `${b} p`);
      assert.deepEqual(values(q2), values(q), `${b} q`);
      assert.deepEqual(c.state(), a.state());
      assert.notDeepEqual(values(p3), values(p), `${b}: the state made no difference`);
      tf.dispose([p, q, p2, q2, p3, q3]);
      for (const o of [a, c, fresh]) o.dispose();
    });
  });
}

Deno.test("loadState() rejects another optimizer's state; reset() drops slots and step count", () => {
  const p = tf.variable(tf.tensor1d(P0));
  const s = sgd({ lr: 0.1, momentum: 0.9 });
  stepOnce(s, p, GRADS[0]);
  assert.throws(() => adam().loadState(s.state()), {
    name: "TypeError",
    message: /"sgd" optimizer state into a "adam"/,
  });
  const before = tf.memory().numTensors;
  s.reset();
  assert.equal(tf.memory().numTensors, before - 1, "reset() did not free the momentum buffer");
  assert.deepEqual(s.state().slots, {});
  assert.equal(s.state().step, 0);
  // After a reset the momentum restarts: buf = g again, so the step is exactly lr * g.
  const start = values(p);
  stepOnce(s, p, GRADS[1]);
  assertClose(values(p), start.map((x, i) => x - 0.1 * GRADS[1][i]));
  s.dispose();
  p.dispose();
});

Deno.test("a grown parameter (new shape) restarts its slots", async () => {
  await onBackends((b) => {
    // SGD with momentum: after growth, buf = g (fresh), so the step is exactly lr * g.
    const opt = sgd({ lr: 0.1, momentum: 0.9 });
    let p = tf.variable(tf.tensor1d([1, 2]));
    stepOnce(opt, p, [1, 1]);
    stepOnce(opt, p, [1, 1]);
    p.dispose();
    p = tf.variable(tf.tensor1d([1, 2, 3])); // the same name, one more unit
    stepOnce(opt, p, [1, 1, 1]);
    assertClose(values(p), [0.9, 1.9, 2.9], 1e-6, `${b} sgd`);
    assert.deepEqual(opt.state().slots.p.momentum.shape, [3]);
    opt.dispose();
    p.dispose();

    // Adam: the grown parameter restarts its bias correction at t = 1 while others go on.
    const ad = adam({ lr: 0.01 });
    let w = tf.variable(tf.tensor1d([1, 2]));
    const other = tf.variable(tf.tensor1d([5]));
    const both = (g: number[]) =>
      tf.tidy(() =>
        ad.step(
          new Map([["w", w], ["other", other]]),
          new Map([["w", tf.tensor1d(g)], ["other", tf.tensor1d([0.5])]]),
        )
      );
    both([0.3, -0.2]);
    both([0.1, 0.4]);
    w.dispose();
    w = tf.variable(tf.tensor1d([1, 2, 3]));
    both([0.5, -1, 2]);
    assertClose(values(w), torchAdam([1, 2, 3], [[0.5, -1, 2]], { lr: 0.01 }), 1e-6, `${b} adam w`);
    assertClose(
      values(other),
      torchAdam([5], [[0.5], [0.5], [0.5]], { lr: 0.01 }),
      1e-6,
      `${b} other`,
    );
    const st = ad.state();
    assert.equal(st.config["step:w"], 1);
    assert.equal(st.config["step:other"], 3);
    ad.dispose();
    tf.dispose([w, other]);
  });
});

// ---------------------------------------------------------------------------------------------
// Validation

Deno.test("invalid hyper-parameters throw RangeErrors naming the value", () => {
  const bad: [() => unknown, RegExp][] = [
    [() => sgd({ lr: 0 }), /sgd lr .*got 0$/],
    [() => sgd({ lr: -0.1 }), /sgd lr .*got -0\.1$/],
    [() => sgd({ lr: NaN }), /sgd lr .*got NaN$/],
    [() => sgd({ lr: Infinity }), /sgd lr .*got Infinity$/],
    [() => sgd({ momentum: -0.5 }), /sgd momentum .*got -0\.5$/],
    [() => sgd({ dampening: -1 }), /sgd dampening .*got -1$/],
    [() => sgd({ weightDecay: -1e-4 }), /sgd weightDecay .*got -0\.0001$/],
    [() => sgd({ nesterov: true }), /nesterov.*momentum 0/],
    [() => sgd({ nesterov: true, momentum: 0.9, dampening: 0.1 }), /nesterov.*dampening 0\.1/],
    [() => adam({ lr: -1 }), /adam lr .*got -1$/],
    [() => adam({ beta1: 1 }), /adam beta1 .*got 1$/],
    [() => adam({ beta1: -0.1 }), /adam beta1 .*got -0\.1$/],
    [() => adam({ beta2: 1.5 }), /adam beta2 .*got 1\.5$/],
    [() => adam({ beta2: NaN }), /adam beta2 .*got NaN$/],
    [() => adam({ eps: 0 }), /adam eps .*got 0$/],
    [() => adam({ weightDecay: -2 }), /adam weightDecay .*got -2$/],
  ];
  for (const [make, message] of bad) {
    assert.throws(make, (e: Error) => {
      assert.ok(e instanceof RangeError, `${e}`);
      assert.match(e.message, message);
      return true;
    });
  }
  // Boundary values that are fine.
  assert.equal(sgd({ momentum: 0, weightDecay: 0 }).momentum, 0);
  assert.equal(new Adam({ beta1: 0, beta2: 0 }).beta1, 0);
});

// ---------------------------------------------------------------------------------------------
// Memory and end-to-end

Deno.test("200 steps leave tf.memory().numTensors flat (SGD momentum and Adam)", async () => {
  await onBackends((b) => {
    const start = tf.memory().numTensors;
    const model = mlp({ input: 8, hidden: [6], outputs: 3, seed: 1 });
    const x = tf.randomNormal([5, 8], 0, 1, "float32", 2);
    const y = tf.tensor1d([0, 1, 2, 0, 1], "int32");
    for (
      const opt of [sgd({ lr: 0.01, momentum: 0.9, nesterov: true, weightDecay: 1e-3 }), adam()]
    ) {
      const params = model.trainableParameters();
      const train = () =>
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => crossEntropy(model.forward(x), y));
          opt.step(params, new Map(Object.entries(grads).map(([k, g]) => [nameOf(params, k), g])));
          return value;
        }).dispose();
      train(); // the first step creates the slots
      const after1 = tf.memory().numTensors;
      for (let i = 0; i < 199; i++) train();
      assert.equal(tf.memory().numTensors, after1, `${b} ${opt.kind} leaked`);
      opt.dispose();
    }
    tf.dispose([x, y]);
    model.dispose();
    assert.equal(tf.memory().numTensors, start, `${b}: model, data or slots not freed`);
  });
});

/** The parameter name of a tfjs variable (variableGrads keys gradients by variable name). */
function nameOf(params: Map<string, tf.Variable>, variableName: string): string {
  for (const [n, v] of params) if (v.name === variableName) return n;
  throw new Error(`no parameter for variable ${variableName}`);
}

Deno.test("SGD and Adam drive a small classifier's loss down", async () => {
  await onBackends((b) => {
    for (const make of [() => sgd({ lr: 0.5, momentum: 0.9 }), () => adam({ lr: 0.05 })]) {
      const model = mlp({ input: 4, hidden: [8], outputs: 2, seed: 3 });
      const opt = make();
      const x = tf.tensor2d([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]);
      const y = tf.tensor1d([0, 1, 1, 0], "int32");
      const params = model.trainableParameters();
      const loss = () => tf.tidy(() => crossEntropy(model.forward(x), y).dataSync()[0]);
      const first = loss();
      for (let i = 0; i < 50; i++) {
        tf.tidy(() => {
          const { grads } = tf.variableGrads(() => crossEntropy(model.forward(x), y));
          opt.step(params, new Map(Object.entries(grads).map(([k, g]) => [nameOf(params, k), g])));
        });
      }
      const last = loss();
      assert.ok(last < 0.1 * first, `${b} ${opt.kind}: loss ${first} -> ${last}`);
      opt.dispose();
      model.dispose();
      tf.dispose([x, y]);
    }
  });
});
