// Tests of lib/random.ts: the seeded xoshiro128** generator and its helpers.
// Run: deno test -A tests/random_test.ts

import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import { hashString, Rng, type RngState } from "../lib/random.ts";

function draws(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.nextUint32());
}

// ---------------------------------------------------------------------------------------------
// The algorithm itself

Deno.test("xoshiro128** from state [1, 2, 3, 4] gives the reference outputs", () => {
  // Worked by hand from the algorithm: out = rotl(s1 * 5, 7) * 9, then the state update.
  //   call 1: s1 = 2    -> rotl(10, 7) * 9 = 1280 * 9 = 11520; state -> [7, 0, 1026, 12288]
  //   call 2: s1 = 0    -> 0;                                   state -> [12295, 1029, 1029, 25165824]
  //   call 3: s1 = 1029 -> rotl(5145, 7) * 9 = 658560 * 9 = 5927040
  const rng = new Rng([1, 2, 3, 4]);
  assert.equal(rng.nextUint32(), 11520);
  assert.deepEqual(rng.state(), [7, 0, 1026, 12288]);
  assert.equal(rng.nextUint32(), 0);
  assert.deepEqual(rng.state(), [12295, 1029, 1029, 25165824]);
  assert.equal(rng.nextUint32(), 5927040);
});

Deno.test("next() is nextUint32() / 2^32, in [0, 1)", () => {
  const a = new Rng(5);
  const b = new Rng(5);
  for (let i = 0; i < 1000; i++) {
    const u = a.next();
    assert.equal(u, b.nextUint32() / 4294967296);
    assert.ok(u >= 0 && u < 1);
  }
  assert.equal(new Rng([1, 2, 3, 4]).next(), 11520 / 4294967296);
});

Deno.test("hashString is FNV-1a", () => {
  assert.equal(hashString(""), 0x811c9dc5);
  // FNV-1a("a") = (0x811c9dc5 ^ 0x61) * 0x01000193 mod 2^32 = 0xe40c292c (published test vector).
  assert.equal(hashString("a"), 0xe40c292c);
  assert.equal(hashString("foobar"), 0xbf9cf968);
});

// ---------------------------------------------------------------------------------------------
// Seeding and state

Deno.test("the same seed gives the same sequence, other seeds other sequences", () => {
  assert.deepEqual(draws(new Rng(42), 50), draws(new Rng(42), 50));
  assert.deepEqual(draws(new Rng(), 20), draws(new Rng(0), 20));
  const seeds = [0, 1, 2, 42, -1, -2, 2 ** 32, 2 ** 32 + 1, 2 ** 40, Number.MAX_SAFE_INTEGER];
  const firsts = seeds.map((s) => draws(new Rng(s), 4).join());
  assert.equal(new Set(firsts).size, seeds.length, `collisions among seeds ${seeds}`);
});

Deno.test("state() / setState() round trip continues identically", () => {
  const rng = new Rng(123);
  draws(rng, 17);
  const saved: RngState = rng.state();
  assert.equal(saved.length, 4);
  for (const w of saved) assert.ok(Number.isInteger(w) && w >= 0 && w < 2 ** 32);
  const expected = draws(rng, 30);

  const restored = new Rng(999);
  restored.setState(saved);
  assert.deepEqual(draws(restored, 30), expected);
  // Through JSON (a checkpoint) and through the constructor too.
  const viaJson = new Rng(JSON.parse(JSON.stringify(saved)) as RngState);
  assert.deepEqual(draws(viaJson, 30), expected);
  // state() returns a copy: mutating it does not touch the generator.
  const s = rng.state();
  const next = draws(new Rng(s), 3);
  s[0] = 0;
  assert.deepEqual(draws(rng, 3), next);
});

Deno.test("an all-zero state (a fixed point of xoshiro) is replaced by a valid one", () => {
  const rng = new Rng([0, 0, 0, 0]);
  assert.deepEqual(rng.state(), [1, 0, 0, 0]);
  assert.notEqual(draws(rng, 8).join(), "0,0,0,0,0,0,0,0");
});

// ---------------------------------------------------------------------------------------------
// Derived draws

Deno.test("int(n) stays in [0, n) and is roughly uniform", () => {
  const rng = new Rng(7);
  for (let i = 0; i < 200; i++) assert.equal(rng.int(1), 0);
  const counts = new Array(10).fill(0);
  for (let i = 0; i < 20000; i++) {
    const v = rng.int(10);
    assert.ok(Number.isInteger(v) && v >= 0 && v < 10, `int(10) gave ${v}`);
    counts[v]++;
  }
  // Expected 2000 each; the binomial sd is ~42, so 250 is a > 5 sd margin.
  for (const c of counts) assert.ok(Math.abs(c - 2000) < 250, `counts ${counts}`);
  const big = 2 ** 31 - 1;
  for (let i = 0; i < 100; i++) {
    const v = rng.int(big);
    assert.ok(Number.isInteger(v) && v >= 0 && v < big);
  }
});

Deno.test("int() rejects bounds that are not positive integers, naming them", () => {
  const rng = new Rng(0);
  for (const bad of [0, -3, 2.5, NaN, Infinity]) {
    assert.throws(() => rng.int(bad), (e: Error) => {
      assert.ok(e instanceof RangeError);
      assert.match(e.message, new RegExp(`got ${String(bad).replace(".", "\\.")}$`));
      return true;
    });
  }
});

