import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { defineTool } from '../../sandbox/tool.ts';
import type { ScenarioInput } from '../../simulator/index.ts';

/**
 * An agent that always needs an approver: each of its model turns costs about $0.08 on its
 * opus route, and its $0.10 limit escalates instead of stopping. Shared by every test that
 * needs a task parked for a human.
 */
const lookup = defineTool({ name: 'lookup', description: 'look up', input: z.object({ q: z.string() }), output: z.object({ a: z.string() }), run: async ({ q }) => ({ a: q }) });

export const spender = defineAgent({
  name: 'spender',
  description: 'spends more than its budget',
  input: z.object({ q: z.string() }),
  system: 'agent spender',
  tools: [lookup],
  limits: { usd: 0.1, onBreach: { usd: 'escalate' } },
  prompt: (i) => i.q,
});

/** Three expensive tool turns, then "All done." (route: `{ default: { model: 'claude-opus-4-6', maxTokens: 4096 } }`). */
export function spenderScenario(text = 'Working.'): ScenarioInput {
  const turn = (i: number) => ({ text, content: [{ type: 'tool_use' as const, name: 'lookup', input: { q: `q${i}` } }], usage: { output_tokens: 3000 } });
  return { name: 'spend', scripts: [{ name: 'spender', turns: [turn(0), turn(1), turn(2), { text: 'All done.' }] }] };
}
