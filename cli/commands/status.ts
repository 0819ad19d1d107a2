import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { JsonKv } from '../../runtime/json-kv.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import type { SupervisorContext } from '../../machines/supervisor.machine.ts';
import { snapshotEnvelopeSchema, type SnapshotEnvelope, type TaskEvent } from '../../runtime/wire.ts';
import { taskHistory } from '../../runtime/task-watch.ts';
import { openBucket } from '../buckets.ts';
import { connectClient } from '../connect.ts';
import { formatEvent } from '../print-events.ts';
import type { Command } from '../main.ts';
import { configFor } from './options.ts';

/** The snapshot bucket, or a clear error when no troupe host has run on this NATS. */
export function openSnapshots(nc: NatsConnection, prefix: string): Promise<JsonKv<SnapshotEnvelope>> {
  const bucket = makeSubjects(prefix).buckets.snapshots;
  return openBucket(nc, bucket, snapshotEnvelopeSchema, () => `no task store (bucket ${bucket}) on this NATS: has a troupe host run here?`);
}

const iso = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());

/** A task's envelope, as `troupe status` prints it. */
export function describeTask(e: SnapshotEnvelope, now = Date.now()): string {
  const lines = [
    `task      ${e.taskId}`,
    `agent     ${e.agent} (machine version ${e.machineVersion})`,
    `status    ${e.status}`,
    `state     ${e.state} (step ${e.step})`,
    `created   ${iso(e.createdAt)}`,
    `updated   ${iso(e.updatedAt)}`,
    `host      ${e.owner ?? '-'}`,
    `deadline  ${iso(e.deadlineAt)}${e.deadlineAt && e.status === 'running' ? ` (${Math.round((e.deadlineAt - now) / 1000)} s left)` : ''}`,
  ];
  const sup = (e.supervisor as { context?: SupervisorContext } | undefined)?.context;
  if (sup) {
    const of = (used: string, max: number | null, unit = '') => `${used}${unit} of ${max === null ? 'no limit' : `${max}${unit}`}`;
    lines.push(
      `budget    ${of(`$${sup.used.usd.toFixed(6)}`, sup.limits.usd === null ? null : Number(sup.limits.usd.toFixed(6)))} · ${of(String(sup.used.tokens), sup.limits.tokens)} tokens · ${of(String(sup.used.steps), sup.limits.steps)} steps · wall clock ${sup.limits.wallClock} ms · no-progress window ${sup.limits.noProgress}`,
    );
  }
  if (e.parent) lines.push(`parent    ${e.parent.taskId} (delegated by call ${e.parent.key})`);
  if (e.children) lines.push(`children  ${Object.entries(e.children).map(([id, c]) => `${id} (${c.agent})`).join(', ')}`);
  if (e.status === 'parked' && e.waiting?.reason === 'children') lines.push(`waiting   for child tasks (${e.waiting.join}): ${e.waiting.children.join(', ')}`);
  if (e.status === 'parked' && e.waiting?.reason === 'inbox') lines.push(`waiting   for an event on its inbox (troupe send ${e.taskId} '{"type":...}')${e.waiting.wakeAt ? `, or until ${iso(e.waiting.wakeAt)}` : ''}`);
  if (e.status === 'parked' && e.pending) lines.push(`waiting   for an approver: ${e.pending.requestId}: ${e.pending.reason} (troupe approve ${e.pending.requestId} --approve)`);
  if (e.usage) lines.push(`usage     ${e.usage.modelCalls} model calls, ${e.usage.toolCalls} tool calls, ${e.usage.inputTokens} input + ${e.usage.outputTokens} output tokens, $${e.usage.costUsd.toFixed(6)}`);
  if (e.outcome?.status === 'done') lines.push(`output    ${typeof e.outcome.output === 'string' ? e.outcome.output : JSON.stringify(e.outcome.output)}`);
  if (e.outcome?.status === 'failed') lines.push(`error     ${e.outcome.error.code}: ${e.outcome.error.message}`);
  return lines.join('\n');
}

export const statusCommand: Command = {
  summary: 'show where a task stands (from its durable snapshot)',
  usage: 'troupe status <taskId> [--json]',
  options: { json: { type: 'boolean' } },
  async run({ values, positionals }) {
    const [taskId] = positionals;
    if (!taskId) throw new TerminalError(ErrorCode.invalidTaskId, 'name the task: troupe status <taskId>');
    const loaded = await configFor(values);
    const nc = await connectClient(loaded, 'troupe-status', 'observers');
    try {
      const store = await openSnapshots(nc, loaded.config.prefix);
      const found = await store.get(taskId);
      if (!found) throw new TerminalError(ErrorCode.notFound, `no task "${taskId}" (tasks are listed by \`troupe tasks\`)`);
      const { snapshot: _snapshot, ...envelope } = found.value;
      const history: TaskEvent[] = await taskHistory(jetstream(nc), makeSubjects(loaded.config.prefix), taskId).catch(() => []);
      const calls = history.filter((e): e is Extract<TaskEvent, { type: 'model' | 'tool' }> => e.type === 'model' || e.type === 'tool');
      if (values.json) {
        process.stdout.write(`${JSON.stringify({ ...envelope, revision: found.revision, calls })}\n`);
        return 0;
      }
      process.stdout.write(`${describeTask(found.value)}\n`);
      if (calls.length) {
        process.stdout.write('calls\n');
        for (const c of calls) process.stdout.write(`  ${c.key.padEnd(Math.max(...calls.map((x) => x.key.length)))}  ${formatEvent(c)}\n`);
      }
      return 0;
    } finally {
      await nc.close();
    }
  },
};

export const tasksCommand: Command = {
  summary: 'list tasks, most recently updated first',
  usage: 'troupe tasks [--limit N] [--json]',
  options: { json: { type: 'boolean' }, limit: { type: 'string' } },
  async run({ values }) {
    const loaded = await configFor(values);
    const nc = await connectClient(loaded, 'troupe-tasks', 'observers');
    try {
      const store = await openSnapshots(nc, loaded.config.prefix);
      const limit = Number(values.limit ?? 50);
      if (!Number.isInteger(limit) || limit < 1) throw new TerminalError(ErrorCode.invalidInput, `--limit must be a whole number of at least 1 (got ${JSON.stringify(values.limit)})`);
      const envelopes: SnapshotEnvelope[] = [];
      for (const key of await store.keys()) {
        const found = await store.get(key).catch(() => undefined);
        if (found) envelopes.push(found.value);
      }
      envelopes.sort((a, b) => b.updatedAt - a.updatedAt);
      const shown = envelopes.slice(0, limit);
      if (values.json) {
        for (const { snapshot: _s, ...e } of shown) process.stdout.write(`${JSON.stringify(e)}\n`);
        return 0;
      }
      if (shown.length === 0) {
        process.stdout.write('no tasks yet\n');
        return 0;
      }
      const rows = shown.map((e) => [e.taskId, e.agent, e.status, `${e.state}`, String(e.step), `$${(e.usage?.costUsd ?? 0).toFixed(4)}`, new Date(e.updatedAt).toISOString()]);
      const head = ['TASK', 'AGENT', 'STATUS', 'STATE', 'STEP', 'COST', 'UPDATED'];
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      for (const r of [head, ...rows]) process.stdout.write(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}\n`);
      if (envelopes.length > limit) process.stdout.write(`(${envelopes.length - limit} more; --limit N)\n`);
      return 0;
    } finally {
      await nc.close();
    }
  },
};
