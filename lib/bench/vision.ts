/**
 * The vision speed workload of `deno task bench --model`: a ResNet (Avalanche's SlimResNet18 or
 * iCaRL's ResNet-32) trained by the strategy template (Naive, SGD lr 0.01 momentum 0.9,
 * cross-entropy, batch norm in train mode) on Split CIFAR-10-shaped inputs (32×32×3 images,
 * labels in 0..9) at each batch size, then evaluated in eval mode; the same work as
 * `torch_ref_resnet.py` beside this module, which runs it in PyTorch. Inputs are seeded
 * Gaussian noise: the speed of these layers does not depend on the values, and CIFAR cannot be
 * downloaded where this runs.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { backendInfo } from "../backend.ts";
import { ArrayDataset } from "../data/dataset.ts";
import { makeExperience, makeStream } from "../data/experience.ts";
import type { Classifier } from "../models/mlp.ts";
import { resnet32, slimResNet18 } from "../models/resnet.ts";
import { sgd } from "../optim/optimizers.ts";
import { Rng } from "../random.ts";
import { naive } from "../strategy/strategies.ts";

/** The models of the vision workload. */
export const VISION_MODELS: Readonly<Record<string, (seed: number) => Classifier>> = Object
  .freeze({
    slimresnet18: (seed) => slimResNet18({ outputs: 10, seed }),
    resnet32: (seed) => resnet32({ outputs: 10, seed }),
  });

/** Options of {@link runVisionBench}. */
export interface VisionBenchOptions {
  /** @default "slimresnet18" */
  model?: string;
  /** Training minibatch sizes. @default [10, 128] */
  batches?: readonly number[];
  /** Samples trained per batch size (after `warmup` minibatches). @default 1280 */
  trainSamples?: number;
  /** Samples evaluated. @default 2560 */
  evalSamples?: number;
  /** @default 256 */
  evalBatch?: number;
  /** Minibatches trained before timing. @default 3 */
  warmup?: number;
  /** @default 0 */
  seed?: number;
  log?: (s: string) => void;
}

/** One batch size of the vision workload. */
export interface VisionBenchRun {
  model: string;
  backend: string;
  batch: number;
  train_samples: number;
  train_s: number;
  train_samples_per_s: number;
  eval_samples: number;
  eval_s: number;
  eval_samples_per_s: number;
  parameters: number;
  tensors_leaked: number;
}

function gaussian(n: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal();
  return out;
}

function dataset(n: number, rng: Rng): ArrayDataset {
  const y = Int32Array.from({ length: n }, () => rng.int(10));
  return new ArrayDataset({ x: gaussian(n * 32 * 32 * 3, rng), y, inputShape: [32, 32, 3] });
}

const INFO = {
  name: "CIFAR-shaped noise",
  scenario: "class-incremental" as const,
  numClasses: 10,
  inputShape: [32, 32, 3],
  numExperiences: 1,
};

/**
 * Trains and evaluates the model at each batch size on the active backend and returns the
 * samples per second of each.
 */
export async function runVisionBench(opts: VisionBenchOptions = {}): Promise<VisionBenchRun[]> {
  const name = opts.model ?? "slimresnet18";
  const build = VISION_MODELS[name];
  if (!build) {
    throw new RangeError(
      `Unknown model "${name}": use one of ${Object.keys(VISION_MODELS).join(", ")}`,
    );
  }
  const seed = opts.seed ?? 0;
  const trainSamples = opts.trainSamples ?? 1280;
  const evalSamples = opts.evalSamples ?? 2560;
  const evalBatch = opts.evalBatch ?? 256;
  const warmup = opts.warmup ?? 3;
  const runs: VisionBenchRun[] = [];
  for (const batch of opts.batches ?? [10, 128]) {
    const rng = new Rng(seed);
    const iters = Math.floor(trainSamples / batch);
    const warm = dataset(warmup * batch, rng);
    const train = dataset(iters * batch, rng);
    const test = dataset(evalSamples, rng);
    const exp = (d: ArrayDataset, stream: string) => makeExperience(stream, 0, d, INFO);
    const tensors = tf.memory().numTensors;
    const model = build(seed);
    const strategy = naive({
      model,
      optimizer: sgd({ lr: 0.01, momentum: 0.9 }),
      epochs: 1,
      batchSize: batch,
      evalBatchSize: evalBatch,
      seed,
    });
    try {
      if (warmup > 0) await strategy.train(exp(warm, "warmup"));
      await strategy.eval(makeStream("test", [exp(dataset(evalBatch, rng), "test")]));
      const t0 = performance.now();
      const r = await strategy.train(exp(train, "train"));
      const trainS = (performance.now() - t0) / 1000;
      const t1 = performance.now();
      await strategy.eval(makeStream("test", [exp(test, "test")]));
      const evalS = (performance.now() - t1) / 1000;
      const params = [...model.namedParameters().values()]
        .filter((v) => (v as { trainable: boolean }).trainable)
        .reduce((s, v) => s + v.size, 0);
      runs.push({
        model: name,
        backend: backendInfo()?.name ?? tf.getBackend(),
        batch,
        train_samples: r.samples,
        train_s: Number(trainS.toFixed(4)),
        train_samples_per_s: Number((r.samples / trainS).toFixed(1)),
        eval_samples: evalSamples,
        eval_s: Number(evalS.toFixed(4)),
        eval_samples_per_s: Number((evalSamples / evalS).toFixed(1)),
        parameters: params,
        tensors_leaked: 0,
      });
      opts.log?.(
        `${name} batch ${batch}: train ${runs.at(-1)!.train_samples_per_s} samples/s, eval ` +
          `${runs.at(-1)!.eval_samples_per_s} samples/s`,
      );
    } finally {
      strategy.dispose();
      model.dispose();
      runs.at(-1) && (runs.at(-1)!.tensors_leaked = tf.memory().numTensors - tensors);
    }
  }
  return runs;
}
