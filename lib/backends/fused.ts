/**
 * Fused kernels for the training step's small operations, where tfjs' fixed cost per kernel call
 * (engine bookkeeping, an allocation per output, a tape entry) outweighs the arithmetic:
 *
 * - `PerennialSoftmaxCrossEntropy`: mean softmax cross-entropy of logits `[n, C]` against int
 *   labels `[n]` and its gradient `(softmax − onehot) / n`, in one scan (the composite form is
 *   about a dozen kernels forward and as many backward). {@link crossEntropy} in `nn/losses.ts`
 *   uses it through a custom gradient (the kernel alone when no gradient is recorded).
 * - `PerennialDistillation`: LwF's distillation loss and its gradient, the same way.
 * - `PerennialBatchStats`: the template's on-device epoch accumulators (summed loss, count of
 *   correct top-1 predictions) updated from a batch in one kernel instead of six.
 * - `PerennialWeightedSquare`: a quadratic penalty `scale · Σ w (x − c)²` (EWC, SI) and its
 *   gradient in one pass, where the composite form is four kernels forward and five backward per
 *   parameter (a large share of an EWC step on the bench MLP).
 * - `PerennialLinear`: `x · w + bias` (then a relu) as one kernel ("blas": `blas.ts`; "wasm":
 *   wasm's fused product), with a gradient that computes only what the tape needs, and
 *   `PerennialReluGrad` for its relu. On "wasm", its backward transposes (`PerennialTranspose2D`)
 *   and sums the rows for the bias (`PerennialColumnSum`) in JavaScript, the same bits as wasm's
 *   Transpose and Sum, faster than those on minibatch shapes.
 * - `PerennialBatchNorm`: batch normalization in training mode (the batch's mean and biased
 *   variance per channel, then the normalized, scaled and shifted output) in two passes, and its
 *   gradient `PerennialBatchNormGrad` (input, weight and bias at once) in two more, where the
 *   composite form (`tf.moments`, `tf.batchNorm` and their gradients: broadcasts, tiles and
 *   reductions) is about thirty kernels and took half of a SlimResNet18 training step on "blas".
 *   `batchNorm` in `nn/norm.ts` uses it through {@link batchNormTrain}.
 * - {@link sgdStepInPlace}: SGD's update (momentum, dampening, weight decay, Nesterov) applied in
 *   place with BLAS `sscal`/`saxpy` on the "blas" backend instead of four kernels, four
 *   allocations and four passes per parameter.
 *
 * The loss and accumulator kernels are registered for the "wasm", "blas" and "cpu" backends; on
 * any other backend (tfjs-node, "webgpu") callers keep the composite form ({@link hasFusedKernel}),
 * and `strategy.plan()` lists them ({@link compositeKernels}).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { BlasLibrary } from "./ffi.ts";

/** Kernel name of the fused softmax cross-entropy (outputs: mean loss, gradient). */
export const SOFTMAX_CE = "PerennialSoftmaxCrossEntropy";
/**
 * Kernel name of the fused distillation loss (LwF): `KL(softmax(prev/T) ‖ softmax(out/T))` over
 * some output units, batch-averaged, and its gradient with respect to `out` (outputs: loss,
 * gradient).
 */
export const DISTILLATION = "PerennialDistillation";
/** Kernel name of the fused epoch accumulators (outputs: loss sum, correct count). */
export const BATCH_STATS = "PerennialBatchStats";

/**
 * Kernel name of a linear layer's forward, `x · w + bias` then "linear" or "relu" (the "blas"
 * backend's kernel is in `blas.ts`; the wasm one is wasm's fused product), with a gradient that
 * computes only the inputs' gradients the tape needs (the first layer's input gradient is never
 * computed).
 */
export const LINEAR = "PerennialLinear";
/** Kernel name of relu's backward from its output: `dy · step(y)` (heap backends). */
export const RELU_GRAD = "PerennialReluGrad";
/**
 * Kernel name of the weighted squared distance `scale · Σ w (x − c)²` and its gradient
 * `2 · scale · w (x − c)` (outputs: value, gradient): EWC's and SI's penalty per parameter.
 */
export const WEIGHTED_SQUARE = "PerennialWeightedSquare";
/**
 * Kernel name of a loss gradient times the incoming gradient, `dy · g` for a scalar `dy`, that
 * shares `g` instead of multiplying when `dy` is 1 (a loss added to others), read inside the
 * kernel: no read-back.
 */
export const SCALE_GRAD = "PerennialScaleGrad";
/**
 * Kernel name of a rank-2 float32 transpose on the wasm backend, in JavaScript where that beats
 * wasm's own (a minibatch's rows, e.g. 128×784), else wasm's.
 */
export const TRANSPOSE_2D = "PerennialTranspose2D";
/**
 * Kernel name of the rows of a rank-2 float32 tensor added up (a bias' gradient) on the wasm
 * backend: wasm's Sum over the first axis transposes first; this kernel adds the rows up where
 * they are, in JavaScript, with the same bits.
 */
export const COLUMN_SUM = "PerennialColumnSum";

/**
 * Kernel name of batch normalization in training mode over the last axis (the channels) of
 * `x`, with `weight` and `bias` per channel (outputs: `y`, the batch mean, the biased batch
 * variance). Its gradient is {@link BATCH_NORM_GRAD}.
 */
export const BATCH_NORM = "PerennialBatchNorm";
/**
 * Kernel name of {@link BATCH_NORM}'s backward (inputs `dy`, `x`, `mean`, `variance`, `weight`;
 * outputs: the gradients of `x`, `weight` and `bias`).
 */
export const BATCH_NORM_GRAD = "PerennialBatchNormGrad";

