import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { startHost } from '../helpers/host.ts';
import { scriptedModel, turnOf } from '../helpers/scripted-model.ts';
import { eventsUntilEnd } from '../helpers/watch.ts';

/**
 * What a step costs in NATS operations, counted on the host's own connection to a real server.
 * The step rate of a task is bound by these round trips (see the README's Performance section):
 * this guards the count, not a timing.
 */
const STEPS = 6;
const echo = defineTool({ name: 'echo', description: 'echoes', input: z.object({ n: z.number() }), output: z.object({ n: z.number() }), run: async ({ n }) => ({ n }) });
const agent = defineAgent({ name: 'counted', description: 'a tool loop', input: z.object({}), system: 's', tools: [echo], limits: { steps: STEPS + 2 }, prompt: () => 'go' });
const model = scriptedModel((request) => {
  const turn = turnOf(request);
  return turn < STEPS - 1 ? [{ type: 'tool_use', id: `tu${turn}`, name: 'echo', input: { n: turn } }] : [{ type: 'text', text: 'done' }];
});

describe('round trips per step', () => {
  let nats: NatsTestContext;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats?.close();
  });

  it('writes the snapshot once per effect and reads no ledger record for effects it starts itself', async () => {
    const host = await startHost(nats.url, [agent], model, { prefix: 'rt' });
    const s = makeSubjects('rt');
    const counted = new Map<string, number>();
    const original = host.nc.publish.bind(host.nc);
    host.nc.publish = ((subject: string, ...rest: Parameters<typeof original> extends [string, ...infer R] ? R : never) => {
      const kind = subject.startsWith(`$KV.${s.buckets.snapshots}.`) ? 'snapshot write' : subject.startsWith(`$KV.${s.buckets.ledger}.`) ? 'ledger write' : subject.startsWith(`$JS.API.DIRECT.GET.KV_${s.buckets.ledger}`) ? 'ledger read' : 'other';
      counted.set(kind, (counted.get(kind) ?? 0) + 1);
      return original(subject, ...rest);
    }) as typeof host.nc.publish;
    try {
      await nats.js.publish(s.task('counted'), JSON.stringify({ taskId: 'rt-1', input: {} }), { msgID: 'rt-1' });
      const events = await eventsUntilEnd(nats.js, 'rt-1', { prefix: 'rt' });
      expect(events.at(-1)?.type).toBe('done');
      // A model call and a tool call per step (the last step has no tool call), each behind one
      // snapshot write, plus the task's creation, its outcome, and a claim of the message.
      const effects = STEPS + (STEPS - 1);
      expect(counted.get('snapshot write') ?? 0).toBeLessThanOrEqual(effects + 2);
      expect(counted.get('ledger write') ?? 0).toBe(effects);
      expect(counted.get('ledger read') ?? 0).toBe(0);
    } finally {
      host.nc.publish = original;
      await host.stop();
    }
  });
});
