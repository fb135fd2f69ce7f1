// Tests of the "webgpu" backend (lib/backend.ts) against the cpu backend: every layer and model
// forward and backward, every loss, the plugins' penalties through short runs, and a small Split
// MNIST run of naive, replay and EWC with the same accuracy. CI runs them on lavapipe (Mesa's CPU
// Vulkan: apt-get install mesa-vulkan-drivers libvulkan1, and XDG_RUNTIME_DIR set); where no
// WebGPU adapter answers they are skipped with the reason.
// Run: deno test -A tests/webgpu_test.ts

import { probeWebGpu, seedGlobal, setBackend } from "../lib/backend.ts";
await setBackend("cpu");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { Activation, ACTIVATION_NAMES, Conv2d, Dropout, Linear } from "../lib/nn/layers.ts";
import type { Module } from "../lib/nn/module.ts";
import {
  binaryCrossEntropyWithLogits,
  compositeCrossEntropy,
  crossEntropy,
  distillationLoss,
  icarlLoss,
} from "../lib/nn/losses.ts";
import { quadraticPenalty } from "../lib/nn/penalties.ts";
import { cnn, mlp } from "../lib/models/mlp.ts";
import { packNetModel } from "../lib/models/packnet.ts";
import { splitMNIST, subsample, taskIncremental } from "../lib/benchmarks/mod.ts";
import { toArrayDatasets } from "../lib/benchmarks/classic.ts";
import { syntheticImages } from "../datasets/mod.ts";
import { pnn } from "../lib/models/pnn.ts";
import { packNet } from "../lib/plugins/packnet.ts";
import { pnnStrategy } from "../lib/plugins/pnn.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import type { Strategy, StrategyOptions } from "../lib/strategy/template.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { ewc } from "../lib/plugins/ewc.ts";
import { synapticIntelligence } from "../lib/plugins/synaptic_intelligence.ts";
import { lwf } from "../lib/plugins/lwf.ts";
import { der, derLogitsLoss, derpp } from "../lib/plugins/der.ts";
import { replay } from "../lib/plugins/replay.ts";
import { agem } from "../lib/plugins/agem.ts";
import { bic } from "../lib/plugins/bic.ts";
import { cope } from "../lib/plugins/cope.ts";
import { erAce } from "../lib/plugins/er_ace.ts";
import { erAml } from "../lib/plugins/er_aml.ts";
import { gdumb } from "../lib/plugins/gdumb.ts";
import { gem } from "../lib/plugins/gem.ts";
import { gss } from "../lib/plugins/gss.ts";
import { mir } from "../lib/plugins/mir.ts";
import { cwrStar } from "../lib/plugins/cwr_star.ts";
import { ar1 } from "../lib/plugins/ar1.ts";
import { rar } from "../lib/plugins/rar.ts";
import { scr } from "../lib/plugins/scr.ts";
import { CurrentDataNCMUpdate, MemoryNCMUpdate } from "../lib/plugins/update_ncm.ts";
import { CurrentDataFeCAMUpdate } from "../lib/plugins/update_fecam.ts";
import { streamingLDA } from "../lib/plugins/slda.ts";
import { FUSED_KERNELS } from "../lib/backends/fused.ts";
import { SHARED_DATA, toyBenchmark } from "./_helpers.ts";

const probe = await probeWebGpu();
const ignore = !probe.ok;
const skipped = probe.ok ? "" : ` (skipped: ${probe.reason})`;
if (!probe.ok) console.warn(`webgpu tests skipped: ${probe.reason}`);
// The WebGPU device stays open for the rest of the process, which Deno's sanitizers would count.
const gpuTest = { ignore, sanitizeResources: false, sanitizeOps: false };

/** Float tolerance between backends: |a − b| ≤ tol · max(1, |b|). */
function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) {
  assert.equal(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    assert.ok(d <= tol * Math.max(1, Math.abs(b[i])), `${what}[${i}]: webgpu ${a[i]}, cpu ${b[i]}`);
  }
}

/** Runs `f` on the cpu backend and then on webgpu; returns the values of what each returned. */
async function onBoth(f: () => tf.Tensor[]): Promise<{ cpu: Float32Array[]; gpu: Float32Array[] }> {
  const run = async (backend: "cpu" | "webgpu") => {
    await setBackend(backend);
    const out = f();
    const values = await Promise.all(out.map(async (t) => Float32Array.from(await t.data())));
    tf.dispose(out);
    return values;
  };
  try {
    const cpu = await run("cpu");
    const gpu = await run("webgpu");
    return { cpu, gpu };
  } finally {
    await setBackend("cpu");
  }
}

