/**
 * The "blas" tfjs backend: the WebAssembly backend with its matrix products, convolutions and
 * axis sums computed by a native CBLAS library (OpenBLAS, Accelerate) called through Deno's FFI.
 *
 * Design. "blas" is a second name for the wasm backend's own instance: tensors live on the
 * wasm heap, every kernel not listed in {@link BLAS_KERNELS} is the wasm kernel (SIMD
 * elementwise arithmetic, transposes, reductions), and the kernels listed here hand `sgemm`
 * views of the wasm heap (`Float32Array`s, passed to C without a copy). Because the instance is
 * shared, tensors stay valid when switching between "wasm" and "blas" with no data moves. The
 * replaced kernels are:
 * - `BatchMatMul` and `_FusedMatMul` (transposes, batches with broadcasting, bias and
 *   activation fused): one `sgemm` per batch entry, or one for a stack of rows against a
 *   shared matrix; the wasm versions are slow with a transpose flag, and the wasm fused product
 *   adds the bias wrongly with a transposed operand or a batch.
 * - `Conv2D`, `FusedConv2D`, `Conv2DBackpropInput` and `Conv2DBackpropFilter` (NHWC): im2col
 *   then `sgemm` (the input's gradient: `sgemm` then col2im), in chunks of images; a 1×1
 *   stride-1 convolution is one `sgemm` on the data as it is, and a stride-1 convolution of a
 *   wide image (few padding positions per output) one `sgemm` per filter tap on the zero-padded
 *   image, with no patch matrix (see `Grid`). The wasm backend has no `Conv2DBackpropFilter` at
 *   all.
 * - `Sum` over leading or trailing axes (bias gradients): a product with a vector of ones.
 * - `MaxPoolGrad` (NHWC): one scan of each window for all channels.
 * - `FusedBatchNorm` (a batch norm in evaluation mode) over the last axis: one pass.
 * - `Slice` (float32, int32): contiguous blocks copied whole.
 * - `Identity` (clone): shares the data instead of copying it.
 *
 * The alternative, the JavaScript `cpu` backend with the same products (plus JavaScript
 * elementwise kernels and a buffer pool), trained and evaluated the bench MLP more slowly: the
 * wasm SIMD kernels beat JavaScript loops on elementwise work (relu, add) at minibatch sizes, and
 * fresh megabyte typed arrays cost page faults on every output.
 *
 * Products of fewer than 2²² multiply-adds, or with a dimension under 128 (most of a small
 * ResNet's convolutions), run on one BLAS thread: waking OpenBLAS' pool costs more than it saves
 * on them, much more on a busy machine. `OPENBLAS_NUM_THREADS` caps the
 * threads of the others.
 *
 * Start it with `setBackend("blas")` from `lib/backend.ts` (or `await registerBlasBackend()`
 * then `tf.setBackend("blas")`); it needs `--allow-ffi` and a CBLAS library (see `ffi.ts`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-wasm";
import { type BlasLibrary, loadBlas } from "./ffi.ts";
import { LINEAR, setFusedBlas } from "./fused.ts";

/** Name of the backend in tfjs' registry. */
export const BLAS_BACKEND = "blas";

type TensorInfo = tf.TensorInfo;

/** The parts of tfjs-backend-wasm's `BackendWasm` the kernels use. */
interface WasmBackend {
  wasm: {
    HEAPU8: Uint8Array;
    /** wasm's relu over tensor ids (x, dtype, out); elementwise, so `out` may be `x`. */
    _Relu?: (xId: number, dtype: number, outId: number) => void;
  };
  dataIdMap: { get(dataId: tf.DataId): { memoryOffset: number; id: number } };
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
  incRef(dataId: tf.DataId): void;
}

type KernelArgs = {
  inputs: Record<string, TensorInfo | undefined>;
  backend: WasmBackend;
  attrs?: Record<string, unknown>;
};

/** tfjs-backend-wasm's code for float32 (its CppDType). */
const WASM_FLOAT32 = 0;
/** Products smaller than this many multiply-adds run in JavaScript (no FFI call). */
const SMALL_GEMM = 4096;
/** Products smaller than this many multiply-adds run on one BLAS thread. */
const PARALLEL_GEMM = 1 << 22;
/** Sums over fewer elements than this run in JavaScript (no FFI call). */
const SMALL_SUM = 4096;
/** A sum of everything adds up this many columns of the data first. */
const FULL_SUM_COLUMNS = 256;

/** The loaded library and its thread setting. */
interface BlasState {
  lib: BlasLibrary;
  maxThreads: number;
  threads: number;
  /** Reused scratch (patch matrices), grown on demand. */
  scratch: Float32Array;
  /** A second scratch (the output grid of a shifted convolution), grown on demand. */
  scratch2: Float32Array;
  /** A vector of ones for sums, grown on demand. */
  ones: Float32Array;
  /** Elements of the patch matrix a convolution builds at once (16 MiB). */
  im2colChunk: number;
}

let state: BlasState | undefined;

function blas(): BlasState {
  if (!state) throw new Error(`The "${BLAS_BACKEND}" backend is not registered`);
  return state;
}

/**
 * Products with a dimension below this run on one BLAS thread whatever their size: a
 * convolution's products (few output channels, or a filter gradient's small [K, N] result over
 * a long inner dimension) ran up to twice as slow on two threads as on one, where the bench
 * MLP's (every dimension ≥ 128) gain from two.
 */
const PARALLEL_MIN_DIM = 128;

/**
 * Sizes the BLAS pool for a product of `work` multiply-adds whose smallest dimension is
 * `minDim`.
 */
function threadsFor(s: BlasState, work: number, minDim = Infinity): void {
  const want = work < PARALLEL_GEMM || minDim < PARALLEL_MIN_DIM ? 1 : s.maxThreads;
  if (want !== s.threads) {
    s.lib.setThreads(want);
    s.threads = want;
  }
}

function scratch(s: BlasState, n: number): Float32Array {
  if (s.scratch.length < n) s.scratch = new Float32Array(Math.max(n, s.scratch.length * 2));
  return s.scratch.subarray(0, n);
}

function scratch2(s: BlasState, n: number): Float32Array {
  if (s.scratch2.length < n) s.scratch2 = new Float32Array(Math.max(n, s.scratch2.length * 2));
  return s.scratch2.subarray(0, n);
}

function ones(s: BlasState, n: number): Float32Array {
  if (s.ones.length < n) s.ones = new Float32Array(Math.max(n, s.ones.length * 2)).fill(1);
  return s.ones.subarray(0, n);
}

