import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../lib/backend.ts";
import type { BenchmarkInfo, Experience } from "../lib/data/experience.ts";
import { makeExperience } from "../lib/data/experience.ts";
import { ArrayDataset } from "../lib/data/dataset.ts";
import {
  accuracy,
  bwt,
  confusionMatrix,
  countMacs,
  forgetting,
  forwardTransfer,
  functional,
  loss,
  macs,
  memory,
  type Metric,
  resolveWindows,
  timing,
  toConfusionMatrix,
} from "../lib/metrics/mod.ts";
import type { MetricRow } from "../lib/data/rows.ts";
import { cnn, mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { evaluation } from "../lib/plugins/evaluation.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";

await setBackend("wasm");

// ---------------------------------------------------------------- fixtures ----

const C = 3;

function info(numExperiences: number): BenchmarkInfo {
  return {
    name: "fixture",
    scenario: "class-incremental",
    numClasses: C,
    inputShape: [C],
    numExperiences,
  };
}

/** An experience whose inputs are the logits the model will output (see `forceLogits`). */
function experience(
  stream: string,
  id: number,
  samples: { logits: number[]; y: number; t?: number }[],
  n = 2,
): Experience {
  const ds = new ArrayDataset({
    x: Float32Array.from(samples.flatMap((s) => s.logits)),
    y: samples.map((s) => s.y),
    taskLabels: samples.map((s) => s.t ?? 0),
    inputShape: [C],
  });
  return makeExperience(stream, id, ds, info(n));
}

/** Replaces the model's output by its input (kept connected to the parameters, gradient 0). */
const forceLogits: Plugin = {
  name: "forceLogits",
  afterForward(ctx) {
    ctx.output = tf.add(tf.reshape(ctx.batch!.x, ctx.output!.shape), tf.mul(ctx.output!, 0));
  },
  afterEvalForward(ctx) {
    ctx.output = tf.add(tf.reshape(ctx.batch!.x, ctx.output!.shape), tf.mul(ctx.output!, 0));
  },
};

/** Cross-entropy of one sample, by hand. */
function ce(logits: number[], y: number): number {
  const m = Math.max(...logits);
  const lse = m + Math.log(logits.reduce((a, v) => a + Math.exp(v - m), 0));
  return lse - logits[y];
}

function close(actual: number | undefined, expected: number, what: string, eps = 1e-5) {
  assert.ok(
    actual !== undefined && Math.abs(actual - expected) < eps,
    `${what}: expected ${expected}, got ${actual}`,
  );
}

function pick(rows: readonly MetricRow[], where: Partial<MetricRow>): MetricRow[] {
  return rows.filter((r) =>
    Object.entries(where).every(([k, v]) => (r as unknown as Record<string, unknown>)[k] === v)
  );
}

// Training samples, in loader order (no shuffling, batches of 2):
// batch 1: both correct; batch 2: both wrong (s3's label is not even in its top 2).
const TRAIN = [
  { logits: [2, 0, 0], y: 0 }, // correct
  { logits: [0, 2, 0], y: 1 }, // correct
  { logits: [0, 1, 2], y: 1 }, // wrong, top-2 right
  { logits: [2, 1, 0], y: 2 }, // wrong, top-2 wrong
];
// Test experiences.
const TEST0 = [
  { logits: [3, 0, 0], y: 0 }, // correct
  { logits: [1, 0, 3], y: 1 }, // wrong: predicted 2, top-2 wrong
];
const TEST1 = [
  { logits: [0, 0, 3], y: 2 }, // correct
  { logits: [0, 3, 1], y: 2 }, // wrong: predicted 1, top-2 right
  { logits: [0, 0, 3], y: 2 }, // correct
];

async function run(metrics: Metric[], opts: { epochs?: number; train?: typeof TRAIN } = {}) {
  const model = mlp({ input: C, hidden: [], outputs: C, seed: 0 });
  const evaluator = evaluation({ metrics });
  const s = naive({
    model,
    batchSize: 2,
    epochs: opts.epochs ?? 2,
    shuffle: false,
    seed: 0,
    optimizer: sgd({ lr: 0.1 }),
    plugins: [forceLogits],
    evaluator,
  });
  const train = experience("train", 0, opts.train ?? TRAIN);
  const test = [experience("test", 0, TEST0), experience("test", 1, TEST1)];
  await s.train(train);
  await s.eval(test);
  s.dispose();
  model.dispose();
  evaluator.dispose();
  return { rows: evaluator.rows, strategyRows: s.rows, evaluator };
}

// -------------------------------------------------------------- functional ----

Deno.test("functional: hand-computed accuracy-matrix metrics", () => {
  const m = [
    [0.9, 0.2, 0.1],
    [0.6, 0.8, 0.3],
    [0.5, 0.7, 0.9],
  ];
  close(functional.averageAccuracy(m), (0.5 + 0.7 + 0.9) / 3, "A_2");
  close(functional.averageAccuracy(m, 1), (0.6 + 0.8) / 2, "A_1");
  close(functional.averageAccuracy(m, 0), 0.9, "A_0");
  close(functional.learningAccuracy(m), (0.9 + 0.8 + 0.9) / 3, "LA_2");
  close(functional.learningAccuracy(m, 1), (0.9 + 0.8) / 2, "LA_1");
  // f_0 = max(0.9, 0.6) − 0.5 = 0.4; f_1 = max(0.2, 0.8) − 0.7 = 0.1.
  const f = functional.forgetting(m);
  assert.equal(f.length, 2);
  close(f[0], 0.4, "f_0");
  close(f[1], 0.1, "f_1");
  close(functional.averageForgetting(m), 0.25, "F_2");
  close(functional.averageForgetting(m, 1), 0.3, "F_1"); // 0.9 − 0.6
  assert.ok(Number.isNaN(functional.averageForgetting(m, 0)));
  // BWT = ((0.5 − 0.9) + (0.7 − 0.8)) / 2
  close(functional.backwardTransfer(m), -0.25, "BWT");
  close(functional.backwardTransfer(m, 1), -0.3, "BWT after 1");
  // FWT = ((R01 − b1) + (R12 − b2)) / 2 = ((0.2 − 0.1) + (0.3 − 0.05)) / 2
  close(functional.forwardTransfer(m, [0.3, 0.1, 0.05]), 0.175, "FWT");
  close(functional.forwardTransfer(m, [0.3, 0.1, 0.05], 0), 0.1, "FWT after 0");
  // Forgetting uses the maximum, not the first value: an experience that improved then dropped.
  close(functional.forgetting([[0.5, 0], [0.9, 0], [0.4, 0]])[0], 0.5, "max over l < k");
});

Deno.test("functional: missing entries are left out; bad rows are RangeErrors", () => {
  const m = [[0.8], [NaN, 0.9], [0.6, 0.7, 0.8]];
  close(functional.averageForgetting(m), 0.2, "only f_0 = 0.8 − 0.6; f_1 = 0.9 − 0.7");
  assert.deepEqual(functional.forgetting([[0.8], [0.5, 0.9]], 1), [0.30000000000000004]);
  close(functional.backwardTransfer(m), ((0.6 - 0.8) + (0.7 - 0.9)) / 2, "BWT");
  assert.ok(Number.isNaN(functional.forwardTransfer(m, [])), "no baseline: NaN");
  assert.throws(() => functional.averageAccuracy(m, 3), /row 3 is out of range.*3 rows/);
  assert.throws(() => functional.forgetting([]), RangeError);
  const row = (trainExperience: number, experience: number, value: number): MetricRow => ({
    metric: "accuracy",
    phase: "eval",
    stream: "test",
    experience,
    task: null,
    epoch: null,
    iteration: 0,
    trainExperience,
    value,
  });
  assert.deepEqual(
    functional.accuracyBeforeTraining([row(-1, 0, 0.1), row(0, 0, 0.9), row(-1, 2, 0.3)]),
    [0.1, NaN, 0.3],
  );
});

// ---------------------------------------------------------------- accuracy ----

Deno.test("accuracy at every granularity matches hand-computed values and the loop's rows", async () => {
  const { rows, strategyRows } = await run([
    accuracy({ at: ["minibatch", "epoch", "experience", "stream"], phase: ["train", "eval"] }),
  ]);
  const train = pick(rows, { metric: "accuracy", phase: "train", task: null });
  assert.deepEqual(
    pick(train, { at: "minibatch" }).map((r) => [r.epoch, r.iteration, r.value]),
    [[0, 1, 1], [0, 2, 0], [1, 3, 1], [1, 4, 0]],
  );
  assert.deepEqual(pick(train, { at: "epoch" }).map((r) => [r.epoch, r.value]), [[0, 0.5], [
    1,
    0.5,
  ]]);
  assert.deepEqual(pick(train, { at: "experience" }).map((r) => [r.experience, r.value]), [[
    0,
    0.5,
  ]]);
  const trainStream = pick(train, { at: "stream" });
  assert.equal(trainStream.length, 1);
  assert.equal(trainStream[0].experience, null);
  assert.equal(trainStream[0].value, 0.5);
  const ev = pick(rows, { metric: "accuracy", phase: "eval" });
  assert.deepEqual(pick(ev, { at: "minibatch" }).map((r) => r.value), [0.5, 2 / 3]);
  assert.deepEqual(pick(ev, { at: "experience" }).map((r) => [r.experience, r.value]), [
    [0, 0.5],
    [1, 2 / 3],
  ]);
  assert.deepEqual(pick(ev, { at: "stream" }).map((r) => r.value), [3 / 5]);
  assert.ok(ev.every((r) => r.trainExperience === 0 && r.stream === "test"));
  // The loop's own rows agree.
  const loop = strategyRows.filter((r) => r.at === undefined && r.metric === "accuracy");
  assert.deepEqual(loop.map((r) => r.value), [0.5, 0.5, 0.5, 2 / 3, 3 / 5]);
});

Deno.test("top-k, per-class and seen-classes accuracy", async () => {
  const { rows } = await run([
    accuracy({ at: ["epoch", "experience", "stream"], topK: 2, perClass: true, seenClasses: true }),
  ]);
  // Top-2 per epoch: samples 0, 1, 2 have their label in the top 2.
  assert.deepEqual(pick(rows, { metric: "topKAccuracy", at: "epoch" }).map((r) => [r.k, r.value]), [
    [2, 0.75],
    [2, 0.75],
  ]);
  // Per class in the last epoch: class 0 → 1/1, class 1 → 1/2, class 2 → 0/1.
  const classes = pick(rows, { metric: "classAccuracy", at: "epoch", epoch: 1 });
  assert.deepEqual(classes.map((r) => [r.class, r.value]), [[0, 1], [1, 0.5], [2, 0]]);
  // Eval stream per class: class 0: 1/1, class 1: 0/1, class 2: 2/3.
  assert.deepEqual(
    pick(rows, { metric: "classAccuracy", at: "stream" }).map((r) => [r.class, r.value]),
    [[0, 1], [1, 0], [2, 2 / 3]],
  );
  // Top-2 on the test experiences and stream.
  assert.deepEqual(
    pick(rows, { metric: "topKAccuracy", phase: "eval" }).map((r) => [r.experience, r.value]),
    [[0, 0.5], [1, 1], [null, 0.8]],
  );
  // TRAIN holds classes 0, 1 and 2: every test sample is of a seen class.
  const seen = pick(rows, { metric: "seenClassesAccuracy", at: "stream" });
  assert.equal(seen[0].value, 3 / 5);
});

Deno.test("seen-classes accuracy counts only classes of the training experiences so far", async () => {
  const train = TRAIN.slice(0, 3); // classes 0 and 1
  const { rows } = await run([accuracy({ at: ["experience", "stream"], seenClasses: true })], {
    train,
  });
  // TEST0 (classes 0, 1): 1 of 2 correct. TEST1 (class 2) has no seen class: no row.
  const seen = pick(rows, { metric: "seenClassesAccuracy" });
  assert.deepEqual(seen.map((r) => [r.at, r.experience, r.value]), [
    ["experience", 0, 0.5],
    ["stream", null, 0.5],
  ]);
});

Deno.test("per-task rows when samples carry several task labels", async () => {
  const mixed = [
    { logits: [2, 0, 0], y: 0, t: 0 }, // correct
    { logits: [0, 2, 0], y: 0, t: 1 }, // wrong
    { logits: [0, 2, 0], y: 1, t: 1 }, // correct
    { logits: [0, 0, 2], y: 2, t: 1 }, // correct
  ];
  const model = mlp({ input: C, hidden: [], outputs: C, seed: 0 });
  const evaluator = evaluation({
    metrics: [accuracy({ at: ["minibatch", "epoch"] }), loss({ at: ["epoch"] })],
  });
  const s = naive({
    model,
    batchSize: 4,
    shuffle: false,
    seed: 0,
    plugins: [forceLogits],
    evaluator,
  });
  await s.train(experience("train", 0, mixed));
  const acc = pick(evaluator.rows, { metric: "accuracy", at: "epoch" });
  assert.deepEqual(acc.map((r) => [r.task, r.value]), [[null, 0.75], [0, 1], [1, 2 / 3]]);
  const l = pick(evaluator.rows, { metric: "loss", at: "epoch" });
  const losses = mixed.map((m) => ce(m.logits, m.y));
  close(l[0].value, losses.reduce((a, b) => a + b) / 4, "overall loss");
  assert.equal(l[1].task, 0);
  close(l[1].value, losses[0], "task 0 loss");
  close(l[2].value, (losses[1] + losses[2] + losses[3]) / 3, "task 1 loss");
  // perTask: false gives only the overall rows; true splits even a single task.
  const single = await run([accuracy({ at: "epoch", perTask: true })], { epochs: 1 });
  assert.deepEqual(
    pick(single.rows, { metric: "accuracy" }).map((r) => [r.task, r.value]),
    [[null, 0.5], [0, 0.5]],
  );
  const none = await run([accuracy({ at: "stream", perTask: false })], { epochs: 1 });
  assert.ok(none.rows.every((r) => r.task === null));
  s.dispose();
  model.dispose();
  evaluator.dispose();
});

// -------------------------------------------------------------------- loss ----

Deno.test("loss at every granularity is the sample-weighted mean cross-entropy", async () => {
  const { rows } = await run([loss({ at: ["minibatch", "epoch", "experience", "stream"] })], {
    epochs: 1,
  });
  const trainCE = TRAIN.map((s) => ce(s.logits, s.y));
  const mb = pick(rows, { metric: "loss", at: "minibatch" });
  close(mb[0].value, (trainCE[0] + trainCE[1]) / 2, "minibatch 1");
  close(mb[1].value, (trainCE[2] + trainCE[3]) / 2, "minibatch 2");
  close(
    pick(rows, { metric: "loss", at: "epoch" })[0].value,
    trainCE.reduce((a, b) => a + b) / 4,
    "epoch",
  );
  const t0 = TEST0.map((s) => ce(s.logits, s.y));
  const t1 = TEST1.map((s) => ce(s.logits, s.y));
  const exp = pick(rows, { metric: "loss", at: "experience" });
  close(exp[0].value, (t0[0] + t0[1]) / 2, "experience 0");
  close(exp[1].value, (t1[0] + t1[1] + t1[2]) / 3, "experience 1");
  close(
    pick(rows, { metric: "loss", at: "stream" })[0].value,
    [...t0, ...t1].reduce((a, b) => a + b) / 5,
    "stream (weighted by samples)",
  );
});

Deno.test("the training loss includes terms plugins add, as the loop's loss does", async () => {
  const model = mlp({ input: C, hidden: [], outputs: C, seed: 0 });
  const evaluator = evaluation({ metrics: [loss({ at: "epoch" })] });
  const s = naive({
    model,
    batchSize: 2,
    shuffle: false,
    seed: 0,
    plugins: [forceLogits, { beforeBackward: (ctx) => ctx.addLoss(tf.scalar(1)) }],
    evaluator,
  });
  await s.train(experience("train", 0, TRAIN));
  const mine = pick(evaluator.rows, { metric: "loss" })[0].value;
  const loops = s.rows.find((r) => r.metric === "loss" && r.at === undefined)!.value;
  close(mine, loops, "same as the loop");
  close(mine, TRAIN.map((x) => ce(x.logits, x.y)).reduce((a, b) => a + b) / 4 + 1, "CE + 1");
  s.dispose();
  model.dispose();
  evaluator.dispose();
});

// ---------------------------------------------------------------- confusion ----

Deno.test("confusion matrix counts (true, predicted) pairs; normalize divides by class size", async () => {
  const { rows } = await run([confusionMatrix(), confusionMatrix({ normalize: true })], {
    epochs: 1,
  });
  const cells = pick(rows, { metric: "confusionMatrix" });
  assert.equal(cells.length, 2 * C * C);
  const counts = toConfusionMatrix(cells.slice(0, C * C));
  // TEST0: 0→0, 1→2; TEST1: 2→2, 2→1, 2→2.
  assert.deepEqual(counts, [[1, 0, 0], [0, 0, 1], [0, 1, 2]]);
  const shares = toConfusionMatrix(cells.slice(C * C));
  assert.deepEqual(shares, [[1, 0, 0], [0, 0, 1], [0, 1 / 3, 2 / 3]]);
  assert.ok(cells.every((r) => r.at === "stream" && r.phase === "eval" && r.experience === null));
});

// --------------------------------------------------- forgetting and transfer ----

/** Target accuracies: row 0 before training, row k + 1 after training experience k. */
const R = [
  [0.25, 0.25, 0.25],
  [1.0, 0.5, 0.25],
  [0.75, 1.0, 0.75],
  [0.5, 0.75, 1.0],
];

/** Makes evaluation accuracies exactly R: the first round(R·n) samples right, the rest wrong. */
const oracle: Plugin = {
  name: "oracle",
  afterEvalForward(ctx) {
    const k = ctx.clock.trainExperiences - 1;
    const j = ctx.experience!.id;
    const y = ctx.batch!.data.y;
    const n = ctx.batch!.n;
    const right = Math.round(R[k + 1][j] * n);
    const logits = new Float32Array(n * C);
    for (let i = 0; i < n; i++) logits[i * C + (i < right ? y[i] : (y[i] + 1) % C)] = 5;
    ctx.output = tf.add(tf.tensor2d(logits, [n, C]), tf.mul(ctx.output!, 0));
  },
};

function streamOf(name: string, count: number): Experience[] {
  return Array.from(
    { length: count },
    (_, j) =>
      experience(
        name,
        j,
        Array.from({ length: 4 }, (_, i) => ({ logits: [0, 0, 0], y: (j + i) % C })),
        count,
      ),
  );
}

async function transferRun(withBaseline: boolean) {
  const model = mlp({ input: C, hidden: [], outputs: C, seed: 0 });
  const evaluator = evaluation({ metrics: [forgetting(), bwt(), forwardTransfer()] });
  const s = naive({ model, batchSize: 4, seed: 0, plugins: [oracle], evaluator });
  const train = streamOf("train", 3);
  const test = streamOf("test", 3);
  if (withBaseline) await s.eval(test);
  for (const exp of train) {
    await s.train(exp);
    await s.eval(test);
  }
  const matrix = s.accuracyMatrix();
  s.dispose();
  model.dispose();
  return { rows: evaluator.rows, matrix, evaluator };
}

Deno.test("forgetting, BWT and forward transfer per experience and stream, by hand", async () => {
  const { rows, matrix } = await transferRun(true);
  assert.deepEqual(matrix, R.slice(1));
  const view = (metric: string) =>
    pick(rows, { metric }).map((r) => [r.trainExperience, r.at, r.experience, r.value]);
  assert.deepEqual(view("forgetting"), [
    // after experience 1: f_0 = 1.0 − 0.75
    [1, "experience", 0, 0.25],
    [1, "stream", null, 0.25],
    // after experience 2: f_0 = max(1.0, 0.75) − 0.5, f_1 = max(0.5, 1.0) − 0.75
    [2, "experience", 0, 0.5],
    [2, "experience", 1, 0.25],
    [2, "stream", null, 0.375],
  ]);
  assert.deepEqual(view("bwt"), [
    [1, "experience", 0, -0.25],
    [1, "stream", null, -0.25],
    [2, "experience", 0, -0.5],
    [2, "experience", 1, -0.25],
    [2, "stream", null, -0.375],
  ]);
  assert.deepEqual(view("forwardTransfer"), [
    // after experience 0: R[0][1] − b[1] = 0.5 − 0.25
    [0, "experience", 1, 0.25],
    [0, "stream", null, 0.25],
    // after experience 1: R[1][2] − b[2] = 0.75 − 0.25; stream mean(0.25, 0.5)
    [1, "experience", 2, 0.5],
    [1, "stream", null, 0.375],
    [2, "stream", null, 0.375],
  ]);
  // The stream values at the end are the functional definitions on the final matrix.
  close(functional.averageForgetting(matrix), 0.375, "F");
  close(functional.backwardTransfer(matrix), -0.375, "BWT");
  close(functional.forwardTransfer(matrix, R[0]), 0.375, "FWT");
});

Deno.test("forward transfer writes nothing without the evaluation before training", async () => {
  const { rows } = await transferRun(false);
  assert.equal(pick(rows, { metric: "forwardTransfer" }).length, 0);
  assert.equal(pick(rows, { metric: "forgetting" }).length, 5);
});

// ------------------------------------------------------- timing, memory, MACs ----

Deno.test("timing, memory and MACs rows at their granularities", async () => {
  const { rows } = await run([
    timing({ at: ["minibatch", "epoch", "experience", "stream"], phase: ["train", "eval"] }),
    memory({ at: ["epoch", "stream"] }),
    macs({ at: ["experience"], phase: ["train", "eval"] }),
  ]);
  const time = pick(rows, { metric: "time" });
  const count = (phase: string, at: string) =>
    time.filter((r) => r.phase === phase && r.at === at).length;
  assert.deepEqual(
    [
      count("train", "minibatch"),
      count("train", "epoch"),
      count("train", "experience"),
      count("train", "stream"),
    ],
    [4, 2, 1, 1],
  );
  assert.deepEqual(
    [count("eval", "minibatch"), count("eval", "experience"), count("eval", "stream")],
    [2, 2, 1],
  );
  assert.ok(time.every((r) => r.value >= 0 && r.value < 60));
  const epochs = pick(time, { phase: "train", at: "epoch" }).map((r) => r.value);
  const exp = pick(time, { phase: "train", at: "experience" })[0].value;
  assert.ok(exp >= epochs[0] + epochs[1] - 1e-3, `experience ${exp} ≥ sum of epochs ${epochs}`);
  const ram = pick(rows, { metric: "ram" });
  assert.equal(ram.length, 3); // 2 train epochs, 1 eval stream
  assert.ok(ram.every((r) => r.value > 1 && r.value < 1e6), "RSS in MiB");
  const tm = pick(rows, { metric: "tensorCount" });
  assert.ok(tm.every((r) => Number.isInteger(r.value) && r.value > 0));
  assert.ok(pick(rows, { metric: "tensorMemory" }).every((r) => r.value > 0));
  const mac = pick(rows, { metric: "macs" });
  assert.deepEqual(mac.map((r) => [r.phase, r.value]), [
    ["train", C * C],
    ["eval", C * C],
    ["eval", C * C],
  ]);
});

Deno.test("countMacs: Linear in × out, Conv2d outH × outW × out × k² × in", () => {
  const m = mlp({ input: 784, hidden: [400], outputs: 10, seed: 0 });
  assert.equal(countMacs(m, [784]), 784 * 400 + 400 * 10);
  assert.ok(m.training, "training mode restored");
  m.dispose();
  const c = cnn({ input: [8, 8, 1], channels: [4], dense: 16, outputs: 3, seed: 0 });
  // conv 3×3 "same": 8·8·4 outputs × 9 × 1 input channel; dense 4·4·4 → 16; head 16 → 3.
  assert.equal(countMacs(c, [8, 8, 1]), 8 * 8 * 4 * 9 + 64 * 16 + 16 * 3);
  const before = tf.memory().numTensors;
  countMacs(c, [8, 8, 1]);
  assert.equal(tf.memory().numTensors, before);
  c.eval();
  countMacs(c, [8, 8, 1]);
  assert.equal(c.training, false, "evaluation mode kept");
  assert.equal(typeof Object.getOwnPropertyDescriptor(c.classifier, "forward"), "undefined");
  c.dispose();
  const multi = mlp({ input: 4, hidden: [5], outputs: 2, head: "multi", seed: 0 });
  const bench = streamOf("train", 1)[0];
  multi.adapt(
    makeExperience("train", 0, bench.dataset.relabel({ taskLabels: new Int32Array(4).fill(1) }), {
      ...info(1),
      inputShape: [4],
    }),
  );
  assert.equal(countMacs(multi, [4], { taskLabel: 1 }), 4 * 5 + 5 * 3, "one head: 5 → 3");
  multi.dispose();
});

// -------------------------------------------------------- options, hygiene ----

Deno.test("granularity and option errors name the bad value", () => {
  assert.throws(
    () => accuracy({ at: ["epoch", "iteration" as never] }),
    /unknown granularity "iteration"/,
  );
  assert.throws(() => loss({ phase: "test" as never }), /unknown phase "test"/);
  assert.throws(() => accuracy({ topK: 0 }), /topK must be an integer ≥ 1, got 0/);
  assert.throws(() => accuracy({ perTask: "yes" as never }), /perTask must be/);
  assert.throws(() => forgetting({ at: "epoch" as never }), /unknown granularity "epoch"/);
  assert.throws(() => confusionMatrix({ numClasses: 1.5 }), /numClasses/);
  assert.throws(() => memory({ ram: false, tensors: false }), /nothing to measure/);
  assert.throws(() => accuracy({ at: [] }), /accuracy: at \[\] .* reports nothing/);
  assert.throws(() => timing({ at: "epoch", phase: "eval" }), /evaluation has no epoch/);
  const w = resolveWindows("x", { at: ["epoch", "stream"], phase: ["train", "eval"] }, []);
  assert.deepEqual(w.list, [["train", "epoch"], ["train", "stream"], ["eval", "stream"]]);
});

Deno.test("metrics read back once per reported window, not per minibatch", async () => {
  const proto = tf.Tensor.prototype as unknown as { data: () => Promise<unknown> };
  const original = proto.data;
  let reads = 0;
  proto.data = function (this: tf.Tensor) {
    reads++;
    return original.call(this);
  };
  try {
    const count = async (n: number, at: "epoch" | "minibatch" | "none") => {
      const samples = Array.from({ length: n }, (_, i) => TRAIN[i % 4]);
      reads = 0;
      const metrics = at === "none" ? [] : [accuracy({ at }), loss({ at })];
      await run(metrics, { epochs: 2, train: samples });
      return reads;
    };
    // The template reads its own epoch totals once an epoch, whatever the metrics.
    const base = await count(8, "none");
    assert.equal(base, await count(32, "none"), "the template's reads do not grow either");
    const small = await count(8, "epoch") - base;
    const large = await count(32, "epoch") - base;
    assert.equal(small, large, "independent of the number of minibatches");
    assert.equal(small, 2 * 2, "2 metrics × 2 epochs");
    assert.equal(
      await count(8, "minibatch") - base,
      2 * 8,
      "minibatch: every iteration (2 × 4 × 2)",
    );
  } finally {
    proto.data = original;
  }
});

Deno.test("a run interrupted by an error leaves nothing in the next windows", async () => {
  const model = mlp({ input: C, hidden: [], outputs: C, seed: 0 });
  const evaluator = evaluation({
    metrics: [accuracy({ at: ["epoch", "experience"], phase: "train" })],
  });
  let fail = true;
  const s = naive({
    model,
    batchSize: 2,
    shuffle: false,
    seed: 0,
    plugins: [forceLogits, {
      afterTrainingIteration: (ctx) => {
        if (fail && ctx.clock.epochIteration === 2) throw new Error("boom");
      },
    }],
    evaluator,
  });
  // The first minibatch (both correct) is counted, then the run fails.
  await assert.rejects(s.train(experience("train", 0, TRAIN)), /boom/);
  fail = false;
  await s.train(experience("train", 0, TRAIN));
  assert.deepEqual(evaluator.rows.map((r) => [r.at, r.value]), [["epoch", 0.5], [
    "experience",
    0.5,
  ]]);
  s.dispose();
  model.dispose();
  evaluator.dispose();
});

Deno.test("no tensor growth with every metric over repeated training and evaluation", async () => {
  const model = mlp({ input: C, hidden: [4], outputs: C, seed: 0 });
  const evaluator = evaluation({
    metrics: [
      accuracy({
        at: ["minibatch", "epoch", "experience", "stream"],
        topK: 2,
        perClass: true,
        seenClasses: true,
      }),
      loss({ at: ["minibatch", "epoch", "experience", "stream"] }),
      forgetting(),
      bwt(),
      forwardTransfer(),
      confusionMatrix(),
      timing(),
      memory(),
      macs(),
    ],
  });
  const s = naive({ model, batchSize: 2, seed: 0, evaluator });
  const train = streamOf("train", 2);
  const test = streamOf("test", 2);
  await s.eval(test);
  await s.train(train[0]);
  await s.eval(test);
  const base = tf.memory().numTensors;
  for (let k = 0; k < 3; k++) {
    for (const e of train) {
      await s.train(e);
      await s.eval(test);
    }
  }
  assert.equal(tf.memory().numTensors, base);
  s.dispose();
  model.dispose();
  evaluator.dispose();
});
