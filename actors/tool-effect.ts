import { toWireError } from '../common/errors.ts';
import type { ToolResultBlock, ToolsEffectInput } from '../machines/conversation.ts';
import { InvalidToolOutputError, ToolRejectedError, ToolTimeoutError } from '../sandbox/errors.ts';
import { admitCall } from '../sandbox/gates.ts';
import type { Tool } from '../sandbox/tool.ts';
import type { EffectGateway } from './effect-gateway.ts';
import { UnknownOutcomeError } from './errors.ts';

/** What a task lends its tool effect. */
export interface ToolEffectDeps {
  gateway: EffectGateway;
  taskId: string;
  tools: ReadonlyMap<string, Tool<any, any>>;
  onResult: (report: { key: string; tool: string; status: 'succeeded' | 'failed' | 'rejected'; error?: { code: string; message: string }; latencyMs: number; replayed: boolean }) => void;
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
      const { tool, input: args } = await admitCall(deps.tools, call.name, call.input);
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
        execute: () => runWithTimeout(tool, args, { key: call.key, taskId: deps.taskId, signal }),
      });
      deps.onResult({ key: call.key, tool: tool.name, status: 'succeeded', latencyMs: deps.now() - started, replayed });
      results.push({ type: 'tool_result', tool_use_id: call.toolUseId, content: JSON.stringify(result) });
    } catch (err) {
      if (err instanceof UnknownOutcomeError || signal.aborted) throw err;
      const wire = toWireError(err);
      const status = err instanceof ToolRejectedError ? 'rejected' : 'failed';
      deps.onResult({ key: call.key, tool: call.name, status, error: wire, latencyMs: deps.now() - started, replayed: false });
      results.push({ type: 'tool_result', tool_use_id: call.toolUseId, content: JSON.stringify({ error: wire }), is_error: true });
    }
  }
  return results;
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
