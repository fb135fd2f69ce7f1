/**
 * Deep Streaming LDA as a strategy (Avalanche 0.6's `StreamingLDA`): training fits an
 * {@link SLDAClassifier} one sample at a time instead of descending a gradient; evaluation,
 * metrics, loggers and checkpoints are the template's.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { SLDAClassifier, type SLDAState } from "../models/slda.ts";
import type { Criterion } from "../nn/losses.ts";
import { Module } from "../nn/module.ts";
import type { StrategyContext } from "../strategy/context.ts";
import type { Plugin } from "../strategy/plugin.ts";
import { STRATEGY_OPTIONS } from "../strategy/options.ts";
import {
  type HookRunner,
  type RestoreOptions,
  Strategy,
  type StrategyOptions,
} from "../strategy/template.ts";
import { anyOf, checkOptions, instanceOf, oneOf, type OptionSpec } from "../options.ts";

/** Options of {@link StreamingLDA} and {@link streamingLDA}. */
export interface StreamingLDAOptions extends Omit<StrategyOptions, "model" | "optimizer"> {
  /**
   * The fixed feature extractor (Avalanche's `slda_model`), e.g. a classifier trained before;
   * null: the raw inputs, flattened, are the features. @default null
   */
  model?: Module | null;
  /** Size of a feature vector (Avalanche's `input_size`). */
  inputSize: number;
  /** Number of classes of the whole stream (Avalanche's `num_classes`). */
  numClasses: number;
  /** `"embed"`: the model's features before its head; null: its output. @default null */
  outputLayerName?: "embed" | null;
  /** Shrinkage of the covariance towards the identity. @default 1e-4 */
  shrinkageParam?: number;
  /** Update the covariance with every sample, else only the class means. @default true */
  streamingUpdateSigma?: boolean;
}

const { model: _model, optimizer: _optimizer, ...STRATEGY_BUT_MODEL } = STRATEGY_OPTIONS;

const SLDA_OPTIONS: OptionSpec<StreamingLDAOptions> = {
  ...STRATEGY_BUT_MODEL,
  model: anyOf(instanceOf(Module), "null"),
  inputSize: "integer",
  numClasses: "integer",
  outputLayerName: anyOf(oneOf("embed"), "null"),
  shrinkageParam: "number",
  streamingUpdateSigma: "boolean",
};

/** Hooks a strategy without backward pass never calls (Avalanche warns about them). */
const NO_BACKWARD = ["beforeBackward", "afterBackward"] as const;

/**
 * Deep Streaming Linear Discriminant Analysis (Hayes and Kanan, CVPR Workshops 2020), Avalanche
 * 0.6's `StreamingLDA(slda_model, criterion, input_size, num_classes, output_layer_name=None,
 * shrinkage_param=1e-4, streaming_update_sigma=True, train_epochs=1, train_mb_size=1,
 * eval_mb_size=1, device, plugins, evaluator, eval_every)`. Its model is an
 * {@link SLDAClassifier} around the feature extractor given (`strategy.model`).
 *
 * A training iteration (Avalanche's `training_epoch`): `beforeForward`; the LDA scores of the
 * minibatch's features as the output (with the statistics before this minibatch), `afterForward`;
 * the criterion's loss on them; `beforeUpdate`; each sample fitted in turn
 * ({@link SLDAClassifier.fit}); `afterUpdate`. There is no backward pass and no optimizer: a
 * plugin with `beforeBackward` or `afterBackward` is refused (Avalanche warns). The fitted
 * statistics (means, counts, covariance) are part of `checkpoint()`.
 *
 * Where we differ: the batch sizes default to the template's (32 for training, 256 for
 * evaluation; Avalanche's 1 and 1) since samples are fitted one at a time whatever the
 * minibatch, which changes only the training outputs (scored before their minibatch's fit);
 * `device` is accepted and ignored. See {@link SLDAClassifier} for the model's differences.
 *
 * @example
 * ```ts ignore
 * import { splitMNIST, streamingLDA } from "../../mod.ts";
 * const bench = await splitMNIST({ experiences: 5 });
 * const strategy = streamingLDA({ inputSize: 784, numClasses: 10 }); // LDA on raw pixels
 * for (const exp of bench.train) { await strategy.train(exp); await strategy.eval(bench.test); }
 * ```
 */
export class StreamingLDA extends Strategy {
  /** The strategy's model: the feature extractor and the streaming LDA. */
  declare readonly model: SLDAClassifier;

