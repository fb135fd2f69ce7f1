/**
 * Optimizers with PyTorch's update rules and plain-data state. Slots are kept per parameter
 * name, created on first use and re-created when a parameter changes shape (a grown head).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { newVariable, stateToTensor, type TensorState, tensorToState } from "../nn/module.ts";
import { sgdStepInPlace } from "../backends/fused.ts";
import { checkOptions, type OptionSpec } from "../options.ts";

/** Plain-data optimizer state: hyper-parameters, step count and slots by parameter name. */
export interface OptimizerState {
  kind: string;
  config: Record<string, number | boolean>;
  step: number;
  slots: Record<string, Record<string, TensorState>>;
}

/** Updates parameters from gradients. */
export interface Optimizer {
  /** "sgd" or "adam". */
  readonly kind: string;
  /** Learning rate (may be changed between steps, e.g. by a scheduler plugin). */
  lr: number;
  /** Applies one update. Call inside a tidy scope. */
  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>): void;
  /** Drops every slot (momentum, moments) and the step count. */
  reset(): void;
  state(): OptimizerState;
  loadState(state: OptimizerState): void;
  /** Frees the slots. */
  dispose(): void;
}

abstract class SlotOptimizer implements Optimizer {
  abstract readonly kind: string;
  abstract lr: number;
  protected steps = 0;
  protected slots: Map<string, Map<string, tf.Variable>> = new Map();

  abstract step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>): void;
  protected abstract config(): Record<string, number | boolean>;

  /** The slot `slot` of parameter `name`, created as zeros (or from `init`) on first use. */
  protected slot(
    name: string,
    slot: string,
    like: tf.Tensor,
    init?: () => tf.Tensor,
  ): [tf.Variable, boolean] {
    let m = this.slots.get(name);
    if (!m) this.slots.set(name, m = new Map());
    let v = m.get(slot);
    if (v && v.shape.join() !== like.shape.join()) {
      v.dispose();
      v = undefined;
    }
    if (v) return [v, false];
    const t = init ? init() : tf.zerosLike(like);
    v = newVariable(t, `${this.kind}.${name}.${slot}`, false);
    t.dispose();
    m.set(slot, v);
    return [v, true];
  }

  /** The slot `slot` of parameter `name` when it exists with `like`'s shape (never creates). */
  protected existingSlot(name: string, slot: string, like: tf.Tensor): tf.Variable | undefined {
    const v = this.slots.get(name)?.get(slot);
    return v && v.shape.join() === like.shape.join() ? v : undefined;
  }

  reset(): void {
    this.dispose();
    this.steps = 0;
  }

  state(): OptimizerState {
    const slots: OptimizerState["slots"] = {};
    for (const [n, m] of this.slots) {
      slots[n] = {};
      for (const [s, v] of m) slots[n][s] = tensorToState(v);
    }
    return { kind: this.kind, config: { ...this.config(), lr: this.lr }, step: this.steps, slots };
  }

  loadState(state: OptimizerState): void {
    if (state.kind !== this.kind) {
      throw new TypeError(
        `Cannot load "${state.kind}" optimizer state into a "${this.kind}" optimizer`,
      );
    }
    this.reset();
    this.steps = state.step;
    this.lr = Number(state.config.lr ?? this.lr);
    for (const [n, m] of Object.entries(state.slots)) {
      const map = new Map<string, tf.Variable>();
      for (const [s, ts] of Object.entries(m)) {
        const t = stateToTensor(ts);
        map.set(s, newVariable(t, `${this.kind}.${n}.${s}`, false));
        t.dispose();
      }
      this.slots.set(n, map);
    }
  }

  dispose(): void {
    for (const m of this.slots.values()) for (const v of m.values()) v.dispose();
    this.slots.clear();
  }
}

function checkNumber(name: string, v: number, min: number, minInclusive = true): void {
  if (typeof v !== "number" || !Number.isFinite(v) || (minInclusive ? v < min : v <= min)) {
    throw new RangeError(`${name} must be a number ${minInclusive ? "≥" : ">"} ${min}, got ${v}`);
  }
}

/** Options of {@link sgd}. */
export interface SGDOptions {
  /** Learning rate. @default 0.01 */
  lr?: number;
  /** Momentum factor. @default 0 */
  momentum?: number;
  /** Dampening of momentum. @default 0 */
  dampening?: number;
  /** L2 penalty added to gradients. @default 0 */
  weightDecay?: number;
  /** Nesterov momentum. @default false */
  nesterov?: boolean;
}

/** The keys of {@link SGDOptions}, for checking what users pass. */
const SGD_OPTIONS: OptionSpec<SGDOptions> = {
  lr: "number",
  momentum: "number",
  dampening: "number",
  weightDecay: "number",
  nesterov: "boolean",
};

/** Stochastic gradient descent as `torch.optim.SGD`. */
export class SGD extends SlotOptimizer {
  readonly kind = "sgd";
  lr: number;
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;

