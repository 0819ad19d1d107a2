import { ErrorCode, toWireError } from '../common/errors.ts';
import { formatIssues } from '../config/load.ts';
import type { ChildResult, DelegateInput, DelegateOutput, ModelEffectInput, ModelTurn, ToolResultBlock, ToolsEffectInput, WaitInput, WaitOutput } from '../machines/conversation.ts';
import type { LedgerRecord, SnapshotEnvelope, TaskEvent, TaskOutcome } from '../runtime/wire.ts';
import { ToolRejectedError } from '../sandbox/errors.ts';
import { admitCall, authorizeCall, type PrincipalGrant } from '../sandbox/gates.ts';
import { delimitUntrusted } from '../sandbox/output.ts';
import type { Agent } from './agent.ts';
import { approvalNeed } from './approval-policy.ts';
import { childIdOf, childResult, joinReady } from './delegation.ts';
import type { EffectKind, ToolCallStatus, TrajectoryEntry } from './replay-trajectory.ts';

type Awaitable<T> = T | Promise<T>;
type ToolEvent = Extract<TaskEvent, { type: 'tool' }>;

/** Where a replay reads what the task's effects returned. */
export interface RecordingLookup {
  /** The ledger record under an effect key (`<taskId>/<step>/<callIndex>`), if there is one. */
  ledger: (key: string) => Awaitable<LedgerRecord | undefined>;
  /** Another task's envelope: the children a delegation started. */
  task: (taskId: string) => Awaitable<SnapshotEnvelope | undefined>;
  /** The recorded `tool` event of a call: the outcome of calls that failed before reaching the ledger. */
  toolEvent: (key: string) => ToolEvent | undefined;
}

/** What the recorded effects answer with, and for whom. */
export interface RecordedEffectsOptions extends RecordingLookup {
  agent: Agent<any>;
  /** Agents a delegation may start (a child on any other is refused, as at run time). */
  agents: ReadonlyMap<string, Agent<any>>;
  /** The task's principal and grant; undefined when no principals are configured. */
  principal: { name: string; grant: PrincipalGrant } | undefined;
  /** Approvers' decisions on the task's tool calls, by call key. */
  decisions: SnapshotEnvelope['approvals'];
  /** Appends to the replayed trajectory (effects publish events as they finish). */
  emit: (entry: TrajectoryEntry) => void;
}

/** The replay cannot go on: the recording does not have what the machine asks for. */
export class ReplayHalt extends Error {
  override readonly name = 'ReplayHalt';
  constructor(readonly entry: Extract<TrajectoryEntry, { kind: 'unrecorded' }>) {
    super(entry.message);
  }
}

/** A hand-off's new task ended: the replayed task ends with its outcome, as the runtime's does. */
export class ReplayHandoff extends Error {
  override readonly name = 'ReplayHandoff';
  constructor(readonly outcome: TaskOutcome) {
    super('handed over');
  }
}

/** A failure the recording holds, rejected to the machine as the original call rejected (same code and message). */
export class ReplayedFailure extends Error {
  override readonly name = 'ReplayedFailure';
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

const halt = (effect: EffectKind, key: string, message: string, tool?: string): ReplayHalt =>
  new ReplayHalt({ kind: 'unrecorded', effect, key, ...(tool !== undefined ? { tool } : {}), message });

/**
 * The effects of a task answered from its recording instead of the world: model turns and tool
 * results from the ledger, delegations from the children's envelopes, waits from their
 * recorded answers. The gates and the approval policy of the current agent run for real (they
 * are checks over its definitions), so a changed schema, `validate` hook, principal grant or
 * policy shows. What the recording does not have halts the replay ({@link ReplayHalt}).
 */
export class RecordedEffects {
  private tainted = false;

  constructor(private readonly o: RecordedEffectsOptions) {}

  async model(input: ModelEffectInput): Promise<ModelTurn> {
    const record = await this.settled('model', input.key, 'model', input.role);
    if (record.state === 'failed') throw new ReplayedFailure(record.error.code, record.error.message);
    const turn = record.result as { content?: unknown; stopReason?: unknown } | null;
    if (!Array.isArray(turn?.content)) throw halt('model', input.key, `the recorded result of ${input.key} is not a model turn`);
    this.o.emit({ kind: 'model', key: input.key, role: input.role });
    return { content: turn.content as ModelTurn['content'], stopReason: typeof turn.stopReason === 'string' ? turn.stopReason : null };
  }

