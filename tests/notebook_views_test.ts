import assert from "node:assert/strict";
import { setBackend } from "../lib/backend.ts";
import type { MetricRow } from "../lib/data/rows.ts";
import { accuracy } from "../lib/metrics/accuracy.ts";
import { confusionMatrix } from "../lib/metrics/confusion.ts";
import { loss } from "../lib/metrics/loss.ts";
import { mlp } from "../lib/models/mlp.ts";
import {
  filterRows,
  JUPYTER_DISPLAY,
  liveCurves,
  plotEvaluator,
  saveTable,
  table,
  toCSV,
  toHTML,
  toText,
} from "../lib/notebook/mod.ts";
import type { Figure } from "../lib/notebook/render.ts";
import { evaluation } from "../lib/plugins/evaluation.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { toyBenchmark } from "./_helpers.ts";

await setBackend("wasm");

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
  const part = svg.slice(svg.indexOf('aria-label="legend"'));
  return [...part.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
}

const EVAL = {
  metric: "accuracy",
  phase: "eval",
  stream: "test",
  task: null,
  epoch: null,
  iteration: 20,
  trainExperience: 1,
} as const;

/** A trained toy run with an evaluator of accuracy, loss and the confusion matrix. */
async function toyRun(plugins: unknown[] = []) {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const evaluator = evaluation({
    metrics: [accuracy({ at: ["epoch", "experience", "stream"] }), loss(), confusionMatrix()],
  });
  const strategy = naive({
    model,
    epochs: 2,
    batchSize: 10,
    seed: 0,
    evaluator,
    plugins: plugins as never,
  });
  for (const exp of bench.train) {
    await strategy.train(exp);
    await strategy.eval(bench.test);
  }
  return {
    evaluator,
    strategy,
    experiences: bench.train.length,
    [Symbol.dispose]() {
      strategy.dispose();
      model.dispose();
    },
  };
}

Deno.test("evaluator.plot: each kind draws its marks", async () => {
  using run = await toyRun();
  const { evaluator } = run;
  const curves = evaluator.plot();
  assert.deepEqual(legend(curves.svg), ["exp 0", "exp 1", "average"]);
  assert.deepEqual(groups(curves.svg, "line").map((g) => count(g, "path")), [2, 1]);
  assert.equal(count(groups(evaluator.plot("accuracyMatrix").svg, "cell")[0], "rect"), 4);
  assert.equal(count(groups(evaluator.plot("forgetting").svg, "bar")[0], "rect"), 1);
  // The last confusion matrix: the stream after the second experience, 4 classes.
  const confusion = evaluator.plot("confusion", { title: "last" });
  assert.equal(count(groups(confusion.svg, "cell")[0], "rect"), 16);
  assert.ok(confusion.svg.includes(">last<"));
  const lossFig = evaluator.plot("loss");
  assert.equal(count(groups(lossFig.svg, "dot")[0], "circle"), 4); // 2 experiences × 2 epochs
  assert.ok(lossFig.svg.includes("Loss"));
  const evalLoss = evaluator.plot("loss", { phase: "eval" });
  assert.deepEqual(legend(evalLoss.svg), ["exp 0", "exp 1", "average"]);
  for (const fig of [curves, confusion, lossFig]) {
    const bundle = (fig as Figure)[JUPYTER_DISPLAY]();
    assert.ok(bundle["image/svg+xml"].startsWith("<svg"));
  }
  assert.throws(() => evaluator.plot("matrix" as never), /plot kind must be one of "curves"/);
  assert.throws(() => evaluator.plot("curves", { titel: "x" } as never), /did you mean "title"/);
});

Deno.test("plotEvaluator: confusion needs confusion rows", () => {
  const rows: MetricRow[] = [{ ...EVAL, experience: 0, value: 0.5 }];
  assert.throws(() => plotEvaluator(rows, "confusion"), /confusionMatrix\(\) metric/);
});

