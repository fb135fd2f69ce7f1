// Reliability of the core: non-finite numbers stop the run loudly, bad labels and inputs are
// refused, restore is all-or-nothing and says what differs, concurrent use is serialized or
// refused, a disposed strategy says so, and a model built before setup() says what to call.
import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { ArrayDataset } from "../lib/data/dataset.ts";
import { mlp } from "../lib/models/mlp.ts";
import { replay } from "../lib/plugins/replay.ts";
import { ewc } from "../lib/plugins/ewc.ts";
import { naive } from "../lib/strategy/strategies.ts";
import type { StrategyContext } from "../lib/strategy/context.ts";
import type { Strategy, StrategyState } from "../lib/strategy/template.ts";
import { toyBenchmark } from "./_helpers.ts";

const bench = toyBenchmark({ n: 60 });

function model() {
  return mlp({ input: 64, hidden: [8], outputs: 4, seed: 2 });
}

/** Everything a failed restore must leave as it was. */
function snapshot(s: Strategy): string {
  return JSON.stringify(s.checkpoint());
}

Deno.test("a diverged run stops with an error, then refuses train and eval until restored", async () => {
  const m = model();
  // A loss term that goes to NaN (as an exploding penalty would).
  const nan = {
    name: "nan",
    beforeBackward: (ctx: StrategyContext) => ctx.addLoss(tf.scalar(NaN)),
  };
  const s = naive({ model: m, batchSize: 10, seed: 0, epochs: 3, plugins: [nan] });
  const m2 = model();
  const sane = naive({ model: m2, batchSize: 10, seed: 0 });
  const good = sane.checkpoint();
  const goodForS = { ...good, plugins: {} };
  await assert.rejects(() => s.train(bench.train[0]), /Training loss became NaN in epoch 0/);
  await assert.rejects(
    () => s.eval(bench.test),
    /Naive cannot eval: its training loss became .* in epoch \d of experience 0\. Its weights are not usable: restore a checkpoint/,
  );
  await assert.rejects(() => s.train(bench.train[1]), /Naive cannot train/);
  await s.restore(goodForS);
  const r = await s.eval(bench.test);
  assert.ok(Number.isFinite(r.loss), "restored: evaluation works again");
  for (const x of [s, sane]) x.dispose();
  m.dispose();
  m2.dispose();
});

Deno.test("evaluation with non-finite outputs is an error naming the experience", async () => {
  const m = model();
  const s = naive({ model: m, seed: 0 });
  const w = m.namedParameters().get("classifier.weight")!;
  w.assign(tf.fill(w.shape, NaN));
  await assert.rejects(
    () => s.eval(bench.test[1]),
    /Evaluating experience 1 of stream "test" gave a NaN loss: the model's outputs are not finite/,
  );
  s.dispose();
  m.dispose();
});

Deno.test("datasets refuse non-integer, negative and NaN labels and non-finite float inputs", () => {
  const x = new Float32Array(4);
  assert.throws(
    () => new ArrayDataset({ x, y: [0, 3.7], inputShape: [2] }),
    /y\[1\] is 3.7: labels must be integers ≥ 0/,
  );
  assert.throws(() => new ArrayDataset({ x, y: [NaN, 0], inputShape: [2] }), /y\[0\] is NaN/);
  assert.throws(() => new ArrayDataset({ x, y: [-1, 0], inputShape: [2] }), /y\[0\] is -1/);
  assert.throws(
    () => new ArrayDataset({ x, y: [0, 1], taskLabels: [0, 0.5], inputShape: [2] }),
    /taskLabels\[1\] is 0.5/,
  );
  assert.throws(
    () => new ArrayDataset({ x: Float32Array.of(0, 1, NaN, 2), y: [0, 1], inputShape: [2] }),
    /x holds NaN at index 2 \(sample 1, feature 0\): inputs must be finite/,
  );
  assert.equal(new ArrayDataset({ x, y: [0, 1], inputShape: [2] }).length, 2);
});

