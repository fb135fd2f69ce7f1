/**
 * One training engine per process: tfjs keeps a single stack of tensor scopes and one gradient
 * tape, so two loops interleaving their iterations (`Promise.all` over two strategies) would
 * close each other's scopes. Training and evaluation calls take this lock for their whole
 * duration: concurrent calls run one after the other, with the numbers they would have alone.
 * A call made from within the holder's own run (a plugin's hook training another strategy,
 * as generative replay trains its generator after each experience) runs at once, in the
 * holder's turn: its iterations nest between the holder's, never interleave with them.
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";

let tail: Promise<void> = Promise.resolve();
/** Marks the async context of the current holder. */
const holder = new AsyncLocalStorage<true>();

/** Runs `fn` once every earlier holder has finished (in the order the calls were made). */
export async function withEngine<R>(fn: () => Promise<R>): Promise<R> {
  if (holder.getStore()) return await fn();
  const before = tail;
  let release!: () => void;
  tail = new Promise<void>((r) => (release = r));
  try {
    await before;
    return await holder.run(true, fn);
  } finally {
    release();
  }
}
