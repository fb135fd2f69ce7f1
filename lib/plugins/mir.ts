/**
 * Maximally Interfered Retrieval (MIR; Aljundi, Caccia, Belilovsky, Caccia, Lin, Charlin &
 * Tuytelaars, "Online Continual Learning with Maximally Interfered Retrieval", NeurIPS 2019), as
 * Avalanche's `MIRPlugin`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Dataset } from "../data/dataset.ts";
import type { Module } from "../nn/module.ts";
import type { Rng } from "../random.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { StagingArray } from "../nn/staging.ts";
import { memoryGradients } from "./gem.ts";
import { type MaterializedDataset, type MemoryTensors, SampleMemory } from "./memory.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";

/**
 * Cross-entropy of each sample (no mean): `−log softmax(logits)[label]`, shape [n].
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { perSampleCrossEntropy } from "./mir.ts";
 * const l = perSampleCrossEntropy(tf.tensor2d([[0, 0], [0, 0]]), tf.tensor1d([0, 1], "int32"));
 * console.assert(Math.abs(l.dataSync()[1] - Math.LN2) < 1e-6);
 * ```
 */
export function perSampleCrossEntropy(logits: tf.Tensor, labels: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const c = logits.shape[logits.rank - 1]!;
    const logp = tf.logSoftmax(logits as tf.Tensor2D);
    return tf.neg(tf.sum(tf.mul(tf.oneHot(labels, c), logp), -1)) as tf.Tensor1D;
  });
}

/**
 * How much each sample's loss rises after a virtual SGD step: the per-sample cross-entropy of
 * `data` at `θ − lr·g` minus the one at `θ` (the parameters of `model` now), shape [n]. The
 * parameters are set to the virtual values for one forward pass and then given back their own
 * values, so the model is unchanged afterwards; a parameter without a gradient stays as it is.
 * Both passes run with the model in evaluation mode (no dropout), so that the difference comes
 * from the step alone.
 *
 * @example
 * ```ts ignore
 * const rise = virtualStepIncrease(model, model.trainableParameters(), grads, 0.1, memTensors);
 * ```
 */
export function virtualStepIncrease(
  model: Module,
  params: ReadonlyMap<string, tf.Variable>,
  grads: ReadonlyMap<string, tf.Tensor>,
  lr: number,
  data: MemoryTensors,
): tf.Tensor1D {
  const training = model.training;
  model.train(false);
  try {
    return tf.tidy(() => {
      const forward = () =>
        perSampleCrossEntropy(
          model.forward(data.x, { taskLabels: data.t, taskLabelsArray: data.tArray }),
          data.y,
        );
      const before = forward();
      const moved = [...params].filter(([n]) => grads.has(n));
      const saved = moved.map(([, v]) => tf.clone(v));
      let after: tf.Tensor1D;
      try {
        moved.forEach(([n, v]) => v.assign(tf.sub(v, tf.mul(grads.get(n)!, lr))));
        after = forward();
      } finally {
        moved.forEach(([, v], i) => v.assign(saved[i]));
      }
      return tf.sub(after, before) as tf.Tensor1D;
    });
  } finally {
    model.train(training);
  }
}

/**
 * The positions of the `k` largest values of `scores` (all of them when there are no more than
 * `k`), largest first; ties go to the lower position.
 *
 * @example
 * ```ts
 * import { topK } from "./mir.ts";
 * console.assert(topK(new Float32Array([0.1, 3, -1, 2]), 2).join() === "1,3");
 * ```
 */
export function topK(scores: ArrayLike<number>, k: number): Int32Array {
  const order = Int32Array.from({ length: scores.length }, (_, i) => i);
  order.sort((a, b) => scores[b] - scores[a] || a - b);
  return order.slice(0, Math.min(k, scores.length));
}

/**
 * A fixed-size memory filled by reservoir sampling (Vitter's algorithm R): each sample offered is
 * kept with probability `memSize / seen`, in place of a uniformly drawn one, so that the memory
 * is a uniform sample of everything offered so far. Samples are views of the datasets offered.
 *
 * @example
 * ```ts
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { Rng } from "../random.ts";
 * import { ReservoirMemory } from "./mir.ts";
 * const d = new ArrayDataset({ x: new Float32Array(10), y: new Array(10).fill(1), inputShape: [1] });
 * const m = new ReservoirMemory(4);
 * m.add(d, new Rng(0));
 * console.assert(m.buffer.length === 4 && m.seen === 10);
 * ```
 */
export class ReservoirMemory {
  /** The samples kept. */
  buffer: SampleMemory = SampleMemory.empty();
  /** Samples offered so far. */
  seen = 0;

  constructor(readonly memSize: number) {}

