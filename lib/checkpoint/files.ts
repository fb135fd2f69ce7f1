/**
 * Checkpoint files: a strategy's state ({@link StrategyState}) in the safetensors layout. Every
 * tensor of the state (the model's parameters, optimizer slots, plugins' tensors) and every long
 * array of float32-exact numbers (a replay memory's samples) is stored as raw float32; the rest of
 * the state is JSON in the `perennial.state` metadata entry, each tensor replaced by a reference
 * to its name. The model's tensors carry their parameter names (`features.0.weight`), so the file
 * is also a weights file for other tools. Writes are atomic, reads check everything (layout,
 * checksum, references) before returning.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import type { TensorState } from "../nn/module.ts";
import type { Strategy, StrategyState } from "../strategy/template.ts";
import {
  CheckpointError,
  decodeSafetensors,
  safetensorsData,
  safetensorsHeader,
  type SafetensorsTensor,
} from "./safetensors.ts";

/** Value of the `perennial.format` metadata entry of the files written here. */
export const CHECKPOINT_FORMAT = "perennial-checkpoint/1";
const KEY_FORMAT = "perennial.format";
const KEY_STATE = "perennial.state";
const KEY_SHA = "perennial.sha256";
const RESERVED = [KEY_FORMAT, KEY_STATE, KEY_SHA];

/**
 * Plain arrays at least this long whose numbers are all exact in float32 are stored as tensors;
 * shorter ones stay in the JSON, where they cost little.
 */
export const ARRAY_TENSOR_MIN = 1024;

/** Markers of the JSON state: a tensor reference, an array reference, an escaped object. */
const REF_TENSOR = "$tensor", REF_ARRAY = "$array", ESCAPE = "$object";
const MARKERS = [REF_TENSOR, REF_ARRAY, ESCAPE];

/** Options of {@link saveCheckpoint}. */
export interface SaveCheckpointOptions {
  /**
   * Extra string entries for the file's `__metadata__` (the names `perennial.format`,
   * `perennial.state` and `perennial.sha256` are the format's own).
   */
  metadata?: Record<string, string>;
}

/** What {@link readCheckpoint} and {@link decodeCheckpoint} return. */
export interface CheckpointFile {
  state: StrategyState;
  /** The metadata entries other than the format's own (see {@link SaveCheckpointOptions}). */
  metadata: Record<string, string>;
  /** Every tensor of the file: name and shape, in file order. */
  tensors: { name: string; shape: number[] }[];
  /** Size of the file in bytes. */
  bytes: number;
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function float32Exact(values: readonly unknown[]): boolean {
  for (const v of values) if (typeof v !== "number" || !Object.is(Math.fround(v), v)) return false;
  return true;
}

function isTensorState(v: Record<string, unknown>): v is TensorState & Record<string, unknown> {
  const keys = Object.keys(v);
  if (keys.length !== 2 || !("shape" in v) || !("values" in v)) return false;
  const { shape, values } = v;
  return Array.isArray(shape) && Array.isArray(values) &&
    shape.every((d) => Number.isSafeInteger(d) && d >= 0) && values.length === product(shape) &&
    float32Exact(values);
}

/** `o[k] = v`, as an own property even for the key "__proto__" (as JSON.parse makes it). */
function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__") {
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  } else o[k] = v;
}

function describe(v: unknown): string {
  if (typeof v === "function") return "a function";
  if (typeof v !== "object" || v === null) return typeof v;
  return `a ${(v as object).constructor?.name ?? "object"}`;
}

