/**
 * The strategy template: Avalanche's training and evaluation loops with every callback, on tfjs.
 *
 * One training iteration runs, in order: beforeTrainingIteration → [gradient tape:
 * beforeForward → forward → afterForward → criterion → beforeBackward] → afterBackward →
 * beforeUpdate → optimizer step → afterUpdate → afterTrainingIteration. The three hooks inside
 * the tape must be synchronous. Each iteration runs in its own tensor scope: tensors a plugin
 * creates there are freed at the end of the iteration unless it `tf.keep`s them.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "../nn/gradients.ts";
import type { Experience } from "../data/experience.ts";
import type { Batch, Dataset } from "../data/dataset.ts";
import type { MetricRow } from "../metrics/rows.ts";
import { accuracyMatrix } from "../metrics/rows.ts";
import { type Criterion, crossEntropy } from "../nn/losses.ts";
import { accumulateBatch, type HeapInputs, heapInputs } from "../backends/fused.ts";
import type { Module, ModuleState } from "../nn/module.ts";
import { type DirectStep, planDirectStep } from "../engine/direct.ts";
import { type Optimizer, type OptimizerState, sgd } from "../optim/optimizers.ts";
import { Rng, type RngState } from "../random.ts";
import type { Clock, StrategyContext, TensorBatch } from "./context.ts";
import { checkBatchSize, type DataLoader, DatasetLoader } from "./loader.ts";
import {
  EVAL_HOOKS,
  type Hook,
  type HookName,
  type OutputLossTerm,
  type Plugin,
  SYNC_HOOKS,
  TRAIN_HOOKS,
} from "./plugin.ts";

/**
 * A minibatch whose `x` is read from the tensor `t` at each access (a view of the heap, which a
 * new tensor may move: a view taken once could go stale within the iteration). When `t` shares
 * a dataset's memory, `x` is a copy, so that nothing can write into the dataset.
 */
function liveInputs(data: Batch, t: tf.Tensor, heap: HeapInputs, shared: boolean): Batch {
  return {
    get x() {
      return shared ? heap.view(t).slice() : heap.view(t);
    },
    y: data.y,
    t: data.t,
    n: data.n,
  };
}

/** Options shared by every strategy builder. */
export interface StrategyOptions {
  /** The model to train. */
  model: Module;
  /** @default sgd({ lr: 0.01, momentum: 0.9 }) */
  optimizer?: Optimizer;
  /** @default crossEntropy */
  criterion?: Criterion;
  /** Epochs per training experience. @default 1 */
  epochs?: number;
  /** Training minibatch size. @default 32 */
  batchSize?: number;
  /** Evaluation minibatch size. @default 256 */
  evalBatchSize?: number;
  /** Plugins, whose hooks run in this order. @default [] */
  plugins?: Plugin[];
  /**
   * The evaluation plugin (metrics and loggers, e.g. `evaluation({...})`). It runs after every
   * other plugin, so it sees their effects (replaced outputs, added loss terms).
   */
  evaluator?: Plugin;
  /** Seed of the run's generator (shuffling and every plugin's sampling). Default: drawn from Math.random. */
  seed?: number;
  /** Shuffle training data each epoch. @default true */
  shuffle?: boolean;
  /**
   * Drop the last training minibatch of an epoch when it is smaller than `batchSize`
   * (PyTorch's and Avalanche's `drop_last`). @default false
   */
  dropLast?: boolean;
  /**
   * Periodic evaluation on `evalStreams` given to `train`: -1 never, 0 after each experience,
   * N after every N epochs. @default -1
   */
  evalEvery?: number;
  /** Name shown in results. @default "Naive" */
  name?: string;
}

/** Training figures of one epoch. */
export interface EpochResult {
  experience: number;
  epoch: number;
  /** Mean training loss (criterion plus added terms). */
  loss: number;
  /** Training accuracy. */
  accuracy: number;
  samples: number;
  seconds: number;
}

/** What `train` returns. */
export interface TrainResult {
  epochs: EpochResult[];
  /** Rows produced by this call (train metrics, and eval metrics of periodic evaluation). */
  rows: MetricRow[];
  samples: number;
  seconds: number;
}

/** Evaluation figures of one experience. */
export interface ExperienceEval {
  experience: number;
  stream: string;
  taskLabel: number;
  classes: readonly number[];
  accuracy: number;
  loss: number;
  samples: number;
}

