/**
 * Small dense quadratic programs with non-negativity constraints, solved exactly in Float64 by an
 * active-set method, and the dual problem of Gradient Episodic Memory (GEM) built on it.
 *
 * GEM (Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017)
 * replaces the gradient `g` of the current minibatch by the closest vector `g̃` (in Euclidean
 * norm) whose dot product with the gradient `G_k` of every past experience's memory is
 * non-negative:
 *
 *     minimize ½‖z − g‖²   subject to   G z ≥ 0          (G: t × p, one row per past experience)
 *
 * Its dual has only `t` variables (one per past experience, t ≪ p):
 *
 *     minimize ½ vᵀ(G Gᵀ)v + (G g)ᵀv   subject to   v ≥ 0,        then   g̃ = Gᵀv + g.
 *
 * This is exactly what Avalanche's `GEMPlugin.solve_quadprog` hands to `quadprog.solve_qp(P, a,
 * C, b)` (which minimizes ½xᵀPx − aᵀx subject to Cᵀx ≥ b) with `P = G Gᵀ + 10⁻³ I`,
 * `a = −G g`, `C = I` and `b = memory_strength`: the memory strength γ is a lower bound on the
 * multipliers, `v ≥ γ`, which pushes `g̃` further into the directions of the memories (γ = 0 is
 * the exact projection). The 10⁻³ ridge is there because quadprog needs a strictly positive
 * definite `P`; {@link solveNonNegativeQP} does not, so the ridge is an option here (`eps`,
 * default 0) and the projection is exact by default.
 *
 * @module
 */
import { checkOptions, type OptionSpec } from "../options.ts";

/** A square matrix: rows of numbers, or a row-major flat array of `n²` values. */
export type MatrixInput = readonly (readonly number[])[] | ArrayLike<number>;

/** Options of {@link solveNonNegativeQP}. */
export interface QPOptions {
  /**
   * Relative tolerance of the optimality test: a gradient entry counts as zero when its magnitude
   * is at most `tol × scale`, with `scale` the largest magnitude in `P` times `max(1, max x)` plus
   * the largest magnitude in `q`. @default 1e-10
   */
  tol?: number;
  /** Cap on the active-set steps (each solves one small linear system). @default 50·n + 100 */
  maxIterations?: number;
}

/** The keys of {@link QPOptions}, for checking what users pass. */
const QP_OPTIONS: OptionSpec<QPOptions> = { tol: "number", maxIterations: "integer" };

/** What {@link solveNonNegativeQP} returns. */
export interface QPResult {
  /** The minimizer (all entries ≥ 0). */
  x: Float64Array;
  /** Linear systems solved (active-set steps). */
  iterations: number;
  /** True when `x` satisfies the KKT conditions within the tolerance. */
  converged: boolean;
  /**
   * Largest natural KKT residual `|min(x_i, (Px + q)_i)|` (0 at the exact solution), in the units
   * of `Px + q`.
   */
  kktResidual: number;
  /** Objective value ½xᵀPx + qᵀx. */
  objective: number;
  /** Indices where `x > 0` (the free set of the final active-set step), ascending. */
  support: number[];
}

function toFlatMatrix(P: MatrixInput, what: string): { m: Float64Array; n: number } {
  const rows = P as readonly (readonly number[])[];
  if (P && typeof P === "object" && P.length > 0 && Array.isArray(rows[0])) {
    const n = rows.length;
    const m = new Float64Array(n * n);
    rows.forEach((r, i) => {
      if (!r || r.length !== n) {
        throw new RangeError(
          `${what} must be square: row ${i} has ${r?.length} entries for ${n} rows`,
        );
      }
      for (let j = 0; j < n; j++) m[i * n + j] = r[j];
    });
    return { m, n };
  }
  if (!P || typeof (P as ArrayLike<number>).length !== "number") {
    throw new TypeError(`${what} must be a square matrix (rows or a flat array), got ${String(P)}`);
  }
  const flat = P as ArrayLike<number>;
  const n = Math.round(Math.sqrt(flat.length));
  if (n * n !== flat.length) {
    throw new RangeError(
      `${what} as a flat array needs n² values, got ${flat.length}: pass rows or n×n values`,
    );
  }
  return { m: Float64Array.from(flat), n };
}

