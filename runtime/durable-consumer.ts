import { JetStreamApiError, type ConsumerConfig, type ConsumerMessages, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import { errors } from '@nats-io/nats-core';
import type { Logger } from 'pino';

/** JetStream's "consumer not found". */
const CONSUMER_NOT_FOUND = 10014;

/** A running {@link consumeDurable}; `stop()` ends it after the messages in hand are handled. */
export interface DurableConsumption {
  stop(): Promise<void>;
}

/**
 * Handles every message of a durable consumer shared by all hosts (each message goes to one
 * host): a message is acknowledged when `handle` resolves and redelivered a second later when it
 * throws, so a handler never loses one by failing. Messages are handled concurrently, or one at a
 * time with `sequential`.
 *
 * It survives the server: after a reconnect (a restarted server, another cluster node) it pulls
 * again, and a consumer that is gone (deleted, or lost with a server's store) is created again
 * with the configuration it had and consumed anew, so the messages still in the stream are not
 * stranded.
 *
 * @throws if the consumer does not exist when it starts (`ensureTopology` creates it).
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
  const { config } = await (await js.consumers.get(stream, consumer)).info(true);
  const handling = new Set<Promise<void>>();
  let stopped = false;
  let current: ConsumerMessages | undefined;
  let wake: (() => void) | undefined;
  const pause = (ms: number) => new Promise<void>((resolve) => {
    wake = resolve;
    setTimeout(resolve, ms);
  });

  /** Consumes until the messages end; true if they ended because the consumer is gone. */
  const consumeOnce = async (messages: ConsumerMessages): Promise<boolean> => {
    // The client keeps pulling across reconnects by itself, but not from a consumer that is gone.
    let gone = false;
    void (async () => {
      for await (const s of messages.status()) {
        if (s.type === 'consumer_deleted' || s.type === 'consumer_not_found') {
          gone = true;
          messages.stop();
          return;
        }
      }
    })().catch(() => {});
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
    return gone;
  };

  const loop = (async () => {
    while (!stopped) {
      try {
        current = await (await js.consumers.get(stream, consumer)).consume({ max_messages: 64 });
        if (stopped) current.stop();
        if (stopped || !(await consumeOnce(current))) continue;
      } catch (err) {
        if (stopped || err instanceof errors.ClosedConnectionError) break;
        logger.debug({ err, stream, consumer }, `the ${what} consumer cannot be read`);
      }
      // Gone (or unreadable): create it again with its old configuration, then consume anew.
      try {
        const jsm = await js.jetstreamManager();
        const exists = await jsm.consumers.info(stream, consumer).then(
          () => true,
          (err: unknown) => (err instanceof JetStreamApiError && err.code === CONSUMER_NOT_FOUND ? false : Promise.reject(err)),
        );
        if (!exists) {
          await jsm.consumers.add(stream, config as ConsumerConfig);
          logger.warn({ stream, consumer }, `the ${what} consumer was gone; created it again`);
        }
      } catch (err) {
        if (err instanceof errors.ClosedConnectionError) break;
        logger.warn({ err, stream, consumer }, `the ${what} consumer is gone and cannot be created again yet; retrying`);
        await pause(1000);
      }
    }
    await Promise.allSettled([...handling]);
  })();
  return {
    async stop() {
      stopped = true;
      current?.stop();
      wake?.();
      await loop;
    },
  };
}
