import type { Logger } from 'pino';
import { createActor, fromPromise, type AnyActor, type AnyMachineSnapshot, type AnyStateMachine, type Snapshot } from 'xstate';
import type { Clock } from '../common/clock.ts';
import { ensureError, ErrorCode } from '../common/errors.ts';
import { textOf, type Message, type ModelEffectInput, type ModelTurn, type ToolResultBlock, type ToolsEffectInput } from '../machines/conversation.ts';
import { agentLoopMachine } from '../machines/agent-loop.machine.ts';
import type { MachineOutcome } from '../machines/outcome.ts';
import { RevisionConflictError, type JsonKv } from '../runtime/json-kv.ts';
import type { TaskEvents } from '../runtime/task-events.ts';
import type { SnapshotEnvelope, TaskOutcome } from '../runtime/wire.ts';
import type { Agent } from './agent.ts';
import type { EffectGateway } from './effect-gateway.ts';
import { runModelEffect } from './model-effect.ts';
import type { ModelClient } from './model/model-client.ts';
import { TaskSupervisor } from './task-supervisor.ts';
import { LimitReachedSignal } from './errors.ts';
import type { ResolvedLimits } from './agent.ts';
import { runToolsEffect } from './tool-effect.ts';

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
}

/** The task message this runner holds: holding it is owning the task. */
export interface Hold {
  seq: number;
  delivery: number;
}

/**
 * How a runner let go of its task: `finished` (outcome written and announced), `abandoned`
 * (another host advanced it, or the store refused us; nothing was overwritten) or `drained`
 * (stopped for shutdown with its last snapshot durable, ready to hand over).
 */
export type RunnerEnd = 'finished' | 'abandoned' | 'drained';

const PROGRESS_FLUSH_MS = 200;

/**
 * Runs one task: an XState actor restored from, and persisted to, the snapshot bucket.
 *
 * Guarantees:
 * - every snapshot is written compare-and-set on the revision this runner last wrote; a
 *   conflict means another host advanced the task, and this runner stops without writing again;
 * - no effect starts before the snapshot that records its intent is durable (checkpoint before
 *   effect), and every effect goes through the gateway (at most once per key);
 * - the wall-clock deadline is kept in the envelope and re-armed on restore.
 */
