import { jetstream } from '@nats-io/jetstream';
import { cancelTask } from '../../actors/delegation.ts';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { watchTask } from '../../runtime/task-watch.ts';
import { connectClient } from '../connect.ts';
import type { Command } from '../main.ts';
import { configFor } from './options.ts';

export const cancelCommand: Command = {
  summary: 'cancel a task and every task it delegated to',
  usage: 'troupe cancel <taskId> [--reason text] [--timeout-ms 30000]',
  options: { reason: { type: 'string' }, 'timeout-ms': { type: 'string' } },
  async run({ values, positionals }) {
    const [taskId] = positionals;
    if (!taskId) throw new TerminalError(ErrorCode.invalidTaskId, 'name the task: troupe cancel <taskId>');
    const loaded = await configFor(values);
    const s = makeSubjects(loaded.config.prefix);
    const nc = await connectClient(loaded, 'troupe-cancel', 'submitters');
    try {
      const js = jetstream(nc);
      const reason = typeof values.reason === 'string' ? values.reason : 'cancelled from the command line';
      const timeoutMs = Number(values['timeout-ms'] ?? 30_000);
      // Watch first, so the end cannot slip past between the request and the watch.
      const ended = (async () => {
        for await (const e of watchTask(js, s, taskId, { timeoutMs })) {
          if (e.type === 'done' || e.type === 'failed') return e;
        }
        return undefined;
      })();
      await cancelTask(js, s, { taskId, reason });
      const end = await ended.catch(() => undefined);
      if (!end) {
        process.stderr.write(`asked to cancel ${taskId}, but it has not ended within ${timeoutMs} ms (does it exist? is a host running?)\n`);
        return 1;
      }
      if (end.type === 'failed' && end.error.code === ErrorCode.cancelled) process.stdout.write(`cancelled: ${taskId} (${end.error.message})\n`);
      else process.stdout.write(`${taskId} had already ended: ${end.type === 'done' ? 'done' : `${end.error.code}: ${end.error.message}`}\n`);
      return 0;
    } finally {
      await nc.close();
    }
  },
};
