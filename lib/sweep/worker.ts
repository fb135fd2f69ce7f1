/**
 * A sweep worker process: runs runs of a sweep folder with {@link executeRun}.
 *
 * - `--out DIR --serve`: the local engine's form. Reads run ids from stdin, one a line, runs each
 *   and answers one JSON line on stdout (`{ "id", "outcome" }`); exits when stdin closes.
 * - `--out DIR --list FILE --index I`: Slurm's form. Runs the `I`-th id of `FILE` (one id a line;
 *   `I` is `$SLURM_ARRAY_TASK_ID`) and exits 0 when it is done (or was already), 1 when it
 *   failed, 3 when another live process holds it.
 * - `--out DIR --run ID`: one run, exit codes as above.
 *
 * Flags: `--data DIR` (the datasets folder), `--every-epochs N` (checkpoints inside
 * experiences). A run's progress lines go to its `log.txt`.
 *
 * @module
 */
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { executeRun, type RunOutcome } from "./execute.ts";
import { lines } from "./local.ts";
import { runDir } from "./store.ts";

const encoder = new TextEncoder();

function logWriter(out: string, id: string): (text: string) => void {
  const path = join(runDir(out, id), "log.txt");
  return (text: string) => {
    try {
      appendFileSync(path, text);
    } catch { /* the log is a convenience: never fail a run over it */ }
  };
}

async function runOne(
  out: string,
  id: string,
  data: string | undefined,
  everyEpochs: number | undefined,
): Promise<RunOutcome> {
  const write = logWriter(out, id);
  write(`[${new Date().toISOString()}] pid ${Deno.pid} starts run ${id}\n`);
  const outcome = await executeRun(out, id, {
    dataDir: data,
    everyEpochs,
    progress: "lines",
    write,
  });
  write(
    `[${new Date().toISOString()}] ${JSON.stringify(outcome.state)}` +
      (outcome.state === "failed" ? `: ${outcome.error}` : "") + "\n",
  );
  return outcome;
}

function exitCode(o: RunOutcome): number {
  return o.state === "done" || o.state === "skipped" ? 0 : o.state === "busy" ? 3 : 1;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      out: { type: "string" },
      serve: { type: "boolean" },
      list: { type: "string" },
      index: { type: "string" },
      run: { type: "string" },
      data: { type: "string" },
      "every-epochs": { type: "string" },
    },
  });
  const out = values.out;
  if (!out) {
    console.error("worker: --out DIR is required (the sweep folder)");
    return 2;
  }
  const data = values.data || Deno.env.get("PERENNIAL_DATA") || undefined;
  const every = values["every-epochs"] ? Number(values["every-epochs"]) : undefined;
  if (every !== undefined && (!Number.isInteger(every) || every < 1)) {
    console.error(`worker: --every-epochs must be an integer ≥ 1, got ${values["every-epochs"]}`);
    return 2;
  }
  if (values.serve) {
    for await (const id of lines(Deno.stdin.readable)) {
      const outcome = await runOne(out, id, data, every);
      try {
        await Deno.stdout.write(encoder.encode(JSON.stringify({ id, outcome }) + "\n"));
      } catch {
        return 0; // the engine is gone (killed): nobody to answer; the run's files say it all
      }
    }
    return 0;
  }
  let id = values.run;
  if (!id && values.list !== undefined) {
    const index = Number(values.index ?? Deno.env.get("SLURM_ARRAY_TASK_ID"));
    const ids = (await Deno.readTextFile(values.list)).split("\n").map((l) => l.trim())
      .filter((l) => l !== "");
    if (!Number.isInteger(index) || index < 0 || index >= ids.length) {
      console.error(`worker: --index ${values.index} is not an index of the ${ids.length} runs`);
      return 2;
    }
    id = ids[index];
  }
  if (!id) {
    console.error("worker: give --serve, --run ID, or --list FILE --index I");
    return 2;
  }
  const outcome = await runOne(out, id, data, every);
  if (outcome.state === "failed") console.error(`run ${id} failed: ${outcome.error}`);
  if (outcome.state === "busy") console.error(`run ${id} is held by ${outcome.holder}`);
  return exitCode(outcome);
}

if (import.meta.main) Deno.exit(await main());
