/**
 * Model prices and the cost of a call. Prices are USD per million tokens; cache writes (the 5-minute
 * ephemeral cache) and cache reads are priced apart from plain input, as the Anthropic API bills them.
 */
import { z } from 'zod';
import type { ModelUsage } from './model-client.ts';

/** USD per million tokens of one model. */
export const modelPriceSchema = z
  .object({
    input: z.number().min(0),
    output: z.number().min(0),
    /** Writing a prompt-cache entry (5-minute TTL). */
    cacheWrite: z.number().min(0),
    /** Reading a prompt-cache entry. */
    cacheRead: z.number().min(0),
  })
  .strict();
export type ModelPrice = z.infer<typeof modelPriceSchema>;

/** Model name -> price. */
export const pricingTableSchema = z.record(z.string().min(1), modelPriceSchema);
export type PricingTable = z.infer<typeof pricingTableSchema>;

const opus4: ModelPrice = { input: 15, output: 75, cacheWrite: 18.75, cacheRead: 1.5 };
const opus45: ModelPrice = { input: 5, output: 25, cacheWrite: 6.25, cacheRead: 0.5 };
const sonnet4: ModelPrice = { input: 3, output: 15, cacheWrite: 3.75, cacheRead: 0.3 };
const haiku45: ModelPrice = { input: 1, output: 5, cacheWrite: 1.25, cacheRead: 0.1 };

/**
 * Anthropic's public list prices (standard tier, USD per million tokens; cache write = 1.25 x input,
 * cache read = 0.1 x input). Opus 4 and 4.1: 15 / 75; Opus 4.5 and 4.6: 5 / 25; Sonnet 4, 4.5
 * and 4.6: 3 / 15 (prompts up to 200k tokens); Haiku 4.5: 1 / 5. Check them against
 * https://www.anthropic.com/pricing before relying on them, and pass your own `pricing` for any
 * other model (it is merged over these).
 */
export const DEFAULT_PRICING: Readonly<PricingTable> = Object.freeze({
  'claude-opus-4-0': opus4,
  'claude-opus-4-20250514': opus4,
  'claude-opus-4-1': opus4,
  'claude-opus-4-1-20250805': opus4,
  'claude-opus-4-5': opus45,
  'claude-opus-4-5-20251101': opus45,
  'claude-opus-4-6': opus45,
  'claude-sonnet-4-0': sonnet4,
  'claude-sonnet-4-20250514': sonnet4,
  'claude-sonnet-4-5': sonnet4,
  'claude-sonnet-4-5-20250929': sonnet4,
  'claude-sonnet-4-6': sonnet4,
  'claude-haiku-4-5': haiku45,
  'claude-haiku-4-5-20251001': haiku45,
});

// Prices are scaled to integer micro-USD per million tokens so the sum is exact integer
// arithmetic; the single division at the end gives the double nearest the exact cost.
const micro = (usdPerMillion: number) => Math.round(usdPerMillion * 1e6);

/**
 * The USD cost of `usage` at `price`: input, output, cache writes and cache reads each at their
 * own rate. Pure and exact up to one final rounding (prices are taken to 1e-6 USD per million).
 */
export function costOf(usage: ModelUsage, price: ModelPrice): number {
  const microUsdTimesMillion =
    usage.inputTokens * micro(price.input) +
    usage.outputTokens * micro(price.output) +
    usage.cacheCreationInputTokens * micro(price.cacheWrite) +
    usage.cacheReadInputTokens * micro(price.cacheRead);
  return microUsdTimesMillion / 1e12;
}

/**
 * The most a call can cost: every input token at the dearer of plain input and cache write, and
 * `maxTokens` of output. What a budget must reserve before the call.
 */
export function worstCaseCostOf(inputTokens: number, maxTokens: number, price: ModelPrice): number {
  const inputRate = Math.max(micro(price.input), micro(price.cacheWrite));
  return (inputTokens * inputRate + maxTokens * micro(price.output)) / 1e12;
}

/** The price of `model`, or `undefined` when the table does not list it. */
export function priceOf(model: string, table: Readonly<PricingTable>): ModelPrice | undefined {
  return Object.hasOwn(table, model) ? table[model] : undefined;
}
