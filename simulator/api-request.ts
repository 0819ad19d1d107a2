/**
 * The subset of a Messages API request the simulator understands, and its validation.
 *
 * Validation is deliberately close to the real API on the points a client can get wrong: required
 * fields, roles, non-empty text, tool definitions, the `tool_use` / `tool_result` pairing between
 * consecutive turns, and at most four `cache_control` breakpoints. Messages mirror the API's.
 */
import { apiFailure, type ApiFailure } from './api-error.ts';

export interface ApiTextBlock {
  type: 'text';
  text: string;
  cache_control?: unknown;
}
export interface ApiToolUseBlock {
  type: 'tool_use';
  id: string;
  name: string;
  input: unknown;
  cache_control?: unknown;
}
export interface ApiToolResultBlock {
  type: 'tool_result';
  tool_use_id: string;
  content?: string | Array<{ type: string; text?: string }>;
  is_error?: boolean;
  cache_control?: unknown;
}
/** Blocks the simulator does not model (images, documents...) pass through as opaque objects. */
export interface ApiOtherBlock {
  type: string;
  cache_control?: unknown;
  [key: string]: unknown;
}
export type ApiBlock = ApiTextBlock | ApiToolUseBlock | ApiToolResultBlock | ApiOtherBlock;

export interface ApiMessage {
  role: 'user' | 'assistant';
  content: string | ApiBlock[];
}

export interface ApiTool {
  name: string;
  description?: string;
  input_schema: Record<string, unknown>;
  cache_control?: unknown;
}

