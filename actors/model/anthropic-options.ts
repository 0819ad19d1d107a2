/**
 * Options of the Anthropic model client: one zod schema with documented defaults, validated and
 * frozen once by {@link compileAnthropicOptions}.
 */
import { z } from 'zod';
import { systemClock, type Clock, type Random } from '../../common/clock.ts';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { DEFAULT_PRICING, pricingTableSchema, priceOf, type PricingTable } from './pricing.ts';
import { routedModels, routingSchema } from './routing.ts';

/** The logging the client needs; a pino logger fits. */
export interface ModelClientLogger {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

const clockSchema = z.custom<Clock>(
  (v) => typeof v === 'object' && v !== null && typeof (v as Clock).now === 'function' && typeof (v as Clock).sleep === 'function',
  'a Clock with now() and sleep()',
);
const randomSchema = z.custom<Random>((v) => typeof v === 'function', 'a function returning a number in [0, 1)');
const sleepSchema = z.custom<(ms: number, signal?: AbortSignal) => Promise<void>>((v) => typeof v === 'function', 'a sleep function');
const loggerSchema = z.custom<ModelClientLogger>(
  (v) => typeof v === 'object' && v !== null && typeof (v as ModelClientLogger).warn === 'function',
  'a logger with debug() and warn()',
);

export const anthropicOptionsSchema = z
  .object({
    /** API key. @default process.env.ANTHROPIC_API_KEY (required one way or the other) */
    apiKey: z.string().min(1).optional(),
    /** Base URL of the Messages API, e.g. the simulator's. @default the SDK's (ANTHROPIC_BASE_URL or https://api.anthropic.com) */
    baseURL: z.string().url().optional(),
    /** Role -> model and max_tokens. @default see `routingSchema` */
    routing: routingSchema.prefault({}),
    /** USD per million tokens, merged over {@link DEFAULT_PRICING}. @default DEFAULT_PRICING */
    pricing: pricingTableSchema.default({}),
    /** Time limit of one attempt, from sending the request to the last streamed byte. @default 60000 */
    timeoutMs: z.number().int().positive().default(60_000),
    /** Attempts per call, the first included; 1 disables retries. @default 4 */
    maxAttempts: z.number().int().min(1).default(4),
    backoff: z
      .object({
        /** First back-off ceiling, doubled per retry. @default 500 */
        baseMs: z.number().int().min(0).default(500),
        /** Largest back-off ceiling. @default 30000 */
        capMs: z.number().int().min(0).default(30_000),
      })
      .strict()
      .prefault({}),
    /** Stream responses and report text deltas to `onText`. @default true */
    stream: z.boolean().default(true),
    /** @default systemClock */
    clock: clockSchema.default(systemClock),
    /** @default Math.random */
    random: randomSchema.default(() => Math.random),
    /** Sleep between attempts. @default clock.sleep */
    sleep: sleepSchema.optional(),
    /** Receives retry and anomaly records. @default none */
    logger: loggerSchema.optional(),
  })
  .strict();

/** What `createAnthropicModelClient` accepts (everything optional but an API key). */
export type AnthropicModelClientOptions = z.input<typeof anthropicOptionsSchema>;

/** Validated options with every default filled in and the pricing table merged. */
export type CompiledAnthropicOptions = Readonly<
  Omit<z.output<typeof anthropicOptionsSchema>, 'apiKey' | 'sleep' | 'pricing'> & {
    apiKey: string;
    sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
    pricing: Readonly<PricingTable>;
  }
>;

/**
 * Validates the options, fills defaults, merges the pricing table and checks that every routed
 * model has a price. Throws a `TerminalError` (`invalid_config`) that names each problem.
 */
export function compileAnthropicOptions(input: AnthropicModelClientOptions = {}): CompiledAnthropicOptions {
  const parsed = anthropicOptionsSchema.safeParse(input);
  if (!parsed.success) {
    throw new TerminalError(ErrorCode.invalidConfig, `invalid model client options:\n${z.prettifyError(parsed.error)}`, {
      cause: parsed.error,
    });
  }
  const options = parsed.data;
  const apiKey = options.apiKey ?? process.env.ANTHROPIC_API_KEY;
  if (!apiKey) {
    throw new TerminalError(ErrorCode.invalidConfig, 'model client needs an API key: pass `apiKey` or set ANTHROPIC_API_KEY');
  }
  const pricing = Object.freeze({ ...DEFAULT_PRICING, ...options.pricing });
  const unpriced = routedModels(options.routing).filter((model) => priceOf(model, pricing) === undefined);
  if (unpriced.length > 0) {
    throw new TerminalError(
      ErrorCode.invalidConfig,
      `no price for routed model(s) ${unpriced.join(', ')}: add them to the \`pricing\` option (USD per million tokens)`,
    );
  }
  const clock = options.clock;
  return Object.freeze({
    ...options,
    apiKey,
    pricing,
    sleep: options.sleep ?? ((ms: number, signal?: AbortSignal) => clock.sleep(ms, signal)),
  });
}
