/**
 * The CIFAR-10 and CIFAR-100 binary archives (`cifar-10-binary.tar.gz`,
 * `cifar-100-binary.tar.gz`), read with node's gzip and the `nanotar` tar parser.
 *
 * Layout, from the authors' page: CIFAR-10's archive holds `cifar-10-batches-bin/` with
 * `data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin` and `batches.meta.txt` (the class
 * names, one a line); each record is 1 label byte then 3072 pixel bytes (1024 red, 1024 green,
 * 1024 blue, each 32×32 row-major). CIFAR-100's holds `cifar-100-binary/` with `train.bin`,
 * `test.bin`, `fine_label_names.txt` and `coarse_label_names.txt`; each record is a coarse label
 * byte, a fine label byte, then the same 3072 pixel bytes. Pixels are returned channel-last.
 *
 * @module
 */
import { gunzipSync } from "node:zlib";
import { parseTar } from "nanotar";
import { DatasetError, errorMessage } from "./errors.ts";
import type { ArchiveDatasetSpec } from "./registry.ts";
import type { ImageDataset, ImageSplit } from "./types.ts";

/** Bytes of one 32×32 RGB image in a CIFAR record. */
const PIXELS = 32 * 32 * 3;

/** Where a CIFAR binary archive keeps its members, and its record layout. */
export interface CifarLayout {
  /** The folder every member is in. */
  readonly folder: string;
  /** The training members, in order. */
  readonly train: readonly string[];
  /** The test members. */
  readonly test: readonly string[];
  /** The member listing the class names (CIFAR-100: the fine ones). */
  readonly names: string;
  /** CIFAR-100's member listing the superclass names. */
  readonly coarseNames?: string;
  /** Label bytes before each image's pixels: 1 (CIFAR-10) or 2 (coarse, fine). */
  readonly labelBytes: 1 | 2;
}

/** The members an archive must hold, by format. */
export const CIFAR_MEMBERS: Readonly<Record<"cifar10-binary" | "cifar100-binary", CifarLayout>> = {
  "cifar10-binary": {
    folder: "cifar-10-batches-bin",
    train: [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`),
    test: ["test_batch.bin"],
    names: "batches.meta.txt",
    labelBytes: 1,
  },
  "cifar100-binary": {
    folder: "cifar-100-binary",
    train: ["train.bin"],
    test: ["test.bin"],
    names: "fine_label_names.txt",
    coarseNames: "coarse_label_names.txt",
    labelBytes: 2,
  },
};

/** The entries of a gzip-compressed tar archive, by name (a leading `./` dropped). */
export function readTarGz(bytes: Uint8Array, what: string, fix: string): Map<string, Uint8Array> {
  let tar: Uint8Array;
  try {
    const out = gunzipSync(bytes);
    tar = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch (e) {
    const msg = errorMessage(e);
    const cut = /unexpected end|Z_BUF_ERROR/i.test(msg) ||
      (e as { code?: string }).code === "Z_BUF_ERROR";
    throw new DatasetError(
      cut ? "truncated" : "format",
      `${what} is not ${cut ? "complete" : "valid"} gzip data (${msg}): ` +
        `${cut ? "the archive is truncated" : "not the tar.gz archive"}. ${fix}`,
      { cause: e },
    );
  }
  // nanotar reads `tar.buffer` from its start: give it a buffer of its own.
  if (tar.byteOffset !== 0 || tar.byteLength !== tar.buffer.byteLength) tar = tar.slice();
  const members = new Map<string, Uint8Array>();
  let entries: { name: string; type?: string; size?: number; data?: Uint8Array }[];
  try {
    entries = parseTar(tar);
  } catch (e) {
    // A member whose header announces more bytes than the tar holds: cut short.
    const cut = e instanceof RangeError;
    throw new DatasetError(
      cut ? "truncated" : "format",
      `${what} decompresses to ${
        cut ? "a tar archive cut short inside a member" : "data that is not a tar archive"
      } ` +
        `(${errorMessage(e)}). ${fix}`,
      { cause: e },
    );
  }
  for (const e of entries) {
    if (e.type !== "file") continue;
    members.set(e.name.replace(/^\.\//, ""), e.data ?? new Uint8Array(0));
  }
  return members;
}

function member(
  members: Map<string, Uint8Array>,
  name: string,
  spec: ArchiveDatasetSpec,
  what: string,
  fix: string,
): Uint8Array {
  const data = members.get(name);
  if (!data) {
    const found = [...members.keys()].slice(0, 8).join(", ") || "no files";
    throw new DatasetError(
      "format",
      `${what} has no member ${name}: it is not ${spec.title}'s binary archive ` +
        `(${spec.archive.file}; the python and Matlab versions hold other files). It holds ` +
        `${found}${members.size > 8 ? ", ..." : ""}. ${fix}`,
    );
  }
  return data;
}

