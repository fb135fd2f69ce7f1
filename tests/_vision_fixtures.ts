// Small archives in the exact published layouts of CIFAR-10/100 (binary tar.gz) and Tiny
// ImageNet (zip of JPEGs), generated here, with the registry entries that describe them.
import { gzipSync } from "node:zlib";
import { createTar } from "nanotar";
import { zipSync } from "fflate";
import jpeg from "jpeg-js";
import { ARCHIVE_DATASETS, type ArchiveDatasetSpec } from "../datasets/mod.ts";
import {
  archiveChecksums,
  type CifarRecords,
  cifarRecords,
  encodeCifarRecords,
  syntheticCifar10Archive,
} from "../datasets/synthetic_archives.ts";
import { Rng } from "../lib/random.ts";

/** One generated image set: pixels planar as CIFAR stores them, plus labels. */
export type Records = CifarRecords;

const records = (n: number, classes: number, rng: Rng, coarse = false): Records =>
  cifarRecords(n, classes, rng, { coarse });
const encode = encodeCifarRecords;

/** Lower-case checksums and size of `bytes`, as a registry entry has them. */
export const checksumOf = archiveChecksums;

export const CIFAR10_NAMES = ARCHIVE_DATASETS.cifar10.classNames!;

/** `cifar-10-binary.tar.gz` in the published layout (see `syntheticCifar10Archive`). */
export const cifar10Archive = syntheticCifar10Archive;

/** The 100 fine and 20 coarse names of the generated CIFAR-100 archive. */
export const FINE = Array.from({ length: 100 }, (_, i) => `fine_${i}`);
export const COARSE = Array.from({ length: 20 }, (_, i) => `coarse_${i}`);

/** `cifar-100-binary.tar.gz` in the published layout (cifar-100-binary/train.bin, ...). */
export function cifar100Archive(
  opts: { train?: number; test?: number; seed?: number } = {},
): { bytes: Uint8Array; spec: ArchiveDatasetSpec; train: Records; test: Records } {
  const nTrain = opts.train ?? 200, nTest = opts.test ?? 100;
  const rng = new Rng(opts.seed ?? 2);
  const train = records(nTrain, 100, rng, true), test = records(nTest, 100, rng, true);
  const dir = "cifar-100-binary";
  const bytes = new Uint8Array(gzipSync(createTar([
    { name: `${dir}/`, attrs: { mode: "755" } },
    { name: `${dir}/coarse_label_names.txt`, data: COARSE.join("\n") + "\n" },
    { name: `${dir}/fine_label_names.txt`, data: FINE.join("\n") + "\n" },
    { name: `${dir}/test.bin`, data: encode(test, 0, nTest) },
    { name: `${dir}/train.bin`, data: encode(train, 0, nTrain) },
  ])));
  const spec: ArchiveDatasetSpec = {
    ...ARCHIVE_DATASETS.cifar100,
    archive: { file: "cifar-100-binary.tar.gz", ...checksumOf(bytes) },
    samples: { train: nTrain, test: nTest },
  };
  return { bytes, spec, train, test };
}

/** A generated Tiny ImageNet zip: its bytes, spec, and the JPEG bytes of every image by path. */
export interface TinyArchive {
  bytes: Uint8Array;
  spec: ArchiveDatasetSpec;
  wnids: string[];
  jpegs: Map<string, Uint8Array>;
  /** Source RGB pixels (64×64×3) by member path, before JPEG encoding. */
  sources: Map<string, Uint8Array>;
  /** The val images in annotation order, with their wnid. */
  val: { file: string; wnid: string }[];
}

/** Smooth RGB test pictures (JPEG keeps them close), 64×64, as RGBA for the encoder. */
function picture(rng: Rng, size = 64): { rgba: Uint8Array; rgb: Uint8Array } {
  const a = rng.int(200), b = rng.int(200), c = rng.int(200);
  const rgba = new Uint8Array(size * size * 4), rgb = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const p = y * size + x;
      const v = [a + (x >> 2), b + (y >> 2), c + ((x + y) >> 3)];
      for (let ch = 0; ch < 3; ch++) rgba[4 * p + ch] = rgb[3 * p + ch] = v[ch];
      rgba[4 * p + 3] = 255;
    }
  }
  return { rgba, rgb };
}

