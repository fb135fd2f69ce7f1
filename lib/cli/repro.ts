/**
 * `deno task repro`: reproduces published continual-learning results (settings and targets of
 * ContinualAI's continual-learning-baselines, `lib/repro/configs.ts`) from the terminal, with a
 * progress bar; writes `result.json`, CSV files and PNG figures under `<out>/<name>/`, and a
 * summary table (target, ours, reached?) on stdout and in `<out>/summary.{csv,md}`.
 *
 * Full runs go to `results/` (committed: the numbers the README quotes); `--quick` and `--tiny`
 * runs go to `runs/repro-quick/` and `runs/repro-tiny/` (git-ignored), unless `--out` says
 * otherwise.
 *
 * Flags: `--all`, `--list`, `--quick` / `--tiny` (reduced runs), `--data DIR` (default
 * $PERENNIAL_DATA, else a shared datasets folder beside the repository when present, else the
 * cache or a verified download), `--out DIR`, `--seed 0`, `--backend auto|node|webgpu|blas|wasm|cpu`,
 * `--svg` (figures as SVG instead of PNG), `--check` (exit 1 when a full run misses its target),
 * `--seeds 0,1,2` (every reproduction for each seed through the sweep engine: `--engine
 * local|inline|slurm`, `--workers N`, `--threads N`; runs cached in `runs/repro-seeds/<mode>/`,
 * mean ± std per reproduction in `<out>/seeds.json` and `<out>/summary.md`).
 *
 * @module
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type BackendName, BACKENDS, setBackend } from "../backend.ts";
import { formatMatrix, intFlag } from "./args.ts";
import {
  reproConfig,
  REPRODUCTIONS,
  type ReproMode,
  type ReproResult,
  reproSummaryTable,
  runReproduction,
  saveResult,
  scaleConfig,
  seedsTable,
  targetText,
  verdictText,
  writeSummary,
} from "../repro/mod.ts";
import { reproSeeds, writeSeedsResults } from "../sweep/repro.ts";
import { sweepProgress } from "../sweep/progress.ts";

const USAGE = `Usage: deno task repro <name...> | --all | --list
       [--quick | --tiny] [--data DIR] [--out DIR] [--seed 0 | --seeds 0,1,2]
       [--engine local|inline|slurm] [--workers N] [--threads N]
       [--backend auto|node|webgpu|blas|wasm|cpu] [--svg] [--check]
Reproductions: ${REPRODUCTIONS.map((r) => r.name).join(", ")}`;

/** The repository root. */
const ROOT: string = fileURLToPath(new URL("../..", import.meta.url));

/** Default output folder of each mode, relative to the repository root. */
export const DEFAULT_OUT: Readonly<Record<ReproMode, string>> = {
  full: "results",
  quick: "runs/repro-quick",
  tiny: "runs/repro-tiny",
};

/**
 * The data folder: the flag, else $PERENNIAL_DATA, else the shared datasets folder beside the
 * repository when it holds MNIST.
 */
export function defaultDataDir(flag?: string): string | undefined {
  if (flag) return flag;
  const env = Deno.env.get("PERENNIAL_DATA");
  if (env) return env;
  const shared = `${ROOT}../shared/datasets`;
  return existsSync(`${shared}/mnist`) ? shared : undefined;
}

