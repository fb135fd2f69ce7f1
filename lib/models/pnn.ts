/**
 * Progressive Neural Networks (Rusu et al., "Progressive Neural Networks", arXiv 2016), as
 * Avalanche's `models/pnn.py`: one column of layers per task, each new column reading the
 * previous columns' activations through lateral adapters, the old columns frozen.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Experience } from "../data/experience.ts";
import { drawSeed, Linear } from "../nn/layers.ts";
import { type ForwardOptions, Module } from "../nn/module.ts";
import { MultiHeadClassifier } from "./heads.ts";
import { checkOptions, oneOf, type OptionSpec } from "../options.ts";

/** The lateral adapter of a column: `"mlp"` (Eq. 2 of the paper) or `"linear"` (Eq. 1). */
export type PNNAdapter = "mlp" | "linear";

/** Sub-modules by index ("0", "1", ...), as PyTorch's `nn.ModuleList`. */
class ModuleList<M extends Module> extends Module {
  readonly items: M[] = [];
  push(m: M): M {
    this.child(String(this.items.length), m);
    this.items.push(m);
    return m;
  }
  forward(): tf.Tensor {
    throw new Error("A ModuleList has no forward: call its items");
  }
}

/**
 * Linear lateral connections (Avalanche's `LinearAdapter`, the paper's Eq. 1): one linear layer
 * per previous column, their outputs summed: `Σ_j lat_j(h_j)`.
 */
export class LinearAdapter extends Module {
  readonly latLayers: ModuleList<Linear>;

  constructor(
    readonly inFeatures: number,
    readonly outFeaturesPerColumn: number,
    readonly numPrevModules: number,
    seed?: number,
  ) {
    super();
    const s = drawSeed(seed);
    this.latLayers = this.child("latLayers", new ModuleList<Linear>());
    for (let j = 0; j < numPrevModules; j++) {
      this.latLayers.push(new Linear(inFeatures, outFeaturesPerColumn, { seed: s + 10 * j }));
    }
  }

  /** `Σ_j lat_j(xs[j])`, or undefined for the first column (no previous columns). */
  forwardLateral(xs: readonly tf.Tensor[]): tf.Tensor | undefined {
    checkLateral(xs, this.numPrevModules);
    if (this.numPrevModules === 0) return undefined;
    const hs = this.latLayers.items.map((l, j) => l.forward(xs[j]));
    return hs.length === 1 ? hs[0] : tf.addN(hs);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.forwardLateral([x]) ?? tf.zeros([x.shape[0], this.outFeaturesPerColumn]);
  }
}

/**
 * MLP lateral connections (Avalanche's `MLPAdapter`, the paper's Eq. 2): each previous column's
 * activations scaled by a learned scalar `α_j`, concatenated, then `U(relu(V(·)))`.
 */
export class MLPAdapter extends Module {
  readonly V: Linear | undefined;
  readonly U: Linear | undefined;
  readonly alphas: tf.Variable | undefined;

  constructor(
    readonly inFeatures: number,
    readonly outFeaturesPerColumn: number,
    readonly numPrevModules: number,
    seed?: number,
  ) {
    super();
    if (numPrevModules === 0) return; // the first column has no adapter
    const s = drawSeed(seed);
    this.V = this.child(
      "V",
      new Linear(inFeatures * numPrevModules, outFeaturesPerColumn, { seed: s }),
    );
    // Avalanche: torch.randn(num_prev_modules).
    this.alphas = this.param("alphas", tf.randomNormal([numPrevModules], 0, 1, "float32", s + 5));
    this.U = this.child(
      "U",
      new Linear(outFeaturesPerColumn, outFeaturesPerColumn, { seed: s + 7 }),
    );
  }

  /** `U(relu(V([α_0 xs[0], α_1 xs[1], ...])))`, or undefined for the first column. */
  forwardLateral(xs: readonly tf.Tensor[]): tf.Tensor | undefined {
    checkLateral(xs, this.numPrevModules);
    if (this.numPrevModules === 0) return undefined;
    const scaled = xs.map((x, j) => tf.mul(x, tf.slice(this.alphas!, [j], [1])));
    const cat = scaled.length === 1 ? scaled[0] : tf.concat(scaled, 1);
    return this.U!.forward(this.V!.forwardActivated(cat, "relu"));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.forwardLateral([x]) ?? tf.zeros([x.shape[0], this.outFeaturesPerColumn]);
  }
}

