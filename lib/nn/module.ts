/**
 * A small module system on tfjs variables, shaped like PyTorch's `nn.Module`: named parameters,
 * children, train/eval mode, and a plain-data state dict for checkpoints.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random.ts";
import "./gradients.ts";
import type { Experience } from "../data/experience.ts";

let variableCounter = 0;

/** Creates a tfjs variable with a globally unique engine name derived from `name`. */
export function newVariable(init: tf.Tensor, name: string, trainable = true): tf.Variable {
  requireBackend();
  return tf.variable(
    init,
    trainable,
    `${name.replace(/[^A-Za-z0-9_./-]/g, "_")}__${variableCounter++}`,
  );
}

/**
 * Throws an error that says what to call when no tfjs backend is ready yet (the WebAssembly
 * backend starts asynchronously, so the first tensor made before `setup()` would fail with
 * tfjs' own message, which does not name perennial's entry point).
 */
export function requireBackend(): void {
  try {
    void tf.engine().backend;
  } catch (e) {
    if (!/not yet been initialized/.test(String((e as Error)?.message ?? e))) throw e;
    throw new Error(
      "No backend is ready yet: run `await setup()` once first (or `await setup({ backend: " +
        '"blas" | "wasm" | "cpu", seed: 0 })`), before building models or tensors',
    );
  }
}

/** Extra inputs a forward pass may use (task labels for multi-head models). */
export interface ForwardOptions {
  /** Task label of each sample (int32, shape [n]). */
  taskLabels?: tf.Tensor1D;
  /** The same task labels as a typed array, when known (avoids a read-back). */
  taskLabelsArray?: Int32Array;
  /**
   * The run's seeded generator, for a forward that draws noise (a VAE's reparameterization).
   * The strategy template passes its own (`ctx.rng`, part of checkpoints).
   */
  rng?: Rng;
}

/** A parameter tensor as plain data. */
export interface TensorState {
  shape: number[];
  values: number[];
}

/** Plain-data state of a module: parameters and buffers by dotted name, plus structural info. */
export interface ModuleState {
  tensors: Record<string, TensorState>;
  structure?: Record<string, unknown>;
}

/** Tensors {@link tensorToState} was given while {@link withValuesOnCpu} collects them. */
let collecting: tf.Tensor[] | undefined;

/** Converts a tensor to plain data. */
export function tensorToState(t: tf.Tensor): TensorState {
  if (collecting) {
    collecting.push(t);
    return { shape: [...t.shape], values: [] };
  }
  return { shape: [...t.shape], values: Array.from(t.dataSync()) };
}

/**
 * `f()`, whose {@link tensorToState} calls find their tensors' values on the CPU: on the
 * "webgpu" backend, which cannot read GPU data synchronously under Deno, `f` runs once to collect
 * the tensors it converts (their values left empty, the result dropped), their values are read
 * asynchronously (a value read once stays readable), then `f` runs for its result. Elsewhere
 * `f()` alone. `f` must have no side effects beyond its conversions (a `checkpoint()`).
 */
export async function withValuesOnCpu<T>(f: () => T): Promise<T> {
  if (tf.getBackend() !== "webgpu" || collecting) return f();
  const seen: tf.Tensor[] = [];
  collecting = seen;
  try {
    f();
  } finally {
    collecting = undefined;
  }
  await Promise.all(seen.filter((t) => !t.isDisposed).map((t) => t.data()));
  return f();
}

/**
 * Throws unless `s` is a well-formed {@link TensorState} (of shape `shape` when given): a shape
 * of non-negative integers and as many finite numbers as it holds. `what` names it in the error
 * (`Parameter "features.0.weight"`). A NaN is written as `null` by `JSON.stringify`, so a
 * checkpoint of a diverged run fails here rather than loading zeros.
 */
export function checkTensorState(what: string, s: unknown, shape?: readonly number[]): void {
  const t = s as TensorState;
  if (!t || typeof t !== "object" || !Array.isArray(t.shape)) {
    throw new TypeError(`${what} is not a tensor state { shape, values }: got ${brief(s)}`);
  }
  if (!t.shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new TypeError(`${what} has a malformed shape ${brief(t.shape)}`);
  }
  if (shape && t.shape.join() !== shape.join()) {
    throw new RangeError(`${what} has shape [${shape}] but the state has [${t.shape}]`);
  }
  const size = t.shape.reduce((a, b) => a * b, 1);
  const values = t.values as ArrayLike<unknown> | undefined;
  if (!values || typeof values !== "object" || values.length !== size) {
    throw new RangeError(
      `${what} of shape [${t.shape}] needs ${size} values, the state has ${
        values && typeof values === "object" ? values.length : brief(values)
      }`,
    );
  }
  for (let i = 0; i < size; i++) {
    const v = values[i];
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new RangeError(
        `${what} has ${brief(v)} at index ${i} where a finite number belongs (JSON writes NaN ` +
          `as null): the state is damaged or comes from a diverged run`,
      );
    }
  }
}

