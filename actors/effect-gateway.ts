import type { Logger } from 'pino';
import type { Clock } from '../common/clock.ts';
import { ensureError, ErrorCode, TroupeError, toWireError } from '../common/errors.ts';
import type { JsonKv } from '../runtime/json-kv.ts';
import { RevisionConflictError } from '../runtime/json-kv.ts';
import type { LedgerRecord } from '../runtime/wire.ts';
import type { AuditLog } from './audit-log.ts';
import { RecordedEffectError, UnknownOutcomeError } from './errors.ts';

/** One effect to run at most once. */
export interface EffectSpec<T> {
  /** Idempotency key `<taskId>/<step>/<callIndex>`. */
  key: string;
  kind: 'model' | 'tool' | 'wait';
  /** Model or tool name, for the ledger and errors. */
  name: string;
  /**
   * Whether running it twice could do harm. Side-effecting calls are recorded as `started`
   * (with a lease) before they run, so a runner that dies mid-call is detected.
   */
  sideEffect: boolean;
  /** Whether repeating it is harmful even if it may not have happened (no retry on unknown outcome). */
  irreversible: boolean;
  /** How long the `started` lease lasts: the call's own time limit plus a margin. */
  leaseMs: number;
  /**
   * Aborted when the task lets go of the effect (shutdown, lost ownership, deadline). An aborted
   * effect is not started, and its abort is never recorded as the call's outcome: whoever
   * resumes the task runs it.
   */
  signal?: AbortSignal | undefined;
  /**
   * A person checked that attempt N of this call, whose runner vanished, did not happen: it may
   * run again. Any other vanished attempt still fails with {@link UnknownOutcomeError}.
   */
  rerunAttempt?: number | undefined;
  /**
   * No runner handed this key to the gateway before: the task's last durable snapshot did not
   * have this effect in flight, so the ledger cannot hold a record of it and is not read first.
   * (A side-effecting call still claims the key with `create`, so a wrong guess costs a read.)
   */
  fresh?: boolean | undefined;
  /** Asks the outside world whether a call with this key already happened. */
  reconcile?: (() => Promise<{ happened: true; result: T } | { happened: false }>) | undefined;
  execute: () => Promise<T>;
}

/** What the gateway returns: the result, and whether it came from the ledger. */
export interface EffectOutcome<T> {
  result: T;
  replayed: boolean;
}

/**
 * Points where crash tests stop a process: before an effect touches the ledger, right after a
 * side-effecting call is recorded `started`, and after an outcome is recorded but before the
 * task consumes it.
 */
export interface EffectFaults {
  beforeEffect?: (key: string) => Promise<void>;
  afterStarted?: (key: string) => Promise<void>;
  afterRecorded?: (key: string) => Promise<void>;
}

/** Options of an {@link EffectGateway}. */
export interface EffectGatewayOptions {
  ledger: JsonKv<LedgerRecord>;
  /** This process's identity, written into leases. */
  owner: string;
  clock: Clock;
  logger: Logger;
  /** Fault injection for crash tests; never set in production. */
  faults?: EffectFaults | undefined;
  /** Where every effect's start and outcome (with its payload) is recorded. @default none */
  audit?: AuditLog | undefined;
}

/** The task an effect key belongs to (`<taskId>/<step>/<callIndex>`). */
const taskOf = (key: string) => key.slice(0, key.indexOf('/') === -1 ? key.length : key.indexOf('/'));

/**
 * The only way an effect leaves a task: at most one execution per idempotency key.
 *
 * - A recorded success is returned without executing again (recovery, redelivery, replay).
 * - A side-effecting call is first recorded `started` with a lease; if a previous runner died
 *   mid-call (expired lease), the tool's `reconcile` decides; without one, a reversible call is
 *   repeated and an irreversible one fails with {@link UnknownOutcomeError}.
 * - A live lease held by someone else means the call is running elsewhere: wait for it.
 * - A side-effecting call's outcome is recorded before it is returned, so the caller never
 *   consumes an unrecorded result; a pure call's is sent to the ledger without waiting, ahead
 *   of the task's next snapshot write that holds it.
 */
