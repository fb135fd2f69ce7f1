/**
 * The safetensors layout, float32 only: an 8-byte little-endian header length, a JSON header
 * mapping each tensor name to `{ dtype: "F32", shape, data_offsets: [begin, end] }` (offsets into
 * the data that follows the header) plus a `__metadata__` map of strings, then the raw
 * little-endian data. Files written here are read by any safetensors reader; the reader checks
 * every rule of the format before returning anything, so a truncated or damaged file is an error
 * naming what is wrong, never a partial result.
 *
 * @module
 */

/** One float32 tensor of a safetensors file. */
export interface SafetensorsTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** What a safetensors file holds. */
export interface SafetensorsContent {
  /** The `__metadata__` map (empty when the file has none). */
  metadata: Record<string, string>;
  /** The tensors, in the order of their data in the file. */
  tensors: SafetensorsTensor[];
}

/** What went wrong reading a checkpoint or safetensors file (see {@link CheckpointError}). */
export type CheckpointErrorCode =
  /** The file ends before its header or its data does. */
  | "truncated"
  /** The header is not the JSON object the layout asks for. */
  | "header"
  /** A tensor entry is wrong: dtype, shape, offsets out of range or overlapping. */
  | "tensor"
  /** The content does not match the checksum written with it. */
  | "checksum"
  /** A safetensors file that is not a perennial checkpoint, or one of another version. */
  | "format"
  /** The checkpoint's state is not valid (bad JSON, a reference to a missing tensor). */
  | "state";

/**
 * The error checkpoint and safetensors readers throw: the message names the file, the value at
 * fault and what to do; `code` says what kind of failure it was.
 */
export class CheckpointError extends Error {
  /** What kind of failure this is. */
  readonly code: CheckpointErrorCode;

