/**
 * Output heads for continual learning: a classifier that grows with new classes and a multi-head
 * classifier with one head per task label.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Experience } from "../data/experience.ts";
import { drawSeed, Linear } from "../nn/layers.ts";
import { type ForwardOptions, Module } from "../nn/module.ts";

/** Logit given to output units of classes not seen yet in training (as Avalanche's masking). */
export const MASK_VALUE = -1000;

/**
 * A linear classifier whose output layer grows when an experience brings class labels beyond
 * its size (Avalanche's `IncrementalClassifier`). Old units keep their weights. With `masking`,
 * units of classes never seen in training output {@link MASK_VALUE}.
 */
export class IncrementalClassifier extends Module {
  readonly classifier: Linear;
  /** Classes seen in training so far (masking). */
  readonly activeUnits: Set<number> = new Set();
  readonly #seed: number;

  constructor(
    readonly inFeatures: number,
    initialOutFeatures = 2,
    readonly masking = true,
    seed?: number,
  ) {
    super();
    this.#seed = drawSeed(seed);
    this.classifier = this.child(
      "classifier",
      new Linear(inFeatures, initialOutFeatures, { seed: this.#seed }),
    );
  }

  /** Current number of output units. */
  get outFeatures(): number {
    return this.classifier.outFeatures;
  }

  override adapt(experience: Experience, training = true): boolean {
    const needed = Math.max(...experience.classes) + 1;
    if (training) { for (const c of experience.classes) this.activeUnits.add(c); }
    if (needed > this.outFeatures) {
      this.classifier.resizeOutputs(needed, this.#seed + 7919 * needed);
      return true;
    }
    return false;
  }

  forward(x: tf.Tensor): tf.Tensor {
    const out = this.classifier.forward(x);
    if (
      !this.masking || this.activeUnits.size === 0 || this.activeUnits.size === this.outFeatures
    ) {
      return out;
    }
    const mask = new Float32Array(this.outFeatures).fill(MASK_VALUE);
    const keep = new Float32Array(this.outFeatures);
    for (const c of this.activeUnits) {
      if (c < this.outFeatures) {
        mask[c] = 0;
        keep[c] = 1;
      }
    }
    return tf.add(tf.mul(out, tf.tensor1d(keep)), tf.tensor1d(mask));
  }

  override structure(): Record<string, unknown> {
    return {
      outFeatures: this.outFeatures,
      activeUnits: [...this.activeUnits].sort((a, b) => a - b),
    };
  }

  override loadStructure(s: Record<string, unknown>): void {
    const out = Number(s.outFeatures);
    if (out > 0 && out !== this.outFeatures) {
      this.classifier.resizeOutputs(out, this.#seed + 7919 * out);
    }
    this.activeUnits.clear();
    for (const c of (s.activeUnits as number[] | undefined) ?? []) this.activeUnits.add(c);
  }
}

/**
 * One linear head per task label (Avalanche's `MultiHeadClassifier`): a sample goes through the
 * head of its task. Heads are created when an experience brings a new task label, sized to the
 * experience's classes (at least `initialOutFeatures`); outputs of smaller heads are padded with
 * {@link MASK_VALUE} so that a batch of mixed tasks forms one tensor.
 */
export class MultiHeadClassifier extends Module {
  readonly heads: Map<number, Linear> = new Map();
  readonly #seed: number;

  constructor(readonly inFeatures: number, readonly initialOutFeatures = 2, seed?: number) {
    super();
    this.#seed = drawSeed(seed);
  }

  #addHead(task: number, outFeatures: number): void {
    const head = new Linear(this.inFeatures, outFeatures, { seed: this.#seed + 7919 * (task + 1) });
    this.heads.set(task, this.child(`head${task}`, head));
  }

  override adapt(experience: Experience): boolean {
    let changed = false;
    const size = Math.max(this.initialOutFeatures, Math.max(...experience.classes) + 1);
    for (const t of experience.taskLabels) {
      const head = this.heads.get(t);
      if (!head) {
        this.#addHead(t, size);
        changed = true;
      } else if (head.outFeatures < size) {
        head.resizeOutputs(size);
        changed = true;
      }
    }
    return changed;
  }

  /** Largest head size: the width of the output tensor. */
  get outFeatures(): number {
    let m = 0;
    for (const h of this.heads.values()) m = Math.max(m, h.outFeatures);
    return m;
  }

  forward(x: tf.Tensor, opts?: ForwardOptions): tf.Tensor {
    const n = x.shape[0];
    let tasks = opts?.taskLabelsArray;
    if (!tasks) {
      if (!opts?.taskLabels) {
        throw new TypeError(
          "MultiHeadClassifier needs task labels: pass taskLabels in the forward options " +
            "(strategies do this from the experience's task labels)",
        );
      }
      tasks = opts.taskLabels.dataSync() as Int32Array;
    }
    const unique = [...new Set(tasks)];
    for (const t of unique) {
      if (!this.heads.has(t)) {
        throw new RangeError(
          `No head for task label ${t} (heads: ${[...this.heads.keys()].join(", ") || "none"}): ` +
            `adapt the model to an experience of that task first`,
        );
      }
    }
    const width = this.outFeatures;
    const run = (t: number, input: tf.Tensor) => {
      const head = this.heads.get(t)!;
      const out = head.forward(input);
      return head.outFeatures === width
        ? out
        : tf.concat([out, tf.fill([input.shape[0], width - head.outFeatures], MASK_VALUE)], 1);
    };
    if (tasks.length !== n) {
      throw new RangeError(`${tasks.length} task labels for a batch of ${n} samples`);
    }
    if (unique.length === 1) return run(unique[0], x);
    // Mixed tasks: run every head on the batch and pick each row from its task's head. (Gathering
    // rows would be cheaper, but the gradient of gather needs the UnsortedSegmentSum kernel, which
    // the wasm backend lacks.)
    let out = run(unique[0], x);
    for (const t of unique.slice(1)) {
      const pick = new Uint8Array(n * width);
      for (let i = 0; i < n; i++) if (tasks[i] === t) pick.fill(1, i * width, (i + 1) * width);
      out = tf.where(tf.tensor2d(pick, [n, width], "bool"), run(t, x), out);
    }
    return out;
  }

  override structure(): Record<string, unknown> {
    return { heads: [...this.heads].map(([t, h]) => [t, h.outFeatures]) };
  }

  override loadStructure(s: Record<string, unknown>): void {
    for (const [t, size] of (s.heads as [number, number][] | undefined) ?? []) {
      const h = this.heads.get(t);
      if (!h) this.#addHead(t, size);
      else if (h.outFeatures !== size) h.resizeOutputs(size);
    }
  }
}
