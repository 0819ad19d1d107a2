import { jetstream } from '@nats-io/jetstream';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import type { JsonKv } from '../../runtime/json-kv.ts';
import { subjects as makeSubjects, type Subjects } from '../../runtime/subjects.ts';
import { taskHistory } from '../../runtime/task-watch.ts';
import type { SnapshotEnvelope, TaskEvent } from '../../runtime/wire.ts';
import type { JetStreamClient } from '@nats-io/jetstream';
import { connectClient } from '../connect.ts';
import type { Command } from '../main.ts';
import { formatEvent } from '../print-events.ts';
import { configFor } from './options.ts';
import { openSnapshots } from './status.ts';

/** One task of a trace, with its timeline and the tasks it delegated to. */
export interface TraceNode {
  taskId: string;
  agent: string;
  status: SnapshotEnvelope['status'];
  events: TaskEvent[];
  children: TraceNode[];
}

/** Reads a task's timeline and, recursively, its children's (depth-first, in the order they were started). */
export async function traceOf(js: JetStreamClient, s: Subjects, store: JsonKv<SnapshotEnvelope>, taskId: string, depth = 0): Promise<TraceNode | undefined> {
  const found = await store.get(taskId);
  if (!found) return undefined;
  const env = found.value;
  const events = await taskHistory(js, s, taskId);
  const children: TraceNode[] = [];
  if (depth < 8) {
    for (const id of Object.keys(env.children ?? {})) {
      const child = await traceOf(js, s, store, id, depth + 1);
      if (child) children.push(child);
    }
  }
  return { taskId, agent: env.agent, status: env.status, events, children };
}

/** The timeline as text: one line per event, times relative to the task's first event, children indented under it. */
export function renderTrace(node: TraceNode, indent = ''): string {
  const start = node.events[0]?.at ?? 0;
  const end = node.events.at(-1)?.at ?? start;
  const money = node.events.filter((e) => e.type === 'model').reduce((sum, e) => sum + (e.type === 'model' && !e.replayed ? e.costUsd : 0), 0);
  const lines = [`${indent}task ${node.taskId} (agent ${node.agent}) — ${node.status}, ${((end - start) / 1000).toFixed(3)} s, $${money.toFixed(6)} on its own model calls`];
  for (const e of node.events) {
    const text = formatEvent(e);
    if (text === undefined) continue;
    lines.push(`${indent}  +${((e.at - start) / 1000).toFixed(3).padStart(8)}s  ${text}`);
  }
  for (const child of node.children) lines.push('', renderTrace(child, `${indent}    `));
  return lines.join('\n');
}

export const traceCommand: Command = {
  summary: 'a task\'s timeline: states, model and tool calls, gates, approvals, limits, and its child tasks',
  usage: 'troupe trace <taskId> [--json]',
  options: { json: { type: 'boolean' } },
  async run({ values, positionals }) {
    const [taskId] = positionals;
    if (!taskId) throw new TerminalError(ErrorCode.invalidTaskId, 'name the task: troupe trace <taskId>');
    const loaded = await configFor(values);
    const nc = await connectClient(loaded, 'troupe-trace', 'observers');
    try {
      const s = makeSubjects(loaded.config.prefix);
      const store = await openSnapshots(nc, loaded.config.prefix);
      const trace = await traceOf(jetstream(nc), s, store, taskId);
      if (!trace) throw new TerminalError(ErrorCode.notFound, `no task "${taskId}" (tasks are listed by \`troupe tasks\`)`);
      process.stdout.write(values.json ? `${JSON.stringify(trace)}\n` : `${renderTrace(trace)}\n`);
      return 0;
    } finally {
      await nc.close();
    }
  },
};