/**
 * Cholesky solve of the sub-system `P[S,S] z = rhs` (S: `idx`). Returns undefined when the
 * sub-matrix is not numerically positive definite.
 */
function choleskySolve(
  P: Float64Array,
  n: number,
  idx: number[],
  rhs: Float64Array,
  ridge: number,
): Float64Array | undefined {
  const k = idx.length;
  const L = new Float64Array(k * k);
  let maxDiag = 0;
  for (const i of idx) maxDiag = Math.max(maxDiag, Math.abs(P[i * n + i]));
  const floor = 1e-13 * maxDiag;
  for (let a = 0; a < k; a++) {
    for (let b = 0; b <= a; b++) {
      let s = P[idx[a] * n + idx[b]] + (a === b ? ridge : 0);
      for (let c = 0; c < b; c++) s -= L[a * k + c] * L[b * k + c];
      if (a === b) {
        if (!(s > floor) || !(s > 0)) return undefined;
        L[a * k + a] = Math.sqrt(s);
      } else {
        L[a * k + b] = s / L[b * k + b];
      }
    }
  }
  const y = new Float64Array(k);
  for (let a = 0; a < k; a++) {
    let s = rhs[a];
    for (let c = 0; c < a; c++) s -= L[a * k + c] * y[c];
    y[a] = s / L[a * k + a];
  }
  const z = new Float64Array(k);
  for (let a = k - 1; a >= 0; a--) {
    let s = y[a];
    for (let c = a + 1; c < k; c++) s -= L[c * k + a] * z[c];
    z[a] = s / L[a * k + a];
  }
  return z;
}

/** Minimizer of the QP restricted to `free` (other entries 0), or undefined when singular. */
function subproblem(
  P: Float64Array,
  q: Float64Array,
  n: number,
  free: number[],
): Float64Array | undefined {
  const rhs = Float64Array.from(free, (i) => -q[i]);
  let z = choleskySolve(P, n, free, rhs, 0);
  if (!z) {
    // Rank-deficient in floating point (linearly dependent rows of G, for GEM): a tiny ridge
    // picks the minimum-norm-like solution of the consistent system.
    let maxDiag = 0;
    for (const i of free) maxDiag = Math.max(maxDiag, Math.abs(P[i * n + i]));
    if (maxDiag === 0) return undefined;
    z = choleskySolve(P, n, free, rhs, 1e-10 * maxDiag);
    if (!z) return undefined;
  }
  const x = new Float64Array(n);
  free.forEach((i, a) => (x[i] = z![a]));
  return x;
}

function gradientOf(P: Float64Array, q: Float64Array, n: number, x: Float64Array): Float64Array {
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = q[i];
    for (let j = 0; j < n; j++) s += P[i * n + j] * x[j];
    w[i] = s;
  }
  return w;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/**
 * Solves `minimize ½ xᵀPx + qᵀx subject to x ≥ 0` for a small dense symmetric positive
 * semi-definite `P` (n × n) exactly, in Float64.
 *
 * The method is Lawson and Hanson's active-set algorithm for non-negative least squares, run on
 * the normal equations (Bro and De Jong's "fast NNLS" form): starting from x = 0, it frees the
 * variable with the most negative gradient, solves the unconstrained problem on the free set by
 * Cholesky, and steps back to the boundary whenever that solution leaves the orthant. It ends in
 * a finite number of steps at the point satisfying the KKT conditions `x ≥ 0`, `Px + q ≥ 0`,
 * `xᵢ(Px + q)ᵢ = 0`, which it checks (`converged`, `kktResidual`). `P` only needs to be positive
 * semi-definite as long as the problem is bounded below (for a Gram matrix `P = A Aᵀ` that holds
 * whenever `q` is in the row space of `A`, as in GEM's dual); rank-deficient free sets get a
 * 10⁻¹⁰-relative ridge. The input is symmetrized as ½(P + Pᵀ).
 *
 * For n = 1 the answer is `max(0, −q/P)`.
 *
 * @param P n × n matrix, as rows or row-major flat values.
 * @param q n values.
 *
 * @example
 * ```ts
 * import { solveNonNegativeQP } from "./qp.ts";
 * // ½(2x₀² + 2x₁²) − 2x₀ + 4x₁: x₀ = 1, x₁ is held at 0.
 * const { x, converged } = solveNonNegativeQP([[2, 0], [0, 2]], [-2, 4]);
 * console.assert(converged && Math.abs(x[0] - 1) < 1e-12 && x[1] === 0);
 * ```
 */
