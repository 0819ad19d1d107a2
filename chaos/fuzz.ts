/**
 * Fuzzing the task intake: publishes malformed and adversarial task messages (bad JSON and
 * UTF-8, wrong types, missing and extra fields, payloads past every size limit, deep nesting,
 * Unicode edge cases, unknown agents, hostile and duplicate task ids) mixed with valid tasks, the
 * way any NATS client would, and checks how each one ends: every bad one with a typed refusal its
 * sender can see (on its `Troupe-Reply-To` subject, and recorded on the rejected stream), every
 * valid one done, and the hosts never down.
 *
 * ```ts
 * const report = await runFuzz({ nc, agent: { name: 'echo', input: (text) => ({ text }), badInputs: [null, { text: 7 }] } });
 * console.log(formatFuzzReport(report));
 * if (!report.ok) process.exitCode = 1;
 * ```
 */
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import { ErrorCode } from '../common/errors.ts';
import { Headers, subjects as subjectsOf } from '../runtime/subjects.ts';
import { fuzzCases, type FuzzAgent, type FuzzCase, type FuzzCategory } from './fuzz-cases.ts';

export { FUZZ_CATEGORIES, fuzzCases, seededRandom, UNICODE_EDGES, type FuzzAgent, type FuzzCase, type FuzzCategory, type FuzzExpectation } from './fuzz-cases.ts';

/** What {@link runFuzz} needs; everything but `nc` and `agent` has a default. */
export interface FuzzOptions {
  /** A connection to the NATS the hosts serve (any client would do: no troupe credentials needed). */
  nc: NatsConnection;
  /** The agent valid tasks go to, and inputs it must refuse (see {@link FuzzAgent}). */
  agent: FuzzAgent;
  /** Subject prefix of the deployment. @default 'troupe' */
  prefix?: string;
  /** Messages to send, valid ones included (about one in eight). @default 1000 */
  count?: number;
  /** Seed of the generator; printed, and in the report, so a run can be repeated. @default random */
  seed?: number;
  /** The hosts' `host.maxTaskBytes`, to size messages around it. @default 262144 */
  maxTaskBytes?: number;
  /** Messages published at once. @default 32 */
  concurrency?: number;
  /** How long after the last publication every verdict must have arrived. @default 15000 */
  verdictTimeoutMs?: number;
  /** How long after the last verdict every valid task must have ended. @default 60000 */
  completionTimeoutMs?: number;
  /**
   * Asked every 250 ms during the run and once at the end: a description of what is wrong with
   * the hosts (one exited, restarted, stopped answering), or `undefined` while all is well.
   */
  health?: () => string | undefined | Promise<string | undefined>;
  /** Where progress lines go (the seed first). @default console.log */
  log?: (line: string) => void;
}

/** One message that did not end as it must. */
export interface FuzzFailure {
  n: number;
  category: FuzzCategory;
  label: string;
  /** How it had to end. */
  expected: string;
  /** How it ended. */
  got: string;
  /** The first bytes of the message, as text. */
  preview: string;
}

/** How a run went. `ok` when every message ended as it must and no host problem was seen. */
export interface FuzzReport {
  ok: boolean;
  seed: number;
  /** In every task id the fuzz chose (`fz-<runTag>-<n>`). */
  runTag: string;
  /** Messages published (or attempted, for those NATS refused). */
  sent: number;
  /** Of which malformed or adversarial (everything but valid tasks and duplicates). */
  bad: number;
  /** Of which valid tasks. */
  valid: number;
  /** Of which repeats of a valid task's id. */
  duplicates: number;
  /** Per category: sent, and ended as they must. */
  byCategory: Record<string, { sent: number; ok: number }>;
  /** Typed refusals received from the hosts, by code. */
  rejectedByCode: Record<string, number>;
  /** Messages NATS itself refused to carry, by the client's error name. */
  refusedByNats: Record<string, number>;
  /** Valid tasks that ended `done` (with the expected output, when the agent says what it is). */
  validCompleted: number;
  /** Duplicates answered `accepted` + `duplicate: true`, or dropped by JetStream de-duplication. */
  duplicatesAnswered: number;
  /** Records that appeared on the rejected stream during the run (at least one per host refusal). */
  rejectionRecords: number;
  /** Every message that did not end as it must. */
  failures: FuzzFailure[];
  /** What `health` reported, each distinct problem once. */
  hostProblems: string[];
  /** Task messages delivered to a host more than once (a message a host failed to handle, or a host lost). */
  redeliveries: number;
  /** Messages of this run still in the work queue at the end: no host could handle them (each is also a failure). */
  stuck: number;
  durationMs: number;
}

