/**
 * Elastic Weight Consolidation (Kirkpatrick et al., "Overcoming catastrophic forgetting in neural
 * networks", PNAS 2017), as Avalanche's `EWCPlugin`: after each training experience, the
 * importance of every parameter (a diagonal empirical Fisher) is estimated on the experience's
 * data; while training later experiences, a quadratic penalty keeps important parameters close to
 * the values they had.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Dataset } from "../data/dataset.ts";
import type { Criterion } from "../nn/losses.ts";
import { crossEntropy } from "../nn/losses.ts";
import { type Module, stateToTensor, type TensorState, tensorToState } from "../nn/module.ts";
import { type PenaltyEntry, quadraticPenaltyTerm } from "../nn/penalties.ts";
import type { LossTerm } from "../nn/terms.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { Rng } from "../random.ts";
import { checkBatchSize, DatasetLoader } from "../data/loader.ts";
import { BatchAssembler } from "../engine/batches.ts";
import { type Plugin, StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";

// ------------------------------------------------------------------------------ helpers ----

/**
 * Resizes a saved tensor to the shape of a parameter that grew (or shrank): values in the
 * overlapping slice (the leading indices of every dimension) are kept, the rest come from `fill`
 * (a tensor of the target shape) or are zeros. Used by EWC and Synaptic Intelligence so that the
 * units an incremental head adds are not penalized.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { fitToShape } from "./ewc.ts";
 * const t = fitToShape(tf.tensor2d([[1], [2]]), [2, 3]);
 * console.assert(t.arraySync().toString() === [[1, 0, 0], [2, 0, 0]].toString());
 * ```
 */
