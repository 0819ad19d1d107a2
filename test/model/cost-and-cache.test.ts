import { describe, expect, it } from 'vitest';
import { buildMessageParams } from '../../actors/model/anthropic-request.ts';
import { costOf, DEFAULT_PRICING, worstCaseCostOf } from '../../actors/model/pricing.ts';
import { LOOKUP_ORDER, simpleRequest, simulator, supportRequest, testClient } from './helpers.ts';

describe('cost accounting', () => {
  it('costOf prices input, output, cache writes and cache reads each at their own rate', () => {
    const sonnet = DEFAULT_PRICING['claude-sonnet-4-6']!;
    expect(costOf({ inputTokens: 1_000, outputTokens: 500, cacheCreationInputTokens: 200, cacheReadInputTokens: 300 }, sonnet)).toBe(
      0.01134,
    );
    expect(costOf({ inputTokens: 1_000_000, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 }, sonnet)).toBe(3);
    expect(costOf({ inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 1_000_000 }, sonnet)).toBe(0.3);
    // 3 x 1 + 7 x 5 + 11 x 1.25 + 13 x 0.1 = 53.05 micro-USD, with no floating-point drift
    expect(costOf({ inputTokens: 3, outputTokens: 7, cacheCreationInputTokens: 11, cacheReadInputTokens: 13 }, DEFAULT_PRICING['claude-haiku-4-5']!)).toBe(
      0.00005305,
    );
  });

  it('worst case reserves input at the dearer rate and the full max_tokens of output', () => {
    const opus = DEFAULT_PRICING['claude-opus-4-1']!;
    expect(worstCaseCostOf(10_000, 2_000, opus)).toBe(0.3375); // 10k x 18.75 + 2k x 75, per million
  });

  it('reports the exact cost of a scripted run with usage overrides', async () => {
    await using sim = await simulator({
      scripts: [
        {
          name: 'priced',
          turns: [
            {
              content: [{ type: 'tool_use', name: 'lookup_order', input: { orderId: 'A-1' } }],
              usage: { input_tokens: 1_200, output_tokens: 80, cache_creation_input_tokens: 2_000, cache_read_input_tokens: 0 },
            },
            {
              text: 'Order A-1 has shipped.',
              usage: { input_tokens: 1_500, output_tokens: 40, cache_creation_input_tokens: 0, cache_read_input_tokens: 2_000 },
            },
          ],
        },
      ],
    });
    const client = testClient(sim, { routing: { default: { model: 'claude-opus-4-1', maxTokens: 1_000 }, roles: {} } });
    const first = await client.call(simpleRequest('Find A-1', { tools: [LOOKUP_ORDER] }));
    expect(first.usage).toEqual({ inputTokens: 1_200, outputTokens: 80, cacheCreationInputTokens: 2_000, cacheReadInputTokens: 0 });
    expect(first.costUsd).toBe(0.0615); // 1200 x 15 + 80 x 75 + 2000 x 18.75 per million
    const use = first.content[0]!;
    if (use.type !== 'tool_use') throw new Error('expected a tool_use');
    const second = await client.call(
      simpleRequest('Find A-1', {
        tools: [LOOKUP_ORDER],
        messages: [
          { role: 'user', content: 'Find A-1' },
          { role: 'assistant', content: first.content },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '{"status":"shipped"}' }] },
        ],
      }),
    );
    expect(second.costUsd).toBe(0.0285); // 1500 x 15 + 40 x 75 + 2000 x 1.5 per million
    expect(first.costUsd + second.costUsd).toBeCloseTo(0.09, 12);
  });
});

describe('prompt caching of the stable prefix (system + tools)', () => {
  it('marks the system block and the last tool with cache_control', () => {
    const params = buildMessageParams(
      supportRequest('A-1', { tools: [LOOKUP_ORDER, { ...LOOKUP_ORDER, name: 'refund' }] }),
      { model: 'claude-sonnet-4-6', maxTokens: 100 },
    );
    expect(params.system).toEqual([{ type: 'text', text: expect.any(String), cache_control: { type: 'ephemeral' } }]);
    expect(params.tools?.map((t) => 'cache_control' in t)).toEqual([false, true]);
    expect(params.messages).toEqual(supportRequest('A-1').messages);
  });

  it('leaves out an empty system prompt and an empty tool list', () => {
    const params = buildMessageParams(simpleRequest('x', { system: '' }), { model: 'm', maxTokens: 1 });
    expect('system' in params).toBe(false);
    expect('tools' in params).toBe(false);
  });

  it('reports cache creation on the first call and a cache read on the next call with the same prefix', async () => {
    await using sim = await simulator();
    const client = testClient(sim);
    const first = await client.call(supportRequest('A-1001'));
    const second = await client.call(supportRequest('Z-9999'));
    expect(first.usage.cacheCreationInputTokens).toBeGreaterThan(0);
    expect(first.usage.cacheReadInputTokens).toBe(0);
    expect(second.usage.cacheCreationInputTokens).toBe(0);
    expect(second.usage.cacheReadInputTokens).toBe(first.usage.cacheCreationInputTokens);
    // Only the part after the prefix is billed as plain input, and caching makes the second call cheaper.
    expect(second.usage.inputTokens).toBe(first.usage.inputTokens);
    expect(second.costUsd).toBeLessThan(first.costUsd);
  });

  it('a different system prompt re-uses only the cached tools (tools come first in the prefix)', async () => {
    await using sim = await simulator();
    const client = testClient(sim);
    const first = await client.call(supportRequest('A-1001'));
    const other = await client.call(supportRequest('A-1001', { system: 'You are the ACME support desk, night shift.' }));
    const toolsTokens = Math.ceil(JSON.stringify({ name: LOOKUP_ORDER.name, description: LOOKUP_ORDER.description, input_schema: LOOKUP_ORDER.inputSchema }).length / 4);
    expect(first.usage.cacheCreationInputTokens).toBeGreaterThan(toolsTokens);
    expect(other.usage.cacheReadInputTokens).toBe(toolsTokens);
    // the new system prompt is written to the cache after the re-used tools
    expect(other.usage.cacheCreationInputTokens).toBeGreaterThan(0);
    expect(other.usage.cacheCreationInputTokens).toBeLessThan(first.usage.cacheCreationInputTokens);
  });
});
