import { createHash } from 'node:crypto';
import { canonicalJson } from '../common/canonical-json.ts';
import { createActor, type Actor, type InspectionEvent, type Observer, type Snapshot } from 'xstate';

/** What XState's `inspect` option takes: the XState inspector, or any observer of inspection events. */
export type InspectionObserver = Observer<InspectionEvent> | ((event: InspectionEvent) => void);
import type { ToolResultBlock, ToolsEffectInput } from '../machines/conversation.ts';
import { deadlineOf, remainingOf, supervisorMachine, type Breach, type BreachPolicy, type SupervisorContext } from '../machines/supervisor.machine.ts';
import type { ResolvedLimits } from './agent.ts';
import type { ModelCallResult } from './model/model-client.ts';
import type { CallQuote } from './model/quote.ts';
import type { Budget } from '../runtime/wire.ts';
import { budgetOf } from './delegation.ts';
import { persistedWithoutWalk } from './stored-snapshot.ts';

/** The supervisor's machine, persisted without XState's walk of its (JSON) context: see persistedWithoutWalk. */
const machine = persistedWithoutWalk(supervisorMachine.provide({}), new Set());

/** A breach the task must act on now. */
export interface Verdict {
  breach: Breach;
  action: BreachPolicy;
}

/** Smallest output a model call is worth making with. */
const MIN_OUTPUT_TOKENS = 16;

/**
 * A task's supervisor actor and the host's side of its protocol. The statechart
 * (machines/supervisor.machine.ts) decides; this class turns effects into its events, reads its
 * decisions, and exposes what must be persisted.
 */
export class TaskSupervisor {
  private constructor(readonly actor: Actor<typeof supervisorMachine>) {}

  static create(limits: ResolvedLimits, startedAt: number, inspect?: InspectionObserver): TaskSupervisor {
    const { onBreach, wallClockMs, ...rest } = limits;
    const actor = createActor(machine, { input: { limits: { ...rest, wallClock: wallClockMs }, onBreach, startedAt }, ...(inspect ? { inspect } : {}) });
    actor.start();
    return new TaskSupervisor(actor);
  }

  static restore(persisted: unknown, inspect?: InspectionObserver): TaskSupervisor {
    const actor = createActor(machine, { snapshot: withListSets(persisted) as Snapshot<unknown>, ...(inspect ? { inspect } : {}) } as never) as Actor<typeof supervisorMachine>;
    actor.start();
    return new TaskSupervisor(actor);
  }

  get context(): SupervisorContext {
    return this.actor.getSnapshot().context;
  }

  /** Epoch ms at which the wall-clock limit is reached. */
  get deadlineAt(): number {
    return deadlineOf(this.context);
  }

  persisted(): unknown {
    return this.actor.getPersistedSnapshot();
  }

  /** The breach to act on, if the supervisor halted or is escalating. */
  verdict(): Verdict | undefined {
    const snapshot = this.actor.getSnapshot();
    const breach = snapshot.context.breach;
    if (!breach) return undefined;
    if (snapshot.matches('escalating')) return { breach, action: 'escalate' };
    if (snapshot.status === 'done') return { breach, action: 'stop' };
    return undefined;
  }

  /**
   * Holds the worst case of a model call and returns the `max_tokens` it may use, clamped so the
   * ceilings hold whatever the model answers; undefined if the call must not be made.
   */
  reserve(key: string, quote: CallQuote | undefined): number | undefined {
    this.actor.send({
      type: 'reserve',
      key,
      inputTokens: quote?.inputTokens ?? 0,
      maxTokens: quote?.maxTokens ?? Number.MAX_SAFE_INTEGER,
      minTokens: Math.min(MIN_OUTPUT_TOKENS, quote?.maxTokens ?? MIN_OUTPUT_TOKENS),
      inputUsdPerToken: quote?.inputUsdPerToken ?? 0,
      outputUsdPerToken: quote?.outputUsdPerToken ?? 0,
    });
    return this.verdict() ? undefined : this.context.granted[key];
  }

