/**
 * The strategy template: Avalanche's training and evaluation loops with every callback, on tfjs.
 *
 * The loops read as the lifecycle: `#trainIteration` is one training iteration with its hooks,
 * `#evalIteration` one evaluation iteration. How a minibatch becomes tensors, how forward,
 * loss and gradients are computed (on the tape or without it) and how tensors are scoped live
 * in the engine below (`lib/engine/`). Hooks inside the tape (beforeForward, afterForward,
 * beforeBackward) must be synchronous. Each iteration runs in its own tensor scope: tensors a
 * plugin creates there are freed at the end of the iteration unless it `tf.keep`s them.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "../nn/gradients.ts";
import type { Experience } from "../data/experience.ts";
import type { Dataset } from "../data/dataset.ts";
import { type BatchPlan, checkBatchSize, type DataLoader, DatasetLoader } from "../data/loader.ts";
import { accuracyMatrix, type MetricRow, metricRows } from "../data/rows.ts";
import { type Criterion, crossEntropy } from "../nn/losses.ts";
import { type Module, withValuesOnCpu } from "../nn/module.ts";
import { type Optimizer, sgd } from "../optim/optimizers.ts";
import { Rng } from "../random.ts";
import { BatchAssembler, type BatchTransforms, type TensorBatch } from "../engine/batches.ts";
import { IterationScope } from "../engine/scope.ts";
import {
  checkLabels,
  type DifferentiableRegion,
  type Keep,
  planStep,
  type Step,
  type StepPlan,
} from "../engine/step.ts";
import { RunningTotals } from "../engine/totals.ts";
import type { Clock, StrategyContext, StrategySettings } from "./context.ts";
import { checkStrategyState, type StrategyShape, type StrategyState } from "./state.ts";
import { withEngine } from "../engine/lock.ts";
import { Hooks } from "./hooks.ts";
import { checkStrategyOptions } from "./options.ts";
import { checkOptions, type OptionSpec } from "../options.ts";
import type { Plugin } from "./plugin.ts";

export type { StrategyState } from "./state.ts";

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
   * N after every N epochs (or iterations, see `pevalMode`). @default -1
   */
  evalEvery?: number;
  /**
   * What `evalEvery` counts (Avalanche's `peval_mode`): `"epoch"`, or `"iteration"` (every N
   * iterations of the experience, and once more after the experience unless its last
   * iteration was just evaluated). @default "epoch"
   */
  pevalMode?: "epoch" | "iteration";
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

/** Where a periodic checkpoint was taken (see {@link TrainOptions.checkpoint}). */
export interface CheckpointPoint {
  stream: string;
  experience: number;
  /** Epochs of the experience done. */
  epochsDone: number;
  /** True when the experience is not finished (the state has a `position`). */
  midExperience: boolean;
}

