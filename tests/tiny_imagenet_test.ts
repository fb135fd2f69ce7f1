// Tiny ImageNet: the zip loader on archives generated in the published layout (real JPEG files),
// its errors, the download path against 127.0.0.1, and Split Tiny ImageNet's Avalanche defaults.
import assert from "node:assert/strict";
import jpeg from "jpeg-js";
import { zipSync } from "fflate";
import {
  ARCHIVE_DATASETS,
  clearDatasetMemo,
  type ImageDataset,
  loadArchive,
} from "../datasets/mod.ts";
import { splitTinyImageNet, TINY_IMAGENET_STATS } from "../lib/benchmarks/vision.ts";
import { assertDatasetError, listFiles, withTempDir } from "./_datasets_fixtures.ts";
import { checksumOf, put, tinyImageNetArchive, withServer } from "./_vision_fixtures.ts";

Deno.test("the registry has Tiny ImageNet's archive, MD5, size and shape", () => {
  const s = ARCHIVE_DATASETS["tiny-imagenet"];
  assert.equal(s.archive.file, "tiny-imagenet-200.zip");
  assert.equal(s.archive.md5, "90528d7ca1a48142e341f4ef8d21d0de");
  assert.equal(s.archive.bytes, 248_100_043);
  assert.deepEqual([s.rows, s.cols, s.channels, s.classes], [64, 64, 3, 200]);
  assert.deepEqual(s.samples, { train: 100_000, test: 10_000 });
});

Deno.test("Tiny ImageNet: train by wnids.txt order then number, val by annotations, JPEGs decoded", async () => {
  await withTempDir(async (dir) => {
    const a = tinyImageNetArchive({ classes: 3, perClass: 3, val: 4 });
    await put(`${dir}/tiny-imagenet`, a.spec.archive.file, a.bytes);
    const ds = await loadArchive(a.spec, { dataDir: dir, cacheDir: `${dir}/cache` });
    assert.equal(ds.train.n, 9);
    assert.equal(ds.test.n, 4);
    assert.deepEqual([ds.train.rows, ds.train.cols, ds.train.channels], [64, 64, 3]);
    assert.deepEqual(ds.classIds, a.wnids);
    assert.deepEqual(ds.classNames, [
      "thing 0, object 0",
      "thing 1, object 1",
      "thing 2, object 2",
    ]);
    assert.deepEqual([...ds.train.labels], [0, 0, 0, 1, 1, 1, 2, 2, 2]);
    assert.deepEqual([...ds.test.labels], a.val.map((v) => a.wnids.indexOf(v.wnid)));
    const size = 64 * 64 * 3;
    const check = (split: ImageDataset["train"], i: number, path: string) => {
      const got = split.images.subarray(i * size, (i + 1) * size);
      // Exactly the decoder's pixels, and close to the picture that was encoded.
      const decoded = jpeg.decode(a.jpegs.get(path)!, { useTArray: true, formatAsRGBA: false });
      assert.deepEqual(got, new Uint8Array(decoded.data), path);
      const src = a.sources.get(path)!;
      let err = 0;
      for (let k = 0; k < size; k++) err += Math.abs(got[k] - src[k]);
      assert.ok(err / size < 3, `${path}: mean error ${err / size}`);
    };
    const w = a.wnids;
    // Natural order of the numbers: _0, _5, _10 (a string sort would put _10 before _5).
    check(ds.train, 0, `tiny-imagenet-200/train/${w[0]}/images/${w[0]}_0.JPEG`);
    check(ds.train, 1, `tiny-imagenet-200/train/${w[0]}/images/${w[0]}_5.JPEG`);
    check(ds.train, 2, `tiny-imagenet-200/train/${w[0]}/images/${w[0]}_10.JPEG`);
    check(ds.train, 8, `tiny-imagenet-200/train/${w[2]}/images/${w[2]}_10.JPEG`);
    check(ds.test, 3, "tiny-imagenet-200/val/images/val_3.JPEG");
    clearDatasetMemo();
  });
});

