// CIFAR-10/100: the binary archives' loaders on archives generated in the published layout, the
// data dir → cache → verified download path against a server on 127.0.0.1, the registry's
// checksums, and the Split CIFAR benchmarks' Avalanche defaults.
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { createTar } from "nanotar";
import {
  ARCHIVE_DATASETS,
  clearDatasetMemo,
  type ImageDataset,
  loadArchive,
  loadDataset,
} from "../datasets/mod.ts";
import {
  CIFAR100_STATS,
  CIFAR10_STATS,
  splitCIFAR10,
  splitCIFAR100,
  splitCIFAR110,
} from "../lib/benchmarks/vision.ts";
import { assertDatasetError, listFiles, withTempDir } from "./_datasets_fixtures.ts";
import {
  checksumOf,
  cifar100Archive,
  CIFAR10_NAMES,
  cifar10Archive,
  COARSE,
  FINE,
  put,
  type Records,
  withServer,
} from "./_vision_fixtures.ts";

/** Pixel (r, c) channel ch of image i, as the planar records hold it. */
function planar(r: Records, i: number, row: number, col: number, ch: number): number {
  return r.planes[i * 3072 + ch * 1024 + row * 32 + col];
}

function assertSplit(split: ImageDataset["train"], r: Records): void {
  assert.equal(split.rows, 32);
  assert.equal(split.cols, 32);
  assert.equal(split.channels, 3);
  assert.deepEqual([...split.labels], [...r.labels]);
  for (let i = 0; i < split.n; i++) {
    for (const [row, col] of [[0, 0], [0, 31], [5, 17], [31, 0], [31, 31]]) {
      for (let ch = 0; ch < 3; ch++) {
        assert.equal(
          split.images[i * 3072 + (row * 32 + col) * 3 + ch],
          planar(r, i, row, col, ch),
          `image ${i} pixel (${row}, ${col}) channel ${ch}`,
        );
      }
    }
  }
}

Deno.test("the registry has the published CIFAR archives' MD5s, sizes and mirrors", () => {
  const c10 = ARCHIVE_DATASETS.cifar10, c100 = ARCHIVE_DATASETS.cifar100;
  assert.equal(c10.archive.file, "cifar-10-binary.tar.gz");
  assert.equal(c10.archive.md5, "c32a1d4ab5d03f1284b67883e8d87530");
  assert.equal(c10.archive.bytes, 170_052_171);
  assert.equal(c100.archive.file, "cifar-100-binary.tar.gz");
  assert.equal(c100.archive.md5, "03b5dce01913d631647c71ecec9e9cb8");
  assert.equal(c100.archive.bytes, 168_513_733);
  assert.deepEqual(c10.mirrors, ["https://www.cs.toronto.edu/~kriz/"]);
  assert.deepEqual(c10.samples, { train: 50_000, test: 10_000 });
  assert.equal(c10.classNames?.[0], "airplane");
  assert.equal(c10.classNames?.[9], "truck");
  assert.ok(Object.isFrozen(c10.archive));
});

Deno.test("CIFAR-10: a data-dir archive in the published layout loads, channel-last, with names", async () => {
  await withTempDir(async (dir) => {
    const { bytes, spec, train, test } = cifar10Archive();
    await put(`${dir}/data/cifar10`, spec.archive.file, bytes);
    const ds = await loadArchive(spec, { dataDir: `${dir}/data`, cacheDir: `${dir}/cache` });
    assert.equal(ds.name, "cifar10");
    assert.equal(ds.train.n, 20);
    assert.equal(ds.test.n, 6);
    assertSplit(ds.train, train);
    assertSplit(ds.test, test);
    assert.deepEqual(ds.classNames, CIFAR10_NAMES);
    assert.equal(ds.train.coarseLabels, undefined);
    assert.deepEqual(await listFiles(`${dir}/cache`), [], "nothing cached from a data dir");
    clearDatasetMemo();
  });
});

Deno.test("CIFAR-100: fine and coarse labels and both name lists", async () => {
  await withTempDir(async (dir) => {
    const { bytes, spec, train, test } = cifar100Archive();
    await put(`${dir}/data`, spec.archive.file, bytes);
    const ds = await loadArchive(spec, { dataDir: `${dir}/data`, cacheDir: `${dir}/cache` });
    assertSplit(ds.train, train);
    assertSplit(ds.test, test);
    assert.deepEqual([...ds.train.coarseLabels!], [...train.coarse!]);
    assert.deepEqual(ds.classNames, FINE);
    assert.deepEqual(ds.coarseClassNames, COARSE);
    clearDatasetMemo();
  });
});

