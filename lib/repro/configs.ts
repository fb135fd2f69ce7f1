/**
 * The published results we reproduce, as plain data: one {@link ReproConfig} per result, with the
 * benchmark, model, optimizer and strategy settings of ContinualAI's continual-learning-baselines
 * (run on Avalanche) and the accuracy they reach. `deno task repro` and the reproduction notebooks
 * both read this module, so the two never diverge.
 *
 * The metric is the one the baselines check: top-1 accuracy over the whole test stream (every
 * test sample of every experience) after training on the last experience.
 *
 * @module
 */
import type { ActivationName } from "../nn/layers.ts";
import type { HeadKind } from "../models/mlp.ts";

/** How much of a reproduction runs: the published setting, a few-minute run, or a smoke test. */
export type ReproMode = "full" | "quick" | "tiny";

/** Every mode, in order of size. */
export const REPRO_MODES: readonly ReproMode[] = ["full", "quick", "tiny"];

/** The strategies a reproduction (or a comparison) can build. */
export type StrategyKey =
  | "naive"
  | "cumulative"
  | "replay"
  | "gdumb"
  | "cwrStar"
  | "cope"
  | "lwf"
  | "ewc"
  | "si"
  | "gem"
  | "agem"
  | "mir"
  | "gss"
  | "derpp"
  | "icarl"
  | "mas"
  | "rwalk"
  | "lfl"
  | "generativeReplay";

/** A strategy hyperparameter: a number, a string, a flag or a list of numbers. */
export type ParamValue = number | string | boolean | readonly number[];

/** The benchmark of a run. */
export interface BenchmarkSpec {
  /**
   * Split MNIST or Split Fashion-MNIST (classes dealt to experiences), or Permuted MNIST (one
   * permutation each).
   */
  name: "splitMNIST" | "splitFashionMNIST" | "permutedMNIST";
  /** Number of experiences. */
  experiences: number;
  /**
   * Task-incremental: each experience gets its task label and its classes are numbered from 0
   * (for a multi-head model). @default false (class-incremental or domain-incremental)
   */
  taskIncremental?: boolean;
  /** Class order of Split MNIST. @default a seeded random order */
  fixedClassOrder?: readonly number[];
  /**
   * Online continual learning: each training experience is cut into sub-experiences of this
   * many samples ({@link splitOnline}), trained one after another. @default not online
   */
  onlineExperienceSize?: number;
  /**
   * Fraction of each training experience held out as a validation stream (never trained on),
   * by `holdOutValidation`: the last ⌊validationSize · n⌋ samples of the experience, in dataset
   * order, leave the training experience, as Avalanche's `benchmark_with_validation_stream(
   * benchmark, validationSize)` does without shuffle. @default 0 (no validation split)
   */
  validationSize?: number;
  /**
   * Normalize the [0, 1] pixels with MNIST's mean and std (torchvision's and Avalanche's
   * default); false keeps them in [0, 1] (Mammoth's `seq-mnist`, `ToTensor()` only).
   * @default true
   */
  normalize?: boolean;
}

/** An MLP (see `mlp`): hidden widths, outputs, head, activation, dropout. */
export interface ModelSpec {
  /** Widths of the hidden layers. */
  hidden: readonly number[];
  /** Output units (initial units of each head for a multi-head model; embedding size for CoPE). */
  outputs: number;
  /** @default "single" */
  head?: HeadKind;
  /** @default "relu" */
  activation?: ActivationName;
  /** @default 0 */
  dropout?: number;
}

/** The optimizer of a run. */
export interface OptimizerSpec {
  name: "sgd" | "adam";
  lr: number;
  /** SGD momentum. @default 0 */
  momentum?: number;
}

/** A run: benchmark, model, optimizer, strategy and its hyperparameters, as plain data. */
export interface ExperimentSpec {
  /** Identifier (file and folder names). */
  readonly name: string;
  /** The strategy to build. */
  readonly strategy: StrategyKey;
  /** The strategy's name in tables and figures. */
  readonly label: string;
  readonly benchmark: BenchmarkSpec;
  readonly model: ModelSpec;
  readonly optimizer: OptimizerSpec;
  /** Epochs per (sub-)experience. */
  readonly epochs: number;
  /** Training minibatch size. */
  readonly batchSize: number;
  /** Strategy hyperparameters (see `buildStrategy` for each strategy's keys). */
  readonly params: Readonly<Record<string, ParamValue>>;
  /**
   * Reset the optimizer's state (momentum, Adam's moments and step counts) before each
   * experience, as Avalanche up to 0.3 did (`reset_optimizer` in `make_optimizer`). @default false
   */
  readonly resetOptimizer?: boolean;
  /** Drop each epoch's incomplete last minibatch (Avalanche's `drop_last=True`). @default false */
  readonly dropLast?: boolean;
}

