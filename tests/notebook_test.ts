import assert from "node:assert/strict";
import { setBackend } from "../lib/backend.ts";
import type { MetricRow } from "../lib/data/rows.ts";
import { mlp } from "../lib/models/mlp.ts";
import {
  accuracyCurves,
  accuracyMatrixHeatmap,
  compareRuns,
  confusionMatrixPlot,
  display,
  figure,
  forgettingBars,
  forgettingPerExperience,
  isJupyter,
  JUPYTER_DISPLAY,
  loadDanfo,
  PNG_SIGNATURE,
  rowsFrom,
  runSummary,
  summaryTable,
  table,
  toHTML,
  toText,
} from "../lib/notebook/mod.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { toyBenchmark } from "./_helpers.ts";

await setBackend("wasm");

// ------------------------------------------------------------------------ fixtures ----

/** accuracy on experience j after training experience i */
const ACC = [
  [0.95, 0.1, 0.05],
  [0.5, 0.9, 0.1],
  [0.3, 0.6, 0.92],
];

/** A hand-made run: 3 experiences, 2 epochs each, evaluation after each experience. */
function runRows(shift = 0): MetricRow[] {
  const rows: MetricRow[] = [];
  let iteration = 0;
  for (let t = 0; t < 3; t++) {
    for (let epoch = 0; epoch < 2; epoch++) {
      iteration += 10;
      const base = {
        phase: "train" as const,
        stream: "train",
        experience: t,
        task: null,
        epoch,
        iteration,
        trainExperience: t,
      };
      rows.push({ ...base, metric: "loss", value: 1.5 / (epoch + 1) + 0.2 * t });
      rows.push({ ...base, metric: "accuracy", value: 0.6 + 0.15 * epoch });
    }
    const base = {
      metric: "accuracy",
      phase: "eval" as const,
      stream: "test",
      task: null,
      epoch: null,
      iteration,
      trainExperience: t,
    };
    for (let j = 0; j < 3; j++) {
      rows.push({ ...base, experience: j, value: Math.min(1, ACC[t][j] + shift) });
    }
    const mean = ACC[t].reduce((a, v) => a + Math.min(1, v + shift), 0) / 3;
    rows.push({ ...base, experience: null, value: mean });
  }
  return rows;
}

const ROWS = runRows();

const SNAPSHOTS = new URL("./fixtures/notebook/", import.meta.url);
const UPDATE = Deno.env.get("UPDATE_SNAPSHOTS") === "1";

/** Compares an SVG with its committed snapshot; `UPDATE_SNAPSHOTS=1` rewrites the snapshot. */
async function assertSnapshot(name: string, svg: string): Promise<void> {
  const file = new URL(`${name}.svg`, SNAPSHOTS);
  if (UPDATE) {
    await Deno.mkdir(SNAPSHOTS, { recursive: true });
    await Deno.writeTextFile(file, svg + "\n");
    return;
  }
  let expected: string;
  try {
    expected = await Deno.readTextFile(file);
  } catch {
    throw new Error(`No snapshot ${file.pathname}: run the tests with UPDATE_SNAPSHOTS=1`);
  }
  assert.equal(svg + "\n", expected, `${name}.svg differs (UPDATE_SNAPSHOTS=1 rewrites it)`);
}

/** Inner SVG of every `<g aria-label="label">` group of a chart. */
function groups(svg: string, label: string): string[] {
  const re = new RegExp(`<g[^>]*aria-label="${label}"[^>]*>(.*?)</g>`, "gs");
  return [...svg.matchAll(re)].map((m) => m[1]);
}

function count(text: string, tag: string): number {
  return text.split(`<${tag}`).length - 1;
}

/** Labels of the legend (drawn last in the chart). */
function legend(svg: string): string[] {
  return texts(svg.slice(svg.indexOf('aria-label="legend"')));
}

/** Text contents of every <text> element. */
function texts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
}

// ---------------------------------------------------------------------------- math ----