/**
 * Tuning knobs of the backend, for tests: the largest patch matrix a convolution builds at once
 * (elements; larger batches are done in chunks of images).
 */
export function blasTuning(): { im2colChunk: number } {
  return blas();
}

// ------------------------------------------------------------------ helpers ----

const wasmKernels = new Map<string, tf.KernelFunc>();

/** Runs the wasm backend's kernel `name` (the fallback of every kernel here). */
function wasm(name: string, args: KernelArgs): TensorInfo {
  let f = wasmKernels.get(name);
  if (!f) {
    const k = tf.getKernel(name, "wasm");
    if (!k) {
      throw new Error(
        `Kernel '${name}' is not available on the "${BLAS_BACKEND}" backend for these inputs ` +
          `(the wasm backend has none to fall back to)`,
      );
    }
    f = k.kernelFunc;
    wasmKernels.set(name, f);
  }
  return f(args as unknown as Parameters<tf.KernelFunc>[0]) as TensorInfo;
}

function size(shape: readonly number[]): number {
  let s = 1;
  for (const d of shape) s *= d;
  return s;
}

/**
 * The float32 values of a tensor as a view of the wasm heap. Views are invalidated when the
 * heap grows: take them after the last allocation of the kernel.
 */
function view(be: WasmBackend, t: TensorInfo): Float32Array {
  return new Float32Array(
    be.wasm.HEAPU8.buffer,
    be.dataIdMap.get(t.dataId).memoryOffset,
    size(t.shape),
  );
}

/** Index into an input of shape `inShape` broadcast to `outShape`, for flat output index `i`. */
function broadcastIndex(
  i: number,
  outShape: readonly number[],
  inShape: readonly number[],
): number {
  let idx = 0, inStride = 1;
  const off = outShape.length - inShape.length;
  for (let d = outShape.length - 1; d >= 0; d--) {
    const od = outShape[d];
    const coord = i % od;
    i = (i - coord) / od;
    const di = d - off;
    if (di >= 0) {
      const id = inShape[di];
      if (id !== 1) idx += coord * inStride;
      inStride *= id;
    }
  }
  return idx;
}

/**
 * C[m×n] (+)= op(A)·op(B) in JavaScript: products too small to be worth an FFI call, and int32
 * ones (BLAS has none; the wasm backend refuses them).
 */
function smallGemm<T extends Float32Array | Int32Array>(
  ta: boolean,
  tb: boolean,
  m: number,
  n: number,
  k: number,
  a: T,
  b: T,
  c: T,
  accumulate: boolean,
): void {
  const lda = ta ? m : k, ldb = tb ? k : n;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        s += (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
      }
      const o = i * n + j;
      c[o] = accumulate ? c[o] + s : s;
    }
  }
}

/** `c = op(a)·op(b) (+ c when beta is 1)`, row-major, by BLAS or (small) in JavaScript. */
function gemm(
  s: BlasState,
  ta: boolean,
  tb: boolean,
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  b: Float32Array,
  beta: 0 | 1,
  c: Float32Array,
): void {
  if (m === 0 || n === 0) return;
  if (k === 0) {
    if (beta === 0) c.fill(0);
    return;
  }
  const work = m * n * k;
  if (work < SMALL_GEMM) return smallGemm(ta, tb, m, n, k, a, b, c, beta === 1);
  threadsFor(s, work, Math.min(m, n, k));
  s.lib.sgemm(ta, tb, m, n, k, 1, a, ta ? m : k, b, tb ? k : n, beta, c, n);
}

interface GemmPlan {
  outShape: number[];
  m: number;
  n: number;
  k: number;
}

function planMatMul(a: TensorInfo, b: TensorInfo, ta: boolean, tb: boolean): GemmPlan {
  const ar = a.shape.length, br = b.shape.length;
  if (ar < 2 || br < 2) {
    throw new Error(`matMul needs tensors of rank ≥ 2, got shapes [${a.shape}] and [${b.shape}]`);
  }
  const m = ta ? a.shape[ar - 1] : a.shape[ar - 2];
  const k = ta ? a.shape[ar - 2] : a.shape[ar - 1];
  const kb = tb ? b.shape[br - 1] : b.shape[br - 2];
  const n = tb ? b.shape[br - 2] : b.shape[br - 1];
  if (k !== kb) {
    throw new Error(
      `Error in matMul: inner shapes (${k}) and (${kb}) of Tensors with shapes ${a.shape} and ` +
        `${b.shape} and transposeA=${ta} and transposeB=${tb} must match.`,
    );
  }
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(
    a.shape.slice(0, -2),
    b.shape.slice(0, -2),
  );
  return { outShape: [...outer, m, n], m, n, k };
}

/**
 * out[batch] = op(a[batch]) · op(b[batch]) (+ out[batch] when beta is 1, e.g. bias rows) for
 * every entry of the broadcast outer dimensions.
 */
function batchGemm(
  a: TensorInfo,
  b: TensorInfo,
  ta: boolean,
  tb: boolean,
  plan: GemmPlan,
  av: Float32Array,
  bv: Float32Array,
  out: Float32Array,
  beta: 0 | 1,
): void {
  const s = blas();
  const { m, n, k, outShape } = plan;
  const aOuter = a.shape.slice(0, -2), bOuter = b.shape.slice(0, -2);
  const outOuter = outShape.slice(0, -2);
  const batch = size(outOuter), batchA = size(aOuter), batchB = size(bOuter);
  // A stack of untransposed A against one B is a single product of (batch·m) rows.
  if (batchB === 1 && !ta && batchA === batch) {
    return gemm(s, false, tb, batch * m, n, k, av, bv, beta, out);
  }
  const aSize = m * k, bSize = k * n, cSize = m * n;
  for (let i = 0; i < batch; i++) {
    const ai = batchA === batch ? i : batchA === 1 ? 0 : broadcastIndex(i, outOuter, aOuter);
    const bi = batchB === batch ? i : batchB === 1 ? 0 : broadcastIndex(i, outOuter, bOuter);
    gemm(
      s,
      ta,
      tb,
      m,
      n,
      k,
      av.subarray(ai * aSize, (ai + 1) * aSize),
      bv.subarray(bi * bSize, (bi + 1) * bSize),
      beta,
      out.subarray(i * cSize, (i + 1) * cSize),
    );
  }
}

