import type { Tool } from '../sandbox/tool.ts';
import type { EffectGateway, EffectOutcome } from './effect-gateway.ts';

/** One admitted call of a tool, as the ledger knows it. */
export interface LedgeredToolCall {
  /** Idempotency key `<taskId>/<step>/<callIndex>`. */
  key: string;
  args: unknown;
  signal: AbortSignal;
  /** A person said this vanished attempt did not happen: it may run again. */
  rerunAttempt?: number | undefined;
  /** No runner ran this call before (see {@link EffectSpec.fresh}). */
  fresh?: boolean | undefined;
}

/**
 * Runs a tool call at most once through the effect ledger, wherever it runs (an `inline` call in
 * the host, an isolated one on a worker): side-effecting calls leased for the tool's time limit
 * plus a margin, a vanished attempt settled by the tool's `reconcile`.
 */
export function runLedgered(gateway: EffectGateway, tool: Tool<any, any>, call: LedgeredToolCall, execute: () => Promise<unknown>): Promise<EffectOutcome<unknown>> {
  return gateway.run<unknown>({
    key: call.key,
    kind: 'tool',
    name: tool.name,
    sideEffect: tool.sideEffect,
    irreversible: tool.reversibility === 'irreversible',
    leaseMs: tool.timeoutMs + 5_000,
    signal: call.signal,
    rerunAttempt: call.rerunAttempt,
    fresh: call.fresh,
    reconcile: tool.reconcile
      ? async () => {
          const r = await tool.reconcile!(call.key, call.args);
          return r.happened ? { happened: true, result: r.output } : { happened: false };
        }
      : undefined,
    execute,
  });
}
