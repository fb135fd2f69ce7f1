import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../lib/backend.ts";
import type { BenchmarkInfo, Experience } from "../lib/data/experience.ts";
import { makeExperience } from "../lib/data/experience.ts";
import { ArrayDataset } from "../lib/data/dataset.ts";
import { inMemoryLogger } from "../lib/loggers/in_memory.ts";
import type { Logger } from "../lib/loggers/logger.ts";
import {
  accuracy,
  avalancheName,
  bwt,
  confusionMatrix,
  forgetting,
  forwardTransfer,
  loss,
  type Metric,
  rowBase,
  timing,
} from "../lib/metrics/mod.ts";
import type { MetricRow } from "../lib/data/rows.ts";
import { mlp } from "../lib/models/mlp.ts";
import { evaluation, EvaluationPlugin } from "../lib/plugins/evaluation.ts";
import { naive } from "../lib/strategy/strategies.ts";
import type { StrategyContext } from "../lib/strategy/context.ts";
import { EVAL_HOOKS, SYNC_HOOKS, TRAIN_HOOKS } from "../lib/strategy/plugin.ts";
import { toyBenchmark } from "./_helpers.ts";

await setBackend("wasm");

const C = 3;

function experience(stream: string, id: number, task: number, n = 6): Experience {
  const info: BenchmarkInfo = {
    name: "fixture",
    scenario: "task-incremental",
    numClasses: C,
    inputShape: [C],
    numExperiences: 2,
  };
  const ds = new ArrayDataset({
    x: Float32Array.from({ length: n * C }, (_, i) => ((i * 7) % 5) / 5),
    y: Array.from({ length: n }, (_, i) => i % C),
    taskLabels: new Array(n).fill(task),
    inputShape: [C],
  });
  return makeExperience(stream, id, ds, info);
}

const base: MetricRow = {
  metric: "accuracy",
  phase: "eval",
  stream: "test",
  experience: null,
  task: null,
  epoch: null,
  iteration: 0,
  trainExperience: 0,
  value: 0,
};

Deno.test("avalancheName renders rows as Avalanche's metric keys", () => {
  const cases: [Partial<MetricRow>, string][] = [
    [{ at: "stream" }, "Top1_Acc_Stream/eval_phase/test_stream/Task000"],
    [{ at: "experience", experience: 2 }, "Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp002"],
    [
      { metric: "loss", phase: "train", stream: "train", experience: 0, epoch: 1, at: "epoch" },
      "Loss_Epoch/train_phase/train_stream/Task000",
    ],
    [
      { metric: "loss", phase: "train", stream: "train", experience: 0, epoch: 1, at: "minibatch" },
      "Loss_MB/train_phase/train_stream/Task000",
    ],
    [{ metric: "forgetting", at: "stream" }, "StreamForgetting/eval_phase/test_stream"],
    [
      { metric: "forgetting", at: "experience", experience: 1 },
      "ExperienceForgetting/eval_phase/test_stream/Task000/Exp001",
    ],
    [{ metric: "bwt", at: "stream" }, "StreamBWT/eval_phase/test_stream"],
    [
      { metric: "forwardTransfer", at: "experience", experience: 3 },
      "ExperienceForwardTransfer/eval_phase/test_stream/Task000/Exp003",
    ],
    [{ metric: "forwardTransfer", at: "stream" }, "StreamForwardTransfer/eval_phase/test_stream"],
    [
      { metric: "topKAccuracy", k: 5, at: "stream" },
      "Top5_Acc_Stream/eval_phase/test_stream/Task000",
    ],
    [
      { metric: "classAccuracy", class: 7, at: "stream", task: 1 },
      "Top1_ClassAcc_Stream/eval_phase/test_stream/Task001/7",
    ],
    [
      { metric: "confusionMatrix", class: 1, predicted: 2, at: "stream" },
      "ConfusionMatrix_Stream/eval_phase/test_stream/Task000/1/2",
    ],
    [
      { metric: "time", phase: "train", stream: "train", epoch: 0, experience: 0, at: "epoch" },
      "Time_Epoch/train_phase/train_stream/Task000",
    ],
    [
      { metric: "ram", at: "experience", experience: 0 },
      "MaxRAMUsage_Experience/eval_phase/test_stream/Task000/Exp000",
    ],
    [
      { metric: "macs", at: "experience", experience: 0 },
      "MAC_Exp/eval_phase/test_stream/Task000/Exp000",
    ],
    [
      { metric: "myMetric", at: "stream", task: 12 },
      "myMetric_Stream/eval_phase/test_stream/Task012",
    ],
    // The loop's own rows (no `at`): granularity from the coordinates.
    [
      { phase: "train", stream: "train", experience: 0, epoch: 0 },
      "Top1_Acc_Epoch/train_phase/train_stream/Task000",
    ],
    [{ experience: 1 }, "Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp001"],
  ];
  for (const [patch, name] of cases) assert.equal(avalancheName({ ...base, ...patch }), name);
  assert.equal(
    avalancheName({ ...base, at: "stream" }, { task: null }),
    "Top1_Acc_Stream/eval_phase/test_stream",
  );
  assert.equal(
    avalancheName({ ...base, at: "stream" }, { task: 4 }),
    "Top1_Acc_Stream/eval_phase/test_stream/Task004",
  );
});

