// Tests of datasets/: IDX parsing, registry, checksums, synthetic data, loading real MNIST /
// Fashion-MNIST from ../shared/datasets, and verified downloads from local HTTP servers.
// Run: deno test -A tests/datasets_test.ts

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import {
  clearDatasetMemo,
  DatasetError,
  DATASETS,
  defaultCacheDir,
  downloadVerified,
  hashBytes,
  type ImageSplit,
  loadDataset,
  mirrorUrl,
  parseIdx,
  readIdxHeader,
  resolveDataDir,
  syntheticImages,
  verifyBytes,
} from "../datasets/mod.ts";
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
  withTempIn(fn, "perennial_datasets_test_");

if (!HAS_MNIST) {
  console.warn(`datasets_test: ${SHARED}/mnist missing: skipping tests that need real MNIST`);
}
if (!HAS_FASHION) {
  console.warn(
    `datasets_test: ${SHARED}/fashion-mnist missing: skipping the real Fashion-MNIST test`,
  );
}

/** Build unsigned-byte IDX bytes from dims and data. */
function makeIdx(dims: number[], data: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  out.set([0, 0, 0x08, dims.length]);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

/** Create `path` as an empty folder: a data dir that exists but holds nothing. */
async function emptyDir(path: string): Promise<string> {
  await Deno.mkdir(path, { recursive: true });
  return path;
}

/** Run `fn` against a real HTTP server on 127.0.0.1; `hits` records each request's path. */
async function withServer(
  handler: (path: string) => Response | Promise<Response>,
  fn: (base: string, hits: string[]) => Promise<void>,
): Promise<void> {
  const hits: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    hits.push(path);
    return handler(path);
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, hits);
  } finally {
    await server.shutdown();
  }
}

/** Handler serving the real files of `shared/datasets/<name>/` under `/ok/`, 404 elsewhere. */
function serveShared(name: string): (path: string) => Promise<Response> {
  return async (path) => {
    const file = path.split("/").pop() ?? "";
    if (!path.startsWith("/ok/") || !FILES.includes(file)) {
      return new Response("not found", { status: 404 });
    }
    return new Response(await Deno.readFile(join(SHARED, name, file)));
  };
}

/** A port on 127.0.0.1 with nothing listening (connections are refused). */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function histogram(labels: Uint8Array, classes: number): number[] {
  const h = new Array<number>(classes).fill(0);
  for (const l of labels) h[l]++;
  return h;
}

function assertSplit(s: ImageSplit, n: number, rows: number, cols: number): void {
  assert.equal(s.n, n);
  assert.equal(s.rows, rows);
  assert.equal(s.cols, cols);
  assert.equal(s.images.length, n * rows * cols);
  assert.equal(s.labels.length, n);
}

const MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];
const mnistFile = (f: string) => DATASETS.mnist.files.find((x) => x.file === f)!;

// ---------------------------------------------------------------------------------------
// IDX
// ---------------------------------------------------------------------------------------

Deno.test("parseIdx reads hand-made idx3 and idx1 buffers", () => {
  const pixels = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
  const idx3 = parseIdx(makeIdx([2, 2, 3], pixels));
  assert.deepEqual(idx3.dims, [2, 2, 3]);
  assert.deepEqual([...idx3.data], pixels);

  const idx1 = parseIdx(makeIdx([4], [9, 0, 255, 7]));
  assert.deepEqual(idx1.dims, [4]);
  assert.deepEqual([...idx1.data], [9, 0, 255, 7]);

  // big-endian sizes above 255, and an empty dataset
  const big = parseIdx(makeIdx([300], new Uint8Array(300).fill(3)));
  assert.deepEqual(big.dims, [300]);
  assert.equal(big.data.length, 300);
  assert.deepEqual(parseIdx(makeIdx([0, 28, 28], [])).dims, [0, 28, 28]);

  // works on a view with a byteOffset
  const padded = new Uint8Array(5 + 12);
  padded.set(makeIdx([2], [42, 43]), 5);
  assert.deepEqual([...parseIdx(padded.subarray(5, 15)).data], [42, 43]);

  assert.deepEqual(readIdxHeader(makeIdx([60000, 28, 28], []).subarray(0, 16)), {
    dims: [60000, 28, 28],
    headerBytes: 16,
    dataBytes: 47040000,
  });
});