Deno.test("forgettingPerExperience: best earlier accuracy minus final, by hand", () => {
  const f = forgettingPerExperience(ACC);
  assert.equal(f.length, 2);
  assert.ok(Math.abs(f[0] - (0.95 - 0.3)) < 1e-12);
  assert.ok(Math.abs(f[1] - (0.9 - 0.6)) < 1e-12);
  // Improvement is negative forgetting; NaN cells are skipped; one row has no forgetting.
  assert.deepEqual(forgettingPerExperience([[0.5, 0], [0.7, 0.9]]), [0.5 - 0.7]);
  const g = forgettingPerExperience([[NaN, 0], [0.8, 0], [0.6, 0.9], [0.5, 0.4]]);
  // The last row has 2 columns: experiences 0 and 1 only.
  assert.equal(g.length, 2);
  assert.ok(Math.abs(g[0] - (0.8 - 0.5)) < 1e-12 && Math.abs(g[1] - (0.9 - 0.4)) < 1e-12);
  assert.deepEqual(forgettingPerExperience([[0.9]]), []);
  assert.deepEqual(forgettingPerExperience([]), []);
});

Deno.test("runSummary: final average accuracy, average forgetting and BWT by hand", () => {
  const s = runSummary(ROWS);
  assert.equal(s.experiences, 3);
  assert.ok(Math.abs(s.finalAccuracy - (0.3 + 0.6 + 0.92) / 3) < 1e-12);
  assert.ok(Math.abs(s.forgetting - (0.65 + 0.3) / 2) < 1e-12);
  assert.ok(Math.abs(s.bwt - ((0.3 - 0.95) + (0.6 - 0.9)) / 2) < 1e-12);
  assert.deepEqual(runSummary(ACC), s);
  assert.deepEqual(runSummary({ rows: ROWS }), s);
  const one = runSummary([[0.8]]);
  assert.equal(one.finalAccuracy, 0.8);
  assert.ok(Number.isNaN(one.forgetting) && Number.isNaN(one.bwt));
  assert.throws(() => runSummary(42 as never), TypeError);
});

// -------------------------------------------------------------------------- charts ----

