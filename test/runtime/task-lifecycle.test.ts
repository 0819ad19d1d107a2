import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { scriptedModel, turnOf } from '../helpers/scripted-model.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

const orders: Record<string, string> = { 'A-1': 'shipped', 'A-2': 'lost' };
const lookups: string[] = [];
const lookup = defineTool({
  name: 'lookup_order',
  description: 'Look up an order by id',
  input: z.object({ orderId: z.string() }),
  output: z.object({ status: z.string() }),
  run: async ({ orderId }) => {
    lookups.push(orderId);
    return { status: orders[orderId] ?? 'unknown' };
  },
});

const agent = defineAgent({
  name: 'desk',
  description: 'answers order questions',
  input: z.object({ orderId: z.string() }),
  system: 'support desk',
  tools: [lookup],
  prompt: (i) => `Where is order ${i.orderId}?`,
});

const model = scriptedModel((req) => {
  const first = req.messages[0]!.content as string;
  const orderId = /order (\S+)\?/.exec(first)![1]!;
  if (turnOf(req) === 0) return [{ type: 'tool_use', id: 'tu_1', name: 'lookup_order', input: { orderId } }];
  const last = req.messages[req.messages.length - 1]!;
  const result = (last.content as Array<{ type: string; content?: string }>)[0]!;
  return [{ type: 'text', text: `Order ${orderId}: ${JSON.parse(result.content!).status}` }];
});

let nats: NatsTestContext;
let host: Awaited<ReturnType<typeof startHost>>;

beforeAll(async () => {
  nats = await startNats();
  host = await startHost(nats.url, [agent], model);
});
afterAll(async () => {
  await host?.stop();
  await nats?.close();
});

describe('a task from submission to result', () => {
  it('is accepted, runs its tool, and ends with done; the history is in the events stream', async () => {
    const { ack, verdict } = await submit(nats.nc, nats.js, 'desk', { taskId: 'life-1', input: { orderId: 'A-1' } });
    expect(ack.stream).toBe('TROUPE_TASKS');
    expect(await verdict).toEqual({ taskId: 'life-1', status: 'accepted' });
    const events = await eventsUntilEnd(nats.js, 'life-1');
    expect(events[0]).toMatchObject({ type: 'accepted', taskId: 'life-1', agent: 'desk' });
    expect(events.at(-1)).toMatchObject({ type: 'done', output: 'Order A-1: shipped' });
    expect(events.filter((e) => e.type === 'tool')).toMatchObject([{ tool: 'lookup_order', status: 'succeeded', replayed: false }]);
    expect(events.filter((e) => e.type === 'state').map((e) => (e as { state: string }).state)).toEqual(['thinking', 'acting', 'thinking', 'done']);

    const kv = await new Kvm(nats.js).open('troupe_snapshots');
    const env = (await kv.get('life-1'))!.json<Record<string, any>>();
    expect(env).toMatchObject({ v: 1, agent: 'desk', status: 'done', state: 'done', outcome: { status: 'done', output: 'Order A-1: shipped' } });
    expect(env.usage).toMatchObject({ modelCalls: 2, toolCalls: 1 });
  });

  it('assigns a taskId when the message has none and says which', async () => {
    const { verdict } = await submit(nats.nc, nats.js, 'desk', { input: { orderId: 'A-2' } });
    const v = await verdict;
    expect(v.status).toBe('accepted');
    expect(v.taskId).toMatch(/^t-/);
    const events = await eventsUntilEnd(nats.js, v.taskId);
    expect(events.at(-1)).toMatchObject({ type: 'done', output: 'Order A-2: lost' });
  });

  it('runs a taskId submitted twice once, even outside the de-duplication window', async () => {
    const before = lookups.length;
    const first = await submit(nats.nc, nats.js, 'desk', { taskId: 'twice', input: { orderId: 'A-1' } });
    await eventsUntilEnd(nats.js, 'twice');
    // A different Nats-Msg-Id defeats JetStream's de-duplication: the snapshot store catches it.
    const second = await submit(nats.nc, nats.js, 'desk', { taskId: 'twice', input: { orderId: 'A-1' } }, { msgId: 'other-id' });
    expect(await first.verdict).toEqual({ taskId: 'twice', status: 'accepted' });
    expect(await second.verdict).toEqual({ taskId: 'twice', status: 'accepted', duplicate: true });
    const dedup = await submit(nats.nc, nats.js, 'desk', { taskId: 'twice', input: { orderId: 'A-1' } });
    expect(dedup.ack.duplicate).toBe(true);
    expect(lookups.length - before).toBe(1);
  });
});
