/**
 * Averaged Gradient Episodic Memory (A-GEM; Chaudhry, Ranzato, Rohrbach & Elhoseiny, "Efficient
 * Lifelong Learning with A-GEM", ICLR 2019), as Avalanche's `AGEMPlugin`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkPatternsPerExperience, memoryGradients } from "./gem.ts";
import { EpisodicMemory, type EpisodicMemoryState } from "./memory.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";

/** What {@link agemProject} returns (tensors of the current scope). */
export interface AGEMTensorProjection {
  /** The gradients to use, by parameter name (the same tensors as the input when not projected). */
  grads: Map<string, tf.Tensor>;
  /** `g·g_ref` before projection (over the parameters present in both maps). */
  dot: tf.Scalar;
  /** `g_ref·g_ref` over every reference gradient. */
  refNorm2: tf.Scalar;
  /** 1 when the gradient was projected, else 0 (a tensor: no read-back). */
  projected: tf.Scalar;
}

/**
 * A-GEM's projection on tensors, without reading anything back: with `dot = g·g_ref`, the
 * gradient becomes `g̃ = g − (dot / g_ref·g_ref) g_ref` when `dot < 0` and stays `g` otherwise
 * (the branch is a `tf.where` on the device). The vectors are the concatenation of the
 * per-parameter gradients (Avalanche flattens them; here the dot products are summed per
 * parameter, which is the same number without building the long vector). A parameter missing
 * from `grads` counts as a zero gradient and gets no entry in the result; a parameter missing
 * from `reference` counts as zero in the reference.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { agemProject } from "./agem.ts";
 * const r = agemProject(
 *   new Map([["w", tf.tensor1d([1, -1])]]),
 *   new Map([["w", tf.tensor1d([0, 2])]]),
 * );
 * // dot = -2 < 0: g̃ = g - (-2/4)·(0, 2) = (1, 0)
 * console.assert(r.grads.get("w")!.dataSync().join() === "1,0");
 * ```
 */
export function agemProject(
  grads: ReadonlyMap<string, tf.Tensor>,
  reference: ReadonlyMap<string, tf.Tensor>,
): AGEMTensorProjection {
  for (const [name, r] of reference) {
    const g = grads.get(name);
    if (g && g.shape.join() !== r.shape.join()) {
      throw new RangeError(
        `agemProject: gradient of "${name}" has shape [${g.shape}] but its reference [${r.shape}]`,
      );
    }
  }
  const common = [...grads.keys()].filter((n) => reference.has(n));
  const dotTerms = common.map((n) => tf.sum(tf.mul(grads.get(n)!, reference.get(n)!)));
  const dot = (dotTerms.length > 0 ? tf.addN(dotTerms) : tf.scalar(0)) as tf.Scalar;
  const normTerms = [...reference.values()].map((r) => tf.sum(tf.square(r)));
  const refNorm2 = (normTerms.length > 0 ? tf.addN(normTerms) : tf.scalar(0)) as tf.Scalar;
  const negative = tf.less(dot, 0);
  const projected = tf.cast(negative, "float32") as tf.Scalar;
  const alpha = tf.where(negative, tf.div(dot, tf.maximum(refNorm2, 1e-30)), tf.zerosLike(dot));
  const out = new Map(grads);
  for (const n of common) {
    out.set(n, tf.sub(grads.get(n)!, tf.mul(alpha, reference.get(n)!)));
  }
  return { grads: out, dot, refNorm2, projected };
}

/**
 * How A-GEM draws its reference batch from the memory: `"experienceBalanced"` takes
 * `⌊sampleSize / k⌋` samples from each of the k stored experiences, with replacement (Avalanche's
 * `AGEMPlugin` since it keeps one buffer per experience behind a `GroupBalancedInfiniteDataLoader`
 * of batch size `sample_size // len(buffers)` over samplers with replacement); `"uniform"` takes
 * `sampleSize` samples of the merged memory without replacement (the whole memory when it is not
 * larger), as Avalanche's first `AGEMPlugin` did.
 */
export type AGEMSampling = "experienceBalanced" | "uniform";

/** Options of {@link AGEMPlugin}. */
export interface AGEMOptions {
  /** Samples of each training experience kept in memory. */
  patternsPerExperience: number;
  /** Memory samples drawn each iteration to compute the reference gradient. */
  sampleSize: number;
  /** How the reference batch is drawn. @default "experienceBalanced" (Avalanche's) */
  sampling?: AGEMSampling;
}

/** The keys of {@link AGEMOptions}, for checking what users pass. */
const AGEM_OPTIONS: OptionSpec<AGEMOptions> = {
  patternsPerExperience: "integer",
  sampleSize: "integer",
  sampling: oneOf("experienceBalanced", "uniform"),
};

