/**
 * CWR* (Copy Weights with Re-init, star): Lomonaco & Maltoni, "CORe50: a New Dataset and
 * Benchmark for Continuous Object Recognition" (CoRL 2017, CWR), and Maltoni & Lomonaco,
 * "Continuous Learning in Single-Incremental-Task Scenarios" (Neural Networks 2019, CWR+/AR1)
 * and Lomonaco et al., "Rehearsal-Free Continual Learning over Small Non-I.I.D. Batches"
 * (CVPR-W 2020, CWR*). Avalanche's `CWRStarPlugin` / `CWRStar`.
 *
 * The output layer keeps a set of consolidated weights `cw` per class. Before each experience the
 * live output layer is reset to zero, except the columns of the experience's classes that were
 * seen before, which start from their consolidated values; after the first experience the rest of
 * the model is frozen and only the output layer learns. After the experience each of its classes
 * is consolidated with a weighted running average of its (zero-centred) trained weights, and the
 * consolidated weights are written back into the layer, which is what evaluation uses.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { Linear } from "../nn/layers.ts";
import type { Module } from "../nn/module.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";

/** Consolidated weights of one class: its column of the output layer and its bias. */
export interface ConsolidatedClass {
  /** The class's weight column (`inFeatures` values). */
  weight: Float32Array;
  /** The class's bias (0 when the layer has none). */
  bias: number;
}

/** Options of {@link CWRStarPlugin} and {@link cwrStarPlugin}. */
export interface CWRStarPluginOptions {
  /** The model trained by the strategy. */
  model: Module;
  /**
   * Dotted name (from `model.namedModules()`) of the output {@link Linear} layer. Default: the
   * model's `classifier` when it is a Linear (`mlp`, `cnn`), else the Linear inside an incremental
   * head (`classifier.classifier`), else the last Linear of the model (Avalanche's
   * `get_last_fc_layer`).
   */
  cwrLayerName?: string;
  /**
   * Freeze every parameter but the output layer's from the second experience on, and keep the
   * frozen part in evaluation mode (no dropout), as Avalanche's `freeze_everything`.
   * @default true
   */
  freezeRemainingModel?: boolean;
}

/** The keys of {@link CWRStarPluginOptions}, for checking what users pass. */
const CWR_STAR_PLUGIN_OPTIONS: OptionSpec<CWRStarPluginOptions> = {
  model: "object",
  cwrLayerName: "string",
  freezeRemainingModel: "boolean",
};

/** Plain-data state of {@link CWRStarPlugin} (JSON-serializable). */
export interface CWRStarState {
  layer: string;
  /** `[class, weight column, bias]` of every consolidated class. */
  consolidated: [number, number[], number][];
  /** `[class, samples seen in past experiences]`. */
  past: [number, number][];
  /** `[class, samples in the current experience]`. */
  current: [number, number][];
}

function findLayer(model: Module, name: string | undefined): [string, Linear] {
  const modules = model.namedModules();
  const linears = [...modules].filter(([, m]) => m instanceof Linear) as [string, Linear][];
  if (name !== undefined) {
    if (typeof name !== "string") {
      throw new TypeError(`cwrLayerName must be a dotted module name, got ${String(name)}`);
    }
    const m = modules.get(name);
    if (!(m instanceof Linear)) {
      throw new TypeError(
        `cwrLayerName "${name}" is ${m ? `a ${m.constructor.name}` : "not a module of the model"}` +
          `: pass the name of a Linear layer (the model's Linear layers: ${
            linears.map(([n]) => `"${n}"`).join(", ") || "none"
          })`,
      );
    }
    return [name, m];
  }
  for (const preferred of ["classifier", "classifier.classifier"]) {
    const m = modules.get(preferred);
    if (m instanceof Linear) return [preferred, m];
  }
  const last = linears.at(-1);
  if (!last) {
    throw new TypeError(
      "CWR* needs a model whose output layer is a Linear layer: the model has none; pass a " +
        "model built with mlp() or cnn(), or cwrLayerName",
    );
  }
  return last;
}

/**
 * Samples per class of a label array, classes in ascending order (Avalanche's
 * `examples_per_class`).
 */