interface Outcome {
  /** The PubAck: the message's sequence in the task stream, and whether JetStream dropped it as a duplicate. */
  published?: { seq: number; duplicate: boolean };
  publishError?: string;
  verdict?: Record<string, unknown>;
}

const decoder = new TextDecoder();
const knownCodes: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/** Terminal events of the tasks seen during a run, by taskId. */
type Ends = Map<string, { type: 'done' | 'failed'; output?: unknown; error?: unknown }>;

function preview(payload: Uint8Array): string {
  return JSON.stringify(decoder.decode(payload.subarray(0, 120)));
}

function errorName(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  return `${err.name}: ${err.message.slice(0, 120)}`;
}

async function until<T>(deadline: number, probe: () => T | undefined | Promise<T | undefined>): Promise<T | undefined> {
  for (;;) {
    const value = await probe();
    if (value !== undefined || Date.now() >= deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function lastSeq(jsm: JetStreamManager, stream: string): Promise<number> {
  return (await jsm.streams.info(stream)).state.last_seq;
}

/** Cases whose message is still in the work queue: no host has acked it. */
async function stillQueued(jsm: JetStreamManager, stream: string, cases: FuzzCase[], outcomes: Outcome[]): Promise<number[]> {
  const { messages, first_seq: first } = (await jsm.streams.info(stream)).state;
  if (messages === 0) return [];
  const left: number[] = [];
  for (const c of cases) {
    const seq = outcomes[c.n]!.published?.seq;
    if (seq !== undefined && seq >= first && (await jsm.streams.getMessage(stream, { seq }).then((m) => m !== null, () => false))) left.push(c.n);
  }
  return left;
}

async function deliveries(jsm: JetStreamManager, stream: string, consumer: string): Promise<number> {
  return (await jsm.consumers.info(stream, consumer)).delivered.consumer_seq;
}

/**
 * Runs the fuzz once against live hosts and reports how every message ended; never throws for a
 * message that went wrong (that is a {@link FuzzFailure}), only when NATS itself is unusable.
 * Prints the seed first: pass it back as `seed` to send the same messages again.
 */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now();
  const { nc, agent } = options;
  const prefix = options.prefix ?? 'troupe';
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
  const log = options.log ?? ((line: string) => console.log(line));
  const concurrency = options.concurrency ?? 32;
  const verdictTimeoutMs = options.verdictTimeoutMs ?? 15_000;
  const completionTimeoutMs = options.completionTimeoutMs ?? 60_000;
  const runTag = `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
  const s = subjectsOf(prefix);
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
  const cases = fuzzCases({ seed, count: options.count ?? 1000, agent, maxTaskBytes: options.maxTaskBytes ?? 256 * 1024, maxPayload, runTag });
  log(`fuzz: seed ${seed} (repeat with seed: ${seed}), ${cases.length} messages to ${s.task('<agent>')}, run tag ${runTag}`);

  const rejectedBefore = await lastSeq(jsm, s.streams.rejected);
  const tasksBefore = await lastSeq(jsm, s.streams.tasks);
  const deliveredBefore = await deliveries(jsm, s.streams.tasks, s.hostsConsumer);

  const outcomes: Outcome[] = cases.map(() => ({}));
  const verdictArrived = cases.map(() => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    return { promise, resolve };
  });
  const replyBase = `_INBOX.fuzz.${runTag}`;
  const replies = nc.subscribe(`${replyBase}.*`, {
    callback: (err, msg) => {
      if (err) return;
      const n = Number(msg.subject.slice(replyBase.length + 1));
      const outcome = outcomes[n];
      if (outcome === undefined || outcome.verdict !== undefined) return;
      try {
        outcome.verdict = JSON.parse(decoder.decode(msg.data)) as Record<string, unknown>;
      } catch {
        outcome.verdict = { unreadable: decoder.decode(msg.data.subarray(0, 200)) };
      }
      verdictArrived[n]!.resolve();
    },
  });
  const ends: Ends = new Map();
  const events = nc.subscribe(s.allEvents, {
    callback: (err, msg) => {
      if (err) return;
      try {
        const event = JSON.parse(decoder.decode(msg.data)) as { type?: string; taskId?: string; output?: unknown; error?: unknown };
        if ((event.type === 'done' || event.type === 'failed') && typeof event.taskId === 'string') ends.set(event.taskId, { type: event.type, output: event.output, error: event.error });
      } catch {
        // not an event of ours
      }
    },
  });
  const hostProblems = new Set<string>();
  const checkHealth = async () => {
    const problem = await Promise.resolve(options.health?.()).catch((err: unknown) => `health check threw: ${errorName(err)}`);
    if (problem !== undefined) hostProblems.add(problem);
  };
  const healthTimer = options.health ? setInterval(() => void checkHealth(), 250) : undefined;

  try {
    let next = 0;
    const sender = async () => {
      for (let i = next++; i < cases.length; i = next++) {
        const c = cases[i]!;
        // A repeat goes out once its original was answered: then it meets the task, not a race with it.
        if (c.expect.outcome === 'duplicate') await Promise.race([verdictArrived[c.expect.of]!.promise, new Promise((r) => setTimeout(r, verdictTimeoutMs))]);
        const h = natsHeaders();
        h.set(Headers.replyTo, `${replyBase}.${c.n}`);
        for (const [name, value] of Object.entries(c.headers ?? {})) h.set(name, value);
        try {
          const ack = await js.publish(s.task(c.agent), c.payload, { headers: h, ...(c.msgId ? { msgID: c.msgId } : {}) });
          outcomes[i]!.published = { seq: ack.seq, duplicate: ack.duplicate };
        } catch (err) {
          outcomes[i]!.publishError = errorName(err);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, sender));
    log(`fuzz: ${cases.length} messages published in ${Date.now() - started} ms; waiting for verdicts`);

    const answerable = cases.filter((c) => outcomes[c.n]!.published !== undefined && !outcomes[c.n]!.published!.duplicate);
    await until(Date.now() + verdictTimeoutMs, () => (answerable.every((c) => outcomes[c.n]!.verdict !== undefined) ? true : undefined));

    // Valid tasks: their taskId (chosen, or assigned in the verdict), and how they ended.
    const running = cases.flatMap((c) => {
      const verdict = outcomes[c.n]!.verdict;
      return c.expect.outcome === 'completed' && verdict?.status === 'accepted' && typeof verdict.taskId === 'string' ? [verdict.taskId] : [];
    });
    await until(Date.now() + completionTimeoutMs, async () => {
      const open = running.filter((id) => !ends.has(id));
      // Seen live, or else read back from the events stream (a subscription may start late or drop).
      for (const id of open.slice(0, 20)) {
        const last = await jsm.streams.getMessage(s.streams.events, { last_by_subj: s.events(id) }).catch(() => undefined);
        const event = last ? (JSON.parse(decoder.decode(last.data)) as { type?: string; output?: unknown; error?: unknown }) : undefined;
        if (event?.type === 'done' || event?.type === 'failed') ends.set(id, { type: event.type, output: event.output, error: event.error });
      }
      return running.every((id) => ends.has(id)) ? true : undefined;
    });
    const hostRejections = cases.filter((c) => outcomes[c.n]!.verdict?.error !== undefined).length;
    const rejectionRecords =
      (await until(Date.now() + 5_000, async () => {
        const records = (await lastSeq(jsm, s.streams.rejected)) - rejectedBefore;
        return records >= hostRejections ? records : undefined;
      })) ?? (await lastSeq(jsm, s.streams.rejected)) - rejectedBefore;
    // A host acks a task message once it is handled (refused, or its task ended): none of ours may be left.
    const stuck = (await until(Date.now() + 5_000, async () => {
      const left = await stillQueued(jsm, s.streams.tasks, answerable, outcomes);
      return left.length === 0 ? left : undefined;
    })) ?? (await stillQueued(jsm, s.streams.tasks, answerable, outcomes));
    const redeliveries = Math.max(0, (await deliveries(jsm, s.streams.tasks, s.hostsConsumer)) - deliveredBefore - ((await lastSeq(jsm, s.streams.tasks)) - tasksBefore));
    await checkHealth();

    const report = judge(cases, outcomes, ends, { seed, runTag, rejectionRecords, hostRejections, redeliveries, stuck, hostProblems: [...hostProblems], durationMs: Date.now() - started });
    log(`fuzz: ${report.ok ? 'ok' : `${report.failures.length} failures`} (seed ${seed})`);
    return report;
  } finally {
    if (healthTimer) clearInterval(healthTimer);
    replies.unsubscribe();
    events.unsubscribe();
  }
}

/** Judges every message against how it had to end. */
function judge(
  cases: FuzzCase[],
  outcomes: Outcome[],
  ends: Ends,
  run: { seed: number; runTag: string; rejectionRecords: number; hostRejections: number; redeliveries: number; stuck: number[]; hostProblems: string[]; durationMs: number },
): FuzzReport {
  const failures: FuzzFailure[] = [];
  const byCategory: Record<string, { sent: number; ok: number }> = {};
  const rejectedByCode: Record<string, number> = {};
  const refusedByNats: Record<string, number> = {};
  let validCompleted = 0;
  let duplicatesAnswered = 0;
  for (const c of cases) {
    const outcome = outcomes[c.n]!;
    const verdict = outcome.verdict;
    const tally = (byCategory[c.category] ??= { sent: 0, ok: 0 });
    tally.sent += 1;
    const got = outcome.publishError
      ? `refused by NATS (${outcome.publishError})`
      : outcome.published?.duplicate
        ? 'dropped by JetStream as a duplicate'
        : verdict === undefined
          ? 'no verdict'
          : JSON.stringify(verdict).slice(0, 240);
    const fail = (expected: string, why = got) => failures.push({ n: c.n, category: c.category, label: c.label, expected, got: why, preview: preview(c.payload) });
    const error = verdict?.error as { code?: unknown; message?: unknown } | undefined;
    if (run.stuck.includes(c.n)) {
      fail(c.expect.outcome === 'completed' ? 'done, and its message acked' : 'answered, and its message acked', `still in the work queue, unacked (${got}): a host could not handle it`);
      continue;
    }
    switch (c.expect.outcome) {
      case 'rejected': {
        const expected = `rejected with ${c.expect.code}`;
        if (error === undefined || typeof error.code !== 'string') fail(expected);
        else if (!knownCodes.has(error.code) || typeof error.message !== 'string' || error.message.length === 0) fail(expected, `untyped refusal: ${got}`);
        else if (error.code !== c.expect.code) fail(expected, `rejected with ${error.code}: ${String(error.message).slice(0, 160)}`);
        else {
          rejectedByCode[error.code] = (rejectedByCode[error.code] ?? 0) + 1;
          tally.ok += 1;
        }
        break;
      }
      case 'refused': {
        if (outcome.publishError === undefined) fail('refused by NATS');
        else {
          const name = outcome.publishError.split(':')[0]!;
          refusedByNats[name] = (refusedByNats[name] ?? 0) + 1;
          tally.ok += 1;
        }
        break;
      }
      case 'completed': {
        const taskId = typeof verdict?.taskId === 'string' ? verdict.taskId : undefined;
        const end = taskId !== undefined && verdict?.status === 'accepted' ? ends.get(taskId) : undefined;
        const expected = `accepted and done${c.expect.taskId ? ` as ${c.expect.taskId}` : ''}`;
        if (verdict?.status !== 'accepted' || verdict.duplicate === true || (c.expect.taskId !== undefined && taskId !== c.expect.taskId)) fail(expected);
        else if (end === undefined) fail(expected, `accepted, but did not end in time`);
        else if (end.type !== 'done') fail(expected, `accepted, then failed: ${JSON.stringify(end.error).slice(0, 200)}`);
        else if ('output' in c.expect && JSON.stringify(end.output) !== JSON.stringify(c.expect.output)) fail(expected, `done with another output: ${JSON.stringify(end.output).slice(0, 200)}`);
        else {
          validCompleted += 1;
          tally.ok += 1;
        }
        break;
      }
      case 'duplicate': {
        const answered = outcome.published?.duplicate === true || (verdict?.status === 'accepted' && verdict.duplicate === true && verdict.taskId === c.expect.taskId);
        if (!answered) fail(`answered as a duplicate of #${c.expect.of} (${c.expect.taskId})`);
        else {
          duplicatesAnswered += 1;
          tally.ok += 1;
        }
        break;
      }
    }
  }
  if (run.rejectionRecords < run.hostRejections) {
    failures.push({ n: -1, category: 'invalid_json', label: 'rejected stream', expected: `${run.hostRejections} rejection records`, got: `${run.rejectionRecords}`, preview: '' });
  }
  const count = (outcome: string) => cases.filter((c) => c.expect.outcome === outcome).length;
  return {
    ok: failures.length === 0 && run.hostProblems.length === 0,
    seed: run.seed,
    runTag: run.runTag,
    sent: cases.length,
    bad: count('rejected') + count('refused'),
    valid: count('completed'),
    duplicates: count('duplicate'),
    byCategory,
    rejectedByCode,
    refusedByNats,
    validCompleted,
    duplicatesAnswered,
    rejectionRecords: run.rejectionRecords,
    failures,
    hostProblems: run.hostProblems,
    redeliveries: run.redeliveries,
    stuck: run.stuck.length,
    durationMs: run.durationMs,
  };
}

