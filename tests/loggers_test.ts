import assert from "node:assert/strict";
import { setBackend } from "../lib/backend.ts";
import {
  CSV_COLUMNS,
  csvLine,
  csvLogger,
  type DisplayFn,
  inMemoryLogger,
  jsonlLogger,
  type LoggedRow,
  type Logger,
  newRun,
  parseCsvRows,
  parseJsonlRows,
  progressBar,
  progressLogger,
  readCsvRows,
  readJsonlRows,
  splitRuns,
  summarize,
  textLogger,
} from "../lib/loggers/mod.ts";
import { accuracy, confusionMatrix, forgetting, loss, timing } from "../lib/metrics/mod.ts";
import type { MetricRow } from "../lib/data/rows.ts";
import { mlp } from "../lib/models/mlp.ts";
import { evaluation } from "../lib/plugins/evaluation.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { toyBenchmark } from "./_helpers.ts";

await setBackend("wasm");

const row = (patch: Partial<MetricRow> = {}): MetricRow => ({
  metric: "accuracy",
  phase: "eval",
  stream: "test",
  experience: null,
  task: null,
  epoch: null,
  iteration: 3,
  trainExperience: 0,
  value: 0.5,
  at: "stream",
  ...patch,
});

/** A row read back from a file, without the run mark the file logger added. */
function withoutRun(r: LoggedRow): MetricRow {
  const { run: _run, runStart: _start, ...rest } = r;
  return rest;
}

/** Trains two experiences and evaluates after each, with the given loggers. */
async function runWith(loggers: Logger[], epochs = 1) {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const evaluator = evaluation({
    metrics: [accuracy({ at: ["epoch", "experience", "stream"] }), loss(), forgetting()],
    loggers,
  });
  const s = naive({ model, batchSize: 5, epochs, seed: 0, evaluator });
  for (const exp of bench.train) {
    await s.train(exp);
    await s.eval(bench.test);
  }
  s.dispose();
  model.dispose();
  return evaluator;
}

