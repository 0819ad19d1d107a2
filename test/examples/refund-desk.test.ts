import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { refundDesk } from '../../examples/refund-desk/agent.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** The workflow example on the bundled demo scenario, through the real SDK. */
let nats: NatsTestContext;
let sim: SimulatorHandle;
const client = () => createAnthropicModelClient({ apiKey: 'test', baseURL: sim.url, routing: { roles: { ...refundDesk.models } } });

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator();
});
afterAll(async () => {
  await sim?.close();
  await nats?.close();
});

const states = (events: Array<{ type: string }>) => events.filter((e) => e.type === 'state').map((e) => (e as unknown as { state: string }).state);

describe('the refund-desk workflow', () => {
  it('follows its flowchart: a clear request takes one bounded model step and opens a ticket', async () => {
    const host = await startHost(nats.url, [refundDesk], client());
    try {
      await submit(nats.nc, nats.js, 'refund-desk', { taskId: 'rf-refund', input: { orderId: 'A-1001', message: 'Please give me my money back.' } });
      await submit(nats.nc, nats.js, 'refund-desk', { taskId: 'rf-replace', input: { orderId: 'A-1003', message: 'It arrived broken.' } });
      const refund = await eventsUntilEnd(nats.js, 'rf-refund');
      const replace = await eventsUntilEnd(nats.js, 'rf-replace');
      expect(refund.at(-1)).toMatchObject({ type: 'done', output: { decision: 'refund', ticket: expect.stringMatching(/^T-/) } });
      expect(replace.at(-1)).toMatchObject({ type: 'done', output: { decision: 'replace' } });
      expect(states(refund)).toEqual(['lookup', 'classify', 'ticket', 'done']);
      const classify = refund.filter((e) => e.type === 'model');
      expect(classify).toMatchObject([{ role: 'classify', model: 'claude-haiku-4-5', key: 'rf-refund/1/0' }]);
    } finally {
      await host.stop();
    }
  });

  it('fails with the gate\'s reason when the order does not exist, without calling the model', async () => {
    const host = await startHost(nats.url, [refundDesk], client());
    try {
      await submit(nats.nc, nats.js, 'refund-desk', { taskId: 'rf-missing', input: { orderId: 'Z-9999', message: 'refund please' } });
      const events = await eventsUntilEnd(nats.js, 'rf-missing');
      expect(events.at(-1)).toMatchObject({ type: 'failed', error: { code: 'invalid_tool_arguments', message: expect.stringContaining('Z-9999 does not exist') } });
      expect(events.some((e) => e.type === 'model')).toBe(false);
    } finally {
      await host.stop();
    }
  });

  it('hands an unclear case to an agent loop, which survives a hand-over to another host mid-loop', async () => {
    let release!: () => void;
    const blocked = new Promise<void>((r) => (release = r));
    let reached!: () => void;
    const atSecondTurn = new Promise<void>((r) => (reached = r));
    // Host A stops just before the triage loop's second model call, then shuts down.
    const a = await startHost(nats.url, [refundDesk], client(), { host: { drainTimeoutMs: 100 } }, {
      hostId: 'rf-a',
      faults: {
        beforeEffect: async (key) => {
          if (key === 'rf-unclear/triage/1/0') {
            reached();
            await blocked;
          }
        },
      },
    });
    await submit(nats.nc, nats.js, 'refund-desk', { taskId: 'rf-unclear', input: { orderId: 'A-1002', message: 'Hmm, about this order...' } });
    await atSecondTurn;
    const before = sim.stats().totalRequests;
    await a.stop();
    release();
    const b = await startHost(nats.url, [refundDesk], client(), {}, { hostId: 'rf-b' });
    try {
      const events = await eventsUntilEnd(nats.js, 'rf-unclear');
      expect(events.at(-1)).toMatchObject({ type: 'done', output: { decision: 'triage', reply: expect.stringContaining('A-1002 (processing)') } });
      expect(events.filter((e) => e.type === 'resumed')).toMatchObject([{ host: 'rf-b' }]);
      expect(states(events)).toEqual(['lookup', 'classify', 'triage', 'done']);
      // Only the one outstanding call was made after the hand-over: nothing before it was repeated.
      expect(sim.stats().totalRequests - before).toBe(1);
      const ledger = await new Kvm(nats.js).open('troupe_ledger');
      const keys: string[] = [];
      for await (const k of await ledger.keys()) if (k.startsWith('rf-unclear/')) keys.push(k);
      expect(keys.sort()).toEqual(['rf-unclear/0/1', 'rf-unclear/1/0', 'rf-unclear/triage/0/0', 'rf-unclear/triage/0/1', 'rf-unclear/triage/1/0']);
    } finally {
      await b.stop();
    }
  });
});
