/**
 * perennial: continual learning for Deno and Jupyter, on TensorFlow.js.
 *
 * The public surface, listed by name and grouped by layer (see ARCHITECTURE.md): what the README
 * documents and what it takes to write strategies, plugins, metrics, loggers, datasets and models.
 * Kernels, batch pools and the helpers of a single plugin stay in their own files.
 *
 * @example Naive fine-tuning on Split MNIST
 * ```ts ignore
 * import { mlp, naive, setup, splitMNIST } from "./mod.ts";
 * await setup({ seed: 0 });
 * const bench = await splitMNIST({ experiences: 5, seed: 0 });
 * const strategy = naive({ model: mlp({ hidden: [400, 400] }), epochs: 1, batchSize: 128 });
 * for (const exp of bench.train) {
 *   await strategy.train(exp);
 *   await strategy.eval(bench.test);
 * }
 * console.table(strategy.accuracyMatrix());
 * ```
 *
 * @module
 */

// Layer 1, backend, random and options: choosing the tfjs backend, seeded random numbers,
// checking the options objects a builder takes (for plugins and builders of one's own).
export { backendInfo, BACKENDS, probeWebGpu, setBackend, setup } from "./lib/backend.ts";
export type {
  BackendInfo,
  BackendName,
  SetupOptions,
  WebGpuAdapter,
  WebGpuProbe,
} from "./lib/backend.ts";
export { Rng } from "./lib/random.ts";
export type { RngState } from "./lib/random.ts";
export { anyOf, checkOptions, closest, instanceOf, oneOf } from "./lib/options.ts";
export type { OptionKind, OptionSpec } from "./lib/options.ts";

// Layer 2, data: datasets, experiences and streams, loaders' plans, metric rows.
export {
  ArrayDataset,
  concatDatasets,
  Dataset,
  inputCacheUsage,
  setInputCacheBudget,
} from "./lib/data/dataset.ts";
export type { ArrayDatasetOptions, Batch, ContiguousRows } from "./lib/data/dataset.ts";
export {
  checkTransformGroups,
  normalize,
  randomCrop,
  randomHorizontalFlip,
} from "./lib/data/augment.ts";
export type {
  ImageTransform,
  NormalizeTransform,
  RandomCropOptions,
  RandomCropTransform,
  RandomHorizontalFlipTransform,
  TransformGroups,
} from "./lib/data/augment.ts";
export { makeExperience, makeStream, withDataset } from "./lib/data/experience.ts";
export {
  batchesPerEpoch,
  batchOf,
  batchPlan,
  DatasetLoader,
  sampleOrder,
} from "./lib/data/loader.ts";
export type { BatchPart, BatchPlan, DataLoader, DatasetLoaderOptions } from "./lib/data/loader.ts";
export { accuracyMatrix, metricRows } from "./lib/data/rows.ts";
export type { MetricRow, Phase, RowCoordinates } from "./lib/data/rows.ts";
export type {
  Benchmark,
  BenchmarkInfo,
  Experience,
  Scenario,
  Stream,
} from "./lib/data/experience.ts";

// Layer 2, dataset files: the registry, IDX files, verified downloads, synthetic images.
export type { ImageDataset, ImageSplit, LoadOptions } from "./datasets/types.ts";
export { DatasetError } from "./datasets/errors.ts";
export type { DatasetErrorCode } from "./datasets/errors.ts";
export { parseIdx, readIdxHeader } from "./datasets/idx.ts";
export type { IdxHeader } from "./datasets/idx.ts";
export {
  ARCHIVE_DATASETS,
  DATASETS,
  getDatasetSpec,
  isArchiveDataset,
} from "./datasets/registry.ts";
export type {
  ArchiveDatasetName,
  ArchiveDatasetSpec,
  ArchiveFormat,
  DatasetFile,
  DatasetName,
  DatasetSpec,
  FileRole,
  IdxDatasetName,
} from "./datasets/registry.ts";
export { parseCifarArchive } from "./datasets/cifar.ts";
export { parseTinyImageNetZip } from "./datasets/tiny_imagenet.ts";
export { defaultCacheDir, resolveDataDir } from "./datasets/dirs.ts";
export type { Checksum } from "./datasets/checksum.ts";
export { downloadVerified } from "./datasets/cache.ts";
export type { DownloadOptions, DownloadProgress } from "./datasets/cache.ts";
export { clearDatasetMemo, loadArchive, loadDataset } from "./datasets/load.ts";
export {
  archiveChecksums,
  cifarRecords,
  classPalette,
  encodeCifarRecords,
  syntheticCifar10Archive,
} from "./datasets/synthetic_archives.ts";
export type { CifarRecords, SyntheticCifar10Options } from "./datasets/synthetic_archives.ts";
export { syntheticImages } from "./datasets/synthetic.ts";
export type { SyntheticOptions } from "./datasets/synthetic.ts";

