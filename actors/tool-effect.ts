import { ErrorCode, toWireError } from '../common/errors.ts';
import { isNatsFailure } from '../runtime/connection.ts';
import type { DelegateInput, DelegateOutput, ToolCallIntent, ToolResultBlock, ToolsEffectInput } from '../machines/conversation.ts';
import type { SnapshotEnvelope } from '../runtime/wire.ts';
import { ToolRejectedError, ToolUnavailableError } from '../sandbox/errors.ts';
import { executeTool, type ExecuteOptions } from '../sandbox/execute.ts';
import { delimitUntrusted } from '../sandbox/output.ts';
import { runLedgered } from './tool-call.ts';
import { dispatchTool, type DispatchOptions } from './tool-dispatch.ts';
import { admitCall, authorizeCall, type PrincipalGrant } from '../sandbox/gates.ts';
import type { Tool } from '../sandbox/tool.ts';
import type { Breakers } from './breakers.ts';
import type { EffectGateway } from './effect-gateway.ts';
import type { ApprovalPolicy } from './agent.ts';
import { approvalNeed } from './approval-policy.ts';
import { ApprovalNeededSignal, HandoffSignal, LimitReachedSignal, UnknownOutcomeError, WaitSignal } from './errors.ts';

/** How a host runs tool calls: `inline` tools in-process, `thread` and `bwrap` tools on workers. */
export interface ToolExecution {
  inline: ExecuteOptions;
  dispatch: DispatchOptions;
}

/** An approver's decision on one tool call, as recorded in the task's envelope. */
export type RecordedDecision = NonNullable<SnapshotEnvelope['approvals']>[string];

/** What a task lends its tool effect. */
export interface ToolEffectDeps {
  gateway: EffectGateway;
  /** The agent's approval policy. */
  policy: ApprovalPolicy;
  /** An approver's recorded decision on a call, if there is one. */
  decision: (callKey: string) => RecordedDecision | undefined;
  /** Whether untrusted content is in the conversation; `taint()` records that it now is. */
  tainted: () => boolean;
  taint: () => void;
  breakers: Breakers;
  /** How calls run: inline tools here, isolated ones dispatched to workers. */
  execution: ToolExecution;
  /** Runs a call of the built-in `delegate` tool: child tasks, joined. */
  delegate: (input: DelegateInput) => Promise<DelegateOutput>;
  taskId: string;
  /** Who the task acts for and what they may call; undefined when no principals are configured. */
  principal: { name: string; grant: PrincipalGrant } | undefined;
  tools: ReadonlyMap<string, Tool<any, any>>;
  /** The calls were never run before (see {@link EffectSpec.fresh}): the ledger is not read first. */
  fresh?: boolean | undefined;
  onResult: (report: { key: string; tool: string; status: 'succeeded' | 'failed' | 'rejected' | 'unavailable'; gate?: 'schema' | 'semantic' | 'authorization'; error?: { code: string; message: string }; latencyMs: number; replayed: boolean }) => void;
  now: () => number;
}

/**
 * Runs the tool calls of one step, in order, each through the gates and then the gateway.
 * A refused or failed call becomes an `is_error` tool result the model can re-plan from; an
 * unknown outcome of an irreversible call stops the task instead (never retried blindly).
 */
