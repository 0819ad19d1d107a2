/**
 * The reply in the two wire forms of the Messages API: one JSON `Message`, or the SSE event
 * sequence `message_start`, `ping`, per block `content_block_start` / `content_block_delta` /
 * `content_block_stop`, then `message_delta` (stop reason, final usage) and `message_stop`.
 */
import type { ApiBlock } from './api-request.ts';
import type { UsageNumbers } from './usage.ts';

/** A complete assistant message as the real API returns it. */
export interface ApiMessageResponse {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: ApiBlock[];
  stop_reason: string | null;
  stop_sequence: null;
  usage: ReturnType<typeof usageObject>;
}

/** One server-sent event. */
export interface SseEvent {
  event: string;
  data: unknown;
}

/** The full `usage` object, with the API's `cache_creation` breakdown and service tier. */
export function usageObject(usage: UsageNumbers) {
  return {
    input_tokens: usage.input_tokens,
    cache_creation_input_tokens: usage.cache_creation_input_tokens,
    cache_read_input_tokens: usage.cache_read_input_tokens,
    cache_creation: { ephemeral_5m_input_tokens: usage.cache_creation_input_tokens, ephemeral_1h_input_tokens: 0 },
    output_tokens: usage.output_tokens,
    service_tier: 'standard' as const,
  };
}

export function buildMessage(args: {
  id: string;
  model: string;
  content: ApiBlock[];
  stopReason: string;
  usage: UsageNumbers;
}): ApiMessageResponse {
  return {
    id: args.id,
    type: 'message',
    role: 'assistant',
    model: args.model,
    content: args.content,
    stop_reason: args.stopReason,
    stop_sequence: null,
    usage: usageObject(args.usage),
  };
}

function chunks(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

/** The SSE events that stream `message`, deltas cut every `chunkChars` characters. */
export function streamEvents(message: ApiMessageResponse, chunkChars: number): SseEvent[] {
  const events: SseEvent[] = [];
  const push = (event: string, data: Record<string, unknown>) => events.push({ event, data: { type: event, ...data } });
  push('message_start', {
    message: {
      ...message,
      content: [],
      stop_reason: null,
      usage: { ...message.usage, output_tokens: Math.min(1, message.usage.output_tokens) },
    },
  });
  push('ping', {});
  message.content.forEach((block, index) => {
    if (block.type === 'text') {
      push('content_block_start', { index, content_block: { type: 'text', text: '' } });
      for (const text of chunks(String((block as { text: string }).text), chunkChars)) {
        push('content_block_delta', { index, delta: { type: 'text_delta', text } });
      }
    } else if (block.type === 'tool_use') {
      const { id, name, input } = block as { id: string; name: string; input: unknown };
      push('content_block_start', { index, content_block: { type: 'tool_use', id, name, input: {} } });
      for (const partial_json of ['', ...chunks(JSON.stringify(input), chunkChars)]) {
        push('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json } });
      }
    } else {
      push('content_block_start', { index, content_block: block });
    }
    push('content_block_stop', { index });
  });
  const { input_tokens, cache_creation_input_tokens, cache_read_input_tokens, output_tokens } = message.usage;
  push('message_delta', {
    delta: { stop_reason: message.stop_reason, stop_sequence: null },
    usage: { input_tokens, cache_creation_input_tokens, cache_read_input_tokens, output_tokens },
  });
  push('message_stop', {});
  return events;
}

/** The wire text of one event. */
export function formatSse(event: SseEvent): string {
  return `event: ${event.event}\ndata: ${JSON.stringify(event.data)}\n\n`;
}
