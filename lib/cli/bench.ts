/**
 * `deno task bench`: the performance benchmark, the same work as the PyTorch reference script
 * `torch_ref.py` of the shared bench folder beside the repository (class-incremental Split
 * Fashion-MNIST, 5 experiences of 2 classes in the order 0..9, MLP 784-400-400-10, SGD lr 0.01
 * momentum 0.9, batch 128, 1 epoch, eval batch 256 on the whole test stream after each
 * experience).
 *
 * Prints one JSON line per strategy on stdout (status lines go to stderr): samples/s of training
 * (replayed included) and of new samples, evaluation samples/s, wall times, final average accuracy,
 * the accuracy matrix, peak RSS and the live-tensor balance.
 *
 * Flags: --data DIR (default $PERENNIAL_DATA, else a shared datasets folder beside the repository
 * when present, else the cache / a verified download), --strategies a,b (default: all), --backend
 * auto|webgpu|blas|wasm|cpu|node, --repeats N (medians, every run under `runs`), --seed 0, --epochs 1,
 * --train-limit N / --test-limit N (subsample per experience, for a quick run: marked `quick`),
 * --torch (also run torch_ref.py, for derpp and erace lib/bench/torch_ref_replay.py, when
 * /usr/bin/python3 has torch, right after each of our runs of the same strategy so that the two
 * alternate, and print the ratios and its peak RSS),
 * --resident train,test|test|train|none (the streams held as float32 tensors made before each
 * run, as the reference makes its own; default both, `none` converts the bytes per minibatch).
 *
 * `--model slimresnet18|resnet32` measures the vision workload instead (lib/bench/vision.ts: the
 * ResNet trained and evaluated on CIFAR-shaped inputs at each of `--batches`, default 10,128;
 * with `--torch`, `torch_ref_resnet.py` runs the same work at 1 and 2 threads and the ratios
 * against its best setting of each batch size are printed).
 *
 * `--sweep` measures the sweep engine instead: the workload's naive and replay runs for seeds
 * 0..3 (8 runs, `--seeds` to change), first one after another in this process (the inline
 * engine), then through the local engine's worker processes (`--workers`, default the cores;
 * `--threads` BLAS threads each, default cores / workers); prints both wall times, their ratio,
 * and whether every run gave the same numbers both ways.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { defaultCacheDir } from "../../datasets/mod.ts";
import { type BackendName, BACKENDS, setBackend } from "../backend.ts";
import {
  BENCH_STRATEGIES,
  compareWithTorch,
  resolveStrategies,
  runBench,
  type TorchOutput,
} from "../bench/workload.ts";
import { intFlag, intListFlag } from "./args.ts";
import { runVisionBench } from "../bench/vision.ts";
import { BENCH_WORKLOAD } from "../bench/workload.ts";
import { sweep, type SweepRun, type SweepSpec } from "../sweep/mod.ts";

export {
  BENCH_STRATEGIES,
  BENCH_WORKLOAD,
  type BenchOptions,
  type BenchResult,
  type BenchRun,
  compareWithTorch,
  runBench,
  type StrategyFactory,
  type TorchComparison,
  type TorchOutput,
} from "../bench/workload.ts";

const USAGE = `Usage: deno task bench [--data DIR] [--strategies ${
  Object.keys(BENCH_STRATEGIES).join(",")
}]
       [--backend auto|webgpu|blas|wasm|cpu|node] [--repeats 1] [--seed 0] [--epochs 1]
       [--train-limit N] [--test-limit N] [--resident train,test|none] [--torch]
       deno task bench --sweep [--seeds 0,1,2,3] [--workers N] [--threads N] [--backend blas]
       deno task bench --model slimresnet18|resnet32 [--batches 10,128] [--backend ...] [--torch]`;

/** Interpreter that runs the PyTorch reference. */
export const PYTHON = "/usr/bin/python3";
/** The folder named `shared` beside the repository's root: datasets and the PyTorch reference. */
export const SHARED_DIR: string = fileURLToPath(new URL("../../../shared", import.meta.url));
/** The PyTorch reference script. */
export const TORCH_REF: string = join(SHARED_DIR, "bench", "torch_ref.py");
/** The PyTorch reference of the strategies `torch_ref.py` lacks (DER++, ER-ACE), kept here. */
export const TORCH_REF_REPLAY: string = fileURLToPath(
  new URL("../bench/torch_ref_replay.py", import.meta.url),
);
/** The PyTorch reference of the vision workload (`--model`), beside lib/bench/vision.ts. */
export const TORCH_REF_RESNET: string = fileURLToPath(
  new URL("../bench/torch_ref_resnet.py", import.meta.url),
);
/** Strategies whose reference is {@link TORCH_REF_REPLAY}; the others' is {@link TORCH_REF}. */
export const TORCH_REF_REPLAY_STRATEGIES: readonly string[] = Object.freeze(["derpp", "erace"]);

