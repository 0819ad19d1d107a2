/**
 * Every injected fault class, through the real SDK against the real simulator: transient ones are
 * retried until success with attempts counted; permanent ones surface at once, typed, with the
 * API's own message.
 */
import { describe, expect, it } from 'vitest';
import {
  isMalformedToolUse,
  MalformedToolUseError,
  ModelErrorReason,
  ModelRetryableError,
  ModelTerminalError,
} from '../../actors/model/errors.ts';
import type { Fault } from '../../simulator/index.ts';
import { faultScenario, LOOKUP_ORDER, requestsAt, simpleRequest, simulator, supportRequest, testClient } from './helpers.ts';

type FaultInput = Partial<Fault> & { type: Fault['type'] };

const transient: Array<[label: string, fault: FaultInput, stream: boolean, reason: string]> = [
  ['429 rate limit with retry-after-ms', { type: 'error', status: 429, retryAfterMs: 20, times: 2 }, true, 'rate_limited'],
  ['529 overloaded', { type: 'error', status: 529, times: 2 }, true, 'overloaded'],
  ['500 api error', { type: 'error', status: 500, times: 3 }, false, 'server_error'],
  ['503 unavailable', { type: 'error', status: 503, times: 1 }, true, 'server_error'],
  ['408 request timeout', { type: 'error', status: 408, times: 1 }, true, 'request_timeout'],
  ['409 conflict', { type: 'error', status: 409, times: 1 }, false, 'conflict'],
  ['stream cut mid-way', { type: 'stream_cut', afterEvents: 4, times: 2 }, true, 'stream_cut'],
  ['stream cut before any event', { type: 'stream_cut', afterEvents: 0, times: 1 }, true, 'stream_cut'],
  ['non-streamed body cut in half', { type: 'stream_cut', times: 1 }, false, 'stream_cut'],
  ['overloaded_error event inside the stream', { type: 'stream_error', afterEvents: 3, times: 2 }, true, 'overloaded'],
  ['hang past the attempt timeout (streaming)', { type: 'hang', times: 1 }, true, 'timeout'],
  ['hang past the attempt timeout (not streaming)', { type: 'hang', ms: 5_000, times: 1 }, false, 'timeout'],
];

/** A logger that keeps the reasons of the retried failures. */
function retryLog() {
  const reasons: string[] = [];
  return {
    reasons,
    logger: {
      debug: () => {},
      warn: (obj: object) => {
        const err = (obj as { err?: { reason?: string } }).err;
        if (err?.reason) reasons.push(err.reason);
      },
    },
  };
}

describe('transient faults are retried until success', () => {
  it.each(transient)('%s', async (_label, fault, stream, reason) => {
    const times = fault.times ?? 1;
    await using sim = await simulator(faultScenario([fault as Fault], 'Recovered after the fault, all done.'));
    const log = retryLog();
    const result = await testClient(sim, { stream, timeoutMs: 300, logger: log.logger }).call(simpleRequest());
    expect(result.content).toEqual([{ type: 'text', text: 'Recovered after the fault, all done.' }]);
    expect(result.attempts).toBe(times + 1);
    expect(log.reasons).toEqual(Array.from({ length: times }, () => reason));
    expect(requestsAt(sim, 'main', 0)).toBe(times + 1);
    expect(sim.stats().faults[fault.type]).toBe(times);
    expect(result.usage.outputTokens).toBeGreaterThan(0);
  });

  it('honours a retry-after of whole seconds (waits at least that long)', async () => {
    await using sim = await simulator(faultScenario([{ type: 'error', status: 429, retryAfterSeconds: 2, times: 1 } as Fault]));
    const waits: number[] = [];
    const result = await testClient(sim, { sleep: async (ms) => void waits.push(ms) }).call(simpleRequest());
    expect(result.attempts).toBe(2);
    expect(waits).toEqual([2_000]);
  });

  it('uses full-jitter exponential back-off between attempts', async () => {
    await using sim = await simulator(faultScenario([{ type: 'error', status: 529, times: 3 } as Fault]));
    const waits: number[] = [];
    const result = await testClient(sim, {
      backoff: { baseMs: 100, capMs: 300 },
      random: () => 0.5,
      sleep: async (ms) => void waits.push(ms),
    }).call(simpleRequest());
    expect(result.attempts).toBe(4);
    // ceilings 100, 200, 300 (capped) at random 0.5
    expect(waits).toEqual([50, 100, 150]);
  });

  it('times out every attempt of a request that always hangs, then reports a retryable timeout', async () => {
    await using sim = await simulator(faultScenario([{ type: 'hang', times: 10 } as Fault]));
    const error = await testClient(sim, { timeoutMs: 100, maxAttempts: 2 }).call(simpleRequest()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelRetryableError);
    expect((error as ModelRetryableError).reason).toBe(ModelErrorReason.timeout);
    expect((error as ModelRetryableError).attempts).toBe(2);
    expect(sim.stats().requests.map((r) => r.status)).toEqual([0, 0]);
  });
});