/** True when a bias of shape `bias` adds one value per column of an [..., n] output. */
function isRowBias(bias: readonly number[], n: number, outRank: number): boolean {
  if (bias.length > outRank || size(bias) !== n) return false;
  return bias.length === 0 ? n === 1 : bias[bias.length - 1] === n;
}

/** Fills `out` with copies of the row `bias`. */
function fillRows(out: Float32Array, bias: Float32Array): void {
  const n = bias.length;
  if (n === 1) out.fill(bias[0]);
  else for (let r = 0; r < out.length; r += n) out.set(bias, r);
}

/** Applies an activation in place; false for one not handled here (prelu; relu is wasm's). */
function applyActivation(out: Float32Array, activation: string, alpha: number): boolean {
  const len = out.length;
  switch (activation) {
    case "linear":
      return true;
    case "relu6":
      for (let i = 0; i < len; i++) {
        const v = out[i];
        out[i] = v < 0 ? 0 : v > 6 ? 6 : v;
      }
      return true;
    case "leakyrelu":
      for (let i = 0; i < len; i++) if (out[i] < 0) out[i] *= alpha;
      return true;
    case "elu":
      for (let i = 0; i < len; i++) {
        const v = out[i];
        if (v < 0) out[i] = Math.exp(v) - 1;
      }
      return true;
    case "sigmoid":
      for (let i = 0; i < len; i++) out[i] = 1 / (1 + Math.exp(-out[i]));
      return true;
    default:
      return false;
  }
}

/**
 * Adds a bias the product could not pre-fill and applies the activation, with the wasm kernels
 * where ours do not apply (a broadcast bias, prelu). Frees intermediate outputs.
 */
function finishFused(
  be: WasmBackend,
  info: TensorInfo,
  pendingBias: TensorInfo | undefined,
  activation: string,
  alpha: number,
  prelu: TensorInfo | undefined,
): TensorInfo {
  if (pendingBias) {
    const sum = wasm(tf.Add, { inputs: { a: info, b: pendingBias }, backend: be });
    be.disposeData(info.dataId);
    info = sum;
  }
  if (activation === "prelu") {
    const out = wasm(tf.Prelu, { inputs: { x: info, alpha: prelu }, backend: be });
    be.disposeData(info.dataId);
    return out;
  }
  if (activation === "relu") {
    // wasm's SIMD relu beats a JavaScript pass over the output, and runs in place on the
    // product we own: no second output to write.
    const relu = be.wasm._Relu;
    if (relu) {
      const id = be.dataIdMap.get(info.dataId).id;
      relu(id, WASM_FLOAT32, id);
      return info;
    }
    const out = wasm(tf.Relu, { inputs: { x: info }, backend: be });
    be.disposeData(info.dataId);
    return out;
  }
  if (!applyActivation(view(be, info), activation, alpha)) {
    be.disposeData(info.dataId);
    throw new Error(`Activation ${activation} has not been implemented for the blas backend.`);
  }
  return info;
}

// ----------------------------------------------------------------- products ----

/** An int32 batch product, in JavaScript. */
function intMatMul(be: WasmBackend, a: TensorInfo, b: TensorInfo, ta: boolean, tb: boolean) {
  const plan = planMatMul(a, b, ta, tb);
  const { m, n, k, outShape } = plan;
  const out = be.makeOutput(outShape, "int32");
  const iv = (t: TensorInfo) =>
    new Int32Array(be.wasm.HEAPU8.buffer, be.dataIdMap.get(t.dataId).memoryOffset, size(t.shape));
  const av = iv(a), bv = iv(b), ov = iv(out);
  const aOuter = a.shape.slice(0, -2), bOuter = b.shape.slice(0, -2);
  const outOuter = outShape.slice(0, -2);
  const aSize = m * k, bSize = k * n, cSize = m * n;
  for (let i = 0; i < size(outOuter); i++) {
    const ai = broadcastIndex(i, outOuter, aOuter), bi = broadcastIndex(i, outOuter, bOuter);
    smallGemm(
      ta,
      tb,
      m,
      n,
      k,
      av.subarray(ai * aSize, (ai + 1) * aSize),
      bv.subarray(bi * bSize, (bi + 1) * bSize),
      ov.subarray(i * cSize, (i + 1) * cSize),
      false,
    );
  }
  return out;
}

function batchMatMul(args: KernelArgs): TensorInfo {
  const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
  const be = args.backend;
  if (a.dtype === "int32" && b.dtype === "int32") {
    return intMatMul(be, a, b, Boolean(args.attrs?.transposeA), Boolean(args.attrs?.transposeB));
  }
  if (a.dtype !== "float32" || b.dtype !== "float32") return wasm(tf.BatchMatMul, args);
  const ta = Boolean(args.attrs?.transposeA), tb = Boolean(args.attrs?.transposeB);
  const plan = planMatMul(a, b, ta, tb);
  const out = be.makeOutput(plan.outShape, "float32");
  batchGemm(a, b, ta, tb, plan, view(be, a), view(be, b), view(be, out), 0);
  return out;
}

function fusedMatMul(args: KernelArgs): TensorInfo {
  const { a, b, bias, preluActivationWeights: prelu } = args.inputs as Record<string, TensorInfo>;
  const be = args.backend;
  const attrs = args.attrs ?? {};
  const activation = String(attrs.activation ?? "linear");
  if (
    a.dtype !== "float32" || b.dtype !== "float32" || (bias && bias.dtype !== "float32") ||
    (prelu && prelu.dtype !== "float32")
  ) {
    return wasm(tf._FusedMatMul, args);
  }
  const ta = Boolean(attrs.transposeA), tb = Boolean(attrs.transposeB);
  const plan = planMatMul(a, b, ta, tb);
  const info = be.makeOutput(plan.outShape, "float32");
  const out = view(be, info);
  const rowBias = bias !== undefined && isRowBias(bias.shape, plan.n, plan.outShape.length);
  if (rowBias) fillRows(out, view(be, bias));
  batchGemm(a, b, ta, tb, plan, view(be, a), view(be, b), out, rowBias ? 1 : 0);
  return finishFused(
    be,
    info,
    bias && !rowBias ? bias : undefined,
    activation,
    Number(attrs.leakyreluAlpha ?? 0.2),
    prelu,
  );
}

/**
 * `PerennialLinear` (see `fused.ts`): `x · w + bias` then an activation, the forward of nn's
 * `Linear` (and of a `Linear` followed by a relu) as one kernel.
 */
