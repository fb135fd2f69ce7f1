/**
 * A TensorBoard logger: each metric row becomes a scalar in a TensorFlow event file
 * (`events.out.tfevents.<seconds>.<host>.<run id>`), which TensorBoard reads as it grows. The
 * file is a sequence of TFRecords, each holding one `Event` protobuf: a `file_version` record
 * first, then one `Summary` per row.
 *
 * @module
 */
import protobuf from "protobufjs";
import { granularityOf } from "../metrics/names.ts";
import type { MetricRow } from "../data/rows.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import type { Logger } from "./logger.ts";
import { checkRun, type RunInfo } from "./runs.ts";

/** Options of {@link tensorboardLogger}. */
export interface TensorboardLoggerOptions {
  /**
   * Folder of the event file (created if missing): TensorBoard's run directory, e.g.
   * `runs/naive-seed0`, shown under that name by `tensorboard --logdir runs`.
   */
  dir: string;
  /** Also flush each write to the disk (`fsync`), surviving an OS crash; slower. @default false */
  fsync?: boolean;
  /**
   * The run: its id ends the file name, so each run gets a file of its own. Pass another
   * logger's mark (`run: csv.run`) to tie the event file to that logger's rows.
   * @default a fresh `newRun()`
   */
  run?: RunInfo;
  /** The scalar's tag for a row. @default tensorboardTag */
  tag?: (row: MetricRow) => string;
}

const TENSORBOARD_OPTIONS: OptionSpec<TensorboardLoggerOptions> = {
  dir: "string",
  fsync: "boolean",
  // Checked by checkRun, whose message shows the expected form.
  run: "any",
  tag: "function",
};

// The messages of tensorflow/core/util/event.proto and framework/summary.proto, cut down to the
// fields written here; field numbers are TensorFlow's, so TensorBoard reads them.
const PROTO = `
syntax = "proto3";
message Event {
  double wall_time = 1;
  int64 step = 2;
  oneof what {
    string file_version = 3;
    Summary summary = 5;
  }
}
message Summary {
  message Value {
    string tag = 1;
    oneof value {
      float simple_value = 2;
    }
  }
  repeated Value value = 1;
}
`;

let eventType: protobuf.Type | undefined;

/** The `Event` message type, parsed on first use. */
function eventMessage(): protobuf.Type {
  return eventType ??= protobuf.parse(PROTO).root.lookupType("Event");
}

/** What {@link encodeEvent} writes: a `file_version` event, or one with scalars. */
export type TensorboardEvent =
  & { wallTime: number; step: number }
  & ({ fileVersion: string } | { scalars: readonly { tag: string; value: number }[] });

/**
 * The `Event` protobuf bytes of an event.
 *
 * @example
 * ```ts
 * import { encodeEvent } from "./tensorboard.ts";
 * const bytes = encodeEvent({ wallTime: 0, step: 0, fileVersion: "brain.Event:2" });
 * console.assert(bytes[0] === 0x09); // field 1 (wall_time), a 64-bit double
 * ```
 */