Deno.test("Tiny ImageNet: damaged zip, missing member, wrong image size are clear errors", async () => {
  await withTempDir(async (dir) => {
    const a = tinyImageNetArchive();
    const load = async (name: string, bytes: Uint8Array, spec = a.spec) => {
      const d = `${dir}/${name}`;
      const path = await put(d, spec.archive.file, bytes);
      const withSums = { ...spec, archive: { ...spec.archive, ...checksumOf(bytes) } };
      return {
        path,
        p: loadArchive(withSums, { dataDir: d, cacheDir: `${dir}/cache`, download: false }),
      };
    };
    const cut = await load("cut", a.bytes.slice(0, a.bytes.length - 200));
    await assertDatasetError(
      cut.p,
      "format",
      `Tiny ImageNet archive ${cut.path} is not a readable zip archive`,
      "truncated or damaged",
    );
    const noVal = tinyImageNetArchive({ omit: "val/val_annotations.txt" });
    const nv = await load("noval", noVal.bytes, noVal.spec);
    await assertDatasetError(
      nv.p,
      "format",
      `${nv.path} has no member tiny-imagenet-200/val/val_annotations.txt`,
      "tiny-imagenet-200.zip",
    );
    const small = tinyImageNetArchive({ imageSize: 32 });
    const sm = await load("small", small.bytes, small.spec);
    await assertDatasetError(sm.p, "size", "is 32×32, Tiny ImageNet images are 64×64");
    // An annotation naming a class wnids.txt does not list.
    const stray = zipSync({
      "tiny-imagenet-200/wnids.txt": new TextEncoder().encode("n1\nn2\nn3\n"),
      "tiny-imagenet-200/words.txt": new TextEncoder().encode("n1\tone\n"),
      "tiny-imagenet-200/val/val_annotations.txt": new TextEncoder().encode(
        "val_0.JPEG\tn9\t0\t0\t1\t1\n",
      ),
    });
    const st = await load("stray", stray);
    await assertDatasetError(st.p, "format", "gives val_0.JPEG the class n9, which wnids.txt");
    // Counts other than the spec's.
    const more = await load("more", a.bytes, { ...a.spec, samples: { train: 10, test: 4 } });
    await assertDatasetError(more.p, "size", "9 train images found, Tiny ImageNet has 10");
    assert.deepEqual(await listFiles(`${dir}/cache`), []);
    clearDatasetMemo();
  });
});

Deno.test("Tiny ImageNet: verified download from 127.0.0.1; a wrong file leaves the cache empty", async () => {
  await withTempDir(async (dir) => {
    const a = tinyImageNetArchive({ seed: 9 });
    const wrong = a.bytes.slice();
    wrong[10] ^= 0xff;
    await withServer(
      { "/m/tiny-imagenet-200.zip": a.bytes, "/w/tiny-imagenet-200.zip": wrong },
      async (base) => {
        const cache = `${dir}/cache`;
        await assertDatasetError(
          loadArchive(a.spec, { cacheDir: cache, mirrors: [`${base}w/`] }),
          "checksum",
          `tiny-imagenet-200.zip from ${base}w/tiny-imagenet-200.zip: sha256 checksum mismatch`,
        );
        assert.deepEqual(await listFiles(cache), []);
        const ds = await loadArchive(a.spec, { cacheDir: cache, mirrors: [`${base}m/`] });
        assert.equal(ds.train.n, 9);
        assert.deepEqual(await listFiles(cache), ["tiny-imagenet/tiny-imagenet-200.zip"]);
        clearDatasetMemo();
      },
    );
  });
});

Deno.test("splitTinyImageNet: 10 experiences of 20 classes, seed 0, flips only, Avalanche's constants", async () => {
  const n = 400, size = 64 * 64 * 3;
  const split = (count: number) => ({
    images: Uint8Array.from({ length: count * size }, (_, i) => (i * 13) % 256),
    labels: Uint8Array.from({ length: count }, (_, i) => i % 200),
    n: count,
    rows: 64,
    cols: 64,
    channels: 3,
  });
  const data: ImageDataset = {
    name: "tiny-imagenet",
    train: split(n),
    test: split(200),
    classes: 200,
  };
  const b = await splitTinyImageNet({ data });
  assert.equal(b.info.name, "SplitTinyImageNet");
  assert.equal(b.train.length, 10);
  assert.ok(b.train.every((e) => e.classes.length === 20));
  assert.deepEqual(b.info.inputShape, [64, 64, 3]);
  assert.deepEqual((await splitTinyImageNet({ data, seed: 0 })).classOrder, b.classOrder);
  const groups = b.train[0].dataset.transforms!;
  assert.deepEqual(groups.train.map((t) => t.kind), ["randomHorizontalFlip"]);
  assert.deepEqual(groups.eval, []);
  // Avalanche 0.6's SplitTinyImageNet normalizes with CIFAR-10's constants.
  assert.deepEqual(TINY_IMAGENET_STATS.mean, [0.4914, 0.4822, 0.4465]);
  const x = b.train[0].dataset.batch([0]).x;
  const first = b.train[0].dataset.targets[0];
  const k = [...data.train.labels].indexOf(first);
  const want = (data.train.images[k * size + 1] / 255 - 0.4822) / 0.1994;
  assert.ok(Math.abs(x[1] - want) < 1e-5);
  const task = await splitTinyImageNet({
    data,
    returnTaskId: true,
    classIdsFromZeroInEachExp: true,
  });
  assert.equal(task.train[9].taskLabel, 9);
  assert.equal(Math.max(...task.train[9].classes), 19);
  await assert.rejects(
    splitTinyImageNet({ data, firstExpWithHalfClasses: true } as never),
    /firstExpWithHalfClasses/,
  );
});
