/**
 * Loading a CBLAS library through Deno's foreign function interface.
 *
 * {@link loadBlas} looks for a library exporting `cblas_sgemm`: the path in env `OPENBLAS_LIB`,
 * then OpenBLAS (`libopenblas.so.0` on Linux, Homebrew's `libopenblas.dylib` on macOS), the
 * system CBLAS (`libcblas.so.3`, `libblas.so.3`) and on macOS the Accelerate framework. It needs
 * the `--allow-ffi` permission; without it, or without a library, it returns the reason (naming
 * the fix) instead of throwing, so that callers can fall back to another backend.
 *
 * Arrays are passed as `Float32Array`s (Deno's `"buffer"` FFI type): the pointer handed to C is
 * that of the view, byte offset included, and no copy is made.
 *
 * @module
 */

/** CBLAS constants (`CBLAS_ORDER`, `CBLAS_TRANSPOSE`). */
const CBLAS = Object.freeze({ RowMajor: 101, ColMajor: 102, NoTrans: 111, Trans: 112 });

const SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32", // order
      "i32", // transA
      "i32", // transB
      "i32", // M
      "i32", // N
      "i32", // K
      "f32", // alpha
      "buffer", // A
      "i32", // lda
      "buffer", // B
      "i32", // ldb
      "f32", // beta
      "buffer", // C
      "i32", // ldc
    ],
    result: "void",
  },
  // y += alpha · x and x *= alpha (the optimizers' in-place updates).
  cblas_saxpy: {
    parameters: ["i32", "f32", "buffer", "i32", "buffer", "i32"],
    result: "void",
    optional: true,
  },
  cblas_sscal: { parameters: ["i32", "f32", "buffer", "i32"], result: "void", optional: true },
  // OpenBLAS extensions: absent from Accelerate and the reference CBLAS.
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
} as const;

type BlasSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** A loaded CBLAS library. */
export interface BlasLibrary {
  /** The path or name it was opened with. */
  readonly path: string;
  /** Configuration string of OpenBLAS (`openblas_get_config`), else the path. */
  readonly config: string;
  /** Threads of OpenBLAS' pool, or undefined when the library does not say. */
  readonly threads: number | undefined;
  /**
   * `C = alpha · op(A) · op(B) + beta · C`, row-major; `op(X)` is X or Xᵀ. A is M×K after op,
   * B is K×N after op, C is M×N; `lda`, `ldb`, `ldc` are the row strides as stored.
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
  /**
   * `y = alpha · x + beta · y` over `n` elements, in place (`sscal` then `saxpy`; a JavaScript
   * loop when the library lacks them).
   */
  axpby(n: number, alpha: number, x: Float32Array, beta: number, y: Float32Array): void;
  /** Sets the size of OpenBLAS' thread pool (no-op for other libraries). */
  setThreads(n: number): void;
  /** Unloads the library. */
  close(): void;
}

/** Outcome of {@link loadBlas}: the library, or why none could be loaded. */
export type BlasLoadResult =
  | { ok: true; lib: BlasLibrary }
  | { ok: false; reason: string; tried: { path: string; error: string }[] };

/** The fix to print when no library loads, for this platform. */
export function installHint(os: string = Deno.build.os): string {
  if (os === "darwin") {
    return "Accelerate ships with macOS; or `brew install openblas` and set OPENBLAS_LIB to " +
      "its libopenblas.dylib";
  }
  if (os === "windows") return "install OpenBLAS and set OPENBLAS_LIB to libopenblas.dll";
  return "install OpenBLAS (Debian/Ubuntu: `apt-get install libopenblas0`) or set OPENBLAS_LIB " +
    "to a CBLAS library's path";
}

/** Library names tried, in order, on a platform (after env `OPENBLAS_LIB`). */
export function candidateLibraries(os: string = Deno.build.os): string[] {
  switch (os) {
    case "darwin":
      return [
        "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
        "/usr/local/opt/openblas/lib/libopenblas.dylib",
        "/System/Library/Frameworks/Accelerate.framework/Accelerate",
      ];
    case "windows":
      return ["libopenblas.dll", "openblas.dll"];
    default:
      return ["libopenblas.so.0", "libopenblas.so", "libcblas.so.3", "libblas.so.3"];
  }
}

/** True when the `ffi` permission is granted (never prompts). */
export function ffiGranted(): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
}

function envLib(): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: "OPENBLAS_LIB" }).state !== "granted") {
      return undefined;
    }
    return Deno.env.get("OPENBLAS_LIB") || undefined;
  } catch {
    return undefined;
  }
}