/** Backends whose tensors live on the wasm heap. */
export const HEAP_BACKENDS: ReadonlySet<string> = new Set(["wasm", "blas"]);

/**
 * True when the active backend copies the values `tf.tensor(values)` is given (the WebAssembly
 * heap backends), so that the caller may refill the same array for the next tensor; the cpu
 * backend keeps a reference to them instead.
 */
export function tensorCopiesValues(): boolean {
  return HEAP_BACKENDS.has(tf.getBackend());
}
/** Tensors written in place on a heap backend: see {@link heapInputs}. */
export interface HeapInputs {
  /** A new float32 tensor of `shape` whose values are not set yet (write them with `view`). */
  tensor(shape: number[]): tf.Tensor;
  /**
   * `t`'s memory as an array. Valid until the heap next grows (any new tensor may grow it):
   * write it at once, and take a new view for each use.
   */
  view(t: tf.Tensor): Float32Array;
}

/**
 * Writing a tensor's values in place, on the WebAssembly heap backends (undefined elsewhere):
 * a minibatch filled there skips the copy `tf.tensor(values)` makes.
 */
export function heapInputs(): HeapInputs | undefined {
  if (!HEAP_BACKENDS.has(tf.getBackend())) return undefined;
  const be = tf.backend() as unknown as HeapBackend;
  return {
    tensor(shape) {
      return tf.engine().makeTensorFromTensorInfo(be.makeOutput(shape, "float32"));
    },
    view(t) {
      if (t.isDisposed || !be.dataIdMap.get(t.dataId)) {
        throw new Error("view of a disposed tensor");
      }
      return heapIO(be).read(t) as Float32Array;
    },
  };
}

/** Backends the kernels are registered for. */
export const FUSED_BACKENDS: readonly string[] = ["wasm", "blas", "cpu"];

type TensorInfo = tf.TensorInfo;
type Values = Float32Array | Int32Array | Uint8Array;

/** The parts of tfjs-backend-wasm's backend used here. */
interface HeapBackend {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: tf.DataId): { memoryOffset: number; refCount?: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
}

/** The parts of tfjs-backend-cpu's backend used here. */
interface CpuBackend {
  readSync(dataId: tf.DataId): unknown;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Values): TensorInfo;
}

function size(shape: readonly number[]): number {
  let s = 1;
  for (const d of shape) s *= d;
  return s;
}

/** Reads and writes tensor data of one backend from inside a kernel. */
interface KernelIO {
  /** The values of an input (a view: read them before the first `output`). */
  read(t: TensorInfo): Values;
  /** A new output holding `values`. */
  output(shape: number[], dtype: tf.DataType, values: Values): TensorInfo;
  /** A new float32 output with unset values (take its `read` view after the last `empty`). */
  empty(shape: number[]): TensorInfo;
}

function heapIO(be: HeapBackend): KernelIO {
  return {
    read(t) {
      const off = be.dataIdMap.get(t.dataId)!.memoryOffset;
      const buf = be.wasm.HEAPU8.buffer;
      const n = size(t.shape);
      if (t.dtype === "int32") return new Int32Array(buf, off, n);
      if (t.dtype === "bool") return new Uint8Array(buf, off, n);
      return new Float32Array(buf, off, n);
    },
    output(shape, dtype, values) {
      const out = be.makeOutput(shape, dtype);
      const off = be.dataIdMap.get(out.dataId)!.memoryOffset;
      const buf = be.wasm.HEAPU8.buffer;
      const n = size(shape);
      const dst = dtype === "int32" ? new Int32Array(buf, off, n) : new Float32Array(buf, off, n);
      dst.set(values);
      return out;
    },
    empty(shape) {
      return be.makeOutput(shape, "float32");
    },
  };
}

function cpuIO(be: CpuBackend): KernelIO {
  return {
    read(t) {
      return be.readSync(t.dataId) as Values;
    },
    output(shape, dtype, values) {
      return be.makeTensorInfo(shape, dtype, values);
    },
    empty(shape) {
      return be.makeTensorInfo(shape, "float32", new Float32Array(size(shape)));
    },
  };
}

function ioFor(backendName: string, backend: unknown): KernelIO {
  return HEAP_BACKENDS.has(backendName)
    ? heapIO(backend as HeapBackend)
    : cpuIO(backend as CpuBackend);
}

/**
 * Mean softmax cross-entropy of `logits` (`n` rows of `c`) against `labels`, and its gradient
 * `(softmax − onehot) / n` into `grad`. Labels outside `0..c-1` give a NaN loss.
 */
export function softmaxCrossEntropy(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  n: number,
  c: number,
  grad: Float32Array,
): number {
  let total = 0;
  const inv = 1 / n;
  for (let i = 0, o = 0; i < n; i++, o += c) {
    let max = -Infinity;
    for (let j = 0; j < c; j++) if (logits[o + j] > max) max = logits[o + j];
    let sum = 0;
    for (let j = 0; j < c; j++) {
      const e = Math.exp(logits[o + j] - max);
      grad[o + j] = e;
      sum += e;
    }
    const y = labels[i];
    const valid = Number.isInteger(y) && y >= 0 && y < c;
    total += valid ? max + Math.log(sum) - logits[o + y] : NaN;
    const scale = inv / sum;
    for (let j = 0; j < c; j++) grad[o + j] *= scale;
    if (valid) grad[o + y] -= inv;
  }
  return total / n;
}

/** Count of rows whose first largest logit is at the label (tf.argMax's tie rule). */
export function countCorrect(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  n: number,
  c: number,
): number {
  let correct = 0;
  for (let i = 0, o = 0; i < n; i++, o += c) {
    let best = 0, max = logits[o];
    for (let j = 1; j < c; j++) {
      if (logits[o + j] > max) {
        max = logits[o + j];
        best = j;
      }
    }
    if (best === labels[i]) correct++;
  }
  return correct;
}

