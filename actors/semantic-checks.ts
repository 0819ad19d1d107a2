import type { Logger } from 'pino';
import type { z } from 'zod';
import type { Clock } from '../common/clock.ts';
import { formatIssues } from '../config/load.ts';
import { RevisionConflictError, type JsonKv, type Versioned } from '../runtime/json-kv.ts';
import type { TaskEvents } from '../runtime/task-events.ts';
import type { Baseline, SnapshotEnvelope } from '../runtime/wire.ts';

/** A task this many times above its agent's usual cost or steps is flagged. */
export const ANOMALY_FACTOR = 5;
/** Finished tasks an agent needs before its baseline is trusted. */
export const BASELINE_MIN_TASKS = 5;

/** How long a host trusts the baseline it last read or wrote before reading it again. */
export const BASELINE_FRESH_MS = 10_000;

const spentBy = (env: SnapshotEnvelope) => ({ usd: env.usage?.costUsd ?? 0, steps: env.usage?.modelCalls ?? 0 });

type Stored = Versioned<Baseline> | undefined;
/** Finished tasks of one agent waiting to be added to its baseline, and the write that adds them. */
interface Batch {
  tasks: number;
  usd: number;
  steps: number;
  written: Promise<void>;
}

/**
 * Semantic failure detection: what looks wrong although nothing crashed, raised as `flag`
 * events (and so in `troupe trace` and the metrics). At a task's successful end: its output is
 * checked against the agent's declared `output` schema, and its cost and steps against the
 * agent's baseline (running averages shared by all hosts in KV, of which each host keeps the
 * copy it last read or wrote for up to {@link BASELINE_FRESH_MS}), which the task then joins.
 */
export class SemanticChecks {
  constructor(private readonly o: { baselines: JsonKv<Baseline>; events: TaskEvents; clock: Clock; logger: Logger }) {}

  /**
   * The baseline each agent had when this host last read or wrote it. A running average of
   * many tasks moves little in seconds, so a task's end does not wait for a read: the check uses
   * this copy while it is fresh, and the update uses its revision (a host that wrote since makes
   * the compare-and-set fail, and the update reads again).
   */
  private readonly known = new Map<string, { stored: Stored; at: number }>();
  /** Reads in flight, by agent: tasks that end together share one. */
  private readonly reading = new Map<string, Promise<Stored>>();
  /** Per agent, the finished tasks not yet added, waiting for the write before them to finish. */
  private readonly batches = new Map<string, Batch>();
  /** Per agent, the last write queued: one at a time, so a host never races itself. */
  private readonly writing = new Map<string, Promise<void>>();

  private async baseline(agent: string): Promise<Stored> {
    const cached = this.known.get(agent);
    if (cached && this.o.clock.now() - cached.at < BASELINE_FRESH_MS) return cached.stored;
    return this.read(agent);
  }

  private read(agent: string): Promise<Stored> {
    let reading = this.reading.get(agent);
    if (!reading) {
      reading = this.o.baselines.get(agent).then(
        (stored) => {
          this.reading.delete(agent);
          this.known.set(agent, { stored, at: this.o.clock.now() });
          return stored;
        },
        (err: unknown) => {
          this.reading.delete(agent);
          throw err;
        },
      );
      this.reading.set(agent, reading);
    }
    return reading;
  }

  /**
   * Flags a task that ended done (before its end is announced, so the end stays its last
   * event): output against the agent's schema, cost and steps against the agent's baseline.
   */
  async check(env: SnapshotEnvelope, outputSchema: z.ZodType | undefined): Promise<void> {
    if (env.outcome?.status !== 'done') return;
    const flag = (kind: 'output_schema' | 'cost_anomaly' | 'steps_anomaly', message: string, details?: Record<string, unknown>) =>
      this.o.events.publish(env.taskId, { type: 'flag', kind, message, ...(details ? { details } : {}) }, `${env.taskId}:flag:${kind}`);
    if (outputSchema) {
      const parsed = outputSchema.safeParse(env.outcome.output);
      if (!parsed.success) await flag('output_schema', `the output does not match agent ${env.agent}'s output schema:\n${formatIssues(parsed.error)}`);
    }
    const { usd, steps } = spentBy(env);
    const b = (await this.baseline(env.agent).catch(() => undefined))?.value;
    if (!b || b.tasks < BASELINE_MIN_TASKS) return;
    if (b.meanUsd > 0 && usd > ANOMALY_FACTOR * b.meanUsd) {
      await flag('cost_anomaly', `cost $${usd.toFixed(6)} is ${(usd / b.meanUsd).toFixed(1)}x agent ${env.agent}'s usual $${b.meanUsd.toFixed(6)}`, { usd, meanUsd: b.meanUsd, tasks: b.tasks });
    }
    if (b.meanSteps > 0 && steps > ANOMALY_FACTOR * b.meanSteps) {
      await flag('steps_anomaly', `${steps} model calls is ${(steps / b.meanSteps).toFixed(1)}x agent ${env.agent}'s usual ${b.meanSteps.toFixed(1)}`, { steps, meanSteps: b.meanSteps, tasks: b.tasks });
    }
  }

  /**
   * Adds a task that ended done to its agent's baseline; resolves once it is written. Tasks
   * that end while this host writes the baseline are added together by its next write, so
   * many tasks ending at once cost a few writes, not one compare-and-set race each.
   */
  learnFrom(env: SnapshotEnvelope): Promise<void> {
    if (env.outcome?.status !== 'done') return Promise.resolve();
    const { usd, steps } = spentBy(env);
    const agent = env.agent;
    let batch = this.batches.get(agent);
    if (!batch) {
      const open: Batch = { tasks: 0, usd: 0, steps: 0, written: Promise.resolve() };
      const before = this.writing.get(agent) ?? Promise.resolve();
      open.written = before.then(() => {
        // Closed from here on: a task ending now goes into the next batch.
        this.batches.delete(agent);
        return this.learn(agent, open);
      });
      const settled = open.written.catch(() => {});
      this.writing.set(agent, settled);
      void settled.then(() => {
        if (this.writing.get(agent) === settled) this.writing.delete(agent);
      });
      this.batches.set(agent, open);
      batch = open;
    }
    batch.tasks += 1;
    batch.usd += usd;
    batch.steps += steps;
    return batch.written;
  }

  /** Adds finished tasks to their agent's running averages (compare-and-set; a lost race reads again and is retried). */
  private async learn(agent: string, batch: Batch): Promise<void> {
    let current = await this.baseline(agent);
    for (let attempt = 0; attempt < 5; attempt++) {
      const b = current?.value;
      const before = b?.tasks ?? 0;
      const n = before + batch.tasks;
      const next: Baseline = { v: 1, tasks: n, meanUsd: ((b?.meanUsd ?? 0) * before + batch.usd) / n, meanSteps: ((b?.meanSteps ?? 0) * before + batch.steps) / n, updatedAt: this.o.clock.now() };
      try {
        const revision = current ? await this.o.baselines.update(agent, next, current.revision) : await this.o.baselines.create(agent, next);
        this.known.set(agent, { stored: { value: next, revision }, at: this.o.clock.now() });
        return;
      } catch (err) {
        if (!(err instanceof RevisionConflictError)) throw err;
        current = await this.read(agent);
      }
    }
    this.o.logger.warn({ agent }, 'baseline not updated: too many concurrent updates');
  }
}