export class EffectGateway {
  /** Calls this process is running now, by key: a second run of one joins the first. */
  private readonly running = new Map<string, Promise<EffectOutcome<unknown>>>();

  constructor(private readonly o: EffectGatewayOptions) {}

  /**
   * The settled outcome of a call, if the ledger has one: its result, or (thrown) its recorded
   * non-retryable failure. Undefined while it is unsettled or was never run.
   */
  async recorded<T>(key: string): Promise<EffectOutcome<T> | undefined> {
    const record = (await this.o.ledger.get(key))?.value;
    if (record?.state === 'succeeded') return { result: record.result as T, replayed: true };
    if (record?.state === 'failed' && !record.retryable) throw new RecordedEffectError(record.error.code, record.error.message);
    return undefined;
  }

  /**
   * Runs `spec` at most once. A call with this key that this process is already running (a worker
   * given the same call again by a host that resumed the task, a restarted actor) is not started
   * again: this run waits for it and returns its outcome. Its own live lease could not tell the
   * two apart, since both carry this process's name.
   */
  run<T>(spec: EffectSpec<T>): Promise<EffectOutcome<T>> {
    const current = this.running.get(spec.key) as Promise<EffectOutcome<T>> | undefined;
    if (current) return current.then((outcome) => ({ ...outcome, replayed: true }));
    const run = this.runOnce(spec);
    this.running.set(spec.key, run);
    const forget = () => {
      if (this.running.get(spec.key) === run) this.running.delete(spec.key);
    };
    run.then(forget, forget);
    return run;
  }

  private async runOnce<T>(spec: EffectSpec<T>): Promise<EffectOutcome<T>> {
    const { ledger, clock } = this.o;
    await this.o.faults?.beforeEffect?.(spec.key);
    spec.signal?.throwIfAborted();
    let look = !spec.fresh;
    for (;;) {
      const existing = look ? await ledger.get(spec.key) : undefined;
      look = true;
      const record = existing?.value;
      if (record?.state === 'succeeded') return { result: record.result as T, replayed: true };
      if (record?.state === 'failed' && !record.retryable) throw new RecordedEffectError(record.error.code, record.error.message);

      const attempt = (record?.attempt ?? 0) + 1;
      if (!spec.sideEffect) {
        return this.executeAndRecord(spec, attempt, undefined);
      }

      if (record?.state === 'started') {
        if (record.leaseUntil > clock.now() && record.owner !== this.o.owner) {
          // Running elsewhere right now (a slow previous owner): wait rather than run twice.
          await clock.sleep(Math.min(1000, record.leaseUntil - clock.now() + 10));
          continue;
        }
        const reconciled = await this.settleUnknown(spec, existing!.revision, record.attempt);
        if (reconciled) return reconciled;
      }

      let revision: number;
      const started: LedgerRecord = {
        v: 1,
        state: 'started',
        kind: spec.kind,
        name: spec.name,
        owner: this.o.owner,
        leaseUntil: clock.now() + spec.leaseMs,
        attempt,
        at: clock.now(),
      };
      try {
        revision = existing ? await ledger.update(spec.key, started, existing.revision) : await ledger.create(spec.key, started);
      } catch (err) {
        if (err instanceof RevisionConflictError) continue; // someone else moved first: look again
        throw err;
      }
      this.o.audit?.record(taskOf(spec.key), { type: 'effect.started', key: spec.key, kind: spec.kind, name: spec.name, attempt }, `${spec.key}:started:${attempt}`);
      await this.o.faults?.afterStarted?.(spec.key);
      return this.executeAndRecord(spec, attempt, revision);
    }
  }

  /**
   * A previous runner started this call and vanished. Returns the outcome `reconcile` found,
   * `undefined` to run the call again, or throws if it must not be repeated.
   */
  private async settleUnknown<T>(spec: EffectSpec<T>, revision: number, attempt: number): Promise<EffectOutcome<T> | undefined> {
    if (spec.rerunAttempt === attempt) {
      this.o.logger.info({ key: spec.key, tool: spec.name, attempt }, 'unknown outcome settled by a person: it did not happen; running it again');
      return undefined;
    }
    if (spec.reconcile) {
      const found = await spec.reconcile();
      if (found.happened) {
        await this.recordReconciled(spec, found.result, 0, revision);
        this.o.logger.info({ key: spec.key, tool: spec.name }, 'unknown outcome reconciled: the call had happened');
        return { result: found.result, replayed: true };
      }
      this.o.logger.info({ key: spec.key, tool: spec.name }, 'unknown outcome reconciled: the call had not happened; running it');
      return undefined;
    }
    if (spec.irreversible) throw new UnknownOutcomeError(spec.key, spec.name, attempt);
    return undefined;
  }