  /** Offers every sample of `dataset`, in order, drawing the replacements from `rng`. */
  add(dataset: Dataset, rng: Rng): void {
    const had = this.buffer.length;
    // Positions in the concatenation [memory, dataset] that form the new memory.
    const slots = Array.from({ length: had }, (_, i) => i);
    for (let i = 0; i < dataset.length; i++) {
      this.seen++;
      if (slots.length < this.memSize) {
        slots.push(had + i);
      } else {
        const j = rng.int(this.seen);
        if (j < this.memSize) slots[j] = had + i;
      }
    }
    this.buffer = SampleMemory.concat([this.buffer, SampleMemory.of(dataset)]).select(slots);
  }

  /** Plain-data state. */
  state(): ReservoirMemoryState {
    return { seen: this.seen, samples: this.buffer.materialize() };
  }

  /** Restores what {@link ReservoirMemory.state} returned. */
  loadState(s: ReservoirMemoryState): void {
    if (!s || typeof s.seen !== "number" || !s.samples) {
      throw new TypeError("Not a reservoir memory state: expected { seen, samples }");
    }
    this.seen = s.seen;
    this.buffer = SampleMemory.fromMaterialized(s.samples);
  }

  /** Empties the memory. */
  clear(): void {
    this.buffer = SampleMemory.empty();
    this.seen = 0;
  }
}

/** Checkpoint state of a {@link ReservoirMemory}. */
export interface ReservoirMemoryState {
  seen: number;
  samples: MaterializedDataset;
}

/** Options of {@link MIRPlugin}. */
export interface MIROptions {
  /** Samples kept in memory (reservoir sampling). @default 200 */
  memSize?: number;
  /** Memory candidates drawn each iteration, among which the most interfered are replayed. @default 200 */
  subsample?: number;
  /** Memory samples replayed each iteration (the candidates whose loss rises most). */
  batchSizeMem: number;
}

/** The keys of {@link MIROptions}, for checking what users pass. */
const MIR_OPTIONS: OptionSpec<MIROptions> = {
  memSize: "integer",
  subsample: "integer",
  batchSizeMem: "integer",
};

function positive(what: string, v: unknown, example: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new RangeError(
      `MIRPlugin ${what} must be an integer ≥ 1, got ${String(v)}, e.g. ${example}`,
    );
  }
  return v;
}

/**
 * Maximally Interfered Retrieval (Aljundi et al. 2019), as Avalanche's `MIRPlugin`.
 *
 * - `afterTrainingExp`: every sample of the experience is offered to a memory of `memSize`
 *   samples kept by reservoir sampling ({@link ReservoirMemory}, drawing from `ctx.rng`). On an
 *   online stream (Avalanche's setting) each sub-experience is one minibatch, so the memory
 *   grows minibatch after minibatch.
 * - `afterBackward` (at the parameters the minibatch gradient `g` was taken at, before the
 *   update): `subsample` candidates are drawn from the memory uniformly without replacement
 *   (`ctx.rng`), each candidate's loss is compared before and after the virtual step
 *   `θ − lr·g` with the optimizer's learning rate ({@link virtualStepIncrease}), and the
 *   `batchSizeMem` candidates whose loss rises most are replayed: the gradient of the criterion's
 *   mean over them is added to `ctx.grads`, which is what adding their loss to the minibatch
 *   loss (Avalanche: `strategy.loss += replay_loss`) does to the update. The epoch's reported
 *   loss stays the minibatch's alone.
 *
 * Compared with Avalanche 0.6 (`avalanche/training/plugins/mir.py`): its replay loader draws
 * `batch_size_mem` candidates, so its `argsort(...)[n - batch_size_mem:]` keeps every candidate
 * and `subsample` goes unused; here `subsample` candidates are scored and `batchSizeMem` of
 * them kept, as the paper's method does. Avalanche keeps a class-balanced buffer and leaves out
 * the classes of the last minibatch; here the memory is a reservoir over everything seen (the
 * paper's) and every stored class can be replayed. Candidates are scored without dropout.
 *
 * Diagnostics: `lastCandidates` (memory indices scored in the last iteration), `lastChosen`
 * (those replayed), `lastIncrease` (their loss rises, candidate order).
 *
 * @example
 * ```ts ignore
 * const plugin = new MIRPlugin(500, 50, 10);
 * const strategy = naive({ model, plugins: [plugin], batchSize: 10, optimizer: sgd({ lr: 0.05 }) });
 * ```
 */
export class MIRPlugin extends StrategyPlugin {
  readonly memSize: number;
  readonly subsample: number;
  readonly batchSizeMem: number;
  /** The memory. */
  readonly memory: ReservoirMemory;
  /** Memory indices of the candidates scored in the last iteration. */
  lastCandidates: Int32Array = new Int32Array(0);
  /** Memory indices of the samples replayed in the last iteration. */
  lastChosen: Int32Array = new Int32Array(0);
  /** Loss rise of each candidate of the last iteration (in the order of `lastCandidates`). */
  lastIncrease: Float32Array = new Float32Array(0);
  #staging = new StagingArray();

