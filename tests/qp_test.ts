import assert from "node:assert/strict";
import { setBackend } from "../lib/backend.ts";
import { projectGEM, solveGEMDual, solveNonNegativeQP } from "../lib/plugins/qp.ts";
import { Rng } from "../lib/random.ts";

await setBackend("wasm");

// ------------------------------------------------------------------------------- helpers ----

type Mat = number[][];

function randomMatrix(rng: Rng, rows: number, cols: number): Mat {
  return Array.from({ length: rows }, () => Array.from({ length: cols }, () => rng.normal()));
}

function gram(A: Mat): Mat {
  return A.map((a) => A.map((b) => a.reduce((s, v, i) => s + v * b[i], 0)));
}

function matVec(P: Mat, x: ArrayLike<number>): number[] {
  return P.map((r) => r.reduce((s, v, j) => s + v * x[j], 0));
}

function objective(P: Mat, q: number[], x: ArrayLike<number>): number {
  const Px = matVec(P, x);
  let f = 0;
  for (let i = 0; i < q.length; i++) f += x[i] * (0.5 * Px[i] + q[i]);
  return f;
}

/** Solves A z = b by Gaussian elimination with partial pivoting; undefined when singular. */
function solveLinear(A: Mat, b: number[]): number[] | undefined {
  const n = b.length;
  const M = A.map((r, i) => [...r, b[i]]);
  const scale = Math.max(1e-300, ...A.flat().map(Math.abs));
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    if (Math.abs(M[p][c]) < 1e-11 * scale) return undefined;
    [M[c], M[p]] = [M[p], M[c]];
    for (let r = c + 1; r < n; r++) {
      const f = M[r][c] / M[c][c];
      for (let k = c; k <= n; k++) M[r][k] -= f * M[c][k];
    }
  }
  const z = new Array(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r][n];
    for (let k = r + 1; k < n; k++) s -= M[r][k] * z[k];
    z[r] = s / M[r][r];
  }
  return z;
}

/**
 * Brute force: every free set S, x_S = −P_SS⁻¹ q_S, x elsewhere 0; keeps the KKT points
 * (x ≥ 0 and Px + q ≥ 0) and returns the one of least objective.
 */
function bruteForce(P: Mat, q: number[]): { x: number[]; f: number } {
  const n = q.length;
  let best: { x: number[]; f: number } | undefined;
  for (let mask = 0; mask < 1 << n; mask++) {
    const S = [...Array(n).keys()].filter((i) => mask & (1 << i));
    const x = new Array(n).fill(0);
    if (S.length > 0) {
      const z = solveLinear(S.map((i) => S.map((j) => P[i][j])), S.map((i) => -q[i]));
      if (!z) continue;
      S.forEach((i, a) => (x[i] = z[a]));
    }
    if (x.some((v) => v < -1e-12)) continue;
    const w = matVec(P, x).map((v, i) => v + q[i]);
    const scale = 1 + Math.max(...w.map(Math.abs));
    if (w.some((v, i) => !S.includes(i) && v < -1e-9 * scale)) continue;
    const f = objective(P, q, x);
    if (!best || f < best.f) best = { x, f };
  }
  return best!;
}

function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, msg = "") {
  assert.equal(a.length, b.length, msg);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tol, `${msg} [${i}]: ${a[i]} vs ${b[i]} (tol ${tol})`);
  }
}

/**
 * Dykstra's alternating projections onto the half-spaces G_k·z ≥ 0: converges to the Euclidean
 * projection of g onto their intersection. An independent check of GEM's dual.
 */
function dykstra(G: Mat, g: number[], sweeps = 20000): number[] {
  let z = [...g];
  const inc = G.map(() => new Array(g.length).fill(0));
  for (let s = 0; s < sweeps; s++) {
    G.forEach((a, k) => {
      const y = z.map((v, i) => v + inc[k][i]);
      const d = a.reduce((acc, v, i) => acc + v * y[i], 0);
      const nn = a.reduce((acc, v) => acc + v * v, 0);
      const proj = d < 0 && nn > 0 ? y.map((v, i) => v - (d / nn) * a[i]) : y;
      inc[k] = y.map((v, i) => v - proj[i]);
      z = proj;
    });
  }
  return z;
}

// ----------------------------------------------------------------------------------- QP ----