/**
 * Avalanche's A-GEM reference batch: `⌊sampleSize / k⌋` (at least 1) indices from each of the k
 * experiences of a merged memory whose experiences hold `sizes[j]` samples, drawn with
 * replacement, as indices of the merged memory (experience after experience).
 *
 * @example
 * ```ts
 * import { Rng } from "../random.ts";
 * import { experienceBalancedSample } from "./agem.ts";
 * const idx = experienceBalancedSample([250, 250, 250], 256, new Rng(0));
 * console.assert(idx.length === 255 && idx.slice(0, 85).every((i) => i < 250));
 * console.assert(idx.slice(85, 170).every((i) => i >= 250 && i < 500));
 * ```
 */
export function experienceBalancedSample(
  sizes: readonly number[],
  sampleSize: number,
  rng: Rng,
): Int32Array {
  const k = sizes.filter((n) => n > 0).length;
  if (k === 0) return new Int32Array(0);
  const per = Math.max(1, Math.floor(sampleSize / k));
  const out = new Int32Array(per * k);
  let at = 0, offset = 0;
  for (const n of sizes) {
    if (n > 0) { for (let i = 0; i < per; i++) out[at++] = offset + rng.int(n); }
    offset += n;
  }
  return out;
}

/**
 * Averaged GEM (Chaudhry et al. 2019), as Avalanche's `AGEMPlugin`.
 *
 * After each training experience, `patternsPerExperience` of its samples (drawn uniformly
 * without replacement from `ctx.rng`; Avalanche keeps a random split of the same size) join the
 * memory as that experience's buffer. In every later training iteration (in `afterBackward`, at
 * the parameters the minibatch gradient was taken at), a reference batch is drawn from `ctx.rng`
 * as `sampling` says (by default as Avalanche: `⌊sampleSize / k⌋` samples from each of the k
 * experience buffers, with replacement, see {@link experienceBalancedSample}), the gradient
 * `g_ref` of the criterion on it is computed (task labels passed for multi-head models), and if
 * the minibatch
 * gradient `g` has `g·g_ref < 0` it is replaced by its projection
 * `g̃ = g − (g·g_ref / g_ref·g_ref) g_ref` onto the half-space `g̃·g_ref ≥ 0`
 * ({@link agemProject}). The vector math and the branch run on the device: nothing is read back.
 *
 * Diagnostics: `checks` (iterations with a memory), `projections` (iterations projected, kept
 * as a device counter and read when asked), `lastSample` (memory indices of the last reference
 * batch).
 *
 * @example
 * ```ts ignore
 * const plugin = new AGEMPlugin(256, 256);
 * const strategy = naive({ model, plugins: [plugin], batchSize: 10, optimizer: sgd({ lr: 0.1 }) });
 * ```
 */
export class AGEMPlugin extends StrategyPlugin {
  readonly patternsPerExperience: number;
  readonly sampleSize: number;
  readonly sampling: AGEMSampling;
  /** The merged memory (one chunk per experience). */
  readonly memory: EpisodicMemory = new EpisodicMemory();
  /** Training iterations that ran with a non-empty memory. */
  checks = 0;
  /** Memory indices of the samples of the last reference gradient. */
  lastSample: Int32Array = new Int32Array(0);
  #projections: tf.Variable | undefined;
  #projectionsOffset = 0;

  /**
   * @param patternsPerExperience samples kept per experience, or every option as an object.
   * @param sampleSize memory samples per reference gradient.
   */
  constructor(patternsPerExperience: number | AGEMOptions, sampleSize?: number) {
    super();
    const o: AGEMOptions = typeof patternsPerExperience === "object" && patternsPerExperience
      ? checkOptions("AGEMPlugin", patternsPerExperience, AGEM_OPTIONS)
      : { patternsPerExperience: patternsPerExperience as number, sampleSize: sampleSize! };
    this.patternsPerExperience = checkPatternsPerExperience("AGEMPlugin", o.patternsPerExperience);
    const s = o.sampleSize;
    if (typeof s !== "number" || !Number.isInteger(s) || s < 1) {
      throw new RangeError(
        `AGEMPlugin sampleSize must be an integer ≥ 1, got ${String(s)}: pass how many memory ` +
          "samples to draw for each reference gradient, e.g. 256",
      );
    }
    this.sampleSize = s;
    this.sampling = o.sampling ?? "experienceBalanced";
    if (this.sampling !== "experienceBalanced" && this.sampling !== "uniform") {
      throw new RangeError(
        `AGEMPlugin sampling must be "experienceBalanced" or "uniform", got ${String(o.sampling)}`,
      );
    }
  }

  override get name(): string {
    return "AGEMPlugin";
  }

