/**
 * Synaptic Intelligence (Zenke, Poole and Ganguli, "Continual Learning Through Synaptic
 * Intelligence", ICML 2017), as Avalanche's `SynapticIntelligencePlugin`: each parameter's
 * importance is its contribution to the drop of the loss along the training trajectory (a path
 * integral accumulated online at every update), normalized by how far the parameter moved; later
 * experiences are trained with a quadratic penalty weighted by these importances.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { type Module, newVariable, stateToTensor, type TensorState } from "../nn/module.ts";
import { tensorToState } from "../nn/module.ts";
import { type PenaltyEntry, quadraticPenaltyTerm } from "../nn/penalties.ts";
import type { LossTerm } from "../nn/terms.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { anyOf, checkOptions, oneOf, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import { fitToShape } from "./ewc.ts";

/** Which gradient the path integral uses. */
export type SIPathGradient = "total" | "task";

/** A parameter name pattern: a glob (`*`, `?`) or a regular expression. */
export type ParameterPattern = string | RegExp;

/** Options of {@link SynapticIntelligencePlugin}. */
export interface SynapticIntelligencePluginOptions {
  /**
   * Weight of the penalty (Avalanche's `si_lambda`); an array gives one per training experience
   * (by the strategy's count of completed experiences), the last one repeating.
   */
  lambda: number | readonly number[];
  /** Damping ξ added to the squared displacement. @default 1e-7 */
  eps?: number;
  /**
   * Parameters left out (neither tracked nor penalized): names or globs (`"classifier"` also
   * excludes `"classifier.*"`, as Avalanche), or regular expressions. @default []
   */
  excludedParameters?: readonly ParameterPattern[];
  /**
   * Importances are clamped to at most this value (Avalanche hard-codes 0.001);
   * `Infinity` turns the clamp off. @default 0.001
   */
  clipTo?: number;
  /**
   * `"total"`: the path integral uses the gradients the optimizer applied (those of the whole
   * loss, this penalty included), as Avalanche does. `"task"`: the gradient of this plugin's own
   * penalty is taken out first, as in Zenke et al.'s reference code (other added terms stay).
   * @default "total"
   */
  pathGradient?: SIPathGradient;
}

/** The keys of {@link SynapticIntelligencePluginOptions}, for checking what users pass. */
const SI_PLUGIN_OPTIONS: OptionSpec<SynapticIntelligencePluginOptions> = {
  lambda: anyOf("number", "array"),
  eps: "number",
  excludedParameters: "array",
  clipTo: "number",
  pathGradient: oneOf("total", "task"),
};

/** Plain-data state of {@link SynapticIntelligencePlugin}. */
export interface SynapticIntelligenceState {
  version: 1;
  experiences: number;
  params: Record<
    string,
    { cumulative: TensorState; importance: TensorState; anchor: TensorState; path: TensorState }
  >;
}

