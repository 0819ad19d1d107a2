import { createActor, fromPromise, type ActorOptions, type AnyMachineSnapshot, type AnyStateMachine } from 'xstate';
import { ErrorCode, TerminalError, ensureError } from '../common/errors.ts';
import type { TroupeConfig } from '../config/schema.ts';
import { agentLoopMachine, type AgentLoopInput } from '../machines/agent-loop.machine.ts';
import { textOf, type DelegateInput, type DelegateOutput, type Message, type ModelEffectInput, type ModelTurn, type ToolResultBlock, type ToolsEffectInput, type WaitInput, type WaitOutput } from '../machines/conversation.ts';
import type { LedgerRecord, SnapshotEnvelope, TaskEvent, TaskOutcome } from '../runtime/wire.ts';
import type { Agent } from './agent.ts';
import { RecordedEffects, ReplayHalt, ReplayHandoff } from './replay-effects.ts';
import { asOutcome, briefValue, dedupId, firstDifference, firstDivergence, machineFinished, recordedTrajectory, type Divergence, type TrajectoryEntry } from './replay-trajectory.ts';
import { stateString, stepOf } from './snapshot-view.ts';

export { describeEntry, type Divergence, type TrajectoryEntry } from './replay-trajectory.ts';

type Awaitable<T> = T | Promise<T>;

/** What {@link replayTask} replays, and against which agent. */
export interface ReplayTaskOptions {
  /** The agent as it is now: its machine, tools, gates and approval policy are what is replayed. */
  agent: Agent<any>;
  /** The task's envelope from the snapshot bucket (its last snapshot, decisions and outcome). */
  envelope: SnapshotEnvelope;
  /** The ledger record under an effect key, if there is one. */
  ledger: (key: string) => Awaitable<LedgerRecord | undefined>;
  /** The task's events, first to last (`taskHistory`). */
  events: readonly TaskEvent[];
  /** Another task's envelope (children of delegations and hand-offs). @default none: a delegation halts the replay */
  task?: (taskId: string) => Awaitable<SnapshotEnvelope | undefined>;
  /** Every agent a host runs, for delegations to refuse children as they would. @default only `agent` */
  agents?: ReadonlyMap<string, Agent<any>>;
  /** The config's `principals` (authorization gate). @default {} (gate open) */
  principals?: TroupeConfig['principals'];
  /**
   * The machine's input. @default recovered from the recorded snapshot ({@link recoverMachineInput}),
   * since the task's own input is not stored.
   */
  machineInput?: unknown;
  /** Most effects answered before the replay gives up on a machine that loops. @default 10000 */
  maxEffects?: number;
}

/** How a replay went. */
export interface ReplayReport {
  taskId: string;
  agent: string;
  /** The replay followed the recorded trajectory. */
  same: boolean;
  /** Entries of the replayed trajectory (states, model calls, tool calls, end). */
  steps: number;
  /** Where the replay left the recording; `at` indexes `recorded` and `replayed`. */
  divergence?: Divergence;
  /** How the replayed machine ended; undefined if it stopped where the recording stops. */
  outcome?: TaskOutcome;
  /** How the recorded task ended (its envelope's outcome); undefined while it runs or is parked. */
  recordedOutcome?: TaskOutcome;
  /**
   * The recorded machine reached a final state, so the replay was checked to its end. When
   * false (the task was stopped by a limit, cancelled, handed over, or is still running or
   * parked), the replay is checked up to where the recording stops.
   */
  complete: boolean;
  /** Where the replay stopped because the recording stops there, when it followed it that far. */
  stoppedAt?: { key: string; message: string };
  /** The task ran another version of the agent's machine. */
  versionMismatch?: { recorded: string; current: string };
  recorded: TrajectoryEntry[];
  replayed: TrajectoryEntry[];
  /** What limits the comparison (no events, a machine that stalled or looped). */
  warnings: string[];
}

