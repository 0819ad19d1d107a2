import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { classifyAnthropicError, type AttemptContext } from '../../actors/model/anthropic-error-classifier.ts';
import type { RawMessageStreamEvent } from '@anthropic-ai/sdk/resources/messages';
import { toolUseProblems } from '../../actors/model/anthropic-request.ts';
import { IncompleteStreamError, readReplyStream } from '../../actors/model/anthropic-stream.ts';
import { backoffDelay, retryAfterMsOf } from '../../actors/model/backoff.ts';
import { CLIENT_RETRIED_REASONS, ModelRetryableError, ModelTerminalError } from '../../actors/model/errors.ts';
import { estimateTokens } from '../../actors/model/estimate-tokens.ts';
import { resolveRoute, routingSchema } from '../../actors/model/routing.ts';

const ctx: AttemptContext = { timedOut: false, callerAborted: false, timeoutMs: 1_000, now: 1_000_000 };

function apiError(status: number | undefined, type: string, message: string, headers: Record<string, string> = {}) {
  const body = { type: 'error', error: { type, message } };
  return status === undefined
    ? new APIError(undefined, body, undefined, new Headers(headers), type as never)
    : APIError.generate(status, body, undefined, new Headers({ 'request-id': 'req_1', ...headers }));
}

describe('classifyAnthropicError', () => {
  it.each([
    [408, 'timeout_error', 'request_timeout'],
    [409, 'conflict_error', 'conflict'],
    [429, 'rate_limit_error', 'rate_limited'],
    [500, 'api_error', 'server_error'],
    [502, 'api_error', 'server_error'],
    [503, 'api_error', 'server_error'],
    [529, 'overloaded_error', 'overloaded'],
  ])('retries %i (%s) as %s', (status, type, reason) => {
    const error = classifyAnthropicError(apiError(status, type, 'boom'), ctx);
    expect(error).toBeInstanceOf(ModelRetryableError);
    expect(error.reason).toBe(reason);
    expect(CLIENT_RETRIED_REASONS.has(error.reason)).toBe(true);
    expect(error.requestId).toBe('req_1');
  });

  it.each([
    [400, 'invalid_request_error', 'invalid_request'],
    [401, 'authentication_error', 'authentication'],
    [402, 'billing_error', 'client_error'],
    [403, 'permission_error', 'permission'],
    [404, 'not_found_error', 'not_found'],
    [413, 'request_too_large', 'request_too_large'],
    [422, 'invalid_request_error', 'client_error'],
  ])('never retries %i (%s): terminal %s with the API message', (status, type, reason) => {
    const error = classifyAnthropicError(apiError(status, type, 'the API says no'), ctx);
    expect(error).toBeInstanceOf(ModelTerminalError);
    expect(error.reason).toBe(reason);
    expect(error.message).toBe(`Anthropic API ${status} ${type}: the API says no`);
  });

  it('reads retry-after-ms before retry-after', () => {
    expect(classifyAnthropicError(apiError(429, 'rate_limit_error', 'x', { 'retry-after': '3' }), ctx).retryAfterMs).toBe(3_000);
    expect(
      classifyAnthropicError(apiError(429, 'rate_limit_error', 'x', { 'retry-after': '3', 'retry-after-ms': '250' }), ctx).retryAfterMs,
    ).toBe(250);
  });

  it('classifies error events inside a stream by their type', () => {
    expect(classifyAnthropicError(apiError(undefined, 'overloaded_error', 'Overloaded'), ctx).reason).toBe('overloaded');
    expect(classifyAnthropicError(apiError(undefined, 'api_error', 'x'), ctx).reason).toBe('server_error');
    const odd = classifyAnthropicError(apiError(undefined, 'invalid_request_error', 'x'), ctx);
    expect(odd).toBeInstanceOf(ModelTerminalError);
  });

  it('tells timeouts, connection failures, cut streams and aborts apart', () => {
    expect(classifyAnthropicError(new APIConnectionTimeoutError(), ctx).reason).toBe('timeout');
    expect(classifyAnthropicError(new APIConnectionError({ message: 'refused' }), ctx).reason).toBe('connection');
    expect(classifyAnthropicError(new IncompleteStreamError('cut'), ctx).reason).toBe('stream_cut');
    expect(classifyAnthropicError(new TypeError('terminated'), ctx).reason).toBe('stream_cut');
    expect(classifyAnthropicError(new APIUserAbortError(), { ...ctx, timedOut: true }).reason).toBe('timeout');
    expect(classifyAnthropicError(new APIUserAbortError(), { ...ctx, callerAborted: true }).reason).toBe('aborted');
    const bug = classifyAnthropicError(new RangeError('a bug'), ctx);
    expect(bug).toBeInstanceOf(ModelTerminalError);
    expect(bug.reason).toBe('unexpected');
  });
});

