/**
 * Where dataset files live: the user's data dir and the download cache dir.
 *
 * @module
 */

import { join } from "node:path";

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