function linear(args: KernelArgs): TensorInfo {
  const { x, w, bias } = args.inputs;
  return fusedMatMul({
    inputs: bias ? { a: x, b: w, bias } : { a: x, b: w },
    backend: args.backend,
    attrs: { transposeA: false, transposeB: false, activation: args.attrs?.activation ?? "linear" },
  });
}

// ------------------------------------------------------------ convolution ----

type ConvInfo = tf.backend_util.Conv2DInfo;

function convInfoOf(
  xShape: number[],
  filterShape: number[],
  attrs: Record<string, unknown>,
  dilations: unknown,
): ConvInfo | undefined {
  const format = String(attrs.dataFormat ?? "NHWC");
  if (format !== "NHWC" && format !== "channelsLast") return undefined;
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides as number | [number, number],
    (dilations ?? 1) as number | [number, number],
    attrs.pad as "valid" | "same" | number,
    attrs.dimRoundingMode as "floor" | "round" | "ceil" | undefined,
    false,
    "channelsLast",
  );
}

/** Images per im2col chunk. */
function chunkImages(s: BlasState, c: ConvInfo): number {
  const perImage = c.outHeight * c.outWidth * c.filterHeight * c.filterWidth * c.inChannels;
  return Math.max(1, Math.min(c.batchSize, Math.floor(s.im2colChunk / Math.max(1, perImage))));
}

/**
 * Patches of images [b0, b0 + nb) of NHWC `x` as rows of `cols`: row (b, oy, ox) holds the
 * filter window in (ky, kx, c) order, zeros where it hangs over the padding.
 */
function im2col(x: Float32Array, c: ConvInfo, b0: number, nb: number, cols: Float32Array): void {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = c;
  const { filterHeight: KH, filterWidth: KW, strideHeight: SH, strideWidth: SW } = c;
  const { dilationHeight: DH, dilationWidth: DW } = c;
  const top = c.padInfo.top, left = c.padInfo.left;
  const K = KH * KW * C;
  let row = 0;
  for (let b = b0; b < b0 + nb; b++) {
    const xb = b * H * W * C;
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++, row += K) {
        let d = row;
        for (let ky = 0; ky < KH; ky++) {
          const iy = oy * SH - top + ky * DH;
          for (let kx = 0; kx < KW; kx++, d += C) {
            const ix = ox * SW - left + kx * DW;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
              cols.fill(0, d, d + C);
            } else {
              const src = xb + (iy * W + ix) * C;
              if (C === 1) cols[d] = x[src];
              else for (let ch = 0; ch < C; ch++) cols[d + ch] = x[src + ch];
            }
          }
        }
      }
    }
  }
}

/** The inverse scatter of {@link im2col}: adds each patch row back into NHWC `dx`. */
function col2im(cols: Float32Array, c: ConvInfo, b0: number, nb: number, dx: Float32Array): void {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = c;
  const { filterHeight: KH, filterWidth: KW, strideHeight: SH, strideWidth: SW } = c;
  const { dilationHeight: DH, dilationWidth: DW } = c;
  const top = c.padInfo.top, left = c.padInfo.left;
  const K = KH * KW * C;
  let row = 0;
  for (let b = b0; b < b0 + nb; b++) {
    const xb = b * H * W * C;
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++, row += K) {
        let d = row;
        for (let ky = 0; ky < KH; ky++) {
          const iy = oy * SH - top + ky * DH;
          for (let kx = 0; kx < KW; kx++, d += C) {
            const ix = ox * SW - left + kx * DW;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            const dst = xb + (iy * W + ix) * C;
            for (let ch = 0; ch < C; ch++) dx[dst + ch] += cols[d + ch];
          }
        }
      }
    }
  }
}

/** True when the filter is 1×1 with stride 1 and no padding: the patches are the input. */
function isPointwise(c: ConvInfo): boolean {
  return c.filterHeight === 1 && c.filterWidth === 1 && c.strideHeight === 1 &&
    c.strideWidth === 1 && c.padInfo.top === 0 && c.padInfo.left === 0 &&
    c.outHeight === c.inHeight && c.outWidth === c.inWidth;
}

/**
 * A stride-1 convolution computed on the zero-padded input grid (`Hp × Wp` positions per
 * image): the output at grid position q reads the window starting at q, so the filter tap
 * (ky, kx) is one product of the grid rows shifted by `ky·Wp + kx` with that tap's [C, O]
 * slice, and no patch matrix is built (one `sgemm` per tap instead of im2col's copy, which costs
 * more than the product on wide images of few channels). The positions past each row's valid
 * outputs are computed and dropped, so this is chosen only where they are few.
 */
interface Grid {
  /** Padded height and width. */
  hp: number;
  wp: number;
  /** Grid rows the products cover (every valid output position is below it). */
  span: number;
}

/** Largest share of grid positions to valid outputs for which {@link Grid} is used. */
const GRID_WASTE = 1.3;

function gridOf(c: ConvInfo, nb: number): Grid | undefined {
  if (
    c.strideHeight !== 1 || c.strideWidth !== 1 || c.dilationHeight !== 1 ||
    c.dilationWidth !== 1 || c.filterHeight * c.filterWidth === 1
  ) return undefined;
  const hp = c.outHeight + c.filterHeight - 1, wp = c.outWidth + c.filterWidth - 1;
  const { top, left } = c.padInfo;
  if (top < 0 || left < 0 || hp < c.inHeight + top || wp < c.inWidth + left) return undefined;
  if (hp * wp > GRID_WASTE * c.outHeight * c.outWidth) return undefined;
  return { hp, wp, span: nb * hp * wp - ((c.filterHeight - 1) * wp + c.filterWidth - 1) };
}

/** Images per chunk of a grid convolution (its two scratch grids within `im2colChunk`). */
function gridImages(s: BlasState, c: ConvInfo): number {
  const hp = c.outHeight + c.filterHeight - 1, wp = c.outWidth + c.filterWidth - 1;
  const perImage = hp * wp * Math.max(c.inChannels, c.outChannels);
  return Math.max(1, Math.min(c.batchSize, Math.floor(s.im2colChunk / perImage)));
}

/** Images [b0, b0 + nb) of NHWC `x` into the zero-padded grid `xp`. */
function padInto(x: Float32Array, c: ConvInfo, g: Grid, b0: number, nb: number, xp: Float32Array) {
  const { inHeight: H, inWidth: W, inChannels: C } = c;
  const { top, left } = c.padInfo;
  xp.fill(0);
  const row = W * C;
  for (let b = 0; b < nb; b++) {
    for (let y = 0; y < H; y++) {
      const src = ((b0 + b) * H + y) * row;
      xp.set(x.subarray(src, src + row), ((b * g.hp + y + top) * g.wp + left) * C);
    }
  }
}

