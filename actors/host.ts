import { hostname } from 'node:os';
import type { NatsConnection } from '@nats-io/nats-core';
import type { JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../common/clock.ts';
import { ErrorCode, ensureError } from '../common/errors.ts';
import type { TroupeConfig } from '../config/schema.ts';
import { publishResumption, readTaskMessage, type IntakePrincipals, type Resumption, type Submission } from '../runtime/intake.ts';
import { isOverMaxPayload, watchConnection } from '../runtime/connection.ts';
import { JsonKv, RevisionConflictError, type Versioned } from '../runtime/json-kv.ts';
import { subjects as makeSubjects, type Subjects } from '../runtime/subjects.ts';
import { TaskEvents } from '../runtime/task-events.ts';
import { TaskQueue } from '../runtime/task-queue.ts';
import { ensureTopology, type Topology } from '../runtime/topology.ts';
import { baselineSchema, ledgerRecordSchema, snapshotEnvelopeSchema, type Budget, type LedgerRecord, type Rejection, type SnapshotEnvelope } from '../runtime/wire.ts';
import type { Agent, ResolvedLimits } from './agent.ts';
import { Breakers } from './breakers.ts';
import { CancelDesk } from './cancel-desk.ts';
import { DecisionDesk } from './decision-desk.ts';
import { TaskTree } from './task-tree.ts';
import type { InspectionObserver } from './task-supervisor.ts';
import { Inbox } from './inbox.ts';
import { InboxDesk } from './inbox-desk.ts';
import { HostMetrics } from './metrics.ts';
import { AuditLog } from './audit-log.ts';
import { SemanticChecks } from './semantic-checks.ts';
import type { Server } from 'node:http';
import type { ToolExecution } from './tool-effect.ts';
import { compileOutputPolicy, type OutputPolicy } from '../sandbox/output.ts';
import { createToolRunner, type ToolRunner } from '../sandbox/runners/index.ts';
import { EffectGateway, type EffectFaults } from './effect-gateway.ts';
import { DueIndex } from '../runtime/due-index.ts';
import type { ModelClient } from './model/model-client.ts';
import { TaskRunner, type RunnerEnd, type TaskRunnerDeps } from './task-runner.ts';

/** Options of a {@link Host}. */
export interface HostOptions {
  nc: NatsConnection;
  config: TroupeConfig;
  agents: readonly Agent<any>[];
  /** One client for every agent, or a client per agent (each with its own routing). */
  model: ModelClient | ((agent: Agent) => ModelClient);
  logger: Logger;
  /** @default the system clock */
  clock?: Clock;
  /** @default `<hostname>-<pid>-<random>` */
  hostId?: string;
  /** Fault injection for crash tests; never set in production. */
  faults?: EffectFaults;
  /**
   * Observer of every agent and supervisor actor this host runs (XState's `inspect`), such as
   * `@statelyai/inspect`'s WebSocket inspector (`troupe up --inspect`). @default none
   */
  inspect?: InspectionObserver;
}

/**
 * Runs tasks: takes task messages from the work queue, validates them, creates, resumes or
 * de-duplicates tasks, and runs each as a {@link TaskRunner}. Several hosts may share one NATS;
 * each task is run by the host holding its message, and moves to another host if this one dies
 * (after the lease) or shuts down (at once, by hand-over).
 */
export class Host implements AsyncDisposable {
  readonly hostId: string;
  readonly subjects: Subjects;
  private readonly agents: Map<string, Agent<any>>;
  private readonly principals: IntakePrincipals;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly runners = new Map<string, TaskRunner>();
  private readonly pending = new Set<Promise<unknown>>();
  private topology: Topology | undefined;
  private queue: TaskQueue | undefined;
  private store: JsonKv<SnapshotEnvelope> | undefined;
  private events: TaskEvents | undefined;
  private deps: TaskRunnerDeps | undefined;
  private breakers: Breakers | undefined;
  private decisions: DecisionDesk | undefined;
  private inlineRunner: ToolRunner | undefined;
  private tree!: TaskTree;
  private cancels: CancelDesk | undefined;
  private inboxes: InboxDesk | undefined;
  private metrics!: HostMetrics;
  private audit!: AuditLog;
  /** Redaction and size cap of tool output, also applied to the audit trail. */
  private output!: OutputPolicy;
  private metricsServer: Server | undefined;
  /** The agent of each task this host runs or just ran, to label its metrics. */
  private readonly agentOf = new Map<string, string>();
  /** Where this host serves Prometheus metrics (config `metrics.port`), if it does. */
  metricsUrl: string | undefined;
  private closing: Promise<void> | undefined;
  /** Resolves when this host can receive no more task messages (its last pull expired). */
  private intakeStopped: Promise<void> | undefined;

  constructor(private readonly o: HostOptions) {
    this.clock = o.clock ?? systemClock;
    this.hostId = o.hostId ?? `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    this.subjects = makeSubjects(o.config.prefix);
    this.agents = new Map(o.agents.map((a) => [a.name, a]));
    this.principals = { known: new Set(Object.keys(o.config.principals)), fallback: o.config.defaultPrincipal };
    if (this.agents.size !== o.agents.length) throw new TypeError('two agents share a name');
    this.log = o.logger.child({ actor: 'host', host: this.hostId });
  }

  /** Creates streams and buckets if needed and starts taking tasks. */
  async start(): Promise<void> {
    const { config, nc } = this.o;
    this.topology = await ensureTopology(nc, this.subjects, { ...config.streams, leaseMs: config.host.leaseMs });
    this.store = new JsonKv(this.topology.snapshots, this.subjects.buckets.snapshots, snapshotEnvelopeSchema);
    const ledger = new JsonKv<LedgerRecord>(this.topology.ledger, this.subjects.buckets.ledger, ledgerRecordSchema);
    this.events = new TaskEvents(nc, this.topology.js, this.subjects, this.clock, this.log);
    const connection = watchConnection(nc, this.log);
    this.metrics = new HostMetrics({ running: () => this.runners.size, breakers: () => this.breakers?.states() ?? new Map(), connection: () => connection });
    this.events.observe((e) => this.metrics.observe(this.agentOf.get(e.taskId) ?? 'unknown', e));
    this.breakers = new Breakers(this.topology.breakers, this.subjects.buckets.breakers, { ...config.breakers, owner: this.hostId, clock: this.clock, logger: this.log });
    await this.breakers.start();
    const inbox = new Inbox(this.topology.jsm, this.subjects);
    const due = new DueIndex(this.topology.due, this.subjects.buckets.due);
    this.tree = new TaskTree({ js: this.topology.js, subjects: this.subjects, store: this.store, hostId: this.hostId, clock: this.clock, logger: this.log, inbox });
    this.output = compileOutputPolicy(config.tools);
    this.audit = new AuditLog({ js: this.topology.js, subjects: this.subjects, blobs: this.topology.auditBlobs, redaction: this.output, source: this.hostId, clock: this.clock, logger: this.log });
    this.events.observe((e) => this.audit.fromEvent(e));
    const gateway = new EffectGateway({ ledger, owner: this.hostId, clock: this.clock, logger: this.log, faults: this.o.faults, audit: this.audit });
    const model = this.o.model;
    this.deps = { store: this.store, gateway, events: this.events, model: typeof model === 'function' ? model : () => model, breakers: this.breakers, drainTimeoutMs: config.host.drainTimeoutMs, restarts: { intensity: config.host.restartIntensity, periodMs: config.host.restartPeriodMs, backoffMs: config.host.restartBackoffMs }, clock: this.clock, logger: this.o.logger, hostId: this.hostId, principals: config.principals, execution: this.execution(), tree: this.tree, due, inbox, snapshotWritten: (ms) => this.metrics.snapshotWritten(ms), inspect: this.o.inspect, semantic: new SemanticChecks({ baselines: new JsonKv(this.topology.baselines, this.subjects.buckets.baselines, baselineSchema), events: this.events, clock: this.clock, logger: this.log }), delegation: { js: this.topology.js, subjects: this.subjects, store: this.store, agents: this.agents, now: () => this.clock.now() } };
    this.queue = new TaskQueue(this.topology.js, {
      stream: this.subjects.streams.tasks,
      consumer: this.subjects.hostsConsumer,
      concurrency: config.host.concurrency,
      leaseMs: config.host.leaseMs,
      logger: this.log,
    });
    await this.queue.start((msg) => this.track(this.handle(msg)));
    this.decisions = new DecisionDesk({
      js: this.topology.js,
      subjects: this.subjects,
      store: this.store,
      events: this.events,
      approvers: config.approvers,
      agents: this.agents,
      tree: this.tree,
      due,
      sweepMs: config.host.approvalSweepMs,
      hostId: this.hostId,
      clock: this.clock,
      logger: this.log,
    });
    await this.decisions.start();
    this.cancels = new CancelDesk({ nc: this.o.nc, js: this.topology.js, subjects: this.subjects, store: this.store, events: this.events, tree: this.tree, hostId: this.hostId, runnerOf: (id) => this.runners.get(id), clock: this.clock, logger: this.log });
    await this.cancels.start();
    this.inboxes = new InboxDesk({ js: this.topology.js, subjects: this.subjects, tree: this.tree, logger: this.log });
    await this.inboxes.start();
    if (config.metrics.port !== undefined) {
      const served = await this.metrics.serve(config.metrics.port, config.metrics.host);
      this.metricsServer = served.server;
      this.metricsUrl = served.url;
    }
    this.log.info({ agents: [...this.agents.keys()], ...(this.metricsUrl ? { metrics: this.metricsUrl } : {}) }, 'host started');
  }

  /**
   * How this host's tasks run tool calls: `inline` tools here (no pools: nothing isolated runs in
   * a host), `thread` and `bwrap` tools dispatched to workers.
   */
  private execution(): ToolExecution {
    const { tools } = this.o.config;
    this.inlineRunner = createToolRunner({ threadPoolSize: 0, bwrapPoolSize: 0, clock: this.clock });
    return {
      inline: { runner: this.inlineRunner, output: this.output, maxAttempts: tools.maxAttempts, retryBackoffMs: tools.retryBackoffMs, clock: this.clock },
      dispatch: { nc: this.o.nc, subjects: this.subjects, clock: this.clock },
    };
  }

  /** Tasks running on this host now. */
  get running(): number {
    return this.runners.size;
  }

  /**
   * Graceful shutdown: stop taking tasks, let running effects finish (up to
   * `host.drainTimeoutMs`), checkpoint every task and hand it to another host. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.decisions?.close();
      await this.cancels?.close();
      await this.inboxes?.close();
      const intake = this.queue?.stopIntake();
      this.intakeStopped = intake;
      // Drain what runs now while the last pull expires, then whatever arrived meanwhile.
      let rounds = 0;
      do {
        await Promise.all([...this.runners.values()].map((r) => r.drain(this.o.config.host.drainTimeoutMs)));
        await intake;
        while (this.pending.size) await Promise.allSettled([...this.pending]);
      } while (this.runners.size > 0 && ++rounds < 10);
      await this.queue?.close();
      await this.breakers?.close();
      await this.inlineRunner?.close();
      await new Promise<void>((resolve) => (this.metricsServer ? this.metricsServer.close(() => resolve()) : resolve()));
      this.log.info('host stopped');
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private track<T>(p: Promise<T>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /** Never throws: a message that cannot be handled is left to be redelivered. */
  private async handle(msg: JsMsg): Promise<void> {
    const queue = this.queue!;
    try {
      const read = readTaskMessage(msg, this.subjects, (name) => this.agents.get(name), this.o.config.host.maxTaskBytes, this.principals);
      if (read.kind === 'refusal') {
        await this.refuse(msg, { agent: read.agent, taskId: read.taskId, error: read.error, payloadPreview: read.payloadPreview }, read.replyTo);
        return;
      }
      // A submission's first delivery is almost always a new task: claim it at once, and read
      // what is stored only if the key is taken (a duplicate, or the task of a resent message).
      if (read.kind === 'submission' && msg.info.deliveryCount === 1 && (await this.createTask(msg, read))) return;
      let stored = await this.store!.get(read.taskId);
      if (msg.info.deliveryCount > this.o.config.host.maxDeliver) {
        await this.giveUp(msg, read, stored);
        return;
      }
      if (read.kind === 'submission' && !stored) {
        if (await this.createTask(msg, read)) return;
        // Created a moment ago by another message: handled below like any task that exists.
        stored = await this.store!.get(read.taskId);
      }
      if (!stored) {
        // A task that no longer exists (a hand-over's, or one removed since): nothing to run.
        await queue.ack(msg);
        return;
      }
      if (!ownsTask(stored.value, msg, read)) {
        // Another message owns this task: a duplicate submission, or a stale hand-over.
        if (read.kind === 'submission') this.events!.answer(read.replyTo, { taskId: read.taskId, status: 'accepted', duplicate: true });
        await queue.ack(msg);
        return;
      }
      if (read.kind === 'submission') this.events!.answer(read.replyTo, { taskId: read.taskId, status: 'accepted' });
      await this.resumeTask(msg, stored);
    } catch (caught) {
      const err = ensureError(caught);
      this.log.error({ err, subject: msg.subject, seq: msg.seq }, 'task message not handled; it will be redelivered');
      queue.forget(msg);
    }
  }

  /** Refuses a submission: recorded on the rejected stream, its sender told, and its message taken off the queue. */
  private async refuse(msg: JsMsg, rejection: Omit<Rejection, 'at'>, replyTo: string | undefined): Promise<void> {
    await this.events!.reject(rejection, replyTo);
    this.log.info({ taskId: rejection.taskId, agent: rejection.agent, error: rejection.error }, 'task rejected');
    await this.queue!.ack(msg);
  }

  /** Creates and runs a submitted task (or refuses one whose first state is too large to save); false, doing nothing, if its key is already taken. */
  private async createTask(msg: JsMsg, sub: Submission): Promise<boolean> {
    const agent = this.agents.get(sub.agent)!;
    const limits = resolveLimits(this.o.config.limits, agent, sub.budget);
    let runner: TaskRunner;
    try {
      runner = await TaskRunner.create(
        agent,
        this.deps!,
        {
          taskId: sub.taskId,
          machineInput: agent.machineInput({ taskId: sub.taskId, input: sub.input, limits }),
          limits,
          principal: sub.principal,
          parent: sub.parent,
          metadata: sub.metadata,
        },
        { seq: msg.seq, delivery: msg.info.deliveryCount },
      );
    } catch (err) {
      if (err instanceof RevisionConflictError) return false;
      if (isOverMaxPayload(err)) {
        // Its first state cannot be saved, so no delivery of it ever could: refused at once, not redelivered until poison.
        const error = { code: ErrorCode.payloadTooLarge, message: `task ${sub.taskId}'s first state (its input, in the agent's conversation) is larger than the NATS server accepts in one message (max_payload), so it cannot be saved. Send large inputs by reference (a URL or object-store key), or keep host.maxTaskBytes well below the server's max_payload` };
        await this.refuse(msg, { agent: sub.agent, taskId: sub.taskId, error }, sub.replyTo);
        return true;
      }
      throw err;
    }
    this.agentOf.set(sub.taskId, agent.name);
    this.audit.record(sub.taskId, { type: 'task.created', agent: agent.name, input: this.audit.payload(sub.input), ...(sub.principal ? { principal: sub.principal } : {}), ...(sub.parent ? { parent: sub.parent } : {}) }, 'created');
    // Sent before the task's first event, on the same connection, so it is the first one stored;
    // the task does not wait for its acknowledgement.
    this.events!.emit(sub.taskId, { type: 'accepted', agent: agent.name }, `${sub.taskId}:accepted`);
    this.events!.answer(sub.replyTo, { taskId: sub.taskId, status: 'accepted' });
    this.log.info({ taskId: sub.taskId, agent: agent.name }, 'task accepted');
    this.run(msg, runner);
    return true;
  }

  private async resumeTask(msg: JsMsg, stored: Versioned<SnapshotEnvelope>): Promise<void> {
    const env = stored.value;
    if (env.status === 'parked') {
      // Parked, but the host died before acking: make sure the request is out, then let go.
      if (env.pending) await this.events!.requestApproval(env.pending);
      await this.queue!.ack(msg);
      return;
    }
    if (env.status !== 'running') {
      // Ended, but the host died before acking: make sure watchers saw the end, and its parent
      // and children heard of it (both repeat safely), then ack.
      await this.events!.publish(env.taskId, env.outcome?.status === 'done' ? { type: 'done', output: env.outcome.output } : { type: 'failed', error: env.outcome?.status === 'failed' ? env.outcome.error : { code: ErrorCode.internal, message: 'task ended without an outcome' } }, `${env.taskId}:end`);
      await this.tree!.ended(env);
      await this.queue!.ack(msg);
      return;
    }
    if (env.cancel) {
      await this.endStored(msg, stored, { code: ErrorCode.cancelled, message: `cancelled: ${env.cancel.reason}` });
      return;
    }
    const agent = this.agents.get(env.agent);
    if (!agent) {
      await this.endStored(msg, stored, { code: ErrorCode.unknownAgent, message: `task ${env.taskId} belongs to agent "${env.agent}", which this deployment no longer runs` });
      return;
    }
    if (agent.version !== env.machineVersion) {
      await this.endStored(msg, stored, {
        code: ErrorCode.machineVersionMismatch,
        message: `task ${env.taskId} was saved by version "${env.machineVersion}" of agent "${env.agent}", but this host runs version "${agent.version}"; it cannot be resumed safely, so it is failed instead of corrupted`,
      });
      return;
    }
    let runner: TaskRunner;
    try {
      runner = await TaskRunner.restore(agent, this.deps!, stored, { seq: msg.seq, delivery: msg.info.deliveryCount }, resolveLimits(this.o.config.limits, agent, undefined));
    } catch (err) {
      if (err instanceof RevisionConflictError) {
        this.queue!.forget(msg);
        return;
      }
      await this.endStored(msg, stored, { code: ErrorCode.snapshotCorrupt, message: `task ${env.taskId}'s snapshot cannot be restored: ${ensureError(err).message}` });
      return;
    }
    this.events!.emit(env.taskId, { type: 'resumed', host: this.hostId, revision: runner.revisionNumber });
    this.log.info({ taskId: env.taskId, agent: env.agent, delivery: msg.info.deliveryCount }, 'task resumed');
    this.run(msg, runner);
  }

  private run(msg: JsMsg, runner: TaskRunner): void {
    this.runners.set(runner.taskId, runner);
    this.agentOf.set(runner.taskId, runner.agent.name);
    this.track(runner.done.then((end) => this.release(msg, runner, end)));
    runner.start();
  }

  private async release(msg: JsMsg, runner: TaskRunner, end: RunnerEnd): Promise<void> {
    this.runners.delete(runner.taskId);
    this.agentOf.delete(runner.taskId);
    if (end === 'finished' || end === 'parked') await this.queue!.ack(msg);
    else if (end === 'abandoned') this.queue!.forget(msg);
    else await this.handOver(msg, runner);
  }

  /**
   * Hands a drained task to whichever host takes the next message, in two phases: record a
   * hand-over token in the task's envelope (compare-and-set), publish a hand-over message
   * carrying it, then ack the old message. Either message may claim the task, and the first
   * claim voids the other, so a crash anywhere leaves exactly one able to run it.
   */
  private async handOver(msg: JsMsg, runner: TaskRunner): Promise<void> {
    // Never hand a task to ourselves: publish only once our last pull can no longer receive it.
    await this.intakeStopped;
    try {
      const token = `${this.hostId}:${runner.revisionNumber}`;
      const env = runner.status;
      await this.store!.update(runner.taskId, { ...env, handover: { token }, owner: null, updatedAt: this.clock.now() }, runner.revisionNumber);
      await publishResumption(this.topology!.js, this.subjects, { agent: runner.agent.name, taskId: runner.taskId, token, msgId: `${runner.taskId}:handover:${token}` });
      await this.queue!.ack(msg);
      this.log.info({ taskId: runner.taskId }, 'task handed over');
    } catch (err) {
      this.log.warn({ err, taskId: runner.taskId }, 'hand-over failed; the task will be redelivered');
      this.queue!.nak(msg);
    }
  }

  /** Past `host.maxDeliver` deliveries: a poison submission, or a task that keeps killing hosts. */
  private async giveUp(msg: JsMsg, read: Submission | Resumption, stored: Versioned<SnapshotEnvelope> | undefined): Promise<void> {
    const max = this.o.config.host.maxDeliver;
    if (stored && ownsTask(stored.value, msg, read) && stored.value.status === 'running') {
      await this.endStored(msg, stored, { code: ErrorCode.restartIntensityExceeded, message: `task ${read.taskId} was started ${msg.info.deliveryCount} times without finishing (limit ${max}: host.maxDeliver); it is failed instead of restarted forever` });
      return;
    }
    if (!stored && read.kind === 'submission') {
      await this.events!.reject({ agent: read.agent, taskId: read.taskId, error: { code: ErrorCode.poisonMessage, message: `task message was delivered ${msg.info.deliveryCount} times without being accepted (limit ${max}); it is dropped` } }, read.replyTo);
    }
    await this.queue!.ack(msg);
  }

  /** Ends a task that has no runner (cannot be restored): writes the outcome, announces it, acks. */
  private async endStored(msg: JsMsg, stored: Versioned<SnapshotEnvelope>, error: { code: string; message: string }): Promise<void> {
    const outcome = { status: 'failed' as const, error };
    const ended: SnapshotEnvelope = { ...stored.value, status: 'failed', outcome, owner: this.hostId, updatedAt: this.clock.now() };
    try {
      await this.store!.update(stored.value.taskId, ended, stored.revision);
    } catch (err) {
      if (err instanceof RevisionConflictError) {
        this.queue!.forget(msg);
        return;
      }
      throw err;
    }
    await this.events!.publish(stored.value.taskId, { type: 'failed', error }, `${stored.value.taskId}:end`);
    this.log.warn({ taskId: stored.value.taskId, error }, 'task failed');
    await this.queue!.ack(msg);
    await this.tree.ended(ended);
  }
}

