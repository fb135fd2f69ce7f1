/**
 * Experience replay (Avalanche's `ReplayPlugin` and `Replay` strategy): a memory of past samples,
 * chosen by a {@link StoragePolicy}, is mixed into every training minibatch.
 *
 * @module
 */
import type { Dataset } from "../data/dataset.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { checkBatchSize } from "../data/loader.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { withPlugin } from "../strategy/strategies.ts";
import type { Strategy, StrategyOptions } from "../strategy/template.ts";
import { checkOptions, instanceOf, type OptionSpec } from "../options.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import { ReplayDataLoader } from "./replay_loader.ts";
import {
  ExperienceBalancedStoragePolicy,
  StoragePolicy,
  type StoragePolicyState,
} from "./storage_policy.ts";

/** Options of {@link ReplayPlugin} and {@link replayPlugin}. */
export interface ReplayPluginOptions {
  /** Memory capacity (samples). Default: the storage policy's `maxSize`, else 200. */
  memSize?: number;
  /**
   * Which samples to keep. @default new ExperienceBalancedStoragePolicy(memSize) (adaptive: the
   * memory split equally among the experiences seen)
   */
  storagePolicy?: StoragePolicy;
  /** Current samples per minibatch. Default: the strategy's `batchSize`. */
  batchSize?: number;
  /** Memory samples per minibatch. Default: the current batch size. */
  batchSizeMem?: number;
  /** Balance the memory part of each minibatch over task labels. @default false */
  taskBalancedDataLoader?: boolean;
}

/** The keys of {@link ReplayPluginOptions}, for checking what users pass. */
const REPLAY_PLUGIN_OPTIONS: OptionSpec<ReplayPluginOptions> = {
  memSize: "integer",
  storagePolicy: instanceOf(StoragePolicy),
  batchSize: "integer",
  batchSizeMem: "integer",
  taskBalancedDataLoader: "boolean",
};

/** Plain-data state of a {@link ReplayPlugin}. */
export interface ReplayPluginState {
  /** The storage policy's state (memory samples included). */
  storagePolicy: StoragePolicyState;
}

/** `null` (Python's `None`) and `undefined` both mean "left out". */
function given<T>(v: T | null | undefined): T | undefined {
  return v === null ? undefined : v;
}

/**
 * Positional arguments of {@link ReplayPlugin} in either order: the second is a storage policy in
 * the earlier order and the current batch size in Avalanche 0.6's (whose storage policy is fifth).
 * Only the second and fifth places differ, so the second decides.
 */
function replayPositional(
  memSize: number | null | undefined,
  b: number | StoragePolicy | null | undefined,
  batchSizeMem: number | null | undefined,
  taskBalancedDataLoader: boolean | null | undefined,
  e: StoragePolicy | null | undefined,
): ReplayPluginOptions {
  const rest = {
    memSize: given(memSize),
    batchSizeMem: given(batchSizeMem),
    taskBalancedDataLoader: given(taskBalancedDataLoader),
  };
  if (b instanceof StoragePolicy) {
    if (given(e) !== undefined) {
      throw new TypeError(
        "ReplayPlugin: a storage policy both second (the earlier order) and fifth (Avalanche " +
          "0.6's order); pass new ReplayPlugin(memSize, batchSize, batchSizeMem, " +
          "taskBalancedDataLoader, storagePolicy) or new ReplayPlugin({ memSize, storagePolicy })",
      );
    }
    return { ...rest, storagePolicy: b };
  }
  const batchSize = given(b);
  if (batchSize !== undefined && typeof batchSize !== "number") {
    throw new TypeError(
      `ReplayPlugin: the second argument must be the batch size (a number, Avalanche 0.6's ` +
        `order) or a StoragePolicy (the earlier order), got ${String(batchSize)}`,
    );
  }
  return { ...rest, batchSize, storagePolicy: given(e) };
}

