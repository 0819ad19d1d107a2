/**
 * Deterministic token accounting and prompt caching, shaped like the real API's `usage`.
 *
 * Tokens are estimated as `ceil(characters / 4)`. The prompt is the sequence tools, system,
 * messages (the order the real API caches in); a block carrying `cache_control` is a breakpoint and
 * the prompt up to it is a cacheable prefix. The first request with a given prefix (per model)
 * reports it as `cache_creation_input_tokens`, later ones as `cache_read_input_tokens`, and
 * `input_tokens` counts only what follows the last breakpoint, as the real API does.
 */
import { createHash } from 'node:crypto';
import { blocksOf, toolResultText, type ApiBlock, type ApiRequest } from './api-request.ts';

/** The four counters of the API's `usage` object that cost money. */
export interface UsageNumbers {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

/** Tokens of a text: `ceil(chars / 4)`. */
export function tokensOf(text: string): number {
  return Math.ceil(text.length / 4);
}

/** One cacheable unit of the prompt: its canonical text and whether it is a breakpoint. */
export interface PromptSegment {
  text: string;
  breakpoint: boolean;
}

function blockText(block: ApiBlock): string {
  switch (block.type) {
    case 'text':
      return String((block as { text: unknown }).text);
    case 'tool_use': {
      const b = block as { name: string; input: unknown };
      return `${b.name} ${JSON.stringify(b.input)}`;
    }
    case 'tool_result':
      return toolResultText(block as Parameters<typeof toolResultText>[0]);
    default: {
      const { cache_control: _ignored, ...rest } = block;
      return JSON.stringify(rest);
    }
  }
}

const marked = (block: { cache_control?: unknown }) => block.cache_control !== undefined && block.cache_control !== null;

/** The prompt of a request as segments in caching order: tools, system, then message blocks. */
export function promptSegments(request: ApiRequest): PromptSegment[] {
  const segments: PromptSegment[] = [];
  for (const tool of request.tools ?? []) {
    const { cache_control: _ignored, ...definition } = tool;
    segments.push({ text: JSON.stringify(definition), breakpoint: marked(tool) });
  }
  if (typeof request.system === 'string') segments.push({ text: request.system, breakpoint: false });
  for (const block of Array.isArray(request.system) ? request.system : []) {
    segments.push({ text: block.text, breakpoint: marked(block) });
  }
  for (const message of request.messages) {
    for (const block of blocksOf(message)) {
      segments.push({ text: `${message.role}: ${blockText(block)}`, breakpoint: marked(block) });
    }
  }
  return segments;
}

/** Output tokens of a reply: its text plus each tool call's name and JSON input. */
export function outputTokensOf(content: ApiBlock[]): number {
  return Math.max(1, tokensOf(content.map(blockText).join('')));
}

interface CacheEntry {
  expiresAt: number;
}

/** Input-side usage of one request. */
export type InputUsage = Omit<UsageNumbers, 'output_tokens'>;

/**
 * The simulator's prompt cache: prefix hashes per model with a sliding TTL.
 * A prefix shorter than `minTokens` is never cached, like the real API's minimum.
 */
export class PromptCache {
  readonly #entries = new Map<string, CacheEntry>();

  constructor(
    private readonly options: { minTokens: number; ttlMs: number; now: () => number },
  ) {}

  /** Computes the input usage of a request and records its prefixes as cached. */
  account(model: string, segments: PromptSegment[]): InputUsage {
    const now = this.options.now();
    const hash = createHash('sha256').update(model);
    let chars = 0;
    const breakpoints: Array<{ key: string; tokens: number }> = [];
    for (const segment of segments) {
      hash.update(`\u0000${segment.text}`);
      chars += segment.text.length;
      if (segment.breakpoint) {
        const tokens = Math.ceil(chars / 4);
        if (tokens > 0 && tokens >= this.options.minTokens) breakpoints.push({ key: hash.copy().digest('hex'), tokens });
      }
    }
    const total = Math.max(1, Math.ceil(chars / 4));
    const last = breakpoints.at(-1);
    if (!last) return { input_tokens: total, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };

    let read = 0;
    for (const bp of breakpoints) {
      const entry = this.#entries.get(bp.key);
      if (entry && entry.expiresAt > now) read = bp.tokens;
    }
    for (const bp of breakpoints) this.#entries.set(bp.key, { expiresAt: now + this.options.ttlMs });
    return {
      input_tokens: total - last.tokens,
      cache_creation_input_tokens: last.tokens - read,
      cache_read_input_tokens: read,
    };
  }

  clear(): void {
    this.#entries.clear();
  }
}
