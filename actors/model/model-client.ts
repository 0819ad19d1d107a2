/**
 * The provider-neutral model-call interface. The runtime calls models only through
 * {@link ModelClient}; the Anthropic implementation lives in `anthropic-client.ts` and a second
 * provider would sit next to it. Requests and results are JSON-safe: they are persisted in
 * snapshots and the effect ledger, so each has a zod schema and its type is inferred from it.
 */
import { z } from 'zod';
import type { CallQuote } from './quote.ts';

/** A tool offered to the model: its name, what it does, and a JSON Schema of its input. */
export const toolSpecSchema = z.object({
  name: z.string().regex(/^[a-zA-Z0-9_-]{1,128}$/),
  description: z.string(),
  /** A JSON Schema object (`{ type: 'object', ... }`). */
  inputSchema: z.record(z.string(), z.unknown()),
});
export type ToolSpec = z.infer<typeof toolSpecSchema>;

export const textBlockSchema = z.object({ type: z.literal('text'), text: z.string() });
export const toolUseBlockSchema = z.object({
  type: z.literal('tool_use'),
  id: z.string(),
  name: z.string(),
  input: z.unknown(),
});
export const toolResultBlockSchema = z.object({
  type: z.literal('tool_result'),
  tool_use_id: z.string(),
  content: z.string(),
  is_error: z.boolean().optional(),
});

/** A block of a message, in the Anthropic Messages API shape (a subset every provider can map). */
export const contentBlockSchema = z.discriminatedUnion('type', [textBlockSchema, toolUseBlockSchema, toolResultBlockSchema]);
export type ContentBlock = z.infer<typeof contentBlockSchema>;
export type TextBlock = z.infer<typeof textBlockSchema>;
export type ToolUseBlock = z.infer<typeof toolUseBlockSchema>;
export type ToolResultBlock = z.infer<typeof toolResultBlockSchema>;

export const modelMessageSchema = z.object({
  role: z.enum(['user', 'assistant']),
  content: z.union([z.string(), z.array(contentBlockSchema)]),
});
/** One turn of the conversation. */
export type ModelMessage = z.infer<typeof modelMessageSchema>;

/** What a step asks of a model. */
export const modelCallRequestSchema = z.object({
  /** Step role (`agent`, `plan`, `format`, ...): selects the model and `max_tokens` via routing. */
  role: z.string().min(1),
  system: z.string(),
  tools: z.array(toolSpecSchema),
  messages: z.array(modelMessageSchema).min(1),
  /** Clamp: the effective `max_tokens` is `min(route's maxTokens, maxTokens)`. */
  maxTokens: z.number().int().positive().optional(),
});
export type ModelCallRequest = z.infer<typeof modelCallRequestSchema>;

/** Token counts of one call, cache reads and writes apart from plain input. */
export const modelUsageSchema = z.object({
  inputTokens: z.number().int().min(0),
  outputTokens: z.number().int().min(0),
  cacheCreationInputTokens: z.number().int().min(0),
  cacheReadInputTokens: z.number().int().min(0),
});
export type ModelUsage = z.infer<typeof modelUsageSchema>;

/** The outcome of a successful call: the assistant's content plus accounting. */
export const modelCallResultSchema = z.object({
  content: z.array(contentBlockSchema),
  /** `end_turn`, `tool_use`, `max_tokens`, ... as the provider reported it. */
  stopReason: z.string().nullable(),
  /** The model the call was routed to (and priced at). */
  model: z.string(),
  role: z.string(),
  usage: modelUsageSchema,
  /** USD cost of this call, from `usage` and the pricing table. */
  costUsd: z.number().min(0),
  /** Wall-clock time of the whole call, retries and back-off included. */
  latencyMs: z.number().min(0),
  /** HTTP attempts made, the successful one included. */
  attempts: z.number().int().min(1),
});
export type ModelCallResult = z.infer<typeof modelCallResultSchema>;

export interface ModelCallOptions {
  /** Cancels the call, including a back-off sleep between attempts. */
  signal?: AbortSignal;
  /**
   * Streamed text as it arrives, for progress only: a retried attempt streams its text again from
   * the start, so deltas of different attempts must not be concatenated into the answer.
   */
  onText?: (delta: string) => void;
  /** Epoch ms: no attempt (first or retry) starts after it. */
  deadlineAt?: number;
}

/**
 * A model provider. `call` resolves with a validated, JSON-safe {@link ModelCallResult} or rejects
 * with a `ModelError` (see `errors.ts`) that says whether the failure is worth retrying.
 */
export interface ModelClient {
  call(request: ModelCallRequest, options?: ModelCallOptions): Promise<ModelCallResult>;
  /**
   * What a call would be routed to and cost at most, without making it: the supervisor
   * reserves the worst case before the call. A client without it cannot enforce USD ceilings.
   */
  quote?(request: ModelCallRequest): CallQuote;
  /** Idempotent; later calls reject. */
  close?(): Promise<void>;
}
