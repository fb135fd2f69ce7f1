/**
 * Small CIFAR-10 archives in the exact published layout (`cifar-10-binary.tar.gz`: the
 * `cifar-10-batches-bin/` members, records of one label byte and 3072 planar pixel bytes), with
 * the registry entry that describes them (the archive's own checksums and counts). They let a
 * pipeline run through the real reader (`loadArchive`) where CIFAR cannot be downloaded: the
 * tests, and the Split CIFAR notebook's quick mode.
 *
 * @module
 */
import { gzipSync } from "node:zlib";
import { createTar } from "nanotar";
import { Rng } from "../lib/random.ts";
import { hashBytes } from "./checksum.ts";
import { ARCHIVE_DATASETS, type ArchiveDatasetSpec } from "./registry.ts";

/** One generated image set: pixels planar as CIFAR stores them, plus labels. */
export interface CifarRecords {
  /** n × 3072 bytes: 1024 red, 1024 green, 1024 blue (row-major 32×32 each). */
  planes: Uint8Array;
  labels: Uint8Array;
  coarse?: Uint8Array;
}

/**
 * `n` random images of `classes` classes (labels cycle through them). With a `palette` (three
 * channel means a class, as {@link classPalette} draws them), each image is its class's colour
 * plus noise, so that a model can tell the classes apart; without, uniform noise.
 */
export function cifarRecords(
  n: number,
  classes: number,
  rng: Rng,
  opts: { coarse?: boolean; palette?: readonly number[] } = {},
): CifarRecords {
  const planes = new Uint8Array(n * 3072);
  const labels = Uint8Array.from({ length: n }, (_, i) => i % classes);
  if (opts.palette) {
    const base = opts.palette;
    for (let i = 0; i < n; i++) {
      for (let ch = 0; ch < 3; ch++) {
        const m = base[labels[i] * 3 + ch];
        for (let k = 0; k < 1024; k++) {
          const v = m + rng.int(81) - 40;
          planes[i * 3072 + ch * 1024 + k] = v < 0 ? 0 : v > 255 ? 255 : v;
        }
      }
    }
  } else {
    for (let i = 0; i < planes.length; i++) planes[i] = rng.int(256);
  }
  return {
    planes,
    labels,
    coarse: opts.coarse ? Uint8Array.from(labels, (l) => l % 20) : undefined,
  };
}

/** A mean colour (three channel values in 40..215) for each of `classes` classes. */
export function classPalette(classes: number, rng: Rng): number[] {
  return Array.from({ length: classes * 3 }, () => 40 + rng.int(176));
}

/** The records `from..to` in CIFAR's binary layout (a coarse label byte first for CIFAR-100). */
export function encodeCifarRecords(r: CifarRecords, from: number, to: number): Uint8Array {
  const labelBytes = r.coarse ? 2 : 1, rec = labelBytes + 3072;
  const out = new Uint8Array((to - from) * rec);
  for (let i = from; i < to; i++) {
    const o = (i - from) * rec;
    if (r.coarse) out[o] = r.coarse[i];
    out[o + labelBytes - 1] = r.labels[i];
    out.set(r.planes.subarray(i * 3072, (i + 1) * 3072), o + labelBytes);
  }
  return out;
}

/** Lower-case checksums and size of `bytes`, as a registry entry has them. */
export function archiveChecksums(
  bytes: Uint8Array,
): { md5: string; sha256: string; bytes: number } {
  return { md5: hashBytes(bytes, "md5"), sha256: hashBytes(bytes, "sha256"), bytes: bytes.length };
}

/** Options of {@link syntheticCifar10Archive}. */
export interface SyntheticCifar10Options {
  /** Images in each of the five training batches. @default 4 */
  perBatch?: number;
  /** Images in the test batch. @default 6 */
  test?: number;
  /** @default 1 */
  seed?: number;
  /** Leave this member out (to test the reader's errors). */
  omit?: string;
  /** Class-coloured images a model can learn (else uniform noise). @default false */
  learnable?: boolean;
}

/**
 * A `cifar-10-binary.tar.gz` with `perBatch` images in each of the five data batches and `test`
 * in the test batch (members as published), and the spec that describes it: the registry's
 * CIFAR-10 entry with this archive's checksums and counts, for `loadArchive(spec, { dataDir })`.
 *
 * @example
 * ```ts
 * import { syntheticCifar10Archive } from "./synthetic_archives.ts";
 * const { bytes, spec } = syntheticCifar10Archive({ perBatch: 2, test: 3 });
 * console.assert(spec.samples.train === 10 && spec.archive.bytes === bytes.length);
 * ```
 */
export function syntheticCifar10Archive(opts: SyntheticCifar10Options = {}): {
  bytes: Uint8Array;
  spec: ArchiveDatasetSpec;
  train: CifarRecords;
  test: CifarRecords;
} {
  const perBatch = opts.perBatch ?? 4, nTest = opts.test ?? 6;
  const rng = new Rng(opts.seed ?? 1);
  // One palette for both splits: the test images are drawn from the training distribution.
  const palette = opts.learnable ? classPalette(10, rng) : undefined;
  const train = cifarRecords(5 * perBatch, 10, rng, { palette });
  const test = cifarRecords(nTest, 10, rng, { palette });
  const dir = "cifar-10-batches-bin";
  const names = ARCHIVE_DATASETS.cifar10.classNames!;
  const files = [
    { name: `${dir}/`, attrs: { mode: "755" } },
    { name: `${dir}/batches.meta.txt`, data: names.join("\n") + "\n\n" },
    ...[1, 2, 3, 4, 5].map((b) => ({
      name: `${dir}/data_batch_${b}.bin`,
      data: encodeCifarRecords(train, (b - 1) * perBatch, b * perBatch),
    })),
    { name: `${dir}/readme.html`, data: "<html>CIFAR-10</html>\n" },
    { name: `${dir}/test_batch.bin`, data: encodeCifarRecords(test, 0, nTest) },
  ].filter((f) => f.name !== `${dir}/${opts.omit}`);
  const bytes = new Uint8Array(gzipSync(createTar(files)));
  const spec: ArchiveDatasetSpec = {
    ...ARCHIVE_DATASETS.cifar10,
    archive: { file: "cifar-10-binary.tar.gz", ...archiveChecksums(bytes) },
    samples: { train: 5 * perBatch, test: nTest },
  };
  return { bytes, spec, train, test };
}