Deno.test("default metrics: accuracy and loss per epoch, experience and stream", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const evaluator = evaluation();
  const s = naive({ model, batchSize: 10, seed: 0, evaluator });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  assert.deepEqual(Object.keys(evaluator.getLastMetrics()).sort(), [
    "Loss_Epoch/train_phase/train_stream/Task000",
    "Loss_Exp/eval_phase/test_stream/Task000/Exp000",
    "Loss_Exp/eval_phase/test_stream/Task000/Exp001",
    "Loss_Stream/eval_phase/test_stream/Task000",
    "Top1_Acc_Epoch/train_phase/train_stream/Task000",
    "Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp000",
    "Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp001",
    "Top1_Acc_Stream/eval_phase/test_stream/Task000",
  ]);
  // Same values as the loop's own rows.
  const loop = s.rows.filter((r) => r.at === undefined);
  assert.equal(loop.length, evaluator.rows.length);
  const last = evaluator.getLastMetrics();
  for (const r of loop) {
    const mine = last[avalancheName(r)];
    assert.ok(Math.abs(mine - r.value) < 1e-5, `${avalancheName(r)}: ${mine} vs ${r.value}`);
  }
  s.dispose();
  model.dispose();
});

Deno.test("getAllMetrics gives whole curves; resetLastMetrics; collectAll false", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const evaluator = evaluation({ metrics: [accuracy({ at: ["minibatch", "stream"] })] });
  const s = naive({ model, batchSize: 5, epochs: 2, seed: 0, evaluator });
  for (const exp of bench.train) {
    await s.train(exp);
    await s.eval(bench.test);
  }
  const all = evaluator.getAllMetrics();
  const mb = all["Top1_Acc_MB/train_phase/train_stream/Task000"];
  assert.deepEqual(mb.x, Array.from({ length: 16 }, (_, i) => i + 1), "one point per iteration");
  assert.deepEqual(
    mb.y,
    evaluator.rows.filter((r) => r.at === "minibatch").map((r) => r.value),
  );
  const stream = all["Top1_Acc_Stream/eval_phase/test_stream/Task000"];
  assert.deepEqual(stream.x, [8, 16]);
  assert.equal(stream.y.length, 2);
  all["Top1_Acc_Stream/eval_phase/test_stream/Task000"].y.push(99);
  assert.equal(
    evaluator.getAllMetrics()["Top1_Acc_Stream/eval_phase/test_stream/Task000"].y.length,
    2,
    "a copy",
  );
  assert.equal(
    evaluator.getLastMetrics()["Top1_Acc_Stream/eval_phase/test_stream/Task000"],
    stream.y[1],
  );
  evaluator.resetLastMetrics();
  assert.deepEqual(evaluator.getLastMetrics(), {});
  assert.equal(evaluator.rows.length, 18, "rows are kept");
  await s.eval(bench.test);
  assert.deepEqual(Object.keys(evaluator.getLastMetrics()), [
    "Top1_Acc_Stream/eval_phase/test_stream/Task000",
  ]);
  s.dispose();

  const quiet = evaluation({ metrics: [accuracy()], collectAll: false });
  const s2 = naive({ model, batchSize: 10, seed: 0, evaluator: quiet });
  await s2.train(bench.train[0]);
  assert.deepEqual(quiet.getAllMetrics(), {});
  assert.equal(Object.keys(quiet.getLastMetrics()).length, 1);
  s2.dispose();
  model.dispose();
});