Deno.test("evaluator.plot and table save by extension", async () => {
  using run = await toyRun();
  const dir = await Deno.makeTempDir();
  try {
    const fig = run.evaluator.plot("accuracyMatrix");
    await fig.save(`${dir}/m.svg`);
    assert.ok((await Deno.readTextFile(`${dir}/m.svg`)).startsWith("<svg"));
    await fig.save(`${dir}/m.png`);
    const png = await Deno.readFile(`${dir}/m.png`);
    assert.deepEqual([...png.slice(1, 4)], [80, 78, 71]);
    const t = run.evaluator.table({ metric: "accuracy", experience: null, phase: "eval" });
    assert.equal(t.values.length, 2);
    await t.save(`${dir}/t.csv`);
    const csv = (await Deno.readTextFile(`${dir}/t.csv`)).trim().split("\n");
    assert.equal(csv.length, 3);
    assert.ok(csv[0].startsWith("metric,phase,stream,experience,task,epoch,iteration"));
    assert.match(csv[1], /^accuracy,eval,test,,,,\d+,0,[0-9.]+,stream$/);
    await t.save(`${dir}/t.html`);
    const html = await Deno.readTextFile(`${dir}/t.html`);
    assert.ok(html.startsWith("<!DOCTYPE html>") && html.includes("<table"));
    assert.ok(!html.includes("NaN"));
    await assert.rejects(() => t.save(`${dir}/t.xlsx`), /use a \.csv or \.html file name/);
    const entries = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(entries, ["m.png", "m.svg", "t.csv", "t.html"]); // no temporary left
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tables: empty cells where a field does not apply, fixed precision", () => {
  const rows: MetricRow[] = [
    { ...EVAL, experience: 0, value: 0.123456 },
    { ...EVAL, experience: null, value: 2 / 3 },
  ];
  const df = table(rows);
  const bundle = (df as unknown as { [JUPYTER_DISPLAY](): Record<string, string> })
    [JUPYTER_DISPLAY]();
  assert.ok(!bundle["text/html"].includes("NaN") && !bundle["text/plain"].includes("NaN"));
  assert.ok(
    bundle["text/html"].includes("<td>0.1235</td>") ||
      bundle["text/html"].includes(">0.1235</td>"),
  );
  // The stream row: experience, task and epoch empty.
  assert.ok(bundle["text/html"].includes(
    `<td style="text-align:right"></td><td style="text-align:right"></td>`,
  ));
  const three = table(rows, { decimals: 2 });
  const html = (three as unknown as { [JUPYTER_DISPLAY](): Record<string, string> })
    [JUPYTER_DISPLAY]()["text/html"];
  assert.ok(html.includes(">0.12</td>") && html.includes(">0.67</td>"));
  assert.ok(!html.includes("0.1235"));
  assert.throws(() => table(rows, { decimal: 2 } as never), /did you mean "decimals"/);
  assert.throws(() => table(rows, { decimals: 30 }), /decimals must be an integer from 0 to 20/);
  // Plain renderers of a frame: NaN is empty too.
  const frame = { columns: ["a", "b"], values: [[NaN, 0.5], [1, NaN]] };
  assert.ok(!toHTML(frame).includes("NaN") && !toText(frame).includes("NaN"));
  assert.equal(toCSV(frame), "a,b\n,0.5\n1,\n");
});

Deno.test("row filters: predicates, field values, lists; misspelt fields are errors", () => {
  const rows: MetricRow[] = [
    { ...EVAL, experience: 0, value: 0.9 },
    { ...EVAL, experience: 1, value: 0.8 },
    { ...EVAL, experience: null, value: 0.85 },
    { ...EVAL, metric: "loss", experience: null, value: 0.3 },
  ];
  assert.equal(filterRows(rows).length, 4);
  assert.equal(filterRows(rows, { experience: null }).length, 2);
  assert.equal(filterRows(rows, { experience: [0, 1] }).length, 2);
  assert.equal(filterRows(rows, { metric: "loss" })[0].value, 0.3);
  assert.equal(filterRows(rows, (r) => r.value > 0.82).length, 2);
  assert.equal(table(rows, { filter: { metric: "accuracy" } }).values.length, 3);
  assert.throws(() => filterRows(rows, { experiance: 0 } as never), /did you mean "experience"/);
});

Deno.test("saveTable writes CSV that quotes and HTML with every row", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const rows: MetricRow[] = Array.from({ length: 80 }, (_, i) => ({
      ...EVAL,
      experience: i,
      value: i / 7,
    }));
    await saveTable(rows, `${dir}/all.html`, { decimals: 1 });
    const html = await Deno.readTextFile(`${dir}/all.html`);
    assert.equal(count(html, "tr") - 1, 80); // header row + 80, no "…" row
    assert.ok(html.includes(">11.3</td>"));
    await saveTable({ columns: ["name"], values: [['a "b", c']] }, `${dir}/q.csv`);
    assert.equal(await Deno.readTextFile(`${dir}/q.csv`), 'name\n"a ""b"", c"\n');
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("liveCurves: one display, then updates of it; the last has every experience", async () => {
  const calls: { id: string; update: boolean; legend: string[]; average: number }[] = [];
  const live = liveCurves({
    title: "live",
    display: (fig, o) => {
      calls.push({ ...o, legend: legend(fig.svg), average: groups(fig.svg, "line").length });
    },
  });
  using run = await toyRun([live]);
  assert.equal(calls.length, run.experiences);
  assert.deepEqual(calls.map((c) => c.update), [false, true]);
  assert.equal(new Set(calls.map((c) => c.id)).size, 1);
  assert.equal(calls[0].id, live.id);
  assert.deepEqual(calls[0].legend, ["exp 0", "exp 1", "average"]);
  assert.deepEqual(calls.at(-1)!.legend, ["exp 0", "exp 1", "average"]);
  assert.equal(live.shown, 2);
  // The average drawn live is the loop's stream-level value, written after the hooks.
  const final = run.strategy.rows.filter((r) =>
    r.phase === "eval" && r.metric === "accuracy" && r.experience === null
  );
  assert.equal(final.length, 2);
  const avgPath = groups(live.figure!.svg, "line")[1];
  const fromRows = groups(plotEvaluator(run.strategy, "curves", { title: "live" }).svg, "line")[1];
  assert.equal(avgPath, fromRows);
});

Deno.test("liveCurves: in a terminal it rewrites the figure file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const live = liveCurves({ file: `${dir}/live.svg` });
    using _run = await toyRun([live]);
    assert.equal(live.shown, 2);
    const svg = await Deno.readTextFile(`${dir}/live.svg`);
    assert.deepEqual(legend(svg), ["exp 0", "exp 1", "average"]);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["live.svg"]);
    assert.throws(() => liveCurves({ phase: "train" } as never), /unknown option "phase"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("evaluator.plot without the notebook layer says what to import", async () => {
  const probe = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { evaluation } from "${new URL("../lib/plugins/evaluation.ts", import.meta.url)}";
       try { evaluation().plot(); } catch (e) { console.log(e.message); }`,
    ],
    stdout: "piped",
    stderr: "piped",
  });
  const out = new TextDecoder().decode((await probe.output()).stdout);
  assert.match(out, /notebook layer, which is not loaded: import from mod\.ts/);
});

Deno.test("checkNotebook: a live figure must be updated after every evaluation and end complete", async () => {
  const { checkNotebook } = await import("../lib/cli/notebooks.ts");
  const svg = (n: number) =>
    `<svg><g aria-label="legend">${
      Array.from({ length: n }, (_, e) => `<text>exp ${e}</text>`).join("")
    }</g></svg>`;
  const nb = (outputs: unknown[]) => ({
    nbformat: 4,
    metadata: { perennial: { figures: 1, tables: 0, live: { displays: 1, experiences: 3 } } },
    cells: [{ cell_type: "code", source: "run()", execution_count: 1, outputs }],
  });
  const shown = (n: number, messages: number) => ({
    output_type: "display_data",
    data: { "image/svg+xml": svg(n) },
    metadata: { perennial: { displayMessages: messages } },
  });
  const ok = checkNotebook(nb([shown(3, 3)]) as never);
  assert.deepEqual(ok.problems, []);
  assert.deepEqual(ok.live, [3]);
  assert.match(checkNotebook(nb([shown(2, 3)]) as never).problems.join(), /lacks .*exp 2/);
  assert.match(checkNotebook(nb([shown(3, 2)]) as never).problems.join(), /shown 2 time/);
  assert.match(
    checkNotebook(nb([shown(3, 3), shown(3, 3)]) as never).problems.join(),
    /2 live figure\(s\).*expected 1/,
  );
  assert.match(checkNotebook(nb([shown(3, 1)]) as never).problems.join(), /0 live figure/);
});
