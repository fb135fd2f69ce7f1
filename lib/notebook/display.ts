/**
 * Showing results in a Deno Jupyter kernel, and something sensible in a terminal.
 *
 * Every figure and table of the notebook layer carries a `[Symbol.for("Jupyter.display")]()`
 * method that returns a MIME bundle: the kernel renders such an object inline when it is the
 * value of a cell, and {@link display} shows it from anywhere in a cell (e.g. inside a training
 * loop).
 *
 * @module
 */
import { checkOptions } from "../options.ts";

/** The key Deno's Jupyter kernel looks for: an object with this method renders as its bundle. */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display");

/** A Jupyter MIME bundle: media type → data (text, or base64 for images). */
export type MediaBundle = Record<string, string>;

/** An object that renders itself in Jupyter. */
export interface Displayable {
  /** The object's MIME bundle, e.g. `{ "text/html": ..., "text/plain": ... }`. */
  [JUPYTER_DISPLAY](): MediaBundle;
}

/** Options of {@link display}. */
export interface DisplayOptions {
  /**
   * Display id: showing again with the same id and `update: true` replaces the earlier output
   * (e.g. a curve redrawn after each experience).
   */
  id?: string;
  /** Replace the output shown earlier under `id` instead of adding one. @default false */
  update?: boolean;
}

interface JupyterApi {
  display(obj: unknown, options?: Record<string, unknown>): Promise<void>;
}

/** `Deno.jupyter` when running inside the kernel; its getter throws everywhere else. */
function jupyterApi(): JupyterApi | undefined {
  try {
    const api = (Deno as unknown as { jupyter?: JupyterApi }).jupyter;
    return api && typeof api.display === "function" ? api : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True inside a Deno Jupyter kernel (where `Deno.jupyter` exists).
 *
 * @example Outside a notebook
 * ```ts
 * import { isJupyter } from "./display.ts";
 * console.assert(isJupyter() === false);
 * ```
 */
export function isJupyter(): boolean {
  return jupyterApi() !== undefined;
}

/** True when `obj` has a `[Symbol.for("Jupyter.display")]` method. */
export function isDisplayable(obj: unknown): obj is Displayable {
  return obj !== null && (typeof obj === "object" || typeof obj === "function") &&
    typeof (obj as Record<symbol, unknown>)[JUPYTER_DISPLAY] === "function";
}

/**
 * Shows `obj`: in a Jupyter kernel through `Deno.jupyter.display` (figures as SVG, tables as
 * HTML); in a terminal it prints the bundle's `text/plain` part, or `console.log`s an object
 * that has no bundle. A displayable without `text/plain` prints nothing in a terminal.
 *
 * @example Printing a table's text form in a terminal
 * ```ts
 * import { display, JUPYTER_DISPLAY } from "./display.ts";
 * const shown = { [JUPYTER_DISPLAY]: () => ({ "text/plain": "a table" }) };
 * await display(shown); // prints "a table" outside Jupyter
 * ```
 */
export async function display(obj: unknown, options: DisplayOptions = {}): Promise<void> {
  checkOptions("display", options, { id: "string", update: "boolean" });
  const api = jupyterApi();
  if (api) {
    const opts: Record<string, unknown> = { raw: false, update: options.update ?? false };
    if (options.id !== undefined) opts.display_id = options.id;
    await api.display(obj, opts);
    return;
  }
  if (isDisplayable(obj)) {
    const text = obj[JUPYTER_DISPLAY]()["text/plain"];
    if (text !== undefined) console.log(text);
    return;
  }
  console.log(obj);
}
