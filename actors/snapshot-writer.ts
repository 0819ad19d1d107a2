import type { Logger } from 'pino';
import type { Clock } from '../common/clock.ts';
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
  /** Another writer advanced the task: the writer has stopped for good. */
  onConflict: () => void;
  /** Told how long each successful write took (metrics). */
  onWritten?: ((ms: number) => void) | undefined;
  clock: Clock;
  logger: Logger;
}

/**
 * One task's single writer: writes the task's envelope compare-and-set on the revision it last
 * wrote, one write at a time, always the latest state (requests made during a write coalesce
 * into the next one). Transient failures are retried with backoff; a conflict stops it for
 * good, since someone else advanced the task and this writer must never overwrite that.
 */
export class SnapshotWriter {
  private requested = 0;
  private done = 0;
  private loop: Promise<void> | undefined;
  private waiters: Array<{ seq: number; resolve: () => void; reject: (err: Error) => void }> = [];
  private stopped: Error | undefined;
  private paused = false;
  private revisionNow: number;
  private writtenNow: SnapshotEnvelope;

  constructor(private readonly o: SnapshotWriterOptions) {
    this.revisionNow = o.revision;
    this.writtenNow = o.written;
  }

  get revision(): number {
    return this.revisionNow;
  }

  /** The envelope as last written. */
  get written(): SnapshotEnvelope {
    return this.writtenNow;
  }

  /** Asks for the current state to be written (soon, coalesced with other requests). */
  request(): void {
    if (this.stopped) return;
    this.requested++;
    if (!this.paused) this.loop ??= this.run();
  }

  /** Resolves once the state at the time of the call is durable; rejects if the writer stops first. */
  flush(): Promise<void> {
    this.request();
    if (this.stopped) return Promise.reject(this.stopped);
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
    if (this.done < this.requested) this.loop ??= this.run();
  }

  /** Stops for good; pending flushes reject with `reason`. */
  stop(reason: Error): void {
    this.stopped ??= reason;
    for (const w of this.waiters.splice(0)) w.reject(reason);
  }

  private async run(): Promise<void> {
    let backoff = 100;
    while (this.done < this.requested && !this.stopped && !this.paused) {
      const seq = this.requested;
      const next = this.o.build();
      try {
        const started = this.o.clock.now();
        this.revisionNow = await this.o.store.update(this.o.taskId, next, this.revisionNow);
        this.o.onWritten?.(this.o.clock.now() - started);
        this.writtenNow = next;
        this.done = seq;
        backoff = 100;
        const ready = this.waiters.filter((w) => w.seq <= seq);
        this.waiters = this.waiters.filter((w) => w.seq > seq);
        for (const w of ready) w.resolve();
      } catch (err) {
        if (err instanceof RevisionConflictError) {
          this.o.logger.warn('another host advanced this task; stopping here without writing');
          this.stop(err);
          this.o.onConflict();
          break;
        }
        this.o.logger.warn({ err }, 'snapshot write failed; retrying');
        await this.o.clock.sleep(backoff);
        backoff = Math.min(backoff * 2, 2000);
      }
    }
    this.loop = undefined;
  }
}
