import { jetstream } from '@nats-io/jetstream';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { formatIssues } from '../../config/load.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { inboxMessageSchema } from '../../runtime/wire.ts';
import { connectClient } from '../connect.ts';
import type { Command } from '../main.ts';
import { configFor } from './options.ts';

export const sendCommand: Command = {
  summary: "deliver an event to a task's inbox (wakes it if it waits for one)",
  usage: 'troupe send <taskId> \'{"type":"reply","data":{...}}\' [--id unique-id]',
  options: { id: { type: 'string' } },
  async run({ values, positionals }) {
    const [taskId, json] = positionals;
    if (!taskId || !json) throw new TerminalError(ErrorCode.invalidInput, 'name the task and the event: troupe send <taskId> \'{"type":"reply","data":{"text":"yes"}}\'');
    let event: unknown;
    try {
      event = JSON.parse(json);
    } catch (err) {
      throw new TerminalError(ErrorCode.invalidJson, `the event is not JSON (${(err as Error).message}); send {"type": "...", "data": ...}`);
    }
    const parsed = inboxMessageSchema.safeParse(event);
    if (!parsed.success) throw new TerminalError(ErrorCode.invalidInput, `the event does not match {"type": string, "data"?: ...}:\n${formatIssues(parsed.error)}`);
    const loaded = await configFor(values);
    const nc = await connectClient(loaded, 'troupe-send', 'submitters');
    try {
      const s = makeSubjects(loaded.config.prefix);
      const ack = await jetstream(nc).publish(s.inbox(taskId), JSON.stringify(parsed.data), typeof values.id === 'string' ? { msgID: values.id } : {});
      process.stdout.write(ack.duplicate ? `already delivered (id ${values.id}): not sent again\n` : `delivered to ${taskId}'s inbox as event #${ack.seq}\n`);
      return 0;
    } finally {
      await nc.close();
    }
  },
};