/** A task that cannot be replayed: nothing to start its machine from. */
export class ReplayUnavailableError extends TerminalError {
  override readonly name = 'ReplayUnavailableError';
  constructor(taskId: string, why: string) {
    super(ErrorCode.snapshotCorrupt, `task ${taskId} cannot be replayed: ${why}`);
  }
}

/**
 * The input a task's machine started with, recovered from its last snapshot: the task's input
 * itself is not stored. For the agent loop, the first user message and the step cap; for a
 * workflow, its context, which holds its input when the machine copies it in (`{...input, ...}`,
 * as the examples do) and overrides the rest at start.
 */
export function recoverMachineInput(agent: Agent<any>, envelope: SnapshotEnvelope): unknown {
  const context = (envelope.snapshot as { context?: unknown } | null)?.context;
  if (typeof context !== 'object' || context === null) throw new ReplayUnavailableError(envelope.taskId, 'its snapshot has no machine context');
  if (agent.machine !== agentLoopMachine) return context;
  const { taskId, messages, maxSteps } = context as { taskId?: unknown; messages?: Message[]; maxSteps?: unknown };
  const first = Array.isArray(messages) ? messages[0] : undefined;
  if (typeof taskId !== 'string' || !first) throw new ReplayUnavailableError(envelope.taskId, 'its snapshot is not an agent loop\'s (no taskId and first message)');
  const input: AgentLoopInput = { taskId, prompt: typeof first.content === 'string' ? first.content : textOf(first.content), ...(typeof maxSteps === 'number' ? { maxSteps } : {}) };
  return input;
}

/**
 * Re-runs a task's machine offline from its recording and compares the trajectory it takes
 * with the recorded one.
 *
 * Guarantees:
 * - nothing outside the process is called: model turns and tool results come from the ledger,
 *   delegations from the children's envelopes, waits from their recorded answers;
 * - deterministic: effects are answered one at a time in the order the machine asked for them,
 *   and delayed transitions run on a virtual clock that advances only when nothing else can
 *   happen (so effects take no time);
 * - the first thing the machine asks for that the recording does not have stops the replay,
 *   and is reported as where it diverged, unless the recording stops there too.
 */
export async function replayTask(options: ReplayTaskOptions): Promise<ReplayReport> {
  const { agent, envelope, events } = options;
  if (envelope.snapshot === null || typeof envelope.snapshot !== 'object') throw new ReplayUnavailableError(envelope.taskId, 'it has no snapshot');
  const input = options.machineInput !== undefined ? options.machineInput : recoverMachineInput(agent, envelope);
  const complete = machineFinished(envelope.snapshot);
  const warnings: string[] = [];
  const versionMismatch = envelope.machineVersion !== agent.version ? { recorded: envelope.machineVersion, current: agent.version } : undefined;
  if (versionMismatch) warnings.push(`the task ran version ${versionMismatch.recorded} of ${agent.name}'s machine; replaying version ${versionMismatch.current}`);

  const toolEvents = new Map<string, Extract<TaskEvent, { type: 'tool' }>>();
  for (const e of events) if (e.type === 'tool' && !toolEvents.has(e.key)) toolEvents.set(e.key, e);
  const run = new ReplayRun(options.maxEffects ?? 10_000);
  const effects = new RecordedEffects({
    agent,
    agents: options.agents ?? new Map([[agent.name, agent]]),
    principal: principalOf(envelope.principal, options.principals ?? {}),
    decisions: envelope.approvals,
    ledger: options.ledger,
    task: options.task ?? (() => undefined),
    toolEvent: (key) => toolEvents.get(key),
    emit: (entry) => run.emit(entry),
  });
  await run.execute(provide(agent.machine, run, effects), input);
  warnings.push(...run.warnings);

  let recorded = recordedTrajectory(events, envelope.snapshot);
  let replayed = run.entries;
  if (events.length === 0) {
    warnings.push('the task has no events (expired from the events stream?): only its effects and its end are checked');
    recorded = recorded.filter((e) => e.kind === 'end');
    replayed = replayed.filter((e) => e.kind === 'end' || e.kind === 'unrecorded');
  }
  const divergence = firstDivergence(recorded, replayed, complete) ?? contextDivergence(envelope.snapshot, run.finalContext, recorded, replayed);
  const last = replayed.at(-1);
  const end = run.entries.find((e): e is Extract<TrajectoryEntry, { kind: 'end' }> => e.kind === 'end');
  return {
    taskId: envelope.taskId,
    agent: agent.name,
    same: divergence === undefined,
    steps: run.entries.length,
    ...(divergence ? { divergence } : {}),
    ...(end ? { outcome: end.outcome } : {}),
    ...(envelope.outcome ? { recordedOutcome: envelope.outcome } : {}),
    complete,
    ...(!divergence && last?.kind === 'unrecorded' ? { stoppedAt: { key: last.key, message: last.message } } : {}),
    ...(versionMismatch ? { versionMismatch } : {}),
    recorded,
    replayed,
    warnings,
  };
}

