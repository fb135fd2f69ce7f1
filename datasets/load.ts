/**
 * Loading a registered dataset: data dir → cache → verified download, with an
 * in-process memo.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import {
  checkHttpUrl,
  checkTimeout,
  DEFAULT_DOWNLOAD_TIMEOUT_MS,
  DEFAULT_READ_TIMEOUT_MS,
  downloadVerified,
  mirrorUrl,
} from "./cache.ts";
import { checksumMismatch, hashBytes, pickChecksum } from "./checksum.ts";
import { checkedDataDir, defaultCacheDir, resolveDataDir } from "./dirs.ts";
import { checkDatasetOptions, DatasetError, errorMessage } from "./errors.ts";
import { parseIdx, readIdxHeader } from "./idx.ts";
import {
  ARCHIVE_DATASETS,
  type ArchiveDatasetSpec,
  type DatasetFile,
  type DatasetName,
  type DatasetSpec,
  type FileRole,
  getDatasetSpec,
  isArchiveDataset,
} from "./registry.ts";
import { loadArchiveDataset } from "./archive.ts";
import type { ImageDataset, ImageSplit, LoadOptions } from "./types.ts";
import type { OptionSpec } from "../lib/options.ts";

/** The keys of {@link LoadOptions}, for checking what users pass (benchmarks extend it). */
export const LOAD_OPTIONS: OptionSpec<LoadOptions> = {
  dataDir: "string",
  cacheDir: "string",
  download: "boolean",
  // Checked by checkMirrors, whose message shows the expected form.
  mirrors: "any",
  onProgress: "function",
  readTimeoutMs: "number",
  timeoutMs: "number",
};

const memo = new Map<string, Promise<ImageDataset>>();

/**
 * Load a dataset by name, verifying every file it reads. CIFAR-10, CIFAR-100 and Tiny ImageNet
 * (`"cifar10"`, `"cifar100"`, `"tiny-imagenet"`) are one archive each, looked up in the same
 * three places (see {@link loadArchive}); the IDX datasets are four files, as follows.
 *
 * Each of the four files (train/test images/labels) is looked up in order:
 * 1. the data dir (`opts.dataDir`, else env `PERENNIAL_DATA`): `<dataDir>/<name>/<file>`,
 *    then `<dataDir>/<file>`; in each place the `.gz` file (checked against the registry's
 *    SHA-256, or MD5 when that is all that is known; a `.gz` whose own checksum differs is
 *    accepted when it decompresses to the original content, as a re-compressed copy does),
 *    then the decompressed file (checked by its IDX header, then by the checksum of the
 *    original content). A bad file there is an error that says what was found (cut short,
 *    not gzip, or complete but with other content): user data is never deleted. A data dir
 *    that does not exist is an error too, not a reason to download.
 * 2. the cache (`opts.cacheDir`, else {@link defaultCacheDir}): `<cacheDir>/<name>/<file>`,
 *    checked like a data-dir `.gz`. A corrupt cached file is removed and downloaded again
 *    when downloads are allowed; with `download: false` it is an error that says to delete it.
 * 3. download (unless `download: false`) from `opts.mirrors` (default: the registry's
 *    canonical mirrors), in order, falling back to the next mirror on any failure (a mirror
 *    silent for `readTimeoutMs` included); streamed to a temp file, verified, then renamed
 *    into the cache. All the dataset's downloads together get `timeoutMs`.
 *
 * Results are memoized per (name, resolved data dir, resolved cache dir): later calls
 * return the same object, so treat it as read-only (copy before changing pixels). See
 * {@link clearDatasetMemo}. Errors are {@link DatasetError}s that name the file, path or
 * URL and the fix.
 *
 * @example
 * ```ts
 * import { loadDataset } from "./mod.ts";
 * // From $PERENNIAL_DATA when set (or `dataDir`), else the cache, else a verified download.
 * const mnist = await loadDataset("mnist");
 * console.log(mnist.train.n, mnist.train.rows, mnist.train.cols); // 60000 28 28
 * ```
 */
