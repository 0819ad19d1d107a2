import type { ModelEffectInput, ModelTurn } from '../machines/conversation.ts';
import type { Tool } from '../sandbox/tool.ts';
import type { EffectGateway } from './effect-gateway.ts';
import type { Clock } from '../common/clock.ts';
import { TroupeError } from '../common/errors.ts';
import type { Breakers } from './breakers.ts';
import { trimContext, type TrimResult } from './model/context-trim.ts';
import { isMalformedToolUse } from './model/errors.ts';
import { estimateTokens } from './model/estimate-tokens.ts';
import type { ModelCallRequest, ModelCallResult, ModelClient, ToolSpec } from './model/model-client.ts';
import type { CallQuote } from './model/quote.ts';

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
  /**
   * Asks the supervisor for this call, given its quote (none if the client cannot quote):
   * returns the `max_tokens` it may use (undefined: the route's), or throws
   * {@link LimitReachedSignal} when the call must not be made.
   */
  admit: (key: string, quote: CallQuote | undefined) => number | undefined;
  /** The call failed without a result: drop its budget hold. */
  onFailure: (key: string) => void;
  /** Per-model circuit breakers, shared by all hosts. */
  breakers: Breakers;
  clock: Clock;
  /** The call was never run before (see {@link EffectSpec.fresh}): the ledger is not read first. */
  fresh?: boolean | undefined;
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
  const offered = input.tools === undefined ? deps.tools : new Map([...deps.tools].filter(([name]) => input.tools!.includes(name)));
  const specs = toolSpecs(offered);
  const system = input.system ?? deps.system;
  // Trimming is a pure function of the recorded conversation, so a replay sends the same request.
  const trim = trimContext(input.messages, {
    thresholdTokens: deps.contextTokens,
    overheadTokens: estimateTokens({ system, tools: specs, messages: [] }),
  });
  const request: ModelCallRequest = {
    role: input.role,
    system,
    tools: specs,
    messages: trim.messages,
    ...(input.maxTokens ? { maxTokens: input.maxTokens } : {}),
  };
  // Quoted once: the estimate walks the whole conversation.
  const quote = deps.client.quote?.(request);
  const maxTokens = deps.admit(input.key, quote);
  const breaker = `model.${quote?.model ?? request.role}`;
  const { result, replayed } = await deps.gateway.run<ModelCallResult>({
    key: input.key,
    kind: 'model',
    name: input.role,
    sideEffect: false,
    irreversible: false,
    leaseMs: 0,
    signal,
    fresh: deps.fresh,
    execute: () =>
      guardedCall(deps, breaker, signal, () => deps.client
        .call(
          { ...request, ...(maxTokens !== undefined ? { maxTokens } : {}) },
          { signal, onText: deps.onText, ...(deps.deadlineAt ? { deadlineAt: deps.deadlineAt } : {}) },
        )
        // A malformed tool call is the model's mistake, not an outage: keep the (billed) turn,
        // repaired so the conversation stays valid, and let the gates refuse the call so the
        // model sees why and re-plans. Repairing inside the effect records the repaired turn.
        .catch((err: unknown) => {
          if (isMalformedToolUse(err)) return repairToolUses(err.response);
          if (!signal.aborted) deps.onFailure(input.key);
          throw err;
        })),
  });
  deps.onResult(input, result, replayed, trim);
  return { content: result.content, stopReason: result.stopReason };
}

/**
 * A model call past its breaker. While the breaker is open the task waits (it needs the model
 * to go on), up to its deadline; after the open period one host's call is the probe.
 */
async function guardedCall<T>(deps: ModelEffectDeps, key: string, signal: AbortSignal, call: () => Promise<T>): Promise<T> {
  for (;;) {
    const admission = await deps.breakers.admit(key);
    if (admission.kind === 'open') {
      const wake = Math.min(admission.retryAt, deps.deadlineAt ?? Infinity) - deps.clock.now();
      await deps.clock.sleep(Math.max(50, wake), signal);
      continue;
    }
    try {
      const result = await call();
      await deps.breakers.succeeded(key);
      return result;
    } catch (err) {
      // Only outages count: overload, 5xx, timeouts after the client's own retries. Not 4xx.
      if (!signal.aborted && err instanceof TroupeError && err.retryable) await deps.breakers.failed(key, admission.kind === 'probe');
      throw err;
    }
  }
}

/**
 * Makes a model turn with malformed tool calls safe to send back: a non-object input is wrapped
 * as `{ malformed_input: <what the model sent> }` (the API requires objects). Unknown tool names
 * are kept; the schema gate answers them with the list of real tools.
 */
export function repairToolUses(result: ModelCallResult): ModelCallResult {
  return {
    ...result,
    content: result.content.map((block) =>
      block.type === 'tool_use' && (typeof block.input !== 'object' || block.input === null || Array.isArray(block.input))
        ? { ...block, input: { malformed_input: block.input } }
        : block,
    ),
  };
}