/** Splits a state into JSON with references and the tensors they name. */
function splitState(state: StrategyState): { json: string; tensors: SafetensorsTensor[] } {
  const tensors: SafetensorsTensor[] = [];
  const used = new Set<string>();
  const name = (path: string[]): string => {
    // The model's parameters keep their own names: the file doubles as a weights file.
    let base = path.length === 3 && path[0] === "model" && path[1] === "tensors"
      ? path[2]
      : path.join("/");
    if (base === "" || base === "__metadata__") base = `_${base}`;
    let n = base;
    for (let k = 2; used.has(n); k++) n = `${base}#${k}`;
    used.add(n);
    return n;
  };
  const walk = (v: unknown, path: string[]): unknown => {
    if (v === null || typeof v === "string" || typeof v === "boolean" || v === undefined) return v;
    if (typeof v === "number") return v;
    if (typeof v !== "object") {
      throw new TypeError(
        `The state holds ${describe(v)} at "${path.join("/")}": checkpoints hold plain data ` +
          `(objects, arrays, numbers, strings, booleans, null)`,
      );
    }
    if (
      ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof Map || v instanceof Set
    ) {
      throw new TypeError(
        `The state holds ${describe(v)} at "${path.join("/")}": checkpoints hold plain data; ` +
          `convert it (Array.from, Object.fromEntries) in the plugin's state()`,
      );
    }
    if (Array.isArray(v)) {
      if (v.length >= ARRAY_TENSOR_MIN && float32Exact(v)) {
        const n = name(path);
        tensors.push({ name: n, shape: [v.length], data: Float32Array.from(v as number[]) });
        return { [REF_ARRAY]: n };
      }
      return v.map((x, i) => walk(x, [...path, String(i)]));
    }
    const toJSON = (v as { toJSON?: () => unknown }).toJSON;
    if (typeof toJSON === "function") return walk(toJSON.call(v), path);
    const o = v as Record<string, unknown>;
    if (isTensorState(o)) {
      const n = name(path);
      tensors.push({ name: n, shape: [...o.shape], data: Float32Array.from(o.values) });
      return { [REF_TENSOR]: n };
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) setOwn(out, k, walk(x, [...path, k]));
    // An object that could be read as a reference is wrapped, so that it comes back as it was.
    return Object.keys(o).some((k) => MARKERS.includes(k)) ? { [ESCAPE]: out } : out;
  };
  const json = JSON.stringify(walk(state, []));
  return { json, tensors };
}

/** Puts the tensors back where the references of the JSON state are. */
function joinState(json: string, tensors: Map<string, SafetensorsTensor>, source: string) {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    throw new CheckpointError(
      "state",
      `${source}: the perennial.state metadata is not valid JSON (${(e as Error).message})`,
      { cause: e },
    );
  }
  const lookup = (n: unknown, kind: string): SafetensorsTensor => {
    const t = typeof n === "string" ? tensors.get(n) : undefined;
    if (!t) {
      throw new CheckpointError(
        "state",
        `${source}: the state refers to ${kind} ${JSON.stringify(n)}, which the file lacks`,
      );
    }
    return t;
  };
  const walk = (v: unknown): unknown => {
    if (v === null || typeof v !== "object") return v;
    if (Array.isArray(v)) return v.map(walk);
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === REF_TENSOR) {
      const t = lookup(o[REF_TENSOR], "tensor");
      return { shape: [...t.shape], values: Array.from(t.data) };
    }
    if (keys.length === 1 && keys[0] === REF_ARRAY) {
      const t = lookup(o[REF_ARRAY], "array");
      if (t.shape.length !== 1) {
        throw new CheckpointError(
          "state",
          `${source}: array "${t.name}" has shape [${t.shape}]; arrays are stored 1-D`,
        );
      }
      return Array.from(t.data);
    }
    const inner = keys.length === 1 && keys[0] === ESCAPE ? o[ESCAPE] : o;
    if (!inner || typeof inner !== "object" || Array.isArray(inner)) {
      throw new CheckpointError("state", `${source}: an escaped object of the state is damaged`);
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(inner)) setOwn(out, k, walk(x));
    return out;
  };
  const state = walk(parsed) as StrategyState;
  if (!state || typeof state !== "object" || state.version !== 1) {
    throw new CheckpointError(
      "state",
      `${source}: the state has version ${
        JSON.stringify((state as { version?: unknown })?.version)
      }; this library reads version 1`,
    );
  }
  return state;
}

