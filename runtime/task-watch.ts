import { DeliverPolicy, type JetStreamClient } from '@nats-io/jetstream';
import type { Subjects } from './subjects.ts';
import type { z } from 'zod';
import { auditRecordSchema, taskEventSchema, type AuditRecord, type TaskEvent } from './wire.ts';

const decoder = new TextDecoder();

/** Options of {@link watchTask}. */
export interface WatchOptions {
  /** Stop after this long without the end event. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A task ended with no `done`/`failed` event in time. */
export class WatchTimeoutError extends Error {
  override readonly name = 'WatchTimeoutError';
}

/**
 * Yields a task's events from the first, whenever the watcher subscribes, and returns after the
 * last one (`done` or `failed`). Uses an ordered consumer with a single subject filter, which
 * works on nats-server 2.9.
 */
export async function* watchTask(js: JetStreamClient, subjects: Subjects, taskId: string, options: WatchOptions = {}): AsyncGenerator<TaskEvent> {
  const consumer = await js.consumers.get(subjects.streams.events, {
    // A string (not an array) becomes `filter_subject`: nats-server 2.9 refuses `filter_subjects`.
    filter_subjects: subjects.events(taskId) as unknown as string[],
    deliver_policy: DeliverPolicy.All,
  });
  const messages = await consumer.consume();
  const timeoutMs = options.timeoutMs;
  let timedOut = false;
  const timer = timeoutMs
    ? setTimeout(() => {
        timedOut = true;
        messages.stop();
      }, timeoutMs)
    : undefined;
  const onAbort = () => messages.stop();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const m of messages) {
      const parsed = taskEventSchema.safeParse(JSON.parse(decoder.decode(m.data)));
      if (!parsed.success) continue;
      yield parsed.data;
      if (parsed.data.type === 'done' || parsed.data.type === 'failed') return;
    }
    if (timedOut) throw new WatchTimeoutError(`task ${taskId} did not end within ${timeoutMs} ms`);
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    messages.stop();
  }
}

/**
 * The events a task has published so far, without waiting for more: what `troupe status` shows.
 */
export function taskHistory(js: JetStreamClient, subjects: Subjects, taskId: string): Promise<TaskEvent[]> {
  return readSubject(js, subjects.streams.events, subjects.events(taskId), taskEventSchema);
}

/** A task's audit records so far, oldest first (`troupe audit`). */
export function auditHistory(js: JetStreamClient, subjects: Subjects, taskId: string): Promise<AuditRecord[]> {
  return readSubject(js, subjects.streams.audit, subjects.audit(taskId), auditRecordSchema);
}

/** Every message on one subject of a stream so far, parsed (records that do not parse are skipped). */
async function readSubject<T>(js: JetStreamClient, stream: string, subject: string, schema: z.ZodType<T>): Promise<T[]> {
  // nats-server 2.9 takes one filter subject, as a string.
  const consumer = await js.consumers.get(stream, { filter_subjects: subject as unknown as string[], deliver_policy: DeliverPolicy.All });
  const out: T[] = [];
  for (;;) {
    const m = await consumer.next({ expires: 1000 });
    if (!m) return out;
    const parsed = schema.safeParse(JSON.parse(decoder.decode(m.data)));
    if (parsed.success) out.push(parsed.data);
    if (m.info.pending === 0) return out;
  }
}
