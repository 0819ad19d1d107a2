import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Host } from '../../actors/host.ts';
import type { ModelClient } from '../../actors/model/model-client.ts';
import { chaosAgent, chaosModel, type ChaosInput } from '../../chaos/agent.ts';
import { chaosCharge, journalLines } from '../../chaos/charge-tool.ts';
import { compileConfig } from '../../config/load.ts';
import { connectNats } from '../../runtime/connection.ts';
import { freePorts } from '../../runtime/embedded-cluster.ts';
import { startEmbeddedServer } from '../../runtime/embedded-server.ts';
import { subjects } from '../../runtime/subjects.ts';
import { JETSTREAM_TIMEOUT_MS } from '../../runtime/topology.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';
import { startWorker, type TestWorker } from '../helpers/worker.ts';

/**
 * Defects the chaos run found, reproduced in miniature, and fixed: each test failed while its
 * defect was there.
 */

const dir = mkdtempSync(path.join(tmpdir(), 'troupe-defects-'));
const journal = path.join(dir, 'journal.txt');
const prefix = 'defect';
let nats: NatsTestContext;
let worker: TestWorker;

beforeAll(async () => {
  nats = await startNats();
  worker = await startWorker(nats.url, [chaosCharge], { prefix });
}, 30_000);
afterAll(async () => {
  await worker?.stop();
  await nats?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('defects the chaos run found', () => {
  // actors/effect-gateway.ts, EffectGateway.run: a `started` record with a live lease was waited
  // out only when another owner held it (`record.owner !== this.o.owner`). A worker that got
  // the same call a second time while it is still running it (the host that dispatched it died,
  // and the host that resumed the task dispatched it again) owns that lease itself, so it takes
  // the first attempt for a vanished one, asks `reconcile` (which cannot see the charge yet) and
  // runs the call a second time. In the chaos run: two charges under one key, both by one worker.
  // Now a second run of a key this process is running joins the first.
  it('a worker given a call it is already running runs it once', async () => {
    const dispatch = (n: number) =>
      nats.nc.request(subjects(prefix).tool('chaos_charge'), JSON.stringify({ v: 1, key: 'dup-1/0/1', taskId: 'dup-1', tool: 'chaos_charge', args: { journal, amount: 1, delayMs: 3000 } }), { timeout: 20_000 }).then(() => n);
    const first = dispatch(1);
    // The first is recorded `started` and its charge is under way when the second arrives.
    for (const until = Date.now() + 15_000; !journalLines(`${journal}.starts`).length; ) {
      if (Date.now() > until) throw new Error('the first dispatch never started its charge');
      await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.all([first, dispatch(2)]);
    expect(journalLines(journal).filter((l) => l.startsWith('dup-1/0/1 '))).toHaveLength(1);
  }, 30_000);

  // actors/task-runner.ts, TaskRunner.effect: an error thrown by an effect that is not one of the
  // runner's signals goes into the machine, and the agent loop ends the task with it. A NATS
  // error is such an error: when the ledger cannot record a model call's answer (NATS
  // unreachable, or a stream electing a leader for longer than the request's timeout), the task
  // is failed with `{code: "internal", message: "timeout"}` instead of being let go and resumed
  // from its snapshot, where the call's intent is durable and its key replays it. In the chaos
  // run: tasks failed with code internal around the NATS node restart.
  // Now a NATS failure under an effect lets the task go, to be resumed from its snapshot.
  it('a task whose model call cannot be recorded while NATS is unreachable is resumed, not failed', async () => {
    const [port] = (await freePorts(1)) as [number];
    const storeDir = path.join(dir, 'down');
    let server = await startEmbeddedServer({ storeDir, port });
    let answered!: () => void;
    const calling = new Promise<void>((r) => (answered = r));
    const inner = chaosModel(0);
    // The model answers after NATS went away: the answer cannot be recorded.
    const model: ModelClient = { call: async (request) => (answered(), await new Promise((r) => setTimeout(r, 500)), inner.call(request)) };
    const nc = await connectNats({ servers: [server.url], name: 'defect-host' });
    const host = new Host({ nc, config: compileConfig({ prefix: 'down', host: { leaseMs: 2000 } }), agents: [chaosAgent], model, logger: pino({ level: 'silent' }) });
    await host.start();
    const client = await connectNats({ servers: [server.url], name: 'defect-client' });
    try {
      await submit(client, jetstream(client), 'chaos', { taskId: 'down-1', input: { journal, charges: 1, delayMs: 0 } satisfies ChaosInput }, { prefix: 'down' });
      await calling;
      await server.close();
      await new Promise((r) => setTimeout(r, JETSTREAM_TIMEOUT_MS + 2000));
      server = await startEmbeddedServer({ storeDir, port });
      const events = await eventsUntilEnd(jetstream(client), 'down-1', { prefix: 'down', timeoutMs: 30_000 });
      expect(events.at(-1)).toMatchObject({ type: 'done' });
    } finally {
      await host.close();
      await nc.close();
      await client.close();
      await server.close();
    }
  }, 60_000);
});