export function solveNonNegativeQP(
  P: MatrixInput,
  q: ArrayLike<number>,
  opts: QPOptions = {},
): QPResult {
  checkOptions("solveNonNegativeQP", opts, QP_OPTIONS);
  const { m: raw, n } = toFlatMatrix(P, "solveNonNegativeQP: P");
  if (!q || typeof q.length !== "number" || q.length !== n) {
    throw new RangeError(
      `solveNonNegativeQP: q must have ${n} entries (one per row of P), got ${q?.length}`,
    );
  }
  const tolRel = opts.tol ?? 1e-10;
  if (!(tolRel > 0 && Number.isFinite(tolRel))) {
    throw new RangeError(`solveNonNegativeQP: tol must be a positive number, got ${opts.tol}`);
  }
  const maxIterations = opts.maxIterations ?? 50 * n + 100;
  if (!Number.isInteger(maxIterations) || maxIterations < 1) {
    throw new RangeError(
      `solveNonNegativeQP: maxIterations must be an integer ≥ 1, got ${opts.maxIterations}`,
    );
  }
  const Pm = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) Pm[i * n + j] = 0.5 * (raw[i * n + j] + raw[j * n + i]);
  }
  const qv = Float64Array.from(q);
  for (let i = 0; i < n * n; i++) {
    if (!Number.isFinite(Pm[i])) {
      throw new RangeError(`solveNonNegativeQP: P has a non-finite entry ${raw[i]} at ${i}`);
    }
  }
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(qv[i])) {
      throw new RangeError(`solveNonNegativeQP: q[${i}] is ${q[i]}: pass finite numbers`);
    }
    if (Pm[i * n + i] < 0) {
      throw new RangeError(
        `solveNonNegativeQP: P[${i}][${i}] = ${Pm[i * n + i]} < 0, so P is not positive ` +
          `semi-definite: the problem has no minimum`,
      );
    }
  }
  const pScale = maxAbs(Pm);
  const qScale = maxAbs(qv);
  const tolAbs = (x: Float64Array) =>
    tolRel * (pScale * Math.max(1, maxAbs(x)) + qScale) + Number.MIN_VALUE;

  const x = new Float64Array(n);
  const free = new Array<boolean>(n).fill(false);
  // Variables that failed to enter at the current x (degenerate steps); cleared when x moves.
  const blocked = new Array<boolean>(n).fill(false);
  let iterations = 0;
  outer: while (iterations < maxIterations) {
    const w = gradientOf(Pm, qv, n, x);
    const tol = tolAbs(x);
    let j = -1;
    for (let i = 0; i < n; i++) {
      if (!free[i] && !blocked[i] && -w[i] > tol && (j < 0 || w[i] < w[j])) j = i;
    }
    if (j < 0) break;
    free[j] = true;
    let entering = true;
    while (iterations < maxIterations) {
      iterations++;
      const set = free.flatMap((f, i) => (f ? [i] : []));
      const z = subproblem(Pm, qv, n, set);
      if (!z) {
        if (entering) {
          // Unbounded along e_j (zero curvature, descending): no minimum.
          throw new RangeError(
            `solveNonNegativeQP: the problem is unbounded below along coordinate ${j} ` +
              `(P is singular there and q[${j}] = ${qv[j]} < 0)`,
          );
        }
        free[j] = false;
        blocked[j] = true;
        continue outer;
      }
      if (entering && !(z[j] > 0)) {
        // Cannot happen in exact arithmetic; in floating point, keep j out until x moves.
        free[j] = false;
        blocked[j] = true;
        continue outer;
      }
      entering = false;
      let ok = true;
      for (const i of set) if (!(z[i] > 0)) ok = false;
      if (ok) {
        x.set(z);
        blocked.fill(false);
        continue outer;
      }
      let alpha = Infinity;
      for (const i of set) {
        if (!(z[i] > 0)) alpha = Math.min(alpha, x[i] / (x[i] - z[i]));
      }
      for (let i = 0; i < n; i++) x[i] += alpha * (z[i] - x[i]);
      for (const i of set) {
        if (!(x[i] > 1e-15 * maxAbs(x))) {
          x[i] = 0;
          free[i] = false;
        }
      }
      blocked.fill(false);
    }
  }
  for (let i = 0; i < n; i++) if (!(x[i] > 0)) x[i] = 0;
  const w = gradientOf(Pm, qv, n, x);
  let kktResidual = 0;
  let objective = 0;
  for (let i = 0; i < n; i++) {
    kktResidual = Math.max(kktResidual, Math.abs(Math.min(x[i], w[i])));
    objective += x[i] * (0.5 * (w[i] - qv[i]) + qv[i]);
  }
  const support = [...x.keys()].filter((i) => x[i] > 0);
  // The residual test is looser than the entering test: it also absorbs round-off of the solve.
  const converged = kktResidual <= 100 * tolAbs(x);
  return { x, iterations, converged, kktResidual, objective, support };
}

