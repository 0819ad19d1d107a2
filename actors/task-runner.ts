import type { Logger } from 'pino';
import type { TroupeConfig } from '../config/schema.ts';
import type { ToolExecution } from './tool-effect.ts';
import type { TaskTree } from './task-tree.ts';
import { dueAtOf, type DueIndex } from '../runtime/due-index.ts';
import { isNatsFailure } from '../runtime/connection.ts';
import type { DelegationDeps } from './delegation.ts';
import type { Inbox } from './inbox.ts';
import type { SemanticChecks } from './semantic-checks.ts';
import { createActor, fromPromise, type AnyActor, type AnyMachineSnapshot, type AnyStateMachine } from 'xstate';
import type { Clock } from '../common/clock.ts';
import { ensureError, ErrorCode } from '../common/errors.ts';
import { agentLoopMachine } from '../machines/agent-loop.machine.ts';
import type { DelegateInput, DelegateOutput, WaitInput, WaitOutput, ModelEffectInput, ModelTurn, ToolResultBlock, ToolsEffectInput } from '../machines/conversation.ts';
import type { Breach } from '../machines/supervisor.machine.ts';
import { argsHash, type ApprovalRequest } from '../runtime/approvals.ts';
import type { MachineOutcome } from '../machines/outcome.ts';
import type { JsonKv } from '../runtime/json-kv.ts';
import type { TaskEvents } from '../runtime/task-events.ts';
import type { SnapshotEnvelope, TaskOutcome, WireErrorPayload } from '../runtime/wire.ts';
import type { Agent, ResolvedLimits } from './agent.ts';
import type { Breakers } from './breakers.ts';
import type { EffectGateway } from './effect-gateway.ts';
import { ApprovalNeededSignal, HandoffSignal, LimitReachedSignal, WaitSignal } from './errors.ts';
import type { ModelClient } from './model/model-client.ts';
import { SnapshotWriter } from './snapshot-writer.ts';
import { partialOf, stateString, stepOf, taskInputOf, toTaskOutcome } from './snapshot-view.ts';
import { persistedWithoutWalk, restorableSnapshot, storedSnapshot } from './stored-snapshot.ts';
import { TaskSupervisor, type InspectionObserver } from './task-supervisor.ts';
import { ProgressStream, TaskEffects } from './task-effects.ts';

/** What every task on a host shares. */
export interface TaskRunnerDeps {
  store: JsonKv<SnapshotEnvelope>;
  gateway: EffectGateway;
  events: TaskEvents;
  /** The model client serving an agent (routing may differ per agent). */
  model: (agent: Agent) => ModelClient;
  clock: Clock;
  logger: Logger;
  hostId: string;
  /** Longest a task waits for running effects when it drains or parks. */
  drainTimeoutMs: number;
  /** Circuit breakers per tool and model, shared by all hosts. */
  breakers: Breakers;
  /** An actor that throws is restarted from its last snapshot at most `intensity` times in `periodMs`. */
  restarts: { intensity: number; periodMs: number; backoffMs: number };
  /** What each principal's tasks may call (config `principals`). */
  principals: TroupeConfig['principals'];
  /** How tool calls run: inline here, isolated ones on workers. */
  execution: ToolExecution;
  /** Parents and children: wake-ups and cancellations across the task tree. */
  tree: TaskTree;
  /** Where a parked task says when it falls due, for the hosts' sweep. */
  due: DueIndex;
  /** Starts child tasks and joins them. */
  delegation: Omit<DelegationDeps, 'taskId' | 'supervisor' | 'actOnVerdict' | 'adopt'>;
  /** Reads tasks' inboxes. */
  inbox: Inbox;
  /** Told each snapshot write's latency (metrics). */
  snapshotWritten?: (ms: number) => void;
  /** Flags what looks wrong although nothing crashed, when a task ends. */
  semantic?: SemanticChecks | undefined;
  /** The XState inspector (`troupe up --inspect`): sees every agent and supervisor actor. */
  inspect?: InspectionObserver | undefined;
}

/** The task message this runner holds: holding it is owning the task. */
export interface Hold {
  seq: number;
  delivery: number;
}

/**
 * How a runner let go of its task: `finished` (outcome written and announced), `abandoned`
 * (another host advanced it, or the store refused us; nothing was overwritten) or `drained`
 * (stopped for shutdown with its last snapshot durable, ready to hand over) or `parked`
 * (saved waiting for an approver's decision; no host needs to hold it).
 */
export type RunnerEnd = 'finished' | 'abandoned' | 'drained' | 'parked';

const never = (signal: AbortSignal) => new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));

