import type { JetStreamClient } from '@nats-io/jetstream';
import { ErrorCode } from '../common/errors.ts';
import { formatIssues } from '../config/load.ts';
import type { DelegateInput, DelegateOutput, ChildResult, Join } from '../machines/conversation.ts';
import type { JsonKv } from '../runtime/json-kv.ts';
import type { Subjects } from '../runtime/subjects.ts';
import type { Budget, CancelMessage, SnapshotEnvelope, TaskMessage } from '../runtime/wire.ts';
import type { Agent } from './agent.ts';
import { LimitReachedSignal, WaitSignal } from './errors.ts';
import type { TaskSupervisor } from './task-supervisor.ts';

/** What a task lends its delegations. */
export interface DelegationDeps {
  taskId: string;
  js: JetStreamClient;
  subjects: Subjects;
  store: JsonKv<SnapshotEnvelope>;
  /** Agents a child may be started on (every host on a prefix runs the same agents). */
  agents: ReadonlyMap<string, Agent<any>>;
  supervisor: () => TaskSupervisor;
  /** Lets the task act on a breach the supervisor just recorded. */
  actOnVerdict: () => void;
  /** Records children in the task's envelope (the tree). */
  adopt: (children: Record<string, { agent: string; key: string }>) => void;
  now: () => number;
}

const encoder = new TextEncoder();

/** A child's taskId: derived from the delegation's effect key, so a replayed delegation starts no new child. */
export function childIdOf(key: string, index: number): string {
  return `${key.replaceAll('/', '-')}-${index + 1}`;
}

/** Successes a join needs, out of `n` children. */
function needed(join: Join, n: number): number {
  return join === 'all' ? n : join === 'first' ? 1 : Math.min(join, n);
}

/**
 * Whether a delegation can return: the join has its successes, or can no longer get them. `all`
 * returns once every child ended (each result says how); `first` and N-of-M once enough
 * succeeded or too many failed.
 */
export function joinReady(join: Join, results: readonly (ChildResult | undefined)[]): boolean {
  const n = results.length;
  const ended = results.filter((r) => r !== undefined);
  // A child that ran out of its budget share ends the delegation: the tree's budget is spent.
  if (ended.some(exhausted)) return true;
  if (join === 'all') return ended.length === n;
  const ok = ended.filter((r) => r.status === 'done').length;
  const failed = ended.length - ok;
  const need = needed(join, n);
  return ok >= need || n - failed < need;
}

/** Whether a child failed because it ran out of its share of a budget limit. */
function exhausted(r: ChildResult): boolean {
  const limit = r.error?.details?.limit;
  return r.status === 'failed' && r.error?.code === ErrorCode.limitExceeded && (limit === 'usd' || limit === 'tokens' || limit === 'steps');
}

/** A child's result from its envelope, once it ended. */
export function childResult(taskId: string, env: SnapshotEnvelope | undefined): ChildResult | undefined {
  if (!env?.outcome) return undefined;
  const usage = { usd: env.usage?.costUsd ?? 0, tokens: (env.usage?.inputTokens ?? 0) + (env.usage?.outputTokens ?? 0), steps: env.usage?.modelCalls ?? 0 };
  if (env.outcome.status === 'done') return { taskId, agent: env.agent, status: 'done', output: env.outcome.output, usage };
  const cancelled = env.outcome.error.code === ErrorCode.cancelled;
  return { taskId, agent: env.agent, status: cancelled ? 'cancelled' : 'failed', error: env.outcome.error, usage };
}

/**
 * Runs one delegation: starts a child task per entry (on other agents, each with its share of
 * this task's remaining budget, held by the supervisor), then waits for the join durably — the
 * task parks with no host memory, and is woken when a child ends — and returns every child's
 * output or typed failure. Children that a `first` or N-of-M join no longer needs are
 * cancelled. Replaying the same delegation (a restored task) starts nothing twice: child ids
 * come from the effect key, and a child that exists is only looked at.
 */
