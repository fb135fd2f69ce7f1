// Tests of the reliability of datasets/: mirrors that stall, trickle or die mid-body, a
// download killed with SIGKILL (its temp file cleaned up by the next one), missing data
// folders, invalid mirror URLs, and re-compressed copies of the real files. Every server is
// Deno.serve on 127.0.0.1, port 0, started here; every wait is bounded.
// Run: deno test -A tests/downloads_test.ts

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import {
  clearDatasetMemo,
  DatasetError,
  DATASETS,
  downloadVerified,
  hashBytes,
  loadDataset,
  mirrorUrl,
} from "../datasets/mod.ts";
import {
  parseTempName,
  removeStaleTemps,
  STALE_TEMP_AGE_MS,
  tempPathFor,
} from "../datasets/_temp.ts";
import {
  assertDatasetError,
  FILES,
  HAS_FASHION,
  HAS_MNIST,
  listFiles,
  SHARED,
  withTempDir as withTempIn,
} from "./_datasets_fixtures.ts";

// ---------------------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------------------

const withTempDir = (fn: (dir: string) => Promise<void>) =>
  withTempIn(fn, "perennial_downloads_test_");

/** Random bytes, so that the download tests need no real data. */
function randomBlob(n: number): Uint8Array<ArrayBuffer> {
  const blob = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(blob.subarray(i, Math.min(i + 65536, n)));
  }
  return blob;
}

