import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startSimulator, type ScenarioInput, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/**
 * Tasks on a real host whose model is the real @anthropic-ai/sdk talking to the simulator: the
 * model's failure modes as a task sees them.
 */
const lookup = defineTool({
  name: 'lookup_order',
  description: 'Look up an order',
  input: z.object({ orderId: z.string() }),
  output: z.object({ status: z.string() }),
  run: async () => ({ status: 'shipped' }),
});

const agent = (name: string) =>
  defineAgent({ name, description: name, input: z.object({ q: z.string() }), system: `agent ${name}`, tools: [lookup], prompt: (i) => i.q });

const lookupTurn = { content: [{ type: 'tool_use' as const, name: 'lookup_order', input: { orderId: 'A-1' } }] };
const scenario: ScenarioInput = {
  name: 'host-tests',
  scripts: [
    {
      name: 'retries',
      match: { system: 'agent retrying' },
      turns: [{ ...lookupTurn, faults: [{ type: 'error', status: 429, retryAfterMs: 10, times: 2 }] }, { text: 'order is {{lastToolResult.status}}' }],
    },
    {
      name: 'malformed',
      match: { system: 'agent sloppy' },
      turns: [
        { ...lookupTurn, faults: [{ type: 'malformed_tool_use', variant: 'unknown_tool', times: 1 }] },
        { ...lookupTurn, faults: [{ type: 'malformed_tool_use', variant: 'non_object_input', times: 1 }] },
        lookupTurn,
        { text: 'recovered: {{lastToolResult.status}}' },
      ],
    },
    { name: 'denied', match: { system: 'agent denied' }, turns: [{ text: 'x', faults: [{ type: 'error', status: 401, message: 'invalid x-api-key', times: 99 }] }] },
    { name: 'priced', match: { system: 'agent priced' }, turns: [{ text: 'exact', usage: { input_tokens: 1200, output_tokens: 40 } }] },
  ],
};

let nats: NatsTestContext;
let sim: SimulatorHandle;
let host: Awaited<ReturnType<typeof startHost>>;

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({ scenario });
  const client = createAnthropicModelClient({
    apiKey: 'test',
    baseURL: sim.url,
    backoff: { baseMs: 5, capMs: 50 },
    routing: { default: { model: 'claude-sonnet-4-6', maxTokens: 1024 }, roles: {} },
  });
  host = await startHost(nats.url, ['retrying', 'sloppy', 'denied', 'priced'].map(agent), client);
});
afterAll(async () => {
  await host?.stop();
  await sim?.close();
  await nats?.close();
});

describe('a task whose model misbehaves', () => {
  it('rides out 429s with the attempts visible on the model event', async () => {
    await submit(nats.nc, nats.js, 'retrying', { taskId: 'retry-1', input: { q: 'where is A-1?' } });
    const events = await eventsUntilEnd(nats.js, 'retry-1');
    expect(events.at(-1)).toMatchObject({ type: 'done', output: 'order is shipped' });
    const models = events.filter((e) => e.type === 'model');
    expect(models.map((m) => (m as { attempts: number }).attempts)).toEqual([3, 1]);
  });

  it('turns malformed tool calls into gate refusals the model re-plans from', async () => {
    await submit(nats.nc, nats.js, 'sloppy', { taskId: 'sloppy-1', input: { q: 'where is A-1?' } });
    const events = await eventsUntilEnd(nats.js, 'sloppy-1');
    expect(events.at(-1)).toMatchObject({ type: 'done', output: 'recovered: shipped' });
    const tools = events.filter((e) => e.type === 'tool') as Array<{ status: string; error?: { code: string } }>;
    expect(tools.map((t) => [t.status, t.error?.code])).toEqual([
      ['rejected', 'unknown_tool'],
      ['rejected', 'invalid_tool_arguments'],
      ['succeeded', undefined],
    ]);
  });

  it('fails the task with the API message on a permanent error, without retrying', async () => {
    const before = sim.stats().totalRequests;
    await submit(nats.nc, nats.js, 'denied', { taskId: 'denied-1', input: { q: 'hi' } });
    const events = await eventsUntilEnd(nats.js, 'denied-1');
    const last = events.at(-1) as { type: string; error: { code: string; message: string } };
    expect(last.type).toBe('failed');
    expect(last.error.code).toBe('model_error');
    expect(last.error.message).toContain('invalid x-api-key');
    expect(sim.stats().totalRequests - before).toBe(1);
  });

  it('prices a call exactly from its usage', async () => {
    await submit(nats.nc, nats.js, 'priced', { taskId: 'priced-1', input: { q: 'hi' } });
    const events = await eventsUntilEnd(nats.js, 'priced-1');
    const model = events.find((e) => e.type === 'model') as { costUsd: number; usage: { inputTokens: number; outputTokens: number; cacheCreationInputTokens: number; cacheReadInputTokens: number } };
    expect(model.usage).toMatchObject({ inputTokens: 1200, outputTokens: 40 });
    // Tools and system are marked for caching: the tools prefix, shared with the other agents
    // here, is read from cache; this agent's own system prompt is written to it.
    expect(model.usage.cacheReadInputTokens).toBeGreaterThan(0);
    expect(model.usage.cacheCreationInputTokens).toBeGreaterThan(0);
    // claude-sonnet-4-6 per million tokens: $3 input, $15 output, $3.75 cache write, $0.30 cache read.
    const expected = (1200 * 3 + 40 * 15 + model.usage.cacheCreationInputTokens * 3.75 + model.usage.cacheReadInputTokens * 0.3) / 1e6;
    expect(model.costUsd).toBeCloseTo(expected, 12);
  });
});
