import { createHash } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.ts';
import type { Subjects } from '../runtime/subjects.ts';
import type { AuditPayload, AuditRecord, AuditRecordBody, TaskEvent } from '../runtime/wire.ts';
import { redactText, type OutputPolicy } from '../sandbox/output.ts';

/** Payloads up to this size (JSON bytes) are kept inline in their record. */
export const INLINE_PAYLOAD_BYTES = 1024;

const encoder = new TextEncoder();

/**
 * Writes a task's audit trail. Every record is redacted (the same secrets and patterns as tool
 * output) before it leaves the process; large payloads are stored once in the blobs bucket under
 * their sha256 and referenced. Each record has a message id, so a record written again after a
 * crash is dropped by JetStream. Writing never holds up or fails the task: records are sent
 * without waiting for their acknowledgement (in order, on one connection), and a lost one is
 * logged.
 */
export class AuditLog {
  constructor(
    private readonly o: { js: JetStreamClient; subjects: Subjects; blobs: KV; redaction: OutputPolicy; source: string; clock: Clock; logger: Logger },
  ) {}

  /** Records one fact; `id` names it (a repeat with the same id is dropped). */
  record(taskId: string, body: AuditRecordBody, id: string): void {
    const record = { v: 1, taskId, at: this.o.clock.now(), source: this.o.source, ...body } as AuditRecord;
    const json = redactText(JSON.stringify(record), this.o.redaction).text;
    this.o.js.publish(this.o.subjects.audit(taskId), encoder.encode(json), { msgID: `${taskId}:${id}` }).catch((err: unknown) => this.o.logger.warn({ err, taskId, type: body.type }, 'audit record not written'));
  }

  /**
   * A payload for a record: inline if small, else stored once (redacted) by content hash. The
   * blob is sent before the record that references it, on the same connection. Pass it to
   * {@link record} at once: an inline payload is the value itself, redacted as part of the record.
   */
  payload(value: unknown): AuditPayload {
    const raw = JSON.stringify(value) ?? 'null';
    // Inline, it is redacted with the whole record when the record is written (see `record`).
    if (Buffer.byteLength(raw) <= INLINE_PAYLOAD_BYTES) return { inline: value === undefined ? null : value };
    const json = redactText(raw, this.o.redaction).text;
    const bytes = Buffer.byteLength(json);
    const hash = createHash('sha256').update(json).digest('hex');
    // Refused when already stored: content-addressed, so the same bytes.
    this.o.blobs.create(hash, encoder.encode(json)).catch(() => {});
    return { ref: `sha256:${hash}`, bytes };
  }

  /** Audit records derived from what a host publishes about its tasks (gates, approvals, decisions, limits, flags, ends). */
  fromEvent(e: TaskEvent): void {
    const write = (body: AuditRecordBody, id: string) => this.record(e.taskId, body, id);
    switch (e.type) {
      case 'tool':
        if (e.gate && e.error) write({ type: 'gate.refused', key: e.key, tool: e.tool, gate: e.gate, error: e.error }, `${e.key}:gate`);
        break;
      case 'escalated':
        write({ type: 'approval.requested', requestId: e.requestId, reason: e.reason, ...(e.tier ? { tier: e.tier } : {}) }, `${e.requestId}:requested:${e.tier ?? 1}`);
        break;
      case 'decision':
        write({ type: 'decision.applied', requestId: e.requestId, verdict: e.awaiting ? 'vote' : e.verdict, approver: e.approver, approverName: e.approverName, ...(e.waitedMs !== undefined ? { waitedMs: e.waitedMs } : {}) }, `${e.decisionId}:decision`);
        break;
      case 'decision_refused':
        write({ type: 'decision.refused', ...(e.requestId ? { requestId: e.requestId } : {}), error: e.error }, `${e.decisionId ?? e.at}:refused`);
        break;
      case 'limit':
        write({ type: 'limit.reached', limit: e.limit, used: e.used, max: e.max, action: e.action }, `limit:${e.limit}:${e.max}`);
        break;
      case 'flag':
        write({ type: 'flag', kind: e.kind, message: e.message }, `flag:${e.kind}:${e.at}`);
        break;
      case 'done':
      case 'failed':
        write({ type: 'task.ended', status: e.type, ...(e.type === 'failed' ? { error: e.error } : {}) }, 'ended');
        break;
      default:
        break;
    }
  }
}
