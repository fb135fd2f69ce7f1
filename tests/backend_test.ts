// Tests of lib/backend.ts: choosing the tfjs backend and seeding a run.
// Run: deno test -A tests/backend_test.ts

import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import {
  backendInfo,
  ensureBackend,
  findAdapter,
  type GpuAdapterLike,
  probeWebGpu,
  seedGlobal,
  setup,
} from "../lib/backend.ts";
import { drawSeed, Linear } from "../lib/nn/layers.ts";
import { registerBlasBackend } from "../lib/backends/blas.ts";

/** A small computation whose result is known: [[1, 2], [3, 4]] @ [[1], [1]] = [[3], [7]]. */
function compute(): number[] {
  return tf.tidy(() =>
    Array.from(tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.ones([2, 1])).dataSync())
  );
}

Deno.test("setBackend('cpu') and setBackend('wasm') activate those backends", async () => {
  try {
    for (const name of ["cpu", "wasm", "cpu"] as const) {
      const info = await setBackend(name);
      assert.equal(info.name, name);
      assert.equal(info.requested, name);
      assert.deepEqual(info.skipped, []);
      assert.equal(tf.getBackend(), name);
      assert.equal(backendInfo(), info);
      assert.deepEqual(compute(), [3, 7]);
    }
  } finally {
    await setBackend("wasm");
  }
});

Deno.test("a tensor made on one backend is usable after switching to the other", async () => {
  try {
    await setBackend("wasm");
    const t = tf.tensor1d([1, 2, 3]);
    await setBackend("cpu");
    const doubled = tf.mul(t, 2);
    assert.deepEqual(Array.from(doubled.dataSync()), [2, 4, 6]);
    tf.dispose([t, doubled]);
  } finally {
    await setBackend("wasm");
  }
});

Deno.test("'auto' picks blas when FFI and a BLAS library are there, else wasm, skipping tfjs-node and a software WebGPU adapter", async () => {
  const blas = await registerBlasBackend();
  const gpu = await probeWebGpu();
  const xdg = Deno.build.os !== "linux" || !!Deno.env.get("XDG_RUNTIME_DIR");
  const hardware = gpu.ok && !gpu.adapter.software && xdg;
  const want = hardware ? "webgpu" : blas.ok ? "blas" : "wasm";
  try {
    // tfjs-node is not installed on this machine, so auto must not even try to import it.
    const info = await setBackend("auto");
    assert.equal(info.name, want);
    assert.equal(info.requested, "auto");
    assert.equal(tf.getBackend(), want);
    assert.equal(info.skipped[0].name, "node");
    assert.match(info.skipped[0].reason, /binding/);
    if (hardware) {
      assert.equal(info.skipped.length, 1);
    } else {
      // No adapter, or a software one (lavapipe): never taken silently; the reason says which.
      assert.equal(info.skipped[1].name, "webgpu");
      assert.match(
        info.skipped[1].reason,
        /software|navigator\.gpu|no WebGPU adapter|XDG_RUNTIME_DIR/,
      );
      if (blas.ok) {
        assert.equal(info.skipped.length, 2);
      } else {
        // Without --allow-ffi (or a library) the reason names the fix.
        assert.equal(info.skipped.length, 3);
        assert.equal(info.skipped[2].name, "blas");
        assert.match(info.skipped[2].reason, /--allow-ffi|OPENBLAS_LIB/);
      }
    }
    assert.deepEqual(compute(), [3, 7]);
    // The default is auto.
    const again = await setBackend();
    assert.equal(again.requested, "auto");
    assert.equal(again.name, want);
    assert.equal(await ensureBackend(), again);
  } finally {
    await setBackend("wasm");
  }
});

Deno.test("an unknown backend name throws a TypeError listing the valid names", async () => {
  const before = backendInfo();
  for (const bad of ["gpu", "webgl", "", "WASM"]) {
    await assert.rejects(
      // deno-lint-ignore no-explicit-any
      () => setBackend(bad as any),
      (e: Error) => {
        assert.ok(e instanceof TypeError);
        assert.ok(e.message.includes(`"${bad}"`), e.message);
        for (const valid of ["auto", "node", "webgpu", "blas", "wasm", "cpu"]) {
          assert.ok(e.message.includes(`"${valid}"`), `${e.message} lacks "${valid}"`);
        }
        return true;
      },
    );
  }
  assert.equal(backendInfo(), before, "a rejected name changed the active backend");
  assert.equal(tf.getBackend(), "wasm");
});

