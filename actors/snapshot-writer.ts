import type { Logger } from 'pino';
import type { Clock } from '../common/clock.ts';
import { isOverMaxPayload } from '../runtime/connection.ts';
import { RevisionConflictError, type JsonKv } from '../runtime/json-kv.ts';
import type { SnapshotEnvelope } from '../runtime/wire.ts';

/** Options of a {@link SnapshotWriter}. */
export interface SnapshotWriterOptions {
  store: JsonKv<SnapshotEnvelope>;
  taskId: string;
  /** Revision of the envelope as last read or written. */
  revision: number;
  /** The envelope as last written. */
  written: SnapshotEnvelope;
  /** Builds the envelope to write now (the task's current state). */
  build: () => SnapshotEnvelope;
  /**
   * A number that moves whenever the state does. A flush finding the state already written (or
   * being written) waits for that write instead of writing the same state again.
   */
  version: () => number;
  /** Another writer advanced the task: the writer has stopped for good. */
  onConflict: () => void;
  /**
   * The server refused the state as larger than its max_payload: writing it again cannot work.
   * The runner makes the next state smaller (it ends the task without its machine snapshot); the
   * writer goes on writing.
   */
  onTooLarge: (bytes: number) => void;
  /** Told how long each successful write took (metrics). */
  onWritten?: ((ms: number) => void) | undefined;
  clock: Clock;
  logger: Logger;
}

/**
 * One task's single writer: writes the task's envelope compare-and-set on the revision it last
 * wrote, one write at a time, always the latest state. Transient failures are retried with
 * backoff; a conflict stops it for good, since someone else advanced the task and this writer
 * must never overwrite that.
 *
 * Writes are few: a {@link request} waits for the end of the current turn of the event loop, so
 * the changes of one step (a settled budget, a transition, the next effect's intent) go out as
 * one write; a {@link flush} writes at once, and only what was not written yet.
 */
export class SnapshotWriter {
  private requested = 0;
  private done = 0;
  /** The write loop, while it runs (it may also finish without awaiting anything). */
  private loop: Promise<void> | undefined;
  private running = false;
  private waiters: Array<{ seq: number; resolve: () => void; reject: (err: Error) => void }> = [];
  private stopped: Error | undefined;
  private paused = false;
  private scheduled: NodeJS.Immediate | undefined;
  private revisionNow: number;
  /** The state version of the last successful write. */
  private writtenVersion: number;
  private writtenNow: SnapshotEnvelope;

  constructor(private readonly o: SnapshotWriterOptions) {
    this.revisionNow = o.revision;
    this.writtenNow = o.written;
    this.writtenVersion = o.version();
  }

  get revision(): number {
    return this.revisionNow;
  }

  /** The envelope as last written. */
  get written(): SnapshotEnvelope {
    return this.writtenNow;
  }

  /** Asks for the current state to be written soon: after this turn of the event loop, with whatever else changed in it. */
  request(): void {
    if (this.stopped) return;
    this.requested++;
    this.scheduled ??= setImmediate(() => {
      this.scheduled = undefined;
      this.start();
    });
  }

  /** Resolves once the state at the time of the call is durable; rejects if the writer stops first. */
  flush(): Promise<void> {
    if (this.stopped) return Promise.reject(this.stopped);
    this.requested++;
    this.start();
    const target = this.requested;
    if (this.done >= target) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ seq: target, resolve, reject }));
  }

  /**
   * Holds new writes until {@link resume} (the state is not fit to persist, e.g. an actor that
   * threw); resolves once any write in progress has finished.
   */
  async pause(): Promise<void> {
    this.paused = true;
    await this.loop;
  }

  resume(): void {
    this.paused = false;
    this.start();
  }

  /** Stops for good; pending flushes reject with `reason`. */
  stop(reason: Error): void {
    this.stopped ??= reason;
    clearImmediate(this.scheduled);
    this.scheduled = undefined;
    for (const w of this.waiters.splice(0)) w.reject(reason);
  }

  private start(): void {
    if (this.running || this.paused || this.stopped || this.done >= this.requested) return;
    this.running = true;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    let backoff = 100;
    while (this.done < this.requested && !this.stopped && !this.paused) {
      const seq = this.requested;
      const version = this.o.version();
      if (version === this.writtenVersion) {
        // Everything asked for is in the write that just finished.
        this.settle(seq);
        continue;
      }
      const next = this.o.build();
      try {
        const started = this.o.clock.now();
        this.revisionNow = await this.o.store.update(this.o.taskId, next, this.revisionNow);
        this.o.onWritten?.(this.o.clock.now() - started);
        this.writtenNow = next;
        this.writtenVersion = version;
        this.settle(seq);
        backoff = 100;
      } catch (err) {
        if (err instanceof RevisionConflictError) {
          this.o.logger.warn('another host advanced this task; stopping here without writing');
          this.stop(err);
          this.o.onConflict();
          break;
        }
        if (isOverMaxPayload(err)) {
          const bytes = Buffer.byteLength(JSON.stringify(next));
          this.o.logger.error({ bytes }, 'the task state is larger than the server accepts in a message');
          this.o.onTooLarge(bytes);
          continue;
        }
        this.o.logger.warn({ err }, 'snapshot write failed; retrying');
        await this.o.clock.sleep(backoff);
        backoff = Math.min(backoff * 2, 2000);
      }
    }
    this.running = false;
  }

  /** Requests up to `seq` are durable. */
  private settle(seq: number): void {
    this.done = seq;
    const ready = this.waiters.filter((w) => w.seq <= seq);
    this.waiters = this.waiters.filter((w) => w.seq > seq);
    for (const w of ready) w.resolve();
  }
}
