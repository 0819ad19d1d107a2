import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureError } from '../common/errors.ts';
import { connectNats } from '../runtime/connection.ts';
import { startEmbeddedCluster } from '../runtime/embedded-cluster.ts';
import { subjects as makeSubjects } from '../runtime/subjects.ts';
import { ensureTopology, whileJetStreamRecovers } from '../runtime/topology.ts';
import type { ChaosInput } from './agent.ts';
import { readEnds, readEvents, readJournal, readLogs, type EffectFacts, type EventFacts, type LogFacts, type TaskEnd } from './collect.ts';
import { inject, type FaultKind, type FaultRecord } from './faults.ts';
import { ChaosProcess } from './fleet.ts';
import { runFuzzSlot, type FuzzOutcome } from './fuzz-slot.ts';

/** The shape of a chaos run. */
export interface ChaosOptions {
  /** NATS nodes. @default 3 */
  nodes?: number;
  /** Replicas of every stream and bucket. @default 3 */
  replicas?: 1 | 3 | 5;
  /** @default 3 */
  hosts?: number;
  /** @default 2 */
  workers?: number;
  /** Tasks submitted. @default 300 */
  tasks?: number;
  /** Irreversible charges per task (one per step). @default 1 */
  charges?: number;
  /**
   * Tasks are submitted evenly over this window at the fastest; faults are spread over the
   * submissions (the window stretches while slow faults catch up). @default 150000
   */
  submitMs?: number;
  /** The hosts' lease (`host.leaseMs`). @default 4000 */
  leaseMs?: number;
  /** Latency of each model call. @default 50 */
  modelMs?: number;
  /** Each charge takes between these (ms). @default [300, 1200] */
  toolMs?: [number, number];
  /** How many of each fault to inject. */
  faults?: Partial<Record<FaultKind, number>>;
  /** Longest wait, after the last submission and fault, for every task to end. @default 120000 */
  settleMs?: number;
  /** Run the intake fuzz after the faults (`chaos/fuzz.ts`). @default true */
  fuzz?: boolean;
  /** Seed of the random choices (targets, timings). @default a random one */
  seed?: number;
  /** Working directory (logs, journal, NATS stores); a new temporary one by default. */
  dir?: string;
  /** Progress lines. */
  progress?: (line: string) => void;
}

