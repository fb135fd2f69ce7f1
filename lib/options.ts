/**
 * Checks the options objects users pass to builders and constructors (`replay({ memSize })`,
 * `mlp({ hidden })`, `sgd({ lr })`, ...). Where nothing type-checks (a notebook cell, `deno run`
 * of plain JavaScript), a misspelt key would otherwise be ignored and the run would silently use
 * the default; here it is an error that names the builder, the key and the closest valid key.
 *
 * Only the kind of each value is checked (number, string, one of a set of strings, ...); ranges
 * (`memSize ≥ 1`, a fraction in [0, 1)) stay with the code that uses the value, as `RangeError`s.
 * This module imports nothing from the library, so every layer can use it.
 *
 * @example
 * ```ts
 * import { checkOptions, oneOf } from "./options.ts";
 * interface EwcOptions { lambda?: number; mode?: "separate" | "online" }
 * const spec = { lambda: "number", mode: oneOf("separate", "online") } as const;
 * checkOptions("ewc", { lambda: 5 } as EwcOptions, spec); // fine
 * try {
 *   checkOptions("ewc", { lamda: 5 } as EwcOptions, spec);
 * } catch (e) {
 *   console.assert((e as Error).message === 'ewc: unknown option "lamda" (did you mean "lambda"?)');
 * }
 * ```
 *
 * @module
 */

/** The value must be one of these strings. */
export interface OneOfKind {
  readonly oneOf: readonly string[];
}

/** The value must be an instance of this class (`label` names it in errors). */
export interface InstanceKind {
  // deno-lint-ignore no-explicit-any
  readonly instanceOf: abstract new (...args: any[]) => unknown;
  readonly label?: string;
}

/** The value may be any of these kinds. */
export interface AnyOfKind {
  readonly anyOf: readonly OptionKind[];
}

/**
 * What an option's value must be. `"integer"` is checked as a number: whether it is whole (and in
 * range) is the business of the code using it, which throws a `RangeError` naming the range.
 * `"object"` is any non-null object that is not an array; `"null"` is null alone (for options
 * where null means something, with {@link anyOf}); `"any"` accepts everything.
 */
export type OptionKind =
  | "number"
  | "integer"
  | "string"
  | "boolean"
  | "array"
  | "function"
  | "object"
  | "null"
  | "any"
  | OneOfKind
  | InstanceKind
  | AnyOfKind;

/**
 * The keys an options object of type `T` accepts, each with its kind. Every key of `T` must be
 * listed, so adding an option to an interface without adding it here is a type error.
 */
export type OptionSpec<T> = { readonly [K in keyof T]-?: OptionKind };

/** A kind: one of these strings. */
export function oneOf(...values: string[]): OneOfKind {
  return { oneOf: values };
}

/** A kind: an instance of `cls` (named `label` in errors; default: the class's name). */
export function instanceOf(
  // deno-lint-ignore no-explicit-any
  cls: abstract new (...args: any[]) => unknown,
  label?: string,
): InstanceKind {
  return { instanceOf: cls, label };
}

/** A kind: any of `kinds` (e.g. a number or an array of numbers). */
export function anyOf(...kinds: OptionKind[]): AnyOfKind {
  return { anyOf: kinds };
}

/**
 * Names people reach for from other libraries (Avalanche's snake_case, Keras, PyTorch), keyed by
 * their normalized form (see {@link normalize}), and the option they mean. One is suggested only
 * when the spec has that option, and only when edit distance finds nothing closer.
 */
const ALIASES: Readonly<Record<string, readonly string[]>> = {
  learningrate: ["lr"],
  lrate: ["lr"],
  trainmbsize: ["batchSize"],
  minibatchsize: ["batchSize"],
  evalmbsize: ["evalBatchSize"],
  trainepochs: ["epochs"],
  numepochs: ["epochs"],
  nepochs: ["epochs"],
  ewclambda: ["lambda"],
  silambda: ["lambda"],
  patternsperexp: ["patternsPerExperience"],
  maxitcnt: ["maxIterPerBatch"],
  hiddensizes: ["hidden"],
  hiddenlayers: ["hidden"],
  hiddenunits: ["hidden"],
  numclasses: ["classes", "nClasses", "outputs"],
  nclasses: ["classes", "outputs"],
  randomseed: ["seed"],
  temperature: ["T"],
};

/** Lower case without `_` and `-`, so `mem_size`, `MemSize` and `memsize` compare equal. */
function normalize(key: string): string {
  return key.toLowerCase().replace(/[_-]/g, "");
}