export function fitToShape(t: tf.Tensor, shape: readonly number[], fill?: tf.Tensor): tf.Tensor {
  if (t.rank !== shape.length) {
    throw new RangeError(
      `Cannot fit a tensor of shape [${t.shape}] to shape [${shape}]: the ranks differ`,
    );
  }
  return tf.tidy(() => {
    if (t.shape.every((d, i) => d === shape[i])) return tf.clone(t);
    const overlap = t.shape.map((d, i) => Math.min(d, shape[i]));
    const pads = overlap.map((d, i) => [0, shape[i] - d] as [number, number]);
    const kept = tf.pad(tf.slice(t, t.shape.map(() => 0), overlap), pads);
    if (!fill) return kept;
    const inside = tf.pad(tf.ones(overlap, "bool"), pads);
    return tf.where(tf.cast(inside, "bool"), kept, fill);
  });
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function toTensorMap(
  record: Record<string, TensorState> | undefined,
  what: string,
): Map<string, tf.Tensor> {
  if (!record || typeof record !== "object") {
    throw new TypeError(`${what} is missing or not an object in the checkpoint`);
  }
  return new Map(Object.entries(record).map(([k, s]) => [k, tf.keep(stateToTensor(s))]));
}

function fromTensorMap(m: Map<string, tf.Tensor>): Record<string, TensorState> {
  return Object.fromEntries([...m].map(([k, t]) => [k, tensorToState(t)]));
}

function disposeMap(m: Map<string, tf.Tensor>): void {
  for (const t of m.values()) t.dispose();
  m.clear();
}

// ---------------------------------------------------------------------------- importances ----

/** Options of {@link ewcImportances}. */
export interface EWCImportanceOptions {
  /** The loss whose gradients are squared (a mean over the minibatch). @default crossEntropy */
  criterion?: Criterion;
  /** Minibatch size (EWCPlugin uses the strategy's training batch size). @default 32 */
  batchSize?: number;
}

/**
 * The diagonal empirical Fisher information as Avalanche's EWC estimates it: the mean, over the
 * minibatches of `dataset` taken in order (not shuffled), of the squared gradient of the
 * criterion (a mean over the minibatch) with respect to every trainable parameter of `model`.
 * The model is run in whatever mode it is in. Parameters that get no gradient have importance 0.
 * The caller owns (and must dispose) the returned tensors.
 *
 * @example
 * ```ts ignore
 * const fisher = ewcImportances(model, bench.train[0].dataset, { batchSize: 128 });
 * console.log(fisher.get("features.0.weight")!.max().dataSync()[0]);
 * ```
 */
export function ewcImportances(
  model: Module,
  dataset: Dataset,
  opts: EWCImportanceOptions = {},
): Map<string, tf.Tensor> {
  checkOptions("ewcImportances", opts, { criterion: "function", batchSize: "integer" });
  const criterion = opts.criterion ?? crossEntropy;
  const batchSize = opts.batchSize ?? 32;
  checkBatchSize("ewcImportances batchSize", batchSize);
  if (dataset.length === 0) {
    throw new RangeError("ewcImportances needs a non-empty dataset");
  }
  const params = model.trainableParameters();
  const names = [...params.keys()];
  const byEngineName = new Map([...params].map(([k, v]) => [v.name, k]));
  const varList = [...params.values()];
  let sums = new Map<string, tf.Tensor>(
    names.map((n) => [n, tf.keep(tf.zerosLike(params.get(n)!))]),
  );
  let batches = 0;
  // In order: the loader does not shuffle, so it never draws from its random source.
  const loader = new DatasetLoader(dataset, { batchSize, shuffle: false });
  const assembler = new BatchAssembler();
  for (const plan of loader.epoch(new Rng(0))) {
    const next = tf.tidy(() => {
      const { x, y, t, data } = assembler.assemble(plan, dataset.inputShape);
      const taskLabelsArray = data.t;
      const { grads } = tf.variableGrads(
        () => criterion(model.forward(x, { taskLabels: t, taskLabelsArray }), y),
        varList,
      );
      const out = new Map<string, tf.Tensor>();
      for (const n of names) out.set(n, sums.get(n)!);
      for (const [engineName, g] of Object.entries(grads)) {
        const n = byEngineName.get(engineName);
        if (n !== undefined) out.set(n, tf.add(sums.get(n)!, tf.square(g)));
      }
      return [...out.values()];
    });
    const updated = new Map(names.map((n, i) => [n, next[i]]));
    for (const [n, t] of sums) if (updated.get(n) !== t) t.dispose();
    for (const t of updated.values()) tf.keep(t);
    sums = updated;
    batches++;
  }
  const out = new Map<string, tf.Tensor>();
  for (const [n, s] of sums) {
    out.set(n, tf.keep(tf.tidy(() => tf.div(s, batches))));
    s.dispose();
  }
  return out;
}

// --------------------------------------------------------------------------------- plugin ----

/** How EWC combines the importances of successive experiences. */
export type EWCMode = "separate" | "online";

/** Options of {@link EWCPlugin} (and {@link ewcPlugin}). */
export interface EWCPluginOptions {
  /** Weight of the penalty (Avalanche's `ewc_lambda`). */
  lambda: number;
  /**
   * `"separate"`: one penalty term per past experience, each with its own importances and
   * parameter values. `"online"` (online EWC, Schwarz et al. 2018): a single running importance
   * `F ← decayFactor·F + F_new` anchored at the parameters after the latest experience.
   * @default "separate"
   */
  mode?: EWCMode;
  /** Decay of the running importance; required in (and only allowed with) `"online"` mode. */
  decayFactor?: number;
  /** Keep every experience's own importances and parameter copies ({@link EWCPlugin.history}). @default false */
  keepImportanceData?: boolean;
}

/** The keys of {@link EWCPluginOptions}, for checking what users pass. */
const EWC_PLUGIN_OPTIONS: OptionSpec<EWCPluginOptions> = {
  lambda: "number",
  mode: oneOf("separate", "online"),
  decayFactor: "number",
  keepImportanceData: "boolean",
};

/** One experience's importances and parameter copy, kept when `keepImportanceData` is true. */
export interface EWCExperienceData {
  /** Index of the experience among those consolidated by the plugin (0-based). */
  experience: number;
  /** That experience's own importances (not the running sum). */
  importances: Map<string, tf.Tensor>;
  /** The parameters right after training on it. */
  params: Map<string, tf.Tensor>;
}

/** Plain-data state of {@link EWCPlugin} in checkpoints. */
export interface EWCPluginState {
  version: 1;
  mode: EWCMode;
  experiences: number;
  constant: number;
  importance: Record<string, TensorState>;
  anchor: Record<string, TensorState>;
  history: {
    experience: number;
    importances: Record<string, TensorState>;
    params: Record<string, TensorState>;
  }[];
}

function checkLambda(what: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
    throw new RangeError(`${what} must be a finite number ≥ 0, got ${String(v)}`);
  }
  return v;
}