function rowsCols(shape: readonly number[]): [number, number] {
  const c = shape[shape.length - 1];
  return [c ? size(shape) / c : 0, c];
}

function softmaxCEKernel(backendName: string): tf.KernelFunc {
  return ({ inputs, backend }) => {
    const { logits, labels } = inputs as { logits: TensorInfo; labels: TensorInfo };
    const io = ioFor(backendName, backend);
    const [n, c] = rowsCols(logits.shape);
    const grad = new Float32Array(n * c);
    const loss = softmaxCrossEntropy(io.read(logits), io.read(labels), n, c, grad);
    return [
      io.output([], "float32", Float32Array.of(loss)),
      io.output([...logits.shape], "float32", grad),
    ];
  };
}

function batchStatsKernel(backendName: string): tf.KernelFunc {
  return ({ inputs, backend }) => {
    const { lossSum, correct, loss, logits, labels } = inputs as Record<string, TensorInfo>;
    const io = ioFor(backendName, backend);
    const [n, c] = rowsCols(logits.shape);
    const hits = countCorrect(io.read(logits), io.read(labels), n, c);
    const newLoss = io.read(lossSum)[0] + Math.fround(io.read(loss)[0] * n);
    const newCorrect = io.read(correct)[0] + hits;
    return [
      io.output([], "float32", Float32Array.of(newLoss)),
      io.output([], "float32", Float32Array.of(newCorrect)),
    ];
  };
}

/**
 * Batch mean of `KL(softmax(prev_U/T) ‖ softmax(out_U/T))` over the units `U` of rows of width
 * `w`, and its gradient with respect to `out` into `grad` (`(q − p) / (T·n)` on the units, 0
 * elsewhere).
 */
export function distillation(
  out: ArrayLike<number>,
  prev: ArrayLike<number>,
  n: number,
  w: number,
  units: readonly number[],
  temperature: number,
  grad: Float32Array,
): number {
  const u = units.length;
  const p = new Float64Array(u), q = new Float64Array(u);
  const invT = 1 / temperature, scale = 1 / (temperature * n);
  let total = 0;
  grad.fill(0);
  for (let i = 0, o = 0; i < n; i++, o += w) {
    let mp = -Infinity, mq = -Infinity;
    for (let j = 0; j < u; j++) {
      p[j] = prev[o + units[j]] * invT;
      q[j] = out[o + units[j]] * invT;
      if (p[j] > mp) mp = p[j];
      if (q[j] > mq) mq = q[j];
    }
    let sp = 0, sq = 0;
    for (let j = 0; j < u; j++) {
      sp += Math.exp(p[j] - mp);
      sq += Math.exp(q[j] - mq);
    }
    const lp = mp + Math.log(sp), lq = mq + Math.log(sq);
    for (let j = 0; j < u; j++) {
      const logP = p[j] - lp, logQ = q[j] - lq, pj = Math.exp(logP);
      total += pj * (logP - logQ);
      grad[o + units[j]] = (Math.exp(logQ) - pj) * scale;
    }
  }
  return total / n;
}

function distillationKernel(backendName: string): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { out, prev } = inputs as { out: TensorInfo; prev: TensorInfo };
    const { units, temperature } = attrs as unknown as { units: number[]; temperature: number };
    const io = ioFor(backendName, backend);
    const [n, w] = rowsCols(out.shape);
    const grad = new Float32Array(n * w);
    const loss = distillation(io.read(out), io.read(prev), n, w, units, temperature, grad);
    return [
      io.output([], "float32", Float32Array.of(loss)),
      io.output([...out.shape], "float32", grad),
    ];
  };
}

/**
 * Relu's gradient on the heap backends: `dy · step(y)` with wasm's SIMD kernels (two SIMD passes
 * beat one JavaScript pass on minibatch shapes).
 */
function reluGradKernel(): tf.KernelFunc {
  return (args) => {
    const { dy, y } = args.inputs as { dy: TensorInfo; y: TensorInfo };
    const be = args.backend as unknown as { disposeData(dataId: tf.DataId): boolean };
    const step = tf.getKernel("Step", "wasm")!.kernelFunc;
    const mul = tf.getKernel("Multiply", "wasm")!.kernelFunc;
    const mask = step({
      inputs: { x: y },
      backend: args.backend,
      attrs: { alpha: 0 },
    }) as TensorInfo;
    const out = mul({ inputs: { a: dy, b: mask }, backend: args.backend }) as TensorInfo;
    be.disposeData(mask.dataId);
    return out;
  };
}

/**
 * LINEAR on the wasm backend: its own fused product (XNNPACK, bias and relu fused), which is
 * right for the untransposed rank-2 operands used here.
 */
function wasmLinear(): tf.KernelFunc {
  return (args) => {
    const k = tf.getKernel("_FusedMatMul", "wasm");
    if (!k) throw new Error("The wasm backend has no _FusedMatMul kernel");
    const { x, w, bias } = args.inputs as Record<string, TensorInfo | undefined>;
    // The wasm kernel reads batched (rank-3) operands, as tf.fused.matMul hands them over: the
    // same data under a [1, rows, cols] shape.
    const as3d = (t: TensorInfo): TensorInfo => ({ ...t, shape: [1, ...t.shape] });
    const out = k.kernelFunc({
      ...args,
      inputs: bias ? { a: as3d(x!), b: as3d(w!), bias } : { a: as3d(x!), b: as3d(w!) },
      attrs: {
        transposeA: false,
        transposeB: false,
        activation: args.attrs?.activation ?? "linear",
        leakyreluAlpha: 0,
      },
    }) as TensorInfo;
    return { ...out, shape: out.shape.slice(1) };
  };
}

