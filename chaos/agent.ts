/**
 * The workload of the chaos run: an agent whose every task makes `charges` irreversible calls of
 * `chaos_charge` (see `charge-tool.ts`) through the effect ledger, on tool workers, and the
 * scripted model that drives it.
 */
import { z } from 'zod';
import { defineAgent } from '../actors/agent.ts';
import type { ContentBlock, ModelCallRequest, ModelCallResult, ModelClient } from '../actors/model/model-client.ts';
import { chaosCharge } from './charge-tool.ts';

export { chaosCharge, journalLines } from './charge-tool.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const chaosInput = z.object({
  journal: z.string().min(1),
  /** Charges the task makes, one per step. */
  charges: z.number().int().min(1).max(5),
  delayMs: z.number().int().min(0).max(10_000),
});
export type ChaosInput = z.infer<typeof chaosInput>;

/** The agent of the chaos run (and of `test/cluster`). */
export const chaosAgent = defineAgent({
  name: 'chaos',
  description: 'makes a few irreversible charges, one per step',
  input: chaosInput,
  tools: [chaosCharge],
  // Charges run unasked: this run is about crashes, not approvals (recorded as auto-approved).
  approvals: { autoApprove: ['chaos_charge'] },
  limits: { steps: 8, wallClockMs: 600_000 },
  prompt: (i) => JSON.stringify(i),
});

/**
 * The model of the chaos agent, in the host process: one `chaos_charge` call per turn until the
 * task's charges are made, then a text answer listing what each call returned. Each call takes
 * `latencyMs`, so tasks are mid-flight when hosts are killed.
 */
export function chaosModel(latencyMs: number): ModelClient {
  return {
    async call(request: ModelCallRequest): Promise<ModelCallResult> {
      if (latencyMs > 0) await sleep(latencyMs);
      const input = chaosInput.parse(JSON.parse(request.messages[0]!.content as string));
      const turn = request.messages.filter((m) => m.role === 'assistant').length;
      const results = request.messages
        .flatMap((m) => (Array.isArray(m.content) ? m.content : []))
        .filter((b) => b.type === 'tool_result')
        .map((b) => (b as { content: string; is_error?: boolean }).is_error ? `error ${(b as { content: string }).content}` : (b as { content: string }).content);
      const content: ContentBlock[] =
        turn < input.charges
          ? [{ type: 'tool_use', id: `tu_${turn}`, name: 'chaos_charge', input: { journal: input.journal, amount: turn + 1, delayMs: input.delayMs } }]
          : [{ type: 'text', text: JSON.stringify(results) }];
      return {
        content,
        stopReason: content[0]!.type === 'tool_use' ? 'tool_use' : 'end_turn',
        model: 'chaos-scripted',
        role: request.role,
        usage: { inputTokens: 10, outputTokens: 5, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 },
        costUsd: 0,
        latencyMs,
        attempts: 1,
      };
    },
  };
}
