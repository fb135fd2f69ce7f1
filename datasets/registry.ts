/**
 * Registry of the known image datasets: files, checksums, canonical mirrors, classes.
 *
 * Checksums are those of the original `.gz` distribution files, as published for each dataset
 * (MNIST's MD5s are also the ones torchvision checks). SHA-256 is verified when known, else MD5.
 *
 * Each file also records its decompressed content (`raw`): the same IDX data compressed again
 * (another gzip level or tool, another header) has other `.gz` bytes, and is recognized by it.
 * MNIST's and Fashion-MNIST's raw SHA-256 and MD5 were computed from the original files; their
 * MD5s are the published ones of the uncompressed files. KMNIST's raw MD5s are those of the
 * datalad dataset `datasets-mila/datasets--kmnist` (no copy of KMNIST was at hand to check them).
 *
 * @module
 */

import type { Checksum } from "./checksum.ts";
import { DatasetError } from "./errors.ts";

/** Names of the IDX datasets of {@link DATASETS}. */
export type IdxDatasetName = "mnist" | "fashion-mnist" | "kmnist";

/** Names of the datasets distributed as one archive, in {@link ARCHIVE_DATASETS}. */
export type ArchiveDatasetName = "cifar10" | "cifar100" | "tiny-imagenet";

/** Names accepted by {@link loadDataset}. */
export type DatasetName = IdxDatasetName | ArchiveDatasetName;

/** Which part of a dataset a file holds. */
export type FileRole = "trainImages" | "trainLabels" | "testImages" | "testLabels";

/** One distribution file of a dataset. */
export interface DatasetFile {
  /** What the file holds. */
  role: FileRole;
  /** File name, as on the mirrors (gzip-compressed IDX, ending in `.gz`). */
  file: string;
  /** Lower-case hex SHA-256 of the `.gz` file. */
  sha256?: string;
  /** Lower-case hex MD5 of the `.gz` file. */
  md5?: string;
  /** Size of the `.gz` file in bytes. */
  bytes?: number;
  /** IDX dims of the decompressed file (e.g. `[60000, 28, 28]`). */
  dims: number[];
  /**
   * The decompressed IDX file: its SHA-256 and/or MD5 (lower-case hex) and size. A `.gz` file
   * whose own checksum differs is accepted when it decompresses to exactly this (a re-compressed
   * copy), and a decompressed file in a data dir is checked against it.
   */
  raw?: Checksum;
}

/** Everything needed to find, fetch and check one dataset. */
export interface DatasetSpec {
  /** Registry key, e.g. `"fashion-mnist"`; also the sub-folder name in data and cache dirs. */
  name: IdxDatasetName;
  /** Display name for messages, e.g. `"Fashion-MNIST"`. */
  title: string;
  /** The four files: train/test images/labels. */
  files: DatasetFile[];
  /** Canonical base URLs, tried in order; a file's URL is `mirror + file`. */
  mirrors: string[];
  /** Number of classes. */
  classes: number;
  /** Human-readable class names, indexed by label. */
  classNames: string[];
  /** Project page. */
  homepage: string;
}

const DIGITS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

function mnistLike(n: { train: number; test: number }): Record<FileRole, number[]> {
  return {
    trainImages: [n.train, 28, 28],
    trainLabels: [n.train],
    testImages: [n.test, 28, 28],
    testLabels: [n.test],
  };
}

const DIMS = mnistLike({ train: 60000, test: 10000 });

/**
 * The dataset registry, keyed by name.
 *
 * @example
 * ```ts
 * import { DATASETS } from "./registry.ts";
 * const spec = DATASETS["fashion-mnist"];
 * console.log(spec.classNames[9], spec.files.map((f) => f.file)); // "Ankle boot", [...]
 * ```
 */
