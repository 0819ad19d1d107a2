import { describe, expect, it } from 'vitest';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { ModelErrorReason, ModelRetryableError, ModelTerminalError } from '../../actors/model/errors.ts';
import { modelCallResultSchema, type ContentBlock, type ModelCallRequest } from '../../actors/model/model-client.ts';
import { TerminalError } from '../../common/errors.ts';
import { requestsAt, simpleRequest, simulator, supportRequest, testClient } from './helpers.ts';

function toolUseOf(content: ContentBlock[]) {
  const block = content.find((b) => b.type === 'tool_use');
  if (!block || block.type !== 'tool_use') throw new Error('no tool_use in reply');
  return block;
}

describe('anthropic model client: happy paths through the real SDK and simulator', () => {
  it('plays the support-desk demo: lookup_order with the id from the message, then a reply using the tool result', async () => {
    await using sim = await simulator();
    const client = testClient(sim);
    const first = await client.call(supportRequest('B-2002'));
    expect(first.stopReason).toBe('tool_use');
    const use = toolUseOf(first.content);
    expect(use.name).toBe('lookup_order');
    expect(use.input).toEqual({ orderId: 'B-2002' });
    expect(first.attempts).toBe(1);

    const second = await client.call(
      supportRequest('B-2002', {
        messages: [
          ...supportRequest('B-2002').messages,
          { role: 'assistant', content: first.content },
          {
            role: 'user',
            content: [{ type: 'tool_result', tool_use_id: use.id, content: JSON.stringify({ status: 'out for delivery' }) }],
          },
        ],
      }),
    );
    expect(second.stopReason).toBe('end_turn');
    expect(second.content).toEqual([
      { type: 'text', text: 'Thanks for waiting. Order B-2002 is out for delivery. Is there anything else I can help you with?' },
    ]);
    expect(sim.stats().conversations).toSatisfy((c: object) => Object.keys(c).length === 1);
    expect(requestsAt(sim, 'support-desk', 0)).toBe(1);
    expect(requestsAt(sim, 'support-desk', 1)).toBe(1);
  });

  it('streams text deltas to onText and returns a JSON-safe, schema-valid result', async () => {
    await using sim = await simulator({
      scripts: [{ name: 'talk', turns: [{ text: 'The quick brown fox jumps over the lazy dog, twice over.' }] }],
    });
    const deltas: string[] = [];
    const result = await testClient(sim).call(simpleRequest(), { onText: (d) => deltas.push(d) });
    expect(deltas.length).toBeGreaterThan(2);
    expect(deltas.join('')).toBe('The quick brown fox jumps over the lazy dog, twice over.');
    expect(result.content).toEqual([{ type: 'text', text: deltas.join('') }]);
    expect(JSON.parse(JSON.stringify(result))).toEqual(result);
    expect(modelCallResultSchema.parse(result)).toEqual(result);
    expect(result.usage.outputTokens).toBe(Math.ceil(deltas.join('').length / 4));
    expect(sim.stats().requests[0]!.stream).toBe(true);
  });

  it('works without streaming (stream: false) and reads tool inputs the same way', async () => {
    await using sim = await simulator();
    const result = await testClient(sim, { stream: false }).call(supportRequest('C-3003'));
    expect(toolUseOf(result.content).input).toEqual({ orderId: 'C-3003' });
    expect(sim.stats().requests[0]!.stream).toBe(false);
  });

  it('reports the whole call latency, scripted latency included', async () => {
    await using sim = await simulator({ scripts: [{ name: 's', latencyMs: 100, turns: [{ text: 'slow', latencyMs: 50 }] }] });
    const result = await testClient(sim).call(simpleRequest());
    expect(result.latencyMs).toBeGreaterThanOrEqual(150);
  });

  it('an onText callback that throws does not fail the call', async () => {
    await using sim = await simulator({ scripts: [{ name: 's', turns: [{ text: 'Hello there, general.' }] }] });
    const result = await testClient(sim).call(simpleRequest(), {
      onText: () => {
        throw new Error('listener bug');
      },
    });
    expect(result.content).toEqual([{ type: 'text', text: 'Hello there, general.' }]);
  });

  it('routes by role and clamps max_tokens to the request', async () => {
    await using sim = await simulator({ scripts: [{ name: 's', turns: [{ text: 'ok' }] }] });
    const client = testClient(sim, {
      routing: {
        default: { model: 'claude-sonnet-4-6', maxTokens: 4000 },
        roles: { format: { model: 'claude-haiku-4-5', maxTokens: 1000 } },
      },
    });
    const formatted = await client.call(simpleRequest('a', { role: 'format', maxTokens: 300 }));
    const agent = await client.call(simpleRequest('b', { role: 'agent' }));
    const [r1, r2] = sim.stats().requests;
    expect([r1!.model, r1!.maxTokens]).toEqual(['claude-haiku-4-5', 300]);
    expect([r2!.model, r2!.maxTokens]).toEqual(['claude-sonnet-4-6', 4000]);
    expect(formatted.model).toBe('claude-haiku-4-5');
    expect(agent.model).toBe('claude-sonnet-4-6');
    expect(formatted.role).toBe('format');
  });

  it('gives concurrent conversations their own turn indexes', async () => {
    await using sim = await simulator();
    const client = testClient(sim);
    const ids = ['A-1001', 'A-1002', 'A-1003', 'A-1004', 'A-1005'];
    const firsts = await Promise.all(ids.map((id) => client.call(supportRequest(id))));
    firsts.forEach((r, i) => expect(toolUseOf(r.content).input).toEqual({ orderId: ids[i] }));
    const seconds = await Promise.all(
      ids.map((id, i) => {
        const use = toolUseOf(firsts[i]!.content);
        return client.call(
          supportRequest(id, {
            messages: [
              ...supportRequest(id).messages,
              { role: 'assistant', content: firsts[i]!.content },
              { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: `{"status":"status-${i}"}` }] },
            ],
          }),
        );
      }),
    );
    seconds.forEach((r, i) => expect(r.content[0]).toEqual({ type: 'text', text: expect.stringContaining(`Order ${ids[i]} is status-${i}.`) }));
    const conversations = Object.values(sim.stats().conversations);
    expect(conversations).toHaveLength(5);
    for (const c of conversations) expect(c.turns).toEqual({ '0': 1, '1': 1 });
    expect(requestsAt(sim, 'support-desk', 0)).toBe(5);
    expect(requestsAt(sim, 'support-desk', 1)).toBe(5);
  });
});