  private async executeAndRecord<T>(spec: EffectSpec<T>, attempt: number, revision: number | undefined): Promise<EffectOutcome<T>> {
    const { clock } = this.o;
    let result: T;
    try {
      spec.signal?.throwIfAborted();
      result = await spec.execute();
    } catch (caught) {
      const err = ensureError(caught);
      // Abandoned, not failed: recording it would make whoever resumes the task replay an abort.
      if (spec.signal?.aborted) throw err;
      // Cut off at its time limit, a side-effecting call may have happened all the same.
      if (spec.sideEffect && err instanceof TroupeError && err.code === ErrorCode.toolTimeout) {
        if (spec.reconcile) {
          const found = await spec.reconcile();
          if (found.happened) {
            await this.recordReconciled(spec, found.result, attempt, revision);
            this.o.logger.info({ key: spec.key, tool: spec.name }, 'a call cut off at its time limit had happened (reconciled)');
            return { result: found.result as T, replayed: false };
          }
        } else if (spec.irreversible) {
          // Its `started` record stays: a person says whether it happened (unknown outcome).
          throw new UnknownOutcomeError(spec.key, spec.name, attempt);
        }
      }
      const retryable = err instanceof TroupeError ? err.retryable : false;
      await this.record(spec, { v: 1, state: 'failed', kind: spec.kind, name: spec.name, error: toWireError(err), retryable, attempt, at: clock.now() }, revision);
      this.o.audit?.record(taskOf(spec.key), { type: 'effect.failed', key: spec.key, kind: spec.kind, name: spec.name, attempt, error: toWireError(err), retryable }, `${spec.key}:failed:${attempt}`);
      throw err;
    }
    await this.record(spec, { v: 1, state: 'succeeded', kind: spec.kind, name: spec.name, result, attempt, at: clock.now() }, revision);
    this.audited(spec, attempt, result);
    return { result, replayed: false };
  }

  /** Records and audits a success the tool's `reconcile` found in the outside world. */
  private async recordReconciled<T>(spec: EffectSpec<T>, result: T, attempt: number, revision: number | undefined): Promise<void> {
    await this.record(spec, { v: 1, state: 'succeeded', kind: spec.kind, name: spec.name, result, attempt, at: this.o.clock.now() }, revision);
    this.audited(spec, attempt, result);
  }

  /** Audits a recorded success with its payload (attempt 0: found by `reconcile`). */
  private audited<T>(spec: EffectSpec<T>, attempt: number, result: T): void {
    const audit = this.o.audit;
    audit?.record(taskOf(spec.key), { type: 'effect.succeeded', key: spec.key, kind: spec.kind, name: spec.name, attempt, result: audit.payload(result) }, `${spec.key}:succeeded`);
  }

  private async record<T>(spec: EffectSpec<T>, record: LedgerRecord, revision: number | undefined): Promise<void> {
    if (revision !== undefined) {
      // A side-effecting call updates the `started` record it owns, and its outcome is durable
      // before anyone sees it: the ledger is the only proof that it happened.
      await this.o.ledger.update(spec.key, record, revision);
    } else if (!this.o.faults?.afterRecorded) {
      // A pure call (a model turn, a read) is not waited for: the task's next snapshot write,
      // which holds the result, goes out after this one on the same connection. Until then, a
      // crash costs at most running the call again; the record keeps it from being paid twice
      // when it landed, and keeps the task replayable.
      this.o.ledger.put(spec.key, record).catch((err: unknown) => this.o.logger.warn({ err, key: spec.key }, 'effect outcome not recorded in the ledger'));
      return;
    } else {
      await this.o.ledger.put(spec.key, record);
    }
    await this.o.faults?.afterRecorded?.(spec.key);
  }
}
