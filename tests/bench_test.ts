// Tests of the performance bench (`deno task bench`): a reduced run on real Fashion-MNIST from
// ../shared/datasets, strategy-name checking, and the comparison with the PyTorch reference.
// No timing is asserted: only that the figures exist and are sane.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { syntheticImages } from "../datasets/mod.ts";
import {
  BENCH_STRATEGIES,
  BENCH_WORKLOAD,
  type BenchResult,
  compareWithTorch,
  median,
  resolveStrategies,
  runBench,
  type TorchOutput,
} from "../lib/bench/workload.ts";
import { naive } from "../lib/strategy/strategies.ts";
import {
  defaultDataDir,
  residentFlag,
  runTorchReference,
  TORCH_REF,
  TORCH_REF_REPLAY,
  torchAvailable,
  torchScriptFor,
} from "../lib/cli/bench.ts";

const SHARED = fileURLToPath(new URL("../../shared/datasets", import.meta.url));
const HAVE_FMNIST = existsSync(`${SHARED}/fashion-mnist/train-images-idx3-ubyte.gz`);
if (!HAVE_FMNIST) {
  console.warn(`bench test on real data skipped: ${SHARED}/fashion-mnist is absent`);
}

/** Runs `fn` and restores the tfjs backend that was active before. */
async function keepBackend<T>(fn: () => Promise<T>): Promise<T> {
  const before = tf.getBackend();
  try {
    return await fn();
  } finally {
    if (before && tf.getBackend() !== before) await tf.setBackend(before);
  }
}

function checkResult(r: BenchResult, trainLimit: number, testLimit: number): void {
  for (
    const k of [
      "train_samples_per_s",
      "new_samples_per_s",
      "eval_samples_per_s",
      "train_wall_s",
      "eval_wall_s",
      "wall_s",
      "peak_rss_mb",
      "data_load_s",
    ] as const
  ) {
    assert.ok(Number.isFinite(r[k]) && r[k] > 0, `${k} = ${r[k]} should be a positive number`);
  }
  assert.equal(typeof r.backend, "string");
  assert.ok(r.backend.length > 0);
  assert.equal(r.seed, 0);
  assert.equal(r.batch, BENCH_WORKLOAD.batchSize);
  assert.equal(r.eval_batch, BENCH_WORKLOAD.evalBatchSize);
  assert.deepEqual(r.train_sizes, [trainLimit, trainLimit, trainLimit, trainLimit, trainLimit]);
  assert.deepEqual(r.test_sizes, [testLimit, testLimit, testLimit, testLimit, testLimit]);
  assert.equal(r.samples_seen, 5 * trainLimit, "naive trains on each sample once per epoch");
  assert.equal(r.new_samples_seen, 5 * trainLimit);
  assert.equal(r.eval_samples, 5 * 5 * testLimit, "whole test stream after each experience");
  // Medians of several runs need not add up; each single run's times do.
  for (const run of r.runs ?? [r]) {
    assert.ok(run.wall_s >= run.train_wall_s + run.eval_wall_s - 1e-3);
  }
  assert.equal(r.acc_matrix.length, 5);
  for (const row of r.acc_matrix) {
    assert.equal(row.length, 5);
    for (const v of row) assert.ok(v >= 0 && v <= 1, `accuracy ${v} outside [0, 1]`);
  }
  const last = r.acc_matrix[4];
  assert.ok(Math.abs(r.final_avg_acc - last.reduce((a, b) => a + b, 0) / 5) < 1e-3);
  assert.equal(r.tensors_leaked, 0, "the run must free every tensor it made");
  assert.equal(r.tensors_end, r.tensors_start);
  assert.equal(r.quick, true);
  assert.equal(r.train_limit, trainLimit);
  assert.equal(r.test_limit, testLimit);
  assert.doesNotThrow(() => JSON.parse(JSON.stringify(r)));
}

Deno.test({
  name: `runBench: a reduced run on real Fashion-MNIST${
    HAVE_FMNIST ? "" : " (skipped: ../shared/datasets/fashion-mnist absent)"
  }`,
  ignore: !HAVE_FMNIST,
  fn: () =>
    keepBackend(async () => {
      const lines: string[] = [];
      const results = await runBench({
        strategies: ["naive"],
        dataDir: SHARED,
        trainLimit: 256,
        testLimit: 100,
        log: (s) => lines.push(s),
      });
      assert.equal(results.length, 1);
      const [r] = results;
      assert.equal(r.strategy, "naive");
      assert.equal(r.benchmark, "SplitFMNIST");
      checkResult(r, 256, 100);
      assert.equal(r.runs, undefined, "no per-run list for a single run");
      // Class-incremental naive fine-tuning: after experience i, only experience i is known.
      assert.ok(r.acc_matrix[0][0] > 0.5, `first experience learnt: ${r.acc_matrix[0][0]}`);
      assert.ok(lines.some((l) => l.includes("exp 5/5")), "status lines reach the log");
    }),
});

