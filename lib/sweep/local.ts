/**
 * The local engine: a pool of worker processes (`lib/sweep/worker.ts --serve`) over the cores of
 * this machine, each with its own BLAS thread count, fed run ids one at a time; and the inline
 * engine, the same runs one after another in this process.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { availableParallelism } from "node:os";
import { executeRun, type RunOutcome } from "./execute.ts";
import { lockHolder, readStatus, runDir, writeStatus } from "./store.ts";
import type { SweepRunPlan } from "./spec.ts";

/** A run's outcome as an engine reports it. */
export interface EngineOutcome {
  id: string;
  label: string;
  seed: number;
  outcome: RunOutcome | { state: "cached"; prior: "done" | "failed"; error?: string };
}

/** What an engine reports while it runs (see the progress display). */
export interface EngineProgress {
  total: number;
  done: number;
  failed: number;
  running: number;
  /** Seconds since the engine started. */
  elapsed: number;
  /** Seconds left, from the mean time of the runs finished in this call (NaN before one). */
  eta: number;
  /** The outcome just reported, if any. */
  last?: EngineOutcome;
}

/** Options shared by the engines. */
export interface EngineOptions {
  /** The datasets folder (else `PERENNIAL_DATA`, the cache, or a verified download). */
  dataDir?: string;
  /** Checkpoint inside experiences every N epochs. */
  everyEpochs?: number;
  /** Run again the runs that failed before (else they are reported with their error). */
  retryFailed?: boolean;
  /** Called after each change. */
  onProgress?: (p: EngineProgress) => void | Promise<void>;
}

/** Options of {@link runLocal}. */
export interface LocalOptions extends EngineOptions {
  /** Worker processes. @default the number of cores */
  workers?: number;
  /** BLAS threads of each worker. @default max(1, ⌊cores / workers⌋) */
  threads?: number;
}

const WORKER = new URL("./worker.ts", import.meta.url);
const CONFIG = new URL("../../deno.json", import.meta.url);

/** The permissions a worker runs with (those of `deno task repro`, plus FFI for BLAS). */
const PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-net",
  "--allow-sys",
  "--allow-ffi",
];

/** The command line that runs a sweep worker: `deno run <permissions> --config ... worker.ts`. */
export function workerCommand(args: readonly string[]): { cmd: string; args: string[] } {
  if (WORKER.protocol !== "file:") {
    throw new Error(
      `Sweep workers run lib/sweep/worker.ts from a local copy of perennial; this one is ` +
        `loaded from ${WORKER.href}: use a local checkout (importMap to its deno.json)`,
    );
  }
  return {
    cmd: Deno.execPath(),
    args: [
      "run",
      "--quiet",
      ...PERMISSIONS,
      "--config",
      fileURLToPath(CONFIG),
      fileURLToPath(WORKER),
      ...args,
    ],
  };
}

function positive(name: string, v: number | undefined, fallback: number): number {
  const x = v ?? fallback;
  if (!Number.isInteger(x) || x < 1) {
    throw new RangeError(`${name} must be an integer ≥ 1, got ${x}`);
  }
  return x;
}

/**
 * Sorts a sweep's runs into those already finished (done, or failed and not to be retried)
 * and those to run.
 */
export async function triage(
  out: string,
  plans: readonly SweepRunPlan[],
  retryFailed: boolean,
): Promise<{ cached: EngineOutcome[]; todo: SweepRunPlan[] }> {
  const cached: EngineOutcome[] = [];
  const todo: SweepRunPlan[] = [];
  for (const p of plans) {
    const s = await readStatus(out, p.id);
    if (s?.state === "done") {
      cached.push({
        id: p.id,
        label: p.label,
        seed: p.seed,
        outcome: { state: "cached", prior: "done" },
      });
    } else if (s?.state === "failed" && !retryFailed) {
      cached.push({
        id: p.id,
        label: p.label,
        seed: p.seed,
        outcome: { state: "cached", prior: "failed", ...(s.error ? { error: s.error } : {}) },
      });
    } else todo.push(p);
  }
  return { cached, todo };
}

/** Progress bookkeeping shared by the engines. */
class Tally {
  readonly start = performance.now();
  done = 0;
  failed = 0;
  running = 0;
  #finished = 0;
  #runSeconds = 0;
  constructor(readonly total: number, readonly onProgress?: EngineOptions["onProgress"]) {}

  count(o: EngineOutcome, seconds?: number): void {
    const st = o.outcome.state;
    if (st === "done" || st === "skipped" || (st === "cached" && o.outcome.prior === "done")) {
      this.done++;
    } else if (st === "failed" || st === "cached") this.failed++;
    if (seconds !== undefined && st !== "cached") {
      this.#finished++;
      this.#runSeconds += seconds;
    }
  }

  async report(last?: EngineOutcome, workers = 1): Promise<void> {
    const elapsed = (performance.now() - this.start) / 1000;
    const left = this.total - this.done - this.failed;
    const eta = this.#finished > 0 ? (this.#runSeconds / this.#finished) * left / workers : NaN;
    await this.onProgress?.({
      total: this.total,
      done: this.done,
      failed: this.failed,
      running: this.running,
      elapsed,
      eta: left === 0 ? 0 : eta,
      ...(last ? { last } : {}),
    });
  }
}

/**
 * Runs the sweep's runs one after another in this process (the inline engine): the reference
 * the local engine's speed is measured against, and the engine of a machine where processes
 * cannot be started.
 */
