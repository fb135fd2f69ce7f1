/**
 * Runs PyTorch (`/usr/bin/python3` with torch, or `PERENNIAL_PYTHON`) on JSON for the tests that
 * compare our layers with PyTorch's; those tests skip, saying why, where torch is missing.
 */
const PYTHON = Deno.env.get("PERENNIAL_PYTHON") ?? "/usr/bin/python3";

/** Why PyTorch comparisons are skipped, or undefined when torch is there. */
export const torchMissing: string | undefined = (() => {
  try {
    const out = new Deno.Command(PYTHON, { args: ["-c", "import torch"], stderr: "piped" })
      .outputSync();
    return out.success ? undefined : `${PYTHON} lacks torch`;
  } catch {
    return `${PYTHON} is absent`;
  }
})();

/** The name suffix of a test that needs torch. */
export const torchNote: string = torchMissing ? ` (skipped: ${torchMissing})` : "";

/**
 * Runs `script` (Python reading the JSON object `inp` from stdin as `inp`, and printing one JSON
 * object on its last line of output) and returns that object. Single-threaded, double checks
 * off: numbers as PyTorch's float32 CPU kernels give them.
 */
export async function runTorch<T>(script: string, inp: unknown): Promise<T> {
  const prelude = "import json, sys\nimport torch\ntorch.set_num_threads(1)\n" +
    "inp = json.loads(sys.stdin.read())\n";
  const child = new Deno.Command(PYTHON, {
    args: ["-c", prelude + script],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(inp)));
  await writer.close();
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`PyTorch failed: ${new TextDecoder().decode(out.stderr)}\n${text}`);
  }
  const lines = text.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as T;
}
