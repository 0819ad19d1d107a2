import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Host } from '../../actors/host.ts';
import { ToolWorker } from '../../actors/tool-worker.ts';
import { chaosAgent, chaosModel, journalLines, type ChaosInput } from '../../chaos/agent.ts';
import { chaosCharge } from '../../chaos/charge-tool.ts';
import { compileConfig } from '../../config/load.ts';
import { connectNats, type NatsConnection } from '../../runtime/connection.ts';
import { freePorts } from '../../runtime/embedded-cluster.ts';
import { startEmbeddedServer, type EmbeddedServer } from '../../runtime/embedded-server.ts';
import { subjects } from '../../runtime/subjects.ts';
import { until } from '../helpers/until.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/**
 * A host and a worker against one nats-server that restarts under them: they reconnect, say so
 * in their logs and metrics, and every task (in flight at the restart, or submitted after it)
 * ends with its charge made exactly once. Durable consumers that are gone are created again.
 */

const prefix = 'rc';
const s = subjects(prefix);
const dir = mkdtempSync(path.join(tmpdir(), 'troupe-reconnect-'));
const journal = path.join(dir, 'journal.txt');
const config = compileConfig({ prefix, metrics: { port: 0 }, host: { leaseMs: 3000 } });

/** A logger whose lines the test reads. */
function captured(): { logger: pino.Logger; messages: () => string[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  return { logger, messages: () => lines.map((l) => (JSON.parse(l) as { msg: string }).msg) };
}

let port: number;
let server: EmbeddedServer;
let client: NatsConnection;
let js: JetStreamClient;
let host: Host;
let worker: ToolWorker;
const hostLog = captured();
const workerLog = captured();
const connections: NatsConnection[] = [];

beforeAll(async () => {
  [port] = (await freePorts(1)) as [number];
  server = await startEmbeddedServer({ storeDir: path.join(dir, 'nats'), port });
  const connect = async (name: string) => {
    const nc = await connectNats({ servers: [server.url], name });
    connections.push(nc);
    return nc;
  };
  client = await connect('test-client');
  js = jetstream(client);
  host = new Host({ nc: await connect('test-host'), config, agents: [chaosAgent], model: chaosModel(0), logger: hostLog.logger });
  await host.start();
  worker = new ToolWorker({ nc: await connect('test-worker'), config, tools: [chaosCharge], logger: workerLog.logger });
  await worker.start();
}, 30_000);

afterAll(async () => {
  await host?.close();
  await worker?.close();
  for (const nc of connections) await nc.close().catch(() => {});
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

const task = (taskId: string, delayMs: number) => submit(client, js, 'chaos', { taskId, input: { journal, charges: 1, delayMs } satisfies ChaosInput }, { prefix });
const scrape = async () => (await fetch(host.metricsUrl!)).text();
const metric = (text: string, name: string) => Number(text.split('\n').find((l) => l.startsWith(`${name} `))?.slice(name.length + 1));

describe('a NATS server restart', () => {
  it('is ridden out by a host and a worker: calls in flight and new tasks end with one charge each, and both say so', async () => {
    expect(metric(await scrape(), 'troupe_nats_reconnects_total')).toBe(0);
    const before = ['rc-a', 'rc-b', 'rc-c'];
    for (const id of before) await task(id, 1500);
    // Every charge is under way (its attempt is in the journal) when the server goes down.
    await until('the charges in flight', () => (journalLines(`${journal}.starts`).length >= before.length ? true : undefined), 20_000);
    await server.close();
    server = await startEmbeddedServer({ storeDir: path.join(dir, 'nats'), port });
    const after = ['rc-d', 'rc-e'];
    for (const id of after) await task(id, 10);

    for (const id of [...before, ...after]) {
      const events = await eventsUntilEnd(js, id, { prefix, timeoutMs: 45_000 });
      expect(events.at(-1), id).toMatchObject({ type: 'done', output: '["{\\"charged\\":1}"]' });
      expect(journalLines(journal).filter((l) => l.startsWith(`${id}/`)), id).toHaveLength(1);
    }
    const text = await scrape();
    expect(metric(text, 'troupe_nats_disconnects_total')).toBe(1);
    expect(metric(text, 'troupe_nats_reconnects_total')).toBe(1);
    for (const log of [hostLog, workerLog]) {
      expect(log.messages()).toContain('lost the NATS connection; publishes are buffered while reconnecting');
      expect(log.messages()).toContain('reconnected to NATS');
    }
  }, 90_000);

  it('creates durable consumers that are gone again, and the messages waiting in their streams are handled', async () => {
    const jsm = await jetstreamManager(client);
    // As if lost with a server's store: the hosts' task consumer and the cancellations' consumer.
    // nats-server 2.9 may refuse a delete while it is writing the consumer's state ("unlinkat ...
    // directory not empty"); it goes through when asked again.
    const remove = async (stream: string, consumer: string) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await jsm.consumers.delete(stream, consumer);
        } catch (err) {
          if (attempt >= 20 || !String((err as Error).message).includes('directory not empty')) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    };
    await remove(s.streams.tasks, s.hostsConsumer);
    await remove(s.streams.control, s.controlConsumer);
    await task('rc-f', 10);
    await task('rc-slow', 3000);
    expect((await eventsUntilEnd(js, 'rc-f', { prefix, timeoutMs: 30_000 })).at(-1)).toMatchObject({ type: 'done' });
    await until('the cancellations consumer', () => jsm.consumers.info(s.streams.control, s.controlConsumer).then(() => true, () => undefined));
    await until('the slow charge under way', () => (journalLines(`${journal}.starts`).some((l) => l.startsWith('rc-slow/')) ? true : undefined));
    await js.publish(s.cancel('rc-slow'), JSON.stringify({ v: 1, taskId: 'rc-slow', reason: 'changed my mind', at: Date.now() }));
    expect((await eventsUntilEnd(js, 'rc-slow', { prefix, timeoutMs: 30_000 })).at(-1)).toMatchObject({ type: 'failed', error: { code: 'cancelled' } });
    expect(hostLog.messages()).toContain("the hosts' task consumer was gone; created it again");
    expect(hostLog.messages()).toContain('the cancellation consumer was gone; created it again');
  }, 60_000);
});