Deno.test("parseIdx rejects bad magic, wrong type, truncated data and trailing bytes", () => {
  const good = makeIdx([2, 3], [1, 2, 3, 4, 5, 6]);
  const throwsWith = (bytes: Uint8Array, code: string, re: RegExp) =>
    assert.throws(() => parseIdx(bytes), (e: unknown) => {
      assert.ok(e instanceof DatasetError);
      assert.equal(e.code, code);
      assert.match(e.message, re);
      return true;
    });

  const badMagic = good.slice();
  badMagic[0] = 1;
  throwsWith(badMagic, "format", /bad magic number 0x01000802/);
  throwsWith(new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0]), "format", /gzip-compressed/);
  const float = good.slice();
  float[2] = 0x0d;
  throwsWith(float, "format", /element type 0x0d \(float32\)/);
  const noDims = good.slice();
  noDims[3] = 0;
  throwsWith(noDims, "format", /number of dims is 0/);
  throwsWith(new Uint8Array([0, 0]), "format", /too short/);
  throwsWith(good.subarray(0, 9), "format", /truncated IDX header/);
  throwsWith(good.subarray(0, good.length - 1), "size", /truncated IDX data.*dims 2x3.*17 bytes/);
  const longer = new Uint8Array(good.length + 2);
  longer.set(good);
  throwsWith(longer, "size", /2 trailing bytes/);
});

// ---------------------------------------------------------------------------------------
// Registry, directories, checksums
// ---------------------------------------------------------------------------------------

Deno.test("DATASETS registry is complete and frozen", () => {
  assert.deepEqual(Object.keys(DATASETS).sort(), ["fashion-mnist", "kmnist", "mnist"]);
  for (const [key, spec] of Object.entries(DATASETS)) {
    assert.equal(spec.name, key);
    assert.equal(spec.classes, 10);
    assert.equal(spec.classNames.length, 10);
    assert.ok(spec.mirrors.length >= 1 && spec.mirrors.every((m) => /^https?:\/\/.*\/$/.test(m)));
    assert.deepEqual(spec.files.map((f) => f.file), FILES);
    assert.deepEqual(spec.files.map((f) => f.role), [
      "trainImages",
      "trainLabels",
      "testImages",
      "testLabels",
    ]);
    for (const f of spec.files) {
      assert.ok(f.sha256 || f.md5, `${key}/${f.file} has no checksum`);
      if (f.sha256) assert.match(f.sha256, /^[0-9a-f]{64}$/);
      if (f.md5) assert.match(f.md5, /^[0-9a-f]{32}$/);
    }
    assert.ok(Object.isFrozen(spec) && Object.isFrozen(spec.files[0]));
  }
  assert.equal(DATASETS.mnist.mirrors[0], "https://ossci-datasets.s3.amazonaws.com/mnist/");
  assert.deepEqual(DATASETS["fashion-mnist"].classNames, [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
  ]);
  assert.ok(DATASETS.kmnist.files.every((f) => f.md5 && !f.sha256));
  assert.equal(
    mirrorUrl("http://h/a", "x.gz"),
    "http://h/a/x.gz",
  );
});

Deno.test("resolveDataDir and defaultCacheDir follow the environment", () => {
  const names = ["PERENNIAL_DATA", "PERENNIAL_CACHE", "XDG_CACHE_HOME", "HOME"];
  const saved = new Map(names.map((n) => [n, Deno.env.get(n)]));
  try {
    Deno.env.delete("PERENNIAL_DATA");
    assert.equal(resolveDataDir(), undefined);
    assert.equal(resolveDataDir("/explicit"), "/explicit");
    Deno.env.set("PERENNIAL_DATA", "/from/env");
    assert.equal(resolveDataDir(), "/from/env");
    assert.equal(resolveDataDir("/explicit"), "/explicit");

    Deno.env.delete("PERENNIAL_CACHE");
    Deno.env.delete("XDG_CACHE_HOME");
    Deno.env.set("HOME", "/home/u");
    assert.equal(defaultCacheDir(), join("/home/u", ".cache", "perennial"));
    Deno.env.set("XDG_CACHE_HOME", "/xdg");
    assert.equal(defaultCacheDir(), join("/xdg", "perennial"));
    Deno.env.set("PERENNIAL_CACHE", "/pc");
    assert.equal(defaultCacheDir(), "/pc");
  } finally {
    for (const [n, v] of saved) v === undefined ? Deno.env.delete(n) : Deno.env.set(n, v);
  }
});