function readCString(ptr: Deno.PointerValue): string | undefined {
  if (ptr === null) return undefined;
  try {
    return new Deno.UnsafePointerView(ptr).getCString();
  } catch {
    return undefined;
  }
}

function wrap(path: string, dl: Deno.DynamicLibrary<typeof SYMBOLS>): BlasLibrary {
  const s: BlasSymbols = dl.symbols;
  const RowMajor = CBLAS.RowMajor, N = CBLAS.NoTrans, T = CBLAS.Trans;
  const gemm = s.cblas_sgemm;
  const getThreads = s.openblas_get_num_threads;
  const setThreads = s.openblas_set_num_threads;
  const config = s.openblas_get_config ? readCString(s.openblas_get_config()) : undefined;
  return {
    path,
    config: config ?? path,
    get threads() {
      return getThreads ? getThreads() : undefined;
    },
    sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
      gemm(RowMajor, transA ? T : N, transB ? T : N, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    },
    axpby(n, alpha, x, beta, y) {
      if (n <= 0) return;
      // sscal then saxpy: OpenBLAS' one-pass saxpby ran slower than the two inside the training
      // step (the bench MLP's update).
      if (s.cblas_saxpy && s.cblas_sscal) {
        if (beta !== 1) s.cblas_sscal(n, beta, y, 1);
        if (alpha !== 0) s.cblas_saxpy(n, alpha, x, 1, y, 1);
      } else {
        for (let i = 0; i < n; i++) y[i] = alpha * x[i] + beta * y[i];
      }
    },
    setThreads(n: number) {
      if (setThreads) setThreads(n);
    },
    close() {
      dl.close();
    },
  };
}

/** Checks the library on a 2×3 · 3×2 product against the known result. */
function selfTest(lib: BlasLibrary): string | undefined {
  const a = new Float32Array([1, 2, 3, 4, 5, 6]);
  const b = new Float32Array([7, 8, 9, 10, 11, 12]);
  const c = new Float32Array(4);
  lib.sgemm(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2);
  const want = [58, 64, 139, 154];
  if (want.some((v, i) => c[i] !== v)) return `cblas_sgemm self-test gave [${c}], want [${want}]`;
  const ct = new Float32Array(4);
  lib.sgemm(true, true, 2, 2, 3, 1, a, 2, b, 3, 0, ct, 2);
  // Both transposed: a read as a stored 3×2 matrix, b as a stored 2×3 one.
  const ref = [0, 0, 0, 0];
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 2; j++) {
      for (let p = 0; p < 3; p++) ref[i * 2 + j] += a[p * 2 + i] * b[j * 3 + p];
    }
  }
  if (ref.some((v, i) => ct[i] !== v)) {
    return `cblas_sgemm transposed self-test gave [${ct}], want [${ref}]`;
  }
  return undefined;
}

let cached: BlasLibrary | undefined;

/**
 * Opens the first CBLAS library that loads and passes a self-test: env `OPENBLAS_LIB` (read
 * when `--allow-env` covers it), then {@link candidateLibraries}, or `opts.paths` instead. The
 * library found is kept for later calls. Never throws: without `--allow-ffi` or without a
 * library, `ok` is false and `reason` says what to do.
 *
 * @example
 * ```ts ignore
 * const r = loadBlas();
 * if (r.ok) console.log(r.lib.path, r.lib.threads);
 * else console.log(r.reason);
 * ```
 */
export function loadBlas(opts: { paths?: string[] } = {}): BlasLoadResult {
  if (cached && !opts.paths) return { ok: true, lib: cached };
  if (!ffiGranted()) {
    return {
      ok: false,
      reason: "FFI is not permitted: run deno with --allow-ffi (or -A)",
      tried: [],
    };
  }
  const env = opts.paths ? undefined : envLib();
  const paths = opts.paths ?? [...(env ? [env] : []), ...candidateLibraries()];
  const tried: { path: string; error: string }[] = [];
  for (const path of paths) {
    let dl: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      dl = Deno.dlopen(path, SYMBOLS);
    } catch (e) {
      tried.push({ path, error: String((e as Error)?.message ?? e).split("\n")[0] });
      continue;
    }
    const lib = wrap(path, dl);
    const bad = selfTest(lib);
    if (bad) {
      tried.push({ path, error: bad });
      lib.close();
      continue;
    }
    if (!opts.paths) cached = lib;
    return { ok: true, lib };
  }
  const detail = tried.map((t) => `${t.path}: ${t.error}`).join("; ");
  return {
    ok: false,
    reason: `no CBLAS library found: ${installHint()}` + (detail ? ` (tried ${detail})` : ""),
    tried,
  };
}