function countClasses(targets: Int32Array): Map<number, number> {
  const counts = new Map<number, number>();
  for (const c of targets) counts.set(c, (counts.get(c) ?? 0) + 1);
  return new Map([...counts].sort((a, b) => a[0] - b[0]));
}

/**
 * The CWR* plugin (Avalanche's `CWRStarPlugin`). Task labels are not used; CWR* is meant for
 * class-incremental streams where the feature extractor is learned on the first experience (or
 * pre-trained) and then kept fixed.
 *
 * Per experience with classes `cur` and `n_j` samples of class `j`:
 * 1. **Reset** (`beforeTrainingExp`): every weight and bias of the output layer is set to 0, then
 *    the columns of the classes of `cur` that were consolidated before get their consolidated
 *    values `cw_j`. From the second experience on (`freezeRemainingModel`), only the output
 *    layer's parameters get gradients and the rest of the model is in evaluation mode.
 * 2. **Train** all the output units as usual (the other classes' units start from 0, as in
 *    Avalanche).
 * 3. **Consolidate** (`afterTrainingExp`): with `w_j` the trained column of class `j`, `avg` the
 *    mean of every entry of the columns of `cur` (a scalar, as Avalanche and the authors' code
 *    compute it) and `p_j` the samples of `j` seen in earlier experiences:
 *    `cw_j ← w_j − avg` for a new class, else
 *    `cw_j ← (cw_j·√(p_j/n_j) + (w_j − avg)) / (√(p_j/n_j) + 1)`; then `p_j ← p_j + n_j`. The
 *    bias (Avalanche's layers have none) is consolidated the same way, centred on the mean bias
 *    of `cur`. Subtracting a common value from the current classes' logits changes nothing
 *    within the experience but puts the classes of different experiences on the same scale.
 * 4. The consolidated columns are written into the layer (other columns keep their trained
 *    values), so evaluation uses them. An evaluation in the middle of an experience (periodic
 *    evaluation) sees the consolidation the experience would give if it ended then, and training
 *    resumes from the live weights afterwards.
 *
 * @example
 * ```ts ignore
 * const model = mlp({ hidden: [400, 400] });
 * const strategy = naive({ model, plugins: [new CWRStarPlugin(model)] });
 * for (const exp of bench.train) await strategy.train(exp);
 * ```
 */
export class CWRStarPlugin extends StrategyPlugin {
  /** The model whose output layer is consolidated. */
  readonly model: Module;
  /** Dotted name of the output layer. */
  readonly cwrLayerName: string;
  readonly freezeRemainingModel: boolean;
  readonly #saved = new Map<number, ConsolidatedClass>();
  readonly #past = new Map<number, number>();
  #cur = new Map<number, number>();
  /** True between beforeTrainingExp and afterTrainingExp: the layer holds training weights. */
  #live = false;
  #backup: { weight: tf.Tensor; bias: tf.Tensor | undefined } | undefined;

  /**
   * @param model the model (or an options object).
   * @param cwrLayerName dotted name of the output Linear layer (default: detected).
   * @param freezeRemainingModel freeze everything but that layer after the first experience.
   */
  constructor(
    model: Module | CWRStarPluginOptions,
    cwrLayerName?: string,
    freezeRemainingModel = true,
  ) {
    super();
    const opts: CWRStarPluginOptions = isModule(model)
      ? { model, cwrLayerName, freezeRemainingModel }
      : checkOptions("CWRStarPlugin", model, CWR_STAR_PLUGIN_OPTIONS);
    if (!opts || !isModule(opts.model)) {
      throw new TypeError(
        "CWRStarPlugin needs the model: new CWRStarPlugin(model) or cwrStarPlugin({ model })",
      );
    }
    const freeze = opts.freezeRemainingModel ?? true;
    if (typeof freeze !== "boolean") {
      throw new TypeError(`freezeRemainingModel must be true or false, got ${String(freeze)}`);
    }
    this.model = opts.model;
    this.cwrLayerName = findLayer(opts.model, opts.cwrLayerName)[0];
    this.freezeRemainingModel = freeze;
  }