Deno.test("hashBytes and verifyBytes check SHA-256 and MD5", () => {
  const abc = new TextEncoder().encode("abc");
  const sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  const md5 = "900150983cd24fb0d6963f7d28e17f72";
  assert.equal(hashBytes(abc, "sha256"), sha);
  assert.equal(hashBytes(abc, "md5"), md5);
  verifyBytes(abc, { sha256: sha, md5, bytes: 3 }, "abc");
  verifyBytes(abc, { md5: md5.toUpperCase() }, "abc");
  assert.throws(
    () => verifyBytes(abc, { md5: "0".repeat(32) }, "abc.gz", "Fix it."),
    (e: unknown) =>
      e instanceof DatasetError && e.code === "checksum" &&
      e.message ===
        `abc.gz: md5 checksum mismatch: expected ${"0".repeat(32)}, got ${md5}. Fix it.`,
  );
  // SHA-256 wins over MD5 when both are known
  assert.throws(() => verifyBytes(abc, { sha256: "0".repeat(64), md5 }, "abc"), /sha256/);
  assert.throws(
    () => verifyBytes(abc, { bytes: 4 }, "abc"),
    (e: unknown) =>
      e instanceof DatasetError && e.code === "size" && /expected 4 bytes, got 3/
        .test(e.message),
  );
});

Deno.test({
  name: "the real files in shared/datasets match the registry's SHA-256 and MD5",
  ignore: !HAS_MNIST || !HAS_FASHION,
  async fn() {
    for (const name of ["mnist", "fashion-mnist"]) {
      for (const f of DATASETS[name].files) {
        const bytes = await Deno.readFile(join(SHARED, name, f.file));
        assert.equal(bytes.length, f.bytes);
        assert.equal(hashBytes(bytes, "sha256"), f.sha256, `${name}/${f.file}`);
        assert.equal(hashBytes(bytes, "md5"), f.md5, `${name}/${f.file}`);
      }
    }
  },
});

// ---------------------------------------------------------------------------------------
// Synthetic data
// ---------------------------------------------------------------------------------------

