/**
 * Choosing the tfjs backend and seeding a run.
 *
 * `backend: "auto"` picks tfjs-node when its native binding is installed and loads, else the
 * "webgpu" backend when a hardware WebGPU adapter answers (never a software one such as Mesa's
 * lavapipe/llvmpipe: {@link probeWebGpu}; on Linux only with XDG_RUNTIME_DIR set), else the "blas"
 * backend (the WebAssembly backend with matrix products and convolutions in a native BLAS
 * called through FFI, `lib/backends/blas.ts`) when `--allow-ffi` is granted and a BLAS library
 * is found, else the WebAssembly backend (SIMD), else the plain JavaScript `cpu` backend. Which
 * one runs is reported, with the reason each one before it was skipped.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import seedrandom from "seedrandom";
import { BLAS_BACKEND, registerBlasBackend } from "./backends/blas.ts";
import { checkOptions, closest, describeValue } from "./options.ts";

/** Backends a run can ask for. */
export type BackendName = "auto" | "node" | "webgpu" | "blas" | "wasm" | "cpu";

/** Every name {@link setBackend} accepts. */
export const BACKENDS: readonly BackendName[] = ["auto", "node", "webgpu", "blas", "wasm", "cpu"];

/** Outcome of {@link setBackend}: the backend that runs and why others were skipped. */
export interface BackendInfo {
  /** Name of the active tfjs backend ("tensorflow" for tfjs-node, "blas", "wasm", "cpu"). */
  name: string;
  /** What was asked for. */
  requested: BackendName;
  /** Backends tried before the active one, with the reason each was not used. */
  skipped: { name: string; reason: string }[];
  /** On "webgpu": the adapter it runs on. */
  adapter?: WebGpuAdapter;
}

/** A WebGPU adapter as {@link probeWebGpu} found it. */
export interface WebGpuAdapter {
  /** The adapter's description (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"), else its vendor. */
  description: string;
  /**
   * True for a software adapter (a CPU implementation such as Mesa's lavapipe/llvmpipe or
   * SwiftShader): the adapter says `isFallbackAdapter`, or its vendor is Mesa's software vendor
   * id 0x10005, or its description names one.
   */
  software: boolean;
}

/** What {@link probeWebGpu} found: an adapter, or why there is none and how to get one. */
export type WebGpuProbe =
  | { ok: true; adapter: WebGpuAdapter }
  | { ok: false; reason: string };

/** The parts of a WebGPU adapter read here. */
export interface GpuAdapterLike {
  isFallbackAdapter?: boolean;
  info?: { vendor?: string; device?: string; description?: string; isFallbackAdapter?: boolean };
}
/** The part of the WebGPU API read here (Deno's `navigator.gpu`). */
export interface GpuLike {
  requestAdapter(opts?: { powerPreference?: string }): Promise<GpuAdapterLike | null>;
}

const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|softpipe|software|basic render/i;
/** Vulkan's vendor id of Mesa's software drivers (VK_VENDOR_ID_MESA). */
const MESA_SOFTWARE_VENDOR = 0x10005;

let probed: Promise<WebGpuProbe> | undefined;

/**
 * Looks for a WebGPU adapter (once per process): Deno's `navigator.gpu` (Deno 2.9 has it by
 * default; older versions need `--unstable-webgpu` or `"unstable": ["webgpu"]` in deno.json),
 * then the adapter WebGPU offers for high performance, telling a software adapter (lavapipe,
 * SwiftShader) from a GPU by the adapter's `isFallbackAdapter`, its vendor id and its
 * description. When none answers, the reason says what to install.
 *
 * @example
 * ```ts
 * import { probeWebGpu } from "./backend.ts";
 * const probe = await probeWebGpu();
 * console.log(probe.ok ? probe.adapter.description : probe.reason);
 * ```
 */
export function probeWebGpu(): Promise<WebGpuProbe> {
  return probed ??= findAdapter(
    (globalThis.navigator as unknown as { gpu?: GpuLike } | undefined)?.gpu,
  );
}

/**
 * What {@link probeWebGpu} concludes from `gpu` (Deno's `navigator.gpu`, undefined when absent).
 * Internal; exported for tests.
 */
