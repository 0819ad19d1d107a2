import type { Socket } from 'node:net';
import { JetStreamApiError, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { beforeAll, describe, expect, it } from 'vitest';
import { connectNats, isOverMaxPayload } from '../../runtime/connection.ts';
import { JsonKv, RevisionConflictError } from '../../runtime/json-kv.ts';
import { failoverJetStream } from '../../runtime/topology.ts';
import { z } from 'zod';
import { useNats } from '../helpers/nats.ts';

/**
 * troupe's JetStream publishes (snapshot and ledger writes, events, audit records) are
 * acknowledged on one shared subscription instead of as a request each, and what a turn of the
 * event loop publishes goes to the socket in one write. Both against a real server: the
 * acknowledgement, the errors nats.js would raise, and the writes.
 */
describe('JetStream publishes acknowledged on one subscription', () => {
  const nats = useNats();
  beforeAll(async () => {
    await nats.jsm.streams.add({ name: 'PA', subjects: ['pa.>'], retention: RetentionPolicy.Limits, storage: StorageType.File });
  });

  it('resolves with the stream sequence, and flags a repeated message id as a duplicate', async () => {
    const js = failoverJetStream(nats.nc);
    const first = await js.publish('pa.one', 'a', { msgID: 'pa-1' });
    const again = await js.publish('pa.one', 'a', { msgID: 'pa-1' });
    const other = await js.publish('pa.one', 'b');
    expect(first).toMatchObject({ stream: 'PA', duplicate: false });
    expect(again).toMatchObject({ stream: 'PA', seq: first.seq, duplicate: true });
    expect(other.seq).toBe(first.seq + 1);
    // Hundreds at once, each matched to its own acknowledgement.
    const acks = await Promise.all(Array.from({ length: 500 }, (_, i) => js.publish('pa.many', String(i), { msgID: `many-${i}` })));
    expect(new Set(acks.map((a) => a.seq)).size).toBe(500);
    const stored = await nats.jsm.streams.getMessage('PA', { seq: acks[123]!.seq });
    expect(stored?.string()).toBe('123');
  });

  it('keeps compare-and-set: a write at a stale revision is refused with its code', async () => {
    const js = failoverJetStream(nats.nc);
    const kv = await new Kvm(js).create('pa_cas', { history: 1 });
    const store = new JsonKv(kv, 'pa_cas', z.object({ n: z.number() }));
    const r1 = await store.create('k', { n: 1 });
    const r2 = await store.update('k', { n: 2 }, r1);
    expect(r2).toBeGreaterThan(r1);
    const stale = await store.update('k', { n: 3 }, r1).catch((err: unknown) => err);
    expect(stale).toBeInstanceOf(RevisionConflictError);
    expect((stale as RevisionConflictError).cause).toBeInstanceOf(JetStreamApiError);
    expect((await store.get('k'))?.value).toEqual({ n: 2 });
  });

  it('sends again while no stream takes the subject, and succeeds once one does (a leader elected)', async () => {
    const js = failoverJetStream(nats.nc);
    const pending = js.publish('late.one', 'x', { msgID: 'late-1', timeout: 8000 });
    await new Promise((r) => setTimeout(r, 600));
    await nats.jsm.streams.add({ name: 'LATE', subjects: ['late.>'], storage: StorageType.File });
    await expect(pending).resolves.toMatchObject({ stream: 'LATE', seq: 1, duplicate: false });
  });

  it('gives up with JetStreamNotEnabled when no stream takes it within the timeout', async () => {
    const js = failoverJetStream(nats.nc);
    const started = Date.now();
    const err = await js.publish('nowhere.one', 'x', { timeout: 700 }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('JetStreamNotEnabled');
    expect((err as Error).message).toContain('nowhere.one');
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
  });

  it('times out when something listens on the subject but no stream acknowledges it', async () => {
    const js = failoverJetStream(nats.nc);
    const sub = nats.nc.subscribe('silent.one');
    try {
      const err = await js.publish('silent.one', 'x', { timeout: 600 }).catch((e: unknown) => e);
      expect((err as Error).name).toBe('TimeoutError');
    } finally {
      sub.unsubscribe();
    }
  });

  it('refuses a message over max_payload at once, as nats.js does', async () => {
    const js = failoverJetStream(nats.nc);
    const err = await js.publish('pa.big', new Uint8Array(2 * 1024 * 1024)).catch((e: unknown) => e);
    expect(isOverMaxPayload(err)).toBe(true);
  });

  it('fails what is still waiting when the connection closes', async () => {
    const nc = await connectNats({ servers: [nats.url], name: 'pa-close' });
    const js = failoverJetStream(nc);
    const sub = nc.subscribe('silent.two');
    const pending = js.publish('silent.two', 'x', { timeout: 30_000 }).catch((e: unknown) => e);
    await nc.flush();
    sub.unsubscribe();
    await nc.close();
    expect(((await pending) as Error).name).toBe('ClosedConnectionError');
  });
});

describe('writes coalesced per turn of the event loop', () => {
  const nats = useNats();

  it('sends what one turn publishes, across its microtasks, in one socket write', async () => {
    const nc = await connectNats({ servers: [nats.url], name: 'coalesce' });
    const received: string[] = [];
    const sub = nats.nc.subscribe('co.>', { callback: (_e, m) => void received.push(m.string()) });
    await nats.nc.flush();
    const socket = (nc as unknown as { protocol: { transport: { socket: Socket } } }).protocol.transport.socket;
    let writes = 0;
    for (const method of ['_write', '_writev'] as const) {
      const original = (socket[method] as (...args: unknown[]) => unknown).bind(socket);
      (socket as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
        writes++;
        return original(...args);
      };
    }
    await new Promise<void>((resolve) =>
      setImmediate(async () => {
        // Ten publishes, each in its own microtask, as a chain of resolved promises makes them.
        for (let i = 0; i < 10; i++) {
          nc.publish(`co.${i}`, String(i));
          await Promise.resolve();
        }
        resolve();
      }),
    );
    await nc.flush();
    // The ten publishes in one write, the flush's PING in another.
    expect(writes).toBeLessThanOrEqual(2);
    await expect.poll(() => received.length).toBe(10);
    expect(received).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    // Published right before a clean close: still sent.
    nc.publish('co.last', 'last');
    await nc.close();
    await expect.poll(() => received.at(-1)).toBe('last');
    sub.unsubscribe();
  });
});