/** Outputs (dy) of images [b0, b0 + nb) onto the grid `yp` at their window's corner, zeros elsewhere. */
function outputsInto(
  dy: Float32Array,
  c: ConvInfo,
  g: Grid,
  b0: number,
  nb: number,
  yp: Float32Array,
) {
  const { outHeight: OH, outWidth: OW, outChannels: O } = c;
  yp.fill(0);
  const row = OW * O;
  for (let b = 0; b < nb; b++) {
    for (let y = 0; y < OH; y++) {
      const src = ((b0 + b) * OH + y) * row;
      yp.set(dy.subarray(src, src + row), (b * g.hp + y) * g.wp * O);
    }
  }
}

/** The forward on the grid: out[b0..] (+)= Σ over taps of shifted xp · W[tap]. */
function gridForward(
  s: BlasState,
  x: Float32Array,
  w: Float32Array,
  c: ConvInfo,
  out: Float32Array,
  beta: 0 | 1,
  b0: number,
  nb: number,
  g: Grid,
): void {
  const { inChannels: C, outChannels: O, outHeight: OH, outWidth: OW } = c;
  const xp = scratch(s, nb * g.hp * g.wp * C);
  const yp = scratch2(s, g.span * O);
  padInto(x, c, g, b0, nb, xp);
  const taps = c.filterHeight * c.filterWidth, tap = C * O;
  for (let t = 0; t < taps; t++) {
    const off = (Math.floor(t / c.filterWidth) * g.wp + (t % c.filterWidth)) * C;
    gemm(
      s,
      false,
      false,
      g.span,
      O,
      C,
      xp.subarray(off, off + g.span * C),
      w.subarray(t * tap, (t + 1) * tap),
      t === 0 ? 0 : 1,
      yp,
    );
  }
  const row = OW * O;
  for (let b = 0; b < nb; b++) {
    for (let y = 0; y < OH; y++) {
      const src = (b * g.hp + y) * g.wp * O, dst = ((b0 + b) * OH + y) * row;
      if (beta === 0) out.set(yp.subarray(src, src + row), dst);
      else for (let j = 0; j < row; j++) out[dst + j] += yp[src + j];
    }
  }
}

/** The input gradient on the grid: dxp[q + tap] += dyp[q] · W[tap]ᵀ, then its interior. */
function gridBackpropInput(
  s: BlasState,
  dy: Float32Array,
  w: Float32Array,
  c: ConvInfo,
  dx: Float32Array,
  b0: number,
  nb: number,
  g: Grid,
): void {
  const { inChannels: C, outChannels: O, inHeight: H, inWidth: W } = c;
  const { top, left } = c.padInfo;
  const yp = scratch2(s, nb * g.hp * g.wp * O);
  const xp = scratch(s, nb * g.hp * g.wp * C);
  outputsInto(dy, c, g, b0, nb, yp);
  xp.fill(0);
  const taps = c.filterHeight * c.filterWidth, tap = C * O;
  const dyp = yp.subarray(0, g.span * O);
  for (let t = 0; t < taps; t++) {
    const off = (Math.floor(t / c.filterWidth) * g.wp + (t % c.filterWidth)) * C;
    gemm(
      s,
      false,
      true,
      g.span,
      C,
      O,
      dyp,
      w.subarray(t * tap, (t + 1) * tap),
      1,
      xp.subarray(off, off + g.span * C),
    );
  }
  const row = W * C;
  for (let b = 0; b < nb; b++) {
    for (let y = 0; y < H; y++) {
      const src = ((b * g.hp + y + top) * g.wp + left) * C;
      dx.set(xp.subarray(src, src + row), ((b0 + b) * H + y) * row);
    }
  }
}

/** The filter gradient on the grid: dW[tap] (+)= (shifted xp)ᵀ · dyp. */
function gridBackpropFilter(
  s: BlasState,
  x: Float32Array,
  dy: Float32Array,
  c: ConvInfo,
  dw: Float32Array,
  beta: 0 | 1,
  b0: number,
  nb: number,
  g: Grid,
): void {
  const { inChannels: C, outChannels: O } = c;
  const xp = scratch(s, nb * g.hp * g.wp * C);
  const yp = scratch2(s, nb * g.hp * g.wp * O);
  padInto(x, c, g, b0, nb, xp);
  outputsInto(dy, c, g, b0, nb, yp);
  const taps = c.filterHeight * c.filterWidth, tap = C * O;
  const dyp = yp.subarray(0, g.span * O);
  for (let t = 0; t < taps; t++) {
    const off = (Math.floor(t / c.filterWidth) * g.wp + (t % c.filterWidth)) * C;
    gemm(
      s,
      true,
      false,
      C,
      O,
      g.span,
      xp.subarray(off, off + g.span * C),
      dyp,
      beta,
      dw.subarray(t * tap, (t + 1) * tap),
    );
  }
}

/** NHWC convolution into `out` (+ out when beta is 1): im2col, then cols · W per chunk. */
function convForward(
  x: Float32Array,
  w: Float32Array,
  c: ConvInfo,
  out: Float32Array,
  beta: 0 | 1,
): void {
  const s = blas();
  const K = c.filterHeight * c.filterWidth * c.inChannels, N = c.outChannels;
  const perImage = c.outHeight * c.outWidth;
  if (isPointwise(c)) return gemm(s, false, false, c.batchSize * perImage, N, K, x, w, beta, out);
  if (gridOf(c, 1)) {
    const per = gridImages(s, c);
    for (let b0 = 0; b0 < c.batchSize; b0 += per) {
      const nb = Math.min(per, c.batchSize - b0);
      gridForward(s, x, w, c, out, beta, b0, nb, gridOf(c, nb)!);
    }
    return;
  }
  const per = chunkImages(s, c);
  for (let b0 = 0; b0 < c.batchSize; b0 += per) {
    const nb = Math.min(per, c.batchSize - b0);
    const rows = nb * perImage;
    const cols = scratch(s, rows * K);
    im2col(x, c, b0, nb, cols);
    const o = b0 * perImage * N;
    gemm(s, false, false, rows, N, K, cols, w, beta, out.subarray(o, o + rows * N));
  }
}

