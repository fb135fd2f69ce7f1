// Periodic checkpoints and resuming a run in the middle of an experience (the template side of
// checkpoint files): a run resumed from any of its checkpoints ends with the numbers of a run
// never interrupted, with plugins whose experience start matters (replay's loader, SI's anchors).
import { setBackend } from "../lib/backend.ts";
await setBackend("wasm");

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { mlp } from "../lib/models/mlp.ts";
import { sgd } from "../lib/optim/optimizers.ts";
import { replayPlugin } from "../lib/plugins/replay.ts";
import { synapticIntelligence } from "../lib/plugins/synaptic_intelligence.ts";
import type { CheckpointPoint, Strategy, StrategyState } from "../lib/strategy/template.ts";
import { toyBenchmark } from "./_helpers.ts";

const bench = toyBenchmark({ n: 120, classes: 6, experiences: 3 });

function build(): { strategy: Strategy; dispose(): void } {
  const model = mlp({ input: 64, hidden: [12], outputs: 6, seed: 5 });
  const strategy = synapticIntelligence({
    model,
    lambda: 2,
    optimizer: sgd({ lr: 0.05, momentum: 0.9 }),
    batchSize: 16,
    epochs: 3,
    seed: 7,
    evalEvery: 1,
    plugins: [replayPlugin({ memSize: 20, batchSizeMem: 8 })],
  });
  return {
    strategy,
    dispose() {
      strategy.dispose();
      model.dispose();
    },
  };
}

/** Trains the stream from experience `from` on (resuming `state`), evaluating after each. */
async function finish(s: Strategy, from: number, state?: StrategyState, save?: typeof saves) {
  for (const [k, exp] of bench.train.entries()) {
    if (k < from) continue;
    await s.train(exp, {
      evalStreams: [bench.test],
      resume: k === from ? state : undefined,
      checkpoint: save && { everyEpochs: 1, save: (st, at) => void save.push({ st, at }) },
    });
  }
  const weights = [...s.model.namedParameters().values()].map((v) => Array.from(v.dataSync()));
  return { weights, rows: JSON.stringify(s.rows) };
}

const saves: { st: StrategyState; at: CheckpointPoint }[] = [];

Deno.test("a run resumed from any periodic checkpoint ends as the uninterrupted run", async () => {
  const before = tf.memory().numTensors;
  const full = build();
  const want = await finish(full.strategy, 0, undefined, saves);
  full.dispose();
  // 3 experiences of 3 epochs: after epochs 1 and 2 (mid-experience), then at the end of each.
  assert.deepEqual(
    saves.map(({ at }) => `${at.experience}:${at.epochsDone}${at.midExperience ? "m" : ""}`),
    ["0:1m", "0:2m", "0:3", "1:1m", "1:2m", "1:3", "2:1m", "2:2m", "2:3"],
  );
  assert.ok(saves[1].st.position && !saves[2].st.position);
  for (const { st, at } of saves.slice(0, -1)) {
    const again = build();
    // Through JSON, as a file would hold it.
    const state = JSON.parse(JSON.stringify(st)) as StrategyState;
    const from = at.midExperience ? at.experience : at.experience + 1;
    const got = await finish(again.strategy, from, state);
    again.dispose();
    assert.deepEqual(got.weights, want.weights, `resumed after ${at.experience}:${at.epochsDone}`);
    assert.equal(got.rows, want.rows, `rows resumed after ${at.experience}:${at.epochsDone}`);
  }
  assert.equal(tf.memory().numTensors, before, "no tensor left behind");
});

Deno.test("resuming mid-experience on another experience is a clear error", async () => {
  const mid = saves.find((x) => x.at.midExperience && x.at.experience === 1)!;
  const s = build();
  await assert.rejects(
    () => s.strategy.train(bench.train[2], { resume: mid.st }),
    /taken during experience 1 of stream "train", but training resumes on experience 2/,
  );
  await assert.rejects(
    () => s.strategy.train(bench.train[0], { checkpoint: { everyEpochs: 0, save: () => {} } }),
    /checkpoint.everyEpochs must be an integer ≥ 1, got 0/,
  );
  s.dispose();
});