function brief(v: unknown): string {
  const text = v === undefined ? "undefined" : JSON.stringify(v) ?? String(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Converts plain data to a tensor. */
export function stateToTensor(s: TensorState): tf.Tensor {
  return tf.tensor(s.values, s.shape, "float32");
}

/**
 * Base class of every model part. Subclasses register parameters with {@link Module.param} and
 * sub-modules with {@link Module.child}, and implement {@link Module.forward}.
 */
export abstract class Module {
  /** Whether the module is in training mode (dropout active, ...). */
  training = true;
  readonly #params = new Map<string, tf.Variable>();
  readonly #children = new Map<string, Module>();

  constructor() {
    requireBackend();
  }

  /** The forward pass. Call it inside `tf.tidy` or a gradient function. */
  abstract forward(x: tf.Tensor, opts?: ForwardOptions): tf.Tensor;

  /** Registers (or replaces, disposing the old one) a parameter. */
  protected param(name: string, init: tf.Tensor, trainable = true): tf.Variable {
    const old = this.#params.get(name);
    const v = newVariable(init, name, trainable);
    init.dispose();
    old?.dispose();
    this.#params.set(name, v);
    return v;
  }

  /** Registers a sub-module. */
  protected child<M extends Module>(name: string, module: M): M {
    this.#children.set(name, module);
    return module;
  }

  /** Removes a sub-module (and disposes it). */
  protected removeChild(name: string): void {
    this.#children.get(name)?.dispose();
    this.#children.delete(name);
  }

  /** Direct sub-modules by name. */
  children(): Map<string, Module> {
    return new Map(this.#children);
  }

  /** Every parameter with its dotted name (e.g. `layers.0.weight`), in registration order. */
  namedParameters(prefix = ""): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [n, v] of this.#params) out.set(prefix + n, v);
    for (const [n, c] of this.#children) {
      for (const [pn, v] of c.namedParameters(`${prefix}${n}.`)) out.set(pn, v);
    }
    return out;
  }

  /** Every sub-module with its dotted name, this one included as "". */
  namedModules(prefix = ""): Map<string, Module> {
    const out = new Map<string, Module>([[prefix.replace(/\.$/, ""), this]]);
    for (const [n, c] of this.#children) {
      for (const [mn, m] of c.namedModules(`${prefix}${n}.`)) out.set(mn, m);
    }
    return out;
  }

  /** Parameters that gradients flow to (the `trainable` ones). */
  trainableParameters(): Map<string, tf.Variable> {
    return new Map([...this.namedParameters()].filter(([, v]) => v.trainable));
  }

  /** Number of scalar parameters. */
  countParameters(): number {
    let n = 0;
    for (const v of this.namedParameters().values()) n += v.size;
    return n;
  }

  /** Sets training mode on this module and every child. */
  train(mode = true): this {
    this.training = mode;
    for (const c of this.#children.values()) c.train(mode);
    return this;
  }

  /** Sets evaluation mode. */
  eval(): this {
    return this.train(false);
  }

  /**
   * Adapts the module to an experience before training on it (`training` true) or evaluating
   * on it: grows output units, adds heads. Returns true when parameters were added or reshaped.
   */
  adapt(experience: Experience, training = true): boolean {
    let changed = false;
    for (const c of this.#children.values()) changed = c.adapt(experience, training) || changed;
    return changed;
  }

  /** Structural facts needed to rebuild a grown module before loading its tensors. */
  structure(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [n, c] of this.#children) {
      const s = c.structure();
      if (Object.keys(s).length > 0) out[n] = s;
    }
    return out;
  }

  /** Rebuilds structure saved by {@link Module.structure} (e.g. re-adds heads). */
  loadStructure(structure: Record<string, unknown>): void {
    for (const [n, c] of this.#children) {
      const s = structure[n];
      if (s && typeof s === "object") c.loadStructure(s as Record<string, unknown>);
    }
  }

  /** All parameters as plain data. */
  stateDict(): ModuleState {
    const tensors: Record<string, TensorState> = {};
    for (const [n, v] of this.namedParameters()) tensors[n] = tensorToState(v);
    return { tensors, structure: this.structure() };
  }

  /** Loads parameters from {@link Module.stateDict} output; names and shapes must match. */
  loadStateDict(state: ModuleState): void {
    if (
      !state || typeof state !== "object" || !state.tensors || typeof state.tensors !== "object"
    ) {
      throw new TypeError(
        `Not a module state: expected { tensors: { name: { shape, values } } }, got ${
          brief(state)
        }`,
      );
    }
    if (state.structure) this.loadStructure(state.structure);
    const params = this.namedParameters();
    for (const name of Object.keys(state.tensors)) {
      if (!params.has(name)) {
        throw new RangeError(
          `State has parameter "${name}" that the model lacks (model has: ${
            [...params.keys()].join(", ")
          })`,
        );
      }
    }
    // Check everything before assigning anything, so that a bad state leaves the values intact.
    for (const [name, v] of params) {
      const s = state.tensors[name];
      if (!s) throw new RangeError(`State lacks parameter "${name}"`);
      checkTensorState(`Parameter "${name}"`, s, v.shape);
    }
    for (const [name, v] of params) tf.tidy(() => v.assign(stateToTensor(state.tensors[name])));
  }

  /** Copies parameter values from a module of the same structure. */
  copyFrom(other: Module): void {
    const mine = this.namedParameters();
    for (const [n, v] of other.namedParameters()) {
      const t = mine.get(n);
      if (!t || t.shape.join() !== v.shape.join()) {
        throw new RangeError(`Cannot copy parameter "${n}": the target's structure differs`);
      }
      t.assign(v);
    }
  }

  /** Frees every parameter. */
  dispose(): void {
    for (const v of this.#params.values()) v.dispose();
    this.#params.clear();
    for (const c of this.#children.values()) c.dispose();
  }
}

/** A module whose behaviour can be rebuilt from a config: lets strategies clone models. */
export interface Cloneable {
  /** A new module with the same structure and freshly initialized (or copied) parameters. */
  clone(): Module;
}

/** True when the module implements {@link Cloneable}. */
export function isCloneable(m: Module): m is Module & Cloneable {
  return typeof (m as unknown as Cloneable).clone === "function";
}
