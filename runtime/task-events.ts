import { PubHeaders, type JetStreamClient } from '@nats-io/jetstream';
import { headers, type NatsConnection } from '@nats-io/nats-core';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.ts';
import type { Subjects } from './subjects.ts';
import type { ApprovalRequest } from './approvals.ts';
import type { Rejection, TaskEvent, TaskEventBody, TaskVerdict } from './wire.ts';

/** The events a step makes as it goes, published without acknowledgement (see {@link TaskEvents.stepEvent}). */
export type StepEventBody = Extract<TaskEventBody, { type: 'state' | 'model' | 'tool' }>;

const encoder = new TextEncoder();

/**
 * Publishes what watchers and senders see: task events (durable, on the events stream),
 * verdicts (core NATS, to the `Troupe-Reply-To` subject) and rejections (durable).
 */
export class TaskEvents {
  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly subjects: Subjects,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /**
   * Publishes an event and waits until the events stream stored it. `msgId`, when given, makes a
   * re-publication after a crash a no-op (JetStream de-duplication).
   */
  async publish(taskId: string, body: TaskEventBody, msgId?: string): Promise<TaskEvent> {
    const event = this.stamp(taskId, body);
    const ack = await this.js.publish(this.subjects.events(taskId), encoder.encode(JSON.stringify(event)), msgId ? { msgID: msgId } : undefined);
    // Once per event: a re-publication after a crash, dropped by JetStream, is not observed again.
    if (!ack.duplicate) for (const observer of this.observers) observer(event);
    return event;
  }

  /** An event as it goes on the wire: its body, its task and the time. */
  private stamp(taskId: string, body: TaskEventBody): TaskEvent {
    return { ...body, taskId, at: this.clock.now() } as TaskEvent;
  }

  /** Sees every event this process publishes (metrics, the audit log): an acknowledged one once, not a re-publication JetStream dropped; a step event as it is sent (see {@link stepEvent}). */
  observe(observer: (event: TaskEvent) => void): void {
    this.observers.push(observer);
  }

  private readonly observers: Array<(event: TaskEvent) => void> = [];

  /** Publishes an event without waiting; a failure is logged, never thrown. */
  emit(taskId: string, body: TaskEventBody, msgId?: string): void {
    this.publish(taskId, body, msgId).catch((err: unknown) => this.logger.warn({ err, taskId, type: body.type }, 'event not published'));
  }

  /**
   * Publishes what a step does as it goes (its states, model calls, tool calls)
   * without asking for the stream's acknowledgement: a step makes four of these, and waiting
   * for, matching and parsing their acknowledgements was about a tenth of a host's work per step
   * with many tasks at once. The events stream stores them all the same, and `msgId` still makes
   * a re-publication after a crash a no-op. What is given up: a step event sent while the stream
   * cannot take it (no leader during a cluster failover) is lost without a trace, where an
   * acknowledged one is sent again. A task's end, approvals, limits and flags stay acknowledged.
   * Observers see the event at once, so for a replayed call they see it again, marked `replayed`.
   */
  stepEvent(taskId: string, body: StepEventBody, msgId: string): void {
    const event = this.stamp(taskId, body);
    try {
      const h = headers();
      h.set(PubHeaders.MsgIdHdr, msgId);
      this.nc.publish(this.subjects.events(taskId), encoder.encode(JSON.stringify(event)), { headers: h });
    } catch (err) {
      this.logger.warn({ err, taskId, type: body.type }, 'event not published');
      return;
    }
    for (const observer of this.observers) observer(event);
  }

  /** Sends a verdict to the submitter's `Troupe-Reply-To` subject (fire and forget, core NATS). */
  answer(replyTo: string | undefined, verdict: TaskVerdict): void {
    if (!replyTo) return;
    try {
      this.nc.publish(replyTo, encoder.encode(JSON.stringify(verdict)));
    } catch (err) {
      this.logger.warn({ err, replyTo }, 'verdict not sent');
    }
  }

  /** Publishes an approval request durably (a re-publication after a crash is dropped). */
  async requestApproval(request: ApprovalRequest, msgId = request.requestId): Promise<void> {
    await this.js.publish(this.subjects.approval(request.agent, request.taskId), encoder.encode(JSON.stringify(request)), { msgID: msgId });
  }

  /** Records a rejected submission on `troupe.tasks.rejected.<agent>` and answers its sender. */
  async reject(rejection: Omit<Rejection, 'at'>, replyTo: string | undefined): Promise<void> {
    const record: Rejection = { ...rejection, at: this.clock.now() };
    this.answer(replyTo, { ...(record.taskId ? { taskId: record.taskId } : {}), error: record.error });
    await this.js.publish(this.subjects.rejected(rejection.agent), encoder.encode(JSON.stringify(record)));
  }
}