Deno.test("solveNonNegativeQP: one variable is max(0, −q/P)", () => {
  const rng = new Rng(1);
  for (let k = 0; k < 50; k++) {
    const P = Math.exp(rng.normal());
    const q = rng.normal() * 3;
    const r = solveNonNegativeQP([[P]], [q]);
    assert.ok(r.converged);
    assert.ok(Math.abs(r.x[0] - Math.max(0, -q / P)) < 1e-12, `${P} ${q}: ${r.x[0]}`);
  }
  // Zero curvature: bounded when q ≥ 0 (x = 0), unbounded when q < 0.
  assert.deepEqual([...solveNonNegativeQP([[0]], [2]).x], [0]);
  assert.throws(() => solveNonNegativeQP([[0]], [-1]), /unbounded below along coordinate 0/);
});

Deno.test("solveNonNegativeQP: a hand-solved 2×2 and 3×3 problem", () => {
  // ½(2x₀² + 2x₁²) − 2x₀ + 4x₁ → x = (1, 0), objective −1.
  const a = solveNonNegativeQP([[2, 0], [0, 2]], [-2, 4]);
  assertClose(a.x, [1, 0], 1e-15);
  assert.ok(Math.abs(a.objective + 1) < 1e-15);
  assert.deepEqual(a.support, [0]);
  // P = [[2,1],[1,2]], q = (−3, −3): unconstrained minimum x = (1, 1) is feasible.
  const b = solveNonNegativeQP([[2, 1], [1, 2]], [-3, -3]);
  assertClose(b.x, [1, 1], 1e-14);
  // P = [[2,1],[1,2]], q = (−4, 1): unconstrained (3, −2) is not; on x₁ = 0, x₀ = 2 and the
  // gradient there is (0, 1 + 2) ≥ 0.
  const c = solveNonNegativeQP([[2, 1], [1, 2]], [-4, 1]);
  assertClose(c.x, [2, 0], 1e-14);
  // Flat row-major input gives the same.
  assertClose(solveNonNegativeQP(new Float64Array([2, 1, 1, 2]), [-4, 1]).x, [2, 0], 1e-14);
  // 3×3 diagonal: each coordinate on its own.
  const d = solveNonNegativeQP([[1, 0, 0], [0, 4, 0], [0, 0, 2]], [-1, -2, 3]);
  assertClose(d.x, [1, 0.5, 0], 1e-14);
  assert.ok(d.kktResidual < 1e-14);
});

Deno.test("solveNonNegativeQP matches brute force over every active set (t ≤ 4, PD and singular)", () => {
  const rng = new Rng(7);
  let cases = 0;
  for (let n = 1; n <= 4; n++) {
    for (let k = 0; k < 60; k++) {
      // Positive definite: Gram matrix of n random vectors in n + 2 dimensions.
      const A = randomMatrix(rng, n, n + 2);
      const P = gram(A);
      const q = Array.from({ length: n }, () => 2 * rng.normal());
      const r = solveNonNegativeQP(P, q);
      const bf = bruteForce(P, q);
      assert.ok(r.converged, `n=${n} case ${k}: residual ${r.kktResidual}`);
      assert.ok(r.x.every((v) => v >= 0));
      assertClose(r.x, bf.x, 1e-8, `PD n=${n} case ${k}`);
      assert.ok(Math.abs(r.objective - bf.f) <= 1e-9 * (1 + Math.abs(bf.f)));
      cases++;
    }
  }
  for (let n = 2; n <= 4; n++) {
    for (let k = 0; k < 40; k++) {
      // Singular (rank < n, as GEM's G Gᵀ with dependent memory gradients): n vectors in n − 1
      // dimensions, q in their span so that the problem is bounded.
      const A = randomMatrix(rng, n, n - 1);
      const P = gram(A);
      const u = Array.from({ length: n - 1 }, () => rng.normal());
      const q = A.map((a) => a.reduce((s, v, i) => s + v * u[i], 0));
      const r = solveNonNegativeQP(P, q);
      const bf = bruteForce(P, q);
      assert.ok(r.converged, `singular n=${n} case ${k}: residual ${r.kktResidual}`);
      // The minimizer need not be unique: compare the objective.
      assert.ok(
        Math.abs(r.objective - bf.f) <= 1e-8 * (1 + Math.abs(bf.f)),
        `singular n=${n} case ${k}: ${r.objective} vs ${bf.f}`,
      );
      cases++;
    }
  }
  assert.equal(cases, 360);
});