  /** Every call of one step, in order, through the gates and then the recording (as `runToolsEffect`). */
  async tools(input: ToolsEffectInput): Promise<ToolResultBlock[]> {
    const results: ToolResultBlock[] = [];
    const report = (key: string, tool: string, status: ToolCallStatus, args: unknown, code?: string) =>
      this.o.emit({ kind: 'tool', key, tool, status, ...(code !== undefined ? { code } : {}), args });
    const refuse = (toolUseId: string, error: { code: string; message: string }) =>
      results.push({ type: 'tool_result', tool_use_id: toolUseId, content: JSON.stringify({ error }), is_error: true });
    for (const call of input.calls) {
      try {
        const { tool, input: proposed } = await admitCall(this.o.agent.tools, call.name, call.input);
        await authorizeCall(this.o.principal, tool, proposed);
        const decided = this.o.decisions?.[call.key];
        if (decided?.verdict === 'reject') {
          const error = decided.unknownOutcome
            ? { code: 'unknown_outcome', message: `this call was interrupted and may or may not have happened; ${decided.approver} decided not to repeat it${decided.reason ? `: ${decided.reason}` : ''}. Do not call it again with these arguments.` }
            : { code: 'rejected_by_approver', message: `${decided.approver} rejected this call${decided.reason ? `: ${decided.reason}` : ''}. Do not retry it as is; choose another way or ask the user.` };
          report(call.key, tool.name, 'rejected', call.input, error.code);
          refuse(call.toolUseId, error);
          continue;
        }
        if (!decided) {
          const need = approvalNeed(this.o.agent.approvals, tool, proposed, { key: call.key, rationale: input.rationale, tainted: this.tainted });
          if (need.reasons.length) {
            const ran = (await this.o.ledger(call.key)) !== undefined || this.o.toolEvent(call.key) !== undefined;
            throw halt(
              'tools',
              call.key,
              ran
                ? `the replayed agent asks an approver before ${tool.name} ${call.key} (${need.details.join('; ')}); the recording ran it without one`
                : `${tool.name} ${call.key} waits for an approver here (${need.reasons.join(', ')}), and the recording has no decision on it`,
              tool.name,
            );
          }
        }
        const args = decided?.verdict === 'edit' ? decided.args : proposed;
        if (tool.delegation === 'handoff') {
          const { agent, input: childInput, context } = args as { agent: string; input: unknown; context: string };
          const joined = await this.delegate({ key: call.key, tasks: [{ agent, input: childInput }], handoff: { context } });
          const child = joined.results[0]!;
          report(call.key, tool.name, 'succeeded', call.input);
          throw new ReplayHandoff(child.status === 'done' ? { status: 'done', output: child.output } : { status: 'failed', error: child.error ?? { code: ErrorCode.internal, message: `${child.taskId} ended without an error` } });
        }
        if (tool.delegation === 'delegate') {
          const { tasks, join } = args as { tasks: DelegateInput['tasks']; join?: DelegateInput['join'] };
          const joined = await this.delegate({ key: call.key, tasks, ...(join !== undefined ? { join } : {}) });
          report(call.key, tool.name, 'succeeded', call.input);
          results.push({ type: 'tool_result', tool_use_id: call.toolUseId, content: JSON.stringify(joined.results.map(({ usage: _u, ...r }) => r)) });
          continue;
        }
        const outcome = await this.toolOutcome(call.key, tool.name);
        if (outcome.status !== 'succeeded') {
          report(call.key, tool.name, outcome.status, call.input, outcome.error.code);
          refuse(call.toolUseId, outcome.error);
          continue;
        }
        if (tool.untrusted) this.tainted = true;
        report(call.key, tool.name, 'succeeded', call.input);
        const content = JSON.stringify(outcome.result) ?? 'null';
        results.push({ type: 'tool_result', tool_use_id: call.toolUseId, content: tool.untrusted ? delimitUntrusted(tool.name, content) : content });
      } catch (err) {
        if (err instanceof ReplayHalt || err instanceof ReplayHandoff) throw err;
        // A gate refused it (or a hook threw): the call never reached the ledger, at run time either.
        const wire = toWireError(err);
        const status = err instanceof ToolRejectedError ? 'rejected' : wire.code === ErrorCode.toolUnavailable ? 'unavailable' : 'failed';
        report(call.key, call.name, status, call.input, wire.code);
        refuse(call.toolUseId, wire);
      }
    }
    return results;
  }

