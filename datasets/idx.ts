/**
 * The IDX file format of MNIST-like datasets (unsigned-byte variant).
 *
 * Layout: magic `0x00 0x00 <type> <ndims>`, then `ndims` big-endian uint32 sizes, then
 * the data, row-major. Only type `0x08` (unsigned byte) is supported, which is what
 * MNIST, Fashion-MNIST and KMNIST use.
 *
 * @module
 */

import { DatasetError } from "./errors.ts";

const TYPE_NAMES: Record<number, string> = {
  0x08: "unsigned byte",
  0x09: "signed byte",
  0x0b: "int16",
  0x0c: "int32",
  0x0d: "float32",
  0x0e: "float64",
};

/** The header of an IDX file. */
export interface IdxHeader {
  /** Sizes of each dimension, outermost first (e.g. `[60000, 28, 28]`). */
  dims: number[];
  /** Bytes taken by the magic number and the dims (`4 + 4 * dims.length`). */
  headerBytes: number;
  /** Bytes of data the dims call for (their product, for unsigned bytes). */
  dataBytes: number;
}

/**
 * Read and check just the header of unsigned-byte IDX data: magic number, element type,
 * dims. Does not look at the data, so a few hundred bytes are enough.
 *
 * @example
 * ```ts
 * import { readIdxHeader } from "./idx.ts";
 * const h = readIdxHeader(new Uint8Array([0, 0, 8, 1, 0, 0, 0, 3]));
 * // h.dims = [3], h.headerBytes = 8, h.dataBytes = 3
 * ```
 */
export function readIdxHeader(bytes: Uint8Array): IdxHeader {
  if (bytes.length < 4) {
    throw new DatasetError(
      "format",
      `IDX data too short: ${bytes.length} bytes, need at least 4 for the magic number`,
    );
  }
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    const magic = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0"))
      .join("");
    const gz = bytes[0] === 0x1f && bytes[1] === 0x8b
      ? " It is gzip-compressed: decompress it first."
      : "";
    throw new DatasetError(
      "format",
      `not IDX data: bad magic number 0x${magic} (must be 0x0000TTNN: two zero bytes, ` +
        `type, number of dims).${gz}`,
    );
  }
  const type = bytes[2];
  if (type !== 0x08) {
    const name = TYPE_NAMES[type] ?? "unknown type";
    throw new DatasetError(
      "format",
      `unsupported IDX element type 0x${type.toString(16).padStart(2, "0")} (${name}): ` +
        `only 0x08 (unsigned byte) is supported`,
    );
  }
  const ndims = bytes[3];
  if (ndims === 0) {
    throw new DatasetError("format", "bad IDX header: number of dims is 0 (must be at least 1)");
  }
  const headerBytes = 4 + 4 * ndims;
  if (bytes.length < headerBytes) {
    throw new DatasetError(
      "format",
      `truncated IDX header: ${ndims} dims need ${headerBytes} header bytes, got ${bytes.length}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, headerBytes);
  const dims: number[] = [];
  let dataBytes = 1;
  for (let i = 0; i < ndims; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    dataBytes *= d;
  }
  if (!Number.isSafeInteger(dataBytes)) {
    throw new DatasetError("format", `bad IDX header: dims ${dims.join("x")} are too large`);
  }
  return { dims, headerBytes, dataBytes };
}

/**
 * Parse unsigned-byte IDX data. Checks the magic number, the element type and that the
 * length is exactly header + product of dims. Throws a {@link DatasetError}: code
 * "format" for a bad magic number, element type or header, "size" for truncated data or
 * trailing bytes. `data` is a view into `bytes` (no copy).
 *
 * @example
 * ```ts
 * import { parseIdx } from "./idx.ts";
 * // 2 images of 1x2 pixels
 * const bytes = new Uint8Array([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 10, 20, 30, 40]);
 * const { dims, data } = parseIdx(bytes); // dims = [2, 1, 2], data = [10, 20, 30, 40]
 * ```
 */
export function parseIdx(bytes: Uint8Array): { dims: number[]; data: Uint8Array } {
  const { dims, headerBytes, dataBytes } = readIdxHeader(bytes);
  const expected = headerBytes + dataBytes;
  if (bytes.length < expected) {
    throw new DatasetError(
      "size",
      `truncated IDX data: header says dims ${dims.join("x")} (${expected} bytes in all), ` +
        `but only ${bytes.length} bytes are present`,
    );
  }
  if (bytes.length > expected) {
    throw new DatasetError(
      "size",
      `IDX data has ${bytes.length - expected} trailing bytes: header says dims ` +
        `${dims.join("x")} (${expected} bytes in all), got ${bytes.length}`,
    );
  }
  return { dims, data: bytes.subarray(headerBytes, expected) };
}
