/**
 * Internal: metrics that are sums over minibatches (correct predictions, loss, confusion
 * counts), accumulated on the device and read back once per window.
 *
 * Each iteration adds tensors to a pending device accumulator (no read-back). When a window
 * closes (end of a minibatch, epoch, experience or stream that the metric reports), the pending
 * sums are read back in one transfer and added to every open window of that phase on the host.
 * So a metric reported per epoch reads back once per epoch; per minibatch, once per minibatch.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { StrategyContext } from "../strategy/context.ts";
import {
  type Granularity,
  type Metric,
  type MetricHookName,
  type RowBase,
  rowBase,
  WINDOW_END,
  WINDOW_START,
  type Windows,
} from "./metric.ts";
import type { MetricRow, Phase } from "../data/rows.ts";

/** A host-side sum: a scalar, vector or matrix (row-major). */
export interface Sum {
  shape: number[];
  data: Float64Array;
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Adds `src` into `dst` (which may be smaller: it grows, zero-padded, per dimension). */
function addInto(dst: Sum | undefined, src: Sum): Sum {
  if (!dst) return { shape: [...src.shape], data: Float64Array.from(src.data) };
  if (dst.shape.length !== src.shape.length) {
    throw new RangeError(`Cannot add sums of shapes [${dst.shape}] and [${src.shape}]`);
  }
  const shape = dst.shape.map((d, i) => Math.max(d, src.shape[i]));
  const out = shape.every((d, i) => d === dst.shape[i])
    ? dst
    : { shape, data: new Float64Array(size(shape)) };
  const addFrom = (s: Sum, into: Float64Array, copy: boolean) => {
    if (s.shape.length <= 1) {
      for (let i = 0; i < s.data.length; i++) into[i] = (copy ? 0 : into[i]) + s.data[i];
      return;
    }
    // Rank 2 (confusion matrices): re-index rows.
    const [r, c] = s.shape;
    const width = shape[1];
    for (let i = 0; i < r; i++) {
      for (let j = 0; j < c; j++) {
        into[i * width + j] = (copy ? 0 : into[i * width + j]) + s.data[i * c + j];
      }
    }
  };
  if (out !== dst) addFrom(dst, out.data, true);
  addFrom(src, out.data, false);
  return out;
}

/** Named host sums. */
export class HostSums {
  readonly map: Map<string, Sum> = new Map();

  /** Adds a value (number or vector) under `key`. */
  add(key: string, value: number | ArrayLike<number>, shape?: number[]): void {
    const data = typeof value === "number" ? Float64Array.of(value) : Float64Array.from(value);
    const sh = shape ?? (typeof value === "number" ? [] : [data.length]);
    this.map.set(key, addInto(this.map.get(key), { shape: sh, data }));
  }

  /** Adds every sum of `other`. */
  merge(other: HostSums): void {
    for (const [k, s] of other.map) this.map.set(k, addInto(this.map.get(k), s));
  }

  /** The scalar under `key` (0 when absent). */
  scalar(key: string): number {
    return this.map.get(key)?.data[0] ?? 0;
  }

  /** The sum under `key`, if any. */
  get(key: string): Sum | undefined {
    return this.map.get(key);
  }

  /** Task labels `t` having a key `${prefix}@t`, sorted. */
  tasks(prefix: string): number[] {
    const out: number[] = [];
    for (const k of this.map.keys()) {
      if (k.startsWith(`${prefix}@`)) out.push(Number(k.slice(prefix.length + 1)));
    }
    return out.sort((a, b) => a - b);
  }
}

function padTo(t: tf.Tensor, shape: number[]): tf.Tensor {
  if (t.shape.every((d, i) => d === shape[i])) return t;
  return tf.pad(t, t.shape.map((d, i) => [0, shape[i] - d] as [number, number]));
}

/** Named device sums: tensors kept across iterations, read back together. */
export class DeviceSums {
  readonly #t = new Map<string, tf.Tensor>();

  get size(): number {
    return this.#t.size;
  }

  /** Adds `t` under `key` (growing, zero-padded, when shapes differ). */
  add(key: string, t: tf.Tensor): void {
    const old = this.#t.get(key);
    const next = tf.tidy(() => {
      if (!old) return t.clone();
      if (old.rank !== t.rank) {
        throw new RangeError(`Cannot add a tensor of shape [${t.shape}] to one of [${old.shape}]`);
      }
      const shape = old.shape.map((d, i) => Math.max(d, t.shape[i]));
      return tf.add(padTo(old, shape), padTo(t, shape));
    });
    tf.keep(next);
    old?.dispose();
    this.#t.set(key, next);
  }

