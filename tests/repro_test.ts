import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { syntheticImages } from "../datasets/mod.ts";
import { setBackend } from "../lib/backend.ts";
import {
  buildModel,
  buildOptimizer,
  buildStrategy,
  comparisonFigure,
  comparisonTable,
  loadBenchmark,
  loadResults,
  matrixCSV,
  reproConfig,
  REPRODUCTIONS,
  reproFigures,
  reproSummaryTable,
  runComparison,
  runFraction,
  runProgress,
  runReproduction,
  saveResult,
  scaleConfig,
  settingTable,
  STRATEGY_KEYS,
  verdict,
  verdictText,
  writeSummary,
} from "../lib/repro/mod.ts";
import { JUPYTER_DISPLAY } from "../lib/notebook/display.ts";
import {
  checkNotebook,
  expectationsOf,
  listNotebooks,
  type Notebook,
  selectNotebooks,
} from "../lib/cli/notebooks.ts";
import { SHARED_DATA } from "./_helpers.ts";

await setBackend("wasm");

const ROOT = new URL("..", import.meta.url).pathname;

/** Ten classes of 28×28 synthetic images: MNIST's shape, a few hundred samples. */
const SYNTHETIC = {
  name: "synthetic",
  classes: 10,
  train: syntheticImages({ n: 600, classes: 10, seed: 1 }),
  test: syntheticImages({ n: 200, classes: 10, seed: 2 }),
};

// ------------------------------------------------------------------ configurations ----

Deno.test("every reproduction has a unique name, a target and a buildable setting", () => {
  const names = REPRODUCTIONS.map((r) => r.name);
  assert.equal(new Set(names).size, names.length);
  assert.equal(REPRODUCTIONS.length, 17);
  for (const r of REPRODUCTIONS) {
    assert.ok(r.target > 0 && r.target < 1, `${r.name} target ${r.target}`);
    // The baselines' setting, or (DER++, iCaRL: no baseline on MNIST) the authors' published one.
    assert.match(
      r.source,
      /^https:\/\/github\.com\/(ContinualAI\/continual-learning-baselines|aimagelab\/mammoth)\//,
    );
    assert.ok(STRATEGY_KEYS.includes(r.strategy), r.strategy);
    const model = buildModel(r.model, 0);
    const s = buildStrategy(r.strategy, {
      model,
      optimizer: buildOptimizer(r.optimizer),
      epochs: r.epochs,
      batchSize: r.batchSize,
      params: r.params,
    });
    assert.equal(typeof s.train, "function");
    s.dispose();
    model.dispose();
  }
});

Deno.test("the published settings of the targets table", () => {
  const si = reproConfig("si-split-mnist");
  assert.deepEqual(
    [si.benchmark.taskIncremental, si.model.hidden, si.model.head, si.epochs, si.batchSize],
    [true, [256, 256], "multi", 10, 64],
  );
  assert.deepEqual(si.params, { lambda: 1, eps: 0.1 });
  assert.deepEqual(reproConfig("gdumb-split-mnist").params, { memSize: 4400 });
  const lwf = reproConfig("lwf-split-mnist");
  assert.deepEqual([lwf.epochs, lwf.model.activation, lwf.model.hidden], [21, "tanh", [200]]);
  assert.deepEqual(lwf.params.alpha, [0, 0.5, 1.33, 2.25, 3.2]);
  assert.equal(reproConfig("cope-split-mnist").benchmark.onlineExperienceSize, 10);
  assert.equal(reproConfig("ewc-permuted-mnist").params.mode, "separate");
  assert.equal(reproConfig("agem-permuted-mnist").benchmark.experiences, 17);
  assert.equal(reproConfig("gem-permuted-mnist").params.patternsPerExperience, 1000);
  // Mammoth's seq-mnist best_args, buffer 500.
  const derpp = reproConfig("derpp-split-mnist");
  assert.deepEqual(
    [
      derpp.optimizer.lr,
      derpp.batchSize,
      derpp.epochs,
      derpp.model.hidden,
      derpp.benchmark.normalize,
    ],
    [0.03, 10, 1, [100, 100], false],
  );
  assert.deepEqual(derpp.params, { memSize: 500, batchSizeMem: 10, alpha: 1, beta: 0.5 });
  const icarl = reproConfig("icarl-split-mnist");
  assert.deepEqual([icarl.optimizer.lr, icarl.batchSize, icarl.params.memSize], [0.1, 10, 500]);
});