export class TaskRunner {
  readonly taskId: string;
  readonly done: Promise<RunnerEnd>;
  private resolveDone!: (end: RunnerEnd) => void;
  private actor!: AnyActor;
  private revision: number;
  private envelope: SnapshotEnvelope;
  private dirty = 0;
  private written = 0;
  private writing: Promise<void> | undefined;
  private waiters: Array<{ seq: number; resolve: () => void; reject: (err: Error) => void }> = [];
  private lastMarked: unknown;
  private lastSupervisor: unknown;
  private supervisor!: TaskSupervisor;
  private lastState = '';
  private frozen: unknown;
  private outcome: TaskOutcome | undefined;
  /** Running totals for `troupe status`; owned here and composed into every write. */
  private usage: NonNullable<SnapshotEnvelope['usage']>;
  private outcomeDirty = false;
  private ending = false;
  private draining = false;
  private inFlight = 0;
  private idle: (() => void) | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private progress = '';
  private progressTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  private constructor(
    readonly agent: Agent,
    private readonly deps: TaskRunnerDeps,
    envelope: SnapshotEnvelope,
    revision: number,
    readonly hold: Hold,
  ) {
    this.taskId = envelope.taskId;
    this.envelope = envelope;
    this.usage = envelope.usage ?? emptyUsage();
    this.revision = revision;
    this.log = deps.logger.child({ taskId: this.taskId, agent: agent.name, actor: 'task' });
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  /**
   * A new task: computes the machine's initial snapshot and writes it with `create`. Throws
   * {@link RevisionConflictError} if the task already exists.
   */
  static async create(
    agent: Agent,
    deps: TaskRunnerDeps,
    task: { taskId: string; machineInput: unknown; limits: ResolvedLimits; metadata?: Record<string, unknown> | undefined },
    hold: Hold,
  ): Promise<TaskRunner> {
    const now = deps.clock.now();
    const envelope: SnapshotEnvelope = {
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
      deadlineAt: now + task.limits.wallClockMs,
      state: '',
      step: 0,
      snapshot: null,
      usage: emptyUsage(),
      ...(task.metadata ? { metadata: task.metadata } : {}),
    };
    const runner = new TaskRunner(agent, deps, envelope, 0, hold);
    runner.supervisor = TaskSupervisor.create(task.limits, now);
    runner.actor = createActor(runner.providedMachine(), { input: task.machineInput });
    const initial = runner.actor.getSnapshot() as AnyMachineSnapshot;
    runner.lastMarked = initial;
    runner.lastSupervisor = runner.supervisor.actor.getSnapshot();
    runner.envelope = runner.build(runner.actor.getPersistedSnapshot(), initial);
    runner.revision = await deps.store.create(task.taskId, runner.envelope);
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
    const runner = new TaskRunner(agent, deps, stored.value, stored.revision, hold);
    const env = stored.value;
    runner.supervisor = env.supervisor
      ? TaskSupervisor.restore(env.supervisor)
      : TaskSupervisor.create({ ...fallbackLimits, wallClockMs: env.deadlineAt === null ? fallbackLimits.wallClockMs : env.deadlineAt - env.createdAt }, env.createdAt);
    runner.actor = createActor(runner.providedMachine(), { snapshot: stored.value.snapshot as Snapshot<unknown> });
    runner.lastMarked = runner.actor.getSnapshot();
    runner.lastSupervisor = runner.supervisor.actor.getSnapshot();
    const claimed: SnapshotEnvelope = { ...stored.value, owner: deps.hostId, runSeq: hold.seq, runDelivery: hold.delivery, updatedAt: deps.clock.now() };
    runner.revision = await deps.store.update(runner.taskId, claimed, stored.revision);
    runner.envelope = claimed;
    runner.lastState = claimed.state;
    return runner;
  }

  /** Starts (or resumes) the actor. In-flight effects of a restored snapshot run again, through the ledger. */
  start(): void {
    this.actor.subscribe({
      next: (snapshot: AnyMachineSnapshot) => this.onSnapshot(snapshot),
      error: (err: unknown) => void this.finish({ status: 'failed', error: { code: ErrorCode.machineError, message: ensureError(err).message } }),
    });
    this.supervisor.actor.subscribe(() => this.markDirty());
    this.armDeadline();
    this.actor.start();
    // A restored supervisor may already have a breach to act on (a crash right after it).
    this.actOnVerdict();
  }

  /** Fails the task now with `error` (deadline, crash loop, cancellation), whatever its state. */
  async fail(error: { code: string; message: string; details?: Record<string, unknown> }): Promise<void> {
    if (this.ending) return;
    this.freeze();
    await this.finish({ status: 'failed', error });
  }

  /**
   * Stops the task for shutdown: no new effect starts, effects already running finish and are
   * recorded (up to `timeoutMs`), the last snapshot is written, then the actor stops.
   */
  async drain(timeoutMs: number): Promise<void> {
    if (this.ending) return;
    this.draining = true;
    if (this.inFlight > 0) {
      await Promise.race([new Promise<void>((r) => (this.idle = r)), this.deps.clock.sleep(timeoutMs)]);
    }
    if (this.ending) return;
    this.ending = true;
    this.freeze();
    clearTimeout(this.deadlineTimer);
    try {
      this.outcomeDirty = true;
      await this.checkpoint();
      this.end('drained');
    } catch {
      this.end('abandoned');
    }
  }

  /** The current envelope as last written. */
  get status(): SnapshotEnvelope {
    return this.envelope;
  }

  get revisionNumber(): number {
    return this.revision;
  }

  /**
   * The agent's machine with its effects bound to this task. `agentLoop` is the built-in agent
   * loop with the same effects, for workflows that hand an ambiguous step to an open-ended loop.
   */
  private providedMachine(): AnyStateMachine {
    const effects = {
      model: fromPromise<ModelTurn, ModelEffectInput>(({ input, signal }) => this.effect(signal, () => this.modelEffect(input, signal))),
      tools: fromPromise<ToolResultBlock[], ToolsEffectInput>(({ input, signal }) => this.effect(signal, () => this.toolsEffect(input, signal))),
    };
    return this.agent.machine.provide({ actors: { ...effects, agentLoop: agentLoopMachine.provide({ actors: effects }) } });
  }

  /** Every effect: wait until its intent is durable; while draining, never start. */
  private async effect<T>(signal: AbortSignal, run: () => Promise<T>): Promise<T> {
    await this.checkpoint();
    if (this.draining || this.ending) {
      // The intent is durable; whoever resumes the task runs it.
      await new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
    }
    this.inFlight++;
    try {
      return await run();
    } catch (err) {
      if (!(err instanceof LimitReachedSignal)) throw err;
      // The supervisor refused the effect; the runner stops or parks the task. Never resolve.
      return await new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) this.idle?.();
    }
  }

