/**
 * Gradient Episodic Memory (GEM; Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual
 * Learning", NeurIPS 2017), as Avalanche's `GEMPlugin`, plus the memory-gradient helpers that
 * A-GEM shares. The episodic memory both keep ({@link EpisodicMemory}) lives in `memory.ts` with
 * the other rehearsal memories and is exported here too.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { EpisodicMemory, type EpisodicMemoryState, type MemoryTensors } from "./memory.ts";
import { checkGEMOptions, type GEMDualOptions, type QPResult, solveGEMDual } from "./qp.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";

export { EpisodicMemory, type EpisodicMemoryState, type MemoryTensors } from "./memory.ts";

// ---------------------------------------------------------------------------------------------
// Gradient helpers
// ---------------------------------------------------------------------------------------------

/**
 * Concatenates gradients into one vector, in the order of `params` (Avalanche's
 * `torch.cat([p.grad.flatten() ...])`): a parameter without a gradient contributes zeros.
 *
 * @param grads gradients by parameter name.
 * @param params parameters by name (their order and sizes define the layout).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { flattenGradients, unflattenGradients } from "./gem.ts";
 * const params = new Map([["w", tf.variable(tf.zeros([2, 2]))], ["b", tf.variable(tf.zeros([2]))]]);
 * const flat = flattenGradients(new Map([["w", tf.ones([2, 2])]]), params);
 * console.assert(flat.dataSync().join() === "1,1,1,1,0,0"); // "b" has no gradient: zeros
 * console.assert(unflattenGradients(flat, params).get("w")!.shape.join() === "2,2");
 * ```
 */
export function flattenGradients(
  grads: ReadonlyMap<string, tf.Tensor>,
  params: ReadonlyMap<string, tf.Variable>,
): tf.Tensor1D {
  return tf.tidy(() => {
    const parts = [...params].map(([name, v]) => {
      const g = grads.get(name);
      return g ? tf.reshape(g, [-1]) : tf.zeros([v.size]);
    });
    if (parts.length === 0) return tf.zeros([0]) as tf.Tensor1D;
    return (parts.length === 1 ? parts[0] : tf.concat(parts)) as tf.Tensor1D;
  });
}

/**
 * Splits a vector made by {@link flattenGradients} back into tensors of the parameters' shapes,
 * for the names in `only` (default: every parameter). See {@link flattenGradients} for an
 * example.
 */
export function unflattenGradients(
  flat: tf.Tensor1D,
  params: ReadonlyMap<string, tf.Variable>,
  only?: (name: string) => boolean,
): Map<string, tf.Tensor> {
  let total = 0;
  for (const v of params.values()) total += v.size;
  if (flat.size !== total) {
    throw new RangeError(
      `A flat gradient of ${flat.size} values does not match parameters of ${total} values`,
    );
  }
  const out = new Map<string, tf.Tensor>();
  let offset = 0;
  for (const [name, v] of params) {
    if (!only || only(name)) {
      out.set(name, tf.reshape(tf.slice(flat, offset, v.size), v.shape));
    }
    offset += v.size;
  }
  return out;
}

/**
 * Gradients of the criterion on some memory samples with respect to `params` (one extra forward
 * and backward pass of the model, outside the training tape), keyed by parameter name; a
 * parameter that does not reach the loss (another task's head) is absent. Task labels are passed
 * to the forward, for multi-head models. Call it outside the training tape (e.g. in
 * `afterBackward`) and inside a tensor scope.
 *
 * @example
 * ```ts ignore
 * const plugin: Plugin = {
 *   afterBackward(ctx) {
 *     const ref = memoryGradients(ctx, ctx.params, memory.experienceTensors(0));
 *     console.log([...ref.keys()]); // e.g. features.0.weight, ..., classifier.bias
 *   },
 * };
 * ```
 */
export function memoryGradients(
  ctx: StrategyContext,
  params: ReadonlyMap<string, tf.Variable>,
  data: MemoryTensors,
): Map<string, tf.Tensor> {
  const vars = [...params.values()];
  if (vars.length === 0) return new Map();
  const byEngineName = new Map([...params].map(([k, v]) => [v.name, k]));
  const { value, grads } = tf.variableGrads(
    () =>
      ctx.criterion(
        ctx.model.forward(data.x, { taskLabels: data.t, taskLabelsArray: data.tArray }),
        data.y,
      ),
    vars,
  );
  value.dispose();
  return new Map(Object.entries(grads).map(([k, g]) => [byEngineName.get(k) ?? k, g]));
}