/** Options of {@link Strategy.train}. */
export interface TrainOptions {
  /** Streams evaluated according to `evalEvery`. */
  evalStreams?: (Experience | Iterable<Experience>)[];
  /**
   * Evaluate `evalStreams` once before training (after the `beforeTraining` hooks), as
   * Avalanche's periodic evaluation does before each `train` call: before the first experience,
   * it gives the baseline of `forwardTransfer` (rows with `trainExperience` −1). Avalanche does
   * it whenever `eval_every` > −1 (`do_initial`); ours only when asked, so existing runs keep
   * their rows. Skipped when resuming in the middle of an experience. @default false
   */
  evalBefore?: boolean;
  /**
   * A state to resume from, restored before training. One taken in the middle of an experience
   * (it has a `position`: the first experience given must be that one) is restored again once
   * the experience has started (dataset adaptation, loader, `beforeTrainingExp`), and training
   * goes on with the next epoch: the numbers are those of a run never interrupted.
   */
  resume?: StrategyState;
  /** Passed on to the restores of `resume` (the training stream, for `cumulative`). */
  restore?: RestoreOptions;
  /** Periodic checkpoints: `save` receives the run's state at the points asked for. */
  checkpoint?: {
    /** After every N epochs of an experience (its last epoch counts as the experience's end). */
    everyEpochs?: number;
    /** After every experience (after its periodic evaluation, if any). @default true */
    everyExperience?: boolean;
    /** Receives each state (plain data); awaited before training goes on. */
    save(state: StrategyState, at: CheckpointPoint): void | Promise<void>;
  };
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

const TRAIN_OPTIONS: OptionSpec<TrainOptions> = {
  evalStreams: "array",
  evalBefore: "boolean",
  resume: "object",
  restore: "object",
  checkpoint: "object",
};
const CHECKPOINT_OPTIONS: OptionSpec<NonNullable<TrainOptions["checkpoint"]>> = {
  everyEpochs: "integer",
  everyExperience: "boolean",
  save: "function",
};
const RESTORE_OPTIONS: OptionSpec<RestoreOptions> = { experiences: "any" };

/** Runs the plugins' hooks of a name, in order (what {@link Strategy.trainingUpdate} gets). */
export type HookRunner = Pick<Hooks, "call" | "callSync">;

/** The task routing a model's forward gets for a minibatch, and the run's generator. */
function routing(batch: TensorBatch, rng: Rng) {
  return { taskLabels: batch.t, taskLabelsArray: batch.data.t, rng };
}

/**
 * The base strategy: fine-tuning with the full callback lifecycle. Builders (`naive`,
 * `cumulative`, `jointTraining`, and the plugin strategies) return instances of it or of a
 * subclass that overrides dataset adaptation.
 */
export class Strategy implements StrategySettings {
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
    experienceIteration: 0,
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
  pevalMode: "epoch" | "iteration";
  /** The context handed to hooks. */
  readonly ctx: StrategyContext;

  readonly #hooks: Hooks;
  readonly #assembler = new BatchAssembler();
  readonly #totals = new RunningTotals();
  /** An evaluation's own totals (a periodic evaluation may run in the middle of an epoch). */
  readonly #evalTotals = new RunningTotals();
  readonly #trainScope = new IterationScope();
  readonly #evalScope = new IterationScope();
  /** The step of the current epoch (see {@link Strategy.plan}). */
  #step: Step | undefined;
  readonly #region: DifferentiableRegion;
  #stop = false;
  #inTrain = false;
  /** The public call running now, if any (a second one on the same strategy is refused). */
  #busy: "train" | "eval" | undefined;
  /** Why the model's weights are not usable any more, once training diverged. */
  #diverged: string | undefined;
  #disposed = false;

  constructor(opts: StrategyOptions) {
    checkStrategyOptions(new.target.name, opts);
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
    this.pevalMode = opts.pevalMode ?? "epoch";
    this.name = opts.name ?? "Naive";
    positiveInt("epochs", this.epochs);
    checkBatchSize("batchSize", this.batchSize);
    checkBatchSize("evalBatchSize", this.evalBatchSize);
    if (!Number.isInteger(this.evalEvery) || this.evalEvery < -1) {
      throw new RangeError(
        `evalEvery must be -1 (never), 0 (after each experience) or N ≥ 1 epochs, got ${this.evalEvery}`,
      );
    }
    if (this.pevalMode !== "epoch" && this.pevalMode !== "iteration") {
      throw new RangeError(
        `pevalMode must be "epoch" or "iteration", got ${JSON.stringify(this.pevalMode)}`,
      );
    }
    for (const [i, p] of this.plugins.entries()) {
      if (!p || typeof p !== "object") {
        throw new TypeError(`plugins[${i}] is not a plugin object: ${String(p)}`);
      }
    }
    this.#hooks = new Hooks(this.plugins);
    this.rng = new Rng(opts.seed ?? Math.floor(Math.random() * 2 ** 31));
    this.#region = {
      forwardAndLoss: (keep) => this.#forwardAndLoss(keep),
      beforeBackward: () => this.#hooks.callSync("beforeBackward", this.ctx),
    };
    this.ctx = this.#makeContext();
  }

  #makeContext(): StrategyContext {
    const stopped = () => this.#stop;
    const step = () => this.#step?.plan;
    const ctx: StrategyContext = {
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
      addLoss: (term, name) => {
        if (!this.#step || ctx.phase !== "train") {
          throw new Error("addLoss can only be called while training, in beforeBackward");
        }
        this.#step.addTerm(ctx, term, name ?? `term${ctx.lossTerms.size}`, this.#trainScope.keep);
      },
      stopTraining: () => {
        this.#stop = true;
      },
      get stopRequested() {
        return stopped();
      },
      get step() {
        return step();
      },
    };
    return ctx;
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

