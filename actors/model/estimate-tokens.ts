/**
 * Input-token estimates made before a call, without asking the provider. Used to reserve the
 * worst-case cost of a call and to decide when to trim the context.
 */
import type { ContentBlock, ModelCallRequest, ModelMessage } from './model-client.ts';

/**
 * Characters per token of the estimate. Claude averages about 3.5 to 4 characters per token on
 * English prose and fewer on JSON and code; 3 over-estimates on purpose, since the estimate
 * reserves budget.
 * @default 3
 */
export const DEFAULT_CHARS_PER_TOKEN = 3;

/** Tokens the API adds around each message and tool definition (role markers, framing). */
const FRAMING_TOKENS = 4;

function blockChars(block: ContentBlock): number {
  switch (block.type) {
    case 'text':
      return block.text.length;
    case 'tool_use':
      return block.name.length + (JSON.stringify(block.input) ?? '').length + block.id.length;
    case 'tool_result':
      return block.content.length + block.tool_use_id.length;
  }
}

/**
 * Counted messages. A task's conversation is estimated before each of its model calls (trimming,
 * the cost quote), and all of it but the last turn was counted the call before: without this, a
 * step cost more the longer its task had run. Messages are values (as in XState context): one
 * changed after it was counted would keep its old count.
 */
const counted = new WeakMap<ModelMessage, number>();

/** Characters of one message's content. */
export function messageChars(message: ModelMessage): number {
  if (typeof message.content === 'string') return message.content.length;
  let chars = counted.get(message);
  if (chars === undefined) {
    chars = message.content.reduce((sum, block) => sum + blockChars(block), 0);
    counted.set(message, chars);
  }
  return chars;
}

/** Estimated tokens of a list of messages. */
export function estimateMessagesTokens(messages: readonly ModelMessage[], charsPerToken = DEFAULT_CHARS_PER_TOKEN): number {
  return messages.reduce((sum, m) => sum + Math.ceil(messageChars(m) / charsPerToken) + FRAMING_TOKENS, 0);
}

/**
 * Estimated input tokens of a request: system prompt, tool definitions and messages at
 * `charsPerToken`, plus a few framing tokens per message and tool. Deterministic; meant to err high.
 */
export function estimateTokens(
  request: Pick<ModelCallRequest, 'system' | 'tools' | 'messages'>,
  charsPerToken = DEFAULT_CHARS_PER_TOKEN,
): number {
  const toolChars = request.tools.reduce(
    (sum, t) => sum + t.name.length + t.description.length + JSON.stringify(t.inputSchema).length,
    0,
  );
  return (
    Math.ceil((request.system.length + toolChars) / charsPerToken) +
    request.tools.length * FRAMING_TOKENS +
    estimateMessagesTokens(request.messages, charsPerToken)
  );
}
