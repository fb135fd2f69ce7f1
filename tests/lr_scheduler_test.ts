import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { mlp } from "../lib/models/mlp.ts";
import { adam, sgd } from "../lib/optim/optimizers.ts";
import {
  cosineAnnealingLR,
  type LRSchedule,
  lrScheduler,
  LRSchedulerPlugin,
  multiStepLR,
  reduceLROnPlateau,
  stepLR,
} from "../lib/plugins/lr_scheduler.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { inMemoryLogger } from "../lib/loggers/in_memory.ts";
import { toyBenchmark } from "./_helpers.ts";

/** The learning rates of `steps` steps from `lr` (the first one is `lr`), PyTorch-style. */
function sequence(s: LRSchedule, lr: number, steps: number, metrics: number[] = []): number[] {
  s.start(lr);
  const out = [lr];
  for (let i = 0; i < steps; i++) out.push(lr = s.step(lr, metrics[i]));
  return out;
}

function close(a: number[], b: number[], tol = 1e-12) {
  assert.equal(a.length, b.length);
  a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) <= tol, `step ${i}: ${x} vs ${b[i]}`));
}

Deno.test("stepLR and multiStepLR decay at the steps PyTorch does (by hand)", () => {
  close(sequence(stepLR({ stepSize: 3, gamma: 0.5 }), 0.8, 7), [
    0.8,
    0.8,
    0.8,
    0.4,
    0.4,
    0.4,
    0.2,
    0.2,
  ]);
  // A milestone listed twice decays twice: gamma ** 2 at step 3.
  close(sequence(multiStepLR({ milestones: [1, 3, 3], gamma: 0.1 }), 1, 4), [
    1,
    0.1,
    0.1,
    0.001,
    0.001,
  ]);
});

Deno.test("cosineAnnealingLR's recursive form follows the closed cosine, down and back up", () => {
  const base = 0.1, etaMin = 0.01, tMax = 4;
  const got = sequence(cosineAnnealingLR({ tMax, etaMin }), base, 12);
  const want = got.map((_, t) => etaMin + (base - etaMin) * (1 + Math.cos(Math.PI * t / tMax)) / 2);
  close(got, want, 1e-12);
  assert.ok(Math.abs(got[4] - etaMin) < 1e-12 && Math.abs(got[8] - base) < 1e-12);
});

Deno.test("reduceLROnPlateau: patience, threshold, cooldown and minLr as PyTorch (by hand)", () => {
  // min mode, rel threshold 0.1: a loss counts as better only below best · 0.9.
  const s = reduceLROnPlateau({
    patience: 1,
    factor: 0.5,
    threshold: 0.1,
    cooldown: 1,
    minLr: 0.2,
  });
  const losses = [1, 0.95, 0.94, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6];
  // step 1: best 1. step 2: 0.95 not < 0.9 → bad 1. step 3: bad 2 > 1 → lr 0.5, cooldown 1.
  // step 4: 0.5 better → best 0.5, bad 0; cooldown 1 → 0. step 5: bad 1. step 6: bad 2 → 0.25,
  // cooldown 1. step 7: bad 1, cooldown → 0 and bad 0. step 8: bad 1. step 9: bad 2 → max(0.125,
  // 0.2) = 0.2. step 10: cooldown.
  assert.deepEqual(sequence(s, 1, losses.length, losses), [
    1,
    1,
    1,
    0.5,
    0.5,
    0.5,
    0.25,
    0.25,
    0.25,
    0.2,
    0.2,
  ]);
  const max = reduceLROnPlateau({
    mode: "max",
    patience: 0,
    thresholdMode: "abs",
    threshold: 0.05,
  });
  assert.deepEqual(sequence(max, 1, 3, [0.5, 0.52, 0.6]), [1, 1, 0.1, 0.1]);
});

