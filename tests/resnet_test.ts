// Tests of the ResNets (lib/models/resnet.ts) and their parts (lib/nn/residual.ts,
// lib/nn/pooling.ts, Conv2d's bias and numeric padding): shapes, parameter counts and outputs
// against the same networks in PyTorch (skipped without torch), heads, a training run on
// CIFAR-shaped synthetic data, checkpoints with batch-norm statistics, and the train/eval modes
// of the template and of the plugins that copy or freeze models.
// Run: deno test -A tests/resnet_test.ts

import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { classIncremental, taskIncremental } from "../lib/benchmarks/mod.ts";
import { ArrayDataset } from "../lib/data/dataset.ts";
import { extractFeatures } from "../lib/models/features.ts";
import { IncrementalClassifier, type MultiHeadClassifier } from "../lib/models/heads.ts";
import type { Classifier } from "../lib/models/mlp.ts";
import { reducedResNet18, resnet32, ResNetBackbone, slimResNet18 } from "../lib/models/resnet.ts";
import { Conv2d } from "../lib/nn/layers.ts";
import type { ModuleState } from "../lib/nn/module.ts";
import { BatchNorm2d } from "../lib/nn/norm.ts";
import { AvgPool2d, GlobalAvgPool2d } from "../lib/nn/pooling.ts";
import { BasicBlock, ZeroPadShortcut } from "../lib/nn/residual.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { cwrStar } from "../lib/plugins/cwr_star.ts";
import { EWCPlugin } from "../lib/plugins/ewc.ts";
import { LwFPlugin } from "../lib/plugins/lwf.ts";
import type { Plugin } from "../lib/strategy/plugin.ts";
import { naive } from "../lib/strategy/strategies.ts";
import { decodeCheckpoint, encodeCheckpoint } from "../lib/checkpoint/files.ts";
import { checkResume } from "./_helpers.ts";
import { runTorch, torchMissing, torchNote } from "./_torch.ts";

/** Seeded values in [-1, 1) (a small LCG: the tests' data, not the library's randomness). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

/**
 * `n` CIFAR-shaped NHWC images of `classes` classes: noise in [-1, 1) plus, for class c, a
 * brighter channel c % 3 (by 2) in quadrant ⌊c / 3⌋.
 */
function cifarLike(n: number, classes: number, seed: number): ArrayDataset {
  const x = values(n * 32 * 32 * 3, seed);
  const y = Array.from({ length: n }, (_, i) => i % classes);
  for (let i = 0; i < n; i++) {
    const c = y[i], ch = c % 3, q = Math.floor(c / 3) % 4;
    const [r0, c0] = [16 * (q >> 1), 16 * (q & 1)];
    for (let r = r0; r < r0 + 16; r++) {
      for (let col = c0; col < c0 + 16; col++) x[((i * 32 + r) * 32 + col) * 3 + ch] += 2;
    }
  }
  return new ArrayDataset({ x, y, inputShape: [32, 32, 3] });
}

function trainable(model: Classifier): number {
  let n = 0;
  for (const v of model.trainableParameters().values()) n += v.size;
  return n;
}

function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  what: string,
) {
  assert.equal(actual.length, expected.length, `${what}: lengths differ`);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i])));
  }
  assert.ok(worst <= tol, `${what}: largest difference ${worst} > ${tol}`);
}

function runningStats(model: Classifier): number[] {
  const out: number[] = [];
  for (const [n, v] of model.namedParameters()) if (/running/.test(n)) out.push(...v.dataSync());
  return out;
}

