/**
 * Data types shared by the datasets module.
 *
 * @module
 */

/**
 * One split (train or test) of an image classification dataset, as flat bytes.
 *
 * Image `i` is `images.subarray(i * size, (i + 1) * size)` with `size = rows * cols * channels`,
 * row-major and channel-last (pixel `(r, c)` channel `ch` at `(r * cols + c) * channels + ch`);
 * greyscale datasets have one channel, 0 = background. Its class is `labels[i]`. The arrays may be views into a larger buffer
 * (mind `byteOffset` when using `.buffer`).
 *
 * @example
 * ```ts
 * import { syntheticImages, type ImageSplit } from "./mod.ts";
 * const split: ImageSplit = syntheticImages({ n: 4, classes: 2 });
 * const first = split.images.subarray(0, split.rows * split.cols);
 * console.log(first.length, split.labels[0]);
 * ```
 */
export interface ImageSplit {
  /** `n * rows * cols * channels` pixel values, 0..255. */
  images: Uint8Array;
  /** `n` class labels, `0 .. classes - 1`. */
  labels: Uint8Array;
  /** Number of images. */
  n: number;
  /** Image height in pixels. */
  rows: number;
  /** Image width in pixels. */
  cols: number;
  /** Channels per pixel (3 for RGB, stored channel-last). @default 1 */
  channels?: number;
  /** CIFAR-100's superclass ("coarse label") of each image, `0 .. 19`. */
  coarseLabels?: Uint8Array;
}

/**
 * A whole dataset: train and test splits plus class information.
 *
 * @example
 * ```ts
 * import { loadDataset, type ImageDataset } from "./mod.ts";
 * const ds: ImageDataset = await loadDataset("fashion-mnist");
 * console.log(ds.train.n, ds.classNames?.[ds.train.labels[0]]);
 * ```
 */
export interface ImageDataset {
  /** Registry name, e.g. `"mnist"`. */
  name: string;
  /** Training split. */
  train: ImageSplit;
  /** Test split. */
  test: ImageSplit;
  /** Number of classes. */
  classes: number;
  /** Class names, indexed by label. */
  classNames?: string[];
  /** Class identifiers of the distribution, indexed by label (Tiny ImageNet's WordNet ids). */
  classIds?: string[];
  /** CIFAR-100's superclass names, indexed by coarse label. */
  coarseClassNames?: string[];
}

/**
 * Options of {@link loadDataset}.
 *
 * @example
 * ```ts
 * import { loadDataset, type LoadOptions } from "./mod.ts";
 * const opts: LoadOptions = { dataDir: Deno.env.get("PERENNIAL_DATA"), download: false };
 * await loadDataset("mnist", opts);
 * ```
 */
export interface LoadOptions {
  /**
   * Local directory with the files, searched first: `${dataDir}/${name}/${file}`, then
   * `${dataDir}/${file}`; in each place the `.gz` file, then the decompressed file (same
   * name without `.gz`); for an archive dataset (CIFAR, Tiny ImageNet), the archive itself
   * (`${dataDir}/${name}/${archive}`, then `${dataDir}/${archive}`). A folder given here (or in
   * `PERENNIAL_DATA`) that does not exist is an error naming it; nothing is downloaded instead.
   * @default env `PERENNIAL_DATA`, else none
   */
  dataDir?: string;
  /**
   * Download cache, searched second and written by downloads (`${cacheDir}/${name}/${file}`).
   * Default: env `PERENNIAL_CACHE`, else `$XDG_CACHE_HOME/perennial`, else
   * `$HOME/.cache/perennial`.
   */
  cacheDir?: string;
  /** Download missing files from the mirrors (default `true`). */
  download?: boolean;
  /**
   * Base URLs to download from (absolute http or https URLs), tried in order. One that is not
   * such a URL is an error naming it.
   * @default the registry's canonical mirrors
   */
  mirrors?: string[];
  /** Called for every received chunk of a download. */
  onProgress?: (p: { file: string; received: number; total?: number }) => void;
  /**
   * Give up on a mirror that sends nothing for this many milliseconds (no response, or no more
   * bytes of the body), and try the next one. `Infinity` waits for ever.
   * @default 30000
   */
  readTimeoutMs?: number;
  /**
   * Time limit in milliseconds for all the downloads of one load (every file, every mirror),
   * counted from the first download. `Infinity` sets no limit.
   * @default 1800000 (30 minutes)
   */
  timeoutMs?: number;
}