/** Optimal string alignment distance: insertions, deletions, substitutions, transpositions. */
function distance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) d.push([i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The candidate closest to `word` (ignoring case, `_` and `-`), or undefined when none is close.
 * In order: the same name but for case and separators; a candidate that begins or ends with the
 * word, or that the word begins or ends with (`decay` for `decayFactor`, at least 3 letters);
 * one within a third of the longer word's length in edits, rounded (at least one). Fewer edits first, then
 * the earlier candidate. Known synonyms from other libraries ({@link ALIASES}) are the fallback.
 *
 * @example
 * ```ts
 * import { closest } from "./options.ts";
 * console.assert(closest("memorySize", ["model", "memSize"]) === "memSize");
 * console.assert(closest("mem_size", ["model", "memSize"]) === "memSize");
 * console.assert(closest("decay", ["lambda", "decayFactor"]) === "decayFactor");
 * console.assert(closest("zzz", ["model", "memSize"]) === undefined);
 * ```
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const w = normalize(word);
  let best: string | undefined;
  let bestRank = Infinity;
  for (const c of candidates) {
    const n = normalize(c);
    const d = distance(w, n);
    const [short, long] = w.length <= n.length ? [w, n] : [n, w];
    const affix = short.length >= 3 && (long.startsWith(short) || long.endsWith(short));
    const near = d <= Math.max(1, Math.round(long.length / 3));
    // Tiers first (exact, affix, near), then edits: a shared stem beats a lookalike.
    const tier = d === 0 ? 0 : affix ? 1 : near ? 2 : -1;
    if (tier < 0) continue;
    const rank = tier * 1e6 + d;
    if (rank < bestRank) {
      best = c;
      bestRank = rank;
    }
  }
  return best ?? ALIASES[w]?.find((a) => candidates.includes(a));
}

const quote = (s: string) => JSON.stringify(s);

/** "a" or "an" as the noun is spoken: an Adam, a Uint8Array, an SGD (acronyms by letter name). */
function article(noun: string): string {
  const vowelSound = /^[A-Z]{2,}/.test(noun)
    ? /^[AEFHILMNORSX]/.test(noun)
    : /^[aeiou]/i.test(noun) && !/^(uint|uni|use|eu)/i.test(noun);
  return vowelSound ? `an ${noun}` : `a ${noun}`;
}

/**
 * A value as an error message shows it: `the string "1000"`, `the number 5`, `true`, `null`,
 * `an array of 2 items`, `a function`, `an object`, `a Float32Array`.
 */
export function describeValue(v: unknown): string {
  switch (typeof v) {
    case "string": {
      const s = v.length > 60 ? `${v.slice(0, 57)}...` : v;
      return `the string ${quote(s)}`;
    }
    case "number":
      return `the number ${v}`;
    case "bigint":
      return `the bigint ${v}n`;
    case "boolean":
    case "undefined":
      return String(v);
    case "symbol":
      return "a symbol";
    case "function":
      return v.name ? `the function ${v.name}` : "a function";
  }
  if (v === null) return "null";
  if (Array.isArray(v)) return `an array of ${v.length} item${v.length === 1 ? "" : "s"}`;
  const ctor = Object.getPrototypeOf(v)?.constructor;
  const name = typeof ctor === "function" ? ctor.name : "";
  return name && name !== "Object" ? article(name) : "an object";
}

/** What a kind expects, as the error message says it: "a number", "true or false", ... */
export function describeKind(kind: OptionKind): string {
  if (typeof kind === "string") {
    switch (kind) {
      case "boolean":
        return "true or false";
      case "any":
        return "anything";
      case "object":
        return "an object";
      case "null":
        return "null";
      default:
        return article(kind);
    }
  }
  if ("oneOf" in kind) {
    const q = kind.oneOf.map(quote);
    return q.length === 2 ? q.join(" or ") : `one of ${q.join(", ")}`;
  }
  if ("instanceOf" in kind) return article(kind.label ?? kind.instanceOf.name);
  return kind.anyOf.map(describeKind).join(" or ");
}

/** Whether `v` is of kind `kind`. */
export function isKind(v: unknown, kind: OptionKind): boolean {
  if (typeof kind === "string") {
    switch (kind) {
      case "number":
      case "integer":
        return typeof v === "number";
      case "string":
        return typeof v === "string";
      case "boolean":
        return typeof v === "boolean";
      case "array":
        return Array.isArray(v);
      case "function":
        return typeof v === "function";
      case "object":
        return typeof v === "object" && v !== null && !Array.isArray(v);
      case "null":
        return v === null;
      case "any":
        return true;
    }
  }
  if ("oneOf" in kind) return typeof v === "string" && kind.oneOf.includes(v);
  if ("instanceOf" in kind) return v instanceof kind.instanceOf;
  return kind.anyOf.some((k) => isKind(v, k));
}

/** The `oneOf` sets a kind allows (to suggest the closest value). */
function allowedStrings(kind: OptionKind): string[] {
  if (typeof kind === "string" || "instanceOf" in kind) return [];
  if ("oneOf" in kind) return [...kind.oneOf];
  return kind.anyOf.flatMap(allowedStrings);
}

/**
 * Checks the value of one option (`who: key must be <kind>, got <value>`): a `TypeError`, or a
 * `RangeError` for a string outside a {@link oneOf} set (with the closest one suggested).
 * Undefined is accepted (it means the default). Returns the value.
 *
 * @example
 * ```ts
 * import { checkKind } from "./options.ts";
 * checkKind("ewc", "lambda", 5, "number");
 * let message = "";
 * try { checkKind("ewc", "lambda", "1000", "number"); } catch (e) { message = (e as Error).message; }
 * console.assert(message === 'ewc: lambda must be a number, got the string "1000"');
 * ```
 */
export function checkKind<V>(who: string, key: string, value: V, kind: OptionKind): V {
  if (value === undefined || isKind(value, kind)) return value;
  let message = `${who}: ${key} must be ${describeKind(kind)}, got ${describeValue(value)}`;
  const allowed = allowedStrings(kind);
  if (typeof value === "string" && allowed.length > 0) {
    // A string outside the set is a value out of range, as JavaScript's own RangeError means.
    const near = closest(value, allowed);
    if (near !== undefined) message += ` (did you mean ${quote(near)}?)`;
    throw new RangeError(message);
  }
  throw new TypeError(message);
}

/**
 * Checks an options object against the keys `spec` accepts and their kinds, and returns it.
 *
 * - A key not in `spec` is a `TypeError` naming the builder, the key and the closest valid key
 *   (`replay: unknown option "memorySize" (did you mean "memSize"?)`); when no key is close, the
 *   message lists the valid ones. Every unknown key is reported at once.
 * - A value of the wrong kind is a `TypeError` (`ewc: lambda must be a number, got the string
 *   "1000"`); a string outside a {@link oneOf} set is a `RangeError`. Undefined values are
 *   accepted: they mean the default.
 * - `opts` itself may be undefined (every option left at its default); anything else that is
 *   not an object (an array, a number) is a `TypeError`.
 *
 * Only own enumerable keys are read, as a spread (`{ ...opts }`) would read them.
 *
 * @param who the builder or constructor the user called, as errors name it: `"replay"`.
 * @param opts the options object the user passed.
 * @param spec every key accepted, with its kind.
 *
 * @example
 * ```ts
 * import { checkOptions } from "./options.ts";
 * interface SgdOptions { lr?: number; momentum?: number; nesterov?: boolean }
 * const spec = { lr: "number", momentum: "number", nesterov: "boolean" } as const;
 * const opts: SgdOptions = checkOptions("sgd", { lr: 0.1 }, spec);
 * let message = "";
 * try { checkOptions("sgd", { learningRate: 0.1 } as SgdOptions, spec); }
 * catch (e) { message = (e as Error).message; }
 * console.assert(message === 'sgd: unknown option "learningRate" (did you mean "lr"?)');
 * ```
 */
export function checkOptions<T>(who: string, opts: T, spec: NoInfer<OptionSpec<T>>): T {
  if (opts === undefined) return opts;
  if (opts === null || typeof opts !== "object" || Array.isArray(opts)) {
    throw new TypeError(`${who} expects an options object, got ${describeValue(opts)}`);
  }
  const kinds = spec as Readonly<Record<string, OptionKind>>;
  const valid = Object.keys(kinds);
  const keys = Object.keys(opts);
  const unknown = keys.filter((k) => !Object.hasOwn(kinds, k));
  if (unknown.length > 0) {
    let listed = false;
    const parts = unknown.map((k) => {
      const near = closest(k, valid);
      if (near !== undefined) return `${quote(k)} (did you mean ${quote(near)}?)`;
      listed = true;
      return quote(k);
    });
    let message = `${who}: unknown option${unknown.length > 1 ? "s" : ""} ${parts.join(", ")}`;
    if (listed) message += `; valid options: ${valid.map(quote).join(", ")}`;
    throw new TypeError(message);
  }
  const record = opts as Record<string, unknown>;
  for (const k of keys) checkKind(who, k, record[k], kinds[k]);
  return opts;
}