  constructor(opts: SGDOptions = {}) {
    super();
    checkOptions("SGD", opts, SGD_OPTIONS);
    this.lr = opts.lr ?? 0.01;
    this.momentum = opts.momentum ?? 0;
    this.dampening = opts.dampening ?? 0;
    this.weightDecay = opts.weightDecay ?? 0;
    this.nesterov = opts.nesterov ?? false;
    checkNumber("sgd lr", this.lr, 0, false);
    checkNumber("sgd momentum", this.momentum, 0);
    checkNumber("sgd dampening", this.dampening, 0);
    checkNumber("sgd weightDecay", this.weightDecay, 0);
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new RangeError(
        `sgd nesterov needs momentum > 0 and dampening 0, got momentum ${this.momentum} and ` +
          `dampening ${this.dampening}`,
      );
    }
  }

  protected config(): Record<string, number | boolean> {
    return {
      momentum: this.momentum,
      dampening: this.dampening,
      weightDecay: this.weightDecay,
      nesterov: this.nesterov,
    };
  }

  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>): void {
    let lr: tf.Scalar | undefined;
    for (const [name, g0] of grads) {
      const p = params.get(name);
      if (!p) continue;
      // In place with BLAS where it can (the "blas" backend, momentum buffer already there).
      const existing = this.momentum ? this.existingSlot(name, "momentum", p) : undefined;
      if ((!this.momentum || existing) && sgdStepInPlace(p, g0, existing, this)) continue;
      lr ??= tf.scalar(-this.lr);
      let g = this.weightDecay ? tf.add(g0, tf.mul(p, this.weightDecay)) : g0;
      if (this.momentum) {
        const [buf, fresh] = this.slot(name, "momentum", p, () => tf.clone(g));
        if (!fresh) {
          buf.assign(
            tf.add(tf.mul(buf, this.momentum), this.dampening ? tf.mul(g, 1 - this.dampening) : g),
          );
        }
        g = this.nesterov ? tf.add(g, tf.mul(buf, this.momentum)) : buf;
      }
      p.assign(tf.add(p, tf.mul(g, lr)));
    }
    this.steps++;
  }
}

/** Options of {@link adam}. */
export interface AdamOptions {
  /** @default 0.001 */
  lr?: number;
  /** @default 0.9 */
  beta1?: number;
  /** @default 0.999 */
  beta2?: number;
  /** @default 1e-8 */
  eps?: number;
  /** L2 penalty added to gradients (as torch.optim.Adam). @default 0 */
  weightDecay?: number;
}

/** The keys of {@link AdamOptions}, for checking what users pass. */
const ADAM_OPTIONS: OptionSpec<AdamOptions> = {
  lr: "number",
  beta1: "number",
  beta2: "number",
  eps: "number",
  weightDecay: "number",
};

/** Adam as `torch.optim.Adam` (bias-corrected moments, eps outside the square root). */
export class Adam extends SlotOptimizer {
  readonly kind = "adam";
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** Step count per parameter (a grown parameter restarts its bias correction). */
  #paramSteps = new Map<string, number>();

  constructor(opts: AdamOptions = {}) {
    super();
    checkOptions("Adam", opts, ADAM_OPTIONS);
    this.lr = opts.lr ?? 0.001;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    checkNumber("adam lr", this.lr, 0, false);
    for (const [k, v] of [["beta1", this.beta1], ["beta2", this.beta2]] as const) {
      if (!(v >= 0 && v < 1)) throw new RangeError(`adam ${k} must be in [0, 1), got ${v}`);
    }
    checkNumber("adam eps", this.eps, 0, false);
    checkNumber("adam weightDecay", this.weightDecay, 0);
  }

  protected config(): Record<string, number | boolean> {
    return { beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay };
  }

  step(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>): void {
    for (const [name, g0] of grads) {
      const p = params.get(name);
      if (!p) continue;
      const g = this.weightDecay ? tf.add(g0, tf.mul(p, this.weightDecay)) : g0;
      const [m, freshM] = this.slot(name, "m", p);
      const [v, freshV] = this.slot(name, "v", p);
      const t = (freshM || freshV ? 0 : this.#paramSteps.get(name) ?? 0) + 1;
      this.#paramSteps.set(name, t);
      m.assign(tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1)));
      v.assign(tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2)));
      const stepSize = this.lr / (1 - this.beta1 ** t);
      const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(1 - this.beta2 ** t)), this.eps);
      p.assign(tf.sub(p, tf.mul(tf.div(m, denom), stepSize)));
    }
    this.steps++;
  }

  override state(): OptimizerState {
    const s = super.state();
    for (const [n, t] of this.#paramSteps) s.config[`step:${n}`] = t;
    return s;
  }

  override loadState(state: OptimizerState): void {
    super.loadState(state);
    this.#paramSteps.clear();
    for (const [k, v] of Object.entries(state.config)) {
      if (k.startsWith("step:")) this.#paramSteps.set(k.slice(5), Number(v));
    }
  }

  override reset(): void {
    super.reset();
    this.#paramSteps.clear();
  }
}

/** SGD (PyTorch semantics). @example `sgd({ lr: 0.01, momentum: 0.9 })` */
export function sgd(opts: SGDOptions = {}): SGD {
  return new SGD(checkOptions("sgd", opts, SGD_OPTIONS));
}

/** Adam (PyTorch semantics). @example `adam({ lr: 1e-3 })` */
export function adam(opts: AdamOptions = {}): Adam {
  return new Adam(checkOptions("adam", opts, ADAM_OPTIONS));
}
