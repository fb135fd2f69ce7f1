/**
 * The context handed to every hook: what the run is doing right now, typed, and the few ways a
 * plugin may change it (add a loss term, replace gradients, replace the data loader or dataset).
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { Experience } from "../data/experience.ts";
import type { Dataset } from "../data/dataset.ts";
import type { MetricRow, Phase } from "../data/rows.ts";
import type { Module } from "../nn/module.ts";
import type { Criterion } from "../nn/losses.ts";
import type { Optimizer } from "../optim/optimizers.ts";
import type { Rng } from "../random.ts";
import type { DataLoader } from "../data/loader.ts";
import type { StepPlan, StepState } from "../engine/step.ts";
import type { LossTerm } from "../nn/terms.ts";

export type { TensorBatch } from "../engine/batches.ts";

/** Counters of the run (Avalanche's `clock`). */
export interface Clock {
  /** Training experiences completed since the strategy was created. */
  trainExperiences: number;
  /** Epochs completed within the current experience. */
  epoch: number;
  /** Iterations completed within the current epoch. */
  epochIteration: number;
  /** Iterations completed within the current experience (Avalanche's `train_exp_iterations`). */
  experienceIteration: number;
  /** Training iterations since the strategy was created. */
  trainIterations: number;
  /** Eval iterations since the strategy was created. */
  evalIterations: number;
}

/** The settings of a strategy that plugins may read (and a few may change between calls). */
export interface StrategySettings {
  /** Name shown in results. */
  readonly name: string;
  /** Epochs per training experience. */
  readonly epochs: number;
  /** Training minibatch size. */
  readonly batchSize: number;
  /** Evaluation minibatch size. */
  readonly evalBatchSize: number;
  /** Whether training data is shuffled each epoch. */
  readonly shuffle: boolean;
  /** Whether an epoch's incomplete last training minibatch is dropped. */
  readonly dropLast: boolean;
  /** Periodic evaluation: -1 never, 0 after each experience, N after every N epochs or iterations. */
  readonly evalEvery: number;
  /** What `evalEvery` counts: epochs or iterations of the experience. */
  readonly pevalMode: "epoch" | "iteration";
}

/**
 * Everything a hook can see. Fields are set in the phases named in their docs; the minibatch,
 * output, loss, loss terms, parameters and gradients are those of {@link StepState}.
 */
export interface StrategyContext extends StepState {
  /** The running strategy's settings (batch sizes, epochs, shuffling). */
  readonly settings: StrategySettings;
  /** The model being trained or evaluated. */
  readonly model: Module;
  readonly optimizer: Optimizer;
  readonly criterion: Criterion;
  /** The run's seeded generator: every random choice of plugins should draw from it. */
  readonly rng: Rng;
  readonly clock: Clock;
  /** "train" inside `train()`, "eval" inside `eval()`. */
  phase: Phase;
  /** The experience being trained on or evaluated. */
  experience: Experience | undefined;
  /** The experiences given to the current `train()` or `eval()` call. */
  experiences: readonly Experience[];
  /**
   * The data of the current experience after dataset adaptation. Plugins may replace it in
   * `beforeTrainDatasetAdaptation`/`afterTrainDatasetAdaptation` (GDumb trains on its memory).
   */
  dataset: Dataset | undefined;
  /** Minibatch source for the current experience; plugins may replace it in `beforeTrainingExp`. */
  dataLoader: DataLoader | undefined;
  /** Epochs to train the current experience. */
  epochs: number;
  /** Rows of metrics produced in this run so far. */
  readonly rows: MetricRow[];
  /**
   * Adds a term to the loss, in `beforeBackward`: a scalar tensor (differentiated by the tape)
   * or a {@link LossTerm} (which also gives its gradients, so that a plugin declaring `tapeFree`
   * keeps the tape-free step).
   */
  addLoss(term: tf.Scalar | LossTerm, name?: string): void;
  /**
   * Asks the loop to stop training the current experience after this iteration (called in
   * `beforeTrainingEpoch`: before that epoch, which then does not run).
   */
  stopTraining(): void;
  /** True once {@link StrategyContext.stopTraining} was called for the current experience. */
  readonly stopRequested: boolean;
  /** The training step of the current epoch and why it was chosen (see `strategy.plan()`). */
  readonly step: StepPlan | undefined;
}