export async function findAdapter(gpu: GpuLike | undefined): Promise<WebGpuProbe> {
  if (!gpu) {
    return {
      ok: false,
      reason: "navigator.gpu is missing: run Deno with --unstable-webgpu (or put " +
        `"unstable": ["webgpu"] in deno.json; Deno 2.9 and later have it by default)`,
    };
  }
  let adapter: GpuAdapterLike | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    adapter = null;
    console.warn(`WebGPU: requestAdapter failed: ${(e as Error)?.message ?? e}`);
  }
  if (!adapter) {
    return {
      ok: false,
      reason: "no WebGPU adapter: install the GPU's Vulkan driver with the Vulkan loader (on " +
        "Debian/Ubuntu without a GPU, mesa-vulkan-drivers and libvulkan1 give the software " +
        "adapter lavapipe) and set XDG_RUNTIME_DIR (e.g. to a folder of your own under /tmp)",
    };
  }
  const info = adapter.info ?? {};
  const description = info.description || info.device || info.vendor || "unnamed adapter";
  const software = adapter.isFallbackAdapter === true || info.isFallbackAdapter === true ||
    Number(info.vendor) === MESA_SOFTWARE_VENDOR || SOFTWARE_ADAPTER.test(description);
  return { ok: true, adapter: { description, software } };
}

/** True on Linux when XDG_RUNTIME_DIR is readable and unset (`auto` then skips WebGPU). */
function xdgRuntimeDirMissing(): boolean {
  if (Deno.build.os !== "linux") return false;
  try {
    const env = { name: "env", variable: "XDG_RUNTIME_DIR" } as const;
    if (Deno.permissions.querySync(env).state !== "granted") return false;
    return !Deno.env.get("XDG_RUNTIME_DIR");
  } catch {
    return false;
  }
}

async function tryWebGpu(): Promise<void> {
  await import("@tensorflow/tfjs-backend-webgpu");
  if (!(await tf.setBackend("webgpu"))) {
    throw new Error(`tf.setBackend("webgpu") returned false (no device from the adapter)`);
  }
  await tf.ready();
}

let current: BackendInfo | undefined;
let prodMode = false;

function quiet(): void {
  if (!prodMode) {
    tf.enableProdMode();
    prodMode = true;
  }
}

/** True when tfjs-node's native binding file is present in a node_modules folder near us. */
function nodeBindingInstalled(): boolean {
  const roots = new Set<string>();
  try {
    roots.add(Deno.cwd());
    roots.add(new URL("..", import.meta.url).pathname);
  } catch {
    return false;
  }
  for (const root of roots) {
    try {
      for (const entry of Deno.readDirSync(`${root}/node_modules/.deno`)) {
        if (!entry.name.startsWith("@tensorflow+tfjs-node@")) continue;
        const lib =
          `${root}/node_modules/.deno/${entry.name}/node_modules/@tensorflow/tfjs-node/lib`;
        for (const napi of Deno.readDirSync(lib)) {
          try {
            Deno.statSync(`${lib}/${napi.name}/tfjs_binding.node`);
            return true;
          } catch { /* not this one */ }
        }
      }
    } catch { /* no node_modules here */ }
  }
  return false;
}

async function tryNode(): Promise<void> {
  const spec = ["npm:@tensorflow", "tfjs-node@4.22.0"].join("/");
  await import(spec);
  if (!(await tf.setBackend("tensorflow"))) throw new Error("tfjs-node registered no backend");
}

/**
 * Activates a tfjs backend. `"auto"` tries tfjs-node (only when its native binding is installed),
 * then webgpu (only on a hardware adapter), then blas (when `--allow-ffi` is granted and a BLAS library loads), then wasm, then cpu. An
 * explicit name that cannot start throws an error saying why and how to fix it.
 *
 * @example
 * ```ts
 * import { setBackend } from "./backend.ts";
 * const info = await setBackend("cpu");
 * console.assert(info.name === "cpu");
 * ```
 */
