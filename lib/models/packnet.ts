/**
 * PackNet's model (Mallya & Lazebnik, "PackNet: Adding Multiple Tasks to a Single Network by
 * Iterative Pruning", CVPR 2018), as Avalanche's `PackNetModel`: an MLP whose weights are owned
 * by tasks. Each weight of a linear layer carries the index of the task it belongs to; a task
 * sees the weights of the tasks up to its own and trains only the free ones.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { Activation, Linear, linearOp, Sequential } from "../nn/layers.ts";
import { type ForwardOptions, Module, type ModuleState } from "../nn/module.ts";
import { Classifier, mlp, type MLPOptions } from "./mlp.ts";
import { IncrementalClassifier, MultiHeadClassifier } from "./heads.ts";

/** Task index of a weight pruned in the current task (Avalanche's `PRUNED_CODE`). */
export const PRUNED_CODE = 255;

/** One linear layer under PackNet: the layer and the task index of each of its weights. */
export interface PackNetLayer {
  /** Dotted module name (`features.0`, `classifier`). */
  readonly name: string;
  readonly layer: Linear;
  /** Task owning each weight (row-major `[in, out]`); {@link PRUNED_CODE} for pruned ones. */
  readonly taskIndex: Uint8Array;
}

/** Plain-data PackNet part of the model's structure (in `stateDict().structure.packnet`). */
export interface PackNetStructure {
  taskCount: number;
  pruned: boolean;
  /** Task index of every weight, by layer name. */
  taskIndex: Record<string, number[]>;
}

