/**
 * Plugins that keep a nearest-class-mean classifier's class means up to date after each
 * training experience and classify by it at evaluation (Avalanche 0.6's
 * `training/plugins/update_ncm.py`: `CurrentDataNCMUpdate`, `MemoryNCMUpdate`, `NCMOracle`).
 *
 * @module
 */
import type { Experience } from "../data/experience.ts";
import { classMeansOf, NCMClassifier } from "../models/ncm.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { concatDatasets } from "../data/dataset.ts";
import { anyOf, checkOptions, instanceOf, type OptionSpec } from "../options.ts";
import { FeatureClassifierUpdate, memoryOf, SeenExperiences } from "./_feature_classifier.ts";
import { StoragePolicy, type StoragePolicyState } from "./storage_policy.ts";

/** Options of {@link CurrentDataNCMUpdate} and {@link NCMOracle}. */
export interface NCMUpdateOptions {
  /** The classifier kept up to date (and used at evaluation). @default new NCMClassifier() */
  classifier?: NCMClassifier;
}

const NCM_UPDATE_OPTIONS: OptionSpec<NCMUpdateOptions> = {
  classifier: instanceOf(NCMClassifier),
};

/** Options of {@link MemoryNCMUpdate}. */
export interface MemoryNCMUpdateOptions extends NCMUpdateOptions {
  /** Samples of the default class-balanced memory. @default 2000 */
  memSize?: number;
  /** The memory. @default new ClassBalancedStoragePolicy(memSize) */
  storagePolicy?: StoragePolicy | null;
}

const MEMORY_NCM_OPTIONS: OptionSpec<MemoryNCMUpdateOptions> = {
  ...NCM_UPDATE_OPTIONS,
  memSize: "integer",
  storagePolicy: anyOf(instanceOf(StoragePolicy), "null"),
};

function classifierOf(who: string, opts: NCMUpdateOptions | undefined): NCMClassifier {
  const c = opts?.classifier ?? new NCMClassifier();
  if (!(c instanceof NCMClassifier)) {
    throw new TypeError(`${who}: classifier must be an NCMClassifier`);
  }
  return c;
}

/** Plain-data state of the NCM updaters. */
export interface NCMUpdateState {
  version: 1;
  classMeans: [number, number[]][];
  memory?: StoragePolicyState;
  seen?: { stream: string; id: number }[];
}

function checkState(who: string, state: unknown): NCMUpdateState {
  const s = state as NCMUpdateState;
  if (!s || s.version !== 1 || !Array.isArray(s.classMeans)) {
    throw new TypeError(`Not a ${who} state (version ${String(s?.version)})`);
  }
  return s;
}

/**
 * Avalanche's `CurrentDataNCMUpdate`: after each training experience, the class means of the
 * model's features over the experience's adapted training data (`ctx.dataset`; normalized as
 * the classifier, see {@link classMeansOf}) update the classifier's with momentum 0.5 (a class
 * seen before gets the average of its old and new means, see
 * {@link NCMClassifier.updateClassMeansDict}); at evaluation the classifier's logits of the
 * features replace the model's output.
 *
 * Where we differ: Avalanche updates `model.eval_classifier`, the classifier of a model built
 * with separate training and evaluation heads; our models have one head, so the plugin holds
 * the classifier (`classifier`, shareable among plugins) and applies it in `afterEvalForward`,
 * as iCaRL does. Before any update the model's own output is kept.
 *
 * @example
 * ```ts ignore
 * const strategy = naive({ model: mlp(), plugins: [new CurrentDataNCMUpdate()] });
 * ```
 */
export class CurrentDataNCMUpdate extends FeatureClassifierUpdate<NCMClassifier> {
  /** @param opts the classifier to keep up to date (default a new normalizing one). */
  constructor(opts: NCMUpdateOptions = {}) {
    super(
      classifierOf(
        "CurrentDataNCMUpdate",
        checkOptions("CurrentDataNCMUpdate", opts, NCM_UPDATE_OPTIONS),
      ),
    );
  }

  /** Updates the class means from the experience's data. */
  async afterTrainingExp(ctx: StrategyContext): Promise<void> {
    const { f, y } = await this.features(ctx, ctx.dataset!);
    this.classifier.updateClassMeansDict(classMeansOf(f, y, this.classifier.normalize));
  }

  /** The class means, as plain data. */
  state(): NCMUpdateState {
    return { version: 1, classMeans: this.classifier.state() };
  }

  /** Restores what {@link CurrentDataNCMUpdate.state} returned. */
  loadState(state: unknown): void {
    this.classifier.loadState(checkState("CurrentDataNCMUpdate", state).classMeans);
  }
}

/**
 * Avalanche's `MemoryNCMUpdate(mem_size=2000, storage_policy=None)`: after each training
 * experience the memory (by default a class-balanced one of `memSize` samples,
 * `ClassBalancedStoragePolicy`, Avalanche's `ClassBalancedBuffer`) takes its samples of
 * the experience, and the classifier's means are replaced by those of the model's features over
 * the memory (as iCaRL's means of exemplars). Evaluation as {@link CurrentDataNCMUpdate} (where
 * we differ from Avalanche is said there).
 *
 * @example
 * ```ts
 * import { MemoryNCMUpdate } from "./update_ncm.ts";
 * const plugin = new MemoryNCMUpdate(200);
 * console.assert(plugin.storagePolicy.maxSize === 200);
 * ```
 */
