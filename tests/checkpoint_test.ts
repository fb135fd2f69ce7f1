// Checkpoint files and resumable runs (lib/checkpoint/): a saved state loads back identical
// (weights, optimizer slots, rows, replay's samples, EWC's tensors), the bytes follow the
// safetensors layout, damaged files are clear errors, writes are atomic under kill -9, a run
// killed with kill -9 and started again ends bit-identical to one never interrupted, and PyTorch
// reading the file with its own reader predicts what we predict.
import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { syntheticImages } from "../datasets/mod.ts";
import { classIncremental, splitMNIST, subsample } from "../lib/benchmarks/mod.ts";
import { toArrayDatasets } from "../lib/benchmarks/classic.ts";
import {
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
} from "../lib/checkpoint/safetensors.ts";
import {
  ARRAY_TENSOR_MIN,
  decodeCheckpoint,
  encodeCheckpoint,
  loadCheckpoint,
  readCheckpoint,
  saveCheckpoint,
} from "../lib/checkpoint/files.ts";
import {
  checkpointFileName,
  latestCheckpoint,
  resumable,
  type SavedCheckpoint,
} from "../lib/checkpoint/resumable.ts";
import { mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { ewc } from "../lib/plugins/ewc.ts";
import { replayPlugin } from "../lib/plugins/replay.ts";
import { naive } from "../lib/strategy/strategies.ts";
import type { Strategy, StrategyState } from "../lib/strategy/template.ts";
import { SHARED_DATA, toyBenchmark } from "./_helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });

/** EWC with a replay plugin: plugin states with tensors (EWC) and samples (replay). */
function build(modelSeed = 5): Strategy {
  return ewc({
    model: mlp({ input: 64, hidden: [12], outputs: 6, seed: modelSeed }),
    lambda: 10,
    optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    plugins: [replayPlugin({ memSize: 30, batchSizeMem: 8 })],
    batchSize: 16,
    epochs: 2,
    seed: 3,
  });
}

function free(s: Strategy): void {
  s.dispose();
  s.model.dispose();
}

function weights(s: Strategy): number[][] {
  return [...s.model.namedParameters().values()].map((v) => Array.from(v.dataSync()));
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "perennial-checkpoint-" });
}

function u64(bytes: Uint8Array): number {
  return Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
}

/** The header of a safetensors file as JSON, and its data part. */
function split(bytes: Uint8Array): { header: Record<string, unknown>; data: Uint8Array } {
  const n = u64(bytes);
  return {
    header: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))),
    data: bytes.subarray(8 + n),
  };
}