interface ParamData {
  /** Σ over experiences of path / (Δ² + ε), with Avalanche's sign (Σ g·Δθ, negative when learning). */
  cumulative: tf.Tensor;
  /** Ω = min(−cumulative, clipTo): the importance in the penalty. */
  importance: tf.Tensor;
  /** θ at the start of the current experience (= θ* of the penalty). */
  anchor: tf.Tensor;
  /** Σ g·Δθ over the updates of the current experience. */
  path: tf.Variable;
  /** θ before the current update. */
  before: tf.Variable;
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

function compilePatterns(patterns: readonly ParameterPattern[]): RegExp[] {
  const out: RegExp[] = [];
  for (const [i, p] of patterns.entries()) {
    if (p instanceof RegExp) out.push(p);
    else if (typeof p === "string" && p.length > 0) {
      out.push(globToRegExp(p));
      if (!p.endsWith("*")) out.push(globToRegExp(`${p}.*`));
    } else {
      throw new TypeError(
        `excludedParameters[${i}] must be a parameter name, a glob or a RegExp, got ${String(p)}`,
      );
    }
  }
  return out;
}

/** A non-trainable variable holding `init` (which is disposed). */
function variableFrom(init: tf.Tensor, name: string): tf.Variable {
  const v = newVariable(init, name, false);
  init.dispose();
  return v;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function checkLambdas(v: unknown): number[] {
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) {
    throw new RangeError("SI lambda is an empty array: give at least one value");
  }
  for (const x of list) {
    if (typeof x !== "number" || !Number.isFinite(x) || x < 0) {
      throw new RangeError(
        `SI lambda must be a finite number ≥ 0 (or an array of them), got ${String(x)}`,
      );
    }
  }
  return list as number[];
}

/**
 * Synaptic Intelligence (Zenke et al. 2017), Avalanche's `SynapticIntelligencePlugin`.
 *
 * For every tracked parameter θ (trainable, not excluded):
 * - `beforeTrainingExp`: the anchor θ_start is set to the current value, the path to 0;
 * - `beforeUpdate` / `afterUpdate`: the path accumulates `g · (θ_after − θ_before)` over every
 *   optimizer step, `g` being the gradient applied (after `afterBackward` changes). Avalanche
 *   reads `param.grad` after backward, i.e. the gradient of the whole loss, SI penalty included;
 *   that is the default (`pathGradient: "total"`); `"task"` takes the penalty's gradient out.
 *   The paper's ω is minus this path (it is positive when the step lowered the loss);
 * - `afterTrainingExp`: `cumulative += path / ((θ_end − θ_start)² + eps)`, the importance is
 *   `Ω = min(−cumulative, clipTo)` (Avalanche clamps at 0.001 and keeps negative values), and the
 *   anchor becomes θ_end;
 * - `beforeBackward`: the loss gets the term `"si"`: `λ/2 · Σ Ω (θ − θ_anchor)²` (Avalanche's
 *   factor ½), from the second experience on.
 *
 * Parameters that grow (incremental heads) keep their data on the old slice; the new units start
 * with importance 0. New parameters (new heads) start tracked with importance 0.
 *
 * Negative importances (a parameter whose path went uphill, typically one pulled back by the
 * penalty) are kept, as in Avalanche. With a tiny `eps` they can be huge and make the loss
 * unbounded below: on Permuted MNIST with λ 1000 and SGD 0.01 (momentum 0.9), `eps` 1e-7
 * diverged while `eps` 0.1 (the value of Avalanche's reproductions of the paper) trained well.
 *
 * @example
 * ```ts ignore
 * import { mlp, naive, SynapticIntelligencePlugin } from "../../mod.ts";
 * const si = new SynapticIntelligencePlugin(1, 1e-7, ["classifier"]); // heads left out
 * const strategy = naive({ model: mlp(), plugins: [si] });
 * ```
 */
export class SynapticIntelligencePlugin extends StrategyPlugin {
  /** λ per experience (the last repeats). */
  readonly siLambda: readonly number[];
  readonly eps: number;
  readonly excludedParameters: readonly ParameterPattern[];
  readonly clipTo: number;
  readonly pathGradient: SIPathGradient;
  readonly #excluded: RegExp[];
  #data = new Map<string, ParamData>();
  #experiences = 0;
  /** λ of the penalty added in the current iteration (0: none). */
  #activeLambda = 0;