// Layer 2, benchmarks: scenario generators and the classic benchmarks.
export {
  classIncremental,
  newInstances,
  permuted,
  rotated,
  splitOnline,
  subsample,
  taskIncremental,
} from "./lib/benchmarks/generators.ts";
export type {
  ClassIncrementalBenchmark,
  ClassIncrementalOptions,
  NewInstancesOptions,
  OnlineBenchmark,
  OnlineExperience,
  OnlineStream,
  PermutedBenchmark,
  PermutedOptions,
  RotatedBenchmark,
  RotatedOptions,
  SplitOnlineOptions,
  SubsampleOptions,
} from "./lib/benchmarks/generators.ts";
export { benchmarkWithValidationStream } from "./lib/benchmarks/validation.ts";
export type { ValidationStreamOptions, WithValidation } from "./lib/benchmarks/validation.ts";
export { randomPermutations, rotateImages } from "./lib/benchmarks/transforms.ts";
export type { ImageGeometry } from "./lib/benchmarks/transforms.ts";
export {
  FMNIST_STATS,
  MNIST_STATS,
  permutedMNIST,
  rotatedMNIST,
  splitFMNIST,
  splitMNIST,
  toArrayDatasets,
} from "./lib/benchmarks/classic.ts";
export type {
  ClassicOptions,
  PermutedMNISTOptions,
  PixelStats,
  RotatedMNISTOptions,
  SplitOptions,
  ToArrayDatasetsOptions,
} from "./lib/benchmarks/classic.ts";
export {
  CIFAR100_STATS,
  CIFAR10_STATS,
  cifarTransforms,
  IMAGENET_STATS,
  splitCIFAR10,
  splitCIFAR100,
  splitCIFAR110,
  splitTinyImageNet,
  TINY_IMAGENET_STATS,
  tinyImageNetTransforms,
  zeroPixel,
} from "./lib/benchmarks/vision.ts";
export type {
  ChannelStats,
  SplitCIFAR110Options,
  SplitVisionOptions,
  VisionOptions,
} from "./lib/benchmarks/vision.ts";

