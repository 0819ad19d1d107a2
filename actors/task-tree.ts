import type { JetStreamClient } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.ts';
import type { JsonKv } from '../runtime/json-kv.ts';
import type { Subjects } from '../runtime/subjects.ts';
import type { SnapshotEnvelope } from '../runtime/wire.ts';
import { cancelTask, childResult, joinReady } from './delegation.ts';
import { wakeParked } from './wake.ts';

/** Options of a {@link TaskTree}. */
export interface TaskTreeOptions {
  js: JetStreamClient;
  subjects: Subjects;
  store: JsonKv<SnapshotEnvelope>;
  hostId: string;
  clock: Clock;
  logger: Logger;
}

/**
 * Parents and children across hosts. The truth is in the envelopes — a child's outcome is in its
 * own, a parent's wait in its own — so these are wake-ups, safe to repeat and to miss (every
 * host's sweep finds a parent whose join is ready and wakes it).
 */
export class TaskTree {
  constructor(private readonly o: TaskTreeOptions) {}

  /** A task ended: wake its parent if this completes the parent's join; cancel its unfinished children if it failed. */
  async ended(env: SnapshotEnvelope): Promise<void> {
    if (env.parent) await this.wakeIfJoined(env.parent.taskId);
    if (env.outcome?.status === 'failed' && env.children) {
      const reason = `its parent ${env.taskId} ended: ${env.outcome.error.code}`;
      for (const [taskId, child] of Object.entries(env.children)) {
        const stored = await this.o.store.get(taskId).catch(() => undefined);
        if (stored?.value.outcome) continue;
        await cancelTask(this.o.js, this.o.subjects, { taskId, reason, agent: child.agent });
      }
    }
  }

  /** Wakes a task parked on a delegation whose join is now ready. True if this call woke it. */
  async wakeIfJoined(taskId: string): Promise<boolean> {
    const stored = await this.o.store.get(taskId);
    const waiting = stored?.value.status === 'parked' ? stored.value.waiting : undefined;
    if (!stored || waiting?.reason !== 'children') return false;
    const results = await Promise.all(waiting.children.map(async (id) => childResult(id, (await this.o.store.get(id))?.value)));
    if (!joinReady(waiting.join, results)) return false;
    const { js, subjects, store, hostId, clock } = this.o;
    const woke = await wakeParked({ js, subjects, store, hostId, now: () => clock.now() }, stored, `join:${waiting.key}`);
    if (woke) this.o.logger.info({ taskId, key: waiting.key }, 'delegation joined; parent woken');
    return woke;
  }
}