  /**
   * Avalanche's order: `new MIRPlugin(memSize?, subsample?, batchSizeMem)`, or every option as
   * an object.
   */
  constructor(memSize: number | MIROptions = 200, subsample = 200, batchSizeMem?: number) {
    super();
    const o: MIROptions = typeof memSize === "object" && memSize
      ? checkOptions("MIRPlugin", memSize, MIR_OPTIONS)
      : { memSize: memSize as number, subsample, batchSizeMem: batchSizeMem! };
    this.memSize = positive("memSize", o.memSize ?? 200, 500);
    this.subsample = positive("subsample", o.subsample ?? 200, 50);
    this.batchSizeMem = positive("batchSizeMem", o.batchSizeMem, 10);
    this.memory = new ReservoirMemory(this.memSize);
  }

  override get name(): string {
    return "MIRPlugin";
  }

  /** Offers the experience's samples to the reservoir. */
  afterTrainingExp(ctx: StrategyContext): void {
    this.memory.add(ctx.experience!.dataset, ctx.rng);
  }

  /** Scores memory candidates by their loss rise after a virtual step and replays the worst. */
  async afterBackward(ctx: StrategyContext): Promise<void> {
    const mem = this.memory.buffer;
    if (mem.length === 0 || !ctx.grads || ctx.params.size === 0) return;
    const candidates = mem.length <= this.subsample
      ? Int32Array.from({ length: mem.length }, (_, i) => i)
      : ctx.rng.sample(mem.length, this.subsample);
    const lr = (ctx.optimizer as { lr?: number }).lr;
    if (typeof lr !== "number") {
      throw new TypeError(
        "MIRPlugin needs an optimizer with a learning rate (lr) for its virtual step",
      );
    }
    const grads = new Map([...ctx.grads].filter(([n]) => ctx.params.has(n)));
    const data = mem.tensors(candidates, this.#staging);
    const rise = virtualStepIncrease(ctx.model, ctx.params, grads, lr, data);
    this.lastCandidates = candidates;
    // Read asynchronously: the "webgpu" backend has no synchronous read of GPU data.
    this.lastIncrease = await rise.data() as Float32Array;
    const picked = topK(this.lastIncrease, this.batchSizeMem);
    this.lastChosen = picked.map((i) => candidates[i]);
    const replay = mem.tensors(this.lastChosen);
    const extra = memoryGradients(ctx, ctx.params, replay);
    const next = new Map(ctx.grads);
    for (const [n, g] of extra) {
      const own = next.get(n);
      next.set(n, own ? tf.add(own, g) : g);
    }
    ctx.grads = next;
  }

  /** Plain-data state: the memory. */
  state(): MIRPluginState {
    return { version: 1, memory: this.memory.state() };
  }

  /** Restores what {@link MIRPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as MIRPluginState;
    if (!s || s.version !== 1 || !s.memory) {
      throw new TypeError("Not a MIRPlugin state: expected { version: 1, memory }");
    }
    this.memory.loadState(s.memory);
  }

  /** Empties the memory. */
  dispose(): void {
    this.memory.clear();
  }
}

/** Checkpoint state of {@link MIRPlugin}. */
export interface MIRPluginState {
  version: 1;
  memory: ReservoirMemoryState;
}

/**
 * A {@link MIRPlugin} from options.
 *
 * @example
 * ```ts
 * import { mirPlugin } from "./mir.ts";
 * const plugin = mirPlugin({ memSize: 500, subsample: 50, batchSizeMem: 10 });
 * console.assert(plugin.subsample === 50);
 * ```
 */
export function mirPlugin(opts: MIROptions): MIRPlugin {
  if (!opts || typeof opts !== "object") {
    throw new TypeError(
      "mirPlugin expects options: mirPlugin({ memSize: 500, subsample: 50, batchSizeMem: 10 })",
    );
  }
  return new MIRPlugin(checkOptions("mirPlugin", opts, MIR_OPTIONS));
}

/** Options of {@link mir}: the strategy's options and MIR's. */
export interface MIRStrategyOptions extends StrategyOptions, MIROptions {}

/**
 * A MIR strategy: fine-tuning with a {@link MIRPlugin} first in the plugin list (Avalanche's
 * `Naive(..., plugins=[MIRPlugin(...)])`). The plugin is `strategy.plugins[0]`.
 *
 * @example
 * ```ts ignore
 * const strategy = mir({
 *   model: mlp({ hidden: [400], dropout: 0.5 }),
 *   memSize: 500,
 *   subsample: 50,
 *   batchSizeMem: 10,
 *   optimizer: sgd({ lr: 0.05 }),
 *   batchSize: 10,
 * });
 * ```
 */
export function mir(opts: MIRStrategyOptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError(
      "mir expects options: mir({ model, memSize: 500, subsample: 50, batchSizeMem: 10 })",
    );
  }
  checkOptions("mir", opts, { ...STRATEGY_OPTIONS, ...MIR_OPTIONS });
  const { memSize, subsample, batchSizeMem, ...rest } = opts;
  return withPlugin("MIR", new MIRPlugin({ memSize, subsample, batchSizeMem }), rest);
}
