import type { JetStreamClient } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.ts';
import type { JsonKv } from '../runtime/json-kv.ts';
import type { Subjects } from '../runtime/subjects.ts';
import type { SnapshotEnvelope } from '../runtime/wire.ts';
import { cancelTask, childResult, joinReady } from './delegation.ts';
import type { Inbox } from './inbox.ts';
import { wakeParked } from './wake.ts';

/** Options of a {@link TaskTree}. */
export interface TaskTreeOptions {
  js: JetStreamClient;
  subjects: Subjects;
  store: JsonKv<SnapshotEnvelope>;
  hostId: string;
  clock: Clock;
  logger: Logger;
  inbox: Inbox;
}

/**
 * Parked tasks and what wakes them, across hosts: children ending, inbox events, timers. The
 * truth is in the envelopes and the inbox stream — a child's outcome is in its own envelope, a
 * parent's wait in its own — so these are wake-ups, safe to repeat and to miss (every host's
 * sweep finds a task whose wait is over and wakes it).
 */
export class TaskTree {
  constructor(private readonly o: TaskTreeOptions) {}

  /** A task ended: wake its parent if this completes the parent's join; cancel its unfinished children if it failed. */
  async ended(env: SnapshotEnvelope): Promise<void> {
    if (env.parent) await this.wakeIfDue(env.parent.taskId);
    if (env.outcome?.status === 'failed' && env.children) {
      const reason = `its parent ${env.taskId} ended: ${env.outcome.error.code}`;
      for (const [taskId, child] of Object.entries(env.children)) {
        const stored = await this.o.store.get(taskId).catch(() => undefined);
        if (stored?.value.outcome) continue;
        await cancelTask(this.o.js, this.o.subjects, { taskId, reason, agent: child.agent });
      }
    }
  }

  /**
   * Wakes a parked task if what it waits for happened: its delegation's join is ready, or an
   * event arrived on its inbox, or its wait's timer is due. True if this call woke it.
   */
  async wakeIfDue(taskId: string): Promise<boolean> {
    const stored = await this.o.store.get(taskId);
    const waiting = stored?.value.status === 'parked' ? stored.value.waiting : undefined;
    if (!stored || !waiting) return false;
    let cause: string;
    if (stored.value.deadlineAt !== null && this.o.clock.now() >= stored.value.deadlineAt) {
      // Its wall clock ran out while it waited: wake it so its supervisor stops it (and its children).
      cause = `deadline:${waiting.key}`;
    } else if (waiting.reason === 'children') {
      const results = await Promise.all(waiting.children.map(async (id) => childResult(id, (await this.o.store.get(id))?.value)));
      if (!joinReady(waiting.join, results)) return false;
      cause = `join:${waiting.key}`;
    } else {
      const due = waiting.wakeAt !== null && this.o.clock.now() >= waiting.wakeAt;
      const next = due ? undefined : await this.o.inbox.next(taskId, waiting.after);
      if (!due && !next) return false;
      cause = `${due ? 'timer' : `inbox${next!.seq}`}:${waiting.key}`;
    }
    const { js, subjects, store, hostId, clock } = this.o;
    const woke = await wakeParked({ js, subjects, store, hostId, now: () => clock.now() }, stored, cause);
    if (woke) this.o.logger.info({ taskId, cause }, 'parked task woken');
    return woke;
  }
}