Deno.test("csvLogger writes a parseable file, one line per row, header once", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const logger = csvLogger({ dir: `${dir}/run` });
    assert.equal(logger.path, `${dir}/run/metrics.csv`);
    const evaluator = await runWith([logger]);
    const text = await Deno.readTextFile(logger.path);
    const lines = text.split("\n");
    assert.equal(lines[0], CSV_COLUMNS.join(","));
    assert.equal(lines.length, evaluator.rows.length + 2, "header, rows, final newline");
    const back = await readCsvRows(logger.path);
    assert.deepEqual(back.map(withoutRun), evaluator.rows);
    assert.ok(back.every((r) => r.run === logger.run.id && r.runStart === logger.run.start));
    // A second run appends to the same file (same header), never truncating it.
    await runWith([csvLogger({ dir: `${dir}/run` })]);
    const again = await readCsvRows(logger.path);
    assert.equal(again.length, 2 * evaluator.rows.length);
    const text2 = await Deno.readTextFile(logger.path);
    assert.equal(text2.split("\n").filter((l) => l === CSV_COLUMNS.join(",")).length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an interrupted CSV or JSONL file stays readable up to its last complete line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const csv = csvLogger({ dir });
    const jsonl = jsonlLogger({ dir });
    const evaluator = await runWith([csv, jsonl]);
    const n = evaluator.rows.length;
    for (const path of [csv.path, jsonl.path]) {
      const bytes = await Deno.readFile(path);
      // Cut in the middle of the last line, as a killed process would leave it.
      const lastNewline = bytes.lastIndexOf(10, bytes.length - 2);
      await Deno.writeFile(path, bytes.subarray(0, lastNewline + 5));
    }
    assert.equal((await readCsvRows(csv.path)).length, n - 1);
    assert.equal((await readJsonlRows(jsonl.path)).length, n - 1);
    // Resuming appends on a fresh line: the cut line is lost, everything else parses.
    await runWith([csvLogger({ dir }), jsonlLogger({ dir })]);
    assert.equal((await readCsvRows(csv.path)).length, 2 * n - 1);
    const jrows = await readJsonlRows(jsonl.path);
    assert.equal(jrows.length, 2 * n - 1);
    assert.deepEqual(jrows.slice(-n).map(withoutRun), evaluator.rows.map((r) => ({ ...r })));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("existing files: error and overwrite on request; other columns are refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = csvLogger({ dir });
    first.log!([row(), row({ value: 0.7 })]);
    assert.throws(() => csvLogger({ dir, ifExists: "error" }), /already exists: pass ifExists/);
    assert.throws(
      () => csvLogger({ dir, columns: ["metric", "value"] }),
      /has other columns .* than this logger writes/,
    );
    const replaced = csvLogger({ dir, ifExists: "overwrite" });
    assert.equal((await readCsvRows(first.path)).length, 2, "not truncated before a write");
    replaced.log!([row({ value: 0.9 })]);
    const rows = await readCsvRows(first.path);
    assert.deepEqual(rows.map((r) => r.value), [0.9]);
    replaced.log!([row({ value: 1 })]);
    assert.equal((await readCsvRows(first.path)).length, 2, "later writes append");
    assert.throws(() => jsonlLogger({ dir: "" }), /needs a folder/);
    assert.throws(() => csvLogger({ dir, ifExists: "replace" as never }), /ifExists must be/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CSV quoting, NaN and optional fields round-trip", () => {
  const rows = [
    row({ stream: 'odd, "name"', value: NaN }),
    row({ metric: "topKAccuracy", k: 5, task: 2, value: 1 / 3 }),
    row({
      metric: "confusionMatrix",
      class: 1,
      predicted: 0,
      value: 4,
      at: "experience",
      experience: 1,
    }),
    row({
      metric: "loss",
      phase: "train",
      stream: "train",
      experience: 0,
      epoch: 2,
      at: undefined,
    }),
  ];
  delete rows[3].at;
  const text = CSV_COLUMNS.join(",") + "\n" + rows.map((r) => csvLine(r)).join("");
  const back = parseCsvRows(text);
  assert.equal(back.length, 4);
  assert.equal(back[0].stream, 'odd, "name"');
  assert.ok(Number.isNaN(back[0].value));
  assert.deepEqual(back.slice(1), rows.slice(1));
  assert.deepEqual(parseCsvRows(""), []);
  assert.deepEqual(parseCsvRows("metric,value"), [], "a header cut before its newline");
  const named = csvLine(row(), ["metric", "name", "value"]);
  assert.equal(named, "accuracy,Top1_Acc_Stream/eval_phase/test_stream/Task000,0.5\n");
  assert.deepEqual(parseJsonlRows('not json\n{"metric":"loss","value":1}\n'), [
    { metric: "loss", value: 1 } as unknown as MetricRow,
  ]);
});

Deno.test("two runs into one CSV and one JSONL file carry two run ids, readable apart", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const csv1 = csvLogger({ dir });
    const jsonl1 = jsonlLogger({ dir, run: csv1.run }); // one id for both files of a run
    const first = await runWith([csv1, jsonl1]);
    const csv2 = csvLogger({ dir });
    const jsonl2 = jsonlLogger({ dir });
    const second = await runWith([csv2, jsonl2]);
    assert.deepEqual(jsonl1.run, csv1.run);
    assert.notEqual(csv2.run.id, csv1.run.id);
    assert.notEqual(jsonl2.run.id, csv2.run.id, "each logger makes its own id unless given one");
    assert.match(csv1.run.id, /^[0-9a-z]{8}$/);
    assert.ok(!Number.isNaN(Date.parse(csv1.run.start)));

    const n = first.rows.length;
    for (
      const [read, path, ids] of [
        [readCsvRows, csv1.path, [csv1.run.id, csv2.run.id]],
        [readJsonlRows, jsonl1.path, [jsonl1.run.id, jsonl2.run.id]],
      ] as const
    ) {
      const all = await read(path);
      assert.equal(all.length, 2 * n);
      // The iteration count starts over in the second run; the run id tells the rows apart.
      assert.equal(all[0].iteration, all[n].iteration);
      const runs = splitRuns(all);
      assert.deepEqual(runs.map((r) => r.run), ids);
      assert.deepEqual(runs.map((r) => r.rows.length), [n, n]);
      assert.equal(runs[0].start, csv1.run.start);
      assert.deepEqual((await read(path, { run: ids[0] })).map(withoutRun), first.rows);
      assert.deepEqual((await read(path, { run: ids[1] })).map(withoutRun), second.rows);
      assert.equal((await read(path, { run: ids })).length, 2 * n);
      assert.deepEqual(await read(path, { run: "nosuchid" }), []);
    }
    // The CSV has the run columns at the end of each line.
    const text = await Deno.readTextFile(csv1.path);
    assert.ok(text.split("\n")[1].endsWith(`,${csv1.run.id},${csv1.run.start}`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("old files without the run column still read; a CSV one is not appended to unmarked", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const legacyColumns = CSV_COLUMNS.filter((c) => c !== "run" && c !== "runStart");
    const old = [row({ value: 0.25 }), row({ metric: "loss", value: 1.5, iteration: 4 })];
    const csvPath = `${dir}/metrics.csv`;
    await Deno.writeTextFile(
      csvPath,
      legacyColumns.join(",") + "\n" + old.map((r) => csvLine(r, legacyColumns)).join(""),
    );
    const back = await readCsvRows(csvPath);
    assert.deepEqual(back, old);
    assert.deepEqual(splitRuns(back).map((r) => [r.run, r.start, r.rows.length]), [[
      null,
      null,
      2,
    ]]);
    assert.deepEqual(await readCsvRows(csvPath, { run: "abc" }), []);
    assert.throws(
      () => csvLogger({ dir }),
      /has other columns .*written before runs were marked .*choose another file, or pass ifExists: "overwrite"/,
    );
    // ifExists still decides: overwrite starts a marked file.
    const fresh = csvLogger({ dir, ifExists: "overwrite" });
    fresh.log!([row()]);
    assert.deepEqual((await readCsvRows(csvPath)).map((r) => r.run), [fresh.run.id]);

    // JSON Lines has no header: a new run appends to an old file, and its rows are marked.
    const jsonlPath = `${dir}/metrics.jsonl`;
    await Deno.writeTextFile(jsonlPath, old.map((r) => JSON.stringify(r) + "\n").join(""));
    const j = jsonlLogger({ dir });
    j.log!([row({ value: 0.75 })]);
    const rows = await readJsonlRows(jsonlPath);
    assert.deepEqual(rows.slice(0, 2), old);
    assert.deepEqual(splitRuns(rows).map((r) => r.run), [null, j.run.id]);
    assert.deepEqual((await readJsonlRows(jsonlPath, { run: j.run.id })).map((r) => r.value), [
      0.75,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run marks: given marks are used as they are; bad ones are refused by name", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = { id: "seed0-resume", start: "2025-06-01T12:00:00.000Z" };
    const csv = csvLogger({ dir, run, columns: ["metric", "value"] });
    csv.log!([row()]);
    assert.equal(
      await Deno.readTextFile(csv.path),
      "metric,value,run,runStart\naccuracy,0.5,seed0-resume,2025-06-01T12:00:00.000Z\n",
    );
    assert.deepEqual(await readCsvRows(csv.path), [
      { metric: "accuracy", value: 0.5, run: "seed0-resume", runStart: run.start },
    ] as unknown as LoggedRow[]);
    assert.throws(
      () => jsonlLogger({ dir, run: { id: "a b", start: run.start } }),
      /run\.id must be/,
    );
    assert.throws(
      () => jsonlLogger({ dir, run: { id: "x", start: "soon" } }),
      /run\.start must be/,
    );
    assert.throws(() => textLogger({ run: "x" as never }), /run must be \{ id, start \}/);
    const a = newRun(), b = newRun();
    assert.notEqual(a.id, b.id);
    let out = "";
    const text = textLogger({ run, write: (s) => void (out += s) });
    assert.equal(out, "", "nothing is written before the first output");
    text.log!([row()]);
    assert.ok(
      out.startsWith("-- Run seed0-resume started 2025-06-01T12:00:00.000Z --\n\tTop1_Acc"),
    );
    text.log!([row()]);
    assert.equal(out.split("-- Run ").length, 2, "the run line is written once");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("textLogger prints phase headers and named values; confusion as a matrix", async () => {
  let out = "";
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const evaluator = evaluation({
    metrics: [accuracy({ at: ["epoch", "stream"] }), confusionMatrix()],
    loggers: [textLogger({ write: (s) => void (out += s) })],
  });
  const s = naive({ model, batchSize: 10, seed: 0, evaluator });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  const [runLine, ...lines] = out.split("\n");
  assert.match(runLine, /^-- Run [0-9a-z]{8} started \d{4}-\d\d-\d\dT[\d:.]+Z --$/);
  assert.equal(lines[0], "-- >> Start of training phase << --");
  assert.equal(lines[1], "-- Training on experience 0 (task 0) from train stream --");
  assert.match(lines[2], /^\tTop1_Acc_Epoch\/train_phase\/train_stream\/Task000 = \d\.\d{4}$/);
  assert.equal(lines[3], "Epoch 0 ended.");
  assert.ok(out.includes("-- Starting eval on experience 1 (task 0) from test stream --"));
  assert.match(
    out,
    /\tConfusionMatrix_Stream\/eval_phase\/test_stream\/Task000 =\n(\t\t( *\d+){4}\n){4}/,
  );
  assert.ok(out.trimEnd().endsWith("-- >> End of eval phase << --"));
  s.dispose();
  model.dispose();
});

Deno.test("progressLogger in lines mode: one line per epoch and experience, with values", async () => {
  let out = "";
  await runWith([progressLogger({ mode: "lines", write: (s) => void (out += s) })], 2);
  const lines = out.trimEnd().split("\n");
  const epochs = lines.filter((l) => l.startsWith("[train exp"));
  assert.equal(epochs.length, 4);
  assert.match(
    epochs[0],
    /^\[train exp 1\/2 epoch 1\/2\] █+ 100% 4\/4 \d+ samples\/s \d+s \| accuracy \d\.\d{4} loss \d\.\d{4}$/,
  );
  const evals = lines.filter((l) => l.startsWith("[eval test exp"));
  assert.equal(evals.length, 4);
  assert.match(evals[3], /^\[eval test exp 2\] .* 1\/1 .*\| accuracy \d\.\d{4} loss \d\.\d{4}$/);
  const streams = lines.filter((l) => l.startsWith("[eval test]"));
  assert.equal(streams.length, 2);
  assert.match(
    streams[1],
    /^\[eval test\] accuracy \d\.\d{4} loss \d\.\d{4} forgetting \d\.\d{4}$/,
  );
  assert.ok(!out.includes("\r"), "no redraws outside a terminal");
});

Deno.test("progressLogger in a terminal redraws one line with rate and ETA", async () => {
  let out = "";
  await runWith([
    progressLogger({ mode: "terminal", intervalMs: 0, write: (s) => void (out += s) }),
  ]);
  const shown = out.replaceAll("\x1b[K", "<clear>");
  assert.match(
    shown,
    /\r\[train exp 1\/2 epoch 1\/1\] [█░]+ +\d+% 1\/4 \d+ samples\/s ETA \d+s<clear>/,
  );
  assert.match(shown, /\r\[train exp 1\/2 epoch 1\/1\] █+ 100% 4\/4 .*<clear>\n/);
});

Deno.test("progressLogger in Jupyter updates one display per train or eval call", async () => {
  const calls: { id: string; update: boolean; text: string; html: string }[] = [];
  const display: DisplayFn = (bundle, opts) => {
    calls.push({
      id: opts.display_id,
      update: opts.update === true,
      text: bundle["text/plain"],
      html: bundle["text/html"],
    });
  };
  await runWith([progressLogger({ mode: "jupyter", display, intervalMs: 0 })]);
  const ids = [...new Set(calls.map((c) => c.id))];
  assert.equal(ids.length, 4, "2 train calls and 2 eval calls");
  for (const id of ids) {
    const mine = calls.filter((c) => c.id === id);
    assert.equal(mine[0].update, false, "created first");
    assert.ok(mine.slice(1).every((c) => c.update), "then updated in place");
  }
  const lastTrain = calls.filter((c) => c.id === ids[0]).at(-1)!;
  assert.match(lastTrain.text, /^\[train exp 1\/2 epoch 1\/1\] █+ 100% 4\/4 .*\| accuracy/);
  assert.ok(lastTrain.html.startsWith("<pre"));
  const lastEval = calls.filter((c) => c.id === ids[3]).at(-1)!.text.split("\n");
  assert.equal(lastEval.length, 3, "two experiences and the stream summary");
  assert.match(lastEval[2], /^\[eval test\] accuracy/);
  assert.throws(() => progressLogger({ mode: "jupyter" }), /needs `deno jupyter`/);
  assert.throws(() => progressLogger({ mode: "fancy" as never }), /mode must be/);
});

Deno.test("summarize, inMemoryLogger and the progressBar plugin", async () => {
  assert.equal(
    summarize([
      row({ metric: "loss", value: 0.25 }),
      row({ metric: "topKAccuracy", k: 5, value: 1 }),
      row({ metric: "time", value: 1.234 }),
      row({ metric: "ram", value: 100.4 }),
      row({ task: 1 }),
      row({ metric: "classAccuracy", class: 1 }),
    ]),
    "loss 0.2500 top5 1.0000 time 1.23s ram 100 MiB",
  );
  const memory = inMemoryLogger();
  const evaluator = await runWith([memory]);
  assert.deepEqual(memory.rows, evaluator.rows);
  // The progress bar plugin still works on its own.
  let out = "";
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = naive({
    model,
    batchSize: 5,
    seed: 0,
    plugins: [progressBar({ write: (t) => void (out += t) })],
    evaluator: evaluation({ metrics: [timing()] }),
  });
  await s.train(bench.train[0]);
  assert.match(
    out,
    /^step: tape-free \(the model is a classifier .*\)\n\[exp 1\/2 epoch 1\/1\] █+ 100% 4\/4 \d+ samples\/s loss \d\.\d{4} \d+s\n$/,
  );
  // The step line is written once, not again for the next experience with the same step.
  out = "";
  await s.train(bench.train[1]);
  assert.match(out, /^\[exp 2\/2 epoch 1\/1\]/);
  s.dispose();
  model.dispose();
});