// Layer 3, nn, models and optim: modules, layers and losses; classifiers; optimizers.
export { isCloneable, Module, newVariable, stateToTensor, tensorToState } from "./lib/nn/module.ts";
export type { Cloneable, ForwardOptions, ModuleState, TensorState } from "./lib/nn/module.ts";
export {
  Activation,
  BatchNorm1d,
  Conv2d,
  drawSeed,
  Dropout,
  Flatten,
  Linear,
  MaxPool2d,
  Sequential,
} from "./lib/nn/layers.ts";
export type {
  ActivationName,
  BatchNorm1dOptions,
  Conv2dOptions,
  ConvPadding,
  LinearOptions,
} from "./lib/nn/layers.ts";
export { batchNorm, BatchNorm2d } from "./lib/nn/norm.ts";
export type { BatchNorm2dOptions, BatchNormOptions, BatchNormParams } from "./lib/nn/norm.ts";
export { AvgPool2d, GlobalAvgPool2d } from "./lib/nn/pooling.ts";
export { BasicBlock, ZeroPadShortcut } from "./lib/nn/residual.ts";
export type { BasicBlockOptions, ShortcutKind } from "./lib/nn/residual.ts";
export {
  binaryCrossEntropyWithLogits,
  crossEntropy,
  distillationLoss,
  distillationWithGradient,
  icarlLoss,
  vaeLoss,
} from "./lib/nn/losses.ts";
export { isLossTerm, lossTerm } from "./lib/nn/terms.ts";
export {
  quadraticPenalty,
  quadraticPenaltyTerm,
  quadraticPenaltyWithGradient,
  sumPenalties,
} from "./lib/nn/penalties.ts";
export type { PenaltyEntry } from "./lib/nn/penalties.ts";
export type { LossTerm, TermWithGradient } from "./lib/nn/terms.ts";
export type { Criterion, CriterionInputs, Reconstruction } from "./lib/nn/losses.ts";
export { IncrementalClassifier, MASK_VALUE, MultiHeadClassifier } from "./lib/models/heads.ts";
export { Classifier, cnn, mlp, multiHeadMLP } from "./lib/models/mlp.ts";
export type { CNNOptions, HeadKind, MLPOptions } from "./lib/models/mlp.ts";
export { reducedResNet18, resnet32, ResNetBackbone, slimResNet18 } from "./lib/models/resnet.ts";
export type {
  ResNet32Options,
  ResNetSpec,
  ResNetStage,
  SlimResNet18Options,
} from "./lib/models/resnet.ts";
export {
  extractFeatures,
  extractFeaturesAsync,
  hasEmbed,
  l2NormalizeRows,
} from "./lib/models/features.ts";
export type { Embedder, ExtractFeaturesOptions, Features } from "./lib/models/features.ts";
export { classMeansOf, NCMClassifier } from "./lib/models/ncm.ts";
export type { NCMClassifierOptions, NCMMetric } from "./lib/models/ncm.ts";
export {
  classCovariancesOf,
  FeCAMClassifier,
  invertSymmetric,
  normalizeCovariance,
  shrinkCovariance,
  symmetricPinv,
} from "./lib/models/fecam.ts";
export type { FeCAMClassifierOptions, FeCAMState } from "./lib/models/fecam.ts";
export { SLDAClassifier } from "./lib/models/slda.ts";
export type { SLDAClassifierOptions, SLDAState } from "./lib/models/slda.ts";
export { PackNetModel, packNetModel, PRUNED_CODE } from "./lib/models/packnet.ts";
export type { PackNetLayer, PackNetStructure } from "./lib/models/packnet.ts";
export { LinearAdapter, MLPAdapter, PNN, pnn, PNNColumn, PNNLayer } from "./lib/models/pnn.ts";
export type { PNNAdapter, PNNOptions } from "./lib/models/pnn.ts";
export { isGenerator, MlpVAE, mlpVAE, normalNoise, vaeCriterion } from "./lib/models/vae.ts";
export type { Generator, MlpVAEOptions, OutputStats } from "./lib/models/vae.ts";
export { Adam, adam, SGD, sgd } from "./lib/optim/optimizers.ts";
export type { AdamOptions, Optimizer, OptimizerState, SGDOptions } from "./lib/optim/optimizers.ts";

// Layer 4, engine: datasets held on the device as float32 tensors; the step's plan; image
// transforms applied to minibatches.
export { resident, residentBenchmark, ResidentDataset } from "./lib/engine/resident.ts";
export type { StepPlan } from "./lib/engine/step.ts";
export { applyImageTransforms } from "./lib/engine/augment.ts";
export type { CropFlipDraw } from "./lib/engine/augment.ts";
export type { ResidentBenchmark } from "./lib/engine/resident.ts";