function conv2D(args: KernelArgs): TensorInfo {
  const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
  const be = args.backend;
  const attrs = args.attrs ?? {};
  if (x.dtype !== "float32" || filter.dtype !== "float32") return wasm(tf.Conv2D, args);
  const c = convInfoOf(x.shape, filter.shape, attrs, attrs.dilations);
  if (!c) return wasm(tf.Conv2D, args);
  const out = be.makeOutput(c.outShape, "float32");
  convForward(view(be, x), view(be, filter), c, view(be, out), 0);
  return out;
}

function fusedConv2D(args: KernelArgs): TensorInfo {
  const { x, filter, bias, preluActivationWeights: prelu } = args.inputs as Record<
    string,
    TensorInfo
  >;
  const be = args.backend;
  const attrs = args.attrs ?? {};
  const c = x.dtype === "float32" && filter.dtype === "float32" &&
      (!bias || bias.dtype === "float32") && (!prelu || prelu.dtype === "float32")
    ? convInfoOf(x.shape, filter.shape, attrs, attrs.dilations)
    : undefined;
  if (!c) return wasm(tf.FusedConv2D, args);
  const info = be.makeOutput(c.outShape, "float32");
  const out = view(be, info);
  const rowBias = bias !== undefined && isRowBias(bias.shape, c.outChannels, 4);
  if (rowBias) fillRows(out, view(be, bias));
  convForward(view(be, x), view(be, filter), c, out, rowBias ? 1 : 0);
  return finishFused(
    be,
    info,
    bias && !rowBias ? bias : undefined,
    String(attrs.activation ?? "linear"),
    Number(attrs.leakyreluAlpha ?? 0.2),
    prelu,
  );
}

function conv2DBackpropInput(args: KernelArgs): TensorInfo {
  const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
  const be = args.backend;
  const attrs = args.attrs ?? {};
  if (dy.dtype !== "float32" || filter.dtype !== "float32") {
    return wasm(tf.Conv2DBackpropInput, args);
  }
  const c = convInfoOf(attrs.inputShape as number[], filter.shape, attrs, 1);
  if (!c) return wasm(tf.Conv2DBackpropInput, args);
  const s = blas();
  const K = c.filterHeight * c.filterWidth * c.inChannels, N = c.outChannels;
  const perImage = c.outHeight * c.outWidth;
  const info = be.makeOutput(c.inShape, "float32");
  const dx = view(be, info), dyv = view(be, dy), w = view(be, filter);
  // Patch gradients dcols = dy · Wᵀ ([rows, N] · [N, K]), scattered back onto the image.
  if (isPointwise(c)) {
    gemm(s, false, true, c.batchSize * perImage, K, N, dyv, w, 0, dx);
    return info;
  }
  if (gridOf(c, 1)) {
    const per = gridImages(s, c);
    for (let b0 = 0; b0 < c.batchSize; b0 += per) {
      const nb = Math.min(per, c.batchSize - b0);
      gridBackpropInput(s, dyv, w, c, dx, b0, nb, gridOf(c, nb)!);
    }
    return info;
  }
  dx.fill(0);
  const per = chunkImages(s, c);
  for (let b0 = 0; b0 < c.batchSize; b0 += per) {
    const nb = Math.min(per, c.batchSize - b0);
    const rows = nb * perImage;
    const o = b0 * perImage * N;
    const cols = scratch(s, rows * K);
    gemm(s, false, true, rows, K, N, dyv.subarray(o, o + rows * N), w, 0, cols);
    col2im(cols, c, b0, nb, dx);
  }
  return info;
}

function conv2DBackpropFilter(args: KernelArgs): TensorInfo {
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const be = args.backend;
  const attrs = args.attrs ?? {};
  const c = x.dtype === "float32" && dy.dtype === "float32"
    ? convInfoOf(x.shape, attrs.filterShape as number[], attrs, 1)
    : undefined;
  if (!c) return wasm(tf.Conv2DBackpropFilter, args);
  const s = blas();
  const K = c.filterHeight * c.filterWidth * c.inChannels, N = c.outChannels;
  const perImage = c.outHeight * c.outWidth;
  const info = be.makeOutput(c.filterShape, "float32");
  const dw = view(be, info), xv = view(be, x), dyv = view(be, dy);
  // dW = Σ over chunks of colsᵀ · dy ([K, rows] · [rows, N]).
  if (isPointwise(c)) {
    gemm(s, true, false, K, N, c.batchSize * perImage, xv, dyv, 0, dw);
    return info;
  }
  if (c.batchSize === 0) dw.fill(0);
  if (gridOf(c, 1)) {
    const per = gridImages(s, c);
    for (let b0 = 0; b0 < c.batchSize; b0 += per) {
      const nb = Math.min(per, c.batchSize - b0);
      gridBackpropFilter(s, xv, dyv, c, dw, b0 === 0 ? 0 : 1, b0, nb, gridOf(c, nb)!);
    }
    return info;
  }
  const per = chunkImages(s, c);
  for (let b0 = 0; b0 < c.batchSize; b0 += per) {
    const nb = Math.min(per, c.batchSize - b0);
    const rows = nb * perImage;
    const o = b0 * perImage * N;
    const cols = scratch(s, rows * K);
    im2col(xv, c, b0, nb, cols);
    gemm(s, true, false, K, N, rows, cols, dyv.subarray(o, o + rows * N), b0 === 0 ? 0 : 1, dw);
  }
  return info;
}

// ------------------------------------------------------------------ pooling ----

/**
 * `MaxPoolGrad` (NHWC): each window's gradient goes to the first position holding its maximum,
 * as on the cpu backend. Scans a window once for all channels (the wasm kernel takes about ten
 * times longer on a CNN's pooling layers).
 */
