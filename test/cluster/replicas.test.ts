import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { runNatsConfig } from '../helpers/nats-config.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/errors.ts';
import { connectNats } from '../../runtime/connection.ts';
import { freePorts, startEmbeddedCluster, type EmbeddedCluster } from '../../runtime/embedded-cluster.ts';
import { startEmbeddedServer, type EmbeddedServer } from '../../runtime/embedded-server.ts';
import { subjects } from '../../runtime/subjects.ts';
import { ensureTopology, type TopologyOptions } from '../../runtime/topology.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';

/**
 * `troupe nats-config --cluster 3` writes a cluster nats-server runs; troupe creates every stream
 * and bucket with the configured replicas there, and refuses replicas the servers cannot hold.
 */

const dir = mkdtempSync(path.join(tmpdir(), 'troupe-replicas-'));
const topology = (replicas: 1 | 3 | 5): TopologyOptions => ({ replicas, eventsMaxAgeMs: 60_000, rejectedMaxAgeMs: 60_000, duplicateWindowMs: 60_000, leaseMs: 5000 });
let cluster: EmbeddedCluster;
let single: NatsTestContext;

beforeAll(async () => {
  [cluster, single] = await Promise.all([startEmbeddedCluster({ dir: path.join(dir, 'embedded'), nodes: 3 }), startNats()]);
}, 60_000);
afterAll(async () => {
  await cluster?.close();
  await single?.close();
  rmSync(dir, { recursive: true, force: true });
});

const cli = runNatsConfig;

const hostsOf = (c: EmbeddedCluster) => ({ user: c.users.hosts.user, password: c.users.hosts.password });

describe('troupe nats-config --cluster 3', () => {
  it('writes one configuration per node that nats-server runs as a JetStream cluster, with the per-role users', async () => {
    const ports = await freePorts(6);
    const file = path.join(dir, 'cli', 'troupe-nats.conf');
    const { code, out } = await cli({ cluster: '3', file, port: String(ports[0]), 'route-port': String(ports[3]), 'store-dir': path.join(dir, 'cli-store') });
    expect(code).toBe(0);
    const files = [1, 2, 3].map((n) => path.join(dir, 'cli', `troupe-nats-${n}.conf`));
    for (const f of files) expect(out).toContain(`nats-server -c ${f}`);
    expect(out).toContain('"streams": {"replicas": 3}');
    // Ports follow from the first: node n listens on port + n - 1.
    const urls = [0, 1, 2].map((i) => `nats://127.0.0.1:${ports[0]! + i}`).join(',');
    const hosts = new RegExp(`# hosts: .*\\nNATS_URL=${urls.replace(/\./g, '\\.')} NATS_USER=troupe-hosts NATS_PASSWORD=(\\S+)`).exec(out);
    expect(hosts, out).not.toBeNull();
    for (const f of files) expect(() => execFileSync('nats-server', ['-c', f, '-t'], { stdio: 'pipe' })).not.toThrow();

    // The ports picked for the test may be taken by now; consecutive ones were only likely free.
    let nodes: EmbeddedServer[] = [];
    try {
      nodes = await Promise.all(files.map((f, i) => startEmbeddedServer({ storeDir: path.join(dir, 'cli-store', `node-${i + 1}`), configFile: f })));
      const nc = await connectNats({ servers: urls.split(','), name: 'cli-cluster', user: 'troupe-hosts', password: hosts![1]! });
      try {
        let created = false;
        for (let i = 0; i < 60 && !created; i++) {
          created = await ensureTopology(nc, subjects('troupe'), topology(3)).then(() => true, () => false);
          if (!created) await new Promise((r) => setTimeout(r, 500));
        }
        expect(created).toBe(true);
        const info = await (await jetstreamManager(nc)).streams.info('TROUPE_TASKS');
        expect(info.config.num_replicas).toBe(3);
        expect(info.cluster?.name).toBe('troupe');
      } finally {
        await nc.close();
      }
    } finally {
      await Promise.all(nodes.map((n) => n.close()));
    }
  }, 60_000);

  it('refuses a node count that makes no cluster', async () => {
    await expect(cli({ cluster: '1', file: path.join(dir, 'x.conf') })).rejects.toThrow(/--cluster must be the number of nodes, 2 to 9/);
  });
});

describe('streams.replicas', () => {
  it('creates every stream and bucket with 3 replicas on a 3-node cluster, and scales up a bucket made with 1', async () => {
    const nc = await connectNats({ servers: cluster.urls, name: 'replicas', ...hostsOf(cluster) });
    try {
      const s = subjects('rthree');
      const kvm = new Kvm(nc);
      // A bucket left by an earlier single-replica deployment.
      await kvm.create(s.buckets.ledger, { history: 1, replicas: 1 });
      await ensureTopology(nc, s, topology(3));
      const jsm = await jetstreamManager(nc);
      const names = [...Object.values(s.streams), ...Object.values(s.buckets).map((b) => `KV_${b}`)];
      expect(names.length).toBeGreaterThanOrEqual(13);
      for (const name of names) {
        const info = await jsm.streams.info(name);
        expect(info.config.num_replicas, name).toBe(3);
        expect(info.cluster?.replicas?.length, name).toBe(2);
      }
      // Replicated buckets are read through their leader: a replica just restarted may lag.
      expect((await jsm.streams.info(`KV_${s.buckets.snapshots}`)).config.allow_direct).toBe(false);
    } finally {
      await nc.close();
    }
  });

  it('refuses more replicas than the cluster has servers, saying what to set', async () => {
    const nc = await connectNats({ servers: cluster.urls, name: 'replicas-5', ...hostsOf(cluster) });
    try {
      const err = await ensureTopology(nc, subjects('rfive'), topology(5)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).message).toMatch(/^streams\.replicas is 5, but the NATS cluster "troupe" has 3 servers\. Set streams\.replicas to 1 for a single server, or to at most the number of servers/);
      expect(await (await jetstreamManager(nc)).streams.names().next()).not.toContain('RFIVE_TASKS');
    } finally {
      await nc.close();
    }
  });

  it('refuses replicas on a server that is not in a cluster', async () => {
    const err = await ensureTopology(single.nc, subjects('single'), topology(3)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toMatch(new RegExp(`^streams\\.replicas is 3, but the NATS server at ${single.url.replace('nats://', '').replace(/\./g, '\\.')} is not part of a cluster`));
    await expect(single.jsm.streams.info('SINGLE_TASKS')).rejects.toThrow(/stream not found/);
  });
});
