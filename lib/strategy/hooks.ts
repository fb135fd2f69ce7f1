/**
 * The plugins' hooks, collected by name and called in the order the plugins were given.
 *
 * @module
 */
import type { StrategyContext } from "./context.ts";
import {
  EVAL_HOOKS,
  type Hook,
  type HookName,
  type Plugin,
  SYNC_HOOKS,
  TRAIN_HOOKS,
} from "./plugin.ts";
import type { PluginDeclaration } from "../engine/step.ts";
import { closest } from "../options.ts";

const HOOK_NAMES: ReadonlySet<string> = new Set<string>([...TRAIN_HOOKS, ...EVAL_HOOKS]);

/** A name shaped like a lifecycle hook (`beforeX`, `afterX`): a misspelt one is never called. */
const HOOK_SHAPE = /^(before|after)[A-Z]/;

/**
 * Throws when `key`, a function of `plugin`, looks like a hook but is none: the strategy would
 * never call it, and the plugin would silently do nothing there.
 */
function checkHookName(plugin: Plugin, key: string): void {
  if (HOOK_NAMES.has(key) || !HOOK_SHAPE.test(key)) return;
  const names = [...HOOK_NAMES];
  const near = closest(key, names);
  throw new TypeError(
    `Plugin ${JSON.stringify(pluginName(plugin))} has a function ${JSON.stringify(key)}, which ` +
      `is not a lifecycle hook ` +
      (near !== undefined
        ? `(did you mean ${JSON.stringify(near)}?)`
        : `(the hooks are ${names.join(", ")}; name helpers otherwise)`),
  );
}

/** Own and inherited property names of `obj` (class methods live on the prototypes). */
function keysOf(obj: object): string[] {
  const keys = Object.keys(Object.getOwnPropertyDescriptors(obj));
  for (
    let p = Object.getPrototypeOf(obj);
    p && p !== Object.prototype;
    p = Object.getPrototypeOf(p)
  ) {
    keys.push(...Object.getOwnPropertyNames(p));
  }
  return keys;
}

/**
 * True when `key` is an accessor (a getter) on `obj` or its prototypes: not a hook, and not read
 * while collecting, since a getter may compute (e.g. read a tensor back from the device).
 */
function isAccessor(obj: object, key: string): boolean {
  for (let p: object | null = obj; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    const d = Object.getOwnPropertyDescriptor(p, key);
    if (d) return d.get !== undefined || d.set !== undefined;
  }
  return false;
}

/** A plugin's name as shown in errors and plans. */
export function pluginName(p: Plugin): string {
  return p.name ?? "(unnamed)";
}

/** The hooks of a list of plugins, by name. */
export class Hooks {
  #byName = new Map<HookName, { plugin: Plugin; fn: Hook }[]>();

  constructor(readonly plugins: readonly Plugin[]) {
    this.collect();
  }

  /**
   * Reads the plugins' hooks again (a plugin may have gained or lost one since). A function
   * named like a hook that is none (`beforeBackwards`) is a `TypeError` naming the closest hook.
   */
  collect(): void {
    this.#byName.clear();
    for (const plugin of this.plugins) {
      for (const key of keysOf(plugin)) {
        if (isAccessor(plugin, key)) continue;
        const fn = (plugin as Record<string, unknown>)[key];
        if (typeof fn !== "function") continue;
        checkHookName(plugin, key);
        if (!HOOK_NAMES.has(key)) continue;
        const name = key as HookName;
        let list = this.#byName.get(name);
        if (!list) this.#byName.set(name, list = []);
        if (!list.some((h) => h.plugin === plugin)) list.push({ plugin, fn: fn as Hook });
      }
    }
  }

  /** Awaits hook `name` of every plugin that has it, in order. */
  async call(name: HookName, ctx: StrategyContext): Promise<void> {
    const list = this.#byName.get(name);
    if (!list) return;
    for (const { fn, plugin } of list) await fn.call(plugin, ctx);
  }

  /** Calls hook `name`, which runs inside the gradient tape and so must not be async. */
  callSync(name: HookName, ctx: StrategyContext): void {
    const list = this.#byName.get(name);
    if (!list) return;
    for (const { fn, plugin } of list) {
      const r = fn.call(plugin, ctx) as unknown;
      if (r && typeof (r as Promise<void>).then === "function") {
        throw new TypeError(
          `Plugin ${pluginName(plugin)}'s ${name} returned a Promise: hooks inside the gradient ` +
            `tape (${[...SYNC_HOOKS].join(", ")}) must be synchronous`,
        );
      }
    }
  }

  /** What each plugin with hooks inside the tape declares, for choosing the step. */
  declarations(ctx: StrategyContext): PluginDeclaration[] {
    return this.plugins.flatMap((plugin) => {
      const inTape = [...SYNC_HOOKS].filter((h) =>
        this.#byName.get(h)?.some((e) => e.plugin === plugin)
      );
      if (inTape.length === 0) return [];
      const declared = plugin.tapeFree;
      const tapeFree = typeof declared === "function" ? declared.call(plugin, ctx) : !!declared;
      return [{ name: pluginName(plugin), inTape, tapeFree }];
    });
  }
}
