// Tests of the import structure: the library is a stack of one-way layers (ARCHITECTURE.md).
// Every .ts file under lib/ and datasets/, plus mod.ts, is read, its relative imports are parsed
// (static `import` and `export ... from`, `import type`, side-effect imports and `import("...")`
// in code or type position), and each arrow is checked against the layer table below.
// Run: deno test -A tests/architecture_test.ts

import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

// ---------------------------------------------------------------------------------------------
// The layer table

/** One part of the library: the files it holds, its layer, and what it may import beside it. */
interface Unit {
  name: string;
  /** 1 is the bottom. A file may import files of its own unit and of units in lower layers. */
  layer: number;
  /** Paths relative to the repository root: a file, or a folder when it ends with "/". */
  paths: string[];
  /** Units of the same layer this one may import (the order inside a layer). */
  peers?: string[];
}

const UNITS: Unit[] = [
  // 1. Seeded random numbers; options checking; backend selection and the kernels (fused ops,
  // FFI BLAS).
  { name: "random", layer: 1, paths: ["lib/random.ts"] },
  { name: "options", layer: 1, paths: ["lib/options.ts"] },
  { name: "backends", layer: 1, paths: ["lib/backend.ts", "lib/backends/"], peers: ["options"] },
  // 2. Datasets and experiences; file formats and downloads; scenario generators.
  { name: "data", layer: 2, paths: ["lib/data/"] },
  { name: "datasets", layer: 2, paths: ["datasets/"] },
  { name: "benchmarks", layer: 2, paths: ["lib/benchmarks/"], peers: ["data", "datasets"] },
  // 3. Modules and layers, then models and optimizers built on them.
  { name: "nn", layer: 3, paths: ["lib/nn/"] },
  { name: "models", layer: 3, paths: ["lib/models/"], peers: ["nn"] },
  { name: "optim", layer: 3, paths: ["lib/optim/"], peers: ["nn"] },
  // 4. Batch assembly, tape and tape-free steps, resident data.
  { name: "engine", layer: 4, paths: ["lib/engine/"] },
  // 5. The strategy template, its context, the plugin contract, loaders.
  { name: "strategy", layer: 5, paths: ["lib/strategy/"] },
  // 6. Metrics read the context; loggers write metric rows; plugins may use both.
  { name: "metrics", layer: 6, paths: ["lib/metrics/"] },
  { name: "loggers", layer: 6, paths: ["lib/loggers/"], peers: ["metrics"] },
  { name: "plugins", layer: 6, paths: ["lib/plugins/"], peers: ["metrics", "loggers"] },
  // 7. Applications: notebook display, paper reproductions, the speed workload, the CLI,
  // checkpoint files and resumable runs.
  { name: "notebook", layer: 7, paths: ["lib/notebook/"] },
  { name: "repro", layer: 7, paths: ["lib/repro/"], peers: ["notebook"] },
  { name: "bench", layer: 7, paths: ["lib/bench/"] },
  { name: "cli", layer: 7, paths: ["lib/cli/"], peers: ["notebook", "repro", "bench", "sweep"] },
  { name: "checkpoint", layer: 7, paths: ["lib/checkpoint/"] },
  { name: "sweep", layer: 7, paths: ["lib/sweep/"], peers: ["notebook", "repro", "checkpoint"] },
  // 8. The public entry point re-exports the layers; nothing in the library imports it.
  { name: "mod", layer: 8, paths: ["mod.ts"] },
];

/** Above this layer (the engine) nothing imports the kernels under lib/backends/ directly. */
const KERNELS_LAYER = 4;
const KERNELS = "lib/backends/";

// ---------------------------------------------------------------------------------------------
// Reading the sources

