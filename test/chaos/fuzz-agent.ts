/**
 * The agent the intake fuzz sends its valid tasks to, and what the fuzz needs to know of it: any
 * text is a valid input, and the task ends with that text echoed.
 */
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import type { FuzzAgent } from '../../chaos/fuzz.ts';

export const echoAgent = defineAgent({
  name: 'echo',
  description: 'echoes its text',
  input: z.strictObject({ text: z.string(), tags: z.array(z.string()).optional() }),
  system: 'echo desk',
  prompt: (input) => input.text,
});

/** What the scripted model answers to a prompt. */
export const echoed = (text: string): string => `echo: ${text}`;

export const fuzzEcho: FuzzAgent = {
  name: 'echo',
  input: (text) => ({ text }),
  output: echoed,
  // The last one has sixty thousand wrong items: a refusal listing them all would not fit in a NATS message.
  badInputs: [null, 42, 'text', [], {}, { text: 7 }, { text: 'x', extra: 1 }, { tags: ['a'] }, { text: 'x', tags: Array.from({ length: 60_000 }, () => 0) }],
};