function checkLateral(xs: readonly tf.Tensor[], n: number): void {
  if (xs.length !== n) {
    throw new RangeError(`A lateral adapter of ${n} previous columns got ${xs.length} inputs`);
  }
  for (const x of xs) {
    if (x.rank !== 2) {
      throw new RangeError(
        `Inputs of a lateral adapter must have two dimensions [batch, features], got [${x.shape}]`,
      );
    }
  }
}

/**
 * One column of a PNN layer (Avalanche's `PNNColumn`): `itoh(x_k) + adapter(x_0, ..., x_{k−1})`,
 * `x_j` the previous layer's activations of column `j`.
 */
export class PNNColumn extends Module {
  readonly itoh: Linear;
  readonly adapter: LinearAdapter | MLPAdapter;

  constructor(
    readonly inFeatures: number,
    readonly outFeaturesPerColumn: number,
    readonly numPrevModules: number,
    adapter: PNNAdapter = "mlp",
    seed?: number,
  ) {
    super();
    const s = drawSeed(seed);
    this.itoh = this.child("itoh", new Linear(inFeatures, outFeaturesPerColumn, { seed: s }));
    if (adapter !== "mlp" && adapter !== "linear") {
      throw new RangeError(`PNN adapter must be "mlp" or "linear", got ${String(adapter)}`);
    }
    const Adapter = adapter === "linear" ? LinearAdapter : MLPAdapter;
    this.adapter = this.child(
      "adapter",
      new Adapter(inFeatures, outFeaturesPerColumn, numPrevModules, s + 101),
    );
  }

  /** `xs`: the activations of columns 0..k (this column's own input last). */
  forwardColumns(xs: readonly tf.Tensor[]): tf.Tensor {
    const own = this.itoh.forward(xs[xs.length - 1]);
    const lateral = this.adapter.forwardLateral(xs.slice(0, -1));
    return lateral ? tf.add(lateral, own) : own;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.forwardColumns(Array(this.numPrevModules + 1).fill(x));
  }
}

/**
 * A layer of a PNN (Avalanche's `PNNLayer`): one {@link PNNColumn} per task, added when an
 * experience brings a new task label (each experience must have one task label).
 */
export class PNNLayer extends Module {
  readonly columns: ModuleList<PNNColumn>;
  /** Column of each task label (Avalanche's `task_to_module_idx`). */
  readonly taskToModuleIdx: Map<number, number> = new Map();
  /** Seed of the columns' initializers (column k: seed + 7919·k); restored with the structure. */
  #seed: number;

  constructor(
    readonly inFeatures: number,
    readonly outFeaturesPerColumn: number,
    readonly adapter: PNNAdapter = "mlp",
    seed?: number,
  ) {
    super();
    this.#seed = drawSeed(seed);
    this.columns = this.child("columns", new ModuleList<PNNColumn>());
    this.#addColumn();
  }

  /** Number of columns. */
  get numColumns(): number {
    return this.columns.items.length;
  }

  #addColumn(): void {
    const k = this.numColumns;
    this.columns.push(
      new PNNColumn(
        this.inFeatures,
        this.outFeaturesPerColumn,
        k,
        this.adapter,
        this.#seed + 7919 * k,
      ),
    );
  }

  /** Adds the column of the experience's task when training on a new task. */
  override adapt(experience: Experience, training = true): boolean {
    if (!training) return false;
    const labels = experience.taskLabels;
    if (labels.length !== 1) {
      throw new RangeError(
        `PNN assumes one task per experience, but experience ${experience.id} has task labels ` +
          `[${labels}]: use a task-incremental benchmark (splitMNIST({ returnTaskId: true }))`,
      );
    }
    const t = labels[0];
    if (this.taskToModuleIdx.has(t)) return false;
    if (this.taskToModuleIdx.size === 0) {
      this.taskToModuleIdx.set(t, 0); // the first column exists already
      return false;
    }
    this.taskToModuleIdx.set(t, this.numColumns);
    this.#addColumn();
    return true;
  }

  /** The column of task `t`; a task not trained yet uses the newest column. */
  columnOf(t: number): number {
    return this.taskToModuleIdx.get(t) ?? this.numColumns - 1;
  }

  /** Outputs of columns 0..k for their inputs `xs` (Avalanche's `forward_single_task`). */
  forwardColumns(xs: readonly tf.Tensor[], k: number): tf.Tensor[] {
    const hs: tf.Tensor[] = [];
    for (let i = 0; i <= k; i++) hs.push(this.columns.items[i].forwardColumns(xs.slice(0, i + 1)));
    return hs;
  }

  forward(x: tf.Tensor): tf.Tensor {
    const k = this.numColumns - 1;
    return this.forwardColumns(Array(k + 1).fill(x), k)[k];
  }

  /** Parameters of the newest column: the only ones that learn (older columns are frozen). */
  newestColumnParameters(prefix = ""): Map<string, tf.Variable> {
    const k = this.numColumns - 1;
    return this.columns.items[k].namedParameters(`${prefix}columns.${k}.`);
  }

  override structure(): Record<string, unknown> {
    return { columns: this.numColumns, tasks: [...this.taskToModuleIdx], seed: this.#seed };
  }

  override loadStructure(s: Record<string, unknown>): void {
    const n = Number(s.columns);
    if (!Number.isInteger(n) || n < 1) {
      throw new TypeError(`Not a PNN layer structure: columns ${String(s.columns)}`);
    }
    if (n < this.numColumns) {
      throw new RangeError(
        `The state has ${n} PNN columns but the model has ${this.numColumns} already: restore ` +
          `into a new model`,
      );
    }
    // The columns a restored run adds later are initialized as the uninterrupted run's.
    if (Number.isInteger(s.seed)) this.#seed = s.seed as number;
    while (this.numColumns < n) this.#addColumn();
    this.taskToModuleIdx.clear();
    for (const [t, c] of (s.tasks as [number, number][] | undefined) ?? []) {
      this.taskToModuleIdx.set(t, c);
    }
  }
}