/** Options of {@link solveGEMDual} and {@link projectGEM}. */
export interface GEMDualOptions {
  /**
   * Lower bound γ ≥ 0 on the multipliers (Avalanche's `memory_strength`, the paper's margin
   * "γ"): `v ≥ γ`. 0 gives the exact Euclidean projection. @default 0
   */
  memoryStrength?: number;
  /**
   * Ridge added to the diagonal of `G Gᵀ` (Avalanche uses 10⁻³, which quadprog needs; this
   * solver does not). A ridge ε makes active constraints end at `G_k·g̃ = −ε v_k` instead of 0.
   * @default 0
   */
  eps?: number;
  /** Options of the QP solver. */
  qp?: QPOptions;
}

/** The keys of {@link GEMDualOptions}, for checking what users pass. */
const GEM_DUAL_OPTIONS: OptionSpec<GEMDualOptions> = {
  memoryStrength: "number",
  eps: "number",
  qp: "object",
};

/**
 * Checks the options of {@link solveGEMDual} and of the projections built on it (their keys,
 * the solver's under `qp`, and ranges) for the function `fn`, and returns γ and ε.
 */
export function checkGEMOptions(fn: string, opts: GEMDualOptions): { gamma: number; eps: number } {
  checkOptions(fn, opts, GEM_DUAL_OPTIONS);
  checkOptions(`${fn} (qp)`, opts.qp, QP_OPTIONS);
  const gamma = opts.memoryStrength ?? 0;
  const eps = opts.eps ?? 0;
  if (!(gamma >= 0 && Number.isFinite(gamma))) {
    throw new RangeError(
      `${fn}: memoryStrength must be a finite number ≥ 0 (0: exact projection), got ${gamma}`,
    );
  }
  if (!(eps >= 0 && Number.isFinite(eps))) {
    throw new RangeError(`${fn}: eps must be a finite number ≥ 0 (ridge on GGᵀ), got ${eps}`);
  }
  return { gamma, eps };
}

/**
 * Solves GEM's dual `minimize ½ vᵀ(GGᵀ + εI)v + (Gg)ᵀv subject to v ≥ γ` from the t × t Gram
 * matrix `GGᵀ` of the memory gradients and the t dot products `Gg` with the current gradient.
 * The substitution `v = u + γ` turns it into the non-negative QP
 * `½ uᵀPu + (Gg + γP1)ᵀu` with `P = GGᵀ + εI`, solved by {@link solveNonNegativeQP}.
 * The projected gradient is then `g̃ = Gᵀv + g`, and `G g̃ = (P − εI)v + Gg ≥ 0` (with ε = 0:
 * every constraint holds, with equality where `v_k > γ`).
 *
 * @returns the QP result with `x` replaced by the multipliers `v` (all ≥ γ).
 *
 * @example
 * ```ts
 * import { solveGEMDual } from "./qp.ts";
 * // One memory gradient G₀ = (1, 0), current g = (−1, 1): Gg = −1, GGᵀ = 1, so v = 1 and
 * // g̃ = g + v·G₀ = (0, 1).
 * const r = solveGEMDual([[1]], [-1]);
 * console.assert(Math.abs(r.x[0] - 1) < 1e-12);
 * ```
 */
