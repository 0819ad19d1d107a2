import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { consumeDurable, type DurableConsumption } from '../runtime/durable-consumer.ts';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.ts';
import { ErrorCode } from '../common/errors.ts';
import type { TroupeConfig } from '../config/schema.ts';
import { argsHash, decisionIdOf, decisionSchema, verifyDecision, type ApprovalRequest, type Decision } from '../runtime/approvals.ts';
import { formatIssues } from '../config/load.ts';
import type { Agent } from './agent.ts';
import { RevisionConflictError, type JsonKv, type Versioned } from '../runtime/json-kv.ts';
import type { Subjects } from '../runtime/subjects.ts';
import type { TaskEvents } from '../runtime/task-events.ts';
import type { SnapshotEnvelope, WireErrorPayload } from '../runtime/wire.ts';
import { TaskSupervisor } from './task-supervisor.ts';
import { wakeParked } from './wake.ts';
import { dueAtOf, type DueEntry, type DueIndex } from '../runtime/due-index.ts';
import type { TaskTree } from './task-tree.ts';

/** Options of a {@link DecisionDesk}. */
export interface DecisionDeskOptions {
  js: JetStreamClient;
  subjects: Subjects;
  store: JsonKv<SnapshotEnvelope>;
  events: TaskEvents;
  approvers: TroupeConfig['approvers'];
  /** How often overdue requests are looked for. */
  sweepMs: number;
  /** The agents this host runs, to re-validate edited tool arguments. */
  agents: ReadonlyMap<string, Agent<any>>;
  /** Parked tasks' waits: the sweep also wakes tasks whose timer or wall clock is due. */
  tree: TaskTree;
  /** Which parked tasks fall due when: the sweep reads only those. */
  due: DueIndex;
  hostId: string;
  clock: Clock;
  logger: Logger;
}

const decoder = new TextDecoder();

/**
 * Where approvers' decisions arrive. Every host runs one; each decision is handled by one host.
 * A decision is applied only if it answers the request its task is parked on, comes from a
 * configured approver allowed for that agent, and carries that approver's valid signature;
 * anything else is refused with a typed reason (visible on the task's events) and the task
 * stays parked. An applied decision updates the parked task's supervisor in one
 * compare-and-set and wakes the task on whichever host takes it, from the same state.
 */
export class DecisionDesk {
  private consumption: DurableConsumption | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;
  /** The oldest minute of the due index the next sweep looks at (undefined: all of it). */
  private cursor: number | undefined;
  private closed = false;

  constructor(private readonly o: DecisionDeskOptions) {}

  async start(): Promise<void> {
    // One at a time: decisions on one request (votes of a quorum) are checked against each other's writes.
    this.consumption = await consumeDurable(this.o.js, this.o.subjects.streams.decisions, this.o.subjects.decisionsConsumer, (m) => this.handle(m), this.o.logger, 'decision', { sequential: true });
    this.sweeper = setInterval(() => {
      this.expireOverdue().catch((err: unknown) => this.o.logger.warn({ err }, 'sweeping parked tasks that fall due failed'));
    }, this.o.sweepMs);
    this.sweeper.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    await this.consumption?.stop();
    await this.sweeping?.catch(() => {});
  }