Deno.test("CIFAR: a bad archive in the data dir is an error naming it and the fix; it is kept", async () => {
  await withTempDir(async (dir) => {
    const { bytes, spec } = cifar10Archive();
    const data = `${dir}/data`;
    // The registry's own entry: a generated archive is not the published file.
    const path = await put(data, spec.archive.file, bytes);
    await assertDatasetError(
      loadDataset("cifar10", { dataDir: data, cacheDir: `${dir}/cache`, download: false }),
      "size",
      `CIFAR-10 archive ${path}: size mismatch: expected 170052171 bytes, got ${bytes.length}`,
      "Replace it with a good copy",
    );
    // Same size, other content: the checksum says so.
    const other = bytes.slice();
    other[100] ^= 0xff;
    await Deno.writeFile(path, other);
    await assertDatasetError(
      loadArchive(spec, { dataDir: data, cacheDir: `${dir}/cache`, download: false }),
      "checksum",
      `CIFAR-10 archive ${path}: sha256 checksum mismatch: expected ${spec.archive.sha256}`,
    );
    assert.deepEqual(await listFiles(data), [spec.archive.file], "user files are never deleted");
    clearDatasetMemo();
  });
});

Deno.test("CIFAR: a truncated archive and a missing member are clear errors", async () => {
  await withTempDir(async (dir) => {
    const { bytes, spec } = cifar10Archive();
    // An archive cut short whose checksum is what the spec expects: the gzip data stop early.
    const cut = bytes.slice(0, Math.floor(bytes.length / 2));
    const cutSpec = { ...spec, archive: { ...spec.archive, ...checksumOf(cut) } };
    const p1 = await put(`${dir}/a`, spec.archive.file, cut);
    await assertDatasetError(
      loadArchive(cutSpec, { dataDir: `${dir}/a`, cacheDir: `${dir}/cache`, download: false }),
      "truncated",
      `CIFAR-10 archive ${p1} is not complete gzip data`,
      "the archive is truncated",
    );
    const missing = cifar10Archive({ omit: "data_batch_3.bin" });
    const p2 = await put(`${dir}/b`, spec.archive.file, missing.bytes);
    await assertDatasetError(
      loadArchive(missing.spec, { dataDir: `${dir}/b`, cacheDir: `${dir}/cache`, download: false }),
      "format",
      `CIFAR-10 archive ${p2} has no member cifar-10-batches-bin/data_batch_3.bin`,
      "cifar-10-binary.tar.gz",
    );
    // The python version's members are not the binary version's.
    const python = new Uint8Array(gzipSync(createTar([
      { name: "cifar-10-batches-py/data_batch_1", data: new Uint8Array(10) },
    ])));
    const pySpec = { ...spec, archive: { ...spec.archive, ...checksumOf(python) } };
    await put(`${dir}/c`, spec.archive.file, python);
    await assertDatasetError(
      loadArchive(pySpec, { dataDir: `${dir}/c`, cacheDir: `${dir}/cache`, download: false }),
      "format",
      "has no member cifar-10-batches-bin/data_batch_1.bin",
      "It holds cifar-10-batches-py/data_batch_1",
    );
    // A record count other than the spec's.
    const fewer = { ...spec, samples: { train: 25, test: 6 } };
    await put(`${dir}/d`, spec.archive.file, bytes);
    await assertDatasetError(
      loadArchive(fewer, { dataDir: `${dir}/d`, cacheDir: `${dir}/cache`, download: false }),
      "size",
      "the train members hold 20 images, but CIFAR-10 has 25",
    );
    assert.deepEqual(await listFiles(`${dir}/cache`), []);
    clearDatasetMemo();
  });
});

