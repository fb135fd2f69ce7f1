/**
 * `deno task test:notebooks`: executes every notebook of `notebooks/` headless with Jupyter and
 * the Deno kernel, fails on any cell error, and checks that each produced its figures
 * (`image/svg+xml` outputs) and tables (`text/html` outputs holding a `<table>`), at least as
 * many as the notebook's `metadata.perennial` asks (`{ "figures": 2, "tables": 1 }`; one of
 * each by default).
 *
 * By default notebooks run in quick mode (`PERENNIAL_QUICK=1`: fewer experiences, subsampled
 * data) and the executed copies go to `runs/notebooks/`; the committed notebooks are untouched.
 * `--full` runs the published settings (`PERENNIAL_QUICK=0`); `--write` writes the executed
 * notebooks back over `notebooks/*.ipynb` once they pass the checks (the committed notebooks carry
 * the outputs of `--full --write`).
 *
 * Installs nothing: it needs a Python with nbclient and nbformat (Debian: `apt-get install -y
 * --no-install-recommends jupyter-nbconvert jupyter-client`) and the Deno kernel
 * (`deno jupyter --install`), and says so when either is missing. The cells are executed by
 * `notebooks/_execute.py`, which keeps reading a cell's output for a grace period after the
 * kernel reports it idle (the Deno kernel sometimes sends a result late).
 *
 * Flags: names (e.g. `quickstart`) to run only those, `--full`, `--write`, `--data DIR` (passed
 * as $PERENNIAL_DATA), `--out DIR`, `--timeout 1800` (seconds per cell), `--grace 0.5`,
 * `--python PATH` (else $PERENNIAL_PYTHON, /usr/bin/python3, python3).
 *
 * @module
 */
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { formatDuration } from "../loggers/progress.ts";
import { intFlag, numberFlag } from "./args.ts";

const USAGE = `Usage: deno task test:notebooks [NAME...] [--full] [--write] [--data DIR]
       [--out DIR] [--timeout 1800] [--grace 0.5] [--python PATH]`;

/** The repository root. */
const ROOT: string = fileURLToPath(new URL("../..", import.meta.url));
/** The notebooks folder. */
export const NOTEBOOK_DIR: string = join(ROOT, "notebooks");
/** The executor script. */
export const EXECUTOR: string = join(NOTEBOOK_DIR, "_execute.py");

/** The apt packages that bring Jupyter's Python executor on Debian and Ubuntu. */
export const APT_PACKAGES: readonly string[] = ["jupyter-nbconvert", "jupyter-client"];

/** What to install when Jupyter is missing. */
export const INSTALL_HINT = `apt-get update && apt-get install -y --no-install-recommends ${
  APT_PACKAGES.join(" ")
} && deno jupyter --install`;

// --------------------------------------------------------------------------- checks ----

/** A Jupyter output, as stored in an .ipynb file. */
export interface NotebookOutput {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, string | string[] | unknown>;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}

/** A notebook cell, as stored in an .ipynb file. */
export interface NotebookCell {
  cell_type: string;
  source: string | string[];
  execution_count?: number | null;
  outputs?: NotebookOutput[];
  metadata?: Record<string, unknown>;
}

/** An .ipynb document (nbformat 4). */
export interface Notebook {
  nbformat: number;
  nbformat_minor?: number;
  metadata: Record<string, unknown>;
  cells: NotebookCell[];
}

/** What a notebook must show: `metadata.perennial` of the .ipynb. */
export interface NotebookExpectations {
  /** At least this many figures (`image/svg+xml` outputs). @default 1 */
  figures?: number;
  /** At least this many tables (`text/html` outputs with a `<table>`). @default 1 */
  tables?: number;
  /**
   * Live figures (`liveCurves`): exactly `displays` figure outputs shown once and updated in
   * place (the executor counts a display id's messages on its output), each updated after every
   * one of `experiences` evaluations and ending with a curve per experience ("exp 0" ...
   * "exp n-1" in its legend). @default none asked
   */
  live?: { displays: number; experiences: number };
}