/**
 * When both machines ended the same way, whether they ended with the same context: what the
 * machine kept (the conversation, the tool results it read) can differ where the trajectory
 * does not, for instance a tool result the next model turn, being recorded, did not react to.
 */
function contextDivergence(snapshot: unknown, finalContext: unknown, recorded: TrajectoryEntry[], replayed: TrajectoryEntry[]): Divergence | undefined {
  const at = recorded.length - 1;
  if (finalContext === undefined || !machineFinished(snapshot) || recorded[at]?.kind !== 'end') return undefined;
  const diff = firstDifference((snapshot as { context?: unknown }).context, finalContext);
  if (!diff) return undefined;
  return {
    at,
    expected: recorded[at],
    actual: replayed[at],
    message: `the machine ended the same way, but its context differs at ${diff.path}: expected ${briefValue(diff.expected)}, got ${briefValue(diff.actual)}`,
  };
}

/** The agent's machine with its effects answered from the recording (as the runner provides them). */
function provide(machine: AnyStateMachine, run: ReplayRun, effects: RecordedEffects): AnyStateMachine {
  const actors = {
    model: fromPromise<ModelTurn, ModelEffectInput>(({ input }) => run.effect(() => effects.model(input))),
    tools: fromPromise<ToolResultBlock[], ToolsEffectInput>(({ input }) => run.effect(() => effects.tools(input))),
    delegate: fromPromise<DelegateOutput, DelegateInput>(({ input }) => run.effect(() => effects.delegate(input))),
    wait: fromPromise<WaitOutput, WaitInput>(({ input }) => run.effect(() => effects.wait(input))),
  };
  return machine.provide({ actors: { ...actors, agentLoop: agentLoopMachine.provide({ actors }) } });
}

/** The task's principal with its grant (as the runner resolves it): removed principals may call nothing. */
function principalOf(name: string | undefined, principals: TroupeConfig['principals']) {
  if (name === undefined) return Object.keys(principals).length ? { name: '(none)', grant: { tools: [] } } : undefined;
  return { name, grant: principals[name] ?? { tools: [] } };
}

type Clock = NonNullable<ActorOptions<AnyStateMachine>['clock']>;

/** XState's timers on virtual time: a timer fires only when the replay asks for the next one. */
class VirtualClock implements Clock {
  private now = 0;
  private nextId = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  setTimeout(fn: (...args: any[]) => void, timeout: number): number {
    const id = ++this.nextId;
    this.timers.set(id, { at: this.now + Math.max(0, timeout), fn });
    return id;
  }

  clearTimeout(id: number): void {
    this.timers.delete(id);
  }

  /** Moves time to the earliest timer and fires it; false when none is set. */
  fireNext(): boolean {
    let earliest: [number, { at: number; fn: () => void }] | undefined;
    for (const entry of this.timers) if (!earliest || entry[1].at < earliest[1].at) earliest = entry;
    if (!earliest) return false;
    this.timers.delete(earliest[0]);
    this.now = earliest[1].at;
    earliest[1].fn();
    return true;
  }
}

const STOPPED = Symbol('stopped');
const never = <T>() => new Promise<T>(() => {});

