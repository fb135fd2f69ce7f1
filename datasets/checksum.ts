/**
 * Checksums (SHA-256 and MD5, via `node:crypto`) and their verification.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { DatasetError } from "./errors.ts";

/** A hash algorithm the registry can name. */
export type HashAlgorithm = "sha256" | "md5";

/** What a file is expected to be: any of SHA-256, MD5 (lower-case hex) and size in bytes. */
export interface Checksum {
  /** Lower-case hex SHA-256 of the file. Preferred over `md5` when both are given. */
  sha256?: string;
  /** Lower-case hex MD5 of the file (used when no `sha256` is known, e.g. KMNIST). */
  md5?: string;
  /** Exact size of the file in bytes. */
  bytes?: number;
}

/**
 * The strongest checksum in `expect`: SHA-256 if known, else MD5, else `undefined`.
 *
 * @example
 * ```ts
 * import { pickChecksum } from "./checksum.ts";
 * pickChecksum({ md5: "ec29112dd5afa0611ce80d1b7f02629c" }); // { algorithm: "md5", expected: "ec29..." }
 * ```
 */
export function pickChecksum(
  expect: Checksum,
): { algorithm: HashAlgorithm; expected: string } | undefined {
  if (expect.sha256) return { algorithm: "sha256", expected: expect.sha256.toLowerCase() };
  if (expect.md5) return { algorithm: "md5", expected: expect.md5.toLowerCase() };
  return undefined;
}

/**
 * A streaming hasher (`update` chunk by chunk, then `digest`), for downloads.
 *
 * @example
 * ```ts
 * import { createHasher } from "./checksum.ts";
 * const h = createHasher("sha256");
 * h.update(new Uint8Array([1, 2]));
 * h.update(new Uint8Array([3]));
 * console.log(h.digest("hex"));
 * ```
 */
export function createHasher(algorithm: HashAlgorithm): Hash {
  return createHash(algorithm);
}

/**
 * Lower-case hex digest of `bytes`.
 *
 * @example
 * ```ts
 * import { hashBytes } from "./checksum.ts";
 * hashBytes(new TextEncoder().encode("abc"), "md5"); // "900150983cd24fb0d6963f7d28e17f72"
 * ```
 */
export function hashBytes(bytes: Uint8Array, algorithm: HashAlgorithm): string {
  return createHash(algorithm).update(bytes).digest("hex");
}

/**
 * Check `bytes` against `expect` (size first, then SHA-256 or MD5). Throws a
 * {@link DatasetError} (`code` "size" or "checksum") whose message starts with `what`
 * (e.g. the file path or URL), gives expected and actual values, and ends with `fix`.
 * Does nothing when `expect` holds no size and no checksum.
 *
 * @example
 * ```ts
 * import { verifyBytes } from "./checksum.ts";
 * const bytes = new TextEncoder().encode("abc");
 * verifyBytes(bytes, { md5: "900150983cd24fb0d6963f7d28e17f72", bytes: 3 }, "abc.txt");
 * ```
 */
export function verifyBytes(bytes: Uint8Array, expect: Checksum, what: string, fix = ""): void {
  const tail = fix ? ` ${fix}` : "";
  if (expect.bytes !== undefined && bytes.length !== expect.bytes) {
    throw new DatasetError(
      "size",
      `${what}: size mismatch: expected ${expect.bytes} bytes, got ${bytes.length} ` +
        `(truncated or wrong file).${tail}`,
    );
  }
  const check = pickChecksum(expect);
  if (!check) return;
  const actual = hashBytes(bytes, check.algorithm);
  if (actual !== check.expected) {
    throw checksumMismatch(what, check.algorithm, check.expected, actual, fix);
  }
}

/**
 * The standard checksum-mismatch {@link DatasetError} (code "checksum"): names `what`
 * (file, path or URL), the algorithm, the expected and the actual hash, then `fix`.
 *
 * @example
 * ```ts
 * import { checksumMismatch } from "./checksum.ts";
 * const e = checksumMismatch("a.gz from http://x/a.gz", "md5", "00ff", "abcd", "Try another mirror.");
 * console.assert(e.code === "checksum" && e.message.includes("expected 00ff, got abcd"));
 * ```
 */
export function checksumMismatch(
  what: string,
  algorithm: HashAlgorithm,
  expected: string,
  actual: string,
  fix = "",
): DatasetError {
  return new DatasetError(
    "checksum",
    `${what}: ${algorithm} checksum mismatch: expected ${expected}, got ${actual}.` +
      (fix ? ` ${fix}` : ""),
  );
}