  private modelEffect(input: ModelEffectInput, signal: AbortSignal) {
    return runModelEffect(
      input,
      {
        gateway: this.deps.gateway,
        client: this.deps.model(this.agent),
        system: this.agent.system,
        tools: this.agent.tools,
        deadlineAt: this.supervisor.deadlineAt,
        contextTokens: this.agent.contextTokens,
        admit: (key, request) => {
          const client = this.deps.model(this.agent);
          const quote = client.quote?.(request);
          const granted = this.supervisor.reserve(key, quote);
          if (granted === undefined) {
            this.actOnVerdict();
            throw new LimitReachedSignal(key);
          }
          return quote ? granted : undefined;
        },
        onFailure: (key) => this.supervisor.release(key),
        onText: (delta) => this.onText(delta),
        onResult: (call, result, replayed, trim) => {
          this.flushProgress();
          this.supervisor.settle(call.key, result);
          const { used, limits } = this.supervisor.context;
          this.deps.events.emit(this.taskId, { type: 'budget', used: { usd: used.usd, tokens: used.tokens, steps: used.steps }, limits }, `${call.key}:budget`);
          this.actOnVerdict();
          const usage = this.usage;
          this.usage = {
            ...usage,
            costUsd: usage.costUsd + result.costUsd,
            inputTokens: usage.inputTokens + result.usage.inputTokens + result.usage.cacheCreationInputTokens + result.usage.cacheReadInputTokens,
            outputTokens: usage.outputTokens + result.usage.outputTokens,
            modelCalls: usage.modelCalls + 1,
          };
          this.deps.events.emit(
            this.taskId,
            {
              type: 'model',
              key: call.key,
              model: result.model,
              role: result.role,
              usage: result.usage,
              costUsd: result.costUsd,
              latencyMs: result.latencyMs,
              stopReason: result.stopReason,
              attempts: result.attempts,
              replayed,
              ...(trim.elidedToolResults || trim.droppedTurns ? { trimmed: { estimatedTokens: trim.estimatedTokens, elidedToolResults: trim.elidedToolResults, droppedTurns: trim.droppedTurns } } : {}),
            },
            `${call.key}:model`,
          );
        },
      },
      signal,
    );
  }

  private async toolsEffect(input: ToolsEffectInput, signal: AbortSignal): Promise<ToolResultBlock[]> {
    const results = await runToolsEffect(
      input,
      {
        gateway: this.deps.gateway,
        taskId: this.taskId,
        tools: this.agent.tools,
        now: () => this.deps.clock.now(),
        onResult: (report) => {
          this.usage = { ...this.usage, toolCalls: this.usage.toolCalls + 1 };
          this.deps.events.emit(this.taskId, { type: 'tool', ...report }, `${report.key}:tool`);
        },
      },
      signal,
    );
    this.supervisor.step(input, results);
    this.actOnVerdict();
    return results;
  }

