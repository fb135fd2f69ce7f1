/** Shared fixtures of the test suite: a tiny learnable class-incremental benchmark. */
import { syntheticImages } from "../datasets/mod.ts";
import { classIncremental, type ClassIncrementalBenchmark } from "../lib/benchmarks/mod.ts";
import { toArrayDatasets } from "../lib/benchmarks/classic.ts";

/** The repository's sibling `shared/datasets` folder, or undefined when absent. */
export const SHARED_DATA: string | undefined = (() => {
  const dir = new URL("../../shared/datasets", import.meta.url).pathname;
  try {
    Deno.statSync(`${dir}/mnist/train-images-idx3-ubyte.gz`);
    return dir;
  } catch {
    console.warn(`shared datasets not found at ${dir}: tests on real data are skipped`);
    return undefined;
  }
})();

/** 4 classes of 8×8 synthetic images in 2 experiences of 2 classes (natural order). */
export function toyBenchmark(
  opts: { n?: number; classes?: number; experiences?: number; seed?: number } = {},
): ClassIncrementalBenchmark {
  const classes = opts.classes ?? 4;
  const n = opts.n ?? 80;
  const data = {
    name: "toy",
    classes,
    train: syntheticImages({ n, classes, rows: 8, cols: 8, seed: opts.seed ?? 1 }),
    test: syntheticImages({
      n: Math.ceil(n / 2),
      classes,
      rows: 8,
      cols: 8,
      seed: (opts.seed ?? 1) + 100,
    }),
  };
  const { train, test } = toArrayDatasets(data, { normalize: false });
  return classIncremental({
    train,
    test,
    experiences: opts.experiences ?? 2,
    fixedClassOrder: Array.from({ length: classes }, (_, i) => i),
    name: "Toy",
  });
}
