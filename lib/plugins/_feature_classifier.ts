/**
 * What the NCM and FeCAM updaters share: a classifier over the model's features before its head
 * that replaces the model's output at evaluation once it has class statistics, the features of a
 * dataset, and the experiences an oracle keeps.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { Dataset } from "../data/dataset.ts";
import type { Experience } from "../data/experience.ts";
import { extractFeaturesAsync, type Features, hasEmbed } from "../models/features.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { StrategyPlugin } from "../strategy/plugin.ts";
import { ClassBalancedStoragePolicy, StoragePolicy } from "./storage_policy.ts";

/** A classifier over features: NCMClassifier or FeCAMClassifier. */
export interface FeatureClassifier {
  readonly hasMeans: boolean;
  forward(features: tf.Tensor, width?: number): tf.Tensor2D;
}

/**
 * A plugin that keeps `classifier` up to date after each training experience and classifies by
 * it at evaluation (Avalanche's model's `eval_classifier`): `afterEvalForward` replaces the
 * output by the classifier's logits of `model.embed(x)`, once it has statistics.
 */
export abstract class FeatureClassifierUpdate<C extends FeatureClassifier> extends StrategyPlugin {
  /** The classifier used at evaluation. */
  readonly classifier: C;

  constructor(classifier: C) {
    super();
    this.classifier = classifier;
  }

  /** Refuses a model without features before its head. */
  beforeTraining(ctx: StrategyContext): void {
    if (!hasEmbed(ctx.model)) {
      throw new TypeError(
        `${this.constructor.name} classifies the features before the head: use a model with ` +
          "embed(x) (mlp, cnn)",
      );
    }
  }

  /** The classifier's logits of the model's features replace the output. */
  afterEvalForward(ctx: StrategyContext): void {
    const batch = ctx.batch, model = ctx.model;
    if (!this.classifier.hasMeans || !batch || !hasEmbed(model)) return;
    const width = ctx.output ? ctx.output.shape[ctx.output.rank - 1] : undefined;
    ctx.output = this.classifier.forward(model.embed(batch.x), width);
  }

  /**
   * The model's features of `data` (in eval mode), with the data's labels; read asynchronously
   * (the "webgpu" backend cannot read GPU data synchronously).
   */
  protected async features(
    ctx: StrategyContext,
    data: Dataset,
  ): Promise<{ f: Features; y: Int32Array }> {
    const f = await extractFeaturesAsync(ctx.model, data, {
      batchSize: ctx.settings.evalBatchSize,
    });
    return { f, y: Int32Array.from(data.targets) };
  }
}

/**
 * The experiences an oracle has seen, as references that a checkpoint can hold (stream and id)
 * and that {@link SeenExperiences.restore} attaches again to their data.
 */
export class SeenExperiences {
  #seen: { stream: string; id: number; dataset: Dataset | undefined }[] = [];

  constructor(readonly owner: string) {}

  /** Adds an experience (once). */
  add(exp: Experience): void {
    if (!this.#seen.some((s) => s.stream === exp.stream && s.id === exp.id)) {
      this.#seen.push({ stream: exp.stream, id: exp.id, dataset: exp.dataset });
    }
  }

  /** The datasets, in the order seen; an error if a restored one was not attached again. */
  datasets(): Dataset[] {
    return this.#seen.map((s) => {
      if (!s.dataset) {
        throw new RangeError(
          `${this.owner} was restored from a checkpoint that had seen experience ${s.id} of ` +
            `stream "${s.stream}": give it the training stream again with ` +
            "plugin.restoreExperiences(bench.train)",
        );
      }
      return s.dataset;
    });
  }

  /** The references as plain data. */
  state(): { stream: string; id: number }[] {
    return this.#seen.map(({ stream, id }) => ({ stream, id }));
  }

  /** Restores references (their data is attached by {@link SeenExperiences.restore}). */
  loadState(state: { stream: string; id: number }[]): void {
    if (!Array.isArray(state)) throw new TypeError(`Not a ${this.owner} state`);
    this.#seen = state.map(({ stream, id }) => ({ stream, id, dataset: undefined }));
  }

  /** Attaches the data of the experiences referred to, from `experiences`. */
  restore(experiences: Iterable<Experience>): void {
    const list = [...experiences];
    for (const s of this.#seen) {
      const e = list.find((x) => x.stream === s.stream && x.id === s.id);
      if (e) s.dataset = e.dataset;
    }
  }
}

/** The memory of a Memory*Update: the one given, or a class-balanced one of `memSize`. */
export function memoryOf(
  who: string,
  memSize: number,
  storagePolicy: StoragePolicy | null | undefined,
): StoragePolicy {
  if (storagePolicy !== undefined && storagePolicy !== null) {
    if (!(storagePolicy instanceof StoragePolicy)) {
      throw new TypeError(
        `${who}: storagePolicy must be a StoragePolicy (e.g. classBalanced(...))`,
      );
    }
    return storagePolicy;
  }
  if (typeof memSize !== "number" || !Number.isInteger(memSize) || memSize < 1) {
    throw new RangeError(`${who}: memSize must be an integer ≥ 1 (samples kept), got ${memSize}`);
  }
  return new ClassBalancedStoragePolicy(memSize);
}