/**
 * Experience replay (Avalanche's `ReplayPlugin`; Chaudhry et al. 2019, "On Tiny Episodic
 * Memories in Continual Learning", arXiv:1902.10486; Rolnick et al. 2019, "Experience Replay for
 * Continual Learning").
 *
 * - `beforeTrainingExp`: once the memory holds samples, the strategy's loader is replaced by a
 *   {@link ReplayDataLoader}: each minibatch is `batchSize` current samples (the strategy's batch
 *   size unless given) followed by `batchSizeMem` (default: the same) memory samples, drawn by
 *   cycling through shuffled passes over the memory; an epoch has as many minibatches as the
 *   current data alone.
 * - `afterTrainingExp`: the memory is updated with the experience's data by the storage policy
 *   (default: {@link ExperienceBalancedStoragePolicy}, adaptive).
 *
 * Online streams: with the default policy, consecutive sub-experiences of the same origin share
 * one memory group (see {@link ExperienceBalancedStoragePolicy}); Avalanche's online examples
 * use `storagePolicy: classBalanced({ memSize })`, which also works here.
 *
 * Constructors: Avalanche 0.6's order `new ReplayPlugin(memSize?, batchSize?, batchSizeMem?,
 * taskBalancedDataLoader?, storagePolicy?)` (`new ReplayPlugin(500, 32)`), the earlier order
 * `new ReplayPlugin(memSize?, storagePolicy?, batchSizeMem?, taskBalancedDataLoader?)`, told apart
 * by the second argument (a storage policy: the earlier order), or
 * `new ReplayPlugin({ memSize, storagePolicy, batchSizeMem, ... })`. The third and fourth
 * arguments mean the same in both orders; `null` stands for an argument left out (Python's `None`).
 *
 * @example
 * ```ts ignore
 * const strategy = naive({ model, batchSize: 128, plugins: [new ReplayPlugin(500)] });
 * for (const exp of bench.train) await strategy.train(exp);
 * ```
 */
export class ReplayPlugin extends StrategyPlugin {
  /** Memory capacity (samples). */
  readonly memSize: number;
  /** The policy that chooses the samples kept. */
  readonly storagePolicy: StoragePolicy;
  /** Current samples per minibatch (undefined: the strategy's batch size). */
  readonly batchSize: number | undefined;
  /** Memory samples per minibatch (undefined: the current batch size). */
  readonly batchSizeMem: number | undefined;
  /** Whether the memory part of each minibatch is balanced over task labels. */
  readonly taskBalancedDataLoader: boolean;

  /** From options. */
  constructor(options: ReplayPluginOptions);
  /**
   * Avalanche 0.6's order: `(mem_size, batch_size, batch_size_mem, task_balanced_dataloader,
   * storage_policy)`.
   */
  constructor(
    memSize?: number | null,
    batchSize?: number | null,
    batchSizeMem?: number | null,
    taskBalancedDataLoader?: boolean | null,
    storagePolicy?: StoragePolicy | null,
  );
  /** The earlier order: `(memSize, storagePolicy, batchSizeMem, taskBalancedDataLoader)`. */
  constructor(
    memSize?: number | null,
    storagePolicy?: StoragePolicy | null,
    batchSizeMem?: number | null,
    taskBalancedDataLoader?: boolean | null,
  );
  constructor(
    a?: number | ReplayPluginOptions | null,
    b?: number | StoragePolicy | null,
    batchSizeMem?: number | null,
    taskBalancedDataLoader?: boolean | null,
    e?: StoragePolicy | null,
  ) {
    super();
    const o: ReplayPluginOptions = a !== null && typeof a === "object"
      ? checkOptions("ReplayPlugin", a, REPLAY_PLUGIN_OPTIONS)
      : replayPositional(a, b, batchSizeMem, taskBalancedDataLoader, e);
    if (a !== undefined && a !== null && typeof a !== "number" && typeof a !== "object") {
      throw new TypeError(
        `ReplayPlugin expects memSize (a number) or an options object, got ${String(a)}`,
      );
    }
    if (o.storagePolicy !== undefined && !(o.storagePolicy instanceof StoragePolicy)) {
      throw new TypeError(
        "storagePolicy must be a StoragePolicy, e.g. experienceBalanced({ memSize }) or " +
          "classBalanced({ memSize })",
      );
    }
    const memSize = o.memSize ?? o.storagePolicy?.maxSize ?? 200;
    if (!Number.isInteger(memSize) || memSize < 1) {
      throw new RangeError(`memSize must be an integer ≥ 1, got ${memSize}`);
    }
    if (o.storagePolicy && o.storagePolicy.maxSize !== memSize) {
      throw new RangeError(
        `memSize (${memSize}) differs from the storage policy's maxSize ` +
          `(${o.storagePolicy.maxSize}): leave memSize out or build the policy with the same size`,
      );
    }
    if (o.batchSize !== undefined) checkBatchSize("batchSize", o.batchSize);
    if (o.batchSizeMem !== undefined) checkBatchSize("batchSizeMem", o.batchSizeMem);
    if (o.taskBalancedDataLoader !== undefined && typeof o.taskBalancedDataLoader !== "boolean") {
      throw new TypeError(
        `taskBalancedDataLoader must be true or false, got ${String(o.taskBalancedDataLoader)}`,
      );
    }
    this.memSize = memSize;
    this.storagePolicy = o.storagePolicy ?? new ExperienceBalancedStoragePolicy(memSize, true);
    this.batchSize = o.batchSize;
    this.batchSizeMem = o.batchSizeMem;
    this.taskBalancedDataLoader = o.taskBalancedDataLoader ?? false;
  }