const PYTHON = "/usr/bin/python3";
const torchMissing: string | undefined = (() => {
  try {
    const out = new Deno.Command(PYTHON, { args: ["-c", "import torch"], stderr: "piped" })
      .outputSync();
    return out.success ? undefined : `${PYTHON} lacks torch`;
  } catch {
    return `${PYTHON} is absent`;
  }
})();

/** Each case: our schedule and the PyTorch constructor call (`opt` is the optimizer). */
const TORCH_CASES: { name: string; ours: () => LRSchedule; torch: string; lr: number }[] = [
  {
    name: "StepLR",
    ours: () => stepLR({ stepSize: 3, gamma: 0.3 }),
    torch: "StepLR(opt, step_size=3, gamma=0.3)",
    lr: 0.07,
  },
  {
    name: "MultiStepLR",
    ours: () => multiStepLR({ milestones: [2, 5, 5, 9], gamma: 0.7 }),
    torch: "MultiStepLR(opt, milestones=[2, 5, 5, 9], gamma=0.7)",
    lr: 0.1,
  },
  {
    name: "CosineAnnealingLR",
    ours: () => cosineAnnealingLR({ tMax: 5, etaMin: 0.001 }),
    torch: "CosineAnnealingLR(opt, T_max=5, eta_min=0.001)",
    lr: 0.05,
  },
  {
    name: "ReduceLROnPlateau",
    ours: () =>
      reduceLROnPlateau({ mode: "min", factor: 0.3, patience: 2, threshold: 0.01, cooldown: 1 }),
    torch: "ReduceLROnPlateau(opt, mode='min', factor=0.3, patience=2, threshold=0.01, cooldown=1)",
    lr: 0.2,
  },
  {
    name: "ReduceLROnPlateau max abs",
    ours: () =>
      reduceLROnPlateau({
        mode: "max",
        factor: 0.5,
        patience: 1,
        thresholdMode: "abs",
        minLr: 0.02,
      }),
    torch:
      "ReduceLROnPlateau(opt, mode='max', factor=0.5, patience=1, threshold_mode='abs', min_lr=0.02)",
    lr: 0.2,
  },
];
const STEPS = 24;
const METRICS = Array.from({ length: STEPS }, (_, i) => 1 / (1 + (i % 7)) + (i > 12 ? 0.3 : 0));

