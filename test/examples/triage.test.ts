import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { billingSpecialist, shippingSpecialist, triage } from '../../examples/triage/agent.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** The delegation example on the bundled demo scenario, through the real SDK. */
let nats: NatsTestContext;
let sim: SimulatorHandle;

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator();
});
afterAll(async () => {
  await sim?.close();
  await nats?.close();
});

describe('the triage example', () => {
  it('asks both specialists in parallel and merges their answers', async () => {
    const host = await startHost(nats.url, [triage, billingSpecialist, shippingSpecialist], createAnthropicModelClient({ apiKey: 'test', baseURL: sim.url }));
    try {
      await submit(nats.nc, nats.js, 'triage', { taskId: 'ex-triage', input: triage.exampleInput });
      const events = await eventsUntilEnd(nats.js, 'ex-triage', { timeoutMs: 30_000 });
      const done = events.at(-1) as { type: string; output: string };
      expect(done, JSON.stringify(events.filter((e) => e.type !== "progress"))).toMatchObject({ type: "done" });
      expect(done.output).toContain('Billing: I can see the duplicate charge');
      expect(done.output).toMatch(/Shipping: order A-1001 is \w+/);
    } finally {
      await host.stop();
    }
  });
});