/** `w ⊙ visible` whose gradient reaches only the weights marked in `train`. */
const maskedWeight = tf.customGrad(
  ((w: tf.Tensor, visible: tf.Tensor, train: tf.Tensor, save: (ts: tf.Tensor[]) => void) => {
    save([visible, train]);
    return {
      value: tf.mul(w, visible),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [
        tf.mul(dy, saved[1]),
        tf.zerosLike(saved[0]),
        tf.zerosLike(saved[1]),
      ],
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0],
) as unknown as (w: tf.Tensor, visible: tf.Tensor, train: tf.Tensor) => tf.Tensor;

/**
 * An MLP under PackNet (Avalanche's `PackNetModel`, checked against `models/packnet.py`).
 *
 * Every `Linear` of the features, and the head when it is a single `Linear`, is managed:
 * - **Forward** with task label `t` (all samples of a minibatch must share it, as in Avalanche;
 *   none given: every weight of the tasks so far): the weights of tasks ≤ min(t, taskCount) are
 *   used, the others are zero (`W ⊙ visible`); pruned weights are never used.
 * - **Training** task `taskCount`: gradients reach only its free weights (Avalanche's gradient
 *   hook `grad * unfrozen_mask`); the weights of earlier tasks are held exactly by
 *   {@link PackNetModel.enforceFrozen} after each update (weight decay or optimizer state could
 *   move them otherwise). Biases learn only on the first task and are frozen afterwards, as in
 *   Avalanche (`_freeze_pruned` sets `bias.requires_grad = False`).
 * - {@link PackNetModel.prune}: the `proportion` smallest-magnitude free weights of each layer
 *   become pruned (ties by position); the kept ones are fine-tuned afterwards.
 * - {@link PackNetModel.freezePruned}: the task's kept weights are frozen, the pruned ones are
 *   handed to the next task.
 *
 * A multi-head classifier is not pruned: each task has its own head, frozen once the task is
 * done. An incremental head is refused (its growing layer has no PackNet counterpart).
 */
export class PackNetModel extends Module {
  readonly features: Module;
  readonly classifier: Module;
  readonly featureSize: number;
  readonly inputShape: readonly number[];
  readonly #layers: PackNetLayer[] = [];
  #taskCount = 0;
  #pruned = false;
  /** Per managed layer: values and mask of the frozen weights (when taskCount > 0). */
  #frozen = new Map<string, { values: tf.Tensor; mask: tf.Tensor }>();

  /** @param model a {@link Classifier} of linear layers (from `mlp`), taken over by PackNet. */
  constructor(model: Classifier) {
    super();
    if (!(model instanceof Classifier) || !(model.features instanceof Sequential)) {
      throw new TypeError(
        "PackNetModel wraps a Classifier whose features are a Sequential (from mlp()): " +
          "use packNetModel({ hidden: [...] }) or new PackNetModel(mlp({ ... }))",
      );
    }
    if (model.classifier instanceof IncrementalClassifier) {
      throw new TypeError(
        'PackNetModel does not support an incremental head: build the MLP with head "single" ' +
          'or "multi"',
      );
    }
    this.features = this.child("features", model.features);
    this.classifier = this.child("classifier", model.classifier);
    this.featureSize = model.featureSize;
    this.inputShape = model.inputShape;
    for (const [i, l] of (model.features as Sequential).layers.entries()) {
      if (l instanceof Linear) this.#manage(`features.${i}`, l);
      else if (l.namedParameters().size > 0) {
        throw new TypeError(
          `PackNetModel supports Linear layers and parameter-free ones, not ${l.constructor.name} ` +
            `(features.${i})`,
        );
      }
    }
    if (model.classifier instanceof Linear) this.#manage("classifier", model.classifier);
  }

  #manage(name: string, layer: Linear): void {
    this.#layers.push({ name, layer, taskIndex: new Uint8Array(layer.weight.size) });
  }

  /** The managed layers with their task indices. */
  get layers(): readonly PackNetLayer[] {
    return this.#layers;
  }

  /** Tasks frozen so far (Avalanche's `task_count`): the task being trained has this index. */
  get taskCount(): number {
    return this.#taskCount;
  }

  /** Whether the current task has been pruned (post-pruning fine-tuning). */
  get pruned(): boolean {
    return this.#pruned;
  }

  /** The task whose weights a forward with task label `t` uses. */
  activeTask(t: number | undefined): number {
    return t === undefined ? this.#taskCount : Math.min(t, this.#taskCount);
  }

  forward(x: tf.Tensor, opts?: ForwardOptions): tf.Tensor {
    const t = this.activeTask(taskOf(opts));
    const managed = new Map(this.#layers.map((l) => [l.layer, l]));
    let h = x.rank === 2 ? x : tf.reshape(x, [x.shape[0], -1]);
    const layers = (this.features as Sequential).layers;
    for (let i = 0; i < layers.length; i++) {
      const l = layers[i];
      const m = managed.get(l as Linear);
      if (m) {
        h = this.#linear(h, m, t);
        const next = layers[i + 1];
        if (next instanceof Activation && next.kind === "relu") {
          h = tf.relu(h);
          i++;
        }
      } else h = l.forward(h, opts);
    }
    const head = managed.get(this.classifier as Linear);
    return head ? this.#linear(h, head, t) : this.classifier.forward(h, opts);
  }

  /** The features before the head (as `Classifier.embed`). */
  embed(x: tf.Tensor, opts?: ForwardOptions): tf.Tensor {
    const t = this.activeTask(taskOf(opts));
    const managed = new Map(this.#layers.map((l) => [l.layer, l]));
    let h = x.rank === 2 ? x : tf.reshape(x, [x.shape[0], -1]);
    for (const l of (this.features as Sequential).layers) {
      const m = managed.get(l as Linear);
      h = m ? this.#linear(h, m, t) : l.forward(h, opts);
    }
    return h;
  }

  #linear(h: tf.Tensor, m: PackNetLayer, t: number): tf.Tensor {
    const { layer, taskIndex } = m;
    const size = taskIndex.length;
    const visible = new Float32Array(size);
    const train = new Float32Array(size);
    const learning = this.training && t === this.#taskCount;
    for (let i = 0; i < size; i++) {
      const k = taskIndex[i];
      if (k <= t) visible[i] = 1;
      if (learning && k === t) train[i] = 1;
    }
    const shape = layer.weight.shape;
    const vis = tf.tensor(visible, shape);
    // In training mode the gradient reaches only the weights this task owns (none for another
    // task's minibatch); in evaluation nothing is differentiated.
    const w = this.training
      ? maskedWeight(layer.weight, vis, tf.tensor(train, shape))
      : tf.mul(layer.weight, vis);
    if (h.shape[1] !== layer.inFeatures) {
      throw new RangeError(
        `${m.name} expects ${layer.inFeatures} input features but got ${h.shape[1]}`,
      );
    }
    return layer.bias
      ? linearOp(h as tf.Tensor2D, w as tf.Tensor2D, layer.bias as tf.Tensor1D)
      : tf.matMul(h as tf.Tensor2D, w as tf.Tensor2D);
  }

  /**
   * The parameters that learn now: after the first task, no bias of a managed layer and no head
   * of a frozen task.
   */
  override trainableParameters(): Map<string, tf.Variable> {
    const out = super.trainableParameters();
    if (this.#taskCount === 0) return out;
    for (const m of this.#layers) out.delete(`${m.name}.bias`);
    if (this.classifier instanceof MultiHeadClassifier) {
      for (const [task, head] of this.classifier.heads) {
        if (task >= this.#taskCount) continue;
        for (const n of head.namedParameters().keys()) out.delete(`classifier.head${task}.${n}`);
      }
    }
    return out;
  }

  /**
   * Prunes the `proportion` smallest-magnitude free weights of each managed layer (Avalanche's
   * `prune`): their task index becomes {@link PRUNED_CODE}, so that the current task no longer
   * uses them and the next one gets them.
   */
  prune(proportion: number): void {
    if (typeof proportion !== "number" || !(proportion >= 0 && proportion <= 1)) {
      throw new RangeError(`PackNet prune proportion must be in [0, 1], got ${String(proportion)}`);
    }
    if (this.#pruned) {
      throw new Error(
        `PackNet task ${this.#taskCount} is already pruned: call freezePruned() before pruning again`,
      );
    }
    for (const { layer, taskIndex } of this.#layers) {
      const w = layer.weight.dataSync();
      const free: number[] = [];
      for (let i = 0; i < taskIndex.length; i++) if (taskIndex[i] === this.#taskCount) free.push(i);
      free.sort((a, b) => Math.abs(w[a]) - Math.abs(w[b]) || a - b);
      const count = Math.floor(free.length * proportion);
      for (let k = 0; k < count; k++) taskIndex[free[k]] = PRUNED_CODE;
    }
    this.#pruned = true;
  }

  /**
   * Ends the current task (Avalanche's `freeze_pruned`): its kept weights are frozen and the
   * pruned ones belong to the next task.
   */
  freezePruned(): void {
    if (this.#taskCount + 1 >= PRUNED_CODE) {
      throw new RangeError(`PackNet holds at most ${PRUNED_CODE - 1} tasks`);
    }
    this.#taskCount++;
    for (const { taskIndex } of this.#layers) {
      for (let i = 0; i < taskIndex.length; i++) {
        if (taskIndex[i] === PRUNED_CODE) taskIndex[i] = this.#taskCount;
      }
    }
    this.#pruned = false;
    this.#snapshotFrozen();
  }

  /** Puts the frozen weights back to their values (after an optimizer step). */
  enforceFrozen(): void {
    for (const { name, layer } of this.#layers) {
      const f = this.#frozen.get(name);
      if (f) tf.tidy(() => layer.weight.assign(tf.where(f.mask, f.values, layer.weight)));
    }
  }

  #snapshotFrozen(): void {
    this.#disposeFrozen();
    if (this.#taskCount === 0) return;
    for (const { name, layer, taskIndex } of this.#layers) {
      const mask = new Uint8Array(taskIndex.length);
      for (let i = 0; i < mask.length; i++) mask[i] = taskIndex[i] < this.#taskCount ? 1 : 0;
      this.#frozen.set(name, {
        values: tf.keep(tf.clone(layer.weight)),
        mask: tf.keep(tf.tensor(mask, layer.weight.shape, "bool")),
      });
    }
  }

  #disposeFrozen(): void {
    for (const f of this.#frozen.values()) {
      f.values.dispose();
      f.mask.dispose();
    }
    this.#frozen.clear();
  }

  override structure(): Record<string, unknown> {
    const packnet: PackNetStructure = {
      taskCount: this.#taskCount,
      pruned: this.#pruned,
      taskIndex: Object.fromEntries(this.#layers.map((l) => [l.name, Array.from(l.taskIndex)])),
    };
    return { ...super.structure(), packnet };
  }

  override loadStructure(structure: Record<string, unknown>): void {
    super.loadStructure(structure);
    const s = structure.packnet as PackNetStructure | undefined;
    if (!s) return;
    if (!Number.isInteger(s.taskCount) || s.taskCount < 0 || typeof s.taskIndex !== "object") {
      throw new TypeError("Not a PackNet structure: expected { taskCount, pruned, taskIndex }");
    }
    for (const l of this.#layers) {
      const idx = s.taskIndex[l.name];
      if (!Array.isArray(idx) || idx.length !== l.taskIndex.length) {
        throw new RangeError(
          `The PackNet state has ${idx?.length} task indices for ${l.name}, the layer has ` +
            `${l.taskIndex.length} weights`,
        );
      }
    }
    for (const l of this.#layers) l.taskIndex.set(s.taskIndex[l.name]);
    this.#taskCount = s.taskCount;
    this.#pruned = !!s.pruned;
  }

  override loadStateDict(state: ModuleState): void {
    super.loadStateDict(state);
    this.#snapshotFrozen();
  }

  override dispose(): void {
    this.#disposeFrozen();
    super.dispose();
  }
}

function taskOf(opts: ForwardOptions | undefined): number | undefined {
  const tasks = opts?.taskLabelsArray ??
    (opts?.taskLabels ? opts.taskLabels.dataSync() as Int32Array : undefined);
  if (!tasks || tasks.length === 0) return undefined;
  const t = tasks[0];
  for (let i = 1; i < tasks.length; i++) {
    if (tasks[i] !== t) {
      throw new RangeError(
        `PackNet needs one task label per minibatch (as Avalanche), got ${t} and ${tasks[i]}: ` +
          `evaluate each task's experience on its own`,
      );
    }
  }
  return t;
}

/**
 * An MLP under PackNet (Avalanche's `packnet_simple_mlp`): `mlp(opts)` wrapped in a
 * {@link PackNetModel}. For task-incremental streams, `head: "multi"` gives each task its head.
 *
 * @example
 * ```ts
 * import { setBackend } from "../backend.ts";
 * import { packNetModel } from "./packnet.ts";
 * await setBackend("cpu");
 * const model = packNetModel({ input: 4, hidden: [3], outputs: 2, seed: 0 });
 * model.prune(0.5); // half of each layer's free weights go to the next task
 * console.assert(model.layers[0].taskIndex.filter((k) => k === 255).length === 6);
 * model.freezePruned();
 * console.assert(model.taskCount === 1);
 * model.dispose();
 * ```
 */
export function packNetModel(opts: MLPOptions = {}): PackNetModel {
  return new PackNetModel(mlp(opts));
}
