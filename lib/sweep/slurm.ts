/**
 * The Slurm engine: the runs of a sweep as one `sbatch` job array, one array task a run, each
 * running `lib/sweep/worker.ts --list <ids> --index $SLURM_ARRAY_TASK_ID` on a node; followed with
 * `squeue -r -t all` (and `sacct` where accounting keeps jobs the controller dropped) until every
 * task has ended; results
 * collected from the sweep folder, which must be on a filesystem the nodes share.
 *
 * @module
 */
import { join } from "node:path";
import type { SweepResources } from "./spec.ts";
import type { SweepRunPlan } from "./spec.ts";
import type { EngineOptions, EngineOutcome } from "./local.ts";
import { triage, workerCommand } from "./local.ts";
import { readStatus, runDir, writeStatus } from "./store.ts";
import { checkOptions } from "../options.ts";

/** Options of {@link runSlurm}. */
export interface SlurmOptions extends EngineOptions {
  /** Resources of each array task (the spec's, overridden by the command line's). */
  resources?: SweepResources;
  /** Print the job script and submit nothing. @default false */
  dryRun?: boolean;
  /** Seconds between two looks at the queue. @default 2 */
  pollSeconds?: number;
  /** Job name. @default "perennial-<sweep folder name>" */
  jobName?: string;
  /** More `#SBATCH` options, e.g. `["--account=lab", "--qos=short"]`. @default [] */
  sbatchArgs?: string[];
  /** Where the dry run's script (and notes) are printed. @default stdout */
  print?: (text: string) => void;
}

/** A job array ready to submit: the script, the file of run ids, and the ids. */
export interface SlurmPlan {
  script: string;
  scriptPath: string;
  listPath: string;
  ids: string[];
}

function quote(s: string): string {
  return /^[A-Za-z0-9_./=:,@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The job script of a sweep's array: one task per id of `ids` (read from `listPath` by index),
 * with the resources asked for, output files `slurm/<job>_<task>.out` in the sweep folder, and
 * the BLAS threads of each task set to its CPUs.
 *
 * @example
 * ```ts
 * import { slurmScript } from "./slurm.ts";
 * const s = slurmScript("/shared/sweep", "/shared/sweep/slurm/a.ids", 8, {
 *   resources: { cpusPerTask: 2, memMB: 2048, timeMinutes: 30, maxConcurrent: 4 },
 * });
 * console.assert(s.includes("#SBATCH --array=0-7%4") && s.includes("#SBATCH --cpus-per-task=2"));
 * console.assert(s.includes("--index \"$SLURM_ARRAY_TASK_ID\""));
 * ```
 */
export function slurmScript(
  out: string,
  listPath: string,
  count: number,
  opts: Pick<SlurmOptions, "resources" | "jobName" | "sbatchArgs" | "dataDir" | "everyEpochs"> = {},
): string {
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`A job array needs at least one run, got ${count}`);
  }
  const r = opts.resources ?? {};
  const cpus = r.cpusPerTask ?? 1;
  const name = opts.jobName ?? `perennial-${out.split("/").filter(Boolean).pop() ?? "sweep"}`;
  const { cmd, args } = workerCommand([
    "--out",
    out,
    "--list",
    listPath,
    ...(opts.dataDir ? ["--data", opts.dataDir] : []),
    ...(opts.everyEpochs ? ["--every-epochs", String(opts.everyEpochs)] : []),
  ]);
  const lines = [
    "#!/bin/bash",
    `#SBATCH --job-name=${quote(name)}`,
    `#SBATCH --array=0-${count - 1}${r.maxConcurrent ? `%${r.maxConcurrent}` : ""}`,
    `#SBATCH --cpus-per-task=${cpus}`,
    `#SBATCH --mem=${r.memMB ?? 4096}M`,
    `#SBATCH --time=${r.timeMinutes ?? 60}`,
    ...(r.partition ? [`#SBATCH --partition=${quote(r.partition)}`] : []),
    `#SBATCH --output=${quote(join(out, "slurm", "%A_%a.out"))}`,
    `#SBATCH --chdir=${quote(out)}`,
    ...(opts.sbatchArgs ?? []).map((a) => `#SBATCH ${a}`),
    "",
    "# One run of the sweep per array task; the run's files say how it went.",
    'export OPENBLAS_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
    'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
    `exec ${[cmd, ...args].map(quote).join(" ")} --index "$SLURM_ARRAY_TASK_ID"`,
    "",
  ];
  return lines.join("\n");
}