/**
 * Elastic Weight Consolidation (Kirkpatrick et al. 2017), Avalanche's `EWCPlugin`.
 *
 * - After each training experience (`afterTrainingExp`) the importances `F_e` are
 *   {@link ewcImportances}: the mean over the experience's training minibatches (the strategy's
 *   batch size, in order, the model in eval mode as Avalanche's `compute_importances`) of the
 *   squared gradients of the mean criterion loss, for every trainable parameter. Eval mode
 *   matters for dropout (off) and batch norm (the running statistics normalize, and the pass
 *   leaves them as training left them); for other models the two modes give the same numbers.
 * - In `beforeBackward` the penalty `λ Σ_e Σ_p F_e,p (θ_p − θ_e,p)²` is added to the loss as the
 *   term `"ewc"` (`"separate"` mode; no ½ factor, as Avalanche). `"online"` mode keeps one running
 *   importance `F = decayFactor·F_old + F_new` anchored at the latest parameters `θ*` and adds
 *   `λ Σ_p F_p (θ_p − θ*_p)²`.
 *
 * The separate penalty costs one pass over each parameter whatever the number of experiences:
 * with `S = Σ_e F_e` and the importance-weighted mean `μ = Σ_e F_e θ_e / S`,
 * `Σ_e F_e (θ − θ_e)² = S (θ − μ)² + Σ_e F_e (θ_e − μ)²`, and the last sum is a constant kept
 * as a float64 number. (Unlike expanding the square into `θ²ΣF − 2θΣFθ_e + ΣFθ_e²`, this form
 * has no cancellation in float32: see the tests.)
 *
 * Parameters that grew (the units an incremental or multi-head classifier adds) are penalized
 * only on the slice they had when their importances were computed (Avalanche pads importances
 * with zeros); parameters that did not exist then are not penalized.
 *
 * @example
 * ```ts ignore
 * import { EWCPlugin, naive, mlp } from "../../mod.ts";
 * const strategy = naive({ model: mlp(), plugins: [new EWCPlugin(1000)] });
 * const online = new EWCPlugin({ lambda: 100, mode: "online", decayFactor: 0.9 });
 * ```
 */
export class EWCPlugin extends StrategyPlugin {
  /** Weight of the penalty. */
  readonly ewcLambda: number;
  readonly mode: EWCMode;
  readonly decayFactor: number | undefined;
  readonly keepImportanceData: boolean;

  /** S: the summed (separate) or running (online) importance of each parameter. */
  #importance = new Map<string, tf.Tensor>();
  /** μ: the importance-weighted mean of the saved parameters (online: the latest parameters). */
  #anchor = new Map<string, tf.Tensor>();
  /** Σ_e F_e (θ_e − μ)² over all parameters: the penalty's constant part (separate mode). */
  #constant = 0;
  /**
   * The last consolidation's addition to {@link EWCPlugin.constant}, kept on the device until it
   * is first needed: `afterTrainingExp` reads it asynchronously (the "webgpu" backend cannot read
   * GPU data synchronously), so that the synchronous reads after it find the value on the CPU.
   */
  #pendingConstant: tf.Tensor | undefined;
  #experiences = 0;
  #history: EWCExperienceData[] = [];