function positiveInt(what: string, v: unknown, fix: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new RangeError(`${what} must be an integer ≥ 1, got ${String(v)}: ${fix}`);
  }
  return v;
}

/**
 * Shared by GEM and A-GEM: checks a `patternsPerExperience` option and returns it.
 *
 * @example
 * ```ts
 * import { checkPatternsPerExperience } from "./gem.ts";
 * console.assert(checkPatternsPerExperience("GEMPlugin", 256) === 256);
 * ```
 */
export function checkPatternsPerExperience(who: string, v: unknown): number {
  return positiveInt(
    `${who} patternsPerExperience`,
    v,
    "pass how many samples of each experience to keep, e.g. 256",
  );
}

// ---------------------------------------------------------------------------------------------
// GEM
// ---------------------------------------------------------------------------------------------

/** What {@link gemProject} returns. */
export interface GEMTensorProjection {
  /** The gradient to use (a new tensor when projected, else `g` itself). */
  gradient: tf.Tensor1D;
  /** Whether some memory gradient had a negative dot product with `g`. */
  projected: boolean;
  /** `G_k·g` for every memory k (read back from the device). */
  dots: Float64Array;
  /** The multipliers `v` (empty when not projected). */
  v: Float64Array;
  /** The QP solve (undefined when not projected). */
  qp?: QPResult;
}

/** A block of GEM's vectors: the rows of `G` and the entries of `g` for some coordinates. */
export interface GEMBlock {
  /** Memory gradients restricted to the block [t, n]. */
  G: tf.Tensor2D;
  /** Current gradient restricted to the block [n]. */
  g: tf.Tensor1D;
}

/** What {@link gemProjectBlocks} returns. */
export interface GEMBlocksProjection {
  /** `g̃` restricted to each block (new tensors when projected, else each block's `g`). */
  gradients: tf.Tensor1D[];
  /** Whether some memory gradient had a negative dot product with `g`. */
  projected: boolean;
  /** `G_k·g` for every memory k (read back from the device). */
  dots: Float64Array;
  /** The multipliers `v` (empty when not projected). */
  v: Float64Array;
  /** The QP solve (undefined when not projected). */
  qp?: QPResult;
}

/**
 * GEM's projection on tensors, for vectors given in blocks (one per parameter: no flattening).
 * Sums the blocks' contributions to the t dot products `G g` and to the t × t Gram matrix
 * `G Gᵀ`, reads them back (one read-back of t + t² numbers), and when some `G_k·g < 0` solves
 * the dual QP on the CPU in Float64 ({@link solveGEMDual}); then `g̃ = Gᵀv + g` is computed on
 * the device, block by block.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { gemProjectBlocks } from "./gem.ts";
 * // G₀ = (1, 0 | 0), g = (−1, 1 | 2) in two blocks: g̃ = (0, 1 | 2).
 * const r = await gemProjectBlocks([
 *   { G: tf.tensor2d([[1, 0]]), g: tf.tensor1d([-1, 1]) },
 *   { G: tf.tensor2d([[0]]), g: tf.tensor1d([2]) },
 * ]);
 * console.assert(r.gradients[0].dataSync().join() === "0,1" && r.gradients[1].dataSync()[0] === 2);
 * ```
 */
export async function gemProjectBlocks(
  blocks: readonly GEMBlock[],
  opts: GEMDualOptions = {},
): Promise<GEMBlocksProjection> {
  // Checked here too: the solver sees the options only when some dot product is negative.
  checkGEMOptions("gemProjectBlocks", opts);
  if (blocks.length === 0) {
    throw new RangeError("gemProjectBlocks needs at least one block of gradients");
  }
  const t = blocks[0].G.shape[0];
  blocks.forEach(({ G, g }, i) => {
    if (G.rank !== 2 || G.shape[0] !== t || g.rank !== 1 || g.size !== G.shape[1]) {
      throw new RangeError(
        `GEM block ${i}: G has shape [${G.shape}] and g [${g.shape}]; expected [${t}, n] and [n]`,
      );
    }
  });
  const packed = tf.tidy(() => {
    const dots = blocks.map(({ G, g }) => tf.reshape(tf.matMul(G, tf.reshape(g, [-1, 1])), [t]));
    const grams = blocks.map(({ G }) => tf.reshape(tf.matMul(G, tf.transpose(G)), [t * t]));
    return tf.concat([tf.addN(dots), tf.addN(grams)]);
  });
  const data = await packed.data();
  packed.dispose();
  const dots = Float64Array.from(data.subarray(0, t));
  if (!dots.some((d) => d < 0)) {
    return { gradients: blocks.map((b) => b.g), projected: false, dots, v: new Float64Array(0) };
  }
  const qp = solveGEMDual(data.subarray(t), dots, opts);
  const v = qp.x;
  const gradients = tf.tidy(() => {
    const vt = tf.tensor2d(Float32Array.from(v), [1, t], "float32");
    return blocks.map(({ G, g }) => tf.add(g, tf.reshape(tf.matMul(vt, G), [-1])) as tf.Tensor1D);
  });
  return { gradients, projected: true, dots, v, qp };
}

