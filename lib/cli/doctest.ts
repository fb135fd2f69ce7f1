/**
 * `deno task check`'s doc tests: runs every JSDoc example of `mod.ts`, `lib/` and `datasets/`
 * (`deno test --doc`). Examples that read MNIST or Fashion-MNIST load them as a user would, from
 * `$PERENNIAL_DATA`; when it is unset, this sets it to the `shared/datasets` folder beside the
 * repository if there is one (as CI has), so that the examples run offline and never download.
 * Extra arguments are passed on to `deno test`.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The files and folders whose JSDoc examples are tested. */
export const DOC_TEST_PATHS: readonly string[] = ["mod.ts", "lib/", "datasets/"];

const ROOT: string = fileURLToPath(new URL("../..", import.meta.url));

/** `$PERENNIAL_DATA` when set, else `../shared/datasets` beside the repository when present. */
export function docTestDataDir(): string | undefined {
  const env = Deno.env.get("PERENNIAL_DATA");
  if (env) return env;
  const shared = fileURLToPath(new URL("../../../shared/datasets", import.meta.url));
  return existsSync(shared) ? shared : undefined;
}

/**
 * Runs the doc tests in the repository root; resolves to `deno test`'s exit code, or 1 when an
 * example's `console.assert` failed (it only prints, so the test itself would pass).
 */
export async function runDocTests(extra: readonly string[] = []): Promise<number> {
  const env: Record<string, string> = {};
  const data = docTestDataDir();
  if (data !== undefined) env.PERENNIAL_DATA = data;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "--doc", "--allow-all", ...extra, ...DOC_TEST_PATHS],
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.stdout.write(out.stdout);
  await Deno.stderr.write(out.stderr);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const failed = failedAsserts(text);
  if (failed.length > 0) {
    console.error(`doc tests: console.assert failed in ${failed.join(", ")}`);
    return 1;
  }
  return out.code;
}

/** The examples (as `deno test` names them) after which "Assertion failed" was printed. */
export function failedAsserts(output: string): string[] {
  const failed: string[] = [];
  let current = "";
  for (const line of output.split("\n")) {
    // deno colours its lines: look for the example's name anywhere in the line.
    const test = /(file:\/\/\S+#\d+-\d+\.ts)/.exec(line);
    if (test) current = test[1];
    if (line.includes("Assertion failed")) failed.push(current || "(unknown example)");
  }
  return [...new Set(failed)];
}

if (import.meta.main) {
  Deno.exit(await runDocTests(Deno.args));
}