export class MemoryNCMUpdate extends FeatureClassifierUpdate<NCMClassifier> {
  /** The memory whose samples give the class means. */
  readonly storagePolicy: StoragePolicy;

  /**
   * @param memSize samples of the default memory (default 2000); or all options as an object.
   * @param storagePolicy the memory (default class-balanced).
   */
  constructor(
    memSize: number | MemoryNCMUpdateOptions = 2000,
    storagePolicy?: StoragePolicy | null,
  ) {
    const o: MemoryNCMUpdateOptions = typeof memSize === "object" && memSize !== null
      ? checkOptions("MemoryNCMUpdate", memSize, MEMORY_NCM_OPTIONS)
      : { memSize, storagePolicy };
    super(classifierOf("MemoryNCMUpdate", o));
    this.storagePolicy = memoryOf("MemoryNCMUpdate", o.memSize ?? 2000, o.storagePolicy);
  }

  /** Updates the memory, then replaces the class means by the memory's. */
  async afterTrainingExp(ctx: StrategyContext): Promise<void> {
    this.storagePolicy.update(ctx);
    const memory = this.storagePolicy.buffer;
    if (memory.length === 0) return;
    const { f, y } = await this.features(ctx, memory);
    this.classifier.replaceClassMeansDict(classMeansOf(f, y, this.classifier.normalize));
  }

  /** The memory and the class means, as plain data. */
  state(): NCMUpdateState {
    return {
      version: 1,
      classMeans: this.classifier.state(),
      memory: this.storagePolicy.state(),
    };
  }

  /** Restores what {@link MemoryNCMUpdate.state} returned. */
  loadState(state: unknown): void {
    const s = checkState("MemoryNCMUpdate", state);
    if (!s.memory) throw new TypeError("Not a MemoryNCMUpdate state: it has no memory");
    this.storagePolicy.loadState(s.memory);
    this.classifier.loadState(s.classMeans);
  }
}

/**
 * Avalanche's `NCMOracle`: after each training experience, the class means are replaced by
 * those of the model's features over every training experience seen so far (their whole data:
 * an upper bound for NCM methods, not a continual learner). Evaluation as
 * {@link CurrentDataNCMUpdate}. Its checkpoint refers to the experiences by stream and id: a
 * restored oracle needs them again, `plugin.restoreExperiences(bench.train)`.
 */
export class NCMOracle extends FeatureClassifierUpdate<NCMClassifier> {
  readonly #seen = new SeenExperiences("NCMOracle");

  /** @param opts the classifier to keep up to date (default a new normalizing one). */
  constructor(opts: NCMUpdateOptions = {}) {
    super(classifierOf("NCMOracle", checkOptions("NCMOracle", opts, NCM_UPDATE_OPTIONS)));
  }

  /** Replaces the class means by those of all the data seen. */
  async afterTrainingExp(ctx: StrategyContext): Promise<void> {
    this.#seen.add(ctx.experience!);
    const { f, y } = await this.features(ctx, concatDatasets(this.#seen.datasets()));
    this.classifier.replaceClassMeansDict(classMeansOf(f, y, this.classifier.normalize));
  }

  /** Attaches the data of the experiences a restored checkpoint refers to. */
  restoreExperiences(experiences: Iterable<Experience>): void {
    this.#seen.restore(experiences);
  }

  /** The class means and the experiences seen (stream and id), as plain data. */
  state(): NCMUpdateState {
    return { version: 1, classMeans: this.classifier.state(), seen: this.#seen.state() };
  }

  /** Restores what {@link NCMOracle.state} returned (then see {@link NCMOracle.restoreExperiences}). */
  loadState(state: unknown): void {
    const s = checkState("NCMOracle", state);
    this.#seen.loadState(s.seen ?? []);
    this.classifier.loadState(s.classMeans);
  }
}

/** A {@link CurrentDataNCMUpdate}. */
export function currentDataNCMUpdate(opts: NCMUpdateOptions = {}): CurrentDataNCMUpdate {
  return new CurrentDataNCMUpdate(checkOptions("currentDataNCMUpdate", opts, NCM_UPDATE_OPTIONS));
}

/**
 * A {@link MemoryNCMUpdate}.
 *
 * @example
 * ```ts
 * import { memoryNCMUpdate } from "./update_ncm.ts";
 * console.assert(memoryNCMUpdate({ memSize: 100 }).storagePolicy.maxSize === 100);
 * ```
 */
export function memoryNCMUpdate(opts: MemoryNCMUpdateOptions = {}): MemoryNCMUpdate {
  return new MemoryNCMUpdate(checkOptions("memoryNCMUpdate", opts, MEMORY_NCM_OPTIONS));
}

/** An {@link NCMOracle}. */
export function ncmOracle(opts: NCMUpdateOptions = {}): NCMOracle {
  return new NCMOracle(checkOptions("ncmOracle", opts, NCM_UPDATE_OPTIONS));
}