Deno.test("rows are shared with the run, without duplicating the loop's rows", async () => {
  const bench = toyBenchmark({ n: 40 });
  const runOnce = async (evaluator?: EvaluationPlugin) => {
    const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
    const s = naive({ model, batchSize: 10, seed: 0, evaluator });
    const results = [];
    for (const exp of bench.train) {
      results.push(await s.train(exp));
      results.push(await s.eval(bench.test));
    }
    const out = { rows: s.rows, matrix: s.accuracyMatrix(), results };
    s.dispose();
    model.dispose();
    return out;
  };
  const plain = await runOnce();
  const metrics =
    () => [accuracy({ at: ["minibatch", "epoch", "experience", "stream"] }), loss(), forgetting()];
  const shared = await runOnce(evaluation({ metrics: metrics() }));
  assert.deepEqual(shared.matrix, plain.matrix, "the accuracy matrix is unchanged");
  const extra = shared.rows.filter((r) => r.at !== undefined);
  assert.deepEqual(
    [...new Set(extra.map((r) => `${r.metric}/${r.phase}/${r.at}`))].sort(),
    ["accuracy/train/minibatch", "forgetting/eval/experience", "forgetting/eval/stream"],
  );
  assert.equal(shared.rows.length - extra.length, plain.rows.length);
  // What train() and eval() return includes them.
  assert.ok(shared.results[2].rows.some((r) => r.at === "minibatch"));
  assert.ok(shared.results[3].rows.some((r) => r.metric === "forgetting"));
  const isolated = await runOnce(evaluation({ metrics: metrics(), shareRows: false }));
  assert.equal(isolated.rows.length, plain.rows.length);
});

Deno.test("loggers get each hook's rows before their own hook of that name", async () => {
  const events: string[] = [];
  const logger: Logger = {
    log(rows) {
      events.push(`log ${rows.map((r) => `${r.metric}@${r.at}`).join(",")}`);
    },
    afterTrainingEpoch: () => void events.push("afterTrainingEpoch"),
    afterEvalExp: () => void events.push("afterEvalExp"),
    afterEval: () => void events.push("afterEval"),
  };
  const memory = inMemoryLogger();
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const evaluator = evaluation({
    metrics: [accuracy({ at: ["epoch", "stream"] }), loss({ at: "experience" })],
    loggers: [logger, memory],
  });
  const s = naive({ model, batchSize: 10, seed: 0, evaluator });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  assert.deepEqual(events, [
    "log accuracy@epoch",
    "afterTrainingEpoch",
    "log loss@experience",
    "afterEvalExp",
    "log loss@experience",
    "afterEvalExp",
    "log accuracy@stream",
    "afterEval",
  ]);
  assert.deepEqual(memory.rows, evaluator.rows);
  s.dispose();
  model.dispose();
});

