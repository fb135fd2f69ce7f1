/**
 * Riemannian Walk (Chaudhry, Dokania, Ajanthan and Torr, "Riemannian Walk for Incremental
 * Learning: Understanding Forgetting and Intransigence", ECCV 2018), as Avalanche's
 * `RWalkPlugin`: each parameter's importance is the sum of a Fisher diagonal kept as a moving
 * average (EWC++) and a path score, the loss drop along the training trajectory per unit of
 * KL-divergence moved (the Fisher-weighted squared displacement); later experiences are trained
 * with a quadratic penalty weighted by both, each normalized to [0, 1].
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Module, TensorState } from "../nn/module.ts";
import { type PenaltyEntry, quadraticPenaltyTerm } from "../nn/penalties.ts";
import type { LossTerm } from "../nn/terms.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { type Plugin, StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import { disposeAll, fitted, mapFromState, mapToState, setKept } from "./_tensor_maps.ts";

/** float32's machine epsilon (PyTorch's `torch.finfo(torch.float32).eps`), the score's damping. */
export const RWALK_EPS = 2 ** -23;

/** Options of {@link RWalkPlugin} (and {@link rwalkPlugin}). */
export interface RWalkPluginOptions {
  /** Weight of the penalty (Avalanche's `ewc_lambda`). @default 0.1 */
  ewcLambda?: number;
  /**
   * Weight of the newest squared gradient in the Fisher's moving average (Avalanche's
   * `ewc_alpha`): `F ← ewcAlpha·g² + (1 − ewcAlpha)·F`. In [0, 1]. @default 0.9
   */
  ewcAlpha?: number;
  /** Iterations between two updates of the path scores (Avalanche's `delta_t`). @default 10 */
  deltaT?: number;
}

/** The keys of {@link RWalkPluginOptions}, for checking what users pass. */
const RWALK_PLUGIN_OPTIONS: OptionSpec<RWalkPluginOptions> = {
  ewcLambda: "number",
  ewcAlpha: "number",
  deltaT: "integer",
};

/** Plain-data state of {@link RWalkPlugin} in checkpoints. */
export interface RWalkPluginState {
  version: 1;
  experiences: number;
  /** The Fisher's moving average F. */
  importance: Record<string, TensorState>;
  /** −Σ g·Δθ since the last score update. */
  checkpointLoss: Record<string, TensorState>;
  /** θ at the last score update. */
  checkpointParams: Record<string, TensorState>;
  /** Scores accumulated in the current experience. */
  checkpointScores: Record<string, TensorState>;
  /** Scores of past experiences (running average). */
  expScores: Record<string, TensorState>;
  /** θ after the latest experience (θ* of the penalty). */
  expParams: Record<string, TensorState>;
  /** F/max F + relu(S)/max S after the latest experience: the penalty's weights. */
  expPenalties: Record<string, TensorState>;
}

/** The largest value of the tensors of a map (−Infinity for none). */
function maxOf(m: ReadonlyMap<string, tf.Tensor>): number {
  if (m.size === 0) return -Infinity;
  return tf.tidy(() => tf.max(tf.stack([...m.values()].map((t) => tf.max(t)))).dataSync()[0]);
}