  /** Training iterations whose gradient was projected (reads one number from the device). */
  get projections(): number {
    return this.#projectionsOffset +
      (this.#projections && !this.#projections.isDisposed ? this.#projections.dataSync()[0] : 0);
  }

  /** Stores samples of the experience just trained. */
  async afterTrainingExp(ctx: StrategyContext): Promise<void> {
    this.memory.addRandom(ctx.experience!.dataset, this.patternsPerExperience, ctx.rng);
    // The experience's count joins the offset, read asynchronously ("webgpu" has no synchronous
    // read of GPU data), so that `projections`, `state()` and `dispose()` read a value on the CPU.
    const v = this.#projections;
    if (v && !v.isDisposed) {
      const n = (await v.data())[0];
      if (n !== 0) {
        this.#projectionsOffset += n;
        tf.tidy(() => v.assign(tf.scalar(0))); // made in JavaScript: readable at once
      }
    }
  }

  /** Computes the reference gradient and projects `ctx.grads` when it conflicts with it. */
  afterBackward(ctx: StrategyContext): void {
    const size = this.memory.size;
    if (size === 0 || !ctx.grads || ctx.params.size === 0) return;
    this.checks++;
    const idx = this.sampling === "experienceBalanced"
      ? experienceBalancedSample(this.memory.sizes, this.sampleSize, ctx.rng)
      : size <= this.sampleSize
      ? Int32Array.from({ length: size }, (_, i) => i)
      : ctx.rng.sample(size, this.sampleSize);
    this.lastSample = idx;
    const reference = memoryGradients(ctx, ctx.params, this.memory.gather(idx));
    const grads = new Map([...ctx.grads].filter(([n]) => ctx.params.has(n)));
    const r = agemProject(grads, reference);
    const next = new Map(ctx.grads);
    for (const [n, g] of r.grads) next.set(n, g);
    ctx.grads = next;
    this.#projections ??= tf.variable(tf.scalar(0), false);
    tf.tidy(() => this.#projections!.assign(tf.add(this.#projections!, r.projected)));
  }

  /** Plain-data state: the memory and the counters. */
  state(): AGEMPluginState {
    return {
      version: 1,
      memory: this.memory.state(),
      checks: this.checks,
      projections: this.projections,
    };
  }

  /** Restores what {@link AGEMPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as AGEMPluginState;
    if (!s || s.version !== 1 || !s.memory) {
      throw new TypeError("Not an AGEMPlugin state: expected { version: 1, memory, ... }");
    }
    this.memory.loadState(s.memory);
    this.checks = s.checks ?? 0;
    this.#projections?.dispose();
    this.#projections = undefined;
    this.#projectionsOffset = s.projections ?? 0;
  }

  /** Empties the memory and frees the projection counter. */
  dispose(): void {
    this.memory.clear();
    this.#projectionsOffset = this.projections;
    this.#projections?.dispose();
    this.#projections = undefined;
  }
}

/** Checkpoint state of {@link AGEMPlugin}. */
export interface AGEMPluginState {
  version: 1;
  memory: EpisodicMemoryState;
  checks: number;
  projections: number;
}

/**
 * An {@link AGEMPlugin} from options.
 *
 * @example
 * ```ts
 * import { agemPlugin } from "./agem.ts";
 * const plugin = agemPlugin({ patternsPerExperience: 250, sampleSize: 256 });
 * console.assert(plugin.sampleSize === 256);
 * ```
 */
export function agemPlugin(opts: AGEMOptions): AGEMPlugin {
  if (!opts || typeof opts !== "object") {
    throw new TypeError(
      "agemPlugin expects options: agemPlugin({ patternsPerExperience: 256, sampleSize: 256 })",
    );
  }
  checkOptions("agemPlugin", opts, AGEM_OPTIONS);
  return new AGEMPlugin(opts);
}

/** Options of {@link agem}: the strategy's options and A-GEM's. */
export interface AGEMStrategyOptions extends StrategyOptions, AGEMOptions {}

/**
 * An A-GEM strategy (Avalanche's `AGEM`): fine-tuning with an {@link AGEMPlugin} first in the
 * plugin list. The plugin is `strategy.plugins[0]`.
 *
 * @example
 * ```ts ignore
 * const bench = await permutedMNIST({ experiences: 10 });
 * const strategy = agem({
 *   model: mlp({ hidden: [256, 256] }),
 *   patternsPerExperience: 250,
 *   sampleSize: 256,
 *   optimizer: sgd({ lr: 0.1 }),
 *   batchSize: 10,
 * });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function agem(opts: AGEMStrategyOptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError(
      "agem expects options: agem({ model, patternsPerExperience: 256, sampleSize: 256 })",
    );
  }
  checkOptions("agem", opts, { ...STRATEGY_OPTIONS, ...AGEM_OPTIONS });
  const { patternsPerExperience, sampleSize, sampling, ...rest } = opts;
  const plugin = new AGEMPlugin({ patternsPerExperience, sampleSize, sampling });
  return withPlugin("AGEM", plugin, rest);
}
