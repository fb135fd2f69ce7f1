/**
 * A sweep's progress: runs done / total, failed, running, time and ETA, as one line redrawn in a
 * terminal, one output updated in place in Jupyter, or a line per change elsewhere (CI logs).
 *
 * @module
 */
import { formatDuration } from "../loggers/progress.ts";
import { jupyter } from "../loggers/progress_logger.ts";
import type { EngineProgress } from "./local.ts";

const encoder = new TextEncoder();
let displays = 0;

/** How progress is shown; `"auto"`: Jupyter in the kernel, terminal on a terminal, else lines. */
export type SweepProgressMode = "auto" | "terminal" | "jupyter" | "lines" | "off";

/** The line of a progress report. */
export function progressLine(name: string, p: EngineProgress): string {
  const eta = p.done + p.failed === p.total
    ? formatDuration(p.elapsed)
    : `ETA ${Number.isFinite(p.eta) ? formatDuration(p.eta) : "?"}`;
  return `sweep ${name}: ${p.done}/${p.total} done` +
    (p.failed ? `, ${p.failed} failed` : "") +
    (p.running ? `, ${p.running} running` : "") + ` · ${formatDuration(p.elapsed)} · ${eta}`;
}

/** A progress callback for the engines (`onProgress`) that shows the reports in `mode`. */
export function sweepProgress(
  name: string,
  mode: SweepProgressMode = "auto",
  write: (s: string) => void = (s) => void Deno.stderr.writeSync(encoder.encode(s)),
): (p: EngineProgress) => Promise<void> {
  const j = jupyter();
  let terminal = false;
  try {
    terminal = Deno.stderr.isTerminal();
  } catch { /* no terminal */ }
  const m = mode === "auto" ? (j ? "jupyter" : terminal ? "terminal" : "lines") : mode;
  if (m === "jupyter" && !j) {
    throw new Error('sweep progress "jupyter" needs the Deno Jupyter kernel');
  }
  const notes: string[] = [];
  let id: string | undefined;
  let lastLine = "";
  return async (p: EngineProgress) => {
    if (m === "off") return;
    const o = p.last?.outcome;
    if (o && o.state === "failed") {
      notes.push(`${p.last!.label} (seed ${p.last!.seed}) failed: ${o.error}`);
    }
    const line = progressLine(name, p);
    if (m === "jupyter") {
      const body = [...notes, line].join("\n");
      const esc = body.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
      const bundle = { "text/plain": body, "text/html": `<pre style="margin:0">${esc}</pre>` };
      if (id === undefined) {
        id = `perennial-sweep-progress-${Date.now()}-${displays++}`;
        await j!.display(bundle, { raw: true, display_id: id });
      } else await j!.display(bundle, { raw: true, update: true, display_id: id });
    } else if (m === "terminal") {
      if (o && o.state === "failed") write(`\r\x1b[K${notes[notes.length - 1]}\n`);
      write(`\r${line}\x1b[K${p.done + p.failed === p.total ? "\n" : ""}`);
    } else {
      if (o && o.state === "failed") write(`${notes[notes.length - 1]}\n`);
      const key = line.replace(/ · .*$/, "");
      if (key !== lastLine) write(`${line}\n`);
      lastLine = key;
    }
  };
}
