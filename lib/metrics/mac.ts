/**
 * Multiply-accumulate operations (MACs) of the model's forward pass on one sample: a
 * hardware-independent lower bound of its compute cost.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { Conv2d, Linear } from "../nn/layers.ts";
import type { Module } from "../nn/module.ts";
import type { StrategyContext } from "../strategy/context.ts";
import { windowed } from "./_windowed.ts";
import {
  GRANULARITY_OPTIONS,
  type GranularityOptions,
  type Metric,
  resolveWindows,
  rowBase,
} from "./metric.ts";
import { checkOptions } from "../options.ts";

/** Options of {@link countMacs}. */
export interface CountMacsOptions {
  /** Task label of the sample (selects the head of multi-head models). @default 0 */
  taskLabel?: number;
}

/**
 * Counts the multiply-accumulates of one forward pass on one sample of shape `inputShape`: for
 * each `Linear` layer `inFeatures × outFeatures`, for each `Conv2d` layer
 * `outH × outW × outChannels × kernelSize² × inChannels` (Avalanche's MAC counts the same layers
 * but leaves out the input channels of convolutions). Other operations are not counted. The
 * layers are found by walking `model.namedModules()`; output sizes come from running the model
 * on one zero sample in evaluation mode, so only the layers that sample goes through count (one
 * head of a multi-head model).
 *
 * @example A 784-400-10 MLP
 * ```ts
 * import { countMacs } from "./mac.ts";
 * import { mlp } from "../models/mlp.ts";
 * const model = mlp({ input: 784, hidden: [400], outputs: 10, seed: 0 });
 * console.assert(countMacs(model, [784]) === 784 * 400 + 400 * 10);
 * model.dispose();
 * ```
 */
export function countMacs(
  model: Module,
  inputShape: readonly number[],
  opts: CountMacsOptions = {},
): number {
  checkOptions("countMacs", opts, { taskLabel: "integer" });
  const task = opts.taskLabel ?? 0;
  let macs = 0;
  const modules = [...model.namedModules().values()];
  const modes = modules.map((m) => m.training);
  const patched: { m: Module; key: string; own: PropertyDescriptor | undefined }[] = [];
  for (const m of modules) {
    if (!(m instanceof Linear) && !(m instanceof Conv2d)) continue;
    // Linear's products all go through forwardActivated (Sequential calls it directly when it
    // fuses a Linear with the relu after it).
    const key = m instanceof Linear ? "forwardActivated" : "forward";
    const own = Object.getOwnPropertyDescriptor(m, key);
    const original = (m as unknown as Record<string, unknown>)[key];
    patched.push({ m, key, own });
    Object.defineProperty(m, key, {
      configurable: true,
      writable: true,
      value: function (this: Module, x: tf.Tensor, o?: unknown) {
        const y = (original as (x: tf.Tensor, o?: unknown) => tf.Tensor).call(this, x, o);
        if (m instanceof Linear) {
          macs += m.inFeatures * m.outFeatures * (y.size / m.outFeatures);
        } else {
          const c = m as Conv2d;
          macs += y.size * c.kernelSize * c.kernelSize * c.inChannels;
        }
        return y;
      },
    });
  }
  try {
    model.eval();
    tf.tidy(() => {
      model.forward(tf.zeros([1, ...inputShape]), {
        taskLabels: tf.tensor1d([task], "int32"),
        taskLabelsArray: Int32Array.of(task),
      });
    });
  } finally {
    for (const { m, key, own } of patched) {
      if (own) Object.defineProperty(m, key, own);
      else delete (m as unknown as Record<string, unknown>)[key];
    }
    modules.forEach((m, i) => (m.training = modes[i]));
  }
  return macs;
}

/** Options of {@link macs}. */
export interface MacsOptions extends GranularityOptions {
  /** What each value covers. @default ["experience"] (evaluation, as Avalanche's `MAC_Exp`) */
  at?: GranularityOptions["at"];
}

/**
 * The model's MACs on one sample (`"macs"` rows; Avalanche's `MAC_*`), computed with
 * {@link countMacs} when each window closes (cached while the model's parameter shapes, the
 * input shape and the task label stay the same). Useful with growing models.
 *
 * @example
 * ```ts
 * import { macs } from "./mac.ts";
 * console.assert(macs({ at: ["experience"] }).name === "macs");
 * ```
 */
export function macs(opts: MacsOptions = {}): Metric {
  checkOptions("macs", opts, GRANULARITY_OPTIONS);
  const windows = resolveWindows("macs", opts, ["experience"]);
  let cacheKey = "";
  let cached = 0;
  const measure = (ctx: StrategyContext): number => {
    const shape = ctx.dataset?.inputShape ?? ctx.experience?.dataset.inputShape;
    if (!shape) return NaN;
    const task = ctx.experience?.taskLabel ?? 0;
    const params = [...ctx.model.namedParameters()].map(([n, v]) => `${n}:${v.shape}`).join();
    const key = `${shape}|${task}|${params}`;
    if (key !== cacheKey) {
      cached = countMacs(ctx.model, shape, { taskLabel: task });
      cacheKey = key;
    }
    return cached;
  };
  return windowed({
    name: "macs",
    windows,
    start() {},
    end(phase, at, ctx) {
      const value = measure(ctx);
      return Number.isFinite(value) ? [{ ...rowBase(ctx, phase, at), metric: "macs", value }] : [];
    },
  });
}