export async function setBackend(name: BackendName = "auto"): Promise<BackendInfo> {
  if (!BACKENDS.includes(name)) {
    const near = typeof name === "string" ? closest(name, BACKENDS) : undefined;
    const got = typeof name === "string" ? `"${name}"` : describeValue(name);
    throw new TypeError(
      `Unknown backend ${got}: use one of ${BACKENDS.map((b) => `"${b}"`).join(", ")}` +
        (near === undefined ? "" : ` (did you mean "${near}"?)`),
    );
  }
  quiet();
  const skipped: { name: string; reason: string }[] = [];
  const activate = (active: string, adapter?: WebGpuAdapter): BackendInfo => {
    current = adapter
      ? { name: active, requested: name, skipped, adapter }
      : { name: active, requested: name, skipped };
    return current;
  };
  if (name === "node" || name === "auto") {
    if (name === "auto" && !nodeBindingInstalled()) {
      skipped.push({ name: "node", reason: "tfjs-node's native binding is not installed" });
    } else {
      try {
        await tryNode();
        return activate("tensorflow");
      } catch (e) {
        const reason = String((e as Error)?.message ?? e).split("\n")[0];
        if (name === "node") {
          throw new Error(
            `Backend "node" could not start: ${reason}. Install @tensorflow/tfjs-node with its ` +
              `native build (needs internet), or use backend "wasm"`,
          );
        }
        skipped.push({ name: "node", reason });
      }
    }
  }
  if (name === "auto" && xdgRuntimeDirMissing()) {
    skipped.push({
      name: "webgpu",
      reason: "XDG_RUNTIME_DIR is not set, without which WebGPU's drivers print errors on Linux: " +
        `set it (e.g. to a folder of your own under /tmp), or ask for backend "webgpu"`,
    });
  } else if (name === "webgpu" || name === "auto") {
    const probe = await probeWebGpu();
    if (!probe.ok) {
      if (name === "webgpu") throw new Error(`Backend "webgpu" is unavailable: ${probe.reason}`);
      skipped.push({ name: "webgpu", reason: probe.reason });
    } else if (name === "auto" && probe.adapter.software) {
      skipped.push({
        name: "webgpu",
        reason: `the WebGPU adapter is a software one (${probe.adapter.description}), ` +
          `slower than the CPU backends: ask for backend "webgpu" to use it anyway`,
      });
    } else {
      try {
        await tryWebGpu();
        return activate("webgpu", probe.adapter);
      } catch (e) {
        const reason = String((e as Error)?.message ?? e).split("\n")[0];
        if (name === "webgpu") throw new Error(`Backend "webgpu" could not start: ${reason}`);
        skipped.push({ name: "webgpu", reason });
      }
    }
  }
  if (name === "blas" || name === "auto") {
    const reg = await registerBlasBackend();
    if (reg.ok) {
      try {
        if (!(await tf.setBackend(BLAS_BACKEND))) {
          throw new Error(`tf.setBackend("${BLAS_BACKEND}") returned false`);
        }
        await tf.ready();
        return activate(BLAS_BACKEND);
      } catch (e) {
        if (name === "blas") throw new Error(`Backend "blas" could not start: ${e}`);
        skipped.push({ name: "blas", reason: String(e) });
      }
    } else if (name === "blas") {
      throw new Error(
        `Backend "blas" is unavailable: ${reg.reason}. Or use backend "wasm" (no native library)`,
      );
    } else {
      skipped.push({ name: "blas", reason: reg.reason });
    }
  }
  if (name === "wasm" || name === "auto") {
    try {
      if (await tf.setBackend("wasm")) {
        await tf.ready();
        return activate("wasm");
      }
      throw new Error("tf.setBackend('wasm') returned false");
    } catch (e) {
      if (name === "wasm") throw new Error(`Backend "wasm" could not start: ${e}`);
      skipped.push({ name: "wasm", reason: String(e) });
    }
  }
  if (!(await tf.setBackend("cpu"))) throw new Error(`Backend "cpu" could not start`);
  await tf.ready();
  return activate("cpu");
}

/** The backend set by {@link setBackend}, or undefined before the first call. */
export function backendInfo(): BackendInfo | undefined {
  return current;
}

/** Ensures some backend is active (auto) and returns its info. */
export async function ensureBackend(): Promise<BackendInfo> {
  return current ?? await setBackend("auto");
}

/**
 * Seeds everything that draws random numbers outside our explicit generators: Math.random
 * (through seedrandom, which tfjs' unseeded initializers fall back to). Our own samplers and
 * initializers take seeds from an {@link Rng} carried by the run.
 */
export function seedGlobal(seed: number): void {
  seedrandom(String(seed), { global: true });
}

/** Options of {@link setup}. */
export interface SetupOptions {
  /** @default "auto" */
  backend?: BackendName;
  /** Seed for everything not given an explicit seed (model initializers, strategies' generators). */
  seed?: number;
}

/**
 * One call to start a run: picks the backend and seeds the run.
 *
 * @example
 * ```ts
 * import { setup } from "./backend.ts";
 * const info = await setup({ backend: "cpu", seed: 0 });
 * console.assert(info.name === "cpu");
 * ```
 */
export async function setup(opts: SetupOptions = {}): Promise<BackendInfo> {
  // The name itself is checked by setBackend, whose error lists the backends.
  checkOptions("setup", opts, { backend: "string", seed: "number" });
  const info = await setBackend(opts.backend ?? "auto");
  if (opts.seed !== undefined) {
    if (!Number.isFinite(opts.seed)) {
      throw new TypeError(`seed must be a finite number, got ${opts.seed}`);
    }
    seedGlobal(opts.seed);
  }
  return info;
}
