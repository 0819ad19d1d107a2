import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startHost } from '../helpers/host.ts';
import { useNats } from '../helpers/nats.ts';
import { scriptedModel, turnOf } from '../helpers/scripted-model.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** Executions per idempotency key, and which host ran each. */
const executions = new Map<string, string[]>();
let release: (() => void) | undefined;
let slowStarted: (() => void) | undefined;

function agentFor(hostName: string) {
  const record = defineTool({
    name: 'record',
    description: 'records that it ran',
    input: z.object({ slow: z.boolean() }),
    output: z.object({ host: z.string() }),
    reversibility: 'irreversible',
    timeoutMs: 20_000,
    run: async ({ slow }, ctx) => {
      executions.set(ctx.key, [...(executions.get(ctx.key) ?? []), hostName]);
      if (slow) {
        slowStarted?.();
        await new Promise<void>((r) => (release = r));
      }
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
      return { host: hostName };
    },
  });
  return defineAgent({
    name: 'spread',
    description: 'one tool call, then done',
    input: z.object({ slow: z.boolean().default(false) }),
    tools: [record],
    approvals: { autoApprove: ['record'] },
    prompt: (i) => JSON.stringify(i),
  });
}

const model = scriptedModel((req) => {
  const input = JSON.parse(req.messages[0]!.content as string) as { slow: boolean };
  if (turnOf(req) === 0) return [{ type: 'tool_use', id: 'tu', name: 'record', input }];
  const result = (req.messages.at(-1)!.content as Array<{ content: string }>)[0]!.content;
  return [{ type: 'text', text: JSON.parse(result).host }];
});

const nats = useNats();

describe('two hosts on one NATS', () => {
  it('spread tasks over both, run every effect once, and never both advance a task', async () => {
    // Each host runs at most 8 tasks at once, so 40 tasks must spread over both.
    const a = await startHost(nats.url, [agentFor('a')], model, { host: { concurrency: 8 } }, { hostId: 'host-a' });
    const b = await startHost(nats.url, [agentFor('b')], model, { host: { concurrency: 8 } }, { hostId: 'host-b' });
    try {
      const ids = Array.from({ length: 40 }, (_, i) => `spread-${i}`);
      await Promise.all(ids.map((taskId) => submit(nats.nc, nats.js, 'spread', { taskId, input: {} })));
      const results = await Promise.all(ids.map((id) => eventsUntilEnd(nats.js, id)));
      const ranOn = results.map((events) => (events.at(-1) as { output: string }).output);
      expect(results.every((events) => events.at(-1)!.type === 'done')).toBe(true);
      expect(ranOn.filter((h) => h === 'a').length).toBeGreaterThan(0);
      expect(ranOn.filter((h) => h === 'b').length).toBeGreaterThan(0);
      for (const id of ids) expect(executions.get(`${id}/0/1`)).toHaveLength(1);
      // Each task's snapshot was written by the host that ran its tool, and no task was resumed.
      const kv = await new Kvm(nats.js).open('troupe_snapshots');
      for (const [i, id] of ids.entries()) {
        const env = (await kv.get(id))!.json<{ owner: string; status: string }>();
        expect(env).toMatchObject({ status: 'done', owner: `host-${ranOn[i]}` });
        expect(results[i]!.some((e) => e.type === 'resumed')).toBe(false);
      }
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('hands a task over on graceful shutdown: the running effect finishes once and the other host completes the task', async () => {
    const a = await startHost(nats.url, [agentFor('a')], model, {}, { hostId: 'host-a2' });
    const started = new Promise<void>((r) => (slowStarted = r));
    await submit(nats.nc, nats.js, 'spread', { taskId: 'handover', input: { slow: true } });
    await started;
    const b = await startHost(nats.url, [agentFor('b')], model, {}, { hostId: 'host-b2' });
    try {
      const closing = a.stop();
      setTimeout(() => release?.(), 200);
      await closing;
      const events = await eventsUntilEnd(nats.js, 'handover');
      expect(events.at(-1)).toMatchObject({ type: 'done', output: 'a' });
      expect(events.filter((e) => e.type === 'resumed')).toMatchObject([{ host: 'host-b2' }]);
      expect(executions.get('handover/0/1')).toEqual(['a']);
    } finally {
      await b.stop();
    }
  });

  it('stops a runner whose snapshot another writer advanced, without overwriting it', async () => {
    const a = await startHost(nats.url, [agentFor('a')], model, { host: { leaseMs: 60_000 } }, { hostId: 'host-a3' });
    const kv = await new Kvm(nats.js).open('troupe_snapshots');
    try {
      const started = new Promise<void>((r) => (slowStarted = r));
      await submit(nats.nc, nats.js, 'spread', { taskId: 'conflict', input: { slow: true } });
      await started;
      // Another writer (a host that took over after a split) advances the task.
      const entry = (await kv.get('conflict'))!;
      const foreign = { ...entry.json<Record<string, unknown>>(), owner: 'someone-else' };
      await kv.update('conflict', JSON.stringify(foreign), entry.revision);
      release?.();
      await new Promise((r) => setTimeout(r, 500));
      const after = (await kv.get('conflict'))!;
      expect(after.json<{ owner: string }>().owner).toBe('someone-else');
      expect(after.revision).toBe(entry.revision + 1);
      expect(a.running).toBe(0);
    } finally {
      await a.stop();
    }
  });
});