  /** The memory's groups (Avalanche's `ext_mem`): key → samples. */
  get extMem(): ReadonlyMap<number, Dataset> {
    return this.storagePolicy.groups;
  }

  /** The samples in memory. */
  get buffer(): Dataset {
    return this.storagePolicy.buffer;
  }

  /** Replaces the loader with one that appends memory samples to each minibatch. */
  beforeTrainingExp(ctx: StrategyContext): void {
    const memory = this.storagePolicy.buffer;
    if (memory.length === 0) return;
    const batchSize = this.batchSize ?? ctx.settings.batchSize;
    ctx.dataLoader = new ReplayDataLoader(ctx.dataset!, memory, {
      batchSize,
      batchSizeMem: this.batchSizeMem ?? batchSize,
      shuffle: ctx.settings.shuffle,
      dropLast: ctx.settings.dropLast,
      taskBalancedDataLoader: this.taskBalancedDataLoader,
    });
  }

  /** Adds the experience's data to the memory through the storage policy. */
  afterTrainingExp(ctx: StrategyContext): void {
    this.storagePolicy.update(ctx);
  }

  /** The memory (samples included) as plain data. */
  state(): ReplayPluginState {
    return { storagePolicy: this.storagePolicy.state() };
  }

  /** Restores the memory from {@link ReplayPlugin.state}. */
  loadState(state: unknown): void {
    const s = state as ReplayPluginState;
    if (!s || typeof s !== "object" || !s.storagePolicy) {
      throw new TypeError("Not a ReplayPlugin state: expected { storagePolicy }");
    }
    this.storagePolicy.loadState(s.storagePolicy);
  }

  /** Holds no tensors: nothing to free (present for uniformity with other plugins). */
  dispose(): void {}
}

/**
 * An experience-replay plugin ({@link ReplayPlugin}).
 *
 * @example
 * ```ts
 * import { classBalanced } from "./storage_policy.ts";
 * import { replayPlugin } from "./replay.ts";
 * const plugin = replayPlugin({ memSize: 500, storagePolicy: classBalanced({ memSize: 500 }) });
 * console.assert(plugin.memSize === 500);
 * ```
 */
export function replayPlugin(opts: ReplayPluginOptions = {}): ReplayPlugin {
  return new ReplayPlugin(checkOptions("replayPlugin", opts, REPLAY_PLUGIN_OPTIONS));
}

/** Options of {@link replay}: the strategy's, plus the plugin's. */
export interface ReplayOptions extends StrategyOptions, ReplayPluginOptions {}

/**
 * The Replay strategy: fine-tuning with a {@link ReplayPlugin} (Avalanche's `Replay`).
 *
 * @example
 * ```ts ignore
 * const strategy = replay({ model: mlp(), memSize: 500, batchSize: 128, batchSizeMem: 128 });
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export function replay(opts: ReplayOptions): Strategy {
  if (!opts || typeof opts !== "object") {
    throw new TypeError("replay expects an options object { model, memSize, ... }");
  }
  checkOptions("replay", opts, { ...STRATEGY_OPTIONS, ...REPLAY_PLUGIN_OPTIONS });
  const {
    memSize,
    storagePolicy,
    batchSizeMem,
    taskBalancedDataLoader,
    ...rest
  } = opts;
  const plugin = new ReplayPlugin({ memSize, storagePolicy, batchSizeMem, taskBalancedDataLoader });
  return withPlugin("Replay", plugin, rest);
}