/** One published result and the setting that produced it. */
export interface ReproConfig extends ExperimentSpec {
  /** Identifier, used by `deno task repro <name>` and as the results folder name. */
  readonly name: string;
  /** One line: strategy, benchmark and scenario. */
  readonly title: string;
  /** The paper that introduced the strategy. */
  readonly paper: string;
  /** The baseline experiment whose setting and target we use. */
  readonly source: string;
  /** The benchmark, in words. */
  readonly scenario: string;
  /** Target: the final stream accuracy must be at least this. */
  readonly target: number;
  /**
   * Target of each experience: after the last experience, the accuracy on every test experience
   * must be at least this too (the baseline checks each experience). @default none
   */
  readonly experienceTarget?: number;
  /** Training samples kept per experience in the published setting. @default all */
  readonly trainPerExperience?: number;
  /** Seed of the run when none is given (the baseline's own). @default 0 */
  readonly seed?: number;
  /** Where our setting departs from the baseline, or facts worth knowing. */
  readonly notes: readonly string[];
}

/** What a {@link ReproMode} cuts: samples per experience, epochs, and experiences. */
export interface Scale {
  /** Training samples kept per experience (before any online split). @default all */
  trainPerExperience?: number;
  /** Test samples kept per experience. @default all */
  testPerExperience?: number;
  /** At most this many epochs per experience. @default as configured */
  maxEpochs?: number;
  /** At most this many experiences, for benchmarks whose length is free (Permuted MNIST). */
  maxExperiences?: number;
  /** At most this many samples per memory (replay, GDumb, CoPE, GEM/A-GEM patterns). */
  maxMemory?: number;
}

/**
 * The cuts of each mode: `full` is the published setting; `quick` (a few seconds to a minute per
 * result, for CI and for a first look) keeps 1000 training and 300 test samples per experience,
 * at most 2 epochs and 3 Permuted MNIST experiences; `tiny` (tests) keeps 100 and 50, 1 epoch, 2
 * experiences and memories of at most 200 samples.
 */
export const SCALES: Readonly<Record<ReproMode, Readonly<Scale>>> = {
  full: {},
  quick: { trainPerExperience: 1000, testPerExperience: 300, maxEpochs: 2, maxExperiences: 3 },
  tiny: {
    trainPerExperience: 100,
    testPerExperience: 50,
    maxEpochs: 1,
    maxExperiences: 2,
    maxMemory: 200,
  },
};

const BASELINES =
  "https://github.com/ContinualAI/continual-learning-baselines/blob/main/experiments";
const ADAM_RESET = "Adam's state is reset before each experience, as Avalanche did when the " +
  "baselines were run (its strategies rebuilt the optimizer state at every experience).";
const MIR_SETTING = "As the baseline: 5% of each training experience held out as validation " +
  "(benchmark_with_validation_stream), 1000 training samples kept per experience " +
  "(restrict_dataset_size), online experiences of 10 samples, SimpleMLP (one hidden layer of " +
  "400 units, dropout 0.5), SGD lr 0.05, minibatches of 10 with drop_last, memory of 500, 50 " +
  "candidates, 10 replayed. Here the memory is a reservoir (Avalanche: class-balanced, without " +
  "the classes of the last minibatch) and the 10 replayed are the most interfered of 50 " +
  "candidates (Avalanche 0.6 draws only batch_size_mem candidates, so it keeps them all).";
const MAMMOTH = "https://github.com/aimagelab/mammoth/blob/master";
const NATURAL_ORDER = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] as const;
/** Mammoth's `seq-mnist`: natural-order class pairs, pixels in [0, 1], MNISTMLP 784-100-100-10. */
const MAMMOTH_SEQ_MNIST = {
  scenario: "Split MNIST, 5 experiences of 2 classes in natural order, class-incremental, 1 epoch",
  benchmark: {
    name: "splitMNIST",
    experiences: 5,
    fixedClassOrder: NATURAL_ORDER,
    normalize: false,
  },
  model: { hidden: [100, 100], outputs: 10 },
} as const;

/**
 * The reproductions, in the order of the results table. Settings and targets: ContinualAI's
 * continual-learning-baselines.
 */
