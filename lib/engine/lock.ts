/**
 * One training engine per process: tfjs keeps a single stack of tensor scopes and one gradient
 * tape, so two loops interleaving their iterations (`Promise.all` over two strategies) would
 * close each other's scopes. Training and evaluation calls take this lock for their whole
 * duration: concurrent calls run one after the other, with the numbers they would have alone.
 *
 * @module
 */

let tail: Promise<void> = Promise.resolve();

/** Runs `fn` once every earlier holder has finished (in the order the calls were made). */
export async function withEngine<R>(fn: () => Promise<R>): Promise<R> {
  const before = tail;
  let release!: () => void;
  tail = new Promise<void>((r) => (release = r));
  try {
    await before;
    return await fn();
  } finally {
    release();
  }
}