Deno.test("syntheticImages is deterministic, balanced and learnable", () => {
  const opts = { n: 503, classes: 7, rows: 8, cols: 6, seed: 42, noise: 0.4 };
  const a = syntheticImages(opts);
  const b = syntheticImages(opts);
  assertSplit(a, 503, 8, 6);
  assert.deepEqual(a.images, b.images);
  assert.deepEqual(a.labels, b.labels);
  const c = syntheticImages({ ...opts, seed: 43 });
  assert.notDeepEqual(c.images, a.images);
  assert.notDeepEqual(c.labels, a.labels);

  const h = histogram(a.labels, 7);
  assert.equal(h.reduce((s, x) => s + x, 0), 503);
  assert.ok(Math.max(...h) - Math.min(...h) <= 1, `unbalanced: ${h}`);
  assert.notDeepEqual([...a.labels.subarray(0, 14)], [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6]);

  // noise 0: every image of a class is exactly its pattern; patterns are distinct
  const clean = syntheticImages({ ...opts, noise: 0 });
  const px = 48;
  const pattern = new Map<number, string>();
  for (let i = 0; i < clean.n; i++) {
    const img = clean.images.subarray(i * px, (i + 1) * px);
    assert.ok(img.every((v) => v === 0 || v === 255));
    const key = img.join(",");
    const seen = pattern.get(clean.labels[i]);
    if (seen === undefined) pattern.set(clean.labels[i], key);
    else assert.equal(seen, key);
  }
  assert.equal(new Set(pattern.values()).size, 7);

  // learnable: nearest class mean from one seed classifies another seed's samples
  const test = syntheticImages({ ...opts, n: 200, seed: 7 });
  const means = Array.from({ length: 7 }, () => new Float64Array(px));
  for (let i = 0; i < a.n; i++) {
    for (let k = 0; k < px; k++) means[a.labels[i]][k] += a.images[i * px + k] / h[a.labels[i]];
  }
  let correct = 0;
  for (let i = 0; i < test.n; i++) {
    let best = -1, bestD = Infinity;
    for (let c = 0; c < 7; c++) {
      let d = 0;
      for (let k = 0; k < px; k++) d += (test.images[i * px + k] - means[c][k]) ** 2;
      if (d < bestD) [best, bestD] = [c, d];
    }
    if (best === test.labels[i]) correct++;
  }
  assert.ok(correct / test.n > 0.95, `accuracy ${correct / test.n}`);

  const def = syntheticImages({ n: 3, classes: 3 });
  assertSplit(def, 3, 28, 28);
  assert.deepEqual(syntheticImages({ n: 0, classes: 2 }).images.length, 0);
  assert.throws(() => syntheticImages({ n: 4, classes: 5, rows: 1, cols: 2 }), /distinct patterns/);
  assert.throws(() => syntheticImages({ n: 4, classes: 0 }), /classes must be an integer/);
  assert.throws(() => syntheticImages({ n: 4, classes: 2, noise: 2 }), /noise must be in/);
  assert.throws(() => syntheticImages({ n: 1.5, classes: 2 }), /n must be an integer/);
});

// ---------------------------------------------------------------------------------------
// Loading from a data dir
// ---------------------------------------------------------------------------------------

