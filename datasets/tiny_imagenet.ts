/**
 * The Tiny ImageNet archive (`tiny-imagenet-200.zip`), read with `fflate`'s unzip and
 * `jpeg-js`'s decoder.
 *
 * Layout: `tiny-imagenet-200/wnids.txt` (the 200 WordNet ids, one a line: label `i` is line
 * `i`, as Avalanche's `TinyImagenet` numbers them), `words.txt` (`wnid<TAB>names` for WordNet),
 * `train/<wnid>/images/<wnid>_<k>.JPEG` (500 a class), `val/val_annotations.txt`
 * (`file<TAB>wnid<TAB>box...`) with `val/images/val_<k>.JPEG` (the labelled 10,000 that serve as
 * the test split, as in Avalanche), and an unlabelled `test/` folder, which is skipped. Every
 * image is 64×64; the few greyscale ones are expanded to RGB (as PIL's `convert("RGB")`).
 *
 * @module
 */
import { unzipSync } from "fflate";
import jpeg from "jpeg-js";
import { DatasetError, errorMessage } from "./errors.ts";
import type { ArchiveDatasetSpec } from "./registry.ts";
import type { ImageDataset, ImageSplit } from "./types.ts";

/** The folder every member of the archive is in. */
export const TINY_IMAGENET_ROOT = "tiny-imagenet-200";

const TRAIN_IMAGE = /^tiny-imagenet-200\/train\/([^/]+)\/images\/([^/]+\.jpe?g)$/i;
const VAL_IMAGE = /^tiny-imagenet-200\/val\/images\/([^/]+\.jpe?g)$/i;

/** The number in a file name such as `n01443537_12.JPEG`, for a natural sort. */
function serial(file: string): number {
  const m = /_(\d+)\.[^.]+$/.exec(file);
  return m ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
}

/**
 * Reads the Tiny ImageNet zip (after its checksum was checked) into train and test (`val`)
 * splits of channel-last 64×64×3 bytes, with the WordNet ids and names of the classes. Train
 * images are ordered by class, then by their number. A damaged zip, a missing member, a JPEG
 * that does not decode or is not 64×64, an unknown WordNet id or counts other than the spec's
 * are {@link DatasetError}s naming the archive, the member and the fix.
 *
 * @example
 * ```ts ignore
 * import { parseTinyImageNetZip } from "./tiny_imagenet.ts";
 * import { ARCHIVE_DATASETS } from "./registry.ts";
 * const bytes = await Deno.readFile("tiny-imagenet-200.zip");
 * const ds = parseTinyImageNetZip(bytes, ARCHIVE_DATASETS["tiny-imagenet"], "tiny-imagenet-200.zip", "");
 * console.log(ds.train.n, ds.classIds?.[0]); // 100000 "n01443537"
 * ```
 */