/** Repository-relative paths of every .ts file under lib/ and datasets/, and mod.ts. */
function sourceFiles(): string[] {
  const out: string[] = ["mod.ts"];
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(new URL(dir, ROOT))) {
      const path = `${dir}${entry.name}`;
      if (entry.isDirectory) walk(`${path}/`);
      else if (entry.isFile && entry.name.endsWith(".ts")) out.push(path);
    }
  };
  walk("lib/");
  walk("datasets/");
  return out.sort();
}

interface Token {
  kind: "name" | "string" | "punct" | "other";
  text: string;
}

/** Words after which a `/` starts a regular expression rather than a division. */
const BEFORE_EXPRESSION = new Set([
  "return",
  "typeof",
  "instanceof",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "case",
  "do",
  "else",
  "yield",
  "await",
]);

/**
 * Splits TypeScript source into the tokens the import scan needs: names, string literals (with
 * their value), punctuation, and opaque tokens for numbers, regular expressions and the text of
 * template literals. Comments are dropped, so examples in doc comments are not imports.
 */
function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  // For each open `${` of a template literal, the brace depth at which it closes.
  const templateDepths: number[] = [];
  let depth = 0;
  let i = 0;
  const n = src.length;

  const regexAllowed = () => {
    const last = tokens[tokens.length - 1];
    if (last === undefined) return true;
    if (last.kind === "punct") return !")]}".includes(last.text);
    if (last.kind === "name") return BEFORE_EXPRESSION.has(last.text);
    return false;
  };
  // Reads template text from i (just after "`" or a closing "}") to "`" or "${".
  const templateText = () => {
    while (i < n) {
      const c = src[i];
      if (c === "\\") i += 2;
      else if (c === "`") {
        i++;
        break;
      } else if (c === "$" && src[i + 1] === "{") {
        i += 2;
        templateDepths.push(depth);
        break;
      } else i++;
    }
    tokens.push({ kind: "other", text: "`" });
  };

  while (i < n) {
    const c = src[i];
    if (c === "/" && src[i + 1] === "/") {
      while (i < n && src[i] !== "\n") i++;
    } else if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      i = end < 0 ? n : end + 2;
    } else if (/\s/.test(c)) {
      i++;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      let value = "";
      while (j < n && src[j] !== c && src[j] !== "\n") {
        if (src[j] === "\\") {
          value += src[j + 1] ?? "";
          j += 2;
        } else value += src[j++];
      }
      tokens.push({ kind: "string", text: value });
      i = j + 1;
    } else if (c === "`") {
      i++;
      templateText();
    } else if (c === "}" && templateDepths.at(-1) === depth) {
      templateDepths.pop();
      i++;
      templateText();
    } else if (c === "/" && regexAllowed()) {
      let j = i + 1;
      let inClass = false;
      while (j < n && src[j] !== "\n") {
        if (src[j] === "\\") j++;
        else if (src[j] === "[") inClass = true;
        else if (src[j] === "]") inClass = false;
        else if (src[j] === "/" && !inClass) break;
        j++;
      }
      j++;
      while (j < n && /[a-z]/.test(src[j])) j++;
      tokens.push({ kind: "other", text: src.slice(i, j) });
      i = j;
    } else if (/[\p{ID_Start}$_]/u.test(c)) {
      let j = i + 1;
      while (j < n && /[\p{ID_Continue}$\u200c\u200d]/u.test(src[j])) j++;
      tokens.push({ kind: "name", text: src.slice(i, j) });
      i = j;
    } else if (/[0-9]/.test(c)) {
      let j = i + 1;
      while (j < n && /[\w.]/.test(src[j])) j++;
      tokens.push({ kind: "other", text: src.slice(i, j) });
      i = j;
    } else {
      if (c === "{") depth++;
      else if (c === "}") depth--;
      tokens.push({ kind: "punct", text: c });
      i++;
    }
  }
  return tokens;
}

