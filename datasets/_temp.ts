/**
 * Internal: the temp files downloads write before their atomic rename, named after their writer
 * (host and process id) so that a later download can tell a dead writer's leftovers from a live
 * writer's file in progress.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import process from "node:process";

/**
 * A temp file untouched for this long is stale, unless its writer is known to run. Writers whose
 * liveness cannot be checked (another host sharing the cache folder, no permission to ask, names
 * from older versions) are judged by this alone; a live writer touches its file with every chunk
 * and gives up after its read timeout, so a file of a live download is never this old.
 */
export const STALE_TEMP_AGE_MS = 24 * 60 * 60 * 1000;

/** Host names as they go into temp names: only characters safe in a file name. */
function hostTag(): string {
  let host = "";
  try {
    host = Deno.hostname();
  } catch {
    try {
      // No --allow-sys: the name is in /etc/hostname on most Linux systems.
      host = Deno.readTextFileSync("/etc/hostname").trim();
    } catch {
      host = "";
    }
  }
  const tag = host.replace(/[^A-Za-z0-9-]/g, "_").slice(0, 64);
  return tag === "" ? "unknown-host" : tag;
}

let cachedHost: string | undefined;
function thisHost(): string {
  return cachedHost ??= hostTag();
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/**
 * The temp path for a download to `dest`: `<dest>.<host>.<pid>.<random>.tmp`, next to `dest` so
 * that the final rename stays on one file system.
 *
 * @example
 * ```ts
 * import { tempPathFor } from "./_temp.ts";
 * tempPathFor("/cache/mnist/a.gz"); // e.g. "/cache/mnist/a.gz.myhost.4242.9f3c01ab.tmp"
 * ```
 */
export function tempPathFor(dest: string): string {
  return `${dest}.${thisHost()}.${Deno.pid}.${randomHex(4)}.tmp`;
}

/** Who wrote a temp file of `dest`, read back from its name; undefined when it is not one. */
export function parseTempName(
  dest: string,
  name: string,
): { host?: string; pid?: number } | undefined {
  const base = basename(dest);
  if (!name.startsWith(base + ".") || !name.endsWith(".tmp")) return undefined;
  const middle = name.slice(base.length + 1, -".tmp".length);
  const named = /^([A-Za-z0-9_-]+)\.(\d+)\.[0-9a-f]+$/.exec(middle);
  if (named) return { host: named[1], pid: Number(named[2]) };
  // Older versions named temp files `<dest>.<16 hex digits>.tmp`, without their writer.
  if (/^[0-9a-f]{16}$/.test(middle)) return {};
  return undefined;
}

/**
 * Whether process `pid` of this host still runs: `true`, `false`, or `undefined` when it cannot
 * be told (no permission to ask). Asks with signal 0 (nothing is sent), else looks in `/proc`.
 */
export function processAlive(pid: number): boolean | undefined {
  if (pid === Deno.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ESRCH") return false;
    if (code === "EPERM") return true; // exists, owned by someone else
  }
  if (Deno.build.os === "linux") {
    try {
      Deno.statSync(`/proc/${pid}`);
      return true;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return false;
    }
  }
  return undefined;
}

/**
 * Remove the temp files of `dest` left by writers that are gone: a process of this host that no
 * longer runs, or, when the writer's liveness cannot be checked, a file untouched for
 * {@link STALE_TEMP_AGE_MS}. A temp file of a process of this host that runs is never removed,
 * however old. Returns the paths removed; never throws (a file that cannot be removed now is
 * tried again by the next download).
 */
export async function removeStaleTemps(dest: string, now = Date.now()): Promise<string[]> {
  const dir = dirname(dest);
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch {
    return removed;
  }
  for (const entry of entries) {
    if (!entry.isFile) continue;
    const writer = parseTempName(dest, entry.name);
    if (!writer) continue;
    const path = join(dir, entry.name);
    const alive = writer.pid !== undefined && writer.host === thisHost()
      ? processAlive(writer.pid)
      : undefined;
    if (alive === true) continue;
    let stale = alive === false;
    if (!stale) {
      try {
        const mtime = (await Deno.stat(path)).mtime?.getTime();
        stale = mtime !== undefined && now - mtime > STALE_TEMP_AGE_MS;
      } catch {
        continue; // gone already (its writer renamed or removed it)
      }
    }
    if (!stale) continue;
    try {
      await Deno.remove(path);
      removed.push(path);
    } catch {
      // removed meanwhile, or not ours to remove: the next download tries again
    }
  }
  return removed;
}