Deno.test("CIFAR: download from 127.0.0.1 into the cache; a bad mirror leaves nothing behind", async () => {
  await withTempDir(async (dir) => {
    const { bytes, spec, train } = cifar10Archive({ seed: 5 });
    const wrong = bytes.slice();
    wrong[wrong.length - 1] ^= 1;
    await withServer({
      "/good/cifar-10-binary.tar.gz": bytes,
      "/bad/cifar-10-binary.tar.gz": wrong,
    }, async (base, hits) => {
      const cache = `${dir}/cache`;
      await assertDatasetError(
        loadArchive(spec, { cacheDir: cache, mirrors: [`${base}bad/`, `${base}none/`] }),
        "download",
        `cifar-10-binary.tar.gz from ${base}bad/cifar-10-binary.tar.gz: sha256 checksum mismatch`,
        `${base}none/cifar-10-binary.tar.gz: HTTP 404`,
        "No partial file was left",
      );
      assert.deepEqual(await listFiles(cache), [], "nothing half-written in the cache");
      const ds = await loadArchive(spec, {
        cacheDir: cache,
        mirrors: [`${base}bad/`, `${base}good/`],
      });
      assertSplit(ds.train, train);
      assert.deepEqual(await listFiles(cache), ["cifar10/cifar-10-binary.tar.gz"]);
      clearDatasetMemo();
      // Loaded again from the cache: no request.
      const before = hits.length;
      await loadArchive(spec, { cacheDir: cache, mirrors: [`${base}good/`] });
      assert.equal(hits.length, before);
      clearDatasetMemo();
      // A corrupt cached copy is replaced by a fresh download when downloads are allowed...
      await Deno.writeFile(`${cache}/cifar10/cifar-10-binary.tar.gz`, wrong);
      await assertDatasetError(
        loadArchive(spec, { cacheDir: cache, download: false }),
        "checksum",
        `CIFAR-10 cached archive ${cache}/cifar10/cifar-10-binary.tar.gz`,
        `Delete it (rm "${cache}/cifar10/cifar-10-binary.tar.gz")`,
      );
      const again = await loadArchive(spec, { cacheDir: cache, mirrors: [`${base}good/`] });
      assertSplit(again.train, train);
      assert.deepEqual(
        await Deno.readFile(`${cache}/cifar10/cifar-10-binary.tar.gz`),
        bytes,
        "the corrupt copy was replaced",
      );
      clearDatasetMemo();
    });
  });
});

/** An in-memory CIFAR-shaped dataset with `classes` classes and `perClass` images of each. */
function fakeCifar(classes: number, perClass: number, seed: number): ImageDataset {
  const split = (n: number) => {
    const images = new Uint8Array(n * 3072);
    for (let i = 0; i < images.length; i++) images[i] = (i * 31 + seed * 7) % 256;
    const labels = Uint8Array.from({ length: n }, (_, i) => i % classes);
    return { images, labels, n, rows: 32, cols: 32, channels: 3 };
  };
  return {
    name: classes === 10 ? "cifar10" : "cifar100",
    train: split(classes * perClass),
    test: split(classes),
    classes,
  };
}

