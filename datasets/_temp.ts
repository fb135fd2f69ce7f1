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
 * liveness cannot be checked (another host sharing the cache folder, no --allow-run to ask, names
 * from older versions) are judged by this alone: a live writer touches its file with every chunk
 * and gives up after its read timeout (30 s by default), so a live download's file is not this
 * old unless its read timeout was set longer than this.
 */
export const STALE_TEMP_AGE_MS = 60 * 60 * 1000;

/**
 * Whether a permission is already granted. Asked first so that a program run in a terminal
 * without it is not interrupted by a permission prompt for what is only housekeeping.
 */
function granted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/** Host names as they go into temp names: only characters safe in a file name. */
function hostTag(): string {
  let host = "";
  try {
    if (granted({ name: "sys", kind: "hostname" })) host = Deno.hostname();
    else if (granted({ name: "read", path: "/etc/hostname" })) {
      // No --allow-sys: the name is in /etc/hostname on most Linux systems.
      host = Deno.readTextFileSync("/etc/hostname").trim();
    }
  } catch {
    host = "";
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
 * be told. Asks with signal 0 (nothing is sent), which Deno allows only with --allow-run (and
 * `/proc` only with --allow-all), so without it the answer is `undefined`.
 */
export function processAlive(pid: number): boolean | undefined {
  if (pid === Deno.pid) return true;
  if (!granted({ name: "run" })) return undefined;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ESRCH") return false;
    if (code === "EPERM") return true; // exists, owned by someone else
    return undefined;
  }
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