// Layer 5, strategies: the template, its context, the plugin contract.
export type {
  Clock,
  StrategyContext,
  StrategySettings,
  TensorBatch,
} from "./lib/strategy/context.ts";
export {
  EVAL_HOOKS,
  StrategyPlugin,
  SupervisedPlugin,
  SYNC_HOOKS,
  TRAIN_HOOKS,
} from "./lib/strategy/plugin.ts";
export type { Hook, HookName, Plugin } from "./lib/strategy/plugin.ts";
export { Strategy } from "./lib/strategy/template.ts";
export type {
  CheckpointPoint,
  EpochResult,
  EvalResult,
  ExperienceEval,
  HookRunner,
  RestoreOptions,
  StrategyOptions,
  StrategyState,
  TrainOptions,
  TrainResult,
} from "./lib/strategy/template.ts";
export {
  cumulative,
  CumulativeStrategy,
  jointTraining,
  JointTrainingStrategy,
  naive,
  withPlugin,
} from "./lib/strategy/strategies.ts";
export { STRATEGY_OPTIONS } from "./lib/strategy/options.ts";

// Layer 6, metrics: the metric contract, the built-in metrics.
export * as functional from "./lib/metrics/functional.ts";
export {
  GRANULARITIES,
  METRIC_HOOKS,
  resolveWindows,
  rowBase,
  WINDOW_END,
  WINDOW_START,
} from "./lib/metrics/metric.ts";
export type {
  Granularity,
  GranularityOptions,
  Metric,
  MetricHook,
  MetricHookName,
  RowBase,
  Windows,
} from "./lib/metrics/metric.ts";
export type { PerTask } from "./lib/metrics/_accumulate.ts";
export { accuracy } from "./lib/metrics/accuracy.ts";
export type { AccuracyOptions } from "./lib/metrics/accuracy.ts";
export { loss } from "./lib/metrics/loss.ts";
export type { LossOptions } from "./lib/metrics/loss.ts";
export { bwt, forgetting, forwardTransfer } from "./lib/metrics/forgetting.ts";
export type { ForgettingMetricOptions, TransferOptions } from "./lib/metrics/forgetting.ts";
export { confusionMatrix, toConfusionMatrix } from "./lib/metrics/confusion.ts";
export type { ConfusionMatrixOptions } from "./lib/metrics/confusion.ts";
export { timing } from "./lib/metrics/timing.ts";
export type { TimingOptions } from "./lib/metrics/timing.ts";
export { memory } from "./lib/metrics/memory.ts";
export type { MemoryOptions } from "./lib/metrics/memory.ts";
export { countMacs, macs } from "./lib/metrics/mac.ts";
export type { CountMacsOptions, MacsOptions } from "./lib/metrics/mac.ts";
export { avalancheName, granularityOf } from "./lib/metrics/names.ts";
export type { AvalancheNameOptions } from "./lib/metrics/names.ts";

// Layer 6, loggers: the logger contract and the built-in loggers.
export type { Logger } from "./lib/loggers/logger.ts";
export type { FileLoggerOptions, IfExists } from "./lib/loggers/_files.ts";
export { progressBar } from "./lib/loggers/progress.ts";
export type { ProgressBarOptions } from "./lib/loggers/progress.ts";
export { progressLogger } from "./lib/loggers/progress_logger.ts";
export type {
  DisplayFn,
  MimeBundle,
  ProgressLoggerOptions,
} from "./lib/loggers/progress_logger.ts";
export { textLogger } from "./lib/loggers/text.ts";
export type { TextLoggerOptions } from "./lib/loggers/text.ts";
export { CSV_COLUMNS, csvLogger, parseCsvRows, readCsvRows } from "./lib/loggers/csv.ts";
export type { CsvColumn, CsvLoggerOptions } from "./lib/loggers/csv.ts";
export { jsonlLogger, parseJsonlRows, readJsonlRows } from "./lib/loggers/jsonl.ts";
export type { JsonlLoggerOptions } from "./lib/loggers/jsonl.ts";
export {
  crc32c,
  encodeEvent,
  maskedCrc32c,
  tensorboardLogger,
  tensorboardTag,
  tfRecord,
} from "./lib/loggers/tensorboard.ts";
export type { TensorboardEvent, TensorboardLoggerOptions } from "./lib/loggers/tensorboard.ts";
export { inMemoryLogger } from "./lib/loggers/in_memory.ts";
export type { InMemoryLogger } from "./lib/loggers/in_memory.ts";
export { checkRun, filterRuns, newRun, splitRuns } from "./lib/loggers/runs.ts";
export type { LoggedRow, ReadRowsOptions, RunInfo, RunRows } from "./lib/loggers/runs.ts";