export async function loadDataset(
  name: DatasetName,
  opts: LoadOptions = {},
): Promise<ImageDataset> {
  checkDatasetOptions("loadDataset", opts, LOAD_OPTIONS);
  if (isArchiveDataset(name)) return await loadArchive(ARCHIVE_DATASETS[name], opts);
  const spec = getDatasetSpec(name);
  // Checked before the memo, so that a bad option is an error even when the data are loaded.
  const checked: Checked = {
    mirrors: checkMirrors(opts.mirrors, spec),
    readTimeoutMs: checkTimeout("readTimeoutMs", opts.readTimeoutMs, DEFAULT_READ_TIMEOUT_MS),
    timeoutMs: checkTimeout("timeoutMs", opts.timeoutMs, DEFAULT_DOWNLOAD_TIMEOUT_MS),
  };
  const dataDir = resolveDataDir(opts.dataDir);
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const key = [spec.name, dataDir === undefined ? "" : resolve(dataDir), resolve(cacheDir)]
    .join("\0");
  let pending = memo.get(key);
  if (!pending) {
    const fresh = loadFresh(spec, cacheDir, opts, checked);
    memo.set(key, fresh);
    fresh.catch(() => {
      if (memo.get(key) === fresh) memo.delete(key); // failures are not memoized
    });
    pending = fresh;
  }
  return await pending;
}

/**
 * Load a dataset distributed as one archive, described by `spec` (an entry of
 * {@link ARCHIVE_DATASETS}, or a copy with other checksums or counts, as tests use for the small
 * archives they generate): data dir → cache → verified download, as {@link loadDataset}, which
 * calls it for CIFAR-10, CIFAR-100 and Tiny ImageNet. Memoized per (name, archive checksum,
 * data dir, cache dir).
 *
 * @example
 * ```ts ignore
 * import { ARCHIVE_DATASETS, loadArchive } from "./mod.ts";
 * const cifar = await loadArchive(ARCHIVE_DATASETS.cifar10, { dataDir: "/data" });
 * console.log(cifar.train.n, cifar.train.channels); // 50000 3
 * ```
 */
export async function loadArchive(
  spec: ArchiveDatasetSpec,
  opts: LoadOptions = {},
): Promise<ImageDataset> {
  checkDatasetOptions("loadArchive", opts, LOAD_OPTIONS);
  const mirrors = opts.mirrors === undefined
    ? spec.mirrors
    : checkArchiveMirrors(opts.mirrors, spec);
  const readTimeoutMs = checkTimeout("readTimeoutMs", opts.readTimeoutMs, DEFAULT_READ_TIMEOUT_MS);
  const timeoutMs = checkTimeout("timeoutMs", opts.timeoutMs, DEFAULT_DOWNLOAD_TIMEOUT_MS);
  const dataDir = resolveDataDir(opts.dataDir);
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const key = [
    spec.name,
    spec.archive.sha256 ?? spec.archive.md5 ?? "",
    dataDir === undefined ? "" : resolve(dataDir),
    resolve(cacheDir),
  ].join("\0");
  let pending = memo.get(key);
  if (!pending) {
    const fresh = (async () =>
      await loadArchiveDataset(spec, {
        dataDir: await checkedDataDir(opts.dataDir, `the ${spec.title} archive`),
        cacheDir,
        download: opts.download ?? true,
        mirrors,
        onProgress: opts.onProgress,
        readTimeoutMs,
        timeoutMs,
      }))();
    memo.set(key, fresh);
    fresh.catch(() => {
      if (memo.get(key) === fresh) memo.delete(key);
    });
    pending = fresh;
  }
  return await pending;
}

function checkArchiveMirrors(mirrors: unknown, spec: ArchiveDatasetSpec): string[] {
  if (!Array.isArray(mirrors)) {
    throw new DatasetError(
      "invalid-argument",
      `mirrors must be a list of base URLs, such as [${JSON.stringify(spec.mirrors[0])}], ` +
        `got ${JSON.stringify(mirrors) ?? String(mirrors)}`,
    );
  }
  for (const m of mirrors) checkHttpUrl(m, `${spec.title} mirror`);
  return mirrors;
}

/**
 * Forget every dataset memoized by {@link loadDataset} (the next call reads files again).
 *
 * @example
 * ```ts
 * import { clearDatasetMemo, loadDataset } from "./mod.ts";
 * await loadDataset("mnist");
 * clearDatasetMemo(); // e.g. after replacing files on disk
 * ```
 */
export function clearDatasetMemo(): void {
  memo.clear();
}