export async function runToolsEffect(input: ToolsEffectInput, deps: ToolEffectDeps, signal: AbortSignal): Promise<ToolResultBlock[]> {
  const results: ToolResultBlock[] = [];
  for (const call of input.calls) {
    const started = deps.now();
    try {
      const { tool, input: proposed } = await admitCall(deps.tools, call.name, call.input);
      await authorizeCall(deps.principal, tool, proposed);
      const decided = deps.decision(call.key);
      if (decided?.verdict === 'reject') {
        const error = decided.unknownOutcome
          ? { code: 'unknown_outcome', message: `this call was interrupted and may or may not have happened; ${decided.approver} decided not to repeat it${decided.reason ? `: ${decided.reason}` : ''}. Do not call it again with these arguments.` }
          : { code: 'rejected_by_approver', message: `${decided.approver} rejected this call${decided.reason ? `: ${decided.reason}` : ''}. Do not retry it as is; choose another way or ask the user.` };
        deps.onResult({ key: call.key, tool: tool.name, status: 'rejected', error, latencyMs: 0, replayed: false });
        results.push({ type: 'tool_result', tool_use_id: call.toolUseId, content: JSON.stringify({ error }), is_error: true });
        continue;
      }
      if (!decided) {
        const need = approvalNeed(deps.policy, tool, proposed, { key: call.key, rationale: input.rationale, tainted: deps.tainted() });
        if (need.reasons.length) throw new ApprovalNeededSignal(call.key, tool, proposed, need, input.rationale);
      }
      // An edit was re-validated against the tool's schema when the decision was accepted.
      const args = decided?.verdict === 'edit' ? decided.args : proposed;
      const rerunAttempt = decided?.unknownOutcome?.attempt;
      if (tool.delegation === 'handoff') {
        const { agent, input: childInput, context } = args as { agent: string; input: unknown; context: string };
        const joined = await deps.delegate({ key: call.key, tasks: [{ agent, input: childInput }], handoff: { context } });
        const child = joined.results[0]!;
        deps.onResult({ key: call.key, tool: tool.name, status: 'succeeded', latencyMs: deps.now() - started, replayed: false });
        throw new HandoffSignal(child.taskId, child.status === 'done' ? { status: 'done', output: child.output } : { status: 'failed', error: child.error ?? { code: ErrorCode.internal, message: `${child.taskId} ended without an error` } });
      }
      if (tool.delegation === 'delegate') {
        const { tasks, join } = args as { tasks: DelegateInput['tasks']; join?: DelegateInput['join'] };
        const joined = await deps.delegate({ key: call.key, tasks, ...(join !== undefined ? { join } : {}) });
        deps.onResult({ key: call.key, tool: tool.name, status: 'succeeded', latencyMs: deps.now() - started, replayed: false });
        results.push({ type: 'tool_result', tool_use_id: call.toolUseId, content: JSON.stringify(joined.results.map(({ usage: _u, ...r }) => r)) });
        continue;
      }
      const { result, replayed } =
        tool.isolation === 'inline'
          ? // The breaker is consulted only when the call really runs: a recorded result replays
            // whatever the breaker says now.
            await runLedgered(deps.gateway, tool, { key: call.key, args, signal, rerunAttempt, fresh: deps.fresh }, () =>
              guarded(deps.breakers, tool, () => executeTool(tool, args, { key: call.key, taskId: deps.taskId, signal }, deps.execution.inline), signal),
            )
          : // Isolated tools run on workers, which keep the call's ledger entry; a recorded
            // outcome is replayed here without needing one.
            ((deps.fresh ? undefined : await deps.gateway.recorded<unknown>(call.key)) ??
            (await guarded(deps.breakers, tool, () => dispatchTool(tool, { key: call.key, taskId: deps.taskId, args, ...(rerunAttempt !== undefined ? { rerunAttempt } : {}) }, signal, deps.execution.dispatch), signal)));
      if (tool.untrusted) deps.taint();
      deps.onResult({ key: call.key, tool: tool.name, status: 'succeeded', latencyMs: deps.now() - started, replayed });
      const content = JSON.stringify(result) ?? 'null';
      results.push({ type: 'tool_result', tool_use_id: call.toolUseId, content: tool.untrusted ? delimitUntrusted(tool.name, content) : content });
    } catch (err) {
      if (err instanceof UnknownOutcomeError) throw unknownOutcomeRequest(err, deps.tools.get(call.name)!, call, input.rationale, deps);
      if (err instanceof ApprovalNeededSignal || err instanceof WaitSignal || err instanceof LimitReachedSignal || err instanceof HandoffSignal || signal.aborted) throw err;
      // NATS failed, not the call: its outcome is unknown here (a charge may have happened before
      // its record could be written). The task is let go and resumes through the ledger.
      if (isNatsFailure(err)) throw err;
      const wire = toWireError(err);
      const status = err instanceof ToolRejectedError ? 'rejected' : wire.code === ErrorCode.toolUnavailable ? 'unavailable' : 'failed';
      deps.onResult({ key: call.key, tool: call.name, status, ...(err instanceof ToolRejectedError ? { gate: err.gate } : {}), error: wire, latencyMs: deps.now() - started, replayed: false });
      results.push({ type: 'tool_result', tool_use_id: call.toolUseId, content: JSON.stringify({ error: wire }), is_error: true });
    }
  }
  return results;
}

/**
 * An irreversible call whose runner vanished mid-call, with nothing to reconcile it: a person
 * checks the outside system and says whether to run it again. Asked once per vanished attempt.
 */
function unknownOutcomeRequest(err: UnknownOutcomeError, tool: Tool<any, any>, call: ToolCallIntent, rationale: string | undefined, deps: ToolEffectDeps): ApprovalNeededSignal {
  const previous = deps.decision(call.key);
  const args = previous?.args ?? tool.input.parse(call.input);
  return new ApprovalNeededSignal(
    call.key,
    tool,
    args,
    {
      reasons: ['unknown_outcome'],
      details: [
        `the runner of attempt ${err.attempt} stopped mid-call, so troupe cannot tell whether it happened. Check the outside system: approve to run it again (it did not happen), reject to not repeat it`,
      ],
    },
    rationale,
    { attempt: err.attempt },
  );
}

/** Runs a tool call past its breaker and reports how it went. */
async function guarded<T>(breakers: Breakers, tool: Tool<any, any>, run: () => Promise<T>, signal: AbortSignal): Promise<T> {
  const key = `tool.${tool.name}`;
  const admission = await breakers.admit(key);
  if (admission.kind === 'open') throw new ToolUnavailableError(tool.name, admission.failures, admission.retryAt);
  try {
    const result = await run();
    await breakers.succeeded(key);
    return result;
  } catch (err) {
    // Bad output is the tool's fault too; aborts and refusals of the input are not outages.
    if (!signal.aborted && !(err instanceof ToolRejectedError)) await breakers.failed(key, admission.kind === 'probe');
    throw err;
  }
}
