// Tests of the TensorBoard logger. The event files are read back by a reader written here from
// the formats' specifications (TFRecord framing with masked CRC-32C, the Event and Summary
// protobufs of TensorFlow's event.proto and summary.proto), sharing none of the writer's code:
// its own CRC table and a protobuf decoder by hand, so a mistake in the writer is not mirrored.
import assert from "node:assert/strict";
import { setBackend } from "../lib/backend.ts";
import {
  crc32c,
  maskedCrc32c,
  tensorboardLogger,
  tensorboardTag,
  tfRecord,
} from "../lib/loggers/tensorboard.ts";
import { newRun } from "../lib/loggers/runs.ts";
import { accuracy, forgetting, loss } from "../lib/metrics/mod.ts";
import type { MetricRow } from "../lib/data/rows.ts";
import { mlp } from "../lib/models/mlp.ts";
import { evaluation } from "../lib/plugins/evaluation.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { toyBenchmark } from "./_helpers.ts";

await setBackend("wasm");

// ---- the independent reader ----------------------------------------------------------------

/** CRC-32C, bit by bit from the reflected Castagnoli polynomial 0x82F63B78 (RFC 3720, B.4). */
const READER_TABLE = (() => {
  const t: number[] = [];
  for (let i = 0; i < 256; i++) {
    let r = i;
    for (let b = 0; b < 8; b++) r = (r & 1) !== 0 ? 0x82f63b78 ^ (r >>> 1) : r >>> 1;
    t.push(r >>> 0);
  }
  return t;
})();

function readerCrc(bytes: Uint8Array): number {
  let r = ~0 >>> 0;
  for (const b of bytes) r = (READER_TABLE[(r ^ b) & 255] ^ (r >>> 8)) >>> 0;
  return (~r) >>> 0;
}

/** TensorFlow's mask (tensorflow/core/lib/hash/crc32c.h): rotate right 15, add a constant. */
function readerMask(crc: number): number {
  const rotated = ((crc >>> 15) | ((crc << 17) >>> 0)) >>> 0;
  return (rotated + 0xa282ead8) % 2 ** 32;
}

/** The data of every TFRecord in `file`, each checksum checked; any mismatch throws. */
function readRecords(file: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const le32 = (at: number) =>
    (file[at] | (file[at + 1] << 8) | (file[at + 2] << 16) | (file[at + 3] << 24)) >>> 0;
  let at = 0;
  while (at < file.length) {
    if (at + 12 > file.length) throw new Error(`truncated record header at byte ${at}`);
    const length = le32(at) + le32(at + 4) * 2 ** 32;
    if (readerMask(readerCrc(file.subarray(at, at + 8))) !== le32(at + 8)) {
      throw new Error(`bad length checksum at byte ${at}`);
    }
    const start = at + 12;
    if (start + length + 4 > file.length) throw new Error(`truncated record at byte ${at}`);
    const data = file.subarray(start, start + length);
    if (readerMask(readerCrc(data)) !== le32(start + length)) {
      throw new Error(`bad data checksum at byte ${at}`);
    }
    out.push(data);
    at = start + length + 4;
  }
  return out;
}

/** The fields of a protobuf message: number → values (varints as bigint, the rest as bytes). */
function decodeFields(msg: Uint8Array): Map<number, (bigint | Uint8Array)[]> {
  const fields = new Map<number, (bigint | Uint8Array)[]>();
  let at = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (at >= msg.length) throw new Error("varint runs past the message");
      const b = msg[at++];
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
      shift += 7n;
    }
  };
  const take = (n: number): Uint8Array => {
    if (at + n > msg.length) throw new Error("field runs past the message");
    const bytes = msg.subarray(at, at + n);
    at += n;
    return bytes;
  };
  while (at < msg.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    let value: bigint | Uint8Array;
    if (wire === 0) value = varint();
    else if (wire === 1) value = take(8);
    else if (wire === 2) value = take(Number(varint()));
    else if (wire === 5) value = take(4);
    else throw new Error(`wire type ${wire} not expected in an Event`);
    const list = fields.get(field) ?? [];
    list.push(value);
    fields.set(field, list);
  }
  return fields;
}

