/**
 * Small helpers shared by the command-line entry points.
 *
 * @module
 */

/** Parses an integer flag, with an error naming the flag and the value. */
export function intFlag(
  name: string,
  value: string | undefined,
  fallback: number,
  min = 1,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new RangeError(`--${name} must be an integer ≥ ${min}, got "${value}"`);
  }
  return n;
}

/** Parses a number flag. */
export function numberFlag(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new RangeError(`--${name} must be a number, got "${value}"`);
  return n;
}

/** Parses a comma-separated list of positive integers (e.g. `--hidden 400,400`). */
export function intListFlag(name: string, value: string | undefined, fallback: number[]): number[] {
  if (value === undefined) return fallback;
  const list = value.split(",").map((s) => Number(s.trim()));
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new RangeError(
      `--${name} must be a comma-separated list of positive integers, got "${value}"`,
    );
  }
  return list;
}

/** Formats an accuracy matrix as an aligned text table. */
export function formatMatrix(matrix: number[][], rowLabel = "after exp", colLabel = "exp"): string {
  const cols = Math.max(0, ...matrix.map((r) => r.length));
  const head = [
    rowLabel.padEnd(10),
    ...Array.from({ length: cols }, (_, j) => `${colLabel} ${j}`.padStart(7)),
  ];
  const lines = [head.join(" "), "-".repeat(head.join(" ").length)];
  matrix.forEach((row, i) => {
    lines.push(
      [
        String(i).padEnd(10),
        ...row.map((v) => (Number.isFinite(v) ? v.toFixed(4) : "-").padStart(7)),
      ]
        .join(" "),
    );
  });
  return lines.join("\n");
}
