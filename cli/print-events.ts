import type { TaskEvent } from '../runtime/wire.ts';

/** One readable line per task event, for `submit --wait` and the demo. */
export function formatEvent(e: TaskEvent): string | undefined {
  switch (e.type) {
    case 'accepted':
      return `accepted by agent ${e.agent}`;
    case 'resumed':
      return `resumed on host ${e.host}`;
    case 'state':
      return `state ${e.state}${e.step !== undefined ? ` (step ${e.step})` : ''}`;
    case 'progress':
      return undefined;
    case 'model':
      return `model ${e.model} [${e.role}] ${e.usage.inputTokens}+${e.usage.cacheReadInputTokens + e.usage.cacheCreationInputTokens} in / ${e.usage.outputTokens} out tokens, $${e.costUsd.toFixed(6)}, ${e.latencyMs} ms, ${e.stopReason ?? '-'}${e.attempts > 1 ? `, ${e.attempts} attempts` : ''}${e.replayed ? ' (replayed from ledger)' : ''}`;
    case 'tool':
      return `tool ${e.tool} ${e.status}${e.error ? `: ${e.error.code}: ${e.error.message}` : ''} (${e.latencyMs} ms)${e.replayed ? ' (replayed from ledger)' : ''}`;
    case 'waiting':
      return e.children
        ? `parked until child tasks join (${e.join}): ${e.children.join(', ')}`
        : `parked until an inbox event arrives${e.inbox?.until ? ` or ${new Date(e.inbox.until).toISOString()}` : ''}`;
    case 'handoff':
      return `handed over to ${e.to} as ${e.childTaskId}, passing: ${e.context}`;
    case 'inbox':
      return `inbox event #${e.seq} (${e.eventType}) ${e.accepted ? 'received' : `refused: ${e.error?.code}: ${e.error?.message}`}`;
    case 'done':
      return `done`;
    case 'failed':
      return `failed: ${e.error.code}: ${e.error.message}`;
  }
}
