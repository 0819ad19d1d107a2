import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { consumeDurable, type DurableConsumption } from '../runtime/durable-consumer.ts';
import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.ts';
import { ErrorCode } from '../common/errors.ts';
import { RevisionConflictError, type JsonKv } from '../runtime/json-kv.ts';
import type { Subjects } from '../runtime/subjects.ts';
import type { TaskEvents } from '../runtime/task-events.ts';
import { cancelMessageSchema, type CancelMessage, type SnapshotEnvelope } from '../runtime/wire.ts';
import type { TaskRunner } from './task-runner.ts';
import type { TaskTree } from './task-tree.ts';

/** Options of a {@link CancelDesk}. */
export interface CancelDeskOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  subjects: Subjects;
  store: JsonKv<SnapshotEnvelope>;
  events: TaskEvents;
  tree: TaskTree;
  hostId: string;
  /** The runner of a task this host runs now. */
  runnerOf: (taskId: string) => TaskRunner | undefined;
  clock: Clock;
  logger: Logger;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Where cancellations arrive (`troupe.control.cancel.<taskId>`, durable; each handled by one
 * host). A running task is cancelled by the host that runs it (asked directly), which lets an
 * effect in flight finish and be recorded first; a parked task is ended here; a task whose host
 * cannot be reached is marked, and whoever resumes it cancels it; a child cancelled before it
 * started is created cancelled, so it never starts. Every cancelled task cancels its children.
 */
export class CancelDesk {
  private consumption: DurableConsumption | undefined;
  private direct: Subscription | undefined;

  constructor(private readonly o: CancelDeskOptions) {}

  async start(): Promise<void> {
    this.direct = this.o.nc.subscribe(this.o.subjects.hostCancel(this.o.hostId));
    void (async () => {
      for await (const m of this.direct!) this.answerDirect(m);
    })();
    this.consumption = await consumeDurable(this.o.js, this.o.subjects.streams.control, this.o.subjects.controlConsumer, (m) => this.handle(m), this.o.logger, 'cancellation');
  }

  async close(): Promise<void> {
    this.direct?.unsubscribe();
    await this.consumption?.stop();
  }

  private answerDirect(m: Msg): void {
    let ok = false;
    try {
      const { taskId, reason } = JSON.parse(decoder.decode(m.data)) as { taskId: string; reason: string };
      const runner = this.o.runnerOf(taskId);
      if (runner) {
        ok = true;
        void runner.cancel(reason);
      }
    } catch {
      // not a cancellation: answer no
    }
    m.respond(encoder.encode(JSON.stringify({ ok })));
  }

  private async handle(m: JsMsg): Promise<void> {
    let c: CancelMessage;
    try {
      c = cancelMessageSchema.parse(JSON.parse(decoder.decode(m.data)));
    } catch (err) {
      this.o.logger.warn({ err, subject: m.subject }, 'cancellation is not a cancel message; dropped');
      return;
    }
    const stored = await this.o.store.get(c.taskId);
    const error = { code: ErrorCode.cancelled, message: `cancelled: ${c.reason}` };
    if (!stored) {
      if (!c.agent) return; // nothing to cancel, and nothing known to create it cancelled
      const now = this.o.clock.now();
      const tombstone: SnapshotEnvelope = { v: 1, taskId: c.taskId, agent: c.agent, machineVersion: '', status: 'failed', runSeq: null, runDelivery: 0, owner: this.o.hostId, createdAt: now, updatedAt: now, deadlineAt: null, state: '', step: 0, snapshot: null, outcome: { status: 'failed', error } };
      try {
        await this.o.store.create(c.taskId, tombstone);
      } catch (err) {
        if (err instanceof RevisionConflictError) throw new Error(`task ${c.taskId} appeared while it was being cancelled`, { cause: err });
        throw err;
      }
      await this.o.events.publish(c.taskId, { type: 'failed', error }, `${c.taskId}:end`);
      return;
    }
    const env = stored.value;
    if (env.status === 'done' || env.status === 'failed') return;
    if (env.status === 'parked') {
      const { pending: _p, votes: _v, waiting: _w, ...rest } = env;
      const ended: SnapshotEnvelope = { ...rest, status: 'failed', outcome: { status: 'failed', error }, owner: this.o.hostId, updatedAt: this.o.clock.now() };
      await this.o.store.update(c.taskId, ended, stored.revision); // a conflict is redelivered and looked at again
      await this.o.events.publish(c.taskId, { type: 'failed', error }, `${c.taskId}:end`);
      this.o.logger.info({ taskId: c.taskId, reason: c.reason }, 'parked task cancelled');
      await this.o.tree.ended(ended);
      return;
    }
    const local = this.o.runnerOf(c.taskId);
    if (local) {
      await local.cancel(c.reason);
      return;
    }
    if (env.owner) {
      try {
        const reply = await this.o.nc.request(this.o.subjects.hostCancel(env.owner), encoder.encode(JSON.stringify({ taskId: c.taskId, reason: c.reason })), { timeout: 5_000 });
        if ((JSON.parse(decoder.decode(reply.data)) as { ok?: boolean }).ok) return;
      } catch {
        // the owner is gone or silent: mark the task below
      }
    }
    await this.o.store.update(c.taskId, { ...env, cancel: { reason: c.reason, at: this.o.clock.now() }, updatedAt: this.o.clock.now() }, stored.revision);
    this.o.logger.info({ taskId: c.taskId, owner: env.owner }, 'task marked cancelled; whoever resumes it ends it');
  }
}