/**
 * Runs one task: its agent actor and its supervisor actor, restored from and persisted to the
 * snapshot bucket together.
 *
 * Guarantees:
 * - every write is compare-and-set on the revision this runner last wrote; a conflict means
 *   another host advanced the task, and this runner stops without writing again;
 * - no effect starts before the snapshot that records its intent is durable, and every effect
 *   goes through the gateway (at most once per key) and past the supervisor;
 * - the wall-clock deadline is the supervisor's and is re-armed on restore;
 * - an actor that throws is restarted from its last durable snapshot, with backoff, a bounded
 *   number of times.
 */
export class TaskRunner {
  readonly taskId: string;
  readonly done: Promise<RunnerEnd>;
  private resolveDone!: (end: RunnerEnd) => void;
  private actor!: AnyActor;
  private supervisor!: TaskSupervisor;
  private writer!: SnapshotWriter;
  private lastAgent: unknown;
  private lastState = '';
  /** The agent's persisted snapshot once the actor stopped: nothing after it is written. */
  private frozen: unknown;
  private outcome: TaskOutcome | undefined;
  /** The approval request this task parked on. */
  private pending: ApprovalRequest | undefined;
  /** What the task waits for when parked on child tasks. */
  private waiting: SnapshotEnvelope['waiting'];
  /** Tasks this one delegated to (persisted with every write). */
  private children: SnapshotEnvelope['children'];
  /** Deadlines of the task's waits, by effect key (persisted with every write). */
  private timers: SnapshotEnvelope['timers'];
  /** Untrusted content is in the conversation (persisted with every write). */
  private tainted = false;
  /** The state outgrew the server's message size: the machine's snapshot is no longer written. */
  private oversize = false;
  /** The task was restored from a snapshot (not created by this runner). */
  private restored = false;
  /** The actor is starting from a restored snapshot: the effects starting now are not fresh. */
  private restoring = false;
  /** Moves with every change of what {@link build} writes: the writer skips states already written. */
  private version = 0;
  /** Running totals for `troupe status`; owned here and composed into every write. */
  private usage: NonNullable<SnapshotEnvelope['usage']>;
  private ending = false;
  private draining = false;
  /** Set once the task is being cancelled: the outcome it ends with, whatever the machine does. */
  private cancelling: TaskOutcome | undefined;
  private inFlight = 0;
  private idle: (() => void) | undefined;
  private restarts: number[] = [];
  private deadlineTimer: NodeJS.Timeout | undefined;
  private progress!: ProgressStream;
  private effects!: TaskEffects;
  private readonly taskLog: Logger;
  private stepLog: { step: number | undefined; log: Logger } | undefined;

  private constructor(
    readonly agent: Agent,
    private readonly deps: TaskRunnerDeps,
    private base: SnapshotEnvelope,
    readonly hold: Hold,
  ) {
    this.taskId = base.taskId;
    this.children = base.children;
    this.timers = base.timers;
    this.usage = base.usage ?? { costUsd: 0, inputTokens: 0, outputTokens: 0, modelCalls: 0, toolCalls: 0 };
    this.taskLog = deps.logger.child({ taskId: this.taskId, agent: agent.name, actor: 'task' });
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.progress = new ProgressStream((text) => deps.events.emit(this.taskId, { type: 'progress', text }));
    this.effects = new TaskEffects({
      taskId: this.taskId,
      agent,
      deps,
      supervisor: () => this.supervisor,
      progress: this.progress,
      count: (change) => {
        this.usage = change(this.usage);
        this.version++;
      },
      actOnVerdict: () => this.actOnVerdict(),
      decision: (callKey) => this.base.approvals?.[callKey],
      principal: () => this.base.principal,
      adopt: (children) => {
        this.children = { ...this.children, ...children };
        this.version++;
      },
      timer: (key, at) => {
        // A deadline is fixed the first time its wait runs: a restart does not move it.
        if (this.timers?.[key] === undefined) {
          this.timers = { ...this.timers, [key]: at };
          this.version++;
        }
        return this.timers[key]!;
      },
      tainted: () => this.tainted,
      taint: () => {
        if (!this.tainted) this.version++;
        this.tainted = true;
      },
    });
    this.tainted = base.tainted ?? false;
  }

