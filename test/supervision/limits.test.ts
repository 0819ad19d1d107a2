import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import type { TaskEvent } from '../../runtime/wire.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startSimulator, type ScenarioInput, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/**
 * Limits as a user meets them: real tasks, the real SDK, the simulator playing models that
 * loop, never finish, or talk too much.
 */
const lookup = defineTool({
  name: 'lookup',
  description: 'Look something up',
  input: z.object({ q: z.string() }),
  output: z.object({ answer: z.string() }),
  run: async ({ q }) => ({ answer: `about ${q}` }),
});

const agent = (name: string, limits = {}) =>
  defineAgent({ name, description: name, input: z.object({ q: z.string() }), system: `agent ${name}`, tools: [lookup], limits, prompt: (i) => i.q });

const repeat = <T>(n: number, f: (i: number) => T) => Array.from({ length: n }, (_, i) => f(i));
const scenario: ScenarioInput = {
  name: 'limits',
  scripts: [
    { name: 'looper', match: { system: 'agent looper' }, turns: repeat(30, () => ({ content: [{ type: 'tool_use', name: 'lookup', input: { q: 'same' } }] })) },
    { name: 'endless', match: { system: 'agent endless' }, turns: repeat(30, (i) => ({ content: [{ type: 'tool_use', name: 'lookup', input: { q: `topic ${i}` } }] })) },
    {
      name: 'verbose',
      match: { system: 'agent verbose' },
      turns: repeat(30, (i) => ({ text: 'Let me think at length.', content: [{ type: 'tool_use', name: 'lookup', input: { q: `v${i}` } }], usage: { output_tokens: 4000 } })),
    },
  ],
};

let nats: NatsTestContext;
let sim: SimulatorHandle;
let host: Awaited<ReturnType<typeof startHost>>;
const costOf = (events: TaskEvent[]) => events.reduce((sum, e) => sum + (e.type === 'model' ? e.costUsd : 0), 0);

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({ scenario });
  const client = createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url, routing: { default: { model: 'claude-opus-4-6', maxTokens: 4096 }, roles: {} } });
  host = await startHost(nats.url, [agent('looper'), agent('endless', { steps: 5 }), agent('verbose', { usd: 0.25 })], client);
});
afterAll(async () => {
  await host?.stop();
  await sim?.close();
  await nats?.close();
});

describe('limits on real tasks', () => {
  it('stops a model looping on the same tool call at the no-progress window', async () => {
    await submit(nats.nc, nats.js, 'looper', { taskId: 'loop-1', input: { q: 'go' } });
    const events = await eventsUntilEnd(nats.js, 'loop-1');
    expect(events.at(-1)).toMatchObject({ type: 'failed', error: { code: 'limit_exceeded', details: { limit: 'noProgress', used: 3, max: 3 } } });
    expect(events.filter((e) => e.type === 'tool')).toHaveLength(4);
    expect(events.find((e) => e.type === 'limit')).toMatchObject({ limit: 'noProgress', action: 'stop' });
  });

  it('stops a model that never finishes at the step cap, before the call past it', async () => {
    const before = sim.stats().totalRequests;
    await submit(nats.nc, nats.js, 'endless', { taskId: 'endless-1', input: { q: 'go' } });
    const events = await eventsUntilEnd(nats.js, 'endless-1');
    expect(events.at(-1)).toMatchObject({ type: 'failed', error: { code: 'limit_exceeded', details: { limit: 'steps', used: 5, max: 5 } } });
    expect(sim.stats().totalRequests - before).toBe(5);
  });

  it('lets a task lower its limits in the task message, never raise them', async () => {
    await submit(nats.nc, nats.js, 'endless', { taskId: 'endless-2', input: { q: 'go' }, budget: { steps: 2 } });
    await submit(nats.nc, nats.js, 'endless', { taskId: 'endless-3', input: { q: 'go' }, budget: { steps: 50 } });
    expect((await eventsUntilEnd(nats.js, 'endless-2')).at(-1)).toMatchObject({ error: { details: { limit: 'steps', max: 2 } } });
    expect((await eventsUntilEnd(nats.js, 'endless-3')).at(-1)).toMatchObject({ error: { details: { limit: 'steps', max: 5 } } });
  });

  it('stops a verbose expensive model under its USD ceiling, with the partial result', async () => {
    await submit(nats.nc, nats.js, 'verbose', { taskId: 'verbose-1', input: { q: 'go' } });
    const events = await eventsUntilEnd(nats.js, 'verbose-1');
    expect(events.at(-1)).toMatchObject({ type: 'failed', error: { code: 'limit_exceeded', details: { limit: 'usd', partial: 'Let me think at length.' } } });
    const spent = costOf(events);
    expect(spent).toBeGreaterThan(0.1);
    expect(spent).toBeLessThanOrEqual(0.25);
    // The last call was clamped: it asked for less than the route's 4096 tokens.
    // Each model call's event carries the task's budget with that call counted.
    const calls = events.filter((e) => e.type === 'model');
    expect(calls.at(-1)?.budget?.used.usd).toBeCloseTo(spent, 12);
    const requests = sim.stats().requests.filter((r) => r.script === 'verbose');
    expect(requests.at(-1)!.maxTokens).toBeLessThan(4096);
  });
});