export const REPRODUCTIONS: readonly ReproConfig[] = [
  {
    name: "si-split-mnist",
    title: "Synaptic Intelligence on Split MNIST (task-incremental, multi-head)",
    strategy: "si",
    label: "SI",
    paper: "Zenke, Poole & Ganguli, Continual Learning Through Synaptic Intelligence, ICML 2017",
    source: `${BASELINES}/split_mnist/synaptic_intelligence.py`,
    scenario: "Split MNIST, 5 experiences, task-incremental (one head per task)",
    benchmark: {
      name: "splitMNIST",
      experiences: 5,
      taskIncremental: true,
      fixedClassOrder: NATURAL_ORDER,
    },
    model: { hidden: [256, 256], outputs: 2, head: "multi" },
    optimizer: { name: "adam", lr: 1e-3 },
    epochs: 10,
    batchSize: 64,
    params: { lambda: 1, eps: 0.1 },
    resetOptimizer: true,
    target: 0.97,
    notes: [
      ADAM_RESET,
      "Checked against Avalanche's SynapticIntelligencePlugin " +
      "(avalanche/training/plugins/synaptic_intelligence.py): weights saved in " +
      "before_training_iteration, gradient (of the whole loss) and new weights read in " +
      "after_training_iteration, importance −Σ g·Δθ / (Δθ_exp² + eps) clamped at 0.001 " +
      "(update_ewc_data(…, 0.001, …, c=1, eps)), penalty λ/2 Σ Ω (θ − θ*)² over every parameter, " +
      "heads included (the baseline excludes none): what runs here. No difference found.",
      "The baseline's si_eps was 0.001 (with seed 0) in an earlier version of " +
      "experiments/split_mnist/synaptic_intelligence.py; the current one has 0.1 (seed None), " +
      "used here.",
      "The result moves with the seed: 0.963 (seed 0) and 0.994 (seed 1) before the fused " +
      "training kernels; with them, seeds 0, 1, 2: 0.990, 0.982, 0.989; seed 0 gives 0.985 " +
      "since the penalty is one fused kernel (float rounding alone). The baselines' own " +
      "check accepts a result up to 0.03 below the target (tests/synaptic_intelligence/" +
      "experiment.py: delta=0.03).",
    ],
  },
  {
    name: "gdumb-split-mnist",
    title: "GDumb on Split MNIST (class-incremental)",
    strategy: "gdumb",
    label: "GDumb",
    paper:
      "Prabhu, Torr & Dokania, GDumb: A Simple Approach that Questions Our Progress in Continual Learning, ECCV 2020",
    source: `${BASELINES}/split_mnist/gdumb.py`,
    scenario: "Split MNIST, 5 experiences, class-incremental",
    benchmark: { name: "splitMNIST", experiences: 5 },
    model: { hidden: [400, 400], outputs: 10 },
    optimizer: { name: "sgd", lr: 0.1 },
    epochs: 10,
    batchSize: 16,
    params: { memSize: 4400 },
    target: 0.97,
    notes: [
      "The model is retrained from its initial weights on the memory at every experience.",
      "Calibration: the same MLP in PyTorch 1.13, trained on a class-balanced 4400-sample MNIST " +
      "subset (10 epochs, SGD 0.1, minibatches of 16), reaches 0.951-0.953 test accuracy " +
      "(3 seeds); GDumb's final model is such a model.",
      "Checked against Avalanche's GDumbPlugin (avalanche/training/plugins/gdumb.py): it restores " +
      "a deep copy of the initial model in before_train_dataset_adaptation and trains on a " +
      "ClassBalancedBuffer(mem_size, adaptive_size=True), 440 samples per class after the last " +
      "experience, which is what runs here; no difference found, so the gap to 0.97 is not ours.",
      "The baselines' own check accepts a result up to 0.03 below the target " +
      "(tests/gdumb/experiment.py: assertAlmostEqual(target, acc, delta=0.03), i.e. ≥ 0.94). " +
      "Seeds 0, 1, 2 here: 0.952, 0.947, 0.948.",
    ],
  },
  {
    name: "lwf-split-mnist",
    title: "Learning without Forgetting on Split MNIST (class-incremental)",
    strategy: "lwf",
    label: "LwF",
    paper: "Li & Hoiem, Learning without Forgetting, ECCV 2016 / TPAMI 2017",
    source: `${BASELINES}/split_mnist/lwf.py`,
    scenario: "Split MNIST, 5 experiences, class-incremental",
    benchmark: { name: "splitMNIST", experiences: 5 },
    model: { hidden: [200], outputs: 10, activation: "tanh" },
    optimizer: { name: "sgd", lr: 1e-3 },
    epochs: 21,
    batchSize: 128,
    params: { alpha: [0, 0.5, 1.33, 2.25, 3.2], temperature: 2 },
    target: 0.23,
    notes: [
      "α grows with the experiences (one value per experience); a class-incremental " +
      "single-head LwF stays far below replay methods, hence the low target.",
    ],
  },
  {
    name: "cope-split-mnist",
    title: "CoPE on online Split MNIST (class-incremental, experiences of 10 samples)",
    strategy: "cope",
    label: "CoPE",
    paper:
      "De Lange & Tuytelaars, Continual Prototype Evolution: Learning Online from Non-Stationary Data Streams, ICCV 2021",
    source: `${BASELINES}/split_mnist/cope.py`,
    scenario:
      "Split MNIST, 5 experiences cut into online experiences of 10 samples, class-incremental",
    benchmark: {
      name: "splitMNIST",
      experiences: 5,
      fixedClassOrder: NATURAL_ORDER,
      onlineExperienceSize: 10,
    },
    model: { hidden: [400, 400], outputs: 32 },
    optimizer: { name: "sgd", lr: 0.01 },
    epochs: 1,
    batchSize: 10,
    params: {
      memSize: 2000,
      nClasses: 10,
      pSize: 32,
      alpha: 0.99,
      T: 0.1,
      maxIterPerBatch: 1,
      initAdaptive: false,
    },
    target: 0.93,
    notes: [
      "Avalanche's CoPEPlugin settings: one iteration per minibatch (max_it_cnt = 1) and the " +
      "10 prototypes created at the start (initAdaptive false).",
    ],
  },
  {
    name: "online-replay-split-mnist",
    title: "Online Replay on Split MNIST (class-incremental, experiences of 10 samples)",
    strategy: "replay",
    label: "Replay (online)",
    paper: "Chaudhry et al., On Tiny Episodic Memories in Continual Learning, 2019",
    source: `${BASELINES}/split_mnist/online_replay.py`,
    scenario:
      "Split MNIST, 5 experiences cut into online experiences of 10 samples, class-incremental",
    benchmark: {
      name: "splitMNIST",
      experiences: 5,
      fixedClassOrder: NATURAL_ORDER,
      onlineExperienceSize: 10,
      validationSize: 0.05,
    },
    model: { hidden: [512], outputs: 10, dropout: 0.5 },
    optimizer: { name: "sgd", lr: 0.1 },
    epochs: 1,
    batchSize: 10,
    dropLast: true,
    params: { memSize: 1000, storagePolicy: "classBalanced", batchSizeMem: 10 },
    target: 0.92,
    notes: [
      "The memory is class-balanced (adaptive) and updated after every online experience; each " +
      "minibatch of 10 new samples gets 10 memory samples.",
      "The model is Avalanche's SimpleMLP: one hidden layer of 512 units with dropout 0.5.",
      "As the baseline (benchmark_with_validation_stream(scenario, 0.05), default split without " +
      "shuffle), the last 5% of each training experience is held out as a validation stream " +
      "and never trained on.",
      "As the baseline (drop_last=True), the last online experience of each experience (fewer " +
      "than 10 samples) trains no minibatch; it still enters the memory.",
      "With the first 5% held out instead of the last (this library's split before it followed " +
      "Avalanche's), seeds 0, 1, 2 gave 0.911, 0.924, 0.910; `deno task repro " +
      "online-replay-split-mnist --seeds 0,1,2` gives the spread of this setting. The baselines' " +
      "own check accepts a result up to 0.03 below the target (delta=0.03 in their tests).",
    ],
  },
  {
    name: "ewc-permuted-mnist",
    title: "EWC on Permuted MNIST (domain-incremental)",
    strategy: "ewc",
    label: "EWC",
    paper: "Kirkpatrick et al., Overcoming catastrophic forgetting in neural networks, PNAS 2017",
    source: `${BASELINES}/permuted_mnist/ewc.py`,
    scenario: "Permuted MNIST, 10 experiences, domain-incremental",
    benchmark: { name: "permutedMNIST", experiences: 10 },
    model: { hidden: [512], outputs: 10 },
    optimizer: { name: "sgd", lr: 1e-3 },
    epochs: 10,
    batchSize: 256,
    params: { lambda: 1, mode: "separate" },
    target: 0.83,
    notes: [],
  },
  {
    name: "si-permuted-mnist",
    title: "Synaptic Intelligence on Permuted MNIST (domain-incremental)",
    strategy: "si",
    label: "SI",
    paper: "Zenke, Poole & Ganguli, Continual Learning Through Synaptic Intelligence, ICML 2017",
    source: `${BASELINES}/permuted_mnist/synaptic_intelligence.py`,
    scenario: "Permuted MNIST, 10 experiences, domain-incremental",
    benchmark: { name: "permutedMNIST", experiences: 10 },
    model: { hidden: [1000], outputs: 10 },
    optimizer: { name: "adam", lr: 1e-3 },
    epochs: 10,
    batchSize: 256,
    params: { lambda: 10, eps: 0.1 },
    resetOptimizer: true,
    target: 0.83,
    notes: [ADAM_RESET],
  },
  {
    name: "gem-permuted-mnist",
    title: "GEM on Permuted MNIST (domain-incremental, one pass)",
    strategy: "gem",
    label: "GEM",
    paper: "Lopez-Paz & Ranzato, Gradient Episodic Memory for Continual Learning, NeurIPS 2017",
    source: `${BASELINES}/permuted_mnist/gem.py`,
    scenario:
      "Permuted MNIST, 5 experiences, domain-incremental, a single pass in minibatches of 10",
    benchmark: { name: "permutedMNIST", experiences: 5 },
    model: { hidden: [100, 100], outputs: 10 },
    optimizer: { name: "sgd", lr: 0.1 },
    epochs: 1,
    batchSize: 10,
    params: { patternsPerExperience: 1000, memoryStrength: 0.5 },
    target: 0.93,
    notes: [],
  },
  {
    name: "agem-permuted-mnist",
    title: "A-GEM on Permuted MNIST (domain-incremental, one pass)",
    strategy: "agem",
    label: "A-GEM",
    paper:
      "Chaudhry, Ranzato, Rohrbach & Elhoseiny, Efficient Lifelong Learning with A-GEM, ICLR 2019",
    source: `${BASELINES}/permuted_mnist/agem.py`,
    scenario:
      "Permuted MNIST, 17 experiences, domain-incremental, a single pass in minibatches of 10",
    benchmark: { name: "permutedMNIST", experiences: 17 },
    model: { hidden: [256, 256], outputs: 10 },
    optimizer: { name: "sgd", lr: 0.1 },
    epochs: 1,
    batchSize: 10,
    params: { patternsPerExperience: 250, sampleSize: 256 },
    target: 0.81,
    notes: [
      "The reference batch is drawn as Avalanche's AGEMPlugin does: one buffer per experience " +
      "behind a GroupBalancedInfiniteDataLoader of batch size sample_size // len(buffers), i.e. " +
      "⌊256 / k⌋ samples of each of the k past experiences, drawn with replacement " +
      "(avalanche/training/plugins/agem.py, update_memory and sample_from_memory).",
      "Seed 0 with this draw: 0.7837 before the fused training kernels, 0.8058 with them, " +
      "0.8036 once the in-place SGD update moved to sscal + saxpy, 0.8123 once sums of whole " +
      "tensors (the gradients' dot products) added up columns first (float rounding alone " +
      "moves it); the uniform draw without replacement of Avalanche's first AGEMPlugin (sampling: " +
      '"uniform") gave 0.7996 before the fused kernels. The baselines\' own check accepts a result up ' +
      "to 0.03 below the target (tests/agem/experiment.py: delta=0.03, i.e. ≥ 0.78).",
    ],
  },
  {
    name: "gss-split-mnist",
    title: "GSS-greedy on Split MNIST (class-incremental, 1000 samples per experience)",
    strategy: "gss",
    label: "GSS-greedy",
    paper:
      "Aljundi, Lin, Goujaud & Bengio, Gradient based sample selection for online continual learning, NeurIPS 2019",
    source: `${BASELINES}/split_mnist/gss.py`,
    scenario: "Split MNIST, 5 experiences of 1000 random training samples, class-incremental",
    benchmark: { name: "splitMNIST", experiences: 5 },
    model: { hidden: [100, 100], outputs: 10 },
    optimizer: { name: "sgd", lr: 0.05 },
    epochs: 3,
    batchSize: 10,
    params: { memSize: 300, memStrength: 10, inputSize: [1, 28, 28] },
    trainPerExperience: 1000,
    seed: 1,
    target: 0.78,
    notes: [
      "As the baseline: SplitMNIST(n_experiences=5, seed=1) with each experience cut to 1000 " +
      "random samples (data_incremental_benchmark with its shrinking split strategy), MLP_gss " +
      "784-100-100-10 with ReLU, SGD lr 0.05, minibatches of 10, 3 epochs, memory of 300, " +
      "mem_strength 10. The baseline's docstring expects 0.82; its check uses 0.78.",
      "Only the current samples of a minibatch are offered to the memory (Avalanche's " +
      "after_forward scores the whole minibatch, replayed samples included); see " +
      "GSS_greedyPlugin for what else was checked.",
    ],
  },
  {
    name: "generative-replay-split-mnist",
    title: "Generative Replay on Split MNIST (class-incremental)",
    strategy: "generativeReplay",
    label: "GenerativeReplay",
    paper: "Shin, Lee, Kim & Kim, Continual Learning with Deep Generative Replay, NeurIPS 2017",
    source: `${BASELINES}/split_mnist/generative_replay.py`,
    scenario: "Split MNIST, 5 experiences, class-incremental",
    benchmark: { name: "splitMNIST", experiences: 5 },
    model: { hidden: [400, 400], outputs: 10 },
    optimizer: { name: "adam", lr: 1e-3 },
    epochs: 10,
    batchSize: 16,
    params: { replaySize: 100 },
    target: 0.75,
    notes: [
      "As the baseline: SplitMNIST(5, return_task_id=False) with a seeded class order, MLP " +
      "784-400-400-10 with ReLU and no dropout, Adam lr 0.001, minibatches of 16, 10 epochs, " +
      "replay_size 100 (each minibatch of 16 gets 100 generated samples labelled by the " +
      "previous solver's argmax); the generator is GenerativeReplay's default: MlpVAE((1, 28, " +
      "28), nhid=2) trained by VAETraining with Adam lr 0.01, weight decay 1e-4, the same " +
      "minibatch size and epochs, and its own GenerativeReplayPlugin (replay_size 100, its " +
      "old copy's samples with mock labels).",
      "Adam's state is kept across experiences (Avalanche 0.6's strategies update the " +
      "optimizer's parameter groups, they do not reset its state).",
      "The VAE's reparameterization uses exp(logvar / 2) as the standard deviation (Avalanche's " +
      "MlpVAE.sampling uses 0.5 · exp(logvar)); see GenerativeReplayPlugin and MlpVAE for what " +
      "else was checked.",
      "Seed 0 reaches 0.683 (after each experience 0.197, 0.353, 0.522, 0.651, 0.683): the old " +
      "classes are kept at 0.53–0.74 where Naive drops them to 0, short of the target. The full " +
      "run took 62 minutes on a loaded 2-core machine, most of it the VAE's training (116 " +
      "samples a minibatch, batch normalization on the tape); quick mode takes 20 s.",
    ],
  },
  {
    name: "mir-split-mnist",
    title: "MIR on online Split MNIST (class-incremental, experiences of 10 samples)",
    strategy: "mir",
    label: "MIR",
    paper:
      "Aljundi et al., Online Continual Learning with Maximally Interfered Retrieval, NeurIPS 2019",
    source: `${BASELINES}/split_mnist/mir.py`,
    scenario:
      "Split MNIST, 5 experiences of 1000 samples cut into online experiences of 10, class-incremental",
    benchmark: {
      name: "splitMNIST",
      experiences: 5,
      fixedClassOrder: NATURAL_ORDER,
      onlineExperienceSize: 10,
      validationSize: 0.05,
    },
    model: { hidden: [400], outputs: 10, dropout: 0.5 },
    optimizer: { name: "sgd", lr: 0.05 },
    epochs: 1,
    batchSize: 10,
    dropLast: true,
    params: { memSize: 500, subsample: 50, batchSizeMem: 10 },
    trainPerExperience: 1000,
    target: 0.87,
    notes: [MIR_SETTING],
  },
  {
    name: "mir-permuted-mnist",
    title: "MIR on online Permuted MNIST (domain-incremental, experiences of 10 samples)",
    strategy: "mir",
    label: "MIR",
    paper:
      "Aljundi et al., Online Continual Learning with Maximally Interfered Retrieval, NeurIPS 2019",
    source: `${BASELINES}/permuted_mnist/mir.py`,
    scenario:
      "Permuted MNIST, 10 experiences of 1000 samples cut into online experiences of 10, domain-incremental",
    benchmark: {
      name: "permutedMNIST",
      experiences: 10,
      onlineExperienceSize: 10,
      validationSize: 0.05,
    },
    model: { hidden: [400], outputs: 10, dropout: 0.5 },
    optimizer: { name: "sgd", lr: 0.05 },
    epochs: 1,
    batchSize: 10,
    dropLast: true,
    params: { memSize: 500, subsample: 50, batchSizeMem: 10 },
    trainPerExperience: 1000,
    target: 0.8,
    notes: [MIR_SETTING],
  },
  {
    name: "derpp-split-mnist",
    title: "DER++ on Split MNIST (class-incremental, Mammoth's seq-mnist, buffer of 500)",
    strategy: "derpp",
    label: "DER++",
    paper: "Buzzega, Boschini, Porrello, Abati & Calderara, Dark Experience for General " +
      "Continual Learning: a Strong, Simple Baseline, NeurIPS 2020",
    source: `${MAMMOTH}/utils/best_args.py`,
    ...MAMMOTH_SEQ_MNIST,
    optimizer: { name: "sgd", lr: 0.03 },
    epochs: 1,
    batchSize: 10,
    params: { memSize: 500, batchSizeMem: 10, alpha: 1, beta: 0.5 },
    target: 0.88,
    notes: [
      "Continual-learning-baselines has no DER++ experiment, so the setting is the one the " +
      "paper's authors published for it: Mammoth's best_args for seq-mnist, derpp, buffer 500 " +
      "(lr 0.03, batch_size 10, minibatch_size 10, alpha 1.0, beta 0.5, n_epochs 1), with " +
      "Mammoth's seq-mnist: the classes in pairs (0, 1), (2, 3), ... in natural order, pixels " +
      "in [0, 1] (ToTensor, no normalization), MNISTMLP 784-100-100-10 with ReLU, a single " +
      "head of 10 units, SGD without momentum, a reservoir buffer filled during training.",
      "Target: the paper reports 91.00 ± 1.49 (mean ± std over 10 runs) for DER++ on S-MNIST, " +
      "class-IL, buffer 500 (Buzzega et al. 2020, Table 2); the target is the mean less two " +
      "standard deviations, 0.88, so that a correct implementation passes with any seed.",
      "Mammoth reports the mean of the five tasks' accuracies; we report the accuracy over " +
      "the whole test stream (the five test sets hold 1,874 to 2,115 images, so the two " +
      "differ by well under a point). Mammoth's MNISTMLP initializes its layers with Xavier " +
      "uniform weights and zero biases; ours with PyTorch's Linear default.",
    ],
  },
  {
    name: "icarl-split-mnist",
    title: "iCaRL on Split MNIST (class-incremental, Mammoth's seq-mnist, memory of 500)",
    strategy: "icarl",
    label: "iCaRL",
    paper: "Rebuffi, Kolesnikov, Sperl & Lampert, iCaRL: Incremental Classifier and " +
      "Representation Learning, CVPR 2017",
    source: `${MAMMOTH}/utils/best_args.py`,
    ...MAMMOTH_SEQ_MNIST,
    optimizer: { name: "sgd", lr: 0.1 },
    epochs: 1,
    batchSize: 10,
    params: { memSize: 500 },
    target: 0.68,
    notes: [
      "Neither continual-learning-baselines nor the iCaRL paper has an MNIST experiment " +
      "(Avalanche's iCaRL baseline is Split CIFAR-100 with a ResNet-32), so the setting is " +
      "the published one on Split MNIST: Mammoth's best_args for seq-mnist, icarl, buffer 500 " +
      "(lr 0.1, batch_size 10, optim_wd 0, n_epochs 1) on Mammoth's seq-mnist (classes in " +
      "natural-order pairs, pixels in [0, 1], MNISTMLP 784-100-100-10), a memory of 500 " +
      "exemplars in all, split equally among the classes seen and chosen by herding, the " +
      "exemplars added to each new experience's training data, and classification by the " +
      "nearest mean of exemplars.",
      "Target: Buzzega et al. 2020 (Table 2) report 70.10 ± 1.08 for iCaRL on S-MNIST, " +
      "class-IL, buffer 500, in Mammoth; the target is the mean less two standard " +
      "deviations, 0.68. iCaRL is weak here because one epoch at batch 10 with a sigmoid " +
      "loss trains the 100-unit features little before the class means are taken.",
      "The loss follows Avalanche's ICaRLLossPlugin: sigmoid binary cross-entropy over every " +
      "unit (Mammoth's uses only the units of the classes seen so far), and the previous " +
      "model's sigmoid outputs as targets for the old classes.",
    ],
  },
  {
    name: "rwalk-split-mnist",
    title: "RWalk on Split MNIST (task-incremental, multi-head)",
    strategy: "rwalk",
    label: "RWalk",
    paper:
      "Chaudhry, Dokania, Ajanthan & Torr, Riemannian Walk for Incremental Learning: Understanding Forgetting and Intransigence, ECCV 2018",
    source: `${BASELINES}/split_mnist/rwalk.py`,
    scenario: "Split MNIST, 5 experiences, task-incremental (one head per task)",
    benchmark: {
      name: "splitMNIST",
      experiences: 5,
      taskIncremental: true,
      fixedClassOrder: NATURAL_ORDER,
    },
    model: { hidden: [256, 256], outputs: 2, head: "multi" },
    optimizer: { name: "adam", lr: 1e-3 },
    epochs: 10,
    batchSize: 64,
    params: { ewcLambda: 0.1, ewcAlpha: 0.9, deltaT: 10 },
    resetOptimizer: true,
    target: 0.99,
    notes: [
      "As the baseline: SplitMNIST(5, return_task_id=True, fixed_class_order=0..9), " +
      "MultiHeadMLP (2 hidden layers of 256, ReLU), Adam lr 0.001, minibatches of 64, 10 " +
      "epochs, RWalkPlugin(ewc_lambda=0.1, ewc_alpha=0.9, delta_t=10).",
      ADAM_RESET,
      "Target: the baselines' README table (0.99); one version of their " +
      "tests/target_results.csv has 0.92, and their check accepts a result up to 0.01 below " +
      "(tests/rwalk/experiment.py: delta=0.01).",
      "See RWalkPlugin for what was checked against Avalanche's rwalk.py and the paper.",
      "Seeds 0, 1, 2: 0.985, 0.996, 0.995 (seed 0 loses the second experience's accuracy in the " +
      "last one: 0.989 → 0.944). Seed 0 without the reset of Adam's state (Avalanche 0.6's " +
      "default, update_optimizer(reset_state=False)): 0.995. All within the baselines' delta.",
    ],
  },
  {
    name: "lfl-permuted-mnist",
    title: "LFL on Permuted MNIST (domain-incremental)",
    strategy: "lfl",
    label: "LFL",
    paper:
      "Jung, Ju, Jung & Kim, Less-forgetting Learning in Deep Neural Networks, arXiv:1607.00122, 2016",
    source: `${BASELINES}/permuted_mnist/lfl.py`,
    scenario: "Permuted MNIST, 4 experiences, domain-incremental",
    benchmark: { name: "permutedMNIST", experiences: 4 },
    model: { hidden: [256], outputs: 10 },
    optimizer: { name: "sgd", lr: 0.01 },
    epochs: 3,
    batchSize: 128,
    params: { lambdaE: 0.0001 },
    target: 0.88,
    experienceTarget: 0.88,
    notes: [
      "As the baseline: PermutedMNIST(4), MLP (one hidden layer of 256, ReLU, no dropout), " +
      "SGD lr 0.01 without momentum, minibatches of 128, 3 epochs, lambda_e 0.0001 (a list of " +
      "one value: the same for every experience), seed 0.",
      "The baseline's check is per experience: after the last experience, the accuracy on " +
      "each test experience must reach 0.88, up to 0.03 below (tests/lfl/experiment.py); here " +
      "the stream accuracy and every experience must reach 0.88.",
      "From the second experience on, the head is frozen (Avalanche's LFLPlugin sets " +
      "requires_grad = False on the last linear layer); see LFLPlugin.",
      "Seeds 0, 1, 2: stream accuracy 0.899, 0.900, 0.898; the lowest experience (always the " +
      "first, trained before the head was frozen and then drifting with the features) 0.873, " +
      "0.878, 0.864: 0.88 missed by up to 0.016, within the baselines' delta of 0.03.",
    ],
  },
];

