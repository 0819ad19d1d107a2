/**
 * The Anthropic implementation of {@link ModelClient}, on the official `@anthropic-ai/sdk`.
 *
 * The SDK's own retries are off (`maxRetries: 0`) so that every HTTP attempt is counted here:
 * retryable failures are retried with full-jitter exponential back-off honouring `retry-after`,
 * up to `maxAttempts` and never starting an attempt after the caller's `deadlineAt`.
 */
import Anthropic from '@anthropic-ai/sdk';
import type { MessageCreateParamsBase } from '@anthropic-ai/sdk/resources/messages';
import { z } from 'zod';
import { classifyAnthropicError } from './anthropic-error-classifier.ts';
import { compileAnthropicOptions, type AnthropicModelClientOptions, type CompiledAnthropicOptions } from './anthropic-options.ts';
import { buildMessageParams, toolUseProblems } from './anthropic-request.ts';
import { readReplyStream, replyFromMessage, type ReceivedReply } from './anthropic-stream.ts';
import { backoffDelay } from './backoff.ts';
import {
  CLIENT_RETRIED_REASONS,
  MalformedToolUseError,
  ModelErrorReason,
  ModelTerminalError,
  type ModelError,
} from './errors.ts';
import {
  modelCallRequestSchema,
  type ModelCallOptions,
  type ModelCallRequest,
  type ModelCallResult,
  type ModelClient,
} from './model-client.ts';
import { costOf, priceOf } from './pricing.ts';
import { quoteCall, type CallQuote } from './quote.ts';
import { resolveRoute } from './routing.ts';

/** The Anthropic model client: a {@link ModelClient} plus its options and a cost quote. */
export interface AnthropicModelClient extends ModelClient {
  readonly options: CompiledAnthropicOptions;
  /** Route and worst-case cost of `request`, without calling the API. */
  quote(request: ModelCallRequest): CallQuote;
  /** Idempotent. New calls reject afterwards; calls already under way finish. */
  close(): Promise<void>;
}

/**
 * Creates the client. Throws a `TerminalError` (`invalid_config`) for invalid options, a missing
 * API key, or a routed model without a price.
 */
export function createAnthropicModelClient(input: AnthropicModelClientOptions = {}): AnthropicModelClient {
  const options = compileAnthropicOptions(input);
  const { clock, logger } = options;
  const sdk = new Anthropic({
    apiKey: options.apiKey,
    ...(options.baseURL ? { baseURL: options.baseURL } : {}),
    maxRetries: 0,
    timeout: options.timeoutMs,
  });
  let closed = false;

  async function call(request: ModelCallRequest, callOptions: ModelCallOptions = {}): Promise<ModelCallResult> {
    const { signal, deadlineAt } = callOptions;
    if (closed) throw new ModelTerminalError(ModelErrorReason.unexpected, 'model client is closed');
    const parsed = modelCallRequestSchema.safeParse(request);
    if (!parsed.success) {
      throw new ModelTerminalError(ModelErrorReason.invalidRequest, `invalid model call request:\n${z.prettifyError(parsed.error)}`);
    }
    const route = resolveRoute(options.routing, request.role, request.maxTokens);
    const price = priceOf(route.model, options.pricing);
    if (!price) throw new ModelTerminalError(ModelErrorReason.unknownModel, `no price for model ${route.model}`);
    const params = buildMessageParams(parsed.data, route);
    const onText = callOptions.onText && safeOnText(callOptions.onText);
    const started = clock.now();

    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw withAttempts(aborted(signal), attempt - 1);
      if (attempt === 1 && deadlineAt !== undefined && clock.now() >= deadlineAt) {
        throw new ModelTerminalError(ModelErrorReason.deadlineExceeded, 'model call not started: deadline already passed');
      }
      let reply: ReceivedReply;
      try {
        reply = await attemptOnce(params, signal, onText);
      } catch (caught) {
        const error = withAttempts(caught as ModelError, attempt);
        const delayMs = nextDelay(error, attempt, deadlineAt);
        if (delayMs === undefined) throw error;
        logger?.warn(
          { err: error.toWire(), status: error.status, attempt, delayMs, model: route.model, role: request.role },
          'model call attempt failed; retrying',
        );
        try {
          await options.sleep(delayMs, signal);
        } catch {
          throw withAttempts(aborted(signal), attempt);
        }
        continue;
      }
      const result: ModelCallResult = {
        content: reply.content,
        stopReason: reply.stopReason,
        model: route.model,
        role: request.role,
        usage: reply.usage,
        costUsd: costOf(reply.usage, price),
        latencyMs: Math.max(0, clock.now() - started),
        attempts: attempt,
      };
      const problems = toolUseProblems(
        reply.content,
        request.tools.map((t) => t.name),
        reply.unparsableToolInputs,
      );
      if (problems.length > 0) throw new MalformedToolUseError(result, problems);
      return result;
    }
  }

  /** The wait before the next attempt, or `undefined` when the error must be thrown now. */
  function nextDelay(error: ModelError, attempt: number, deadlineAt: number | undefined): number | undefined {
    if (!CLIENT_RETRIED_REASONS.has(error.reason)) return undefined;
    if (attempt >= options.maxAttempts) return undefined;
    const delayMs = backoffDelay(attempt, options.backoff, options.random, error.retryAfterMs);
    if (deadlineAt !== undefined && clock.now() + delayMs >= deadlineAt) {
      logger?.debug({ attempt, delayMs, deadlineAt }, 'model call not retried: the retry would start after the deadline');
      return undefined;
    }
    return delayMs;
  }

  /** One HTTP attempt under its own time limit; throws a classified {@link ModelError}. */
  async function attemptOnce(
    params: MessageCreateParamsBase,
    signal: AbortSignal | undefined,
    onText: ((delta: string) => void) | undefined,
  ): Promise<ReceivedReply> {
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    let timedOut = false;
    const timer = new AbortController();
    // The limit runs on the injected clock; cancelling it rejects the sleep, which is expected.
    clock.sleep(options.timeoutMs, timer.signal).then(
      () => {
        timedOut = true;
        controller.abort();
      },
      () => {},
    );
    try {
      const requestOptions = { signal: controller.signal, timeout: options.timeoutMs };
      if (options.stream) {
        const { data, request_id } = await sdk.messages
          .create({ ...params, stream: true }, requestOptions)
          .withResponse();
        return await readReplyStream(data, request_id ?? undefined, onText);
      }
      const { data, request_id } = await sdk.messages.create({ ...params, stream: false }, requestOptions).withResponse();
      return replyFromMessage(data, request_id ?? undefined);
    } catch (error) {
      throw classifyAnthropicError(error, {
        timedOut,
        callerAborted: signal?.aborted ?? false,
        timeoutMs: options.timeoutMs,
        now: clock.now(),
      });
    } finally {
      timer.abort();
      signal?.removeEventListener('abort', onAbort);
    }
  }

  function safeOnText(onText: (delta: string) => void): (delta: string) => void {
    return (delta) => {
      try {
        onText(delta);
      } catch (err) {
        // Progress reporting must not fail a call that is being billed.
        logger?.warn({ err }, 'onText callback threw; ignored');
      }
    };
  }

  return {
    options,
    call,
    quote: (request) => quoteCall(request, options.routing, options.pricing),
    close: async () => {
      closed = true;
    },
  };
}

function aborted(signal: AbortSignal | undefined): ModelTerminalError {
  return new ModelTerminalError(ModelErrorReason.aborted, 'model call aborted by the caller', { cause: signal?.reason });
}

function withAttempts<E extends ModelError>(error: E, attempts: number): E {
  error.attempts = attempts;
  return error;
}