export const DATASETS: Record<string, DatasetSpec> = deepFreeze({
  "mnist": {
    name: "mnist",
    title: "MNIST",
    homepage: "http://yann.lecun.com/exdb/mnist/",
    mirrors: [
      "https://ossci-datasets.s3.amazonaws.com/mnist/",
      "http://yann.lecun.com/exdb/mnist/",
    ],
    classes: 10,
    classNames: DIGITS,
    files: [
      {
        role: "trainImages",
        file: "train-images-idx3-ubyte.gz",
        sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        md5: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        bytes: 9912422,
        dims: DIMS.trainImages,
        raw: {
          sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
          md5: "6bbc9ace898e44ae57da46a324031adb",
          bytes: 47_040_016,
        },
      },
      {
        role: "trainLabels",
        file: "train-labels-idx1-ubyte.gz",
        sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        md5: "d53e105ee54ea40749a09fcbcd1e9432",
        bytes: 28881,
        dims: DIMS.trainLabels,
        raw: {
          sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
          md5: "a25bea736e30d166cdddb491f175f624",
          bytes: 60_008,
        },
      },
      {
        role: "testImages",
        file: "t10k-images-idx3-ubyte.gz",
        sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        md5: "9fb629c4189551a2d022fa330f9573f3",
        bytes: 1648877,
        dims: DIMS.testImages,
        raw: {
          sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
          md5: "2646ac647ad5339dbf082846283269ea",
          bytes: 7_840_016,
        },
      },
      {
        role: "testLabels",
        file: "t10k-labels-idx1-ubyte.gz",
        sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        md5: "ec29112dd5afa0611ce80d1b7f02629c",
        bytes: 4542,
        dims: DIMS.testLabels,
        raw: {
          sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
          md5: "27ae3e4e09519cfbb04c329615203637",
          bytes: 10_008,
        },
      },
    ],
  },
  "fashion-mnist": {
    name: "fashion-mnist",
    title: "Fashion-MNIST",
    homepage: "https://github.com/zalandoresearch/fashion-mnist",
    mirrors: ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    classes: 10,
    classNames: [
      "T-shirt/top",
      "Trouser",
      "Pullover",
      "Dress",
      "Coat",
      "Sandal",
      "Shirt",
      "Sneaker",
      "Bag",
      "Ankle boot",
    ],
    files: [
      {
        role: "trainImages",
        file: "train-images-idx3-ubyte.gz",
        sha256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        md5: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        bytes: 26421880,
        dims: DIMS.trainImages,
        raw: {
          sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
          md5: "f4a8712d7a061bf5bd6d2ca38dc4d50a",
          bytes: 47_040_016,
        },
      },
      {
        role: "trainLabels",
        file: "train-labels-idx1-ubyte.gz",
        sha256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        md5: "25c81989df183df01b3e8a0aad5dffbe",
        bytes: 29515,
        dims: DIMS.trainLabels,
        raw: {
          sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
          md5: "9018921c3c673c538a1fc5bad174d6f9",
          bytes: 60_008,
        },
      },
      {
        role: "testImages",
        file: "t10k-images-idx3-ubyte.gz",
        sha256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        md5: "bef4ecab320f06d8554ea6380940ec79",
        bytes: 4422102,
        dims: DIMS.testImages,
        raw: {
          sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
          md5: "8181f5470baa50b63fa0f6fddb340f0a",
          bytes: 7_840_016,
        },
      },
      {
        role: "testLabels",
        file: "t10k-labels-idx1-ubyte.gz",
        sha256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        md5: "bb300cfdad3c16e7a12a480ee83cd310",
        bytes: 5148,
        dims: DIMS.testLabels,
        raw: {
          sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
          md5: "15d484375f8d13e6eb1aabb0c3f46965",
          bytes: 10_008,
        },
      },
    ],
  },
  "kmnist": {
    name: "kmnist",
    title: "KMNIST",
    homepage: "https://github.com/rois-codh/kmnist",
    mirrors: ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
    classes: 10,
    // Romanized hiragana, in label order (kmnist_classmap.csv): お き す つ な は ま や れ を
    classNames: ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
    files: [
      {
        role: "trainImages",
        file: "train-images-idx3-ubyte.gz",
        md5: "bdb82020997e1d708af4cf47b453dcf7",
        bytes: 18165135,
        dims: DIMS.trainImages,
        raw: {
          md5: "92be26ec9822e900ac425d0a0aa84ced",
          bytes: 47_040_016,
        },
      },
      {
        role: "trainLabels",
        file: "train-labels-idx1-ubyte.gz",
        md5: "e144d726b3acfaa3e44228e80efcd344",
        dims: DIMS.trainLabels,
        raw: {
          md5: "949e75301f8813e0dc5800dcc320fc52",
          bytes: 60_008,
        },
      },
      {
        role: "testImages",
        file: "t10k-images-idx3-ubyte.gz",
        md5: "5c965bf0a639b31b8f53240b1b52f4d7",
        bytes: 3041136,
        dims: DIMS.testImages,
        raw: {
          md5: "bf305b8cd328700fbc17f5acbc2856d2",
          bytes: 7_840_016,
        },
      },
      {
        role: "testLabels",
        file: "t10k-labels-idx1-ubyte.gz",
        md5: "7320c461ea6c1c855c0b718fb2a4b134",
        dims: DIMS.testLabels,
        raw: {
          md5: "9f55f451c0988b028eccdf7d5cc265ab",
          bytes: 10_008,
        },
      },
    ],
  },
});

/** How the members of an archive are laid out (which parser reads it). */
export type ArchiveFormat = "cifar10-binary" | "cifar100-binary" | "tiny-imagenet-zip";

/** A dataset distributed as one archive file (CIFAR's tar.gz, Tiny ImageNet's zip). */
export interface ArchiveDatasetSpec {
  /** Registry key; also the sub-folder name in data and cache dirs. */
  name: ArchiveDatasetName;
  /** Display name for messages, e.g. `"CIFAR-10"`. */
  title: string;
  /** The archive: its file name on the mirrors, and its published checksum and size. */
  archive: Checksum & { file: string };
  /** Which layout the archive's members have. */
  format: ArchiveFormat;
  /** Canonical base URLs, tried in order; the archive's URL is `mirror + archive.file`. */
  mirrors: string[];
  /** Number of classes. */
  classes: number;
  /**
   * Class names indexed by label, when the registry lists them; otherwise they are read from
   * the archive (CIFAR-100's `fine_label_names.txt`, Tiny ImageNet's `wnids.txt` + `words.txt`).
   */
  classNames?: string[];
  /** Training and test samples the archive holds (Tiny ImageNet's test split is its `val`). */
  samples: { train: number; test: number };
  /** Image height, width and channels (channel-last, as the splits store them). */
  rows: number;
  cols: number;
  channels: number;
  /** Project page. */
  homepage: string;
}