function maxPoolGrad(args: KernelArgs): TensorInfo {
  const { dy, input } = args.inputs as { dy: TensorInfo; input: TensorInfo };
  const be = args.backend;
  const attrs = args.attrs ?? {};
  if (dy.dtype !== "float32" || input.dtype !== "float32" || input.shape.length !== 4) {
    return wasm(tf.MaxPoolGrad, args);
  }
  const c = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs.filterSize as number | [number, number],
    attrs.strides as number | [number, number],
    1,
    attrs.pad as "valid" | "same" | number,
    attrs.dimRoundingMode as "floor" | "round" | "ceil" | undefined,
  );
  const info = be.makeOutput([...input.shape], "float32");
  const dx = view(be, info), x = view(be, input), g = view(be, dy);
  dx.fill(0);
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = c;
  const { filterHeight: KH, filterWidth: KW, strideHeight: SH, strideWidth: SW } = c;
  const top = c.padInfo.top, left = c.padInfo.left;
  const best = new Float32Array(C), where = new Int32Array(C);
  for (let b = 0; b < c.batchSize; b++) {
    const xb = b * H * W * C;
    for (let oy = 0; oy < OH; oy++) {
      const y0 = Math.max(0, oy * SH - top), y1 = Math.min(H, oy * SH - top + KH);
      for (let ox = 0; ox < OW; ox++) {
        const x0 = Math.max(0, ox * SW - left), x1 = Math.min(W, ox * SW - left + KW);
        best.fill(-Infinity);
        where.fill(-1);
        for (let iy = y0; iy < y1; iy++) {
          for (let ix = x0; ix < x1; ix++) {
            const p = xb + (iy * W + ix) * C;
            for (let ch = 0; ch < C; ch++) {
              const v = x[p + ch];
              if (v > best[ch]) {
                best[ch] = v;
                where[ch] = p + ch;
              }
            }
          }
        }
        const o = ((b * OH + oy) * OW + ox) * C;
        for (let ch = 0; ch < C; ch++) if (where[ch] >= 0) dx[where[ch]] += g[o + ch];
      }
    }
  }
  return info;
}

// --------------------------------------------------------------- batch norm ----

/**
 * `FusedBatchNorm` (`tf.batchNorm`, a batch norm in evaluation mode) with per-channel statistics
 * of the last axis: `x · scale' + shift'` in one JavaScript pass, the factors folded per channel
 * first (the wasm kernel takes several times longer on a ResNet's activations). Other shapes
 * fall back to the wasm kernel.
 */
function fusedBatchNorm(args: KernelArgs): TensorInfo {
  const { x, mean, variance, offset, scale } = args.inputs;
  const be = args.backend;
  const c = x ? x.shape[x.shape.length - 1] : 0;
  const perChannel = (t: TensorInfo | undefined) =>
    t === undefined || (t.dtype === "float32" && size(t.shape) === c && t.shape.length <= 1);
  if (
    !x || !mean || !variance || x.dtype !== "float32" || x.shape.length < 1 ||
    ![mean, variance, offset, scale].every(perChannel)
  ) {
    return wasm(tf.FusedBatchNorm, args);
  }
  const eps = Number(args.attrs?.varianceEpsilon ?? 0.001);
  const info = be.makeOutput([...x.shape], "float32");
  const xv = view(be, x), out = view(be, info);
  const m = view(be, mean), v = view(be, variance);
  const sc = scale ? view(be, scale) : undefined, off = offset ? view(be, offset) : undefined;
  // Float64 factors: JavaScript's arithmetic is double, so x · a + b loses nothing to a large
  // mean.
  const a = new Float64Array(c), b = new Float64Array(c);
  for (let j = 0; j < c; j++) {
    a[j] = (sc ? sc[j] : 1) / Math.sqrt(v[j] + eps);
    b[j] = (off ? off[j] : 0) - m[j] * a[j];
  }
  const n = xv.length;
  for (let o = 0; o < n; o += c) for (let j = 0; j < c; j++) out[o + j] = xv[o + j] * a[j] + b[j];
  return info;
}

// ---------------------------------------------------------------- reductions ----

/** Axes of a reduction, sorted, non-negative; undefined when invalid or repeated. */
function reductionAxes(axis: unknown, rank: number): number[] | undefined {
  const list = axis == null
    ? Array.from({ length: rank }, (_, i) => i)
    : (Array.isArray(axis) ? axis : [axis]).map((a) => Number(a));
  const axes = list.map((a) => (a < 0 ? a + rank : a)).sort((x, y) => x - y);
  const ok = axes.every((a, i) =>
    Number.isInteger(a) && a >= 0 && a < rank && (i === 0 || a !== axes[i - 1])
  );
  return ok ? axes : undefined;
}

/**
 * `Sum` over leading axes (a bias gradient: the rows of [rows, inner] added up) or trailing
 * axes (each row summed) as a matrix-vector product with ones; other axes on the wasm kernel.
 */
function sum(args: KernelArgs): TensorInfo {
  const x = args.inputs.x!;
  const be = args.backend;
  const rank = x.shape.length;
  const axes = x.dtype === "float32" ? reductionAxes(args.attrs?.axis, rank) : undefined;
  const n = size(x.shape);
  if (!axes || axes.length === 0) return wasm(tf.Sum, args);
  const k = axes.length;
  const leading = axes[k - 1] === k - 1;
  const trailing = axes[0] === rank - k;
  if (!leading && !trailing) return wasm(tf.Sum, args);
  const outShape = args.attrs?.keepDims
    ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d))
    : x.shape.filter((_, i) => !axes.includes(i));
  const s = blas();
  const out = be.makeOutput(outShape, "float32");
  const xv = view(be, x), ov = view(be, out);
  if (n < SMALL_SUM) {
    // Small sums (a last layer's bias gradient) in JavaScript: the wasm kernel transposes first
    // for a leading axis, two kernels for a few hundred additions.
    const inner = leading ? n / size(x.shape.slice(0, k)) : size(x.shape.slice(rank - k));
    const rows = n / inner;
    if (leading) {
      ov.fill(0);
      for (let r = 0, o = 0; r < rows; r++, o += inner) {
        for (let j = 0; j < inner; j++) ov[j] += xv[o + j];
      }
    } else {
      for (let r = 0, o = 0; r < rows; r++, o += inner) {
        let acc = 0;
        for (let j = 0; j < inner; j++) acc += xv[o + j];
        ov[r] = acc;
      }
    }
    return out;
  }
  if (k === rank) {
    // Everything: the data as [rows, 256] (a product with ones gives the 256 column sums), then
    // those and the tail in JavaScript: one product of a single row of n (one long dot product)
    // runs far slower than this wide one.
    const inner = FULL_SUM_COLUMNS, rows = Math.floor(n / inner);
    const cols = scratch(s, inner);
    gemm(s, true, false, inner, 1, rows, xv, ones(s, rows), 0, cols);
    let acc = 0;
    for (let j = 0; j < inner; j++) acc += cols[j];
    for (let i = rows * inner; i < n; i++) acc += xv[i];
    ov[0] = acc;
  } else if (leading) {
    // [rows, inner]ᵀ · ones(rows)
    const rows = size(x.shape.slice(0, k)), inner = n / rows;
    gemm(s, true, false, inner, 1, rows, xv, ones(s, rows), 0, ov);
  } else {
    const inner = size(x.shape.slice(rank - k)), rows = n / inner;
    gemm(s, false, false, rows, 1, inner, xv, ones(s, inner), 0, ov);
  }
  return out;
}

