/**
 * Loading a registered dataset: data dir → cache → verified download, with an
 * in-process memo.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import { downloadVerified, mirrorUrl } from "./cache.ts";
import { verifyBytes } from "./checksum.ts";
import { defaultCacheDir, resolveDataDir } from "./dirs.ts";
import { checkDatasetOptions, DatasetError, errorMessage } from "./errors.ts";
import { parseIdx } from "./idx.ts";
import {
  type DatasetFile,
  type DatasetName,
  type DatasetSpec,
  type FileRole,
  getDatasetSpec,
} from "./registry.ts";
import type { ImageDataset, ImageSplit, LoadOptions } from "./types.ts";
import type { OptionSpec } from "../lib/options.ts";

/** The keys of {@link LoadOptions}, for checking what users pass (benchmarks extend it). */
export const LOAD_OPTIONS: OptionSpec<LoadOptions> = {
  dataDir: "string",
  cacheDir: "string",
  download: "boolean",
  mirrors: "array",
  onProgress: "function",
};

const memo = new Map<string, Promise<ImageDataset>>();

/**
 * Load a dataset by name, verifying every file it reads.
 *
 * Each of the four files (train/test images/labels) is looked up in order:
 * 1. the data dir (`opts.dataDir`, else env `PERENNIAL_DATA`): `<dataDir>/<name>/<file>`,
 *    then `<dataDir>/<file>`; in each place the `.gz` file (checked against the registry's
 *    SHA-256, or MD5 when that is all that is known), then the decompressed file (checked
 *    by its IDX header: dims and size must match the dataset). A bad file there is an
 *    error: user data is never deleted.
 * 2. the cache (`opts.cacheDir`, else {@link defaultCacheDir}): `<cacheDir>/<name>/<file>`,
 *    checked like a data-dir `.gz`. A corrupt cached file is removed and downloaded again
 *    when downloads are allowed; with `download: false` it is an error that says to delete it.
 * 3. download (unless `download: false`) from `opts.mirrors` (default: the registry's
 *    canonical mirrors), in order, falling back to the next mirror on any failure; streamed
 *    to a temp file, verified, then renamed into the cache.
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
  const spec = getDatasetSpec(name);
  const dataDir = resolveDataDir(opts.dataDir);
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const key = [spec.name, dataDir === undefined ? "" : resolve(dataDir), resolve(cacheDir)]
    .join("\0");
  let pending = memo.get(key);
  if (!pending) {
    const fresh = loadFresh(spec, dataDir, cacheDir, opts);
    memo.set(key, fresh);
    fresh.catch(() => {
      if (memo.get(key) === fresh) memo.delete(key); // failures are not memoized
    });
    pending = fresh;
  }
  return await pending;
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
}

async function loadFresh(
  spec: DatasetSpec,
  dataDir: string | undefined,
  cacheDir: string,
  opts: LoadOptions,
): Promise<ImageDataset> {
  const ctx: Context = {
    spec,
    dataDir,
    cacheDir,
    download: opts.download ?? true,
    mirrors: opts.mirrors ?? spec.mirrors,
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
        verifyBytes(bytes, f, `${spec.title} file ${gzPath}`, fix);
        return decode(gunzip(bytes, spec, gzPath, fix), spec, f, gzPath, fix);
      }
      const rawPath = join(dir, rawName);
      if (await isFile(rawPath)) {
        return decode(await Deno.readFile(rawPath), spec, f, rawPath, fix);
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
      verifyBytes(bytes, f, `${spec.title} cached file ${cachePath}`, fix);
      return decode(gunzip(bytes, spec, cachePath, fix), spec, f, cachePath, fix);
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
  try {
    await downloadVerified(urls, cachePath, {
      expect: f,
      file: f.file,
      onProgress: ctx.onProgress,
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
    const out = gunzipSync(bytes);
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch (e) {
    throw new DatasetError(
      "format",
      `${spec.title} file ${path} is not valid gzip data (${errorMessage(e)}). ${fix}`.trimEnd(),
      { cause: e },
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