describe('anthropic model client: construction', () => {
  it('rejects a routed model without a price, naming it', () => {
    expect(() =>
      createAnthropicModelClient({ apiKey: 'k', routing: { default: { model: 'claude-unknown-9', maxTokens: 100 }, roles: {} } }),
    ).toThrow(/no price for routed model\(s\) claude-unknown-9/);
  });

  it('accepts a routed model once the pricing table lists it', () => {
    const client = createAnthropicModelClient({
      apiKey: 'k',
      routing: { default: { model: 'claude-custom', maxTokens: 100 }, roles: {} },
      pricing: { 'claude-custom': { input: 2, output: 4, cacheWrite: 2.5, cacheRead: 0.2 } },
    });
    expect(client.options.pricing['claude-custom']).toEqual({ input: 2, output: 4, cacheWrite: 2.5, cacheRead: 0.2 });
    expect(client.options.pricing['claude-sonnet-4-6']).toBeDefined();
  });

  it('rejects invalid options with a typed invalid_config error', () => {
    const build = () => createAnthropicModelClient({ apiKey: 'k', maxAttempts: 0 });
    expect(build).toThrow(TerminalError);
    expect(build).toThrow(/maxAttempts/);
  });

  it('rejects an invalid request as a terminal invalid_request before any HTTP call', async () => {
    await using sim = await simulator();
    const bad = { role: 'agent', system: '', tools: [], messages: [] } as unknown as ModelCallRequest;
    const error = await testClient(sim).call(bad).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelTerminalError);
    expect((error as ModelTerminalError).reason).toBe(ModelErrorReason.invalidRequest);
    expect(sim.stats().totalRequests).toBe(0);
  });

  it('rejects calls after close()', async () => {
    await using sim = await simulator();
    const client = testClient(sim);
    await client.close();
    await client.close();
    await expect(client.call(simpleRequest())).rejects.toBeInstanceOf(ModelTerminalError);
  });

  it('quotes route and worst-case cost without calling the API', () => {
    const client = createAnthropicModelClient({
      apiKey: 'k',
      routing: { default: { model: 'claude-sonnet-4-6', maxTokens: 1000 }, roles: {} },
    });
    const request = simpleRequest('x'.repeat(300), { maxTokens: 500 });
    const quote = client.quote(request);
    expect(quote.model).toBe('claude-sonnet-4-6');
    expect(quote.maxTokens).toBe(500);
    expect(quote.inputTokens).toBeGreaterThan(100);
    // input at the cache-write price (3.75 > 3), output at 15 USD per million
    expect(quote.worstCaseCostUsd).toBeCloseTo((quote.inputTokens * 3.75 + 500 * 15) / 1e6, 12);
  });
});