  override get name(): string {
    return "CWRStarPlugin";
  }

  /** The output layer (looked up by name each time: heads may be rebuilt). */
  get layer(): Linear {
    return findLayer(this.model, this.cwrLayerName)[1];
  }

  /** Consolidated weights by class (Avalanche's `model.saved_weights`). */
  get consolidatedWeights(): ReadonlyMap<number, ConsolidatedClass> {
    return this.#saved;
  }

  /** Samples of each class seen in the experiences consolidated so far (`model.past_j`). */
  get pastCounts(): ReadonlyMap<number, number> {
    return this.#past;
  }

  /** Samples of each class in the current (or last) experience (`model.cur_j`). */
  get currentCounts(): ReadonlyMap<number, number> {
    return this.#cur;
  }

  async beforeTrainingExp(ctx: StrategyContext): Promise<void> {
    await this.#layerOnCpu();
    const exp = ctx.experience!;
    this.#cur = countClasses(exp.dataset.targets);
    const layer = this.layer;
    for (const c of this.#cur.keys()) {
      if (c < 0 || c >= layer.outFeatures) {
        throw new RangeError(
          `CWR*: class ${c} of experience ${exp.id} has no unit in the output layer ` +
            `"${this.cwrLayerName}" (${layer.outFeatures} units): build the model with at least ` +
            `${c + 1} outputs, or with head: "incremental"`,
        );
      }
    }
    this.#resetWeights();
    this.#live = true;
    this.#applyFreeze(ctx);
  }

  /**
   * Adds `counts` (samples per class) to the current experience's counts and resets the output
   * layer again for every class that now has samples: how AR1 counts the samples of its latent
   * replay memory (Avalanche's `cur_j[c] += count`, `reset_weights(cur_class)`), called after
   * `beforeTrainingExp`.
   */
  includeClassCounts(counts: ReadonlyMap<number, number>): void {
    const layer = this.layer;
    const cur = new Map(this.#cur);
    for (const [c, n] of counts) {
      if (!Number.isInteger(c) || c < 0 || c >= layer.outFeatures) {
        throw new RangeError(
          `CWR*: class ${c} has no unit in the output layer "${this.cwrLayerName}" ` +
            `(${layer.outFeatures} units)`,
        );
      }
      cur.set(c, (cur.get(c) ?? 0) + n);
    }
    this.#cur = new Map([...cur].filter(([, n]) => n > 0).sort((a, b) => a[0] - b[0]));
    this.#resetWeights();
  }

  beforeTrainingIteration(ctx: StrategyContext): void {
    if (!this.#frozen(ctx)) return;
    this.#applyFreeze(ctx);
    const keep = new Set(this.layer.namedParameters().values());
    for (const [name, v] of ctx.params) if (!keep.has(v)) ctx.params.delete(name);
  }

  async afterTrainingExp(): Promise<void> {
    await this.#layerOnCpu();
    const { saved, past } = this.#consolidate();
    // In place: maps handed out by the getters stay current.
    for (const [c, s] of saved) this.#saved.set(c, s);
    for (const [c, n] of past) this.#past.set(c, n);
    this.#writeConsolidated();
    this.#live = false;
  }

  async beforeEval(): Promise<void> {
    if (!this.#live || this.#backup) return;
    await this.#layerOnCpu();
    // Periodic evaluation within an experience: evaluate what consolidation would give now.
    const layer = this.layer;
    this.#backup = {
      weight: tf.keep(tf.clone(layer.weight)),
      bias: layer.bias ? tf.keep(tf.clone(layer.bias)) : undefined,
    };
    const { saved } = this.#consolidate();
    this.#writeColumns(saved);
  }

  afterEval(): void {
    const b = this.#backup;
    if (!b) return;
    const layer = this.layer;
    layer.weight.assign(b.weight);
    if (b.bias && layer.bias) layer.bias.assign(b.bias);
    this.#disposeBackup();
  }

  #frozen(ctx: StrategyContext): boolean {
    return this.freezeRemainingModel && ctx.clock.trainExperiences > 0;
  }

  #applyFreeze(ctx: StrategyContext): void {
    if (!this.#frozen(ctx)) return;
    // As Avalanche's freeze_everything/unfreeze_everything: the frozen part in eval mode.
    this.model.eval();
    this.layer.train();
  }

  /** Avalanche's reset_weights: zeros, then the consolidated columns of the current classes. */
  #resetWeights(): void {
    const layer = this.layer;
    const [nIn, nOut] = [layer.inFeatures, layer.outFeatures];
    const w = new Float32Array(nIn * nOut);
    const b = new Float32Array(nOut);
    for (const c of this.#cur.keys()) {
      const s = this.#saved.get(c);
      if (!s) continue;
      for (let i = 0; i < nIn; i++) w[i * nOut + c] = s.weight[i];
      b[c] = s.bias;
    }
    tf.tidy(() => {
      layer.weight.assign(tf.tensor2d(w, [nIn, nOut]));
      layer.bias?.assign(tf.tensor1d(b));
    });
  }

