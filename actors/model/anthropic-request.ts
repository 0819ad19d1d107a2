/**
 * Translation between troupe's provider-neutral shapes and the Anthropic Messages API.
 *
 * The system prompt and the tool list are the stable prefix of every call of an agent, so both are
 * marked `cache_control: {type: 'ephemeral'}` (on the system block and on the last tool): the
 * provider caches tools + system and later calls pay the cache-read price for them.
 */
import type {
  ContentBlock as ApiContentBlock,
  ContentBlockParam,
  MessageCreateParamsBase,
  MessageParam,
  Tool,
} from '@anthropic-ai/sdk/resources/messages';
import type { ToolUseProblem } from './errors.ts';
import type { ContentBlock, ModelCallRequest, ModelMessage } from './model-client.ts';
import type { Route } from './routing.ts';

const EPHEMERAL = { type: 'ephemeral' } as const;

function toApiBlock(block: ContentBlock): ContentBlockParam {
  switch (block.type) {
    case 'text':
      return { type: 'text', text: block.text };
    case 'tool_use':
      return { type: 'tool_use', id: block.id, name: block.name, input: block.input };
    case 'tool_result':
      return {
        type: 'tool_result',
        tool_use_id: block.tool_use_id,
        content: block.content,
        ...(block.is_error === undefined ? {} : { is_error: block.is_error }),
      };
  }
}

function toApiMessage(message: ModelMessage): MessageParam {
  return {
    role: message.role,
    content: typeof message.content === 'string' ? message.content : message.content.map(toApiBlock),
  };
}

/** The Messages API body of a request on `route`, with the stable prefix marked for caching. */
export function buildMessageParams(request: ModelCallRequest, route: Route): MessageCreateParamsBase {
  const tools: Tool[] = request.tools.map((tool, i) => ({
    name: tool.name,
    description: tool.description,
    input_schema: tool.inputSchema as Tool['input_schema'],
    ...(i === request.tools.length - 1 ? { cache_control: EPHEMERAL } : {}),
  }));
  return {
    model: route.model,
    max_tokens: route.maxTokens,
    // The API rejects an empty text block, so an empty system prompt is left out.
    ...(request.system === '' ? {} : { system: [{ type: 'text', text: request.system, cache_control: EPHEMERAL }] }),
    ...(tools.length === 0 ? {} : { tools }),
    messages: request.messages.map(toApiMessage),
  };
}

/**
 * The response content as JSON-safe troupe blocks. Block kinds troupe does not request (thinking,
 * server tools) are dropped; `tool_use` inputs are kept as received, checked by {@link toolUseProblems}.
 */
export function fromApiContent(content: readonly ApiContentBlock[]): ContentBlock[] {
  const out: ContentBlock[] = [];
  for (const block of content) {
    if (block.type === 'text') out.push({ type: 'text', text: block.text });
    else if (block.type === 'tool_use') {
      out.push({ type: 'tool_use', id: block.id, name: block.name, input: structuredClone(block.input) });
    }
  }
  return out;
}

const isPlainObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The tool calls of `content` that cannot be dispatched: a tool that was not offered, or an input
 * that is not a JSON object. `unparsable` lists ids whose streamed input was not valid JSON.
 */
export function toolUseProblems(
  content: readonly ContentBlock[],
  offered: readonly string[],
  unparsable: ReadonlySet<string> = new Set(),
): ToolUseProblem[] {
  const names = new Set(offered);
  const problems: ToolUseProblem[] = [];
  for (const block of content) {
    if (block.type !== 'tool_use') continue;
    if (unparsable.has(block.id)) problems.push({ toolUseId: block.id, name: block.name, problem: 'invalid_json' });
    else if (!names.has(block.name)) problems.push({ toolUseId: block.id, name: block.name, problem: 'unknown_tool' });
    else if (!isPlainObject(block.input)) problems.push({ toolUseId: block.id, name: block.name, problem: 'input_not_object' });
  }
  return problems;
}