Deno.test({
  name: `runBench: derpp and erace, a reduced run on real Fashion-MNIST${
    HAVE_FMNIST ? "" : " (skipped: ../shared/datasets/fashion-mnist absent)"
  }`,
  ignore: !HAVE_FMNIST,
  fn: () =>
    keepBackend(async () => {
      // 300 samples an experience: the 500-sample memories fill over the stream, and ER-ACE
      // replays (once its memory holds 128 samples) from the second experience on.
      const results = await runBench({
        strategies: ["derpp", "erace"],
        dataDir: SHARED,
        trainLimit: 300,
        testLimit: 100,
      });
      assert.deepEqual(results.map((r) => r.strategy), ["derpp", "erace"]);
      const [d, e] = results;
      const steps = 3; // ceil(300 / 128) minibatches an experience
      for (const r of results) {
        assert.equal(r.tensors_leaked, 0, `${r.strategy} must free every tensor it made`);
        assert.equal(r.new_samples_seen, 5 * 300);
        assert.equal(r.acc_matrix.length, 5);
        assert.ok(r.train_samples_per_s > 0 && r.eval_samples_per_s > 0);
        assert.ok(r.acc_matrix[0][0] > 0.5, `${r.strategy} learns the first experience`);
      }
      // DER++'s buffer minibatches are extra forward passes, not samples of the minibatch.
      assert.equal(d.samples_seen, 5 * 300);
      // ER-ACE: 128 memory samples follow each minibatch of experiences 2 to 5.
      assert.equal(e.samples_seen, 5 * 300 + 4 * steps * 128);
    }),
});

Deno.test("torchScriptFor: derpp and erace run in torch_ref_replay.py, the others in torch_ref.py", () => {
  assert.equal(torchScriptFor("derpp"), TORCH_REF_REPLAY);
  assert.equal(torchScriptFor("erace"), TORCH_REF_REPLAY);
  for (const s of ["naive", "replay", "ewc", "lwf"]) assert.equal(torchScriptFor(s), TORCH_REF);
  assert.ok(existsSync(TORCH_REF_REPLAY), "the reference is kept in the repository");
  assert.ok(TORCH_REF_REPLAY.endsWith("lib/bench/torch_ref_replay.py"));
  // Strategies of both scripts are not one reference run.
  return assert.rejects(
    runTorchReference({ strategies: ["naive", "derpp"], dataDir: "/x", seed: 0, epochs: 1 }),
    /two scripts/,
  );
});

const HAVE_TORCH = HAVE_FMNIST && await torchAvailable();
if (HAVE_FMNIST && !HAVE_TORCH) console.warn("torch_ref_replay.py test skipped: no torch");

Deno.test({
  name:
    `torch_ref_replay.py: the bench's invocation on a reduced workload prints torch_ref.py's fields${
      HAVE_TORCH ? "" : " (skipped: no torch or no Fashion-MNIST)"
    }`,
  ignore: !HAVE_TORCH,
  fn: async () => {
    // runTorchReference's arguments, then the script's own quick-run limits.
    const out = await runTorchReference({
      strategies: ["derpp", "erace"],
      dataDir: `${SHARED}/fashion-mnist`,
      seed: 0,
      epochs: 1,
      script: TORCH_REF_REPLAY,
      extraArgs: ["--train-limit", "300", "--test-limit", "100"],
    });
    assert.ok(out.peak_rss_mb! > 0);
    assert.deepEqual(out.train_sizes, [300, 300, 300, 300, 300]);
    assert.deepEqual(out.results.map((r) => r.strategy), ["derpp", "erace"]);
    const [d, e] = out.results;
    for (const r of out.results) {
      for (
        const k of [
          "train_wall_s",
          "train_samples_per_s",
          "new_samples_per_s",
          "eval_wall_s",
          "final_avg_acc",
        ]
      ) {
        assert.ok(typeof r[k] === "number" && (r[k] as number) > 0, `${r.strategy} ${k}`);
      }
      assert.equal(r.new_samples_seen, 1500);
      assert.equal(r.eval_samples, 5 * 500);
      assert.equal(r.optimizer_steps, 15);
      assert.equal(r.acc_matrix.length, 5);
    }
    // The same counting as ours (see the reduced run above).
    assert.equal(d.samples_seen, 1500);
    assert.equal(d.buffer_forward_samples, 14 * 2 * 128);
    assert.equal(e.samples_seen, 1500 + 4 * 3 * 128);
  },
});

