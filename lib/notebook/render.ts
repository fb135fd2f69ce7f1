/**
 * Rendering: Observable Plot on a server-side DOM (linkedom) to an SVG string, wrapped in a
 * {@link Figure} that shows inline in Jupyter, converts to PNG (resvg, loaded on first use) and
 * saves atomically.
 *
 * Output is deterministic: fixed sizes, generic font families, no generated ids.
 *
 * @module
 */
import * as Plot from "@observablehq/plot";
import { parseHTML } from "linkedom";
import { createRequire } from "node:module";
import { JUPYTER_DISPLAY, type MediaBundle } from "./display.ts";
import { checkOptions } from "../options.ts";

type ResvgModule = typeof import("@resvg/resvg-js");

const SVG_NS = "http://www.w3.org/2000/svg";
/** The first 8 bytes of every PNG file. */
export const PNG_SIGNATURE: readonly number[] = [137, 80, 78, 71, 13, 10, 26, 10];

/** Options of {@link Figure.toPNG} and of saving a `.png`. */
export interface PNGOptions {
  /** Pixels per SVG unit. @default 1 */
  scale?: number;
  /** Background colour (PNG only; the SVG carries its own white background). @default "white" */
  background?: string;
  /**
   * resvg font options (`fontFiles`, `defaultFontFamily`, ...). @default system fonts, with
   * "DejaVu Sans" as the default family on Linux
   */
  font?: Record<string, unknown>;
}

/** A rendered chart: an SVG string that shows inline in Jupyter and saves as SVG or PNG. */
export interface Figure {
  /** The standalone SVG document (with `xmlns`). */
  readonly svg: string;
  /** Width in SVG units (pixels at scale 1). */
  readonly width: number;
  /** Height in SVG units. */
  readonly height: number;
  /** What the figure shows, e.g. "accuracy curves"; the `text/plain` form. */
  readonly label: string;
  /** Rasterizes with resvg (loaded on first use; needs `--allow-ffi`). */
  toPNG(options?: PNGOptions): Uint8Array;
  /** Writes `.svg` or `.png` (chosen by extension) through a temporary file and a rename. */
  save(path: string, options?: PNGOptions): Promise<string>;
  /** The SVG string. */
  toString(): string;
  /** The Jupyter bundle: `image/svg+xml` and a `text/plain` fallback. */
  [JUPYTER_DISPLAY](): MediaBundle;
}

/** One entry of a legend drawn inside the SVG. */
export interface LegendEntry {
  /** Text of the entry. */
  label: string;
  /** CSS colour of its swatch ("none" for a text-only entry). */
  color: string;
  /** Swatch drawn before the label. @default "line" */
  shape?: "line" | "dashed" | "square";
}

/** What {@link renderPlot} adds around Plot's marks. */
export interface Decorations {
  /** The figure's `text/plain` description. */
  label: string;
  /** Bold title above the chart, in a band of {@link TITLE_HEIGHT} pixels. */
  title?: string | undefined;
  /** Legend drawn in the right margin (keep `marginRight` ≥ {@link legendWidth}). */
  legend?: readonly LegendEntry[] | undefined;
}

/** The little of the DOM that we use (Deno has no DOM types; linkedom provides the DOM). */
interface Element {
  readonly tagName: string;
  readonly outerHTML: string;
  readonly firstChild: Element | null;
  textContent: string | null;
  setAttribute(name: string, value: string): void;
  append(...nodes: Element[]): void;
}
interface Document {
  createElementNS(namespace: string, tag: string): Element;
}

/** Height of the band a title adds above the chart (within the figure's height). */
export const TITLE_HEIGHT = 28;

let sharedDocument: Document | undefined;

function svgDocument(): Document {
  const window = parseHTML("<!DOCTYPE html><html><body></body></html>");
  sharedDocument ??= (window as unknown as { document: Document }).document;
  return sharedDocument;
}

