/**
 * Context trimming: keeps a long conversation under a token budget without making it invalid.
 *
 * Two steps, cheapest loss first: (1) the content of the oldest `tool_result` blocks is replaced by
 * a short placeholder (the block and its `tool_use_id` stay, so every `tool_use` keeps its answer);
 * (2) if that is not enough, the oldest assistant/user turn pairs after the first user message are
 * dropped whole, so a `tool_use` and its `tool_result` always leave together. The first user
 * message (the task) and the most recent turns are never touched, and roles keep alternating.
 */
import { DEFAULT_CHARS_PER_TOKEN, estimateMessagesTokens } from './estimate-tokens.ts';
import type { ContentBlock, ModelMessage } from './model-client.ts';

/** Start of every placeholder, so an elided result is never elided twice. */
export const ELIDED_PREFIX = '[elided by troupe';

export interface TrimOptions {
  /** Trimming starts when the estimate (plus `overheadTokens`) exceeds this. */
  thresholdTokens: number;
  /** Trimming stops once the estimate is at or below this. @default thresholdTokens */
  targetTokens?: number;
  /** Tokens outside `messages` that count against the budget (system prompt, tools). @default 0 */
  overheadTokens?: number;
  /** Most recent `tool_result` blocks that are never elided. @default 2 */
  keepRecentToolResults?: number;
  /** Most recent assistant/user pairs that are never dropped (at least 1). @default 2 */
  keepRecentTurns?: number;
  /** @default 3 (see `estimateTokens`) */
  charsPerToken?: number;
}

export interface TrimResult {
  /** The trimmed conversation; the input array itself when nothing had to change. */
  messages: ModelMessage[];
  /** Estimate of the result, `overheadTokens` included. May still exceed the target when nothing more may go. */
  estimatedTokens: number;
  /** `tool_result` blocks whose content was replaced by a placeholder. */
  elidedToolResults: number;
  /** Assistant/user turn pairs removed. */
  droppedTurns: number;
}

function placeholder(chars: number): string {
  return `${ELIDED_PREFIX}: an older tool result of ${chars} characters was removed to save context]`;
}

function alternates(messages: readonly ModelMessage[]): boolean {
  return messages.every((m, i) => m.role === (i % 2 === 0 ? 'user' : 'assistant'));
}

/**
 * Returns `messages` trimmed to the budget. Pure: the input is never mutated.
 * Guarantees: the first message is kept as is; every `tool_use` still has its `tool_result` in the
 * next message and vice versa; roles alternate if they did; only whole pairs are dropped.
 */
export function trimContext(messages: readonly ModelMessage[], options: TrimOptions): TrimResult {
  const charsPerToken = options.charsPerToken ?? DEFAULT_CHARS_PER_TOKEN;
  const overhead = options.overheadTokens ?? 0;
  const target = Math.min(options.targetTokens ?? options.thresholdTokens, options.thresholdTokens);
  const keepResults = Math.max(0, options.keepRecentToolResults ?? 2);
  const keepTurns = Math.max(1, options.keepRecentTurns ?? 2);
  const tokensOf = (m: ModelMessage) => estimateMessagesTokens([m], charsPerToken);

  const perMessage = messages.map(tokensOf);
  let total = overhead + perMessage.reduce((a, b) => a + b, 0);
  if (total <= options.thresholdTokens) {
    return { messages: messages as ModelMessage[], estimatedTokens: total, elidedToolResults: 0, droppedTurns: 0 };
  }

  const out: ModelMessage[] = messages.slice();
  let elided = 0;
  // Step 1: oldest tool results first, never the first message's nor the most recent ones.
  const slots: Array<{ m: number; b: number }> = [];
  out.forEach((message, m) => {
    if (m === 0 || typeof message.content === 'string') return;
    message.content.forEach((block, b) => {
      if (block.type === 'tool_result') slots.push({ m, b });
    });
  });
  for (const { m, b } of slots.slice(0, Math.max(0, slots.length - keepResults))) {
    if (total <= target) break;
    const content = out[m]!.content as ContentBlock[];
    const block = content[b] as Extract<ContentBlock, { type: 'tool_result' }>;
    const replacement = placeholder(block.content.length);
    if (block.content.startsWith(ELIDED_PREFIX) || block.content.length <= replacement.length) continue;
    const blocks = content.slice();
    blocks[b] = { ...block, content: replacement };
    out[m] = { ...out[m]!, content: blocks };
    const tokens = tokensOf(out[m]!);
    total += tokens - perMessage[m]!;
    perMessage[m] = tokens;
    elided++;
  }

  // Step 2: drop whole (assistant, user) pairs right after the first message, oldest first.
  let dropped = 0;
  if (alternates(out)) {
    while (total > target && out.length >= 3 + 2 * keepTurns) {
      total -= perMessage[1]! + perMessage[2]!;
      out.splice(1, 2);
      perMessage.splice(1, 2);
      dropped++;
    }
  }
  return { messages: out, estimatedTokens: total, elidedToolResults: elided, droppedTurns: dropped };
}