Deno.test("restore checks the whole state first and changes nothing when it fails", async () => {
  const m = model();
  const s = naive({ model: m, batchSize: 10, seed: 0 });
  await s.train(bench.train[0]);
  const state = s.checkpoint();
  await s.train(bench.train[1]);
  const before = snapshot(s);
  const bad = (edit: (st: StrategyState) => void): StrategyState => {
    const st = JSON.parse(JSON.stringify(state)) as StrategyState;
    edit(st);
    return st;
  };
  const cases: [string, StrategyState, RegExp][] = [
    [
      "null weight",
      bad((st) => (st.model.tensors["features.0.weight"].values[3] = null as unknown as number)),
      /Parameter "features.0.weight" has null at index 3 where a finite number belongs \(JSON writes NaN as null\)/,
    ],
    [
      "string weight",
      bad((st) => (st.model.tensors["classifier.bias"].values[0] = "abc" as unknown as number)),
      /Parameter "classifier.bias" has "abc" at index 0/,
    ],
    [
      "missing model",
      bad((st) => delete (st as Partial<StrategyState>).model),
      /The checkpoint's "model" section is missing/,
    ],
    [
      "missing optimizer",
      bad((st) => delete (st as Partial<StrategyState>).optimizer),
      /The checkpoint's "optimizer" section is missing/,
    ],
    [
      "wrong name",
      bad((st) => (st.name = "EWC")),
      /taken from a "EWC" strategy, not "Naive"/,
    ],
    [
      "bad clock",
      bad((st) => (st.clock.epoch = -1)),
      /clock.epoch must be an integer ≥ 0, got -1/,
    ],
    [
      "wrongly shaped slot",
      bad((st) => {
        const slots = st.optimizer.slots["classifier.bias"];
        const name = Object.keys(slots)[0];
        slots[name] = { shape: [2], values: [0, 0] };
      }),
      /Optimizer slot \w+ of "classifier.bias" has shape \[4\] but the state has \[2\]/,
    ],
  ];
  for (const [what, st, message] of cases) {
    await assert.rejects(() => s.restore(st), message, what);
    assert.equal(snapshot(s), before, `${what}: nothing changed`);
  }
  // A failure past the checks (here: in a plugin's loadState) is rolled back too.
  const failing = {
    name: "fragile",
    state: () => ({ ok: true }),
    loadState: (x: unknown) => {
      if (!(x as { ok?: boolean }).ok) throw new Error("fragile: bad state");
    },
  };
  const m2 = model();
  const f = naive({ model: m2, batchSize: 10, seed: 0, plugins: [failing] });
  await f.train(bench.train[0]);
  const fs = f.checkpoint();
  await f.train(bench.train[1]);
  const fBefore = snapshot(f);
  const broken = { ...fs, plugins: { "0:fragile": { ok: false } } };
  await assert.rejects(() => f.restore(broken), /fragile: bad state/);
  assert.equal(
    snapshot(f),
    fBefore,
    "a plugin's failure leaves the weights and clock as they were",
  );
  await f.restore(fs);
  assert.deepEqual(f.clock, fs.clock);
  for (const x of [s, f]) x.dispose();
  m.dispose();
  m2.dispose();
});

Deno.test("restore says which plugins differ (replay into naive, naive into replay, EWC into replay) and in which mode", async () => {
  const m = model();
  const r = replay({ model: m, memSize: 10, batchSize: 10, seed: 0 });
  await r.train(bench.train[0]);
  const replayState = r.checkpoint();
  const n = naive({ model: m, seed: 0 });
  await assert.rejects(
    () => n.restore({ ...replayState, name: "Naive" }),
    /taken with the plugins ReplayPlugin; this strategy has none/,
  );
  await assert.rejects(
    () => r.restore({ ...n.checkpoint(), name: "Replay" }),
    /taken with the plugins none; this strategy has ReplayPlugin/,
  );
  const e = ewc({ model: m, lambda: 1, seed: 0 });
  await assert.rejects(
    () => r.restore({ ...e.checkpoint(), name: "Replay" }),
    /taken with the plugins EWCPlugin; this strategy has ReplayPlugin/,
  );
  // The same plugin in another mode: EWC separate into EWC online, and nothing changes.
  const online = ewc({ model: m, lambda: 1, mode: "online", decayFactor: 0.5, seed: 0 });
  const before = snapshot(online);
  await assert.rejects(
    () => online.restore(e.checkpoint()),
    /EWC state is in "separate" mode but this plugin is "online"/,
  );
  assert.equal(snapshot(online), before);
  for (const x of [r, n, e, online]) x.dispose();
  m.dispose();
});

Deno.test("strategies used concurrently run one after the other, with the numbers they have alone", async () => {
  const run = async (s: Strategy) => {
    for (const exp of bench.train) await s.train(exp);
    return (await s.eval(bench.test)).experiences.map((e) => e.accuracy);
  };
  const make = (seed: number) => {
    const m = mlp({ input: 64, hidden: [8], outputs: 4, seed });
    return { m, s: replay({ model: m, memSize: 10, batchSize: 10, seed }) };
  };
  const alone = [];
  for (const seed of [1, 2]) {
    const { m, s } = make(seed);
    alone.push(await run(s));
    s.dispose();
    m.dispose();
  }
  const before = tf.memory().numTensors;
  const pair = [make(1), make(2)];
  const together = await Promise.all(pair.map(({ s }) => run(s)));
  assert.deepEqual(together, alone);
  for (const { m, s } of pair) {
    s.dispose();
    m.dispose();
  }
  assert.equal(tf.memory().numTensors, before, "every scope closed, nothing left");
});

Deno.test("one strategy refuses overlapping calls, and a disposed one says so", async () => {
  const m = model();
  const s = naive({ model: m, batchSize: 10, seed: 0 });
  const first = s.train(bench.train[0]);
  await assert.rejects(
    () => s.train(bench.train[1]),
    /Naive.train\(\) was called while its train\(\) is still running: await the first call/,
  );
  await assert.rejects(() => s.eval(bench.test), /Naive.eval\(\) was called while its train\(\)/);
  await first;
  await s.eval(bench.test);
  s.dispose();
  s.dispose(); // twice is harmless
  await assert.rejects(() => s.train(bench.train[0]), /This Naive strategy was disposed/);
  assert.throws(() => s.checkpoint(), /was disposed/);
  m.dispose();
});

Deno.test("building a model before setup() says what to call", async () => {
  const script = `import { mlp } from "${new URL("../mod.ts", import.meta.url).href}";
try { mlp({ hidden: [4] }); console.log("built"); } catch (e) { console.log(e.message); }`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.match(text, /No backend is ready yet: run `await setup\(\)` once first/);
});
