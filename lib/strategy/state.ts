/**
 * Checks a strategy checkpoint before anything of it is applied, so that a restore either
 * succeeds whole or changes nothing, and says precisely what is wrong or what differs.
 *
 * @module
 */
import type { MetricRow } from "../data/rows.ts";
import { checkTensorState, type ModuleState } from "../nn/module.ts";
import type { OptimizerState } from "../optim/optimizers.ts";
import type { RngState } from "../random.ts";
import type { Clock } from "./context.ts";

/** Plain-data state of a strategy: enough to resume a run and get the same numbers. */
export interface StrategyState {
  version: 1;
  name: string;
  model: ModuleState;
  optimizer: OptimizerState;
  rng: RngState;
  clock: Clock;
  rows: MetricRow[];
  plugins: Record<string, unknown>;
  extra: Record<string, unknown>;
  /**
   * Set on a state taken in the middle of training an experience (a periodic checkpoint after
   * some of its epochs): which experience, and how many of its epochs were done.
   */
  position?: { stream: string; experience: number; epochsDone: number };
}

/** What a strategy is, for comparing it with the one a checkpoint was taken from. */
export interface StrategyShape {
  name: string;
  /** Keys of the plugins that keep state (`index:name`), in order. */
  pluginKeys: readonly string[];
  /** The model's parameter names. */
  parameters: readonly string[];
}

const CLOCK_FIELDS = [
  "trainExperiences",
  "epoch",
  "epochIteration",
  "trainIterations",
  "evalIterations",
] as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function list(keys: readonly string[]): string {
  return keys.length === 0 ? "none" : keys.map((k) => k.replace(/^\d+:/, "")).join(", ");
}

/**
 * Throws a `TypeError` (malformed section) or `RangeError` (a strategy that differs) unless
 * `state` can be restored into a strategy of shape `into`.
 */
export function checkStrategyState(state: unknown, into: StrategyShape): void {
  if (!isObject(state)) {
    throw new TypeError(`Not a strategy checkpoint: got ${String(state)}`);
  }
  const s = state as unknown as StrategyState;
  if (s.version !== 1) {
    throw new TypeError(`Not a strategy checkpoint (version ${s.version}): expected version 1`);
  }
  for (const key of ["model", "optimizer", "clock", "plugins"] as const) {
    if (!isObject(s[key])) {
      throw new TypeError(
        `The checkpoint's "${key}" section is ${s[key] === undefined ? "missing" : "malformed"}: ` +
          `it is not a strategy.checkpoint() state, or it was damaged`,
      );
    }
  }
  if (!Array.isArray(s.rows)) throw new TypeError(`The checkpoint's "rows" section is not a list`);
  if (s.name !== into.name) {
    throw new RangeError(
      `This checkpoint was taken from a "${s.name}" strategy, not "${into.name}": build the ` +
        `strategy it came from to restore it`,
    );
  }
  const keys = Object.keys(s.plugins);
  if (keys.join("\n") !== into.pluginKeys.join("\n")) {
    throw new RangeError(
      `This checkpoint was taken with the plugins ${list(keys)}; this strategy has ` +
        `${
          list(into.pluginKeys)
        }: restore it into a strategy with the same plugins, in the same order`,
    );
  }
  for (const f of CLOCK_FIELDS) {
    const v = (s.clock as unknown as Record<string, unknown>)[f];
    if (!Number.isInteger(v) || (v as number) < 0) {
      throw new TypeError(`The checkpoint's clock.${f} must be an integer ≥ 0, got ${String(v)}`);
    }
  }
  if (!isObject(s.model.tensors)) {
    throw new TypeError(`The checkpoint's model section has no tensors`);
  }
  const tensors = s.model.tensors;
  for (const name of into.parameters) {
    if (!(name in tensors)) {
      throw new RangeError(`The checkpoint lacks the model parameter "${name}"`);
    }
    // The model's structure may grow on restore (incremental heads): shapes are checked then.
    checkTensorState(`Parameter "${name}"`, tensors[name]);
  }
  const o = s.optimizer;
  if (typeof o.kind !== "string" || !Number.isInteger(o.step) || !isObject(o.slots)) {
    throw new TypeError(
      `The checkpoint's optimizer section is malformed: expected { kind, config, step, slots }`,
    );
  }
  for (const [param, slots] of Object.entries(o.slots)) {
    if (!isObject(slots)) throw new TypeError(`Optimizer slots of "${param}" are malformed`);
    const shape = (tensors[param] as { shape?: number[] } | undefined)?.shape;
    for (const [slot, t] of Object.entries(slots)) {
      checkTensorState(`Optimizer slot ${slot} of "${param}"`, t, shape);
    }
  }
}