/**
 * `scale · Σ w (x − c)²` over all elements (accumulated in float64) and its gradient with
 * respect to `x`, `2 · scale · w (x − c)`, written into `grad`.
 */
export function weightedSquare(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  c: ArrayLike<number>,
  scale: number,
  grad: Float32Array,
): number {
  const twice = 2 * scale;
  let total = 0;
  for (let i = 0, n = grad.length; i < n; i++) {
    const d = x[i] - c[i];
    const wd = w[i] * d;
    total += wd * d;
    grad[i] = twice * wd;
  }
  return scale * total;
}

function weightedSquareKernel(backendName: string): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, weight, center } = inputs as Record<string, TensorInfo>;
    const scale = Number((attrs as { scale?: number }).scale ?? 1);
    for (const [name, t] of [["weight", weight], ["center", center]] as const) {
      if (t.shape.join() !== x.shape.join()) {
        throw new RangeError(
          `${WEIGHTED_SQUARE}: ${name} has shape [${t.shape}] but x has [${x.shape}]`,
        );
      }
    }
    const n = size(x.shape);
    if (HEAP_BACKENDS.has(backendName)) {
      // The gradient straight into its output (allocated first: a growing heap moves views).
      const be = backend as unknown as HeapBackend;
      const out = be.makeOutput([...x.shape], "float32");
      const io = heapIO(be);
      const grad = io.read(out) as Float32Array;
      const value = weightedSquare(io.read(x), io.read(weight), io.read(center), scale, grad);
      return [io.output([], "float32", Float32Array.of(value)), out];
    }
    const io = ioFor(backendName, backend);
    const grad = new Float32Array(n);
    const value = weightedSquare(io.read(x), io.read(weight), io.read(center), scale, grad);
    return [
      io.output([], "float32", Float32Array.of(value)),
      io.output([...x.shape], "float32", grad),
    ];
  };
}

function scaleGradKernel(backendName: string): tf.KernelFunc {
  return (args) => {
    const { dy, g } = args.inputs as { dy: TensorInfo; g: TensorInfo };
    const io = ioFor(backendName, args.backend);
    if (size(dy.shape) === 1 && dy.dtype === "float32" && io.read(dy)[0] === 1) {
      (args.backend as unknown as { incRef(dataId: tf.DataId): void }).incRef(g.dataId);
      return { dataId: g.dataId, shape: [...g.shape], dtype: g.dtype };
    }
    // The heap backends share wasm's Multiply (made with backendName "wasm" for both).
    const mul = tf.getKernel("Multiply", backendName);
    if (!mul) throw new Error(`The ${backendName} backend has no Multiply kernel`);
    return mul.kernelFunc({ inputs: { a: dy, b: g }, backend: args.backend, attrs: {} });
  };
}

/** Sides of the square blocks {@link transpose2d} copies at once (measured: 32 beat 8 and 16). */
const TRANSPOSE_BLOCK = 32;

/** `out` (`c` rows of `r`) = the transpose of `a` (`r` rows of `c`), block by block. */
export function transpose2d(a: Float32Array, r: number, c: number, out: Float32Array): void {
  const B = TRANSPOSE_BLOCK;
  for (let i0 = 0; i0 < r; i0 += B) {
    const ie = Math.min(i0 + B, r);
    for (let j0 = 0; j0 < c; j0 += B) {
      const je = Math.min(j0 + B, c);
      for (let j = j0; j < je; j++) {
        for (let i = i0, o = j * r + i0, p = i0 * c + j; i < ie; i++, o++, p += c) out[o] = a[p];
      }
    }
  }
}

/**
 * `out[j]` = the sum over rows of `a[i, j]` (`r` rows of `c`), added in float32 from the first
 * row to the last, as wasm's Sum does (the same bits).
 */
export function columnSum(a: Float32Array, r: number, c: number, out: Float32Array): void {
  out.fill(0);
  const f = Math.fround;
  let i = 0;
  // Four rows per pass over `out` (fewer loads and stores of it), each addition still rounded
  // to float32 in row order.
  for (; i + 4 <= r; i += 4) {
    const p = i * c;
    for (let j = 0; j < c; j++) {
      const q = p + j;
      out[j] = f(f(f(f(out[j] + a[q]) + a[q + c]) + a[q + 2 * c]) + a[q + 3 * c]);
    }
  }
  for (let p = i * c; i < r; i++) for (let j = 0; j < c; j++, p++) out[j] += a[p];
}

/** wasm's kernel `name`, for the inputs ours leave to it. */
function wasmKernel(name: string): tf.KernelFunc {
  const k = tf.getKernel(name, "wasm");
  if (!k) throw new Error(`The wasm backend has no ${name} kernel`);
  return k.kernelFunc;
}

/** Inputs of at least this many rows and columns transpose faster in wasm's kernel. */
const WASM_TRANSPOSE_FROM = 256;

function transpose2dKernel(): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    if (x.shape.length !== 2) {
      throw new Error(
        `${TRANSPOSE_2D} transposes rank-2 tensors, got shape [${x.shape}]: use tf.transpose`,
      );
    }
    const [r, c] = x.shape;
    if (x.dtype !== "float32" || Math.min(r, c) >= WASM_TRANSPOSE_FROM) {
      return wasmKernel("Transpose")({ ...args, attrs: { perm: [1, 0] } });
    }
    const be = args.backend as HeapBackend;
    const out = be.makeOutput([c, r], "float32");
    const io = heapIO(be);
    transpose2d(io.read(x) as Float32Array, r, c, io.read(out) as Float32Array);
    return out;
  };
}

