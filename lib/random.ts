/**
 * Seeded random numbers. A generator is an explicit object carried in the run, never a global:
 * its whole state is four 32-bit integers, so it can be written to a checkpoint and restored.
 *
 * @module
 */

/** Serializable state of an {@link Rng}: the four words of xoshiro128**. */
export type RngState = [number, number, number, number];

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** MurmurHash3's 32-bit finalizer: a bijection of 32-bit integers with fmix32(0) = 0. */
function fmix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** Hashes a string into a 32-bit integer (FNV-1a), to derive named child seeds. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * A seeded pseudo-random generator (xoshiro128**), fast and with a tiny serializable state.
 *
 * @example Shuffle deterministically
 * ```ts
 * import { Rng } from "./random.ts";
 * const a = new Rng(0).permutation(5);
 * const b = new Rng(0).permutation(5);
 * console.assert(a.join() === b.join());
 * ```
 */
export class Rng {
  #s: Uint32Array = new Uint32Array(4);

  /** Creates a generator from an integer seed (any safe integer) or a saved state. */
  constructor(seed: number | RngState = 0) {
    if (typeof seed === "number") {
      if (!Number.isFinite(seed)) {
        throw new TypeError(`Seed must be a finite number, got ${seed}`);
      }
      // The high word is hashed (not just xor-ed) in, so that e.g. -1 and 0 differ.
      const sm = splitmix32((seed >>> 0) ^ fmix32(Math.floor(seed / 2 ** 32)));
      for (let i = 0; i < 4; i++) this.#s[i] = sm();
    } else {
      this.setState(seed);
    }
  }

  /** The generator's state, to store in a checkpoint. */
  state(): RngState {
    return [this.#s[0], this.#s[1], this.#s[2], this.#s[3]];
  }

  /** Restores a state returned by {@link Rng.state}. */
  setState(state: RngState): void {
    if (
      !Array.isArray(state) || state.length !== 4 ||
      !state.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32)
    ) {
      throw new TypeError(
        `Rng state must be an array of 4 unsigned 32-bit integers, got ${JSON.stringify(state)}`,
      );
    }
    for (let i = 0; i < 4; i++) this.#s[i] = state[i] >>> 0;
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1;
  }

  /** Next raw 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform float in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!(n >= 1) || !Number.isInteger(n)) {
      throw new RangeError(`Rng.int needs a positive integer bound, got ${n}`);
    }
    return Math.floor(this.next() * n);
  }

  /** Standard normal sample (Box-Muller). */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** Shuffles an array (or typed array) in place (Fisher-Yates) and returns it. */
  shuffle<T extends { length: number; [i: number]: unknown }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      const tmp = a[i];
      a[i] = a[j];
      a[j] = tmp;
    }
    return a;
  }

  /** A random permutation of 0..n-1. */
  permutation(n: number): Int32Array {
    checkCount("Rng.permutation size", n);
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    return this.shuffle(p);
  }

  /** k distinct indices drawn uniformly from 0..n-1, in random order. */
  sample(n: number, k: number): Int32Array {
    checkCount("Rng.sample population", n);
    checkCount("Rng.sample count", k);
    if (k > n) throw new RangeError(`Cannot sample ${k} distinct items out of ${n}`);
    if (k * 4 < n) {
      const seen = new Set<number>();
      const out = new Int32Array(k);
      let m = 0;
      while (m < k) {
        const v = this.int(n);
        if (!seen.has(v)) {
          seen.add(v);
          out[m++] = v;
        }
      }
      return out;
    }
    return this.permutation(n).slice(0, k);
  }

  /** A fresh 31-bit seed drawn from this generator (e.g. for tfjs initializers). */
  seed(): number {
    return this.nextUint32() >>> 1;
  }

  /** An independent generator derived from this one's seed and a label, without advancing it. */
  fork(label: string): Rng {
    const s = this.state();
    return new Rng(((s[0] ^ hashString(label)) >>> 0) + (s[1] >>> 0) * 2 ** 21);
  }
}

function checkCount(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 2 ** 31 - 1) {
    throw new RangeError(`${what} must be a non-negative integer, got ${v}`);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