/**
 * Riemannian Walk (Chaudhry et al. 2018), Avalanche's `RWalkPlugin`.
 *
 * Every training iteration, for every trainable parameter θ:
 * - `beforeTrainingIteration`: the gradient `g` of the criterion alone (no penalty) on the
 *   minibatch, the model in eval mode (an extra forward and backward pass, as Avalanche); the
 *   Fisher's moving average `F ← ewcAlpha·g² + (1 − ewcAlpha)·F` (EWC++, the paper's Eq. 6; the
 *   first iteration sets `F = g²`); θ is saved;
 * - `afterTrainingIteration`: the first-order loss change of the step is added,
 *   `L −= g·(θ_new − θ_old)`; every `deltaT` iterations of the run (counting all experiences),
 *   the score `S_exp += L / (½·F·(θ − θ_ckpt)² + ε)` (Eq. 7: the loss drop per unit of
 *   KL-divergence moved since the last score update, ε = float32's epsilon), then `L = 0` and
 *   θ_ckpt = θ.
 *
 * At the start of every `train()` call (`beforeTraining`), L and S_exp are 0 and θ_ckpt = θ. After
 * each experience: θ* = θ, the score of the past becomes `S = S_exp` (first experience) or
 * `½(S + S_exp)`, and the penalty's weights are `P = F / max F + relu(S) / max S` (maxima over every
 * parameter; a term whose maximum is not positive counts 0); S_exp is reset. `beforeBackward`, from
 * the second experience on, adds the term `"rwalk"`, `ewcLambda · Σ P (θ − θ*)²` (Eq. 8, no ½);
 * its gradient is known, so the plugin declares `tapeFree`.
 *
 * Checked line by line against Avalanche's `training/plugins/rwalk.py` and the paper's
 * description (Eqs. 6-8, Δt = 10 iterations, scores averaged across tasks, both terms
 * normalized by their maxima). Differences: Avalanche leaves the model in eval mode after its
 * gradient pass (so models with dropout train without it from the first iteration on); here the
 * mode is restored. Avalanche divides by a maximum of 0 (a NaN penalty); here that term is 0.
 * Parameters created later (a new head) start with L = S = 0 and θ_ckpt at their value, and
 * parameters that grew keep their data on the old slice (new units: 0, anchored where they are).
 * The authors' code (facebookresearch/agem, `model/model.py`, TensorFlow) departs from both in
 * details Avalanche does not follow, nor do we: each Δt interval's score is passed through a relu
 * before it is summed (here, as Avalanche, the relu is applied to the total), its denominator is
 * `ξ + F·Δθ²` with ξ = 0.001 (here `½F·Δθ² + ε`, the paper's Eq. 7 with Avalanche's ε), the
 * Fisher and the scores are min-max normalized (here divided by their maxima, as Avalanche), and
 * the first task's scores are doubled before the running average.
 *
 * @example
 * ```ts ignore
 * import { mlp, naive, RWalkPlugin } from "../../mod.ts";
 * const strategy = naive({ model: mlp(), plugins: [new RWalkPlugin(0.1, 0.9, 10)] });
 * ```
 */
export class RWalkPlugin extends StrategyPlugin {
  readonly ewcLambda: number;
  readonly ewcAlpha: number;
  readonly deltaT: number;
  #experiences = 0;
  #importance = new Map<string, tf.Tensor>();
  #checkpointLoss = new Map<string, tf.Tensor>();
  #checkpointParams = new Map<string, tf.Tensor>();
  #checkpointScores = new Map<string, tf.Tensor>();
  #expScores = new Map<string, tf.Tensor>();
  #expParams = new Map<string, tf.Tensor>();
  #expPenalties = new Map<string, tf.Tensor>();
  /** This iteration's criterion gradient and parameters before the step (freed with it). */
  #iterGrad = new Map<string, tf.Tensor>();
  #iterParams = new Map<string, tf.Tensor>();

  /**
   * @param ewcLambda weight of the penalty (default 0.1), or all options as an object.
   * @param ewcAlpha weight of the newest squared gradient in F (default 0.9), in [0, 1].
   * @param deltaT iterations between score updates (default 10), ≥ 1.
   */
  constructor(ewcLambda: number | RWalkPluginOptions = 0.1, ewcAlpha?: number, deltaT?: number) {
    super();
    const o: RWalkPluginOptions = typeof ewcLambda === "object" && ewcLambda !== null
      ? checkOptions("RWalkPlugin", ewcLambda, RWALK_PLUGIN_OPTIONS)
      : { ewcLambda, ewcAlpha, deltaT };
    const lambda = o.ewcLambda ?? 0.1;
    if (typeof lambda !== "number" || !Number.isFinite(lambda) || lambda < 0) {
      throw new RangeError(
        `RWalk ewcLambda must be a finite number ≥ 0, got ${String(lambda)}: e.g. ewcLambda: 0.1`,
      );
    }
    const alpha = o.ewcAlpha ?? 0.9;
    if (typeof alpha !== "number" || !(alpha >= 0 && alpha <= 1)) {
      throw new RangeError(
        `RWalk ewcAlpha must be in [0, 1], got ${String(alpha)}: e.g. ewcAlpha: 0.9`,
      );
    }
    const dt = o.deltaT ?? 10;
    if (typeof dt !== "number" || !Number.isInteger(dt) || dt < 1) {
      throw new RangeError(
        `RWalk deltaT must be an integer ≥ 1, got ${String(dt)}: e.g. deltaT: 10`,
      );
    }
    this.ewcLambda = lambda;
    this.ewcAlpha = alpha;
    this.deltaT = dt;
  }