function hex(buf: ArrayBuffer): string {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The checksum of a file's content: the metadata (the checksum itself left out), each tensor's
 * name, shape and offsets, and the data. A damaged byte anywhere outside the padding changes it.
 */
async function checksum(
  metadata: Record<string, string>,
  tensors: readonly { name: string; shape: number[] }[],
  data: Uint8Array,
): Promise<string> {
  const dataHash = hex(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
  const meta = Object.keys(metadata).filter((k) => k !== KEY_SHA).sort().map((k) => [
    k,
    metadata[k],
  ]);
  let offset = 0;
  const table = tensors.map((t) => {
    const end = offset + product(t.shape) * 4;
    const row = [t.name, t.shape, offset, end];
    offset = end;
    return row;
  });
  const text = new TextEncoder().encode(JSON.stringify([meta, table, dataHash]));
  return hex(await crypto.subtle.digest("SHA-256", text));
}

async function stateOf(source: Strategy | StrategyState): Promise<StrategyState> {
  const s = source as Strategy;
  if (s && typeof s.checkpoint === "function" && typeof s.restore === "function") {
    // checkpointAsync where there is one: checkpoint() cannot read GPU data on "webgpu".
    return typeof s.checkpointAsync === "function" ? await s.checkpointAsync() : s.checkpoint();
  }
  const st = source as StrategyState;
  if (!st || typeof st !== "object" || st.version !== 1 || !st.model) {
    throw new TypeError(
      `saveCheckpoint expects a strategy or a state from strategy.checkpoint(), got ${
        describe(source)
      }`,
    );
  }
  return st;
}

/**
 * The bytes of a checkpoint file of `state` (a strategy's state is taken with `checkpointAsync()`), as
 * the header part and the data part: {@link saveCheckpoint} writes them.
 */
export async function encodeCheckpoint(
  source: Strategy | StrategyState,
  opts: SaveCheckpointOptions = {},
): Promise<{ header: Uint8Array; data: Uint8Array }> {
  const state = await stateOf(source);
  const extra = opts.metadata ?? {};
  for (const [k, v] of Object.entries(extra)) {
    if (RESERVED.includes(k)) {
      throw new RangeError(`Metadata name "${k}" is the format's own: choose another name`);
    }
    if (typeof v !== "string") {
      throw new TypeError(`Metadata "${k}" is a ${typeof v}: metadata values must be strings`);
    }
  }
  const { json, tensors } = splitState(state);
  const metadata: Record<string, string> = { ...extra, [KEY_FORMAT]: CHECKPOINT_FORMAT };
  metadata[KEY_STATE] = json;
  // The data is laid out in tensor order, so the checksum can be taken before the header exists.
  const data = safetensorsData(tensors);
  metadata[KEY_SHA] = await checksum(metadata, tensors, data);
  return { header: safetensorsHeader(tensors, metadata), data };
}

/**
 * Reads a checkpoint from the bytes of a file, checking the layout (see `decodeSafetensors`),
 * the format, the checksum and every reference of the state before returning. `source` names the
 * file in error messages.
 */
export async function decodeCheckpoint(
  bytes: Uint8Array,
  source = "the checkpoint",
): Promise<CheckpointFile> {
  const { metadata, tensors } = decodeSafetensors(bytes, source);
  const format = metadata[KEY_FORMAT];
  if (format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(
      "format",
      format === undefined
        ? `${source} is a safetensors file but not a perennial checkpoint (no ${KEY_FORMAT} ` +
          `metadata): read its tensors with decodeSafetensors`
        : `${source} is in format "${format}"; this library reads "${CHECKPOINT_FORMAT}"`,
    );
  }
  if (typeof metadata[KEY_STATE] !== "string" || typeof metadata[KEY_SHA] !== "string") {
    throw new CheckpointError(
      "format",
      `${source} lacks the ${KEY_STATE} or ${KEY_SHA} metadata: the file is damaged`,
    );
  }
  const headerLength = Number(
    new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true),
  );
  const data = bytes.subarray(8 + headerLength);
  // Checked against the file's own order of tensors (the offsets they were written at).
  if (await checksum(metadata, tensors, data) !== metadata[KEY_SHA]) {
    throw new CheckpointError(
      "checksum",
      `${source}: the content does not match its SHA-256 checksum: the file is damaged; use an ` +
        `earlier checkpoint`,
    );
  }
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const state = joinState(metadata[KEY_STATE], byName, source);
  const user = Object.fromEntries(
    Object.entries(metadata).filter(([k]) => !RESERVED.includes(k)),
  );
  return {
    state,
    metadata: user,
    tensors: tensors.map((t) => ({ name: t.name, shape: t.shape })),
    bytes: bytes.length,
  };
}

async function writeAll(f: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await f.write(bytes.subarray(done));
}

async function syncFolder(dir: string): Promise<void> {
  // Makes the rename itself durable. Windows cannot open a folder for syncing; there the
  // rename is as durable as the file system makes it.
  if (Deno.build.os === "windows") return;
  const d = await Deno.open(dir, { read: true });
  try {
    await d.sync();
  } finally {
    d.close();
  }
}

/**
 * Writes `parts` to `path` atomically: into a temp file of the same folder
 * (`.<name>.<random>.tmp`), synced to disk, renamed over `path`, then the folder synced. A crash
 * at any moment leaves `path` as it was or complete, and at worst a temp file behind.
 */
export async function writeFileAtomic(path: string, parts: readonly Uint8Array[]): Promise<void> {
  const dir = dirname(path);
  const random = hex(crypto.getRandomValues(new Uint8Array(6)).buffer);
  const tmp = join(dir, `.${basename(path)}.${random}.tmp`);
  let f: Deno.FsFile;
  try {
    f = await Deno.open(tmp, { write: true, createNew: true });
  } catch (e) {
    throw new Error(
      `Cannot write the checkpoint ${path}: ${(e as Error).message}. Check that the folder ` +
        `${dir} exists and is writable`,
      { cause: e },
    );
  }
  try {
    try {
      for (const p of parts) await writeAll(f, p);
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncFolder(dir);
}

/**
 * Saves a checkpoint file: the state of `source` (a strategy, whose `checkpoint()` is taken, or
 * a state from it) in the safetensors layout, written atomically (see {@link writeFileAtomic}).
 * Returns the file's size in bytes. The folder must exist.
 *
 * Layout: the model's parameters under their names (`features.0.weight`, float32, shapes as the
 * model has them: a `Linear` weight is `[in, out]`), every other tensor under its path in the
 * state (`optimizer/slots/features.0.weight/momentum`, `plugins/0:EWC/importance/...`), and in
 * `__metadata__`: `perennial.format`, `perennial.state` (the rest of the state, JSON, with
 * `{"$tensor": name}` and `{"$array": name}` in the tensors' places), `perennial.sha256`, and
 * `opts.metadata`.
 *
 * @example
 * ```ts ignore
 * await saveCheckpoint(strategy, "runs/x/after-exp-2.safetensors");
 * await other.restore(await loadCheckpoint("runs/x/after-exp-2.safetensors"));
 * ```
 */
export async function saveCheckpoint(
  source: Strategy | StrategyState,
  path: string,
  opts: SaveCheckpointOptions = {},
): Promise<number> {
  const { header, data } = await encodeCheckpoint(source, opts);
  await writeFileAtomic(path, [header, data]);
  return header.length + data.length;
}

/**
 * Reads a checkpoint file with its metadata and tensor list. Throws a {@link CheckpointError}
 * (truncated, damaged header, bad tensor entry, checksum mismatch, not a checkpoint) before
 * returning anything.
 */
export async function readCheckpoint(path: string): Promise<CheckpointFile> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`No checkpoint file at ${path}: check the path`, {
        cause: e,
      });
    }
    throw e;
  }
  return await decodeCheckpoint(bytes, path);
}

/**
 * Loads the state saved in a checkpoint file by {@link saveCheckpoint}, for
 * `strategy.restore(state)` or `strategy.train(exp, { resume: state })`. See
 * {@link readCheckpoint} for what is checked.
 */
export async function loadCheckpoint(path: string): Promise<StrategyState> {
  return (await readCheckpoint(path)).state;
}