  /**
   * @param siLambda penalty weight (or one per experience), or all options as an object.
   * @param eps damping (default 1e-7); as in Avalanche's order. An array here is taken as
   *   `excludedParameters` (and then a number as the third argument is `eps`).
   * @param excludedParameters names, globs or RegExps of parameters to leave out.
   */
  constructor(
    siLambda: number | readonly number[] | SynapticIntelligencePluginOptions,
    eps?: number | readonly ParameterPattern[],
    excludedParameters?: readonly ParameterPattern[] | number,
  ) {
    super();
    let o: SynapticIntelligencePluginOptions;
    if (typeof siLambda === "object" && siLambda !== null && !Array.isArray(siLambda)) {
      o = checkOptions(
        "SynapticIntelligencePlugin",
        siLambda as SynapticIntelligencePluginOptions,
        SI_PLUGIN_OPTIONS,
      );
    } else if (Array.isArray(eps)) {
      o = {
        lambda: siLambda as number | number[],
        excludedParameters: eps,
        eps: excludedParameters as number | undefined,
      };
    } else {
      o = {
        lambda: siLambda as number | number[],
        eps: eps as number | undefined,
        excludedParameters: excludedParameters as ParameterPattern[] | undefined,
      };
    }
    this.siLambda = checkLambdas(o.lambda);
    this.eps = o.eps ?? 1e-7;
    if (typeof this.eps !== "number" || !(this.eps > 0) || !Number.isFinite(this.eps)) {
      throw new RangeError(`SI eps must be a finite number > 0, got ${String(o.eps)}`);
    }
    if (o.excludedParameters !== undefined && !Array.isArray(o.excludedParameters)) {
      throw new TypeError(
        `SI excludedParameters must be an array of names, globs or RegExps, got ${
          String(o.excludedParameters)
        }`,
      );
    }
    this.excludedParameters = [...(o.excludedParameters ?? [])];
    this.#excluded = compilePatterns(this.excludedParameters);
    this.clipTo = o.clipTo ?? 0.001;
    if (typeof this.clipTo !== "number" || Number.isNaN(this.clipTo)) {
      throw new RangeError(
        `SI clipTo must be a number (Infinity for no clamp), got ${String(o.clipTo)}`,
      );
    }
    this.pathGradient = o.pathGradient ?? "total";
    if (this.pathGradient !== "total" && this.pathGradient !== "task") {
      throw new RangeError(
        `SI pathGradient must be "total" or "task", got ${String(o.pathGradient)}`,
      );
    }
  }

  /** Number of experiences whose importances have been consolidated. */
  get experiences(): number {
    return this.#experiences;
  }

  /** Whether the parameter `name` is tracked (not excluded by a pattern). */
  isTracked(name: string): boolean {
    return !this.#excluded.some((r) => r.test(name));
  }

  /** The trainable parameters the plugin tracks. */
  trackedParameters(model: Module): Map<string, tf.Variable> {
    return new Map([...model.trainableParameters()].filter(([n]) => this.isTracked(n)));
  }