Deno.test({
  name: "every schedule gives PyTorch's learning rates, bit for bit" +
    (torchMissing ? ` (skipped: ${torchMissing})` : ""),
  ignore: torchMissing !== undefined,
  fn: async () => {
    const script = [
      "import json, torch",
      "from torch.optim.lr_scheduler import *",
      `metrics = ${JSON.stringify(METRICS)}`,
      "out = []",
      ...TORCH_CASES.map((c) =>
        [
          `opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=${c.lr})`,
          `s = ${c.torch}`,
          "seq = [opt.param_groups[0]['lr']]",
          `for i in range(${STEPS}):`,
          "    opt.step()",
          `    s.step(metrics[i]) if ${
            c.name.startsWith("ReduceLROnPlateau") ? "True" : "False"
          } else s.step()`,
          "    seq.append(opt.param_groups[0]['lr'])",
          "out.append(seq)",
        ].join("\n")
      ),
      "print(json.dumps(out))",
    ].join("\n");
    const out = await new Deno.Command(PYTHON, { args: ["-c", script], stderr: "piped" }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const torch = JSON.parse(new TextDecoder().decode(out.stdout)) as number[][];
    TORCH_CASES.forEach((c, i) => {
      const ours = sequence(c.ours(), c.lr, STEPS, METRICS);
      assert.deepEqual(ours, torch[i], `${c.name}: ours ${ours} vs PyTorch ${torch[i]}`);
    });
  },
});

Deno.test("optimizers read lr at every step (a scheduler's change takes effect)", () => {
  for (const opt of [sgd({ lr: 1 }), sgd({ lr: 1, momentum: 0.5 }), adam({ lr: 1 })]) {
    const p = tf.variable(tf.zeros([2]), true, `p_${opt.kind}_${Math.random()}`);
    const params = new Map([["p", p]]);
    const g = tf.ones([2]);
    tf.tidy(() => opt.step(params, new Map([["p", g]])));
    const first = p.dataSync()[0];
    opt.lr = 0.25;
    tf.tidy(() => opt.step(params, new Map([["p", g]])));
    const second = p.dataSync()[0] - first;
    // SGD: −lr · g (momentum buffer 1.5 on the second step); Adam: −lr (m̂/√v̂ = 1).
    const want = opt.kind === "adam"
      ? -0.25
      : (opt as { momentum: number }).momentum
      ? -0.375
      : -0.25;
    assert.ok(Math.abs(second - want) < 1e-6, `${opt.kind}: second step ${second}, want ${want}`);
    g.dispose();
    p.dispose();
    opt.dispose();
  }
});

Deno.test("the plugin steps per epoch, resets after each experience and writes lr rows", async () => {
  const bench = toyBenchmark();
  const before = tf.memory().numTensors;
  const make = (plugin: LRSchedulerPlugin) =>
    naive({
      model: mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 }),
      optimizer: sgd({ lr: 0.1 }),
      epochs: 5,
      batchSize: 16,
      seed: 0,
      plugins: [plugin],
    });
  const lrRows = (rows: { metric: string; value: number }[]) =>
    rows.filter((r) => r.metric === "lr").map((r) => r.value);
  const s = make(lrScheduler(stepLR({ stepSize: 2, gamma: 0.5 })));
  for (const exp of bench.train) await s.train(exp);
  close(lrRows(s.rows), [0.1, 0.1, 0.05, 0.05, 0.025, 0.1, 0.1, 0.05, 0.05, 0.025]);
  assert.equal(s.optimizer.lr, 0.1, "resetLr puts the initial lr back");
  const row = s.rows.find((r) => r.metric === "lr")!;
  assert.deepEqual(
    { phase: row.phase, stream: row.stream, experience: row.experience, epoch: row.epoch },
    { phase: "train", stream: "train", experience: 0, epoch: 0 },
  );
  s.model.dispose();
  s.dispose();

  // Avalanche's positional form, neither reset: the schedule runs on across experiences.
  const c = make(new LRSchedulerPlugin(stepLR({ stepSize: 2, gamma: 0.5 }), false, false));
  for (const exp of bench.train) await c.train(exp);
  close(lrRows(c.rows), [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125, 0.00625, 0.00625]);
  c.model.dispose();
  c.dispose();

  // By iteration: one row per iteration (40 samples / 16 = 3 minibatches per epoch).
  const it = make(
    lrScheduler(stepLR({ stepSize: 4, gamma: 0.5 }), { stepGranularity: "iteration" }),
  );
  await it.train(bench.train[0]);
  const perIteration = lrRows(it.rows);
  assert.equal(perIteration.length, 15);
  close(perIteration.slice(0, 9), [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025]);
  it.model.dispose();
  it.dispose();
  assert.equal(tf.memory().numTensors, before, "no tensor left behind");
});

Deno.test("loggers given to the plugin receive the lr rows", async () => {
  const bench = toyBenchmark();
  const logger = inMemoryLogger();
  const s = naive({
    model: mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 }),
    optimizer: sgd({ lr: 0.1 }),
    epochs: 3,
    batchSize: 16,
    seed: 0,
    plugins: [lrScheduler(multiStepLR({ milestones: [2] }), { loggers: [logger] })],
  });
  await s.train(bench.train[0]);
  close(logger.rows.map((r) => r.value), [0.1, 0.1, 0.01]);
  assert.deepEqual(logger.rows, s.rows.filter((r) => r.metric === "lr"));
  s.model.dispose();
  s.dispose();
});