Deno.test("ResNets: output and feature shapes, parameter counts, flat inputs, names", () => {
  const x = tf.tensor4d(values(2 * 32 * 32 * 3, 1), [2, 32, 32, 3]);
  const cases: [string, () => Classifier, number, number][] = [
    // Trainable parameters as PyTorch counts them (the PyTorch test below checks these).
    ["slimResNet18", () => slimResNet18({ seed: 0 }), 160, 1_094_750],
    ["reducedResNet18", () => reducedResNet18({ seed: 0 }), 160, 1_094_750],
    ["resnet32", () => resnet32({ seed: 0 }), 64, 464_154],
    ["resnet32 (option B)", () => resnet32({ shortcut: "conv", seed: 0 }), 64, 466_906],
  ];
  for (const [name, make, dim, params] of cases) {
    const model = make();
    assert.equal(model.featureSize, dim, name);
    assert.equal(trainable(model), params, `${name}: trainable parameters`);
    model.eval();
    const [out, feats, flat] = tf.tidy(() => [
      model.forward(x),
      model.embed(x),
      model.forward(tf.reshape(x, [2, 3072])),
    ]);
    assert.deepEqual(out.shape, [2, 10], name);
    assert.deepEqual(feats.shape, [2, dim], name);
    assert.deepEqual(
      Array.from(flat.dataSync()),
      Array.from(out.dataSync()),
      `${name}: flat input`,
    );
    tf.dispose([out, feats, flat]);
    model.dispose();
  }
  const slim = slimResNet18({ nf: 4, seed: 0 });
  const names = [...slim.namedParameters().keys()];
  for (
    const n of [
      "features.conv1.weight",
      "features.bn1.runningMean",
      "features.layer1.0.conv2.weight",
      "features.layer2.0.shortcut.0.weight",
      "features.layer4.1.bn2.runningVar",
      "classifier.weight",
    ]
  ) assert.ok(names.includes(n), `${n} in ${names.join(", ")}`);
  assert.ok(
    !names.some((n) => /conv\d?\.bias|shortcut\.0\.bias/.test(n)),
    "convolutions have no bias",
  );
  assert.throws(() => tf.tidy(() => slim.forward(tf.zeros([1, 28, 28, 1]))), {
    name: "RangeError",
    message: /32×32×3 = 3072 values, got shape \[1,28,28,1\]/,
  });
  assert.throws(() => slimResNet18({ input: [16, 16, 3] }), /smaller than the 4×4 pooling/);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => resnet32({ shortcut: "A" as any }), /shortcut/);
  assert.throws(
    () => slimResNet18({ nF: 20 } as unknown as { nf: number }),
    /unknown option "nF" \(did you mean "nf"\?\)/,
  );
  slim.dispose();
  x.dispose();
});

Deno.test("Residual parts: zero-padding shortcut, average pooling, Conv2d padding and bias", async () => {
  const x = tf.tensor4d(Float32Array.from({ length: 2 * 4 * 4 * 2 }, (_, i) => i), [2, 4, 4, 2]);
  const conv = new Conv2d(2, 3, 3, { stride: 2, padding: 1, bias: false, seed: 0 });
  const ours = tf.tidy(() => {
    const s = new ZeroPadShortcut(2, 4, 2).forward(x);
    assert.deepEqual(s.shape, [2, 2, 2, 4]);
    // Pixel (0, 0) of the first image, pixel (0, 2) next, then zero channels.
    assert.deepEqual(Array.from(s.dataSync().slice(0, 8)), [0, 1, 0, 0, 4, 5, 0, 0]);
    const odd = new ZeroPadShortcut(2, 2, 2).forward(tf.slice(x, [0, 0, 0, 0], [1, 3, 3, 2]));
    assert.deepEqual(odd.shape, [1, 2, 2, 2], "ceil(3 / 2) rows, as AvgPool2d(1, stride 2)");
    const pooled = new AvgPool2d(2).forward(x);
    assert.deepEqual(pooled.shape, [2, 2, 2, 2]);
    assert.equal(pooled.dataSync()[0], (0 + 2 + 8 + 10) / 4);
    const overlapping = new AvgPool2d(3, 1).forward(x);
    assert.deepEqual(overlapping.shape, [2, 2, 2, 2]);
    assert.deepEqual(new GlobalAvgPool2d().forward(x).shape, [2, 2]);
    // PyTorch's padding 1 with stride 2 starts the windows one pixel before the image.
    assert.equal(conv.bias, undefined);
    const y = conv.forward(x);
    const want = tf.conv2d(x, conv.weight as tf.Tensor4D, 2, [[0, 0], [1, 1], [1, 1], [0, 0]]);
    assert.deepEqual(y.shape, [2, 2, 2, 3]);
    assert.deepEqual(Array.from(y.dataSync()), Array.from(want.dataSync()));
    // The wasm backend's own gradient path (conv2dOp) with numeric padding and no bias.
    const { grads } = tf.variableGrads(() => tf.sum(tf.square(conv.forward(x))) as tf.Scalar);
    assert.deepEqual(Object.keys(grads), [conv.weight.name]);
    return Array.from(grads[conv.weight.name].dataSync());
  });
  // The reference: tfjs' own conv2d gradient, on the cpu backend (wasm has no such kernel).
  const [xs, ws] = [x.dataSync(), conv.weight.dataSync()];
  await setBackend("cpu");
  const ref = tf.tidy(() =>
    Array.from(
      tf.grad((w: tf.Tensor) =>
        tf.sum(
          tf.square(
            tf.conv2d(tf.tensor4d(xs, x.shape), w as tf.Tensor4D, 2, [[0, 0], [1, 1], [1, 1], [
              0,
              0,
            ]]),
          ),
        )
      )(tf.tensor4d(ws, conv.weight.shape as [number, number, number, number])).dataSync(),
    )
  );
  await setBackend("wasm");
  assertClose(ours, ref, 1e-5, "kernel gradient");
  conv.dispose();
  assert.throws(() => new ZeroPadShortcut(4, 2, 2), /cannot reduce channels.*shortcut "conv"/);
  assert.throws(
    () => new Conv2d(1, 1, 3, { padding: -1 }),
    /padding must be "same", "valid" or an integer ≥ 0, got -1/,
  );
  assert.throws(
    () => new BasicBlock(4, 8, { stride: 0 }),
    /stride must be a positive integer, got 0/,
  );
  x.dispose();
});