export async function runDelegation(input: DelegateInput, deps: DelegationDeps): Promise<DelegateOutput> {
  const join = input.join ?? 'all';
  const ids = input.tasks.map((_, i) => childIdOf(input.key, i));
  const refused: (ChildResult | undefined)[] = input.tasks.map((t, i) => refusal(ids[i]!, t, deps.agents));
  const results = await Promise.all(ids.map(async (id, i) => refused[i] ?? childResult(id, (await deps.store.get(id))?.value)));
  const supervisor = deps.supervisor();
  if (joinReady(join, results)) {
    const open = ids.filter((_, i) => results[i] === undefined);
    await Promise.all(open.map((id, i) => cancelTask(deps.js, deps.subjects, { taskId: id, reason: `the ${join} join of ${deps.taskId} no longer needs it`, agent: input.tasks[i]!.agent })));
    // What an ended child spent replaces its share; a cancelled child's share stays held.
    results.forEach((r, i) => r?.usage && supervisor.settleChild(ids[i]!, r.usage));
    const spent = results.find((r) => r && exhausted(r));
    if (spent) {
      const limit = spent.error!.details?.limit as 'usd' | 'tokens' | 'steps';
      supervisor.childExhausted(spent.taskId, limit, spent.error!.message);
      deps.actOnVerdict();
      throw new LimitReachedSignal(input.key);
    }
    return { join, results: results.map((r, i) => r ?? { taskId: ids[i]!, agent: input.tasks[i]!.agent, status: 'cancelled', error: { code: ErrorCode.cancelled, message: 'not needed by the join' } }) };
  }

  const starting = input.tasks.map((t, i) => ({ ...t, taskId: ids[i]! })).filter((_, i) => results[i] === undefined);
  const budgets = supervisor.holdShares(starting.map((c) => c.taskId), input.share ?? 1);
  if (!budgets) {
    deps.actOnVerdict();
    throw new LimitReachedSignal(input.key);
  }
  deps.adopt(Object.fromEntries(starting.map((c) => [c.taskId, { agent: c.agent, key: input.key }])));
  for (const [i, child] of starting.entries()) {
    const message: TaskMessage = {
      taskId: child.taskId,
      input: child.input,
      budget: budgets[i]!,
      parent: { taskId: deps.taskId, key: input.key },
      ...(input.handoff ? { metadata: { handoff: { from: deps.taskId, context: input.handoff.context } } } : {}),
    };
    // The taskId is the message id: JetStream drops a repeat, and the snapshot bucket catches one
    // outside its window.
    await deps.js.publish(deps.subjects.task(child.agent), encoder.encode(JSON.stringify(message)), { msgID: child.taskId });
  }
  throw new WaitSignal({ reason: 'children', key: input.key, children: ids.filter((_, i) => !refused[i]), join, since: deps.now() });
}

/** A child that cannot be started (unknown agent, input it would refuse), as a failed result. */
function refusal(taskId: string, task: DelegateInput['tasks'][number], agents: ReadonlyMap<string, Agent<any>>): ChildResult | undefined {
  const agent = agents.get(task.agent);
  if (!agent) return { taskId, agent: task.agent, status: 'failed', error: { code: ErrorCode.unknownAgent, message: `no agent named "${task.agent}" (agents: ${[...agents.keys()].join(', ')})` } };
  const parsed = agent.input.safeParse(task.input);
  if (!parsed.success) return { taskId, agent: task.agent, status: 'failed', error: { code: ErrorCode.invalidInput, message: `input for "${task.agent}" does not match its schema:\n${formatIssues(parsed.error)}` } };
  return undefined;
}

/** Asks for a task (and its subtree) to be cancelled: durable, handled by one host. */
export async function cancelTask(js: JetStreamClient, subjects: Subjects, c: Omit<CancelMessage, 'v' | 'at'>): Promise<void> {
  const message: CancelMessage = { v: 1, ...c, at: Date.now() };
  await js.publish(subjects.cancel(c.taskId), encoder.encode(JSON.stringify(message)), { msgID: `cancel:${c.taskId}` });
}

/** A child budget from a share held by the parent's supervisor. */
export function budgetOf(share: { usd: number; tokens: number; steps: number }, limited: { usd: boolean; tokens: boolean }): Budget {
  return {
    ...(limited.usd && share.usd > 0 ? { usd: share.usd } : {}),
    ...(limited.tokens && share.tokens >= 1 ? { tokens: Math.floor(share.tokens) } : {}),
    steps: Math.max(1, Math.floor(share.steps)),
  };
}