/** What a chaos run found. */
export interface ChaosReport {
  options: Required<Omit<ChaosOptions, 'progress' | 'dir' | 'faults'>> & { faults: Partial<Record<FaultKind, number>> };
  dir: string;
  /** ms from the first submission to the last task's end (or the end of waiting). */
  ms: number;
  submitted: number;
  /** Submissions the runner had to publish again (a node was down). */
  republished: number;
  done: number;
  /** Done tasks in which the model saw a charge fail with a typed error (e.g. tool_unavailable). */
  doneWithToolErrors: number;
  /** Failed tasks by error code. */
  failed: Record<string, number>;
  /** Tasks with no end: still running, parked, or never created. */
  lost: string[];
  /** Effect keys whose side effect happened more than once (the journal, outside troupe). */
  duplicates: string[];
  /** For each duplicate, which processes ran it (`worker-1 (pid 123)`, ...). */
  duplicateExecutors: Record<string, string[]>;
  /** Charges the model was told failed, by error code. */
  chargeErrors: Record<string, number>;
  /** Charges a done task's model was told succeeded, with no line in the journal. */
  missingEffects: string[];
  /**
   * Charges the model was told failed although the journal has them: the call's outcome was
   * unknown (it timed out after its side effect, say) and was reported as a failure.
   */
  misreportedFailures: string[];
  effects: { executed: number; attempts: number; keysAttemptedMoreThanOnce: number };
  events: { resumed: number; unannounced: number; doubleEnds: number };
  latencyMs: { p50: number; p99: number; max: number };
  /**
   * For the tasks of SIGKILLed hosts: ms from the kill to their `resumed` event on another host
   * (events within two leases and 10 s of a kill), against the lease.
   */
  takeoverMs: { count: number; p50: number; max: number };
  faults: FaultRecord[];
  logs: { hosts: LogFacts; workers: LogFacts };
  fuzz: FuzzOutcome | { status: 'skipped' };
  /** Lost 0, duplicates 0, every task done or failed with a code, every end announced. */
  ok: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * How long the runner's own reads keep trying while JetStream recovers from a fault: a node
 * restarted moments ago, its streams still electing leaders (4 to 9 s on nats-server 2.9).
 */
const RECOVERY_MS = 30_000;
/** How long an end saved in KV may wait to be announced on the events stream (a publish rides out a leader election for up to 10 s). */
const ANNOUNCE_MS = 15_000;

/** Rethrows a failure of one of the runner's own NATS calls with the call's name (nats.js's stack does not say). */
const failed =
  (what: string) =>
  (err: unknown): never => {
    const e = ensureError(err);
    throw new Error(`chaos runner: ${what} failed: ${e.name}: ${e.message}`, { cause: err });
  };

/** A small seeded PRNG (mulberry32), so a run's choices can be replayed with its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]! : 0);

/**
 * A chaos run on loopback: an N-node NATS cluster, hosts and workers in their own processes, a
 * stream of tasks whose agent makes irreversible charges, and faults injected while they run
 * (hosts SIGKILLed and restarted, a worker killed in the middle of a charge, a NATS node
 * restarted, a host frozen past its lease, a rolling restart). Then it waits for every task to
 * end and counts, outside troupe, what happened.
 */
export async function runChaos(options: ChaosOptions = {}): Promise<ChaosReport> {
  const o = {
    nodes: options.nodes ?? 3,
    replicas: options.replicas ?? 3,
    hosts: options.hosts ?? 3,
    workers: options.workers ?? 2,
    tasks: options.tasks ?? 300,
    charges: options.charges ?? 1,
    submitMs: options.submitMs ?? 150_000,
    leaseMs: options.leaseMs ?? 4000,
    modelMs: options.modelMs ?? 50,
    toolMs: options.toolMs ?? ([300, 1200] as [number, number]),
    settleMs: options.settleMs ?? 120_000,
    fuzz: options.fuzz ?? true,
    seed: options.seed ?? Math.floor(Math.random() * 2 ** 31),
    faults: options.faults ?? { 'host SIGKILL': 12, 'worker SIGKILL mid-call': 2, 'NATS node restart': 1, 'host SIGSTOP': 1, 'rolling restart': 1 },
  };
  const say = options.progress ?? (() => {});
  const random = prng(o.seed);
  const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), 'troupe-chaos-'));
  mkdirSync(path.join(dir, 'logs'), { recursive: true });
  const journal = path.join(dir, 'journal.txt');
  const prefix = 'chaos';
  const s = makeSubjects(prefix);

  say(`starting a ${o.nodes}-node NATS cluster in ${dir}`);
  const cluster = await startEmbeddedCluster({ dir: path.join(dir, 'nats'), nodes: o.nodes, prefix, name: 'chaos' });
  const { user, password } = cluster.users.hosts;
  const env = { METRICS: '1', NATS_URL: cluster.urls.join(','), NATS_USER: user, NATS_PASSWORD: password, PREFIX: prefix, REPLICAS: String(o.replicas), LEASE_MS: String(o.leaseMs), MODEL_MS: String(o.modelMs) };
  const hosts = Array.from({ length: o.hosts }, (_, i) => new ChaosProcess('host', `host-${i + 1}`, env, path.join(dir, 'logs', `host-${i + 1}.log`)));
  const workers = Array.from({ length: o.workers }, (_, i) => new ChaosProcess('worker', `worker-${i + 1}`, env, path.join(dir, 'logs', `worker-${i + 1}.log`)));
  const nc = await connectNats({ servers: cluster.urls, name: 'chaos-runner', user, password });
  // The clock of the report and of the fault schedule starts with the first submission.
  let started = Date.now();
  const now = () => Date.now() - started;
  try {
    // The runner reads and publishes through the same failover-aware client and buckets as troupe's processes.
    const { js, snapshots } = await ensureTopology(nc, s, { replicas: o.replicas, eventsMaxAgeMs: 24 * 3600_000, rejectedMaxAgeMs: 24 * 3600_000, duplicateWindowMs: 600_000, leaseMs: o.leaseMs }).catch(
      failed('creating the streams and buckets'),
    );
    say(`starting ${o.hosts} hosts and ${o.workers} workers`);
    await Promise.all([...hosts, ...workers].map((p) => p.start()));
    started = Date.now();

    // The fault plan, in a shuffled order; fault k is injected once the k-th share of the tasks
    // is submitted. Faults take as long as they take (a host's restart is slow on a busy
    // machine), so submissions never run more than one share ahead of them: every fault lands
    // while tasks are being submitted and run, however slow the machine.
    const plan: FaultKind[] = Object.entries(o.faults).flatMap(([kind, n]) => Array.from({ length: n ?? 0 }, () => kind as FaultKind));
    for (let i = plan.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [plan[i], plan[j]] = [plan[j]!, plan[i]!];
    }
    const share = o.tasks / (plan.length + 1);
    let faultsDone = 0;
    let submittedCount = 0;
    const waitFor = async (ready: () => boolean) => {
      while (!ready()) await sleep(50);
    };

    // Submissions: evenly over the window (no faster); a publish the cluster did not acknowledge
    // is repeated with the same Nats-Msg-Id (JetStream drops the copy if the first was stored).
    const acked = new Map<string, number>();
    let republished = 0;
    const submitting = (async () => {
      const t0 = Date.now();
      for (let i = 0; i < o.tasks; i++) {
        await waitFor(() => i < share * (faultsDone + 2));
        const due = t0 + (i * o.submitMs) / o.tasks;
        if (due > Date.now()) await sleep(due - Date.now());
        const taskId = `c-${String(i).padStart(4, '0')}`;
        const delayMs = Math.round(o.toolMs[0] + random() * (o.toolMs[1] - o.toolMs[0]));
        const input: ChaosInput = { journal, charges: o.charges, delayMs };
        const body = JSON.stringify({ taskId, input });
        for (let attempt = 1; ; attempt++) {
          try {
            await js.publish(s.task('chaos'), body, { msgID: taskId });
            acked.set(taskId, Date.now());
            break;
          } catch {
            republished++;
            await sleep(Math.min(2000, 100 * attempt));
          }
        }
        submittedCount = i + 1;
      }
    })();

    const faults: FaultRecord[] = [];
    const injecting = (async () => {
      const nth = new Map<FaultKind, number>();
      for (const [k, kind] of plan.entries()) {
        await waitFor(() => submittedCount >= share * (k + 1));
        const n = (nth.get(kind) ?? 0) + 1;
        nth.set(kind, n);
        const at = now();
        const record = await inject(kind, { cluster, hosts, workers, journal, leaseMs: o.leaseMs, random, now }, n).catch(
          (err: unknown): FaultRecord => ({ at, kind, target: '?', detail: `the fault could not be completed: ${(err as Error).message}`, ms: now() - at }),
        );
        faults.push(record);
        faultsDone++;
        say(`${(record.at / 1000).toFixed(1).padStart(6)} s  ${record.kind.padEnd(24)} ${record.target}: ${record.detail} (${record.ms} ms)`);
      }
    })();
    await Promise.all([submitting, injecting]);
    say(`${acked.size} tasks submitted, ${faults.length} faults injected; waiting for every task to end`);

    const settleUntil = Date.now() + o.settleMs;
    let ends = new Map<string, TaskEnd>();
    for (;;) {
      // A read that fails (a node just restarted) is simply made again next round.
      ends = await readEnds(snapshots, acked.keys()).catch(() => ends);
      const open = [...acked.keys()].filter((id) => !['done', 'failed'].includes(ends.get(id)?.status ?? 'missing'));
      if (open.length === 0 || Date.now() > settleUntil) break;
      await sleep(1000);
    }
    const ms = now();

    let fuzz: ChaosReport['fuzz'] = { status: 'skipped' };
    if (o.fuzz) {
      say('intake fuzz: 1,000 hostile and valid task messages (chaos/fuzz.ts)');
      const pidsBefore = hosts.map((h) => h.pid);
      const health = () => {
        const changed = hosts.filter((h, i) => !h.alive || h.pid !== pidsBefore[i]).map((h) => h.name);
        return changed.length ? `host process ${changed.join(', ')} exited or was restarted during the fuzz` : undefined;
      };
      fuzz = await runFuzzSlot({ servers: cluster.urls, user, password, prefix, health, log: say });
    }

    // The last fault may have ended moments ago: the events stream may still be electing its leader.
    const read = () => whileJetStreamRecovers(() => readEvents(js, s), RECOVERY_MS).catch(failed(`reading the ${s.streams.events} stream`));
    let events = await read();
    // A host saves a task's end before it announces it, and the announcement waits out a leader
    // election like any publish: give late announcements their time before counting one missing.
    const ended = [...acked.keys()].filter((id) => ['done', 'failed'].includes(ends.get(id)?.status ?? ''));
    for (const until = Date.now() + ANNOUNCE_MS; ended.some((id) => !events.announced.has(id)) && Date.now() < until; ) {
      await sleep(1000);
      events = await read();
    }
    const effects = readJournal(journal);
    return summarize({ o, dir, ms, startedAt: started, acked, republished, ends, events, effects, faults, fuzz, hosts, workers });
  } finally {
    say('stopping hosts, workers and the cluster');
    await Promise.all([...hosts, ...workers].map((p) => p.terminate(15_000)));
    await nc.close().catch(() => {});
    await cluster.close();
  }
}