/** Our state dict, as PyTorch's names and layouts expect it. */
function stateOf(model: Classifier): Record<string, { shape: number[]; values: number[] }> {
  return (model.stateDict() as ModuleState).tensors;
}

const TORCH_RESNETS = `
import torch.nn as nn
import torch.nn.functional as F

class Pad(nn.Module):  # PyCIL's DownsampleA
    def __init__(self, planes, stride):
        super().__init__()
        self.planes, self.stride = planes, stride
    def forward(self, x):
        x = F.avg_pool2d(x, 1, self.stride)
        return torch.cat([x, x.new_zeros(x.shape[0], self.planes - x.shape[1], *x.shape[2:])], 1)

class Block(nn.Module):  # Avalanche's BasicBlock; PyCIL's ResNetBasicblock with option A
    def __init__(self, cin, planes, stride, shortcut):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = Pad(planes, stride) if shortcut == "pad" else nn.Sequential(
                nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

class ResNet(nn.Module):
    def __init__(self, stem, stages, shortcut, pool, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        cin = stem
        for i, (planes, blocks, stride) in enumerate(stages):
            layers = []
            for b in range(blocks):
                layers.append(Block(cin, planes, stride if b == 0 else 1, shortcut))
                cin = planes
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*layers))
        self.n, self.pool = len(stages), pool
        self.linear = nn.Linear(cin, classes)
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.n):
            out = getattr(self, "layer%d" % (i + 1))(out)
        out = F.avg_pool2d(out, self.pool)
        return self.linear(out.view(out.size(0), -1))

def load(model, state):
    sd = model.state_dict()
    with torch.no_grad():
        for name, s in state.items():
            key = name.replace("features.", "").replace("classifier.", "linear.")
            key = key.replace("runningMean", "running_mean").replace("runningVar", "running_var")
            t = torch.tensor(s["values"], dtype=torch.float32).reshape(s["shape"])
            if t.dim() == 4: t = t.permute(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]
            elif t.dim() == 2: t = t.t()  # [in, out] -> [out, in]
            assert sd[key].shape == t.shape, (key, sd[key].shape, t.shape)
            sd[key].copy_(t)
    loaded = {n.replace("features.", "").replace("classifier.", "linear.").replace("runningMean", "running_mean").replace("runningVar", "running_var") for n in state}
    missing = [k for k in sd if k not in loaded and not k.endswith("num_batches_tracked")]
    assert not missing, missing

out = {}
for case in inp["cases"]:
    model = ResNet(case["stem"], case["stages"], case["shortcut"], case["pool"], 10)
    load(model, case["state"])
    x = torch.tensor(case["x"], dtype=torch.float32).reshape(-1, 32, 32, 3).permute(0, 3, 1, 2)
    with torch.no_grad():
        model.eval()
        ev = model(x).reshape(-1).tolist()
        model.train()
        tr = model(x).reshape(-1).tolist()
    stats = [v for k, b in model.named_buffers() if "running" in k for v in b.reshape(-1).tolist()]
    out[case["name"]] = {
        "params": sum(p.numel() for p in model.parameters()),
        "buffers": sum(b.numel() for k, b in model.named_buffers() if "running" in k),
        "eval": ev, "train": tr, "stats": stats,
    }
print(json.dumps(out))
`;