Deno.test("task-aware names: one task per experience, several over the stream", async () => {
  const model = mlp({ input: C, hidden: [4], outputs: C, seed: 0 });
  const evaluator = evaluation({ metrics: [accuracy({ at: ["epoch", "experience", "stream"] })] });
  const s = naive({ model, batchSize: 3, seed: 0, evaluator });
  const train = [experience("train", 0, 0), experience("train", 1, 1)];
  const test = [experience("test", 0, 0), experience("test", 1, 1)];
  await s.train(train[1]);
  await s.eval(test);
  const names = Object.keys(evaluator.getLastMetrics()).sort();
  assert.deepEqual(names, [
    "Top1_Acc_Epoch/train_phase/train_stream/Task001",
    "Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp000",
    "Top1_Acc_Exp/eval_phase/test_stream/Task001/Exp001",
    "Top1_Acc_Stream/eval_phase/test_stream", // over tasks 0 and 1
    "Top1_Acc_Stream/eval_phase/test_stream/Task000",
    "Top1_Acc_Stream/eval_phase/test_stream/Task001",
  ]);
  assert.equal(new Set(evaluator.names).size, evaluator.names.length, "no key collision");
  s.dispose();
  model.dispose();
});

Deno.test("a checkpoint restores the evaluator's rows, curves and metric state", async () => {
  const bench = toyBenchmark({ n: 40 });
  const make = () => {
    const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
    const evaluator = evaluation({
      metrics: [accuracy({ seenClasses: true }), loss(), forgetting(), bwt()],
    });
    return { model, evaluator, s: naive({ model, batchSize: 10, seed: 0, evaluator }) };
  };
  const a = make();
  await a.s.train(bench.train[0]);
  await a.s.eval(bench.test);
  const state = JSON.parse(JSON.stringify(a.s.checkpoint()));
  await a.s.train(bench.train[1]);
  await a.s.eval(bench.test);

  const b = make();
  await b.s.restore(state);
  assert.deepEqual(b.evaluator.rows, a.evaluator.rows.slice(0, b.evaluator.rows.length));
  await b.s.train(bench.train[1]);
  await b.s.eval(bench.test);
  assert.equal(b.evaluator.rows.length, a.evaluator.rows.length);
  for (const [i, r] of a.evaluator.rows.entries()) {
    const q = b.evaluator.rows[i];
    assert.equal(`${q.metric}/${q.at}/${q.experience}`, `${r.metric}/${r.at}/${r.experience}`);
    if (r.metric !== "time") assert.ok(Math.abs(q.value - r.value) < 1e-5, `${r.metric} ${i}`);
  }
  assert.deepEqual(
    Object.keys(b.evaluator.getAllMetrics()),
    Object.keys(a.evaluator.getAllMetrics()),
  );
  // Forgetting after the restore used the matrix rows restored from the checkpoint.
  assert.ok(b.evaluator.rows.some((r) => r.metric === "forgetting"));
  // The seen classes came back too: seen-classes accuracy on experience 0 after training 1.
  assert.deepEqual(
    b.evaluator.rows.filter((r) => r.metric === "seenClassesAccuracy").map((r) => r.experience),
    a.evaluator.rows.filter((r) => r.metric === "seenClassesAccuracy").map((r) => r.experience),
  );
  for (const x of [a, b]) {
    x.s.dispose();
    x.model.dispose();
  }
});

Deno.test("periodic evaluation inside training keeps train windows intact", async () => {
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const evaluator = evaluation({
    metrics: [
      accuracy({ at: ["epoch", "experience", "stream"], phase: ["train", "eval"] }),
      timing({ at: "experience", phase: "train" }),
    ],
  });
  const s = naive({ model, batchSize: 10, epochs: 2, evalEvery: 1, seed: 0, evaluator });
  await s.train(bench.train, { evalStreams: [bench.test] });
  const trainEpochs = evaluator.rows.filter((r) =>
    r.phase === "train" && r.at === "epoch" && r.metric === "accuracy"
  );
  const loopEpochs = s.rows.filter((r) =>
    r.phase === "train" && r.at === undefined && r.metric === "accuracy"
  );
  assert.deepEqual(trainEpochs.map((r) => r.value), loopEpochs.map((r) => r.value));
  assert.equal(evaluator.rows.filter((r) => r.phase === "eval" && r.at === "stream").length, 4);
  assert.equal(evaluator.rows.filter((r) => r.metric === "time").length, 2);
  s.dispose();
  model.dispose();
});

