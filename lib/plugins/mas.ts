/**
 * Memory Aware Synapses (Aljundi, Babiloni, Elhoseiny, Rohrbach and Tuytelaars, "Memory Aware
 * Synapses: Learning what (not) to forget", ECCV 2018), as Avalanche's `MASPlugin`: after each
 * training experience, the importance of every parameter is how much the L2 norm of the model's
 * output moves with it on the experience's data (no labels needed); later experiences are
 * trained with a quadratic penalty weighted by these importances.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Dataset } from "../data/dataset.ts";
import { checkBatchSize, DatasetLoader } from "../data/loader.ts";
import { BatchAssembler } from "../engine/batches.ts";
import type { Module, TensorState } from "../nn/module.ts";
import { type PenaltyEntry, quadraticPenaltyTerm } from "../nn/penalties.ts";
import type { LossTerm } from "../nn/terms.ts";
import { Rng } from "../random.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { type Plugin, StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import {
  disposeAll,
  fitted,
  keptCopies,
  mapFromState,
  mapToState,
  setKept,
} from "./_tensor_maps.ts";

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

// ---------------------------------------------------------------------------- importances ----

/** Options of {@link masImportances}. */
export interface MASImportanceOptions {
  /** Minibatch size (MASPlugin uses the strategy's training batch size). @default 32 */
  batchSize?: number;
}

/**
 * The mean of the L2 norms of the rows of `out` (`[n, k]`), with the gradient
 * `out_i / (n ‖out_i‖)` (0 for a zero row, where the norm has no gradient: PyTorch's subgradient).
 */