function columnSumKernel(): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    if (x.shape.length !== 2 || x.dtype !== "float32") {
      return wasmKernel("Sum")({ ...args, attrs: { axis: [0], keepDims: false } });
    }
    const [r, c] = x.shape;
    const be = args.backend as HeapBackend;
    const out = be.makeOutput([c], "float32");
    const io = heapIO(be);
    columnSum(io.read(x) as Float32Array, r, c, io.read(out) as Float32Array);
    return out;
  };
}

// ------------------------------------------------------------------ batch norm ----

/**
 * Batch normalization of `rows` rows of `c` channels (channels last) by the batch statistics:
 * `y = (x − mean) / sqrt(var + eps) · weight + bias`, with the mean and the biased variance of
 * each channel written to `mean` and `variance`. Two passes: the sums of `x − x₀` and of its
 * square (float64, shifted by the first row `x₀` so that a large mean costs no precision), then
 * the output.
 */
export function batchNormForward(
  x: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  rows: number,
  c: number,
  eps: number,
  y: Float32Array,
  mean: Float32Array,
  variance: Float32Array,
): void {
  const n = rows * c;
  const shift0 = Float64Array.from(x.subarray(0, c));
  const s1 = new Float64Array(c), s2 = new Float64Array(c);
  for (let o = 0; o < n; o += c) {
    for (let j = 0; j < c; j++) {
      const d = x[o + j] - shift0[j];
      s1[j] += d;
      s2[j] += d * d;
    }
  }
  const scale = new Float64Array(c), shift = new Float64Array(c);
  for (let j = 0; j < c; j++) {
    const d = s1[j] / rows, m = shift0[j] + d, v = Math.max(0, s2[j] / rows - d * d);
    mean[j] = m;
    variance[j] = v;
    scale[j] = weight[j] / Math.sqrt(v + eps);
    shift[j] = bias[j] - m * scale[j];
  }
  for (let o = 0; o < n; o += c) {
    for (let j = 0; j < c; j++) y[o + j] = x[o + j] * scale[j] + shift[j];
  }
}

/**
 * The backward of {@link batchNormForward}: with `x̂ = (x − mean) / sqrt(var + eps)` and `m`
 * rows, `dbias = Σ dy`, `dweight = Σ dy · x̂` and
 * `dx = weight / sqrt(var + eps) · (dy − dbias / m − x̂ · dweight / m)` (the batch statistics'
 * own dependence on `x` included).
 */
export function batchNormBackward(
  dy: Float32Array,
  x: Float32Array,
  mean: Float32Array,
  variance: Float32Array,
  weight: Float32Array,
  rows: number,
  c: number,
  eps: number,
  dx: Float32Array,
  dweight: Float32Array,
  dbias: Float32Array,
): void {
  const n = rows * c;
  const m = Float64Array.from(mean);
  const inv = new Float64Array(c);
  for (let j = 0; j < c; j++) inv[j] = 1 / Math.sqrt(variance[j] + eps);
  const sdy = new Float64Array(c), sdyx = new Float64Array(c);
  for (let o = 0; o < n; o += c) {
    for (let j = 0; j < c; j++) {
      const g = dy[o + j];
      sdy[j] += g;
      sdyx[j] += g * (x[o + j] - m[j]);
    }
  }
  // dx = a·dy + b·x + d per channel, with the sums folded into the coefficients.
  const a = new Float64Array(c), b = new Float64Array(c), d = new Float64Array(c);
  for (let j = 0; j < c; j++) {
    dbias[j] = sdy[j];
    dweight[j] = sdyx[j] * inv[j];
    a[j] = weight[j] * inv[j];
    b[j] = -a[j] * inv[j] * inv[j] * sdyx[j] / rows;
    d[j] = -a[j] * sdy[j] / rows - b[j] * m[j];
  }
  for (let o = 0; o < n; o += c) {
    for (let j = 0; j < c; j++) dx[o + j] = a[j] * dy[o + j] + b[j] * x[o + j] + d[j];
  }
}

function batchNormKernel(backendName: string): tf.KernelFunc {
  return (args) => {
    const { x, weight, bias } = args.inputs as Record<string, TensorInfo>;
    const eps = Number(args.attrs?.eps ?? 1e-5);
    const c = x.shape[x.shape.length - 1], rows = size(x.shape) / c;
    const io = ioFor(backendName, args.backend);
    const y = io.empty([...x.shape]), mean = io.empty([c]), variance = io.empty([c]);
    batchNormForward(
      io.read(x) as Float32Array,
      io.read(weight) as Float32Array,
      io.read(bias) as Float32Array,
      rows,
      c,
      eps,
      io.read(y) as Float32Array,
      io.read(mean) as Float32Array,
      io.read(variance) as Float32Array,
    );
    return [y, mean, variance];
  };
}

function batchNormGradKernel(backendName: string): tf.KernelFunc {
  return (args) => {
    const { dy, x, mean, variance, weight } = args.inputs as Record<string, TensorInfo>;
    const eps = Number(args.attrs?.eps ?? 1e-5);
    const c = x.shape[x.shape.length - 1], rows = size(x.shape) / c;
    const io = ioFor(backendName, args.backend);
    const dx = io.empty([...x.shape]), dw = io.empty([c]), db = io.empty([c]);
    batchNormBackward(
      io.read(dy) as Float32Array,
      io.read(x) as Float32Array,
      io.read(mean) as Float32Array,
      io.read(variance) as Float32Array,
      io.read(weight) as Float32Array,
      rows,
      c,
      eps,
      io.read(dx) as Float32Array,
      io.read(dw) as Float32Array,
      io.read(db) as Float32Array,
    );
    return [dx, dw, db];
  };
}