Deno.test("runBench: repeats report medians and every run, with no tensor leak", () =>
  keepBackend(async () => {
    // Synthetic 10-class images keep this test independent of the real files.
    const split = syntheticImages({ n: 600, classes: 10, seed: 1 });
    const calls: string[] = [];
    const results = await runBench({
      data: { name: "fashion-mnist", train: split, test: split, classes: 10 },
      backend: "cpu",
      trainLimit: 40,
      testLimit: 20,
      repeats: 3, // odd: the median is one run's value, so rounding commutes with it
      // --torch runs the reference here, between our runs.
      afterRun: (strategy, repeat) => {
        calls.push(`${strategy}#${repeat}`);
      },
    });
    assert.deepEqual(
      calls,
      Object.keys(BENCH_STRATEGIES).flatMap((n) => [0, 1, 2].map((i) => `${n}#${i}`)),
    );
    const [r] = results;
    checkResult(r, 40, 20);
    assert.equal(r.backend, "cpu");
    assert.equal(r.repeats, 3);
    assert.equal(r.runs?.length, 3);
    for (const run of r.runs!) assert.equal(run.tensors_leaked, 0);
    assert.equal(
      r.train_samples_per_s,
      Math.round(median(r.runs!.map((x) => x.train_samples_per_s)) * 10) / 10,
    );
    // Same seed, same run: the same accuracies each time.
    assert.equal(r.runs![0].final_avg_acc, r.runs![1].final_avg_acc);
    assert.equal(r.runs![0].final_avg_acc, r.runs![2].final_avg_acc);
  }));

Deno.test("runBench: resident streams (the default) give the same results as bytes", () =>
  keepBackend(async () => {
    const split = syntheticImages({ n: 400, classes: 10, seed: 3 });
    const run = (resident?: ("train" | "test")[]) =>
      runBench({
        data: { name: "fashion-mnist", train: split, test: split, classes: 10 },
        backend: "wasm",
        strategies: ["naive"],
        trainLimit: 30,
        testLimit: 25,
        resident,
      });
    const [held] = await run();
    const [bytes] = await run([]);
    const [test] = await run(["test"]);
    assert.deepEqual(held.resident_streams, ["train", "test"]);
    assert.deepEqual(bytes.resident_streams, []);
    assert.deepEqual(test.resident_streams, ["test"]);
    assert.deepEqual(held.acc_matrix, bytes.acc_matrix);
    assert.deepEqual(test.acc_matrix, bytes.acc_matrix);
    assert.equal(held.eval_samples, bytes.eval_samples);
    assert.equal(held.tensors_leaked, 0, "the resident tensors are freed after each run");
  }));

Deno.test("runBench: an unknown strategy name is an error naming it and the available ones", async () => {
  await assert.rejects(
    () => runBench({ strategies: ["naive", "nosuch"], backend: "cpu" }),
    (e: Error) => {
      assert.ok(e instanceof RangeError);
      assert.match(e.message, /"nosuch"/);
      for (const name of Object.keys(BENCH_STRATEGIES)) assert.ok(e.message.includes(name));
      return true;
    },
  );
  assert.throws(() => resolveStrategies([]), /No strategy to run/);
  assert.deepEqual(resolveStrategies(undefined), Object.keys(BENCH_STRATEGIES));
  assert.deepEqual(resolveStrategies([" naive "]), ["naive"]);
});

Deno.test("runBench: a strategy is one entry of the table", () =>
  keepBackend(async () => {
    const split = syntheticImages({ n: 300, classes: 10, seed: 2 });
    let built = 0;
    const results = await runBench({
      data: { name: "fashion-mnist", train: split, test: split, classes: 10 },
      backend: "cpu",
      trainLimit: 20,
      testLimit: 10,
      factories: {
        mine: (model, opts) => {
          built++;
          assert.equal(opts.batchSize, 128);
          assert.equal(opts.evalBatchSize, 256);
          assert.ok((opts.plugins ?? []).length > 0, "the RSS sampler is passed on");
          return naive({ ...opts, model, name: "Mine" });
        },
      },
    });
    assert.equal(built, 1);
    assert.deepEqual(results.map((r) => r.strategy), ["mine"]);
    assert.equal(results[0].tensors_leaked, 0);
  }));

