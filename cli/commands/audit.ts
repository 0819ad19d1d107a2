import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { auditHistory } from '../../runtime/task-watch.ts';
import type { AuditPayload, AuditRecord } from '../../runtime/wire.ts';
import { connectClient } from '../connect.ts';
import type { Command } from '../main.ts';
import { configFor } from './options.ts';

const decoder = new TextDecoder();

/** One audit record as a line. */
export function formatAudit(r: AuditRecord, payload: (p: AuditPayload) => string): string {
  const head = `${new Date(r.at).toISOString()}  ${r.type.padEnd(18)}`;
  switch (r.type) {
    case 'task.created':
      return `${head} agent ${r.agent}${r.principal ? ` for ${r.principal}` : ''}${r.parent ? ` (child of ${r.parent.taskId})` : ''}, input ${payload(r.input)}`;
    case 'effect.started':
      return `${head} ${r.kind} ${r.name} ${r.key} attempt ${r.attempt} on ${r.source}`;
    case 'effect.succeeded':
      return `${head} ${r.kind} ${r.name} ${r.key}: ${payload(r.result)}`;
    case 'effect.failed':
      return `${head} ${r.kind} ${r.name} ${r.key}: ${r.error.code}: ${r.error.message}${r.retryable ? ' (retryable)' : ''}`;
    case 'gate.refused':
      return `${head} ${r.tool} ${r.key} by the ${r.gate} gate: ${r.error.code}: ${r.error.message}`;
    case 'approval.requested':
      return `${head} ${r.requestId}${r.tier ? ` (tier ${r.tier})` : ''}: ${r.reason}`;
    case 'decision.applied':
      return `${head} ${r.verdict} by ${r.approverName} (${r.approver}) on ${r.requestId}${r.waitedMs !== undefined ? ` after ${Math.round(r.waitedMs / 1000)} s` : ''}`;
    case 'decision.refused':
      return `${head} ${r.requestId ?? '-'}: ${r.error.code}: ${r.error.message}`;
    case 'limit.reached':
      return `${head} ${r.limit} ${r.used} of ${r.max}: ${r.action}`;
    case 'flag':
      return `${head} ${r.kind}: ${r.message}`;
    case 'task.ended':
      return `${head} ${r.status}${r.error ? `: ${r.error.code}: ${r.error.message}` : ''}`;
  }
}

export const auditCommand: Command = {
  summary: "a task's audit trail: every effect with its payload, gate verdicts, approvals, limits, flags",
  usage: 'troupe audit <taskId> [--json] [--payloads]',
  options: { json: { type: 'boolean' }, payloads: { type: 'boolean' } },
  async run({ values, positionals }) {
    const [taskId] = positionals;
    if (!taskId) throw new TerminalError(ErrorCode.invalidTaskId, 'name the task: troupe audit <taskId>');
    const loaded = await configFor(values);
    const nc = await connectClient(loaded, 'troupe-audit', 'observers');
    try {
      const s = makeSubjects(loaded.config.prefix);
      const js = jetstream(nc);
      const records = await auditHistory(js, s, taskId).catch((cause: unknown) => {
        throw new TerminalError(ErrorCode.notFound, `cannot read the audit stream ${s.streams.audit}: ${(cause as Error).message}`, { cause });
      });
      if (!records.length) throw new TerminalError(ErrorCode.notFound, `no audit records for task "${taskId}" (is the id right? records are kept streams.auditMaxAgeMs)`);
      const blobs = values.payloads ? await new Kvm(js).open(s.buckets.auditBlobs) : undefined;
      const resolved = new Map<string, string>();
      if (blobs) {
        for (const r of records) {
          for (const p of [('input' in r ? r.input : undefined), ('result' in r ? r.result : undefined)]) {
            if (p && 'ref' in p && !resolved.has(p.ref)) resolved.set(p.ref, decoder.decode((await blobs.get(p.ref.slice('sha256:'.length)))?.value ?? new Uint8Array()));
          }
        }
      }
      if (values.json) {
        for (const r of records) process.stdout.write(`${JSON.stringify(r)}\n`);
        return 0;
      }
      const payload = (p: AuditPayload) => ('inline' in p ? brief(JSON.stringify(p.inline) ?? 'null') : (resolved.get(p.ref) ?? `${p.ref} (${p.bytes} bytes; --payloads shows it)`));
      for (const r of records) process.stdout.write(`${formatAudit(r, payload)}\n`);
      return 0;
    } finally {
      await nc.close();
    }
  },
};

const brief = (json: string) => (json.length > 200 ? `${json.slice(0, 197)}...` : json);