// One kernel function per data layout: "wasm" and "blas" share theirs (and their instance).
const kernelFuncs = new Map<string, tf.KernelFunc>();
const KERNELS: readonly [string, (backendName: string) => tf.KernelFunc, boolean][] = [
  [SOFTMAX_CE, softmaxCEKernel, false],
  [BATCH_STATS, batchStatsKernel, false],
  [DISTILLATION, distillationKernel, false],
  [RELU_GRAD, reluGradKernel, true],
  [WEIGHTED_SQUARE, weightedSquareKernel, false],
  [SCALE_GRAD, scaleGradKernel, false],
  [BATCH_NORM, batchNormKernel, false],
  [BATCH_NORM_GRAD, batchNormGradKernel, false],
];
for (
  const [kernelName, make] of [
    [LINEAR, wasmLinear],
    [TRANSPOSE_2D, transpose2dKernel],
    [COLUMN_SUM, columnSumKernel],
  ] as const
) {
  if (!tf.getKernel(kernelName, "wasm")) {
    tf.registerKernel({ kernelName, backendName: "wasm", kernelFunc: make() });
  }
}
for (const backendName of FUSED_BACKENDS) {
  const layout = HEAP_BACKENDS.has(backendName) ? "heap" : backendName;
  for (const [kernelName, make, heapOnly] of KERNELS) {
    if (heapOnly && layout !== "heap") continue;
    const key = `${layout}/${kernelName}`;
    if (!kernelFuncs.has(key)) kernelFuncs.set(key, make(backendName));
    if (!tf.getKernel(kernelName, backendName)) {
      tf.registerKernel({ kernelName, backendName, kernelFunc: kernelFuncs.get(key)! });
    }
  }
}

/**
 * The backward of {@link linear}, one piece per function so that callers compute only what
 * they need: the tape's gradient below and the tape-free step (`lib/engine/direct.ts`) share them,
 * so both give the same values bit for bit.
 */
export const linearGrad = {
  /** The gradient before the activation: `dy · step(y)` for relu (`y` the layer's output). */
  preActivation(dy: tf.Tensor, y: tf.Tensor, activation: string): tf.Tensor {
    return activation === "relu" ? tf.engine().runKernel(RELU_GRAD, { dy, y }) as tf.Tensor : dy;
  },
  /** `dz · wᵀ`, the input's gradient. */
  input(dz: tf.Tensor, w: tf.Tensor): tf.Tensor {
    // wasm's products with a transpose flag are much slower than an explicit transpose first.
    return tf.getBackend() === "wasm"
      ? tf.matMul(dz as tf.Tensor2D, wasmTranspose(w))
      : tf.matMul(dz as tf.Tensor2D, w as tf.Tensor2D, false, true);
  },
  /** `xᵀ · dz`, the weight's gradient. */
  weight(x: tf.Tensor, dz: tf.Tensor): tf.Tensor {
    return tf.getBackend() === "wasm"
      ? tf.matMul(wasmTranspose(x), dz as tf.Tensor2D)
      : tf.matMul(x as tf.Tensor2D, dz as tf.Tensor2D, true, false);
  },
  /** The rows of `dz` added up, the bias' gradient. */
  bias(dz: tf.Tensor): tf.Tensor {
    return tf.getBackend() === "wasm"
      ? tf.engine().runKernel(COLUMN_SUM, { x: dz }) as tf.Tensor
      : tf.sum(dz, 0);
  },
};

/** The transpose of a rank-2 tensor on the wasm backend (see {@link TRANSPOSE_2D}). */
function wasmTranspose(t: tf.Tensor): tf.Tensor2D {
  return tf.engine().runKernel(TRANSPOSE_2D, { x: t }) as tf.Tensor2D;
}

tf.registerGradient({
  kernelName: LINEAR,
  inputsToSave: ["x", "w"],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [x, w, y] = saved;
    // Computed once, here: the per-input functions below run only for the inputs on the path.
    const dz = linearGrad.preActivation(dy as tf.Tensor, y, String(attrs.activation));
    return {
      x: () => linearGrad.input(dz, w),
      w: () => linearGrad.weight(x, dz),
      bias: () => linearGrad.bias(dz),
    };
  },
});

tf.registerGradient({
  kernelName: BATCH_NORM,
  inputsToSave: ["x", "weight"],
  outputsToSave: [false, true, true],
  gradFunc: (dys, saved, attrs) => {
    // The mean and variance outputs only feed the running statistics, off the loss's path.
    const dy = (Array.isArray(dys) ? dys[0] : dys) as tf.Tensor;
    const [x, weight, mean, variance] = saved;
    const [dx, dw, db] = tf.engine().runKernel(
      BATCH_NORM_GRAD,
      { dy, x, mean, variance, weight },
      attrs,
    ) as tf.Tensor[];
    return { x: () => dx, weight: () => dw, bias: () => db };
  },
});

/**
 * Batch normalization in training mode of the channels (last axis) of `x` by the batch's
 * statistics, as one kernel forward and one backward ({@link BATCH_NORM}, where
 * {@link hasFusedKernel} says so; callers keep the composite `tf.moments` + `tf.batchNorm`
 * form elsewhere): returns `y` and the batch mean and biased variance (not differentiable:
 * they feed the running statistics). Differentiable in `x`, `weight` and `bias`.
 */
