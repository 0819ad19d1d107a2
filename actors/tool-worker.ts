import { hostname } from 'node:os';
import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../common/clock.ts';
import { ensureError, ErrorCode, TroupeError, toWireError } from '../common/errors.ts';
import type { TroupeConfig } from '../config/schema.ts';
import { watchConnection } from '../runtime/connection.ts';
import { JsonKv } from '../runtime/json-kv.ts';
import { subjects as makeSubjects, type Subjects } from '../runtime/subjects.ts';
import { ensureTopology } from '../runtime/topology.ts';
import { ledgerRecordSchema, toolDispatchSchema, type LedgerRecord, type ToolDispatch, type ToolReply } from '../runtime/wire.ts';
import { ToolRejectedError } from '../sandbox/errors.ts';
import { executeTool } from '../sandbox/execute.ts';
import { compileOutputPolicy, type OutputPolicy } from '../sandbox/output.ts';
import { createToolRunner, type ToolRunner } from '../sandbox/runners/index.ts';
import type { Tool } from '../sandbox/tool.ts';
import type { Agent } from './agent.ts';
import { AuditLog } from './audit-log.ts';
import { EffectGateway, type EffectFaults } from './effect-gateway.ts';
import { runLedgered } from './tool-call.ts';
import { UnknownOutcomeError } from './errors.ts';

