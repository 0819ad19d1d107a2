import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { connectNats } from '../../runtime/connection.ts';
import { JsonKv } from '../../runtime/json-kv.ts';
import { subjects } from '../../runtime/subjects.ts';
import { TaskEvents } from '../../runtime/task-events.ts';
import { ensureTopology } from '../../runtime/topology.ts';
import { baselineSchema, type Baseline, type SnapshotEnvelope, type TaskEvent } from '../../runtime/wire.ts';
import { BASELINE_FRESH_MS, SemanticChecks } from '../../actors/semantic-checks.ts';
import { useNats } from '../helpers/nats.ts';

const nats = useNats();
const logger = pino({ level: 'silent' });

/** A finished task's envelope, as the checks read it. */
const ended = (taskId: string, steps: number, agent = 'a') => ({ taskId, agent, outcome: { status: 'done', output: 'ok' }, usage: { costUsd: 0, modelCalls: steps } }) as unknown as SnapshotEnvelope;

/** One host's checks: its own connection, clock and count of baseline reads. */
async function host(name: string, clock: { t: number }) {
  const nc = await connectNats({ servers: [nats.url], name });
  const s = subjects('bc');
  const topo = await ensureTopology(nc, s, { replicas: 1, eventsMaxAgeMs: 60_000, rejectedMaxAgeMs: 60_000, duplicateWindowMs: 60_000, leaseMs: 5000 });
  const baselines = new JsonKv<Baseline>(topo.baselines, s.buckets.baselines, baselineSchema);
  let reads = 0;
  let writes = 0;
  const get = baselines.get.bind(baselines);
  baselines.get = (key) => (reads++, get(key));
  const update = baselines.update.bind(baselines);
  baselines.update = (key, value, revision) => (writes++, update(key, value, revision));
  const create = baselines.create.bind(baselines);
  baselines.create = (key, value) => (writes++, create(key, value));
  const c = { now: () => clock.t, sleep: async () => {} };
  const events = new TaskEvents(nc, topo.js, s, c, logger);
  const flags: TaskEvent[] = [];
  events.observe((e) => flags.push(e));
  const checks = new SemanticChecks({ baselines, events, clock: c, logger });
  return { checks, baselines, flags, reads: () => reads, writes: () => writes, close: () => nc.close() };
}

describe("an agent's baseline, kept by each host", () => {
  it('is read once while fresh, stays exact when two hosts update it, and is read again when stale', async () => {
    const clock = { t: 1_000_000 };
    const a = await host('bc-a', clock);
    const b = await host('bc-b', clock);
    try {
      for (let i = 0; i < 5; i++) {
        await a.checks.check(ended(`a${i}`, 2), undefined);
        await a.checks.learnFrom(ended(`a${i}`, 2));
      }
      // Five ends, one read: the first. Each update's result is what the next one starts from.
      expect(a.reads()).toBe(1);

      // Another host adds two tasks: A's copy is now two behind.
      await b.checks.learnFrom(ended('b0', 2));
      await b.checks.learnFrom(ended('b1', 2));
      // A's update from its old revision conflicts, reads again, and counts its task on top of B's.
      await a.checks.learnFrom(ended('a5', 2));
      expect(a.reads()).toBe(2);
      expect((await a.baselines.get('a'))!.value).toMatchObject({ tasks: 8, meanSteps: 2 });

      // A task far above the baseline is flagged from A's copy, without a read...
      await a.checks.check(ended('heavy', 20), undefined);
      expect(a.reads()).toBe(3); // the one just above, made by the test
      expect(a.flags.filter((e) => e.type === 'flag').map((e) => (e as { kind: string }).kind)).toEqual(['steps_anomaly']);

      // ...and once the copy is older than BASELINE_FRESH_MS, the next check reads the bucket.
      clock.t += BASELINE_FRESH_MS;
      await a.checks.check(ended('late', 2), undefined);
      expect(a.reads()).toBe(4);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('counts every one of many tasks ending at once on two hosts, in a few writes', async () => {
    const clock = { t: 2_000_000 };
    const a = await host('bc-c', clock);
    const b = await host('bc-d', clock);
    try {
      // 100 tasks end at once, half on each host: one compare-and-set race each would lose most of them.
      await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).checks.learnFrom(ended(`m${i}`, i % 4 === 0 ? 3 : 1, 'many'))));
      expect((await a.baselines.get('many'))!.value).toMatchObject({ tasks: 100, meanSteps: 1.5 });
      expect(a.writes() + b.writes()).toBeLessThan(10);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