/** The reference script that runs `strategy`. */
export function torchScriptFor(strategy: string): string {
  return TORCH_REF_REPLAY_STRATEGIES.includes(strategy) ? TORCH_REF_REPLAY : TORCH_REF;
}

const encoder = new TextEncoder();
const err = (s: string) => Deno.stderr.writeSync(encoder.encode(s + "\n"));

/**
 * The data folder: `explicit`, else env `PERENNIAL_DATA`, else the `datasets` folder of
 * {@link SHARED_DIR} when it exists, else undefined (the loader's cache, then a verified download).
 */
export function defaultDataDir(explicit?: string): string | undefined {
  if (explicit) return explicit;
  let env: string | undefined;
  try {
    env = Deno.env.get("PERENNIAL_DATA") || undefined;
  } catch { /* no --allow-env */ }
  if (env) return env;
  const shared = join(SHARED_DIR, "datasets");
  return existsSync(shared) ? shared : undefined;
}

/** The folder holding Fashion-MNIST's `.gz` files for the PyTorch references, or undefined. */
export function fashionMnistDir(dataDir: string | undefined): string | undefined {
  const candidates = dataDir ? [join(dataDir, "fashion-mnist"), dataDir] : [];
  candidates.push(join(defaultCacheDir(), "fashion-mnist"));
  return candidates.find((d) => existsSync(join(d, "train-images-idx3-ubyte.gz")));
}