Deno.test({
  name:
    "ResNets match the same networks in PyTorch: parameter counts, eval and train outputs, running statistics" +
    torchNote,
  ignore: torchMissing !== undefined,
  fn: async () => {
    const x = values(3 * 32 * 32 * 3, 5);
    const specs = [
      {
        name: "slim",
        make: () => slimResNet18({ seed: 3 }),
        stem: 20,
        stages: [[20, 2, 1], [40, 2, 2], [80, 2, 2], [160, 2, 2]],
        shortcut: "conv",
        pool: 4,
      },
      {
        name: "resnet32",
        make: () => resnet32({ seed: 4 }),
        stem: 16,
        stages: [[16, 5, 1], [32, 5, 2], [64, 5, 2]],
        shortcut: "pad",
        pool: 8,
      },
      {
        name: "resnet32B",
        make: () => resnet32({ seed: 5, shortcut: "conv" }),
        stem: 16,
        stages: [[16, 5, 1], [32, 5, 2], [64, 5, 2]],
        shortcut: "conv",
        pool: 8,
      },
    ];
    const ours: Record<
      string,
      { params: number; buffers: number; eval: number[]; train: number[]; stats: number[] }
    > = {};
    const cases = [];
    for (const spec of specs) {
      const model = spec.make();
      // Running statistics away from (0, 1), so that evaluation tests them.
      let k = 0;
      for (const [n, v] of model.namedParameters()) {
        if (!/running/.test(n)) continue;
        const r = values(v.size, 50 + k++);
        tf.tidy(() =>
          v.assign(
            tf.tensor1d(n.endsWith("Var") ? r.map((a) => 1 + 0.5 * a) : r.map((a) => 0.2 * a)),
          )
        );
      }
      const state = stateOf(model);
      const xt = tf.tensor4d(x, [3, 32, 32, 3]);
      model.eval();
      const ev = tf.tidy(() => Array.from(model.forward(xt).dataSync()));
      model.train();
      const tr = tf.tidy(() => Array.from(model.forward(xt).dataSync()));
      xt.dispose();
      let buffers = 0;
      for (const [n, v] of model.namedParameters()) if (/running/.test(n)) buffers += v.size;
      ours[spec.name] = {
        params: trainable(model),
        buffers,
        eval: ev,
        train: tr,
        stats: runningStats(model),
      };
      cases.push({
        name: spec.name,
        stem: spec.stem,
        stages: spec.stages,
        shortcut: spec.shortcut,
        pool: spec.pool,
        state,
        x: Array.from(x),
      });
      model.dispose();
    }
    const torch = await runTorch<typeof ours>(TORCH_RESNETS, { cases });
    for (const { name } of specs) {
      const [a, b] = [ours[name], torch[name]];
      assert.equal(a.params, b.params, `${name}: parameters`);
      assert.equal(a.buffers, b.buffers, `${name}: running statistics`);
      assertClose(a.eval, b.eval, 1e-4, `${name}: eval-mode outputs`);
      assertClose(a.train, b.train, 1e-4, `${name}: train-mode outputs`);
      assertClose(a.stats, b.stats, 1e-4, `${name}: running statistics after a training forward`);
    }
  },
});