export function batchNormTrain(
  x: tf.Tensor,
  weight: tf.Tensor,
  bias: tf.Tensor,
  eps: number,
): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  const [y, mean, variance] = tf.engine().runKernel(BATCH_NORM, { x, weight, bias }, {
    eps,
  }) as tf.Tensor[];
  return { y, mean, variance };
}

/** Activations {@link linear} fuses. */
export type LinearActivation = "linear" | "relu";

/**
 * `x · w + bias` then `activation`, as one kernel forward and only the needed gradients
 * backward, where {@link hasFusedKernel}(LINEAR) (the "blas" and "wasm" backends). `x` is `[n, in]`, `w`
 * `[in, out]`, `bias` `[out]`.
 */
export function linear(
  x: tf.Tensor2D,
  w: tf.Tensor2D,
  bias: tf.Tensor1D | undefined,
  activation: LinearActivation = "linear",
): tf.Tensor2D {
  const inputs: tf.NamedTensorMap = bias ? { x, w, bias } : { x, w };
  return tf.engine().runKernel(LINEAR, inputs, { activation }) as tf.Tensor2D;
}

/**
 * The fused kernels the training step and its losses may call, each with the composite form its
 * callers take on a backend that lacks it.
 */
export const FUSED_KERNELS: readonly { readonly name: string; readonly composite: string }[] = [
  { name: LINEAR, composite: "matMul + add (+ relu), tfjs' gradients or explicit transposes" },
  { name: SOFTMAX_CE, composite: "logSoftmax, oneHot, mul, sum, mean and their gradients" },
  { name: DISTILLATION, composite: "softmax and logSoftmax over the units and their gradients" },
  { name: WEIGHTED_SQUARE, composite: "sub, square, mul, sum and their gradients" },
  { name: BATCH_STATS, composite: "argMax, equal, cast, sum and add" },
];

/**
 * The fused kernels of {@link FUSED_KERNELS} missing on the active backend, as
 * `"<kernel> → <composite form>"`: their callers take the composite form there.
 */
export function compositeKernels(): string[] {
  return FUSED_KERNELS.filter((k) => !hasFusedKernel(k.name)).map((k) =>
    `${k.name} → ${k.composite}`
  );
}

/** True when the fused kernel `name` runs on the active backend. */
export function hasFusedKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/** True while tfjs records operations for a gradient (inside `tf.grad`, `variableGrads`, ...). */
function tapeOn(): boolean {
  const engine = tf.engine() as unknown as { isTapeOn?: () => boolean };
  return engine.isTapeOn ? engine.isTapeOn() : true;
}

/**
 * A scalar loss of `z` from a kernel that returns `[loss, dLoss/dz]`, as a differentiable op: one
 * kernel forward, one multiplication by the incoming gradient backward. The kernel's other
 * inputs (labels, a teacher's outputs) are constants.
 */