  /**
   * A delegation joined from the children's envelopes. Children that ended are added in the
   * order they ended (`updatedAt`) until the join is ready, the way the parent was woken by
   * each end; children the join did not need are `cancelled`, as at run time.
   */
  async delegate(input: DelegateInput): Promise<DelegateOutput> {
    const join = input.join ?? 'all';
    const ids = input.tasks.map((_, i) => childIdOf(input.key, i));
    const results: (ChildResult | undefined)[] = input.tasks.map((t, i) => this.refusal(ids[i]!, t));
    const ended: Array<{ i: number; at: number; result: ChildResult }> = [];
    for (const [i, t] of input.tasks.entries()) {
      if (results[i]) continue;
      const id = ids[i]!;
      const env = await this.o.task(id);
      if (!env) throw halt('delegate', input.key, `the recording never started child task ${id} (agent ${t.agent})`);
      if (env.agent !== t.agent) throw halt('delegate', input.key, `child task ${id} ran agent ${env.agent} in the recording; the replay starts agent ${t.agent}`);
      const result = childResult(id, env);
      if (result) ended.push({ i, at: env.updatedAt, result });
    }
    ended.sort((a, b) => a.at - b.at || a.i - b.i);
    for (const e of ended) {
      if (joinReady(join, results)) break;
      results[e.i] = e.result;
    }
    if (!joinReady(join, results)) throw halt('delegate', input.key, `delegation ${input.key} still waits for its children in the recording`);
    const spent = results.find((r) => r && exhausted(r));
    if (spent) throw halt('delegate', input.key, `child task ${spent.taskId} ran out of its budget share; the recording stopped the task there (${spent.error?.code})`);
    return { join, results: results.map((r, i) => r ?? { taskId: ids[i]!, agent: input.tasks[i]!.agent, status: 'cancelled', error: { code: ErrorCode.cancelled, message: 'not needed by the join' } }) };
  }

  async wait(input: WaitInput): Promise<WaitOutput> {
    const record = await this.settled('wait', input.key, 'wait', 'wait');
    if (record.state === 'failed') throw new ReplayedFailure(record.error.code, record.error.message);
    return record.result as WaitOutput;
  }

  /** A tool call's recorded outcome: the ledger's, or for calls refused before it, the `tool` event's. */
  private async toolOutcome(key: string, tool: string): Promise<{ status: 'succeeded'; result: unknown } | { status: Exclude<ToolCallStatus, 'succeeded'>; error: { code: string; message: string } }> {
    const record = await this.o.ledger(key);
    if (!record || record.state === 'started') {
      // A breaker that was open, or no worker to run it: the call failed before the ledger.
      const event = this.o.toolEvent(key);
      if (event?.tool === tool && event.error && (event.status === 'unavailable' || event.status === 'failed')) return { status: event.status, error: { code: event.error.code, message: event.error.message } };
      if (event?.status === 'rejected') throw halt('tools', key, `the recording refused ${event.tool} ${key} (${event.error?.code ?? 'rejected'}); the replayed agent lets it through`, tool);
    }
    const settled = await this.settled('tools', key, 'tool', tool, record);
    if (settled.state === 'succeeded') return { status: 'succeeded', result: settled.result };
    const { code, message } = settled.error;
    // Gates refuse before the ledger, so a recorded failure is the tool's (or its worker's): `failed`, or `unavailable`.
    return { status: code === ErrorCode.toolUnavailable ? 'unavailable' : 'failed', error: { code, message } };
  }

  /** The settled ledger record of an effect, or a halt saying why the recording has none. */
  private async settled(effect: EffectKind, key: string, kind: LedgerRecord['kind'], name: string, known?: LedgerRecord): Promise<Exclude<LedgerRecord, { state: 'started' }>> {
    const record = known ?? (await this.o.ledger(key));
    const what = kind === 'tool' ? `a call of ${name}` : kind === 'model' ? 'a model call' : 'a wait';
    if (!record) throw halt(effect, key, `the replayed machine asked for ${what} ${key}, which the recording never ran`, kind === 'tool' ? name : undefined);
    if (record.state === 'started') throw halt(effect, key, `the recording started ${what} ${key} but never recorded its outcome`, kind === 'tool' ? name : undefined);
    if (record.kind !== kind || (kind === 'tool' && record.name !== name)) {
      const ran = record.kind === 'tool' ? `a call of ${record.name}` : record.kind === 'model' ? 'a model call' : 'a wait';
      throw halt(effect, key, `the replayed machine asks for ${what} under ${key}, where the recording ran ${ran}`, kind === 'tool' ? name : undefined);
    }
    return record;
  }

  /** A child that cannot be started (unknown agent, input it would refuse), as a failed result (as `runDelegation`). */
  private refusal(taskId: string, task: DelegateInput['tasks'][number]): ChildResult | undefined {
    const agent = this.o.agents.get(task.agent);
    if (!agent) return { taskId, agent: task.agent, status: 'failed', error: { code: ErrorCode.unknownAgent, message: `no agent named "${task.agent}" (agents: ${[...this.o.agents.keys()].join(', ')})` } };
    const parsed = agent.input.safeParse(task.input);
    if (!parsed.success) return { taskId, agent: task.agent, status: 'failed', error: { code: ErrorCode.invalidInput, message: `input for "${task.agent}" does not match its schema:\n${formatIssues(parsed.error)}` } };
    return undefined;
  }
}

/** Whether a child failed because it ran out of its share of a budget limit (as `runDelegation`). */
function exhausted(r: ChildResult): boolean {
  const limit = r.error?.details?.limit;
  return r.status === 'failed' && r.error?.code === ErrorCode.limitExceeded && (limit === 'usd' || limit === 'tokens' || limit === 'steps');
}