  /** Importances Ω in the penalty, by parameter name. Owned by the plugin. */
  get importances(): ReadonlyMap<string, tf.Tensor> {
    return new Map([...this.#data].map(([n, d]) => [n, d.importance]));
  }

  /** θ* of the penalty (θ at the start of the current experience), by name. Owned by the plugin. */
  get anchors(): ReadonlyMap<string, tf.Tensor> {
    return new Map([...this.#data].map(([n, d]) => [n, d.anchor]));
  }

  /**
   * The paper's ω = −Σ g·Δθ accumulated so far in the current experience (reset when an
   * experience starts). New tensors: the caller disposes them.
   */
  pathIntegrals(): Map<string, tf.Tensor> {
    return new Map([...this.#data].map(([n, d]) => [n, tf.neg(d.path)]));
  }

  /** λ for the training experience with index `k` (the last value repeats). */
  lambdaFor(k: number): number {
    return this.siLambda[Math.min(k, this.siLambda.length - 1)];
  }

  /**
   * Creates data for new parameters and fits it to parameters that changed shape; with `restart`,
   * sets anchors to the current values and paths to zero (start of an experience).
   */
  #sync(model: Module, restart: boolean): void {
    for (const [n, p] of this.trackedParameters(model)) {
      let d = this.#data.get(n);
      if (!d) {
        d = {
          cumulative: tf.keep(tf.zerosLike(p)),
          importance: tf.keep(tf.zerosLike(p)),
          anchor: tf.keep(tf.clone(p)),
          path: variableFrom(tf.zerosLike(p), `si.path.${n}`),
          before: variableFrom(tf.clone(p), `si.before.${n}`),
        };
        this.#data.set(n, d);
      } else if (!sameShape(d.anchor.shape, p.shape)) {
        const old = d;
        d = {
          cumulative: tf.keep(fitToShape(old.cumulative, p.shape)),
          importance: tf.keep(fitToShape(old.importance, p.shape)),
          anchor: tf.keep(fitToShape(old.anchor, p.shape, p)),
          path: variableFrom(fitToShape(old.path, p.shape), `si.path.${n}`),
          before: variableFrom(fitToShape(old.before, p.shape, p), `si.before.${n}`),
        };
        for (const t of Object.values(old)) t.dispose();
        this.#data.set(n, d);
      }
      if (restart) {
        d.anchor.dispose();
        d.anchor = tf.keep(tf.clone(p));
        tf.tidy(() => d!.path.assign(tf.zerosLike(p)));
      }
    }
  }

  /** The penalty `λ/2 Σ Ω (θ − θ*)²` for the model's current parameters. Differentiable. */
  penalty(model: Module, lambda: number): tf.Scalar {
    return this.penaltyTerm(model, lambda).value();
  }

  /** {@link SynapticIntelligencePlugin.penalty} as a loss term that also gives its gradients. */
  penaltyTerm(model: Module, lambda: number): LossTerm {
    const entries: PenaltyEntry[] = [];
    for (const [name, x] of this.trackedParameters(model)) {
      const d = this.#data.get(name);
      if (d) entries.push({ name, x, importance: d.importance, anchor: d.anchor });
    }
    // λ/2 Σ Ω (θ − θ*)², with its gradient in one kernel where the backend has it.
    return quadraticPenaltyTerm(entries, lambda / 2);
  }

  /** Starts the experience: anchors = current parameters, paths = 0. */
  beforeTrainingExp(ctx: StrategyContext): void {
    this.#sync(ctx.model, true);
  }

  /** The penalty's gradient is known: the strategy may train without recording the tape. */
  readonly tapeFree = true;

  /** Adds the term `"si"` from the second experience on. */
  beforeBackward(ctx: StrategyContext): void {
    this.#activeLambda = 0;
    if (this.#experiences === 0) return;
    this.#sync(ctx.model, false);
    const lambda = this.lambdaFor(ctx.clock.trainExperiences);
    if (lambda === 0) return;
    ctx.addLoss(this.penaltyTerm(ctx.model, lambda), "si");
    this.#activeLambda = lambda;
  }

  /** Records θ before the optimizer step. */
  beforeUpdate(ctx: StrategyContext): void {
    this.#sync(ctx.model, false);
    tf.tidy(() => {
      for (const [n, p] of this.trackedParameters(ctx.model)) this.#data.get(n)!.before.assign(p);
    });
  }

  /** Accumulates `g · (θ_after − θ_before)` into the path. */
  afterUpdate(ctx: StrategyContext): void {
    const grads = ctx.grads;
    if (!grads) return;
    tf.tidy(() => {
      for (const [n, p] of this.trackedParameters(ctx.model)) {
        const d = this.#data.get(n);
        let g = grads.get(n);
        if (!d || !g || !sameShape(g.shape, d.path.shape)) continue;
        if (this.pathGradient === "task" && this.#activeLambda > 0) {
          // d/dθ of λ/2 Ω (θ − θ*)², at the θ the gradient was taken at.
          g = tf.sub(
            g,
            tf.mul(tf.mul(d.importance, tf.sub(d.before, d.anchor)), this.#activeLambda),
          );
        }
        d.path.assign(tf.add(d.path, tf.mul(g, tf.sub(p, d.before))));
      }
    });
    this.#activeLambda = 0;
  }

  /** Turns the experience's paths into importances; the anchors become θ_end. */
  afterTrainingExp(ctx: StrategyContext): void {
    this.#sync(ctx.model, false);
    const params = this.trackedParameters(ctx.model);
    for (const [n, d] of this.#data) {
      const p = params.get(n);
      if (!p) continue;
      const [cum, imp] = tf.tidy(() => {
        const delta = tf.square(tf.sub(p, d.anchor));
        const c = tf.add(d.cumulative, tf.div(d.path, tf.add(delta, this.eps)));
        return [c, tf.minimum(tf.neg(c), this.clipTo)];
      });
      d.cumulative.dispose();
      d.importance.dispose();
      d.anchor.dispose();
      d.cumulative = tf.keep(cum);
      d.importance = tf.keep(imp);
      d.anchor = tf.keep(tf.clone(p));
      tf.tidy(() => d.path.assign(tf.zerosLike(d.path)));
    }
    this.#experiences++;
  }

  /** Plain-data state for checkpoints. */
  state(): SynapticIntelligenceState {
    return {
      version: 1,
      experiences: this.#experiences,
      params: Object.fromEntries(
        [...this.#data].map(([n, d]) => [n, {
          cumulative: tensorToState(d.cumulative),
          importance: tensorToState(d.importance),
          anchor: tensorToState(d.anchor),
          path: tensorToState(d.path),
        }]),
      ),
    };
  }

  /** Restores what {@link SynapticIntelligencePlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as SynapticIntelligenceState;
    if (!s || s.version !== 1 || typeof s.params !== "object") {
      throw new TypeError(`Not a SynapticIntelligencePlugin state (version ${String(s?.version)})`);
    }
    this.dispose();
    for (const [n, d] of Object.entries(s.params)) {
      const anchor = tf.keep(stateToTensor(d.anchor));
      this.#data.set(n, {
        cumulative: tf.keep(stateToTensor(d.cumulative)),
        importance: tf.keep(stateToTensor(d.importance)),
        anchor,
        path: variableFrom(stateToTensor(d.path), `si.path.${n}`),
        before: variableFrom(tf.clone(anchor), `si.before.${n}`),
      });
    }
    this.#experiences = Number(s.experiences) || 0;
  }

  /** Frees every tensor the plugin holds and forgets the consolidated experiences. */
  dispose(): void {
    for (const d of this.#data.values()) for (const t of Object.values(d)) t.dispose();
    this.#data.clear();
    this.#experiences = 0;
  }
}

/** Options of {@link siPlugin}. */
export type SIPluginOptions = SynapticIntelligencePluginOptions;

/**
 * A {@link SynapticIntelligencePlugin}.
 *
 * @example
 * ```ts
 * import { siPlugin } from "./synaptic_intelligence.ts";
 * const plugin = siPlugin({ lambda: 1, eps: 0.1, excludedParameters: ["classifier"] });
 * console.assert(plugin.isTracked("features.0.weight") && !plugin.isTracked("classifier.head0.weight"));
 * ```
 */
export function siPlugin(opts: SIPluginOptions): SynapticIntelligencePlugin {
  return new SynapticIntelligencePlugin(checkOptions("siPlugin", opts, SI_PLUGIN_OPTIONS));
}

/** The same as {@link siPlugin}. */
export const synapticIntelligencePlugin: (opts: SIPluginOptions) => SynapticIntelligencePlugin =
  siPlugin;

/** Options of {@link synapticIntelligence}: the strategy's options plus SI's. */
export interface SynapticIntelligenceOptions extends StrategyOptions, SIPluginOptions {}

/**
 * A strategy that fine-tunes with a {@link SynapticIntelligencePlugin} (run first among its
 * plugins).
 *
 * @example SI on task-incremental Split MNIST
 * ```ts ignore
 * import { adam, multiHeadMLP, splitMNIST, synapticIntelligence } from "../../mod.ts";
 * const bench = await splitMNIST({ returnTaskId: true, classIdsFromZeroInEachExp: true });
 * const strategy = synapticIntelligence({
 *   model: multiHeadMLP({ hidden: [256] }), lambda: 1, eps: 0.1, optimizer: adam({ lr: 1e-3 }),
 * });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function synapticIntelligence(opts: SynapticIntelligenceOptions): Strategy {
  checkOptions("synapticIntelligence", opts, { ...STRATEGY_OPTIONS, ...SI_PLUGIN_OPTIONS });
  const { lambda, eps, excludedParameters, clipTo, pathGradient, ...rest } = opts;
  if (lambda === undefined) {
    throw new TypeError("synapticIntelligence needs lambda: pass e.g. { lambda: 1 }");
  }
  const plugin = siPlugin({ lambda, eps, excludedParameters, clipTo, pathGradient });
  return withPlugin("SynapticIntelligence", plugin, rest);
}