  /** Reads every sum back in one transfer, adds them to `into`, and clears. */
  async drainInto(into: HostSums): Promise<void> {
    if (this.#t.size === 0) return;
    const entries = [...this.#t];
    const flat = tf.tidy(() => tf.concat(entries.map(([, t]) => tf.reshape(t, [-1]))));
    let data: Float32Array;
    try {
      data = (await flat.data()) as Float32Array;
    } finally {
      flat.dispose();
    }
    let offset = 0;
    for (const [key, t] of entries) {
      into.add(key, data.subarray(offset, offset + t.size), [...t.shape]);
      offset += t.size;
    }
    this.clear();
  }

  /** Frees every tensor. */
  clear(): void {
    for (const t of this.#t.values()) t.dispose();
    this.#t.clear();
  }
}

/** Where an iteration's contributions go. */
export interface Sink {
  /** Adds a tensor (summed on the device, no read-back). */
  device(key: string, t: tf.Tensor): void;
  /** Adds a host value (counts known without read-back). */
  host(key: string, value: number | ArrayLike<number>, shape?: number[]): void;
}

/** Task labels of a minibatch, with per-task masks made on demand. */
export class TaskSplit {
  /** Distinct task labels, in order of appearance. */
  readonly unique: number[];
  readonly #tasks: Int32Array;
  readonly #masks = new Map<number, tf.Tensor1D>();
  constructor(tasks: Int32Array, n: number) {
    this.#tasks = tasks.length === n ? tasks : tasks.subarray(0, n);
    this.unique = [...new Set(this.#tasks)];
  }
  /** Samples of each task label. */
  counts(): Map<number, number> {
    const m = new Map<number, number>();
    for (const t of this.#tasks) m.set(t, (m.get(t) ?? 0) + 1);
    return m;
  }
  /** A float mask [n] of the samples of task `t` (call inside a tidy). */
  mask(t: number): tf.Tensor1D {
    let m = this.#masks.get(t);
    if (!m) {
      m = tf.tensor1d(Float32Array.from(this.#tasks, (x) => (x === t ? 1 : 0)));
      this.#masks.set(t, m);
    }
    return m;
  }
  /** Task label of each sample. */
  get labels(): Int32Array {
    return this.#tasks;
  }
}

/**
 * Adds `sum_i perSample[i]` under `key` and, when `split`, the per-task sums under `key@t`.
 * Call inside a tidy.
 */
export function addByTask(
  sink: Sink,
  key: string,
  perSample: tf.Tensor,
  split: TaskSplit | undefined,
): void {
  const total = tf.sum(perSample, 0);
  sink.device(key, total);
  if (!split) return;
  if (split.unique.length === 1) {
    sink.device(`${key}@${split.unique[0]}`, total);
    return;
  }
  for (const t of split.unique) {
    const mask = split.mask(t);
    const m = perSample.rank === 1
      ? mask
      : tf.reshape(mask, [mask.shape[0], ...perSample.shape.slice(1).map(() => 1)]);
    sink.device(`${key}@${t}`, tf.sum(tf.mul(perSample, m), 0));
  }
}

/** When to emit per-task rows. */
export type PerTask = boolean | "auto";

/** Validates a `perTask` option. */
export function perTaskOption(v: unknown): PerTask {
  if (v === undefined) return "auto";
  if (v === true || v === false || v === "auto") return v;
  throw new RangeError(`perTask must be true, false or "auto", got ${String(v)}`);
}

/** Whether the sums of a window call for per-task rows. */
export function splitRows(perTask: PerTask, sums: HostSums, countKey: string): number[] {
  if (perTask === false) return [];
  const tasks = sums.tasks(countKey);
  return perTask === true || tasks.length > 1 ? tasks : [];
}

/** How an additive metric contributes and reads its values. */
export interface AdditiveSpec {
  name: string;
  windows: Windows;
  /** Adds one iteration's contributions (called inside a tidy, after the loop's forward). */
  update(ctx: StrategyContext, sink: Sink, phase: Phase): void;
  /** Rows of a closed window from its sums. */
  rows(sums: HostSums, base: RowBase, ctx: StrategyContext): MetricRow[];
  /** Extra hooks (e.g. tracking seen classes), run before the window logic. */
  extra?: { [K in MetricHookName]?: (ctx: StrategyContext) => void };
  state?(): unknown;
  loadState?(state: unknown): void;
}

interface PhaseState {
  pending: DeviceSums;
  pendingHost: HostSums;
  open: Map<Granularity, HostSums>;
}

type Action =
  | { kind: "start"; phase: Phase; at: Granularity }
  | { kind: "update"; phase: Phase }
  | { kind: "end"; phase: Phase; at: Granularity };

/**
 * Builds a metric whose values are sums over the iterations of each window.
 *
 * @example
 * ```ts ignore
 * const samples = additive({ name: "samples", windows, update: (ctx, sink) =>
 *   sink.host("n", ctx.batch!.n), rows: (s, base) => [{ ...base, metric: "samples", value: s.scalar("n") }] });
 * ```
 */
export function additive(spec: AdditiveSpec): Metric {
  const states: Record<Phase, PhaseState> = {
    train: { pending: new DeviceSums(), pendingHost: new HostSums(), open: new Map() },
    eval: { pending: new DeviceSums(), pendingHost: new HostSums(), open: new Map() },
  };
  const actions = new Map<MetricHookName, Action[]>();
  const push = (h: MetricHookName | undefined, a: Action) => {
    if (!h) return;
    let l = actions.get(h);
    if (!l) actions.set(h, l = []);
    l.push(a);
  };
  const coarsest: Partial<Record<Phase, Granularity>> = {};
  for (const phase of ["train", "eval"] as const) {
    const pairs = spec.windows.list.filter(([p]) => p === phase);
    if (pairs.length === 0) continue;
    coarsest[phase] = pairs[pairs.length - 1][1];
    // Starts coarsest first, then the update, then ends finest first.
    for (const [, at] of [...pairs].reverse()) {
      push(WINDOW_START[phase][at], { kind: "start", phase, at });
    }
    push(phase === "train" ? "afterTrainingIteration" : "afterEvalIteration", {
      kind: "update",
      phase,
    });
    for (const [, at] of pairs) push(WINDOW_END[phase][at], { kind: "end", phase, at });
  }

  const flush = async (phase: Phase) => {
    const s = states[phase];
    await s.pending.drainInto(s.pendingHost);
    if (s.pendingHost.map.size === 0) return;
    for (const sums of s.open.values()) sums.merge(s.pendingHost);
    s.pendingHost = new HostSums();
  };

  const sinkOf = (s: PhaseState): Sink => ({
    device: (key, t) => s.pending.add(key, t),
    host: (key, v, shape) => s.pendingHost.add(key, v, shape),
  });

  const metric: Metric & Record<string, unknown> = {
    name: spec.name,
    dispose() {
      for (const s of Object.values(states)) {
        s.pending.clear();
        s.pendingHost = new HostSums();
        s.open.clear();
      }
    },
  };
  if (spec.state) metric.state = spec.state;
  if (spec.loadState) metric.loadState = spec.loadState;
  const hooks = new Set<MetricHookName>([
    ...actions.keys(),
    ...Object.keys(spec.extra ?? {}) as MetricHookName[],
  ]);
  for (const hook of hooks) {
    const list = actions.get(hook) ?? [];
    const extra = spec.extra?.[hook];
    metric[hook] = async (ctx: StrategyContext): Promise<MetricRow[]> => {
      extra?.(ctx);
      const rows: MetricRow[] = [];
      for (const a of list) {
        const s = states[a.phase];
        if (a.kind === "start") {
          if (a.at === coarsest[a.phase]) {
            // A fresh outermost window: drop what an interrupted run (an exception) left.
            s.pending.clear();
            s.pendingHost = new HostSums();
            s.open.clear();
          }
          s.open.set(a.at, new HostSums());
        } else if (a.kind === "update") {
          if (s.open.size === 0 || !ctx.batch || !ctx.output) continue;
          const sink = sinkOf(s);
          tf.tidy(() => spec.update(ctx, sink, a.phase));
        } else {
          await flush(a.phase);
          const sums = s.open.get(a.at);
          s.open.delete(a.at);
          if (sums) rows.push(...spec.rows(sums, rowBase(ctx, a.phase, a.at), ctx));
        }
      }
      return rows;
    };
  }
  return metric;
}