Deno.test("permutation(n) is a permutation of 0..n-1, deterministic per seed", () => {
  const rng = new Rng(11);
  for (const n of [0, 1, 2, 5, 100]) {
    const p = rng.permutation(n);
    assert.ok(p instanceof Int32Array);
    assert.deepEqual([...p].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
  }
  assert.deepEqual(new Rng(3).permutation(50), new Rng(3).permutation(50));
  assert.notDeepEqual(new Rng(3).permutation(50), new Rng(4).permutation(50));
  // It actually shuffles: over many draws every element visits position 0.
  const first = new Set<number>();
  for (let i = 0; i < 500; i++) first.add(rng.permutation(5)[0]);
  assert.deepEqual([...first].sort(), [0, 1, 2, 3, 4]);
});

Deno.test("shuffle() permutes in place and returns its argument", () => {
  const a = [10, 20, 30, 40, 50, 60];
  const out = new Rng(1).shuffle(a);
  assert.equal(out, a);
  assert.deepEqual([...a].sort((x, y) => x - y), [10, 20, 30, 40, 50, 60]);
  const t = Float32Array.from([1, 2, 3, 4, 5, 6]);
  new Rng(1).shuffle(t);
  // The same seed shuffles any container the same way.
  assert.deepEqual([...t].map((v) => v * 10), a);
});

Deno.test("sample(n, k) gives k distinct indices in range (both code paths)", () => {
  const rng = new Rng(5);
  // k * 4 < n uses rejection sampling, otherwise a permutation prefix.
  for (const [n, k] of [[1000, 10], [100, 24], [100, 25], [10, 10], [10, 0], [0, 0], [7, 6]]) {
    const s = rng.sample(n, k);
    assert.ok(s instanceof Int32Array);
    assert.equal(s.length, k);
    assert.equal(new Set(s).size, k, `duplicates in sample(${n}, ${k}): ${s}`);
    for (const v of s) assert.ok(v >= 0 && v < n, `sample(${n}, ${k}) gave ${v}`);
  }
  assert.deepEqual(new Rng(9).sample(1000, 10), new Rng(9).sample(1000, 10));
  // sample(n, n) is a permutation.
  assert.deepEqual([...rng.sample(6, 6)].sort(), [0, 1, 2, 3, 4, 5]);
});

Deno.test("sample() and permutation() reject bad sizes, naming them", () => {
  const rng = new Rng(0);
  assert.throws(() => rng.sample(3, 5), { name: "RangeError", message: /5 .*out of 3/ });
  assert.throws(() => rng.sample(10, -1), { name: "RangeError", message: /got -1$/ });
  assert.throws(() => rng.sample(10, 1.5), { name: "RangeError", message: /got 1\.5$/ });
  assert.throws(() => rng.sample(NaN, 1), { name: "RangeError", message: /got NaN$/ });
  assert.throws(() => rng.permutation(-2), { name: "RangeError", message: /got -2$/ });
  assert.throws(() => rng.permutation(2.5), { name: "RangeError", message: /got 2\.5$/ });
});

Deno.test("normal() has mean ~0 and variance ~1; seed() is a 31-bit integer", () => {
  const rng = new Rng(2024);
  const n = 20000;
  let sum = 0;
  let sq = 0;
  for (let i = 0; i < n; i++) {
    const z = rng.normal();
    assert.ok(Number.isFinite(z));
    sum += z;
    sq += z * z;
  }
  const mean = sum / n;
  const variance = sq / n - mean * mean;
  assert.ok(Math.abs(mean) < 0.05, `mean ${mean}`); // sd of the mean is 0.007
  assert.ok(Math.abs(variance - 1) < 0.05, `variance ${variance}`);
  for (let i = 0; i < 1000; i++) {
    const s = rng.seed();
    assert.ok(Number.isInteger(s) && s >= 0 && s < 2 ** 31, `seed ${s}`);
  }
});

// ---------------------------------------------------------------------------------------------
// fork

Deno.test("fork() is deterministic, label-dependent, and does not advance the parent", () => {
  const parent = new Rng(77);
  draws(parent, 5);
  const before = parent.state();
  const a1 = parent.fork("a");
  const a2 = parent.fork("a");
  const b = parent.fork("b");
  assert.deepEqual(parent.state(), before, "fork advanced its parent");
  const seqA = draws(a1, 20);
  assert.deepEqual(draws(a2, 20), seqA);
  assert.notDeepEqual(draws(b, 20), seqA);
  // Independent of the parent: neither its stream nor its state are shared.
  const parentSeq = draws(new Rng(before), 20);
  assert.notDeepEqual(seqA, parentSeq);
  assert.deepEqual(draws(parent, 20), parentSeq, "drawing from a child moved the parent");
  // A parent in another state forks other children.
  assert.notDeepEqual(draws(parent.fork("a"), 20), seqA);
  // The same parent state (e.g. restored from a checkpoint) forks the same children.
  assert.deepEqual(draws(new Rng(before).fork("a"), 20), seqA);
});

// ---------------------------------------------------------------------------------------------
// Bad inputs

Deno.test("bad seeds and states throw TypeErrors naming the value", () => {
  assert.throws(() => new Rng(NaN), { name: "TypeError", message: /got NaN/ });
  assert.throws(() => new Rng(Infinity), { name: "TypeError", message: /got Infinity/ });
  const rng = new Rng(1);
  const good = rng.state();
  const bads: unknown[] = [
    [1, 2, 3],
    [1, 2, 3, 4, 5],
    [1, 2, 3, -1],
    [1, 2, 3, 2 ** 32],
    [1, 2, 3, 0.5],
    [1, 2, 3, "4"],
    "1,2,3,4",
  ];
  for (const bad of bads) {
    assert.throws(() => rng.setState(bad as RngState), (e: Error) => {
      assert.ok(e instanceof TypeError);
      assert.ok(e.message.includes(JSON.stringify(bad)), e.message);
      return true;
    });
    assert.deepEqual(rng.state(), good, "a rejected state changed the generator");
  }
});
