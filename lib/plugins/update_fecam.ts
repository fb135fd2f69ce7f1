/**
 * Plugins that keep a FeCAM classifier's class means and covariances up to date after each
 * training experience and classify by it at evaluation (Avalanche 0.6's
 * `training/plugins/update_fecam.py`: `CurrentDataFeCAMUpdate`, `MemoryFeCAMUpdate`,
 * `FeCAMOracle`).
 *
 * @module
 */
import { concatDatasets, type Dataset } from "../data/dataset.ts";
import type { Experience } from "../data/experience.ts";
import { FeCAMClassifier, type FeCAMState } from "../models/fecam.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { anyOf, checkOptions, instanceOf, type OptionSpec } from "../options.ts";
import { FeatureClassifierUpdate, memoryOf, SeenExperiences } from "./_feature_classifier.ts";
import { StoragePolicy, type StoragePolicyState } from "./storage_policy.ts";

/** Options of {@link CurrentDataFeCAMUpdate} and {@link FeCAMOracle}. */
export interface FeCAMUpdateOptions {
  /** The classifier kept up to date (and used at evaluation). @default new FeCAMClassifier() */
  classifier?: FeCAMClassifier;
}

const FECAM_UPDATE_OPTIONS: OptionSpec<FeCAMUpdateOptions> = {
  classifier: instanceOf(FeCAMClassifier),
};

/** Options of {@link MemoryFeCAMUpdate}. */
export interface MemoryFeCAMUpdateOptions extends FeCAMUpdateOptions {
  /** Samples of the default class-balanced memory. @default 2000 */
  memSize?: number;
  /** The memory. @default new ClassBalancedStoragePolicy(memSize) */
  storagePolicy?: StoragePolicy | null;
}

const MEMORY_FECAM_OPTIONS: OptionSpec<MemoryFeCAMUpdateOptions> = {
  ...FECAM_UPDATE_OPTIONS,
  memSize: "integer",
  storagePolicy: anyOf(instanceOf(StoragePolicy), "null"),
};

/** Plain-data state of the FeCAM updaters. */
export interface FeCAMUpdateState {
  version: 1;
  classifier: FeCAMState;
  memory?: StoragePolicyState;
  seen?: { stream: string; id: number }[];
}

function classifierOf(who: string, opts: FeCAMUpdateOptions | undefined): FeCAMClassifier {
  const c = opts?.classifier ?? new FeCAMClassifier();
  if (!(c instanceof FeCAMClassifier)) {
    throw new TypeError(`${who}: classifier must be a FeCAMClassifier`);
  }
  return c;
}

function checkState(who: string, state: unknown): FeCAMUpdateState {
  const s = state as FeCAMUpdateState;
  if (!s || s.version !== 1 || !s.classifier) {
    throw new TypeError(`Not a ${who} state (version ${String(s?.version)})`);
  }
  return s;
}

/** The shared step: features of `data`, then the classifier's update with momentum 0.5. */
abstract class FeCAMUpdate extends FeatureClassifierUpdate<FeCAMClassifier> {
  protected async fitOn(ctx: StrategyContext, data: Dataset): Promise<void> {
    const { f, y } = await this.features(ctx, data);
    this.classifier.fit(f, y, 0.5);
  }
}

/**
 * Avalanche's `CurrentDataFeCAMUpdate`: after each training experience, the class means and
 * covariances of the model's features over the experience's data (`ctx.experience.dataset`)
 * update the classifier's with momentum 0.5 ({@link FeCAMClassifier.fit}); at evaluation the
 * classifier's logits replace the model's output.
 *
 * Where we differ: Avalanche updates `model.eval_classifier` of a model with separate training
 * and evaluation heads; here the plugin holds the classifier (`classifier`) and applies it in
 * `afterEvalForward`, as iCaRL does. The Tukey transform (`x^0.5` by default) expects
 * features ≥ 0, as a ReLU gives.
 *
 * @example
 * ```ts ignore
 * const strategy = naive({ model: mlp(), plugins: [new CurrentDataFeCAMUpdate()] });
 * ```
 */
export class CurrentDataFeCAMUpdate extends FeCAMUpdate {
  /** @param opts the classifier to keep up to date (default `new FeCAMClassifier()`). */
  constructor(opts: FeCAMUpdateOptions = {}) {
    super(
      classifierOf(
        "CurrentDataFeCAMUpdate",
        checkOptions("CurrentDataFeCAMUpdate", opts, FECAM_UPDATE_OPTIONS),
      ),
    );
  }

  /** Updates the means and covariances from the experience's data. */
  async afterTrainingExp(ctx: StrategyContext): Promise<void> {
    await this.fitOn(ctx, ctx.experience!.dataset);
  }

  /** The classifier's statistics, as plain data. */
  state(): FeCAMUpdateState {
    return { version: 1, classifier: this.classifier.state() };
  }

  /** Restores what {@link CurrentDataFeCAMUpdate.state} returned. */
  loadState(state: unknown): void {
    this.classifier.loadState(checkState("CurrentDataFeCAMUpdate", state).classifier);
  }
}