/**
 * `tiny-imagenet-200.zip` in the published layout: wnids.txt, words.txt,
 * train/<wnid>/images/<wnid>_<k>.JPEG (+ boxes files), val/val_annotations.txt,
 * val/images/val_<k>.JPEG and an unlabelled test/images folder, every image a real JPEG.
 */
export function tinyImageNetArchive(
  opts: {
    classes?: number;
    perClass?: number;
    val?: number;
    omit?: string;
    imageSize?: number;
    seed?: number;
  } = {},
): TinyArchive {
  const classes = opts.classes ?? 3, perClass = opts.perClass ?? 3, nVal = opts.val ?? 4;
  const rng = new Rng(opts.seed ?? 3);
  const root = "tiny-imagenet-200";
  const wnids = Array.from({ length: classes }, (_, i) => `n0${1440000 + 37 * i}`);
  const entries: Record<string, Uint8Array> = {};
  const jpegs = new Map<string, Uint8Array>(), sources = new Map<string, Uint8Array>();
  const text = (s: string) => new TextEncoder().encode(s);
  const image = (path: string) => {
    const { rgba, rgb } = picture(rng, opts.imageSize ?? 64);
    const size = opts.imageSize ?? 64;
    const data = new Uint8Array(jpeg.encode({ data: rgba, width: size, height: size }, 95).data);
    entries[path] = data;
    jpegs.set(path, data);
    sources.set(path, rgb);
  };
  entries[`${root}/wnids.txt`] = text(wnids.join("\n") + "\n");
  entries[`${root}/words.txt`] = text(
    ["n00001740\tentity", ...wnids.map((w, i) => `${w}\tthing ${i}, object ${i}`)].join("\n") +
      "\n",
  );
  for (const w of wnids) {
    // Numbered so that a plain string sort (…_10 before …_2) differs from the natural order.
    for (let k = 0; k < perClass; k++) image(`${root}/train/${w}/images/${w}_${k * 5}.JPEG`);
    entries[`${root}/train/${w}/${w}_boxes.txt`] = text(`${w}_0.JPEG\t0\t0\t63\t63\n`);
  }
  const val: { file: string; wnid: string }[] = [];
  const lines: string[] = [];
  for (let k = 0; k < nVal; k++) {
    const wnid = wnids[(k * 2 + 1) % classes];
    val.push({ file: `val_${k}.JPEG`, wnid });
    lines.push(`val_${k}.JPEG\t${wnid}\t0\t0\t63\t63`);
    image(`${root}/val/images/val_${k}.JPEG`);
  }
  entries[`${root}/val/val_annotations.txt`] = text(lines.join("\n") + "\n");
  image(`${root}/test/images/test_0.JPEG`);
  if (opts.omit) delete entries[`${root}/${opts.omit}`];
  const bytes = zipSync(entries, { level: 0 });
  const spec: ArchiveDatasetSpec = {
    ...ARCHIVE_DATASETS["tiny-imagenet"],
    archive: { file: "tiny-imagenet-200.zip", ...checksumOf(bytes) },
    classes,
    samples: { train: classes * perClass, test: nVal },
  };
  return { bytes, spec, wnids, jpegs, sources, val };
}

/** Writes `bytes` to `<dir>/<name>` (creating `dir`) and returns the path. */
export async function put(dir: string, name: string, bytes: Uint8Array): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${name}`;
  await Deno.writeFile(path, bytes);
  return path;
}

/** Runs `fn` against a server on 127.0.0.1 that answers `routes[path]` (404 for the rest). */
export async function withServer(
  routes: Record<string, Uint8Array>,
  fn: (base: string, hits: string[]) => Promise<void>,
): Promise<void> {
  const hits: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    hits.push(path);
    const body = routes[path];
    return body
      ? new Response(body.slice(), { headers: { "content-length": String(body.length) } })
      : new Response("not found", { status: 404 });
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/`, hits);
  } finally {
    await server.shutdown();
  }
}