Deno.test("normalize: false keeps the pixels in [0, 1] (Mammoth's seq-mnist)", async () => {
  const range = async (normalize?: boolean) => {
    const { benchmark } = await loadBenchmark(
      { name: "splitMNIST", experiences: 5, normalize },
      { data: SYNTHETIC },
    );
    const d = benchmark.train[0].dataset;
    const v = d.batch(Int32Array.from([0, 1, 2])).x;
    return [Math.min(...v), Math.max(...v)];
  };
  const [lo, hi] = await range(false);
  assert.ok(lo >= 0 && hi <= 1 && hi > 0.5, `[${lo}, ${hi}]`);
  const [nlo] = await range();
  assert.ok(nlo < 0, "normalized by default");
});

Deno.test("reproConfig names the known reproductions when a name is unknown", () => {
  assert.throws(
    () => reproConfig("ewc-split-cifar"),
    /Unknown reproduction "ewc-split-cifar".*si-split-mnist/,
  );
});

Deno.test("scaleConfig: full is the published setting, quick and tiny cut it", () => {
  const c = reproConfig("agem-permuted-mnist");
  const full = scaleConfig(c, "full");
  assert.deepEqual([full.epochs, full.benchmark.experiences, full.reductions], [1, 17, []]);
  assert.equal(full.trainPerExperience, undefined);
  const quick = scaleConfig(c, "quick");
  assert.deepEqual([quick.benchmark.experiences, quick.trainPerExperience], [3, 1000]);
  const tiny = scaleConfig(reproConfig("gdumb-split-mnist"), "tiny");
  assert.deepEqual([tiny.epochs, tiny.params.memSize, tiny.benchmark.experiences], [1, 200, 5]);
  assert.ok(tiny.reductions.some((r) => r.includes("memSize 4400 → 200")));
  assert.equal(c.params.patternsPerExperience, 250, "the configuration itself is unchanged");
  assert.throws(() => scaleConfig(c, "huge" as "full"), /Unknown mode "huge"/);
});

Deno.test("buildStrategy builds every strategy and rejects bad parameters", () => {
  for (const key of STRATEGY_KEYS) {
    const model = buildModel({ hidden: [8], outputs: key === "cope" ? 4 : 10 }, 0);
    const s = buildStrategy(key, {
      model,
      optimizer: buildOptimizer({ name: "sgd", lr: 0.01 }),
      epochs: 1,
      batchSize: 8,
    });
    assert.ok(s.name.length > 0, key);
    s.dispose();
    model.dispose();
  }
  const model = buildModel({ hidden: [8], outputs: 10 }, 0);
  const opts = {
    model,
    optimizer: buildOptimizer({ name: "sgd", lr: 0.01 }),
    epochs: 1,
    batchSize: 8,
  };
  assert.throws(
    () => buildStrategy("ewc", { ...opts, params: { lambda: "big" } }),
    /lambda must be a number/,
  );
  assert.throws(
    () => buildStrategy("replay", { ...opts, params: { storagePolicy: "fifo" } }),
    /storagePolicy/,
  );
  assert.throws(() => buildStrategy("magic" as "naive", opts), /Unknown strategy "magic"/);
  assert.throws(() => buildOptimizer({ name: "rmsprop" as "sgd", lr: 1 }), /Unknown optimizer/);
  model.dispose();
});

Deno.test("loadBenchmark cuts online experiences and subsamples", async () => {
  const { benchmark, groups } = await loadBenchmark(
    {
      name: "splitMNIST",
      experiences: 5,
      onlineExperienceSize: 10,
      fixedClassOrder: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    },
    { data: SYNTHETIC, trainPerExperience: 40, testPerExperience: 10 },
  );
  assert.equal(groups.length, 5);
  assert.deepEqual(groups.map((g) => g.length), [4, 4, 4, 4, 4]);
  assert.deepEqual(groups[1][0].classes.every((c) => c === 2 || c === 3), true);
  assert.equal(benchmark.test[0].dataset.length, 10);
  const p = await loadBenchmark({ name: "permutedMNIST", experiences: 2 }, { data: SYNTHETIC });
  assert.deepEqual(p.groups.map((g) => g.length), [1, 1]);
});