/** What `eval` returns. */
export interface EvalResult {
  stream: string;
  /** Index of the last training experience completed before this evaluation (-1: none). */
  trainExperience: number;
  experiences: ExperienceEval[];
  /** Accuracy over all samples of the evaluated experiences. */
  accuracy: number;
  /** Mean of the per-experience accuracies. */
  meanAccuracy: number;
  /** Mean loss over all samples. */
  loss: number;
  samples: number;
  seconds: number;
  rows: MetricRow[];
}

/** Plain-data state of a strategy: enough to resume a run and get the same numbers. */
export interface StrategyState {
  version: 1;
  name: string;
  model: ModuleState;
  optimizer: OptimizerState;
  rng: RngState;
  clock: Clock;
  rows: MetricRow[];
  plugins: Record<string, unknown>;
  extra: Record<string, unknown>;
}

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(`${name} must be an integer ≥ 1, got ${v}`);
  }
}

function toExperiences(arg: Experience | Iterable<Experience>, what: string): Experience[] {
  if (arg && typeof (arg as Experience).dataset === "object" && "id" in (arg as Experience)) {
    return [arg as Experience];
  }
  if (arg && typeof (arg as Iterable<Experience>)[Symbol.iterator] === "function") {
    const list = [...(arg as Iterable<Experience>)];
    if (list.length === 0) {
      throw new RangeError(`${what} got an empty stream: pass at least one experience`);
    }
    return list;
  }
  throw new TypeError(
    `${what} expects an experience or a stream of experiences, got ${String(arg)}`,
  );
}

/**
 * The base strategy: fine-tuning with the full callback lifecycle. Builders (`naive`,
 * `cumulative`, `jointTraining`, and the plugin strategies) return instances of it or of a
 * subclass that overrides dataset adaptation.
 */
export class Strategy {
  readonly model: Module;
  readonly optimizer: Optimizer;
  readonly criterion: Criterion;
  readonly plugins: Plugin[];
  /** The evaluation plugin given as `evaluator`, if any (also the last of `plugins`). */
  readonly evaluator: Plugin | undefined;
  readonly rng: Rng;
  readonly clock: Clock = {
    trainExperiences: 0,
    epoch: 0,
    epochIteration: 0,
    trainIterations: 0,
    evalIterations: 0,
  };
  /** Every metric row of the run, in order. */
  readonly rows: MetricRow[] = [];
  readonly name: string;
  epochs: number;
  batchSize: number;
  evalBatchSize: number;
  shuffle: boolean;
  /** Drop an epoch's incomplete last training minibatch. */
  dropLast: boolean;
  evalEvery: number;
  /** The context handed to hooks. */
  readonly ctx: StrategyContext;

  #hooks = new Map<HookName, { plugin: Plugin; fn: Hook }[]>();
  #lossSum: tf.Variable;
  #correct: tf.Variable;
  #stop = false;
  #keep: tf.Tensor[] = [];
  #inTrain = false;
  /** The tape-free step for this epoch's model, when nothing needs the tape (see `direct.ts`). */
  #direct: DirectStep | undefined;

