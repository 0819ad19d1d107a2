import { PassThrough } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Host } from '../../actors/host.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { compileConfig } from '../../config/load.ts';
import { supportDesk } from '../../examples/support-desk/agent.ts';
import { connectNats } from '../../runtime/connection.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** A task's log lines carry its taskId, agent, actor and the step it is at. */

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

describe('task log lines', () => {
  it('bind taskId, agent, actor and step', async () => {
    const out = new PassThrough();
    const lines: Array<Record<string, unknown>> = [];
    out.on('data', (d: Buffer) => d.toString().split('\n').filter(Boolean).forEach((l) => lines.push(JSON.parse(l))));
    const nc = await connectNats({ servers: [nats.url], name: 'logs' });
    const host = new Host({ nc, config: compileConfig({}), agents: [supportDesk], model: createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }), logger: pino({ level: 'info' }, out) });
    await host.start();
    try {
      await submit(nats.nc, nats.js, 'support-desk', { taskId: 'log-1', input: { customer: 'Ada', message: 'Where is A-1001?' } });
      await eventsUntilEnd(nats.js, 'log-1');
      await new Promise((r) => setTimeout(r, 100));
      const ended = lines.find((l) => l.taskId === 'log-1' && l.msg === 'task ended');
      expect(ended).toMatchObject({ taskId: 'log-1', agent: 'support-desk', actor: 'task', step: 1 });
    } finally {
      await host.close();
      await nc.close();
    }
  });
});