const meanRowNorm = tf.customGrad(
  ((out: tf.Tensor, save: (ts: tf.Tensor[]) => void) => {
    const norms = tf.sqrt(tf.sum(tf.square(out), 1));
    save([out, norms]);
    return {
      value: tf.mean(norms),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [o, nrm] = saved;
        const n = o.shape[0];
        const inv = tf.where(
          tf.greater(nrm, 0),
          tf.div(1, tf.mul(nrm, n)),
          tf.zerosLike(nrm),
        );
        return tf.mul(tf.mul(o, tf.expandDims(inv, 1)), dy);
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0],
) as unknown as (out: tf.Tensor) => tf.Scalar;

/**
 * MAS importances: for every trainable parameter θ of `model`, the mean over the samples of
 * `dataset` of `|∂/∂θ mean_i ‖f(x_i)‖₂|`, each minibatch's absolute gradient (of the mean L2 norm
 * of its output rows) weighted by its number of samples. Minibatches are taken in order (not
 * shuffled); the model runs in whatever mode it is in. Parameters that get no gradient (another
 * task's head) have importance 0. The caller owns (and must dispose) the returned tensors.
 *
 * @example
 * ```ts ignore
 * const omega = masImportances(model, bench.train[0].dataset, { batchSize: 128 });
 * ```
 */
export function masImportances(
  model: Module,
  dataset: Dataset,
  opts: MASImportanceOptions = {},
): Map<string, tf.Tensor> {
  checkOptions("masImportances", opts, { batchSize: "integer" });
  const batchSize = opts.batchSize ?? 32;
  checkBatchSize("masImportances batchSize", batchSize);
  if (dataset.length === 0) throw new RangeError("masImportances needs a non-empty dataset");
  const params = model.trainableParameters();
  const byEngineName = new Map([...params].map(([k, v]) => [v.name, k]));
  const varList = [...params.values()];
  const sums = new Map<string, tf.Tensor>();
  for (const [n, p] of params) sums.set(n, tf.keep(tf.zerosLike(p)));
  const loader = new DatasetLoader(dataset, { batchSize, shuffle: false });
  const assembler = new BatchAssembler();
  for (const plan of loader.epoch(new Rng(0))) {
    tf.tidy(() => {
      const { x, t, data, n } = assembler.assemble(plan, dataset.inputShape);
      const { grads } = tf.variableGrads(
        () => meanRowNorm(model.forward(x, { taskLabels: t, taskLabelsArray: data.t })),
        varList,
      );
      for (const [engineName, g] of Object.entries(grads)) {
        const name = byEngineName.get(engineName);
        if (name !== undefined) setKept(sums, name, tf.add(sums.get(name)!, tf.mul(tf.abs(g), n)));
      }
    });
  }
  const out = new Map<string, tf.Tensor>();
  for (const [n, s] of sums) out.set(n, tf.keep(tf.tidy(() => tf.div(s, dataset.length))));
  disposeAll(sums);
  return out;
}

// --------------------------------------------------------------------------------- plugin ----

/** Options of {@link MASPlugin} (and {@link masPlugin}). */
export interface MASPluginOptions {
  /** Weight of the penalty (Avalanche's `lambda_reg`). @default 1 */
  lambdaReg?: number;
  /**
   * Share of the previous importance kept when a new experience's is blended in:
   * `Ω ← alpha·Ω + (1 − alpha)·Ω_new`. @default 0.5
   */
  alpha?: number;
}

/** The keys of {@link MASPluginOptions}, for checking what users pass. */
const MAS_PLUGIN_OPTIONS: OptionSpec<MASPluginOptions> = {
  lambdaReg: "number",
  alpha: "number",
};

/** Plain-data state of {@link MASPlugin} in checkpoints. */
export interface MASPluginState {
  version: 1;
  experiences: number;
  importance: Record<string, TensorState>;
  anchor: Record<string, TensorState>;
}

/**
 * Memory Aware Synapses (Aljundi et al. 2018), Avalanche's `MASPlugin`.
 *
 * - `beforeTraining`, the first time: the anchors θ* are the initial parameters, the
 *   importances Ω are 0.
 * - `afterTrainingExp`: θ* becomes the parameters after the experience, and the experience's
 *   importances ({@link masImportances}: mean absolute gradient of the mean L2 norm of the
 *   output, minibatches of the strategy's batch size, in order, the model in training mode, as
 *   Avalanche) are blended in: `Ω ← alpha·Ω + (1 − alpha)·Ω_new`.
 * - `beforeBackward`, from the second experience on: the term `"mas"`,
 *   `lambdaReg · Σ_p Σ Ω_p (θ_p − θ*_p)² / 2` (Avalanche's ½). Its gradient is known, so the
 *   plugin declares `tapeFree`.
 *
 * Checked line by line against Avalanche's `training/plugins/mas.py` (after FACIL's
 * `approach/mas.py`). Differences: Avalanche weights each minibatch's absolute gradient by
 * `len(batch)`, the length of the batch *tuple* (3 with task labels), and divides by the number
 * of minibatches, so its importances are 3 times a mean over minibatches; here each minibatch is
 * weighted by its number of samples and the sum divided by the number of samples (FACIL's mean,
 * which Avalanche meant). Equal minibatches: Avalanche's `lambda_reg` is our `lambdaReg / 3`.
 * Avalanche gives importances only to the parameters that existed when training first started
 * (a head added later is never penalized); here every trainable parameter gets its importance
 * after each experience (a head unused by an experience gets 0 from it), and parameters that
 * grew keep theirs on the old slice, the new units at 0.
 *
 * @example
 * ```ts ignore
 * import { MASPlugin, mlp, naive } from "../../mod.ts";
 * const strategy = naive({ model: mlp(), plugins: [new MASPlugin(1, 0.5)] });
 * ```
 */
export class MASPlugin extends StrategyPlugin {
  /** Weight of the penalty. */
  readonly lambdaReg: number;
  /** Share of the previous importance kept at each blend. */
  readonly alpha: number;
  #importance = new Map<string, tf.Tensor>();
  #anchor = new Map<string, tf.Tensor>();
  #experiences = 0;

  /**
   * @param lambdaReg weight of the penalty (default 1), or all options as an object.
   * @param alpha share of the previous importance kept (default 0.5), in [0, 1].
   */
  constructor(lambdaReg: number | MASPluginOptions = 1, alpha?: number) {
    super();
    const o: MASPluginOptions = typeof lambdaReg === "object" && lambdaReg !== null
      ? checkOptions("MASPlugin", lambdaReg, MAS_PLUGIN_OPTIONS)
      : { lambdaReg, alpha };
    const lambda = o.lambdaReg ?? 1;
    if (typeof lambda !== "number" || !Number.isFinite(lambda) || lambda < 0) {
      throw new RangeError(
        `MAS lambdaReg must be a finite number ≥ 0, got ${String(lambda)}: e.g. lambdaReg: 1`,
      );
    }
    const a = o.alpha ?? 0.5;
    if (typeof a !== "number" || !(a >= 0 && a <= 1)) {
      throw new RangeError(`MAS alpha must be in [0, 1], got ${String(a)}: e.g. alpha: 0.5`);
    }
    this.lambdaReg = lambda;
    this.alpha = a;
  }

  /** Number of experiences whose importances have been blended in. */
  get experiences(): number {
    return this.#experiences;
  }

  /** The importances Ω now in force, by parameter name. Owned by the plugin. */
  get importances(): ReadonlyMap<string, tf.Tensor> {
    return this.#importance;
  }

  /** The anchors θ* (the parameters after the latest experience). Owned by the plugin. */
  get anchors(): ReadonlyMap<string, tf.Tensor> {
    return this.#anchor;
  }

  /**
   * Blends one experience's importances into Ω and sets the anchors to `params`, as
   * `afterTrainingExp` does with the ones it computes. The caller keeps its tensors.
   */
  consolidate(importances: ReadonlyMap<string, tf.Tensor>, params: ReadonlyMap<string, tf.Tensor>) {
    for (const [n, cur] of importances) {
      const old = fitted(this.#importance, n, cur.shape);
      setKept(
        this.#importance,
        n,
        tf.tidy(() => tf.add(tf.mul(old, this.alpha), tf.mul(cur, 1 - this.alpha))),
      );
    }
    for (const [n, p] of params) setKept(this.#anchor, n, tf.clone(p));
    this.#experiences++;
  }

  /**
   * `lambdaReg/2 · Σ Ω (θ − θ*)²` for the model's current parameters as a loss term that also
   * gives its gradients, or undefined before any experience was consolidated.
   */
  penaltyTerm(model: Module): LossTerm | undefined {
    if (this.#experiences === 0) return undefined;
    const entries: PenaltyEntry[] = [];
    for (const [name, x] of model.namedParameters()) {
      const importance = this.#importance.get(name), anchor = this.#anchor.get(name);
      if (!importance || !anchor || !sameShape(importance.shape, x.shape)) continue;
      if (!sameShape(anchor.shape, x.shape)) continue;
      entries.push({ name, x, importance, anchor });
    }
    return quadraticPenaltyTerm(entries, this.lambdaReg / 2);
  }

  /** Fits Ω and θ* to parameters that grew (new units: importance 0, anchored where they are). */
  #fitShapes(model: Module): void {
    for (const [name, x] of model.namedParameters()) {
      if (!this.#importance.has(name) || !this.#anchor.has(name)) continue;
      fitted(this.#importance, name, x.shape);
      fitted(this.#anchor, name, x.shape, () => tf.clone(x));
    }
  }

  /** Fits saved tensors to parameters that grew when the model adapted to the experience. */
  beforeTrainingExp(ctx: StrategyContext): void {
    this.#fitShapes(ctx.model);
  }

  /** The penalty as a differentiable scalar, or undefined before any experience. */
  penalty(model: Module): tf.Scalar | undefined {
    return this.penaltyTerm(model)?.value();
  }

  /** Before the first experience: anchors at the initial parameters. */
  beforeTraining(ctx: StrategyContext): void {
    if (this.#anchor.size > 0) return;
    for (const [n, p] of keptCopies(ctx.model.namedParameters())) this.#anchor.set(n, p);
  }

  /** The penalty's gradient is known: the strategy may train without recording the tape. */
  readonly tapeFree = true;

  /** Adds the term `"mas"` from the second experience on. */
  beforeBackward(ctx: StrategyContext): void {
    if (ctx.clock.trainExperiences === 0 || this.lambdaReg === 0) return;
    const term = this.penaltyTerm(ctx.model);
    if (term) ctx.addLoss(term, "mas");
  }

  /** Anchors at the parameters now; blends in the experience's importances. */
  afterTrainingExp(ctx: StrategyContext): void {
    const exp = ctx.experience;
    if (!exp) return;
    const wasTraining = ctx.model.training;
    ctx.model.train();
    let current: Map<string, tf.Tensor>;
    try {
      current = masImportances(ctx.model, exp.dataset, { batchSize: ctx.settings.batchSize });
    } finally {
      ctx.model.train(wasTraining);
    }
    try {
      this.consolidate(current, ctx.model.namedParameters());
    } finally {
      disposeAll(current);
    }
  }

  /** Plain-data state for checkpoints. */
  state(): MASPluginState {
    return {
      version: 1,
      experiences: this.#experiences,
      importance: mapToState(this.#importance),
      anchor: mapToState(this.#anchor),
    };
  }

  /** Restores what {@link MASPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as MASPluginState;
    if (!s || s.version !== 1) {
      throw new TypeError(`Not a MASPlugin state (version ${String(s?.version)})`);
    }
    const importance = mapFromState(s.importance, "MAS importance");
    const anchor = mapFromState(s.anchor, "MAS anchor");
    this.dispose();
    this.#importance = importance;
    this.#anchor = anchor;
    this.#experiences = Number(s.experiences) || 0;
  }

  /** Frees every tensor the plugin holds and forgets the consolidated experiences. */
  dispose(): void {
    disposeAll(this.#importance);
    disposeAll(this.#anchor);
    this.#experiences = 0;
  }
}

/**
 * A {@link MASPlugin} (lambdaReg 1, alpha 0.5 unless given).
 *
 * @example
 * ```ts
 * import { masPlugin } from "./mas.ts";
 * const plugin = masPlugin({ lambdaReg: 2, alpha: 0.3 });
 * console.assert(plugin.lambdaReg === 2 && plugin.alpha === 0.3);
 * ```
 */
export function masPlugin(opts: MASPluginOptions = {}): MASPlugin {
  return new MASPlugin(checkOptions("masPlugin", opts, MAS_PLUGIN_OPTIONS));
}

/** Options of {@link mas}: the strategy's options plus MAS's. */
export interface MASOptions extends StrategyOptions, MASPluginOptions {}

/**
 * A strategy that fine-tunes with a {@link MASPlugin} (run first among its plugins).
 *
 * @example MAS on Permuted MNIST
 * ```ts ignore
 * import { mas, mlp, permutedMNIST } from "../../mod.ts";
 * const bench = await permutedMNIST({ experiences: 5 });
 * const strategy = mas({ model: mlp({ hidden: [256] }), lambdaReg: 1, alpha: 0.5 });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function mas(opts: MASOptions): Strategy {
  checkOptions("mas", opts, { ...STRATEGY_OPTIONS, ...MAS_PLUGIN_OPTIONS });
  const { lambdaReg, alpha, ...rest } = opts;
  const plugin: Plugin = masPlugin({ lambdaReg, alpha });
  return withPlugin("MAS", plugin, rest);
}
