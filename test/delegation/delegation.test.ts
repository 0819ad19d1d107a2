import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { subjects } from '../../runtime/subjects.ts';
import { taskHistory } from '../../runtime/task-watch.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { frontdesk, treeAgents, treeScenario } from '../fixtures/tree-agents.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

let nats: NatsTestContext;
let sim: SimulatorHandle;
const client = () => createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url });
const envelope = async (taskId: string) => (await (await new Kvm(nats.js).open('troupe_snapshots')).get(taskId))?.json<Record<string, any>>();

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({ scenario: treeScenario(100) });
});
afterAll(async () => {
  await sim?.close();
  await nats?.close();
});

describe('delegation', () => {
  it('fans out to two agents in parallel, parks while they run, and merges their answers', async () => {
    const host = await startHost(nats.url, treeAgents, client());
    try {
      await submit(nats.nc, nats.js, 'triage', { taskId: 'dg-1', input: { q: 'where is my refund and my parcel?' } });
      const events = await eventsUntilEnd(nats.js, 'dg-1', { timeoutMs: 30_000 });
      const done = events.at(-1) as { type: string; output: string };
      expect(done.type).toBe('done');
      expect(done.output).toContain('Refund sent on Monday.');
      expect(done.output).toContain('Parcel arrives Friday.');
      const parent = await envelope('dg-1');
      expect(Object.keys(parent!.children).sort()).toEqual(['dg-1-0-1-1', 'dg-1-0-1-2']);
      const child = await envelope('dg-1-0-1-1');
      expect(child).toMatchObject({ agent: 'billing', parent: { taskId: 'dg-1', key: 'dg-1/0/1' }, status: 'done' });
      // The child ran on a share of the parent's steps, and its model call counts against the parent.
      const childBudget = child!.supervisor.context.limits.steps;
      expect(childBudget).toBeLessThan(8);
      expect(parent!.supervisor.context.used.steps).toBe(2 + 2);
      // Each child was accepted once.
      for (const id of ['dg-1-0-1-1', 'dg-1-0-1-2']) {
        expect((await taskHistory(nats.js, subjects(), id)).filter((e) => e.type === 'accepted')).toHaveLength(1);
      }
    } finally {
      await host.stop();
    }
  });

  it('runs a grandchild tree: manager -> triage -> billing + shipping', async () => {
    const host = await startHost(nats.url, treeAgents, client(), { limits: { steps: 12 } });
    try {
      await submit(nats.nc, nats.js, 'manager', { taskId: 'dg-2', input: { q: 'case 7' } });
      const events = await eventsUntilEnd(nats.js, 'dg-2', { timeoutMs: 30_000 });
      const done = events.at(-1) as { type: string; output: string };
      expect(done.type).toBe('done');
      expect(done.output).toContain('Parcel arrives Friday.');
      expect(await envelope('dg-2-0-1-1-0-1-2')).toMatchObject({ agent: 'shipping', parent: { taskId: 'dg-2-0-1-1' }, status: 'done' });
    } finally {
      await host.stop();
    }
  });

  it('hands a task over: the specialist answers, the context passed is recorded, and the first task ends with that answer', async () => {
    const host = await startHost(nats.url, [...treeAgents, frontdesk], client());
    try {
      await submit(nats.nc, nats.js, 'frontdesk', { taskId: 'ho-1', input: { q: 'refund?' } });
      const events = await eventsUntilEnd(nats.js, 'ho-1', { timeoutMs: 30_000 });
      expect(events.at(-1)).toMatchObject({ type: 'done', output: 'Refund sent on Monday.' });
      expect(events.find((e) => e.type === 'handoff')).toMatchObject({ to: 'billing', childTaskId: 'ho-1-0-1-1', context: expect.stringContaining('already verified her email') });
      // One model call: the front desk's; the answer is the specialist's own.
      expect(events.filter((e) => e.type === 'model')).toHaveLength(1);
      expect(await envelope('ho-1-0-1-1')).toMatchObject({ agent: 'billing', parent: { taskId: 'ho-1' }, metadata: { handoff: { from: 'ho-1', context: expect.stringContaining('A-1001') } } });
    } finally {
      await host.stop();
    }
  });
});