Deno.test({
  name: "loadDataset reads real MNIST from shared/datasets (and memoizes it)",
  ignore: !HAS_MNIST,
  async fn() {
    await withTempDir(async (cacheDir) => {
      const opts = { dataDir: SHARED, cacheDir, download: false };
      const ds = await loadDataset("mnist", opts);
      assert.equal(ds.name, "mnist");
      assert.equal(ds.classes, 10);
      assert.deepEqual(ds.classNames, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
      assertSplit(ds.train, 60000, 28, 28);
      assertSplit(ds.test, 10000, 28, 28);
      const h = histogram(ds.train.labels, 10);
      assert.equal(h[1], 6742);
      assert.equal(h[5], 5421);
      assert.deepEqual(h, MNIST_TRAIN_COUNTS);
      assert.deepEqual(histogram(ds.test.labels, 10), MNIST_TEST_COUNTS);
      // pixels look like MNIST: mostly background, full range, mean about 33
      let sum = 0, max = 0;
      for (const v of ds.train.images) {
        sum += v;
        if (v > max) max = v;
      }
      assert.equal(max, 255);
      assert.ok(Math.abs(sum / ds.train.images.length - 33.3) < 0.5);
      assert.equal(ds.train.labels[0], 5); // the famous first training digit
      assert.equal(ds.test.labels[0], 7);

      const t0 = performance.now();
      const again = await loadDataset("mnist", opts);
      assert.equal(again, ds, "second call returns the memoized dataset");
      assert.ok(performance.now() - t0 < 50);
      assert.deepEqual(await listFiles(cacheDir), [], "nothing was written to the cache");
    });
  },
});

Deno.test({
  name: "loadDataset reads real Fashion-MNIST from shared/datasets",
  ignore: !HAS_FASHION,
  async fn() {
    await withTempDir(async (cacheDir) => {
      const ds = await loadDataset("fashion-mnist", { dataDir: SHARED, cacheDir, download: false });
      assert.equal(ds.name, "fashion-mnist");
      assertSplit(ds.train, 60000, 28, 28);
      assertSplit(ds.test, 10000, 28, 28);
      assert.deepEqual(histogram(ds.train.labels, 10), new Array(10).fill(6000));
      assert.deepEqual(histogram(ds.test.labels, 10), new Array(10).fill(1000));
      assert.equal(ds.classNames?.[9], "Ankle boot");
      assert.equal(ds.train.labels[0], 9); // first Fashion-MNIST training image is an ankle boot
    });
  },
});

Deno.test({
  name: "loadDataset accepts decompressed files in a flat data dir and checks their IDX size",
  ignore: !HAS_MNIST,
  async fn() {
    await withTempDir(async (tmp) => {
      const dataDir = join(tmp, "data");
      const cacheDir = join(tmp, "cache");
      await Deno.mkdir(dataDir);
      // train: .gz copies; test: decompressed, all flat in dataDir (no mnist/ sub-folder)
      for (const f of FILES.slice(0, 2)) {
        await Deno.copyFile(join(SHARED, "mnist", f), join(dataDir, f));
      }
      const rawImages = gunzipSync(await Deno.readFile(join(SHARED, "mnist", FILES[2])));
      const rawLabels = gunzipSync(await Deno.readFile(join(SHARED, "mnist", FILES[3])));
      const imagesPath = join(dataDir, "t10k-images-idx3-ubyte");
      await Deno.writeFile(imagesPath, rawImages);
      await Deno.writeFile(join(dataDir, "t10k-labels-idx1-ubyte"), rawLabels);

      const opts = { dataDir, cacheDir, download: false };
      const ds = await loadDataset("mnist", opts);
      assertSplit(ds.test, 10000, 28, 28);
      assert.deepEqual(histogram(ds.test.labels, 10), MNIST_TEST_COUNTS);
      assert.deepEqual(ds.test.images, new Uint8Array(rawImages.subarray(16)));

      // truncated decompressed file: clear error naming the path and both sizes
      clearDatasetMemo();
      await Deno.writeFile(imagesPath, rawImages.subarray(0, 5_000_000));
      await assertDatasetError(
        loadDataset("mnist", opts),
        "size",
        imagesPath,
        "truncated IDX data",
        "10000x28x28",
        "7840016",
        "5000000",
      );

      // a valid IDX file with the wrong dims (labels saved under the images name)
      await Deno.writeFile(imagesPath, rawLabels);
      await assertDatasetError(
        loadDataset("mnist", opts),
        "size",
        imagesPath,
        "has IDX dims 10000",
        "must have dims 10000x28x28",
      );

      // not IDX at all
      await Deno.writeFile(imagesPath, new TextEncoder().encode("<html>404</html>"));
      await assertDatasetError(loadDataset("mnist", opts), "format", imagesPath, "bad magic");
      assert.deepEqual(await listFiles(cacheDir), []);
    });
  },
});

Deno.test({
  name: "loadDataset verifies the checksum of .gz files in the data dir",
  ignore: !HAS_MNIST,
  async fn() {
    await withTempDir(async (dataDir) => {
      await Deno.mkdir(join(dataDir, "mnist"));
      const good = await Deno.readFile(join(SHARED, "mnist", FILES[0]));
      const bad = good.slice();
      bad[5000] ^= 0xff; // same size, one byte flipped
      const path = join(dataDir, "mnist", FILES[0]);
      await Deno.writeFile(path, bad);
      await assertDatasetError(
        loadDataset("mnist", { dataDir, cacheDir: join(dataDir, "cache"), download: false }),
        "checksum",
        `MNIST file ${path}: sha256 checksum mismatch`,
        `expected ${mnistFile(FILES[0]).sha256}`,
        `got ${hashBytes(bad, "sha256")}`,
        "Replace it with a good copy",
      );
      assert.ok(existsSync(path), "files in the data dir are never deleted");

      // wrong size is reported as such
      await Deno.writeFile(path, good.subarray(0, 1000));
      await assertDatasetError(
        loadDataset("mnist", { dataDir, cacheDir: join(dataDir, "cache"), download: false }),
        "size",
        path,
        "expected 9912422 bytes, got 1000",
      );
    });
  },
});

Deno.test("loadDataset: clear errors for a missing file or an unknown name", async () => {
  await withTempDir(async (tmp) => {
    const cacheDir = join(tmp, "cache");
    const err = await assertDatasetError(
      loadDataset("kmnist", { dataDir: tmp, cacheDir, download: false }),
      "not-found",
      `KMNIST file train-images-idx3-ubyte.gz not found in ${join(tmp, "kmnist")}, ${tmp}`,
      `cache ${join(cacheDir, "kmnist")}`,
      "download disabled: pass dataDir or set PERENNIAL_DATA",
      "or allow download",
    );
    assert.ok(err.message.length < 500);
    await assertDatasetError(
      // deno-lint-ignore no-explicit-any
      loadDataset("cifar-10" as any, { download: false }),
      "unknown-dataset",
      `unknown dataset "cifar-10": known datasets are "mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "tiny-imagenet"`,
    );
    assert.deepEqual(await listFiles(tmp), []);
  });
});

// ---------------------------------------------------------------------------------------
// Downloads against real local HTTP servers
// ---------------------------------------------------------------------------------------

Deno.test({
  name: "download: files land verified in the cache; later loads do not hit the server",
  ignore: !HAS_MNIST,
  async fn() {
    await withServer(serveShared("mnist"), async (base, hits) => {
      await withTempDir(async (tmp) => {
        // explicit, so PERENNIAL_DATA is not used
        const dataDir = await emptyDir(join(tmp, "empty-data"));
        const cacheDir = join(tmp, "cache");
        const progress = new Map<string, { received: number; total?: number }[]>();
        const ds = await loadDataset("mnist", {
          dataDir,
          cacheDir,
          mirrors: [`${base}/ok/`],
          onProgress: (p) => {
            if (!progress.has(p.file)) progress.set(p.file, []);
            progress.get(p.file)!.push({ received: p.received, total: p.total });
          },
        });
        assert.deepEqual(hits, FILES.map((f) => `/ok/${f}`));
        assertSplit(ds.train, 60000, 28, 28);
        assert.deepEqual(histogram(ds.train.labels, 10), MNIST_TRAIN_COUNTS);

        assert.deepEqual(await listFiles(cacheDir), FILES.map((f) => join("mnist", f)).sort());
        for (const f of FILES) {
          const cached = await Deno.readFile(join(cacheDir, "mnist", f));
          assert.equal(hashBytes(cached, "sha256"), mnistFile(f).sha256);
          const events = progress.get(f)!;
          const last = events[events.length - 1];
          assert.equal(last.received, mnistFile(f).bytes);
          assert.equal(last.total, mnistFile(f).bytes);
        }
        assert.ok(progress.get(FILES[0])!.length > 1, "progress is reported while streaming");

        // second call: memo; after clearing the memo: cache; download: false works too
        assert.equal(
          await loadDataset("mnist", { dataDir, cacheDir, mirrors: [`${base}/ok/`] }),
          ds,
        );
        clearDatasetMemo();
        const fromCache = await loadDataset("mnist", { dataDir, cacheDir, mirrors: [base] });
        assert.notEqual(fromCache, ds);
        assert.deepEqual(fromCache.test.labels, ds.test.labels);
        clearDatasetMemo();
        await loadDataset("mnist", { dataDir, cacheDir, download: false });
        assert.equal(hits.length, 4, "no further requests after the first download");
      });
    });
  },
});

Deno.test({
  name: "download: falls back to the next mirror on refused connection and on 404",
  ignore: !HAS_MNIST,
  async fn() {
    await withServer(serveShared("mnist"), async (base, hits) => {
      await withTempDir(async (tmp) => {
        const cacheDir = join(tmp, "cache");
        const ds = await loadDataset("mnist", {
          dataDir: await emptyDir(join(tmp, "none")),
          cacheDir,
          mirrors: [`http://127.0.0.1:${closedPort()}/mnist/`, `${base}/missing`, `${base}/ok/`],
        });
        assert.equal(ds.test.n, 10000);
        assert.deepEqual(hits, FILES.flatMap((f) => [`/missing/${f}`, `/ok/${f}`]));
        assert.deepEqual(await listFiles(cacheDir), FILES.map((f) => join("mnist", f)).sort());
      });
    });
  },
});

Deno.test({
  name: "download: wrong bytes give a checksum error (SHA-256 and MD5) and leave nothing",
  ignore: !HAS_MNIST,
  async fn() {
    const good = await Deno.readFile(join(SHARED, "mnist", FILES[0]));
    const bad = good.slice();
    bad[good.length - 100] ^= 0x01; // same length, so only the checksum can tell
    const kmnistImages = DATASETS.kmnist.files[0];
    const zeros = new Uint8Array(kmnistImages.bytes!);
    await withServer((path) => {
      if (path.startsWith("/kmnist/")) return new Response(zeros);
      if (path.startsWith("/short/")) return new Response("<html>oops</html>");
      return new Response(bad);
    }, async (base, hits) => {
      await withTempDir(async (tmp) => {
        const cacheDir = join(tmp, "cache");
        const opts = { dataDir: await emptyDir(join(tmp, "none")), cacheDir };
        const url = `${base}/bad/${FILES[0]}`;
        await assertDatasetError(
          loadDataset("mnist", { ...opts, mirrors: [`${base}/bad/`] }),
          "checksum",
          `${FILES[0]} from ${url}: sha256 checksum mismatch`,
          `expected ${mnistFile(FILES[0]).sha256}`,
          `got ${hashBytes(bad, "sha256")}`,
        );
        assert.deepEqual(await listFiles(cacheDir), [], "no file and no .tmp left in the cache");

        // KMNIST only has MD5s: those are checked
        await assertDatasetError(
          loadDataset("kmnist", { ...opts, mirrors: [`${base}/kmnist/`] }),
          "checksum",
          `md5 checksum mismatch: expected ${kmnistImages.md5}, got ${hashBytes(zeros, "md5")}`,
          `${base}/kmnist/train-images-idx3-ubyte.gz`,
        );
        // a body of the wrong size is refused from its Content-Length
        await assertDatasetError(
          loadDataset("mnist", { ...opts, mirrors: [`${base}/short/`] }),
          "size",
          "server sends 17 bytes",
          "must be 9912422 bytes",
        );
        // every mirror failing: the error lists them all
        await assertDatasetError(
          loadDataset("mnist", { ...opts, mirrors: [`${base}/short/`, `${base}/bad/`] }),
          "download",
          `${base}/short/${FILES[0]}: size mismatch`,
          `${base}/bad/${FILES[0]}: sha256 checksum mismatch`,
          "any mirror",
        );
        assert.deepEqual(await listFiles(cacheDir), []);
        assert.equal(hits.length, 5);
      });
    });
  },
});

Deno.test({
  name: "download: a body cut short (Content-Length larger than sent) is an error, nothing left",
  ignore: !HAS_MNIST,
  async fn() {
    // A raw TCP server that promises the whole file, sends 64 KiB of it, then hangs up.
    const good = await Deno.readFile(join(SHARED, "mnist", FILES[0]));
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const base = `http://127.0.0.1:${listener.addr.port}/`;
    let requests = 0;
    const serving = (async () => {
      for await (const conn of listener) {
        requests++;
        try {
          const buf = new Uint8Array(4096);
          let head = "";
          while (!head.includes("\r\n\r\n")) {
            const n = await conn.read(buf);
            if (n === null) break;
            head += new TextDecoder().decode(buf.subarray(0, n));
          }
          const header = `HTTP/1.1 200 OK\r\nContent-Length: ${good.length}\r\n` +
            `Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n`;
          await conn.write(new TextEncoder().encode(header));
          let off = 0;
          while (off < 65536) off += await conn.write(good.subarray(off, 65536));
        } finally {
          conn.close();
        }
      }
    })();
    try {
      await withTempDir(async (tmp) => {
        const cacheDir = join(tmp, "cache");
        await assertDatasetError(
          loadDataset("mnist", {
            dataDir: await emptyDir(join(tmp, "none")),
            cacheDir,
            mirrors: [base],
          }),
          "truncated",
          `${base}${FILES[0]}: download of ${FILES[0]} broke off after`,
          "of 9912422 bytes",
        );
        assert.deepEqual(await listFiles(cacheDir), [], "no file and no .tmp left in the cache");
      });
    } finally {
      listener.close();
      await serving.catch(() => {});
    }
    assert.equal(requests, 1);
  },
});

Deno.test({
  name: "cache: a corrupt cached file is reported (download off) or replaced (download on)",
  ignore: !HAS_MNIST,
  async fn() {
    await withTempDir(async (tmp) => {
      const cacheDir = join(tmp, "cache");
      const dataDir = await emptyDir(join(tmp, "none"));
      await Deno.mkdir(join(cacheDir, "mnist"), { recursive: true });
      for (const f of FILES.slice(0, 3)) {
        await Deno.copyFile(join(SHARED, "mnist", f), join(cacheDir, "mnist", f));
      }
      const corruptPath = join(cacheDir, "mnist", FILES[3]);
      const good = await Deno.readFile(join(SHARED, "mnist", FILES[3]));
      const bad = good.slice();
      bad[100] ^= 0xff;
      await Deno.writeFile(corruptPath, bad);

      await assertDatasetError(
        loadDataset("mnist", { dataDir, cacheDir, download: false }),
        "checksum",
        `MNIST cached file ${corruptPath}: sha256 checksum mismatch`,
        `got ${hashBytes(bad, "sha256")}`,
        `Delete it (rm "${corruptPath}")`,
      );
      assert.deepEqual(await Deno.readFile(corruptPath), bad, "left in place when download is off");

      await withServer(serveShared("mnist"), async (base, hits) => {
        const ds = await loadDataset("mnist", { dataDir, cacheDir, mirrors: [`${base}/ok/`] });
        assert.deepEqual(histogram(ds.test.labels, 10), MNIST_TEST_COUNTS);
        assert.deepEqual(hits, [`/ok/${FILES[3]}`], "only the corrupt file is fetched again");
      });
      assert.deepEqual(await Deno.readFile(corruptPath), good);
      assert.deepEqual(await listFiles(cacheDir), FILES.map((f) => join("mnist", f)).sort());
    });
  },
});

Deno.test("downloadVerified on generated bytes: fallback, SHA-256 / MD5, cleanup", async () => {
  // Needs no real data, so downloads stay covered where shared/datasets is absent.
  const blob = new Uint8Array(300_000);
  for (let i = 0; i < blob.length; i += 65536) {
    crypto.getRandomValues(blob.subarray(i, Math.min(i + 65536, blob.length)));
  }
  const sha256 = hashBytes(blob, "sha256");
  const md5 = hashBytes(blob, "md5");
  await withServer(
    (path) =>
      path.startsWith("/ok/")
        ? new Response(blob)
        : new Response("missing", { status: 404, statusText: "Not Found" }),
    async (base, hits) => {
      await withTempDir(async (tmp) => {
        const dest = join(tmp, "sub", "blob.bin");
        const got = await downloadVerified(
          [`${base}/missing/blob.bin`, `${base}/ok/blob.bin`],
          dest,
          { expect: { sha256, bytes: blob.length } },
        );
        assert.deepEqual(got, { url: `${base}/ok/blob.bin`, bytes: blob.length });
        assert.deepEqual(await Deno.readFile(dest), blob);
        assert.deepEqual(hits, ["/missing/blob.bin", "/ok/blob.bin"]);

        const dest2 = join(tmp, "md5.bin");
        await downloadVerified([`${base}/ok/x`], dest2, { expect: { md5 } });
        assert.deepEqual(await Deno.readFile(dest2), blob);

        const dest3 = join(tmp, "bad", "blob.bin");
        await assertDatasetError(
          downloadVerified([`${base}/ok/blob.bin`], dest3, { expect: { md5: "0".repeat(32) } }),
          "checksum",
          `blob.bin from ${base}/ok/blob.bin: md5 checksum mismatch`,
          `expected ${"0".repeat(32)}, got ${md5}`,
        );
        await assertDatasetError(
          downloadVerified([`${base}/gone/blob.bin`], dest3),
          "http",
          `${base}/gone/blob.bin: HTTP 404 Not Found`,
        );
        assert.deepEqual(await listFiles(join(tmp, "bad")), []);
        assert.deepEqual((await listFiles(tmp)).sort(), ["md5.bin", join("sub", "blob.bin")]);
      });
    },
  );
});
