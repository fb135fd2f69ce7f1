/**
 * Verified downloads into the cache: stream to a temp file while hashing, check size and
 * checksum, then rename atomically into place. Nothing half-written is left behind: a failed
 * attempt removes its temp file, and the temp files of a killed process are removed by the next
 * download of the same file. A mirror that stalls is given up after a read timeout.
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
import { removeStaleTemps, tempPathFor } from "./_temp.ts";

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
  /**
   * Give up on a mirror that sends nothing (no response, or no further bytes of the body) for
   * this many milliseconds, and go on to the next one. `Infinity` waits for ever.
   * @default 30000
   */
  readTimeoutMs?: number;
  /**
   * Time limit for the whole download, every mirror included, in milliseconds. When it runs out
   * the current mirror is abandoned and the rest are not tried. `Infinity` sets no limit.
   * @default 1800000 (30 minutes)
   */
  timeoutMs?: number;
}

/** Default of {@link DownloadOptions.readTimeoutMs}. */
export const DEFAULT_READ_TIMEOUT_MS = 30_000;
/** Default of {@link DownloadOptions.timeoutMs}. */
export const DEFAULT_DOWNLOAD_TIMEOUT_MS = 30 * 60_000;

/**
 * Check that `url` is an absolute http(s) URL; else a {@link DatasetError}
 * ("invalid-argument") that names it, says what is wrong and what to pass. `what` says where
 * the URL came from (e.g. "mirror").
 *
 * @example
 * ```ts
 * import { checkHttpUrl } from "./cache.ts";
 * checkHttpUrl("https://ossci-datasets.s3.amazonaws.com/mnist/"); // returns the parsed URL
 * ```
 */
export function checkHttpUrl(url: string, what = "URL"): URL {
  const fix = `pass an absolute http:// or https:// URL, such as ` +
    `"https://ossci-datasets.s3.amazonaws.com/mnist/"`;
  if (typeof url !== "string") {
    throw new DatasetError("invalid-argument", `${what} ${String(url)} is not a string: ${fix}`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new DatasetError(
      "invalid-argument",
      `${what} ${JSON.stringify(url)} is not a valid URL: ${fix}`,
    );
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new DatasetError(
      "invalid-argument",
      `${what} ${JSON.stringify(url)} uses ${parsed.protocol}, which downloads do not support: ` +
        `${fix} (for local files, pass dataDir instead)`,
    );
  }
  return parsed;
}

/**
 * Join a mirror base URL and a file name (a missing trailing `/` on the base is added). A base
 * that is not an absolute http(s) URL is a {@link DatasetError} ("invalid-argument") naming it.
 *
 * @example
 * ```ts
 * import { mirrorUrl } from "./cache.ts";
 * mirrorUrl("http://127.0.0.1:8000/mnist", "t10k-labels-idx1-ubyte.gz");
 * // "http://127.0.0.1:8000/mnist/t10k-labels-idx1-ubyte.gz"
 * ```
 */
export function mirrorUrl(base: string, file: string): string {
  checkHttpUrl(base, "mirror");
  return new URL(file, base.endsWith("/") ? base : base + "/").href;
}

/**
 * A time limit in milliseconds: a positive number, or `Infinity` for none; `fallback` when
 * `undefined`. Anything else is a {@link DatasetError} ("invalid-argument") naming `name`.
 */
export function checkTimeout(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value) || value <= 0) {
    throw new DatasetError(
      "invalid-argument",
      `${name} must be a positive number of milliseconds (or Infinity for no limit), ` +
        `got ${String(value)}`,
    );
  }
  return value;
}

/** Milliseconds as a short phrase for messages ("30 s", "250 ms"). */
function duration(ms: number): string {
  return ms >= 1000 ? `${Number((ms / 1000).toFixed(1))} s` : `${Math.round(ms)} ms`;
}