Deno.test("validationSize holds out the last ⌊f·n⌋ samples of each training experience (online replay: 0.05)", async () => {
  assert.equal(reproConfig("online-replay-split-mnist").benchmark.validationSize, 0.05);
  const spec = {
    name: "splitMNIST" as const,
    experiences: 5,
    fixedClassOrder: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  };
  const full = await loadBenchmark(spec, { data: SYNTHETIC });
  const held = await loadBenchmark({ ...spec, validationSize: 0.05 }, { data: SYNTHETIC });
  for (let k = 0; k < 5; k++) {
    const a = full.benchmark.train[k].dataset;
    const b = held.benchmark.train[k].dataset;
    const cut = Math.floor(0.05 * a.length);
    assert.ok(cut > 0);
    assert.equal(b.length, a.length - cut);
    // As Avalanche's split without shuffle: training keeps the first n − ⌊f·n⌋ samples.
    assert.deepEqual([...b.targets], [...a.targets].slice(0, a.length - cut));
    const idx = Int32Array.from({ length: b.length }, (_, i) => i);
    assert.deepEqual(b.batch(idx).x, a.batch(idx).x);
    assert.equal(held.benchmark.test[k].dataset.length, full.benchmark.test[k].dataset.length);
  }
  const online = await loadBenchmark(
    { ...spec, validationSize: 0.05, onlineExperienceSize: 10 },
    { data: SYNTHETIC },
  );
  const sizes = online.groups.map((g) => g.reduce((n, e) => n + e.dataset.length, 0));
  assert.deepEqual(sizes, held.benchmark.train.map((e) => e.dataset.length));
  await assert.rejects(
    () => loadBenchmark({ ...spec, validationSize: 1 }, { data: SYNTHETIC }),
    /validationSize must be a fraction in \[0, 1\)/,
  );
});

// --------------------------------------------------------------------- running ----

for (const config of REPRODUCTIONS) {
  Deno.test(`${config.name} runs in tiny mode and gives the result structure`, async () => {
    const before = tf.memory().numTensors;
    const r = await runReproduction(config, { mode: "tiny", data: SYNTHETIC, progress: "off" });
    const setting = scaleConfig(config, "tiny");
    const n = setting.benchmark.experiences;
    assert.equal(r.name, config.name);
    assert.equal(r.mode, "tiny");
    assert.equal(r.target, config.target);
    assert.equal(r.reached, r.accuracy >= config.target);
    assert.equal(r.matrix.length, n);
    for (const row of r.matrix) {
      assert.equal(row.length, n);
      for (const v of row) assert.ok(v >= 0 && v <= 1, `matrix value ${v}`);
    }
    assert.ok(r.accuracy >= 0 && r.accuracy <= 1);
    assert.equal(r.streamAccuracy.length, n);
    assert.equal(r.streamAccuracy[n - 1], r.accuracy);
    assert.equal(r.experiences.length, n);
    if (config.benchmark.onlineExperienceSize) {
      assert.ok(r.experiences.every((e) => e.steps > 1), "online experiences are cut into steps");
    }
    const streamRows = r.rows.filter((x) => x.metric === "accuracy" && x.experience === null);
    assert.deepEqual(streamRows.map((x) => x.trainExperience), [...Array(n).keys()]);
    assert.ok(r.seconds > 0 && r.backend === "wasm");
    assert.deepEqual(JSON.parse(JSON.stringify(r.setting)).name, config.name);
    assert.equal(tf.memory().numTensors, before, "no tensor left behind");
  });
}

