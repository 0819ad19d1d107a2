import { createWebSocketInspector } from '@statelyai/inspect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { supportDesk } from '../../examples/support-desk/agent.ts';
import { startInspectorRelay, type InspectorRelay } from '../../inspect/relay.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { until } from '../helpers/until.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** `--inspect`: a viewer on the inspector relay receives a running task's actors, events and snapshots. */

let nats: NatsTestContext;
let sim: SimulatorHandle;
let relay: InspectorRelay;

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator();
  relay = await startInspectorRelay();
});
afterAll(async () => {
  await relay?.close();
  await sim?.close();
  await nats?.close();
});

describe('the XState inspector relay', () => {
  it('carries @xstate.actor, @xstate.event and @xstate.snapshot messages of a task to a viewer', async () => {
    const viewer = new WebSocket(relay.url);
    const received: Array<{ type: string; sessionId?: string; event?: { type?: string }; snapshot?: { value?: unknown } }> = [];
    viewer.on('message', (data) => received.push(JSON.parse(data.toString())));
    await new Promise((resolve, reject) => viewer.once('open', resolve).once('error', reject));
    const inspector = createWebSocketInspector({ url: relay.url });
    const host = await startHost(nats.url, [supportDesk], createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }), {}, { inspect: inspector.inspect });
    try {
      await submit(nats.nc, nats.js, 'support-desk', { taskId: 'insp-1', input: { customer: 'Ada', message: 'Where is A-1001?' } });
      await eventsUntilEnd(nats.js, 'insp-1');
      await until('the inspection messages', () => (received.some((m) => m.type === '@xstate.snapshot' && JSON.stringify(m.snapshot?.value) === '"done"') ? true : undefined), 10_000);
      const types = new Set(received.map((m) => m.type));
      expect(types).toContain('@xstate.actor');
      expect(types).toContain('@xstate.event');
      expect(types).toContain('@xstate.snapshot');
      // Both the agent's machine and its supervisor are there, and the agent went through its states.
      const values = received.filter((m) => m.type === '@xstate.snapshot').map((m) => JSON.stringify(m.snapshot?.value));
      expect(values).toEqual(expect.arrayContaining(['"thinking"', '"acting"', '"done"', '"active"']));
      // A viewer that connects late still gets what happened (the relay keeps a backlog).
      const late = new WebSocket(relay.url);
      const backlog: unknown[] = [];
      late.on('message', (data) => backlog.push(data));
      await until('the backlog', () => (backlog.length > 10 ? true : undefined), 5_000);
      late.close();
    } finally {
      await host.stop();
      inspector.stop();
      viewer.close();
    }
  });
});