/** What {@link gemProject} returns. */
export interface GEMTensorProjection {
  /** The gradient to use (a new tensor when projected, else `g` itself). */
  gradient: tf.Tensor1D;
  /** Whether some memory gradient had a negative dot product with `g`. */
  projected: boolean;
  /** `G_k·g` for every memory k (read back from the device). */
  dots: Float64Array;
  /** The multipliers `v` (empty when not projected). */
  v: Float64Array;
  /** The QP solve (undefined when not projected). */
  qp?: QPResult;
}

/**
 * GEM's projection on flat tensors ({@link gemProjectBlocks} with one block): when some
 * `G_k·g < 0`, returns `g̃ = Gᵀv + g` with `v` from the dual QP, else `g` itself.
 *
 * @param G memory gradients, one per row [t, p].
 * @param g the current gradient [p].
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { gemProject } from "./gem.ts";
 * const r = await gemProject(tf.tensor2d([[1, 0]]), tf.tensor1d([-1, 1]));
 * console.assert(r.projected && Math.abs(r.gradient.dataSync()[0]) < 1e-6);
 * ```
 */
export async function gemProject(
  G: tf.Tensor2D,
  g: tf.Tensor1D,
  opts: GEMDualOptions = {},
): Promise<GEMTensorProjection> {
  if (G.rank !== 2 || g.rank !== 1 || g.size !== G.shape[1]) {
    throw new RangeError(`gemProject: g has shape [${g.shape}], G has shape [${G.shape}]`);
  }
  const { gradients, ...rest } = await gemProjectBlocks([{ G, g }], opts);
  return { gradient: gradients[0], ...rest };
}

/** Options of {@link GEMPlugin}. */
export interface GEMOptions {
  /** Samples of each training experience kept in memory (the paper uses 256). */
  patternsPerExperience: number;
  /**
   * Margin γ ≥ 0 of the projection (Avalanche's `memory_strength`): the QP multipliers are kept
   * ≥ γ, which pushes the update further into directions that also lower the memory losses
   * (backward transfer). 0 is the exact Euclidean projection. @default 0.5 (the paper's value)
   */
  memoryStrength?: number;
  /**
   * Ridge added to the diagonal of `G Gᵀ` before solving (Avalanche: 10⁻³, needed by quadprog).
   * Our active-set solver handles singular `G Gᵀ`, so the default is the exact problem.
   * @default 0
   */
  eps?: number;
}

/** The keys of {@link GEMOptions}, for checking what users pass. */
const GEM_OPTIONS: OptionSpec<GEMOptions> = {
  patternsPerExperience: "integer",
  memoryStrength: "number",
  eps: "number",
};