  /**
   * A new task: computes the machine's initial snapshot and writes it with `create`. Throws
   * `RevisionConflictError` if the task already exists.
   */
  static async create(
    agent: Agent,
    deps: TaskRunnerDeps,
    task: { taskId: string; machineInput: unknown; limits: ResolvedLimits; principal?: string | undefined; parent?: SnapshotEnvelope['parent']; metadata?: Record<string, unknown> | undefined },
    hold: Hold,
  ): Promise<TaskRunner> {
    const now = deps.clock.now();
    const base: SnapshotEnvelope = {
      v: 1,
      taskId: task.taskId,
      agent: agent.name,
      machineVersion: agent.version,
      status: 'running',
      runSeq: hold.seq,
      runDelivery: hold.delivery,
      owner: deps.hostId,
      createdAt: now,
      updatedAt: now,
      deadlineAt: null,
      state: '',
      step: 0,
      snapshot: null,
      ...(task.principal !== undefined ? { principal: task.principal } : {}),
      ...(task.parent ? { parent: task.parent } : {}),
      ...(task.metadata ? { metadata: task.metadata } : {}),
    };
    const runner = new TaskRunner(agent, deps, base, hold);
    runner.supervisor = TaskSupervisor.create(task.limits, now, deps.inspect);
    runner.actor = runner.createAgentActor({ input: task.machineInput });
    runner.base = runner.build();
    const revision = await deps.store.create(task.taskId, runner.base);
    runner.attachWriter(revision);
    return runner;
  }

  /**
   * An existing task, taken over by a new delivery of its message: claims it with a
   * compare-and-set write, so a slower previous owner's next write conflicts and stops it.
   */
  static async restore(
    agent: Agent,
    deps: TaskRunnerDeps,
    stored: { value: SnapshotEnvelope; revision: number },
    hold: Hold,
    /** Limits for a task saved before supervisors were persisted (older envelopes). */
    fallbackLimits: ResolvedLimits,
  ): Promise<TaskRunner> {
    const env = stored.value;
    // Claiming voids any hand-over in progress: only this message runs the task from now on.
    const { handover: _voided, ...rest } = env;
    const claimed: SnapshotEnvelope = { ...rest, owner: deps.hostId, runSeq: hold.seq, runDelivery: hold.delivery, updatedAt: deps.clock.now() };
    const runner = new TaskRunner(agent, deps, claimed, hold);
    runner.restored = true;
    runner.supervisor = env.supervisor
      ? TaskSupervisor.restore(env.supervisor, deps.inspect)
      : TaskSupervisor.create({ ...fallbackLimits, wallClockMs: env.deadlineAt === null ? fallbackLimits.wallClockMs : env.deadlineAt - env.createdAt }, env.createdAt, deps.inspect);
    runner.actor = runner.createAgentActor({ stored: env.snapshot });
    runner.lastState = env.state;
    const revision = await deps.store.update(runner.taskId, claimed, stored.revision);
    runner.attachWriter(revision);
    return runner;
  }

  /** Starts (or resumes) the actors. In-flight effects of a restored snapshot run again, through the ledger. */
  start(): void {
    this.watch();
    this.armDeadline();
    this.startActor(this.restored);
    // A restored supervisor may already hold a breach (the host died right after it).
    this.actOnVerdict();
  }

  /** Fails the task now with `error` (deadline, crash loop, cancellation), whatever its state. */
  async fail(error: WireErrorPayload): Promise<void> {
    if (this.ending) return;
    this.freeze();
    await this.finish({ status: 'failed', error });
  }

  /**
   * Cancels the task: no new effect starts, an effect already running (an irreversible call
   * half-way) finishes and is recorded (up to the drain timeout), then the task ends with
   * `cancelled` — and its unfinished children are cancelled in turn.
   */
  async cancel(reason: string): Promise<void> {
    if (this.ending || this.cancelling) return;
    this.cancelling = { status: 'failed', error: { code: ErrorCode.cancelled, message: `cancelled: ${reason}` } };
    this.draining = true;
    if (this.inFlight > 0) await Promise.race([new Promise<void>((r) => (this.idle = r)), this.deps.clock.sleep(this.deps.drainTimeoutMs)]);
    if (this.ending) return;
    this.freeze();
    await this.finish(this.cancelling);
  }

  /**
   * Stops the task for shutdown: no new effect starts, effects already running finish and are
   * recorded (up to `timeoutMs`), the last snapshot is written, then the actor stops.
   */
  async drain(timeoutMs: number): Promise<void> {
    if (this.ending) return;
    this.draining = true;
    if (this.inFlight > 0) await Promise.race([new Promise<void>((r) => (this.idle = r)), this.deps.clock.sleep(timeoutMs)]);
    if (this.ending) return;
    this.ending = true;
    this.freeze();
    try {
      await this.checkpoint(true);
      this.end('drained');
    } catch {
      this.end('abandoned');
    }
  }

  /** The envelope as last written. */
  get status(): SnapshotEnvelope {
    return this.writer.written;
  }

