import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { followUp, outbox } from '../../examples/follow-up/agent.ts';
import { subjects } from '../../runtime/subjects.ts';
import { taskHistory } from '../../runtime/task-watch.ts';
import { startChildHost, tempDir, type ChildHost } from '../helpers/child-host.ts';
import { runTroupe } from '../helpers/cli.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { until } from '../helpers/until.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/**
 * Waiting for the outside world: a reply on a task's inbox wakes it on whichever host is up, and
 * a durable timer sends exactly one reminder however often the hosts die.
 */

let nats: NatsTestContext;
const children: ChildHost[] = [];
const noModel = { call: async () => { throw new Error('no model in this workflow'); } } as never;
const input = (followUpAfterMs: number, giveUpAfterMs: number) => ({ customer: 'Ada', email: 'ada@example.com', question: 'Refund or replacement?', followUpAfterMs, giveUpAfterMs });
const waits = async (taskId: string, prefix = 'troupe') => (await taskHistory(nats.js, subjects(prefix), taskId)).filter((e) => e.type === 'waiting');

beforeAll(async () => {
  nats = await startNats();
});
afterEach(async () => {
  for (const c of children.splice(0)) await c.kill();
});
afterAll(async () => {
  await nats?.close();
});

describe('waiting for an inbox event', () => {
  it('parks, and a reply sent to its inbox wakes it on another host; a bad event is refused and it keeps waiting', async () => {
    const a = await startHost(nats.url, [followUp], noModel, { host: { approvalSweepMs: 200 } });
    await submit(nats.nc, nats.js, 'follow-up', { taskId: 'fu-1', input: input(60_000, 120_000) });
    await until('the task to park', async () => ((await waits('fu-1')).length ? true : undefined));
    await a.stop();

    const b = await startHost(nats.url, [followUp], noModel, { host: { approvalSweepMs: 200 } });
    try {
      // Data that breaks the agent's schema for `reply` is refused, visibly; the task waits on.
      const bad = await runTroupe(nats.url, ['send', 'fu-1', '{"type":"reply","data":{"text":""}}']);
      expect(bad.code).toBe(0);
      await until('the refusal', async () => ((await taskHistory(nats.js, subjects(), 'fu-1')).find((e) => e.type === 'inbox' && !e.accepted) ? true : undefined));
      const refused = (await taskHistory(nats.js, subjects(), 'fu-1')).find((e) => e.type === 'inbox');
      expect(refused).toMatchObject({ accepted: false, error: { code: 'invalid_input' } });

      const good = await runTroupe(nats.url, ['send', 'fu-1', '{"type":"reply","data":{"text":"A refund, please"}}', '--id', 'reply-1']);
      expect(good.stdout).toContain("delivered to fu-1's inbox");
      const again = await runTroupe(nats.url, ['send', 'fu-1', '{"type":"reply","data":{"text":"A refund, please"}}', '--id', 'reply-1']);
      expect(again.stdout).toContain('already delivered');
      const events = await eventsUntilEnd(nats.js, 'fu-1', { timeoutMs: 15_000 });
      expect(events.at(-1)).toMatchObject({ type: 'done', output: { outcome: 'replied', reply: { text: 'A refund, please' }, reminders: 0 } });
      expect(events.some((e) => e.type === 'resumed')).toBe(true);
      expect([...outbox.keys()].filter((k) => k.startsWith('fu-1/'))).toEqual(['fu-1/0/1']);
    } finally {
      await b.stop();
    }
  });

  it('sends exactly one reminder across two host SIGKILLs, then hands the case to a person', async () => {
    const prefix = 'fukill';
    const file = path.join(tempDir('troupe-outbox-'), 'outbox');
    const host = () => {
      const h = startChildHost('follow-up-host.ts', { NATS_URL: nats.url, PREFIX: prefix, OUTBOX_FILE: file });
      children.push(h);
      return h;
    };
    const sent = () => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

    const first = host();
    await first.waitForMark('ready');
    await submit(nats.nc, nats.js, 'follow-up', { taskId: 'fu-2', input: input(1_500, 4_000) }, { prefix });
    await until('the first wait', async () => ((await waits('fu-2', prefix)).length === 1 ? true : undefined));
    await first.kill('SIGKILL');

    const second = host();
    await second.waitForMark('ready');
    // Its timer is due 1.5 s after the first wait began: the reminder goes out, and it waits again.
    await until('the reminder', async () => ((await waits('fu-2', prefix)).length === 2 ? true : undefined), 20_000);
    await second.kill('SIGKILL');

    const third = host();
    await third.waitForMark('ready');
    const events = await eventsUntilEnd(nats.js, 'fu-2', { prefix, timeoutMs: 20_000 });
    expect(events.at(-1)).toMatchObject({ type: 'done', output: { outcome: 'escalated', reminders: 1 } });
    expect(sent()).toEqual(['fu-2/0/1 A question about your order', 'fu-2/2/1 Reminder: a question about your order']);
  }, 60_000);
});
