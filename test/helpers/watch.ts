import type { JetStreamClient } from '@nats-io/jetstream';
import { subjects } from '../../runtime/subjects.ts';
import { watchTask } from '../../runtime/task-watch.ts';
import type { NatsConnection } from '@nats-io/nats-core';
import { headers } from '@nats-io/nats-core';
import type { TaskEvent } from '../../runtime/wire.ts';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Reads a task's whole event history until its last event (done/failed). */
export async function eventsUntilEnd(js: JetStreamClient, taskId: string, opts: { prefix?: string; timeoutMs?: number } = {}): Promise<TaskEvent[]> {
  const events: TaskEvent[] = [];
  for await (const e of watchTask(js, subjects(opts.prefix ?? 'troupe'), taskId, { timeoutMs: opts.timeoutMs ?? 20_000 })) events.push(e);
  return events;
}

/** Publishes a task like any NATS client would, returning the PubAck and the host's verdict. */
export async function submit(nc: NatsConnection, js: JetStreamClient, agent: string, body: unknown, opts: { prefix?: string; raw?: string; msgId?: string } = {}) {
  const prefix = opts.prefix ?? 'troupe';
  const inbox = `_INBOX.verdict.${Math.random().toString(36).slice(2)}`;
  const sub = nc.subscribe(inbox, { max: 1 });
  const h = headers();
  h.set('Troupe-Reply-To', inbox);
  const payload = opts.raw ?? JSON.stringify(body);
  const taskId = typeof body === 'object' && body !== null ? (body as { taskId?: string }).taskId : undefined;
  const msgId = opts.msgId ?? taskId;
  const ack = await js.publish(`${prefix}.tasks.${agent}`, encoder.encode(payload), { headers: h, ...(msgId ? { msgID: msgId } : {}) });
  const verdict = (async () => {
    const timer = setTimeout(() => sub.unsubscribe(), 10_000);
    for await (const m of sub) {
      clearTimeout(timer);
      return JSON.parse(decoder.decode(m.data)) as Record<string, any>;
    }
    throw new Error('no verdict within 10 s');
  })();
  // A submission JetStream de-duplicated never reaches a host: nobody need await its verdict.
  verdict.catch(() => {});
  return { ack, verdict };
}
