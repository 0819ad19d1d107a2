/**
 * The JSON-safe conversation shapes machines keep in context. They match the Anthropic Messages
 * API's blocks, so a provider adapter passes them through without translation.
 */

export type TextBlock = { type: 'text'; text: string };
export type ToolUseBlock = { type: 'tool_use'; id: string; name: string; input: unknown };
export type ToolResultBlock = { type: 'tool_result'; tool_use_id: string; content: string; is_error?: boolean };
export type ContentBlock = TextBlock | ToolUseBlock | ToolResultBlock;

export interface Message {
  role: 'user' | 'assistant';
  content: string | ContentBlock[];
}

/** What a model effect gives back to a machine. */
export interface ModelTurn {
  content: ContentBlock[];
  stopReason: string | null;
}

/** Input of a model effect: the machine states *what* to ask; `actors/` adds system and tools. */
export interface ModelEffectInput {
  /** Idempotency key `<taskId>/<step>/<callIndex>`. */
  key: string;
  /** Step role, used for model routing (`agent`, `plan`, `format`, ...). */
  role: string;
  step: number;
  messages: Message[];
  /** This call's system prompt, instead of the agent's (a workflow step's own instructions). */
  system?: string;
  /** Names of the tools offered on this call; omitted: all the agent's tools; `[]`: none. */
  tools?: string[];
  /** Most output tokens, below the role's route: a bounded model step. */
  maxTokens?: number;
}

/** One tool call the model asked for, with its own idempotency key. */
export interface ToolCallIntent {
  key: string;
  toolUseId: string;
  name: string;
  input: unknown;
}

/** Input of a tool effect: every call of one step. */
export interface ToolsEffectInput {
  step: number;
  calls: ToolCallIntent[];
  /** What the model wrote alongside the calls: its reasoning, shown to approvers and scored for confidence. */
  rationale?: string;
}

export function toolUses(content: ContentBlock[]): ToolUseBlock[] {
  return content.filter((b): b is ToolUseBlock => b.type === 'tool_use');
}

export function textOf(content: ContentBlock[]): string {
  return content
    .filter((b): b is TextBlock => b.type === 'text')
    .map((b) => b.text)
    .join('');
}

/** Parses a tool result's JSON content; `error` is set when the call was refused or failed. */
export function parseToolResult<T = unknown>(block: ToolResultBlock): { ok: true; value: T } | { ok: false; error: { code: string; message: string } } {
  const value = JSON.parse(block.content) as unknown;
  if (block.is_error) return { ok: false, error: (value as { error: { code: string; message: string } }).error };
  return { ok: true, value: value as T };
}

/** How many children a delegation waits for: every one, the first success, or N successes. */
export type Join = 'all' | 'first' | number;

/** Input of a delegate effect: start child tasks on other agents and join them. */
export interface DelegateInput {
  /** Idempotency key of the delegation; the children's taskIds derive from it. */
  key: string;
  tasks: { agent: string; input: unknown }[];
  /** @default "all" */
  join?: Join;
  /** A hand-off: the context passed to the one child, stated by the agent (kept in its metadata). */
  handoff?: { context: string };
  /**
   * Share (0..1) of this task's remaining budget held for the children, split evenly (one step is
   * always kept for this task to use their results). What they do not spend comes back when they
   * are joined. @default 1
   */
  share?: number;
}

/** How one child task ended (or was cancelled), with what it spent. */
export interface ChildResult {
  taskId: string;
  agent: string;
  status: 'done' | 'failed' | 'cancelled';
  output?: unknown;
  error?: { code: string; message: string; details?: Record<string, unknown> | undefined };
  usage?: { usd: number; tokens: number; steps: number };
}

/** Output of a delegate effect: every child's result, in the order they were asked for. */
export interface DelegateOutput {
  join: Join;
  results: ChildResult[];
}

/** Input of a wait effect: the next event on the task's inbox, or a timeout. */
export interface WaitInput {
  /** Idempotency key of the wait; its deadline and its answer are kept under it. */
  key: string;
  /** Return the first event after this inbox sequence (the previous wait's `seq`). @default 0 */
  after?: number;
  /** Only these event types; others are skipped. @default any */
  types?: string[];
  /** Give up after this long, counted from the first time this wait ran (not from a restart). @default never */
  timeoutMs?: number;
}

/** What a wait returns: an event (with its inbox sequence, the next wait's `after`), or a timeout. */
export type WaitOutput = { kind: 'event'; seq: number; type: string; data: unknown } | { kind: 'timeout'; after: number };