  constructor(opts: StrategyOptions) {
    if (
      !opts || typeof opts !== "object" || !opts.model || typeof opts.model.forward !== "function"
    ) {
      throw new TypeError("A strategy needs a model: pass { model: mlp(...) } or another Module");
    }
    this.model = opts.model;
    this.optimizer = opts.optimizer ?? sgd({ lr: 0.01, momentum: 0.9 });
    this.criterion = opts.criterion ?? crossEntropy;
    this.plugins = [...(opts.plugins ?? []), ...(opts.evaluator ? [opts.evaluator] : [])];
    this.evaluator = opts.evaluator;
    this.epochs = opts.epochs ?? 1;
    this.batchSize = opts.batchSize ?? 32;
    this.evalBatchSize = opts.evalBatchSize ?? 256;
    this.shuffle = opts.shuffle ?? true;
    this.dropLast = opts.dropLast ?? false;
    this.evalEvery = opts.evalEvery ?? -1;
    this.name = opts.name ?? "Naive";
    positiveInt("epochs", this.epochs);
    checkBatchSize("batchSize", this.batchSize);
    checkBatchSize("evalBatchSize", this.evalBatchSize);
    if (!Number.isInteger(this.evalEvery) || this.evalEvery < -1) {
      throw new RangeError(
        `evalEvery must be -1 (never), 0 (after each experience) or N ≥ 1 epochs, got ${this.evalEvery}`,
      );
    }
    for (const [i, p] of this.plugins.entries()) {
      if (!p || typeof p !== "object") {
        throw new TypeError(`plugins[${i}] is not a plugin object: ${String(p)}`);
      }
    }
    this.rng = new Rng(opts.seed ?? Math.floor(Math.random() * 2 ** 31));
    this.#lossSum = tf.tidy(() => tf.variable(tf.scalar(0), false));
    this.#correct = tf.tidy(() => tf.variable(tf.scalar(0), false));
    const stop = (v?: boolean) => (v === undefined ? this.#stop : (this.#stop = v));
    this.ctx = {
      settings: this,
      model: this.model,
      optimizer: this.optimizer,
      criterion: this.criterion,
      rng: this.rng,
      clock: this.clock,
      phase: "train",
      experience: undefined,
      experiences: [],
      dataset: undefined,
      dataLoader: undefined,
      epochs: this.epochs,
      batch: undefined,
      output: undefined,
      loss: undefined,
      lossTerms: new Map(),
      params: new Map(),
      grads: undefined,
      rows: this.rows,
      addLoss(this: StrategyContext, term: tf.Scalar, name?: string) {
        name ??= `term${this.lossTerms.size}`;
        if (!this.loss) {
          throw new Error("addLoss can only be called once the loss exists (in beforeBackward)");
        }
        if (term.rank !== 0) {
          throw new RangeError(`addLoss needs a scalar, got shape [${term.shape}] for "${name}"`);
        }
        this.loss = tf.add(this.loss, term) as tf.Scalar;
        this.lossTerms.set(name, term);
      },
      stopTraining() {
        stop(true);
      },
      get stopRequested() {
        return stop();
      },
    };
  }

  // ------------------------------------------------------------------ hooks ----

  #collectHooks(): void {
    this.#hooks.clear();
    for (const plugin of this.plugins) {
      for (
        const key of Object.keys(Object.getOwnPropertyDescriptors(plugin)).concat(protoKeys(plugin))
      ) {
        const fn = (plugin as Record<string, unknown>)[key];
        if (typeof fn !== "function" || !isHook(key)) continue;
        let list = this.#hooks.get(key);
        if (!list) this.#hooks.set(key, list = []);
        if (!list.some((h) => h.plugin === plugin)) list.push({ plugin, fn: fn as Hook });
      }
    }
  }