/** A validated `POST /v1/messages` body. */
export interface ApiRequest {
  model: string;
  max_tokens: number;
  messages: ApiMessage[];
  system?: string | ApiTextBlock[];
  tools?: ApiTool[];
  stream?: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const invalid = (message: string): ApiFailure => apiFailure(400, message);

/** The blocks of a message, with string content seen as one text block. */
export function blocksOf(message: ApiMessage): ApiBlock[] {
  return typeof message.content === 'string' ? [{ type: 'text', text: message.content }] : message.content;
}

/** The text of a tool_result's content, whether a string or a list of text blocks. */
export function toolResultText(block: ApiToolResultBlock): string {
  if (typeof block.content === 'string') return block.content;
  return (block.content ?? []).map((b) => (typeof b.text === 'string' ? b.text : '')).join('');
}

/** Validates a parsed JSON body. Returns the request, or the 400 the real API would send. */
export function validateRequest(body: unknown): { request: ApiRequest } | { failure: ApiFailure } {
  if (!isObject(body)) return { failure: invalid('body: Input should be a valid dictionary') };
  if (typeof body.model !== 'string' || body.model === '') return { failure: invalid('model: Field required') };
  if (body.max_tokens === undefined) return { failure: invalid('max_tokens: Field required') };
  if (!Number.isInteger(body.max_tokens) || (body.max_tokens as number) < 1) {
    return { failure: invalid('max_tokens: Input should be greater than or equal to 1') };
  }
  if (body.stream !== undefined && typeof body.stream !== 'boolean') {
    return { failure: invalid('stream: Input should be a valid boolean') };
  }
  const failure =
    checkSystem(body.system) ?? checkTools(body.tools) ?? checkMessages(body.messages) ?? checkCacheControl(body);
  if (failure) return { failure };
  return { request: body as unknown as ApiRequest };
}

function checkSystem(system: unknown): ApiFailure | undefined {
  if (system === undefined || typeof system === 'string') return undefined;
  if (!Array.isArray(system)) return invalid('system: Input should be a valid string or list');
  for (const [i, block] of system.entries()) {
    if (!isObject(block) || block.type !== 'text' || typeof block.text !== 'string') {
      return invalid(`system.${i}: Input should be a text block`);
    }
    if (block.text === '') return invalid('system: text content blocks must be non-empty');
  }
  return undefined;
}

function checkTools(tools: unknown): ApiFailure | undefined {
  if (tools === undefined) return undefined;
  if (!Array.isArray(tools)) return invalid('tools: Input should be a valid list');
  const names = new Set<string>();
  for (const [i, tool] of tools.entries()) {
    if (!isObject(tool)) return invalid(`tools.${i}: Input should be a valid dictionary`);
    if (typeof tool.name !== 'string' || !/^[a-zA-Z0-9_-]{1,128}$/.test(tool.name)) {
      return invalid(`tools.${i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'`);
    }
    if (!isObject(tool.input_schema)) return invalid(`tools.${i}.custom.input_schema: Field required`);
    if (tool.input_schema.type !== 'object') {
      return invalid(`tools.${i}.custom.input_schema.type: Input should be 'object'`);
    }
    if (names.has(tool.name)) return invalid('tools: Tool names must be unique.');
    names.add(tool.name);
  }
  return undefined;
}

function checkMessages(messages: unknown): ApiFailure | undefined {
  if (messages === undefined) return invalid('messages: Field required');
  if (!Array.isArray(messages)) return invalid('messages: Input should be a valid list');
  if (messages.length === 0) return invalid('messages: at least one message is required');
  let pending: { index: number; ids: string[] } | undefined;
  for (const [i, message] of messages.entries()) {
    if (!isObject(message)) return invalid(`messages.${i}: Input should be a valid dictionary`);
    if (message.role !== 'user' && message.role !== 'assistant') {
      return invalid(`messages.${i}.role: Input should be 'user' or 'assistant'`);
    }
    const failure = checkContent(message.content, i);
    if (failure) return failure;
    const blocks = blocksOf(message as unknown as ApiMessage);
    const results = blocks.filter((b): b is ApiToolResultBlock => b.type === 'tool_result');
    if (pending) {
      const answered = new Set(message.role === 'user' ? results.map((b) => b.tool_use_id) : []);
      const orphans = pending.ids.filter((id) => !answered.has(id));
      if (orphans.length > 0) return orphanedToolUse(pending.index, orphans);
    }
    if (message.role === 'user') {
      const expected = new Set(pending?.ids ?? []);
      for (const [j, block] of blocks.entries()) {
        if (block.type === 'tool_result' && !expected.has((block as ApiToolResultBlock).tool_use_id)) {
          return invalid(
            `messages.${i}.content.${j}: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ` +
              `${(block as ApiToolResultBlock).tool_use_id}. Each \`tool_result\` block must have a corresponding ` +
              '`tool_use` block in the previous message.',
          );
        }
      }
      pending = undefined;
    } else {
      const uses = blocks.filter((b): b is ApiToolUseBlock => b.type === 'tool_use');
      if (results.length > 0) return invalid(`messages.${i}: \`tool_result\` blocks can only be in \`user\` messages`);
      pending = uses.length > 0 ? { index: i, ids: uses.map((b) => b.id) } : undefined;
    }
  }
  if (pending) return orphanedToolUse(pending.index, pending.ids);
  return undefined;
}

function orphanedToolUse(index: number, ids: string[]): ApiFailure {
  return invalid(
    `messages.${index}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ` +
      `${ids.join(', ')}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`,
  );
}

function checkContent(content: unknown, i: number): ApiFailure | undefined {
  if (typeof content === 'string') {
    return content === '' ? invalid(`messages.${i}: all messages must have non-empty content`) : undefined;
  }
  if (!Array.isArray(content)) return invalid(`messages.${i}.content: Input should be a valid string or list`);
  if (content.length === 0) return invalid(`messages.${i}: all messages must have non-empty content`);
  for (const [j, block] of content.entries()) {
    const at = `messages.${i}.content.${j}`;
    if (!isObject(block) || typeof block.type !== 'string') return invalid(`${at}: Input should be a valid dictionary`);
    if (block.type === 'text' && (typeof block.text !== 'string' || block.text === '')) {
      return invalid(`${at}.text: text content blocks must be non-empty`);
    }
    if (block.type === 'tool_use') {
      if (typeof block.id !== 'string' || typeof block.name !== 'string') return invalid(`${at}: tool_use needs id and name`);
      if (!isObject(block.input)) return invalid(`${at}.input: Input should be a valid dictionary`);
    }
    if (block.type === 'tool_result' && typeof block.tool_use_id !== 'string') {
      return invalid(`${at}.tool_use_id: Field required`);
    }
  }
  return undefined;
}

function checkCacheControl(body: Record<string, unknown>): ApiFailure | undefined {
  let count = 0;
  const visit = (block: unknown) => {
    if (isObject(block) && block.cache_control !== undefined && block.cache_control !== null) count++;
  };
  if (Array.isArray(body.system)) body.system.forEach(visit);
  if (Array.isArray(body.tools)) body.tools.forEach(visit);
  for (const message of body.messages as ApiMessage[]) {
    if (Array.isArray(message.content)) message.content.forEach(visit);
  }
  return count > 4 ? invalid(`A maximum of 4 blocks with cache_control may be provided. Found ${count}.`) : undefined;
}
