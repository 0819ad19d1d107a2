import { Empty, errors, type NatsConnection } from '@nats-io/nats-core';
import {
  AckPolicy,
  DiscardPolicy,
  JetStreamApiError,
  jetstream,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm, type KV, type KvOptions } from '@nats-io/kv';
import { ConfigError } from '../config/errors.ts';
import { PublishAcks } from './publish-acks.ts';
import type { Subjects } from './subjects.ts';

/** Stream and bucket settings (the `streams` and `host` sections of the config). */
export interface TopologyOptions {
  /**
   * Replicas of every stream and bucket: 1 on a single server, 3 or 5 on a cluster of at least
   * that many JetStream servers.
   */
  replicas: 1 | 3 | 5;
  eventsMaxAgeMs: number;
  /** @default 30 days */
  auditMaxAgeMs?: number;
  rejectedMaxAgeMs: number;
  duplicateWindowMs: number;
  /** Ack wait of the hosts' consumer: how long a silent host keeps its tasks. */
  leaseMs: number;
  /**
   * How long to keep trying while JetStream cannot answer yet (a cluster electing its leaders,
   * a node down): a process started then waits instead of dying. @default 60000
   */
  startupTimeoutMs?: number;
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
 * How long a JetStream request (a publish, a KV read or write, an API call) waits for its
 * answer. Longer than nats.js's 5 s: when a cluster node dies, the streams it led elect a new
 * leader, which takes 4 to 9 s on nats-server 2.9, and a request should ride that out rather
 * than fail.
 */
export const JETSTREAM_TIMEOUT_MS = 10_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A JetStream client for a deployment that may fail over: requests wait up to
 * {@link JETSTREAM_TIMEOUT_MS}, and a publish that finds no stream to take it ("no responders":
 * the stream has no leader right now, nothing received the message) is sent again with backoff
 * within that time. A publish that timed out is not repeated here: it may have been stored.
 * Publishes are acknowledged on one shared subscription ({@link PublishAcks}), not as a request each.
 */
export function failoverJetStream(nc: NatsConnection): JetStreamClient {
  const js = jetstream(nc, { timeout: JETSTREAM_TIMEOUT_MS });
  const acks = new PublishAcks(nc, js, JETSTREAM_TIMEOUT_MS);
  const publish = js.publish.bind(js);
  js.publish = async (subject, payload, options) => {
    const fast = acks.publish(subject, payload ?? Empty, options);
    if (fast) return fast;
    const giveUpAt = Date.now() + (options?.timeout ?? JETSTREAM_TIMEOUT_MS);
    for (let backoff = 100; ; backoff = Math.min(backoff * 2, 1000)) {
      try {
        return await publish(subject, payload, options);
      } catch (err) {
        if ((err as Error).name !== 'JetStreamNotEnabled' || Date.now() + backoff > giveUpAt) throw err;
        await sleep(backoff);
      }
    }
  };
  return js;
}

/** JetStream's "replicas > 1 not supported in non-clustered mode". */
const NOT_CLUSTERED = 10074;
/** JetStream's "no suitable peers for placement": fewer servers than replicas (or too few up). */
const NO_PEERS = 10005;

/** JetStream's "JetStream system temporarily unavailable" (a cluster without a metadata leader). */
const CLUSTER_UNAVAILABLE = 10008;
/** JetStream's "subjects overlap with an existing stream". */
const SUBJECTS_OVERLAP = 10065;
/** JetStream's "stream not found". */
const STREAM_NOT_FOUND = 10059;

/** Failures that go away by themselves: no answer yet, no leader yet, a node that is down. */
function transient(err: unknown): boolean {
  if (err instanceof errors.TimeoutError || (err as Error).name === 'JetStreamNotEnabled') return true;
  return err instanceof JetStreamApiError && (err.code === CLUSTER_UNAVAILABLE || err.code === NO_PEERS);
}

/**
 * Runs `call`, and runs it again with backoff (250 ms doubling to 2 s) while it fails because
 * JetStream cannot answer yet (no answer, no leader, a node down), for up to `timeoutMs`; any
 * other failure, and the last transient one, is thrown as it came. A longer request timeout is
 * no substitute: a request that reaches a stream while it has no leader is never answered, even
 * when the leader is elected a moment later, so only asking again rides out the election. For
 * calls that are safe to repeat (reads, idempotent set-up), never for a publish.
 */
export async function whileJetStreamRecovers<T>(call: () => Promise<T>, timeoutMs: number): Promise<T> {
  const giveUpAt = Date.now() + timeoutMs;
  for (let backoff = 250; ; backoff = Math.min(backoff * 2, 2000)) {
    try {
      return await call();
    } catch (err) {
      if (!transient(err) || Date.now() + backoff > giveUpAt) throw err;
      await sleep(backoff);
    }
  }
}

/**
 * Creates (and brings up to date) the streams, buckets and the hosts' consumer, each with
 * `replicas` replicas (an existing one is scaled to it). Safe to call from every process at
 * start-up, concurrently. While JetStream cannot answer yet (a cluster electing leaders, a node
 * down), it tries again with backoff for up to `startupTimeoutMs`.
 *
 * @throws ConfigError naming `streams.replicas` when the servers cannot hold that many replicas:
 *   more than 1 on a server that is not in a cluster, or more than the cluster has servers.
 */
export async function ensureTopology(nc: NatsConnection, s: Subjects, o: TopologyOptions): Promise<Topology> {
  checkReplicas(nc, o.replicas);
  try {
    return await whileJetStreamRecovers(() => createTopology(nc, s, o), o.startupTimeoutMs ?? 60_000);
  } catch (err) {
    // NOT_CLUSTERED ends the tries at once; NO_PEERS only once they are used up (a node may be starting).
    if (err instanceof JetStreamApiError && (err.code === NOT_CLUSTERED || err.code === NO_PEERS)) throw replicasError(nc, o.replicas, err);
    throw err;
  }
}

/** Refuses, before anything is created, replicas the connected server plainly cannot hold. */
function checkReplicas(nc: NatsConnection, replicas: number): void {
  if (replicas === 1) return;
  const info = nc.info;
  if (!info) return;
  if (!info.cluster) throw replicasError(nc, replicas);
  // Every server of the cluster advertises its client URL, this one included (unless the
  // cluster is configured not to advertise; then JetStream's own refusal below says it).
  const servers = info.connect_urls?.length ?? 0;
  if (servers > 0 && servers < replicas) throw replicasError(nc, replicas, undefined, servers);
}

function replicasError(nc: NatsConnection, replicas: number, cause?: Error, servers?: number): ConfigError {
  const where = nc.getServer();
  const fix = 'Set streams.replicas to 1 for a single server, or to at most the number of servers in the cluster (3 or 5; `npx troupe nats-config --cluster 3` writes a 3-node cluster).';
  const why = !nc.info?.cluster
    ? `the NATS server at ${where} is not part of a cluster, so it keeps a single copy of each stream`
    : servers !== undefined
      ? `the NATS cluster "${nc.info.cluster}" has ${servers} server${servers === 1 ? '' : 's'}`
      : `JetStream in cluster "${nc.info.cluster}" cannot place ${replicas} replicas (${cause?.message ?? 'no suitable peers'}): it has fewer than ${replicas} JetStream servers, or not that many are up`;
  return new ConfigError(`streams.replicas is ${replicas}, but ${why}. ${fix}`, { cause });
}

async function createTopology(nc: NatsConnection, s: Subjects, o: TopologyOptions): Promise<Topology> {
  const js = failoverJetStream(nc);
  const jsm = await js.jetstreamManager();
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
  const bucket = async (name: string, extra: Partial<KvOptions> = {}) => {
    const kv = await kvm.create(name, {
      history: 1,
      replicas: o.replicas,
      // Replicated buckets are read through their stream's leader, not with direct gets that any
      // replica answers: nats-server before 2.9.17 lets a replica that has just restarted answer
      // before it has caught up (nats-server#4162), and a stale read of a snapshot or a ledger
      // record costs a needless conflict or, worse, a wrong verdict on a task.
      ...(o.replicas > 1 ? { allow_direct: false } : {}),
      ...extra,
    });
    await scaleStream(jsm, `KV_${name}`, o.replicas);
    return kv;
  };
  const snapshots = await bucket(s.buckets.snapshots);
  const ledger = await bucket(s.buckets.ledger);
  const breakers = await bucket(s.buckets.breakers);
  const baselines = await bucket(s.buckets.baselines);
  const auditBlobs = await bucket(s.buckets.auditBlobs, { ttl: o.auditMaxAgeMs ?? 30 * 24 * 3600 * 1000 });
  const due = await bucket(s.buckets.due);
  return { js, jsm, snapshots, ledger, breakers, baselines, auditBlobs, due };
}

/** A bucket created earlier with another replica count is scaled (`Kvm.create` leaves an existing one as it is). */
async function scaleStream(jsm: JetStreamManager, name: string, replicas: number): Promise<void> {
  const info = await jsm.streams.info(name);
  if ((info.config.num_replicas || 1) !== replicas) await jsm.streams.update(name, { num_replicas: replicas });
}

/**
 * Creates the stream, or brings an existing one to `config`. Processes that start together update
 * the same streams together, and nats-server 2.9 on a cluster may refuse an update that raced
 * another update of the same stream with "subjects overlap with an existing stream": the stream
 * it overlaps is itself, being updated (seen once in about fifteen concurrent start-ups of a dozen
 * processes here). That refusal is tried again; a stream of someone else's that overlaps keeps
 * the add's own error.
 */
async function upsertStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  let addError: JetStreamApiError;
  try {
    await jsm.streams.add(config);
    return;
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.code === NOT_CLUSTERED || err.code === NO_PEERS) throw err;
    addError = err;
  }
  const { name, retention: _retention, storage: _storage, ...mutable } = config;
  for (let attempt = 1; ; attempt++) {
    try {
      await jsm.streams.update(name, mutable);
      return;
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === STREAM_NOT_FOUND) throw addError;
      if (!(err instanceof JetStreamApiError) || err.code !== SUBJECTS_OVERLAP || attempt === 5) throw err;
      await sleep(50 * attempt);
    }
  }
}