interface Context {
  spec: DatasetSpec;
  dataDir?: string;
  cacheDir: string;
  download: boolean;
  mirrors: string[];
  onProgress?: LoadOptions["onProgress"];
  readTimeoutMs: number;
  timeoutMs: number;
  /** `performance.now()` at which the dataset's downloads give up; set by the first one. */
  deadline?: number;
}

/** `opts.mirrors`, checked to be a list of http(s) URLs (each bad one named). */
function checkMirrors(mirrors: unknown, spec: DatasetSpec): string[] {
  if (mirrors === undefined) return spec.mirrors;
  if (!Array.isArray(mirrors)) {
    throw new DatasetError(
      "invalid-argument",
      `mirrors must be a list of base URLs, such as [${JSON.stringify(spec.mirrors[0])}], ` +
        `got ${JSON.stringify(mirrors) ?? String(mirrors)}`,
    );
  }
  for (const m of mirrors) checkHttpUrl(m, `${spec.title} mirror`);
  return mirrors;
}

/** The options {@link loadDataset} checks before anything else. */
type Checked = Pick<Context, "mirrors" | "readTimeoutMs" | "timeoutMs">;

async function loadFresh(
  spec: DatasetSpec,
  cacheDir: string,
  opts: LoadOptions,
  checked: Checked,
): Promise<ImageDataset> {
  const ctx: Context = {
    ...checked,
    spec,
    dataDir: await checkedDataDir(opts.dataDir, `the ${spec.title} files`),
    cacheDir,
    download: opts.download ?? true,
    onProgress: opts.onProgress,
  };
  const parts: Partial<Record<FileRole, Uint8Array>> = {};
  for (const f of spec.files) parts[f.role] = await loadFile(ctx, f);
  return {
    name: spec.name,
    train: makeSplit(spec, "train", parts.trainImages, parts.trainLabels),
    test: makeSplit(spec, "test", parts.testImages, parts.testLabels),
    classes: spec.classes,
    classNames: [...spec.classNames],
  };
}