/** Room in pixels that a legend with these labels needs in the right margin. */
export function legendWidth(labels: readonly string[]): number {
  const longest = labels.reduce((n, l) => Math.max(n, l.length), 0);
  return Math.min(220, Math.max(70, 36 + 6 * longest));
}

function svgElement(doc: Document, tag: string, attrs: Record<string, string | number>): Element {
  const el = doc.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function drawLegend(
  doc: Document,
  svg: Element,
  entries: readonly LegendEntry[],
  width: number,
  marginTop: number,
): void {
  const left = width - legendWidth(entries.map((e) => e.label)) + 12;
  const g = svgElement(doc, "g", {
    "aria-label": "legend",
    "font-size": 10,
    "text-anchor": "start",
    transform: `translate(${left},${marginTop + 6})`,
  });
  entries.forEach((entry, i) => {
    const item = svgElement(doc, "g", { transform: `translate(0,${i * 16})` });
    const shape = entry.shape ?? "line";
    if (shape === "square") {
      item.append(
        svgElement(doc, "rect", { x: 0, y: -5, width: 16, height: 10, fill: entry.color }),
      );
    } else {
      const attrs: Record<string, string | number> = {
        x1: 0,
        x2: 16,
        y1: 0,
        y2: 0,
        stroke: entry.color,
        "stroke-width": 2,
      };
      if (shape === "dashed") attrs["stroke-dasharray"] = "4,3";
      item.append(svgElement(doc, "line", attrs));
    }
    const text = svgElement(doc, "text", { x: 22, y: 0, dy: "0.32em", fill: "currentColor" });
    text.textContent = entry.label;
    item.append(text);
    g.append(item);
  });
  svg.append(g);
}

/**
 * Runs `Plot.plot` on a server-side DOM and returns the SVG as a {@link Figure}, with an
 * optional title and legend drawn into the same SVG (Plot's own legends and titles are HTML).
 *
 * @example A bare line chart
 * ```ts
 * import * as Plot from "@observablehq/plot";
 * import { renderPlot } from "./render.ts";
 * const fig = renderPlot(
 *   { width: 300, height: 200, marks: [Plot.lineY([1, 3, 2])] },
 *   { label: "a line" },
 * );
 * console.assert(fig.svg.startsWith("<svg"));
 * ```
 */
export function renderPlot(options: Plot.PlotOptions, decorations: Decorations): Figure {
  const doc = svgDocument();
  const width = options.width ?? 640;
  const height = options.height ?? 400;
  const top = decorations.title ? TITLE_HEIGHT : 0;
  const node = Plot.plot({
    className: "perennial-plot",
    ...options,
    width,
    height: height - top,
    style: { fontFamily: "sans-serif", background: "white", color: "black" },
    document: doc as never,
  }) as unknown as Element;
  if (node.tagName.toLowerCase() !== "svg") {
    throw new Error(`Plot returned <${node.tagName}>: titles and legends must be drawn in the SVG`);
  }
  node.setAttribute("xmlns", SVG_NS);
  if (decorations.legend?.length) {
    drawLegend(doc, node, decorations.legend, width, options.marginTop ?? 20);
  }
  if (top) {
    // Plot puts the y-axis label at the very top: shift the whole chart down under the title.
    const chart = svgElement(doc, "g", { transform: `translate(0,${top})` });
    for (let child = node.firstChild; child; child = node.firstChild) chart.append(child);
    const title = svgElement(doc, "text", {
      "aria-label": "title",
      x: 10,
      y: 20,
      "font-size": 14,
      "font-weight": "bold",
      "text-anchor": "start",
      fill: "currentColor",
    });
    title.textContent = decorations.title!;
    node.append(title, chart);
    node.setAttribute("height", String(height));
    node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  }
  return figure(node.outerHTML, { width, height, label: decorations.label });
}

/**
 * Wraps an SVG string as a {@link Figure}.
 *
 * @example
 * ```ts
 * import { figure } from "./render.ts";
 * import { JUPYTER_DISPLAY } from "./display.ts";
 * const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>`;
 * const fig = figure(svg, { width: 10, height: 10, label: "empty" });
 * console.assert(fig[JUPYTER_DISPLAY]()["image/svg+xml"] === svg);
 * ```
 */
export function figure(
  svg: string,
  size: { width: number; height: number; label?: string },
): Figure {
  const label = size.label ?? "figure";
  const text = `Figure(${label}, ${size.width}×${size.height})`;
  return {
    svg,
    width: size.width,
    height: size.height,
    label,
    toPNG: (options?: PNGOptions) => svgToPNG(svg, options),
    async save(path: string, options?: PNGOptions): Promise<string> {
      const ext = path.slice(path.lastIndexOf(".")).toLowerCase();
      if (ext === ".svg") {
        await writeFileAtomic(path, new TextEncoder().encode(svg));
      } else if (ext === ".png") {
        await loadResvg();
        await writeFileAtomic(path, svgToPNG(svg, options));
      } else {
        throw new RangeError(`Cannot save a figure as "${path}": use a .svg or .png file name`);
      }
      return path;
    },
    toString: () => svg,
    [JUPYTER_DISPLAY]: () => ({ "image/svg+xml": svg, "text/plain": text }),
  };
}

let resvg: ResvgModule | undefined;

function describeLoadError(e: unknown): string {
  if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
    return "resvg is a native module: run with --allow-ffi (Jupyter kernels allow it)";
  }
  return `@resvg/resvg-js could not be loaded (${e instanceof Error ? e.message : String(e)})`;
}