/** Class names from a text member: one a line, blank lines dropped. */
function names(bytes: Uint8Array): string[] {
  return new TextDecoder().decode(bytes).split(/\r?\n/).map((l) => l.trim()).filter((l) => l);
}

/**
 * Reads a CIFAR binary archive (after its checksum was checked) into train and test splits of
 * channel-last 32×32×3 bytes. A missing member, a member whose size is not a whole number of
 * records, a count other than the spec's, a label out of range or too few class names is a
 * {@link DatasetError} naming the archive, the member and the fix.
 *
 * @example
 * ```ts ignore
 * import { parseCifarArchive } from "./cifar.ts";
 * import { ARCHIVE_DATASETS } from "./registry.ts";
 * const bytes = await Deno.readFile("cifar-10-binary.tar.gz");
 * const ds = parseCifarArchive(bytes, ARCHIVE_DATASETS.cifar10, "cifar-10-binary.tar.gz", "");
 * console.log(ds.train.n, ds.classNames?.[0]); // 50000 "airplane"
 * ```
 */
export function parseCifarArchive(
  bytes: Uint8Array,
  spec: ArchiveDatasetSpec,
  path: string,
  fix: string,
): ImageDataset {
  if (spec.format !== "cifar10-binary" && spec.format !== "cifar100-binary") {
    throw new DatasetError("invalid-argument", `${spec.title} is not a CIFAR binary archive`);
  }
  const layout = CIFAR_MEMBERS[spec.format];
  const what = `${spec.title} archive ${path}`;
  const members = readTarGz(bytes, what, fix);
  const at = (file: string) => `${layout.folder}/${file}`;
  const record = layout.labelBytes + PIXELS;
  const split = (which: "train" | "test"): ImageSplit => {
    const files = layout[which].map((f) =>
      [at(f), member(members, at(f), spec, what, fix)] as const
    );
    for (const [name, data] of files) {
      if (data.length % record !== 0) {
        throw new DatasetError(
          "size",
          `${what}: member ${name} is ${data.length} bytes, not a whole number of ` +
            `${record}-byte records: the archive is damaged. ${fix}`,
        );
      }
    }
    const n = files.reduce((a, [, d]) => a + d.length / record, 0);
    if (n !== spec.samples[which]) {
      throw new DatasetError(
        "size",
        `${what}: the ${which} members hold ${n} images, but ${spec.title} has ` +
          `${spec.samples[which]}: wrong or damaged archive. ${fix}`,
      );
    }
    const images = new Uint8Array(n * PIXELS);
    const labels = new Uint8Array(n);
    const coarse = layout.labelBytes === 2 ? new Uint8Array(n) : undefined;
    let i = 0;
    for (const [name, data] of files) {
      for (let off = 0; off < data.length; off += record, i++) {
        const label = data[off + layout.labelBytes - 1];
        if (label >= spec.classes || (coarse && data[off] >= 20)) {
          throw new DatasetError(
            "format",
            `${what}: member ${name} record ${off / record} has label ${label}` +
              `${coarse ? ` (coarse ${data[off]})` : ""}, outside 0..${spec.classes - 1}: ` +
              `corrupt data. ${fix}`,
          );
        }
        labels[i] = label;
        if (coarse) coarse[i] = data[off];
        // Planes R, G, B of 1024 bytes each → channel-last pixels.
        const src = off + layout.labelBytes, dst = i * PIXELS;
        for (let p = 0; p < 1024; p++) {
          images[dst + 3 * p] = data[src + p];
          images[dst + 3 * p + 1] = data[src + 1024 + p];
          images[dst + 3 * p + 2] = data[src + 2048 + p];
        }
      }
    }
    return { images, labels, n, rows: 32, cols: 32, channels: 3, coarseLabels: coarse };
  };
  const train = split("train"), test = split("test");
  const classNames = names(member(members, at(layout.names), spec, what, fix));
  if (classNames.length < spec.classes) {
    throw new DatasetError(
      "format",
      `${what}: member ${at(layout.names)} lists ${classNames.length} class names, ` +
        `${spec.title} has ${spec.classes}. ${fix}`,
    );
  }
  const out: ImageDataset = {
    name: spec.name,
    train,
    test,
    classes: spec.classes,
    classNames: classNames.slice(0, spec.classes),
  };
  if (layout.coarseNames) {
    out.coarseClassNames = names(member(members, at(layout.coarseNames), spec, what, fix));
  } else {
    delete train.coarseLabels;
    delete test.coarseLabels;
  }
  return out;
}