// ------------------------------------------------------------------- copies ----

/**
 * `Slice` of float32 or int32 data: the block of trailing axes that stays contiguous is copied
 * whole, per position of the leading axes (wasm's kernel takes about as long as a convolution
 * on the rank-6 slice of a ResNet's zero-padding shortcut, which keeps one pixel per window).
 */
function slice(args: KernelArgs): TensorInfo {
  const x = args.inputs.x!;
  const be = args.backend;
  if (x.dtype !== "float32" && x.dtype !== "int32") return wasm(tf.Slice, args);
  const [begin, sz] = tf.slice_util.parseSliceParams(
    x as unknown as tf.Tensor,
    args.attrs?.begin as number | number[],
    args.attrs?.size as number | number[],
  );
  const shape = x.shape, rank = shape.length;
  const info = be.makeOutput([...sz], x.dtype);
  const n = size(sz);
  if (n === 0) return info;
  const off = be.dataIdMap.get(x.dataId).memoryOffset;
  const buf = be.wasm.HEAPU8.buffer;
  const xv = new Int32Array(buf, off, size(shape)); // 4-byte values, copied as bits
  const ov = new Int32Array(buf, be.dataIdMap.get(info.dataId).memoryOffset, n);
  // The last axis not taken whole, and the contiguous block from it to the end.
  let d = rank - 1;
  while (d > 0 && sz[d] === shape[d]) d--;
  const strides = new Array<number>(rank);
  strides[rank - 1] = 1;
  for (let i = rank - 2; i >= 0; i--) strides[i] = strides[i + 1] * shape[i + 1];
  const block = sz[d] * strides[d];
  const idx = new Array<number>(d).fill(0);
  let base = 0;
  for (let i = 0; i < d; i++) base += begin[i] * strides[i];
  base += begin[d] * strides[d];
  for (let o = 0; o < n; o += block) {
    let src = base;
    for (let i = 0; i < d; i++) src += idx[i] * strides[i];
    if (block < 64) { for (let j = 0; j < block; j++) ov[o + j] = xv[src + j]; }
    else ov.set(xv.subarray(src, src + block), o);
    for (let i = d - 1; i >= 0; i--) {
      if (++idx[i] < sz[i]) break;
      idx[i] = 0;
    }
  }
  return info;
}

/**
 * `Identity` (clone) shares the data instead of copying it, as `Reshape` already does on wasm
 * and `Identity` on cpu: tensors are immutable, and tfjs clones every tensor a gradient saves
 * (a matMul's inputs, a relu's input), so copying would add a pass over each of them to every
 * training step.
 */
function identity(args: KernelArgs): TensorInfo {
  const x = args.inputs.x!;
  if (x.dtype === "string" || x.dtype === "complex64") return wasm(tf.Identity, args);
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
}

/** The kernels this backend replaces, by kernel name (the others are the wasm backend's). */
export const BLAS_KERNELS: Readonly<Record<string, tf.KernelFunc>> = Object.freeze({
  [tf.BatchMatMul]: batchMatMul,
  [tf._FusedMatMul]: fusedMatMul,
  [LINEAR]: linear,
  [tf.Conv2D]: conv2D,
  [tf.FusedConv2D]: fusedConv2D,
  [tf.Conv2DBackpropInput]: conv2DBackpropInput,
  [tf.Conv2DBackpropFilter]: conv2DBackpropFilter,
  [tf.Sum]: sum,
  [tf.Identity]: identity,
  [tf.MaxPoolGrad]: maxPoolGrad,
  [tf.FusedBatchNorm]: fusedBatchNorm,
  [tf.Slice]: slice,
} as unknown as Record<string, tf.KernelFunc>);

// ------------------------------------------------------------- registration ----

/** Outcome of {@link registerBlasBackend}. */
export type BlasRegistration = { ok: true; lib: BlasLibrary } | { ok: false; reason: string };

/** Initializes the wasm backend (without leaving it active) and returns its instance. */
async function wasmInstance(): Promise<tf.KernelBackend> {
  let be = tf.findBackend("wasm");
  if (!be) {
    const before = tf.engine().backendName;
    if (!(await tf.setBackend("wasm"))) throw new Error("the wasm backend could not start");
    be = tf.findBackend("wasm")!;
    if (before && before !== "wasm") await tf.setBackend(before);
  }
  return be;
}

/**
 * Loads the BLAS library and registers the "blas" backend: the wasm backend's instance and
 * kernels, with {@link BLAS_KERNELS} replaced. Idempotent. Does not activate it: call
 * `tf.setBackend("blas")` (or `setBackend("blas")` of `lib/backend.ts`). Never throws for a
 * missing library or permission; `reason` then says what to do.
 */
export async function registerBlasBackend(): Promise<BlasRegistration> {
  if (state) return { ok: true, lib: state.lib };
  const loaded = loadBlas();
  if (!loaded.ok) return { ok: false, reason: loaded.reason };
  const lib = loaded.lib;
  let instance: tf.KernelBackend;
  try {
    instance = await wasmInstance();
  } catch (e) {
    return { ok: false, reason: `the wasm backend it builds on could not start: ${e}` };
  }
  const maxThreads = Math.max(1, lib.threads ?? 1);
  state = {
    lib,
    maxThreads,
    threads: maxThreads,
    scratch: new Float32Array(0),
    scratch2: new Float32Array(0),
    ones: new Float32Array(0),
    im2colChunk: 1 << 22,
  };
  // Priority 0: never chosen by tfjs on its own, only when asked for.
  tf.registerBackend(BLAS_BACKEND, () => instance, 0);
  for (const k of tf.getKernelsForBackend("wasm")) {
    if (k.kernelName in BLAS_KERNELS || tf.getKernel(k.kernelName, BLAS_BACKEND)) continue;
    tf.registerKernel({ ...k, backendName: BLAS_BACKEND });
  }
  for (const [kernelName, kernelFunc] of Object.entries(BLAS_KERNELS)) {
    tf.registerKernel({ kernelName, backendName: BLAS_BACKEND, kernelFunc });
  }
  setFusedBlas(lib, (work) => threadsFor(state!, work));
  return { ok: true, lib };
}
