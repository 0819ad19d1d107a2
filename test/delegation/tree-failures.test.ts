import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { cancelTask } from '../../actors/delegation.ts';
import { defineAgent } from '../../actors/agent.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { subjects } from '../../runtime/subjects.ts';
import { taskHistory } from '../../runtime/task-watch.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { treeAgents, treeScenario } from '../fixtures/tree-agents.ts';
import { startChildHost } from '../helpers/child-host.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { until } from '../helpers/until.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** What goes wrong in a tree: a host killed mid fan-out, a child that spends the budget, a cancel. */

let nats: NatsTestContext;
let slowSim: SimulatorHandle;
const snapshots = async (prefix = 'troupe') => new Kvm(nats.js).open(`${prefix}_snapshots`);
const envelope = async (taskId: string, prefix = 'troupe') => (await (await snapshots(prefix)).get(taskId))?.json<Record<string, any>>();

beforeAll(async () => {
  nats = await startNats();
  slowSim = await startSimulator({ scenario: treeScenario(1500) });
});
afterAll(async () => {
  await slowSim?.close();
  await nats?.close();
});

describe('a task tree under failure', () => {
  it('a host SIGKILLed in the middle of a fan-out: every child starts once and the parent completes', async () => {
    const prefix = 'treekill';
    const first = startChildHost('tree-host.ts', { NATS_URL: nats.url, MODEL_URL: slowSim.url, PREFIX: prefix });
    await first.waitForMark('ready');
    await submit(nats.nc, nats.js, 'triage', { taskId: 'tk-1', input: { q: 'refund and parcel?' } }, { prefix });
    // Kill as soon as the first child has been accepted: the second may or may not be out yet.
    await until('the first child', async () => ((await taskHistory(nats.js, subjects(prefix), 'tk-1-0-1-1')).some((e) => e.type === 'accepted') ? true : undefined));
    await first.kill('SIGKILL');
    const second = startChildHost('tree-host.ts', { NATS_URL: nats.url, MODEL_URL: slowSim.url, PREFIX: prefix });
    try {
      await second.waitForMark('ready');
      const events = await eventsUntilEnd(nats.js, 'tk-1', { prefix, timeoutMs: 40_000 });
      const done = events.at(-1) as { type: string; output: string };
      expect(done.type).toBe('done');
      expect(done.output).toContain('Refund sent on Monday.');
      expect(done.output).toContain('Parcel arrives Friday.');
      const ids = (await (await snapshots(prefix)).keys().then(async (it) => { const out: string[] = []; for await (const k of it) out.push(k); return out; })).filter((k) => k.startsWith('tk-1')).sort();
      expect(ids).toEqual(['tk-1', 'tk-1-0-1-1', 'tk-1-0-1-2']);
      for (const id of ['tk-1-0-1-1', 'tk-1-0-1-2']) {
        // One task per child id (the ids above), created once: at most one acceptance (a host
        // killed between creating a child and announcing it leaves none, and the next resumes it).
        expect((await taskHistory(nats.js, subjects(prefix), id)).filter((e) => e.type === 'accepted').length).toBeLessThanOrEqual(1);
        expect(await envelope(id, prefix)).toMatchObject({ status: 'done', parent: { taskId: 'tk-1' } });
      }
    } finally {
      await second.kill();
    }
  }, 60_000);

  it('a child that runs out of its share stops its siblings and fails the parent with limit_exceeded', async () => {
    const steps: string[] = [];
    const note = defineTool({ name: 'note', description: 'write a note', input: z.object({ n: z.number() }), output: z.object({ ok: z.boolean() }), run: async ({ n }) => (steps.push(String(n)), { ok: true }) });
    const looper = defineAgent({ name: 'looper', description: 'takes many steps', input: z.object({ q: z.string() }), system: 'budget looper', tools: [note], prompt: (i) => i.q });
    const slowpoke = defineAgent({ name: 'slowpoke', description: 'answers slowly', input: z.object({ q: z.string() }), system: 'budget slowpoke', prompt: (i) => i.q });
    const boss = defineAgent({ name: 'boss', description: 'delegates', input: z.object({ q: z.string() }), system: 'budget boss', delegates: ['looper', 'slowpoke'], limits: { steps: 9 }, prompt: (i) => i.q });
    const call = (n: number) => ({ content: [{ type: 'tool_use' as const, name: 'note', input: { n } }] });
    const sim = await startSimulator({
      scenario: {
        name: 'budget',
        scripts: [
          { name: 'boss', match: { system: 'budget boss' }, turns: [{ content: [{ type: 'tool_use', name: 'delegate', input: { tasks: [{ agent: 'looper', input: { q: 'loop' } }, { agent: 'slowpoke', input: { q: 'wait' } }] } }] }, { text: 'never reached' }] },
          { name: 'looper', match: { system: 'budget looper' }, turns: [call(1), call(2), call(3), call(4), { text: 'looped' }] },
          { name: 'slowpoke', match: { system: 'budget slowpoke' }, latencyMs: 5_000, turns: [{ text: 'finally' }] },
        ],
      },
    });
    const host = await startHost(nats.url, [looper, slowpoke, boss], createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }), { host: { drainTimeoutMs: 500 } });
    try {
      await submit(nats.nc, nats.js, 'boss', { taskId: 'bg-1', input: { q: 'go' } });
      const events = await eventsUntilEnd(nats.js, 'bg-1', { timeoutMs: 30_000 });
      expect(events.at(-1)).toMatchObject({ type: 'failed', error: { code: 'limit_exceeded', details: { limit: 'steps' }, message: expect.stringContaining('bg-1-0-1-1') } });
      // The looper got 3 of the boss's 9 steps (the 7 left after its own call, less one kept for the boss, split in two), and stopped there.
      expect(await envelope('bg-1-0-1-1')).toMatchObject({ status: 'failed', outcome: { error: { code: 'limit_exceeded' } } });
      expect(steps.length).toBeLessThanOrEqual(3);
      const sibling = (await eventsUntilEnd(nats.js, 'bg-1-0-1-2', { timeoutMs: 15_000 })).at(-1);
      expect(sibling).toMatchObject({ type: 'failed', error: { code: 'cancelled' } });
    } finally {
      await host.stop();
      await sim.close();
    }
  }, 60_000);

  it('cancelling a task cancels its children and grandchildren', async () => {
    const host = await startHost(nats.url, treeAgents, createAnthropicModelClient({ apiKey: 'k', baseURL: slowSim.url }), { limits: { steps: 12 }, host: { drainTimeoutMs: 3000 } });
    try {
      await submit(nats.nc, nats.js, 'manager', { taskId: 'cx-1', input: { q: 'case' } });
      // Wait for the grandchildren to be running.
      await until('the grandchildren', async () => ((await envelope('cx-1-0-1-1-0-1-2'))?.status === 'running' ? true : undefined));
      await cancelTask(nats.js, subjects(), { taskId: 'cx-1', reason: 'customer withdrew' });
      const root = await eventsUntilEnd(nats.js, 'cx-1', { timeoutMs: 20_000 });
      expect(root.at(-1)).toMatchObject({ type: 'failed', error: { code: 'cancelled', message: expect.stringContaining('customer withdrew') } });
      for (const id of ['cx-1-0-1-1', 'cx-1-0-1-1-0-1-1', 'cx-1-0-1-1-0-1-2']) {
        const end = (await eventsUntilEnd(nats.js, id, { timeoutMs: 20_000 })).at(-1);
        expect(end, id).toMatchObject({ type: 'failed', error: { code: 'cancelled' } });
      }
    } finally {
      await host.stop();
    }
  }, 60_000);

  it("a parent whose wall clock runs out while it waits stops, and its children with it", async () => {
    // Its children have the default wall clock (90 s): only the parent's stop can end them early.
    const hasty = defineAgent({ name: 'hasty', description: 'delegates with little time', input: z.object({ q: z.string() }), system: 'tree triage', delegates: ['billing', 'shipping'], limits: { wallClockMs: 700 }, prompt: (i) => i.q });
    const host = await startHost(nats.url, [...treeAgents, hasty], createAnthropicModelClient({ apiKey: 'k', baseURL: slowSim.url }), { host: { approvalSweepMs: 100, drainTimeoutMs: 3000 } });
    try {
      await submit(nats.nc, nats.js, 'hasty', { taskId: 'wc-1', input: { q: 'slow children' } });
      const events = await eventsUntilEnd(nats.js, 'wc-1', { timeoutMs: 20_000 });
      expect(events.at(-1)).toMatchObject({ type: 'failed', error: { code: 'limit_exceeded', details: { limit: 'wallClock' } } });
      for (const id of ['wc-1-0-1-1', 'wc-1-0-1-2']) {
        const end = (await eventsUntilEnd(nats.js, id, { timeoutMs: 20_000 })).at(-1);
        expect(end, id).toMatchObject({ type: 'failed', error: { code: 'cancelled', message: expect.stringContaining('wc-1 ended: limit_exceeded') } });
      }
    } finally {
      await host.stop();
    }
  }, 60_000);
});
