/**
 * Internal: appending lines to a file so that an interrupted run leaves a readable file. Each
 * call writes whole lines in one append; the header (if any) is written once, with the first
 * lines; an existing file is appended to (after checking its header), refused, or replaced, as
 * asked. The loggers built on it mark every row with their run (see `runs.ts`), so that what one
 * run appended stays apart from what an earlier one wrote.
 *
 * @module
 */
import type { RunInfo } from "./runs.ts";
import { oneOf, type OptionSpec } from "../options.ts";

/** What to do when the log file already exists. */
export type IfExists = "append" | "error" | "overwrite";

/** Options shared by the file loggers. */
export interface FileLoggerOptions {
  /** Folder of the log file (created if missing). */
  dir: string;
  /** File name inside `dir`. */
  file?: string;
  /**
   * When the file exists: `"append"` adds to it (its header must match), `"error"` refuses to
   * start, `"overwrite"` replaces it. Nothing is ever truncated unless `"overwrite"` is given.
   * @default "append"
   */
  ifExists?: IfExists;
  /** Also flush each write to the disk (`fsync`), surviving an OS crash; slower. @default false */
  fsync?: boolean;
  /**
   * The run written into every row (`run` and `runStart`). Pass one mark to several loggers
   * (`run: csv.run`) to give their files the same id, or your own `{ id, start }`.
   * @default a fresh `newRun()`: a random id and the time the logger is created
   */
  run?: RunInfo;
}

/** The keys of {@link FileLoggerOptions}, which each file logger checks with its own. */
export const FILE_LOGGER_OPTIONS: OptionSpec<FileLoggerOptions> = {
  dir: "string",
  file: "string",
  ifExists: oneOf("append", "error", "overwrite"),
  fsync: "boolean",
  // Checked by checkRun, whose message shows the expected form.
  run: "any",
};

const encoder = new TextEncoder();

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

function firstLine(path: string): string {
  const f = Deno.openSync(path, { read: true });
  try {
    const buf = new Uint8Array(65536);
    const n = f.readSync(buf) ?? 0;
    const text = new TextDecoder().decode(buf.subarray(0, n));
    const end = text.indexOf("\n");
    return (end < 0 ? text : text.slice(0, end)).replace(/\r$/, "");
  } finally {
    f.close();
  }
}

function endsWithNewline(path: string): boolean {
  const f = Deno.openSync(path, { read: true });
  try {
    const size = f.statSync().size;
    if (size === 0) return true;
    f.seekSync(size - 1, Deno.SeekMode.Start);
    const b = new Uint8Array(1);
    f.readSync(b);
    return b[0] === 10;
  } finally {
    f.close();
  }
}

/** A file that grows by whole lines. */
export class LineFile {
  readonly path: string;
  readonly #header: string | undefined;
  readonly #fsync: boolean;
  #prefix = "";
  #truncate = false;

  /**
   * `explain`, when given, adds to the error for an existing file whose header differs: it gets
   * the header found and returns what to say about it (or "").
   */
  constructor(
    opts: FileLoggerOptions,
    defaultFile: string,
    header?: string,
    explain?: (found: string) => string,
  ) {
    if (!opts || typeof opts.dir !== "string" || opts.dir === "") {
      throw new TypeError(`A file logger needs a folder: pass { dir: "runs/my-run" }`);
    }
    const ifExists = opts.ifExists ?? "append";
    if (!["append", "error", "overwrite"].includes(ifExists)) {
      throw new RangeError(
        `ifExists must be "append", "error" or "overwrite", got ${String(ifExists)}`,
      );
    }
    const file = opts.file ?? defaultFile;
    this.path = `${opts.dir.replace(/\/+$/, "")}/${file}`;
    this.#header = header;
    this.#fsync = opts.fsync === true;
    if (exists(this.path)) {
      if (ifExists === "error") {
        throw new Error(
          `${this.path} already exists: pass ifExists: "append" to add to it, or "overwrite" to ` +
            `replace it, or choose another dir`,
        );
      }
      if (ifExists === "overwrite") {
        this.#truncate = true;
        this.#prefix = header ?? "";
      } else {
        const size = Deno.statSync(this.path).size;
        if (size === 0) {
          this.#prefix = header ?? "";
        } else {
          if (header !== undefined) {
            const found = firstLine(this.path);
            if (found !== header.replace(/\n$/, "")) {
              const why = explain?.(found) ?? "";
              throw new Error(
                `${this.path} has other columns (${found}) than this logger writes ` +
                  `(${header.trim()})${why ? `: ${why}` : ""}: choose another file, or pass ` +
                  `ifExists: "overwrite"`,
              );
            }
          }
          // An interrupted run may have left a partial last line: start on a new line.
          if (!endsWithNewline(this.path)) this.#prefix = "\n";
        }
      }
    } else {
      this.#prefix = header ?? "";
    }
  }

  /** Appends complete lines (each ending with "\n") in one write. */
  append(lines: string): void {
    if (lines === "") return;
    const dir = this.path.slice(0, this.path.lastIndexOf("/"));
    if (dir) Deno.mkdirSync(dir, { recursive: true });
    const data = encoder.encode(this.#prefix + lines);
    const f = Deno.openSync(
      this.path,
      this.#truncate
        ? { write: true, create: true, truncate: true }
        : { append: true, create: true },
    );
    try {
      let off = 0;
      while (off < data.length) off += f.writeSync(data.subarray(off));
      if (this.#fsync) f.syncSync();
    } finally {
      f.close();
    }
    this.#prefix = "";
    this.#truncate = false;
  }
}