/** The outcome of {@link checkNotebook}. */
export interface NotebookCheck {
  /** Code cells (non-empty). */
  codeCells: number;
  /** Code cells that ran (have an execution count). */
  executed: number;
  /** `image/svg+xml` outputs. */
  figures: number;
  /** `text/html` outputs with a `<table>`. */
  tables: number;
  /** Figures updated in place (display messages of each, in output order). */
  live: number[];
  /** Error outputs, as `cell N: Name: message`. */
  errors: string[];
  /** Everything wrong, one line each; empty when the notebook passes. */
  problems: string[];
}

function text(v: unknown): string {
  return Array.isArray(v) ? v.join("") : typeof v === "string" ? v : "";
}

/** The expectations stored in a notebook's metadata (`metadata.perennial`), with defaults. */
export function expectationsOf(nb: Notebook): NotebookExpectations & {
  figures: number;
  tables: number;
} {
  const m = (nb.metadata?.perennial ?? {}) as NotebookExpectations;
  return { figures: m.figures ?? 1, tables: m.tables ?? 1, ...(m.live ? { live: m.live } : {}) };
}

/** How many display messages the executor counted on an output (0: not shown by id). */
function displayMessages(out: NotebookOutput): number {
  const meta = (out as { metadata?: { perennial?: { displayMessages?: unknown } } }).metadata;
  const n = meta?.perennial?.displayMessages;
  return typeof n === "number" ? n : 0;
}

/** Problems of the live figures against what the notebook asks. */
function checkLive(
  live: { svg: string; messages: number }[],
  want: { displays: number; experiences: number },
): string[] {
  const problems: string[] = [];
  if (live.length !== want.displays) {
    problems.push(
      `${live.length} live figure(s) (shown once, updated in place), expected ${want.displays}`,
    );
  }
  live.forEach((fig, i) => {
    if (fig.messages < want.experiences) {
      problems.push(
        `live figure ${i + 1}: shown ${fig.messages} time(s), expected one per evaluation ` +
          `(${want.experiences})`,
      );
    }
    const missing = Array.from({ length: want.experiences }, (_, e) => `exp ${e}`)
      .filter((label) => !fig.svg.includes(`>${label}<`));
    if (missing.length) {
      problems.push(
        `live figure ${i + 1}: its last state lacks the curves of ${missing.join(", ")}`,
      );
    }
  });
  return problems;
}

/**
 * Checks an executed notebook: every code cell ran, no cell has an error output, and there are at
 * least the expected figures and tables.
 *
 * @example
 * ```ts
 * import { checkNotebook } from "./notebooks.ts";
 * const nb = { nbformat: 4, metadata: { perennial: { figures: 1, tables: 0 } }, cells: [
 *   { cell_type: "code", source: "fig", execution_count: 1, outputs: [
 *     { output_type: "execute_result", data: { "image/svg+xml": "<svg/>" } }] },
 * ] };
 * console.assert(checkNotebook(nb).problems.length === 0);
 * ```
 */
export function checkNotebook(nb: Notebook, expect?: NotebookExpectations): NotebookCheck {
  const want = { ...expectationsOf(nb), ...(expect ?? {}) };
  const problems: string[] = [];
  if (!nb || nb.nbformat !== 4 || !Array.isArray(nb.cells)) {
    return {
      codeCells: 0,
      executed: 0,
      figures: 0,
      tables: 0,
      live: [],
      errors: [],
      problems: ["not an nbformat 4 notebook"],
    };
  }
  let codeCells = 0, executed = 0, figures = 0, tables = 0;
  const errors: string[] = [];
  const unexecuted: number[] = [];
  const live: { svg: string; messages: number }[] = [];
  nb.cells.forEach((cell, i) => {
    if (cell.cell_type !== "code" || !text(cell.source).trim()) return;
    codeCells++;
    if (typeof cell.execution_count === "number") executed++;
    else unexecuted.push(i + 1);
    for (const out of cell.outputs ?? []) {
      if (out.output_type === "error") {
        errors.push(`cell ${i + 1}: ${out.ename ?? "Error"}: ${out.evalue ?? ""}`.trim());
        continue;
      }
      if (out.output_type !== "display_data" && out.output_type !== "execute_result") continue;
      const data = out.data ?? {};
      if ("image/svg+xml" in data) {
        figures++;
        const messages = displayMessages(out);
        if (messages > 1) live.push({ svg: text(data["image/svg+xml"]), messages });
      }
      if (/<table[\s>]/i.test(text(data["text/html"]))) tables++;
    }
  });
  problems.push(...errors);
  if (unexecuted.length) {
    problems.push(`cells not executed: ${unexecuted.join(", ")}`);
  }
  if (figures < want.figures) {
    problems.push(
      `${figures} figure(s) (image/svg+xml outputs), expected at least ${want.figures}`,
    );
  }
  if (tables < want.tables) {
    problems.push(
      `${tables} table(s) (text/html outputs with a <table>), expected at least ${want.tables}`,
    );
  }
  if (want.live) problems.push(...checkLive(live, want.live));
  return {
    codeCells,
    executed,
    figures,
    tables,
    live: live.map((l) => l.messages),
    errors,
    problems,
  };
}

