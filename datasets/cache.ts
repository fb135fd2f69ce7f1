/**
 * Verified downloads into the cache: stream to a temp file while hashing, check size and
 * checksum, then rename atomically into place. Nothing half-written is ever left behind.
 *
 * @module
 */

import { dirname } from "node:path";
import { type Checksum, checksumMismatch, createHasher, pickChecksum } from "./checksum.ts";
import {
  checkDatasetOptions,
  DatasetError,
  type DatasetErrorCode,
  errorMessage,
} from "./errors.ts";

/** Download progress, reported once per received chunk. */
export interface DownloadProgress {
  /** File name being downloaded (e.g. `train-images-idx3-ubyte.gz`). */
  file: string;
  /** Bytes received so far from the current mirror. */
  received: number;
  /** Total bytes, from `Content-Length` (or the registry) when known. */
  total?: number;
}

/** Options of {@link downloadVerified}. */
export interface DownloadOptions {
  /** Expected size and checksum; the download fails when they do not match. */
  expect?: Checksum;
  /** File name for messages and progress events; defaults to the last part of `dest`. */
  file?: string;
  /** Called for every received chunk. */
  onProgress?: (p: DownloadProgress) => void;
}

/**
 * Join a mirror base URL and a file name (a missing trailing `/` on the base is added).
 *
 * @example
 * ```ts
 * import { mirrorUrl } from "./cache.ts";
 * mirrorUrl("http://127.0.0.1:8000/mnist", "t10k-labels-idx1-ubyte.gz");
 * // "http://127.0.0.1:8000/mnist/t10k-labels-idx1-ubyte.gz"
 * ```
 */
export function mirrorUrl(base: string, file: string): string {
  return new URL(file, base.endsWith("/") ? base : base + "/").href;
}

/**
 * Download the first URL of `urls` that works to `dest`, verifying it. For each URL in
 * order: fetch, stream the body into `<dest>.<random>.tmp` while hashing, check the
 * received length against `Content-Length` and `expect.bytes`, check the SHA-256 (or MD5)
 * against `expect`, then rename atomically to `dest`. Any failure (network error, HTTP
 * error status such as 404, truncated body, size or checksum mismatch) removes the temp
 * file and moves on to the next URL. When all fail, throws a {@link DatasetError} that
 * lists every URL with its reason; its `code` is the reason's code when all URLs failed
 * the same way (e.g. "checksum"), else "download".
 *
 * @returns the URL that worked and the number of bytes written
 * @example
 * ```ts
 * import { downloadVerified } from "./cache.ts";
 * await downloadVerified(
 *   ["https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz"],
 *   "/tmp/cache/mnist/t10k-labels-idx1-ubyte.gz",
 *   { expect: { md5: "ec29112dd5afa0611ce80d1b7f02629c", bytes: 4542 } },
 * );
 * ```
 */
export async function downloadVerified(
  urls: string[],
  dest: string,
  opts: DownloadOptions = {},
): Promise<{ url: string; bytes: number }> {
  checkDatasetOptions("downloadVerified", opts, {
    expect: "object",
    file: "string",
    onProgress: "function",
  });
  const file = opts.file ?? dest.split(/[\\/]/).pop() ?? dest;
  if (urls.length === 0) {
    throw new DatasetError(
      "invalid-argument",
      `cannot download ${file}: no mirror URLs given (pass mirrors: ["https://..."])`,
    );
  }
  try {
    await Deno.mkdir(dirname(dest), { recursive: true });
  } catch (e) {
    throw new DatasetError(
      "download",
      `cannot create the cache folder ${dirname(dest)} for ${file}: ${errorMessage(e)}. ` +
        `Pass a writable cacheDir or set PERENNIAL_CACHE to a writable folder.`,
      { cause: e },
    );
  }
  const failures: { url: string; error: DatasetError }[] = [];
  for (const url of urls) {
    try {
      const bytes = await downloadOnce(url, dest, file, opts);
      return { url, bytes };
    } catch (e) {
      const error = e instanceof DatasetError
        ? e
        : new DatasetError("download", `${url}: ${errorMessage(e)}`, { cause: e });
      failures.push({ url, error });
    }
  }
  const codes = new Set(failures.map((f) => f.error.code));
  const code: DatasetErrorCode = codes.size === 1 ? failures[0].error.code : "download";
  const lines = failures.map((f) => `  - ${f.error.message}`).join("\n");
  throw new DatasetError(
    code,
    `could not download ${file} from ${urls.length === 1 ? "its mirror" : "any mirror"}:\n` +
      `${lines}\nNo partial file was left in ${dirname(dest)}. Check the network (or proxy), ` +
      `pass other mirrors (mirrors: [...]), or put the file in a data dir ` +
      `(dataDir option or PERENNIAL_DATA).`,
    { cause: failures.length === 1 ? failures[0].error : failures.map((f) => f.error) },
  );
}

