/**
 * Reading a Messages API reply, streamed (SSE events) or whole, into one provider-neutral reply.
 * A stream that ends before `message_stop` is incomplete and rejected, never half-accepted.
 */
import type { Message, RawMessageStreamEvent, Usage, MessageDeltaUsage } from '@anthropic-ai/sdk/resources/messages';
import { fromApiContent } from './anthropic-request.ts';
import type { ContentBlock, ModelUsage } from './model-client.ts';

/** A complete assistant reply. */
export interface ReceivedReply {
  content: ContentBlock[];
  stopReason: string | null;
  usage: ModelUsage;
  requestId: string | undefined;
  /** Ids of tool_use blocks whose streamed input was not valid JSON (their input is the raw text). */
  unparsableToolInputs: Set<string>;
}

/** The stream ended (cleanly or not) before `message_stop`. */
export class IncompleteStreamError extends Error {
  override readonly name = 'IncompleteStreamError';
}

type PartialBlock =
  | { type: 'text'; text: string }
  | { type: 'tool_use'; id: string; name: string; json: string }
  | { type: 'other' };

function usageFrom(usage: Partial<Usage> | MessageDeltaUsage, into: ModelUsage): ModelUsage {
  // Each counter is a whole-message total, sent when it applies: overwrite, never add.
  return {
    inputTokens: usage.input_tokens ?? into.inputTokens,
    outputTokens: usage.output_tokens ?? into.outputTokens,
    cacheCreationInputTokens: usage.cache_creation_input_tokens ?? into.cacheCreationInputTokens,
    cacheReadInputTokens: usage.cache_read_input_tokens ?? into.cacheReadInputTokens,
  };
}

const ZERO: ModelUsage = { inputTokens: 0, outputTokens: 0, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 };

/** A non-streamed reply. */
export function replyFromMessage(message: Message, requestId: string | undefined): ReceivedReply {
  return {
    content: fromApiContent(message.content),
    stopReason: message.stop_reason,
    usage: usageFrom(message.usage, ZERO),
    requestId,
    unparsableToolInputs: new Set(),
  };
}

/**
 * Consumes a raw event stream into a reply, passing each text delta to `onText`.
 * Throws {@link IncompleteStreamError} when `message_stop` never comes.
 */
export async function readReplyStream(
  events: AsyncIterable<RawMessageStreamEvent>,
  requestId: string | undefined,
  onText: ((delta: string) => void) | undefined,
): Promise<ReceivedReply> {
  const blocks: PartialBlock[] = [];
  let usage = ZERO;
  let stopReason: string | null = null;
  let started = false;
  for await (const event of events) {
    switch (event.type) {
      case 'message_start':
        started = true;
        usage = usageFrom(event.message.usage, usage);
        break;
      case 'content_block_start': {
        const b = event.content_block;
        blocks[event.index] =
          b.type === 'text' ? { type: 'text', text: b.text }
          : b.type === 'tool_use' ? { type: 'tool_use', id: b.id, name: b.name, json: '' }
          : { type: 'other' };
        break;
      }
      case 'content_block_delta': {
        const block = blocks[event.index];
        if (event.delta.type === 'text_delta' && block?.type === 'text') {
          block.text += event.delta.text;
          onText?.(event.delta.text);
        } else if (event.delta.type === 'input_json_delta' && block?.type === 'tool_use') {
          block.json += event.delta.partial_json;
        }
        break;
      }
      case 'message_delta':
        stopReason = event.delta.stop_reason;
        usage = usageFrom(event.usage, usage);
        break;
      case 'message_stop':
        if (!started) throw new IncompleteStreamError('message_stop before message_start');
        return finish(blocks, stopReason, usage, requestId);
      default:
        break;
    }
  }
  throw new IncompleteStreamError(started ? 'stream ended before message_stop' : 'stream ended before message_start');
}

function finish(blocks: PartialBlock[], stopReason: string | null, usage: ModelUsage, requestId: string | undefined): ReceivedReply {
  const content: ContentBlock[] = [];
  const unparsable = new Set<string>();
  for (const block of blocks) {
    if (block?.type === 'text') content.push({ type: 'text', text: block.text });
    else if (block?.type === 'tool_use') {
      let input: unknown;
      try {
        // An empty input streams no JSON at all: the API's `{}`.
        input = block.json === '' ? {} : JSON.parse(block.json);
      } catch {
        input = block.json;
        unparsable.add(block.id);
      }
      content.push({ type: 'tool_use', id: block.id, name: block.name, input });
    }
  }
  return { content, stopReason, usage, requestId, unparsableToolInputs: unparsable };
}