async function command(
  cmd: string,
  args: string[],
): Promise<{ code: number; out: string; err: string }> {
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        `${cmd} is not installed here: the Slurm engine needs Slurm's client commands (sbatch, ` +
          `squeue) on this machine (Debian: apt-get install slurm-client), or use --engine local`,
      );
    }
    throw e;
  }
  const d = new TextDecoder();
  return { code: result.code, out: d.decode(result.stdout), err: d.decode(result.stderr) };
}

/** States of a task that has not ended yet. */
const ACTIVE = new Set([
  "PENDING",
  "CONFIGURING",
  "RUNNING",
  "COMPLETING",
  "SUSPENDED",
  "REQUEUED",
  "REQUEUE_HOLD",
  "REQUEUE_FED",
  "RESIZING",
  "SIGNALING",
  "STAGE_OUT",
  "STOPPED",
]);

/**
 * The states of the job's tasks, index → state, finished ones included while the controller
 * keeps them (`squeue -r -t all`: one line a task; pending ones may come folded as
 * `123_[2-7%4]`). Empty once the controller no longer knows the job.
 */
async function taskStates(job: string): Promise<Map<number, string>> {
  const r = await command("squeue", ["-h", "-r", "-t", "all", "-j", job, "-o", "%i %T"]);
  const tasks = new Map<number, string>();
  if (r.code !== 0) {
    // squeue errors on a job it no longer knows ("Invalid job id specified"): all gone.
    if (/invalid job id/i.test(r.err)) return tasks;
    throw new Error(`squeue failed (exit ${r.code}): ${r.err.trim()}`);
  }
  for (const line of r.out.split("\n")) {
    const m = /^\s*(\d+)_(\d+|\[[^\]]*\])\s+(\S+)/.exec(line);
    if (!m) continue;
    if (m[2].startsWith("[")) {
      for (const part of m[2].slice(1, -1).split("%")[0].split(",")) {
        const [a, b] = part.split("-").map(Number);
        for (let i = a; i <= (b ?? a); i++) tasks.set(i, m[3]);
      }
    } else tasks.set(Number(m[2]), m[3]);
  }
  return tasks;
}

/** Final states by task from `sacct`, where accounting is on (else an empty map). */
async function accounted(job: string): Promise<Map<number, string>> {
  const states = new Map<number, string>();
  try {
    const r = await command("sacct", ["-n", "-P", "-X", "-j", job, "-o", "JobID,State,ExitCode"]);
    if (r.code !== 0) return states;
    for (const line of r.out.split("\n")) {
      const m = /^(\d+)_(\d+)\|([^|]+)\|(\S*)/.exec(line.trim());
      if (m) states.set(Number(m[2]), `${m[3].trim()} (exit ${m[4]})`);
    }
  } catch { /* no sacct: the run files are enough */ }
  return states;
}

/**
 * Runs the sweep's runs that are not done as one Slurm job array, follows it until every task
 * has left the queue, and reports each run from its files. With `dryRun`, writes nothing to the
 * queue and prints the job script instead.
 */