describe('permanent errors surface at once, typed, with the API message', () => {
  const cases: Array<[number, string]> = [
    [400, ModelErrorReason.invalidRequest],
    [401, ModelErrorReason.authentication],
    [403, ModelErrorReason.permission],
    [404, ModelErrorReason.notFound],
    [413, ModelErrorReason.requestTooLarge],
  ];
  it.each(cases)('%i -> %s, not retried', async (status, reason) => {
    const message = `simulated ${status} failure`;
    await using sim = await simulator(faultScenario([{ type: 'error', status, message, times: 5 } as Fault]));
    const error = await testClient(sim).call(simpleRequest()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelTerminalError);
    const e = error as ModelTerminalError;
    expect(e.reason).toBe(reason);
    expect(e.status).toBe(status);
    expect(e.message).toContain(message);
    expect(e.attempts).toBe(1);
    expect(e.requestId).toMatch(/^req_sim/);
    expect(e.toWire()).toEqual({ code: 'model_error', message: e.message, reason });
    expect(sim.stats().totalRequests).toBe(1);
  });

  it('401 from a real key check carries the API message', async () => {
    await using sim = await simulator({ apiKey: 'the-right-key', scripts: [{ name: 's', turns: [{ text: 'hi' }] }] });
    const error = await testClient(sim, { apiKey: 'a-wrong-key' }).call(simpleRequest()).catch((e: unknown) => e);
    expect((error as ModelTerminalError).reason).toBe(ModelErrorReason.authentication);
    expect((error as ModelTerminalError).message).toBe('Anthropic API 401 authentication_error: invalid x-api-key');
  });

  it('404 for a model the API does not serve', async () => {
    await using sim = await simulator({ models: ['claude-sonnet-4-6'], scripts: [{ name: 's', turns: [{ text: 'hi' }] }] });
    const client = testClient(sim, { routing: { default: { model: 'claude-haiku-4-5', maxTokens: 100 }, roles: {} } });
    const error = await client.call(simpleRequest()).catch((e: unknown) => e);
    expect((error as ModelTerminalError).reason).toBe(ModelErrorReason.notFound);
    expect((error as ModelTerminalError).message).toContain('model: claude-haiku-4-5');
  });

  it('413 for a request over the size limit', async () => {
    await using sim = await simulator({ maxRequestBytes: 2_000, scripts: [{ name: 's', turns: [{ text: 'hi' }] }] });
    const error = await testClient(sim).call(simpleRequest('x'.repeat(5_000))).catch((e: unknown) => e);
    expect((error as ModelTerminalError).reason).toBe(ModelErrorReason.requestTooLarge);
    expect(sim.stats().byStatus).toEqual({ '413': 1 });
  });

  it('400 when the client sends an orphaned tool_use (the simulator validates pairing)', async () => {
    await using sim = await simulator();
    const request = supportRequest('A-1001', {
      messages: [
        { role: 'user', content: 'Where is A-1001?' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'lookup_order', input: { orderId: 'A-1001' } }] },
        { role: 'user', content: 'Never mind the tool, just answer.' },
      ],
    });
    const error = await testClient(sim).call(request).catch((e: unknown) => e);
    expect((error as ModelTerminalError).reason).toBe(ModelErrorReason.invalidRequest);
    expect((error as ModelTerminalError).message).toContain(
      'messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1',
    );
    expect((error as ModelTerminalError).attempts).toBe(1);
  });
});

describe('malformed tool_use is detected, billed, and left to the caller', () => {
  it.each([
    ['unknown_tool', 'unknown_tool', true],
    ['non_object_input', 'input_not_object', true],
    ['unknown_tool', 'unknown_tool', false],
    ['non_object_input', 'input_not_object', false],
  ] as const)('%s -> %s (stream: %s)', async (variant, problem, stream) => {
    await using sim = await simulator({
      scripts: [
        {
          name: 'main',
          faults: [{ type: 'malformed_tool_use', variant }],
          turns: [{ content: [{ type: 'tool_use', name: 'lookup_order', input: { orderId: 'A-1' } }] }],
        },
      ],
    });
    const client = testClient(sim, { stream });
    const request = simpleRequest('Find A-1', { tools: [LOOKUP_ORDER] });
    const error = await client.call(request).catch((e: unknown) => e);
    expect(isMalformedToolUse(error)).toBe(true);
    const e = error as MalformedToolUseError;
    expect(e.retryable).toBe(true);
    expect(e.reason).toBe(ModelErrorReason.malformedToolUse);
    expect(e.problems).toHaveLength(1);
    expect(e.problems[0]!.problem).toBe(problem);
    expect(e.response.costUsd).toBeGreaterThan(0);
    expect(e.response.attempts).toBe(1);
    expect(requestsAt(sim, 'main', 0)).toBe(1);
    // The caller retries: the fault is spent, so the next call is well-formed.
    const ok = await client.call(request);
    expect(ok.content).toEqual([{ type: 'tool_use', id: expect.any(String), name: 'lookup_order', input: { orderId: 'A-1' } }]);
    expect(isMalformedToolUse(new Error('x'))).toBe(false);
  });
});