  /**
   * @param ewcLambda weight of the penalty, or all options as an object.
   * @param mode `"separate"` (default) or `"online"`.
   * @param decayFactor decay of the running importance, in (0, 1]; online mode only.
   * @param keepImportanceData keep each experience's importances and parameters.
   */
  constructor(
    ewcLambda: number | EWCPluginOptions,
    mode?: EWCMode,
    decayFactor?: number,
    keepImportanceData?: boolean,
  ) {
    super();
    const o: EWCPluginOptions = typeof ewcLambda === "object" && ewcLambda !== null
      ? checkOptions("EWCPlugin", ewcLambda, EWC_PLUGIN_OPTIONS)
      : { lambda: ewcLambda as number, mode, decayFactor, keepImportanceData };
    this.ewcLambda = checkLambda("EWC lambda", o.lambda);
    this.mode = o.mode ?? "separate";
    if (this.mode !== "separate" && this.mode !== "online") {
      throw new RangeError(`EWC mode must be "separate" or "online", got ${String(o.mode)}`);
    }
    if (this.mode === "online") {
      const d = o.decayFactor;
      if (typeof d !== "number" || !(d > 0 && d <= 1)) {
        throw new RangeError(
          `EWC online mode needs decayFactor in (0, 1], got ${
            String(d)
          }: pass e.g. decayFactor: 0.9`,
        );
      }
    } else if (o.decayFactor !== undefined) {
      throw new RangeError(
        `EWC decayFactor (${o.decayFactor}) is only used in online mode: pass mode: "online" or ` +
          `leave decayFactor out`,
      );
    }
    this.decayFactor = o.decayFactor;
    if (o.keepImportanceData !== undefined && typeof o.keepImportanceData !== "boolean") {
      throw new TypeError(
        `EWC keepImportanceData must be true or false, got ${String(o.keepImportanceData)}`,
      );
    }
    this.keepImportanceData = o.keepImportanceData ?? false;
  }

  /** Number of experiences whose importances have been consolidated. */
  get experiences(): number {
    return this.#experiences;
  }

  /**
   * The importance of each parameter now in force: `Σ_e F_e` in separate mode, the running
   * importance in online mode. The plugin owns these tensors: do not dispose them.
   */
  get importances(): ReadonlyMap<string, tf.Tensor> {
    return this.#importance;
  }

  /**
   * The point each parameter is pulled towards: the importance-weighted mean of the saved
   * parameters in separate mode, the latest saved parameters in online mode. Owned by the plugin.
   */
  get anchors(): ReadonlyMap<string, tf.Tensor> {
    return this.#anchor;
  }

  /** The constant part of the separate penalty, `Σ_e Σ_p F_e,p (θ_e,p − μ_p)²` (before λ). */
  get constant(): number {
    return this.#settledConstant();
  }