/** A small seeded generator, so a failure can be replayed with the same seed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('the USD ceiling as a property', () => {
  it('holds for 500 randomised runs: random token counts, random tool loops, random ceilings', async () => {
    const seed = Number(process.env.TROUPE_PROPERTY_SEED ?? 20261122);
    const random = rng(seed);
    const runs = Number(process.env.TROUPE_PROPERTY_RUNS ?? 500);
    const plans = repeat(runs, (i) => ({
      id: `prop-${i}`,
      usd: 0.002 + random() * 0.2,
      turns: repeat(1 + Math.floor(random() * 12), (t) => ({
        out: 1 + Math.floor(random() * 6000),
        // Sometimes repeat the previous call (no progress), mostly not.
        q: random() < 0.2 ? 'again' : `q${t}-${Math.floor(random() * 1000)}`,
        pad: 'x'.repeat(Math.floor(random() * 3000)),
      })),
    }));
    const propSim = await startSimulator({
      scenario: {
        name: 'property',
        scripts: plans.map((p) => ({
          name: p.id,
          match: { firstUser: `run ${p.id} ` },
          turns: [
            ...p.turns.map((t) => ({ text: t.pad || 'thinking', content: [{ type: 'tool_use' as const, name: 'lookup', input: { q: t.q } }], usage: { output_tokens: t.out } })),
            { text: 'done', usage: { output_tokens: 1 + Math.floor(random() * 6000) } },
          ],
        })),
      },
    });
    const models = ['claude-haiku-4-5', 'claude-sonnet-4-6', 'claude-opus-4-6'];
    const client = createAnthropicModelClient({ apiKey: 'k', baseURL: propSim.url, routing: { default: { model: models[seed % 3]!, maxTokens: 8192 }, roles: {} } });
    // Its own prefix: every host on one prefix must run the same agents.
    const propHost = await startHost(nats.url, [agent('prop', { steps: 20 })], client, { prefix: 'prop', host: { concurrency: 500 } });
    try {
      await Promise.all(plans.map((p) => submit(nats.nc, nats.js, 'prop', { taskId: p.id, input: { q: `run ${p.id} now` }, budget: { usd: p.usd } }, { prefix: 'prop' })));
      const results = await Promise.all(plans.map((p) => eventsUntilEnd(nats.js, p.id, { timeoutMs: 120_000, prefix: 'prop' })));
      let stoppedByUsd = 0;
      const over: string[] = [];
      for (const [i, events] of results.entries()) {
        const spent = costOf(events);
        if (spent > plans[i]!.usd) over.push(`${plans[i]!.id}: spent ${spent} of ${plans[i]!.usd}`);
        const last = events.at(-1) as { type: string; error?: { details?: { limit?: string } } };
        if (last.error?.details?.limit === 'usd') stoppedByUsd++;
      }
      expect(over, `seed ${seed}`).toEqual([]);
      // The ceiling was actually in play, not trivially far away.
      expect(stoppedByUsd).toBeGreaterThan(runs / 5);
    } finally {
      await propHost.stop();
      await propSim.close();
    }
  }, 300_000);
});
