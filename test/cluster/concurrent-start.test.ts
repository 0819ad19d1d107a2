import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectNats } from '../../runtime/connection.ts';
import { startEmbeddedCluster, type EmbeddedCluster } from '../../runtime/embedded-cluster.ts';
import { subjects } from '../../runtime/subjects.ts';
import { ensureTopology, type TopologyOptions } from '../../runtime/topology.ts';

/**
 * A fleet starting together on a cluster: every process brings the same streams up to its
 * configuration at once. nats-server 2.9 refuses some of those racing updates with "subjects
 * overlap with an existing stream" (the stream overlapping being the one updated); a worker died
 * of it at start-up in the chaos test. A dozen processes, over fifteen start-ups, each after a
 * process with other settings (as `npm run chaos` creates the streams before starting its fleet),
 * met it every time here before the fix.
 */
const dir = mkdtempSync(path.join(tmpdir(), 'troupe-concurrent-start-'));
let cluster: EmbeddedCluster;
let connections: NatsConnection[];

beforeAll(async () => {
  cluster = await startEmbeddedCluster({ dir, nodes: 3 });
  const { user, password } = cluster.users.hosts;
  connections = await Promise.all(Array.from({ length: 13 }, (_, i) => connectNats({ servers: [cluster.urls[i % 3]!], name: `starter-${i}`, user, password })));
}, 60_000);
afterAll(async () => {
  await Promise.all((connections ?? []).map((nc) => nc.close()));
  await cluster?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('processes starting together on a cluster', () => {
  it('all bring the streams up to their settings, none refused', async () => {
    const s = subjects('troupe');
    const first: TopologyOptions = { replicas: 3, eventsMaxAgeMs: 24 * 3600_000, rejectedMaxAgeMs: 24 * 3600_000, duplicateWindowMs: 600_000, leaseMs: 3000 };
    const refused: string[] = [];
    for (let start = 0; start < 15; start++) {
      const fleet: TopologyOptions = { ...first, eventsMaxAgeMs: (start + 2) * 3600_000, rejectedMaxAgeMs: (start + 2) * 3600_000, duplicateWindowMs: 120_000 + start };
      await ensureTopology(connections[0]!, s, first);
      const results = await Promise.allSettled(connections.slice(1).map((nc) => ensureTopology(nc, s, fleet)));
      for (const r of results) if (r.status === 'rejected') refused.push(`start ${start}: ${(r.reason as Error).message}`);
    }
    expect(refused).toEqual([]);
    const { jsm } = await ensureTopology(connections[1]!, s, { ...first, eventsMaxAgeMs: 16 * 3600_000, rejectedMaxAgeMs: 16 * 3600_000, duplicateWindowMs: 120_014 });
    expect((await jsm.streams.info(s.streams.events)).config.max_age).toBe(16 * 3600 * 1e9);
  }, 120_000);
});
