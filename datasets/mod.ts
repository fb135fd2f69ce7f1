/**
 * Image datasets for perennial: MNIST, Fashion-MNIST and KMNIST from a local data dir,
 * the cache, or verified downloads; the IDX format; and tiny synthetic data for tests.
 *
 * @example
 * ```ts
 * import { loadDataset, syntheticImages } from "./mod.ts";
 * const fashion = await loadDataset("fashion-mnist"); // PERENNIAL_DATA, cache, or download
 * console.log(fashion.train.n, fashion.classNames?.[0]); // 60000 "T-shirt/top"
 * const toy = syntheticImages({ n: 100, classes: 3, rows: 8, cols: 8, seed: 1 });
 * ```
 *
 * @module
 */

export type { ImageDataset, ImageSplit, LoadOptions } from "./types.ts";
export { DatasetError, type DatasetErrorCode } from "./errors.ts";
export { type IdxHeader, parseIdx, readIdxHeader } from "./idx.ts";
export {
  type DatasetFile,
  type DatasetName,
  DATASETS,
  type DatasetSpec,
  type FileRole,
  getDatasetSpec,
} from "./registry.ts";
export { checkedDataDir, defaultCacheDir, resolveDataDir } from "./dirs.ts";
export {
  type Checksum,
  createHasher,
  type HashAlgorithm,
  hashBytes,
  pickChecksum,
  verifyBytes,
} from "./checksum.ts";
export {
  DEFAULT_DOWNLOAD_TIMEOUT_MS,
  DEFAULT_READ_TIMEOUT_MS,
  type DownloadOptions,
  type DownloadProgress,
  downloadVerified,
  mirrorUrl,
} from "./cache.ts";
export { clearDatasetMemo, loadDataset } from "./load.ts";
export { syntheticImages, type SyntheticOptions } from "./synthetic.ts";