  private async handle(m: JsMsg): Promise<void> {
    const taskId = m.subject.slice(m.subject.lastIndexOf('.') + 1);
    let decision: Decision;
    try {
      const parsed = decisionSchema.safeParse(JSON.parse(decoder.decode(m.data)));
      if (!parsed.success) return this.refuse(taskId, undefined, undefined, ErrorCode.invalidDecision, `decision does not match the decision schema: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`);
      decision = parsed.data;
    } catch {
      return this.refuse(taskId, undefined, undefined, ErrorCode.invalidDecision, 'decision is not JSON');
    }
    const id = decisionIdOf(decision);
    const refuse = (code: string, message: string) => this.refuse(taskId, decision.requestId, id, code, message);
    const stored = await this.o.store.get(taskId);
    const env = stored?.value;
    if (!stored || !env || decision.taskId !== taskId || env.status !== 'parked' || env.pending?.requestId !== decision.requestId) {
      return refuse(ErrorCode.staleDecision, `task ${taskId} is not waiting on request ${decision.requestId} (already decided, never asked, or another task's)`);
    }
    const approver = this.o.approvers.find((a) => a.publicKey === decision.approver);
    if (!approver) return refuse(ErrorCode.unknownApprover, `${decision.approver} is not a configured approver`);
    const pending = env.pending;
    const role = roleRefusal(approver, env.agent, pending, decision.verdict);
    if (role) return refuse(ErrorCode.approverNotAllowed, role);
    if (!verifyDecision(decision)) return refuse(ErrorCode.badSignature, `the signature is not ${approver.name}'s over this decision`);

    const supervisor = TaskSupervisor.restore(env.supervisor);
    supervisor.paused(this.o.clock.now() - pending.createdAt);
    let approvals = env.approvals;
    let approvedBy = approver.name;
    if (pending.kind === 'limit') {
      if (decision.verdict === 'edit') return refuse(ErrorCode.invalidDecision, 'a limit can be granted or rejected, not edited');
      if (decision.verdict === 'approve') supervisor.grant(pending.limit.name as Parameters<TaskSupervisor['grant']>[0], decision.grant?.amount ?? pending.ask.amount);
      else supervisor.deny(decision.reason ?? `rejected by ${approver.name}`);
    } else {
      let args: unknown;
      if (decision.verdict === 'approve') {
        // An approval covers exactly the arguments it was shown.
        if (decision.argsHash !== pending.argsHash) return refuse(ErrorCode.argsHashMismatch, `the decision approves arguments with hash ${decision.argsHash ?? '(none)'}, but the request's are ${pending.argsHash}`);
        if (pending.quorum) {
          const votes = env.votes ?? [];
          if (votes.some((v) => v.approver === approver.publicKey)) return refuse(ErrorCode.duplicateVote, `${approver.name} already approved this request; it needs ${pending.quorum} different approvers`);
          const counted = [...votes, { approver: approver.publicKey, name: approver.name, at: decision.at }];
          if (counted.length < pending.quorum) return this.vote(stored, counted, decision, approver.name);
          approvedBy = counted.map((v) => v.name).join(' + ');
        }
      } else if (decision.verdict === 'edit') {
        if (pending.unknownOutcome) return refuse(ErrorCode.invalidDecision, 'an interrupted call can be run again (approve) or not repeated (reject), not edited');
        if (pending.quorum) return refuse(ErrorCode.invalidDecision, `this call needs ${pending.quorum} approvers, so it cannot be edited by one: reject it with a reason and the agent will propose new arguments`);
        if (decision.args === undefined || decision.argsHash !== argsHash(decision.args)) return refuse(ErrorCode.argsHashMismatch, 'an edit must carry the new arguments and their hash');
        const tool = this.o.agents.get(env.agent)?.tools.get(pending.tool.name);
        if (!tool) return refuse(ErrorCode.invalidEdit, `this host does not know tool ${pending.tool.name} of agent ${env.agent}`);
        const parsed = tool.input.safeParse(decision.args);
        if (!parsed.success) return refuse(ErrorCode.invalidEdit, `the edited arguments do not match ${tool.name}'s schema:\n${formatIssues(parsed.error)}`);
        const objection = await tool.validate?.(parsed.data);
        if (objection) return refuse(ErrorCode.invalidEdit, `${tool.name} refused the edited arguments: ${objection}`);
        const amount = tool.amount?.(parsed.data);
        if (amount !== undefined && approver.maxAmount !== undefined && amount > approver.maxAmount) {
          return refuse(ErrorCode.approverNotAllowed, `${approver.name} may approve amounts up to ${approver.maxAmount}; the edited call is for ${amount}`);
        }
        args = parsed.data;
      }
      const earlier = approvals?.[pending.callKey];
      // Running an interrupted call again runs it with the arguments it was first approved with.
      const verdict = pending.unknownOutcome && decision.verdict === 'approve' && earlier?.verdict === 'edit' ? 'edit' : decision.verdict;
      if (pending.unknownOutcome && earlier?.args !== undefined) args = earlier.args;
      approvals = {
        ...approvals,
        [pending.callKey]: {
          verdict,
          ...(args !== undefined ? { args } : {}),
          ...(decision.reason ? { reason: decision.reason } : {}),
          approver: approvedBy,
          at: decision.at,
          ...(pending.unknownOutcome ? { unknownOutcome: pending.unknownOutcome } : {}),
        },
      };
    }
    if (!(await this.wake(stored, supervisor, approvals))) return;
    this.o.events.emit(taskId, { type: 'decision', decisionId: id, requestId: decision.requestId, verdict: decision.verdict, approver: decision.approver, approverName: approver.name, waitedMs: Math.max(0, this.o.clock.now() - pending.createdAt) }, `${decision.requestId}:decision`);
    this.o.logger.info({ taskId, requestId: decision.requestId, verdict: decision.verdict, approver: approvedBy }, 'decision applied');
  }