  /** Replaces a call's hold by what it actually cost. Idempotent per key. */
  settle(key: string, result: ModelCallResult): void {
    const u = result.usage;
    this.actor.send({
      type: 'settle',
      key,
      usd: result.costUsd,
      tokens: u.inputTokens + u.outputTokens + u.cacheCreationInputTokens + u.cacheReadInputTokens,
      cutOff: result.stopReason === 'max_tokens',
    });
  }

  /**
   * Holds a share of the remaining budget for each child task of a delegation: `fraction` of what
   * is left (USD, tokens, and steps but one, kept for this task to use the results), split
   * evenly. Returns each child's budget, or undefined if the supervisor refused (a breach). A
   * child already held keeps its share, so a replayed delegation gets the same budgets.
   */
  holdShares(childIds: string[], fraction: number): Budget[] | undefined {
    const left = remainingOf(this.context);
    const n = Math.max(1, childIds.length);
    const each = {
      usd: left.usd === null ? 0 : (left.usd * fraction) / n,
      tokens: left.tokens === null ? 0 : Math.floor((left.tokens * fraction) / n),
      steps: Math.max(1, Math.floor((Math.max(0, left.steps - 1) * fraction) / n)),
    };
    for (const id of childIds) this.actor.send({ type: 'hold', key: id, ...each });
    if (this.verdict()) return undefined;
    const limited = { usd: this.context.limits.usd !== null, tokens: this.context.limits.tokens !== null };
    return childIds.map((id) => budgetOf({ steps: 1, usd: 0, tokens: 0, ...this.context.reserved[id] }, limited));
  }

  /** Replaces a child's held share by what it spent. Idempotent per child. */
  settleChild(childId: string, spent: { usd: number; tokens: number; steps: number }): void {
    this.actor.send({ type: 'settle', key: childId, usd: spent.usd, tokens: spent.tokens, steps: spent.steps });
  }

  /** A child ran out of its share of a limit: this task's limit is breached (stop or escalate, per its policy). */
  childExhausted(child: string, limit: 'usd' | 'tokens' | 'steps', message: string): void {
    this.actor.send({ type: 'childExhausted', limit, child, message });
  }

  /** Drops the hold of a call that failed without being billed. */
  release(key: string): void {
    this.actor.send({ type: 'release', key });
  }

  /** Reports a step (tool calls and their results) for no-progress detection. */
  step(input: ToolsEffectInput, results: ToolResultBlock[]): void {
    this.actor.send({ type: 'step', fingerprint: stepFingerprint(input, results) });
  }

  wallClockReached(): void {
    this.actor.send({ type: 'wallClock' });
  }

  grant(limit: Breach['limit'], amount: number): void {
    this.actor.send({ type: 'grant', limit, amount });
  }

  deny(reason: string): void {
    this.actor.send({ type: 'deny', reason });
  }

  /** The task was parked for `ms`: that time does not count against its wall clock. */
  paused(ms: number): void {
    this.actor.send({ type: 'paused', ms });
  }
}

/**
 * A supervisor snapshot as any troupe persisted it: before `settled` and `seen` were lists (see
 * SupervisorContext), they were records of key -> true.
 */
function withListSets(persisted: unknown): unknown {
  const context = (persisted as { context?: Record<string, unknown> } | null)?.context;
  if (!context || (Array.isArray(context.settled) && Array.isArray(context.seen))) return persisted;
  const list = (set: unknown) => (Array.isArray(set) ? set : Object.keys((set as object | null) ?? {}));
  return { ...(persisted as object), context: { ...context, settled: list(context.settled), seen: list(context.seen) } };
}

/**
 * What counts as progress: a step (one round of tool calls) is *no progress* when the same
 * tools were called with the same arguments and returned the same results (or errors) as in
 * an earlier step of the task. Anything new (a different tool, argument or result) is progress.
 */
export function stepFingerprint(input: ToolsEffectInput, results: ToolResultBlock[]): string {
  const calls = input.calls.map((c) => [c.name, c.input]);
  const outcomes = results.map((r) => [r.content, r.is_error === true]);
  return createHash('sha256').update(canonicalJson([calls, outcomes])).digest('base64url').slice(0, 22);
}