/** The report as lines for a terminal: figures, per category and code, then up to `examples` failures. */
export function formatFuzzReport(report: FuzzReport, examples = 10): string {
  const lines = [
    `fuzz ${report.ok ? 'OK' : 'FAILED'}: seed ${report.seed}, ${report.sent} messages in ${(report.durationMs / 1000).toFixed(1)} s`,
    `  bad ${report.bad}: refused by the hosts ${Object.values(report.rejectedByCode).reduce((a, b) => a + b, 0)}, by NATS ${Object.values(report.refusedByNats).reduce((a, b) => a + b, 0)}`,
    `  valid ${report.valid}: completed ${report.validCompleted}; duplicates ${report.duplicates}: answered ${report.duplicatesAnswered}`,
    `  rejection records ${report.rejectionRecords}, redeliveries ${report.redeliveries}, stuck in the queue ${report.stuck}, host problems ${report.hostProblems.length}`,
    `  by category: ${Object.entries(report.byCategory).map(([k, v]) => `${k} ${v.ok}/${v.sent}`).join(', ')}`,
    `  by code: ${Object.entries(report.rejectedByCode).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `  refused by NATS: ${Object.entries(report.refusedByNats).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
    ...report.hostProblems.map((p) => `  host problem: ${p}`),
    ...report.failures.slice(0, examples).map((f) => `  #${f.n} ${f.category} (${f.label}): expected ${f.expected}, got ${f.got}; payload ${f.preview}`),
  ];
  if (report.failures.length > examples) lines.push(`  … and ${report.failures.length - examples} more failures`);
  return lines.join('\n');
}