/** The notebooks of a folder (`*.ipynb`, sorted; names starting with `_` are left out). */
export function listNotebooks(dir: string = NOTEBOOK_DIR): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (e.isFile && e.name.endsWith(".ipynb") && !e.name.startsWith("_")) {
      out.push(join(dir, e.name));
    }
  }
  return out.sort();
}

/** Picks the notebooks named (by file name with or without `.ipynb`), with a clear error. */
export function selectNotebooks(all: readonly string[], names: readonly string[]): string[] {
  if (names.length === 0) return [...all];
  return names.map((n) => {
    const want = n.endsWith(".ipynb") ? basename(n) : `${basename(n)}.ipynb`;
    const hit = all.find((p) => basename(p) === want);
    if (!hit) {
      throw new RangeError(
        `No notebook "${n}": use one of ${all.map((p) => basename(p, ".ipynb")).join(", ")}`,
      );
    }
    return hit;
  });
}

// ------------------------------------------------------------------------- jupyter ----

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return { ok: r.success, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
  } catch (e) {
    return { ok: false, out: String((e as Error).message ?? e) };
  }
}

/**
 * The first Python that can import nbclient and nbformat (the flag, $PERENNIAL_PYTHON,
 * /usr/bin/python3, python3), or an error that names the apt packages to install.
 */
export async function findPython(flag?: string): Promise<string> {
  const env = Deno.env.get("PERENNIAL_PYTHON");
  const candidates = flag ? [flag] : [...(env ? [env] : []), "/usr/bin/python3", "python3"];
  const tried: string[] = [];
  for (const py of candidates) {
    const r = await run(py, ["-c", "import nbclient, nbformat, jupyter_client"]);
    if (r.ok) return py;
    tried.push(`${py}: ${r.out.trim().split("\n").pop() || "not found"}`);
  }
  throw new Error(
    `Jupyter is missing: no Python with nbclient, nbformat and jupyter_client ` +
      `(tried ${tried.join("; ")}). On Debian or Ubuntu install it with:\n  ${INSTALL_HINT}`,
  );
}

/** Checks that Jupyter knows the Deno kernel, with the command that installs it otherwise. */
export async function checkDenoKernel(python: string): Promise<void> {
  const r = await run(python, [
    "-c",
    "import json; from jupyter_client.kernelspec import KernelSpecManager as K; " +
    "print(json.dumps(sorted(K().find_kernel_specs())))",
  ]);
  let names: string[] = [];
  try {
    names = JSON.parse(r.out.trim().split("\n").pop() ?? "[]");
  } catch { /* reported below */ }
  if (!r.ok || !names.includes("deno")) {
    throw new Error(
      `Jupyter has no Deno kernel (kernels: ${
        names.join(", ") || "none"
      }): run \`deno jupyter --install\``,
    );
  }
}

