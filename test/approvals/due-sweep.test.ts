import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { useNats } from '../helpers/nats.ts';
import { startHost } from '../helpers/host.ts';
import { scriptedModel } from '../helpers/scripted-model.ts';
import { until } from '../helpers/until.ts';
import { eventsUntilEnd } from '../helpers/watch.ts';

/**
 * The hosts' sweep (approval deadlines, wait timers, wall clocks of waiting tasks) reads only the
 * parked tasks whose time has come, from the due index, not every task ever saved: with 100,000
 * tasks parked it read each of them every 5 s, and its sweeps piled up.
 */
const noop = defineTool({ name: 'noop', description: 'nothing', input: z.object({}), output: z.object({}), run: async () => ({}) });
const parks = (name: string, deadlineMs?: number) =>
  defineAgent({
    name,
    description: 'parks for an approver after one step',
    input: z.object({}),
    system: 's',
    tools: [noop],
    limits: { steps: 1, onBreach: { steps: 'escalate' } },
    ...(deadlineMs ? { approvals: { deadlineMs } } : {}),
    prompt: () => 'go',
  });
const model = scriptedModel(() => [{ type: 'tool_use', id: 'tu', name: 'noop', input: {} }]);
const PARKED = 40;

describe('the sweep of parked tasks', () => {
  const nats = useNats();

  it('reads only the tasks that fall due, and still expires a request at its deadline', async () => {
    const host = await startHost(nats.url, [parks('waits'), parks('hurries', 300)], model, { prefix: 'ds', host: { approvalSweepMs: 100 } });
    const s = makeSubjects('ds');
    let reads = 0;
    const original = host.nc.publish.bind(host.nc);
    host.nc.publish = ((subject: string, ...rest: Parameters<typeof original> extends [string, ...infer R] ? R : never) => {
      if (subject.startsWith(`$JS.API.DIRECT.GET.KV_${s.buckets.snapshots}`)) reads++;
      return original(subject, ...rest);
    }) as typeof host.nc.publish;
    try {
      const parked = new Set<string>();
      const sub = nats.nc.subscribe(s.allEvents, { callback: (_e, m) => { const e = JSON.parse(new TextDecoder().decode(m.data)) as { type: string; taskId: string }; if (e.type === 'escalated') parked.add(e.taskId); } });
      for (let i = 0; i < PARKED; i++) await nats.js.publish(s.task('waits'), JSON.stringify({ taskId: `w${i}`, input: {} }), { msgID: `w${i}` });
      await until('all tasks parked', () => (parked.size === PARKED ? true : undefined), 20_000);
      sub.unsubscribe();

      // About ten sweeps over 40 parked tasks without a deadline: nothing to read.
      reads = 0;
      await new Promise((r) => setTimeout(r, 1_000));
      expect(reads).toBeLessThan(PARKED);

      // A request with a deadline is still expired by the sweep (a limit not granted: the task stops).
      await nats.js.publish(s.task('hurries'), JSON.stringify({ taskId: 'h1', input: {} }), { msgID: 'h1' });
      const events = await eventsUntilEnd(nats.js, 'h1', { prefix: 'ds', timeoutMs: 20_000 });
      expect(events.find((e) => e.type === 'decision_refused')).toMatchObject({ error: { code: 'approval_expired' } });
      expect(events.at(-1)).toMatchObject({ type: 'failed', error: { code: 'limit_exceeded' } });
    } finally {
      host.nc.publish = original;
      await host.stop();
    }
  });
});
