// Using the library from a folder outside the repository, as the README's "From another folder"
// section says: that folder's deno.json names the repository's deno.json as its import map (the
// library's own bare imports such as "seedrandom" resolve only through it), and the script imports
// mod.ts by a relative path. The script runs in a fresh `deno run` with the folder as cwd.
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

// Built from the public API only, on synthetic data so that it needs no dataset files.
const SCRIPT = (lib: string) => `
import { classIncremental, mlp, naive, setup, syntheticImages, toArrayDatasets } from "${lib}/mod.ts";

const info = await setup({ seed: 0, backend: "wasm" });
const split = syntheticImages({ n: 40, classes: 2, rows: 8, cols: 8, seed: 1 });
const data = toArrayDatasets({ name: "toy", train: split, test: split, classes: 2 });
const bench = classIncremental({ ...data, experiences: 1, fixedClassOrder: [0, 1] });
const model = mlp({ input: 64, hidden: [8], outputs: 2, seed: 0 });
const strategy = naive({ model, epochs: 1, batchSize: 40, seed: 0 });
const trained = await strategy.train(bench.train[0]);
await strategy.eval(bench.test);
const loss = strategy.rows.find((r) => r.metric === "loss" && r.phase === "train")?.value;
console.log(JSON.stringify({
  backend: info.name,
  params: model.namedParameters().size,
  samples: trained.samples,
  loss,
  matrix: strategy.accuracyMatrix(),
}));
`;

Deno.test("a script in a folder outside the repository imports mod.ts, builds an mlp and trains a step", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "perennial-outside-" });
  try {
    const dir = join(tmp, "my-notebooks");
    await Deno.mkdir(dir);
    assert.ok(relative(ROOT, dir).startsWith(".."), `${dir} must lie outside ${ROOT}`);
    const lib = relative(dir, ROOT).replaceAll("\\", "/");
    await Deno.writeTextFile(
      join(dir, "deno.json"),
      JSON.stringify({ importMap: `${lib}/deno.json` }, null, 2) + "\n",
    );
    await Deno.writeTextFile(join(dir, "train.ts"), SCRIPT(lib));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-env", "--allow-sys", "train.ts"],
      cwd: dir,
      env: { NO_COLOR: "1" },
      stdin: "null",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `deno run failed:\n${stdout}\n${stderr}`);
    const line = stdout.trim().split("\n").at(-1) ?? "";
    const result = JSON.parse(line);
    assert.equal(result.backend, "wasm");
    assert.equal(result.params, 4); // two Linear layers: weight and bias each
    assert.equal(result.samples, 40);
    assert.ok(Number.isFinite(result.loss) && result.loss > 0, `loss ${result.loss}`);
    assert.equal(result.matrix.length, 1);
    assert.equal(result.matrix[0].length, 1);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