Deno.test("custom metrics are plain objects; bad inputs are TypeErrors", async () => {
  let n = 0;
  const iterations: Metric = {
    name: "iterations",
    beforeTrainingEpoch: () => void (n = 0),
    afterTrainingIteration: () => void n++,
    afterTrainingEpoch: (
      ctx,
    ) => [{ ...rowBase(ctx, "train", "epoch"), metric: "iterations", value: n }],
  };
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const evaluator = new EvaluationPlugin({ metrics: [[iterations, confusionMatrix()]] });
  const s = naive({ model, batchSize: 5, seed: 0, evaluator });
  await s.train(bench.train[0]);
  assert.deepEqual(evaluator.getLastMetrics(), {
    "iterations_Epoch/train_phase/train_stream/Task000": 4,
  });
  assert.throws(
    () => evaluation({ metrics: [null as never] }),
    /metrics\[0\] is not a metric object/,
  );
  assert.throws(() => evaluation({ loggers: [3 as never] }), /loggers\[0\] is not a logger object/);
  assert.throws(() => evaluator.loadState({}), /Not an evaluation plugin state/);
  s.dispose();
  model.dispose();
  evaluator.dispose();
  assert.equal(forwardTransfer().name, "forwardTransfer");
  assert.ok(tf.memory().numTensors >= 0);
});

Deno.test("the evaluation plugin forwards every hook of the lists but those inside the tape", async () => {
  // Every training and evaluation hook, in lifecycle order, less the synchronous ones inside the
  // gradient tape (a metric may not implement those).
  const forwarded = [...TRAIN_HOOKS, ...EVAL_HOOKS].filter((h) => !SYNC_HOOKS.has(h));
  assert.equal(forwarded.length, TRAIN_HOOKS.length + EVAL_HOOKS.length - SYNC_HOOKS.size);
  const events: string[] = [];
  const metric = { name: "probe" } as Record<string, unknown>;
  const logger = {} as Record<string, unknown>;
  for (const h of forwarded) {
    metric[h] = () => void events.push(`metric ${h}`);
    logger[h] = () => void events.push(`logger ${h}`);
  }
  const evaluator = new EvaluationPlugin({
    metrics: [metric as unknown as Metric],
    loggers: [logger as Logger],
  });
  const hooks = evaluator as unknown as Record<string, (ctx: StrategyContext) => Promise<void>>;
  const ctx = { rows: [], experience: undefined } as unknown as StrategyContext;
  for (const h of forwarded) {
    assert.equal(typeof hooks[h], "function", `${h} is forwarded`);
    assert.ok(!Object.hasOwn(evaluator, h), `${h} is a method, on the prototype`);
    assert.equal(hooks[h].name, h);
    events.length = 0;
    const r = hooks[h](ctx);
    assert.ok(r instanceof Promise, `${h} returns a promise`);
    await r;
    assert.deepEqual(events, [`metric ${h}`, `logger ${h}`], `${h}: the metrics, then the loggers`);
  }
  for (const h of SYNC_HOOKS) assert.equal(hooks[h], undefined, `${h} runs inside the tape`);

  // The strategy finds every forwarder: a run reaches each hook, in the lists' order.
  events.length = 0;
  const bench = toyBenchmark({ n: 40 });
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  const s = naive({ model, batchSize: 10, seed: 0, evaluator });
  await s.train(bench.train[0]);
  await s.eval(bench.test);
  const firstSeen = [
    ...new Set(events.filter((e) => e.startsWith("metric ")).map((e) => e.slice(7))),
  ];
  assert.deepEqual(firstSeen, forwarded);
  s.dispose();
  model.dispose();
});
