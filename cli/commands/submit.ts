import { jetstream } from '@nats-io/jetstream';
import { createInbox, headers, type NatsConnection } from '@nats-io/nats-core';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { Headers, subjects as makeSubjects, type Subjects } from '../../runtime/subjects.ts';
import { watchTask } from '../../runtime/task-watch.ts';
import { taskVerdictSchema, type TaskEvent, type TaskVerdict } from '../../runtime/wire.ts';
import { connectClient } from '../connect.ts';
import type { Command } from '../main.ts';
import { formatEvent } from '../print-events.ts';
import { configFor } from './options.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What a submission came to. */
export interface SubmitResult {
  verdict: TaskVerdict;
  events: TaskEvent[];
}

/**
 * Publishes a task exactly as any NATS client may (JetStream publish to `troupe.tasks.<agent>`,
 * `Nats-Msg-Id` = taskId, `Troupe-Reply-To` for the verdict), then optionally follows its events.
 */
export async function submitTask(
  nc: NatsConnection,
  s: Subjects,
  agent: string,
  task: { taskId?: string; input: unknown },
  options: { wait: boolean; timeoutMs: number; onEvent?: (e: TaskEvent) => void },
): Promise<SubmitResult> {
  const js = jetstream(nc);
  const inbox = createInbox();
  const sub = nc.subscribe(inbox, { max: 1, timeout: 15_000 });
  const h = headers();
  h.set(Headers.replyTo, inbox);
  let duplicate = false;
  try {
    const ack = await js.publish(s.task(agent), encoder.encode(JSON.stringify(task)), { headers: h, ...(task.taskId ? { msgID: task.taskId } : {}) });
    duplicate = ack.duplicate;
  } catch (cause) {
    sub.unsubscribe();
    throw new TerminalError(ErrorCode.notFound, `could not queue the task on ${s.task(agent)}: ${(cause as Error).message}. Has a troupe host ever run against this NATS (it creates the streams)?`, { cause });
  }
  let verdict: TaskVerdict | undefined;
  if (duplicate && task.taskId) {
    // JetStream dropped the repeat (same Nats-Msg-Id within its window): no host will answer it.
    sub.unsubscribe();
    verdict = { taskId: task.taskId, status: 'accepted', duplicate: true };
  } else {
    try {
      for await (const m of sub) verdict = taskVerdictSchema.parse(JSON.parse(decoder.decode(m.data)));
    } catch {
      throw new TerminalError(ErrorCode.timeout, 'the task is queued durably, but no host answered within 15 s: is a troupe host running?');
    }
  }
  if (!verdict) throw new TerminalError(ErrorCode.timeout, 'no verdict from any host');
  const events: TaskEvent[] = [];
  if (!options.wait || 'error' in verdict) return { verdict, events };
  for await (const e of watchTask(js, s, verdict.taskId, { timeoutMs: options.timeoutMs })) {
    events.push(e);
    options.onEvent?.(e);
  }
  return { verdict, events };
}

export const submitCommand: Command = {
  summary: 'publish a task and (with --wait) stream its events; exit 0 if it finishes, 1 if not',
  usage: "troupe submit <agent> --input '<json>' [--task-id ID] [--wait] [--timeout ms] [--json]",
  options: {
    input: { type: 'string' },
    'task-id': { type: 'string' },
    wait: { type: 'boolean' },
    timeout: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run({ values, positionals }) {
    const [agent] = positionals;
    if (!agent) throw new TerminalError(ErrorCode.invalidTask, 'name the agent: troupe submit <agent> --input \'{"...": ...}\'');
    let input: unknown;
    try {
      input = JSON.parse(typeof values.input === 'string' ? values.input : 'null');
    } catch (err) {
      throw new TerminalError(ErrorCode.invalidJson, `--input is not valid JSON: ${(err as Error).message}`);
    }
    if (values.input === undefined) throw new TerminalError(ErrorCode.invalidInput, "--input '<json>' is required (see `troupe agents` for each agent's input)");
    const loaded = await configFor(values);
    const nc = await connectClient(loaded, 'troupe-submit', 'submitters');
    const json = values.json === true;
    try {
      const taskId = typeof values['task-id'] === 'string' ? values['task-id'] : undefined;
      const result = await submitTask(nc, makeSubjects(loaded.config.prefix), agent, { ...(taskId ? { taskId } : {}), input }, {
        wait: values.wait === true,
        timeoutMs: Number(values.timeout ?? 600_000),
        onEvent: (e) => {
          if (json) process.stdout.write(`${JSON.stringify(e)}\n`);
          else {
            const line = formatEvent(e);
            if (line) process.stderr.write(`  ${line}\n`);
          }
        },
      });
      const v = result.verdict;
      if ('error' in v) {
        if (json) process.stdout.write(`${JSON.stringify(v)}\n`);
        else process.stderr.write(`rejected: ${v.error.code}: ${v.error.message}\n`);
        return 1;
      }
      if (!json) process.stderr.write(`task ${v.taskId} ${v.duplicate ? 'was already submitted (duplicate: not run again)' : 'accepted'}\n`);
      if (values.wait !== true) {
        if (json) process.stdout.write(`${JSON.stringify(v)}\n`);
        else process.stdout.write(`${v.taskId}\n`);
        return 0;
      }
      const last = result.events.at(-1);
      if (last?.type === 'done') {
        if (!json) process.stdout.write(`${typeof last.output === 'string' ? last.output : JSON.stringify(last.output, null, 2)}\n`);
        return 0;
      }
      return 1;
    } finally {
      await nc.close();
    }
  },
};
