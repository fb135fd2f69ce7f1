/**
 * The one error type the datasets module throws, with a machine-readable code.
 *
 * @module
 */
import { checkOptions, type OptionSpec } from "../lib/options.ts";

/** What went wrong, for programs that want to react to a {@link DatasetError}. */
export type DatasetErrorCode =
  /** The dataset name is not in the registry. */
  | "unknown-dataset"
  /** A file is in no data dir and no cache, and download is disabled. */
  | "not-found"
  /** A file's SHA-256 / MD5 differs from the registry's. */
  | "checksum"
  /** A file has the wrong number of bytes (or IDX dims that do not fit the dataset). */
  | "size"
  /** A download ended before all advertised bytes arrived. */
  | "truncated"
  /** A mirror answered with an HTTP error status (404, 500, ...). */
  | "http"
  /** A mirror could not be reached (DNS, refused connection, reset, ...). */
  | "network"
  /** A mirror sent nothing for the read timeout (`readTimeoutMs`), before or during the body. */
  | "stalled"
  /** The download's overall time limit (`timeoutMs`) ran out. */
  | "timeout"
  /** Bytes that are not valid IDX or gzip data. */
  | "format"
  /** Every mirror failed, for different reasons (see the message). */
  | "download"
  /** A bad argument (option out of range, a mirror that is not a URL, a missing data dir, ...). */
  | "invalid-argument";

/**
 * Error thrown by everything in `datasets/`. The message names the offending value
 * (file, path, URL, hashes) and how to fix it; `code` says what kind of failure it was.
 *
 * @example
 * ```ts
 * import { DatasetError, loadDataset } from "./mod.ts";
 * try {
 *   await loadDataset("mnist", { download: false });
 * } catch (e) {
 *   if (e instanceof DatasetError && e.code === "not-found") console.log(e.message);
 * }
 * ```
 */
export class DatasetError extends Error {
  /** What kind of failure this is. */
  readonly code: DatasetErrorCode;

  /**
   * Create an error of the given kind.
   *
   * @param code what kind of failure this is
   * @param message full, human-readable explanation (value + fix)
   * @param options standard `ErrorOptions` (e.g. `cause`)
   */
  constructor(code: DatasetErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DatasetError";
    this.code = code;
  }
}

/**
 * Message of any thrown value (helper for building error messages).
 *
 * @example
 * ```ts
 * import { errorMessage } from "./errors.ts";
 * errorMessage(new Error("boom")); // "boom"
 * errorMessage("plain"); // "plain"
 * ```
 */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Checks an options object as `lib/options.ts`'s `checkOptions` does (unknown keys with the
 * closest valid one, kinds of values), but throws a {@link DatasetError} ("invalid-argument"),
 * the one error type of this module.
 *
 * @example
 * ```ts
 * import { checkDatasetOptions, DatasetError } from "./errors.ts";
 * try {
 *   checkDatasetOptions("loadDataset", { datadir: "/data" } as { dataDir?: string }, { dataDir: "string" });
 * } catch (e) {
 *   console.assert(e instanceof DatasetError && e.code === "invalid-argument");
 * }
 * ```
 */
export function checkDatasetOptions<T>(who: string, opts: T, spec: NoInfer<OptionSpec<T>>): T {
  try {
    return checkOptions(who, opts, spec);
  } catch (e) {
    throw new DatasetError("invalid-argument", errorMessage(e), { cause: e });
  }
}