  get revisionNumber(): number {
    return this.writer.revision;
  }

  private attachWriter(revision: number): void {
    this.lastAgent = this.actor.getSnapshot();
    this.writer = new SnapshotWriter({
      store: this.deps.store,
      taskId: this.taskId,
      revision,
      written: this.base,
      build: () => this.build(),
      version: () => this.version,
      onConflict: () => {
        this.ending = true;
        this.end('abandoned');
      },
      onTooLarge: (bytes) => {
        if (this.oversize) return;
        // Nothing of this task can be saved any more: end it, saving the outcome without the
        // machine's snapshot (which is what outgrew the limit).
        this.oversize = true;
        this.version++;
        void this.fail({
          code: ErrorCode.snapshotTooLarge,
          message: `the task's state is ${bytes} bytes, more than the NATS server accepts in one message (max_payload); it cannot be saved, so it was stopped. Raise max_payload in the server's configuration, or keep the task smaller: a smaller input, tools that return a reference to large output rather than the output, or fewer steps (the agent's limits.steps). The whole conversation is saved with the task; contextTokens only trims what the model is sent`,
        });
      },
      clock: this.deps.clock,
      logger: this.log,
      onWritten: this.deps.snapshotWritten,
    });
  }

  private watch(): void {
    this.actor.subscribe({ next: (snapshot: AnyMachineSnapshot) => this.onSnapshot(snapshot), error: (err: unknown) => this.onActorError(err) });
    // The supervisor's changes (a reservation, a settled cost, a step) go out with the agent's next
    // write: each one is followed by a transition, or ends in a forced write (a breach).
    this.supervisor.actor.subscribe(() => void this.version++);
  }

  /** Each agent's machine with troupe's effects, built once per agent (see {@link machineOf}). */
  private static readonly machines = new WeakMap<Agent, AnyStateMachine>();
  /** The runner of each agent actor's system: how a shared machine's effect finds its task. */
  private static readonly runners = new WeakMap<object, TaskRunner>();

  /**
   * The agent's machine with its effects bound: built once per agent and shared by its tasks, so
   * XState's caches of the machine's transitions stay warm and a task's start does not rebuild
   * the machine. An effect finds its task's runner through the actor system it runs in, which
   * `agentLoop` (the built-in agent loop, for workflows that hand an ambiguous step to an
   * open-ended loop) shares with the task's actor.
   */
  private static machineOf(agent: Agent): AnyStateMachine {
    let machine = TaskRunner.machines.get(agent);
    if (machine) return machine;
    /** An effect of the shared machine, run by the runner of the actor system it starts in. */
    const bound = <O, I>(run: (runner: TaskRunner, input: I, signal: AbortSignal) => Promise<O>) =>
      fromPromise<O, I>(({ input, signal, system }) => {
        const runner = TaskRunner.runners.get(system as object);
        if (!runner) throw new Error(`an effect of agent ${agent.name} ran outside a task runner`);
        return run(runner, input, signal);
      });
    const effects = {
      model: bound<ModelTurn, ModelEffectInput>((r, input, signal) => r.effect(signal, (fresh) => r.effects.model(input, signal, fresh))),
      tools: bound<ToolResultBlock[], ToolsEffectInput>((r, input, signal) => r.effect(signal, (fresh) => r.effects.tools(input, signal, fresh), { intentFirst: !r.readsInProcess(input) })),
      delegate: bound<DelegateOutput, DelegateInput>((r, input, signal) => r.effect(signal, () => r.effects.delegate(input))),
      wait: bound<WaitOutput, WaitInput>((r, input, signal) => r.effect(signal, () => r.effects.wait(input))),
    };
    // Both persisted without XState's walk of their (JSON) contexts: see persistedWithoutWalk.
    const sources = new Set([...Object.keys(effects), 'agentLoop']);
    const agentLoop = persistedWithoutWalk(agentLoopMachine.provide({ actors: effects }), sources);
    machine = persistedWithoutWalk(agent.machine.provide({ actors: { ...effects, agentLoop } }), sources);
    TaskRunner.machines.set(agent, machine);
    return machine;
  }

  /**
   * The task's agent actor (not started), from its input or from a snapshot as its envelope stores
   * it (see {@link storedSnapshot}), with its effects bound to this runner.
   */
  private createAgentActor(from: { input: unknown } | { stored: unknown }): AnyActor {
    const start = 'stored' in from ? { snapshot: restorableSnapshot(from.stored) } : from;
    const actor = createActor(TaskRunner.machineOf(this.agent), { ...start, ...this.inspection() } as never) as AnyActor;
    TaskRunner.runners.set(actor.system, this);
    return actor;
  }