// Layer 6, plugins: evaluation, replay memories and the continual-learning plugins.
export { EpisodicMemory, MemoryDataset, SampleMemory } from "./lib/plugins/memory.ts";
export type {
  EpisodicMemoryState,
  MaterializedDataset,
  MaterializedField,
  MemoryTensors,
  SampleField,
} from "./lib/plugins/memory.ts";
export { evaluation, EvaluationPlugin } from "./lib/plugins/evaluation.ts";
export type {
  EvaluationKeywords,
  EvaluationOptions,
  EvaluationState,
  EvaluatorFigure,
  EvaluatorTable,
  EvaluatorTableOptions,
  EvaluatorViews,
  MetricCurve,
} from "./lib/plugins/evaluation.ts";
export {
  BalancedExemplarsBuffer,
  BalancedStoragePolicy,
  classBalanced,
  ClassBalancedBuffer,
  ClassBalancedStoragePolicy,
  ClosestToCenterSelectionStrategy,
  ExemplarsBuffer,
  ExemplarsSelectionStrategy,
  experienceBalanced,
  ExperienceBalancedBuffer,
  ExperienceBalancedStoragePolicy,
  FeatureBasedExemplarsSelectionStrategy,
  HerdingSelectionStrategy,
  ParametricBuffer,
  RandomExemplarsSelectionStrategy,
  reservoir,
  ReservoirSamplingBuffer,
  StoragePolicy,
} from "./lib/plugins/storage_policy.ts";
export type {
  ClassBalancedOptions,
  ExperienceBalancedOptions,
  FeatureSelectionOptions,
  GroupBy,
  ParametricBufferOptions,
  ReservoirGroupState,
  SelectionContext,
  StorageContext,
  StoragePolicyState,
} from "./lib/plugins/storage_policy.ts";
export { ReplayDataLoader } from "./lib/plugins/replay_loader.ts";
export type { ReplayDataLoaderOptions } from "./lib/plugins/replay_loader.ts";
export { replay, ReplayPlugin, replayPlugin } from "./lib/plugins/replay.ts";
export type {
  ReplayOptions,
  ReplayPluginOptions,
  ReplayPluginState,
} from "./lib/plugins/replay.ts";
export { gdumb, GDumbPlugin, gdumbPlugin } from "./lib/plugins/gdumb.ts";
export type { GDumbOptions, GDumbPluginOptions, GDumbPluginState } from "./lib/plugins/gdumb.ts";
export { cwrStar, CWRStarPlugin, cwrStarPlugin } from "./lib/plugins/cwr_star.ts";
export type {
  ConsolidatedClass,
  CWRStarOptions,
  CWRStarPluginOptions,
  CWRStarState,
} from "./lib/plugins/cwr_star.ts";
export { ar1, AR1Plugin, ar1Plugin } from "./lib/plugins/ar1.ts";
export type { AR1Options, AR1PluginOptions, AR1State, LatentMemory } from "./lib/plugins/ar1.ts";
export { packNet, PackNetPlugin, packNetPlugin } from "./lib/plugins/packnet.ts";
export type {
  PackNetOptions,
  PackNetPluginOptions,
  PruneProportion,
} from "./lib/plugins/packnet.ts";
export { pnnStrategy } from "./lib/plugins/pnn.ts";
export type { PNNStrategyOptions } from "./lib/plugins/pnn.ts";
export {
  fromScratchTraining,
  FromScratchTrainingPlugin,
  fromScratchTrainingPlugin,
} from "./lib/plugins/from_scratch_training.ts";
export type {
  FromScratchTrainingOptions,
  FromScratchTrainingPluginOptions,
  FromScratchTrainingState,
} from "./lib/plugins/from_scratch_training.ts";
export { cope, CoPEPlugin, copePlugin, PPPloss } from "./lib/plugins/cope.ts";
export type { CoPEOptions, CoPEPluginOptions, CoPEState } from "./lib/plugins/cope.ts";
export {
  aceLoss,
  erAce,
  ERACEPlugin,
  erAcePlugin,
  ERMemoryPlugin,
  ERReplayLoader,
} from "./lib/plugins/er_ace.ts";
export type {
  ERACEOptions,
  ERACEPluginOptions,
  ERMemoryOptions,
  ERMemoryState,
} from "./lib/plugins/er_ace.ts";
export { erAml, ERAMLPlugin, erAmlPlugin, samplePosNeg, supConLoss } from "./lib/plugins/er_aml.ts";
export type { ERAMLOptions, ERAMLPluginOptions, PosNeg } from "./lib/plugins/er_aml.ts";
export { scr, scrLoss, SCRPlugin, scrPlugin } from "./lib/plugins/scr.ts";
export type { SCROptions, SCRPluginOptions, SCRPluginState } from "./lib/plugins/scr.ts";
export { solveNonNegativeQP } from "./lib/plugins/qp.ts";
export type { MatrixInput, QPOptions, QPResult } from "./lib/plugins/qp.ts";
export { gem, GEMPlugin, gemPlugin } from "./lib/plugins/gem.ts";
export type { GEMOptions, GEMPluginState, GEMStrategyOptions } from "./lib/plugins/gem.ts";
export { agem, AGEMPlugin, agemPlugin } from "./lib/plugins/agem.ts";
export { mir, MIRPlugin, mirPlugin, ReservoirMemory } from "./lib/plugins/mir.ts";
export type { MIROptions, MIRPluginState, MIRStrategyOptions } from "./lib/plugins/mir.ts";
export { fgsmAttack, nearestOtherClass, rar, RARPlugin, rarPlugin } from "./lib/plugins/rar.ts";
export type {
  FGSMSettings,
  RAROptions,
  RARPluginState,
  RARStrategyOptions,
} from "./lib/plugins/rar.ts";
export { gss, GSS_greedyPlugin, gssPlugin } from "./lib/plugins/gss.ts";
export type { GSSOptions, GSSPluginState, GSSStrategyOptions } from "./lib/plugins/gss.ts";
export type {
  AGEMOptions,
  AGEMPluginState,
  AGEMSampling,
  AGEMStrategyOptions,
} from "./lib/plugins/agem.ts";
export { ewc, EWCPlugin, ewcPlugin } from "./lib/plugins/ewc.ts";
export type {
  EWCExperienceData,
  EWCMode,
  EWCOptions,
  EWCPluginBuilderOptions,
  EWCPluginOptions,
  EWCPluginState,
} from "./lib/plugins/ewc.ts";
export {
  siPlugin,
  synapticIntelligence,
  SynapticIntelligencePlugin,
  synapticIntelligencePlugin,
} from "./lib/plugins/synaptic_intelligence.ts";
export type {
  ParameterPattern,
  SIPathGradient,
  SIPluginOptions,
  SynapticIntelligenceOptions,
  SynapticIntelligencePluginOptions,
  SynapticIntelligenceState,
} from "./lib/plugins/synaptic_intelligence.ts";
export { lwf, LwFPlugin, lwfPlugin } from "./lib/plugins/lwf.ts";
export type { LwFOptions, LwFPluginOptions, LwFPluginState } from "./lib/plugins/lwf.ts";
export { earlyStopping, EarlyStoppingPlugin } from "./lib/plugins/early_stopping.ts";
export type { EarlyStoppingOptions, EarlyStoppingState } from "./lib/plugins/early_stopping.ts";
export {
  cosineAnnealingLR,
  lrScheduler,
  LRSchedulerPlugin,
  multiStepLR,
  reduceLROnPlateau,
  stepLR,
} from "./lib/plugins/lr_scheduler.ts";
export type {
  CosineAnnealingLROptions,
  LRSchedule,
  LRSchedulerOptions,
  LRSchedulerState,
  MultiStepLROptions,
  ReduceLROnPlateauOptions,
  ScheduleState,
  StepLROptions,
} from "./lib/plugins/lr_scheduler.ts";
export { mas, masImportances, MASPlugin, masPlugin } from "./lib/plugins/mas.ts";
export type {
  MASImportanceOptions,
  MASOptions,
  MASPluginOptions,
  MASPluginState,
} from "./lib/plugins/mas.ts";
export { rwalk, RWALK_EPS, RWalkPlugin, rwalkPlugin } from "./lib/plugins/rwalk.ts";
export type { RWalkOptions, RWalkPluginOptions, RWalkPluginState } from "./lib/plugins/rwalk.ts";
export { lfl, LFLPlugin, lflPlugin } from "./lib/plugins/lfl.ts";
export type { LFLOptions, LFLPluginOptions, LFLPluginState } from "./lib/plugins/lfl.ts";
export {
  generativeReplay,
  GenerativeReplayPlugin,
  generativeReplayPlugin,
  vaeTraining,
} from "./lib/plugins/generative_replay.ts";
export type {
  GenerativeReplayOptions,
  GenerativeReplayPluginOptions,
  GenerativeReplayPluginState,
  VAETrainingOptions,
} from "./lib/plugins/generative_replay.ts";
export {
  der,
  DER_ALPHA,
  derLogitsLoss,
  DERPlugin,
  derPlugin,
  derpp,
  DERPP_BETA,
  LogitsReservoir,
} from "./lib/plugins/der.ts";
export type {
  DEROptions,
  DERPluginOptions,
  DERPluginState,
  LogitsReservoirState,
} from "./lib/plugins/der.ts";
export { icarl, ICaRLLossPlugin, ICaRLPlugin, icarlPlugin } from "./lib/plugins/icarl.ts";
export type {
  ICaRLLossPluginState,
  ICaRLOptions,
  ICaRLPluginOptions,
  ICaRLPluginState,
} from "./lib/plugins/icarl.ts";
export { biasForward, BiasLayer, bic, BiCPlugin, bicPlugin } from "./lib/plugins/bic.ts";
export type {
  BiasLayerState,
  BiCOptions,
  BiCPluginOptions,
  BiCPluginState,
} from "./lib/plugins/bic.ts";
export { StreamingLDA, streamingLDA } from "./lib/plugins/slda.ts";
export type { StreamingLDAOptions } from "./lib/plugins/slda.ts";
export {
  CurrentDataNCMUpdate,
  currentDataNCMUpdate,
  MemoryNCMUpdate,
  memoryNCMUpdate,
  NCMOracle,
  ncmOracle,
} from "./lib/plugins/update_ncm.ts";
export type {
  MemoryNCMUpdateOptions,
  NCMUpdateOptions,
  NCMUpdateState,
} from "./lib/plugins/update_ncm.ts";
export {
  CurrentDataFeCAMUpdate,
  currentDataFeCAMUpdate,
  FeCAMOracle,
  fecamOracle,
  MemoryFeCAMUpdate,
  memoryFeCAMUpdate,
} from "./lib/plugins/update_fecam.ts";
export type {
  FeCAMUpdateOptions,
  FeCAMUpdateState,
  MemoryFeCAMUpdateOptions,
} from "./lib/plugins/update_fecam.ts";

