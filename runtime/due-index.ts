import type { JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { SnapshotEnvelope } from './wire.ts';

/** Index entries are grouped by the minute they fall due in. */
const MINUTE = 60_000;

/**
 * When something must happen to a parked task although nothing arrives for it: its approval
 * request's deadline, its wait's timer, or its wall clock (which keeps running while it waits for
 * children or an inbox event, and is paused while it waits for a person). Undefined when only an
 * arrival can wake it.
 */
export function dueAtOf(env: Pick<SnapshotEnvelope, 'status' | 'pending' | 'waiting' | 'deadlineAt'>): number | undefined {
  if (env.status !== 'parked') return undefined;
  if (env.pending) return env.pending.deadlineAt ?? undefined;
  if (!env.waiting) return undefined;
  const times = [env.deadlineAt, env.waiting.reason === 'inbox' ? env.waiting.wakeAt : null].filter((t): t is number => t !== null && t !== undefined);
  return times.length ? Math.min(...times) : undefined;
}

/**
 * Parked tasks by the minute they fall due (see {@link dueAtOf}), so that the hosts' sweep reads
 * only the tasks whose time has come instead of every task ever saved. An entry is a key
 * `<minute>.<taskId>.<dueAt>` with no meaning beyond "look at this task then": the task's envelope stays
 * the truth. Entries are added before a task parks (a crash in between leaves an entry for a
 * task that is not parked, which the sweep drops) and removed once a sweep dealt with them.
 */
export class DueIndex {
  private readonly jsm: JetStreamManager;
  private readonly stream: string;
  private readonly prefix: string;

  constructor(private readonly kv: KV, bucket: string) {
    this.jsm = (kv as unknown as { jsm: JetStreamManager }).jsm;
    this.stream = `KV_${bucket}`;
    this.prefix = `$KV.${bucket}.`;
  }

  /** Asks the sweep to look at `taskId` once `dueAt` has passed. */
  async add(taskId: string, dueAt: number): Promise<void> {
    await this.kv.put(`${Math.floor(dueAt / MINUTE)}.${taskId}.${Math.floor(dueAt)}`, new Uint8Array());
  }

  /** Drops an entry (no delete marker is left behind). */
  async remove(entry: DueEntry): Promise<void> {
    await this.jsm.streams.purge(this.stream, { filter: `${this.prefix}${entry.minute}.${entry.taskId}.${entry.dueAt}` });
  }

  /**
   * The entries of the minutes from `fromMinute` to the one `now` is in, oldest first; every
   * entry when `fromMinute` is undefined.
   */
  async due(now: number, fromMinute?: number): Promise<DueEntry[]> {
    const last = Math.floor(now / MINUTE);
    // One request per minute since the last look; after a long gap, one request for everything.
    const filters =
      fromMinute === undefined || last - fromMinute > 30 ? [`${this.prefix}>`] : Array.from({ length: Math.max(0, last - fromMinute + 1) }, (_, i) => `${this.prefix}${fromMinute + i}.>`);
    const entries: DueEntry[] = [];
    for (const filter of filters) {
      const info = await this.jsm.streams.info(this.stream, { subjects_filter: filter });
      for (const subject of Object.keys(info.state.subjects ?? {})) {
        // Task ids have no dots (see TASK_ID_PATTERN).
        const [minuteText, taskId, dueText, ...more] = subject.slice(this.prefix.length).split('.');
        const minute = Number(minuteText);
        const dueAt = Number(dueText);
        if (taskId && !more.length && Number.isInteger(minute) && Number.isInteger(dueAt) && minute <= last) entries.push({ minute, taskId, dueAt });
      }
    }
    return entries.sort((a, b) => a.minute - b.minute);
  }
}

/** One index entry: a task to look at once its minute has come. */
export interface DueEntry {
  minute: number;
  taskId: string;
  /** When the task fell due as it parked (a later park or escalation adds another entry). */
  dueAt: number;
}