/** Find, verify and decode one file; returns its IDX payload. */
async function loadFile(ctx: Context, f: DatasetFile): Promise<Uint8Array> {
  const { spec } = ctx;
  const rawName = f.file.replace(/\.gz$/, "");
  const searched: string[] = [];
  if (ctx.dataDir !== undefined) {
    const fix = `Replace it with a good copy (${spec.homepage}), or remove it so that ` +
      `perennial looks in the cache and downloads it.`;
    for (const dir of [join(ctx.dataDir, spec.name), ctx.dataDir]) {
      searched.push(dir);
      const gzPath = join(dir, f.file);
      if (await isFile(gzPath)) {
        const bytes = await Deno.readFile(gzPath);
        const idx = openGzip(bytes, spec, f, `${spec.title} file ${gzPath}`, gzPath, fix);
        return decode(idx, spec, f, gzPath, fix);
      }
      const rawPath = join(dir, rawName);
      if (await isFile(rawPath)) {
        const idx = await Deno.readFile(rawPath);
        const data = decode(idx, spec, f, rawPath, fix);
        checkRaw(idx, f, `${spec.title} file ${rawPath}`, fix);
        return data;
      }
    }
  }

  const cachePath = join(ctx.cacheDir, spec.name, f.file);
  searched.push(`cache ${join(ctx.cacheDir, spec.name)}`);
  let removedNote = "";
  if (await isFile(cachePath)) {
    const fix = ctx.download
      ? ""
      : `Delete it (rm "${cachePath}") and load again with download enabled (it is then ` +
        `downloaded again), or pass dataDir / set PERENNIAL_DATA to a folder with a good copy.`;
    try {
      const bytes = await Deno.readFile(cachePath);
      const idx = openGzip(
        bytes,
        spec,
        f,
        `${spec.title} cached file ${cachePath}`,
        cachePath,
        fix,
      );
      return decode(idx, spec, f, cachePath, fix);
    } catch (e) {
      if (!ctx.download || !(e instanceof DatasetError)) throw e;
      // A corrupt cache entry is ours to replace: remove it and download a fresh copy.
      await Deno.remove(cachePath);
      removedNote = ` (The cached copy was corrupt and has been removed: ${e.message})`;
    }
  }

  if (!ctx.download) {
    throw new DatasetError(
      "not-found",
      `${spec.title} file ${f.file} not found in ${searched.join(", ")} and download ` +
        `disabled: pass dataDir or set PERENNIAL_DATA to a folder that holds it ` +
        `(as <dir>/${spec.name}/${f.file} or <dir>/${f.file}, .gz or decompressed), ` +
        `or allow download (download: true).`,
    );
  }

  const urls = ctx.mirrors.map((m) => mirrorUrl(m, f.file));
  const now = performance.now();
  ctx.deadline ??= now + ctx.timeoutMs;
  if (now >= ctx.deadline) {
    throw new DatasetError(
      "timeout",
      `${spec.title}: ${f.file} was not downloaded: the time limit for the dataset's downloads ` +
        `(timeoutMs = ${ctx.timeoutMs}) ran out on the files before it. Raise timeoutMs for a ` +
        `slow link, or put the files in a data dir (dataDir option or PERENNIAL_DATA).`,
    );
  }
  try {
    await downloadVerified(urls, cachePath, {
      // The registry's `raw` says what the content must be; downloads check the .gz bytes.
      expect: { sha256: f.sha256, md5: f.md5, bytes: f.bytes },
      file: f.file,
      onProgress: ctx.onProgress,
      readTimeoutMs: ctx.readTimeoutMs,
      timeoutMs: ctx.deadline - now,
    });
  } catch (e) {
    if (e instanceof DatasetError) {
      throw new DatasetError(e.code, `${spec.title}: ${e.message}${removedNote}`, { cause: e });
    }
    throw e;
  }
  const bytes = await Deno.readFile(cachePath);
  return decode(gunzip(bytes, spec, cachePath, ""), spec, f, cachePath, "");
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

function gunzip(bytes: Uint8Array, spec: DatasetSpec, path: string, fix: string): Uint8Array {
  try {
    return gunzipBytes(bytes);
  } catch (e) {
    throw new DatasetError(
      "format",
      `${spec.title} file ${path} is not valid gzip data (${errorMessage(e)}). ${fix}`.trimEnd(),
      { cause: e },
    );
  }
}

function gunzipBytes(bytes: Uint8Array): Uint8Array {
  const out = gunzipSync(bytes);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Whether a zlib error says the compressed data stopped before its end. */
function endedEarly(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === "Z_BUF_ERROR" || /unexpected end of file/i.test(errorMessage(e));
}

/**
 * Check a `.gz` file against the registry and return its decompressed bytes. The original
 * `.gz` bytes pass on their checksum. Other bytes may still be the right data compressed again
 * (another level, tool or header), so they are decompressed and judged by their content: the
 * original content passes; otherwise the error says what the file is (cut short, not gzip, or
 * complete gzip with other content), so that a complete file is never called truncated.
 */
function openGzip(
  bytes: Uint8Array,
  spec: DatasetSpec,
  f: DatasetFile,
  what: string,
  path: string,
  fix: string,
): Uint8Array {
  const tail = fix ? ` ${fix}` : "";
  let mismatch: { code: "size" | "checksum"; text: string } | undefined;
  if (f.bytes !== undefined && bytes.length !== f.bytes) {
    mismatch = {
      code: "size",
      text: `${what}: size mismatch: expected ${f.bytes} bytes, got ${bytes.length}`,
    };
  } else {
    const check = pickChecksum(f);
    const actual = check && hashBytes(bytes, check.algorithm);
    if (check && actual !== check.expected) {
      mismatch = {
        code: "checksum",
        text: `${what}: ${check.algorithm} checksum mismatch: expected ${check.expected}, ` +
          `got ${actual}`,
      };
    }
  }
  if (!mismatch) return gunzip(bytes, spec, path, fix);
  if (!f.raw) {
    throw new DatasetError(mismatch.code, `${mismatch.text} (truncated or wrong file).${tail}`);
  }
  let idx: Uint8Array;
  try {
    idx = gunzipBytes(bytes);
  } catch (e) {
    const found = endedEarly(e)
      ? "the gzip data stops short: the file is truncated"
      : bytes[0] === 0x1f && bytes[1] === 0x8b
      ? `it is damaged gzip data (${errorMessage(e)})`
      : `it is not gzip data (${errorMessage(e)})`;
    throw new DatasetError(mismatch.code, `${mismatch.text}: ${found}.${tail}`, { cause: e });
  }
  const differs = rawDifference(idx, f);
  if (differs === undefined) return idx; // the original content, compressed again
  throw new DatasetError(
    differs.code,
    `${mismatch.text}: it is a complete gzip file, but its content differs from ` +
      `${spec.title}'s (not just re-compressed): ${differs.text}.${tail}`,
  );
}

/**
 * How decompressed bytes differ from the registry's `raw` record of `f` (size, IDX dims,
 * checksum), or `undefined` when they match it (or nothing is recorded).
 */
function rawDifference(
  idx: Uint8Array,
  f: DatasetFile,
): { code: "size" | "checksum"; text: string } | undefined {
  const raw = f.raw;
  if (!raw) return undefined;
  const check = pickChecksum(raw);
  if (raw.bytes !== undefined && idx.length !== raw.bytes) {
    let dims = "";
    try {
      dims = `, IDX dims ${readIdxHeader(idx).dims.join("x")}`;
    } catch {
      dims = ", not IDX data";
    }
    return {
      code: "size",
      text: `decompressed it is ${idx.length} bytes${dims}; the original is ${raw.bytes} ` +
        `bytes, IDX dims ${f.dims.join("x")}`,
    };
  }
  if (!check) return undefined;
  const actual = hashBytes(idx, check.algorithm);
  if (actual === check.expected) return undefined;
  return {
    code: "checksum",
    text: `decompressed ${check.algorithm} ${actual}, the original's ${check.expected}`,
  };
}

/** Check a decompressed file (already parsed as IDX) against the original content. */
function checkRaw(idx: Uint8Array, f: DatasetFile, what: string, fix: string): void {
  const raw = f.raw;
  const check = raw && pickChecksum(raw);
  if (!check) return;
  const actual = hashBytes(idx, check.algorithm);
  if (actual !== check.expected) {
    throw checksumMismatch(
      `${what} (decompressed)`,
      check.algorithm,
      check.expected,
      actual,
      `Its IDX header is right, but its content differs from the original. ${fix}`.trimEnd(),
    );
  }
}

/**
 * Parse IDX bytes and check the dims against the registry. Returns the payload as a view
 * into `idx` (no copy: `idx` is a fresh buffer nobody else holds).
 */
function decode(
  idx: Uint8Array,
  spec: DatasetSpec,
  f: DatasetFile,
  path: string,
  fix: string,
): Uint8Array {
  let parsed: { dims: number[]; data: Uint8Array };
  try {
    parsed = parseIdx(idx);
  } catch (e) {
    if (!(e instanceof DatasetError)) throw e;
    throw new DatasetError(
      e.code,
      `${spec.title} file ${path}: ${
        e.message.replace(/\.$/, "")
      }. The file is truncated or corrupt. ${fix}`
        .trimEnd(),
      { cause: e },
    );
  }
  const { dims, data } = parsed;
  if (dims.length !== f.dims.length || dims.some((d, i) => d !== f.dims[i])) {
    throw new DatasetError(
      "size",
      `${spec.title} file ${path} has IDX dims ${dims.join("x")}, but ${f.role} of ` +
        `${spec.title} must have dims ${f.dims.join("x")}: wrong or truncated file. ${fix}`
          .trimEnd(),
    );
  }
  return data;
}

function makeSplit(
  spec: DatasetSpec,
  which: "train" | "test",
  images: Uint8Array | undefined,
  labels: Uint8Array | undefined,
): ImageSplit {
  const imagesFile = spec.files.find((f) => f.role === `${which}Images`);
  if (!images || !labels || !imagesFile) {
    throw new DatasetError("format", `${spec.title}: registry lacks the ${which} files`);
  }
  const [n, rows, cols] = imagesFile.dims;
  if (labels.length !== n) {
    throw new DatasetError(
      "size",
      `${spec.title} ${which}: ${n} images but ${labels.length} labels`,
    );
  }
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] >= spec.classes) {
      throw new DatasetError(
        "format",
        `${spec.title} ${which} labels: label ${labels[i]} at index ${i} is outside ` +
          `0..${spec.classes - 1}: corrupt labels file`,
      );
    }
  }
  return { images, labels, n, rows, cols };
}
