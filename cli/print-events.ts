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
      return `model ${e.model} [${e.role}] ${e.usage.inputTokens}+${e.usage.cacheReadInputTokens + e.usage.cacheCreationInputTokens} in / ${e.usage.outputTokens} out tokens, $${e.costUsd.toFixed(6)}, ${e.latencyMs} ms, ${e.stopReason ?? '-'}${e.attempts > 1 ? `, ${e.attempts} attempts` : ''}${e.replayed ? ' (replayed from ledger)' : ''}${e.budget ? `; ${budgetUsed(e.budget)}` : ''}`;
    case 'tool':
      return `tool ${e.tool}${e.args !== undefined ? `(${brief(e.args)})` : ''} ${e.status}${e.gate ? ` by the ${e.gate} gate` : ''}${e.error ? `: ${e.error.code}: ${e.error.message}` : ''} (${e.latencyMs} ms)${e.replayed ? ' (replayed from ledger)' : ''}`;
    case 'waiting':
      return e.children
        ? `parked until child tasks join (${e.join}): ${e.children.join(', ')}`
        : `parked until an inbox event arrives${e.inbox?.until ? ` or ${new Date(e.inbox.until).toISOString()}` : ''}`;
    case 'handoff':
      return `handed over to ${e.to} as ${e.childTaskId}, passing: ${e.context}`;
    case 'inbox':
      return `inbox event #${e.seq} (${e.eventType}) ${e.accepted ? 'received' : `refused: ${e.error?.code}: ${e.error?.message}`}`;
    case 'limit':
      return `limit ${e.limit} reached (${e.used} of ${e.max}): ${e.action === 'escalate' ? 'asking an approver' : 'stopping'} — ${e.message}`;
    case 'escalated':
      return `escalated ${e.requestId}${e.tier ? ` to tier ${e.tier}` : ''}: ${e.reason}`;
    case 'decision':
      return `decision ${e.verdict} by ${e.approverName} on ${e.requestId}${e.awaiting ? ` (${e.awaiting} more approver(s) needed)` : ''}`;
    case 'decision_refused':
      return `decision refused${e.requestId ? ` on ${e.requestId}` : ''}: ${e.error.code}: ${e.error.message}`;
    case 'flag':
      return `FLAG ${e.kind}: ${e.message}`;
    case 'done':
      return `done`;
    case 'failed':
      return `failed: ${e.error.code}: ${e.error.message}`;
  }
}

/** Compact JSON for one line, cut at 160 characters. */
function brief(value: unknown): string {
  const json = typeof value === 'string' ? value : (JSON.stringify(value) ?? '');
  return json.length > 160 ? `${json.slice(0, 157)}...` : json;
}

/** What a task's budget has used so far, against its limits. */
function budgetUsed({ used, limits }: NonNullable<Extract<TaskEvent, { type: 'model' }>['budget']>): string {
  return `budget used: $${used.usd.toFixed(6)}${limits.usd === null ? '' : ` of $${limits.usd}`}, ${used.tokens}${limits.tokens === null ? '' : ` of ${limits.tokens}`} tokens, ${used.steps} of ${limits.steps} steps`;
}
