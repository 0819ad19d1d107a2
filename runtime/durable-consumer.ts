import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';

/** A running {@link consumeDurable}; `stop()` ends it after the messages in hand are handled. */
export interface DurableConsumption {
  stop(): Promise<void>;
}

/**
 * Handles every message of a durable consumer shared by all hosts (each message goes to one
 * host): a message is acknowledged when `handle` resolves and redelivered a second later when it
 * throws, so a handler never loses one by failing. Messages are handled concurrently, or one at a
 * time with `sequential`.
 */
export async function consumeDurable(
  js: JetStreamClient,
  stream: string,
  consumer: string,
  handle: (m: JsMsg) => Promise<void>,
  logger: Logger,
  what: string,
  options: { sequential?: boolean } = {},
): Promise<DurableConsumption> {
  const messages = await (await js.consumers.get(stream, consumer)).consume({ max_messages: 64 });
  const handling = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const m of messages) {
      const p = handle(m).then(
        () => m.ack(),
        (err: unknown) => {
          logger.warn({ err, subject: m.subject }, `${what} not handled; it will be redelivered`);
          m.nak(1000);
        },
      );
      if (options.sequential) {
        await p;
        continue;
      }
      handling.add(p);
      void p.finally(() => handling.delete(p));
    }
    await Promise.allSettled([...handling]);
  })();
  return {
    async stop() {
      messages.stop();
      await loop;
    },
  };
}
