/**
 * Wall-clock time of each minibatch, epoch, experience or stream.
 *
 * @module
 */
import { windowed } from "./_windowed.ts";
import {
  GRANULARITY_OPTIONS,
  type GranularityOptions,
  type Metric,
  resolveWindows,
  rowBase,
} from "./metric.ts";
import { checkOptions } from "../options.ts";

/** Options of {@link timing}. */
export interface TimingOptions extends GranularityOptions {
  /** What each value covers. @default ["epoch", "experience", "stream"] */
  at?: GranularityOptions["at"];
}

/**
 * Elapsed seconds of each window (`"time"` rows; Avalanche's `Time_MB`, `Time_Epoch`,
 * `Time_Exp`, `Time_Stream`), from the hook that opens it to the hook that closes it. A
 * training window includes the periodic evaluations run inside it. On asynchronous backends
 * (WebGL, WebGPU) a minibatch time measures the dispatch, not the device's work; epoch and
 * longer windows end with a read-back, so they are exact.
 *
 * @example Time per training epoch and per training experience
 * ```ts
 * import { timing } from "./timing.ts";
 * const metric = timing({ at: ["epoch", "experience"], phase: "train" });
 * console.assert(metric.name === "time");
 * ```
 */
export function timing(opts: TimingOptions = {}): Metric {
  checkOptions("timing", opts, GRANULARITY_OPTIONS);
  const windows = resolveWindows("timing", opts, ["epoch", "experience", "stream"]);
  const started = new Map<string, number>();
  return windowed({
    name: "time",
    windows,
    start(phase, at) {
      started.set(`${phase}/${at}`, performance.now());
    },
    end(phase, at, ctx) {
      const t0 = started.get(`${phase}/${at}`);
      started.delete(`${phase}/${at}`);
      if (t0 === undefined) return [];
      return [{
        ...rowBase(ctx, phase, at),
        metric: "time",
        value: (performance.now() - t0) / 1000,
      }];
    },
  });
}
