/**
 * Image datasets for perennial: MNIST, Fashion-MNIST and KMNIST (IDX files), CIFAR-10,
 * CIFAR-100 (binary tar.gz archives) and Tiny ImageNet (zip of JPEGs) from a local data dir, the
 * cache, or verified downloads; the file formats; and tiny synthetic data for tests.
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
  ARCHIVE_DATASETS,
  type ArchiveDatasetName,
  type ArchiveDatasetSpec,
  type ArchiveFormat,
  type DatasetFile,
  type DatasetName,
  DATASETS,
  type DatasetSpec,
  type FileRole,
  getDatasetSpec,
  type IdxDatasetName,
  isArchiveDataset,
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
export { clearDatasetMemo, loadArchive, loadDataset } from "./load.ts";
export { syntheticImages, type SyntheticOptions } from "./synthetic.ts";