function lossWithGradient(
  kernelName: string,
  zName: string,
  z: tf.Tensor,
  constants: tf.NamedTensorMap,
  attrs?: tf.NamedAttrMap,
): tf.Scalar {
  if (!tapeOn()) {
    // No gradient is being recorded (evaluation): the kernel alone, its gradient dropped.
    const [loss, grad] = tf.engine().runKernel(
      kernelName,
      { ...constants, [zName]: z },
      attrs,
    ) as tf.Tensor[];
    grad.dispose();
    return loss as tf.Scalar;
  }
  const f = tf.customGrad(
    ((zz: tf.Tensor, save: (ts: tf.Tensor[]) => void) => {
      const inputs = { ...constants, [zName]: zz };
      const [loss, grad] = tf.engine().runKernel(kernelName, inputs, attrs) as tf.Tensor[];
      save([grad]);
      return {
        value: loss,
        // A loss added to others gets dy = 1: the gradient as computed, no multiplication.
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
          hasFusedKernel(SCALE_GRAD)
            ? tf.engine().runKernel(SCALE_GRAD, { dy, g: saved[0] }) as tf.Tensor
            : tf.mul(dy, saved[0]),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  ) as unknown as (zz: tf.Tensor) => tf.Tensor;
  return f(z) as tf.Scalar;
}

/**
 * Mean softmax cross-entropy with a one-kernel forward and a one-kernel backward (the gradient
 * is computed with the loss). Needs {@link hasFusedKernel}(SOFTMAX_CE).
 */
export function fusedSoftmaxCrossEntropy(logits: tf.Tensor, labels: tf.Tensor): tf.Scalar {
  return lossWithGradient(SOFTMAX_CE, "logits", logits, { labels });
}

/**
 * {@link distillation} as a differentiable op (gradient with respect to `out` only; `prev` is the
 * teacher's constant output). Needs {@link hasFusedKernel}(DISTILLATION); `units` sorted,
 * distinct and in range.
 */
export function fusedDistillation(
  out: tf.Tensor,
  prev: tf.Tensor,
  units: readonly number[],
  temperature: number,
): tf.Scalar {
  const attrs = { units: [...units], temperature } as unknown as tf.NamedAttrMap;
  return lossWithGradient(DISTILLATION, "out", out, { prev }, attrs);
}

/**
 * {@link distillation}'s value and its gradient with respect to `out`, from one kernel and
 * without the tape (the values {@link fusedDistillation} computes). Needs
 * {@link hasFusedKernel}(DISTILLATION); `units` sorted, distinct and in range.
 */
export function distillationWithGrad(
  out: tf.Tensor,
  prev: tf.Tensor,
  units: readonly number[],
  temperature: number,
): [tf.Scalar, tf.Tensor] {
  const attrs = { units: [...units], temperature } as unknown as tf.NamedAttrMap;
  return tf.engine().runKernel(DISTILLATION, { out, prev }, attrs) as [tf.Scalar, tf.Tensor];
}

/**
 * `scale · Σ weight · (x − center)²` as a differentiable op (gradient with respect to `x` only;
 * `weight` and `center` are constants of `x`'s shape): one kernel forward, none backward where
 * {@link hasFusedKernel}(WEIGHTED_SQUARE), else the composite form.
 */
export function weightedSquaredDistance(
  x: tf.Tensor,
  weight: tf.Tensor,
  center: tf.Tensor,
  scale = 1,
): tf.Scalar {
  if (
    x.dtype === "float32" && weight.dtype === "float32" && center.dtype === "float32" &&
    hasFusedKernel(WEIGHTED_SQUARE)
  ) {
    return lossWithGradient(WEIGHTED_SQUARE, "x", x, { weight, center }, {
      scale,
    } as unknown as tf.NamedAttrMap);
  }
  return tf.tidy(() => tf.mul(tf.sum(tf.mul(weight, tf.square(tf.sub(x, center)))), scale));
}

/**
 * The epoch accumulators after a batch: `lossSum + loss · n` and `correct + hits`, where hits
 * counts rows of `logits` whose top-1 class is the label. One kernel where the fused kernels
 * run, else the composite form.
 */
export function accumulateBatch(
  lossSum: tf.Tensor,
  correct: tf.Tensor,
  loss: tf.Tensor,
  logits: tf.Tensor,
  labels: tf.Tensor,
): [tf.Scalar, tf.Scalar] {
  if (logits.dtype === "float32" && labels.dtype === "int32" && hasFusedKernel(BATCH_STATS)) {
    return tf.engine().runKernel(BATCH_STATS, { lossSum, correct, loss, logits, labels }) as [
      tf.Scalar,
      tf.Scalar,
    ];
  }
  return tf.tidy(() => {
    const n = logits.shape[0];
    const hits = tf.sum(tf.cast(tf.equal(tf.argMax(logits, -1), labels), "float32"));
    return [tf.add(lossSum, tf.mul(loss, n)), tf.add(correct, hits)] as [tf.Scalar, tf.Scalar];
  });
}

// ------------------------------------------------------------------ SGD in place ----

let blasLib: BlasLibrary | undefined;
let sizeThreads: (work: number) => void = () => {};

/**
 * Called by the "blas" backend when it loads its library; `threadsFor(work)` sizes the library's
 * thread pool for an operation of `work` multiply-adds.
 */
export function setFusedBlas(
  lib: BlasLibrary | undefined,
  threadsFor: (work: number) => void = () => {},
): void {
  blasLib = lib;
  sizeThreads = threadsFor;
}

/** SGD hyper-parameters (PyTorch's semantics). */
export interface SgdConfig {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

/**
 * One SGD step for parameter `p` with gradient `g` and momentum buffer `buf` (undefined without
 * momentum), with BLAS on the "blas" backend, in place into `buf` and into `p` unless its data is
 * shared with another tensor (then into a new buffer the variable takes over):
 * `buf = m·buf + (1−d)·(g + wd·p)`, then `p −= lr·buf` (Nesterov: `p −= lr·(g + wd·p + m·buf)`).
 * Returns false, changing nothing, where it does not apply (another backend, a shared or
 * non-float32 tensor, a shared momentum buffer, a first momentum step); the caller then takes
 * the composite path.
 */
export function sgdStepInPlace(
  p: tf.Variable,
  g: tf.Tensor,
  buf: tf.Variable | undefined,
  c: SgdConfig,
): boolean {
  const lib = blasLib;
  if (!lib || tf.getBackend() !== "blas" || g.dtype !== "float32" || p.dtype !== "float32") {
    return false;
  }
  if (c.momentum && !buf) return false;
  const be = tf.backend() as unknown as HeapBackend;
  const n = p.size;
  const pd = be.dataIdMap.get(p.dataId), gd = be.dataIdMap.get(g.dataId);
  const bd = buf ? be.dataIdMap.get(buf.dataId) : undefined;
  if (!pd || !gd || g.size !== n || (buf && (!bd || buf.size !== n || bd.refCount !== 1))) {
    return false;
  }
  // The parameter is usually shared with the tape's saved copies until the iteration ends: then
  // the update goes to a new buffer that the variable takes over (its old data stays intact).
  let target: TensorInfo | undefined;
  if (pd.refCount !== 1) target = be.makeOutput([...p.shape], "float32");
  const heap = be.wasm.HEAPU8.buffer;
  const f32 = (offset: number) => new Float32Array(heap, offset, n);
  const pv = f32(pd.memoryOffset), gv = f32(gd.memoryOffset);
  const bv = bd ? f32(bd.memoryOffset) : undefined;
  const out = target ? f32(be.dataIdMap.get(target.dataId)!.memoryOffset) : pv;
  if (target) out.set(pv);
  const { lr, momentum: m, weightDecay: wd } = c;
  // One thread: OpenBLAS' threaded level-1 routines wait on the pool and ran slower than one
  // thread on these sizes.
  sizeThreads(0);
  if (!bv) {
    lib.axpby(n, -lr, gv, 1 - lr * wd, out);
  } else {
    const d = 1 - c.dampening;
    lib.axpby(n, d, gv, m, bv);
    if (wd) lib.axpby(n, d * wd, pv, 1, bv);
    if (c.nesterov) {
      lib.axpby(n, -lr, gv, 1 - lr * wd, out);
      lib.axpby(n, -lr * m, bv, 1, out);
    } else {
      lib.axpby(n, -lr, bv, 1, out);
    }
  }
  if (target) {
    const t = tf.engine().makeTensorFromTensorInfo(target);
    p.assign(t);
    t.dispose();
  }
  return true;
}