  #settledConstant(): number {
    const pending = this.#pendingConstant;
    if (pending) {
      this.#pendingConstant = undefined;
      this.#constant += pending.dataSync()[0];
      pending.dispose();
    }
    return this.#constant;
  }

  /** Each experience's own importances and parameters (only with `keepImportanceData`). */
  get history(): readonly EWCExperienceData[] {
    return this.#history;
  }

  /**
   * Adds one experience's importances and parameter values, as `afterTrainingExp` does with the
   * ones it computes. The tensors are copied: the caller keeps ownership of its own.
   */
  consolidate(importances: Map<string, tf.Tensor>, params: Map<string, tf.Tensor>): void {
    for (const [n, f] of importances) {
      const p = params.get(n);
      if (!p) throw new RangeError(`EWC consolidate: importance of "${n}" has no parameter value`);
      if (!sameShape(f.shape, p.shape)) {
        throw new RangeError(
          `EWC consolidate: importance of "${n}" has shape [${f.shape}], its parameter [${p.shape}]`,
        );
      }
    }
    let extra = tf.scalar(0);
    for (const [n, f] of importances) {
      const theta = params.get(n)!;
      const oldS = this.#importance.get(n);
      const oldMu = this.#anchor.get(n);
      let S: tf.Tensor;
      let mu: tf.Tensor;
      if (!oldS || !oldMu) {
        S = tf.keep(tf.clone(f));
        mu = tf.keep(tf.clone(theta));
      } else if (this.mode === "online") {
        S = tf.keep(tf.tidy(() => {
          const prev = fitToShape(oldS, f.shape);
          return tf.add(tf.mul(prev, this.decayFactor!), f);
        }));
        mu = tf.keep(tf.clone(theta));
      } else {
        const [s, m, e] = tf.tidy(() => {
          const s0 = fitToShape(oldS, f.shape);
          const m0 = fitToShape(oldMu, f.shape);
          const s1 = tf.add(s0, f);
          const safe = tf.where(tf.greater(s1, 0), s1, tf.onesLike(s1));
          const weighted = tf.div(tf.add(tf.mul(s0, m0), tf.mul(f, theta)), safe);
          const m1 = tf.where(tf.greater(s1, 0), weighted, theta);
          // Parallel axis theorem: the constant grows by S_old (μ_old − μ)² + F (θ − μ)².
          const e1 = tf.add(
            tf.sum(tf.mul(s0, tf.square(tf.sub(m0, m1)))),
            tf.sum(tf.mul(f, tf.square(tf.sub(theta, m1)))),
          );
          return [s1, m1, tf.add(extra, e1)];
        });
        S = tf.keep(s);
        mu = tf.keep(m);
        extra.dispose();
        extra = e;
      }
      oldS?.dispose();
      oldMu?.dispose();
      this.#importance.set(n, S);
      this.#anchor.set(n, mu);
    }
    if (this.mode === "online") {
      // Parameters absent from this experience's importances keep a decayed importance.
      for (const [n, s] of this.#importance) {
        if (importances.has(n)) continue;
        this.#importance.set(n, tf.keep(tf.tidy(() => tf.mul(s, this.decayFactor!))));
        s.dispose();
      }
      this.#pendingConstant?.dispose();
      this.#pendingConstant = undefined;
      this.#constant = 0;
      extra.dispose();
    } else {
      this.#settledConstant();
      this.#pendingConstant = tf.keep(extra);
    }
    if (this.keepImportanceData) {
      this.#history.push({
        experience: this.#experiences,
        importances: new Map([...importances].map(([n, f]) => [n, tf.keep(tf.clone(f))])),
        params: new Map(
          [...importances.keys()].map((n) => [n, tf.keep(tf.clone(params.get(n)!))]),
        ),
      });
    }
    this.#experiences++;
  }

  /** Pads saved tensors of parameters that grew since they were saved. */
  #fitShapes(model: Module): void {
    const params = model.namedParameters();
    for (const [n, s] of this.#importance) {
      const p = params.get(n);
      if (!p || sameShape(p.shape, s.shape)) continue;
      const mu = this.#anchor.get(n)!;
      if (p.shape.some((d, i) => d < s.shape[i])) {
        throw new RangeError(
          `EWC: parameter "${n}" shrank from [${s.shape}] to [${p.shape}] since its importance ` +
            `was computed; only growing parameters are supported`,
        );
      }
      this.#importance.set(n, tf.keep(fitToShape(s, p.shape)));
      this.#anchor.set(n, tf.keep(fitToShape(mu, p.shape)));
      s.dispose();
      mu.dispose();
    }
  }

  /**
   * The penalty `λ Σ_p S_p (θ_p − μ_p)² + λ·constant` for the model's current parameters, or
   * undefined before any experience was consolidated. Differentiable; call it inside a gradient
   * function (as `beforeBackward` does) or a tidy scope.
   */
  penalty(model: Module): tf.Scalar | undefined {
    return this.penaltyTerm(model)?.value();
  }

  /**
   * {@link EWCPlugin.penalty} as a loss term that also gives its gradients without the tape, or
   * undefined before any experience was consolidated.
   */
  penaltyTerm(model: Module): LossTerm | undefined {
    if (this.#experiences === 0) return undefined;
    this.#fitShapes(model);
    const params = model.namedParameters();
    const entries: PenaltyEntry[] = [];
    for (const [name, importance] of this.#importance) {
      const x = params.get(name);
      if (x) entries.push({ name, x, importance, anchor: this.#anchor.get(name)! });
    }
    // λ Σ S (θ − μ)², with its gradient in one kernel where the backend has it.
    return quadraticPenaltyTerm(entries, this.ewcLambda, this.#settledConstant() * this.ewcLambda);
  }

  /** Fits saved tensors to parameters that grew when the model adapted to the experience. */
  beforeTrainingExp(ctx: StrategyContext): void {
    this.#fitShapes(ctx.model);
  }

  /** The penalty's gradient is known: the strategy may train without recording the tape. */
  readonly tapeFree = true;

  /** Adds the penalty as the loss term `"ewc"`. */
  beforeBackward(ctx: StrategyContext): void {
    const term = this.penaltyTerm(ctx.model);
    if (term) ctx.addLoss(term, "ewc");
  }

  /** Computes the experience's importances and consolidates them with the parameters. */
  async afterTrainingExp(ctx: StrategyContext): Promise<void> {
    const exp = ctx.experience;
    if (!exp) return;
    const wasTraining = ctx.model.training;
    ctx.model.eval();
    let importances: Map<string, tf.Tensor>;
    try {
      importances = ewcImportances(ctx.model, exp.dataset, {
        criterion: ctx.criterion,
        batchSize: ctx.settings.batchSize,
      });
    } finally {
      ctx.model.train(wasTraining);
    }
    const params = ctx.model.namedParameters();
    const values = new Map([...importances.keys()].map((n) => [n, params.get(n)! as tf.Tensor]));
    this.consolidate(importances, values);
    disposeMap(importances);
    // Brought to the CPU here, asynchronously, for the penalty's synchronous read.
    await this.#pendingConstant?.data();
  }

  /** Plain-data state for checkpoints. */
  state(): EWCPluginState {
    return {
      version: 1,
      mode: this.mode,
      experiences: this.#experiences,
      constant: this.#settledConstant(),
      importance: fromTensorMap(this.#importance),
      anchor: fromTensorMap(this.#anchor),
      history: this.#history.map((h) => ({
        experience: h.experience,
        importances: fromTensorMap(h.importances),
        params: fromTensorMap(h.params),
      })),
    };
  }

  /** Restores what {@link EWCPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as EWCPluginState;
    if (!s || s.version !== 1) {
      throw new TypeError(`Not an EWCPlugin state (version ${String(s?.version)})`);
    }
    if (s.mode !== this.mode) {
      throw new RangeError(
        `The checkpoint's EWC state is in "${s.mode}" mode but this plugin is "${this.mode}": ` +
          `build the plugin with mode: "${s.mode}"`,
      );
    }
    const importance = toTensorMap(s.importance, "EWC importance");
    const anchor = toTensorMap(s.anchor, "EWC anchor");
    this.dispose();
    this.#importance = importance;
    this.#anchor = anchor;
    this.#constant = Number(s.constant) || 0;
    this.#experiences = Number(s.experiences) || 0;
    this.#history = (s.history ?? []).map((h) => ({
      experience: h.experience,
      importances: toTensorMap(h.importances, "EWC history importances"),
      params: toTensorMap(h.params, "EWC history params"),
    }));
  }

  /** Frees every tensor the plugin holds and forgets the consolidated experiences. */
  dispose(): void {
    disposeMap(this.#importance);
    disposeMap(this.#anchor);
    for (const h of this.#history) {
      disposeMap(h.importances);
      disposeMap(h.params);
    }
    this.#history = [];
    this.#pendingConstant?.dispose();
    this.#pendingConstant = undefined;
    this.#constant = 0;
    this.#experiences = 0;
  }
}

/** Options of {@link ewcPlugin}: as {@link EWCPluginOptions}, with `lambda` defaulting to 1000. */
export type EWCPluginBuilderOptions = Partial<EWCPluginOptions>;

/**
 * An {@link EWCPlugin} (λ 1000 unless given).
 *
 * @example
 * ```ts
 * import { ewcPlugin } from "./ewc.ts";
 * const plugin = ewcPlugin({ lambda: 100, mode: "online", decayFactor: 0.9 });
 * console.assert(plugin.ewcLambda === 100);
 * ```
 */
export function ewcPlugin(opts: EWCPluginBuilderOptions = {}): EWCPlugin {
  checkOptions("ewcPlugin", opts, EWC_PLUGIN_OPTIONS);
  return new EWCPlugin({ ...opts, lambda: opts.lambda ?? 1000 });
}

/** Options of {@link ewc}: the strategy's options plus EWC's. */
export interface EWCOptions extends StrategyOptions, EWCPluginBuilderOptions {}

/**
 * A strategy that fine-tunes with an {@link EWCPlugin} (run first among its plugins).
 *
 * @example EWC on Permuted MNIST
 * ```ts ignore
 * import { ewc, mlp, permutedMNIST, sgd } from "../../mod.ts";
 * const bench = await permutedMNIST({ experiences: 5 });
 * const strategy = ewc({ model: mlp({ hidden: [512] }), lambda: 1000, optimizer: sgd({ lr: 0.01 }) });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function ewc(opts: EWCOptions): Strategy {
  checkOptions("ewc", opts, { ...STRATEGY_OPTIONS, ...EWC_PLUGIN_OPTIONS });
  const { lambda, mode, decayFactor, keepImportanceData, ...rest } = opts;
  const plugin: Plugin = ewcPlugin({ lambda, mode, decayFactor, keepImportanceData });
  return withPlugin("EWC", plugin, rest);
}