/** One attempt: fetch `url` into a temp file next to `dest`, verify, rename. */
async function downloadOnce(
  url: string,
  dest: string,
  file: string,
  opts: DownloadOptions,
): Promise<number> {
  const expect = opts.expect ?? {};
  let res: Response;
  try {
    // identity: we want the exact bytes of the file, not a transport re-encoding of them
    res = await fetch(url, { headers: { "accept-encoding": "identity" } });
  } catch (e) {
    throw new DatasetError("network", `${url}: network error: ${errorMessage(e)}`, { cause: e });
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new DatasetError(
      "http",
      `${url}: HTTP ${res.status}${res.statusText ? " " + res.statusText : ""}`,
    );
  }
  const encoding = res.headers.get("content-encoding");
  const lengthHeader = res.headers.get("content-length");
  const advertised = lengthHeader !== null && (!encoding || encoding === "identity")
    ? Number(lengthHeader)
    : undefined;
  const contentLength = advertised !== undefined && Number.isSafeInteger(advertised)
    ? advertised
    : undefined;
  if (
    contentLength !== undefined && expect.bytes !== undefined && contentLength !== expect.bytes
  ) {
    await res.body.cancel();
    throw new DatasetError(
      "size",
      `${url}: size mismatch: server sends ${contentLength} bytes, but ${file} must be ` +
        `${expect.bytes} bytes (wrong file on this mirror)`,
    );
  }
  const total = contentLength ?? expect.bytes;
  const check = pickChecksum(expect);
  const hasher = check ? createHasher(check.algorithm) : undefined;
  const tmp = `${dest}.${randomHex(8)}.tmp`;
  let received = 0;
  let out: Deno.FsFile;
  try {
    out = await Deno.open(tmp, { write: true, createNew: true });
  } catch (e) {
    await res.body.cancel();
    throw e;
  }
  try {
    const reader = res.body.getReader();
    try {
      while (true) {
        let chunk: Uint8Array;
        try {
          const r = await reader.read();
          if (r.done) break;
          chunk = r.value;
        } catch (e) {
          throw new DatasetError(
            "truncated",
            `${url}: download of ${file} broke off after ${received}` +
              `${total !== undefined ? ` of ${total}` : ""} bytes: ${errorMessage(e)}`,
            { cause: e },
          );
        }
        hasher?.update(chunk);
        for (let off = 0; off < chunk.length;) off += await out.write(chunk.subarray(off));
        received += chunk.length;
        opts.onProgress?.({ file, received, total });
      }
    } finally {
      out.close();
      await reader.cancel().catch(() => {}); // no-op when the body was read to the end
    }
    if (contentLength !== undefined && received !== contentLength) {
      throw new DatasetError(
        "truncated",
        `${url}: download of ${file} is truncated: received ${received} bytes, but ` +
          `Content-Length is ${contentLength}`,
      );
    }
    if (expect.bytes !== undefined && received !== expect.bytes) {
      throw new DatasetError(
        "size",
        `${url}: size mismatch: received ${received} bytes, but ${file} must be ` +
          `${expect.bytes} bytes (truncated or wrong file)`,
      );
    }
    if (check && hasher) {
      const actual = hasher.digest("hex");
      if (actual !== check.expected) {
        throw checksumMismatch(`${file} from ${url}`, check.algorithm, check.expected, actual);
      }
    }
    await Deno.rename(tmp, dest);
    return received;
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}
