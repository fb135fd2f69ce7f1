// The doc-test runner fails on an example whose console.assert printed "Assertion failed".
import assert from "node:assert/strict";
import { failedAsserts } from "../lib/cli/doctest.ts";

Deno.test("failedAsserts names each example after which an assertion failed", () => {
  const output = [
    "running 1 test from ./lib/a.ts#10-14.ts",
    "\x1b[0mfile:///r/lib/a.ts#10-14.ts ... \x1b[32mok\x1b[0m",
    "running 1 test from ./lib/b.ts#3-9.ts",
    "file:///r/lib/b.ts#3-9.ts ...",
    "Assertion failed",
    "\x1b[32mok\x1b[0m (1ms)",
    "ok | 2 passed | 0 failed",
  ].join("\n");
  assert.deepEqual(failedAsserts(output), ["file:///r/lib/b.ts#3-9.ts"]);
  assert.deepEqual(failedAsserts("ok | 2 passed | 0 failed"), []);
});