/**
 * The reproduction called `name`, with an error listing the known names otherwise.
 *
 * @example
 * ```ts
 * import { reproConfig } from "./configs.ts";
 * console.assert(reproConfig("gdumb-split-mnist").target === 0.97);
 * ```
 */
export function reproConfig(name: string): ReproConfig {
  const c = REPRODUCTIONS.find((r) => r.name === name);
  if (!c) {
    throw new RangeError(
      `Unknown reproduction "${name}": use one of ${REPRODUCTIONS.map((r) => r.name).join(", ")}`,
    );
  }
  return c;
}

/** Checks a mode name. */
export function checkMode(mode: unknown): ReproMode {
  if (!REPRO_MODES.includes(mode as ReproMode)) {
    throw new RangeError(
      `Unknown mode ${JSON.stringify(mode)}: use one of ${REPRO_MODES.join(", ")}`,
    );
  }
  return mode as ReproMode;
}

/** Memory-like parameters that {@link Scale.maxMemory} caps. */
const MEMORY_PARAMS = ["memSize", "patternsPerExperience"] as const;

/** What a mode changes in a configuration, in words (empty for `full`). */
export interface ScaledConfig extends ReproConfig {
  /** The mode the configuration was scaled to. */
  readonly mode: ReproMode;
  /** Training samples per experience kept (undefined: all). */
  readonly trainPerExperience: number | undefined;
  /** Test samples per experience kept (undefined: all). */
  readonly testPerExperience: number | undefined;
  /** What differs from the published setting, one line each. */
  readonly reductions: readonly string[];
}