/** A seeded input (drawn in JavaScript, the same on every backend). */
const input = (shape: number[], seed: number) => tf.randomUniform(shape, -1, 1, "float32", seed);

/**
 * The module's output for a seeded input and the gradients of `Σ r · output` with respect to
 * every parameter and to the input, made by `make` anew on the current backend.
 */
function forwardBackward(
  make: () => Module,
  shape: number[],
  training = false,
  tasks?: number[],
): () => tf.Tensor[] {
  return () => {
    const model = make();
    model.train(training);
    const x = input(shape, 1);
    const taskLabels = tasks ? tf.tensor1d(tasks, "int32") : undefined;
    const fwd = (xx: tf.Tensor) => model.forward(xx, taskLabels ? { taskLabels } : undefined);
    const y = tf.clone(fwd(x));
    const r = input(y.shape, 2);
    const params = [...model.namedParameters().values()].filter((p) => p.trainable);
    const grads = params.length === 0
      ? {}
      : tf.variableGrads(() => tf.sum(tf.mul(fwd(x), r)) as tf.Scalar, params).grads;
    const dx = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(fwd(xx), r)))(x);
    const out = [y, dx, ...params.map((p) => grads[p.name])];
    tf.dispose([x, r, taskLabels]);
    model.dispose();
    return out;
  };
}

Deno.test(
  "webgpu starts on the adapter probeWebGpu found, and auto never takes a software one" + skipped,
  gpuTest,
  async () => {
    try {
      const info = await setBackend("webgpu");
      assert.equal(info.name, "webgpu");
      assert.equal(tf.getBackend(), "webgpu");
      assert.deepEqual(info.adapter, probe.ok ? probe.adapter : undefined);
      const auto = await setBackend("auto");
      const webgpu = auto.skipped.find((s) => s.name === "webgpu");
      if (Deno.build.os === "linux" && !Deno.env.get("XDG_RUNTIME_DIR")) {
        assert.match(webgpu!.reason, /XDG_RUNTIME_DIR is not set/);
      } else if (probe.ok && probe.adapter.software) {
        assert.notEqual(auto.name, "webgpu");
        assert.match(webgpu!.reason, /software/);
      } else {
        assert.equal(auto.name, "webgpu");
      }
    } finally {
      await setBackend("cpu");
    }
  },
);

Deno.test(
  "strategy.plan() on webgpu lists the fused kernels that fall back to composite forms" + skipped,
  gpuTest,
  async () => {
    try {
      await setBackend("webgpu");
      const model = mlp({ input: 4, hidden: [3], outputs: 2, seed: 0 });
      const plan = naive({ model, seed: 0 }).plan();
      assert.equal(plan.backend, "webgpu");
      assert.equal(plan.step, "tape");
      assert.match(plan.reasons.join(), /"webgpu" backend has no fused linear/);
      assert.deepEqual(
        plan.composite.map((c) => c.split(" → ")[0]),
        FUSED_KERNELS.map((k) => k.name),
      );
      model.dispose();
      await setBackend("cpu");
      const cpuModel = mlp({ input: 4, hidden: [3], outputs: 2, seed: 0 });
      // cpu has the loss kernels; only the linear layer's fused kernel is a heap backends' one.
      assert.deepEqual(
        naive({ model: cpuModel, seed: 0 }).plan().composite.map((c) => c.split(" ")[0]),
        [
          "PerennialLinear",
        ],
      );
      cpuModel.dispose();
    } finally {
      await setBackend("cpu");
    }
  },
);

