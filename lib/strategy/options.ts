/**
 * The options every strategy accepts, for checking what users pass (see `lib/options.ts`):
 * `Strategy`'s constructor checks its own, and each strategy builder checks them together with
 * its plugin's (`replay` = these ∪ the replay plugin's), so a typo gets a did-you-mean over both.
 *
 * The spec is checked against `StrategyOptions` where builders call `checkOptions` with it (a key
 * missing here is a type error there); this file does not import the template, which imports it.
 *
 * @module
 */
import { checkOptions, type OptionKind } from "../options.ts";

/** Each key of `StrategyOptions` with its kind. */
export const STRATEGY_OPTIONS = {
  model: "object",
  optimizer: "object",
  criterion: "function",
  epochs: "integer",
  batchSize: "integer",
  evalBatchSize: "integer",
  plugins: "array",
  evaluator: "object",
  seed: "number",
  shuffle: "boolean",
  dropLast: "boolean",
  evalEvery: "integer",
  pevalMode: { oneOf: ["epoch", "iteration"] },
  name: "string",
} as const satisfies Record<string, OptionKind>;

/**
 * Checks a strategy's options (`who`: the class or builder the user called). Undefined passes,
 * so the constructor's own message for a missing model still comes first.
 */
export function checkStrategyOptions(who: string, opts: unknown): void {
  checkOptions(who, opts as Record<keyof typeof STRATEGY_OPTIONS, unknown>, STRATEGY_OPTIONS);
}