/** A file made of `header` (re-encoded as is) and `data`. */
function join8(header: unknown, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

Deno.test("a checkpoint file loads back the very state saved, and restores the run exactly", async () => {
  const before = tf.memory().numTensors;
  const dir = await tempDir();
  const a = build();
  for (const exp of bench.train.slice(0, 2)) {
    await a.train(exp);
    await a.eval(bench.test);
  }
  const state = a.checkpoint();
  const path = join(dir, "a.safetensors");
  const bytes = await saveCheckpoint(a, path);
  const file = await readCheckpoint(path);
  assert.equal(file.bytes, bytes);
  // Identical down to -0 and every float: weights, slots, rows, EWC's and replay's states.
  assert.deepStrictEqual(file.state, state);
  assert.deepStrictEqual(await loadCheckpoint(path), state);
  const names = file.tensors.map((t) => t.name);
  for (const n of ["features.0.weight", "features.0.bias", "classifier.weight"]) {
    assert.ok(names.includes(n), `the model's ${n} under its own name: ${names}`);
  }
  assert.ok(names.includes("optimizer/slots/features.0.weight/momentum"), names.join());
  assert.ok(names.includes("plugins/0:EWCPlugin/importance/features.0.weight"), names.join());
  assert.ok(names.includes("plugins/1:ReplayPlugin/storagePolicy/data/x"), names.join());
  const ewcState = state.plugins["0:EWCPlugin"] as { importance: object };
  assert.ok(Object.keys(ewcState.importance).length > 0, "EWC holds importances by now");

  // Restored into a strategy with other initial weights, it goes on as the original.
  const b = build(77);
  await b.restore(file.state);
  assert.deepStrictEqual(b.checkpoint(), state);
  await a.train(bench.train[2]);
  await b.train(bench.train[2]);
  assert.deepStrictEqual(weights(b), weights(a));
  assert.equal(JSON.stringify(b.rows), JSON.stringify(a.rows));
  free(a);
  free(b);
  assert.equal(tf.memory().numTensors, before, "no tensor left behind");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("plain data of every kind survives: long float32 arrays, doubles, markers, -0 and NaN", async () => {
  const long = Array.from({ length: ARRAY_TENSOR_MIN }, (_, i) => Math.fround(i / 7 - 50));
  long[3] = -0;
  long[4] = NaN;
  const doubles = Array.from({ length: ARRAY_TENSOR_MIN + 5 }, (_, i) => i / 7);
  const state = {
    version: 1,
    name: "plain",
    model: { tensors: { w: { shape: [2, 0], values: [] }, v: { shape: [], values: [1.5] } } },
    optimizer: { kind: "SGD", config: {}, step: 0, slots: {} },
    rng: [1, 2, 3, 4],
    clock: {
      trainExperiences: 0,
      epoch: 0,
      epochIteration: 0,
      trainIterations: 0,
      evalIterations: 0,
    },
    rows: [],
    plugins: {
      p: {
        long,
        doubles, // not exact in float32: kept in the JSON, exactly
        shaped: { shape: [2], values: [0.1, 0.2] }, // a TensorState of doubles: kept as it is
        lookalike: { $tensor: "w", $array: 3 },
        escaped: { $object: { $tensor: "x" } },
        nested: [{ a: [1, 2, 3] }, null, "s", true],
      },
    },
    extra: {},
  } as unknown as StrategyState;
  const { header, data } = await encodeCheckpoint(state);
  const bytes = new Uint8Array([...header, ...data]);
  const file = await decodeCheckpoint(bytes, "plain.safetensors");
  assert.deepStrictEqual(file.state, state);
  assert.deepStrictEqual(
    file.tensors.map((t) => `${t.name}:[${t.shape}]`),
    ["w:[2,0]", "v:[]", `plugins/p/long:[${ARRAY_TENSOR_MIN}]`],
  );
  await assert.rejects(
    () => encodeCheckpoint({ ...state, extra: { bad: new Float32Array(2) } }),
    /The state holds a Float32Array at "extra\/bad": checkpoints hold plain data/,
  );
  await assert.rejects(
    () => encodeCheckpoint(state, { metadata: { "perennial.state": "x" } }),
    /Metadata name "perennial.state" is the format's own/,
  );
});

Deno.test("the bytes follow the safetensors layout: header length, F32 entries, contiguous offsets", async () => {
  const s = build();
  await s.train(bench.train[0]);
  const { header: head, data: body } = await encodeCheckpoint(s, { metadata: { note: "hi" } });
  const bytes = new Uint8Array([...head, ...body]);
  const n = u64(bytes);
  assert.equal(head.length, 8 + n);
  assert.equal((8 + n) % 8, 0, "data aligned on 8 bytes");
  assert.equal(bytes[8], "{".charCodeAt(0));
  const { header, data } = split(bytes);
  const meta = header.__metadata__ as Record<string, string>;
  assert.equal(meta["perennial.format"], "perennial-checkpoint/1");
  assert.equal(meta.note, "hi");
  assert.match(meta["perennial.sha256"], /^[0-9a-f]{64}$/);
  const state = JSON.parse(meta["perennial.state"]);
  assert.deepEqual(state.model.tensors["features.0.weight"], { $tensor: "features.0.weight" });
  let end = 0;
  const entries = Object.entries(header).filter(([k]) => k !== "__metadata__") as [
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] },
  ][];
  for (const [name, e] of entries) {
    assert.equal(e.dtype, "F32", name);
    assert.equal(e.data_offsets[0], end, `${name} starts where the previous one ends`);
    end = e.data_offsets[1];
    assert.equal(end - e.data_offsets[0], 4 * e.shape.reduce((a, b) => a * b, 1), name);
  }
  assert.equal(end, data.length, "the tensors cover the data exactly");
  // The model's weight, as raw little-endian float32 at its offsets.
  const [, w] = entries.find(([k]) => k === "features.0.weight")!;
  const view = new DataView(data.buffer, data.byteOffset + w.data_offsets[0]);
  const want = s.model.namedParameters().get("features.0.weight")!;
  assert.deepEqual(w.shape, want.shape);
  const got = Array.from({ length: want.size }, (_, i) => view.getFloat32(4 * i, true));
  assert.deepEqual(got, Array.from(want.dataSync()));
  // Any safetensors reader reads it; ours reads what it wrote.
  const st = decodeSafetensors(bytes);
  assert.equal(st.tensors.length, entries.length);
  free(s);
});

Deno.test("a 784-400-400-10 MLP's checkpoint is the size of its float32 weights and slots", async () => {
  const data = toArrayDatasets({
    name: "synthetic",
    classes: 10,
    train: syntheticImages({ n: 64, classes: 10, seed: 1 }),
    test: syntheticImages({ n: 20, classes: 10, seed: 2 }),
  }, { normalize: false });
  const b = classIncremental({ ...data, experiences: 1, fixedClassOrder: [...Array(10).keys()] });
  const model = mlp({ hidden: [400, 400], seed: 0 });
  const s = naive({ model, optimizer: sgd({ lr: 0.01, momentum: 0.9 }), batchSize: 32, seed: 0 });
  await s.train(b.train[0]);
  await s.eval(b.test);
  const dir = await tempDir();
  const bytes = await saveCheckpoint(s, join(dir, "mlp.safetensors"));
  const floats = model.countParameters();
  assert.equal(floats, 784 * 400 + 400 + 400 * 400 + 400 + 400 * 10 + 10);
  const raw = 2 * 4 * floats; // weights and momentum
  assert.ok(bytes > raw && bytes < raw + 16_384, `${bytes} bytes for ${raw} bytes of floats`);
  const json = JSON.stringify(s.checkpoint()).length;
  assert.ok(json > 2 * bytes, `JSON would take ${json} bytes`);
  free(s);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a truncated or damaged file is a clear CheckpointError, never a partial state", async () => {
  const s = build();
  await s.train(bench.train[0]);
  const { header: head, data: body } = await encodeCheckpoint(s);
  free(s);
  const good = new Uint8Array([...head, ...body]);
  const n = u64(good);
  const { header, data } = split(good);
  const first = Object.keys(header).find((k) => k !== "__metadata__")!;
  const entry = header[first] as { dtype: string; shape: number[]; data_offsets: number[] };
  const edit = (f: (h: Record<string, unknown>) => void): Uint8Array => {
    const h = structuredClone(header);
    f(h);
    return join8(h, data);
  };
  const flipped = good.slice();
  flipped[8 + n + 100] ^= 0x40;
  const lying = good.slice();
  new DataView(lying.buffer).setBigUint64(0, BigInt(good.length), true);
  const cases: [string, Uint8Array, string, RegExp][] = [
    ["empty", new Uint8Array(0), "truncated", /0 bytes long, too short for the 8-byte header/],
    ["5 bytes", good.subarray(0, 5), "truncated", /5 bytes long/],
    ["cut in the header", good.subarray(0, 8 + n / 2), "truncated", /header length \d+ runs past/],
    ["header length past the end", lying, "truncated", /runs past the end of the file/],
    ["cut in the data", good.subarray(0, good.length - 10), "truncated", /past the end of the/],
    [
      "not JSON",
      (() => {
        const b = good.slice();
        b[8] = "x".charCodeAt(0);
        return b;
      })(),
      "header",
      /header is not valid JSON/,
    ],
    ["a JSON array", join8([1], data), "header", /the header is an array/],
    ["metadata not strings", edit((h) => (h.__metadata__ = { a: 1 })), "header", /must be strings/],
    [
      "wrong dtype",
      edit((h) => ((h[first] as typeof entry).dtype = "F16")),
      "tensor",
      new RegExp(`tensor "${first}" has dtype "F16"; this reader takes "F32" only`),
    ],
    [
      "size disagrees with the shape",
      edit((
        h,
      ) => ((h[first] as typeof entry).shape = [entry.shape[0] - 1, ...entry.shape.slice(1)])),
      "tensor",
      new RegExp(`tensor "${first}" of shape \\[.*\\] needs \\d+ bytes of float32 data`),
    ],
    [
      "bad shape",
      edit((h) => ((h[first] as typeof entry).shape = [-1])),
      "tensor",
      /has shape \[-1\]: expected an array of non-negative integers/,
    ],
    [
      "offsets out of range",
      edit((h) => ((h[first] as typeof entry).data_offsets = [data.length, data.length + 4])),
      "truncated",
      /past the end of the \d+ bytes of data/,
    ],
    [
      "offsets reversed",
      edit((h) => ((h[first] as typeof entry).data_offsets = [8, 4])),
      "tensor",
      /expected \[begin, end\] with 0 ≤ begin ≤ end/,
    ],
    [
      "overlapping tensors",
      edit((h) => (h.extra = { dtype: "F32", shape: [1], data_offsets: [0, 4] })),
      "tensor",
      /overlaps tensor/,
    ],
    [
      "a gap in the data",
      join8(header, new Uint8Array([...data, 0, 0, 0, 0])),
      "tensor",
      /the tensors cover \d+ bytes of data but the file holds \d+/,
    ],
    ["a flipped data byte", flipped, "checksum", /does not match its SHA-256 checksum/],
    [
      "a changed state",
      edit((h) => {
        const m = h.__metadata__ as Record<string, string>;
        m["perennial.state"] = m["perennial.state"].replace('"version":1', '"version":2');
      }),
      "checksum",
      /does not match its SHA-256 checksum/,
    ],
    [
      "another format",
      edit((h) => ((h.__metadata__ as Record<string, string>)["perennial.format"] = "x/9")),
      "format",
      /is in format "x\/9"; this library reads "perennial-checkpoint\/1"/,
    ],
    [
      "a plain safetensors file",
      (() => {
        const { header, data } = encodeSafetensors([
          { name: "w", shape: [2], data: new Float32Array([1, 2]) },
        ]);
        return new Uint8Array([...header, ...data]);
      })(),
      "format",
      /is a safetensors file but not a perennial checkpoint/,
    ],
  ];
  for (const [what, bytes, code, message] of cases) {
    await assert.rejects(
      () => decodeCheckpoint(bytes, "bad.safetensors"),
      (e: unknown) => {
        assert.ok(e instanceof CheckpointError, `${what}: ${e}`);
        assert.equal(e.code, code, `${what}: ${e.message}`);
        assert.match(e.message, message, what);
        assert.match(e.message, /^bad\.safetensors/, `${what} names the file`);
        return true;
      },
    );
  }
  // Cut anywhere, the file is refused.
  for (let cut = 0; cut < good.length; cut += 997) {
    await assert.rejects(() => decodeCheckpoint(good.subarray(0, cut)), CheckpointError);
  }
  await assert.rejects(() => loadCheckpoint("/nonexistent/x.safetensors"), /No checkpoint file at/);
});

/** Runs the toy loop through a resumable run; returns what a caller sees. */
async function loop(
  dir: string,
  opts: { everyEpochs?: number; keep?: number; crashAfter?: number; modelSeed?: number } = {},
) {
  const s = build(opts.modelSeed);
  let saves = 0;
  const seen: SavedCheckpoint[] = [];
  const run = await resumable(s, {
    dir,
    everyEpochs: opts.everyEpochs,
    keep: opts.keep,
    onCheckpoint: (c) => {
      seen.push(c);
      // A crash right after a checkpoint reached the disk.
      if (++saves === opts.crashAfter) throw new Error("crash");
    },
  });
  const results: unknown[] = [];
  try {
    for (const exp of bench.train) {
      results.push(await run.train(exp));
      results.push(await run.eval(bench.test));
    }
  } catch (e) {
    if ((e as Error).message !== "crash") throw e;
    free(s);
    return { crashed: true as const, seen };
  }
  const out = {
    crashed: false as const,
    run,
    seen,
    results,
    weights: weights(s),
    rows: JSON.stringify(s.rows),
    matrix: s.accuracyMatrix(),
  };
  free(s);
  return out;
}

Deno.test("a resumable run crashed after any of its checkpoints ends as the run never interrupted", async () => {
  const base = await tempDir();
  const full = await loop(join(base, "full"), { everyEpochs: 1 });
  assert.ok(!full.crashed);
  // 3 experiences of 2 epochs: after epoch 1 (inside the call), after the call, after the eval.
  assert.deepEqual(
    full.seen.map((c) => `${c.call}${c.point[0]}`),
    ["0e", "0t", "1e", "2e", "2t", "3e", "4e", "4t", "5e"],
  );
  const last = full.seen.at(-1)!;
  assert.equal(Deno.statSync(last.path).size, last.bytes);
  assert.equal([...Deno.readDirSync(join(base, "full"))].length, 2, "keep: 2 files");
  for (let k = 1; k < full.seen.length; k++) {
    const dir = join(base, `crash-${k}`);
    const crashed = await loop(dir, { everyEpochs: 1, crashAfter: k });
    assert.ok(crashed.crashed);
    const again = await loop(dir, { everyEpochs: 1, modelSeed: 99 });
    assert.ok(!again.crashed);
    const last: SavedCheckpoint = full.seen[k - 1];
    assert.deepEqual(again.run.resumed && { ...again.run.resumed, path: "" }, {
      path: "",
      callsDone: last.point === "epochs" ? last.call : last.call + 1,
      midCall: last.point === "epochs",
    });
    assert.deepEqual(again.weights, full.weights, `weights after a crash at checkpoint ${k}`);
    assert.equal(again.rows, full.rows, `rows after a crash at checkpoint ${k}`);
    assert.deepEqual(again.matrix, full.matrix);
    // Skipped calls return what the calls returned, timings aside.
    const strip = (r: unknown) =>
      JSON.parse(JSON.stringify(r, (key, v) => (key === "seconds" || key === "skipped" ||
          key === "resumed" || (key === "epochs" && Array.isArray(v)) || key === "samples"
        ? undefined
        : v)));
    assert.deepEqual(again.results.map(strip), full.results.map(strip));
    const flags = again.results.map((r) => {
      const x = r as { skipped: boolean; resumed?: boolean };
      return x.skipped ? "s" : x.resumed ? "r" : "-";
    }).join("");
    const done = again.run.resumed!.callsDone;
    assert.equal(flags.slice(0, done), "s".repeat(done), flags);
    assert.equal(flags[done], again.run.resumed!.midCall ? "r" : "-", flags);
  }
  await Deno.remove(base, { recursive: true });
});

Deno.test("a resumable run skips damaged newer files and refuses another sequence of calls", async () => {
  const dir = await tempDir();
  const full = await loop(dir, { keep: 3 });
  assert.ok(!full.crashed);
  const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  assert.deepEqual(files, [4, 5, 6].map(checkpointFileName));
  // A crash of a writer that is not atomic: a truncated newer file, and a stray temp file.
  const good = await Deno.readFile(join(dir, files[2]));
  await Deno.writeFile(join(dir, checkpointFileName(7)), good.subarray(0, good.length / 2));
  await Deno.writeFile(join(dir, `.${checkpointFileName(8)}.0123456789ab.tmp`), good);
  await Deno.writeFile(join(dir, checkpointFileName(9)), new Uint8Array(3));
  const { latest, rejected } = await latestCheckpoint(dir);
  assert.equal(latest?.path, join(dir, checkpointFileName(6)));
  assert.deepEqual(
    rejected.map((r) => r.path),
    [9, 7].map((k) => join(dir, checkpointFileName(k))),
  );
  assert.match(rejected[0].reason, /3 bytes long/);
  assert.match(rejected[1].reason, /truncated/);
  const s = build();
  const run = await resumable(s, { dir });
  assert.equal(run.resumed?.path, join(dir, checkpointFileName(6)));
  assert.equal(run.rejected.length, 2);
  assert.ok(!files.includes(`.${checkpointFileName(8)}.0123456789ab.tmp`));
  assert.ok(
    ![...Deno.readDirSync(dir)].some((e) => e.name.endsWith(".tmp")),
    "the stray temp file is removed",
  );
  await assert.rejects(
    () => run.eval(bench.test),
    /Call 0 of this run is eval\(experiences 0, 1, 2 of "test"\), but the run checkpointed in .* made train\(experience 0 of "train"\) as call 0: run the same sequence of calls/,
  );
  const t = await run.train(bench.train[0]);
  assert.ok(t.skipped);
  assert.deepEqual(t.rows, s.rows.slice(0, t.rows.length));
  await assert.rejects(
    () => run.train(bench.train[2]),
    /Call 1 of this run is train\(experience 2 of "train"\), but .* made eval/,
  );
  free(s);
  await assert.rejects(
    () => resumable(build(), { dir, keep: 0 }),
    /keep must be an integer ≥ 1, got 0/,
  );
  await Deno.remove(dir, { recursive: true });
});

const RUN_FLAGS = ["--allow-read", "--allow-write", "--allow-env", "--allow-ffi"];

/** Starts a fixture script; `onLine` sees each line of its stdout and may kill it. */
async function child(
  script: string,
  args: string[],
  onLine?: (line: string, kill: () => void) => void,
): Promise<{ code: number; signal: string | null; lines: string[]; stderr: string }> {
  const p = new Deno.Command(Deno.execPath(), {
    args: ["run", ...RUN_FLAGS, join(ROOT, "tests/fixtures", script), ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(p.stderr).text();
  const lines: string[] = [];
  let killed = false;
  const kill = () => {
    if (!killed) p.kill("SIGKILL");
    killed = true;
  };
  let rest = "";
  for await (const chunk of p.stdout.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    const parts = rest.split("\n");
    rest = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      onLine?.(line, kill);
    }
  }
  const status = await p.status;
  return { code: status.code, signal: status.signal, lines, stderr: await stderr };
}

Deno.test("kill -9 during checkpoint writes leaves old or new files, never a broken one picked", async () => {
  const dir = await tempDir();
  let hitWrite = false;
  for (let attempt = 0; attempt < 8 && !hitWrite; attempt++) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(dir);
    let wrote = 0;
    // Once two rounds are done, the kill goes as soon as a temp file shows (a write is under
    // way), after a random few milliseconds so that it lands at various points of the write.
    const watch = async (kill: () => void) => {
      const lag = Math.floor(Math.random() * 8);
      for (let polls = 0; polls < 20_000; polls++) {
        if ([...Deno.readDirSync(dir)].some((e) => e.name.endsWith(".tmp"))) break;
        await new Promise((r) => setTimeout(r, 0));
      }
      await new Promise((r) => setTimeout(r, lag));
      kill();
    };
    const out = await child("checkpoint_writer.ts", [dir], (line, kill) => {
      const m = /^wrote (\d+)$/.exec(line);
      if (m) wrote = Number(m[1]);
      if (wrote === 2 && line === "wrote 2") watch(kill);
    });
    assert.equal(out.signal, "SIGKILL", out.stderr);
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    hitWrite = names.some((n) => n.endsWith(".tmp"));
    // Every file the writer left: a complete checkpoint, or one the reader refuses.
    let newest = 0;
    for (const name of names) {
      const path = join(dir, name);
      if (name.endsWith(".tmp")) {
        try {
          const f = await readCheckpoint(path);
          assert.ok(f.state.extra.iteration as number > wrote, "a complete temp file: not renamed");
        } catch (e) {
          assert.ok(e instanceof CheckpointError, `${name}: ${e}`);
        }
        continue;
      }
      const f = await readCheckpoint(path); // a renamed file is always whole
      const i = f.state.extra.iteration as number;
      assert.ok(i >= wrote - 2 && i <= wrote + 1, `${name} holds round ${i} (printed ${wrote})`);
      if (name !== "latest.safetensors") newest = Math.max(newest, i);
    }
    assert.ok(newest >= wrote, `round ${wrote} was printed, so its file is on disk`);
    const { latest } = await latestCheckpoint(dir);
    assert.equal(latest?.path, join(dir, checkpointFileName(newest)));
    assert.equal(latest?.file.state.extra.iteration, newest);
    const lat = await loadCheckpoint(join(dir, "latest.safetensors"));
    assert.ok((lat.extra.iteration as number) >= wrote);
  }
  assert.ok(hitWrite, "at least one kill landed inside a write (a temp file was left)");
  await Deno.remove(dir, { recursive: true });
});

Deno.test({
  name: "a run killed with kill -9 and started again ends bit-identical to one never interrupted" +
    (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const base = await tempDir();
    const result = (lines: string[]) => {
      const line = lines.find((l) => l.startsWith("RESULT "));
      assert.ok(line, `no RESULT line in:\n${lines.join("\n")}`);
      return JSON.parse(line.slice(7));
    };
    const [full, killed] = await Promise.all([
      child("resumable_run.ts", [join(base, "full"), SHARED_DATA!]),
      // Killed inside the second experience, just after its first epoch's checkpoint.
      child("resumable_run.ts", [join(base, "killed"), SHARED_DATA!], (line, kill) => {
        if (line === "checkpoint call=2 point=epochs experience=1 epochs=1") kill();
      }),
    ]);
    assert.equal(full.code, 0, full.stderr);
    assert.equal(full.lines[0], "fresh");
    assert.equal(killed.signal, "SIGKILL", killed.stderr);
    assert.ok(!killed.lines.some((l) => l.startsWith("RESULT")));
    const again = await child("resumable_run.ts", [join(base, "killed"), SHARED_DATA!]);
    assert.equal(again.code, 0, again.stderr);
    const m = /^resumed calls=(\d+) midCall=(true|false) rejected=0$/.exec(again.lines[0]);
    assert.ok(m, again.lines[0]);
    assert.ok(Number(m[1]) >= 2, `resumed after the first experience and its eval: ${m[0]}`);
    if (m[2] === "true") {
      assert.ok(again.lines.some((l) => /^train \d skipped=false resumed=true$/.test(l)));
    }
    assert.ok(
      again.lines.includes("train 0 skipped=true resumed=false") &&
        again.lines.includes(
          "eval 0 skipped=true accuracy=" + /accuracy=(.*)/.exec(
            full.lines.find((l) => l.startsWith("eval 0"))!,
          )![1],
        ),
      again.lines.join("\n"),
    );
    const want = result(full.lines), got = result(again.lines);
    assert.deepEqual(got.matrix, want.matrix);
    assert.equal(got.weights, want.weights, "final weights bit-identical");
    assert.equal(got.rows, want.rows, "every metric row identical");
    assert.ok(want.matrix[2][2] > 0.8, `the run learns: ${JSON.stringify(want.matrix)}`);
    await Deno.remove(base, { recursive: true });
  },
});

const PYTHON = "/usr/bin/python3";
const torchMissing: string | undefined = (() => {
  try {
    const out = new Deno.Command(PYTHON, { args: ["-c", "import torch, numpy"], stderr: "piped" })
      .outputSync();
    return out.success ? undefined : `${PYTHON} lacks torch or numpy`;
  } catch {
    return `${PYTHON} is absent`;
  }
})();

Deno.test({
  name: "PyTorch reading the checkpoint with its own safetensors reader predicts as we do" +
    (torchMissing ? ` (skipped: ${torchMissing})` : ""),
  ignore: torchMissing !== undefined,
  fn: async () => {
    const dir = await tempDir();
    // Trained on real MNIST when it is there, else on synthetic digits of the same shape.
    const data = SHARED_DATA
      ? subsample(await splitMNIST({ experiences: 1, seed: 0, dataDir: SHARED_DATA }), {
        trainPerExperience: 2000,
        testPerExperience: 300,
        seed: 0,
      })
      : classIncremental({
        ...toArrayDatasets({
          name: "synthetic",
          classes: 10,
          train: syntheticImages({ n: 500, classes: 10, seed: 1 }),
          test: syntheticImages({ n: 300, classes: 10, seed: 2 }),
        }),
        experiences: 1,
      });
    const model = mlp({ hidden: [400, 400], seed: 0 });
    const s = naive({ model, optimizer: sgd({ lr: 0.01, momentum: 0.9 }), batchSize: 64, seed: 0 });
    await s.train(data.train[0]);
    const path = join(dir, "mlp.safetensors");
    await saveCheckpoint(s, path);
    // The inputs, as the model sees them, in a safetensors file of their own.
    const test = data.test[0].dataset;
    const n = Math.min(test.length, 300);
    const batch = test.batch(Int32Array.from({ length: n }, (_, i) => i));
    const xs = batch.x;
    model.eval();
    const ours = tf.tidy(() => model.forward(tf.tensor2d(xs, [n, 784])).arraySync() as number[][]);
    const inputs = encodeSafetensors([{ name: "x", shape: [n, 784], data: xs }]);
    await Deno.writeFile(
      join(dir, "x.safetensors"),
      new Uint8Array([...inputs.header, ...inputs.data]),
    );
    const out = await new Deno.Command(PYTHON, {
      args: [
        join(ROOT, "tests/fixtures/torch_load_safetensors.py"),
        path,
        join(dir, "x.safetensors"),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const torch = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      layers: string[];
      logits: number[][];
      argmax: number[];
    };
    assert.equal(torch.layers.length, 5, torch.layers.join(", "));
    assert.match(torch.layers[0], /Linear\(in_features=784, out_features=400/);
    const argmax = ours.map((r) => r.indexOf(Math.max(...r)));
    assert.deepEqual(torch.argmax, argmax, "identical predictions");
    let worst = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < 10; j++) {
        worst = Math.max(worst, Math.abs(torch.logits[i][j] - ours[i][j]));
      }
    }
    assert.ok(worst < 1e-4, `logits within 1e-4 (worst ${worst})`);
    const acc = argmax.filter((p, i) => p === batch.y[i]).length / n;
    if (SHARED_DATA) assert.ok(acc > 0.8, `the trained model predicts: ${acc}`);
    free(s);
    await Deno.remove(dir, { recursive: true });
  },
});
