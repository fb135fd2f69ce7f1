/**
 * Where dataset files live: the user's data dir and the download cache dir.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { DatasetError } from "./errors.ts";

/** Read an environment variable; `undefined` when unset, empty, or not permitted. */
function readEnv(name: string): string | undefined {
  try {
    const v = Deno.env.get(name);
    return v === undefined || v === "" ? undefined : v;
  } catch {
    return undefined; // no --allow-env: behave as if unset
  }
}

/**
 * The local data directory to search first: `explicit` if given, else the environment
 * variable `PERENNIAL_DATA`, else `undefined` (no data dir).
 *
 * @example
 * ```ts
 * import { resolveDataDir } from "./dirs.ts";
 * resolveDataDir("/data"); // "/data"
 * resolveDataDir(); // Deno.env.get("PERENNIAL_DATA") or undefined
 * ```
 */
export function resolveDataDir(explicit?: string): string | undefined {
  if (explicit !== undefined && explicit !== "") return explicit;
  return readEnv("PERENNIAL_DATA");
}

/**
 * The data directory to search, as {@link resolveDataDir} finds it, checked to be an existing
 * folder. A data dir that was asked for (the `explicit` argument, or env `PERENNIAL_DATA`) but
 * does not exist is a {@link DatasetError} ("invalid-argument") that names the path, where it
 * came from and the fix: loading never falls back to a download because of a mistyped path.
 * `what` names the files for the message (e.g. "the MNIST files").
 *
 * @example
 * ```ts
 * import { checkedDataDir } from "./dirs.ts";
 * await checkedDataDir(); // PERENNIAL_DATA (checked) or undefined
 * ```
 */
export async function checkedDataDir(
  explicit?: string,
  what = "the dataset files",
): Promise<string | undefined> {
  const dir = resolveDataDir(explicit);
  if (dir === undefined) return undefined;
  const fromEnv = explicit === undefined || explicit === "";
  const source = fromEnv ? `PERENNIAL_DATA (${dir})` : `dataDir ${dir}`;
  const abs = resolve(dir) === dir ? "" : ` (${resolve(dir)})`;
  const unset = fromEnv
    ? "or unset PERENNIAL_DATA to use the cache and download"
    : "or leave dataDir out to use the cache and download";
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new DatasetError(
      "invalid-argument",
      `${source} does not exist${abs}: create it and put ${what} in it, correct the path, ` +
        unset,
    );
  }
  if (!info.isDirectory) {
    throw new DatasetError(
      "invalid-argument",
      `${source} is a file, not a folder${abs}: pass the folder that holds ${what}, ${unset}`,
    );
  }
  return dir;
}

/**
 * The download cache directory: env `PERENNIAL_CACHE`, else `$XDG_CACHE_HOME/perennial`,
 * else `$HOME/.cache/perennial` (`%USERPROFILE%` on Windows), else `.cache/perennial`
 * relative to the working directory. Datasets are stored in `<cacheDir>/<name>/<file>`.
 *
 * @example
 * ```ts
 * import { defaultCacheDir } from "./dirs.ts";
 * defaultCacheDir(); // e.g. "/home/me/.cache/perennial"
 * ```
 */
export function defaultCacheDir(): string {
  const explicit = readEnv("PERENNIAL_CACHE");
  if (explicit) return explicit;
  const xdg = readEnv("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "perennial");
  const home = readEnv("HOME") ?? readEnv("USERPROFILE");
  if (home) return join(home, ".cache", "perennial");
  return join(".cache", "perennial");
}