describe('backoff', () => {
  it('is full jitter under an exponential, capped ceiling', () => {
    const options = { baseMs: 100, capMs: 1_000 };
    expect([1, 2, 3, 4, 5].map((n) => backoffDelay(n, options, () => 0.999_999))).toEqual([99, 199, 399, 799, 999]);
    expect(backoffDelay(3, options, () => 0)).toBe(0);
  });

  it('never waits less than the provider asked', () => {
    expect(backoffDelay(1, { baseMs: 100, capMs: 1_000 }, () => 0.5, 2_000)).toBe(2_000);
    expect(backoffDelay(4, { baseMs: 100, capMs: 1_000 }, () => 0.5, 10)).toBe(400);
  });

  it('parses retry-after as seconds or an HTTP date, and retry-after-ms', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMsOf(new Headers({ 'retry-after': '1.5' }), now)).toBe(1_500);
    expect(retryAfterMsOf(new Headers({ 'retry-after': 'Thu, 01 Jan 2026 00:00:30 GMT' }), now)).toBe(30_000);
    expect(retryAfterMsOf(new Headers({ 'retry-after-ms': '20' }), now)).toBe(20);
    expect(retryAfterMsOf(new Headers({ 'retry-after': 'soon' }), now)).toBeUndefined();
    expect(retryAfterMsOf(new Headers(), now)).toBeUndefined();
  });
});

describe('routing and estimates', () => {
  const routing = routingSchema.parse({});

  it('routes unknown roles to the default and clamps max_tokens', () => {
    expect(resolveRoute(routing, 'agent')).toEqual({ model: 'claude-sonnet-4-6', maxTokens: 4096 });
    expect(resolveRoute(routing, 'plan', 100)).toEqual({ model: 'claude-opus-4-6', maxTokens: 100 });
    expect(resolveRoute(routing, 'format', 1_000_000)).toEqual({ model: 'claude-haiku-4-5', maxTokens: 2048 });
    expect(resolveRoute(routing, 'constructor')).toEqual(resolveRoute(routing, 'agent'));
  });

  it('estimates more tokens than the chars/4 the provider roughly bills', () => {
    const request = {
      system: 'You are careful.',
      tools: [{ name: 't', description: 'a tool', inputSchema: { type: 'object' } }],
      messages: [{ role: 'user' as const, content: 'word '.repeat(400) }],
    };
    const estimate = estimateTokens(request);
    expect(estimate).toBeGreaterThan(Math.ceil(2_000 / 4));
    expect(estimate).toBe(estimateTokens(request));
    expect(estimateTokens({ ...request, messages: [...request.messages, { role: 'assistant', content: 'ok' }] })).toBeGreaterThan(estimate);
  });
});

describe('readReplyStream', () => {
  async function* events(list: unknown[]) {
    for (const e of list) yield e as RawMessageStreamEvent;
  }
  const start = {
    type: 'message_start',
    message: { usage: { input_tokens: 10, output_tokens: 1, cache_creation_input_tokens: 5, cache_read_input_tokens: 0 } },
  };

  it('keeps a tool input that is not valid JSON as raw text and flags it', async () => {
    const reply = await readReplyStream(
      events([
        start,
        { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: 'toolu_1', name: 't', input: {} } },
        { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '{"a": ' } },
        { type: 'content_block_stop', index: 0 },
        { type: 'message_delta', delta: { stop_reason: 'max_tokens' }, usage: { output_tokens: 7 } },
        { type: 'message_stop' },
      ]),
      'req_1',
      undefined,
    );
    expect(reply.content).toEqual([{ type: 'tool_use', id: 'toolu_1', name: 't', input: '{"a": ' }]);
    expect([...reply.unparsableToolInputs]).toEqual(['toolu_1']);
    expect(toolUseProblems(reply.content, ['t'], reply.unparsableToolInputs)).toEqual([
      { toolUseId: 'toolu_1', name: 't', problem: 'invalid_json' },
    ]);
    expect(reply.usage).toEqual({ inputTokens: 10, outputTokens: 7, cacheCreationInputTokens: 5, cacheReadInputTokens: 0 });
    expect(reply.stopReason).toBe('max_tokens');
  });

  it('rejects a stream that ends before message_stop', async () => {
    await expect(
      readReplyStream(events([start, { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }]), undefined, undefined),
    ).rejects.toBeInstanceOf(IncompleteStreamError);
    await expect(readReplyStream(events([]), undefined, undefined)).rejects.toThrow(/before message_start/);
  });
});