/**
 * A task's limits: the config's defaults, overridden by the agent's, lowered (never raised) by
 * the task's own budget.
 */
export function resolveLimits(defaults: TroupeConfig['limits'], agent: Agent, budget: Budget | undefined): ResolvedLimits {
  const lower = (a: number | undefined, b: number | null | undefined) => (a === undefined ? (b ?? null) : b === undefined || b === null ? a : Math.min(a, b));
  const onBreach = { ...defaults.onBreach, ...agent.limits.onBreach };
  return {
    steps: lower(budget?.steps, agent.limits.steps ?? defaults.steps)!,
    wallClockMs: lower(budget?.wallClockMs, agent.limits.wallClockMs ?? defaults.wallClockMs)!,
    usd: lower(budget?.usd, agent.limits.usd ?? defaults.usd),
    tokens: lower(budget?.tokens, agent.limits.tokens ?? defaults.tokens),
    noProgress: agent.limits.noProgress ?? defaults.noProgress,
    onBreach: {
      usd: onBreach.usd ?? 'stop',
      tokens: onBreach.tokens ?? 'stop',
      steps: onBreach.steps ?? 'stop',
      wallClock: onBreach.wallClock ?? 'stop',
      noProgress: onBreach.noProgress ?? 'stop',
    },
  };
}

/**
 * Whether a message may run a stored task: it is the task's run message, or the hand-over
 * message whose token the handing host recorded. Anything else is a duplicate or stale.
 */
function ownsTask(env: SnapshotEnvelope, msg: JsMsg, read: Submission | Resumption): boolean {
  if (env.runSeq === msg.seq) return true;
  return read.kind === 'resumption' && env.handover !== undefined && read.token === env.handover.token;
}