/** Resolves every `wait()` once opened: lets held responses end before the server shuts down. */
class Gate {
  #open = false;
  #waiters: (() => void)[] = [];
  wait(): Promise<void> {
    if (this.#open) return Promise.resolve();
    return new Promise((r) => this.#waiters.push(r));
  }
  open(): void {
    this.#open = true;
    for (const r of this.#waiters.splice(0)) r();
  }
}

/** Sleep `ms`, or less when `gate` opens first; leaves no timer behind. */
function pause(ms: number, gate: Gate): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    gate.wait().then(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

/**
 * Run `fn` against a real HTTP server on 127.0.0.1; `hits` records each request's path. The
 * handler gets a gate that opens when `fn` is done, so that a response held open (a stalled
 * mirror) ends and the server can shut down.
 */
async function withServer(
  handler: (path: string, gate: Gate) => Response | Promise<Response>,
  fn: (base: string, hits: string[]) => Promise<void>,
): Promise<void> {
  const hits: string[] = [];
  const gate = new Gate();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    hits.push(path);
    return handler(path, gate);
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, hits);
  } finally {
    gate.open();
    await server.shutdown();
  }
}

/** A body that sends the first `sent` bytes of `bytes`, then nothing until `gate` opens. */
function stallingBody(bytes: Uint8Array, sent: number, gate: Gate): ReadableStream<Uint8Array> {
  let first = true;
  return new ReadableStream({
    async pull(c) {
      if (first) {
        first = false;
        c.enqueue(bytes.slice(0, sent));
        return;
      }
      await gate.wait();
      c.close();
    },
  });
}

/** A body that sends `chunk` bytes of `bytes` every `everyMs`, never pausing long. */
function tricklingBody(
  bytes: Uint8Array,
  chunk: number,
  everyMs: number,
  gate: Gate,
): ReadableStream<Uint8Array> {
  let off = 0;
  let closed = false;
  return new ReadableStream({
    async pull(c) {
      if (off > 0) await pause(everyMs, gate);
      if (closed) return;
      if (off >= bytes.length) {
        closed = true;
        c.close();
        return;
      }
      c.enqueue(bytes.slice(off, off + chunk));
      off += chunk;
    },
    cancel() {
      closed = true;
    },
  });
}

/** A body that sends the first `sent` bytes, then breaks the connection. */
function dyingBody(bytes: Uint8Array, sent: number): ReadableStream<Uint8Array> {
  let first = true;
  return new ReadableStream({
    pull(c) {
      if (first) {
        first = false;
        c.enqueue(bytes.slice(0, sent));
      } else {
        // Erroring the stream makes Deno.serve drop the connection mid-body.
        c.error("test server: connection dropped mid-body on purpose");
      }
    },
  });
}

/** The temp files (`*.tmp`) in `dir`. */
async function tempFiles(dir: string): Promise<string[]> {
  return (await listFiles(dir)).filter((f) => f.endsWith(".tmp"));
}

const BLOB = randomBlob(300_000);
const BLOB_SHA = hashBytes(BLOB, "sha256");

// ---------------------------------------------------------------------------------------
// Mirrors that stall, trickle or die
// ---------------------------------------------------------------------------------------

Deno.test("download: a mirror that stalls mid-body is given up after readTimeoutMs; the next one is used", async () => {
  await withServer((path, gate) => {
    if (path.startsWith("/stall/")) {
      return new Response(stallingBody(BLOB, 65536, gate), {
        headers: { "content-length": String(BLOB.length) },
      });
    }
    if (path.startsWith("/silent/")) return gate.wait().then(() => new Response("late"));
    return new Response(BLOB);
  }, async (base, hits) => {
    await withTempDir(async (tmp) => {
      const dest = join(tmp, "cache", "blob.bin");
      const t0 = performance.now();
      const got = await downloadVerified(
        [`${base}/stall/blob.bin`, `${base}/ok/blob.bin`],
        dest,
        { expect: { sha256: BLOB_SHA, bytes: BLOB.length }, readTimeoutMs: 250 },
      );
      const elapsed = performance.now() - t0;
      assert.equal(got.url, `${base}/ok/blob.bin`);
      assert.deepEqual(await Deno.readFile(dest), BLOB);
      assert.deepEqual(hits, ["/stall/blob.bin", "/ok/blob.bin"]);
      assert.ok(elapsed < 10_000, `the stalled mirror held the download for ${elapsed} ms`);

      // Every mirror stalling (one mid-body, one before answering): each is listed with its
      // reason, and nothing is left behind.
      const dest2 = join(tmp, "cache", "other.bin");
      const err = await assertDatasetError(
        downloadVerified([`${base}/stall/other.bin`, `${base}/silent/other.bin`], dest2, {
          expect: { sha256: BLOB_SHA },
          readTimeoutMs: 200,
        }),
        "stalled",
        `${base}/stall/other.bin: stalled after 65536 of 300000 bytes: no data for 200 ms`,
        `${base}/silent/other.bin: stalled waiting for a response`,
        "readTimeoutMs = 200",
        "raise readTimeoutMs / timeoutMs",
      );
      assert.doesNotMatch(err.message, /truncated/);
      assert.deepEqual(await listFiles(join(tmp, "cache")), ["blob.bin"]);
    });
  });
});

Deno.test({
  name: "loadDataset: readTimeoutMs reaches the downloads; a stalled mirror falls back to the next",
  ignore: !HAS_MNIST,
  async fn() {
    await withServer(async (path, gate) => {
      const file = path.split("/").pop() ?? "";
      if (!FILES.includes(file)) return new Response("not found", { status: 404 });
      const bytes = await Deno.readFile(join(SHARED, "mnist", file));
      if (path.startsWith("/stall/")) {
        return new Response(stallingBody(bytes, Math.min(1024, bytes.length - 1), gate));
      }
      return new Response(bytes);
    }, async (base, hits) => {
      await withTempDir(async (tmp) => {
        const dataDir = join(tmp, "data");
        await Deno.mkdir(dataDir);
        const cacheDir = join(tmp, "cache");
        const t0 = performance.now();
        const ds = await loadDataset("mnist", {
          dataDir,
          cacheDir,
          mirrors: [`${base}/stall/`, `${base}/ok/`],
          readTimeoutMs: 200,
        });
        assert.ok(performance.now() - t0 < 20_000);
        assert.equal(ds.test.labels[0], 7);
        assert.deepEqual(hits, FILES.flatMap((f) => [`/stall/${f}`, `/ok/${f}`]));
        assert.deepEqual(await listFiles(cacheDir), FILES.map((f) => join("mnist", f)).sort());
      });
    });
  },
});

Deno.test("download: timeoutMs bounds the whole download; mirrors left are not tried", async () => {
  await withServer((path, gate) => {
    if (path.startsWith("/trickle/")) {
      return new Response(tricklingBody(BLOB, 1000, 20, gate), {
        headers: { "content-length": String(BLOB.length) },
      });
    }
    return new Response(BLOB);
  }, async (base, hits) => {
    await withTempDir(async (tmp) => {
      const dest = join(tmp, "blob.bin");
      const t0 = performance.now();
      // The trickle never pauses for readTimeoutMs, so only the overall limit stops it.
      await assertDatasetError(
        downloadVerified([`${base}/trickle/blob.bin`, `${base}/ok/blob.bin`], dest, {
          expect: { sha256: BLOB_SHA },
          readTimeoutMs: 5000,
          timeoutMs: 400,
        }),
        "timeout",
        new RegExp(
          `${base}/trickle/blob\\.bin: gave up after \\d+ of 300000 bytes: the download's time ` +
            `limit ran out \\(timeoutMs = 400\\)`,
        ),
        `${base}/ok/blob.bin: not tried: the download's time limit (timeoutMs = 400) ran out`,
      );
      assert.ok(performance.now() - t0 < 10_000);
      assert.deepEqual(hits, ["/trickle/blob.bin"]);
      assert.deepEqual(await listFiles(tmp), []);
    });
  });
});

Deno.test("download: a mirror that dies mid-body is reported and the next one is used", async () => {
  await withServer((path) => {
    if (path.startsWith("/die/")) return new Response(dyingBody(BLOB, 65536));
    return new Response(BLOB);
  }, async (base, hits) => {
    await withTempDir(async (tmp) => {
      const dest = join(tmp, "blob.bin");
      const got = await downloadVerified(
        [`${base}/die/blob.bin`, `${base}/ok/blob.bin`],
        dest,
        { expect: { sha256: BLOB_SHA } },
      );
      assert.equal(got.url, `${base}/ok/blob.bin`);
      assert.deepEqual(await Deno.readFile(dest), BLOB);
      assert.deepEqual(hits, ["/die/blob.bin", "/ok/blob.bin"]);
      await assertDatasetError(
        downloadVerified([`${base}/die/x.bin`], join(tmp, "x.bin"), {
          expect: { sha256: BLOB_SHA },
        }),
        "truncated",
        `${base}/die/x.bin: download of x.bin broke off after 65536 bytes`,
      );
      assert.deepEqual(await listFiles(tmp), ["blob.bin"]);
    });
  });
});

Deno.test("download options: bad time limits are errors naming the value", async () => {
  await withServer(() => new Response(BLOB), async (base, hits) => {
    await withTempDir(async (tmp) => {
      for (const [opt, value] of [["readTimeoutMs", 0], ["timeoutMs", -5], ["timeoutMs", NaN]]) {
        await assertDatasetError(
          downloadVerified([`${base}/x`], join(tmp, "x"), { [opt]: value }),
          "invalid-argument",
          `${opt} must be a positive number of milliseconds`,
          `got ${value}`,
        );
        await assertDatasetError(
          loadDataset("mnist", { dataDir: tmp, cacheDir: tmp, mirrors: [base], [opt]: value }),
          "invalid-argument",
          `${opt} must be a positive number of milliseconds`,
        );
      }
      assert.deepEqual(hits, []);
      assert.deepEqual(await listFiles(tmp), []);
    });
  });
});

// ---------------------------------------------------------------------------------------
// Temp files of dead processes
// ---------------------------------------------------------------------------------------

Deno.test("temp files: named after host and pid; stale ones go, a live process's stay", async () => {
  await withTempDir(async (tmp) => {
    const dest = join(tmp, "a.gz");
    const mine = tempPathFor(dest);
    const name = mine.slice(tmp.length + 1);
    assert.match(name, new RegExp(`^a\\.gz\\.[A-Za-z0-9_-]+\\.${Deno.pid}\\.[0-9a-f]{8}\\.tmp$`));
    assert.equal(parseTempName(dest, name)?.pid, Deno.pid);
    assert.equal(parseTempName(dest, "a.gz.0123456789abcdef.tmp")?.pid, undefined);
    assert.equal(parseTempName(dest, "b.gz.host.1.ab.tmp"), undefined);
    assert.equal(parseTempName(dest, "a.gz"), undefined);

    const host = parseTempName(dest, name)!.host!;
    // A process that is surely gone: one we started and waited for.
    const done = await new Deno.Command(Deno.execPath(), { args: ["eval", "0"] }).spawn();
    await done.status;
    const deadPid = done.pid;
    const files = {
      dead: join(tmp, `a.gz.${host}.${deadPid}.00000001.tmp`),
      parent: join(tmp, `a.gz.${host}.${Deno.ppid}.00000002.tmp`), // alive: runs this test
      self: join(tmp, `a.gz.${host}.${Deno.pid}.00000003.tmp`),
      otherHost: join(tmp, `a.gz.elsewhere.${deadPid}.00000004.tmp`),
      otherHostOld: join(tmp, `a.gz.elsewhere.${deadPid}.00000005.tmp`),
      legacy: join(tmp, "a.gz.0123456789abcdef.tmp"),
      legacyOld: join(tmp, "a.gz.fedcba9876543210.tmp"),
      otherFile: join(tmp, `b.gz.${host}.${deadPid}.00000006.tmp`),
    };
    for (const p of Object.values(files)) await Deno.writeFile(p, new Uint8Array([1]));
    const old = new Date(Date.now() - STALE_TEMP_AGE_MS - 60_000);
    await Deno.utime(files.otherHostOld, old, old);
    await Deno.utime(files.legacyOld, old, old);
    await Deno.utime(files.parent, old, old); // a live process's file stays, however old
    const removed = (await removeStaleTemps(dest)).sort();
    assert.deepEqual(removed, [files.dead, files.otherHostOld, files.legacyOld].sort());
    for (const p of [files.parent, files.self, files.otherHost, files.legacy, files.otherFile]) {
      assert.ok(existsSync(p), `${p} must stay`);
    }
  });
});

Deno.test("temp files: a live process's fresh temp file survives another download of the same file", async () => {
  await withServer(() => new Response(BLOB), async (base) => {
    await withTempDir(async (tmp) => {
      const dest = join(tmp, "blob.bin");
      const host = parseTempName(dest, tempPathFor(dest).slice(tmp.length + 1))!.host!;
      const live = join(tmp, `blob.bin.${host}.${Deno.ppid}.0000000a.tmp`);
      await Deno.writeFile(live, new Uint8Array([1, 2, 3]));
      await downloadVerified([`${base}/blob.bin`], dest, { expect: { sha256: BLOB_SHA } });
      assert.deepEqual(await Deno.readFile(dest), BLOB);
      assert.deepEqual(await Deno.readFile(live), new Uint8Array([1, 2, 3]));
    });
  });
});

Deno.test("temp files: a download killed with SIGKILL leaves a temp file that the next one removes", async () => {
  await withServer((path, gate) => {
    if (path.startsWith("/slow/")) {
      // Part of the body, then nothing: the child is killed while its temp file exists.
      return new Response(stallingBody(BLOB, 65536, gate), {
        headers: { "content-length": String(BLOB.length) },
      });
    }
    return new Response(BLOB);
  }, async (base, hits) => {
    await withTempDir(async (tmp) => {
      const cache = join(tmp, "cache");
      const dest = join(cache, "blob.bin");
      const script = join(tmp, "download.ts");
      const mod = new URL("../datasets/mod.ts", import.meta.url).href;
      await Deno.writeTextFile(
        script,
        `import { downloadVerified } from ${JSON.stringify(mod)};\n` +
          `await downloadVerified([Deno.args[0]], Deno.args[1], { readTimeoutMs: 120000 });\n`,
      );
      const child = new Deno.Command(Deno.execPath(), {
        // Outside the repository and without its config: a bare download, nothing installed.
        cwd: tmp,
        args: [
          "run",
          "--no-config",
          "--no-prompt",
          "--allow-net=127.0.0.1",
          `--allow-read=${tmp}`,
          `--allow-write=${tmp}`,
          "--allow-sys=hostname",
          script,
          `${base}/slow/blob.bin`,
          dest,
        ],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let stale: string[] = [];
      try {
        // Wait (bounded) for the child's temp file to hold the bytes it was sent.
        for (let i = 0; i < 600 && stale.length === 0; i++) {
          await new Promise((r) => setTimeout(r, 50));
          const found = await tempFiles(cache);
          const sizes = await Promise.all(
            found.map(async (f) => (await Deno.stat(join(cache, f))).size),
          );
          if (found.length === 1 && sizes[0] === 65536) stale = found;
        }
      } finally {
        child.kill("SIGKILL");
      }
      const [status, stderr] = await Promise.all([
        child.status,
        new Response(child.stderr).text(),
      ]);
      assert.equal(stale.length, 1, `the child's temp file never appeared; its stderr:\n${stderr}`);
      assert.equal(status.signal, "SIGKILL");
      assert.equal(parseTempName(dest, stale[0])?.pid, child.pid);
      assert.deepEqual(await tempFiles(cache), stale, "a killed download leaves its temp file");

      const got = await downloadVerified([`${base}/ok/blob.bin`], dest, {
        expect: { sha256: BLOB_SHA, bytes: BLOB.length },
      });
      assert.equal(got.bytes, BLOB.length);
      assert.deepEqual(await Deno.readFile(dest), BLOB);
      assert.deepEqual(await listFiles(cache), ["blob.bin"], "no stale temp file remains");
      assert.deepEqual(hits, ["/slow/blob.bin", "/ok/blob.bin"]);
    });
  });
});

Deno.test("temp files: without --allow-run a dead writer cannot be told, so only age removes its file", async () => {
  await withTempDir(async (tmp) => {
    const dest = join(tmp, "a.gz");
    const host = parseTempName(dest, tempPathFor(dest).slice(tmp.length + 1))!.host!;
    const done = await new Deno.Command(Deno.execPath(), { args: ["eval", "0"] }).spawn();
    await done.status;
    const fresh = join(tmp, `a.gz.${host}.${done.pid}.00000001.tmp`);
    const old = join(tmp, `a.gz.${host}.${done.pid}.00000002.tmp`);
    for (const p of [fresh, old]) await Deno.writeFile(p, new Uint8Array([1]));
    const past = new Date(Date.now() - STALE_TEMP_AGE_MS - 60_000);
    await Deno.utime(old, past, past);
    const script = join(tmp, "clean.ts");
    const mod = new URL("../datasets/_temp.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { removeStaleTemps } from ${JSON.stringify(mod)};\n` +
        `console.log(JSON.stringify(await removeStaleTemps(Deno.args[0])));\n`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      cwd: tmp,
      // --no-prompt: a permission prompt would hang here, and housekeeping must never ask.
      args: [
        "run",
        "--no-config",
        "--no-prompt",
        `--allow-read=${tmp}`,
        `--allow-write=${tmp}`,
        "--allow-sys=hostname",
        script,
        dest,
      ],
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), [old]);
    assert.ok(existsSync(fresh), "a writer that may be alive keeps its fresh file");
  });
});

// ---------------------------------------------------------------------------------------
// Data folders and mirror URLs
// ---------------------------------------------------------------------------------------

Deno.test("loadDataset: a data dir that does not exist is an error naming it, not a download", async () => {
  await withServer(() => new Response("never asked", { status: 500 }), async (base, hits) => {
    await withTempDir(async (tmp) => {
      const missing = join(tmp, "no-such-folder");
      const cacheDir = join(tmp, "cache");
      for (const download of [true, false]) {
        await assertDatasetError(
          loadDataset("mnist", { dataDir: missing, cacheDir, mirrors: [base], download }),
          "invalid-argument",
          `dataDir ${missing} does not exist`,
          "create it and put the MNIST files in it, correct the path",
          "or leave dataDir out to use the cache and download",
        );
      }
      await Deno.writeTextFile(join(tmp, "a-file"), "x");
      await assertDatasetError(
        loadDataset("kmnist", { dataDir: join(tmp, "a-file"), cacheDir, mirrors: [base] }),
        "invalid-argument",
        `dataDir ${join(tmp, "a-file")} is a file, not a folder`,
      );

      const saved = Deno.env.get("PERENNIAL_DATA");
      try {
        Deno.env.set("PERENNIAL_DATA", missing);
        await assertDatasetError(
          loadDataset("fashion-mnist", { cacheDir, mirrors: [base] }),
          "invalid-argument",
          `PERENNIAL_DATA (${missing}) does not exist`,
          "or unset PERENNIAL_DATA to use the cache and download",
        );
      } finally {
        if (saved === undefined) Deno.env.delete("PERENNIAL_DATA");
        else Deno.env.set("PERENNIAL_DATA", saved);
      }
      assert.deepEqual(hits, [], "nothing was downloaded instead");
      assert.deepEqual(await listFiles(tmp), ["a-file"]);
    });
  });
});

Deno.test("mirrors: invalid URLs are errors naming the URL, raised before any request", async () => {
  await withServer(() => new Response("never asked", { status: 500 }), async (base, hits) => {
    await withTempDir(async (tmp) => {
      const opts = { dataDir: tmp, cacheDir: join(tmp, "cache") };
      const err = await assertDatasetError(
        loadDataset("mnist", { ...opts, mirrors: [`${base}/ok/`, "not a url"] }),
        "invalid-argument",
        `MNIST mirror "not a url" is not a valid URL`,
        `pass an absolute http:// or https:// URL, such as "https://`,
      );
      assert.ok(!(err instanceof TypeError));
      await assertDatasetError(
        loadDataset("mnist", { ...opts, mirrors: ["ftp://example.org/mnist/"] }),
        "invalid-argument",
        `MNIST mirror "ftp://example.org/mnist/" uses ftp:`,
        "pass dataDir instead",
      );
      await assertDatasetError(
        loadDataset("mnist", { ...opts, mirrors: `${base}/ok/` as unknown as string[] }),
        "invalid-argument",
        `mirrors must be a list of base URLs`,
        `got "${base}/ok/"`,
      );
      await assertDatasetError(
        downloadVerified([`${base}/x.bin`, "/relative/x.bin"], join(tmp, "x.bin")),
        "invalid-argument",
        `download URL for x.bin "/relative/x.bin" is not a valid URL`,
      );
      assert.throws(
        () => mirrorUrl("nope", "x.gz"),
        (e: unknown) =>
          e instanceof DatasetError && /mirror "nope" is not a valid URL/.test(e.message),
      );
      assert.deepEqual(hits, []);
      assert.deepEqual(await listFiles(tmp), []);
    });
  });
});

// ---------------------------------------------------------------------------------------
// Re-compressed copies
// ---------------------------------------------------------------------------------------

Deno.test({
  name: "the registry's raw checksums match the decompressed shared files",
  ignore: !HAS_MNIST || !HAS_FASHION,
  async fn() {
    for (const name of ["mnist", "fashion-mnist"]) {
      for (const f of DATASETS[name].files) {
        const raw = gunzipSync(await Deno.readFile(join(SHARED, name, f.file)));
        assert.equal(raw.length, f.raw?.bytes, `${name}/${f.file}`);
        assert.equal(raw.length, 4 + 4 * f.dims.length + f.dims.reduce((a, b) => a * b));
        assert.equal(hashBytes(raw, "sha256"), f.raw?.sha256, `${name}/${f.file}`);
        assert.equal(hashBytes(raw, "md5"), f.raw?.md5, `${name}/${f.file}`);
      }
    }
    for (const f of DATASETS.kmnist.files) assert.match(f.raw?.md5 ?? "", /^[0-9a-f]{32}$/);
  },
});

/** gzip through the web's CompressionStream (another encoder, another header than zlib's). */
async function webGzip(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test({
  name:
    "loadDataset: a re-gzipped valid file is accepted; other content is named, never 'truncated'",
  ignore: !HAS_MNIST,
  async fn() {
    await withTempDir(async (tmp) => {
      const dataDir = join(tmp, "data");
      const cacheDir = join(tmp, "cache");
      await Deno.mkdir(join(dataDir, "mnist"), { recursive: true });
      for (const f of FILES) {
        await Deno.copyFile(join(SHARED, "mnist", f), join(dataDir, "mnist", f));
      }
      const opts = { dataDir, cacheDir, download: false };
      const original = await loadDataset("mnist", opts);
      // Options are checked even when the dataset is memoized.
      await assertDatasetError(
        loadDataset("mnist", { ...opts, mirrors: ["not a url"] }),
        "invalid-argument",
        `MNIST mirror "not a url" is not a valid URL`,
      );
      const imagesPath = join(dataDir, "mnist", FILES[2]);
      const labelsPath = join(dataDir, "mnist", FILES[3]);
      const gz = await Deno.readFile(imagesPath);
      const raw = gunzipSync(gz);

      // Same content, other gzip bytes: zlib at level 1, and CompressionStream.
      const level1 = gzipSync(raw, { level: 1 });
      const web = await webGzip(Uint8Array.from(raw));
      for (const again of [level1, web]) {
        assert.notEqual(hashBytes(again, "sha256"), DATASETS.mnist.files[2].sha256);
        await Deno.writeFile(imagesPath, again);
        clearDatasetMemo();
        const ds = await loadDataset("mnist", opts);
        assert.deepEqual(ds.test.images, original.test.images);
        assert.deepEqual(ds.test.labels, original.test.labels);
      }

      // Complete gzip, other content (one pixel changed): says so, never "truncated".
      const changed = Uint8Array.from(raw);
      changed[5000] ^= 0x01;
      await Deno.writeFile(imagesPath, gzipSync(changed, { level: 9 }));
      clearDatasetMemo();
      let err = await assertDatasetError(
        loadDataset("mnist", opts),
        "checksum",
        `MNIST file ${imagesPath}: size mismatch: expected 1648877 bytes`,
        "it is a complete gzip file, but its content differs from MNIST's (not just re-compressed)",
        `decompressed sha256 ${hashBytes(changed, "sha256")}`,
        `the original's ${DATASETS.mnist.files[2].raw?.sha256}`,
        "Replace it with a good copy",
      );
      assert.doesNotMatch(err.message, /truncat/);

      // Complete gzip of another file (the labels under the images name): dims are named.
      await Deno.writeFile(imagesPath, gzipSync(gunzipSync(await Deno.readFile(labelsPath))));
      err = await assertDatasetError(
        loadDataset("mnist", opts),
        "size",
        "it is a complete gzip file, but its content differs",
        "decompressed it is 10008 bytes, IDX dims 10000; the original is 7840016 bytes, " +
          "IDX dims 10000x28x28",
      );
      assert.doesNotMatch(err.message, /truncat/);

      // A cut copy is called truncated, because it is.
      await Deno.writeFile(imagesPath, gz.subarray(0, 100_000));
      await assertDatasetError(
        loadDataset("mnist", opts),
        "size",
        `MNIST file ${imagesPath}: size mismatch: expected 1648877 bytes, got 100000`,
        "the gzip data stops short: the file is truncated",
      );

      // A re-gzipped copy in the cache is accepted too (download off: nothing to fetch).
      await Deno.remove(imagesPath);
      await Deno.mkdir(join(cacheDir, "mnist"), { recursive: true });
      await Deno.writeFile(join(cacheDir, "mnist", FILES[2]), web);
      clearDatasetMemo();
      const fromCache = await loadDataset("mnist", opts);
      assert.deepEqual(fromCache.test.images, original.test.images);

      // A decompressed file with the right header but changed pixels is caught by its checksum.
      await Deno.remove(join(cacheDir, "mnist", FILES[2]));
      const rawPath = join(dataDir, "mnist", FILES[2].replace(/\.gz$/, ""));
      await Deno.writeFile(rawPath, changed);
      clearDatasetMemo();
      await assertDatasetError(
        loadDataset("mnist", opts),
        "checksum",
        `MNIST file ${rawPath} (decompressed): sha256 checksum mismatch`,
        "Its IDX header is right, but its content differs from the original.",
      );
    });
  },
});