Deno.test(
  "every layer and model gives the cpu backend's outputs and gradients on webgpu" + skipped,
  gpuTest,
  async () => {
    const cases: [string, () => Module, number[], boolean?, number[]?][] = [
      ["Linear", () => new Linear(6, 5, { seed: 3 }), [4, 6]],
      ["Linear without bias", () => new Linear(6, 5, { seed: 3, bias: false }), [4, 6]],
      ["Conv2d same", () => new Conv2d(2, 3, 3, { seed: 3 }), [2, 6, 6, 2]],
      [
        "Conv2d valid, stride 2",
        () => new Conv2d(2, 3, 3, { seed: 3, stride: 2, padding: "valid" }),
        [
          2,
          7,
          7,
          2,
        ],
      ],
      ["Dropout (training)", () => new Dropout(0.5, 7), [4, 6], true],
      ...ACTIVATION_NAMES.map((a) =>
        [`Activation ${a}`, () => new Activation(a), [4, 6]] as [string, () => Module, number[]]
      ),
      ["mlp", () => mlp({ input: 12, hidden: [8, 6], outputs: 5, seed: 3 }), [4, 12]],
      [
        "mlp with dropout (training)",
        () => mlp({ input: 12, hidden: [8], dropout: 0.3, seed: 3 }),
        [
          4,
          12,
        ],
        true,
      ],
      [
        "mlp incremental head",
        () => mlp({ input: 12, hidden: [8], head: "incremental", seed: 3 }),
        [
          4,
          12,
        ],
      ],
      ["cnn", () => cnn({ input: [8, 8, 1], channels: [2, 3], dense: 6, outputs: 4, seed: 3 }), [
        2,
        64,
      ]],
      ["packNetModel", () => packNetModel({ input: 12, hidden: [8], outputs: 4, seed: 3 }), [
        4,
        12,
      ]],
    ];
    for (const [name, make, shape, training, tasks] of cases) {
      const { cpu, gpu } = await onBoth(forwardBackward(make, shape, training, tasks));
      const parts = ["output", "input gradient", ...cpu.slice(2).map((_, k) => `gradient ${k}`)];
      for (let k = 0; k < cpu.length; k++) assertClose(gpu[k], cpu[k], 1e-4, `${name} ${parts[k]}`);
    }
  },
);

Deno.test(
  "every loss and penalty gives the cpu backend's value and gradient on webgpu" + skipped,
  gpuTest,
  async () => {
    const labels = () => tf.tensor1d([0, 3, 1, 2, 3], "int32");
    const cases: [string, (z: tf.Tensor) => tf.Scalar][] = [
      ["crossEntropy", (z) => crossEntropy(z, labels())],
      ["compositeCrossEntropy", (z) => compositeCrossEntropy(z, labels())],
      ["distillationLoss", (z) => distillationLoss(z, input([5, 4], 9), [0, 2, 3], 2)],
      [
        "binaryCrossEntropyWithLogits",
        (z) => binaryCrossEntropyWithLogits(z, tf.abs(input([5, 4], 9))),
      ],
      ["icarlLoss", (z) => icarlLoss(z, labels(), input([5, 4], 9), [0, 1])],
      ["derLogitsLoss (DER)", (z) => derLogitsLoss(z, input([5, 4], 9))],
      [
        "quadraticPenalty (EWC, SI)",
        (z) => quadraticPenalty(z, tf.abs(input([5, 4], 9)), input([5, 4], 8), 0.7),
      ],
    ];
    for (const [name, loss] of cases) {
      const { cpu, gpu } = await onBoth(() => {
        const z = input([5, 4], 4);
        const { value, grad } = tf.valueAndGrad(loss)(z);
        z.dispose();
        return [value, grad];
      });
      assertClose(gpu[0], cpu[0], 1e-5, `${name} value`);
      assertClose(gpu[1], cpu[1], 1e-5, `${name} gradient`);
    }
  },
);

/** Trains `make`'s strategy on the toy benchmark; returns the final weights and accuracies. */
function toyRun(make: (opts: StrategyOptions) => Strategy): () => Promise<number[][]> {
  return async () => {
    const bench = toyBenchmark({ n: 80 });
    const model = mlp({ input: 64, hidden: [16], outputs: 4, seed: 0 });
    const s = make({ model, optimizer: sgd({ lr: 0.05, momentum: 0.9 }), batchSize: 16, seed: 0 });
    for (const e of bench.train) await s.train(e);
    const r = await s.eval(bench.test);
    const weights = await Promise.all(
      [...model.namedParameters().values()].map(async (p) => Array.from(await p.data())),
    );
    s.dispose();
    model.dispose();
    return [r.experiences.map((e) => e.accuracy), [r.loss], ...weights];
  };
}

async function runBoth<T>(f: () => Promise<T>): Promise<{ cpu: T; gpu: T }> {
  try {
    await setBackend("cpu");
    const cpu = await f();
    await setBackend("webgpu");
    const before = tf.memory().numTensors;
    const gpu = await f();
    assert.equal(tf.memory().numTensors, before, "no tensor left behind on webgpu");
    return { cpu, gpu };
  } finally {
    await setBackend("cpu");
  }
}