Deno.test("ResNet heads: incremental and multi-head grow with the experiences; embed feeds feature extraction", () => {
  const train = cifarLike(16, 4, 1), test = cifarLike(8, 4, 2);
  const ci = classIncremental({ train, test, experiences: 2, fixedClassOrder: [0, 1, 2, 3] });
  const inc = slimResNet18({ nf: 4, outputs: 2, head: "incremental", seed: 0 });
  assert.ok(inc.classifier instanceof IncrementalClassifier);
  inc.adapt(ci.train[1]);
  assert.equal((inc.classifier as IncrementalClassifier).outFeatures, 4);
  const f = extractFeatures(inc, train, { batchSize: 8 });
  assert.equal(f.n, 16);
  assert.equal(f.dim, 32);
  assert.ok(inc.training, "extractFeatures restores the mode");
  const ti = taskIncremental({ train, test, experiences: 2, fixedClassOrder: [0, 1, 2, 3] });
  const multi = resnet32({ outputs: 2, head: "multi", seed: 0 });
  for (const e of ti.train) multi.adapt(e);
  assert.deepEqual([...(multi.classifier as MultiHeadClassifier).heads.keys()], [0, 1]);
  multi.eval();
  const out = tf.tidy(() =>
    multi.forward(tf.tensor4d(values(2 * 3072, 3), [2, 32, 32, 3]), {
      taskLabels: tf.tensor1d([0, 1], "int32"),
    })
  );
  assert.deepEqual(out.shape, [2, 2]);
  out.dispose();
  // A clone carries the running statistics and the heads.
  const copy = inc.clone();
  assert.deepEqual(copy.stateDict(), inc.stateDict());
  for (const m of [inc, multi, copy]) m.dispose();
});

Deno.test("A slim ResNet trains on CIFAR-shaped synthetic data: the loss goes down, test accuracy is high, numTensors flat", async () => {
  const train = cifarLike(96, 4, 11), test = cifarLike(48, 4, 12);
  const bench = classIncremental({ train, test, experiences: 1 });
  const model = slimResNet18({ nf: 2, outputs: 4, seed: 0 });
  const s = naive({ model, optimizer: sgd({ lr: 0.02, momentum: 0.9 }), batchSize: 16, seed: 0 });
  const losses: number[] = [];
  let base = 0;
  for (let epoch = 0; epoch < 5; epoch++) {
    const r = await s.train(bench.train[0]);
    losses.push(r.epochs[0].loss);
    await s.eval(bench.test);
    if (epoch === 1) base = tf.memory().numTensors;
    if (epoch > 1) assert.equal(tf.memory().numTensors, base, `numTensors after epoch ${epoch}`);
  }
  const acc = (await s.eval(bench.test)).accuracy;
  assert.ok(losses[4] < 0.2 * losses[0], `loss goes down: ${losses.map((l) => l.toFixed(3))}`);
  assert.ok(acc >= 0.9, `test accuracy ${acc}`);
  // The tape-free step says why this model trains on the tape.
  const reasons = s.plan().reasons.join("; ");
  assert.equal(s.plan().step, "tape");
  assert.match(
    reasons,
    /features are a ResNetBackbone, not a Sequential of linear layers.*batch norms/,
  );
  s.dispose();
  model.dispose();
});

Deno.test("A ResNet run resumed from a checkpoint ends with the same weights and batch-norm statistics", async () => {
  const train = cifarLike(32, 4, 21), test = cifarLike(16, 4, 22);
  const bench = classIncremental({ train, test, experiences: 2, fixedClassOrder: [0, 1, 2, 3] });
  const make = (seed: number) =>
    naive({
      model: slimResNet18({ nf: 2, outputs: 4, seed }),
      optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
      batchSize: 8,
      seed: 0,
    });
  const saved = await checkResume({ make, train: bench.train, test: bench.test });
  // The checkpoint file (safetensors) holds the same state.
  const { header, data } = await encodeCheckpoint(saved);
  const bytes = new Uint8Array(header.length + data.length);
  bytes.set(header);
  bytes.set(data, header.length);
  const [fromJson, fromFile] = [make(5), make(6)];
  await fromJson.restore(saved);
  await fromFile.restore((await decodeCheckpoint(bytes)).state);
  assert.deepEqual(fromFile.model.stateDict(), fromJson.model.stateDict());
  for (const s of [fromJson, fromFile]) {
    s.dispose();
    s.model.dispose();
  }
  const tensors = saved.model.tensors;
  assert.ok(
    "features.layer3.0.shortcut.1.runningVar" in tensors,
    "the checkpoint holds the running statistics",
  );
  assert.notDeepEqual(tensors["features.bn1.runningMean"].values, [0, 0], "they moved in training");
});

/** Records the model's mode in training and evaluation iterations and its running stats. */
function modeRecorder(model: Classifier) {
  const seen = { train: new Set<boolean>(), eval: new Set<boolean>(), stats: [] as number[] };
  const plugin: Plugin = {
    beforeForward: () => void seen.train.add(model.training),
    beforeEvalForward: () => void seen.eval.add(model.training),
    afterTrainingExp: () => void (seen.stats = runningStats(model)),
  };
  return { seen, plugin };
}

