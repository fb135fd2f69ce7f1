/**
 * Loading a dataset distributed as one archive (CIFAR-10/100, Tiny ImageNet): data dir → cache →
 * verified download of the archive, then its members parsed.
 *
 * @module
 */
import { join } from "node:path";
import { downloadVerified, mirrorUrl } from "./cache.ts";
import { verifyBytes } from "./checksum.ts";
import { DatasetError } from "./errors.ts";
import type { ArchiveDatasetSpec } from "./registry.ts";
import type { ImageDataset, LoadOptions } from "./types.ts";

/** What {@link loadArchiveDataset} needs besides the spec: the options, checked and resolved. */
export interface ArchiveContext {
  /** The data dir (checked to exist), if any. */
  dataDir?: string;
  cacheDir: string;
  download: boolean;
  mirrors: string[];
  onProgress?: LoadOptions["onProgress"];
  readTimeoutMs: number;
  timeoutMs: number;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * Parses a verified archive. The parsers (and the npm packages they use) are imported when an
 * archive is first read, so that the rest of `datasets/` (downloads, IDX files) keeps no bare
 * imports and runs without the repository's import map.
 */
async function parse(
  bytes: Uint8Array,
  spec: ArchiveDatasetSpec,
  path: string,
  fix: string,
): Promise<ImageDataset> {
  const out = spec.format === "tiny-imagenet-zip"
    ? (await import("./tiny_imagenet.ts")).parseTinyImageNetZip(bytes, spec, path, fix)
    : (await import("./cifar.ts")).parseCifarArchive(bytes, spec, path, fix);
  out.classNames ??= spec.classNames ? [...spec.classNames] : undefined;
  return out;
}

/**
 * Finds, verifies and parses the archive of `spec`:
 * 1. the data dir: `<dataDir>/<name>/<archive>`, then `<dataDir>/<archive>`, checked against
 *    the registry's size and checksum; a bad copy there is an error (user files are never
 *    deleted);
 * 2. the cache: `<cacheDir>/<name>/<archive>`, checked the same way; a bad cached copy is
 *    removed and downloaded again when downloads are allowed, else an error saying to delete it;
 * 3. a download from the mirrors into the cache through a temp file, renamed only once its size
 *    and checksum match (so nothing half-written is left in the cache).
 *
 * Parse errors (a missing or damaged member) name the archive, the member and the fix.
 *
 * @example
 * ```ts ignore
 * import { loadArchiveDataset } from "./archive.ts";
 * import { ARCHIVE_DATASETS } from "./registry.ts";
 * const ds = await loadArchiveDataset(ARCHIVE_DATASETS.cifar10, {
 *   cacheDir: "/tmp/cache", download: true, mirrors: ARCHIVE_DATASETS.cifar10.mirrors,
 *   readTimeoutMs: 30_000, timeoutMs: 1_800_000,
 * });
 * ```
 */
export async function loadArchiveDataset(
  spec: ArchiveDatasetSpec,
  ctx: ArchiveContext,
): Promise<ImageDataset> {
  const file = spec.archive.file;
  const searched: string[] = [];
  if (ctx.dataDir !== undefined) {
    const fix = `Replace it with a good copy (${spec.homepage}), or remove it so that ` +
      `perennial looks in the cache and downloads it.`;
    for (const dir of [join(ctx.dataDir, spec.name), ctx.dataDir]) {
      searched.push(dir);
      const path = join(dir, file);
      if (await isFile(path)) {
        const bytes = await Deno.readFile(path);
        verifyBytes(bytes, spec.archive, `${spec.title} archive ${path}`, fix);
        return await parse(bytes, spec, path, fix);
      }
    }
  }

  const cachePath = join(ctx.cacheDir, spec.name, file);
  searched.push(`cache ${join(ctx.cacheDir, spec.name)}`);
  let removedNote = "";
  if (await isFile(cachePath)) {
    const fix = `Delete it (rm "${cachePath}") and load again with download enabled (it is then ` +
      `downloaded again), or pass dataDir / set PERENNIAL_DATA to a folder with a good copy.`;
    const bytes = await Deno.readFile(cachePath);
    try {
      verifyBytes(bytes, spec.archive, `${spec.title} cached archive ${cachePath}`, fix);
      return await parse(bytes, spec, cachePath, fix);
    } catch (e) {
      if (!ctx.download || !(e instanceof DatasetError)) throw e;
      if (e.code !== "size" && e.code !== "checksum") throw e;
      // A cached archive that is not the registry's file is ours to replace.
      await Deno.remove(cachePath);
      removedNote = ` (The cached copy was corrupt and has been removed: ${e.message})`;
    }
  }

  if (!ctx.download) {
    throw new DatasetError(
      "not-found",
      `${spec.title} archive ${file} not found in ${searched.join(", ")} and download ` +
        `disabled: pass dataDir or set PERENNIAL_DATA to a folder that holds it ` +
        `(as <dir>/${spec.name}/${file} or <dir>/${file}), or allow download (download: true).`,
    );
  }
  try {
    await downloadVerified(ctx.mirrors.map((m) => mirrorUrl(m, file)), cachePath, {
      expect: { sha256: spec.archive.sha256, md5: spec.archive.md5, bytes: spec.archive.bytes },
      file,
      onProgress: ctx.onProgress,
      readTimeoutMs: ctx.readTimeoutMs,
      timeoutMs: ctx.timeoutMs,
    });
  } catch (e) {
    if (e instanceof DatasetError) {
      throw new DatasetError(e.code, `${spec.title}: ${e.message}${removedNote}`, { cause: e });
    }
    throw e;
  }
  const bytes = await Deno.readFile(cachePath);
  return await parse(
    bytes,
    spec,
    cachePath,
    `The archive matches the registry's checksum, so its members should be complete: report ` +
      `this, with the file's size and checksum.`,
  );
}