Deno.test("solveNonNegativeQP: 20 variables, KKT conditions hold; degenerate inputs", () => {
  const rng = new Rng(3);
  for (let k = 0; k < 20; k++) {
    const A = randomMatrix(rng, 20, 30);
    const P = gram(A);
    const q = Array.from({ length: 20 }, () => 5 * rng.normal());
    const r = solveNonNegativeQP(P, q);
    assert.ok(r.converged && r.kktResidual < 1e-8, `residual ${r.kktResidual}`);
    const w = matVec(P, r.x).map((v, i) => v + q[i]);
    for (let i = 0; i < 20; i++) {
      assert.ok(r.x[i] >= 0);
      assert.ok(w[i] > -1e-8, `gradient ${w[i]} at ${i}`);
      if (r.x[i] > 0) assert.ok(Math.abs(w[i]) < 1e-8, `complementarity ${w[i]} at ${i}`);
    }
    assert.ok(r.iterations <= 1100);
  }
  // Duplicate rows (identical memories) and an all-zero row.
  const g0 = [1, -2, 0.5];
  const A = [g0, g0, [0, 0, 0], [0.5, 1, 1]];
  const P = gram(A);
  const q = A.map((a) => a.reduce((s, v, i) => s + v * [-1, 1, 0][i], 0));
  const r = solveNonNegativeQP(P, q);
  assert.ok(r.converged);
  assert.ok(Math.abs(r.objective - bruteForce(P, q).f) < 1e-10);
  // q ≥ 0: x = 0 without any step.
  const z = solveNonNegativeQP([[1, 0.5], [0.5, 1]], [1, 2]);
  assert.deepEqual([...z.x], [0, 0]);
  assert.equal(z.iterations, 0);
});

Deno.test("solveNonNegativeQP rejects bad inputs with clear messages", () => {
  assert.throws(() => solveNonNegativeQP([[1, 2], [3]], [1, 2]), /must be square: row 1/);
  assert.throws(() => solveNonNegativeQP([1, 2, 3], [1]), /needs n² values, got 3/);
  assert.throws(() => solveNonNegativeQP([[1]], [1, 2]), /q must have 1 entries/);
  assert.throws(() => solveNonNegativeQP([[NaN]], [1]), /non-finite entry/);
  assert.throws(() => solveNonNegativeQP([[1]], [Infinity]), /q\[0\] is Infinity/);
  assert.throws(() => solveNonNegativeQP([[-1]], [1]), /not positive semi-definite/);
  assert.throws(() => solveNonNegativeQP([[1]], [1], { tol: 0 }), /tol must be a positive/);
  assert.throws(
    () => solveNonNegativeQP([[1]], [1], { maxIterations: 0 }),
    /maxIterations must be an integer ≥ 1/,
  );
});

// ----------------------------------------------------------------------------- GEM dual ----

Deno.test("solveGEMDual: margin γ keeps v ≥ γ with KKT conditions of the shifted problem", () => {
  const rng = new Rng(11);
  for (const gamma of [0, 0.1, 0.5, 2]) {
    for (let k = 0; k < 30; k++) {
      const t = 1 + (k % 4);
      const G = randomMatrix(rng, t, 6);
      const g = Array.from({ length: 6 }, () => rng.normal());
      const GGt = gram(G);
      const Gg = G.map((a) => a.reduce((s, v, i) => s + v * g[i], 0));
      const r = solveGEMDual(GGt, Gg, { memoryStrength: gamma });
      assert.ok(r.converged);
      // KKT of min ½vᵀPv + (Gg)ᵀv s.t. v ≥ γ: gradient ≥ 0, = 0 where v > γ.
      const w = matVec(GGt, r.x).map((v, i) => v + Gg[i]); // = G g̃
      for (let i = 0; i < t; i++) {
        assert.ok(r.x[i] >= gamma - 1e-12, `v ${r.x[i]} < γ ${gamma}`);
        assert.ok(w[i] >= -1e-9, `G g̃ = ${w[i]}`);
        if (r.x[i] > gamma + 1e-9) assert.ok(Math.abs(w[i]) < 1e-9);
      }
      // Brute force on the shifted problem u = v − γ.
      const q = Gg.map((v, i) => v + gamma * GGt[i].reduce((a, b) => a + b, 0));
      const bf = bruteForce(GGt, q);
      assertClose(r.x, bf.x.map((u) => u + gamma), 1e-7, `γ=${gamma} t=${t}`);
    }
  }
  // t = 1 analytic: v = max(γ, −Gg/GGᵀ).
  assert.ok(Math.abs(solveGEMDual([[4]], [-2], { memoryStrength: 0.1 }).x[0] - 0.5) < 1e-15);
  assert.ok(Math.abs(solveGEMDual([[4]], [-2], { memoryStrength: 1 }).x[0] - 1) < 1e-15);
  assert.throws(() => solveGEMDual([[1]], [-1], { memoryStrength: -1 }), /memoryStrength must/);
  assert.throws(() => solveGEMDual([[1]], [-1], { eps: NaN }), /eps must/);
  assert.throws(() => solveGEMDual([[1]], [1, 2]), /Gg must have 1 entries/);
});