Deno.test("accuracyCurves: one line per test experience plus the stream average", async () => {
  const fig = accuracyCurves(ROWS, { title: "Naive" });
  assert.equal(fig.width, 640);
  assert.equal(fig.height, 400);
  assert.ok(fig.svg.startsWith("<svg") && fig.svg.includes('xmlns="http://www.w3.org/2000/svg"'));
  const lines = groups(fig.svg, "line");
  assert.deepEqual(lines.map((g) => count(g, "path")), [3, 1]); // 3 experiences, 1 average
  assert.equal(count(groups(fig.svg, "dot")[0], "circle"), 9);
  assert.deepEqual(legend(fig.svg), ["exp 0", "exp 1", "exp 2", "average"]);
  const labels = texts(fig.svg);
  for (const t of ["Naive", "↑ Accuracy", "Trained experience →", "exp 0", "exp 2", "average"]) {
    assert.ok(labels.includes(t), `label "${t}" in ${labels.join("|")}`);
  }
  assert.ok(!/id="/.test(fig.svg), "no generated ids");
  assert.equal(accuracyCurves(ROWS, { title: "Naive" }).svg, fig.svg, "deterministic");
  await assertSnapshot("accuracy_curves", fig.svg);
});

Deno.test("accuracyCurves: training loss per epoch, x choices and errors", async () => {
  const fig = accuracyCurves({ rows: ROWS }, { phase: "train", metric: "loss" });
  assert.deepEqual(groups(fig.svg, "line").map((g) => count(g, "path")), [3]);
  assert.equal(count(groups(fig.svg, "dot")[0], "circle"), 6); // 3 experiences × 2 epochs
  assert.ok(texts(fig.svg).includes("Epoch →") && texts(fig.svg).includes("↑ Loss"));
  await assertSnapshot("training_loss", fig.svg);

  const byIteration = accuracyCurves(ROWS, { x: "iteration", average: false });
  assert.ok(texts(byIteration.svg).includes("Training iteration →"));
  assert.equal(groups(byIteration.svg, "line").length, 1);
  // Periodic evaluation (two evaluations after the same experience) switches to iterations.
  const periodic = [
    ...ROWS,
    ...ROWS.filter((r) => r.phase === "eval" && r.trainExperience === 2)
      .map((r) => ({ ...r, iteration: 70, value: r.value / 2 })),
  ];
  assert.ok(texts(accuracyCurves(periodic).svg).includes("Training iteration →"));
  // Rows of a finer granularity or split by class are left out.
  const extra = [...ROWS, { ...ROWS[10], class: 3, value: 0 }, {
    ...ROWS[10],
    at: "minibatch" as const,
    value: 0,
  }];
  assert.equal(
    accuracyCurves(extra, { title: "Naive" }).svg,
    accuracyCurves(ROWS, { title: "Naive" }).svg,
  );

  // Per-minibatch training rows (the evaluator's) are drawn against iterations.
  const minibatch = ROWS.filter((r) => r.phase === "train").map((r) => ({
    ...r,
    at: "minibatch" as const,
  }));
  const mb = accuracyCurves(minibatch, { phase: "train", metric: "loss" });
  assert.ok(texts(mb.svg).includes("Training iteration →"));
  assert.equal(count(groups(mb.svg, "dot")[0], "circle"), 6);

  assert.throws(() => accuracyCurves(ROWS, { metric: "bleu" }), /No eval rows of "bleu"/);
  assert.throws(() => accuracyCurves(ROWS, { metric: "" }), /non-empty string/);
  assert.throws(() => accuracyCurves(ROWS, { phase: "test" as never }), RangeError);
  assert.throws(() => accuracyCurves(ROWS, { x: "time" as never }), /x must be one of/);
  assert.throws(() => accuracyCurves(ROWS, { width: 0 }), /width must be a number/);
  assert.throws(() => accuracyCurves({} as never), TypeError);
});

Deno.test("accuracyMatrixHeatmap: a cell per entry with its value written in it", async () => {
  const fig = accuracyMatrixHeatmap(ROWS, { title: "Accuracy matrix" });
  assert.equal(count(groups(fig.svg, "cell")[0], "rect"), 9);
  const values = groups(fig.svg, "text").flatMap(texts);
  assert.deepEqual(values.sort(), [
    "0.05",
    "0.10",
    "0.10",
    "0.30",
    "0.50",
    "0.60",
    "0.90",
    "0.92",
    "0.95",
  ]);
  assert.equal(accuracyMatrixHeatmap(ACC, { title: "Accuracy matrix" }).svg, fig.svg);
  // Cells not measured are left empty.
  const partial = accuracyMatrixHeatmap([[0.9, NaN], [0.5, 0.8]], { text: false });
  assert.equal(count(groups(partial.svg, "cell")[0], "rect"), 3);
  assert.equal(groups(partial.svg, "text").length, 0);
  assert.throws(() => accuracyMatrixHeatmap([]), /No accuracy matrix/);
  assert.throws(() => accuracyMatrixHeatmap(ACC, { decimals: -1 }), /decimals/);
  await assertSnapshot("accuracy_matrix", fig.svg);
});

Deno.test("forgettingBars: a bar per experience with hand-computed values", async () => {
  const fig = forgettingBars(ROWS);
  assert.equal(count(groups(fig.svg, "bar")[0], "rect"), 2);
  const labels = texts(fig.svg);
  for (const t of ["0.650", "0.300", "mean 0.475", "↑ Forgetting", "Experience"]) {
    assert.ok(labels.includes(t), `label "${t}" in ${labels.join("|")}`);
  }
  assert.equal(forgettingBars(ACC).svg, fig.svg);
  assert.throws(() => forgettingBars([[0.9]]), /at least 2 training experiences/);
  await assertSnapshot("forgetting", fig.svg);
});

Deno.test("confusionMatrixPlot: n² cells, class labels, optional normalization", async () => {
  const m = [[50, 3, 1], [4, 40, 6], [0, 2, 48]];
  const fig = confusionMatrixPlot(m, ["zero", "one", "two"]);
  assert.equal(count(groups(fig.svg, "cell")[0], "rect"), 9);
  const labels = texts(fig.svg);
  for (const t of ["zero", "one", "two", "50", "48", "Predicted", "True"]) {
    assert.ok(labels.some((l) => l.includes(t)), `label "${t}"`);
  }
  const norm = confusionMatrixPlot(m, undefined, { normalize: true });
  assert.ok(texts(norm.svg).includes("0.93") && texts(norm.svg).includes("0.80"));
  assert.throws(() => confusionMatrixPlot([[1, 2]]), /square/);
  assert.throws(() => confusionMatrixPlot([[1]], ["a", "b"]), /2 labels/);
  assert.throws(() => confusionMatrixPlot([[1, 0], [0, 1]], ["a", "a"]), /distinct/);
  await assertSnapshot("confusion_matrix", fig.svg);
});

Deno.test("compareRuns: a curve or a bar per run", async () => {
  const runs = [{ name: "Naive", rows: ROWS }, { name: "Replay", rows: runRows(0.2) }];
  const curves = compareRuns(runs);
  assert.deepEqual(groups(curves.svg, "line").map((g) => count(g, "path")), [2]);
  assert.equal(count(groups(curves.svg, "dot")[0], "circle"), 6);
  assert.deepEqual(legend(curves.svg), ["Naive", "Replay"]);
  await assertSnapshot("compare_curves", curves.svg);

  const bars = compareRuns(runs, { kind: "bars" });
  assert.equal(count(groups(bars.svg, "bar")[0], "rect"), 2);
  assert.ok(texts(bars.svg).includes("0.607")); // (0.3 + 0.6 + 0.92) / 3
  await assertSnapshot("compare_bars", bars.svg);
  const bwt = compareRuns(runs, { kind: "bars", stat: "bwt" });
  assert.ok(texts(bwt.svg).includes("-0.475"));
  // Same names are told apart.
  assert.deepEqual(legend(compareRuns([runs[0], runs[0]]).svg), ["Naive", "Naive (2)"]);
  assert.throws(() => compareRuns([]), /non-empty/);
  assert.throws(() => compareRuns(runs, { kind: "pie" as never }), /kind must be one of/);
});

// ------------------------------------------------------------------- figure output ----

Deno.test("Figure: Jupyter bundle, text form", () => {
  const fig = accuracyCurves(ROWS);
  const bundle = fig[JUPYTER_DISPLAY]();
  assert.deepEqual(Object.keys(bundle).sort(), ["image/svg+xml", "text/plain"]);
  assert.equal(bundle["image/svg+xml"], fig.svg);
  assert.equal(bundle["text/plain"], "Figure(eval accuracy curves, 640×400)");
  assert.equal(String(fig), fig.svg);
  // The key is the one Deno's kernel looks for.
  assert.equal(JUPYTER_DISPLAY, Symbol.for("Jupyter.display"));
});

Deno.test("Figure.save writes .svg atomically (no temporary file left) and rejects other names", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const fig = forgettingBars(ACC);
    assert.equal(await fig.save(`${dir}/forgetting.svg`), `${dir}/forgetting.svg`);
    assert.equal(await Deno.readTextFile(`${dir}/forgetting.svg`), fig.svg);
    await fig.save(`${dir}/forgetting.svg`); // overwrite in place
    await assert.rejects(() => fig.save(`${dir}/missing/forgetting.svg`), Deno.errors.NotFound);
    await assert.rejects(() => fig.save(`${dir}/forgetting.pdf`), /\.svg or \.png/);
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, ["forgetting.svg"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function pngSize(png: Uint8Array): [number, number] {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return [view.getUint32(16), view.getUint32(20)]; // IHDR width, height
}

const FFI = (await Deno.permissions.query({ name: "ffi" })).state === "granted";

Deno.test("Figure.toPNG and save(.png): PNG signature and the figure's size", async () => {
  const fig = accuracyMatrixHeatmap(ACC, { width: 300, height: 200 });
  const dir = await Deno.makeTempDir();
  try {
    let png1: Uint8Array;
    let png2: Uint8Array;
    if (FFI) {
      png1 = fig.toPNG();
      png2 = fig.toPNG({ scale: 2 });
      await fig.save(`${dir}/m.png`);
    } else {
      // resvg is a native module (needs --allow-ffi): render in a child process that has it.
      await Deno.writeTextFile(`${dir}/m.svg`, fig.svg);
      const render = new URL("../lib/notebook/render.ts", import.meta.url).href;
      const code = `import { figure } from "${render}";
        const dir = ${JSON.stringify(dir)};
        const f = figure(Deno.readTextFileSync(dir + "/m.svg"), { width: 300, height: 200 });
        Deno.writeFileSync(dir + "/1.bin", f.toPNG());
        Deno.writeFileSync(dir + "/2.bin", f.toPNG({ scale: 2 }));
        await f.save(dir + "/m.png");`;
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          "--quiet",
          `--config=${new URL("../deno.json", import.meta.url).pathname}`,
          "--allow-read",
          "--allow-write",
          "--allow-ffi",
          "--allow-env",
          code,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      png1 = await Deno.readFile(`${dir}/1.bin`);
      png2 = await Deno.readFile(`${dir}/2.bin`);
      await Deno.remove(`${dir}/1.bin`);
      await Deno.remove(`${dir}/2.bin`);
      await Deno.remove(`${dir}/m.svg`);
    }
    assert.deepEqual([...png1.subarray(0, 8)], PNG_SIGNATURE);
    assert.deepEqual(pngSize(png1), [300, 200]);
    assert.deepEqual(pngSize(png2), [600, 400]);
    const saved = await Deno.readFile(`${dir}/m.png`);
    assert.deepEqual([...saved.subarray(0, 8)], PNG_SIGNATURE);
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, ["m.png"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.throws(() => figure("<svg/>", { width: 1, height: 1 }).toPNG({ scale: 0 }), /scale/);
});

// -------------------------------------------------------------------------- tables ----

Deno.test("loading danfo keeps our tfjs kernels registered", async () => {
  const registry = (globalThis as { _tfGlobals?: Map<string, Map<string, unknown>> })._tfGlobals
    ?.get("kernelRegistry");
  assert.ok(registry, "tfjs-core is loaded");
  const before = new Map(registry);
  const dfd = await loadDanfo();
  assert.equal(typeof dfd.DataFrame, "function");
  for (const [key, config] of before) assert.equal(registry.get(key), config, key);
  assert.equal(await loadDanfo(), dfd);
});

Deno.test("table: a real danfo DataFrame that round-trips the rows and renders as HTML", async () => {
  const dfd = await loadDanfo();
  const rows: MetricRow[] = [
    ...ROWS,
    { ...ROWS[4], metric: "classAccuracy", class: 3, at: "experience", value: NaN },
    { ...ROWS[5], metric: "confusionMatrix", class: 1, predicted: 2, value: 7 },
  ];
  const df = table(rows);
  assert.ok(df instanceof dfd.DataFrame);
  assert.deepEqual(df.shape, [rows.length, 12]);
  assert.deepEqual(df.columns.slice(9), ["class", "at", "predicted"]);
  assert.deepEqual(rowsFrom(df), rows);
  assert.deepEqual(table(rows.slice(0, 5)).shape, [5, 9]);
  // The DataFrame's own operations work on it.
  const evalOnly = df.query(df["phase"].eq("eval"));
  assert.equal(evalOnly.shape[0], 14);
  assert.deepEqual(df.describe().index, [
    "count",
    "mean",
    "std",
    "min",
    "median",
    "max",
    "variance",
  ]);
  const bundle = (df as unknown as Record<symbol, () => Record<string, string>>)[JUPYTER_DISPLAY]();
  assert.deepEqual(Object.keys(bundle).sort(), ["text/html", "text/plain"]);
  assert.ok(bundle["text/html"].startsWith('<table class="perennial-table">'));
  assert.ok(bundle["text/html"].includes('<td style="text-align:right">0.9500</td>'));
  // Frames danfo derives render too (the method is on danfo's prototype).
  const derived = df.describe() as unknown as Record<symbol, () => Record<string, string>>;
  assert.ok(derived[JUPYTER_DISPLAY]()["text/html"].includes("<th>count</th>"));
  const series = df["value"] as unknown as Record<symbol, () => Record<string, string>>;
  assert.ok(series[JUPYTER_DISPLAY]()["text/plain"].includes("0.9500"));
  assert.deepEqual(table([]).shape, [0, 9]);
  assert.deepEqual(rowsFrom(table([])), []);
  assert.throws(() => rowsFrom(new dfd.DataFrame({ a: [1] })), /lacks the metric row columns/);
});

Deno.test("summaryTable: one row per run with accuracy, forgetting and BWT", () => {
  const df = summaryTable([{ name: "Naive", rows: ROWS }, { name: "Replay", rows: runRows(0.2) }]);
  assert.deepEqual(df.columns, ["run", "experiences", "finalAccuracy", "forgetting", "bwt"]);
  const [naiveRow, replayRow] = df.values as unknown[][];
  assert.equal(naiveRow[0], "Naive");
  assert.equal(naiveRow[1], 3);
  assert.ok(Math.abs((naiveRow[2] as number) - 1.82 / 3) < 1e-12);
  assert.ok(Math.abs((naiveRow[3] as number) - 0.475) < 1e-12);
  assert.ok(Math.abs((naiveRow[4] as number) + 0.475) < 1e-12);
  assert.equal(replayRow[0], "Replay");
  const text = toText(df);
  assert.equal(text.split("\n")[1], "0  Naive             3         0.6067      0.4750  -0.4750");
  assert.deepEqual(summaryTable([]).shape, [0, 5]);
});

Deno.test("toHTML and toText: escaping, 4 decimals, long tables cut in the middle", () => {
  const html = toHTML({ columns: ["run", "<acc>"], values: [["<b>&'\"", 0.123456], ["x", 2]] });
  assert.ok(html.includes("<th>&lt;acc&gt;</th>"));
  assert.ok(html.includes("<td>&lt;b&gt;&amp;&#39;&quot;</td>"));
  assert.ok(html.includes(">0.1235</td>") && html.includes(">2</td>"));
  assert.ok(!html.includes("<b>"));
  const long = toHTML(ROWS, { maxRows: 10, edgeRows: 3 });
  assert.equal(count(long, "tr"), 1 + 3 + 1 + 3);
  assert.ok(long.includes(`<p>${ROWS.length} rows × 9 columns</p>`));
  const text = toText(ROWS, { maxRows: 10, edgeRows: 3 }).split("\n");
  assert.equal(text.length, 1 + 3 + 1 + 3 + 1);
  assert.ok(text[0].startsWith("    metric"));
  assert.throws(() => toHTML(ROWS, { maxRows: 0 }), /maxRows must be an integer/);
});

// --------------------------------------------------------------- display, strategy ----

Deno.test("display outside Jupyter prints the text form", async () => {
  assert.equal(isJupyter(), false);
  const printed: unknown[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => printed.push(...args);
  try {
    await display(accuracyCurves(ROWS));
    await display({ [JUPYTER_DISPLAY]: () => ({ "text/html": "<p/>" }) });
    await display(42);
  } finally {
    console.log = log;
  }
  assert.deepEqual(printed, ["Figure(eval accuracy curves, 640×400)", 42]);
});

Deno.test("charts and tables take a strategy directly", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const strategy = naive({ model, epochs: 2, batchSize: 10, seed: 0, name: "Naive" });
  try {
    for (const exp of bench.train) {
      await strategy.train(exp);
      await strategy.eval(bench.test);
    }
    assert.deepEqual(groups(accuracyCurves(strategy).svg, "line").map((g) => count(g, "path")), [
      2,
      1,
    ]);
    const loss = accuracyCurves(strategy, { phase: "train", metric: "loss" });
    assert.equal(count(groups(loss.svg, "dot")[0], "circle"), 4);
    assert.equal(count(groups(accuracyMatrixHeatmap(strategy).svg, "cell")[0], "rect"), 4);
    assert.equal(count(groups(forgettingBars(strategy).svg, "bar")[0], "rect"), 1);
    assert.equal(count(groups(compareRuns([strategy]).svg, "line")[0], "path"), 1);
    assert.deepEqual(rowsFrom(table(strategy)), strategy.rows);
    assert.equal(summaryTable([strategy]).values.length, 1);
  } finally {
    strategy.dispose();
    model.dispose();
  }
});
