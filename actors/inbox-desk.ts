import type { JetStreamClient } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { consumeDurable, type DurableConsumption } from '../runtime/durable-consumer.ts';
import type { Subjects } from '../runtime/subjects.ts';
import type { TaskTree } from './task-tree.ts';

/**
 * Wakes a parked task when an event arrives on its inbox (every host runs one; each event is
 * looked at by one host). The event itself stays in the inbox stream, where the task's wait
 * reads it; a running task reads it at its next wait, an ended task never does.
 */
export class InboxDesk {
  private consumption: DurableConsumption | undefined;

  constructor(private readonly o: { js: JetStreamClient; subjects: Subjects; tree: TaskTree; logger: Logger }) {}

  async start(): Promise<void> {
    const prefix = `${this.o.subjects.prefix}.task.`;
    this.consumption = await consumeDurable(
      this.o.js,
      this.o.subjects.streams.inbox,
      this.o.subjects.inboxConsumer,
      async (m) => {
        const taskId = m.subject.slice(prefix.length, -'.inbox'.length);
        await this.o.tree.wakeIfDue(taskId);
      },
      this.o.logger,
      'inbox event',
    );
  }

  async close(): Promise<void> {
    await this.consumption?.stop();
  }
}