Deno.test("projectGEM returns the closest vector satisfying every constraint (vs Dykstra and brute force)", () => {
  const rng = new Rng(5);
  let projected = 0;
  for (let k = 0; k < 40; k++) {
    const t = 1 + (k % 4);
    const p = 5;
    const G = randomMatrix(rng, t, p);
    if (k % 5 === 0) G[t - 1] = G[0].map((v) => 2 * v); // a dependent memory gradient
    const g = Array.from({ length: p }, () => rng.normal());
    const r = projectGEM(G, g);
    const dots = G.map((a) => a.reduce((s, v, i) => s + v * r.gradient[i], 0));
    for (const d of dots) assert.ok(d >= -1e-9, `G_k·g̃ = ${d}`);
    if (!r.projected) {
      assert.ok(G.every((a) => a.reduce((s, v, i) => s + v * g[i], 0) >= 0));
      assert.deepEqual([...r.gradient], g);
      continue;
    }
    projected++;
    assertClose(r.gradient, dykstra(G, g), 1e-6, `Dykstra, case ${k}`);
    // Brute force on the primal: every subset S of constraints made active, z = g + G_Sᵀ v_S with
    // G_S z = 0; the feasible candidate closest to g is the projection.
    let best: number[] | undefined;
    let bestD = Infinity;
    for (let mask = 1; mask < 1 << t; mask++) {
      const S = [...Array(t).keys()].filter((i) => mask & (1 << i));
      const GS = S.map((i) => G[i]);
      const v = solveLinear(gram(GS), GS.map((a) => -a.reduce((s, x, i) => s + x * g[i], 0)));
      if (!v) continue;
      const z = g.map((x, i) => x + S.reduce((s, _, a) => s + v[a] * GS[a][i], 0));
      if (G.some((a) => a.reduce((s, x, i) => s + x * z[i], 0) < -1e-9)) continue;
      const d = z.reduce((s, x, i) => s + (x - g[i]) ** 2, 0);
      if (d < bestD) [best, bestD] = [z, d];
    }
    assertClose(r.gradient, best!, 1e-8, `brute force, case ${k}`);
  }
  assert.ok(projected >= 15, `enough projected cases: ${projected}`);
});

Deno.test("projectGEM: hand-computed cases, margin and ridge", () => {
  // One constraint G₀ = (1, 0), g = (−1, 1): v = 1, g̃ = (0, 1).
  const a = projectGEM([[1, 0]], [-1, 1]);
  assert.ok(a.projected);
  assertClose(a.gradient, [0, 1], 1e-15);
  assertClose(a.v, [1], 1e-15);
  assertClose(a.dots, [-1], 0);
  // Two orthogonal constraints both violated: g̃ = 0 component-wise where violated.
  assertClose(projectGEM([[1, 0, 0], [0, 1, 0]], [-1, -2, 3]).gradient, [0, 0, 3], 1e-15);
  // Margin γ = 2 > 1: v = 2 and g̃ = g + 2 G₀ = (1, 1): pushed past the boundary.
  assertClose(projectGEM([[1, 0]], [-1, 1], { memoryStrength: 2 }).gradient, [1, 1], 1e-15);
  // Margin below the needed multiplier changes nothing.
  assertClose(projectGEM([[1, 0]], [-1, 1], { memoryStrength: 0.5 }).gradient, [0, 1], 1e-15);
  // Ridge ε: v = 1/(1 + ε), the active constraint ends at G₀·g̃ = −ε v.
  const e = projectGEM([[1, 0]], [-1, 1], { eps: 1e-3 });
  assertClose(e.v, [1 / 1.001], 1e-15);
  assertClose(e.gradient, [-1 + 1 / 1.001, 1], 1e-15);
  // No violated constraint: untouched.
  const n = projectGEM([[1, 0], [0, 1]], [0, 2]);
  assert.equal(n.projected, false);
  assert.deepEqual([...n.gradient], [0, 2]);
  assert.throws(() => projectGEM([[1, 0, 0]], [1, 2]), /G\[0\] has 3 values, g has 2/);
});