export function parseTinyImageNetZip(
  bytes: Uint8Array,
  spec: ArchiveDatasetSpec,
  path: string,
  fix: string,
): ImageDataset {
  const what = `${spec.title} archive ${path}`;
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes, {
      filter: (f) =>
        f.name === `${TINY_IMAGENET_ROOT}/wnids.txt` ||
        f.name === `${TINY_IMAGENET_ROOT}/words.txt` ||
        f.name === `${TINY_IMAGENET_ROOT}/val/val_annotations.txt` ||
        TRAIN_IMAGE.test(f.name) || VAL_IMAGE.test(f.name),
    });
  } catch (e) {
    throw new DatasetError(
      "format",
      `${what} is not a readable zip archive (${errorMessage(e)}): it is truncated or damaged. ` +
        fix,
      { cause: e },
    );
  }
  const text = (name: string): string => {
    const data = files[`${TINY_IMAGENET_ROOT}/${name}`];
    if (!data) {
      throw new DatasetError(
        "format",
        `${what} has no member ${TINY_IMAGENET_ROOT}/${name}: it is not the Tiny ImageNet ` +
          `archive (${spec.archive.file}). ${fix}`,
      );
    }
    return new TextDecoder().decode(data);
  };
  const lines = (s: string) => s.split(/\r?\n/).map((l) => l.trim()).filter((l) => l);
  const wnids = lines(text("wnids.txt"));
  if (wnids.length !== spec.classes || new Set(wnids).size !== wnids.length) {
    throw new DatasetError(
      "format",
      `${what}: ${TINY_IMAGENET_ROOT}/wnids.txt lists ${wnids.length} ` +
        `${new Set(wnids).size !== wnids.length ? "ids with repeats" : "distinct ids"}, ` +
        `${spec.title} has ${spec.classes} classes. ${fix}`,
    );
  }
  const label = new Map(wnids.map((w, i) => [w, i]));
  const words = new Map<string, string>();
  for (const l of lines(text("words.txt"))) {
    const tab = l.indexOf("\t");
    if (tab > 0) words.set(l.slice(0, tab), l.slice(tab + 1).trim());
  }

  const train: { file: string; label: number; n: number }[] = [];
  for (const name of Object.keys(files)) {
    const m = TRAIN_IMAGE.exec(name);
    if (!m) continue;
    const l = label.get(m[1]);
    if (l === undefined) {
      throw new DatasetError(
        "format",
        `${what}: member ${name} is in the folder of ${m[1]}, which wnids.txt does not list. ` +
          fix,
      );
    }
    train.push({ file: name, label: l, n: serial(m[2]) });
  }
  train.sort((a, b) => a.label - b.label || a.n - b.n || (a.file < b.file ? -1 : 1));

  const test: { file: string; label: number }[] = [];
  for (const l of lines(text("val/val_annotations.txt"))) {
    const [file, wnid] = l.split("\t");
    const lab = label.get(wnid);
    if (lab === undefined) {
      throw new DatasetError(
        "format",
        `${what}: val/val_annotations.txt gives ${file} the class ${wnid}, which wnids.txt ` +
          `does not list. ${fix}`,
      );
    }
    test.push({ file: `${TINY_IMAGENET_ROOT}/val/images/${file}`, label: lab });
  }

  const decode = (
    list: readonly { file: string; label: number }[],
    which: "train" | "test",
  ): ImageSplit => {
    if (list.length !== spec.samples[which]) {
      throw new DatasetError(
        "size",
        `${what}: ${list.length} ${which === "train" ? "train" : "val"} images found, ` +
          `${spec.title} has ${spec.samples[which]}: wrong or damaged archive. ${fix}`,
      );
    }
    const { rows, cols } = spec;
    const size = rows * cols * 3;
    const images = new Uint8Array(list.length * size);
    const labels = new Uint8Array(list.length);
    list.forEach((s, i) => {
      const data = files[s.file];
      if (!data) {
        throw new DatasetError(
          "format",
          `${what} has no member ${s.file} (listed in val/val_annotations.txt): damaged archive. ` +
            fix,
        );
      }
      let img: { width: number; height: number; data: Uint8Array };
      try {
        img = jpeg.decode(data, { useTArray: true, formatAsRGBA: false });
      } catch (e) {
        throw new DatasetError(
          "format",
          `${what}: member ${s.file} is not a readable JPEG (${errorMessage(e)}). ${fix}`,
          { cause: e },
        );
      }
      if (img.width !== cols || img.height !== rows) {
        throw new DatasetError(
          "size",
          `${what}: member ${s.file} is ${img.width}×${img.height}, ${spec.title} images are ` +
            `${cols}×${rows}. ${fix}`,
        );
      }
      const pixels = rows * cols, per = img.data.length / pixels;
      const out = images.subarray(i * size, (i + 1) * size);
      if (per === 3) out.set(img.data);
      else if (per === 1 || per === 4) {
        for (let p = 0; p < pixels; p++) {
          const base = p * per;
          out[3 * p] = img.data[base];
          out[3 * p + 1] = img.data[per === 1 ? base : base + 1];
          out[3 * p + 2] = img.data[per === 1 ? base : base + 2];
        }
      } else {
        throw new DatasetError(
          "format",
          `${what}: member ${s.file} decodes to ${per} values a pixel (1, 3 or 4 expected). ${fix}`,
        );
      }
      labels[i] = s.label;
    });
    return { images, labels, n: list.length, rows, cols, channels: 3 };
  };
  return {
    name: spec.name,
    train: decode(train, "train"),
    test: decode(test, "test"),
    classes: spec.classes,
    classIds: wnids,
    classNames: wnids.map((w) => words.get(w) ?? w),
  };
}
