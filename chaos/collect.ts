import { existsSync, readFileSync } from 'node:fs';
import { DeliverPolicy, type JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { Subjects } from '../runtime/subjects.ts';
import { journalLines } from './agent.ts';

const decoder = new TextDecoder();

/** Where a task ended, as its saved envelope says. */
export interface TaskEnd {
  status: 'running' | 'parked' | 'done' | 'failed' | 'missing';
  /** The error code of a failed task. */
  code?: string;
  /** When its envelope was last written (epoch ms). */
  updatedAt?: number;
  /** What each charge of a done task returned to the model, in order: a result, or `error ...`. */
  calls: string[];
}

/** Reads the saved envelope of each task (through the bucket's leader). */
export async function readEnds(kv: KV, taskIds: Iterable<string>, concurrency = 32): Promise<Map<string, TaskEnd>> {
  const ids = [...taskIds];
  const ends = new Map<string, TaskEnd>();
  for (let i = 0; i < ids.length; i += concurrency) {
    await Promise.all(
      ids.slice(i, i + concurrency).map(async (id) => {
        const entry = await kv.get(id);
        if (!entry || entry.operation !== 'PUT' || entry.length === 0) {
          ends.set(id, { status: 'missing', calls: [] });
          return;
        }
        const env = entry.json<{ status: TaskEnd['status']; updatedAt: number; outcome?: { status: string; output?: unknown; error?: { code: string } } }>();
        let calls: string[] = [];
        if (env.outcome?.status === 'done') {
          try {
            calls = (JSON.parse(String(env.outcome.output)) as unknown[]).map(String);
          } catch {
            calls = [String(env.outcome.output)];
          }
        }
        ends.set(id, { status: env.status, updatedAt: env.updatedAt, ...(env.outcome?.error ? { code: env.outcome.error.code } : {}), calls });
      }),
    );
  }
  return ends;
}

/** What the events stream says about the tasks: who resumed them, and whether watchers saw the end. */
export interface EventFacts {
  /** `resumed` events (a task taken over by another host or a fresh delivery). */
  resumed: number;
  /** When each `resumed` event happened (epoch ms). */
  resumedAt: number[];
  /** Tasks with a `done` or `failed` event. */
  announced: Set<string>;
  /** Tasks whose terminal event was published more than once (a watcher would see two ends). */
  doubleEnds: number;
}

/** Scans the events stream once with an ordered consumer. */
export async function readEvents(js: JetStreamClient, s: Subjects): Promise<EventFacts> {
  const consumer = await js.consumers.get(s.streams.events, { deliver_policy: DeliverPolicy.All });
  const facts: EventFacts = { resumed: 0, resumedAt: [], announced: new Set(), doubleEnds: 0 };
  for (;;) {
    const batch = await consumer.fetch({ max_messages: 500, expires: 2000 });
    let got = 0;
    let pending = 0;
    for await (const m of batch) {
      got++;
      pending = m.info.pending;
      const e = JSON.parse(decoder.decode(m.data)) as { type: string; taskId: string; at: number };
      if (e.type === 'resumed') {
        facts.resumed++;
        facts.resumedAt.push(e.at);
      }
      if (e.type === 'done' || e.type === 'failed') {
        if (facts.announced.has(e.taskId)) facts.doubleEnds++;
        facts.announced.add(e.taskId);
      }
    }
    if (got === 0 || pending === 0) return facts;
  }
}

/** Side effects as the journal (outside troupe) saw them. */
export interface EffectFacts {
  /** Executions per effect key. */
  executions: Map<string, number>;
  /** Attempts started per effect key (a worker began the call). */
  attempts: Map<string, number>;
  /** Keys executed more than once. */
  duplicates: string[];
  /** The process ids that executed each key. */
  executors: Map<string, string[]>;
}

export function readJournal(journal: string): EffectFacts {
  const count = (lines: string[]) => {
    const m = new Map<string, number>();
    for (const l of lines) {
      const key = l.split(' ')[0]!;
      m.set(key, (m.get(key) ?? 0) + 1);
    }
    return m;
  };
  const lines = journalLines(journal);
  const executions = count(lines);
  const attempts = count(journalLines(`${journal}.starts`));
  const executors = new Map<string, string[]>();
  for (const [key, pid] of lines.map((l) => l.split(' '))) executors.set(key!, [...(executors.get(key!) ?? []), pid ?? '?']);
  return { executions, attempts, executors, duplicates: [...executions].filter(([, n]) => n > 1).map(([k]) => k) };
}

/** What the processes logged, summed per role. */
export interface LogFacts {
  disconnects: number;
  reconnects: number;
  /** "another host advanced this task": a host that lost a task (paused past its lease, or beaten to it) stopping without writing. */
  conflicts: number;
  handedOver: number;
  resumed: number;
  /** Lines at level error or above. */
  errors: number;
  /** The first few error messages, for the report. */
  errorSamples: string[];
}

export function readLogs(files: string[]): LogFacts {
  const facts: LogFacts = { disconnects: 0, reconnects: 0, conflicts: 0, handedOver: 0, resumed: 0, errors: 0, errorSamples: [] };
  for (const file of files) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      let entry: { level?: number; msg?: string; err?: { message?: string } };
      try {
        entry = JSON.parse(line);
      } catch {
        continue;
      }
      const msg = entry.msg ?? '';
      if (msg.startsWith('lost the NATS connection')) facts.disconnects++;
      else if (msg === 'reconnected to NATS') facts.reconnects++;
      else if (msg.startsWith('another host advanced this task')) facts.conflicts++;
      else if (msg === 'task handed over') facts.handedOver++;
      else if (msg === 'task resumed') facts.resumed++;
      if ((entry.level ?? 0) >= 50) {
        facts.errors++;
        if (facts.errorSamples.length < 5) facts.errorSamples.push(`${msg}${entry.err?.message ? `: ${entry.err.message}` : ''}`);
      }
    }
  }
  return facts;
}