  /** Records one approval of a request that needs a quorum; the task stays parked until it has them all. */
  private async vote(stored: Versioned<SnapshotEnvelope>, votes: NonNullable<SnapshotEnvelope['votes']>, decision: Decision, name: string): Promise<void> {
    const env = stored.value;
    try {
      await this.o.store.update(env.taskId, { ...env, votes, updatedAt: this.o.clock.now() }, stored.revision);
    } catch (err) {
      // Another approver's vote landed first: redelivery re-checks this one against it.
      if (err instanceof RevisionConflictError) throw new Error(`vote on ${env.taskId} raced another decision`, { cause: err });
      throw err;
    }
    const awaiting = (env.pending?.kind === 'tool' ? env.pending.quorum ?? 1 : 1) - votes.length;
    this.o.events.emit(env.taskId, { type: 'decision', decisionId: decisionIdOf(decision), requestId: decision.requestId, verdict: decision.verdict, approver: decision.approver, approverName: name, awaiting }, `${decision.requestId}:vote:${decision.approver}`);
    this.o.logger.info({ taskId: env.taskId, requestId: decision.requestId, approver: name, awaiting }, 'approval counted; more approvers needed');
  }

  /**
   * Deals with every parked task whose time has come, as the due index lists them: a request
   * whose deadline passed without a decision (with `onDeadline: "escalate"` and a higher tier of
   * approvers allowed to decide it, the request moves to that tier with a fresh deadline and is
   * published again; otherwise a tool call is rejected, the model being told nobody approved it
   * in time, and a limit is not raised, so the task stops), and a wait whose timer or wall clock
   * ran out (the task is woken). Every host sweeps, one sweep at a time; compare-and-set makes
   * each step happen once. Returns how many requests expired or moved up.
   */
  expireOverdue(): Promise<number> {
    this.sweeping ??= this.sweep().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweep(): Promise<number> {
    let expired = 0;
    const now = this.o.clock.now();
    let keep: number | undefined;
    for (const entry of await this.o.due.due(now, this.cursor)) {
      if (this.closed) {
        keep ??= entry.minute;
        break;
      }
      let done: boolean;
      try {
        const outcome = await this.visit(entry, now);
        if (outcome === 'expired') expired++;
        done = outcome !== 'later';
      } catch (err) {
        this.o.logger.warn({ err, taskId: entry.taskId }, 'could not deal with a parked task that fell due; trying again at the next sweep');
        done = false;
      }
      if (done) await this.o.due.remove(entry).catch(() => (keep = Math.min(keep ?? entry.minute, entry.minute)));
      else keep = Math.min(keep ?? entry.minute, entry.minute);
    }
    this.cursor = Math.min(keep ?? Infinity, Math.floor(now / 60_000));
    return expired;
  }

  /**
   * One task of the due index: `done` if it needs nothing more from this entry (dealt with, not
   * parked any more, or due later under another entry), `later` if this entry must be looked at
   * again, `expired` if its request expired or moved up a tier.
   */
  private async visit({ taskId, dueAt: entryDueAt }: DueEntry, now: number): Promise<'done' | 'later' | 'expired'> {
    const stored = await this.o.store.get(taskId);
    // A wait may also be over because what it waits for happened (an entry made to look again).
    if (stored?.value.waiting && (await this.o.tree.wakeIfDue(taskId))) return 'done';
    const dueAt = stored ? dueAtOf(stored.value) : undefined;
    if (!stored || dueAt === undefined) return 'done';
    // Not due yet: this entry is the task's (look again), or an older one (another entry has its time).
    if (dueAt > now) return Math.floor(dueAt) === entryDueAt ? 'later' : 'done';
    if (stored.value.waiting) return 'later'; // due, but someone else moved it first: look again
    const pending = stored.value.pending!;
    if (pending.onDeadline === 'escalate' && (await this.escalate(stored, pending, now))) return 'expired';
    const reason = `no approver decided before the deadline (${new Date(dueAt).toISOString()})`;
    const supervisor = TaskSupervisor.restore(stored.value.supervisor);
    supervisor.paused(now - pending.createdAt);
    let approvals = stored.value.approvals;
    if (pending.kind === 'limit') supervisor.deny(reason);
    else approvals = { ...approvals, [pending.callKey]: { verdict: 'reject', reason, approver: 'the approval deadline', at: now, ...(pending.unknownOutcome ? { unknownOutcome: pending.unknownOutcome } : {}) } };
    if (!(await this.wake(stored, supervisor, approvals))) return 'later';
    this.o.events.emit(taskId, { type: 'decision_refused', requestId: pending.requestId, error: { code: ErrorCode.approvalExpired, message: reason } }, `${pending.requestId}:expired`);
    this.o.logger.warn({ taskId, requestId: pending.requestId }, 'approval request expired');
    return 'expired';
  }

  /** Moves an overdue request to the next tier that has approvers for it. False if there is none. */
  private async escalate(stored: Versioned<SnapshotEnvelope>, pending: ApprovalRequest, now: number): Promise<boolean> {
    const tier = pending.tier ?? 1;
    const next = Math.min(...this.o.approvers.filter((a) => a.tier > tier && !roleRefusal(a, stored.value.agent, { ...pending, tier: a.tier }, 'approve')).map((a) => a.tier));
    if (!Number.isFinite(next)) return false;
    const window = pending.deadlineAt! - pending.createdAt;
    const raised: ApprovalRequest = { ...pending, tier: next, deadlineAt: now + window };
    // Indexed before it is saved: a crash in between leaves an entry, never a request nobody sweeps.
    await this.o.due.add(stored.value.taskId, raised.deadlineAt!);
    try {
      await this.o.store.update(stored.value.taskId, { ...stored.value, pending: raised, updatedAt: now }, stored.revision);
    } catch (err) {
      if (err instanceof RevisionConflictError) return true;
      throw err;
    }
    const reason = `no tier-${tier} approver decided in time; escalated to tier ${next}`;
    await this.o.events.requestApproval(raised, `${pending.requestId}:tier${next}`);
    this.o.events.emit(stored.value.taskId, { type: 'escalated', requestId: pending.requestId, reason, tier: next }, `${pending.requestId}:escalated:${next}`);
    this.o.logger.warn({ taskId: stored.value.taskId, requestId: pending.requestId, tier: next }, 'approval request escalated to the next tier');
    return true;
  }

  /** Writes a decided task back to `running` with its supervisor and decisions, and wakes it. */
  private wake(stored: Versioned<SnapshotEnvelope>, supervisor: TaskSupervisor, approvals: SnapshotEnvelope['approvals']): Promise<boolean> {
    const { js, subjects, store, hostId, clock } = this.o;
    return wakeParked({ js, subjects, store, hostId, now: () => clock.now() }, stored, `decision:${stored.value.pending!.requestId}`, {
      supervisor: supervisor.persisted(),
      deadlineAt: supervisor.deadlineAt,
      ...(approvals ? { approvals } : {}),
    });
  }

  private refuse(taskId: string, requestId: string | undefined, decisionId: string | undefined, code: string, message: string): void {
    const error: WireErrorPayload = { code, message };
    this.o.logger.warn({ taskId, requestId, error }, 'decision refused');
    this.o.events.emit(taskId, { type: 'decision_refused', ...(decisionId ? { decisionId } : {}), ...(requestId ? { requestId } : {}), error });
  }
}

/**
 * Why this approver may not give this verdict on this request (their `agents`, `tier`, `tools`,
 * and `maxAmount`, which bounds approvals, not rejections), or undefined when they may.
 */
export function roleRefusal(approver: TroupeConfig['approvers'][number], agent: string, request: ApprovalRequest, verdict: Decision['verdict']): string | undefined {
  if (approver.agents && !approver.agents.includes(agent)) return `approver ${approver.name} may not decide on agent ${agent}`;
  const tier = request.tier ?? 1;
  if (approver.tier < tier) return `the request has been escalated to tier ${tier}; ${approver.name} is tier ${approver.tier}`;
  if (approver.tools) {
    if (request.kind !== 'tool') return `approver ${approver.name} decides only on calls of ${approver.tools.join(', ')}, not on limits`;
    if (!approver.tools.includes(request.tool.name)) return `approver ${approver.name} may not decide on calls of ${request.tool.name}`;
  }
  if (verdict === 'approve' && request.kind === 'tool' && request.amount !== undefined && approver.maxAmount !== undefined && request.amount > approver.maxAmount) {
    return `${approver.name} may approve amounts up to ${approver.maxAmount}; this call is for ${request.amount}`;
  }
  return undefined;
}
