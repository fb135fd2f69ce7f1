/**
 * perennial: continual learning for Deno and Jupyter, on TensorFlow.js.
 *
 * @example Naive fine-tuning on Split MNIST
 * ```ts ignore
 * import { mlp, naive, setup, splitMNIST } from "./mod.ts";
 * await setup({ seed: 0 });
 * const bench = await splitMNIST({ experiences: 5, seed: 0 });
 * const strategy = naive({ model: mlp({ hidden: [400, 400] }), epochs: 1, batchSize: 128 });
 * for (const exp of bench.train) {
 *   await strategy.train(exp);
 *   await strategy.eval(bench.test);
 * }
 * console.table(strategy.accuracyMatrix());
 * ```
 *
 * @module
 */
export * from "./lib/backend.ts";
export * from "./lib/random.ts";
export * from "./lib/data/dataset.ts";
export * from "./lib/engine/resident.ts";
export * from "./lib/benchmarks/mod.ts";
export * from "./datasets/mod.ts";
export * from "./lib/nn/module.ts";
export * from "./lib/nn/layers.ts";
export * from "./lib/nn/losses.ts";
export * from "./lib/models/mlp.ts";
export * from "./lib/models/heads.ts";
export * from "./lib/optim/optimizers.ts";
export * from "./lib/strategy/context.ts";
export * from "./lib/data/loader.ts";
export * from "./lib/strategy/plugin.ts";
export * from "./lib/strategy/template.ts";
export * from "./lib/strategy/strategies.ts";
export * from "./lib/metrics/mod.ts";
export * from "./lib/loggers/mod.ts";
export * from "./lib/plugins/evaluation.ts";
export * from "./lib/plugins/storage_policy.ts";
export * from "./lib/plugins/replay_loader.ts";
export * from "./lib/plugins/replay.ts";
export * from "./lib/plugins/gdumb.ts";
export * from "./lib/plugins/cwr_star.ts";
export * from "./lib/plugins/cope.ts";
export * from "./lib/notebook/mod.ts";
export * from "./lib/plugins/qp.ts";
export * from "./lib/plugins/gem.ts";
export * from "./lib/plugins/agem.ts";
export * from "./lib/plugins/ewc.ts";
export * from "./lib/plugins/synaptic_intelligence.ts";
export * from "./lib/plugins/lwf.ts";
