/**
 * The agent the intake fuzz sends its valid tasks to, and what the fuzz needs to know of it: any
 * text is a valid input, and the task ends with that text echoed (by {@link echoModel}).
 */
import { z } from 'zod';
import { defineAgent } from '../actors/agent.ts';
import type { ModelCallRequest, ModelCallResult, ModelClient } from '../actors/model/model-client.ts';
import type { FuzzAgent } from './fuzz.ts';

export const echoAgent = defineAgent({
  name: 'echo',
  description: 'echoes its text',
  input: z.strictObject({ text: z.string(), tags: z.array(z.string()).optional() }),
  system: 'echo desk',
  prompt: (input) => input.text,
});

/** What the scripted model answers to a prompt. */
export const echoed = (text: string): string => `echo: ${text}`;

/** The echo agent's model, in the host process: answers `echo: <prompt>` at once. */
export const echoModel: ModelClient = {
  async call(request: ModelCallRequest): Promise<ModelCallResult> {
    return {
      content: [{ type: 'text', text: echoed(String(request.messages[0]!.content)) }],
      stopReason: 'end_turn',
      model: 'echo',
      role: request.role,
      usage: { inputTokens: 10, outputTokens: 5, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 },
      costUsd: 0,
      latencyMs: 0,
      attempts: 1,
    };
  },
};

export const fuzzEcho: FuzzAgent = {
  name: 'echo',
  input: (text) => ({ text }),
  output: echoed,
  // The last one has sixty thousand wrong items: a refusal listing them all would not fit in a NATS message.
  badInputs: [null, 42, 'text', [], {}, { text: 7 }, { text: 'x', extra: 1 }, { tags: ['a'] }, { text: 'x', tags: Array.from({ length: 60_000 }, () => 0) }],
};