  /** Number of experiences consolidated. */
  get experiences(): number {
    return this.#experiences;
  }

  /** The Fisher's moving average F, by parameter name. Owned by the plugin. */
  get importances(): ReadonlyMap<string, tf.Tensor> {
    return this.#importance;
  }

  /** The scores accumulated in the current experience (S_exp). Owned by the plugin. */
  get checkpointScores(): ReadonlyMap<string, tf.Tensor> {
    return this.#checkpointScores;
  }

  /** The scores of the past experiences (S). Owned by the plugin. */
  get scores(): ReadonlyMap<string, tf.Tensor> {
    return this.#expScores;
  }

  /** The penalty's weights `F/max F + relu(S)/max S`. Owned by the plugin. */
  get penalties(): ReadonlyMap<string, tf.Tensor> {
    return this.#expPenalties;
  }

  /** θ* of the penalty (the parameters after the latest experience). Owned by the plugin. */
  get anchors(): ReadonlyMap<string, tf.Tensor> {
    return this.#expParams;
  }

  /** Resets the current experience's accumulators: L = S_exp = 0, θ_ckpt = θ. */
  beforeTraining(ctx: StrategyContext): void {
    disposeAll(this.#checkpointLoss);
    disposeAll(this.#checkpointScores);
    disposeAll(this.#checkpointParams);
    for (const [n, p] of ctx.model.trainableParameters()) {
      this.#checkpointLoss.set(n, tf.keep(tf.zerosLike(p)));
      this.#checkpointScores.set(n, tf.keep(tf.zerosLike(p)));
      this.#checkpointParams.set(n, tf.keep(tf.clone(p)));
    }
  }

  /** Fits the penalty's tensors to parameters that grew when the model adapted. */
  beforeTrainingExp(ctx: StrategyContext): void {
    for (const [n, p] of ctx.model.namedParameters()) {
      if (!this.#expPenalties.has(n) || !this.#expParams.has(n)) continue;
      fitted(this.#expPenalties, n, p.shape);
      fitted(this.#expParams, n, p.shape, () => tf.clone(p));
    }
  }

  /**
   * The criterion's gradient on the minibatch (eval mode), the Fisher's moving average, and θ
   * before the step.
   */
  beforeTrainingIteration(ctx: StrategyContext): void {
    const batch = ctx.batch;
    if (!batch) return;
    const model = ctx.model;
    const params = model.trainableParameters();
    const byEngineName = new Map([...params].map(([k, v]) => [v.name, k]));
    const wasTraining = model.training;
    model.eval();
    let grads: tf.NamedTensorMap;
    try {
      grads = tf.variableGrads(
        () =>
          ctx.criterion(
            model.forward(batch.x, { taskLabels: batch.t, taskLabelsArray: batch.data.t }),
            batch.y,
          ),
        [...params.values()],
      ).grads;
    } finally {
      model.train(wasTraining);
    }
    // Freed at the iteration's end with its scope.
    this.#iterGrad = new Map();
    for (const [engineName, g] of Object.entries(grads)) {
      const n = byEngineName.get(engineName);
      if (n !== undefined) this.#iterGrad.set(n, g);
    }
    this.#iterParams = new Map();
    for (const [n, p] of params) {
      // A parameter created since the experience started (a new head) starts its walk here.
      if (!this.#checkpointParams.has(n)) this.#checkpointParams.set(n, tf.keep(tf.clone(p)));
      const g = this.#iterGrad.get(n) ?? tf.zerosLike(p);
      this.#iterGrad.set(n, g);
      this.#iterParams.set(n, tf.clone(p));
      const sq = tf.square(g);
      const old = this.#importance.get(n);
      if (!old) setKept(this.#importance, n, sq);
      else {
        const prev = fitted(this.#importance, n, p.shape);
        setKept(
          this.#importance,
          n,
          tf.tidy(() => tf.add(tf.mul(sq, this.ewcAlpha), tf.mul(prev, 1 - this.ewcAlpha))),
        );
      }
    }
  }

  /**
   * `ewcLambda · Σ P (θ − θ*)²` as a loss term that also gives its gradients, or undefined
   * before any experience was consolidated.
   */
  penaltyTerm(model: Module): LossTerm | undefined {
    if (this.#experiences === 0) return undefined;
    const entries: PenaltyEntry[] = [];
    for (const [name, x] of model.namedParameters()) {
      const importance = this.#expPenalties.get(name), anchor = this.#expParams.get(name);
      if (!importance || !anchor) continue;
      if (importance.shape.join() !== x.shape.join() || anchor.shape.join() !== x.shape.join()) {
        continue;
      }
      entries.push({ name, x, importance, anchor });
    }
    return quadraticPenaltyTerm(entries, this.ewcLambda);
  }

  /** The penalty as a differentiable scalar, or undefined before any experience. */
  penalty(model: Module): tf.Scalar | undefined {
    return this.penaltyTerm(model)?.value();
  }

  /** The penalty's gradient is known: the strategy may train without recording the tape. */
  readonly tapeFree = true;

  /** Adds the term `"rwalk"` from the second experience on. */
  beforeBackward(ctx: StrategyContext): void {
    if (ctx.clock.trainExperiences === 0 || this.ewcLambda === 0) return;
    const term = this.penaltyTerm(ctx.model);
    if (term) ctx.addLoss(term, "rwalk");
  }

  /** Adds the step's loss change; every `deltaT` iterations, adds the scores. */
  afterTrainingIteration(ctx: StrategyContext): void {
    if (this.#iterGrad.size === 0) return;
    const params = ctx.model.trainableParameters();
    for (const [n, p] of params) {
      const g = this.#iterGrad.get(n), old = this.#iterParams.get(n);
      if (!g || !old || g.shape.join() !== p.shape.join()) continue;
      const loss = fitted(this.#checkpointLoss, n, p.shape);
      setKept(this.#checkpointLoss, n, tf.tidy(() => tf.sub(loss, tf.mul(g, tf.sub(p, old)))));
    }
    this.#iterGrad = new Map();
    this.#iterParams = new Map();
    if (ctx.clock.trainIterations % this.deltaT !== 0) return;
    for (const [n, p] of params) {
      const imp = this.#importance.get(n);
      if (!imp || imp.shape.join() !== p.shape.join()) continue;
      const loss = fitted(this.#checkpointLoss, n, p.shape);
      const start = fitted(this.#checkpointParams, n, p.shape, () => tf.clone(p));
      const score = fitted(this.#checkpointScores, n, p.shape);
      setKept(
        this.#checkpointScores,
        n,
        tf.tidy(() =>
          tf.add(
            score,
            tf.div(loss, tf.add(tf.mul(tf.mul(imp, 0.5), tf.square(tf.sub(p, start))), RWALK_EPS)),
          )
        ),
      );
      setKept(this.#checkpointLoss, n, tf.zerosLike(p));
      setKept(this.#checkpointParams, n, tf.clone(p));
    }
  }

  /** θ* = θ; averages the scores; computes the penalty's normalized weights. */
  afterTrainingExp(ctx: StrategyContext): void {
    const params = ctx.model.trainableParameters();
    disposeAll(this.#expParams);
    for (const [n, p] of params) this.#expParams.set(n, tf.keep(tf.clone(p)));
    if (this.#experiences === 0) {
      disposeAll(this.#expScores);
      for (const [n, s] of this.#checkpointScores) this.#expScores.set(n, tf.keep(tf.clone(s)));
    } else {
      for (const [n, s] of this.#checkpointScores) {
        if (!this.#expScores.has(n)) {
          this.#expScores.set(n, tf.keep(tf.clone(s)));
          continue;
        }
        const old = fitted(this.#expScores, n, s.shape);
        setKept(this.#expScores, n, tf.tidy(() => tf.mul(tf.add(old, s), 0.5)));
      }
    }
    const maxScore = maxOf(this.#expScores);
    const maxImp = maxOf(this.#importance);
    disposeAll(this.#expPenalties);
    for (const [n, s] of this.#expScores) {
      const imp = this.#importance.get(n);
      if (!imp || imp.shape.join() !== s.shape.join()) continue;
      this.#expPenalties.set(
        n,
        tf.keep(tf.tidy(() => {
          const f = maxImp > 0 ? tf.div(imp, maxImp) : tf.zerosLike(imp);
          return maxScore > 0 ? tf.add(f, tf.div(tf.relu(s), maxScore)) : f;
        })),
      );
    }
    for (const [n, s] of this.#checkpointScores) {
      setKept(this.#checkpointScores, n, tf.zerosLike(s));
    }
    this.#experiences++;
  }

  /** Plain-data state for checkpoints (between iterations). */
  state(): RWalkPluginState {
    return {
      version: 1,
      experiences: this.#experiences,
      importance: mapToState(this.#importance),
      checkpointLoss: mapToState(this.#checkpointLoss),
      checkpointParams: mapToState(this.#checkpointParams),
      checkpointScores: mapToState(this.#checkpointScores),
      expScores: mapToState(this.#expScores),
      expParams: mapToState(this.#expParams),
      expPenalties: mapToState(this.#expPenalties),
    };
  }

  /** Restores what {@link RWalkPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as RWalkPluginState;
    if (!s || s.version !== 1) {
      throw new TypeError(`Not an RWalkPlugin state (version ${String(s?.version)})`);
    }
    const maps = [
      mapFromState(s.importance, "RWalk importance"),
      mapFromState(s.checkpointLoss, "RWalk checkpointLoss"),
      mapFromState(s.checkpointParams, "RWalk checkpointParams"),
      mapFromState(s.checkpointScores, "RWalk checkpointScores"),
      mapFromState(s.expScores, "RWalk expScores"),
      mapFromState(s.expParams, "RWalk expParams"),
      mapFromState(s.expPenalties, "RWalk expPenalties"),
    ];
    this.dispose();
    [
      this.#importance,
      this.#checkpointLoss,
      this.#checkpointParams,
      this.#checkpointScores,
      this.#expScores,
      this.#expParams,
      this.#expPenalties,
    ] = maps;
    this.#experiences = Number(s.experiences) || 0;
  }

  /** Frees every tensor the plugin holds and forgets the consolidated experiences. */
  dispose(): void {
    for (
      const m of [
        this.#importance,
        this.#checkpointLoss,
        this.#checkpointParams,
        this.#checkpointScores,
        this.#expScores,
        this.#expParams,
        this.#expPenalties,
      ]
    ) disposeAll(m);
    this.#iterGrad = new Map();
    this.#iterParams = new Map();
    this.#experiences = 0;
  }
}

/**
 * A {@link RWalkPlugin} (ewcLambda 0.1, ewcAlpha 0.9, deltaT 10 unless given).
 *
 * @example
 * ```ts
 * import { rwalkPlugin } from "./rwalk.ts";
 * const plugin = rwalkPlugin({ ewcLambda: 0.5, deltaT: 5 });
 * console.assert(plugin.ewcLambda === 0.5 && plugin.ewcAlpha === 0.9 && plugin.deltaT === 5);
 * ```
 */
export function rwalkPlugin(opts: RWalkPluginOptions = {}): RWalkPlugin {
  return new RWalkPlugin(checkOptions("rwalkPlugin", opts, RWALK_PLUGIN_OPTIONS));
}

/** Options of {@link rwalk}: the strategy's options plus RWalk's. */
export interface RWalkOptions extends StrategyOptions, RWalkPluginOptions {}

/**
 * A strategy that fine-tunes with a {@link RWalkPlugin} (run first among its plugins).
 *
 * @example RWalk on task-incremental Split MNIST
 * ```ts ignore
 * import { adam, multiHeadMLP, rwalk, splitMNIST } from "../../mod.ts";
 * const bench = await splitMNIST({ experiences: 5, returnTaskId: true, classIdsFromZeroInEachExp: true });
 * const strategy = rwalk({ model: multiHeadMLP({ hidden: [256, 256], outputs: 2 }),
 *   optimizer: adam({ lr: 1e-3 }), ewcLambda: 0.1, ewcAlpha: 0.9, deltaT: 10, batchSize: 64 });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function rwalk(opts: RWalkOptions): Strategy {
  checkOptions("rwalk", opts, { ...STRATEGY_OPTIONS, ...RWALK_PLUGIN_OPTIONS });
  const { ewcLambda, ewcAlpha, deltaT, ...rest } = opts;
  const plugin: Plugin = rwalkPlugin({ ewcLambda, ewcAlpha, deltaT });
  return withPlugin("RWalk", plugin, rest);
}