/** Options of {@link pnn} and {@link PNN}. */
export interface PNNOptions {
  /** Layers per column. @default 1 */
  numLayers?: number;
  /** Input features (inputs of other shapes with this many values are flattened). @default 784 */
  inFeatures?: number;
  /** Hidden units of each column's layers. @default 100 */
  hiddenFeaturesPerColumn?: number;
  /** Lateral adapter. @default "mlp" */
  adapter?: PNNAdapter;
  /** Initializer seed (default: drawn from the run's seeded Math.random). */
  seed?: number;
}

/** The keys of {@link PNNOptions}, for checking what users pass. */
export const PNN_OPTIONS: OptionSpec<PNNOptions> = {
  numLayers: "integer",
  inFeatures: "integer",
  hiddenFeaturesPerColumn: "integer",
  adapter: oneOf("mlp", "linear"),
  seed: "number",
};

/**
 * A progressive neural network (Avalanche's `PNN`, checked against `models/pnn.py`), for
 * task-incremental streams with one task per experience.
 *
 * With `x` the input and `h^l_k` the activations of layer `l` in column `k` (`h^0_k = x`):
 * `h^l_k = relu(itoh(h^{l−1}_k) + adapter(h^{l−1}_0, ..., h^{l−1}_{k−1}))`, the adapter
 * `Σ_j lat_j(h_j)` (linear) or `U(relu(V([α_0 h_0, ..., α_{k−1} h_{k−1}])))` (mlp). A sample of
 * task `t` runs columns 0..k(t) and the head of `t` (a {@link MultiHeadClassifier}) reads
 * `h^L_{k(t)}`. A new task label in training adds a column to every layer; only the newest
 * columns learn (Avalanche freezes the older ones when it adds a column). A task not trained yet
 * is evaluated with the newest column.
 *
 * As in Avalanche, the first layer has lateral adapters too (on copies of the input), and the
 * head has none (the paper has laterals into every layer from the second on, the output layer
 * included). Differences: the `adapter` choice applies to every layer (Avalanche's first layer
 * always takes the MLP adapter), and the linear adapter works (Avalanche's reads an attribute it
 * never sets).
 */
export class PNN extends Module {
  readonly numLayers: number;
  readonly inFeatures: number;
  readonly hiddenFeaturesPerColumn: number;
  readonly adapter: PNNAdapter;
  readonly layers: ModuleList<PNNLayer>;
  readonly classifier: MultiHeadClassifier;
  readonly inputShape: readonly number[];