describe('anthropic model client: retry exhaustion and deadlines', () => {
  it('gives up after maxAttempts with the last retryable error, attempts counted', async () => {
    await using sim = await simulator({ scripts: [{ name: 'main', faults: [{ type: 'error', status: 529, times: 10 }], turns: [{ text: 'never' }] }] });
    const error = await testClient(sim, { maxAttempts: 3 }).call(simpleRequest()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelRetryableError);
    expect((error as ModelRetryableError).reason).toBe(ModelErrorReason.overloaded);
    expect((error as ModelRetryableError).status).toBe(529);
    expect((error as ModelRetryableError).attempts).toBe(3);
    expect(requestsAt(sim, 'main', 0)).toBe(3);
  });

  it('never starts a retry after deadlineAt', async () => {
    await using sim = await simulator({ scripts: [{ name: 'main', faults: [{ type: 'error', status: 500, times: 10 }], turns: [{ text: 'never' }] }] });
    const client = testClient(sim, { backoff: { baseMs: 1_000, capMs: 1_000 }, random: () => 1 });
    const started = Date.now();
    const error = await client.call(simpleRequest(), { deadlineAt: Date.now() + 300 }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(900);
    expect((error as ModelRetryableError).reason).toBe(ModelErrorReason.serverError);
    expect((error as ModelRetryableError).attempts).toBe(1);
    expect(sim.stats().totalRequests).toBe(1);
  });

  it('does not start at all when the deadline has passed', async () => {
    await using sim = await simulator();
    const error = await testClient(sim).call(simpleRequest(), { deadlineAt: Date.now() - 1 }).catch((e: unknown) => e);
    expect((error as ModelTerminalError).reason).toBe(ModelErrorReason.deadlineExceeded);
    expect(sim.stats().totalRequests).toBe(0);
  });

  it('stops waiting when the caller aborts a hanging request', async () => {
    await using sim = await simulator({ scripts: [{ name: 'main', faults: [{ type: 'hang', times: 5 }], turns: [{ text: 'late' }] }] });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('shutdown')), 100);
    const started = Date.now();
    const error = await testClient(sim, { timeoutMs: 5_000 }).call(simpleRequest(), { signal: controller.signal }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(error).toBeInstanceOf(ModelTerminalError);
    expect((error as ModelTerminalError).reason).toBe(ModelErrorReason.aborted);
    expect(sim.stats().totalRequests).toBe(1);
  });
});
