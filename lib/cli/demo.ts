/**
 * `deno task demo`: Naive fine-tuning of an MLP on Split MNIST (class-incremental), with a
 * progress bar, the accuracy matrix and the final average accuracy.
 *
 * Flags: --data DIR (else $PERENNIAL_DATA, else a shared datasets folder beside the repository
 * when present, else the cache, else a verified download),
 * --experiences 5, --epochs 1, --batch 128, --lr 0.01, --momentum 0.9, --hidden 400,400,
 * --seed 0, --backend auto|node|wasm|cpu, --train-limit N (samples per experience, for a quick look).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type BackendName, seedGlobal, setBackend } from "../backend.ts";
import { splitMNIST, subsample } from "../benchmarks/mod.ts";
import { progressBar } from "../loggers/progress.ts";
import { mlp } from "../models/mlp.ts";
import { sgd } from "../optim/optimizers.ts";
import { naive } from "../strategy/strategies.ts";
import { formatMatrix, intFlag, intListFlag, numberFlag } from "./args.ts";
import { defaultDataDir } from "./bench.ts";

const USAGE =
  `Usage: deno task demo [--data DIR] [--experiences 5] [--epochs 1] [--batch 128] [--lr 0.01]
       [--momentum 0.9] [--hidden 400,400] [--seed 0] [--backend auto|node|wasm|cpu] [--train-limit N]`;

const encoder = new TextEncoder();
const err = (s: string) => Deno.stderr.writeSync(encoder.encode(s));

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      data: { type: "string" },
      experiences: { type: "string" },
      epochs: { type: "string" },
      batch: { type: "string" },
      lr: { type: "string" },
      momentum: { type: "string" },
      hidden: { type: "string" },
      seed: { type: "string" },
      backend: { type: "string" },
      "train-limit": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const experiences = intFlag("experiences", values.experiences, 5);
  const epochs = intFlag("epochs", values.epochs, 1);
  const batchSize = intFlag("batch", values.batch, 128);
  const lr = numberFlag("lr", values.lr, 0.01);
  const momentum = numberFlag("momentum", values.momentum, 0.9);
  const hidden = intListFlag("hidden", values.hidden, [400, 400]);
  const seed = intFlag("seed", values.seed, 0, 0);
  const trainLimit = values["train-limit"] === undefined
    ? undefined
    : intFlag("train-limit", values["train-limit"], 0);

  const backend = await setBackend((values.backend ?? "auto") as BackendName);
  seedGlobal(seed);
  const skipped = backend.skipped.map((s) => `${s.name}: ${s.reason}`).join("; ");
  console.log(
    `perennial demo: Naive on Split MNIST, backend ${backend.name}` +
      (skipped ? ` (skipped ${skipped})` : ""),
  );

  let lastFile = "";
  let bench = await splitMNIST({
    experiences,
    seed,
    dataDir: defaultDataDir(values.data),
    onProgress: (p) => {
      if (p.file !== lastFile && lastFile) err("\n");
      lastFile = p.file;
      const pct = p.total ? ` ${Math.round((100 * p.received) / p.total)}%` : "";
      err(`\rdownloading ${p.file}${pct}`);
    },
  });
  if (lastFile) err("\n");
  if (trainLimit) bench = subsample(bench, { trainPerExperience: trainLimit, seed });
  console.log(
    `class order ${JSON.stringify(bench.classOrder)}; experiences: ` +
      bench.train.map((e) => `[${e.classes.join(",")}] ${e.dataset.length}`).join(", "),
  );

  const model = mlp({ input: 784, hidden, outputs: 10, seed });
  const strategy = naive({
    model,
    optimizer: sgd({ lr, momentum }),
    epochs,
    batchSize,
    evalBatchSize: 256,
    seed,
    plugins: [progressBar()],
  });
  for (const exp of bench.train) {
    await strategy.train(exp);
    const res = await strategy.eval(bench.test);
    console.log(
      `after experience ${exp.id}: ` +
        res.experiences.map((e) => `exp ${e.experience} ${e.accuracy.toFixed(4)}`).join("  ") +
        `  | stream accuracy ${res.accuracy.toFixed(4)}`,
    );
  }
  const matrix = strategy.accuracyMatrix("test");
  const last = matrix[matrix.length - 1];
  console.log("\nAccuracy matrix (row: after training experience i; column: test experience j)");
  console.log(formatMatrix(matrix));
  console.log(
    `\nFinal average accuracy: ${(last.reduce((a, b) => a + b, 0) / last.length).toFixed(4)}`,
  );
  strategy.dispose();
  model.dispose();
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
