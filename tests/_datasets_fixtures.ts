// Fixtures shared by the dataset and download tests: the real files' folder, folder listings,
// temporary folders and the DatasetError assertion.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { DatasetError } from "../datasets/mod.ts";

/** The real datasets beside the repository (read-only). */
export const SHARED: string = fileURLToPath(new URL("../../shared/datasets", import.meta.url));
/** The four IDX files of an MNIST-like dataset. */
export const FILES: readonly string[] = [
  "train-images-idx3-ubyte.gz",
  "train-labels-idx1-ubyte.gz",
  "t10k-images-idx3-ubyte.gz",
  "t10k-labels-idx1-ubyte.gz",
];
const hasData = (name: string) => FILES.every((f) => existsSync(join(SHARED, name, f)));
export const HAS_MNIST: boolean = hasData("mnist");
export const HAS_FASHION: boolean = hasData("fashion-mnist");

/** All files under `dir`, as sorted relative paths ([] when `dir` does not exist). */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string) {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      if (e.isDirectory) await walk(p);
      else out.push(relative(dir, p));
    }
  }
  if (existsSync(dir)) await walk(dir);
  return out.sort();
}

/** Runs `fn` in a fresh temporary folder, removed afterwards. */
export async function withTempDir(
  fn: (dir: string) => Promise<void>,
  prefix = "perennial_test_",
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Awaits `p`, which must reject with a DatasetError of `code` whose message has `patterns`. */
export async function assertDatasetError(
  p: Promise<unknown>,
  code: string,
  ...patterns: (RegExp | string)[]
): Promise<DatasetError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof DatasetError, `expected a DatasetError, got ${caught}`);
  for (const pat of patterns) {
    if (typeof pat === "string") {
      assert.ok(caught.message.includes(pat), `message lacks ${pat}:\n${caught.message}`);
    } else assert.match(caught.message, pat);
  }
  assert.equal(caught.code, code, caught.message);
  return caught;
}