interface ReadEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  values: { tag: string; value: number }[];
}

const last = <T>(xs: T[] | undefined): T | undefined => xs?.[xs.length - 1];
const bytesOf = (v: bigint | Uint8Array | undefined): Uint8Array => {
  if (v === undefined) return new Uint8Array(0);
  if (!(v instanceof Uint8Array)) throw new Error("expected a length-delimited field");
  return v;
};

/** Event: wall_time (1, double), step (2, int64), file_version (3), summary (5). */
function decodeEvent(data: Uint8Array): ReadEvent {
  const f = decodeFields(data);
  const wt = last(f.get(1));
  const wallTime = wt === undefined
    ? 0
    : new DataView(bytesOf(wt).buffer, bytesOf(wt).byteOffset, 8).getFloat64(0, true);
  const st = last(f.get(2));
  const step = st === undefined ? 0 : Number(BigInt.asIntN(64, st as bigint));
  const fv = last(f.get(3));
  const values: ReadEvent["values"] = [];
  for (const summary of f.get(5) ?? []) {
    // Summary: repeated Value value = 1; Value: tag (1, string), simple_value (2, float).
    for (const v of decodeFields(bytesOf(summary)).get(1) ?? []) {
      const vf = decodeFields(bytesOf(v));
      const raw = bytesOf(last(vf.get(2)));
      values.push({
        tag: new TextDecoder().decode(bytesOf(last(vf.get(1)))),
        value: raw.length === 4
          ? new DataView(raw.buffer, raw.byteOffset, 4).getFloat32(0, true)
          : NaN,
      });
    }
  }
  return {
    wallTime,
    step,
    ...(fv === undefined ? {} : { fileVersion: new TextDecoder().decode(bytesOf(fv)) }),
    values,
  };
}

function readEvents(path: string): ReadEvent[] {
  return readRecords(Deno.readFileSync(path)).map(decodeEvent);
}

// ---- tests ---------------------------------------------------------------------------------

const ascii = (s: string) => new TextEncoder().encode(s);