function listText(): string {
  const lines = REPRODUCTIONS.map((r) => {
    const q = scaleConfig(r, "quick");
    return `${r.name.padEnd(26)} target ${targetText(r)}  ${r.title}\n` +
      `${"".padEnd(26)} quick: ${q.reductions.join("; ")}`;
  });
  return lines.join("\n");
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      all: { type: "boolean" },
      list: { type: "boolean" },
      quick: { type: "boolean" },
      tiny: { type: "boolean" },
      data: { type: "string" },
      out: { type: "string" },
      seed: { type: "string" },
      backend: { type: "string" },
      svg: { type: "boolean" },
      check: { type: "boolean" },
      seeds: { type: "string" },
      engine: { type: "string" },
      workers: { type: "string" },
      threads: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.list) {
    console.log(listText());
    return 0;
  }
  if (values.quick && values.tiny) throw new RangeError("--quick and --tiny exclude each other");
  const mode: ReproMode = values.quick ? "quick" : values.tiny ? "tiny" : "full";
  if (values.all && positionals.length) {
    throw new RangeError("Give reproduction names or --all, not both");
  }
  if (!values.all && positionals.length === 0) {
    throw new RangeError("Name the reproductions to run, or pass --all (--list shows them)");
  }
  const configs = values.all ? REPRODUCTIONS : positionals.map((n) => reproConfig(n));
  // Without --seed, each reproduction runs at its baseline's seed (0 unless its config says).
  const seed = values.seed === undefined ? undefined : intFlag("seed", values.seed, 0, 0);
  const backendName = (values.backend ?? "auto") as BackendName;
  if (!BACKENDS.includes(backendName)) {
    throw new RangeError(`--backend must be one of ${BACKENDS.join(", ")}, got "${backendName}"`);
  }
  const out = values.out ?? `${ROOT}${DEFAULT_OUT[mode]}`;
  const dataDir = defaultDataDir(values.data);
  if (values.seeds !== undefined) {
    if (values.seed !== undefined) throw new RangeError("--seed and --seeds exclude each other");
    const seeds = values.seeds.split(",").map((v) => intFlag("seeds", v.trim(), 0, 0));
    const engine = (values.engine ?? "local") as "local" | "inline" | "slurm";
    if (!["local", "inline", "slurm"].includes(engine)) {
      throw new RangeError(`--engine must be local, inline or slurm, got "${values.engine}"`);
    }
    const sweepDir = `${ROOT}runs/repro-seeds/${mode}`;
    console.log(
      `perennial repro: ${configs.length} reproduction(s) × seeds ${seeds.join(", ")}, ${mode} ` +
        `mode, ${engine} engine, runs in ${sweepDir}, summary in ${out}`,
    );
    const results = await reproSeeds(configs, {
      mode,
      seeds,
      out: sweepDir,
      engine,
      backend: backendName,
      ...(dataDir ? { dataDir } : {}),
      ...(values.workers ? { workers: intFlag("workers", values.workers, 1) } : {}),
      ...(values.threads ? { threads: intFlag("threads", values.threads, 1) } : {}),
      onProgress: sweepProgress(`repro-${mode}`, "auto"),
    });
    await writeSeedsResults(out, results);
    await writeSummary(out);
    console.log(`\nOver seeds (${mode} mode; ${out}/summary.md):`);
    console.log(String(seedsTable(results)));
    for (const r of results) {
      for (const s of r.seeds) {
        if (s.error) console.error(`${r.name} seed ${s.seed} failed: ${s.error}`);
      }
    }
    const missed = results.filter((r) => r.mode === "full" && !r.reached);
    if (values.check && missed.length) {
      console.error(`targets missed: ${missed.map((r) => r.name).join(", ")}`);
      return 1;
    }
    return results.some((r) => r.n < r.seeds.length) ? 1 : 0;
  }
  const backend = await setBackend(backendName);
  console.log(
    `perennial repro: ${configs.length} reproduction(s), ${mode} mode, backend ${backend.name}, ` +
      `data ${dataDir ?? "(cache or download)"}, results in ${out}`,
  );
  const results: ReproResult[] = [];
  for (const config of configs) {
    const setting = scaleConfig(config, mode);
    console.log(`\n== ${config.name}: ${config.title}`);
    if (setting.reductions.length) console.log(`   ${mode} mode: ${setting.reductions.join("; ")}`);
    const result = await runReproduction(config, { mode, dataDir, seed });
    const dir = `${out}/${config.name}`;
    await saveResult(result, dir, { png: !values.svg });
    console.log("Accuracy matrix (row: after training experience i; column: test experience j)");
    console.log(formatMatrix(result.matrix));
    console.log(`${verdictText(result)} (${result.seconds.toFixed(1)} s; written to ${dir})`);
    results.push(result);
  }
  await writeSummary(out);
  console.log(`\nSummary (${mode} mode; ${out}/summary.md has every result there):`);
  console.log(String(reproSummaryTable(results)));
  const missed = results.filter((r) => r.mode === "full" && !r.reached);
  if (values.check && missed.length) {
    console.error(`targets missed: ${missed.map((r) => r.name).join(", ")}`);
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    console.error(`error: ${(e as Error).message ?? e}`);
    console.error(USAGE);
    Deno.exit(1);
  }
}