  /**
   * Brings the output layer's values to the CPU, asynchronously, before the hooks read them
   * synchronously: the "webgpu" backend has no synchronous read of GPU data, and a value read
   * once stays readable. The layer's new values are written from JavaScript, so readable too.
   */
  async #layerOnCpu(): Promise<void> {
    const layer = this.layer;
    await Promise.all([layer.weight.data(), layer.bias?.data()]);
  }

  /** Avalanche's consolidate_weights, returning the new state without committing it. */
  #consolidate(): { saved: Map<number, ConsolidatedClass>; past: Map<number, number> } {
    const layer = this.layer;
    const [nIn, nOut] = [layer.inFeatures, layer.outFeatures];
    const w = layer.weight.dataSync();
    const b = layer.bias ? layer.bias.dataSync() : new Float32Array(nOut);
    const cur = [...this.#cur.keys()];
    let wSum = 0, bSum = 0;
    for (const c of cur) {
      for (let i = 0; i < nIn; i++) wSum += w[i * nOut + c];
      bSum += b[c];
    }
    const wAvg = cur.length ? wSum / (cur.length * nIn) : 0;
    const bAvg = cur.length ? bSum / cur.length : 0;
    const saved = new Map(this.#saved);
    const past = new Map(this.#past);
    for (const c of cur) {
      const n = this.#cur.get(c)!;
      const old = saved.get(c);
      const weight = new Float32Array(nIn);
      let bias: number;
      if (old) {
        const wp = Math.sqrt(past.get(c)! / n);
        for (let i = 0; i < nIn; i++) {
          weight[i] = (old.weight[i] * wp + (w[i * nOut + c] - wAvg)) / (wp + 1);
        }
        bias = Math.fround((old.bias * wp + (b[c] - bAvg)) / (wp + 1));
        past.set(c, past.get(c)! + n);
      } else {
        for (let i = 0; i < nIn; i++) weight[i] = w[i * nOut + c] - wAvg;
        bias = Math.fround(b[c] - bAvg);
        past.set(c, n);
      }
      saved.set(c, { weight, bias });
    }
    return { saved, past };
  }

  /** Avalanche's set_consolidate_weights: writes every consolidated column into the layer. */
  #writeConsolidated(): void {
    this.#writeColumns(this.#saved);
  }

  #writeColumns(saved: ReadonlyMap<number, ConsolidatedClass>): void {
    if (saved.size === 0) return;
    const layer = this.layer;
    const [nIn, nOut] = [layer.inFeatures, layer.outFeatures];
    const w = layer.weight.dataSync().slice();
    const b = layer.bias ? layer.bias.dataSync().slice() : undefined;
    for (const [c, s] of saved) {
      if (c >= nOut) continue;
      for (let i = 0; i < nIn; i++) w[i * nOut + c] = s.weight[i];
      if (b) b[c] = s.bias;
    }
    tf.tidy(() => {
      layer.weight.assign(tf.tensor2d(w, [nIn, nOut]));
      if (b) layer.bias!.assign(tf.tensor1d(b));
    });
  }

  #disposeBackup(): void {
    this.#backup?.weight.dispose();
    this.#backup?.bias?.dispose();
    this.#backup = undefined;
  }

  /** Consolidated weights and counts as plain data. */
  state(): CWRStarState {
    return {
      layer: this.cwrLayerName,
      consolidated: [...this.#saved].map(([c, s]) => [c, Array.from(s.weight), s.bias]),
      past: [...this.#past],
      current: [...this.#cur],
    };
  }

  /** Restores what {@link CWRStarPlugin.state} returned. */
  loadState(state: unknown): void {
    const s = state as CWRStarState;
    if (!s || !Array.isArray(s.consolidated) || !Array.isArray(s.past)) {
      throw new TypeError("Not a CWRStarPlugin state: expected { consolidated, past, current }");
    }
    if (s.layer !== this.cwrLayerName) {
      throw new RangeError(
        `The CWR* state is for layer "${s.layer}" but this plugin uses "${this.cwrLayerName}": ` +
          `build the plugin with cwrLayerName: "${s.layer}"`,
      );
    }
    const nIn = this.layer.inFeatures;
    for (const [c, w] of s.consolidated) {
      if (!Array.isArray(w) || w.length !== nIn) {
        throw new RangeError(
          `The CWR* state has ${w?.length} weights for class ${c}, the layer has ${nIn} inputs`,
        );
      }
    }
    this.#saved.clear();
    for (const [c, w, b] of s.consolidated) {
      this.#saved.set(c, { weight: Float32Array.from(w), bias: b });
    }
    this.#past.clear();
    for (const [c, n] of s.past) this.#past.set(c, n);
    this.#cur = new Map(s.current ?? []);
    this.#live = false;
    this.#disposeBackup();
  }

  /** Frees the tensors the plugin holds (none between runs). */
  dispose(): void {
    this.#disposeBackup();
  }
}

function isModule(m: unknown): m is Module {
  return !!m && typeof (m as Module).forward === "function" &&
    typeof (m as Module).namedModules === "function";
}

/**
 * A {@link CWRStarPlugin} from options.
 *
 * @example
 * ```ts
 * import { mlp } from "../models/mlp.ts";
 * import { cwrStarPlugin } from "./cwr_star.ts";
 * const model = mlp({ hidden: [32], seed: 0 });
 * const plugin = cwrStarPlugin({ model });
 * console.assert(plugin.cwrLayerName === "classifier");
 * model.dispose();
 * ```
 */
export function cwrStarPlugin(opts: CWRStarPluginOptions): CWRStarPlugin {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("cwrStarPlugin expects an options object { model }");
  }
  checkOptions("cwrStarPlugin", opts, CWR_STAR_PLUGIN_OPTIONS);
  return new CWRStarPlugin(opts);
}

/** Options of {@link cwrStar}: the strategy's, plus the plugin's. */
export interface CWRStarOptions extends StrategyOptions {
  /** See {@link CWRStarPluginOptions.cwrLayerName}. */
  cwrLayerName?: string;
  /** See {@link CWRStarPluginOptions.freezeRemainingModel}. @default true */
  freezeRemainingModel?: boolean;
}

/**
 * The CWR* strategy (Avalanche's `CWRStar`): training with a {@link CWRStarPlugin}, for
 * class-incremental streams. The whole model learns on the first experience, then only the
 * output layer (consolidated per class).
 *
 * @example
 * ```ts ignore
 * const bench = await splitMNIST();
 * const strategy = cwrStar({ model: mlp({ hidden: [400] }), epochs: 2, batchSize: 64 });
 * for (const exp of bench.train) await strategy.train(exp);
 * console.log((await strategy.eval(bench.test)).accuracy);
 * ```
 */
export function cwrStar(opts: CWRStarOptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("cwrStar expects an options object { model, ... }");
  }
  checkOptions("cwrStar", opts, { ...STRATEGY_OPTIONS, ...CWR_STAR_PLUGIN_OPTIONS });
  const { cwrLayerName, freezeRemainingModel, ...rest } = opts;
  const plugin = new CWRStarPlugin({ model: rest.model, cwrLayerName, freezeRemainingModel });
  return withPlugin("CWRStar", plugin, rest);
}
