/**
 * Maps of kept tensors by parameter name, as the regularization plugins (MAS, RWalk) hold them:
 * replacing an entry disposes the old tensor, and the maps go to and from checkpoint state.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { stateToTensor, type TensorState, tensorToState } from "../nn/module.ts";
import { fitToShape } from "./ewc.ts";

/** Puts `t` (kept) under `name`, disposing the tensor it replaces. */
export function setKept(m: Map<string, tf.Tensor>, name: string, t: tf.Tensor): void {
  const old = m.get(name);
  m.set(name, tf.keep(t));
  if (old && old !== t) old.dispose();
}

/** Disposes every tensor of the map and empties it. */
export function disposeAll(m: Map<string, tf.Tensor>): void {
  for (const t of m.values()) t.dispose();
  m.clear();
}

/** Kept copies of the tensors of `m` (parameters, typically). */
export function keptCopies(m: ReadonlyMap<string, tf.Tensor>): Map<string, tf.Tensor> {
  return new Map([...m].map(([n, t]) => [n, tf.keep(tf.clone(t))]));
}

/**
 * The tensor of `m` under `name` fitted to `shape` (zeros or `fill` where a parameter grew), or
 * zeros (or `fill`) when there is none; the map keeps the fitted one.
 */
export function fitted(
  m: Map<string, tf.Tensor>,
  name: string,
  shape: readonly number[],
  fill?: () => tf.Tensor,
): tf.Tensor {
  const t = m.get(name);
  if (t && t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i])) return t;
  if (t && t.shape.some((d, i) => d > shape[i])) {
    throw new RangeError(
      `Parameter "${name}" shrank from [${t.shape}] to [${shape}]; only growing parameters are ` +
        `supported`,
    );
  }
  const f = fill?.();
  const next = t ? fitToShape(t, shape, f) : (f ? tf.clone(f) : tf.zeros([...shape]));
  f?.dispose();
  setKept(m, name, next);
  return next;
}

/** The map as plain data. */
export function mapToState(m: ReadonlyMap<string, tf.Tensor>): Record<string, TensorState> {
  return Object.fromEntries([...m].map(([k, t]) => [k, tensorToState(t)]));
}

/** A map of kept tensors from {@link mapToState}'s data; `what` names it in errors. */
export function mapFromState(
  record: Record<string, TensorState> | undefined,
  what: string,
): Map<string, tf.Tensor> {
  if (!record || typeof record !== "object") {
    throw new TypeError(`${what} is missing or not an object in the checkpoint`);
  }
  return new Map(Object.entries(record).map(([k, s]) => [k, tf.keep(stateToTensor(s))]));
}
