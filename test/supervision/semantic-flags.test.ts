import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** Semantic failures: nothing crashed, but the output, a tool's payload or the cost is wrong. */

let nats: NatsTestContext;
let sim: SimulatorHandle;
const note = defineTool({ name: 'note', description: 'take a note', input: z.object({ n: z.number() }), output: z.object({ ok: z.literal(true) }), run: async ({ n }) => (n === 99 ? ({ ok: 'garbage' } as never) : { ok: true }) });
const agent = (name: string) => defineAgent({ name, description: name, input: z.object({ q: z.string() }), output: z.object({ answer: z.string() }), system: `flags ${name}`, tools: [note], limits: { steps: 8 }, prompt: (i) => i.q });
const use = (n: number) => ({ content: [{ type: 'tool_use' as const, name: 'note', input: { n } }] });

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({
    scenario: {
      name: 'flags',
      scripts: [
        { name: 'heavy', match: { firstUser: 'heavy' }, turns: [use(1), use(2), use(3), use(4), use(5), use(6), { text: 'done at last' }] },
        { name: 'garbage', match: { firstUser: 'garbage' }, turns: [use(99), { text: 'ok' }] },
        { name: 'strict judge', match: { system: 'strict judge' }, turns: [{ text: 'FAIL: the answer ignores the order id' }] },
        { name: 'lenient judge', match: { system: 'lenient judge' }, turns: [{ text: 'PASS' }] },
        { name: 'plain', turns: [{ text: 'a plain answer' }] },
      ],
    },
  });
});
afterAll(async () => {
  await sim?.close();
  await nats?.close();
});

const flagsOf = (events: Array<{ type: string }>) => events.filter((e) => e.type === 'flag') as Array<{ type: 'flag'; kind: string; message: string }>;

describe('semantic failure flags', () => {
  it("flags output that breaks the agent's output schema, a tool's garbage payload, and a task far above its agent's baseline", async () => {
    const flagged = agent('flagged');
    const host = await startHost(nats.url, [flagged], createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }), { metrics: { port: 0 } });
    try {
      // Output: a string where {answer} was declared. Flagged before the end, which stays last.
      await submit(nats.nc, nats.js, 'flagged', { taskId: 'sf-0', input: { q: 'plain' } });
      const first = await eventsUntilEnd(nats.js, 'sf-0');
      expect(flagsOf(first)).toMatchObject([{ kind: 'output_schema', message: expect.stringContaining('output schema') }]);
      expect(first.at(-1)).toMatchObject({ type: 'done' });

      // A baseline of five one-step tasks...
      for (let i = 1; i <= 4; i++) {
        await submit(nats.nc, nats.js, 'flagged', { taskId: `sf-${i}`, input: { q: 'plain' } });
        await eventsUntilEnd(nats.js, `sf-${i}`);
      }
      // ...then one that takes seven: more than five times the usual.
      await submit(nats.nc, nats.js, 'flagged', { taskId: 'sf-heavy', input: { q: 'heavy' } });
      const heavy = await eventsUntilEnd(nats.js, 'sf-heavy');
      expect(flagsOf(heavy).map((f) => f.kind)).toEqual(['output_schema', 'cost_anomaly', 'steps_anomaly']);
      expect(flagsOf(heavy)[2]!.message).toMatch(/7 model calls is 7\.0x agent flagged's usual 1\.0/);

      // A tool that "succeeds" with a payload breaking its own schema.
      await submit(nats.nc, nats.js, 'flagged', { taskId: 'sf-garbage', input: { q: 'garbage' } });
      const garbage = await eventsUntilEnd(nats.js, 'sf-garbage');
      expect(flagsOf(garbage)[0]).toMatchObject({ kind: 'tool_output', message: expect.stringContaining('note "succeeded"') });

      const metrics = await (await fetch(host.metricsUrl!)).text();
      expect(metrics).toContain('troupe_flags_total{agent="flagged",kind="steps_anomaly"} 1');
      expect(metrics).toContain('troupe_flags_total{agent="flagged",kind="tool_output"} 1');
    } finally {
      await host.stop();
    }
  });

  it('asks a configured judge about the output with one bounded model call, and flags a FAIL', async () => {
    const judged = (name: string, instructions: string) => defineAgent({ name, description: name, input: z.object({ q: z.string() }), system: `judged ${name}`, judge: { instructions, maxTokens: 32 }, prompt: (i) => i.q });
    const strict = judged('strict', 'You are a strict judge of support answers.');
    const lenient = judged('lenient', 'You are a lenient judge of support answers.');
    const host = await startHost(nats.url, [strict, lenient], createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }));
    try {
      await submit(nats.nc, nats.js, 'strict', { taskId: 'jd-1', input: { q: 'where is A-1?' } });
      const failed = await eventsUntilEnd(nats.js, 'jd-1');
      expect(flagsOf(failed)).toMatchObject([{ kind: 'judge', message: expect.stringContaining('FAIL: the answer ignores the order id') }]);
      const judgeCall = failed.find((e) => e.type === 'model' && (e as { role: string }).role === 'judge');
      expect(judgeCall).toMatchObject({ key: 'jd-1/judge/0', usage: { outputTokens: expect.any(Number) } });
      expect(failed.at(-1)).toMatchObject({ type: 'done', output: 'a plain answer' });

      await submit(nats.nc, nats.js, 'lenient', { taskId: 'jd-2', input: { q: 'where is A-1?' } });
      const passed = await eventsUntilEnd(nats.js, 'jd-2');
      expect(flagsOf(passed)).toEqual([]);
      expect(passed.some((e) => e.type === 'model' && (e as { role: string }).role === 'judge')).toBe(true);
    } finally {
      await host.stop();
    }
  });
});