/** True when `/usr/bin/python3 -c "import torch"` succeeds. */
export async function torchAvailable(python = PYTHON): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(python, {
      args: ["-c", "import torch"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

/**
 * Python that runs the script `sys.argv[1]` with the remaining arguments, captures the JSON it
 * prints and prints it again with `peak_rss_mb`, the process's peak resident memory.
 */
export const RSS_WRAPPER = `
import contextlib, io, json, resource, runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
buf = io.StringIO()
code = 0
try:
    with contextlib.redirect_stdout(buf):
        runpy.run_path(script, run_name="__main__")
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
text = buf.getvalue()
if code:
    sys.stdout.write(text)
    sys.exit(code)
out = json.loads(text)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out["peak_rss_mb"] = round(rss / (1048576 if sys.platform == "darwin" else 1024), 1)
print(json.dumps(out))
`;

/**
 * Runs the reference once and parses its JSON (its stderr goes to ours), with the peak RSS of
 * its process added as `peak_rss_mb`. The script is `script`, else the one of the strategies
 * ({@link torchScriptFor}; strategies of both scripts in one call are an error).
 */
export async function runTorchReference(opts: {
  strategies: readonly string[];
  dataDir: string;
  seed: number;
  epochs: number;
  python?: string;
  script?: string;
  /** Further arguments for the script (e.g. `torch_ref_replay.py`'s `--train-limit N`). */
  extraArgs?: readonly string[];
}): Promise<TorchOutput> {
  const scripts = [...new Set(opts.strategies.map(torchScriptFor))];
  if (!opts.script && scripts.length > 1) {
    throw new RangeError(
      `${opts.strategies.join(", ")}: their PyTorch references are two scripts (` +
        `${TORCH_REF_REPLAY_STRATEGIES.join(", ")} run in torch_ref_replay.py); run them apart`,
    );
  }
  const script = opts.script ?? scripts[0] ?? TORCH_REF;
  const args = [
    script,
    "--strategies",
    opts.strategies.join(","),
    "--data",
    opts.dataDir,
    "--seed",
    String(opts.seed),
    "--epochs",
    String(opts.epochs),
    ...(opts.extraArgs ?? []),
  ];
  // Run through a small wrapper that adds the process's peak RSS to the script's JSON.
  const out = await new Deno.Command(opts.python ?? PYTHON, {
    args: ["-c", RSS_WRAPPER, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) {
    throw new Error(`${script} exited with code ${out.code}`);
  }
  const text = new TextDecoder().decode(out.stdout);
  try {
    return JSON.parse(text) as TorchOutput;
  } catch (e) {
    throw new Error(
      `${script} printed no valid JSON (${(e as Error).message}): ${text.slice(0, 200)}`,
    );
  }
}

/** The streams of `--resident` (default both; `none` for neither). */
export function residentFlag(v: string | undefined): ("train" | "test")[] {
  if (v === undefined) return ["train", "test"];
  if (v.trim() === "none") return [];
  const names = v.split(",").map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => n !== "train" && n !== "test");
  if (bad.length || names.length === 0) {
    throw new RangeError(
      `--resident takes train, test, train,test or none, got "${v}"`,
    );
  }
  return [...new Set(names)] as ("train" | "test")[];
}

function checkBackend(v: string | undefined): BackendName {
  const b = v ?? "auto";
  if (!(BACKENDS as readonly string[]).includes(b)) {
    throw new RangeError(`--backend must be one of ${BACKENDS.join(", ")}, got "${b}"`);
  }
  return b as BackendName;
}

/**
 * Where the PyTorch reference can run: the Fashion-MNIST folder for its scripts, or undefined
 * after saying on stderr why it cannot (no script for one of `strategies`, no torch, no data).
 */
async function torchDataDir(
  dataDir: string | undefined,
  strategies: readonly string[],
): Promise<string | undefined> {
  for (const script of new Set(strategies.map(torchScriptFor))) {
    if (!existsSync(script)) {
      err(`--torch: ${script} is absent; skipping the PyTorch reference`);
      return undefined;
    }
  }
  if (!(await torchAvailable())) {
    err(
      `--torch: ${PYTHON} cannot import torch; skipping the PyTorch reference ` +
        `(Debian: apt-get install -y --no-install-recommends python3-torch python3-numpy)`,
    );
    return undefined;
  }
  const fm = fashionMnistDir(dataDir);
  if (!fm) err(`--torch: no Fashion-MNIST .gz files found for the reference; pass --data DIR`);
  return fm;
}

/** The bench workload's naive and replay runs as a sweep (see `--sweep`). */
export function benchSweepSpec(seeds: readonly number[], backend: BackendName): SweepSpec {
  const w = BENCH_WORKLOAD;
  return {
    name: "bench-sweep",
    benchmark: {
      name: "splitFashionMNIST",
      experiences: w.experiences,
      fixedClassOrder: [...w.classOrder],
    },
    model: { hidden: [...w.hidden], outputs: w.outputs },
    optimizer: { name: "sgd", lr: w.lr, momentum: w.momentum },
    epochs: w.epochs,
    batchSize: w.batchSize,
    strategies: [
      { strategy: "naive", label: "naive" },
      // As the bench's replay: 500 samples, experience-balanced, 128 replayed per minibatch.
      {
        strategy: "replay",
        label: "replay",
        params: { memSize: 500, storagePolicy: "experienceBalanced", batchSizeMem: 128 },
      },
    ],
    seeds: [...seeds],
    backend,
  };
}

/** What `bench --sweep` prints. */
export interface SweepBenchLine {
  bench: "sweep";
  runs: number;
  backend: BackendName;
  cores: number;
  workers: number | null;
  threads: number | null;
  inline_wall_s: number;
  local_wall_s: number;
  /** local / inline wall time (the target is ≤ 0.7 on two cores). */
  ratio: number;
  /** Every run gave the same accuracy matrix in both engines. */
  identical: boolean;
  final_accuracy: Record<string, number>;
}

/** Runs the workload's sweep inline and through the local engine (see `--sweep`). */
export async function sweepBench(opts: {
  seeds: readonly number[];
  backend: BackendName;
  dataDir?: string;
  workers?: number;
  threads?: number;
}): Promise<SweepBenchLine> {
  const spec = benchSweepSpec(opts.seeds, opts.backend);
  const tmp = await Deno.makeTempDir({ prefix: "perennial-bench-sweep-" });
  try {
    const time = async (engine: "inline" | "local"): Promise<[number, SweepRun[]]> => {
      err(`bench --sweep: ${engine} engine, ${spec.strategies.length * opts.seeds.length} runs`);
      const t0 = performance.now();
      const runs = await sweep(spec, {
        out: join(tmp, engine),
        engine,
        dataDir: opts.dataDir,
        progress: "lines",
        ...(engine === "local" && opts.workers ? { workers: opts.workers } : {}),
        ...(engine === "local" && opts.threads ? { threads: opts.threads } : {}),
      });
      const failed = runs.filter((r) => r.state !== "done");
      if (failed.length) {
        throw new Error(`bench --sweep: ${failed.length} run(s) failed: ${failed[0].error}`);
      }
      return [(performance.now() - t0) / 1000, runs];
    };
    const [inlineS, a] = await time("inline");
    const [localS, b] = await time("local");
    const same = a.every((r, i) => JSON.stringify(r.matrix) === JSON.stringify(b[i].matrix));
    const finals: Record<string, number> = {};
    for (const r of a) finals[`${r.label}/${r.seed}`] = Number(r.accuracy.toFixed(4));
    return {
      bench: "sweep",
      runs: a.length,
      backend: opts.backend,
      cores: navigator.hardwareConcurrency,
      workers: opts.workers ?? null,
      threads: opts.threads ?? null,
      inline_wall_s: Number(inlineS.toFixed(2)),
      local_wall_s: Number(localS.toFixed(2)),
      ratio: Number((localS / inlineS).toFixed(3)),
      identical: same,
      final_accuracy: finals,
    };
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      data: { type: "string" },
      strategies: { type: "string" },
      backend: { type: "string" },
      repeats: { type: "string" },
      seed: { type: "string" },
      epochs: { type: "string" },
      "train-limit": { type: "string" },
      "test-limit": { type: "string" },
      torch: { type: "boolean" },
      resident: { type: "string" },
      sweep: { type: "boolean" },
      model: { type: "string" },
      batches: { type: "string" },
      seeds: { type: "string" },
      workers: { type: "string" },
      threads: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.model) {
    const batches = intListFlag("batches", values.batches, [10, 128]);
    const info = await setBackend(
      values.backend === undefined ? "auto" : checkBackend(values.backend),
    );
    err(
      `perennial bench: ${values.model} on CIFAR-shaped inputs, batches ${batches.join(", ")}, ` +
        `backend ${info.name}`,
    );
    const ours = await runVisionBench({ model: values.model, batches, log: err });
    for (const r of ours) console.log(JSON.stringify(r));
    if (values.torch) {
      if (!(await torchAvailable())) {
        err(`--torch: ${PYTHON} cannot import torch; skipping the PyTorch reference`);
        return;
      }
      err(`torch_ref_resnet.py ${values.model} (threads 1 and 2, the best of each batch size)`);
      const out = await new Deno.Command(PYTHON, {
        args: [TORCH_REF_RESNET, "--model", values.model, "--batches", batches.join(",")],
        stdout: "piped",
        stderr: "inherit",
      }).output();
      if (!out.success) throw new Error(`torch_ref_resnet.py exited with code ${out.code}`);
      const ref = JSON.parse(new TextDecoder().decode(out.stdout)) as {
        best: Record<
          string,
          { train_samples_per_s: number; eval_samples_per_s: number; threads: number }
        >;
        torch: string;
      };
      for (const r of ours) {
        const t = ref.best[String(r.batch)];
        console.log(JSON.stringify({
          reference: "torch",
          model: r.model,
          batch: r.batch,
          torch: ref.torch,
          torch_threads: t.threads,
          torch_train_samples_per_s: t.train_samples_per_s,
          torch_eval_samples_per_s: t.eval_samples_per_s,
          ratio_train: Number((r.train_samples_per_s / t.train_samples_per_s).toFixed(3)),
          ratio_eval: Number((r.eval_samples_per_s / t.eval_samples_per_s).toFixed(3)),
        }));
      }
    }
    return;
  }
  if (values.sweep) {
    const seeds = values.seeds === undefined
      ? [0, 1, 2, 3]
      : values.seeds.split(",").map((v) => intFlag("seeds", v.trim(), 0, 0));
    const line = await sweepBench({
      seeds,
      backend: values.backend === undefined ? "blas" : checkBackend(values.backend),
      dataDir: defaultDataDir(values.data),
      ...(values.workers ? { workers: intFlag("workers", values.workers, 1) } : {}),
      ...(values.threads ? { threads: intFlag("threads", values.threads, 1) } : {}),
    });
    console.log(JSON.stringify(line));
    return;
  }
  const strategies = resolveStrategies(values.strategies?.split(","));
  const backend = checkBackend(values.backend);
  const repeats = intFlag("repeats", values.repeats, 1);
  const seed = intFlag("seed", values.seed, 0, 0);
  const epochs = intFlag("epochs", values.epochs, 1);
  const optional = (name: string, v: string | undefined) =>
    v === undefined ? undefined : intFlag(name, v, 0, 1);
  const trainLimit = optional("train-limit", values["train-limit"]);
  const testLimit = optional("test-limit", values["test-limit"]);
  const dataDir = defaultDataDir(values.data);
  err(
    `perennial bench: ${strategies.join(", ")} on Split Fashion-MNIST` +
      ` (data ${dataDir ?? "cache/download"}${trainLimit ? `, train limit ${trainLimit}` : ""}` +
      `${testLimit ? `, test limit ${testLimit}` : ""}, repeats ${repeats})`,
  );
  // With --torch, the reference runs right after each of our runs, on the same strategy: the two
  // alternate, so a change in the machine's load touches both sides alike.
  const torchDir = values.torch ? await torchDataDir(dataDir, strategies) : undefined;
  if (torchDir && (trainLimit || testLimit)) {
    err(`--torch: note: the reference runs the full workload while this run is reduced`);
  }
  const torchRuns: TorchOutput[] = [];
  const results = await runBench({
    strategies,
    backend,
    dataDir,
    repeats,
    seed,
    epochs,
    trainLimit,
    testLimit,
    resident: residentFlag(values.resident),
    log: (s) => err(s),
    afterRun: torchDir
      ? async (strategy, r) => {
        const script = torchScriptFor(strategy).split("/").pop();
        err(`${script} ${strategy} run ${r + 1}/${repeats} (data ${torchDir})`);
        torchRuns.push(
          await runTorchReference({ strategies: [strategy], dataDir: torchDir, seed, epochs }),
        );
      }
      : undefined,
  });
  for (const r of results) console.log(JSON.stringify(r));
  for (const line of compareWithTorch(results, torchRuns)) console.log(JSON.stringify(line));
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`error: ${(e as Error).message ?? e}`);
    console.error(USAGE);
    Deno.exit(1);
  }
}