  /**
   * @param numLayers layers per column (or the options object). @default 1
   * @param inFeatures input features. @default 784
   * @param hiddenFeaturesPerColumn units per column and layer. @default 100
   * @param adapter `"mlp"` or `"linear"`. @default "mlp"
   */
  constructor(
    numLayers: number | PNNOptions = 1,
    inFeatures = 784,
    hiddenFeaturesPerColumn = 100,
    adapter: PNNAdapter = "mlp",
  ) {
    super();
    const o: PNNOptions = typeof numLayers === "object" && numLayers !== null
      ? checkOptions("PNN", numLayers, PNN_OPTIONS)
      : { numLayers, inFeatures, hiddenFeaturesPerColumn, adapter };
    this.numLayers = o.numLayers ?? 1;
    this.inFeatures = o.inFeatures ?? 784;
    this.hiddenFeaturesPerColumn = o.hiddenFeaturesPerColumn ?? 100;
    this.adapter = o.adapter ?? "mlp";
    for (
      const [k, v] of [
        ["numLayers", this.numLayers],
        ["inFeatures", this.inFeatures],
        ["hiddenFeaturesPerColumn", this.hiddenFeaturesPerColumn],
      ] as const
    ) {
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(`PNN ${k} must be a positive integer, got ${String(v)}`);
      }
    }
    if (this.adapter !== "mlp" && this.adapter !== "linear") {
      throw new RangeError(`PNN adapter must be "mlp" or "linear", got ${String(this.adapter)}`);
    }
    this.inputShape = [this.inFeatures];
    const seed = drawSeed(o.seed);
    this.layers = this.child("layers", new ModuleList<PNNLayer>());
    for (let l = 0; l < this.numLayers; l++) {
      const width = l === 0 ? this.inFeatures : this.hiddenFeaturesPerColumn;
      this.layers.push(
        new PNNLayer(width, this.hiddenFeaturesPerColumn, this.adapter, seed + 100003 * l),
      );
    }
    this.classifier = this.child(
      "classifier",
      new MultiHeadClassifier(this.hiddenFeaturesPerColumn, 2, seed + 99991),
    );
  }

  /** Number of columns (one per task trained). */
  get numColumns(): number {
    return this.layers.items[0].numColumns;
  }

  /** The column task `t` uses. */
  columnOf(t: number): number {
    return this.layers.items[this.numLayers - 1].columnOf(t);
  }

  /** The activations `h^L` of the column of task `t` (the head's input). */
  forwardFeatures(x: tf.Tensor, t: number): tf.Tensor {
    const x2 = x.rank === 2 ? x : tf.reshape(x, [x.shape[0], -1]);
    if (x2.shape[1] !== this.inFeatures) {
      throw new RangeError(
        `PNN expects ${this.inFeatures} input features, got shape [${x.shape}]`,
      );
    }
    const k = this.columnOf(t);
    let hs: tf.Tensor[] = Array(k + 1).fill(x2);
    for (const layer of this.layers.items) hs = layer.forwardColumns(hs, k).map((h) => tf.relu(h));
    return hs[k];
  }

  /** Each sample through the columns and head of its task (one pass per task of the batch). */
  forward(x: tf.Tensor, opts?: ForwardOptions): tf.Tensor {
    const n = x.shape[0];
    let tasks = opts?.taskLabelsArray;
    if (!tasks) {
      if (!opts?.taskLabels) {
        throw new TypeError(
          "PNN needs task labels: pass taskLabels in the forward options (strategies do this " +
            "from the experience's task labels)",
        );
      }
      tasks = opts.taskLabels.dataSync() as Int32Array;
    }
    const unique = [...new Set(tasks)];
    const run = (t: number) =>
      this.classifier.forward(this.forwardFeatures(x, t), {
        taskLabelsArray: new Int32Array(n).fill(t),
      });
    let out = run(unique[0]);
    // Mixed tasks: every task's pass over the batch, each row from its task (as the multi-head
    // classifier does: the gradient of a gather needs a kernel the wasm backend lacks).
    for (const t of unique.slice(1)) {
      const width = out.shape[1]!;
      const pick = new Uint8Array(n * width);
      for (let i = 0; i < n; i++) if (tasks[i] === t) pick.fill(1, i * width, (i + 1) * width);
      out = tf.where(tf.tensor2d(pick, [n, width], "bool"), run(t), out);
    }
    return out;
  }

  /** Only the newest column of each layer learns, and every head (old heads get no gradient). */
  override trainableParameters(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    this.layers.items.forEach((l, i) => {
      for (const [n, v] of l.newestColumnParameters(`layers.${i}.`)) if (v.trainable) out.set(n, v);
    });
    for (const [n, v] of this.classifier.namedParameters("classifier.")) {
      if (v.trainable) out.set(n, v);
    }
    return out;
  }
}

/**
 * A {@link PNN} from options.
 *
 * @example
 * ```ts
 * import { setBackend } from "../backend.ts";
 * import { pnn } from "./pnn.ts";
 * await setBackend("cpu");
 * const model = pnn({ numLayers: 2, inFeatures: 4, hiddenFeaturesPerColumn: 3, seed: 0 });
 * console.assert(model.numColumns === 1);
 * model.dispose();
 * ```
 */
export function pnn(opts: PNNOptions = {}): PNN {
  return new PNN(checkOptions("pnn", opts, PNN_OPTIONS));
}