export async function runInline(
  out: string,
  plans: readonly SweepRunPlan[],
  opts: EngineOptions = {},
): Promise<EngineOutcome[]> {
  const { cached, todo } = await triage(out, plans, opts.retryFailed ?? false);
  const tally = new Tally(plans.length, opts.onProgress);
  for (const c of cached) tally.count(c);
  await tally.report();
  const results = [...cached];
  for (const p of todo) {
    tally.running = 1;
    const t0 = performance.now();
    const outcome = await executeRun(out, p.id, {
      dataDir: opts.dataDir,
      everyEpochs: opts.everyEpochs,
    });
    const o: EngineOutcome = { id: p.id, label: p.label, seed: p.seed, outcome };
    tally.running = 0;
    tally.count(o, (performance.now() - t0) / 1000);
    results.push(o);
    await tally.report(o);
  }
  return order(plans, results);
}

function order(plans: readonly SweepRunPlan[], results: EngineOutcome[]): EngineOutcome[] {
  const at = new Map(plans.map((p, i) => [p.id, i]));
  return results.sort((a, b) => at.get(a.id)! - at.get(b.id)!);
}

/** One worker process and the reader of its answers. */
class Worker {
  readonly child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;
  readonly #log: Deno.FsFile;

  constructor(out: string, k: number, threads: number, opts: LocalOptions, log: Deno.FsFile) {
    const { cmd, args } = workerCommand([
      "--out",
      out,
      "--serve",
      ...(opts.dataDir ? ["--data", opts.dataDir] : []),
      ...(opts.everyEpochs ? ["--every-epochs", String(opts.everyEpochs)] : []),
    ]);
    this.#log = log;
    this.child = new Deno.Command(cmd, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: {
        OPENBLAS_NUM_THREADS: String(threads),
        OMP_NUM_THREADS: String(threads),
        PERENNIAL_SWEEP_WORKER: String(k),
      },
    }).spawn();
    this.#writer = this.child.stdin.getWriter();
    this.#lines = lines(this.child.stdout)[Symbol.asyncIterator]();
    // Its stderr (warnings, crashes) goes to the worker's log file.
    this.child.stderr.pipeTo(log.writable, { preventClose: true }).catch(() => {});
  }

  /** Runs `id`; resolves with the outcome, or undefined when the process died meanwhile. */
  async run(id: string): Promise<RunOutcome | undefined> {
    try {
      await this.#writer.write(new TextEncoder().encode(id + "\n"));
    } catch {
      return undefined;
    }
    const next = await this.#lines.next();
    if (next.done) return undefined;
    const msg = JSON.parse(next.value) as { id: string; outcome: RunOutcome };
    if (msg.id !== id) throw new Error(`Worker answered for run ${msg.id} when asked for ${id}`);
    return msg.outcome;
  }

  async close(): Promise<Deno.CommandStatus> {
    await this.#writer.close().catch(() => {});
    const status = await this.child.status;
    this.#log.close();
    return status;
  }
}

/** The non-empty lines of a byte stream, trimmed. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of stream) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) yield line;
    }
  }
}

/**
 * Runs the sweep's runs on a pool of `workers` processes (the local engine). Runs already done
 * are kept; runs that failed before are reported with their error (and run again only with
 * `retryFailed`); a run another live process holds (a worker of a killed engine finishing it)
 * is waited for. A run whose worker dies is recorded as failed with the exit status, and a new
 * worker takes the next run: no run is retried forever.
 */
export async function runLocal(
  out: string,
  plans: readonly SweepRunPlan[],
  opts: LocalOptions = {},
): Promise<EngineOutcome[]> {
  const cores = availableParallelism();
  const workers = positive("workers", opts.workers, cores);
  const threads = positive("threads", opts.threads, Math.max(1, Math.floor(cores / workers)));
  const { cached, todo } = await triage(out, plans, opts.retryFailed ?? false);
  const tally = new Tally(plans.length, opts.onProgress);
  for (const c of cached) tally.count(c);
  await tally.report();
  const results = [...cached];
  const queue = [...todo];
  await Deno.mkdir(join(out, "workers"), { recursive: true });

  const lane = async (k: number) => {
    let worker: Worker | undefined;
    const open = async () =>
      new Worker(
        out,
        k,
        threads,
        opts,
        await Deno.open(join(out, "workers", `worker-${k}.log`), {
          append: true,
          create: true,
        }),
      );
    try {
      while (queue.length > 0) {
        const p = queue.shift()!;
        const holder = await lockHolder(out, p.id);
        if (holder) {
          // Held by a live process (a worker of an engine that was killed): wait for it.
          queue.push(p);
          await new Promise((r) => setTimeout(r, 500));
          continue;
        }
        worker ??= await open();
        tally.running++;
        await tally.report(undefined, workers);
        const t0 = performance.now();
        let outcome = await worker.run(p.id);
        if (outcome === undefined) {
          const status = await worker.close();
          worker = undefined;
          const error = `its worker process exited (code ${status.code}` +
            (status.signal ? `, signal ${status.signal}` : "") +
            `) during the run; see ${join(out, "workers", `worker-${k}.log`)}`;
          const prior = await readStatus(out, p.id);
          await writeStatus(out, p.id, {
            attempts: 1,
            completions: 0,
            ...prior,
            state: "failed",
            error,
            finishedAt: new Date().toISOString(),
          });
          await Deno.remove(join(runDir(out, p.id), "lock")).catch(() => {});
          outcome = { state: "failed", error };
        }
        tally.running--;
        if (outcome.state === "busy") {
          queue.push(p);
          await tally.report(undefined, workers);
          continue;
        }
        const o: EngineOutcome = { id: p.id, label: p.label, seed: p.seed, outcome };
        tally.count(o, (performance.now() - t0) / 1000);
        results.push(o);
        await tally.report(o, workers);
      }
    } finally {
      await worker?.close();
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(workers, Math.max(todo.length, 1)) }, (_, k) => lane(k)),
  );
  return order(plans, results);
}
