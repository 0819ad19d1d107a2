import { toWireError } from '../common/errors.ts';
import type { ToolResultBlock, ToolsEffectInput } from '../machines/conversation.ts';
import type { SnapshotEnvelope } from '../runtime/wire.ts';
import { InvalidToolOutputError, ToolRejectedError, ToolTimeoutError, ToolUnavailableError } from '../sandbox/errors.ts';
import { admitCall } from '../sandbox/gates.ts';
import type { Tool } from '../sandbox/tool.ts';
import type { Breakers } from './breakers.ts';
import type { EffectGateway } from './effect-gateway.ts';
import type { ApprovalPolicy } from './agent.ts';
import { approvalNeed } from './approval-policy.ts';
import { ApprovalNeededSignal, UnknownOutcomeError } from './errors.ts';

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
  taskId: string;
  tools: ReadonlyMap<string, Tool<any, any>>;
  onResult: (report: { key: string; tool: string; status: 'succeeded' | 'failed' | 'rejected' | 'unavailable'; error?: { code: string; message: string }; latencyMs: number; replayed: boolean }) => void;
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
      const decided = deps.decision(call.key);
      if (decided?.verdict === 'reject') {
        const error = { code: 'rejected_by_approver', message: `${decided.approver} rejected this call${decided.reason ? `: ${decided.reason}` : ''}. Do not retry it as is; choose another way or ask the user.` };
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
      const { result, replayed } = await deps.gateway.run<unknown>({
        key: call.key,
        kind: 'tool',
        name: tool.name,
        sideEffect: tool.sideEffect,
        irreversible: tool.reversibility === 'irreversible',
        leaseMs: tool.timeoutMs + 5_000,
        signal,
        reconcile: tool.reconcile
          ? async () => {
              const r = await tool.reconcile!(call.key, args);
              return r.happened ? { happened: true, result: r.output } : { happened: false };
            }
          : undefined,
        // The breaker is consulted only when the call really runs: a recorded result replays
        // whatever the breaker says now.
        execute: () => guarded(deps.breakers, tool, () => runWithTimeout(tool, args, { key: call.key, taskId: deps.taskId, signal }), signal),
      });
      if (tool.untrusted) deps.taint();
      deps.onResult({ key: call.key, tool: tool.name, status: 'succeeded', latencyMs: deps.now() - started, replayed });
      results.push({ type: 'tool_result', tool_use_id: call.toolUseId, content: JSON.stringify(result) });
    } catch (err) {
      if (err instanceof UnknownOutcomeError || err instanceof ApprovalNeededSignal || signal.aborted) throw err;
      const wire = toWireError(err);
      const status = err instanceof ToolRejectedError ? 'rejected' : err instanceof ToolUnavailableError ? 'unavailable' : 'failed';
      deps.onResult({ key: call.key, tool: call.name, status, error: wire, latencyMs: deps.now() - started, replayed: false });
      results.push({ type: 'tool_result', tool_use_id: call.toolUseId, content: JSON.stringify({ error: wire }), is_error: true });
    }
  }
  return results;
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

async function runWithTimeout(tool: Tool<any, any>, args: unknown, ctx: { key: string; taskId: string; signal: AbortSignal }): Promise<unknown> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(ctx.signal.reason);
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  try {
    const output = await Promise.race([
      tool.run(args, { key: ctx.key, taskId: ctx.taskId, signal: controller.signal }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const err = new ToolTimeoutError(tool.name, tool.timeoutMs);
          controller.abort(err);
          reject(err);
        }, tool.timeoutMs);
      }),
    ]);
    const checked = tool.output.safeParse(output);
    if (!checked.success) {
      throw new InvalidToolOutputError(tool.name, checked.error.issues[0]?.message ?? 'schema mismatch');
    }
    return checked.data;
  } finally {
    clearTimeout(timer);
    ctx.signal.removeEventListener('abort', onAbort);
  }
}