/** The specifiers a module imports or re-exports, in order of appearance. */
function importSpecifiers(src: string): string[] {
  const t = tokenize(src);
  const specs: string[] = [];
  const is = (k: number, kind: Token["kind"], text?: string) =>
    t[k] !== undefined && t[k].kind === kind && (text === undefined || t[k].text === text);
  // From k, the string after the first `from` before the statement's end, if any.
  const fromClause = (k: number): string | undefined => {
    for (let j = k; j < t.length; j++) {
      if (is(j, "punct", ";")) return undefined;
      if (is(j, "name", "from") && is(j + 1, "string")) return t[j + 1].text;
    }
    return undefined;
  };
  for (let k = 0; k < t.length; k++) {
    if (is(k - 1, "punct", ".")) continue; // a property such as `x.import`
    if (is(k, "name", "import")) {
      if (is(k + 1, "punct", "(") && is(k + 2, "string")) specs.push(t[k + 2].text);
      else if (is(k + 1, "string")) specs.push(t[k + 1].text);
      else if (!is(k + 1, "punct", ".") && !is(k + 1, "punct", "(")) {
        const spec = fromClause(k + 1);
        if (spec !== undefined) specs.push(spec);
      }
    } else if (is(k, "name", "export")) {
      let j = k + 1;
      if (is(j, "name", "type")) j++;
      if (is(j, "punct", "*") || is(j, "punct", "{")) {
        const spec = fromClause(j);
        if (spec !== undefined) specs.push(spec);
      }
    }
  }
  return specs;
}

/** The repository-relative path a relative specifier of `from` points to. */
function resolve(from: string, spec: string): string {
  const url = new URL(spec, new URL(from, ROOT));
  return decodeURIComponent(url.pathname.slice(ROOT.pathname.length));
}

/** Every file and the repository files it imports through relative specifiers. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles()) {
    const src = Deno.readTextFileSync(new URL(file, ROOT));
    const targets = importSpecifiers(src)
      .filter((s) => s.startsWith("./") || s.startsWith("../"))
      .map((s) => resolve(file, s));
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

function unitOf(file: string): Unit | undefined {
  let best: Unit | undefined;
  let bestLength = -1;
  for (const unit of UNITS) {
    for (const p of unit.paths) {
      const match = p.endsWith("/") ? file.startsWith(p) : file === p;
      if (match && p.length > bestLength) {
        best = unit;
        bestLength = p.length;
      }
    }
  }
  return best;
}

const label = (file: string) => {
  const u = unitOf(file);
  return u === undefined ? `${file} (no layer)` : `${file} (layer ${u.layer}, ${u.name})`;
};

/** The arrows that break a rule, as "importer -> imported" with the reason. */
function violations(graph: Map<string, string[]>): Map<string, string> {
  const found = new Map<string, string>();
  for (const [file, targets] of graph) {
    const from = unitOf(file);
    for (const target of targets) {
      const to = unitOf(target);
      const arrow = `${file} -> ${target}`;
      if (from === undefined || to === undefined) {
        found.set(arrow, `${label(file)} → ${label(target)}: outside the layer table`);
        continue;
      }
      const allowed = from === to || to.layer < from.layer ||
        (to.layer === from.layer && (from.peers ?? []).includes(to.name));
      if (!allowed) {
        const way = to.layer > from.layer ? "upward" : "sideways";
        found.set(arrow, `${label(file)} → ${label(target)}: ${way}`);
      } else if (from.layer > KERNELS_LAYER && target.startsWith(KERNELS)) {
        found.set(arrow, `${label(file)} → ${label(target)}: kernels above the engine`);
      }
    }
  }
  return found;
}

/** Strongly connected components with more than one file, or a file importing itself. */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    indices.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!indices.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, indices.get(w)!));
    }
    if (low.get(v) === indices.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!indices.has(v)) visit(v);
  return out;
}

function reachable(graph: Map<string, string[]>, from: string): Set<string> {
  const seen = new Set<string>();
  const todo = [from];
  while (todo.length > 0) {
    for (const w of graph.get(todo.pop()!) ?? []) {
      if (!seen.has(w)) {
        seen.add(w);
        todo.push(w);
      }
    }
  }
  return seen;
}

