import type { JetStreamClient } from '@nats-io/jetstream';
import { publishResumption } from '../runtime/intake.ts';
import { RevisionConflictError, type JsonKv, type Versioned } from '../runtime/json-kv.ts';
import type { Subjects } from '../runtime/subjects.ts';
import type { SnapshotEnvelope } from '../runtime/wire.ts';

/** What waking a parked task needs. */
export interface WakeDeps {
  js: JetStreamClient;
  subjects: Subjects;
  store: JsonKv<SnapshotEnvelope>;
  hostId: string;
  now: () => number;
}

/**
 * Writes a parked task back to `running` — compare-and-set on the revision it was read at, with
 * `changes` (a decision, a child's outcome) and without what it waited on — then publishes the
 * message that lets a host claim it. The task resumes from the same state on whichever host
 * takes it. False if someone else changed the task first (they woke it, or it moved on).
 */
export async function wakeParked(deps: WakeDeps, stored: Versioned<SnapshotEnvelope>, cause: string, changes: Partial<SnapshotEnvelope> = {}): Promise<boolean> {
  const env = stored.value;
  const token = `${deps.hostId}:wake:${cause}`;
  const { pending: _answered, votes: _counted, waiting: _over, ...rest } = env;
  const woken: SnapshotEnvelope = { ...rest, ...changes, status: 'running', handover: { token }, owner: null, updatedAt: deps.now() };
  try {
    await deps.store.update(env.taskId, woken, stored.revision);
  } catch (err) {
    if (err instanceof RevisionConflictError) return false;
    throw err;
  }
  await publishResumption(deps.js, deps.subjects, { agent: env.agent, taskId: env.taskId, token, msgId: `${env.taskId}:wake:${cause}` });
  return true;
}