  /**
   * Every effect: wait until its intent is durable (unless `intentFirst` is false: see
   * {@link readsInProcess}); while draining, never start. `run` is told whether the effect is
   * fresh: started by a transition of this runner, not restored in flight from a snapshot (whose
   * effects a previous runner may have run).
   */
  private async effect<T>(signal: AbortSignal, run: (fresh: boolean) => Promise<T>, { intentFirst = true } = {}): Promise<T> {
    // XState starts a restored snapshot's in-flight effects inside `actor.start()`.
    const fresh = !this.restoring;
    if (intentFirst) await this.checkpoint();
    // The intent is durable; whoever resumes the task runs it.
    if (this.draining || this.ending) return never(signal);
    this.inFlight++;
    try {
      return await run(fresh);
    } catch (err) {
      if (err instanceof ApprovalNeededSignal) void this.park({ request: this.toolRequest(err) });
      else if (err instanceof WaitSignal) void this.park({ waiting: err.waiting });
      else if (err instanceof HandoffSignal) void this.handedOff(err);
      else if (isNatsFailure(err)) this.letGo(err);
      else if (!(err instanceof LimitReachedSignal)) throw err;
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) this.idle?.();
    }
    // Refused (a limit, or a call waiting for an approver) and no longer in flight: the runner
    // stops or parks the task; the effect never resolves.
    return never(signal);
  }

  /**
   * Whether a round of tool calls only reads, in this process: every call names a read-only tool
   * that runs `inline`. Such a round starts without a snapshot write of its own. Nothing leaves the
   * process (invariant 1 is about what does), and if the process dies before the next write, the
   * task resumes at the model turn that asked for the calls (replayed from the ledger, not paid
   * again) and reads again. The write before the next model call carries the results and that
   * call's intent: one write per step instead of two. Anything else (a side effect, a worker, a
   * delegation, an unknown tool) is written first.
   */
  private readsInProcess(input: ToolsEffectInput): boolean {
    return input.calls.every((call) => {
      const tool = this.agent.tools.get(call.name);
      return tool !== undefined && tool.isolation === 'inline' && !tool.sideEffect && tool.delegation === undefined;
    });
  }

  /**
   * Acts on a supervisor breach: `stop` ends the task with `limit_exceeded`, the limit, the
   * figures and the partial result.
   */
  private actOnVerdict(): void {
    const verdict = this.supervisor.verdict();
    if (!verdict || this.ending) return;
    const { breach, action } = verdict;
    this.deps.events.emit(this.taskId, { type: 'limit', limit: breach.limit, used: breach.used, max: breach.max, message: breach.message, action }, `${this.taskId}:limit:${breach.limit}:${breach.max}`);
    if (action === 'escalate') {
      void this.park({ request: this.limitRequest(breach) });
      return;
    }
    const details = { limit: breach.limit, used: breach.used, max: breach.max, partial: partialOf(this.actor.getSnapshot() as AnyMachineSnapshot) };
    void this.fail({ code: ErrorCode.limitExceeded, message: breach.message, details });
  }

  private onSnapshot(snapshot: AnyMachineSnapshot): void {
    if (this.ending) return;
    const state = stateString(snapshot.value);
    const step = stepOf(snapshot);
    if (state !== this.lastState) {
      this.lastState = state;
      this.deps.events.stepEvent(this.taskId, { type: 'state', state, step }, `${this.taskId}:state:${step}:${state}`);
    }
    if (snapshot.status === 'done') {
      // Cancelled while its last effect finished: the work is recorded, but the task was cancelled.
      void this.finish(this.cancelling ? this.cancelling : toTaskOutcome(snapshot.output as MachineOutcome | undefined));
      return;
    }
    this.markDirty();
  }

  /**
   * Parks the task: running effects finish and are recorded, nothing new starts, the task is
   * saved as `parked` with what it waits for, and the host lets go of it (no memory held). For
   * an approver, the request is published durably (approvers may be offline); a decision wakes
   * the task on any host. For child tasks, the end of the last child the join needs wakes it.
   */
  private async park(on: { request: ApprovalRequest } | { waiting: NonNullable<SnapshotEnvelope['waiting']> }): Promise<void> {
    if (this.ending) return;
    this.ending = true;
    this.draining = true;
    clearTimeout(this.deadlineTimer);
    if (this.inFlight > 0) await Promise.race([new Promise<void>((r) => (this.idle = r)), this.deps.clock.sleep(this.deps.drainTimeoutMs)]);
    this.freeze();
    if ('request' in on) this.pending = on.request;
    else this.waiting = on.waiting;
    try {
      // Indexed before the park is saved: a crash in between leaves an entry the sweep drops,
      // never a parked task whose deadline nobody watches.
      const dueAt = dueAtOf({ status: 'parked', pending: this.pending, waiting: this.waiting, deadlineAt: this.supervisor.deadlineAt });
      if (dueAt !== undefined) await this.deps.due.add(this.taskId, dueAt);
      await this.checkpoint(true);
      if (this.pending) {
        await this.deps.events.requestApproval(this.pending);
        this.deps.events.emit(this.taskId, { type: 'escalated', requestId: this.pending.requestId, reason: this.pending.reason }, `${this.pending.requestId}:escalated`);
        this.log.info({ requestId: this.pending.requestId, kind: this.pending.kind }, 'task parked for an approver');
      } else if (this.waiting!.reason === 'children') {
        const { children, join, key } = this.waiting!;
        this.deps.events.emit(this.taskId, { type: 'waiting', children, join }, `${key}:waiting`);
        this.log.info({ children, join }, 'task parked until its children join');
      } else {
        const { after, wakeAt, key } = this.waiting!;
        this.deps.events.emit(this.taskId, { type: 'waiting', inbox: { after, until: wakeAt } }, `${key}:waiting:${after}`);
        this.log.info({ after, wakeAt }, 'task parked until an inbox event or its timer');
      }
      this.end('parked');
      // What it waits for may have happened before the park was written: then nobody else wakes it.
      if (this.waiting) await this.deps.tree.wakeIfDue(this.taskId);
    } catch (err) {
      this.log.warn({ err }, 'task could not be parked; leaving it to be resumed');
      this.end('abandoned');
    }
  }

  /** The task's logger, with the step it is at bound on every line. */
  private get log(): Logger {
    const step = this.actor ? stepOf(this.actor.getSnapshot() as AnyMachineSnapshot) : undefined;
    if (!this.stepLog || this.stepLog.step !== step) this.stepLog = { step, log: step === undefined ? this.taskLog : this.taskLog.child({ step }) };
    return this.stepLog.log;
  }

  /** The actor option that connects the agent's actor to the inspector, with the task as its system id. */
  private inspection(): { inspect?: InspectionObserver; systemId?: string } {
    return this.deps.inspect ? { inspect: this.deps.inspect, systemId: `task:${this.taskId}` } : {};
  }

  /** Asks the agent's judge about a finished task's output; returns its answer. */
  private async judge(output: unknown): Promise<string> {
    const judge = this.agent.judge!;
    const snapshot = this.frozen ? undefined : (this.actor.getSnapshot() as AnyMachineSnapshot);
    const input = snapshot ? taskInputOf(snapshot) : undefined;
    const turn = await this.effects.model(
      {
        key: `${this.taskId}/judge/0`,
        role: 'judge',
        step: this.supervisor.context.used.steps,
        system: `${judge.instructions}\n\nAnswer with PASS, or with FAIL followed by the reason, in one line.`,
        tools: [],
        maxTokens: judge.maxTokens ?? 128,
        messages: [{ role: 'user', content: `Task input:\n${JSON.stringify(input)}\n\nThe agent's output:\n${typeof output === 'string' ? output : JSON.stringify(output)}` }],
      },
      new AbortController().signal,
    );
    return turn.content.filter((b) => b.type === 'text').map((b) => (b as { text: string }).text).join('');
  }

  /**
   * NATS failed under an effect (a ledger write timed out, the connection is gone): the effect's
   * outcome is not known here, so the machine must not see it as the effect's failure. The task
   * is let go without writing: its message comes back after the lease, and whoever takes it
   * resumes from the last snapshot, the effect going through the ledger again.
   */
  private letGo(err: unknown): void {
    if (this.ending) return;
    this.log.warn({ err }, 'NATS failed under an effect; letting the task go, to be resumed from its last snapshot');
    this.ending = true;
    this.end('abandoned');
  }

  /** The task was handed over and the new task ended: this one ends with its outcome. */
  private async handedOff(signal: HandoffSignal): Promise<void> {
    if (this.ending) return;
    this.log.info({ to: signal.to }, 'task handed over; ending with the new task\'s outcome');
    this.freeze();
    await this.finish(signal.outcome);
  }

  private spent() {
    const { used } = this.supervisor.context;
    return { usd: used.usd, tokens: used.tokens, steps: used.steps };
  }

  /** Asks for more of a limit that was reached. */
  private limitRequest(breach: Breach): ApprovalRequest {
    return {
      v: 1,
      requestId: `${this.taskId}.${breach.limit}.${this.supervisor.context.used.steps}.${breach.max}`,
      taskId: this.taskId,
      agent: this.agent.name,
      kind: 'limit',
      reason: `${breach.message}. Grant more to let the task continue from where it stopped.`,
      limit: { name: breach.limit, used: breach.used, max: breach.max, message: breach.message },
      ask: { amount: breach.max },
      spent: this.spent(),
      ...this.sla(this.deps.clock.now()),
    };
  }

  /** When a request is created, its deadline and what the deadline does (the agent's policy). */
  private sla(now: number): Pick<ApprovalRequest, 'createdAt' | 'deadlineAt' | 'onDeadline' | 'tier'> {
    const { deadlineMs, onDeadline } = this.agent.approvals;
    return { createdAt: now, tier: 1, ...(deadlineMs ? { deadlineAt: now + deadlineMs, onDeadline: onDeadline ?? 'reject' } : {}) };
  }

  /** Asks whether a tool call may run, with everything an approver needs to decide. */
  private toolRequest(signal: ApprovalNeededSignal): ApprovalRequest {
    const { tool, args, need, callKey } = signal;
    const snapshot = this.actor.getSnapshot() as AnyMachineSnapshot;
    const rationale = signal.rationale ?? partialOf(snapshot);
    const quorum = this.agent.approvals.quorum?.[tool.name];
    const amount = tool.amount?.(args);
    return {
      v: 1,
      requestId: `${this.taskId}.tool.${callKey.split('/').slice(1).join('-')}${signal.unknownOutcome ? `.unknown${signal.unknownOutcome.attempt}` : ''}`,
      taskId: this.taskId,
      agent: this.agent.name,
      kind: 'tool',
      callKey,
      reason: `${tool.name} needs approval: ${need.details.join('; ')}`,
      reasons: need.reasons,
      tool: { name: tool.name, description: tool.description, reversibility: tool.reversibility, inputSchema: tool.inputJsonSchema },
      args,
      argsHash: argsHash(args),
      ...(typeof rationale === 'string' ? { rationale } : {}),
      ...(need.confidence !== undefined ? { confidence: need.confidence } : {}),
      ...(amount !== undefined ? { amount } : {}),
      ...(quorum && quorum > 1 && !signal.unknownOutcome ? { quorum } : {}),
      ...(signal.unknownOutcome ? { unknownOutcome: signal.unknownOutcome } : {}),
      taskInput: taskInputOf(snapshot),
      spent: this.spent(),
      ...this.sla(this.deps.clock.now()),
    };
  }

  /**
   * The machine threw. Its state is not persisted; the actor is restarted from the last durable
   * snapshot after a backoff, unless it already restarted `intensity` times within `periodMs`.
   */
  private onActorError(caught: unknown): void {
    if (this.ending) return;
    const err = ensureError(caught);
    const { intensity, periodMs, backoffMs } = this.deps.restarts;
    const now = this.deps.clock.now();
    this.restarts = [...this.restarts.filter((t) => t > now - periodMs), now];
    if (this.restarts.length > intensity) {
      this.log.error({ err, restarts: this.restarts.length }, 'actor keeps throwing; giving up');
      this.frozen = this.writer.written.snapshot;
      this.writer.resume();
      void this.finish({
        status: 'failed',
        error: { code: ErrorCode.restartIntensityExceeded, message: `the task's machine threw ${this.restarts.length} times within ${periodMs} ms (limit ${intensity}); last error: ${err.message}` },
      });
      return;
    }
    this.log.warn({ err, restart: this.restarts.length }, 'actor threw; restarting it from its last snapshot');
    void this.restartActor(backoffMs * 2 ** (this.restarts.length - 1));
  }

  private async restartActor(delayMs: number): Promise<void> {
    await this.writer.pause();
    await this.deps.clock.sleep(delayMs);
    if (this.ending) return;
    const last = this.writer.written;
    if (last.supervisor) this.supervisor = TaskSupervisor.restore(last.supervisor, this.deps.inspect);
    this.actor = this.createAgentActor({ stored: last.snapshot });
    this.lastAgent = this.actor.getSnapshot();
    this.writer.resume();
    this.watch();
    this.armDeadline();
    this.startActor(true);
    this.actOnVerdict();
  }

  /** Starts the actor; the effects a restored snapshot had in flight start inside, not fresh. */
  private startActor(restored: boolean): void {
    this.restoring = restored;
    try {
      this.actor.start();
    } finally {
      this.restoring = false;
    }
  }

  private async finish(outcome: TaskOutcome): Promise<void> {
    if (this.ending) return;
    this.ending = true;
    clearTimeout(this.deadlineTimer);
    this.progress.flush();
    this.outcome = outcome;
    try {
      // The judge's call is an effect like any other: recorded (a replay gets the same verdict), and paid for by the task.
      const verdict = outcome.status === 'done' && this.agent.judge ? await this.judge(outcome.output).catch((err: unknown) => void this.log.warn({ err }, 'judge not consulted')) : undefined;
      await this.checkpoint(true);
      if (verdict && !/^\s*PASS\b/i.test(verdict)) {
        await this.deps.events.publish(this.taskId, { type: 'flag', kind: 'judge', message: `the judge did not pass the output: ${verdict.trim().slice(0, 500)}` }, `${this.taskId}:flag:judge`);
      }
      await this.deps.semantic?.check(this.writer.written, this.agent.output).catch((err: unknown) => this.log.warn({ err }, 'semantic checks not run'));
      await this.deps.events.publish(this.taskId, outcome.status === 'done' ? { type: 'done', output: outcome.output } : { type: 'failed', error: outcome.error }, `${this.taskId}:end`);
      this.log.info({ outcome: outcome.status, ...(outcome.status === 'failed' ? { error: outcome.error } : {}) }, 'task ended');
      this.end('finished');
      await this.deps.tree.ended(this.writer.written).catch((err: unknown) => {
        this.log.warn({ err }, 'parent or children not told of the end; the sweep will look at the parent');
        const parent = this.writer.written.parent;
        if (parent) this.deps.due.add(parent.taskId, this.deps.clock.now()).catch(() => {});
      });
      await this.deps.semantic?.learnFrom(this.writer.written).catch((err: unknown) => this.log.warn({ err }, 'baseline not updated'));
    } catch (err) {
      this.log.warn({ err }, 'task outcome not recorded; leaving the task to be resumed');
      this.end('abandoned');
    }
  }

  private end(how: RunnerEnd): void {
    clearTimeout(this.deadlineTimer);
    this.progress.flush();
    if (!this.frozen) this.freeze();
    this.writer.stop(new Error(`task ${how}`));
    this.resolveDone(how);
  }

  /** Captures the last snapshot and stops the actor: nothing it does afterwards is persisted. */
  private freeze(): void {
    if (this.frozen) return;
    this.frozen = this.actor.getPersistedSnapshot();
    this.actor.stop();
  }

  /**
   * Asks for a write (at the end of this turn of the event loop) if the agent's snapshot changed
   * since the last look, or if `force`d (the runner's own state changed: parked, ended). The
   * supervisor's changes move the version themselves (see `watch`).
   */
  private markDirty(force = false): void {
    const agent = this.frozen ?? this.actor.getSnapshot();
    if (!force && agent === this.lastAgent) return;
    this.lastAgent = agent;
    this.version++;
    this.writer.request();
  }

  /** Resolves once the task's current state is durable (writing it now if it is not written yet). */
  private checkpoint(force = false): Promise<void> {
    this.markDirty(force);
    return this.writer.flush();
  }

  private build(): SnapshotEnvelope {
    const outcome = this.outcome;
    const snapshot = this.frozen ? undefined : (this.actor.getSnapshot() as AnyMachineSnapshot);
    const base = this.writer?.written ?? this.base;
    return {
      ...base,
      owner: this.deps.hostId,
      status: outcome ? outcome.status : this.pending || this.waiting ? 'parked' : 'running',
      updatedAt: this.deps.clock.now(),
      state: snapshot ? stateString(snapshot.value) : base.state,
      step: snapshot ? (stepOf(snapshot) ?? base.step) : base.step,
      snapshot: this.oversize ? null : storedSnapshot(this.frozen ?? this.actor.getPersistedSnapshot()),
      supervisor: this.supervisor.persisted(),
      deadlineAt: this.supervisor.deadlineAt,
      usage: this.usage,
      ...(this.tainted ? { tainted: true } : {}),
      ...(outcome ? { outcome } : {}),
      ...(this.pending ? { pending: this.pending } : {}),
      ...(this.waiting && !outcome ? { waiting: this.waiting } : {}),
      ...(this.children ? { children: this.children } : {}),
      ...(this.timers ? { timers: this.timers } : {}),
    };
  }

  /** Arms the wall-clock deadline kept by the supervisor (counted from the task's start). */
  private armDeadline(): void {
    clearTimeout(this.deadlineTimer);
    const fire = () => {
      this.supervisor.wallClockReached();
      this.actOnVerdict();
    };
    const delay = this.supervisor.deadlineAt - this.deps.clock.now();
    if (delay <= 0) queueMicrotask(fire);
    else this.deadlineTimer = setTimeout(fire, Math.min(delay, 2 ** 31 - 1));
  }

}