Deno.test("a result's figures, verdict, files and summary", async () => {
  const r = await runReproduction("gdumb-split-mnist", {
    mode: "tiny",
    data: SYNTHETIC,
    progress: "off",
  });
  const { matrix, curves } = reproFigures(r);
  assert.ok(matrix.svg.startsWith("<svg") && curves.svg.includes("tiny"));
  assert.match(verdictText(r), /target ≥ 0\.97, ours \d\.\d{4} in a tiny run .*not comparable/);
  const v = verdict(r)[JUPYTER_DISPLAY]();
  assert.match(v["text/html"], /<table/);
  assert.match(v["text/plain"], /gdumb-split-mnist/);
  assert.match(verdictText({ ...r, mode: "full", accuracy: 0.98, reached: true }), /: reached\.$/);
  assert.match(verdictText({ ...r, mode: "full", accuracy: 0.5, reached: false }), /NOT reached/);
  assert.match(String(settingTable(r.setting)), /memSize\s+200/);

  const dir = await Deno.makeTempDir();
  try {
    const written = await saveResult(r, `${dir}/gdumb-split-mnist`, { png: true });
    assert.equal(written.length, 6);
    const png = await Deno.readFile(`${dir}/gdumb-split-mnist/accuracy_matrix.png`);
    assert.deepEqual([...png.subarray(1, 4)], [80, 78, 71]);
    const back = JSON.parse(await Deno.readTextFile(`${dir}/gdumb-split-mnist/result.json`));
    assert.equal(back.accuracy, r.accuracy);
    assert.deepEqual(back.matrix, r.matrix);
    const csv = await Deno.readTextFile(`${dir}/gdumb-split-mnist/matrix.csv`);
    assert.equal(csv.split("\n")[0], "after_experience,exp_0,exp_1,exp_2,exp_3,exp_4");
    const results = await writeSummary(dir);
    assert.deepEqual(results.map((x) => x.name), ["gdumb-split-mnist"]);
    assert.match(
      await Deno.readTextFile(`${dir}/summary.md`),
      /\| gdumb-split-mnist \| GDumb \| ≥ 0\.97 \|/,
    );
    assert.deepEqual(await loadResults(`${dir}/missing`), []);
    assert.match(String(reproSummaryTable(results)), /gdumb-split-mnist\s+GDumb/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.equal(matrixCSV([[0.5, NaN]]), "after_experience,exp_0,exp_1\n0,0.5,\n");
});

Deno.test("runProgress: a line every 10 % when not in a terminal, and the fraction of the run", async () => {
  assert.equal(
    runFraction({ experience: 1, experiences: 4, epoch: 1, epochs: 2, done: 5, total: 10 }),
    0.4375,
  );
  assert.equal(
    runFraction({
      experience: 0,
      experiences: 2,
      sub: 3,
      subs: 4,
      epoch: 0,
      epochs: 1,
      done: 1,
      total: 1,
    }),
    0.5,
  );
  const out: string[] = [];
  const r = await runReproduction("lwf-split-mnist", {
    mode: "tiny",
    data: SYNTHETIC,
    progress: "lines",
    write: (s) => out.push(s),
  });
  const text = out.join("");
  assert.match(text, /lwf-split-mnist .*100% done .* final accuracy/);
  assert.equal(text.split("\n").filter((l) => l.startsWith("after experience")).length, 5);
  assert.ok(r.accuracy >= 0);
  assert.throws(() => runProgress({ experiences: 0 }), /experiences, an integer ≥ 1/);
});

Deno.test("the comparison runs, tabulates and draws", async () => {
  const runs = await runComparison({
    data: SYNTHETIC,
    quick: true,
    strategies: ["naive", "cwrStar", "ewc"],
    scenarios: ["class", "task"],
    progress: "off",
  });
  assert.deepEqual(
    runs.map((r) => `${r.strategy.key}/${r.scenario.key}`),
    ["naive/class", "cwrStar/class", "ewc/class", "naive/task", "ewc/task"],
  );
  const t = comparisonTable(runs);
  assert.deepEqual(t.columns, [
    "strategy",
    "class-incr. accuracy",
    "class-incr. forgetting",
    "task-incr. accuracy",
    "task-incr. forgetting",
  ]);
  assert.deepEqual(t.values.map((v) => v[0]), ["Naive", "CWR*", "EWC"]);
  assert.deepEqual(t.values[1].slice(3), ["-", "-"]);
  const fig = comparisonFigure(runs);
  assert.ok(fig.svg.includes("Split MNIST, task-incremental") && fig.svg.includes("CWR*"));
});

Deno.test({
  name: "deno task repro --tiny writes the files and the summary" +
    (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)"),
  ignore: !SHARED_DATA,
  fn: async () => {
    const out = await Deno.makeTempDir();
    try {
      const res = await new Deno.Command(Deno.execPath(), {
        args: [
          "task",
          "repro",
          "--tiny",
          "online-replay-split-mnist",
          "--data",
          SHARED_DATA!,
          "--out",
          out,
          "--backend",
          "wasm",
          "--svg",
        ],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(res.stdout);
      assert.equal(res.code, 0, new TextDecoder().decode(res.stderr));
      assert.match(text, /Accuracy matrix/);
      assert.match(
        text,
        /online-replay-split-mnist\s+Replay \(online\)\s+≥ 0\.92\s+0\.\d{4}\s+n\/a\s+tiny/,
      );
      for (
        const f of [
          "result.json",
          "matrix.csv",
          "rows.csv",
          "experiences.csv",
          "accuracy_curves.svg",
        ]
      ) {
        await Deno.stat(`${out}/online-replay-split-mnist/${f}`);
      }
      await Deno.stat(`${out}/summary.md`);
      const bad = await new Deno.Command(Deno.execPath(), {
        args: ["task", "repro", "nope"],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(bad.code, 1);
      assert.match(new TextDecoder().decode(bad.stderr), /Unknown reproduction "nope"/);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

// -------------------------------------------------------------------- notebooks ----

async function fixture(name: string): Promise<Notebook> {
  return JSON.parse(
    await Deno.readTextFile(new URL(`./fixtures/notebooks/${name}`, import.meta.url)),
  ) as Notebook;
}

Deno.test("checkNotebook passes an executed notebook with its figures and tables", async () => {
  const c = checkNotebook(await fixture("executed_ok.ipynb"));
  assert.deepEqual(c.problems, []);
  assert.deepEqual([c.codeCells, c.executed, c.figures, c.tables], [3, 3, 1, 1]);
});

Deno.test("checkNotebook: the progress <pre> output is not a table; missing outputs are named", async () => {
  const nb = await fixture("executed_ok.ipynb");
  const c = checkNotebook(nb, { figures: 2, tables: 2 });
  assert.deepEqual(c.problems, [
    "1 figure(s) (image/svg+xml outputs), expected at least 2",
    "1 table(s) (text/html outputs with a <table>), expected at least 2",
  ]);
  assert.deepEqual(expectationsOf({ ...nb, metadata: {} }), { figures: 1, tables: 1 });
});

Deno.test("checkNotebook reports cell errors and cells that did not run", async () => {
  const c = checkNotebook(await fixture("executed_error.ipynb"));
  assert.deepEqual(c.errors, ["cell 1: TypeError: strategy.train is not a function"]);
  assert.ok(c.problems.includes("cells not executed: 2"));
  assert.equal(
    checkNotebook({ nbformat: 3 } as unknown as Notebook).problems[0],
    "not an nbformat 4 notebook",
  );
});

Deno.test("the committed notebooks: Deno kernel, quick-mode parameter, relative imports, expectations", async () => {
  const paths = listNotebooks();
  const names = paths.map((p) => p.slice(p.lastIndexOf("/") + 1));
  for (const want of ["quickstart.ipynb", "compare_strategies.ipynb", "cwr_star.ipynb"]) {
    assert.ok(names.includes(want), want);
  }
  for (const r of REPRODUCTIONS) {
    assert.ok(names.includes(`repro_${r.name.replaceAll("-", "_")}.ipynb`), r.name);
  }
  for (const path of paths) {
    const nb = JSON.parse(await Deno.readTextFile(path)) as Notebook;
    const where = path.slice(path.lastIndexOf("/") + 1);
    assert.equal(nb.nbformat, 4, where);
    assert.equal((nb.metadata.kernelspec as { name: string }).name, "deno", where);
    const code = nb.cells.filter((c) => c.cell_type === "code").map((c) =>
      Array.isArray(c.source) ? c.source.join("") : c.source
    );
    assert.match(code[0], /Deno\.env\.get\("PERENNIAL_QUICK"\)/, `${where}: parameter cell first`);
    assert.match(code[0], /PERENNIAL_DATA.*"\.\.\/\.\.\/shared\/datasets"/, where);
    assert.ok(code.some((c) => c.includes('from "../mod.ts"')), `${where} imports ../mod.ts`);
    assert.ok(code.every((c) => !c.includes("import.meta")), `${where}: no import.meta in cells`);
    const bare = nb.cells.map((c) => Array.isArray(c.source) ? c.source.join("") : c.source)
      .filter((s) => s.length > 0 && !s.endsWith("\n"));
    assert.equal(
      bare.length,
      0,
      `${where}: every cell source must end with a newline (without its cache, deno fmt --check ` +
        `reports such notebooks as unformatted; deno task test:notebooks --write adds them)`,
    );
    const e = expectationsOf(nb);
    assert.ok(e.figures >= 1 && e.tables >= 1, where);
    const executed = nb.cells.some((c) => (c.outputs ?? []).length > 0);
    if (executed) {
      assert.deepEqual(checkNotebook(nb).problems, [], `${where} carries a passing run`);
    }
  }
  assert.throws(
    () => selectNotebooks(paths, ["nope"]),
    /No notebook "nope": use one of .*quickstart/,
  );
  assert.equal(selectNotebooks(paths, ["quickstart"]).length, 1);
});

async function python(): Promise<string | undefined> {
  for (const py of ["/usr/bin/python3", "python3"]) {
    try {
      const r = await new Deno.Command(py, { args: ["--version"], stdout: "null", stderr: "null" })
        .output();
      if (r.success) return py;
    } catch { /* not there */ }
  }
  return undefined;
}

const PYTHON = await python();

Deno.test({
  name:
    "the executor's grace period keeps late results, display updates are counted (Python unit tests of _execute.py)" +
    (PYTHON ? "" : " (skipped: no python3)"),
  ignore: !PYTHON,
  fn: async () => {
    const r = await new Deno.Command(PYTHON!, {
      args: ["-B", "-m", "unittest", "-v", "_execute_test"],
      cwd: `${ROOT}notebooks`,
      env: { PYTHONDONTWRITEBYTECODE: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, text);
    assert.match(text, /Ran 8 tests/);
  },
});
