import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Clock } from '../common/clock.ts';
import { JsonKv, RevisionConflictError, type Versioned } from '../runtime/json-kv.ts';

/** When a breaker opens and for how long. */
export interface BreakerOptions {
  /** Failures within `windowMs` that open the breaker. @default 5 */
  failureThreshold: number;
  /** @default 30000 */
  windowMs: number;
  /** How long an open breaker fails fast before one probe is let through. @default 10000 */
  openMs: number;
  /** How long a probe may take before another host may probe instead. @default 30000 */
  probeTimeoutMs: number;
}

export const breakerRecordSchema = z.object({
  v: z.literal(1),
  state: z.enum(['closed', 'open', 'half_open']),
  /** Times of recent failures (within the window). */
  failures: z.array(z.number()),
  openedAt: z.number().nullable(),
  /** The host whose call is the half-open probe, and until when. */
  probe: z.object({ owner: z.string(), until: z.number() }).nullable(),
  updatedAt: z.number(),
});
export type BreakerRecord = z.infer<typeof breakerRecordSchema>;

/** What a caller may do now. */
export type Admission = { kind: 'call' } | { kind: 'probe' } | { kind: 'open'; retryAt: number; failures: number };

const closed = (now: number): BreakerRecord => ({ v: 1, state: 'closed', failures: [], openedAt: null, probe: null, updatedAt: now });

/**
 * Circuit breakers per tool and per model, shared by every host through a KV bucket. Each host
 * keeps a live copy by watching the bucket, so checking a breaker costs no round trip; only
 * failures and state changes are written (compare-and-set), never routine successes.
 *
 * closed --(failureThreshold failures in windowMs)--> open --(openMs)--> half_open (one probe)
 * half_open --probe succeeds--> closed; --probe fails--> open again.
 */
export class Breakers implements AsyncDisposable {
  private readonly store: JsonKv<BreakerRecord>;
  private readonly view = new Map<string, Versioned<BreakerRecord>>();
  private watcher: { stop(): void } | undefined;

  constructor(
    kv: KV,
    bucket: string,
    private readonly o: BreakerOptions & { owner: string; clock: Clock; logger: Logger },
  ) {
    this.store = new JsonKv(kv, bucket, breakerRecordSchema);
  }

  /** Starts following the shared state; resolves once the current state is loaded. */
  async start(): Promise<void> {
    const iterator = await this.store.kv.watch();
    this.watcher = iterator;
    let ready!: () => void;
    const loaded = new Promise<void>((r) => (ready = r));
    void (async () => {
      for await (const e of iterator) {
        if (e.operation === 'PUT') {
          const parsed = breakerRecordSchema.safeParse(e.json());
          if (parsed.success) this.view.set(e.key, { value: parsed.data, revision: e.revision });
        } else this.view.delete(e.key);
        if (e.delta === 0) ready();
      }
    })();
    // An empty bucket sends nothing to mark the end of the initial values.
    const status = await this.store.kv.status();
    if (status.values === 0) ready();
    await loaded;
  }

  /** Breaker states as this host sees them. */
  states(): Map<string, BreakerRecord> {
    return new Map([...this.view].map(([k, v]) => [k, v.value]));
  }

  /** May a call go through now? An expired open breaker lets exactly one probe through. */
  async admit(key: string): Promise<Admission> {
    const now = this.o.clock.now();
    const current = this.view.get(key);
    const r = current?.value;
    if (!r || r.state === 'closed') return { kind: 'call' };
    const probeDue = r.state === 'open' ? (r.openedAt ?? 0) + this.o.openMs <= now : (r.probe?.until ?? 0) <= now;
    if (!probeDue) return { kind: 'open', retryAt: r.state === 'open' ? (r.openedAt ?? now) + this.o.openMs : (r.probe?.until ?? now), failures: r.failures.length };
    try {
      const next: BreakerRecord = { ...r, state: 'half_open', probe: { owner: this.o.owner, until: now + this.o.probeTimeoutMs }, updatedAt: now };
      const revision = await this.store.update(key, next, current!.revision);
      this.view.set(key, { value: next, revision });
      this.o.logger.info({ breaker: key }, 'breaker half-open: probing');
      return { kind: 'probe' };
    } catch (err) {
      if (!(err instanceof RevisionConflictError)) throw err;
      return { kind: 'open', retryAt: now + Math.min(1000, this.o.openMs), failures: r.failures.length };
    }
  }

  /** A call (or probe) succeeded. Writes only if the breaker was not closed. */
  async succeeded(key: string): Promise<void> {
    const current = this.view.get(key);
    if (!current || current.value.state === 'closed') return;
    await this.change(key, () => closed(this.o.clock.now()), 'breaker closed');
  }

  /** A call failed in a way that says the tool or model is unwell (not a refusal of bad input). */
  async failed(key: string, probe: boolean): Promise<void> {
    await this.change(
      key,
      (r) => {
        const now = this.o.clock.now();
        const failures = [...r.failures.filter((t) => t > now - this.o.windowMs), now];
        const trip = probe || r.state === 'half_open' || failures.length >= this.o.failureThreshold;
        return trip ? { ...r, state: 'open', failures, openedAt: now, probe: null, updatedAt: now } : { ...r, failures, updatedAt: now };
      },
      'breaker open',
    );
  }

  close(): Promise<void> {
    this.watcher?.stop();
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Read-modify-write with compare-and-set, retried on conflicts (another host moved first). */
  private async change(key: string, next: (r: BreakerRecord) => BreakerRecord, message: string): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = (await this.store.get(key)) ?? undefined;
      const before = current?.value ?? closed(this.o.clock.now());
      const after = next(before);
      try {
        const revision = current ? await this.store.update(key, after, current.revision) : await this.store.create(key, after);
        this.view.set(key, { value: after, revision });
        if (after.state !== before.state) this.o.logger.warn({ breaker: key, state: after.state, failures: after.failures.length }, message);
        return;
      } catch (err) {
        if (!(err instanceof RevisionConflictError)) throw err;
      }
    }
  }
}