export function solveGEMDual(
  GGt: MatrixInput,
  Gg: ArrayLike<number>,
  opts: GEMDualOptions = {},
): QPResult {
  const { gamma, eps } = checkGEMOptions("solveGEMDual", opts);
  const { m, n } = toFlatMatrix(GGt, "solveGEMDual: GGt");
  if (!Gg || Gg.length !== n) {
    throw new RangeError(`solveGEMDual: Gg must have ${n} entries, got ${Gg?.length}`);
  }
  for (let i = 0; i < n; i++) m[i * n + i] += eps;
  const q = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let row = 0;
    for (let j = 0; j < n; j++) row += 0.5 * (m[i * n + j] + m[j * n + i]);
    q[i] = Gg[i] + gamma * row;
  }
  const r = solveNonNegativeQP(m, q, opts.qp);
  const v = Float64Array.from(r.x, (u) => u + gamma);
  let objective = 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += 0.5 * (m[i * n + j] + m[j * n + i]) * v[j];
    objective += v[i] * (0.5 * s + Gg[i]);
  }
  return { ...r, x: v, objective };
}

/** What {@link projectGEM} returns. */
export interface GEMProjection {
  /** The gradient to use: `g̃ = Gᵀv + g` when projected, else a copy of `g`. */
  gradient: Float64Array;
  /** Whether some `G_k·g < 0` so that the projection ran. */
  projected: boolean;
  /** `G_k·g` for every memory k, before projection. */
  dots: Float64Array;
  /** Multipliers `v` (empty when not projected). */
  v: Float64Array;
  /** The QP solve (undefined when not projected). */
  qp?: QPResult;
}

/**
 * GEM's gradient projection on plain arrays (Float64), as Avalanche's `GEMPlugin`: when the
 * current gradient `g` has a negative dot product with some memory gradient `G_k`, it is replaced
 * by `g̃ = Gᵀv + g` where `v` solves {@link solveGEMDual}; otherwise it is returned unchanged.
 * The plugin runs the same computation on tensors; this version is the reference for small
 * problems and tests.
 *
 * @param G t memory gradients of p values each.
 * @param g the current gradient (p values).
 *
 * @example
 * ```ts
 * import { projectGEM } from "./qp.ts";
 * const { gradient, projected } = projectGEM([[1, 0]], [-1, 1]);
 * console.assert(projected && Math.abs(gradient[0]) < 1e-12 && gradient[1] === 1);
 * ```
 */
export function projectGEM(
  G: readonly ArrayLike<number>[],
  g: ArrayLike<number>,
  opts: GEMDualOptions = {},
): GEMProjection {
  checkGEMOptions("projectGEM", opts);
  const t = G.length;
  const p = g.length;
  G.forEach((row, k) => {
    if (row.length !== p) {
      throw new RangeError(`projectGEM: G[${k}] has ${row.length} values, g has ${p}`);
    }
  });
  const dots = new Float64Array(t);
  const GGt = new Float64Array(t * t);
  for (let a = 0; a < t; a++) {
    let d = 0;
    for (let i = 0; i < p; i++) d += G[a][i] * g[i];
    dots[a] = d;
    for (let b = 0; b <= a; b++) {
      let s = 0;
      for (let i = 0; i < p; i++) s += G[a][i] * G[b][i];
      GGt[a * t + b] = GGt[b * t + a] = s;
    }
  }
  if (!dots.some((d) => d < 0)) {
    return { gradient: Float64Array.from(g), projected: false, dots, v: new Float64Array(0) };
  }
  const qp = solveGEMDual(GGt, dots, opts);
  const gradient = Float64Array.from(g);
  for (let k = 0; k < t; k++) {
    for (let i = 0; i < p; i++) gradient[i] += qp.x[k] * G[k][i];
  }
  return { gradient, projected: true, dots, v: qp.x, qp };
}