/**
 * Gradient Episodic Memory (Lopez-Paz & Ranzato 2017), as Avalanche's `GEMPlugin`.
 *
 * After each training experience, `patternsPerExperience` samples of it (drawn uniformly without
 * replacement from the run's seeded generator `ctx.rng`; Avalanche takes the first samples of a
 * shuffled loader, the same distribution) are stored in an episodic memory, one chunk per
 * experience. In every later training iteration (in `afterBackward`, where the model still has
 * the parameters the minibatch gradient was taken at), the plugin computes the gradient `G_k` of
 * the criterion on each past experience's memory chunk (one extra forward/backward pass each,
 * with the chunk's task labels for multi-head models). The vectors are those of Avalanche (the
 * concatenation of every parameter of `ctx.params`, zeros for a parameter without a gradient)
 * but are never concatenated: dot products and the update are computed per parameter
 * ({@link gemProjectBlocks}), which is the same arithmetic without the copies. When some
 * `G_k·g < 0`, the minibatch gradient `g` is replaced by `g̃ = Gᵀv + g`, where `v ≥ γ` solves
 * the dual QP `min ½ vᵀGGᵀv + (Gg)ᵀv` ({@link solveGEMDual}, an exact active-set solver in
 * Float64 on the t × t matrix); with γ = 0 this is the closest vector to `g` with `G g̃ ≥ 0`.
 * Only parameters that had a gradient in `ctx.grads` are written back (Avalanche copies into
 * `p.grad` only where it exists). The plugin does not use task labels otherwise.
 *
 * Memory gradients are computed in `afterBackward` rather than in `beforeTrainingIteration`
 * (Avalanche): the parameters are the same at both points, `ctx.params` is final there (after
 * any plugin that freezes parameters), and no tensor has to be kept between hooks.
 *
 * Cost per iteration: t extra forward/backward passes on `patternsPerExperience` samples
 * (uploaded from typed arrays), t × t Gram products, one read-back of t² + t numbers, and a
 * t-variable QP in JavaScript.
 *
 * Diagnostics: `checks` (iterations with a memory), `projections` (iterations projected),
 * `lastDots` (`G_k·g` of the last iteration), `lastMultipliers` (`v` of the last projection).
 *
 * @example
 * ```ts ignore
 * const plugin = new GEMPlugin(256, 0.5);
 * const strategy = naive({ model, plugins: [plugin], batchSize: 10, optimizer: sgd({ lr: 0.1 }) });
 * ```
 */
export class GEMPlugin extends StrategyPlugin {
  readonly patternsPerExperience: number;
  readonly memoryStrength: number;
  readonly eps: number;
  /** The stored samples. */
  readonly memory: EpisodicMemory = new EpisodicMemory();
  /** Training iterations that ran with a non-empty memory. */
  checks = 0;
  /** Training iterations whose gradient was projected. */
  projections = 0;
  /** `G_k·g` for each memory chunk in the last checked iteration. */
  lastDots: Float64Array = new Float64Array(0);
  /** Multipliers `v` of the last projection. */
  lastMultipliers: Float64Array = new Float64Array(0);
  /** The QP solve of the last projection. */
  lastQP: QPResult | undefined;

  /**
   * @param patternsPerExperience samples kept per experience, or every option as an object.
   * @param memoryStrength the margin γ (default 0.5).
   */
  constructor(patternsPerExperience: number | GEMOptions, memoryStrength?: number) {
    super();
    const o: GEMOptions = typeof patternsPerExperience === "object" && patternsPerExperience
      ? checkOptions("GEMPlugin", patternsPerExperience, GEM_OPTIONS)
      : { patternsPerExperience: patternsPerExperience as number, memoryStrength };
    this.patternsPerExperience = checkPatternsPerExperience("GEMPlugin", o.patternsPerExperience);
    this.memoryStrength = o.memoryStrength ?? 0.5;
    this.eps = o.eps ?? 0;
    if (
      !(typeof this.memoryStrength === "number" && this.memoryStrength >= 0 &&
        Number.isFinite(this.memoryStrength))
    ) {
      throw new RangeError(
        `GEMPlugin memoryStrength must be a finite number ≥ 0, got ${this.memoryStrength}: ` +
          "use 0 for the exact projection or about 0.5 (the paper's value)",
      );
    }
    if (!(typeof this.eps === "number" && this.eps >= 0 && Number.isFinite(this.eps))) {
      throw new RangeError(
        `GEMPlugin eps must be a finite number ≥ 0, got ${this.eps}: it is a ridge on GGᵀ ` +
          "(0 for the exact problem, 1e-3 as Avalanche)",
      );
    }
  }

  override get name(): string {
    return "GEMPlugin";
  }

  /** Stores samples of the experience just trained. */
  afterTrainingExp(ctx: StrategyContext): void {
    this.memory.addRandom(ctx.experience!.dataset, this.patternsPerExperience, ctx.rng);
  }