/** Options of {@link executeNotebook}. */
export interface ExecuteOptions {
  python: string;
  /** Quick mode (`PERENNIAL_QUICK=1`). */
  quick: boolean;
  /** Passed as `PERENNIAL_DATA`. */
  dataDir?: string;
  /** Seconds per cell. */
  timeout: number;
  /** Seconds of grace after a cell reports idle. */
  grace: number;
}

/** Executes a notebook into `output` with `_execute.py`; true when no cell failed. */
export async function executeNotebook(
  path: string,
  output: string,
  opts: ExecuteOptions,
): Promise<boolean> {
  const env: Record<string, string> = {
    PERENNIAL_QUICK: opts.quick ? "1" : "0",
    NO_COLOR: "1",
    PYTHONDONTWRITEBYTECODE: "1",
  };
  if (opts.dataDir) env.PERENNIAL_DATA = resolve(opts.dataDir);
  const child = new Deno.Command(opts.python, {
    args: [
      EXECUTOR,
      path,
      output,
      "--timeout",
      String(opts.timeout),
      "--grace",
      String(opts.grace),
    ],
    env,
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  return (await child.status).success;
}

// ---------------------------------------------------------------------------- main ----

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      full: { type: "boolean" },
      write: { type: "boolean" },
      data: { type: "string" },
      out: { type: "string" },
      timeout: { type: "string" },
      grace: { type: "string" },
      python: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const notebooks = selectNotebooks(listNotebooks(), positionals);
  if (notebooks.length === 0) throw new Error(`No notebooks in ${NOTEBOOK_DIR}`);
  const timeout = intFlag("timeout", values.timeout, 1800);
  const grace = numberFlag("grace", values.grace, 0.5);
  if (grace < 0) throw new RangeError(`--grace must be ≥ 0, got ${grace}`);
  const quick = !values.full;
  const out = resolve(values.out ?? join(ROOT, "runs", quick ? "notebooks" : "notebooks-full"));
  const python = await findPython(values.python);
  await checkDenoKernel(python);
  await Deno.mkdir(out, { recursive: true });
  console.log(
    `perennial notebooks: ${notebooks.length} notebook(s), ${quick ? "quick" : "full"} mode ` +
      `(PERENNIAL_QUICK=${quick ? 1 : 0}), ${python}, executed copies in ${out}` +
      (values.write ? ", writing outputs back to notebooks/" : ""),
  );
  const lines: string[] = [];
  let failed = 0;
  for (const path of notebooks) {
    const name = basename(path);
    const target = join(out, name);
    console.log(`\n== ${name}`);
    const t0 = performance.now();
    const ran = await executeNotebook(path, target, {
      python,
      quick,
      dataDir: values.data,
      timeout,
      grace,
    });
    const seconds = (performance.now() - t0) / 1000;
    let check: NotebookCheck;
    try {
      check = checkNotebook(JSON.parse(await Deno.readTextFile(target)) as Notebook);
    } catch (e) {
      check = {
        codeCells: 0,
        executed: 0,
        figures: 0,
        tables: 0,
        live: [],
        errors: [],
        problems: [`no executed notebook: ${(e as Error).message}`],
      };
    }
    if (!ran && check.problems.length === 0) check.problems.push("the executor failed");
    const ok = check.problems.length === 0;
    if (!ok) failed++;
    if (ok && values.write) await Deno.copyFile(target, path);
    const line =
      `${ok ? "ok  " : "FAIL"} ${name.padEnd(36)} ${
        formatDuration(seconds).padStart(6)
      }  ${check.executed}/${check.codeCells} cells, ${check.figures} figures, ${check.tables} tables` +
      (check.live.length
        ? `, live figures updated ${check.live.map((n) => n - 1).join(", ")} times`
        : "") +
      (ok ? (values.write ? " (written back)" : "") : `: ${check.problems.join("; ")}`);
    console.log(line);
    lines.push(line);
  }
  console.log(`\n${lines.join("\n")}`);
  console.log(
    `notebooks: ${notebooks.length - failed} passed, ${failed} failed` +
      (failed ? ` (executed copies with the errors in ${out})` : ""),
  );
  return failed ? 1 : 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    console.error(`error: ${(e as Error).message ?? e}`);
    Deno.exit(1);
  }
}
