import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** Each host's Prometheus endpoint: scraped before and after real tasks, the counters move. */

let nats: NatsTestContext;
let sim: SimulatorHandle;
const look = defineTool({ name: 'look', description: 'look an order up', input: z.object({ id: z.string().regex(/^A-\d+$/) }), output: z.object({ ok: z.boolean() }), run: async () => ({ ok: true }) });
const desk = defineAgent({ name: 'metered', description: 'metered', input: z.object({ q: z.string() }), system: 'metered desk', tools: [look], limits: { steps: 3 }, prompt: (i) => i.q });
const use = (id: string) => ({ content: [{ type: 'tool_use' as const, name: 'look', input: { id } }] });

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({ scenario: { name: 'metered', scripts: [{ name: 'metered', match: { system: 'metered desk' }, turns: [use('bad'), use('A-1'), { text: 'fine' }] }] } });
});
afterAll(async () => {
  await sim?.close();
  await nats?.close();
});

const scrape = async (url: string) => (await fetch(url)).text();
const value = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
};

describe('GET /metrics', () => {
  it('counts tasks, model calls, tokens, cost, tool calls, gate rejections and snapshot writes', async () => {
    const host = await startHost(nats.url, [desk], createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }), { metrics: { port: 0 } });
    try {
      expect(host.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const before = await scrape(host.metricsUrl!);
      expect(value(before, 'troupe_tasks_total{agent="metered",outcome="done",code=""}')).toBe(0);
      await submit(nats.nc, nats.js, 'metered', { taskId: 'm-1', input: { q: 'go' } });
      await eventsUntilEnd(nats.js, 'm-1');
      // The host counts its end event once the stream acknowledged it, which may reach the host a
      // moment after a watcher got the event itself.
      let after = await scrape(host.metricsUrl!);
      for (let i = 0; i < 50 && value(after, 'troupe_tasks_total{agent="metered",outcome="done",code=""}') === 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        after = await scrape(host.metricsUrl!);
      }
      expect(value(after, 'troupe_tasks_total{agent="metered",outcome="accepted",code=""}')).toBe(1);
      expect(value(after, 'troupe_tasks_total{agent="metered",outcome="done",code=""}')).toBe(1);
      expect(value(after, 'troupe_model_calls_total{agent="metered",model="claude-sonnet-4-6"}')).toBe(3);
      expect(value(after, 'troupe_model_cost_usd_total{agent="metered",model="claude-sonnet-4-6"}')).toBeGreaterThan(0);
      expect(value(after, 'troupe_model_tokens_total{agent="metered",model="claude-sonnet-4-6",kind="output"}')).toBeGreaterThan(0);
      expect(value(after, 'troupe_tool_calls_total{agent="metered",tool="look",status="rejected"}')).toBe(1);
      expect(value(after, 'troupe_tool_calls_total{agent="metered",tool="look",status="succeeded"}')).toBe(1);
      expect(value(after, 'troupe_gate_rejections_total{agent="metered",gate="schema"}')).toBe(1);
      // At least one before each model call (the read-only tool calls need none of their own).
      expect(value(after, 'troupe_snapshot_write_seconds{stat="count"}')).toBeGreaterThanOrEqual(3);
      expect(after).toContain('# TYPE troupe_tasks_running gauge');
      expect((await fetch(host.metricsUrl!.replace('/metrics', '/other'))).status).toBe(404);
    } finally {
      await host.stop();
    }
  });
});
