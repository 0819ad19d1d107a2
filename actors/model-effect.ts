import type { ModelEffectInput, ModelTurn } from '../machines/conversation.ts';
import type { Tool } from '../sandbox/tool.ts';
import type { EffectGateway } from './effect-gateway.ts';
import { trimContext, type TrimResult } from './model/context-trim.ts';
import { estimateTokens } from './model/estimate-tokens.ts';
import type { ModelCallResult, ModelClient, ToolSpec } from './model/model-client.ts';

/** What a task lends its model effect. */
export interface ModelEffectDeps {
  gateway: EffectGateway;
  client: ModelClient;
  system: string;
  tools: ReadonlyMap<string, Tool<any, any>>;
  /** Streamed text, as progress for watchers. */
  onText: (delta: string) => void;
  /** Called once per call with its (possibly replayed) accounting and what trimming did. */
  onResult: (input: ModelEffectInput, result: ModelCallResult, replayed: boolean, trim: TrimResult) => void;
  deadlineAt: number | null;
  /** Estimated tokens of conversation sent per call; older context is trimmed past it. */
  contextTokens: number;
}

/** The tools of an agent as the model sees them. */
export function toolSpecs(tools: ReadonlyMap<string, Tool<any, any>>): ToolSpec[] {
  return [...tools.values()].map((t) => ({ name: t.name, description: t.description, inputSchema: t.inputJsonSchema }));
}

/**
 * Runs one model call through the gateway: a response recorded in the ledger is returned
 * without calling (and paying for) the model again.
 */
export async function runModelEffect(input: ModelEffectInput, deps: ModelEffectDeps, signal: AbortSignal): Promise<ModelTurn> {
  const specs = toolSpecs(deps.tools);
  // Trimming is a pure function of the recorded conversation, so a replay sends the same request.
  const trim = trimContext(input.messages, {
    thresholdTokens: deps.contextTokens,
    overheadTokens: estimateTokens({ system: deps.system, tools: specs, messages: [] }),
  });
  const { result, replayed } = await deps.gateway.run<ModelCallResult>({
    key: input.key,
    kind: 'model',
    name: input.role,
    sideEffect: false,
    irreversible: false,
    leaseMs: 0,
    execute: () =>
      deps.client.call(
        { role: input.role, system: deps.system, tools: specs, messages: trim.messages },
        { signal, onText: deps.onText, ...(deps.deadlineAt ? { deadlineAt: deps.deadlineAt } : {}) },
      ),
  });
  deps.onResult(input, result, replayed, trim);
  return { content: result.content, stopReason: result.stopReason };
}
