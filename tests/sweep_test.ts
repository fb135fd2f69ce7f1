import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../lib/backend.ts";
import {
  expandSweep,
  loadSweep,
  readIndex,
  runDir,
  runId,
  slurmScript,
  sweep,
  type SweepSpec,
} from "../lib/sweep/mod.ts";
import { readStatus } from "../lib/sweep/store.ts";
import { compareRuns } from "../lib/notebook/plots.ts";
import { groupSummary, groupSummaryMarkdown, summaryTable } from "../lib/notebook/tables.ts";
import { SHARED_DATA } from "./_helpers.ts";
import { loadSeedsResults, reproConfig, runReproduction, writeSummary } from "../lib/repro/mod.ts";
import { reproSeeds, writeSeedsResults } from "../lib/sweep/repro.ts";

await setBackend("blas");

const ROOT = new URL("..", import.meta.url).pathname;

/** A small sweep: Naive and Replay on Split MNIST subsets, two seeds. */
function smallSpec(name = "small"): SweepSpec {
  return {
    name,
    benchmark: { name: "splitMNIST", experiences: 5 },
    model: { hidden: [64], outputs: 10 },
    optimizer: { name: "sgd", lr: 0.05 },
    epochs: 1,
    batchSize: 32,
    trainPerExperience: 200,
    testPerExperience: 100,
    strategies: [
      { strategy: "naive", label: "Naive" },
      { strategy: "replay", label: "Replay", params: { memSize: 100 } },
    ],
    seeds: [0, 1],
    backend: "blas",
  };
}

const withData = { ignore: !SHARED_DATA };
const skipped = SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)";

// ------------------------------------------------------------------------------ specs ----

Deno.test("expandSweep: strategies × settings × grid × seeds, resolved, with stable ids", () => {
  const spec: SweepSpec = {
    ...smallSpec(),
    grid: { "optimizer.lr": [0.01, 0.1] },
    strategies: [
      { strategy: "naive" },
      { strategy: "replay", grid: { "params.memSize": [100, 200] } },
    ],
    seeds: [0, 1, 2],
  };
  const runs = expandSweep(spec);
  assert.equal(runs.length, (2 + 4) * 3);
  assert.deepEqual(runs.slice(0, 3).map((r) => [r.label, r.seed]), [
    ["naive lr=0.01", 0],
    ["naive lr=0.01", 1],
    ["naive lr=0.01", 2],
  ]);
  const r = runs.find((r) => r.label === "replay lr=0.1 memSize=200" && r.seed === 2)!;
  assert.equal(r.config.experiment.optimizer.lr, 0.1);
  assert.equal(r.config.experiment.params.memSize, 200);
  assert.deepEqual(r.setting, { "optimizer.lr": 0.1, "params.memSize": 200 });
  assert.equal(new Set(runs.map((r) => r.id)).size, runs.length);
  // The id is the configuration's: key order does not matter, any change does.
  const again = expandSweep(JSON.parse(JSON.stringify(spec)));
  assert.deepEqual(again.map((r) => r.id), runs.map((r) => r.id));
  const c = r.config;
  const { seed, backend, ...others } = c;
  const reordered = JSON.parse(JSON.stringify({ seed, backend, ...others }));
  assert.equal(runId(reordered), r.id);
  assert.notEqual(runId({ ...c, backend: "wasm" }), r.id);
  assert.notEqual(
    runId({ ...c, experiment: { ...c.experiment, epochs: 2 } }),
    r.id,
  );
});

Deno.test("expandSweep rejects bad specs with the value and the fix", () => {
  const base = smallSpec();
  assert.throws(() => expandSweep({ ...base, seeds: [] }), /seeds must be a non-empty list/);
  assert.throws(() => expandSweep({ ...base, seeds: [-1] }), /seed -1 is not an integer ≥ 0/);
  assert.throws(
    () => expandSweep({ ...base, grid: { "optimiser.lr": [0.1] } }),
    /unknown setting "optimiser.lr": a path starts with one of benchmark/,
  );
  assert.throws(
    () => expandSweep({ ...base, grid: { "optimizer.lr": [] } }),
    /grid "optimizer.lr" must be a non-empty list/,
  );
  assert.throws(
    () => expandSweep({ ...base, strategies: [{ strategy: "replai" as "replay" }] }),
    /unknown strategy "replai": use one of naive/,
  );
  assert.throws(
    () => expandSweep({ ...base, strategies: [{ strategy: "naive" }, { strategy: "naive" }] }),
    /have the same configuration: remove one of them/,
  );
  assert.throws(
    () => expandSweep({ ...base, seed: [0] } as unknown as SweepSpec),
    /unknown option "seed" \(did you mean "seeds"\?\)/,
  );
  assert.throws(() => expandSweep({ ...base, name: "a b" }), /use letters, digits/);
});