/**
 * Loads resvg ahead of {@link Figure.toPNG}. `toPNG` loads it by itself when the package is
 * in a `node_modules` folder; call this first where it is not (e.g. no `nodeModulesDir`).
 */
export async function loadResvg(): Promise<void> {
  if (resvg) return;
  try {
    resvg = await import("@resvg/resvg-js");
  } catch (e) {
    throw new Error(`Cannot render PNG: ${describeLoadError(e)}`);
  }
}

function resvgSync(): ResvgModule {
  if (resvg) return resvg;
  try {
    resvg = createRequire(import.meta.url)("@resvg/resvg-js") as ResvgModule;
    return resvg;
  } catch (e) {
    throw new Error(
      `Cannot render PNG: ${describeLoadError(e)}; or call \`await loadResvg()\` first`,
    );
  }
}

/**
 * Rasterizes an SVG string to PNG bytes with resvg.
 *
 * @example
 * ```ts ignore
 * import { svgToPNG } from "./render.ts";
 * const png = svgToPNG(`<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>`);
 * console.assert(png[1] === 80); // "P"
 * ```
 */
export function svgToPNG(svg: string, options: PNGOptions = {}): Uint8Array {
  checkOptions("toPNG", options, { scale: "number", background: "string", font: "object" });
  const scale = options.scale ?? 1;
  if (!(scale > 0) || !Number.isFinite(scale)) {
    throw new RangeError(`PNG scale must be a positive number, got ${scale}`);
  }
  const { Resvg } = resvgSync();
  const renderer = new Resvg(svg, {
    background: options.background ?? "white",
    fitTo: scale === 1 ? { mode: "original" } : { mode: "zoom", value: scale },
    font: options.font ?? DEFAULT_FONT,
  });
  const png = renderer.render().asPng();
  return new Uint8Array(png.buffer, png.byteOffset, png.byteLength);
}

/** resvg resolves sans-serif to a serif face on Linux unless given a default family. */
const DEFAULT_FONT: Record<string, unknown> = Deno.build.os === "linux"
  ? { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" }
  : { loadSystemFonts: true };

let tempCounter = 0;

/**
 * Writes a file through a temporary sibling and a rename, so readers never see a partial file
 * and a failed write leaves no temporary behind.
 *
 * @example
 * ```ts ignore
 * import { writeFileAtomic } from "./render.ts";
 * await writeFileAtomic("chart.svg", new TextEncoder().encode("<svg/>"));
 * ```
 */
export async function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  const tmp = `${path}.${Deno.pid}.${++tempCounter}.tmp`;
  try {
    await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