  /** Computes the memory gradients and projects `ctx.grads` when a constraint is violated. */
  async afterBackward(ctx: StrategyContext): Promise<void> {
    const t = this.memory.experiences;
    if (t === 0 || !ctx.grads || ctx.params.size === 0) return;
    const params = ctx.params;
    const grads = ctx.grads;
    this.checks++;
    // tf.tidy keeps the tensors of a returned plain object (not of a Map).
    const memory = Array.from(
      { length: t },
      (_, k) =>
        tf.tidy(() =>
          Object.fromEntries(memoryGradients(ctx, params, this.memory.experienceTensors(k)))
        ) as Record<string, tf.Tensor>,
    );
    // One block per parameter (ctx.params order; a missing gradient is zeros): G_p is [t, size].
    const blocks: GEMBlock[] = [...params].map(([name, p]) =>
      tf.tidy(() => {
        const flat = (x: tf.Tensor | undefined) => (x ? tf.reshape(x, [-1]) : tf.zeros([p.size]));
        return {
          G: tf.stack(memory.map((m) => flat(m[name]))) as tf.Tensor2D,
          g: flat(grads.get(name)) as tf.Tensor1D,
        };
      })
    );
    for (const m of memory) tf.dispose(Object.values(m));
    const r = await gemProjectBlocks(blocks, {
      memoryStrength: this.memoryStrength,
      eps: this.eps,
    });
    this.lastDots = r.dots;
    if (r.projected) {
      this.projections++;
      this.lastMultipliers = r.v;
      this.lastQP = r.qp;
      const next = new Map(grads);
      [...params].forEach(([name, p], i) => {
        // Only parameters with a gradient are written back, as Avalanche does.
        if (grads.has(name)) next.set(name, tf.reshape(r.gradients[i], p.shape));
      });
      ctx.grads = next;
    }
    for (const b of blocks) tf.dispose([b.G, b.g]);
  }

  /** Plain-data state: the memory and the counters. */
  state(): GEMPluginState {
    return {
      version: 1,
      memory: this.memory.state(),
      checks: this.checks,
      projections: this.projections,
    };
  }

  /** Restores what {@link GEMPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as GEMPluginState;
    if (!s || s.version !== 1 || !s.memory) {
      throw new TypeError("Not a GEMPlugin state: expected { version: 1, memory, ... }");
    }
    this.memory.loadState(s.memory);
    this.checks = s.checks ?? 0;
    this.projections = s.projections ?? 0;
  }

  /** Empties the memory (the plugin keeps no tensor between iterations). */
  dispose(): void {
    this.memory.clear();
  }
}

/** Checkpoint state of {@link GEMPlugin}. */
export interface GEMPluginState {
  version: 1;
  memory: EpisodicMemoryState;
  checks: number;
  projections: number;
}

/**
 * A {@link GEMPlugin} from options.
 *
 * @example
 * ```ts
 * import { gemPlugin } from "./gem.ts";
 * const plugin = gemPlugin({ patternsPerExperience: 256, memoryStrength: 0.5 });
 * console.assert(plugin.memoryStrength === 0.5);
 * ```
 */
export function gemPlugin(opts: GEMOptions): GEMPlugin {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("gemPlugin expects options: gemPlugin({ patternsPerExperience: 256 })");
  }
  checkOptions("gemPlugin", opts, GEM_OPTIONS);
  return new GEMPlugin(opts);
}

/** Options of {@link gem}: the strategy's options and GEM's. */
export interface GEMStrategyOptions extends StrategyOptions, GEMOptions {}

/**
 * A GEM strategy (Avalanche's `GEM`): fine-tuning with a {@link GEMPlugin} first in the plugin
 * list. The plugin is `strategy.plugins[0]`.
 *
 * @example
 * ```ts ignore
 * const bench = await permutedMNIST({ experiences: 10 });
 * const strategy = gem({
 *   model: mlp({ hidden: [100, 100] }),
 *   patternsPerExperience: 256,
 *   memoryStrength: 0.5,
 *   optimizer: sgd({ lr: 0.1 }),
 *   batchSize: 10,
 * });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function gem(opts: GEMStrategyOptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("gem expects options: gem({ model, patternsPerExperience: 256 })");
  }
  checkOptions("gem", opts, { ...STRATEGY_OPTIONS, ...GEM_OPTIONS });
  const { patternsPerExperience, memoryStrength, eps, ...rest } = opts;
  const plugin = new GEMPlugin({ patternsPerExperience, memoryStrength, eps });
  return withPlugin("GEM", plugin, rest);
}
