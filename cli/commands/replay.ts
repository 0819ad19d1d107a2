import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { z } from 'zod';
import { describeEntry, replayTask, type ReplayReport } from '../../actors/replay.ts';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { JsonKv } from '../../runtime/json-kv.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { taskHistory } from '../../runtime/task-watch.ts';
import { ledgerRecordSchema, snapshotEnvelopeSchema } from '../../runtime/wire.ts';
import { openBucket } from '../buckets.ts';
import { connectClient } from '../connect.ts';
import { loadAgents } from '../load-agents.ts';
import type { Command } from '../main.ts';
import { configFor } from './options.ts';

/** Opens a bucket for reading, or says clearly why it cannot be. */
function openReadable<T>(nc: NatsConnection, bucket: string, schema: z.ZodType<T>, what: string): Promise<JsonKv<T>> {
  return openBucket(nc, bucket, schema, (cause) => `cannot read ${what} (bucket ${bucket}): ${cause.message}. Has a troupe host run on this NATS, and may this user read the bucket? (NATS_USER / NATS_CREDS select another user)`);
}

/** The report as text: the replayed trajectory, then whether it followed the recording. */
export function renderReplay(report: ReplayReport): string {
  const lines = [`replay of task ${report.taskId} (agent ${report.agent})`];
  const shown = report.divergence ? report.replayed.slice(0, report.divergence.at) : report.replayed;
  const width = String(Math.max(shown.length, 1)).length;
  shown.forEach((entry, i) => lines.push(`  ${String(i + 1).padStart(width)}  ${describeEntry(entry)}`));
  const d = report.divergence;
  if (d) {
    lines.push('', `diverged at #${d.at + 1}:`);
    lines.push(`  expected  ${d.expected ? describeEntry(d.expected) : '(the recording ends here)'}`);
    lines.push(`  got       ${d.actual ? describeEntry(d.actual) : '(the replay ends here)'}`);
    lines.push(`  ${d.message}`);
    return lines.join('\n');
  }
  const outcome = report.outcome ? `, outcome ${report.outcome.status}` : '';
  lines.push('', `same trajectory: ${report.steps} entries${outcome}`);
  if (!report.complete) {
    const recorded = report.recordedOutcome ? `the task ${report.recordedOutcome.status === 'failed' ? `failed with ${report.recordedOutcome.error.code}` : 'ended'} outside its machine` : 'the task has not ended';
    lines.push(`  the recording stops early (${recorded})${report.stoppedAt ? `; the replay stopped there: ${report.stoppedAt.message}` : ''}`);
  }
  return lines.join('\n');
}

export const replayCommand: Command = {
  summary: 're-run a task offline from its recorded effects and check it follows the same trajectory',
  usage: 'troupe replay <taskId> [--json]',
  options: { json: { type: 'boolean' } },
  async run({ values, positionals }) {
    const [taskId] = positionals;
    if (!taskId) throw new TerminalError(ErrorCode.invalidTaskId, 'name the task: troupe replay <taskId>');
    const loaded = await configFor(values);
    const agents = await loadAgents(loaded.agentModules);
    const nc = await connectClient(loaded, 'troupe-replay', 'observers');
    try {
      const s = makeSubjects(loaded.config.prefix);
      const store = await openReadable(nc, s.buckets.snapshots, snapshotEnvelopeSchema, 'the task store');
      const found = await store.get(taskId);
      if (!found) throw new TerminalError(ErrorCode.notFound, `no task "${taskId}" (tasks are listed by \`troupe tasks\`)`);
      const envelope = found.value;
      const agent = agents.find((a) => a.name === envelope.agent);
      if (!agent) {
        throw new TerminalError(ErrorCode.unknownAgent, `task ${taskId} ran agent "${envelope.agent}", which this config does not load (agents: ${agents.map((a) => a.name).join(', ') || 'none'})`);
      }
      const ledger = await openReadable(nc, s.buckets.ledger, ledgerRecordSchema, 'the effect ledger');
      const report = await replayTask({
        agent,
        envelope,
        events: await taskHistory(jetstream(nc), s, taskId),
        ledger: async (key) => (await ledger.get(key))?.value,
        task: async (id) => (await store.get(id))?.value,
        agents: new Map(agents.map((a) => [a.name, a])),
        principals: loaded.config.principals,
      });
      for (const warning of report.warnings) process.stderr.write(`troupe replay: warning: ${warning}\n`);
      process.stdout.write(values.json ? `${JSON.stringify(report)}\n` : `${renderReplay(report)}\n`);
      return report.same ? 0 : 1;
    } finally {
      await nc.close();
    }
  },
};
