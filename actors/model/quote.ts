/**
 * What a call will be routed to and the most it can cost, known before making it: the
 * supervisor reserves `worstCaseCostUsd` against the budget, then makes the call.
 */
import { estimateTokens } from './estimate-tokens.ts';
import type { ModelCallRequest } from './model-client.ts';
import { priceOf, worstCaseCostOf, type PricingTable } from './pricing.ts';
import { resolveRoute, type Routing } from './routing.ts';
import { ModelErrorReason, ModelTerminalError } from './errors.ts';

export interface CallQuote {
  model: string;
  /** The effective `max_tokens` (route's, clamped by the request's). */
  maxTokens: number;
  /** Estimated input tokens (see `estimateTokens`). */
  inputTokens: number;
  /** Input at the dearer of input and cache-write price, plus `maxTokens` at output price. */
  worstCaseCostUsd: number;
  /** The dearest price of one input token (input or cache write), USD. */
  inputUsdPerToken: number;
  /** The price of one output token, USD. */
  outputUsdPerToken: number;
}

/** Quotes `request`. Throws a terminal `unknown_model` error when the routed model has no price. */
export function quoteCall(
  request: Pick<ModelCallRequest, 'role' | 'system' | 'tools' | 'messages' | 'maxTokens'>,
  routing: Routing,
  pricing: Readonly<PricingTable>,
): CallQuote {
  const route = resolveRoute(routing, request.role, request.maxTokens);
  const price = priceOf(route.model, pricing);
  if (!price) throw new ModelTerminalError(ModelErrorReason.unknownModel, `no price for model ${route.model}`);
  const inputTokens = estimateTokens(request);
  return {
    model: route.model,
    maxTokens: route.maxTokens,
    inputTokens,
    worstCaseCostUsd: worstCaseCostOf(inputTokens, route.maxTokens, price),
    inputUsdPerToken: Math.max(price.input, price.cacheWrite) / 1e6,
    outputUsdPerToken: price.output / 1e6,
  };
}