/** Options of a {@link ToolWorker}. */
export interface ToolWorkerOptions {
  nc: NatsConnection;
  config: TroupeConfig;
  /** The tools this worker answers for (each on `troupe.tools.<name>`). */
  tools: Tool<any, any>[];
  logger: Logger;
  clock?: Clock;
  /** @default `<hostname>-<pid>-<random>` */
  workerId?: string;
  /** Fault injection for crash tests; never set in production. */
  faults?: EffectFaults;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A worker actor: answers tool calls dispatched on `troupe.tools.<tool>` (one queue group, so
 * each call goes to one worker; start more to scale), and runs each at the tool's isolation
 * level. A side-effecting call goes through the effect ledger here, next to the tool: it is
 * recorded `started` with a lease before it runs and its outcome after, with the idempotency key
 * passed to the tool. A duplicate dispatch (a host retrying after a lost reply) gets the
 * recorded result; a dispatch of a call whose previous worker died mid-call is settled by the
 * tool's `reconcile`, repeated if reversible, or answered `unknown_outcome` for a person to
 * settle.
 */
export class ToolWorker {
  readonly workerId: string;
  private readonly subjects: Subjects;
  private readonly tools: Map<string, Tool<any, any>>;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly subs: Subscription[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private readonly aborts = new Set<AbortController>();
  private gateway: EffectGateway | undefined;
  private runner: ToolRunner | undefined;
  private output: OutputPolicy | undefined;
  private closing: Promise<void> | undefined;
  private running = 0;

  constructor(private readonly o: ToolWorkerOptions) {
    this.clock = o.clock ?? systemClock;
    this.workerId = o.workerId ?? `worker-${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    this.subjects = makeSubjects(o.config.prefix);
    this.tools = new Map(o.tools.map((t) => [t.name, t]));
    this.log = o.logger.child({ actor: 'worker', worker: this.workerId });
  }

  /** The tools served. */
  get toolNames(): string[] {
    return [...this.tools.keys()];
  }

  /**
   * Prepares every tool's isolation level (a `bwrap` tool on a machine without bubblewrap fails
   * here, loudly, rather than at its first call) and starts answering.
   */
  async start(): Promise<void> {
    const { config, nc } = this.o;
    watchConnection(nc, this.log);
    const topology = await ensureTopology(nc, this.subjects, { ...config.streams, leaseMs: config.host.leaseMs });
    const ledger = new JsonKv<LedgerRecord>(topology.ledger, this.subjects.buckets.ledger, ledgerRecordSchema);
    this.output = compileOutputPolicy(config.tools);
    const audit = new AuditLog({ js: topology.js, subjects: this.subjects, blobs: topology.auditBlobs, redaction: this.output, source: this.workerId, clock: this.clock, logger: this.log });
    this.gateway = new EffectGateway({ ledger, owner: this.workerId, clock: this.clock, logger: this.log, faults: this.o.faults, audit });
    this.runner = createToolRunner({ threadPoolSize: config.tools.warmPoolSize, bwrapPoolSize: config.tools.warmPoolSize, clock: this.clock });
    await this.runner.prewarm(this.tools.values());
    for (const tool of this.tools.values()) {
      const sub = nc.subscribe(this.subjects.tool(tool.name), { queue: this.subjects.workersQueue });
      this.subs.push(sub);
      void (async () => {
        for await (const m of sub) this.track(this.answer(m));
      })();
    }
    // Started means callable: the server has the subscriptions before this resolves, so a call
    // dispatched right after meets this worker instead of "no responders".
    await nc.flush();
    this.log.info({ tools: this.toolNames }, 'worker started');
  }

  /** Stops taking calls, lets running ones finish (up to `drainMs`), then kills what is left. Idempotent. */
  close(drainMs = this.o.config.host.drainTimeoutMs): Promise<void> {
    this.closing ??= (async () => {
      for (const sub of this.subs) sub.unsubscribe();
      await Promise.race([Promise.allSettled([...this.inFlight]), this.clock.sleep(drainMs)]);
      for (const a of this.aborts) a.abort(new Error('worker shutting down'));
      await Promise.allSettled([...this.inFlight]);
      await this.runner?.close();
      this.log.info('worker stopped');
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async answer(m: Msg): Promise<void> {
    const reply = (r: ToolReply extends infer R ? (R extends ToolReply ? Omit<R, 'worker'> : never) : never) => m.respond(encoder.encode(JSON.stringify({ ...r, worker: this.workerId })));
    let call: ToolDispatch;
    try {
      call = toolDispatchSchema.parse(JSON.parse(decoder.decode(m.data)));
    } catch (err) {
      reply({ ok: false, error: { code: ErrorCode.invalidToolArguments, message: `not a tool dispatch: ${ensureError(err).message.slice(0, 300)}` }, retryable: false });
      return;
    }
    const tool = this.tools.get(call.tool);
    if (!tool || m.subject !== this.subjects.tool(call.tool)) {
      reply({ ok: false, error: { code: ErrorCode.unknownTool, message: `this worker does not run "${call.tool}" on ${m.subject}` }, retryable: false });
      return;
    }
    if (this.running >= this.o.config.tools.workerConcurrency) {
      reply({ ok: false, error: { code: ErrorCode.toolUnavailable, message: `worker ${this.workerId} is at its concurrency (${this.o.config.tools.workerConcurrency}); try again` }, retryable: true });
      return;
    }
    const abort = new AbortController();
    this.aborts.add(abort);
    this.running++;
    try {
      // The host's gates passed these arguments; a worker never runs what its own schema refuses.
      const parsed = tool.input.safeParse(call.args);
      if (!parsed.success) throw new ToolRejectedError(ErrorCode.invalidToolArguments, `arguments for "${tool.name}" do not match its schema`, 'schema');
      const args = parsed.data;
      const ledgered = () =>
        runLedgered(this.gateway!, tool, { key: call.key, args, signal: abort.signal, rerunAttempt: call.rerunAttempt }, () =>
          executeTool(tool, args, { key: call.key, taskId: call.taskId, signal: abort.signal }, {
            runner: this.runner!,
            output: this.output!,
            maxAttempts: this.o.config.tools.maxAttempts,
            retryBackoffMs: this.o.config.tools.retryBackoffMs,
            clock: this.clock,
          }),
        );
      const { result, replayed } = await this.throughLedger(ledgered, call.key, tool, abort.signal);
      reply({ ok: true, result, replayed });
    } catch (caught) {
      const err = ensureError(caught);
      if (abort.signal.aborted) return; // shutting down: no answer; the host dispatches again
      if (!(err instanceof TroupeError)) {
        // Not the tool's failure (those are TroupeErrors) but the ledger's: NATS is down or a
        // stream is electing a leader, maybe after the side effect happened. Answering "failed"
        // could be a lie; staying silent makes the host dispatch the call again, and the ledger
        // (its `started` record, then `reconcile`) settles what really happened.
        this.log.warn({ err, key: call.key, tool: tool.name }, 'the outcome of a tool call could not be recorded; not answering, so that the call is dispatched again and settled by the ledger');
        return;
      }
      reply({ ok: false, error: toWireError(err), retryable: err.retryable, ...(err instanceof UnknownOutcomeError ? { attempt: err.attempt } : {}) });
    } finally {
      this.running--;
      this.aborts.delete(abort);
    }
  }

  /**
   * Runs a ledgered call, and runs it again through the ledger while the ledger cannot be
   * reached (a NATS restart, a stream electing a leader), for up to the tool's time limit: the
   * ledger's `started` record and the tool's `reconcile` then settle whether it already
   * happened, exactly as when the host dispatches it again, only sooner.
   */
  private async throughLedger<T>(ledgered: () => Promise<T>, key: string, tool: Tool<any, any>, signal: AbortSignal): Promise<T> {
    const giveUpAt = this.clock.now() + tool.timeoutMs;
    for (let backoff = 250; ; backoff = Math.min(backoff * 2, 2000)) {
      try {
        return await ledgered();
      } catch (err) {
        if (err instanceof TroupeError || signal.aborted || this.clock.now() + backoff > giveUpAt) throw err;
        this.log.warn({ err, key, tool: tool.name }, 'the ledger cannot be reached; going through it again');
        await this.clock.sleep(backoff);
      }
    }
  }
}

/**
 * The tools a worker serves: the isolated (`thread`, `bwrap`) tools of these agents, or the
 * ones named. Throws naming the problem for a name no agent has, or an `inline` tool (hosts run
 * those themselves, so a worker would never be asked).
 */
export function isolatedTools(agents: readonly Agent<any>[], names?: readonly string[]): Tool<any, any>[] {
  const all = new Map<string, Tool<any, any>>();
  for (const agent of agents) for (const tool of agent.tools.values()) all.set(tool.name, tool);
  if (!names) return [...all.values()].filter((t) => t.isolation !== 'inline');
  return names.map((name) => {
    const tool = all.get(name);
    if (!tool) throw new TypeError(`no agent has a tool named "${name}" (tools: ${[...all.keys()].join(', ') || 'none'})`);
    if (tool.isolation === 'inline') throw new TypeError(`tool "${name}" is inline: hosts run it in-process, so a worker would never be asked; declare isolation "thread" or "bwrap" to run it on workers`);
    return tool;
  });
}