/**
 * Avalanche's `MemoryFeCAMUpdate(mem_size=2000, storage_policy=None)`: after each training
 * experience the memory (by default class-balanced, `memSize` samples) takes its samples of the
 * experience, and the means and covariances of the model's features over the memory update the
 * classifier's with momentum 0.5 (as Avalanche: an update, where `MemoryNCMUpdate` replaces).
 * Evaluation as {@link CurrentDataFeCAMUpdate}.
 *
 * @example
 * ```ts
 * import { MemoryFeCAMUpdate } from "./update_fecam.ts";
 * console.assert(new MemoryFeCAMUpdate(300).storagePolicy.maxSize === 300);
 * ```
 */
export class MemoryFeCAMUpdate extends FeCAMUpdate {
  /** The memory whose samples give the statistics. */
  readonly storagePolicy: StoragePolicy;

  /**
   * @param memSize samples of the default memory (default 2000); or all options as an object.
   * @param storagePolicy the memory (default class-balanced).
   */
  constructor(
    memSize: number | MemoryFeCAMUpdateOptions = 2000,
    storagePolicy?: StoragePolicy | null,
  ) {
    const o: MemoryFeCAMUpdateOptions = typeof memSize === "object" && memSize !== null
      ? checkOptions("MemoryFeCAMUpdate", memSize, MEMORY_FECAM_OPTIONS)
      : { memSize, storagePolicy };
    super(classifierOf("MemoryFeCAMUpdate", o));
    this.storagePolicy = memoryOf("MemoryFeCAMUpdate", o.memSize ?? 2000, o.storagePolicy);
  }

  /** Updates the memory, then the statistics from it. */
  async afterTrainingExp(ctx: StrategyContext): Promise<void> {
    this.storagePolicy.update(ctx);
    if (this.storagePolicy.buffer.length > 0) await this.fitOn(ctx, this.storagePolicy.buffer);
  }

  /** The memory and the classifier's statistics, as plain data. */
  state(): FeCAMUpdateState {
    return {
      version: 1,
      classifier: this.classifier.state(),
      memory: this.storagePolicy.state(),
    };
  }

  /** Restores what {@link MemoryFeCAMUpdate.state} returned. */
  loadState(state: unknown): void {
    const s = checkState("MemoryFeCAMUpdate", state);
    if (!s.memory) throw new TypeError("Not a MemoryFeCAMUpdate state: it has no memory");
    this.storagePolicy.loadState(s.memory);
    this.classifier.loadState(s.classifier);
  }
}

/**
 * Avalanche's `FeCAMOracle`: after each training experience, the means and covariances of the
 * model's features over every training experience seen so far update the classifier's with
 * momentum 0.5 (as Avalanche). An upper bound, not a continual learner. Its checkpoint refers
 * to the experiences by stream and id: a restored oracle needs them again,
 * `plugin.restoreExperiences(bench.train)`.
 */
export class FeCAMOracle extends FeCAMUpdate {
  readonly #seen = new SeenExperiences("FeCAMOracle");

  /** @param opts the classifier to keep up to date (default `new FeCAMClassifier()`). */
  constructor(opts: FeCAMUpdateOptions = {}) {
    super(classifierOf("FeCAMOracle", checkOptions("FeCAMOracle", opts, FECAM_UPDATE_OPTIONS)));
  }

  /** Updates the statistics from all the data seen. */
  async afterTrainingExp(ctx: StrategyContext): Promise<void> {
    this.#seen.add(ctx.experience!);
    await this.fitOn(ctx, concatDatasets(this.#seen.datasets()));
  }

  /** Attaches the data of the experiences a restored checkpoint refers to. */
  restoreExperiences(experiences: Iterable<Experience>): void {
    this.#seen.restore(experiences);
  }

  /** The classifier's statistics and the experiences seen, as plain data. */
  state(): FeCAMUpdateState {
    return { version: 1, classifier: this.classifier.state(), seen: this.#seen.state() };
  }

  /** Restores what {@link FeCAMOracle.state} returned (then see {@link FeCAMOracle.restoreExperiences}). */
  loadState(state: unknown): void {
    const s = checkState("FeCAMOracle", state);
    this.#seen.loadState(s.seen ?? []);
    this.classifier.loadState(s.classifier);
  }
}

/** A {@link CurrentDataFeCAMUpdate}. */
export function currentDataFeCAMUpdate(opts: FeCAMUpdateOptions = {}): CurrentDataFeCAMUpdate {
  return new CurrentDataFeCAMUpdate(
    checkOptions("currentDataFeCAMUpdate", opts, FECAM_UPDATE_OPTIONS),
  );
}

/**
 * A {@link MemoryFeCAMUpdate}.
 *
 * @example
 * ```ts
 * import { memoryFeCAMUpdate } from "./update_fecam.ts";
 * console.assert(memoryFeCAMUpdate({ memSize: 100 }).storagePolicy.maxSize === 100);
 * ```
 */
export function memoryFeCAMUpdate(opts: MemoryFeCAMUpdateOptions = {}): MemoryFeCAMUpdate {
  return new MemoryFeCAMUpdate(checkOptions("memoryFeCAMUpdate", opts, MEMORY_FECAM_OPTIONS));
}

/** A {@link FeCAMOracle}. */
export function fecamOracle(opts: FeCAMUpdateOptions = {}): FeCAMOracle {
  return new FeCAMOracle(checkOptions("fecamOracle", opts, FECAM_UPDATE_OPTIONS));
}
