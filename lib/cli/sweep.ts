/**
 * `deno task sweep`: runs a sweep (many seeds and settings) from a spec file, on this machine's
 * cores or on a Slurm cluster, and prints the mean ± std table.
 *
 * ```text
 * deno task sweep SPEC --out DIR [--engine local|inline|slurm] [--resume] [--retry-failed]
 *                 [--workers N] [--threads N] [--data DIR]
 *                 [--dry-run] [--cpus N] [--mem MB] [--time MIN] [--partition P]
 *                 [--max-concurrent N] [--poll S]
 *                 [--by label,strategy] [--progress auto|terminal|lines|off]
 * deno task sweep --summary DIR [--by label] [--format text|md|csv]
 * ```
 *
 * SPEC is a JSON file or a module whose default export (or `spec`) is a `SweepSpec`. After the
 * runs, `DIR/summary.md` and `DIR/summary.csv` hold the table (mean ± std over seeds of each
 * group of `--by`, default the run's label). Exit status 1 when a run failed.
 *
 * @module
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { intFlag, numberFlag } from "./args.ts";
import { defaultDataDir } from "./repro.ts";
import { loadSweep, type SweepEngine, type SweepSpec } from "../sweep/mod.ts";
import { sweep } from "../sweep/mod.ts";
import type { SweepProgressMode } from "../sweep/progress.ts";
import {
  groupSummary,
  groupSummaryColumns,
  groupSummaryMarkdown,
  toText,
} from "../notebook/tables.ts";
import type { SweepRun } from "../sweep/store.ts";

const USAGE = `Usage: deno task sweep SPEC --out DIR [--engine local|inline|slurm] [--resume]
         [--retry-failed] [--workers N] [--threads N] [--data DIR] [--dry-run]
         [--cpus N] [--mem MB] [--time MIN] [--partition P] [--max-concurrent N] [--poll S]
         [--by label,strategy] [--progress auto|terminal|lines|off]
       deno task sweep --summary DIR [--by label] [--format text|md|csv]`;

/** Reads a sweep spec from a JSON file or a module (default export, or `spec`). */
export async function readSpec(path: string): Promise<SweepSpec> {
  const abs = resolve(path);
  if (abs.endsWith(".json")) {
    try {
      return JSON.parse(await Deno.readTextFile(abs)) as SweepSpec;
    } catch (e) {
      throw new Error(`Cannot read the sweep spec ${abs}: ${(e as Error).message}`);
    }
  }
  const mod = await import(pathToFileURL(abs).href) as { default?: SweepSpec; spec?: SweepSpec };
  const spec = mod.default ?? mod.spec;
  if (!spec) {
    throw new Error(`${abs} exports no sweep spec: export it as default (or as "spec")`);
  }
  return spec;
}

/** The summary of a sweep's runs in a format: aligned text, Markdown or CSV. */
export function summaryText(
  runs: readonly SweepRun[],
  by: readonly string[],
  format: "text" | "md" | "csv",
): string {
  const done = runs.filter((r) => r.state === "done");
  const groups = groupSummary(done, { by });
  if (format === "md") return groupSummaryMarkdown(groups, by);
  const { columns, values } = groupSummaryColumns(groups, by);
  if (format === "csv") {
    const cell = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
    return [columns, ...values].map((r) => r.map(cell).join(",")).join("\n") + "\n";
  }
  return toText({ columns, values }) + "\n";
}

function failedText(runs: readonly SweepRun[]): string {
  return runs.filter((r) => r.state === "failed").map((r) =>
    `failed: ${r.label} (seed ${r.seed}, run ${r.id}): ${r.error ?? "unknown error"}`
  ).join("\n");
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      out: { type: "string" },
      engine: { type: "string" },
      resume: { type: "boolean" },
      "retry-failed": { type: "boolean" },
      workers: { type: "string" },
      threads: { type: "string" },
      data: { type: "string" },
      "dry-run": { type: "boolean" },
      cpus: { type: "string" },
      mem: { type: "string" },
      time: { type: "string" },
      partition: { type: "string" },
      "max-concurrent": { type: "string" },
      poll: { type: "string" },
      by: { type: "string" },
      progress: { type: "string" },
      summary: { type: "string" },
      format: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const by = (values.by ?? "label").split(",").map((s) => s.trim()).filter(Boolean);
  const format = (values.format ?? "text") as "text" | "md" | "csv";
  if (!["text", "md", "csv"].includes(format)) {
    throw new RangeError(`--format must be text, md or csv, got "${values.format}"`);
  }
  if (values.summary) {
    const runs = await loadSweep(values.summary);
    Deno.stdout.writeSync(new TextEncoder().encode(summaryText(runs, by, format)));
    const failed = failedText(runs);
    if (failed) console.error(failed);
    return 0;
  }
  if (positionals.length !== 1) throw new RangeError(`Give one sweep spec file.\n${USAGE}`);
  if (!values.out) throw new RangeError(`--out DIR is required: the sweep's folder.\n${USAGE}`);
  const engine = (values.engine ?? "local") as SweepEngine;
  if (!["local", "inline", "slurm"].includes(engine)) {
    throw new RangeError(`--engine must be local, inline or slurm, got "${values.engine}"`);
  }
  const progress = (values.progress ?? "auto") as SweepProgressMode;
  if (!["auto", "terminal", "lines", "off"].includes(progress)) {
    throw new RangeError(
      `--progress must be auto, terminal, lines or off, got "${values.progress}"`,
    );
  }
  const spec = await readSpec(positionals[0]);
  const dataDir = defaultDataDir(values.data);
  const resources = {
    ...(values.cpus ? { cpusPerTask: intFlag("cpus", values.cpus, 1) } : {}),
    ...(values.mem ? { memMB: intFlag("mem", values.mem, 4096) } : {}),
    ...(values.time ? { timeMinutes: intFlag("time", values.time, 60) } : {}),
    ...(values.partition ? { partition: values.partition } : {}),
    ...(values["max-concurrent"]
      ? { maxConcurrent: intFlag("max-concurrent", values["max-concurrent"], 1) }
      : {}),
  };
  if (values["dry-run"] && engine !== "slurm") {
    throw new RangeError("--dry-run prints the Slurm job script: use it with --engine slurm");
  }
  const runs = await sweep(spec, {
    out: values.out,
    engine,
    resume: values.resume ?? false,
    retryFailed: values["retry-failed"] ?? false,
    ...(values.workers ? { workers: intFlag("workers", values.workers, 1) } : {}),
    ...(values.threads ? { threads: intFlag("threads", values.threads, 1) } : {}),
    ...(dataDir ? { dataDir } : {}),
    progress,
    slurm: {
      resources,
      dryRun: values["dry-run"] ?? false,
      ...(values.poll ? { pollSeconds: numberFlag("poll", values.poll, 2) } : {}),
    },
  });
  if (values["dry-run"]) return 0;
  const out = resolve(values.out);
  await Deno.writeTextFile(`${out}/summary.md`, summaryText(runs, by, "md"));
  await Deno.writeTextFile(`${out}/summary.csv`, summaryText(runs, by, "csv"));
  console.log(summaryText(runs, by, format === "text" ? "text" : format));
  const failed = failedText(runs);
  if (failed) {
    console.error(failed);
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    console.error(`sweep: ${(e as Error).message}`);
    Deno.exit(2);
  }
}
