import { JetStreamApiError, type Consumer, type ConsumerConfig, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';

/** JetStream's "consumer not found". */
const CONSUMER_NOT_FOUND = 10014;
/** Most messages asked for per pull. */
const PULL_BATCH = 32;
/** Lifetime of a pull request; also the longest `stopIntake` waits. */
export const PULL_EXPIRES_MS = 1000;

/** Options of a {@link TaskQueue}. */
export interface TaskQueueOptions {
  stream: string;
  consumer: string;
  /** Most messages held at once by this process. */
  concurrency: number;
  /** The consumer's ack wait; held messages are renewed every third of it. */
  leaseMs: number;
  logger: Logger;
}

/**
 * Pulls task messages from the hosts' work-queue consumer and *holds* each one while its task
 * runs here: holding a message is how a host owns a task. The queue renews every held message
 * (`+WPI`) so JetStream does not redeliver it; if this process dies, renewals stop and, after the
 * ack wait, JetStream hands the message (and so the task) to another host.
 */
export class TaskQueue {
  private readonly held = new Set<JsMsg>();
  private consumer: Consumer | undefined;
  /** The consumer's configuration, to create it again should it be lost. */
  private config: ConsumerConfig | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private wakeCapacity: (() => void) | undefined;

  constructor(
    private readonly js: JetStreamClient,
    private readonly options: TaskQueueOptions,
  ) {}

  /** Starts pulling; `onMessage` is called once per delivered message, which is then held. */
  async start(onMessage: (msg: JsMsg) => void): Promise<void> {
    if (this.running) return;
    this.consumer = await this.js.consumers.get(this.options.stream, this.options.consumer);
    this.config = (await this.consumer.info(true)).config as ConsumerConfig;
    this.running = true;
    this.heartbeat = setInterval(() => {
      for (const msg of this.held) msg.working();
    }, Math.max(200, Math.floor(this.options.leaseMs / 3)));
    this.heartbeat.unref();
    this.loop = this.pull(onMessage);
  }

  get heldCount(): number {
    return this.held.size;
  }

  /** Acknowledges a held message: the task it carried is finished or handed over. */
  async ack(msg: JsMsg): Promise<void> {
    this.held.delete(msg);
    this.wakeCapacity?.();
    await msg.ackAck().catch((err: unknown) => this.options.logger.warn({ err }, 'ack failed; the message will be redelivered'));
  }

  /** Gives a held message back for immediate redelivery (to this or another host). */
  nak(msg: JsMsg): void {
    this.held.delete(msg);
    this.wakeCapacity?.();
    msg.nak();
  }

  /** Stops holding a message without answering; JetStream redelivers it after the ack wait. */
  forget(msg: JsMsg): void {
    this.held.delete(msg);
    this.wakeCapacity?.();
  }

  /**
   * Stops pulling new messages; resolves when the last pull request has expired (at most
   * {@link PULL_EXPIRES_MS}). Held messages stay held until acked, nak'ed or forgotten.
   */
  async stopIntake(): Promise<void> {
    this.running = false;
    this.wakeCapacity?.();
    await this.loop;
  }

  /** Stops intake and renewals. */
  async close(): Promise<void> {
    await this.stopIntake();
    if (this.heartbeat) clearInterval(this.heartbeat);
  }

  /**
   * A pull that failed may mean the consumer is gone (deleted, or lost with a server's store):
   * then it is created again as it was, and the tasks still in the work queue are delivered.
   */
  private async recreateIfGone(): Promise<void> {
    const { stream, consumer, logger } = this.options;
    try {
      const jsm = await this.js.jetstreamManager();
      const gone = await jsm.consumers.info(stream, consumer).then(
        () => false,
        (err: unknown) => (err instanceof JetStreamApiError && err.code === CONSUMER_NOT_FOUND ? true : Promise.reject(err)),
      );
      if (!gone) return;
      await jsm.consumers.add(stream, this.config!);
      logger.warn({ stream, consumer }, 'the hosts\' task consumer was gone; created it again');
    } catch (err) {
      logger.debug({ err }, 'could not check the task consumer; will try again');
    }
  }

  private async pull(onMessage: (msg: JsMsg) => void): Promise<void> {
    while (this.running) {
      const free = this.options.concurrency - this.held.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.wakeCapacity = resolve));
        this.wakeCapacity = undefined;
        continue;
      }
      try {
        // Small batches spread tasks over hosts; a pull is never cut short, because the server
        // would still deliver into it and the message would wait a whole ack wait to return.
        const batch = await this.consumer!.fetch({ max_messages: Math.min(free, PULL_BATCH), expires: PULL_EXPIRES_MS });
        for await (const msg of batch) {
          if (!this.running) {
            // Arrived after intake stopped: back to the queue, delayed past this pull's lifetime
            // so it goes to another host instead of bouncing into this same pull.
            msg.nak(PULL_EXPIRES_MS + 100);
            continue;
          }
          this.held.add(msg);
          onMessage(msg);
        }
      } catch (err) {
        if (!this.running) break;
        this.options.logger.warn({ err }, 'pulling tasks failed; retrying');
        await this.recreateIfGone();
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
}
