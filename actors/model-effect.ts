import type { ModelEffectInput, ModelTurn } from '../machines/conversation.ts';
import type { Tool } from '../sandbox/tool.ts';
import type { EffectGateway } from './effect-gateway.ts';
import type { ModelCallResult, ModelClient, ToolSpec } from './model/model-client.ts';

/** What a task lends its model effect. */
export interface ModelEffectDeps {
  gateway: EffectGateway;
  client: ModelClient;
  system: string;
  tools: ReadonlyMap<string, Tool<any, any>>;
  /** Streamed text, as progress for watchers. */
  onText: (delta: string) => void;
  /** Called once per call with its (possibly replayed) accounting. */
  onResult: (input: ModelEffectInput, result: ModelCallResult, replayed: boolean) => void;
  deadlineAt: number | null;
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
  const { result, replayed } = await deps.gateway.run<ModelCallResult>({
    key: input.key,
    kind: 'model',
    name: input.role,
    sideEffect: false,
    irreversible: false,
    leaseMs: 0,
    execute: () =>
      deps.client.call(
        { role: input.role, system: deps.system, tools: specs, messages: input.messages },
        { signal, onText: deps.onText, ...(deps.deadlineAt ? { deadlineAt: deps.deadlineAt } : {}) },
      ),
  });
  deps.onResult(input, result, replayed);
  return { content: result.content, stopReason: result.stopReason };
}
