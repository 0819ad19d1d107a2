import type { JetStreamManager } from '@nats-io/jetstream';
import type { z } from 'zod';
import { formatIssues } from '../config/load.ts';
import type { WaitInput, WaitOutput } from '../machines/conversation.ts';
import type { Subjects } from '../runtime/subjects.ts';
import type { TaskEvents } from '../runtime/task-events.ts';
import { inboxMessageSchema } from '../runtime/wire.ts';
import type { EffectGateway } from './effect-gateway.ts';
import { WaitSignal } from './errors.ts';

const decoder = new TextDecoder();

/** One event read from a task's inbox, or why it was refused. */
type Read = { seq: number; type: string; data: unknown } | { seq: number; refused: { code: string; message: string }; type: string };

/**
 * A task's inbox, `troupe.task.<taskId>.inbox` (stream TROUPE_INBOX), read by sequence with
 * direct gets: "the first event after N" has the same answer on every host and after every
 * restart, so nothing is copied into the task's snapshot and nothing is delivered twice.
 */
export class Inbox {
  constructor(
    private readonly jsm: JetStreamManager,
    private readonly subjects: Subjects,
  ) {}

  /** The first event for `taskId` with a sequence above `after`, or undefined if none yet. */
  async next(taskId: string, after: number): Promise<Read | undefined> {
    let stored;
    try {
      stored = await this.jsm.direct.getMessage(this.subjects.streams.inbox, { seq: after + 1, next_by_subj: this.subjects.inbox(taskId) });
    } catch {
      return undefined; // no such message (yet)
    }
    if (!stored) return undefined;
    const seq = stored.seq;
    let raw: unknown;
    try {
      raw = JSON.parse(decoder.decode(stored.data));
    } catch {
      return { seq, type: '(not JSON)', refused: { code: 'invalid_json', message: 'the inbox event is not JSON; send {"type": "...", "data": ...}' } };
    }
    const parsed = inboxMessageSchema.safeParse(raw);
    if (!parsed.success) return { seq, type: '(invalid)', refused: { code: 'invalid_input', message: `the inbox event does not match {"type": string, "data"?: ...}:\n${formatIssues(parsed.error)}` } };
    return { seq, type: parsed.data.type, data: parsed.data.data };
  }
}

/** What a wait needs from its task. */
export interface WaitDeps {
  taskId: string;
  inbox: Inbox;
  gateway: EffectGateway;
  events: TaskEvents;
  /** The agent's schema for inbox events' `data`, by type (events of other types are refused). */
  schemas: Readonly<Record<string, z.ZodType>> | undefined;
  /** Fixes (once) and returns the deadline of the wait with this key. */
  timer: (key: string, at: number) => number;
  now: () => number;
}

/**
 * The next inbox event after `input.after` (of the wanted types, with valid data), or a timeout
 * once the wait's deadline passed; otherwise the task parks (no host memory) until an event
 * arrives or the deadline comes, and this runs again. The answer is recorded in the ledger under
 * the wait's key, so a replayed wait answers the same.
 */
export async function runWait(input: WaitInput, deps: WaitDeps): Promise<WaitOutput> {
  const recorded = await deps.gateway.recorded<WaitOutput>(input.key);
  if (recorded) return recorded.result;
  const wakeAt = input.timeoutMs === undefined ? null : deps.timer(input.key, deps.now() + input.timeoutMs);
  let after = input.after ?? 0;
  for (;;) {
    const read = await deps.inbox.next(deps.taskId, after);
    if (!read) break;
    after = read.seq;
    const refusal = 'refused' in read ? read.refused : check(read, input, deps.schemas);
    deps.events.emit(deps.taskId, { type: 'inbox', seq: read.seq, eventType: read.type, accepted: !refusal, ...(refusal ? { error: refusal } : {}) }, `${deps.taskId}:inbox:${read.seq}`);
    if (refusal || !('data' in read)) continue;
    const event: WaitOutput = { kind: 'event', seq: read.seq, type: read.type, data: read.data };
    return record(deps, input.key, event);
  }
  if (wakeAt !== null && deps.now() >= wakeAt) return record(deps, input.key, { kind: 'timeout', after });
  throw new WaitSignal({ reason: 'inbox', key: input.key, after, wakeAt, since: deps.now() });
}

/** Why an event is not what this wait takes, or undefined. */
function check(read: { type: string; data: unknown }, input: WaitInput, schemas: WaitDeps['schemas']): { code: string; message: string } | undefined {
  if (input.types && !input.types.includes(read.type)) return { code: 'ignored', message: `this wait takes ${input.types.join(', ')}, not ${read.type}` };
  if (!schemas) return undefined;
  const schema = schemas[read.type];
  if (!schema) return { code: 'invalid_input', message: `unknown inbox event type "${read.type}" (known: ${Object.keys(schemas).join(', ')})` };
  const parsed = schema.safeParse(read.data);
  return parsed.success ? undefined : { code: 'invalid_input', message: `"${read.type}" data does not match its schema:\n${formatIssues(parsed.error)}` };
}

async function record(deps: WaitDeps, key: string, answer: WaitOutput): Promise<WaitOutput> {
  const { result } = await deps.gateway.run<WaitOutput>({ key, kind: 'wait', name: 'wait', sideEffect: false, irreversible: false, leaseMs: 0, execute: async () => answer });
  return result;
}