// Layer 7, notebook display: figures and tables.
export { display, isJupyter, JUPYTER_DISPLAY } from "./lib/notebook/display.ts";
export type { Displayable, DisplayOptions, MediaBundle } from "./lib/notebook/display.ts";
export { figure, loadResvg, renderPlot, svgToPNG } from "./lib/notebook/render.ts";
export type { Decorations, Figure, LegendEntry, PNGOptions } from "./lib/notebook/render.ts";
export {
  accuracyCurves,
  accuracyMatrixHeatmap,
  compareRuns,
  confusionMatrixPlot,
  forgettingBars,
  PALETTE,
} from "./lib/notebook/plots.ts";
export type {
  ChartOptions,
  CompareOptions,
  ConfusionOptions,
  CurveOptions,
  CurveX,
  ForgettingOptions,
  HeatmapOptions,
} from "./lib/notebook/plots.ts";
export {
  filterRows,
  forgettingPerExperience,
  formatMeanStd,
  groupSummary,
  groupSummaryColumns,
  groupSummaryMarkdown,
  loadDanfo,
  meanStd,
  ROW_COLUMNS,
  rowsFrom,
  runSummary,
  saveTable,
  summaryTable,
  table,
  toCSV,
  toHTML,
  toText,
} from "./lib/notebook/tables.ts";
export type {
  Danfo,
  DataFrame,
  FrameLike,
  GroupSummary,
  Matrix,
  MeanStd,
  MetricTable,
  NamedRun,
  RowFilter,
  RowSource,
  RunSummary,
  SummaryOptions,
  TableFormatOptions,
  TableOptions,
} from "./lib/notebook/tables.ts";
// Loading this module gives evaluators their plot() and table() methods.
export { EVALUATOR_PLOT_KINDS, evaluatorTable, plotEvaluator } from "./lib/notebook/evaluator.ts";
export type { EvaluatorPlotKind, EvaluatorPlotOptions } from "./lib/notebook/evaluator.ts";
export { liveCurves, LiveCurvesPlugin } from "./lib/notebook/live.ts";
export type { LiveCurvesOptions, LiveDisplay } from "./lib/notebook/live.ts";