export function encodeEvent(event: TensorboardEvent): Uint8Array {
  const type = eventMessage();
  const body = "fileVersion" in event
    ? { fileVersion: event.fileVersion }
    : { summary: { value: event.scalars.map((s) => ({ tag: s.tag, simpleValue: s.value })) } };
  const bytes = type.encode(type.fromObject({
    wallTime: event.wallTime,
    step: event.step,
    ...body,
  })).finish();
  // protobufjs hands back a Node Buffer under Deno; a plain view keeps the return type exact.
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

let crcTable: Uint32Array | undefined;

/** The byte table of CRC-32C (Castagnoli polynomial, reflected: 0x82f63b78). */
function crc32cTable(): Uint32Array {
  if (crcTable) return crcTable;
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return crcTable = t;
}

/**
 * CRC-32C (Castagnoli) of `bytes`, the checksum TFRecords use.
 *
 * @example
 * ```ts
 * import { crc32c } from "./tensorboard.ts";
 * console.assert(crc32c(new TextEncoder().encode("123456789")) === 0xe3069283);
 * ```
 */
export function crc32c(bytes: Uint8Array): number {
  const t = crc32cTable();
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * TensorFlow's masked CRC-32C: rotated right by 15 bits plus 0xa282ead8 (mod 2^32), so that
 * a CRC over data that itself holds CRCs does not degenerate.
 *
 * @example
 * ```ts
 * import { maskedCrc32c } from "./tensorboard.ts";
 * console.assert(maskedCrc32c(new Uint8Array(0)) === 0xa282ead8);
 * ```
 */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

/**
 * One TFRecord: `uint64 length`, `uint32 masked_crc32c(length bytes)`, `data`,
 * `uint32 masked_crc32c(data)`, every integer little-endian.
 *
 * @example
 * ```ts
 * import { tfRecord } from "./tensorboard.ts";
 * console.assert(tfRecord(new Uint8Array(3)).length === 8 + 4 + 3 + 4);
 * ```
 */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + data.length);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

function pad3(n: number): string {
  return String(n).padStart(3, "0");
}

/**
 * The tag {@link tensorboardLogger} gives a row, `/`-separated so that TensorBoard groups the
 * scalars by phase (its first part):
 *
 * - the phase, `train` or `eval`;
 * - the stream, unless it is named like the phase (`train/...` for training on the train
 *   stream, `eval/test/...`, `eval/train/...`);
 * - the metric name;
 * - the granularity, unless it is the phase's usual one (training per epoch, evaluation per
 *   experience or stream): `train/loss/minibatch`, `train/accuracy/experience`;
 * - in evaluation, the experience evaluated: `exp000` (training rows leave it out, so that a
 *   training curve runs on across experiences, the step being the global iteration);
 * - where present: `task000`, `top5` (a top-k accuracy's k), `class003`, `pred001` (a
 *   confusion-matrix cell's predicted class).
 *
 * @example
 * ```ts
 * import { tensorboardTag } from "./tensorboard.ts";
 * const row = { metric: "accuracy", phase: "eval", stream: "test", experience: 0, task: null,
 *   epoch: null, iteration: 10, trainExperience: 0, value: 0.9, at: "experience" } as const;
 * console.assert(tensorboardTag(row) === "eval/test/accuracy/exp000");
 * console.assert(tensorboardTag({ ...row, phase: "train", stream: "train", metric: "loss",
 *   epoch: 0, at: "epoch" }) === "train/loss");
 * ```
 */
export function tensorboardTag(row: MetricRow): string {
  const parts: string[] = [row.phase];
  if (row.stream !== row.phase) parts.push(row.stream);
  parts.push(row.metric);
  const at = granularityOf(row);
  const usual = row.phase === "train" ? "epoch" : row.experience !== null ? "experience" : "stream";
  if (at !== usual) parts.push(at);
  if (row.phase === "eval" && row.experience !== null) parts.push(`exp${pad3(row.experience)}`);
  if (row.task !== null) parts.push(`task${pad3(row.task)}`);
  if (row.k !== undefined) parts.push(`top${row.k}`);
  if (row.class !== undefined) parts.push(`class${row.class}`);
  if (row.predicted !== undefined) parts.push(`pred${row.predicted}`);
  return parts.join("/");
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** The host name for the file name, in the characters a file name keeps everywhere. */
function hostName(): string {
  let host = "localhost";
  try {
    host = Deno.hostname();
  } catch {
    // no --allow-sys: the name only tells files apart, the run id already does
  }
  return host.replace(/[^A-Za-z0-9._-]/g, "_") || "localhost";
}

/**
 * A logger writing each row as a TensorBoard scalar into a new event file of `dir`,
 * `events.out.tfevents.<seconds>.<host>.<run id>` (see {@link tensorboardTag} for the tags). The
 * step is the row's training iteration (0 for a row without one), the wall time the moment it is
 * written. Each hook's rows are appended in one write, framed as TFRecords with their checksums,
 * so an interrupted run leaves every complete record readable; the `file_version` record opens
 * the file at the first write. A file of that name already there is never written over: pass
 * another `run`.
 *
 * @example
 * ```ts ignore
 * const tb = tensorboardLogger({ dir: "runs/naive-seed0" });
 * const evaluator = evaluation({ metrics: [accuracy(), loss()], loggers: [tb] });
 * // ... train; then: tensorboard --logdir runs
 * ```
 */
export function tensorboardLogger(
  opts: TensorboardLoggerOptions,
): Logger & { readonly path: string; readonly run: RunInfo } {
  checkOptions("tensorboardLogger", opts, TENSORBOARD_OPTIONS);
  if (typeof opts?.dir !== "string" || opts.dir === "") {
    throw new TypeError(
      `tensorboardLogger needs a folder: pass { dir: "runs/my-run" }, got dir ${
        JSON.stringify(opts?.dir) ?? String(opts?.dir)
      }`,
    );
  }
  const run = checkRun(opts.run);
  const tagOf = opts.tag ?? tensorboardTag;
  const dir = opts.dir.replace(/\/+$/, "") || "/";
  const seconds = String(Math.floor(Date.now() / 1000)).padStart(10, "0");
  const path = `${dir}/events.out.tfevents.${seconds}.${hostName()}.${run.id}`;
  const taken = () =>
    new Error(
      `${path} already exists: pass another run (run: newRun()) or dir, so that each run ` +
        `writes a file of its own`,
    );
  if (exists(path)) throw taken();
  let started = false;

  function write(records: Uint8Array[]): void {
    if (!started) {
      const version = encodeEvent({
        wallTime: Date.now() / 1000,
        step: 0,
        fileVersion: "brain.Event:2",
      });
      records = [tfRecord(version), ...records];
    }
    const data = new Uint8Array(records.reduce((n, r) => n + r.length, 0));
    let at = 0;
    for (const r of records) {
      data.set(r, at);
      at += r.length;
    }
    Deno.mkdirSync(dir, { recursive: true });
    // createNew on the first write: a file that appeared since the logger was made (another
    // logger given the same run) is refused rather than mixed into.
    let f: Deno.FsFile;
    try {
      f = Deno.openSync(path, started ? { append: true } : { write: true, createNew: true });
    } catch (e) {
      throw e instanceof Deno.errors.AlreadyExists ? taken() : e;
    }
    try {
      let off = 0;
      while (off < data.length) off += f.writeSync(data.subarray(off));
      if (opts.fsync) f.syncSync();
    } finally {
      f.close();
    }
    started = true;
  }

  return {
    name: "tensorboardLogger",
    path,
    run,
    log(rows) {
      if (rows.length === 0) return;
      const wallTime = Date.now() / 1000;
      write(rows.map((r) => {
        const tag = tagOf(r);
        if (typeof tag !== "string" || tag === "") {
          throw new TypeError(
            `tensorboardLogger's tag function must return a non-empty string, got ${
              JSON.stringify(tag) ?? String(tag)
            } for the ${r.phase} ${r.metric} row: return e.g. tensorboardTag(row)`,
          );
        }
        return tfRecord(
          encodeEvent({ wallTime, step: r.iteration ?? 0, scalars: [{ tag, value: r.value }] }),
        );
      }));
    },
  };
}