export async function runSlurm(
  out: string,
  plans: readonly SweepRunPlan[],
  opts: SlurmOptions = {},
): Promise<EngineOutcome[]> {
  checkOptions("runSlurm", opts, {
    dataDir: "string",
    everyEpochs: "integer",
    retryFailed: "boolean",
    onProgress: "function",
    resources: "object",
    dryRun: "boolean",
    pollSeconds: "number",
    jobName: "string",
    sbatchArgs: "array",
    print: "function",
  });
  const print = opts.print ?? ((s: string) => console.log(s));
  const start = performance.now();
  const { cached, todo } = await triage(out, plans, opts.retryFailed ?? false);
  const results: EngineOutcome[] = [...cached];
  const report = async (running: number, last?: EngineOutcome) => {
    const done =
      results.filter((r) =>
        r.outcome.state === "done" || r.outcome.state === "skipped" ||
        (r.outcome.state === "cached" && r.outcome.prior === "done")
      ).length;
    await opts.onProgress?.({
      total: plans.length,
      done,
      failed: results.length - done,
      running,
      elapsed: (performance.now() - start) / 1000,
      eta: NaN,
      ...(last ? { last } : {}),
    });
  };
  if (todo.length === 0) {
    await report(0);
    return results;
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const slurmDir = join(out, "slurm");
  await Deno.mkdir(slurmDir, { recursive: true });
  const listPath = join(slurmDir, `${stamp}.ids`);
  const scriptPath = join(slurmDir, `${stamp}.sbatch`);
  const script = slurmScript(out, listPath, todo.length, opts);
  if (opts.dryRun) {
    print(`# ${todo.length} runs; ids in ${listPath} (not written: dry run)\n${script}`);
    return results;
  }
  await Deno.writeTextFile(listPath, todo.map((p) => p.id).join("\n") + "\n");
  await Deno.writeTextFile(scriptPath, script);
  const sub = await command("sbatch", ["--parsable", scriptPath]);
  if (sub.code !== 0) {
    throw new Error(
      `sbatch refused the job array (exit ${sub.code}): ${sub.err.trim() || sub.out.trim()}`,
    );
  }
  const job = sub.out.trim().split(";")[0];
  if (!/^\d+$/.test(job)) throw new Error(`sbatch answered "${sub.out.trim()}", not a job id`);
  await Deno.writeTextFile(join(slurmDir, `${stamp}.job`), job + "\n");
  const pending = new Map(todo.map((p, i) => [i, p]));
  const poll = (opts.pollSeconds ?? 2) * 1000;
  const running = (states: Map<number, string>) =>
    [...pending.keys()].filter((k) => states.get(k) === "RUNNING").length;
  while (pending.size > 0) {
    const states = await taskStates(job);
    for (const [i, p] of [...pending]) {
      const st = states.get(i);
      const s = await readStatus(out, p.id);
      const finished = s?.state === "done" || s?.state === "failed";
      if (!finished && st !== undefined && ACTIVE.has(st)) continue;
      if (!finished) {
        // squeue may not list a task right after submission: give it a few seconds.
        if (st === undefined && performance.now() - start < 10_000) continue;
        const why = st ?? (await accounted(job)).get(i) ?? "no longer known to Slurm";
        const error = `its Slurm task ${job}_${i} ended (${why}) without finishing the run; ` +
          `see ${join(slurmDir, `${job}_${i}.out`)}`;
        await writeStatus(out, p.id, {
          attempts: 0,
          completions: 0,
          ...s,
          state: "failed",
          error,
        });
        await Deno.remove(join(runDir(out, p.id), "lock")).catch(() => {});
      }
      const now = await readStatus(out, p.id);
      pending.delete(i);
      const outcome = now?.state === "done"
        ? { state: "skipped" as const, reason: "done" as const }
        : { state: "failed" as const, error: now?.error ?? "unknown" };
      const o: EngineOutcome = { id: p.id, label: p.label, seed: p.seed, outcome };
      results.push(o);
      await report(running(states), o);
    }
    if (pending.size > 0) {
      await report(running(states));
      await new Promise((r) => setTimeout(r, poll));
    }
  }
  const at = new Map(plans.map((p, i) => [p.id, i]));
  return results.sort((a, b) => at.get(a.id)! - at.get(b.id)!);
}