Deno.test("CRC-32C matches its known test vectors, in the writer and in the reader", () => {
  for (const crc of [crc32c, readerCrc]) {
    assert.equal(crc(ascii("123456789")), 0xe3069283);
    assert.equal(crc(new Uint8Array(32)), 0x8a9136aa);
    assert.equal(crc(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
    assert.equal(crc(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
    assert.equal(crc(new Uint8Array(0)), 0);
  }
  for (const s of ["", "a", "brain.Event:2", "123456789"]) {
    assert.equal(maskedCrc32c(ascii(s)), readerMask(readerCrc(ascii(s))));
  }
});

Deno.test("a TFRecord reads back, and a corrupted byte anywhere in it is detected", () => {
  const data = ascii("some record data");
  const rec = tfRecord(data);
  assert.equal(rec.length, 8 + 4 + data.length + 4);
  assert.deepEqual(readRecords(rec), [data]);
  for (let i = 0; i < rec.length; i++) {
    const bad = rec.slice();
    bad[i] ^= 0x10;
    assert.throws(() => readRecords(bad), /checksum|truncated/, `byte ${i} flipped`);
  }
  assert.throws(() => readRecords(rec.subarray(0, rec.length - 1)), /truncated/);
});

Deno.test("tensorboardTag follows the documented scheme", () => {
  const base: MetricRow = {
    metric: "accuracy",
    phase: "eval",
    stream: "test",
    experience: null,
    task: null,
    epoch: null,
    iteration: 4,
    trainExperience: 0,
    value: 0.5,
  };
  assert.equal(tensorboardTag({ ...base, at: "stream" }), "eval/test/accuracy");
  assert.equal(
    tensorboardTag({ ...base, experience: 0, at: "experience" }),
    "eval/test/accuracy/exp000",
  );
  assert.equal(
    tensorboardTag({ ...base, stream: "train", experience: 12 }),
    "eval/train/accuracy/exp012",
  );
  const train = { ...base, phase: "train", stream: "train", experience: 1, epoch: 0 } as const;
  assert.equal(tensorboardTag({ ...train, metric: "loss" }), "train/loss");
  assert.equal(
    tensorboardTag({ ...train, metric: "loss", at: "minibatch" }),
    "train/loss/minibatch",
  );
  assert.equal(tensorboardTag({ ...train, at: "experience" }), "train/accuracy/experience");
  assert.equal(
    tensorboardTag({ ...base, metric: "topKAccuracy", k: 5, task: 2, experience: 1 }),
    "eval/test/topKAccuracy/exp001/task002/top5",
  );
  assert.equal(
    tensorboardTag({ ...base, metric: "confusionMatrix", class: 3, predicted: 1 }),
    "eval/test/confusionMatrix/class3/pred1",
  );
});

/** Trains two experiences and evaluates after each, with the given logger. */
async function trainWith(logger: ReturnType<typeof tensorboardLogger>) {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const evaluator = evaluation({
    metrics: [accuracy({ at: ["epoch", "experience", "stream"] }), loss(), forgetting()],
    loggers: [logger],
  });
  const s = naive({ model, batchSize: 5, epochs: 2, seed: 0, evaluator });
  for (const exp of bench.train) {
    await s.train(exp);
    await s.eval(bench.test);
  }
  s.dispose();
  model.dispose();
  return evaluator;
}

Deno.test("a training run's event file reads back: checksums, file_version, every scalar", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const before = Date.now() / 1000;
    const logger = tensorboardLogger({ dir: `${dir}/run` });
    const name = logger.path.slice(logger.path.lastIndexOf("/") + 1);
    assert.match(name, /^events\.out\.tfevents\.\d{10}\.[A-Za-z0-9._-]+\.[a-z0-9]{8}$/);
    assert.ok(name.endsWith(`.${logger.run.id}`));
    const evaluator = await trainWith(logger);
    const after = Date.now() / 1000;

    const events = readEvents(logger.path);
    assert.equal(events[0].fileVersion, "brain.Event:2");
    assert.deepEqual(events[0].values, []);
    const scalars = events.slice(1);
    assert.ok(scalars.every((e) => e.fileVersion === undefined && e.values.length === 1));
    const rows = evaluator.rows;
    assert.ok(rows.length > 20, `a real run logs many rows, got ${rows.length}`);
    assert.equal(scalars.length, rows.length, "one event per row");
    scalars.forEach((e, i) => {
      const r = rows[i];
      assert.equal(e.values[0].tag, tensorboardTag(r));
      assert.equal(e.step, r.iteration);
      assert.ok(Object.is(e.values[0].value, Math.fround(r.value)), `${r.metric}: ${r.value}`);
      assert.ok(e.wallTime >= before - 1 && e.wallTime <= after + 1, `wall time ${e.wallTime}`);
    });
    // Steps are training iterations: 2 experiences of 20 samples, batch 5, 2 epochs each.
    const steps = scalars.map((e) => e.step);
    assert.deepEqual(steps, [...steps].sort((a, b) => a - b), "steps never go back");
    assert.equal(Math.max(...steps), 16);
    const tags = new Set(scalars.map((e) => e.values[0].tag));
    for (
      const t of [
        "train/accuracy",
        "train/loss",
        "eval/test/accuracy",
        "eval/test/accuracy/exp000",
        "eval/test/accuracy/exp001",
        "eval/test/loss/exp001",
        "eval/test/forgetting/exp000",
      ]
    ) assert.ok(tags.has(t), `${t} in ${[...tags].join(", ")}`);
    const acc = scalars.filter((e) => e.values[0].tag === "eval/test/accuracy/exp000");
    assert.deepEqual(acc.map((e) => e.step), [8, 16], "after each experience");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("each write leaves a complete file; a corrupted byte in a real file is detected", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const logger = tensorboardLogger({ dir, fsync: true });
    const row: MetricRow = {
      metric: "loss",
      phase: "train",
      stream: "train",
      experience: 0,
      task: null,
      epoch: 0,
      iteration: 3,
      trainExperience: 0,
      value: NaN,
    };
    await logger.log!([row]);
    assert.equal(readEvents(logger.path).length, 2, "file_version and the row, already on disk");
    await logger.log!([{ ...row, iteration: null, value: 0.25 }, {
      ...row,
      iteration: 7,
      value: 1,
    }]);
    const events = readEvents(logger.path);
    assert.deepEqual(events.map((e) => e.step), [0, 3, 0, 7]);
    assert.ok(Number.isNaN(events[1].values[0].value));
    assert.deepEqual(events.slice(2).map((e) => e.values[0].value), [0.25, 1]);

    const file = Deno.readFileSync(logger.path);
    for (const i of [3, 9, 20, file.length - 30, file.length - 2]) {
      const bad = file.slice();
      bad[i] ^= 0x01;
      assert.throws(() => readRecords(bad), /checksum|truncated/, `byte ${i} flipped`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tensorboardLogger: a file per run, tags of one's own, options checked", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = newRun();
    const a = tensorboardLogger({ dir, run, tag: (r) => `mine/${r.metric}` });
    assert.equal(a.run.id, run.id);
    const b = tensorboardLogger({ dir });
    assert.notEqual(a.path, b.path);
    const row: MetricRow = {
      metric: "accuracy",
      phase: "eval",
      stream: "test",
      experience: null,
      task: null,
      epoch: null,
      iteration: 1,
      trainExperience: 0,
      value: 0.5,
    };
    await a.log!([row]);
    assert.equal(readEvents(a.path)[1].values[0].tag, "mine/accuracy");
    // The same run again in the same folder would mix two runs in one file: refused.
    assert.throws(() => tensorboardLogger({ dir, run }), /already exists: pass another run/);
    assert.throws(() => tensorboardLogger({ dir, fsnyc: true } as never), /fsync/);
    assert.throws(() => tensorboardLogger({} as never), /needs a folder/);
    assert.throws(() => tensorboardLogger({ dir, run: { id: "a b" } } as never), /run\.id/);
    const bad = tensorboardLogger({ dir, tag: () => "" });
    assert.throws(() => bad.log!([row]), /non-empty string/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The Python that may have TensorBoard; PERENNIAL_PYTHON names another (a venv's). */
const PYTHON = Deno.env.get("PERENNIAL_PYTHON") ?? "/usr/bin/python3";

/** Why Python's TensorBoard reader cannot be used here, or null when it can. */
function pythonTensorboardMissing(): string | null {
  try {
    const out = new Deno.Command(PYTHON, {
      args: ["-c", "import tensorboard.backend.event_processing.event_accumulator"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return out.success ? null : `tensorboard is not importable by ${PYTHON}`;
  } catch {
    return `${PYTHON} cannot be run`;
  }
}

const noPython = pythonTensorboardMissing();

Deno.test({
  name: "TensorBoard's own EventAccumulator reads the scalars" +
    (noPython ? ` (skipped: ${noPython})` : ""),
  ignore: noPython !== null,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const logger = tensorboardLogger({ dir });
      const evaluator = await trainWith(logger);
      const script = `
import json, math, sys
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0})
acc.Reload()
nan = lambda v: None if math.isnan(v) else v
print(json.dumps({t: [[s.step, nan(s.value)] for s in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
`;
      const out = new Deno.Command(PYTHON, { args: ["-c", script, dir] }).outputSync();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const read = JSON.parse(new TextDecoder().decode(out.stdout)) as Record<
        string,
        [number, number | null][]
      >;
      const expected: Record<string, [number, number | null][]> = {};
      for (const r of evaluator.rows) {
        const value = Number.isNaN(r.value) ? null : Math.fround(r.value);
        (expected[tensorboardTag(r)] ??= []).push([r.iteration ?? 0, value]);
      }
      assert.deepEqual(read, expected);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