  /**
   * Which training step runs with the current model, criterion and plugins (tape or tape-free),
   * and why: a plugin that hooks into the tape without declaring `tapeFree`, a model or a
   * criterion the tape-free step does not know. Decided again at the start of every epoch.
   * `composite` lists the fused kernels the active backend lacks (all of them on "webgpu"),
   * whose composite forms run instead.
   */
  plan(): StepPlan {
    if (!this.#inTrain) this.#hooks.collect();
    // As training would see the model (dropout is active only in training mode).
    const wasTraining = this.model.training;
    this.model.train();
    try {
      return planStep(this.model, this.criterion, this.#hooks.declarations(this.ctx)).plan;
    } finally {
      this.model.train(wasTraining);
    }
  }

  // -------------------------------------------------------------- training ----

  /**
   * Trains on an experience or on each experience of a stream in turn. `evalStreams` are
   * evaluated according to `evalEvery`. Calls of several strategies run one after the other
   * (one training engine per process); a second call on this strategy while one runs is an
   * error.
   */
  train(
    experiences: Experience | Iterable<Experience>,
    opts: TrainOptions = {},
  ): Promise<TrainResult> {
    checkOptions(`${this.name}.train`, opts, TRAIN_OPTIONS);
    if (opts.checkpoint) {
      checkOptions(`${this.name}.train checkpoint`, opts.checkpoint, CHECKPOINT_OPTIONS);
    }
    return this.#exclusive("train", () => this.#train(experiences, opts));
  }

  /** Evaluates on an experience or a stream; returns accuracy and loss per experience. */
  eval(experiences: Experience | Iterable<Experience>): Promise<EvalResult> {
    return this.#exclusive("eval", () => this.#eval(experiences));
  }

  /** Runs a public call: refused when disposed, diverged or busy, else under the engine lock. */
  async #exclusive<R>(what: "train" | "eval", fn: () => Promise<R>): Promise<R> {
    this.#checkUsable();
    if (this.#busy) {
      throw new Error(
        `${this.name}.${what}() was called while its ${this.#busy}() is still running: await ` +
          `the first call before starting another (periodic evaluation during training: ` +
          `train(exp, { evalStreams }))`,
      );
    }
    if (this.#diverged) {
      throw new Error(
        `${this.name} cannot ${what}: ${this.#diverged}. Its weights are not usable: restore a ` +
          `checkpoint (strategy.restore(state)) or build a new model and strategy`,
      );
    }
    this.#busy = what;
    try {
      return await withEngine(fn);
    } finally {
      this.#busy = undefined;
    }
  }

  #checkUsable(): void {
    if (this.#disposed) {
      throw new Error(
        `This ${this.name} strategy was disposed (strategy.dispose() freed its tensors): build a ` +
          `new one`,
      );
    }
  }