Deno.test("setup({ seed }) makes Math.random deterministic", async () => {
  const info = await setup({ backend: "wasm", seed: 123 });
  assert.equal(info.name, "wasm");
  const a = Array.from({ length: 5 }, () => Math.random());
  await setup({ backend: "wasm", seed: 123 });
  const b = Array.from({ length: 5 }, () => Math.random());
  assert.deepEqual(a, b);
  for (const v of a) assert.ok(v >= 0 && v < 1);
  assert.equal(new Set(a).size, 5);

  await setup({ backend: "wasm", seed: 124 });
  const c = Array.from({ length: 5 }, () => Math.random());
  assert.notDeepEqual(c, a);

  // seedGlobal alone does the same.
  seedGlobal(123);
  assert.deepEqual(Array.from({ length: 5 }, () => Math.random()), a);
});

Deno.test("setup({ seed }) makes unseeded model initialization reproducible", async () => {
  await setup({ backend: "wasm", seed: 9 });
  const s1 = drawSeed();
  const w1 = new Linear(4, 3);
  await setup({ backend: "wasm", seed: 9 });
  const s2 = drawSeed();
  const w2 = new Linear(4, 3);
  assert.equal(s1, s2);
  assert.ok(Number.isInteger(s1) && s1 >= 0 && s1 < 2 ** 31);
  assert.deepEqual(Array.from(w1.weight.dataSync()), Array.from(w2.weight.dataSync()));
  assert.deepEqual(Array.from(w1.bias!.dataSync()), Array.from(w2.bias!.dataSync()));
  w1.dispose();
  w2.dispose();
});

Deno.test("setup() picks the asked backend and rejects a non-finite seed", async () => {
  try {
    const info = await setup({ backend: "cpu" });
    assert.equal(info.name, "cpu");
    assert.equal(tf.getBackend(), "cpu");
    await assert.rejects(() => setup({ backend: "wasm", seed: NaN }), {
      name: "TypeError",
      message: /got NaN/,
    });
    await assert.rejects(() => setup({ backend: "wasm", seed: Infinity }), {
      name: "TypeError",
      message: /got Infinity/,
    });
  } finally {
    await setBackend("wasm");
  }
});

Deno.test("probeWebGpu says what is missing and tells software adapters from GPUs", async () => {
  const missing = await findAdapter(undefined);
  assert.ok(!missing.ok);
  assert.match(
    missing.reason,
    /navigator\.gpu is missing: .*--unstable-webgpu.*"unstable": \["webgpu"\]/,
  );
  const gpu = (adapter: GpuAdapterLike | null) => ({
    requestAdapter: () => Promise.resolve(adapter),
  });
  const none = await findAdapter(gpu(null));
  assert.ok(!none.ok);
  assert.match(
    none.reason,
    /no WebGPU adapter: .*mesa-vulkan-drivers and libvulkan1.*XDG_RUNTIME_DIR/,
  );
  const lavapipe = { info: { vendor: "65541", description: "llvmpipe (LLVM 15.0.6, 256 bits)" } };
  const cases: [GpuAdapterLike, boolean][] = [
    [lavapipe, true],
    [{ info: { vendor: "65541", description: "" } }, true], // Mesa's software vendor id alone
    [{ info: { description: "Some GPU", isFallbackAdapter: true } }, true],
    [{ isFallbackAdapter: true, info: {} }, true],
    [{ info: { vendor: "4318", description: "NVIDIA H100 80GB HBM3" } }, false],
  ];
  for (const [adapter, software] of cases) {
    const probe = await findAdapter(gpu(adapter));
    assert.ok(probe.ok);
    assert.equal(probe.adapter.software, software, JSON.stringify(adapter));
  }
  const lp = await findAdapter(gpu(lavapipe));
  assert.ok(lp.ok && lp.adapter.description === "llvmpipe (LLVM 15.0.6, 256 bits)");
});