/**
 * Download the first URL of `urls` that works to `dest`, verifying it. For each URL in order:
 * fetch, stream the body into a temp file next to `dest` (named after this host and process,
 * see below) while hashing, check the received length against `Content-Length` and
 * `expect.bytes`, check the SHA-256 (or MD5) against `expect`, then rename atomically to `dest`.
 * Any failure (network error, HTTP error status such as 404, truncated body, a mirror silent
 * for `readTimeoutMs`, size or checksum mismatch) removes the temp file and moves on to the next
 * URL; when `timeoutMs` runs out, the remaining URLs are not tried. When all fail, throws a
 * {@link DatasetError} that lists every URL with its reason; its `code` is the reason's code
 * when all URLs failed the same way (e.g. "checksum"), else "download".
 *
 * Temp files are `<dest>.<host>.<pid>.<random>.tmp`. Before downloading, those of `dest` left by
 * a process of this host that no longer runs (killed mid-download) are removed; telling that
 * needs --allow-run, and without it (or for another host's files) a temp file untouched for an
 * hour counts as left behind. A temp file of a process that still runs is never touched.
 *
 * URLs that are not absolute http(s) URLs are refused before anything is fetched.
 *
 * @returns the URL that worked and the number of bytes written
 * @example Fetching from the mirror (needs the network, so the doc tests skip it)
 * ```ts ignore
 * import { downloadVerified } from "./cache.ts";
 * await downloadVerified(
 *   ["https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz"],
 *   "/tmp/cache/mnist/t10k-labels-idx1-ubyte.gz",
 *   { expect: { md5: "ec29112dd5afa0611ce80d1b7f02629c", bytes: 4542 }, readTimeoutMs: 10_000 },
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
    readTimeoutMs: "number",
    timeoutMs: "number",
  });
  const file = opts.file ?? dest.split(/[\\/]/).pop() ?? dest;
  if (!Array.isArray(urls) || urls.length === 0) {
    throw new DatasetError(
      "invalid-argument",
      `cannot download ${file}: no mirror URLs given (pass mirrors: ["https://..."])`,
    );
  }
  for (const url of urls) checkHttpUrl(url, `download URL for ${file}`);
  const readTimeoutMs = checkTimeout("readTimeoutMs", opts.readTimeoutMs, DEFAULT_READ_TIMEOUT_MS);
  const timeoutMs = checkTimeout("timeoutMs", opts.timeoutMs, DEFAULT_DOWNLOAD_TIMEOUT_MS);
  const deadline = performance.now() + timeoutMs;
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
  await removeStaleTemps(dest);
  const failures: { url: string; error: DatasetError }[] = [];
  const skipped: string[] = [];
  let expired = false;
  for (const url of urls) {
    // A timer may fire a hair before performance.now() reaches the deadline: the attempt it cut
    // off is what says the time is up.
    expired ||= performance.now() >= deadline;
    if (expired) {
      skipped.push(url);
      continue;
    }
    try {
      const bytes = await downloadOnce(url, dest, file, opts, {
        readTimeoutMs,
        deadline,
        timeoutMs,
      });
      return { url, bytes };
    } catch (e) {
      const error = e instanceof DatasetError
        ? e
        : new DatasetError("download", `${url}: ${errorMessage(e)}`, { cause: e });
      failures.push({ url, error });
      if (error.code === "timeout") expired = true;
    }
  }
  const codes = new Set(failures.map((f) => f.error.code));
  const code: DatasetErrorCode = codes.size === 1 ? failures[0].error.code : "download";
  const lines = [
    ...failures.map((f) => `  - ${f.error.message}`),
    ...skipped.map((url) =>
      `  - ${url}: not tried: the download's time limit (timeoutMs = ${timeoutMs}) ran out`
    ),
  ].join("\n");
  const slow = codes.has("stalled") || codes.has("timeout")
    ? `raise readTimeoutMs / timeoutMs for a slow link, `
    : "";
  throw new DatasetError(
    code,
    `could not download ${file} from ${urls.length === 1 ? "its mirror" : "any mirror"}:\n` +
      `${lines}\nNo partial file was left in ${dirname(dest)}. Check the network (or proxy), ` +
      `${slow}pass other mirrors (mirrors: [...]), or put the file in a data dir ` +
      `(dataDir option or PERENNIAL_DATA).`,
    { cause: failures.length === 1 ? failures[0].error : failures.map((f) => f.error) },
  );
}

interface Limits {
  readTimeoutMs: number;
  /** `performance.now()` at which the whole download gives up. */
  deadline: number;
  timeoutMs: number;
}