function summarize(r: {
  o: ChaosReport['options'];
  dir: string;
  ms: number;
  startedAt: number;
  acked: Map<string, number>;
  republished: number;
  ends: Map<string, TaskEnd>;
  events: EventFacts;
  effects: EffectFacts;
  faults: FaultRecord[];
  fuzz: ChaosReport['fuzz'];
  hosts: ChaosProcess[];
  workers: ChaosProcess[];
}): ChaosReport {
  const failed: Record<string, number> = {};
  const lost: string[] = [];
  const missingEffects: string[] = [];
  const misreportedFailures: string[] = [];
  const chargeErrors: Record<string, number> = {};
  const latencies: number[] = [];
  let done = 0;
  let doneWithToolErrors = 0;
  for (const [id, submittedAt] of r.acked) {
    const end = r.ends.get(id);
    if (end?.status === 'done') {
      done++;
      if (end.calls.some((c) => c.startsWith('error '))) doneWithToolErrors++;
      // Each charge the model was told about, against the journal, under its own key.
      end.calls.forEach((said, step) => {
        const key = `${id}/${step}/1`;
        const happened = r.effects.executions.has(key);
        if (!said.startsWith('error ') && !happened) missingEffects.push(key);
        if (said.startsWith('error ') && happened) misreportedFailures.push(key);
        if (said.startsWith('error ')) {
          let code = 'unknown';
          try {
            code = (JSON.parse(said.slice('error '.length)) as { error: { code: string } }).error.code;
          } catch {
            // not a wire error: counted as unknown
          }
          chargeErrors[code] = (chargeErrors[code] ?? 0) + 1;
        }
      });
    } else if (end?.status === 'failed') {
      const code = end.code ?? 'unknown';
      failed[code] = (failed[code] ?? 0) + 1;
    } else {
      lost.push(id);
      continue;
    }
    if (end.updatedAt) latencies.push(end.updatedAt - submittedAt);
  }
  latencies.sort((a, b) => a - b);
  const kills = r.faults.filter((f) => f.kind === 'host SIGKILL').map((f) => r.startedAt + f.at);
  const takeovers = r.events.resumedAt
    .map((at) => at - Math.max(...kills.filter((k) => k <= at)))
    .filter((d) => Number.isFinite(d) && d <= 2 * r.o.leaseMs + 10_000)
    .sort((a, b) => a - b);
  const ended = [...r.acked.keys()].filter((id) => ['done', 'failed'].includes(r.ends.get(id)?.status ?? ''));
  const unannounced = ended.filter((id) => !r.events.announced.has(id)).length;
  const attempts = [...r.effects.attempts.values()];
  const report: ChaosReport = {
    options: r.o,
    dir: r.dir,
    ms: r.ms,
    submitted: r.acked.size,
    republished: r.republished,
    done,
    doneWithToolErrors,
    failed,
    lost,
    duplicates: r.effects.duplicates,
    duplicateExecutors: Object.fromEntries(r.effects.duplicates.map((key) => [key, (r.effects.executors.get(key) ?? []).map((pid) => `${r.workers.find((w) => w.pids.includes(Number(pid)))?.name ?? 'unknown'} (pid ${pid})`)])),
    chargeErrors,
    missingEffects,
    misreportedFailures,
    effects: { executed: [...r.effects.executions.values()].reduce((a, b) => a + b, 0), attempts: attempts.reduce((a, b) => a + b, 0), keysAttemptedMoreThanOnce: attempts.filter((n) => n > 1).length },
    events: { resumed: r.events.resumed, unannounced, doubleEnds: r.events.doubleEnds },
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? 0 },
    takeoverMs: { count: takeovers.length, p50: percentile(takeovers, 50), max: takeovers.at(-1) ?? 0 },
    faults: r.faults,
    logs: { hosts: readLogs(r.hosts.map((h) => h.logFile)), workers: readLogs(r.workers.map((w) => w.logFile)) },
    fuzz: r.fuzz,
    ok: false,
  };
  // `internal` is a code of the error vocabulary, so a typed outcome; the report singles it out.
  const typed = Object.keys(failed).every((code) => code !== 'unknown');
  const fuzzOk = r.fuzz.status === 'skipped' || (r.fuzz.status === 'ran' && r.fuzz.report.ok);
  report.ok = lost.length === 0 && report.duplicates.length === 0 && missingEffects.length === 0 && typed && unannounced === 0 && fuzzOk;
  return report;
}