  /**
   * Acts on a supervisor breach: `stop` ends the task with `limit_exceeded`, the limit, the
   * figures and the partial result; `escalate` parks it for an approver.
   */
  private actOnVerdict(): void {
    const verdict = this.supervisor.verdict();
    if (!verdict || this.ending) return;
    const { breach, action } = verdict;
    this.deps.events.emit(this.taskId, { type: 'limit', limit: breach.limit, used: breach.used, max: breach.max, message: breach.message, action }, `${this.taskId}:limit:${breach.limit}:${breach.max}`);
    const details = { limit: breach.limit, used: breach.used, max: breach.max, partial: partialOf(this.actor.getSnapshot() as AnyMachineSnapshot) };
    void this.fail({ code: ErrorCode.limitExceeded, message: breach.message, details });
  }

  private onSnapshot(snapshot: AnyMachineSnapshot): void {
    if (this.ending) return;
    const state = stateString(snapshot.value);
    const step = stepOf(snapshot);
    if (state !== this.lastState) {
      this.lastState = state;
      this.deps.events.emit(this.taskId, { type: 'state', state, step }, `${this.taskId}:state:${step}:${state}`);
    }
    if (snapshot.status === 'done') {
      void this.finish(toTaskOutcome(snapshot.output as MachineOutcome | undefined));
      return;
    }
    this.markDirty();
  }

  private async finish(outcome: TaskOutcome): Promise<void> {
    if (this.ending) return;
    this.ending = true;
    clearTimeout(this.deadlineTimer);
    this.flushProgress();
    this.outcome = outcome;
    this.outcomeDirty = true;
    try {
      await this.checkpoint();
      await this.deps.events.publish(this.taskId, outcome.status === 'done' ? { type: 'done', output: outcome.output } : { type: 'failed', error: outcome.error }, `${this.taskId}:end`);
      this.log.info({ outcome: outcome.status, ...(outcome.status === 'failed' ? { error: outcome.error } : {}) }, 'task ended');
      this.end('finished');
    } catch (err) {
      this.log.warn({ err }, 'task outcome not recorded; leaving the task to be resumed');
      this.end('abandoned');
    }
  }

  private end(how: RunnerEnd): void {
    clearTimeout(this.deadlineTimer);
    clearTimeout(this.progressTimer);
    if (!this.frozen) this.freeze();
    for (const w of this.waiters.splice(0)) w.reject(new Error(`task ${how}`));
    this.resolveDone(how);
  }

  /** Captures the last snapshot and stops the actor: nothing it does afterwards is persisted. */
  private freeze(): void {
    if (this.frozen) return;
    this.frozen = this.actor.getPersistedSnapshot();
    this.actor.stop();
  }

  /** Schedules a write if the agent's or the supervisor's snapshot changed since the last one. */
  private markDirty(): void {
    const agent = this.frozen ?? this.actor.getSnapshot();
    const supervisor = this.supervisor.actor.getSnapshot();
    if (agent === this.lastMarked && supervisor === this.lastSupervisor && !this.outcomeDirty) return;
    this.lastMarked = agent;
    this.lastSupervisor = supervisor;
    this.outcomeDirty = false;
    this.dirty++;
    this.writing ??= this.writeLoop();
  }

