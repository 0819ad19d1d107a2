/**
 * The model-call client: the only place troupe talks to a model provider. Statecharts never see
 * the SDK; they get {@link ModelCallResult}s and typed {@link ModelError}s.
 */
export {
  contentBlockSchema,
  modelCallRequestSchema,
  modelCallResultSchema,
  modelMessageSchema,
  modelUsageSchema,
  toolSpecSchema,
  type ContentBlock,
  type ModelCallOptions,
  type ModelCallRequest,
  type ModelCallResult,
  type ModelClient,
  type ModelMessage,
  type ModelUsage,
  type TextBlock,
  type ToolResultBlock,
  type ToolSpec,
  type ToolUseBlock,
} from './model-client.ts';
export { createAnthropicModelClient, type AnthropicModelClient } from './anthropic-client.ts';
export {
  anthropicOptionsSchema,
  compileAnthropicOptions,
  type AnthropicModelClientOptions,
  type CompiledAnthropicOptions,
  type ModelClientLogger,
} from './anthropic-options.ts';
export {
  CLIENT_RETRIED_REASONS,
  isMalformedToolUse,
  isModelError,
  MalformedToolUseError,
  ModelErrorReason,
  ModelRetryableError,
  ModelTerminalError,
  type ModelError,
  type ModelErrorDetails,
  type ToolUseProblem,
} from './errors.ts';
export {
  costOf,
  DEFAULT_PRICING,
  modelPriceSchema,
  priceOf,
  pricingTableSchema,
  worstCaseCostOf,
  type ModelPrice,
  type PricingTable,
} from './pricing.ts';
export { resolveRoute, routedModels, routeSchema, routingSchema, type Route, type Routing, type RoutingInput } from './routing.ts';
export { DEFAULT_CHARS_PER_TOKEN, estimateMessagesTokens, estimateTokens } from './estimate-tokens.ts';
export { quoteCall, type CallQuote } from './quote.ts';
export { ELIDED_PREFIX, trimContext, type TrimOptions, type TrimResult } from './context-trim.ts';
export { backoffDelay, retryAfterMsOf, type BackoffOptions } from './backoff.ts';
