import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { PublishOptions } from '@nats-io/nats-core';
import { systemClock } from '../../common/clock.ts';
import { subjects } from '../../runtime/subjects.ts';
import { TaskEvents } from '../../runtime/task-events.ts';
import { ensureTopology } from '../../runtime/topology.ts';
import type { TaskEvent } from '../../runtime/wire.ts';
import { useNats } from '../helpers/nats.ts';
import { eventsUntilEnd } from '../helpers/watch.ts';

const nats = useNats();

describe('task events', () => {
  it("publishes a step's events without asking for an acknowledgement, once per message id, and observes them at once", async () => {
    const s = subjects('te');
    const topo = await ensureTopology(nats.nc, s, { replicas: 1, eventsMaxAgeMs: 60_000, rejectedMaxAgeMs: 60_000, duplicateWindowMs: 60_000, leaseMs: 5000 });
    const events = new TaskEvents(nats.nc, topo.js, s, systemClock, pino({ level: 'silent' }));
    const observed: TaskEvent[] = [];
    events.observe((e) => observed.push(e));
    const replies: Array<string | undefined> = [];
    const publish = nats.nc.publish.bind(nats.nc);
    nats.nc.publish = (subject: string, payload?: Parameters<typeof publish>[1], options?: PublishOptions) => {
      if (subject === s.events('t1')) replies.push(options?.reply);
      return publish(subject, payload, options);
    };
    try {
      events.stepEvent('t1', { type: 'state', state: 'thinking', step: 0 }, 't1:state:0:thinking');
      // Observed before anything came back from the server.
      expect(observed.map((e) => e.type)).toEqual(['state']);
      // Sent again after a crash, with the same id: JetStream drops it.
      events.stepEvent('t1', { type: 'state', state: 'thinking', step: 0 }, 't1:state:0:thinking');
      events.stepEvent('t1', { type: 'state', state: 'acting', step: 0 }, 't1:state:0:acting');
      // An end is acknowledged: once it is stored, everything sent before it on this connection is too.
      await events.publish('t1', { type: 'done', output: 'ok' }, 't1:end');
    } finally {
      nats.nc.publish = publish;
    }
    expect(replies.slice(0, 3)).toEqual([undefined, undefined, undefined]);
    expect(replies[3]).toEqual(expect.any(String));
    const stored = await eventsUntilEnd(nats.js, 't1', { prefix: 'te' });
    expect(stored.map((e) => (e.type === 'state' ? `state:${e.state}` : e.type))).toEqual(['state:thinking', 'state:acting', 'done']);
  });
});