Deno.test(
  "each plugin's penalty trains to the cpu backend's weights on webgpu (EWC, SI, LwF, DER, DER++, replay)" +
    skipped,
  gpuTest,
  async () => {
    const methods: [string, (o: StrategyOptions) => Strategy][] = [
      ["ewc", (o) => ewc({ ...o, lambda: 10 })],
      ["synapticIntelligence", (o) => synapticIntelligence({ ...o, lambda: 1 })],
      ["lwf", (o) => lwf({ ...o, alpha: 1, temperature: 2 })],
      ["der", (o) => der({ ...o, memSize: 20, batchSizeMem: 8 })],
      ["derpp", (o) => derpp({ ...o, memSize: 20, batchSizeMem: 8 })],
      ["replay", (o) => replay({ ...o, memSize: 20 })],
    ];
    for (const [name, make] of methods) {
      const { cpu, gpu } = await runBoth(toyRun(make));
      for (let k = 0; k < cpu.length; k++) {
        assertClose(
          gpu[k],
          cpu[k],
          2e-3,
          `${name} ${k === 0 ? "accuracy" : k === 1 ? "loss" : "weights"}`,
        );
      }
    }
  },
);

Deno.test(
  "replay and gradient-projection methods train to the cpu backend's weights on webgpu (GEM, " +
    "A-GEM, ER-ACE, ER-AML, GDumb, GSS, MIR, BiC, CoPE, CWR*, AR1, RAR)" + skipped,
  gpuTest,
  async () => {
    const methods: [string, (o: StrategyOptions) => Strategy][] = [
      ["gem", (o) => gem({ ...o, patternsPerExperience: 20 })],
      ["agem", (o) => agem({ ...o, patternsPerExperience: 20, sampleSize: 16 })],
      ["erAce", (o) => erAce({ ...o, memSize: 20 })],
      ["erAml", (o) => erAml({ ...o, memSize: 20 })],
      ["gdumb", (o) => gdumb({ ...o, memSize: 20 })],
      ["gss", (o) => gss({ ...o, memSize: 20 })],
      ["mir", (o) => mir({ ...o, memSize: 20, batchSizeMem: 8 })],
      ["bic", (o) => bic({ ...o, memSize: 20 })],
      ["cope", (o) => cope({ ...o, memSize: 20 })],
      ["cwrStar", (o) => cwrStar(o)],
      ["ar1", (o) => ar1({ ...o, rmSz: 20 })],
      ["rar", (o) => rar({ ...o, memSize: 20, batchSizeMem: 8 })],
    ];
    for (const [name, make] of methods) {
      const { cpu, gpu } = await runBoth(toyRun(make));
      for (let k = 0; k < cpu.length; k++) {
        const what = k === 0 ? "accuracy" : k === 1 ? "loss" : "weights";
        assertClose(gpu[k], cpu[k], 2e-3, `${name} ${what}`);
      }
    }
  },
);

Deno.test(
  "methods that classify by features give the cpu backend's results on webgpu (SCR, NCM and " +
    "FeCAM updates, StreamingLDA)" + skipped,
  gpuTest,
  async () => {
    const methods: [string, (o: StrategyOptions) => Strategy][] = [
      ["scr", (o) => scr({ ...o, memSize: 20 })],
      ["CurrentDataNCMUpdate", (o) => naive({ ...o, plugins: [new CurrentDataNCMUpdate()] })],
      ["MemoryNCMUpdate", (o) => naive({ ...o, plugins: [new MemoryNCMUpdate(20)] })],
      ["CurrentDataFeCAMUpdate", (o) => naive({ ...o, plugins: [new CurrentDataFeCAMUpdate()] })],
      ["streamingLDA", (o) =>
        streamingLDA({
          model: o.model,
          outputLayerName: "embed",
          inputSize: 16,
          numClasses: 4,
          batchSize: 16,
          seed: 0,
        })],
    ];
    for (const [name, make] of methods) {
      const { cpu, gpu } = await runBoth(toyRun(make));
      for (let k = 0; k < cpu.length; k++) {
        const what = k === 0 ? "accuracy" : k === 1 ? "loss" : "weights";
        assertClose(gpu[k], cpu[k], 2e-3, `${name} ${what}`);
      }
    }
  },
);

