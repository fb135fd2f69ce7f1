/**
 * Memory metrics: the process's resident memory and the tensors tfjs holds, at their peak over
 * each window.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { windowed } from "./_windowed.ts";
import {
  GRANULARITY_OPTIONS,
  type GranularityOptions,
  type Metric,
  resolveWindows,
  rowBase,
} from "./metric.ts";
import { checkOptions } from "../options.ts";
import type { MetricRow } from "../data/rows.ts";

/** Options of {@link memory}. */
export interface MemoryOptions extends GranularityOptions {
  /** What each value covers. @default ["epoch", "experience", "stream"] */
  at?: GranularityOptions["at"];
  /** Report the resident set size (`"ram"`). @default true */
  ram?: boolean;
  /** Report tfjs tensor memory (`"tensorMemory"`) and count (`"tensorCount"`). @default true */
  tensors?: boolean;
  /** Minimum milliseconds between two samples inside a window. @default 100 */
  sampleMs?: number;
}

const MIB = 1024 * 1024;

function rss(): number {
  try {
    return Deno.memoryUsage().rss;
  } catch {
    return NaN;
  }
}

/**
 * Peak memory of each window, sampled when it opens, at the end of its iterations (at most
 * every `sampleMs`) and when it closes: `"ram"` is the process's resident set size in MiB
 * (`Deno.memoryUsage().rss`; Avalanche's `MaxRAMUsage_*`), `"tensorMemory"` the MiB held by
 * tfjs tensors (`tf.memory().numBytes`) and `"tensorCount"` the number of tensors (a steady
 * count across epochs means no leak).
 *
 * @example
 * ```ts
 * import { memory } from "./memory.ts";
 * const metric = memory({ at: ["epoch"], tensors: false });
 * console.assert(metric.name === "ram");
 * ```
 */
export function memory(opts: MemoryOptions = {}): Metric {
  checkOptions("memory", opts, {
    ...GRANULARITY_OPTIONS,
    ram: "boolean",
    tensors: "boolean",
    sampleMs: "number",
  });
  const windows = resolveWindows("memory", opts, ["epoch", "experience", "stream"]);
  const withRam = opts.ram !== false;
  const withTensors = opts.tensors !== false;
  if (!withRam && !withTensors) {
    throw new RangeError("memory: ram and tensors are both false: nothing to measure");
  }
  const sampleMs = opts.sampleMs ?? 100;
  if (!(sampleMs >= 0)) throw new RangeError(`memory sampleMs must be ≥ 0, got ${sampleMs}`);
  type Peak = { ram: number; bytes: number; tensors: number };
  const open = new Map<string, Peak>();
  let lastSample = -Infinity;
  const sample = (): Peak => {
    const m = withTensors ? tf.memory() : undefined;
    return {
      ram: withRam ? rss() : NaN,
      bytes: m?.numBytes ?? NaN,
      tensors: m?.numTensors ?? NaN,
    };
  };
  const into = (p: Peak, s: Peak) => {
    p.ram = Math.max(p.ram, s.ram);
    p.bytes = Math.max(p.bytes, s.bytes);
    p.tensors = Math.max(p.tensors, s.tensors);
  };
  return windowed({
    name: withRam ? "ram" : "tensorMemory",
    windows,
    start(phase, at) {
      open.set(`${phase}/${at}`, sample());
    },
    iteration() {
      const now = performance.now();
      if (now - lastSample < sampleMs || open.size === 0) return;
      lastSample = now;
      const s = sample();
      for (const p of open.values()) into(p, s);
    },
    end(phase, at, ctx) {
      const p = open.get(`${phase}/${at}`);
      open.delete(`${phase}/${at}`);
      if (!p) return [];
      into(p, sample());
      const base = rowBase(ctx, phase, at);
      const rows: MetricRow[] = [];
      if (withRam) rows.push({ ...base, metric: "ram", value: p.ram / MIB });
      if (withTensors) {
        rows.push({ ...base, metric: "tensorMemory", value: p.bytes / MIB });
        rows.push({ ...base, metric: "tensorCount", value: p.tensors });
      }
      return rows;
    },
  });
}