Deno.test("reduceLROnPlateau on train_loss and val_loss follows the losses in the rows", async () => {
  const bench = toyBenchmark();
  const model = mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 });
  // lr 1e-30 trains nothing: the losses stay put, so every step after the first is a bad one
  // (eps 0: PyTorch's default 1e-8 would refuse reductions this small).
  const plugin = lrScheduler(reduceLROnPlateau({ patience: 1, factor: 0.5, eps: 0 }), {
    metric: "val_loss",
  });
  const s = naive({
    model,
    optimizer: sgd({ lr: 1e-30 }),
    epochs: 6,
    batchSize: 16,
    evalEvery: 1,
    seed: 0,
    plugins: [plugin],
  });
  await s.train(bench.train[0], { evalStreams: [bench.test], evalBefore: true });
  // Evaluations after epochs 1..6 step the schedule (the one before training is ignored): best,
  // bad 1, bad 2 → halve, bad 1, bad 2 → halve, bad 1; the rows show the lr each epoch used.
  close(
    s.rows.filter((r) => r.metric === "lr").map((r) => r.value / 1e-30),
    [1, 1, 1, 0.5, 0.5, 0.25],
    1e-9,
  );
  model.dispose();
  s.dispose();

  const t = naive({
    model: mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 }),
    optimizer: sgd({ lr: 0.5 }),
    epochs: 4,
    batchSize: 16,
    seed: 0,
    plugins: [
      lrScheduler(reduceLROnPlateau({ patience: 0, mode: "max" }), { metric: "train_loss" }),
    ],
  });
  await t.train(bench.train[0]);
  // mode "max" on a falling loss: every step after the first is bad, patience 0 → ×0.1 each.
  close(
    t.rows.filter((r) => r.metric === "lr").map((r) => r.value),
    [0.5, 0.5, 0.05, 0.005],
    1e-12,
  );
  t.model.dispose();
  t.dispose();
});

Deno.test("a checkpoint mid-schedule restores the schedule: the same lr rows as a run never stopped", async () => {
  const bench = toyBenchmark();
  const make = () =>
    naive({
      model: mlp({ input: 64, hidden: [8], outputs: 4, seed: 0 }),
      optimizer: sgd({ lr: 0.1, momentum: 0.9 }),
      epochs: 4,
      batchSize: 16,
      seed: 0,
      plugins: [
        lrScheduler(cosineAnnealingLR({ tMax: 3 }), { resetEachExperience: false, resetLr: false }),
      ],
    });
  const full = make();
  let saved: unknown;
  await full.train(bench.train[0], {
    checkpoint: {
      everyEpochs: 2,
      save: (state, at) => void (at.midExperience && (saved ??= state)),
    },
  });
  await full.train(bench.train[1]);
  const resumed = make();
  await resumed.train(bench.train[0], { resume: JSON.parse(JSON.stringify(saved)) });
  await resumed.train(bench.train[1]);
  const lr = (s: typeof full) => s.rows.filter((r) => r.metric === "lr").map((r) => r.value);
  assert.deepEqual(lr(resumed), lr(full));
  assert.equal(resumed.optimizer.lr, full.optimizer.lr);
  for (const s of [full, resumed]) {
    s.model.dispose();
    s.dispose();
  }
});

Deno.test("bad settings are errors naming the fix", () => {
  assert.throws(() => lrScheduler(reduceLROnPlateau()), /steps on a metric: pass metric/);
  assert.throws(
    () => lrScheduler(stepLR({ stepSize: 2 }), { metric: "val_loss" }),
    /takes no metric/,
  );
  assert.throws(() => stepLR({ stepSize: 0 }), /stepSize must be an integer > 0, got 0/);
  assert.throws(() => reduceLROnPlateau({ factor: 1 }), /factor must be in \(0, 1\), got 1/);
  assert.throws(
    () => lrScheduler(stepLR({ stepSize: 2 }), { stepGranularty: "epoch" } as never),
    /did you mean "stepGranularity"/,
  );
});