  /**
   * @param sldaModel the feature extractor (null: raw inputs); or all options as an object.
   * @param criterion the loss reported for the training and evaluation outputs (default cross-entropy).
   * @param inputSize size of a feature vector.
   * @param numClasses classes of the whole stream.
   * @param outputLayerName `"embed"` for the features before the head, null for the output.
   * @param shrinkageParam covariance shrinkage (default 1e-4).
   * @param streamingUpdateSigma update the covariance with each sample (default true).
   * @param trainEpochs epochs per experience (default 1).
   * @param trainMbSize training minibatch size (default 32).
   * @param evalMbSize evaluation minibatch size (default 256).
   * @param device ignored (tfjs has one backend per process).
   * @param plugins plugins, run in this order.
   * @param evaluator the evaluation plugin.
   * @param evalEvery periodic evaluation (-1 never, default).
   */
  constructor(
    sldaModel: Module | null | StreamingLDAOptions,
    criterion?: Criterion | null,
    inputSize?: number,
    numClasses?: number,
    outputLayerName?: "embed" | null,
    shrinkageParam?: number,
    streamingUpdateSigma?: boolean,
    trainEpochs?: number,
    trainMbSize?: number,
    evalMbSize?: number,
    device?: string | null,
    plugins?: Plugin[] | null,
    evaluator?: Plugin | null,
    evalEvery?: number,
  ) {
    const positional = sldaModel === null || sldaModel instanceof Module;
    if (!positional && (typeof sldaModel !== "object" || sldaModel === undefined)) {
      throw new TypeError(
        "StreamingLDA expects a feature extractor (a Module, or null for raw inputs) or an " +
          `options object, got ${String(sldaModel)}`,
      );
    }
    if (device !== undefined && device !== null && typeof device !== "string") {
      throw new TypeError(`StreamingLDA: device must be a string (it is ignored), got ${device}`);
    }
    const o: StreamingLDAOptions = positional
      ? {
        model: sldaModel as Module | null,
        criterion: criterion ?? undefined,
        inputSize: inputSize!,
        numClasses: numClasses!,
        outputLayerName,
        shrinkageParam,
        streamingUpdateSigma,
        epochs: trainEpochs,
        batchSize: trainMbSize,
        evalBatchSize: evalMbSize,
        plugins: plugins ?? undefined,
        evaluator: evaluator ?? undefined,
        evalEvery,
      }
      : checkOptions("StreamingLDA", sldaModel as StreamingLDAOptions, SLDA_OPTIONS);
    const {
      model,
      inputSize: d,
      numClasses: k,
      outputLayerName: layer,
      shrinkageParam: s,
      streamingUpdateSigma: streaming,
      ...rest
    } = o;
    for (const [i, p] of (rest.plugins ?? []).entries()) {
      const bad = NO_BACKWARD.filter((h) =>
        typeof (p as Record<string, unknown>)?.[h] === "function"
      );
      if (bad.length > 0) {
        throw new TypeError(
          `StreamingLDA has no backward pass: plugin ${p.name ?? i} has ${bad.join(" and ")}, ` +
            `which would never run`,
        );
      }
    }
    const slda = new SLDAClassifier({
      featureExtractor: model ?? null,
      inputSize: d,
      numClasses: k,
      outputLayerName: layer ?? null,
      shrinkageParam: s,
      streamingUpdateSigma: streaming,
    });
    const clean = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
    super({ name: "StreamingLDA", ...clean, model: slda });
  }

  /** Scores the minibatch with the statistics so far, then fits its samples one at a time. */
  protected override async trainingUpdate(
    ctx: StrategyContext,
    hooks: HookRunner,
  ): Promise<void> {
    const model = this.model, batch = ctx.batch!;
    model.eval(); // the extractor is fixed: no dropout, as Avalanche's slda_model.eval()
    hooks.callSync("beforeForward", ctx);
    const features = model.features(batch.x, {
      taskLabels: batch.t,
      taskLabelsArray: batch.data.t,
    });
    ctx.output = model.predict(features);
    hooks.callSync("afterForward", ctx);
    ctx.loss = this.criterion(ctx.output, batch.y);
    await hooks.call("beforeUpdate", ctx);
    const values = (await features.data()) as Float32Array;
    model.fitBatch({ values, n: batch.n, dim: model.inputSize }, batch.data.y);
    tf.dispose(features);
    await hooks.call("afterUpdate", ctx);
  }

  /**
   * Fits a base initialization set at once (Avalanche's `fit_base`): features of `x` [n, ...]
   * through the extractor, class means and an OAS covariance (see {@link SLDAClassifier.fitBase}).
   */
  fitBase(x: tf.Tensor, labels: ArrayLike<number>): void {
    const f = this.model.features(x);
    try {
      const values = f.dataSync() as Float32Array;
      this.model.fitBase({ values, n: f.shape[0], dim: this.model.inputSize }, labels);
    } finally {
      f.dispose();
    }
  }

  protected override extraState(): Record<string, unknown> {
    return { slda: this.model.ldaState() };
  }

  protected override loadExtraState(extra: Record<string, unknown>, _opts: RestoreOptions): void {
    if (extra.slda === undefined) {
      throw new RangeError(
        "This checkpoint has no StreamingLDA statistics: it is not of this strategy",
      );
    }
    this.model.loadLdaState(extra.slda as SLDAState);
  }
}

/**
 * A {@link StreamingLDA} strategy.
 *
 * @example LDA on raw inputs: two samples, two classes
 * ```ts
 * import { setBackend } from "../backend.ts";
 * import { ArrayDataset } from "../data/dataset.ts";
 * import { makeExperience } from "../data/experience.ts";
 * import { streamingLDA } from "./slda.ts";
 * await setBackend("cpu");
 * const data = new ArrayDataset({ x: new Float32Array([0, 0, 2, 0]), y: [0, 1], inputShape: [2] });
 * const info = {
 *   name: "two points",
 *   scenario: "class-incremental" as const,
 *   numClasses: 2,
 *   inputShape: [2],
 *   numExperiences: 1,
 * };
 * const exp = makeExperience("train", 0, data, info);
 * const strategy = streamingLDA({ inputSize: 2, numClasses: 2, seed: 0 });
 * await strategy.train(exp);
 * console.assert(strategy.model.numUpdates === 2);
 * console.assert((await strategy.eval(exp)).accuracy === 1);
 * ```
 */
export function streamingLDA(opts: StreamingLDAOptions): StreamingLDA {
  return new StreamingLDA(checkOptions("streamingLDA", opts, SLDA_OPTIONS));
}
