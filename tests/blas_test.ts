// Tests of lib/backends (the "blas" backend: native BLAS products through Deno FFI). Every
// kernel the backend replaces is checked against the wasm backend (the cpu backend where wasm
// lacks the kernel) on the same inputs, transposes, batches, broadcasting and fused
// bias/activation included. Without --allow-ffi or a BLAS library the tests are skipped, and
// their names say why.
// Run: deno test -A tests/blas_test.ts

import { probeWebGpu, setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import {
  BLAS_BACKEND,
  BLAS_KERNELS,
  blasTuning,
  registerBlasBackend,
} from "../lib/backends/blas.ts";
import { candidateLibraries, ffiGranted, installHint, loadBlas } from "../lib/backends/ffi.ts";
import "../lib/nn/gradients.ts";

const reg = await registerBlasBackend();
const SKIP = reg.ok ? undefined : reg.reason;
if (SKIP) console.warn(`blas tests skipped: ${SKIP}`);

/** A test that runs only when the blas backend is available; the name says why not. */
function blasTest(name: string, fn: () => void | Promise<void>): void {
  Deno.test({
    name: SKIP ? `${name} (skipped: ${SKIP})` : name,
    ignore: SKIP !== undefined,
    fn: async () => {
      try {
        await fn();
      } finally {
        await setBackend("wasm");
      }
    },
  });
}

/** Deterministic values in [-1, 1). */
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

type Input = { shape: number[]; values: Float32Array | Int32Array; dtype?: tf.DataType };

function input(shape: number[], seed: number, dtype: tf.DataType = "float32"): Input {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = rand(n, seed);
  if (dtype === "int32") {
    return {
      shape,
      values: Int32Array.from(v, (x) => Math.round(x * 9)),
      dtype,
    };
  }
  return { shape, values: v, dtype };
}

/** Runs `fn` on fresh tensors of `inputs` on `backend`; returns the outputs' values and shapes. */
async function runOn(
  backend: "wasm" | "cpu" | "blas",
  inputs: Input[],
  fn: (...t: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<{ shape: number[]; dtype: string; values: number[] }[]> {
  await setBackend(backend);
  assert.equal(tf.getBackend(), backend);
  return tf.tidy(() => {
    const ts = inputs.map((i) => tf.tensor(i.values.slice(), i.shape, i.dtype ?? "float32"));
    const out = fn(...ts);
    return (Array.isArray(out) ? out : [out]).map((o) => ({
      shape: o.shape,
      dtype: o.dtype,
      values: Array.from(o.dataSync()),
    }));
  });
}

function assertClose(
  got: { shape: number[]; dtype: string; values: number[] }[],
  want: { shape: number[]; dtype: string; values: number[] }[],
  what: string,
  tol = 1e-4,
): void {
  assert.equal(got.length, want.length, `${what}: number of outputs`);
  got.forEach((g, o) => {
    const w = want[o];
    assert.deepEqual(g.shape, w.shape, `${what}: shape of output ${o}`);
    assert.equal(g.dtype, w.dtype, `${what}: dtype of output ${o}`);
    for (let i = 0; i < w.values.length; i++) {
      const a = g.values[i], b = w.values[i];
      if (a === b) continue;
      if (Number.isNaN(b)) {
        assert.ok(Number.isNaN(a), `${what}: output ${o}[${i}] is ${a}, want NaN`);
        continue;
      }
      const err = Math.abs(a - b);
      assert.ok(
        err <= tol * (1 + Math.abs(b)),
        `${what}: output ${o}[${i}] = ${a}, reference ${b} (error ${err})`,
      );
    }
  });
}

/** Checks `fn` on blas against wasm (or cpu) on the same inputs. */
async function agree(
  what: string,
  inputs: Input[],
  fn: (...t: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  opts: { reference?: "wasm" | "cpu"; tol?: number } = {},
): Promise<void> {
  const want = await runOn(opts.reference ?? "wasm", inputs, fn);
  const got = await runOn("blas", inputs, fn);
  assertClose(got, want, what, opts.tol);
}

// ------------------------------------------------------------ loading ----

Deno.test("loadBlas explains what is missing instead of throwing", () => {
  const r = loadBlas();
  if (r.ok) {
    assert.ok(r.lib.path.length > 0);
    assert.ok(ffiGranted());
  } else {
    assert.match(r.reason, /--allow-ffi|OPENBLAS_LIB|libopenblas|Accelerate/);
  }
  const bogus = loadBlas({ paths: ["/nonexistent/libnothing.so"] });
  if (ffiGranted()) {
    assert.equal(bogus.ok, false);
    if (!bogus.ok) {
      assert.match(bogus.reason, /OPENBLAS_LIB|apt-get install libopenblas0|openblas/);
      assert.equal(bogus.tried.length, 1);
      assert.equal(bogus.tried[0].path, "/nonexistent/libnothing.so");
    }
  }
  assert.ok(candidateLibraries("linux").includes("libopenblas.so.0"));
  assert.ok(candidateLibraries("linux").includes("libblas.so.3"));
  assert.ok(
    candidateLibraries("darwin").includes(
      "/System/Library/Frameworks/Accelerate.framework/Accelerate",
    ),
  );
  assert.match(installHint("linux"), /apt-get install libopenblas0/);
  assert.match(installHint("darwin"), /Accelerate/);
});

/** Runs a script with deno without `--allow-ffi` and returns its stdout. */
async function runWithoutFfi(code: string): Promise<{ ok: boolean; out: string; err: string }> {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/probe.ts`;
    const backend = new URL("../lib/backend.ts", import.meta.url).href;
    await Deno.writeTextFile(file, code.replaceAll("BACKEND_TS", backend));
    const config = new URL("../deno.json", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--allow-read", "--allow-env", "--config", config, file],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      ok: out.success,
      out: new TextDecoder().decode(out.stdout),
      err: new TextDecoder().decode(out.stderr),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("without --allow-ffi, auto falls back to wasm and blas fails naming the flag", async () => {
  const auto = await runWithoutFfi(
    `import { setBackend } from "BACKEND_TS";\n` +
      `console.log(JSON.stringify(await setBackend("auto")));`,
  );
  assert.ok(auto.ok, auto.err);
  const info = JSON.parse(auto.out.trim().split("\n").pop()!);
  const gpu = await probeWebGpu();
  assert.equal(info.name, gpu.ok && !gpu.adapter.software ? "webgpu" : "wasm");
  const blas = info.skipped.find((s: { name: string }) => s.name === "blas");
  assert.ok(blas, `blas not among skipped: ${auto.out}`);
  assert.match(blas.reason, /--allow-ffi/);

  const explicit = await runWithoutFfi(
    `import { setBackend } from "BACKEND_TS";\n` +
      `try { await setBackend("blas"); console.log("started"); }\n` +
      `catch (e) { console.log("error: " + e.message); }`,
  );
  assert.ok(explicit.ok, explicit.err);
  assert.match(explicit.out, /^error: Backend "blas" is unavailable: .*--allow-ffi/m);
});

blasTest("setBackend('blas') activates the backend and 'auto' prefers it to wasm", async () => {
  const info = await setBackend("blas");
  assert.equal(info.name, BLAS_BACKEND);
  assert.equal(tf.getBackend(), BLAS_BACKEND);
  assert.deepEqual(info.skipped, []);
  const gpu = await probeWebGpu();
  if (gpu.ok && !gpu.adapter.software) return; // auto takes a hardware WebGPU adapter first
  const auto = await setBackend("auto");
  assert.equal(auto.name, BLAS_BACKEND);
  // webgpu is skipped too: no adapter, or a software one (lavapipe).
  assert.deepEqual(auto.skipped.map((s) => s.name), ["node", "webgpu"]);
  assert.deepEqual(
    tf.tidy(() => Array.from(tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.ones([2, 1])).dataSync())),
    [3, 7],
  );
});

blasTest("the backend is the wasm instance with the wasm kernels but the listed ones", async () => {
  await setBackend("blas");
  const blasInstance = tf.backend();
  await setBackend("wasm");
  assert.equal(tf.backend(), blasInstance, "blas and wasm do not share their instance");
  const blas = new Map(tf.getKernelsForBackend(BLAS_BACKEND).map((k) => [k.kernelName, k]));
  for (const k of tf.getKernelsForBackend("wasm")) {
    const mine = blas.get(k.kernelName);
    assert.ok(mine, `blas lacks the wasm kernel ${k.kernelName}`);
    if (!(k.kernelName in BLAS_KERNELS)) assert.equal(mine.kernelFunc, k.kernelFunc);
  }
  for (const [name, fn] of Object.entries(BLAS_KERNELS)) {
    assert.equal(blas.get(name)?.kernelFunc, fn, `${name} is not the blas version`);
  }
  assert.ok(blas.has("Conv2DBackpropFilter"), "the filter gradient wasm lacks is provided");
});

blasTest("tensors stay usable across switches between wasm and blas, with no copy", async () => {
  await setBackend("wasm");
  const a = tf.tensor2d([[1, 2], [3, 4]]);
  await setBackend("blas");
  const b = tf.matMul(a, a);
  await setBackend("wasm");
  const c = tf.add(b, 1);
  assert.deepEqual(Array.from(c.dataSync()), [8, 11, 16, 23]);
  await setBackend("blas");
  assert.deepEqual(Array.from(tf.tidy(() => tf.matMul(c, a).dataSync())), [41, 60, 85, 124]);
  tf.dispose([a, b, c]);
});

// ------------------------------------------------------------ products ----

const MATMUL_SIZES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 2], // JavaScript path (small)
  [37, 53, 29], // BLAS, odd sizes
  [128, 784, 40],
];

blasTest("BatchMatMul agrees with wasm for every transpose combination, rank 2", async () => {
  let seed = 1;
  for (const [m, k, n] of MATMUL_SIZES) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const a = input(ta ? [k, m] : [m, k], seed++);
        const b = input(tb ? [n, k] : [k, n], seed++);
        await agree(
          `matMul ${m}×${k}×${n} ta=${ta} tb=${tb}`,
          [a, b],
          (x, y) => tf.matMul(x, y, ta, tb),
        );
      }
    }
  }
});

blasTest("BatchMatMul agrees with wasm on batches, broadcast batches included", async () => {
  const cases: [number[], number[], boolean, boolean][] = [
    [[4, 3, 5], [4, 5, 2], false, false],
    [[4, 5, 3], [4, 2, 5], true, true],
    [[4, 30, 70], [70, 20], false, false], // one B for the stack: a single product
    [[4, 70, 30], [70, 20], true, false],
    [[1, 30, 70], [3, 70, 20], false, false], // A broadcast
    [[3, 30, 70], [1, 20, 70], false, true], // B broadcast
    [[2, 3, 20, 70], [2, 3, 70, 20], false, false], // rank 4
  ];
  let seed = 100;
  for (const [as, bs, ta, tb] of cases) {
    await agree(
      `matMul [${as}]·[${bs}] ta=${ta} tb=${tb}`,
      [input(as, seed++), input(bs, seed++)],
      (x, y) => tf.matMul(x, y, ta, tb),
    );
  }
  // Broadcasting both ways ([2,1,..] with [3,..]): the cpu kernel indexes batches modulo their
  // count, which is wrong here, so the reference is computed in plain JavaScript.
  const a = input([2, 1, 20, 30], 7), b = input([3, 30, 10], 8);
  const want: number[] = [];
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 3; j++) {
      for (let r = 0; r < 20; r++) {
        for (let c = 0; c < 10; c++) {
          let s = 0;
          for (let p = 0; p < 30; p++) {
            s += a.values[i * 600 + r * 30 + p] * b.values[j * 300 + p * 10 + c];
          }
          want.push(s);
        }
      }
    }
  }
  const got = await runOn("blas", [a, b], (x, y) => tf.matMul(x, y));
  assertClose(got, [{ shape: [2, 3, 20, 10], dtype: "float32", values: want }], "matMul 2×1 by 3");
});

blasTest(
  "BatchMatMul computes int32 products (wasm cannot) and handles empty shapes",
  async () => {
    await agree(
      "int32 matMul (wasm has no int32 product: cpu is the reference)",
      [input([4, 6], 1, "int32"), input([6, 3], 2, "int32")],
      (x, y) => tf.matMul(x, y),
      { reference: "cpu" },
    );
    await agree(
      "matMul with k = 0",
      [input([3, 0], 1), input([0, 4], 2)],
      (x, y) => tf.matMul(x, y),
      {
        reference: "cpu",
      },
    );
    await setBackend("blas");
    assert.throws(() => tf.matMul(tf.ones([2, 3]), tf.ones([4, 2])), /inner shapes/);
  },
);

// The wasm backend's _FusedMatMul adds the bias wrongly when either operand is transposed (rows
// after the first get bias[n-1]); the cpu backend is the reference there.
blasTest("_FusedMatMul agrees with wasm (cpu when transposed): bias, activations", async () => {
  let seed = 200;
  const activations = ["linear", "relu", "relu6", "elu", "sigmoid", "leakyrelu"] as const;
  for (const [m, k, n] of [[5, 3, 4], [64, 100, 48]] as [number, number, number][]) {
    for (const activation of activations) {
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
        const a = input(ta ? [k, m] : [m, k], seed++);
        const b = input(tb ? [n, k] : [k, n], seed++);
        const bias = input([n], seed++);
        await agree(
          `fused ${m}×${k}×${n} ${activation} ta=${ta} tb=${tb}`,
          [a, b, bias],
          (x, y, z) =>
            tf.fused.matMul({
              a: x as tf.Tensor2D,
              b: y as tf.Tensor2D,
              bias: z,
              transposeA: ta,
              transposeB: tb,
              activation,
              leakyreluAlpha: 0.1,
            }),
          { reference: ta || tb ? "cpu" : "wasm" },
        );
      }
    }
  }
  // No bias; a scalar bias; a bias broadcast along rows ([m, 1]) and a batched product.
  await agree(
    "fused without bias",
    [input([6, 7], 1), input([7, 5], 2)],
    (x, y) => tf.fused.matMul({ a: x as tf.Tensor2D, b: y as tf.Tensor2D, activation: "relu" }),
  );
  // wasm takes only a bias of one value per column (and adds a [1] bias wrongly).
  await agree(
    "fused scalar bias",
    [input([6, 7], 3), input([7, 5], 4), input([1], 5)],
    (x, y, z) => tf.fused.matMul({ a: x as tf.Tensor2D, b: y as tf.Tensor2D, bias: z }),
    { reference: "cpu" },
  );
  await agree(
    "fused column bias",
    [input([6, 7], 6), input([7, 5], 7), input([6, 1], 8)],
    (x, y, z) =>
      tf.fused.matMul({ a: x as tf.Tensor2D, b: y as tf.Tensor2D, bias: z, activation: "relu" }),
    { reference: "cpu" },
  );
  await agree(
    "fused batched",
    [input([3, 16, 40], 9), input([3, 40, 24], 10), input([24], 11)],
    (x, y, z) =>
      tf.fused.matMul({ a: x as tf.Tensor3D, b: y as tf.Tensor3D, bias: z, activation: "elu" }),
    { reference: "cpu" }, // wasm's fused product gets the bias wrong on batches too
  );
  await agree(
    "fused prelu (cpu kernel)",
    [input([6, 7], 12), input([7, 5], 13), input([5], 14), input([5], 15)],
    (x, y, z, w) =>
      tf.fused.matMul({
        a: x as tf.Tensor2D,
        b: y as tf.Tensor2D,
        bias: z,
        activation: "prelu",
        preluActivationWeights: w,
      }),
  );
});

blasTest("gradients through matMul and fused matMul agree with wasm", async () => {
  const a = input([32, 50], 1),
    b = input([50, 20], 2),
    bias = input([20], 3),
    r = input([32, 20], 4);
  for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
    const aa = ta ? input([50, 32], 5) : a, bb = tb ? input([20, 50], 6) : b;
    await agree(`grad matMul ta=${ta} tb=${tb}`, [aa, bb, r], (x, y, w) => {
      const g = tf.grads((p: tf.Tensor, q: tf.Tensor) =>
        tf.sum(tf.mul(tf.matMul(p, q, ta, tb), w))
      );
      return g([x, y]);
    });
    const reference = ta || tb ? "cpu" : "wasm";
    await agree(`grad fused relu ta=${ta} tb=${tb}`, [aa, bb, bias, r], (x, y, z, w) => {
      const g = tf.grads((p: tf.Tensor, q: tf.Tensor, c: tf.Tensor) =>
        tf.sum(tf.mul(
          tf.fused.matMul({
            a: p as tf.Tensor2D,
            b: q as tf.Tensor2D,
            bias: c,
            activation: "relu",
            transposeA: ta,
            transposeB: tb,
          }),
          w,
        ))
      );
      return g([x, y, z]);
    }, { reference });
  }
});

// ------------------------------------------------------------ reductions ----

blasTest("Sum agrees with wasm over leading, trailing and other axes", async () => {
  const y = input([40, 30, 20], 501);
  const axes: (number | number[] | undefined)[] = [
    undefined,
    0,
    1, // wasm kernel
    2,
    -1,
    [0, 1],
    [1, 2],
    [0, 2], // wasm kernel
    [0, 1, 2],
  ];
  for (const axis of axes) {
    for (const keepDims of [false, true]) {
      await agree(
        `sum axis ${JSON.stringify(axis)} keepDims ${keepDims}`,
        [y],
        (t) => tf.sum(t, axis, keepDims),
        { tol: 2e-4 },
      );
    }
  }
  await agree("bias gradient [128, 400] axis 0", [input([128, 400], 502)], (t) => tf.sum(t, 0));
  await agree("small sum (wasm kernel)", [input([8, 9], 503)], (t) => tf.sum(t, 0));
  await agree("sum int32", [input([80, 90], 2, "int32")], (t) => tf.sum(t, 0));
  await agree("sum bool", [input([80, 90], 3)], (t) => tf.sum(tf.greater(t, 0), 1));
  const special = input([64, 80], 504);
  special.values[5] = NaN;
  special.values[90] = Infinity;
  await agree("sum with NaN and Infinity", [special], (t) => tf.sum(t, 0));
  // Sums of everything add up 256 columns first, then the columns and the tail.
  await agree("sum of all of [784, 400]", [input([784, 400], 505)], (t) => tf.sum(t), {
    tol: 1e-3,
  });
  await agree(
    "sum of all of a vector of 5000 (tail of 136)",
    [input([5000], 506)],
    (t) => tf.sum(t),
  );
  for (const at of [7, 4990]) {
    const v = input([5000], 507);
    v.values[at] = NaN;
    await agree(`sum of all with NaN at ${at}`, [v], (t) => tf.sum(t));
  }
});

blasTest("clones share their data, and freeing either leaves the other intact", async () => {
  await setBackend("blas");
  const before = tf.memory().numTensors;
  const a = tf.tensor2d([[1, 2], [3, 4]]);
  const b = tf.clone(a);
  assert.deepEqual(Array.from(b.dataSync()), [1, 2, 3, 4]);
  a.dispose();
  assert.deepEqual(Array.from(tf.tidy(() => tf.add(b, 1).dataSync())), [2, 3, 4, 5]);
  const v = tf.variable(b);
  const doubled = tf.mul(v, 2) as tf.Tensor2D;
  v.assign(doubled);
  doubled.dispose();
  assert.deepEqual(
    Array.from(b.dataSync()),
    [1, 2, 3, 4],
    "assigning a variable changed its source",
  );
  assert.deepEqual(Array.from(v.dataSync()), [2, 4, 6, 8]);
  tf.dispose([b, v]);
  assert.equal(tf.memory().numTensors, before);
});

// ----------------------------------------------------------- convolution ----

const CONV_CASES: {
  x: number[];
  k: number[];
  stride: number | [number, number];
  pad: "same" | "valid" | number;
  dilation?: number;
  chunk?: number;
}[] = [
  { x: [2, 9, 9, 1], k: [3, 3, 1, 4], stride: 1, pad: "same" },
  { x: [3, 8, 7, 5], k: [3, 3, 5, 6], stride: 1, pad: "valid" },
  { x: [2, 9, 8, 3], k: [3, 2, 3, 4], stride: 2, pad: "same" },
  { x: [2, 10, 10, 3], k: [5, 5, 3, 2], stride: [2, 1], pad: 1 },
  { x: [2, 9, 9, 2], k: [3, 3, 2, 3], stride: 1, pad: "same", dilation: 2 },
  { x: [4, 6, 6, 8], k: [1, 1, 8, 5], stride: 1, pad: "valid" }, // a plain product
  { x: [5, 7, 7, 4], k: [3, 3, 4, 3], stride: 1, pad: "same", chunk: 2000 }, // im2col chunks
];

/** Runs `fn` with the blas backend building patch matrices of at most `chunk` elements. */
async function withChunk<T>(chunk: number | undefined, fn: () => Promise<T>): Promise<T> {
  if (chunk === undefined) return await fn();
  const tuning = blasTuning();
  const saved = tuning.im2colChunk;
  tuning.im2colChunk = chunk;
  try {
    return await fn();
  } finally {
    tuning.im2colChunk = saved;
  }
}

blasTest(
  "Conv2D agrees with wasm: padding, strides, dilation, 1×1 and chunked batches",
  async () => {
    let seed = 700;
    for (const { x, k, stride, pad, dilation, chunk } of CONV_CASES) {
      await withChunk(chunk, () =>
        agree(
          `conv2d x[${x}] k[${k}] stride ${stride} pad ${pad} dilation ${dilation ?? 1}`,
          [input(x, seed++), input(k, seed++)],
          (a, w) =>
            tf.conv2d(a as tf.Tensor4D, w as tf.Tensor4D, stride, pad, "NHWC", dilation ?? 1),
          // wasm's conv2d writes out of its heap with an explicit padding (here 5×5, stride [2, 1]).
          { reference: typeof pad === "number" ? "cpu" : "wasm" },
        ));
    }
    // NCHW is left to the wasm kernel, which refuses it as on the wasm backend.
    await setBackend("blas");
    assert.throws(
      () =>
        tf.tidy(() =>
          tf.conv2d(
            tf.ones([1, 3, 8, 8]) as tf.Tensor4D,
            tf.ones([3, 3, 3, 4]) as tf.Tensor4D,
            1,
            "same",
            "NCHW",
          )
        ),
      /channelsFirst/,
    );
  },
);

blasTest("Conv2DBackpropInput agrees with wasm and Conv2DBackpropFilter with cpu", async () => {
  let seed = 800;
  for (const { x, k, stride, pad, dilation, chunk } of CONV_CASES) {
    if (dilation) continue; // tfjs has no dilated gradient
    await withChunk(chunk, async () => {
      const outShape = await runOn(
        "cpu",
        [input(x, 1), input(k, 2)],
        (a, w) => tf.conv2d(a as tf.Tensor4D, w as tf.Tensor4D, stride, pad),
      );
      const dy = input(outShape[0].shape, seed++);
      await agree(
        `conv2dTranspose x[${x}] k[${k}] stride ${stride} pad ${pad}`,
        [dy, input(k, seed++)],
        (g, w) =>
          tf.conv2dTranspose(
            g as tf.Tensor4D,
            w as tf.Tensor4D,
            x as [number, number, number, number],
            stride,
            pad as "same" | "valid",
          ),
        { reference: typeof pad === "number" ? "cpu" : "wasm" },
      );
      // Both gradients of conv2d (the filter's needs Conv2DBackpropFilter, absent from wasm).
      await agree(
        `conv2d gradients x[${x}] k[${k}] stride ${stride} pad ${pad}`,
        [input(x, seed++), input(k, seed++), dy],
        (a, w, g) =>
          tf.grads((p: tf.Tensor, q: tf.Tensor) =>
            tf.sum(tf.mul(tf.conv2d(p as tf.Tensor4D, q as tf.Tensor4D, stride, pad), g))
          )([a, w]),
        { reference: "cpu", tol: 2e-4 },
      );
    });
  }
});

blasTest(
  "MaxPoolGrad agrees with cpu (and wasm where wasm is right): strides, padding, ties",
  async () => {
    const cases: {
      x: number[];
      size: number | [number, number];
      stride: number;
      pad: "same" | "valid" | number;
    }[] = [
      { x: [2, 8, 8, 3], size: 2, stride: 2, pad: "valid" },
      { x: [2, 9, 7, 4], size: 3, stride: 2, pad: "same" },
      { x: [1, 10, 10, 2], size: [3, 2], stride: 1, pad: "valid" }, // overlapping windows
      { x: [2, 7, 7, 5], size: 2, stride: 2, pad: "valid" }, // odd input: last row unused
      { x: [2, 6, 6, 2], size: 3, stride: 2, pad: 1 },
    ];
    let seed = 1000;
    for (const { x, size, stride, pad } of cases) {
      const xs = input(x, seed++);
      const dy = await runOn("cpu", [xs], (t) => tf.maxPool(t as tf.Tensor4D, size, stride, pad));
      const g = input(dy[0].shape, seed++);
      const grad = (t: tf.Tensor, w: tf.Tensor) =>
        tf.grad((p: tf.Tensor) =>
          tf.sum(tf.mul(tf.maxPool(p as tf.Tensor4D, size, stride, pad), w))
        )(
          t,
        );
      const what = `maxPool grad x[${x}] size ${size} stride ${stride} pad ${pad}`;
      // The cpu backend is the reference: wasm's gradient skips windows whose values are all
      // negative, and gives a tie to the last maximum.
      await agree(what, [xs, g], grad, { reference: "cpu" });
      // On non-negative inputs without ties (after a ReLU), wasm agrees too.
      const pos = { ...xs, values: xs.values.map((v) => Math.abs(v)) };
      if (typeof pad !== "number") await agree(`${what} (wasm)`, [pos, g], grad);
      // Ties: the gradient goes to the first maximum of each window.
      const ties = { ...xs, values: xs.values.slice() };
      ties.values[0] = ties.values[x[3]] = 5;
      await agree(`${what} with ties`, [ties, g], grad, { reference: "cpu" });
    }
  },
);

blasTest("FusedConv2D agrees with cpu: bias and activations", async () => {
  let seed = 900;
  for (const activation of ["linear", "relu", "elu", "sigmoid", "leakyrelu", "prelu"] as const) {
    await agree(
      `fused conv2d ${activation}`,
      [input([2, 8, 8, 3], seed++), input([3, 3, 3, 4], seed++), input([4], seed++), input([4], 9)],
      (a, w, b, alpha) =>
        tf.fused.conv2d({
          x: a as tf.Tensor4D,
          filter: w as tf.Tensor4D,
          strides: 1,
          pad: "same",
          bias: b,
          activation,
          preluActivationWeights: activation === "prelu" ? alpha : undefined,
          leakyreluAlpha: 0.1,
        }),
      { reference: "cpu" },
    );
  }
});

// ------------------------------------------------------------ training ----

blasTest("an MLP trained 5 SGD steps ends with the same weights as on wasm", async () => {
  const x = input([64, 100], 600), w1 = input([100, 50], 601), w2 = input([50, 10], 602);
  const b1 = input([50], 603), b2 = input([10], 604);
  const labels = Int32Array.from({ length: 64 }, (_, i) => (i * 7) % 10);
  await agree("mlp training", [x, w1, b1, w2, b2], (xt, ...params) => {
    const vars = params.map((p) => tf.variable(p));
    const y = tf.oneHot(tf.tensor1d(labels, "int32"), 10);
    const opt = tf.train.momentum(0.05, 0.9);
    for (let s = 0; s < 5; s++) {
      opt.minimize(() => {
        const h = tf.relu(tf.add(tf.matMul(xt, vars[0]), vars[1]));
        const logits = tf.add(tf.matMul(h, vars[2]), vars[3]);
        return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
      });
    }
    const out = vars.map((v) => v.clone());
    vars.forEach((v) => v.dispose());
    opt.dispose();
    return out;
  }, { tol: 1e-3 });
});