Deno.test("compareWithTorch: ratios against the reference's medians", () => {
  const ours = {
    strategy: "naive",
    backend: "wasm",
    train_samples_per_s: 20000,
    eval_samples_per_s: 50000,
    final_avg_acc: 0.2,
    peak_rss_mb: 300,
    quick: false,
  } as BenchResult;
  const ref = (train: number, evalS: number, rss?: number): TorchOutput => ({
    torch: "1.13",
    torch_num_threads: 1,
    peak_rss_mb: rss,
    results: [{
      strategy: "naive",
      train_samples_per_s: train,
      new_samples_per_s: train,
      train_wall_s: 60000 / train,
      eval_wall_s: evalS,
      eval_samples: 50000,
      final_avg_acc: 0.1993,
      acc_matrix: [[1]],
    }],
  });
  const [c] = compareWithTorch([ours], [ref(40000, 0.5, 500), ref(50000, 1, 600), ref(80000, 2)]);
  assert.equal(c.reference, "torch");
  assert.equal(c.strategy, "naive");
  assert.equal(c.train_samples_per_s, 50000);
  assert.equal(c.eval_samples_per_s, 50000);
  assert.equal(c.ratio_train, 0.4);
  assert.equal(c.ratio_eval, 1);
  assert.equal(c.acc_diff, 0.0007);
  assert.equal(c.torch_runs, 3);
  // Peak memory: the largest of the reference's runs that measured it.
  assert.equal(c.peak_rss_mb, 600);
  assert.equal(c.ratio_rss, 0.5);
  assert.equal(compareWithTorch([ours], [ref(1, 1)])[0].ratio_rss, null);
  assert.deepEqual(compareWithTorch([{ ...ours, strategy: "other" }], [ref(1, 1)]), []);
  assert.deepEqual(compareWithTorch([ours], []), []);
});

Deno.test({
  name:
    "runTorchReference adds the reference process's peak RSS to its JSON; a failing script is an error",
  ignore: !existsSync("/usr/bin/python3"),
  fn: async () => {
    const dir = Deno.makeTempDirSync();
    try {
      const ok = `${dir}/ok.py`;
      // Holds 80 MiB while printing its JSON, as torch_ref.py prints its results.
      Deno.writeTextFileSync(
        ok,
        'import json, sys\nblock = bytearray(80 * 1024 * 1024)\nfor i in range(0, len(block), 4096): block[i] = 1\nprint(json.dumps({"torch": "fake", "argv": sys.argv[1:], "results": []}))\n',
      );
      const out = await runTorchReference({
        strategies: ["naive", "lwf"],
        dataDir: "/nowhere",
        seed: 3,
        epochs: 1,
        script: ok,
      });
      assert.equal(out.torch, "fake");
      assert.deepEqual((out as { argv?: string[] }).argv?.slice(0, 2), [
        "--strategies",
        "naive,lwf",
      ]);
      assert.ok(out.peak_rss_mb! >= 80, `peak ${out.peak_rss_mb} MiB`);
      const bad = `${dir}/bad.py`;
      Deno.writeTextFileSync(bad, "import sys\nsys.exit(3)\n");
      await assert.rejects(
        runTorchReference({
          strategies: ["naive"],
          dataDir: "/x",
          seed: 0,
          epochs: 1,
          script: bad,
        }),
        /exited with code 3/,
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("defaultDataDir: the flag, else PERENNIAL_DATA, else ../shared/datasets when present", () => {
  const prev = Deno.env.get("PERENNIAL_DATA");
  try {
    assert.equal(defaultDataDir("/given"), "/given");
    Deno.env.set("PERENNIAL_DATA", "/from-env");
    assert.equal(defaultDataDir(undefined), "/from-env");
    Deno.env.delete("PERENNIAL_DATA");
    const shared = fileURLToPath(new URL("../../shared/datasets", import.meta.url));
    assert.equal(defaultDataDir(undefined), existsSync(shared) ? shared : undefined);
  } finally {
    if (prev === undefined) Deno.env.delete("PERENNIAL_DATA");
    else Deno.env.set("PERENNIAL_DATA", prev);
  }
});

Deno.test("--resident: the streams named, none, or an error naming the value", () => {
  assert.deepEqual(residentFlag(undefined), ["train", "test"]);
  assert.deepEqual(residentFlag("test"), ["test"]);
  assert.deepEqual(residentFlag("train, test,train"), ["train", "test"]);
  assert.deepEqual(residentFlag("none"), []);
  assert.throws(
    () => residentFlag("valid"),
    /--resident takes train, test, train,test or none, got "valid"/,
  );
  assert.throws(() => residentFlag(","), /got ","/);
});