  /** Resolves once the actor's current snapshot is durable. */
  private checkpoint(): Promise<void> {
    this.markDirty();
    const target = this.dirty;
    if (this.written >= target) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ seq: target, resolve, reject }));
  }

  private async writeLoop(): Promise<void> {
    let backoff = 100;
    while (this.written < this.dirty) {
      const seq = this.dirty;
      const persisted = this.frozen ?? this.actor.getPersistedSnapshot();
      const next = this.build(persisted, this.frozen ? undefined : (this.actor.getSnapshot() as AnyMachineSnapshot));
      try {
        this.revision = await this.deps.store.update(this.taskId, next, this.revision);
        this.envelope = next;
        this.written = seq;
        backoff = 100;
        for (const w of this.waiters.filter((w) => w.seq <= seq)) w.resolve();
        this.waiters = this.waiters.filter((w) => w.seq > seq);
      } catch (err) {
        if (err instanceof RevisionConflictError) {
          this.log.warn('another host advanced this task; stopping here without writing');
          this.writing = undefined;
          this.ending = true;
          this.end('abandoned');
          return;
        }
        this.log.warn({ err }, 'snapshot write failed; retrying');
        await this.deps.clock.sleep(backoff);
        backoff = Math.min(backoff * 2, 2000);
      }
    }
    this.writing = undefined;
  }

  private build(persisted: unknown, snapshot: AnyMachineSnapshot | undefined): SnapshotEnvelope {
    const outcome = this.outcome;
    return {
      ...this.envelope,
      owner: this.deps.hostId,
      status: outcome ? outcome.status : 'running',
      updatedAt: this.deps.clock.now(),
      state: snapshot ? stateString(snapshot.value) : this.envelope.state,
      step: snapshot ? stepOf(snapshot) ?? this.envelope.step : this.envelope.step,
      snapshot: persisted,
      supervisor: this.supervisor.persisted(),
      deadlineAt: this.supervisor.deadlineAt,
      usage: this.usage,
      ...(outcome ? { outcome } : {}),
    };
  }

  /** Arms the wall-clock deadline kept by the supervisor (counted from the task's start). */
  private armDeadline(): void {
    clearTimeout(this.deadlineTimer);
    const at = this.supervisor.deadlineAt;
    const fire = () => {
      this.supervisor.wallClockReached();
      this.actOnVerdict();
    };
    const delay = at - this.deps.clock.now();
    if (delay <= 0) queueMicrotask(fire);
    else this.deadlineTimer = setTimeout(fire, Math.min(delay, 2 ** 31 - 1));
  }

  private onText(delta: string): void {
    this.progress += delta;
    this.progressTimer ??= setTimeout(() => this.flushProgress(), PROGRESS_FLUSH_MS);
  }

  private flushProgress(): void {
    clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
    if (!this.progress) return;
    const text = this.progress;
    this.progress = '';
    this.deps.events.emit(this.taskId, { type: 'progress', text });
  }
}

function emptyUsage() {
  return { costUsd: 0, inputTokens: 0, outputTokens: 0, modelCalls: 0, toolCalls: 0 };
}

/** `thinking`, `review.waiting`, or `a.x,b.y` for parallel states. */
export function stateString(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value !== 'object' || value === null) return String(value);
  return Object.entries(value as Record<string, unknown>)
    .map(([k, v]) => {
      const inner = stateString(v);
      return inner ? `${k}.${inner}` : k;
    })
    .join(',');
}

function stepOf(snapshot: AnyMachineSnapshot): number | undefined {
  const step = (snapshot.context as { step?: unknown } | undefined)?.step;
  return typeof step === 'number' ? step : undefined;
}

function toTaskOutcome(output: MachineOutcome | undefined): TaskOutcome {
  if (output && (output.status === 'done' || output.status === 'failed')) return output;
  return { status: 'done', output: output ?? null };
}


/** What the task had produced when it was stopped: the agent's last words, if it has any. */
function partialOf(snapshot: AnyMachineSnapshot): unknown {
  const messages = (snapshot.context as { messages?: Message[] } | undefined)?.messages;
  if (!Array.isArray(messages)) return null;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role !== 'assistant') continue;
    const text = typeof m.content === 'string' ? m.content : textOf(m.content);
    if (text) return text;
  }
  return null;
}