Deno.test("splitCIFAR10: Avalanche's defaults, per-channel normalization, CIFAR transform groups", async () => {
  const { bytes, spec } = cifar10Archive({ perBatch: 10, test: 10 });
  await withTempDir(async (dir) => {
    await put(dir, spec.archive.file, bytes);
    const raw = await loadArchive(spec, { dataDir: dir, cacheDir: `${dir}/cache` });
    const b = await splitCIFAR10({ data: raw, seed: 1234 });
    assert.equal(b.train.length, 5);
    assert.equal(b.info.name, "SplitCIFAR10");
    assert.deepEqual(b.info.inputShape, [32, 32, 3]);
    assert.equal(b.info.scenario, "class-incremental");
    assert.ok(b.train.every((e) => e.classes.length === 2 && e.taskLabel === 0));
    // Same seed, same order; another seed, another order.
    const again = await splitCIFAR10({ data: raw, seed: 1234 });
    assert.deepEqual(again.classOrder, b.classOrder);
    assert.notDeepEqual((await splitCIFAR10({ data: raw, seed: 1 })).classOrder, b.classOrder);
    // Normalization: (byte / 255 - mean[c]) / std[c], channel-last.
    const d = b.train[0].dataset;
    const x = d.batch([0]).x;
    const first = b.train[0].dataset.targets[0];
    assert.ok(b.train[0].classes.includes(first));
    const src = raw.train.images;
    const k = (() => { // the raw index of the experience's first sample
      for (let i = 0; i < raw.train.n; i++) if (raw.train.labels[i] === first) return i;
      return -1;
    })();
    for (const f of [0, 1, 2, 3, 100, 3071]) {
      const c = f % 3;
      const want = (src[k * 3072 + f] / 255 - CIFAR10_STATS.mean[c]) / CIFAR10_STATS.std[c];
      assert.ok(Math.abs(x[f] - want) < 1e-5, `feature ${f}: ${x[f]} vs ${want}`);
    }
    // Transform groups: RandomCrop(32, padding=4) padding with a zero pixel's value, flip 0.5.
    const groups = d.transforms!;
    assert.deepEqual(groups.train.map((t) => t.kind), ["randomCrop", "randomHorizontalFlip"]);
    const crop = groups.train[0];
    assert.ok(crop.kind === "randomCrop");
    assert.deepEqual(crop.size, [32, 32]);
    assert.equal(crop.padding, 4);
    crop.fill.forEach((v, c) =>
      assert.ok(Math.abs(v + CIFAR10_STATS.mean[c] / CIFAR10_STATS.std[c]) < 1e-12)
    );
    assert.deepEqual(groups.eval, []);
    assert.equal(b.test[0].dataset.transforms, groups, "the test stream keeps the groups");
    // Options as Avalanche's.
    const task = await splitCIFAR10({
      data: raw,
      returnTaskId: true,
      classIdsFromZeroInEachExp: true,
    });
    assert.equal(task.train[3].taskLabel, 3);
    assert.deepEqual(task.train[3].classes, [0, 1]);
    const half = await splitCIFAR10({ data: raw, experiences: 6, firstExpWithHalfClasses: true });
    assert.deepEqual(half.train.map((e) => e.classes.length), [5, 1, 1, 1, 1, 1]);
    const plain = await splitCIFAR10({
      data: raw,
      seed: 1234,
      trainTransforms: [],
      normalize: false,
    });
    assert.deepEqual(plain.train[0].dataset.transforms?.train, []);
    assert.ok(Math.abs(plain.train[0].dataset.batch([0]).x[0] - src[k * 3072] / 255) < 1e-6);
    await assert.rejects(splitCIFAR10({ data: raw, experinces: 5 } as never), /experiences/);
    clearDatasetMemo();
  });
});

Deno.test("splitCIFAR100 and splitCIFAR110: class counts, CIFAR-100 constants, CIFAR-10 first", async () => {
  const c100 = fakeCifar(100, 2, 1), c10 = fakeCifar(10, 3, 2);
  const b = await splitCIFAR100({ data: c100 });
  assert.equal(b.train.length, 10);
  assert.ok(b.train.every((e) => e.classes.length === 10));
  const x = b.train[0].dataset.batch([0]).x;
  assert.ok(Number.isFinite(x[0]));
  const fill = (b.train[0].dataset.transforms!.train[0] as { fill: readonly number[] }).fill;
  assert.ok(Math.abs(fill[2] + CIFAR100_STATS.mean[2] / CIFAR100_STATS.std[2]) < 1e-12);

  const s = await splitCIFAR110({ cifar10: c10, cifar100: c100, seed: 3 });
  assert.equal(s.info.name, "SplitCIFAR110");
  assert.equal(s.train.length, 11);
  assert.deepEqual(s.train[0].classes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(s.train[0].dataset.length, 30, "the whole CIFAR-10 training set");
  assert.ok(s.train.slice(1).every((e) => e.classes.length === 10));
  assert.ok(s.train.slice(1).every((e) => e.classes.every((c) => c >= 10 && c < 110)));
  assert.equal(new Set(s.train.flatMap((e) => e.classes)).size, 110);
  assert.ok(s.train.every((e) => e.taskLabel === 0));
  assert.ok(s.train[1].dataset.transforms, "both parts keep the CIFAR transform groups");
  // CIFAR-10 images normalized with CIFAR-100's constants (Avalanche's default transforms).
  const v = s.train[0].dataset.batch([0]).x[0];
  const byte = c10.train.images[0];
  assert.ok(Math.abs(v - (byte / 255 - CIFAR100_STATS.mean[0]) / CIFAR100_STATS.std[0]) < 1e-5);
  const fixed = await splitCIFAR110({
    cifar10: c10,
    cifar100: c100,
    experiences: 3,
    fixedClassOrder: Array.from({ length: 100 }, (_, i) => 99 - i),
  });
  assert.deepEqual(fixed.train.map((e) => e.classes.length), [10, 50, 50]);
  assert.ok(fixed.train[1].classes.includes(109) && fixed.train[2].classes.includes(10));
  await assert.rejects(
    splitCIFAR110({ cifar10: c10, cifar100: c100, experiences: 8 }),
    /divisor of 100/,
  );
});