  async #call(name: HookName): Promise<void> {
    const list = this.#hooks.get(name);
    if (!list) return;
    for (const { fn, plugin } of list) await fn.call(plugin, this.ctx);
  }

  #callSync(name: HookName): void {
    const list = this.#hooks.get(name);
    if (!list) return;
    for (const { fn, plugin } of list) {
      const r = fn.call(plugin, this.ctx) as unknown;
      if (r && typeof (r as Promise<void>).then === "function") {
        throw new TypeError(
          `Plugin ${
            plugin.name ?? "(unnamed)"
          }'s ${name} returned a Promise: hooks inside the gradient ` +
            `tape (${[...SYNC_HOOKS].join(", ")}) must be synchronous`,
        );
      }
    }
  }

  // ------------------------------------------------------- overridable steps ----

  /** Sets `ctx.dataset` for training on `ctx.experience` (default: the experience's data). */
  protected trainDatasetAdaptation(ctx: StrategyContext): void {
    ctx.dataset = ctx.experience!.dataset;
  }

  /** Sets `ctx.dataset` for evaluating `ctx.experience`. */
  protected evalDatasetAdaptation(ctx: StrategyContext): void {
    ctx.dataset = ctx.experience!.dataset;
  }

  /** The training loader of the adapted dataset. */
  protected makeTrainLoader(ctx: StrategyContext): DataLoader {
    return new DatasetLoader(ctx.dataset!, {
      batchSize: this.batchSize,
      shuffle: this.shuffle,
      dropLast: this.dropLast,
    });
  }

  /** The evaluation loader of the adapted dataset. */
  protected makeEvalLoader(ctx: StrategyContext): DataLoader {
    return new DatasetLoader(ctx.dataset!, { batchSize: this.evalBatchSize, shuffle: false });
  }

  /** Hook for subclasses: the experiences to train on, one after the other. */
  protected trainingExperiences(experiences: Experience[]): Experience[] {
    return experiences;
  }

  // -------------------------------------------------------------- training ----

  /**
   * Trains on an experience or on each experience of a stream in turn. `evalStreams` are
   * evaluated according to `evalEvery`.
   */
  async train(
    experiences: Experience | Iterable<Experience>,
    opts: { evalStreams?: (Experience | Iterable<Experience>)[] } = {},
  ): Promise<TrainResult> {
    const list = this.trainingExperiences(toExperiences(experiences, "train"));
    const firstRow = this.rows.length;
    const start = performance.now();
    const result: TrainResult = { epochs: [], rows: [], samples: 0, seconds: 0 };
    this.#collectHooks();
    const ctx = this.ctx;
    ctx.phase = "train";
    ctx.experiences = list;
    this.model.train();
    this.#inTrain = true;
    try {
      await this.#call("beforeTraining");
      for (const exp of list) {
        await this.#trainExperience(exp, result, opts.evalStreams ?? []);
      }
      ctx.phase = "train";
      await this.#call("afterTraining");
    } finally {
      this.#inTrain = false;
    }
    result.rows = this.rows.slice(firstRow);
    result.seconds = (performance.now() - start) / 1000;
    return result;
  }

  async #trainExperience(
    exp: Experience,
    result: TrainResult,
    evalStreams: (Experience | Iterable<Experience>)[],
  ) {
    const ctx = this.ctx;
    ctx.experience = exp;
    ctx.epochs = this.epochs;
    this.#stop = false;
    this.clock.epoch = 0;
    this.clock.epochIteration = 0;
    await this.#call("beforeTrainDatasetAdaptation");
    this.trainDatasetAdaptation(ctx);
    await this.#call("afterTrainDatasetAdaptation");
    const dataset = ctx.dataset;
    if (!dataset || dataset.length === 0) {
      throw new RangeError(
        `Experience ${exp.id} of stream "${exp.stream}" has no training samples after dataset adaptation`,
      );
    }
    this.#checkInputShape(dataset);
    ctx.dataLoader = this.makeTrainLoader(ctx);
    this.model.adapt(exp, true);
    this.model.train();
    await this.#call("beforeTrainingExp");
    for (let e = 0; e < ctx.epochs && !this.#stop; e++) {
      const t0 = performance.now();
      this.#resetAccumulators();
      let samples = 0;
      await this.#call("beforeTrainingEpoch");
      this.#direct = this.#planDirect();
      const loader = ctx.dataLoader!;
      this.clock.epochIteration = 0;
      for (const { data, x } of this.#batches(loader, ctx.dataset!.inputShape)) {
        samples += await this.#trainIteration(data, x);
        if (this.#stop) break;
      }
      const [lossSum, correct] = [this.#lossSum.dataSync()[0], this.#correct.dataSync()[0]];
      if (!Number.isFinite(lossSum)) {
        throw new RangeError(
          `Training loss became ${lossSum} in epoch ${e} of experience ${exp.id}: lower the learning rate ` +
            `(now ${this.optimizer.lr}) or check the inputs and added loss terms`,
        );
      }
      const er: EpochResult = {
        experience: exp.id,
        epoch: e,
        loss: samples ? lossSum / samples : NaN,
        accuracy: samples ? correct / samples : NaN,
        samples,
        seconds: (performance.now() - t0) / 1000,
      };
      result.epochs.push(er);
      result.samples += samples;
      for (const [metric, value] of [["loss", er.loss], ["accuracy", er.accuracy]] as const) {
        this.rows.push({
          metric,
          phase: "train",
          stream: exp.stream,
          experience: exp.id,
          task: null,
          epoch: e,
          iteration: this.clock.trainIterations,
          trainExperience: this.clock.trainExperiences,
          value,
        });
      }
      this.clock.epoch = e + 1;
      await this.#call("afterTrainingEpoch");
      if (this.evalEvery > 0 && (e + 1) % this.evalEvery === 0) {
        await this.#periodicEval(evalStreams);
      }
    }
    await this.#call("afterTrainingExp");
    this.clock.trainExperiences++;
    if (this.evalEvery === 0) await this.#periodicEval(evalStreams);
  }

  async #periodicEval(streams: (Experience | Iterable<Experience>)[]): Promise<void> {
    if (streams.length === 0) return;
    const ctx = this.ctx;
    const saved = {
      experience: ctx.experience,
      experiences: ctx.experiences,
      dataset: ctx.dataset,
      loader: ctx.dataLoader,
    };
    for (const s of streams) await this.eval(s);
    ctx.phase = "train";
    ctx.experience = saved.experience;
    ctx.experiences = saved.experiences;
    ctx.dataset = saved.dataset;
    ctx.dataLoader = saved.loader;
    this.model.train();
    this.#collectHooks();
  }

  #checkInputShape(dataset: Dataset): void {
    const expected = (this.model as { inputShape?: readonly number[] }).inputShape;
    if (!expected) return;
    const size = expected.reduce((a, b) => a * b, 1);
    if (dataset.sampleSize !== size) {
      throw new RangeError(
        `The model expects inputs of shape [${expected}] (${size} values) but the data has samples of ` +
          `shape [${dataset.inputShape}] (${dataset.sampleSize} values): build the model with a matching input`,
      );
    }
  }

  /**
   * One epoch's minibatches of `loader`. On the WebAssembly heap backends, a loader that can
   * (`epochInto`) writes the inputs straight into the memory of their tensor, given as `x`: kept
   * outside every scope, for the caller to dispose of; a run of consecutive samples of a dataset
   * held as a tensor (`resident`, evaluation) comes as a view of it. Elsewhere the batches are
   * copied later.
   */
  *#batches(
    loader: DataLoader,
    shape: readonly number[],
  ): Generator<{ data: Batch; x?: tf.Tensor }> {
    const heap = loader.epochInto ? heapInputs() : undefined;
    let x: tf.Tensor | undefined;
    let shared = false;
    /** Makes `t` the next batch's inputs (`isShared`: a view of a dataset's memory). */
    const take = (t: tf.Tensor, isShared: boolean) => {
      x?.dispose();
      x = tf.keep(t);
      shared = isShared;
      return heap!.view(x);
    };
    const into = (n: number) => take(heap!.tensor([n, ...shape]), false);
    const adopt = (view: tf.Tensor) => take(view, true);
    const batches = heap ? loader.epochInto!(this.rng, into, adopt) : undefined;
    if (!batches) {
      for (const data of loader.epoch(this.rng, true)) yield { data };
      return;
    }
    try {
      for (const data of batches) {
        const t = x!;
        x = undefined;
        yield { data: liveInputs(data, t, heap!, shared), x: t };
      }
    } finally {
      x?.dispose();
    }
  }

  #toTensors(batch: Batch, shape: readonly number[], x?: tf.Tensor): TensorBatch {
    const n = batch.n;
    if (x) {
      // The inputs are already in x (see #batches), which the caller disposes of.
      return {
        x,
        y: tf.tensor1d(batch.y.subarray(0, n), "int32"),
        t: tf.tensor1d(batch.t.subarray(0, n), "int32"),
        n,
        data: batch,
      };
    }
    const size = shape.reduce((a, b) => a * b, 1);
    // Loaders may hand over arrays longer than n (reused buffers): plugins see exact views.
    const data = batch.x.length === n * size && batch.y.length === n && batch.t.length === n
      ? batch
      : {
        x: batch.x.subarray(0, n * size),
        y: batch.y.subarray(0, n),
        t: batch.t.subarray(0, n),
        n,
      };
    return {
      x: tf.tensor(data.x, [n, ...shape], "float32"),
      y: tf.tensor1d(data.y, "int32"),
      t: tf.tensor1d(data.t, "int32"),
      n,
      data,
    };
  }

  #checkLabels(batch: TensorBatch, output: tf.Tensor): void {
    const width = output.shape[output.rank - 1]!;
    const y = batch.data.y;
    for (let i = 0; i < batch.n; i++) {
      if (y[i] < 0 || y[i] >= width) {
        throw new RangeError(
          `Label ${
            y[i]
          } is out of range for a model with ${width} outputs: build the model with at least ` +
            `${y[i] + 1} outputs, or with head: "incremental" so that it grows`,
        );
      }
    }
  }

  /**
   * The tape-free step ({@link planDirectStep}) when no plugin hooks into the tape and the
   * criterion is the default cross-entropy; undefined otherwise.
   */
  #planDirect(): DirectStep | undefined {
    if (this.criterion !== crossEntropy) return undefined;
    for (const h of SYNC_HOOKS) {
      for (const { plugin } of this.#hooks.get(h) ?? []) {
        // A beforeBackward that only adds output-level loss terms has a tape-free form.
        if (h !== "beforeBackward" || typeof plugin.outputLossTerms !== "function") {
          return undefined;
        }
      }
    }
    return planDirectStep(this.model);
  }

  /**
   * Forward, loss and gradients without the tape; false when a plugin could not give its loss
   * terms this time (nothing of the iteration is kept: the caller runs it on the tape).
   */
  #directStep(direct: DirectStep, batch: TensorBatch): boolean {
    const ctx = this.ctx;
    return tf.tidy(() => {
      const { output, trace } = direct.forward(batch.x);
      ctx.output = output;
      this.#checkLabels(batch, output);
      const [loss, dLogits] = direct.crossEntropy(output, batch.y);
      ctx.loss = loss;
      const terms: OutputLossTerm[] = [];
      for (const { plugin } of this.#hooks.get("beforeBackward") ?? []) {
        const more = plugin.outputLossTerms!(ctx);
        if (!more) {
          ctx.output = ctx.loss = undefined;
          ctx.lossTerms = new Map();
          return false;
        }
        for (const t of more) {
          if (t.outputGrad.shape.join() !== output.shape.join()) {
            throw new RangeError(
              `Plugin ${plugin.name ?? "(unnamed)"}'s loss term "${t.name}" has a gradient of ` +
                `shape [${t.outputGrad.shape}] for an output of shape [${output.shape}]`,
            );
          }
          ctx.addLoss(t.value, t.name);
          terms.push(t);
        }
      }
      // Summed as the tape's backward does: the last term's gradient first, the criterion's last.
      let dOutput = dLogits;
      if (terms.length > 0) {
        let acc = terms[terms.length - 1].outputGrad;
        for (let k = terms.length - 2; k >= 0; k--) acc = tf.add(acc, terms[k].outputGrad);
        dOutput = tf.add(acc, dLogits);
      }
      ctx.grads = direct.backward(dOutput, trace, ctx.params);
      for (const t of [ctx.output, ctx.loss, ...ctx.lossTerms.values(), ...ctx.grads.values()]) {
        this.#keepForIteration(t);
      }
      return true;
    });
  }

  #keepForIteration<T extends tf.Tensor | undefined>(t: T): T {
    if (t && !t.isDisposed) {
      tf.keep(t);
      this.#keep.push(t);
    }
    return t;
  }

  /** Forward, loss and gradients under tfjs' tape, with the hooks that run inside it. */
  #tapeStep(batch: TensorBatch): void {
    const ctx = this.ctx;
    const varList = [...ctx.params!.values()];
    const byEngineName = new Map([...ctx.params!].map(([k, v]) => [v.name, k]));
    const { value, grads } = tf.variableGrads(() => {
      this.#callSync("beforeForward");
      ctx.output = this.#keepForIteration(
        this.model.forward(batch.x, { taskLabels: batch.t, taskLabelsArray: batch.data.t }),
      );
      this.#callSync("afterForward");
      // A plugin may have replaced the output: keep the tensor that is there now.
      this.#keepForIteration(ctx.output);
      this.#checkLabels(batch, ctx.output!);
      ctx.loss = this.criterion(ctx.output!, batch.y);
      this.#callSync("beforeBackward");
      for (const t of ctx.lossTerms.values()) this.#keepForIteration(t);
      return ctx.loss!;
    }, varList);
    ctx.loss = value;
    ctx.grads = new Map(Object.entries(grads).map(([k, g]) => [byEngineName.get(k) ?? k, g]));
  }

  async #trainIteration(data: Batch, x?: tf.Tensor): Promise<number> {
    const ctx = this.ctx;
    tf.engine().startScope();
    if (x) this.#keep.push(x);
    try {
      ctx.batch = this.#toTensors(data, ctx.dataset!.inputShape, x);
      ctx.output = undefined;
      ctx.loss = undefined;
      ctx.grads = undefined;
      ctx.lossTerms = new Map();
      ctx.params = this.model.trainableParameters();
      await this.#call("beforeTrainingIteration");
      const batch = ctx.batch;
      const direct = this.#direct;
      // Without hooks inside the tape, the same kernels without recording it.
      if (!direct || !this.#directStep(direct, batch)) this.#tapeStep(batch);
      await this.#call("afterBackward");
      await this.#call("beforeUpdate");
      tf.tidy(() => this.optimizer.step(ctx.params, ctx.grads!));
      await this.#call("afterUpdate");
      tf.tidy(() => {
        this.#accumulate(ctx.loss!, ctx.output!, batch.y);
      });
      this.clock.trainIterations++;
      this.clock.epochIteration++;
      await this.#call("afterTrainingIteration");
      return batch.n;
    } finally {
      for (const t of this.#keep) t.dispose();
      this.#keep = [];
      ctx.batch = undefined;
      ctx.output = undefined;
      ctx.loss = undefined;
      ctx.grads = undefined;
      ctx.lossTerms = new Map();
      tf.engine().endScope();
    }
  }

  #resetAccumulators(): void {
    tf.tidy(() => {
      this.#lossSum.assign(tf.zeros([]));
      this.#correct.assign(tf.zeros([]));
    });
  }

  /** Adds a batch's summed loss and correct predictions to the epoch accumulators. */
  #accumulate(loss: tf.Tensor, output: tf.Tensor, y: tf.Tensor): void {
    const [lossSum, correct] = accumulateBatch(this.#lossSum, this.#correct, loss, output, y);
    this.#lossSum.assign(lossSum);
    this.#correct.assign(correct);
  }

  // ------------------------------------------------------------- evaluation ----

  /** Evaluates on an experience or a stream; returns accuracy and loss per experience. */
  async eval(experiences: Experience | Iterable<Experience>): Promise<EvalResult> {
    const list = toExperiences(experiences, "eval");
    const start = performance.now();
    const firstRow = this.rows.length;
    const ctx = this.ctx;
    const wasTraining = this.model.training;
    const savedPhase = ctx.phase;
    if (!this.#inTrain) this.#collectHooks();
    ctx.phase = "eval";
    ctx.experiences = list;
    this.model.eval();
    const trainExperience = this.clock.trainExperiences - 1;
    const out: ExperienceEval[] = [];
    try {
      await this.#call("beforeEval");
      for (const exp of list) out.push(await this.#evalExperience(exp, trainExperience));
      await this.#call("afterEval");
    } finally {
      this.model.train(wasTraining);
      ctx.phase = savedPhase;
    }
    const samples = out.reduce((a, e) => a + e.samples, 0);
    const accuracy = out.reduce((a, e) => a + e.accuracy * e.samples, 0) / samples;
    const loss = out.reduce((a, e) => a + e.loss * e.samples, 0) / samples;
    const stream = list[0].stream;
    for (const [metric, value] of [["accuracy", accuracy], ["loss", loss]] as const) {
      this.rows.push({
        metric,
        phase: "eval",
        stream,
        experience: null,
        task: null,
        epoch: null,
        iteration: this.clock.trainIterations,
        trainExperience,
        value,
      });
    }
    return {
      stream,
      trainExperience,
      experiences: out,
      accuracy,
      meanAccuracy: out.reduce((a, e) => a + e.accuracy, 0) / out.length,
      loss,
      samples,
      seconds: (performance.now() - start) / 1000,
      rows: this.rows.slice(firstRow),
    };
  }

  async #evalExperience(exp: Experience, trainExperience: number): Promise<ExperienceEval> {
    const ctx = this.ctx;
    ctx.experience = exp;
    await this.#call("beforeEvalDatasetAdaptation");
    this.evalDatasetAdaptation(ctx);
    await this.#call("afterEvalDatasetAdaptation");
    const dataset = ctx.dataset!;
    if (dataset.length === 0) {
      throw new RangeError(`Experience ${exp.id} of stream "${exp.stream}" is empty`);
    }
    this.#checkInputShape(dataset);
    ctx.dataLoader = this.makeEvalLoader(ctx);
    this.model.adapt(exp, false);
    this.model.eval();
    await this.#call("beforeEvalExp");
    this.#resetAccumulators();
    let samples = 0;
    for (const { data, x } of this.#batches(ctx.dataLoader, dataset.inputShape)) {
      tf.engine().startScope();
      try {
        ctx.batch = this.#toTensors(data, dataset.inputShape, x);
        await this.#call("beforeEvalIteration");
        await this.#call("beforeEvalForward");
        const batch = ctx.batch;
        ctx.output = this.model.forward(batch.x, {
          taskLabels: batch.t,
          taskLabelsArray: batch.data.t,
        });
        await this.#call("afterEvalForward");
        this.#checkLabels(batch, ctx.output);
        ctx.loss = this.criterion(ctx.output, batch.y);
        this.#accumulate(ctx.loss, ctx.output, batch.y);
        samples += batch.n;
        this.clock.evalIterations++;
        await this.#call("afterEvalIteration");
      } finally {
        ctx.batch = undefined;
        ctx.output = undefined;
        ctx.loss = undefined;
        tf.engine().endScope();
        x?.dispose();
      }
    }
    const lossSum = this.#lossSum.dataSync()[0];
    const correct = this.#correct.dataSync()[0];
    const result: ExperienceEval = {
      experience: exp.id,
      stream: exp.stream,
      taskLabel: exp.taskLabel,
      classes: exp.classes,
      accuracy: correct / samples,
      loss: lossSum / samples,
      samples,
    };
    for (const [metric, value] of [["accuracy", result.accuracy], ["loss", result.loss]] as const) {
      this.rows.push({
        metric,
        phase: "eval",
        stream: exp.stream,
        experience: exp.id,
        task: null,
        epoch: null,
        iteration: this.clock.trainIterations,
        trainExperience,
        value,
      });
    }
    await this.#call("afterEvalExp");
    return result;
  }

  // ---------------------------------------------------------------- results ----

  /** Accuracy matrix of the evaluations run so far on `stream`: row i = after training experience i. */
  accuracyMatrix(stream = "test"): number[][] {
    return accuracyMatrix(this.rows, stream);
  }

  // ------------------------------------------------------------- checkpoint ----

  /** Extra state of a subclass (override with {@link Strategy.loadExtraState}). */
  protected extraState(): Record<string, unknown> {
    return {};
  }

  /** Restores what {@link Strategy.extraState} returned. */
  protected loadExtraState(_extra: Record<string, unknown>, _opts: RestoreOptions): void {}

  #pluginKey(p: Plugin, i: number): string {
    return `${i}:${p.name ?? "plugin"}`;
  }

  /** Everything the run knows, as plain data (JSON-serializable). */
  checkpoint(): StrategyState {
    const plugins: Record<string, unknown> = {};
    this.plugins.forEach((p, i) => {
      if (typeof p.state === "function") plugins[this.#pluginKey(p, i)] = p.state();
    });
    return {
      version: 1,
      name: this.name,
      model: this.model.stateDict(),
      optimizer: this.optimizer.state(),
      rng: this.rng.state(),
      clock: { ...this.clock },
      rows: this.rows.map((r) => ({ ...r })),
      plugins,
      extra: this.extraState(),
    };
  }

  /** Restores a state from {@link Strategy.checkpoint} into this strategy (same model architecture). */
  async restore(state: StrategyState, opts: RestoreOptions = {}): Promise<void> {
    if (!state || state.version !== 1) {
      throw new TypeError(
        `Not a strategy checkpoint (version ${state?.version}): expected version 1`,
      );
    }
    this.model.loadStateDict(state.model);
    this.optimizer.loadState(state.optimizer);
    this.rng.setState(state.rng);
    Object.assign(this.clock, state.clock);
    this.rows.length = 0;
    this.rows.push(...state.rows.map((r) => ({ ...r })));
    for (const [i, p] of this.plugins.entries()) {
      const s = state.plugins[this.#pluginKey(p, i)];
      if (s !== undefined && typeof p.loadState === "function") await p.loadState(s, this.ctx);
    }
    this.loadExtraState(state.extra ?? {}, opts);
  }

  /** Frees the strategy's own tensors and its plugins' (not the model's). */
  dispose(): void {
    this.#lossSum.dispose();
    this.#correct.dispose();
    this.optimizer.dispose();
    for (const p of this.plugins) if (typeof p.dispose === "function") p.dispose();
  }
}

/** Options of {@link Strategy.restore}. */
export interface RestoreOptions {
  /** Experiences the checkpointed run trained on, for strategies that keep data (cumulative). */
  experiences?: Iterable<Experience>;
}

const HOOK_NAMES = new Set<string>([...TRAIN_HOOKS, ...EVAL_HOOKS]);

function isHook(name: string): name is HookName {
  return HOOK_NAMES.has(name);
}

function protoKeys(obj: object): string[] {
  const keys: string[] = [];
  for (
    let p = Object.getPrototypeOf(obj);
    p && p !== Object.prototype;
    p = Object.getPrototypeOf(p)
  ) {
    keys.push(...Object.getOwnPropertyNames(p));
  }
  return keys;
}