Deno.test(
  "task-incremental models train to the cpu backend's weights on webgpu (PackNet, PNN)" + skipped,
  gpuTest,
  async () => {
    const data = {
      name: "toy",
      classes: 4,
      train: syntheticImages({ n: 80, classes: 4, rows: 8, cols: 8, seed: 1 }),
      test: syntheticImages({ n: 40, classes: 4, rows: 8, cols: 8, seed: 101 }),
    };
    const { train, test } = toArrayDatasets(data, { normalize: false });
    const bench = taskIncremental({ train, test, experiences: 2, fixedClassOrder: [0, 1, 2, 3] });
    const runs: [string, () => Strategy][] = [
      ["packNet", () =>
        packNet({
          model: packNetModel({ input: 64, hidden: [16], outputs: 2, head: "multi", seed: 0 }),
          postPruneEpochs: 1,
          epochs: 2,
          optimizer: sgd({ lr: 0.05 }),
          batchSize: 16,
          seed: 0,
        })],
      ["pnnStrategy", () =>
        pnnStrategy({
          model: pnn({ inFeatures: 64, hiddenFeaturesPerColumn: 8, seed: 0 }),
          optimizer: sgd({ lr: 0.05 }),
          batchSize: 16,
          seed: 0,
        })],
    ];
    for (const [name, make] of runs) {
      const { cpu, gpu } = await runBoth(async () => {
        seedGlobal(0); // new columns and heads draw their seeds from Math.random
        const s = make();
        for (const e of bench.train) await s.train(e);
        const r = await s.eval(bench.test);
        const weights = await Promise.all(
          [...s.model.namedParameters().values()].map(async (p) => Array.from(await p.data())),
        );
        s.dispose();
        s.model.dispose();
        return [r.experiences.map((e) => e.accuracy), [r.loss], ...weights];
      });
      for (let k = 0; k < cpu.length; k++) {
        const what = k === 0 ? "accuracy" : k === 1 ? "loss" : "weights";
        assertClose(gpu[k], cpu[k], 2e-3, `${name} ${what}`);
      }
    }
  },
);

Deno.test(
  "checkpointAsync on webgpu: an EWC run restored from its checkpoint ends as the uninterrupted one" +
    skipped,
  gpuTest,
  async () => {
    try {
      await setBackend("webgpu");
      const bench = toyBenchmark({ n: 80 });
      const make = (modelSeed: number) =>
        ewc({
          model: mlp({ input: 64, hidden: [16], outputs: 4, seed: modelSeed }),
          optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
          batchSize: 16,
          seed: 0,
          lambda: 10,
        });
      const weights = (s: Strategy) =>
        Promise.all([...s.model.namedParameters().values()].map(async (p) => [...await p.data()]));
      const full = make(1);
      for (const e of bench.train) await full.train(e);
      const fullEval = await full.eval(bench.test);
      const first = make(1);
      await first.train(bench.train[0]);
      const saved = JSON.parse(JSON.stringify(await first.checkpointAsync()));
      first.dispose();
      first.model.dispose();
      const resumed = make(99); // other initial weights: everything comes from the checkpoint
      await resumed.restore(saved);
      await resumed.train(bench.train[1]);
      const resumedEval = await resumed.eval(bench.test);
      assert.deepEqual(resumedEval.experiences, fullEval.experiences);
      assert.deepEqual(await weights(resumed), await weights(full));
      for (const s of [full, resumed]) {
        s.dispose();
        s.model.dispose();
      }
    } finally {
      await setBackend("cpu");
    }
  },
);

Deno.test(
  "Split MNIST: naive, replay and EWC reach the cpu backend's accuracy on webgpu" +
    (skipped || (SHARED_DATA ? "" : " (skipped: ../shared/datasets is absent)")),
  { ...gpuTest, ignore: ignore || !SHARED_DATA },
  async () => {
    const full = await splitMNIST({ experiences: 5, seed: 0, dataDir: SHARED_DATA });
    const bench = subsample(full, { trainPerExperience: 200, testPerExperience: 100, seed: 0 });
    const methods: [string, (o: StrategyOptions) => Strategy][] = [
      ["naive", naive],
      ["replay", (o) => replay({ ...o, memSize: 200 })],
      ["ewc", (o) => ewc({ ...o, lambda: 1 })],
    ];
    const acc: Record<string, number> = {};
    for (const [name, make] of methods) {
      const { cpu, gpu } = await runBoth(async () => {
        const model = mlp({ hidden: [64], seed: 0 });
        const s = make({
          model,
          optimizer: sgd({ lr: 0.01, momentum: 0.9 }),
          batchSize: 32,
          seed: 0,
        });
        for (const e of bench.train) await s.train(e);
        const r = await s.eval(bench.test);
        s.dispose();
        model.dispose();
        return r;
      });
      console.log(
        `${name}: cpu ${cpu.meanAccuracy.toFixed(3)}, webgpu ${gpu.meanAccuracy.toFixed(3)}`,
      );
      assert.ok(Math.abs(gpu.meanAccuracy - cpu.meanAccuracy) <= 0.02, name);
      for (const [k, e] of gpu.experiences.entries()) {
        assert.ok(Math.abs(e.accuracy - cpu.experiences[k].accuracy) <= 0.03, `${name} exp ${k}`);
      }
      acc[name] = gpu.meanAccuracy;
    }
    assert.ok(acc.replay > acc.naive + 0.1, "replay beats naive on webgpu too");
  },
);