  async #train(
    experiences: Experience | Iterable<Experience>,
    opts: TrainOptions,
  ): Promise<TrainResult> {
    const list = this.trainingExperiences(toExperiences(experiences, "train"));
    const resume = opts.resume;
    // Restored before the experience starts (its hooks see the plugins' restored state: replay
    // builds its loader from the restored memory) and, mid-experience, once more after.
    if (resume) await this.#restore(resume, opts.restore);
    if (resume?.position) {
      const { stream, experience } = resume.position;
      if (list[0].stream !== stream || list[0].id !== experience) {
        throw new RangeError(
          `This state was taken during experience ${experience} of stream "${stream}", but ` +
            `training resumes on experience ${list[0].id} of "${list[0].stream}": pass that ` +
            `experience first`,
        );
      }
    }
    const every = opts.checkpoint?.everyEpochs;
    if (every !== undefined) positiveInt("checkpoint.everyEpochs", every);
    const firstRow = this.rows.length;
    const start = performance.now();
    const result: TrainResult = { epochs: [], rows: [], samples: 0, seconds: 0 };
    this.#hooks.collect();
    const ctx = this.ctx;
    ctx.phase = "train";
    ctx.experiences = list;
    this.model.train();
    this.#inTrain = true;
    try {
      await this.#hooks.call("beforeTraining", ctx);
      if (opts.evalBefore && !resume?.position) await this.#periodicEval(opts.evalStreams ?? []);
      for (const [k, exp] of list.entries()) {
        const from = k === 0 && resume?.position ? resume : undefined;
        await this.#trainExperience(exp, result, opts, from);
      }
      ctx.phase = "train";
      await this.#hooks.call("afterTraining", ctx);
    } finally {
      this.#inTrain = false;
      this.#step = undefined;
    }
    result.rows = this.rows.slice(firstRow);
    result.seconds = (performance.now() - start) / 1000;
    return result;
  }

  async #trainExperience(
    exp: Experience,
    result: TrainResult,
    opts: TrainOptions,
    resume: StrategyState | undefined,
  ): Promise<void> {
    const evalStreams = opts.evalStreams ?? [];
    const ctx = this.ctx;
    ctx.experience = exp;
    ctx.epochs = this.epochs;
    this.#stop = false;
    this.clock.epoch = 0;
    this.clock.epochIteration = 0;
    this.clock.experienceIteration = 0;
    await this.#hooks.call("beforeTrainDatasetAdaptation", ctx);
    this.trainDatasetAdaptation(ctx);
    await this.#hooks.call("afterTrainDatasetAdaptation", ctx);
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
    await this.#hooks.call("beforeTrainingExp", ctx);
    // Resumed mid-experience: the experience has started again, and what its start changed
    // (SI's anchors, GDumb's fresh weights) goes back to the state taken within it.
    if (resume) await this.#restore(resume, opts.restore);
    const save = opts.checkpoint?.save, every = opts.checkpoint?.everyEpochs;
    const byEpoch = this.evalEvery > 0 && this.pevalMode === "epoch";
    for (let e = resume?.position?.epochsDone ?? 0; e < ctx.epochs && !this.#stop; e++) {
      const epoch = await this.#trainEpoch(exp, e, evalStreams);
      if (!epoch) break; // stopped in beforeTrainingEpoch
      result.epochs.push(epoch);
      result.samples += epoch.samples;
      if (byEpoch && (e + 1) % this.evalEvery === 0) await this.#periodicEval(evalStreams);
      if (save && every && (e + 1) % every === 0 && e + 1 < ctx.epochs && !this.#stop) {
        const position = { stream: exp.stream, experience: exp.id, epochsDone: e + 1 };
        const state = await this.checkpointAsync();
        await save({ ...state, position }, { ...position, midExperience: true });
      }
    }
    await this.#hooks.call("afterTrainingExp", ctx);
    this.clock.trainExperiences++;
    // By iteration, also at the experience's end (Avalanche's final periodic evaluation) unless
    // its last iteration was just evaluated.
    const atEnd = this.evalEvery === 0 || (this.pevalMode === "iteration" && this.evalEvery > 0 &&
      this.clock.experienceIteration % this.evalEvery !== 0);
    if (atEnd) await this.#periodicEval(evalStreams);
    if (save && (opts.checkpoint!.everyExperience ?? true)) {
      const at = { stream: exp.stream, experience: exp.id, epochsDone: this.clock.epoch };
      await save(await this.checkpointAsync(), { ...at, midExperience: false });
    }
  }

  /** One epoch; undefined when a plugin stopped training in `beforeTrainingEpoch` (Avalanche). */
  async #trainEpoch(
    exp: Experience,
    e: number,
    evalStreams: (Experience | Iterable<Experience>)[],
  ): Promise<EpochResult | undefined> {
    const ctx = this.ctx;
    const t0 = performance.now();
    this.#totals.reset();
    let samples = 0;
    await this.#hooks.call("beforeTrainingEpoch", ctx);
    if (this.#stop) return undefined;
    this.#step = planStep(this.model, this.criterion, this.#hooks.declarations(ctx));
    this.clock.epochIteration = 0;
    const everyIterations = this.pevalMode === "iteration" ? Math.max(this.evalEvery, 0) : 0;
    for (const plan of ctx.dataLoader!.epoch(this.rng)) {
      samples += await this.#trainIteration(plan);
      if (everyIterations && this.clock.experienceIteration % everyIterations === 0) {
        await this.#periodicEval(evalStreams);
      }
      if (this.#stop) break;
    }
    const { lossSum, correct } = await this.#totals.read();
    if (!Number.isFinite(lossSum)) {
      this.#diverged = `its training loss became ${lossSum} in epoch ${e} of experience ${exp.id}`;
      throw new RangeError(
        `Training loss became ${lossSum} in epoch ${e} of experience ${exp.id}: lower the learning rate ` +
          `(now ${this.optimizer.lr}) or check the inputs and added loss terms. The strategy refuses ` +
          `train and eval until it is restored from a checkpoint`,
      );
    }
    const epoch: EpochResult = {
      experience: exp.id,
      epoch: e,
      loss: samples ? lossSum / samples : NaN,
      accuracy: samples ? correct / samples : NaN,
      samples,
      seconds: (performance.now() - t0) / 1000,
    };
    this.rows.push(...metricRows({
      phase: "train",
      stream: exp.stream,
      experience: exp.id,
      task: null,
      epoch: e,
      iteration: this.clock.trainIterations,
      trainExperience: this.clock.trainExperiences,
    }, { loss: epoch.loss, accuracy: epoch.accuracy }));
    this.clock.epoch = e + 1;
    await this.#hooks.call("afterTrainingEpoch", ctx);
    return epoch;
  }

  /** One training iteration (Avalanche's `training_epoch` body); returns its number of samples. */
  #trainIteration(plan: BatchPlan): Promise<number> {
    const ctx = this.ctx, hooks = this.#hooks;
    return this.#trainScope.run(async () => {
      const dataset = ctx.dataset!;
      ctx.batch = this.#assembler.assemble(
        plan,
        dataset.inputShape,
        this.#augment(dataset, "train"),
      );
      ctx.params = this.model.trainableParameters();
      await hooks.call("beforeTrainingIteration", ctx);
      const batch = ctx.batch;
      await this.trainingUpdate(ctx, hooks);
      this.#totals.add(ctx.loss!, ctx.output!, batch.y);
      this.clock.trainIterations++;
      this.clock.epochIteration++;
      this.clock.experienceIteration++;
      await hooks.call("afterTrainingIteration", ctx);
      return batch.n;
    }).finally(() => this.#clearIteration());
  }

  /**
   * The update of one training iteration, between `beforeTrainingIteration` and the epoch's
   * loss and accuracy totals: gradient descent here (forward, loss and gradients, on the tape
   * or without it when nothing needs it, see {@link Strategy.plan}; then `afterBackward`,
   * `beforeUpdate`, the optimizer's step and `afterUpdate`). A strategy whose training is not
   * gradient descent (`StreamingLDA`) overrides it: it must set `ctx.output` and `ctx.loss` for
   * `ctx.batch`, and calls the hooks it keeps through `hooks` (`callSync` for the ones that are
   * synchronous in every strategy: beforeForward, afterForward, beforeBackward). Tensors made
   * here are freed with the iteration's scope.
   */
  protected async trainingUpdate(ctx: StrategyContext, hooks: HookRunner): Promise<void> {
    this.#step!.run(ctx, this.#region, this.#trainScope.keep);
    await hooks.call("afterBackward", ctx);
    await hooks.call("beforeUpdate", ctx);
    tf.tidy(() => this.optimizer.step(ctx.params, ctx.grads!));
    await hooks.call("afterUpdate", ctx);
  }

  /**
   * The differentiable region of a training iteration, with the hooks that run inside the tape:
   * the tape step records it (`keep` makes a tensor outlive the tape, for the iteration).
   */
  #forwardAndLoss(keep: Keep): tf.Scalar {
    const ctx = this.ctx, hooks = this.#hooks, batch = ctx.batch!;
    hooks.callSync("beforeForward", ctx);
    ctx.output = keep(this.model.forward(batch.x, routing(batch, this.rng)));
    hooks.callSync("afterForward", ctx);
    checkLabels(batch, keep(ctx.output!));
    ctx.loss = this.criterion(ctx.output!, batch.y, batch);
    hooks.callSync("beforeBackward", ctx);
    return ctx.loss!;
  }

  /**
   * The transforms of `dataset`'s group for `phase` (Avalanche's train/eval transform groups),
   * drawing from the run's generator; undefined when it has none. The experience's dataset's
   * group applies to the whole minibatch, replayed samples included, as in Avalanche, where the
   * buffer keeps its datasets' transforms.
   */
  #augment(dataset: Dataset | undefined, phase: "train" | "eval"): BatchTransforms | undefined {
    const transforms = dataset?.transforms?.[phase];
    return transforms && transforms.length > 0 ? { transforms, rng: this.rng } : undefined;
  }

  #clearIteration(): void {
    const ctx = this.ctx;
    ctx.batch = undefined;
    ctx.output = undefined;
    ctx.loss = undefined;
    ctx.grads = undefined;
    ctx.lossTerms = new Map();
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
    for (const s of streams) await this.#eval(s);
    ctx.phase = "train";
    ctx.experience = saved.experience;
    ctx.experiences = saved.experiences;
    ctx.dataset = saved.dataset;
    ctx.dataLoader = saved.loader;
    this.model.train();
    this.#hooks.collect();
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

  // ------------------------------------------------------------- evaluation ----

  async #eval(experiences: Experience | Iterable<Experience>): Promise<EvalResult> {
    const list = toExperiences(experiences, "eval");
    const start = performance.now();
    const firstRow = this.rows.length;
    const ctx = this.ctx;
    const wasTraining = this.model.training;
    const savedPhase = ctx.phase;
    if (!this.#inTrain) this.#hooks.collect();
    ctx.phase = "eval";
    ctx.experiences = list;
    this.model.eval();
    const trainExperience = this.clock.trainExperiences - 1;
    const out: ExperienceEval[] = [];
    try {
      await this.#hooks.call("beforeEval", ctx);
      for (const exp of list) out.push(await this.#evalExperience(exp, trainExperience));
      await this.#hooks.call("afterEval", ctx);
    } finally {
      this.model.train(wasTraining);
      ctx.phase = savedPhase;
    }
    const samples = out.reduce((a, e) => a + e.samples, 0);
    const accuracy = out.reduce((a, e) => a + e.accuracy * e.samples, 0) / samples;
    const loss = out.reduce((a, e) => a + e.loss * e.samples, 0) / samples;
    const stream = list[0].stream;
    this.rows.push(...metricRows({
      phase: "eval",
      stream,
      experience: null,
      task: null,
      epoch: null,
      iteration: this.clock.trainIterations,
      trainExperience,
    }, { accuracy, loss }));
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
    await this.#hooks.call("beforeEvalDatasetAdaptation", ctx);
    this.evalDatasetAdaptation(ctx);
    await this.#hooks.call("afterEvalDatasetAdaptation", ctx);
    const dataset = ctx.dataset!;
    if (dataset.length === 0) {
      throw new RangeError(`Experience ${exp.id} of stream "${exp.stream}" is empty`);
    }
    this.#checkInputShape(dataset);
    ctx.dataLoader = this.makeEvalLoader(ctx);
    this.model.adapt(exp, false);
    this.model.eval();
    await this.#hooks.call("beforeEvalExp", ctx);
    this.#evalTotals.reset();
    let samples = 0;
    for (const plan of ctx.dataLoader.epoch(this.rng)) {
      samples += await this.#evalIteration(plan, dataset.inputShape);
    }
    const { lossSum, correct } = await this.#evalTotals.read();
    if (!Number.isFinite(lossSum)) {
      throw new RangeError(
        `Evaluating experience ${exp.id} of stream "${exp.stream}" gave a ${lossSum} loss: the ` +
          `model's outputs are not finite (check the inputs for NaN or Infinity, and the weights)`,
      );
    }
    const result: ExperienceEval = {
      experience: exp.id,
      stream: exp.stream,
      taskLabel: exp.taskLabel,
      classes: exp.classes,
      accuracy: correct / samples,
      loss: lossSum / samples,
      samples,
    };
    this.rows.push(...metricRows({
      phase: "eval",
      stream: exp.stream,
      experience: exp.id,
      task: null,
      epoch: null,
      iteration: this.clock.trainIterations,
      trainExperience,
    }, { accuracy: result.accuracy, loss: result.loss }));
    await this.#hooks.call("afterEvalExp", ctx);
    return result;
  }

  /** One evaluation iteration; returns its number of samples. */
  #evalIteration(plan: BatchPlan, inputShape: readonly number[]): Promise<number> {
    const ctx = this.ctx, hooks = this.#hooks;
    return this.#evalScope.run(async () => {
      ctx.batch = this.#assembler.assemble(plan, inputShape, this.#augment(ctx.dataset, "eval"));
      await hooks.call("beforeEvalIteration", ctx);
      await hooks.call("beforeEvalForward", ctx);
      const batch = ctx.batch;
      ctx.output = this.model.forward(batch.x, routing(batch, this.rng));
      await hooks.call("afterEvalForward", ctx);
      checkLabels(batch, ctx.output);
      ctx.loss = this.criterion(ctx.output, batch.y, batch);
      this.#evalTotals.add(ctx.loss, ctx.output, batch.y);
      this.clock.evalIterations++;
      await hooks.call("afterEvalIteration", ctx);
      return batch.n;
    }).finally(() => this.#clearIteration());
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

  /**
   * {@link Strategy.checkpoint} with the tensors' values first read asynchronously: the same
   * state, on every backend. On "webgpu", whose GPU data Deno cannot read synchronously,
   * `checkpoint()` itself fails; train's `checkpoint` option, `restore` and the checkpoint files
   * (`lib/checkpoint/`) take this one.
   */
  checkpointAsync(): Promise<StrategyState> {
    return withValuesOnCpu(() => this.checkpoint());
  }

  /** Everything the run knows, as plain data (JSON-serializable). */
  checkpoint(): StrategyState {
    this.#checkUsable();
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

  /**
   * Restores a state from {@link Strategy.checkpoint} into this strategy (same name, same
   * stateful plugins in the same order, same model architecture). The whole state is checked
   * first and, should loading still fail, the strategy is put back as it was: a restore that
   * throws changes nothing. A restored strategy may train and evaluate again after diverging.
   */
  async restore(state: StrategyState, opts: RestoreOptions = {}): Promise<void> {
    checkOptions(`${this.name}.restore`, opts, RESTORE_OPTIONS);
    this.#checkUsable();
    if (this.#busy) {
      throw new Error(`${this.name}.restore() was called while its ${this.#busy}() is running`);
    }
    await this.#restore(state, opts);
  }

  async #restore(state: StrategyState, opts: RestoreOptions = {}): Promise<void> {
    const shape: StrategyShape = {
      name: this.name,
      pluginKeys: this.plugins.flatMap((p, i) =>
        typeof p.state === "function" ? [this.#pluginKey(p, i)] : []
      ),
      parameters: [...this.model.namedParameters().keys()],
    };
    checkStrategyState(state, shape);
    const backup = await this.checkpointAsync();
    try {
      await this.#load(state, opts);
    } catch (e) {
      // Put back everything the failed load may have changed; its own error is the one to see.
      await this.#load(backup, opts).catch(() => {});
      throw e;
    }
    this.#diverged = undefined;
  }

  async #load(state: StrategyState, opts: RestoreOptions): Promise<void> {
    this.model.loadStateDict(state.model);
    this.optimizer.loadState(state.optimizer);
    this.rng.setState(state.rng);
    this.clock.experienceIteration = 0; // absent from checkpoints made before it existed
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
    if (this.#disposed) return;
    this.#disposed = true;
    this.#totals.dispose();
    this.#evalTotals.dispose();
    this.optimizer.dispose();
    for (const p of this.plugins) if (typeof p.dispose === "function") p.dispose();
  }
}

/** Options of {@link Strategy.restore}. */
export interface RestoreOptions {
  /** Experiences the checkpointed run trained on, for strategies that keep data (cumulative). */
  experiences?: Iterable<Experience>;
}