// ---------------------------------------------------------------------------------------------
// The parser itself

Deno.test("the import scan reads every form of import and skips comments and strings", () => {
  const src = [
    `import * as tf from "@tensorflow/tfjs-core";`,
    `import "./side.ts";`,
    `import type { A, B } from "./types.ts";`,
    `import def, { c as d } from '../x.ts';`,
    `import {`,
    `  e,`,
    `  type F,`,
    `} from "./multi.ts";`,
    `export * from "./star.ts";`,
    `export type { G } from "./type_export.ts";`,
    `export { h } from "./named.ts";`,
    `export { local };`,
    `export const q = 1 / 2; const r = /["'\`]/g.test("x");`,
    `type T = typeof import("./type_position.ts");`,
    `const m = await import("./dynamic.ts"); const u = import.meta.url;`,
    `// import { no } from "./line_comment.ts";`,
    `/** @example`,
    ` * import { no } from "./doc_comment.ts";`,
    ` */`,
    'const s = `import { no } from "./template.ts" ${`nested ${\'import "./deep.ts"\'}`}`;',
    `const t = "export * from './string.ts'";`,
    `import { after } from "./after.ts";`,
  ].join("\n");
  assert.deepEqual(importSpecifiers(src), [
    "@tensorflow/tfjs-core",
    "./side.ts",
    "./types.ts",
    "../x.ts",
    "./multi.ts",
    "./star.ts",
    "./type_export.ts",
    "./named.ts",
    "./type_position.ts",
    "./dynamic.ts",
    "./after.ts",
  ]);
});

// ---------------------------------------------------------------------------------------------
// The layers

Deno.test("every source file belongs to one unit of the layer table", () => {
  const missing = sourceFiles().filter((f) => unitOf(f) === undefined);
  assert.deepEqual(missing, [], `add these files to UNITS in tests/architecture_test.ts`);
  for (const unit of UNITS) {
    for (const peer of unit.peers ?? []) {
      const p = UNITS.find((u) => u.name === peer);
      assert.ok(p && p.layer === unit.layer, `${unit.name}: peer ${peer} is not in its layer`);
    }
  }
});

Deno.test("no import points up a layer or sideways out of order, nor at the kernels from above the engine", () => {
  const found = violations(importGraph());
  const failures = [...found.values()];
  assert.deepEqual(failures, [], `imports that break the layers:\n  ${failures.join("\n  ")}`);
});

Deno.test("the files of lib/strategy/ import each other without cycles", () => {
  const graph = importGraph();
  const strategyCycles = cycles(graph).filter((c) => c.some((f) => f.startsWith("lib/strategy/")));
  assert.deepEqual(strategyCycles, [], `import cycles through lib/strategy/`);
  const fromContext = reachable(graph, "lib/strategy/context.ts");
  assert.ok(
    !fromContext.has("lib/strategy/template.ts"),
    "lib/strategy/context.ts reaches lib/strategy/template.ts through its imports",
  );
});

Deno.test("the layer check reports an upward arrow, a sideways one and a kernel import", () => {
  const graph = new Map<string, string[]>([
    ["lib/nn/module.ts", ["lib/strategy/context.ts", "lib/random.ts"]],
    ["lib/data/dataset.ts", ["lib/benchmarks/classic.ts"]],
    ["lib/metrics/loss.ts", ["lib/backends/fused.ts", "lib/backend.ts"]],
    ["lib/models/mlp.ts", ["lib/nn/layers.ts"]],
  ]);
  assert.deepEqual([...violations(graph).keys()], [
    "lib/nn/module.ts -> lib/strategy/context.ts",
    "lib/data/dataset.ts -> lib/benchmarks/classic.ts",
    "lib/metrics/loss.ts -> lib/backends/fused.ts",
  ]);
  assert.deepEqual(
    cycles(new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]])),
    [["a", "b", "c"]],
  );
});