Deno.test("slurmScript: one array task per run, resources, BLAS threads = CPUs", () => {
  const s = slurmScript("/shared/sw", "/shared/sw/slurm/x.ids", 3, {
    resources: { cpusPerTask: 2, memMB: 1500, timeMinutes: 20, partition: "debug" },
    dataDir: "/data",
    everyEpochs: 1,
  });
  for (
    const line of [
      "#SBATCH --array=0-2",
      "#SBATCH --cpus-per-task=2",
      "#SBATCH --mem=1500M",
      "#SBATCH --time=20",
      "#SBATCH --partition=debug",
      "#SBATCH --output=/shared/sw/slurm/%A_%a.out",
      'export OPENBLAS_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
    ]
  ) assert.ok(s.includes(line), line);
  assert.match(
    s,
    /worker\.ts --out \/shared\/sw --list \/shared\/sw\/slurm\/x\.ids --data \/data --every-epochs 1 --index "\$SLURM_ARRAY_TASK_ID"/,
  );
  assert.throws(() => slurmScript("/x", "/x/l", 0), /at least one run/);
});

// --------------------------------------------------------------------------- engines ----

Deno.test({
  name: "the local engine's workers give the inline engine's numbers; a rerun skips what is done" +
    skipped,
  ...withData,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "perennial-sweep-" });
    try {
      const tensors = tf.memory().numTensors;
      const inline = await sweep(smallSpec(), {
        out: join(tmp, "inline"),
        engine: "inline",
        dataDir: SHARED_DATA,
        progress: "off",
      });
      assert.equal(tf.memory().numTensors, tensors, "inline runs leave no tensor behind");
      const local = await sweep(smallSpec(), {
        out: join(tmp, "local"),
        engine: "local",
        workers: 2,
        threads: 1,
        dataDir: SHARED_DATA,
        progress: "off",
      });
      assert.deepEqual(inline.map((r) => r.state), ["done", "done", "done", "done"]);
      assert.deepEqual(local.map((r) => r.id), inline.map((r) => r.id));
      assert.deepEqual(local.map((r) => r.matrix), inline.map((r) => r.matrix));
      assert.deepEqual(local.map((r) => r.accuracy), inline.map((r) => r.accuracy));
      assert.ok(inline[2].accuracy > inline[0].accuracy + 0.1, "Replay beats Naive");
      // Each run's folder: config, status, rows, result, its last checkpoint.
      const dir = runDir(join(tmp, "local"), local[0].id);
      const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      for (const f of ["config.json", "status.json", "rows.jsonl", "result.json", "log.txt"]) {
        assert.ok(names.includes(f), `${f} in ${names}`);
      }
      assert.ok(names.some((n) => /^checkpoint-\d+\.safetensors$/.test(n)));
      assert.equal(local[0].rows.filter((r) => r.metric === "accuracy").length > 0, true);
      // Without resume, a folder holding a sweep is refused; with it, nothing runs again.
      await assert.rejects(
        sweep(smallSpec(), { out: join(tmp, "local"), progress: "off", dataDir: SHARED_DATA }),
        /already holds the sweep "small" \(4 of 4 runs done\): pass resume/,
      );
      const again = await sweep(smallSpec(), {
        out: join(tmp, "local"),
        resume: true,
        dataDir: SHARED_DATA,
        progress: "off",
      });
      assert.deepEqual(again.map((r) => r.attempts), [1, 1, 1, 1]);
      assert.deepEqual(again.map((r) => r.accuracy), local.map((r) => r.accuracy));
      // A third seed: only its two runs are new.
      const more = await sweep({ ...smallSpec(), seeds: [0, 1, 2] }, {
        out: join(tmp, "local"),
        resume: true,
        dataDir: SHARED_DATA,
        progress: "off",
      });
      assert.equal(more.length, 6);
      assert.deepEqual(more.map((r) => r.attempts), [1, 1, 1, 1, 1, 1]);

      // Mean ± std over seeds, in a table and a figure.
      const groups = groupSummary(more, { by: ["label"] });
      assert.deepEqual(groups.map((g) => [g.keys.label, g.n]), [["Naive", 3], ["Replay", 3]]);
      const accs = more.filter((r) => r.label === "Replay").map((r) => r.accuracy);
      const mean = accs.reduce((a, b) => a + b, 0) / 3;
      assert.ok(Math.abs(groups[1].accuracy.mean - mean) < 1e-12);
      assert.match(
        groupSummaryMarkdown(groups, ["label"]),
        /\| Replay \| 3 \| 0\.\d{4} ± 0\.\d{4} \|/,
      );
      const table = summaryTable(more, { by: ["label"] });
      assert.deepEqual(table.columns.slice(0, 4), [
        "label",
        "n",
        "finalAccuracy",
        "finalAccuracyStd",
      ]);
      const fig = compareRuns(more, { by: ["label"] });
      assert.match(fig.svg, /Naive \(n=3\)/);
      assert.match(fig.svg, /fill-opacity="0.18" aria-label="area"/, "the ± std bands");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "a failing run is reported with its error, not retried, and the others finish" + skipped,
  ...withData,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "perennial-sweep-" });
    try {
      const spec: SweepSpec = {
        ...smallSpec("failing"),
        seeds: [0],
        strategies: [
          { strategy: "naive", label: "Naive" },
          // memSize 0 is refused when the strategy is built, inside the run.
          { strategy: "replay", label: "Broken", params: { memSize: 0 } },
        ],
      };
      const runs = await sweep(spec, {
        out: tmp,
        engine: "local",
        workers: 2,
        dataDir: SHARED_DATA,
        progress: "off",
      });
      assert.deepEqual(runs.map((r) => r.state), ["done", "failed"]);
      assert.match(runs[1].error!, /memSize/);
      const again = await sweep(spec, {
        out: tmp,
        resume: true,
        dataDir: SHARED_DATA,
        progress: "off",
      });
      assert.deepEqual(again.map((r) => r.attempts), [1, 1], "not retried");
      const retried = await sweep(spec, {
        out: tmp,
        resume: true,
        retryFailed: true,
        engine: "inline",
        dataDir: SHARED_DATA,
        progress: "off",
      });
      assert.equal(retried[1].attempts, 2);
      assert.equal(retried[1].state, "failed");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

/** Runs `deno task sweep` in its own process group; resolves with its exit status. */
function sweepCommand(args: string[]): Deno.ChildProcess {
  return new Deno.Command("setsid", {
    args: [Deno.execPath(), "task", "--quiet", "sweep", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
}

Deno.test({
  name: "a sweep killed with kill -9 and run again with --resume ends with the same table, " +
    "no run done twice" + skipped,
  ...withData,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "perennial-sweep-" });
    try {
      const spec: SweepSpec = {
        ...smallSpec("killed"),
        epochs: 3,
        trainPerExperience: 400,
        checkpointEveryEpochs: 1,
        seeds: [0, 1, 2],
      };
      const specPath = join(tmp, "spec.json");
      await Deno.writeTextFile(specPath, JSON.stringify(spec));
      const common = ["--data", SHARED_DATA!, "--workers", "2", "--progress", "lines"];
      // The reference: uninterrupted.
      const ref = sweepCommand([specPath, "--out", join(tmp, "ref"), ...common]);
      assert.equal((await ref.output()).code, 0);
      // Killed (the engine and its workers, as a crash would) once a run has checkpointed.
      const out = join(tmp, "killed");
      const child = sweepCommand([specPath, "--out", out, ...common]);
      const deadline = Date.now() + 120_000;
      let killedAt = "";
      while (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        const index = await readIndex(out).catch(() => undefined);
        if (!index) continue;
        const states = await Promise.all(index.runs.map((r) => readStatus(out, r.id)));
        const done = states.filter((s) => s?.state === "done").length;
        const checkpointed = index.runs.some((r) =>
          [...Deno.readDirSync(runDir(out, r.id))].some((e) => e.name.startsWith("checkpoint-")) &&
          states[index.runs.indexOf(r)]?.state === "running"
        );
        if (done >= 1 && checkpointed) {
          killedAt = `${done} done`;
          break;
        }
      }
      assert.ok(killedAt, "the sweep got far enough to be killed mid-run");
      Deno.kill(-child.pid, "SIGKILL");
      await child.output();
      const resumed = sweepCommand([specPath, "--out", out, "--resume", ...common]);
      const r = await resumed.output();
      assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
      const a = await loadSweep(join(tmp, "ref"));
      const b = await loadSweep(out);
      assert.deepEqual(b.map((x) => x.matrix), a.map((x) => x.matrix), `killed at ${killedAt}`);
      // The same table (training times aside, which no two runs share).
      const table = (runs: typeof a) =>
        groupSummary(runs, { by: ["label"] }).map((g) => [
          g.keys.label,
          g.n,
          g.accuracy,
          g.finalAccuracy,
          g.forgetting,
          g.bwt,
        ]);
      assert.deepEqual(table(b), table(a));
      assert.ok(await Deno.stat(join(out, "summary.md")));
      const statuses = await Promise.all(b.map((x) => readStatus(out, x.id)));
      const why = `killed at ${killedAt}; statuses ${JSON.stringify(statuses)}`;
      assert.deepEqual(
        statuses.map((s) => s!.completions),
        b.map(() => 1),
        `no run done twice: ${why}`,
      );
      assert.ok(
        statuses.some((s) => s!.resumed),
        `a killed run resumed from its checkpoint: ${why}`,
      );
      assert.ok(
        statuses.some((s) => s!.attempts === 1 && !s!.resumed),
        `a done run was kept: ${why}`,
      );
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

/** Why the Slurm test cannot run here, or undefined when a cluster answers. */
async function slurmMissing(): Promise<string | undefined> {
  try {
    const r = await new Deno.Command("sinfo", {
      args: ["-h", "-o", "%T"],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    if (!r.success) return "sinfo failed: no Slurm controller answers (.ci/slurm.sh starts one)";
    const states = new TextDecoder().decode(r.stdout).trim();
    return /idle|mix|alloc/.test(states)
      ? undefined
      : `no usable Slurm node (sinfo: ${states || "none"})`;
  } catch {
    return "Slurm is not installed (.ci/slurm.sh installs a one-node cluster)";
  }
}

const noSlurm = await slurmMissing();

Deno.test({
  name: "the Slurm engine: one job array, every run equal to the local engine's run" +
    (noSlurm ? ` (skipped: ${noSlurm})` : skipped),
  ignore: noSlurm !== undefined || !SHARED_DATA,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "perennial-sweep-slurm-" });
    try {
      const spec: SweepSpec = { ...smallSpec("slurm"), seeds: [0, 1] };
      const printed: string[] = [];
      await sweep(spec, {
        out: join(tmp, "dry"),
        engine: "slurm",
        dataDir: SHARED_DATA,
        progress: "off",
        slurm: { dryRun: true, print: (s) => printed.push(s) },
      });
      assert.match(printed.join(""), /#SBATCH --array=0-3\n/);
      const slurm = await sweep(spec, {
        out: join(tmp, "slurm"),
        engine: "slurm",
        dataDir: SHARED_DATA,
        progress: "off",
        slurm: { pollSeconds: 0.5, resources: { cpusPerTask: 1, memMB: 2000, timeMinutes: 10 } },
      });
      assert.deepEqual(
        slurm.map((r) => r.state),
        ["done", "done", "done", "done"],
        String(slurm[0].error),
      );
      const local = await sweep(spec, {
        out: join(tmp, "local"),
        engine: "local",
        workers: 2,
        threads: 1,
        dataDir: SHARED_DATA,
        progress: "off",
      });
      assert.deepEqual(slurm.map((r) => r.matrix), local.map((r) => r.matrix));
      const outs = [...Deno.readDirSync(join(tmp, "slurm", "slurm"))].map((e) => e.name);
      assert.equal(outs.filter((n) => /^\d+_\d\.out$/.test(n)).length, 4, outs.join(" "));
      // Run again: nothing is submitted.
      const again = await sweep(spec, {
        out: join(tmp, "slurm"),
        engine: "slurm",
        resume: true,
        dataDir: SHARED_DATA,
        progress: "off",
      });
      assert.deepEqual(again.map((r) => r.attempts), [1, 1, 1, 1]);
      assert.equal(
        [...Deno.readDirSync(join(tmp, "slurm", "slurm"))].filter((e) => e.name.endsWith(".sbatch"))
          .length,
        1,
      );
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "reproductions over seeds: one run per (reproduction, seed), mean ± std in summary.md" +
    skipped,
  ...withData,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "perennial-repro-seeds-" });
    try {
      const configs = [reproConfig("derpp-split-mnist"), reproConfig("icarl-split-mnist")];
      const results = await reproSeeds(configs, {
        mode: "tiny",
        seeds: [0, 1],
        out: join(tmp, "runs"),
        engine: "local",
        workers: 2,
        backend: "blas",
        dataDir: SHARED_DATA,
      });
      assert.deepEqual(results.map((r) => [r.name, r.n, r.mode]), [
        ["derpp-split-mnist", 2, "tiny"],
        ["icarl-split-mnist", 2, "tiny"],
      ]);
      const [a, b] = results[0].seeds.map((s) => s.accuracy);
      assert.ok(Math.abs(results[0].mean - (a + b) / 2) < 1e-12);
      assert.ok(Math.abs(results[0].std - Math.abs(a - b) / Math.SQRT2) < 1e-12);
      // Seed 0 is the single-seed reproduction's run.
      const single = await runReproduction("derpp-split-mnist", {
        mode: "tiny",
        seed: 0,
        dataDir: SHARED_DATA,
        progress: "off",
      });
      assert.equal(single.accuracy, a);
      await writeSeedsResults(join(tmp, "results"), results);
      await writeSummary(join(tmp, "results"));
      const md = await Deno.readTextFile(join(tmp, "results", "summary.md"));
      assert.match(md, /## Over seeds/);
      assert.match(
        md,
        /\| derpp-split-mnist \| DER\+\+ \| ≥ 0\.88 \| 0\.\d{4} ± 0\.\d{4} \| 2 \| 0: /,
      );
      assert.deepEqual((await loadSeedsResults(join(tmp, "results"))).length, 2);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