Deno.test("Train and eval modes: the template, EWC's importance pass and LwF's teacher leave running statistics alone outside training", async () => {
  const train = cifarLike(32, 4, 31), test = cifarLike(16, 4, 32);
  const bench = classIncremental({ train, test, experiences: 2, fixedClassOrder: [0, 1, 2, 3] });
  const model = slimResNet18({ nf: 2, outputs: 4, seed: 0 });
  const rec = modeRecorder(model);
  const lwf = new LwFPlugin(1, 2);
  // The recorder first: it sees the statistics before EWC's pass in afterTrainingExp.
  // The teacher's statistics at the end of each experience, before LwF replaces the teacher.
  let teacherAfter: number[] = [];
  const teacherRecorder: Plugin = {
    afterTrainingExp: () => {
      if (lwf.previousModel) teacherAfter = runningStats(lwf.previousModel as Classifier);
    },
  };
  const s = naive({
    model,
    batchSize: 8,
    seed: 0,
    plugins: [rec.plugin, teacherRecorder, new EWCPlugin(10), lwf],
  });
  await s.train(bench.train[0]);
  assert.deepEqual(runningStats(model), rec.seen.stats, "EWC's importance pass runs in eval mode");
  const before = runningStats(model);
  await s.eval(bench.test);
  assert.deepEqual(runningStats(model), before, "evaluation does not move the running statistics");
  const teacher = lwf.previousModel as Classifier;
  assert.equal(teacher.training, false, "LwF's teacher is in eval mode");
  const teacherStats = runningStats(teacher);
  assert.deepEqual(teacherStats, before, "the teacher holds the trained statistics");
  await s.train(bench.train[1]);
  assert.deepEqual(
    teacherAfter,
    teacherStats,
    "training does not move the teacher's statistics",
  );
  assert.notDeepEqual(runningStats(model), before, "training moves the model's");
  assert.deepEqual([...rec.seen.train], [true], "training forwards in train mode");
  assert.deepEqual([...rec.seen.eval], [false], "evaluation forwards in eval mode");
  s.dispose();
  model.dispose();
});

Deno.test("CWR* with a ResNet: the frozen backbone stays in eval mode, its running statistics do not move", async () => {
  const train = cifarLike(32, 4, 41), test = cifarLike(16, 4, 42);
  const bench = classIncremental({ train, test, experiences: 2, fixedClassOrder: [0, 1, 2, 3] });
  const model = slimResNet18({ nf: 2, outputs: 4, seed: 0 });
  const s = cwrStar({ model, cwrLayerName: "classifier", batchSize: 8, seed: 0 });
  const initial = runningStats(model);
  await s.train(bench.train[0]);
  const before = runningStats(model);
  assert.notDeepEqual(before, initial, "the first experience trains everything");
  await s.train(bench.train[1]);
  assert.deepEqual(runningStats(model), before, "frozen after the first experience, as Avalanche");
  s.dispose();
  model.dispose();
});

Deno.test("BatchNorm2d inside a BasicBlock: gradients reach every trainable parameter, never the running statistics", () => {
  const block = new BasicBlock(3, 6, { stride: 2, seed: 1 });
  const x = tf.tensor4d(values(4 * 6 * 6 * 3, 9), [4, 6, 6, 3]);
  const params = [...block.trainableParameters().values()];
  assert.equal(params.length, 9, "3 convolutions and 3 batch norms' weights and biases");
  const { value, grads } = tf.variableGrads(
    () => tf.sum(tf.square(block.forward(x))) as tf.Scalar,
    params,
  );
  for (const p of params) {
    assert.ok(tf.tidy(() => tf.sum(tf.abs(grads[p.name])).dataSync()[0]) > 0, p.name);
  }
  for (const m of block.namedModules().values()) {
    if (m instanceof BatchNorm2d) assert.equal(m.runningMean.trainable, false);
  }
  tf.dispose([value, x, ...Object.values(grads)]);
  block.dispose();
  const backbone = new ResNetBackbone({
    input: [8, 8, 1],
    stem: 2,
    stages: [{ planes: 4, blocks: 1, stride: 2 }],
    shortcut: "pad",
    pool: 4,
    seed: 0,
  });
  assert.equal(backbone.featureSize, 4);
  backbone.dispose();
});