/**
 * The configuration as run in `mode`: fewer epochs, experiences and memory where the mode's
 * {@link Scale} says so, and the sample counts to keep. `full` returns the published setting.
 *
 * @example
 * ```ts
 * import { reproConfig, scaleConfig } from "./configs.ts";
 * const quick = scaleConfig(reproConfig("ewc-permuted-mnist"), "quick");
 * console.assert(quick.epochs === 2 && quick.benchmark.experiences === 3);
 * ```
 */
export function scaleConfig(config: ReproConfig, mode: ReproMode): ScaledConfig {
  const scale = SCALES[checkMode(mode)];
  const reductions: string[] = [];
  let epochs = config.epochs;
  if (scale.maxEpochs !== undefined && epochs > scale.maxEpochs) {
    reductions.push(`epochs ${epochs} → ${scale.maxEpochs}`);
    epochs = scale.maxEpochs;
  }
  let benchmark = config.benchmark;
  if (
    benchmark.name === "permutedMNIST" && scale.maxExperiences !== undefined &&
    benchmark.experiences > scale.maxExperiences
  ) {
    reductions.push(`experiences ${benchmark.experiences} → ${scale.maxExperiences}`);
    benchmark = { ...benchmark, experiences: scale.maxExperiences };
  }
  const params: Record<string, ParamValue> = { ...config.params };
  if (scale.maxMemory !== undefined) {
    for (const k of MEMORY_PARAMS) {
      const v = params[k];
      if (typeof v === "number" && v > scale.maxMemory) {
        reductions.push(`${k} ${v} → ${scale.maxMemory}`);
        params[k] = scale.maxMemory;
      }
    }
  }
  let trainPerExperience = config.trainPerExperience;
  if (
    scale.trainPerExperience !== undefined &&
    !(trainPerExperience !== undefined && trainPerExperience <= scale.trainPerExperience)
  ) {
    reductions.push(`${scale.trainPerExperience} training samples per experience`);
    trainPerExperience = scale.trainPerExperience;
  }
  if (scale.testPerExperience !== undefined) {
    reductions.push(`${scale.testPerExperience} test samples per experience`);
  }
  return {
    ...config,
    benchmark,
    epochs,
    params,
    mode,
    trainPerExperience,
    testPerExperience: scale.testPerExperience,
    reductions,
  };
}
