import type { ModelCallRequest, ModelCallResult, ModelClient, ContentBlock } from '../../actors/model/model-client.ts';

/**
 * An in-process model for runtime tests that are not about the model: each call gets the next
 * turn computed from the request. Model behaviour itself is tested through the real SDK against
 * the simulator (test/model).
 */
export function scriptedModel(turn: (request: ModelCallRequest, call: number) => ContentBlock[]): ModelClient & { calls: number } {
  const client = {
    calls: 0,
    async call(request: ModelCallRequest): Promise<ModelCallResult> {
      const content = turn(request, client.calls++);
      return {
        content,
        stopReason: content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn',
        model: 'scripted',
        role: request.role,
        usage: { inputTokens: 10, outputTokens: 5, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 },
        costUsd: 0,
        latencyMs: 0,
        attempts: 1,
      };
    },
  };
  return client;
}

/** Number of assistant turns already in the request: the scripted turn index of a conversation. */
export function turnOf(request: ModelCallRequest): number {
  return request.messages.filter((m) => m.role === 'assistant').length;
}