// Layer 7, checkpoints: checkpoint files in the safetensors layout, resumable runs.
export {
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
} from "./lib/checkpoint/safetensors.ts";
export type {
  CheckpointErrorCode,
  SafetensorsContent,
  SafetensorsTensor,
} from "./lib/checkpoint/safetensors.ts";
export {
  CHECKPOINT_FORMAT,
  decodeCheckpoint,
  encodeCheckpoint,
  loadCheckpoint,
  readCheckpoint,
  saveCheckpoint,
  writeFileAtomic,
} from "./lib/checkpoint/files.ts";
export type { CheckpointFile, SaveCheckpointOptions } from "./lib/checkpoint/files.ts";
export {
  checkpointFileName,
  latestCheckpoint,
  resumable,
  ResumableRun,
  RUN_METADATA,
} from "./lib/checkpoint/resumable.ts";
export type {
  RejectedCheckpoint,
  ResumableOptions,
  ResumeInfo,
  RunEvalResult,
  RunTrainResult,
  SavedCheckpoint,
} from "./lib/checkpoint/resumable.ts";

// Layer 7, sweeps: many seeds and settings on every core or on Slurm, a folder per run.
export {
  canonicalJSON,
  executeRun,
  expandSweep,
  loadSweep,
  progressLine,
  readIndex,
  reproRunConfig,
  reproSeeds,
  runDir,
  runId,
  runInline,
  runLocal,
  runSlurm,
  slurmScript,
  sweep,
  sweepProgress,
  workerCommand,
  writeSeedsResults,
} from "./lib/sweep/mod.ts";
export type {
  EngineOptions,
  EngineOutcome,
  EngineProgress,
  ExecuteOptions,
  LocalOptions,
  ReproSeedsOptions,
  RunConfig,
  RunOutcome,
  RunState,
  RunStatus,
  SlurmOptions,
  SlurmPlan,
  StoredResult,
  SweepEngine,
  SweepIndex,
  SweepOptions,
  SweepProgressMode,
  SweepResources,
  SweepRun,
  SweepRunPlan,
  SweepSpec,
  SweepStrategy,
} from "./lib/sweep/mod.ts";