/** One replay: drives the actor, serialises its effects and collects the trajectory. */
class ReplayRun {
  readonly entries: TrajectoryEntry[] = [];
  readonly warnings: string[] = [];
  private readonly seen = new Set<string>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly clock = new VirtualClock();
  /** Effects are answered one after the other, in the order they were asked for. */
  private queue: Promise<unknown> = Promise.resolve();
  private lastState = '';
  /** The machine's persisted context once it reached a final state. */
  finalContext: unknown;
  private effects = 0;
  private stopped = false;

  constructor(private readonly maxEffects: number) {}

  /** Appends an entry the way the runtime publishes events: once per de-duplication id, nothing after the end. */
  emit(entry: TrajectoryEntry): void {
    if (this.stopped) return;
    if (entry.kind !== 'unrecorded') {
      const id = dedupId(entry);
      if (this.seen.has(id)) return;
      this.seen.add(id);
    }
    this.entries.push(entry);
    if (entry.kind === 'end' || entry.kind === 'unrecorded') this.stopped = true;
  }

  /** Answers one effect after the ones asked for before it; a halt or a hand-off ends the replay. */
  effect<T>(answer: () => Promise<T>): Promise<T> {
    if (this.stopped) return never();
    if (++this.effects > this.maxEffects) {
      this.warnings.push(`the machine asked for more than ${this.maxEffects} effects; the replay gave up`);
      this.stopped = true;
      return never();
    }
    const turn = this.queue.then((): Promise<T | typeof STOPPED> | typeof STOPPED => (this.stopped ? STOPPED : answer()));
    this.queue = turn.catch(() => undefined);
    const settled = turn.then(
      (value): T | Promise<T> => (value === STOPPED ? never<T>() : value),
      (err: unknown): Promise<T> => {
        if (err instanceof ReplayHalt) this.emit(err.entry);
        else if (err instanceof ReplayHandoff) this.emit({ kind: 'end', outcome: err.outcome });
        else throw err; // a recorded failure: the machine gets it as the call's error
        return never();
      },
    );
    this.pending.add(turn);
    void turn.then(
      () => this.pending.delete(turn),
      () => this.pending.delete(turn),
    );
    return settled;
  }

  async execute(machine: AnyStateMachine, input: unknown): Promise<void> {
    const actor = createActor(machine, { input, clock: this.clock });
    actor.subscribe({ next: (snapshot: AnyMachineSnapshot) => this.onSnapshot(snapshot), error: (err: unknown) => this.onError(err) });
    try {
      actor.start();
      for (let fired = 0; ; fired++) {
        await this.settle();
        if (this.stopped) return;
        if (fired >= this.maxEffects) {
          this.warnings.push(`the machine fired more than ${this.maxEffects} delayed events; the replay gave up`);
          return;
        }
        if (!this.clock.fireNext()) {
          this.warnings.push('the machine stalled: it waits for something no effect answers');
          return;
        }
      }
    } finally {
      this.stopped = true;
      actor.stop();
    }
  }

  /** Resolves once no effect is being answered and the machine has taken every answer. */
  private async settle(): Promise<void> {
    do {
      await Promise.allSettled([...this.pending]);
      // The answers reach the machine in promise callbacks: let them all run.
      await new Promise<void>((resolve) => setImmediate(resolve));
    } while (this.pending.size > 0);
  }

  private onSnapshot(snapshot: AnyMachineSnapshot): void {
    const state = stateString(snapshot.value);
    if (state !== this.lastState) {
      this.lastState = state;
      this.emit({ kind: 'state', state, step: stepOf(snapshot) });
    }
    if (snapshot.status === 'done' && !this.stopped) {
      this.finalContext = JSON.parse(JSON.stringify(snapshot.context ?? null)) as unknown;
      this.emit({ kind: 'end', outcome: asOutcome(snapshot.output) });
    }
  }

  private onError(caught: unknown): void {
    const err = ensureError(caught);
    this.emit({ kind: 'end', outcome: { status: 'failed', error: { code: ErrorCode.machineError, message: `the machine threw: ${err.message}` } } });
  }
}