  /**
   * @param code what kind of failure this is
   * @param message full explanation (value and fix)
   * @param options standard `ErrorOptions` (e.g. `cause`)
   */
  constructor(code: CheckpointErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CheckpointError";
    this.code = code;
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** The only dtype written and accepted. */
export const F32 = "F32";
const METADATA = "__metadata__";

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Float32 values as little-endian bytes (a view when the host is little-endian). */
function leBytes(data: Float32Array): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (LITTLE_ENDIAN) return bytes;
  const out = new Uint8Array(data.byteLength), view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(4 * i, data[i], true);
  return out;
}

/**
 * The header part of a safetensors file holding `tensors` (their data in this order) and
 * `metadata`: the 8-byte length, then the JSON, padded with spaces so that the data starts at a
 * multiple of 8 bytes, as the reference implementation writes it.
 */
export function safetensorsHeader(
  tensors: readonly SafetensorsTensor[],
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new TypeError(
          `safetensors metadata "${k}" is a ${typeof v}: metadata values must be strings`,
        );
      }
    }
    header[METADATA] = metadata;
  }
  let offset = 0;
  for (const t of tensors) {
    if (t.name === METADATA || Object.hasOwn(header, t.name)) {
      throw new RangeError(`Tensor name "${t.name}" is reserved or used twice: names must differ`);
    }
    if (t.data.length !== product(t.shape)) {
      throw new RangeError(
        `Tensor "${t.name}" of shape [${t.shape}] needs ${
          product(t.shape)
        } values, got ${t.data.length}`,
      );
    }
    header[t.name] = {
      dtype: F32,
      shape: t.shape,
      data_offsets: [offset, offset + t.data.byteLength],
    };
    offset += t.data.byteLength;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const head = new Uint8Array(8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  head.set(json, 8);
  return head;
}

/** The data part of a safetensors file: each tensor's little-endian float32 values in turn. */
export function safetensorsData(tensors: readonly SafetensorsTensor[]): Uint8Array {
  const data = new Uint8Array(tensors.reduce((a, t) => a + t.data.byteLength, 0));
  let offset = 0;
  for (const t of tensors) {
    data.set(leBytes(t.data), offset);
    offset += t.data.byteLength;
  }
  return data;
}

/** The bytes of a safetensors file holding `tensors` (in this order) and `metadata`. */
export function encodeSafetensors(
  tensors: readonly SafetensorsTensor[],
  metadata: Record<string, string> = {},
): { header: Uint8Array; data: Uint8Array } {
  return { header: safetensorsHeader(tensors, metadata), data: safetensorsData(tensors) };
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Reads the safetensors layout from `bytes`, checking every rule first: the header length fits
 * the file, the header is a JSON object, metadata values are strings, each tensor is `F32` with
 * a shape of non-negative integers and offsets inside the data whose length matches the shape,
 * and the tensors cover the data exactly (no overlap, no gap, nothing after the last one).
 * `source` names the file in error messages. Tensors' data are copies (safe to keep).
 */
export function decodeSafetensors(bytes: Uint8Array, source = "the file"): SafetensorsContent {
  if (bytes.length < 8) {
    throw new CheckpointError(
      "truncated",
      `${source} is ${bytes.length} bytes long, too short for the 8-byte header length of the ` +
        `safetensors layout: the file is truncated (or empty); write it again`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const big = view.getBigUint64(0, true);
  if (big > BigInt(bytes.length - 8)) {
    throw new CheckpointError(
      "truncated",
      `${source}: the header length ${big} runs past the end of the file (${bytes.length} bytes): ` +
        `the file is truncated or not a safetensors file`,
    );
  }
  const headerLength = Number(big);
  let header: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(
      bytes.subarray(8, 8 + headerLength),
    );
    header = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(
      "header",
      `${source}: the ${headerLength}-byte header is not valid JSON (${(e as Error).message}): ` +
        `the file is damaged or not a safetensors file`,
      { cause: e },
    );
  }
  if (!header || typeof header !== "object" || Array.isArray(header)) {
    throw new CheckpointError(
      "header",
      `${source}: the header is ${
        Array.isArray(header) ? "an array" : String(header)
      }, not a JSON object of tensors`,
    );
  }
  const entries = header as Record<string, unknown>;
  const metadata: Record<string, string> = {};
  const meta = entries[METADATA];
  if (meta !== undefined) {
    if (!meta || typeof meta !== "object" || Array.isArray(meta)) {
      throw new CheckpointError("header", `${source}: __metadata__ is not an object of strings`);
    }
    for (const [k, v] of Object.entries(meta)) {
      if (typeof v !== "string") {
        throw new CheckpointError(
          "header",
          `${source}: __metadata__ "${k}" is a ${typeof v}, but metadata values must be strings`,
        );
      }
      metadata[k] = v;
    }
  }
  const dataStart = 8 + headerLength, dataLength = bytes.length - dataStart;
  const found: { name: string; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(entries)) {
    if (name === METADATA) continue;
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (!e || typeof e !== "object") {
      throw new CheckpointError("tensor", `${source}: tensor "${name}" is not an object`);
    }
    if (e.dtype !== F32) {
      throw new CheckpointError(
        "tensor",
        `${source}: tensor "${name}" has dtype ${JSON.stringify(e.dtype)}; this reader takes ` +
          `"F32" only (convert the tensor to float32 before saving)`,
      );
    }
    if (!Array.isArray(e.shape) || !e.shape.every(isNonNegInt)) {
      throw new CheckpointError(
        "tensor",
        `${source}: tensor "${name}" has shape ${
          JSON.stringify(e.shape)
        }: expected an array of non-negative integers`,
      );
    }
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every(isNonNegInt) || off[0] > off[1]) {
      throw new CheckpointError(
        "tensor",
        `${source}: tensor "${name}" has data_offsets ${
          JSON.stringify(off)
        }: expected [begin, end] with 0 ≤ begin ≤ end`,
      );
    }
    const [begin, end] = off as number[];
    if (end > dataLength) {
      throw new CheckpointError(
        "truncated",
        `${source}: tensor "${name}" has data_offsets [${begin}, ${end}] past the end of the ` +
          `${dataLength} bytes of data: the file is truncated`,
      );
    }
    const shape = e.shape as number[];
    if (end - begin !== product(shape) * 4) {
      throw new CheckpointError(
        "tensor",
        `${source}: tensor "${name}" of shape [${shape}] needs ${product(shape) * 4} bytes of ` +
          `float32 data, but its data_offsets [${begin}, ${end}] hold ${end - begin}`,
      );
    }
    found.push({ name, shape, begin, end });
  }
  found.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  for (const [i, t] of found.entries()) {
    if (t.begin < covered) {
      throw new CheckpointError(
        "tensor",
        `${source}: tensor "${t.name}" [${t.begin}, ${t.end}] overlaps tensor "${
          found[i - 1].name
        }" [${found[i - 1].begin}, ${found[i - 1].end}]: the header is damaged`,
      );
    }
    if (t.begin > covered) {
      throw new CheckpointError(
        "tensor",
        `${source}: data bytes [${covered}, ${t.begin}) belong to no tensor: the header is damaged`,
      );
    }
    covered = t.end;
  }
  if (covered !== dataLength) {
    throw new CheckpointError(
      "tensor",
      `${source}: the tensors cover ${covered} bytes of data but the file holds ${dataLength}: ` +
        `the file is damaged`,
    );
  }
  const tensors = found.map(({ name, shape, begin, end }) => {
    const data = new Float32Array((end - begin) / 4);
    const at = bytes.byteOffset + dataStart + begin;
    if (LITTLE_ENDIAN) {
      new Uint8Array(data.buffer).set(bytes.subarray(dataStart + begin, dataStart + end));
    } else {
      const v = new DataView(bytes.buffer, at, end - begin);
      for (let i = 0; i < data.length; i++) data[i] = v.getFloat32(4 * i, true);
    }
    return { name, shape, data };
  });
  return { metadata, tensors };
}