/**
 * One attempt: fetch `url` into a temp file next to `dest`, verify, rename. A watchdog aborts the
 * request when the mirror stays silent for `readTimeoutMs` or the deadline passes, so that a
 * stalled mirror costs a bounded time and the next one gets its turn.
 */
async function downloadOnce(
  url: string,
  dest: string,
  file: string,
  opts: DownloadOptions,
  limits: Limits,
): Promise<number> {
  const expect = opts.expect ?? {};
  const controller = new AbortController();
  let why: "stalled" | "timeout" | undefined;
  let stallTimer: ReturnType<typeof setTimeout> | undefined;
  let answered = false;
  let received = 0;
  let total: number | undefined;
  const rearm = () => {
    clearTimeout(stallTimer);
    if (Number.isFinite(limits.readTimeoutMs)) {
      stallTimer = setTimeout(() => {
        why ??= "stalled";
        controller.abort();
      }, limits.readTimeoutMs);
    }
  };
  const left = limits.deadline - performance.now();
  const deadlineTimer = Number.isFinite(left)
    ? setTimeout(() => {
      why ??= "timeout";
      controller.abort();
    }, Math.max(0, left))
    : undefined;
  /** The error for an attempt the watchdog cut off, or `undefined` when it did not. */
  const watchdogError = (e: unknown): DatasetError | undefined => {
    const where = !answered
      ? "waiting for a response"
      : `after ${received}${total !== undefined ? ` of ${total}` : ""} bytes`;
    if (why === "stalled") {
      return new DatasetError(
        "stalled",
        `${url}: stalled ${where}: no data for ${duration(limits.readTimeoutMs)} ` +
          `(readTimeoutMs = ${limits.readTimeoutMs})`,
        { cause: e },
      );
    }
    if (why === "timeout") {
      return new DatasetError(
        "timeout",
        `${url}: gave up ${where}: the download's time limit ran out ` +
          `(timeoutMs = ${limits.timeoutMs})`,
        { cause: e },
      );
    }
    return undefined;
  };

  rearm();
  try {
    let res: Response;
    try {
      // identity: we want the exact bytes of the file, not a transport re-encoding of them
      res = await fetch(url, {
        headers: { "accept-encoding": "identity" },
        signal: controller.signal,
      });
    } catch (e) {
      throw watchdogError(e) ??
        new DatasetError("network", `${url}: network error: ${errorMessage(e)}`, { cause: e });
    }
    answered = true;
    clearTimeout(stallTimer);
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
    total = contentLength ?? expect.bytes;
    const check = pickChecksum(expect);
    const hasher = check ? createHasher(check.algorithm) : undefined;
    const tmp = tempPathFor(dest);
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
          rearm();
          try {
            const r = await reader.read();
            if (r.done) break;
            chunk = r.value;
          } catch (e) {
            throw watchdogError(e) ?? new DatasetError(
              "truncated",
              `${url}: download of ${file} broke off after ${received}` +
                `${total !== undefined ? ` of ${total}` : ""} bytes: ${errorMessage(e)}`,
              { cause: e },
            );
          }
          // The mirror answered: writing to disk is not its silence, so the watch pauses.
          clearTimeout(stallTimer);
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
  } finally {
    clearTimeout(stallTimer);
    clearTimeout(deadlineTimer);
  }
}