/**
 * The datasets distributed as one archive, keyed by name. The CIFAR archives are the binary
 * versions ("suitable for C programs") from the authors' page, with the MD5s published there;
 * CIFAR-10's SHA-256 and both sizes were checked against independent records of the same
 * files. Tiny ImageNet's MD5 is the one torchvision-style loaders and Avalanche check.
 *
 * @example
 * ```ts
 * import { ARCHIVE_DATASETS } from "./registry.ts";
 * const spec = ARCHIVE_DATASETS.cifar10;
 * console.log(spec.archive.file, spec.archive.md5); // cifar-10-binary.tar.gz c32a1d4a...
 * ```
 */
export const ARCHIVE_DATASETS: Record<ArchiveDatasetName, ArchiveDatasetSpec> = deepFreeze({
  "cifar10": {
    name: "cifar10",
    title: "CIFAR-10",
    homepage: "https://www.cs.toronto.edu/~kriz/cifar.html",
    mirrors: ["https://www.cs.toronto.edu/~kriz/"],
    archive: {
      file: "cifar-10-binary.tar.gz",
      sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
      md5: "c32a1d4ab5d03f1284b67883e8d87530",
      bytes: 170_052_171,
    },
    format: "cifar10-binary",
    classes: 10,
    classNames: [
      "airplane",
      "automobile",
      "bird",
      "cat",
      "deer",
      "dog",
      "frog",
      "horse",
      "ship",
      "truck",
    ],
    samples: { train: 50_000, test: 10_000 },
    rows: 32,
    cols: 32,
    channels: 3,
  },
  "cifar100": {
    name: "cifar100",
    title: "CIFAR-100",
    homepage: "https://www.cs.toronto.edu/~kriz/cifar.html",
    mirrors: ["https://www.cs.toronto.edu/~kriz/"],
    archive: {
      file: "cifar-100-binary.tar.gz",
      md5: "03b5dce01913d631647c71ecec9e9cb8",
      bytes: 168_513_733,
    },
    format: "cifar100-binary",
    classes: 100,
    samples: { train: 50_000, test: 10_000 },
    rows: 32,
    cols: 32,
    channels: 3,
  },
  "tiny-imagenet": {
    name: "tiny-imagenet",
    title: "Tiny ImageNet",
    homepage: "https://www.kaggle.com/c/tiny-imagenet",
    mirrors: ["http://cs231n.stanford.edu/"],
    archive: {
      file: "tiny-imagenet-200.zip",
      md5: "90528d7ca1a48142e341f4ef8d21d0de",
      bytes: 248_100_043,
    },
    format: "tiny-imagenet-zip",
    classes: 200,
    samples: { train: 100_000, test: 10_000 },
    rows: 64,
    cols: 64,
    channels: 3,
  },
});

/**
 * Whether `name` is a key of {@link ARCHIVE_DATASETS}.
 *
 * @example
 * ```ts
 * import { isArchiveDataset } from "./registry.ts";
 * console.assert(isArchiveDataset("cifar10") && !isArchiveDataset("mnist"));
 * ```
 */
export function isArchiveDataset(name: string): name is ArchiveDatasetName {
  return Object.hasOwn(ARCHIVE_DATASETS, name);
}

/** Freeze an object graph so that the shared registry cannot be changed by accident. */
function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * The registry entry for `name`, or a {@link DatasetError} ("unknown-dataset") that lists
 * the known names.
 *
 * @example
 * ```ts
 * import { getDatasetSpec } from "./registry.ts";
 * getDatasetSpec("kmnist").files[0].md5; // "bdb82020997e1d708af4cf47b453dcf7"
 * ```
 */
export function getDatasetSpec(name: string): DatasetSpec {
  const spec = Object.hasOwn(DATASETS, name) ? DATASETS[name] : undefined;
  if (!spec && isArchiveDataset(name)) {
    throw new DatasetError(
      "unknown-dataset",
      `${JSON.stringify(name)} is distributed as one archive, not as IDX files: its entry is ` +
        `ARCHIVE_DATASETS[${JSON.stringify(name)}] (loadDataset reads it)`,
    );
  }
  if (!spec) {
    throw new DatasetError(
      "unknown-dataset",
      `unknown dataset ${JSON.stringify(name)}: known datasets are ${
        [...Object.keys(DATASETS), ...Object.keys(ARCHIVE_DATASETS)]
          .map((k) => JSON.stringify(k)).join(", ")
      }`,
    );
  }
  return spec;
}
