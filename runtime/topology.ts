import type { NatsConnection } from '@nats-io/nats-core';
import {
  AckPolicy,
  DiscardPolicy,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { Subjects } from './subjects.ts';

/** Stream and bucket settings (the `streams` and `host` sections of the config). */
export interface TopologyOptions {
  replicas: 1 | 3 | 5;
  eventsMaxAgeMs: number;
  /** @default 30 days */
  auditMaxAgeMs?: number;
  rejectedMaxAgeMs: number;
  duplicateWindowMs: number;
  /** Ack wait of the hosts' consumer: how long a silent host keeps its tasks. */
  leaseMs: number;
}

/** Handles on everything troupe keeps in JetStream. */
export interface Topology {
  js: JetStreamClient;
  jsm: JetStreamManager;
  snapshots: KV;
  ledger: KV;
  /** Parked tasks by the minute they fall due. */
  due: KV;
  breakers: KV;
  /** Per-agent running averages of a task's cost and steps (anomaly flags). */
  baselines: KV;
  /** Audit payloads too large to inline, stored once by content hash. */
  auditBlobs: KV;
}

const ms = (n: number) => n * 1_000_000;

/**
 * Creates (or brings up to date) the streams, buckets and the hosts' consumer. Safe to call from
 * every process at start-up, concurrently.
 */
export async function ensureTopology(nc: NatsConnection, s: Subjects, o: TopologyOptions): Promise<Topology> {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await upsertStream(jsm, {
    name: s.streams.tasks,
    subjects: [s.allTasks],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    num_replicas: o.replicas,
    duplicate_window: ms(o.duplicateWindowMs),
  });
  await upsertStream(jsm, {
    name: s.streams.rejected,
    subjects: [s.allRejected],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: o.replicas,
    max_age: ms(o.rejectedMaxAgeMs),
    discard: DiscardPolicy.Old,
  });
  await upsertStream(jsm, {
    name: s.streams.events,
    subjects: [s.allEvents],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: o.replicas,
    max_age: ms(o.eventsMaxAgeMs),
    duplicate_window: ms(o.duplicateWindowMs),
    discard: DiscardPolicy.Old,
  });
  // Requests and decisions are kept (an approver may be offline for days; decisions are evidence).
  for (const [name, subject] of [
    [s.streams.approvals, s.allApprovals],
    [s.streams.decisions, s.allDecisions],
    [s.streams.control, s.allControl],
  ] as const) {
    await upsertStream(jsm, { name, subjects: [subject], retention: RetentionPolicy.Limits, storage: StorageType.File, num_replicas: o.replicas, max_age: ms(o.eventsMaxAgeMs), duplicate_window: ms(o.duplicateWindowMs), discard: DiscardPolicy.Old });
  }
  // The audit trail: one record per fact, kept longer than progress events (it is evidence).
  await upsertStream(jsm, { name: s.streams.audit, subjects: [s.allAudit], retention: RetentionPolicy.Limits, storage: StorageType.File, num_replicas: o.replicas, max_age: ms(o.auditMaxAgeMs ?? 30 * 24 * 3600 * 1000), duplicate_window: ms(o.duplicateWindowMs), discard: DiscardPolicy.Old });
  // A task's inbox is read by sequence with direct gets ("the first event after N"), so a wait
  // replays the same way on any host.
  await upsertStream(jsm, { name: s.streams.inbox, subjects: [s.allInbox], retention: RetentionPolicy.Limits, storage: StorageType.File, num_replicas: o.replicas, max_age: ms(o.eventsMaxAgeMs), duplicate_window: ms(o.duplicateWindowMs), discard: DiscardPolicy.Old, allow_direct: true });
  for (const [stream, durable] of [
    [s.streams.decisions, s.decisionsConsumer],
    [s.streams.control, s.controlConsumer],
    [s.streams.inbox, s.inboxConsumer],
  ] as const) {
    try {
      await jsm.consumers.add(stream, { durable_name: durable, ack_policy: AckPolicy.Explicit, ack_wait: ms(30_000), max_deliver: 5 });
    } catch (err) {
      if (!(err instanceof JetStreamApiError)) throw err;
    }
  }
  const consumerConfig = {
    durable_name: s.hostsConsumer,
    ack_policy: AckPolicy.Explicit,
    ack_wait: ms(o.leaseMs),
    // Redelivery is unlimited at the server: the host counts deliveries itself and fails or
    // rejects a task past `host.maxDeliver`, because nats-server 2.9 would otherwise keep an
    // exhausted message in the work queue forever.
    max_deliver: -1,
    max_ack_pending: -1,
  };
  try {
    await jsm.consumers.add(s.streams.tasks, consumerConfig);
  } catch (err) {
    if (!(err instanceof JetStreamApiError)) throw err;
    await jsm.consumers.update(s.streams.tasks, s.hostsConsumer, { ack_wait: consumerConfig.ack_wait });
  }
  const kvm = new Kvm(js);
  const snapshots = await kvm.create(s.buckets.snapshots, { history: 1, replicas: o.replicas });
  const ledger = await kvm.create(s.buckets.ledger, { history: 1, replicas: o.replicas });
  const breakers = await kvm.create(s.buckets.breakers, { history: 1, replicas: o.replicas });
  const baselines = await kvm.create(s.buckets.baselines, { history: 1, replicas: o.replicas });
  const auditBlobs = await kvm.create(s.buckets.auditBlobs, { history: 1, replicas: o.replicas, ttl: o.auditMaxAgeMs ?? 30 * 24 * 3600 * 1000 });
  const due = await kvm.create(s.buckets.due, { history: 1, replicas: o.replicas });
  return { js, jsm, snapshots, ledger, breakers, baselines, auditBlobs, due };
}

async function upsertStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    await jsm.streams.add(config);
  } catch (err) {
    if (!(err instanceof JetStreamApiError)) throw err;
    const { name, retention: _retention, storage: _storage, ...mutable } = config;
    await jsm.streams.update(name, mutable);
  }
}
