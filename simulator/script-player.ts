/**
 * Decides what the simulated model answers to one request: which script, which turn, which
 * content, which faults. Pure and deterministic: the same request always gets the same answer, so
 * many concurrent conversations can share one simulator.
 */
import { createHash } from 'node:crypto';
import { blocksOf, toolResultText, type ApiBlock, type ApiRequest, type ApiToolResultBlock } from './api-request.ts';
import type { Fault, Pattern, Scenario, Script, UsageOverride } from './scenario.ts';
import { renderText, renderValue, type TemplateContext } from './template.ts';

/** Name reported for requests that no script matched. */
export const NO_SCRIPT = '(none)';

/** The simulator's answer to a request, before faults are served. */
export interface PlayedTurn {
  script: string;
  /** Stable id of the conversation: a hash of its system prompt and first user message. */
  conversation: string;
  /** Number of assistant messages already in the request. */
  turn: number;
  /** Whether the script had a turn at this index (false: the final text reply). */
  scripted: boolean;
  content: ApiBlock[];
  stopReason: string;
  usage: UsageOverride | undefined;
  latencyMs: number;
  faults: Fault[];
}

const hash = (...parts: string[]) => createHash('sha256').update(parts.join('\u0000')).digest('hex');

/** The system prompt as one string. */
export function systemText(request: ApiRequest): string {
  if (request.system === undefined) return '';
  return typeof request.system === 'string' ? request.system : request.system.map((b) => b.text).join('\n');
}

/** The text of the first user message (its text blocks joined). */
export function firstUserText(request: ApiRequest): string {
  const first = request.messages.find((m) => m.role === 'user');
  if (!first) return '';
  return blocksOf(first)
    .filter((b) => b.type === 'text')
    .map((b) => String((b as { text: unknown }).text))
    .join('\n');
}

function lastToolResult(request: ApiRequest): string | undefined {
  for (let i = request.messages.length - 1; i >= 0; i--) {
    const blocks = blocksOf(request.messages[i]!);
    for (let j = blocks.length - 1; j >= 0; j--) {
      const block = blocks[j]!;
      if (block.type === 'tool_result') return toolResultText(block as ApiToolResultBlock);
    }
  }
  return undefined;
}

function holds(pattern: Pattern | undefined, text: string): boolean {
  if (pattern === undefined) return true;
  if (typeof pattern === 'string') return text.toLowerCase().includes(pattern.toLowerCase());
  return new RegExp(pattern.regex, pattern.flags).test(text);
}

/** The first script whose `match` holds for the request, if any. */
export function matchScript(scenario: Scenario, request: ApiRequest): Script | undefined {
  const system = systemText(request);
  const firstUser = firstUserText(request);
  const tools = new Set((request.tools ?? []).map((t) => t.name));
  return scenario.scripts.find(
    (s) =>
      holds(s.match?.system, system) &&
      holds(s.match?.firstUser, firstUser) &&
      (s.match?.tool === undefined || tools.has(s.match.tool)),
  );
}

/** Plays one request against the scenario. Never throws for a valid request. */
export function playRequest(scenario: Scenario, request: ApiRequest): PlayedTurn {
  const firstUser = firstUserText(request);
  const conversation = `conv_${hash(systemText(request), firstUser).slice(0, 12)}`;
  const turn = request.messages.filter((m) => m.role === 'assistant').length;
  const script = matchScript(scenario, request);
  const scripted = script?.turns[turn];

  const vars: Record<string, string | undefined> = {};
  for (const [name, source] of Object.entries(script?.extract ?? {})) {
    const m = new RegExp(source).exec(firstUser);
    vars[name] = m ? (m[1] ?? m[0]) : undefined;
  }
  const context: TemplateContext = { vars, firstUser, lastToolResult: lastToolResult(request), turn };

  let content: ApiBlock[];
  if (scripted) {
    content = [];
    if (scripted.text !== undefined) content.push({ type: 'text', text: renderText(scripted.text, context) });
    scripted.content.forEach((block, index) => {
      if (block.type === 'text') {
        content.push({ type: 'text', text: renderText(block.text, context) });
      } else {
        content.push({
          type: 'tool_use',
          id: toolUseId(conversation, turn, index),
          name: block.name,
          input: renderValue(block.input, context),
        });
      }
    });
  } else {
    content = [{ type: 'text', text: renderText(script?.finalText ?? scenario.finalText, context) }];
  }
  // A template may render to nothing, and an empty text block is a 400 when the client sends it
  // back: the simulator must never provoke that itself.
  for (const block of content) {
    if (block.type === 'text' && (block as { text: string }).text === '') (block as { text: string }).text = '…';
  }

  const hasToolUse = content.some((b) => b.type === 'tool_use');
  return {
    script: script?.name ?? NO_SCRIPT,
    conversation,
    turn,
    scripted: scripted !== undefined,
    content,
    stopReason: scripted?.stopReason ?? (hasToolUse ? 'tool_use' : 'end_turn'),
    usage: scripted?.usage,
    latencyMs: (script?.latencyMs ?? 0) + (scripted?.latencyMs ?? 0),
    faults: scripted?.faults ?? script?.faults ?? [],
  };
}

/** Deterministic `toolu_...` id of the `index`th block of a turn. */
export function toolUseId(conversation: string, turn: number, index: number): string {
  return `toolu_sim${hash(conversation, String(turn), String(index)).slice(0, 20)}`;
}

/** Name the `unknown_tool` fault uses; no sane request offers it. */
export const UNKNOWN_TOOL_NAME = 'simulated_unknown_tool';

/** Corrupts the first tool_use of a reply (adding one if there is none), as a confused model would. */
export function malformToolUse(
  played: PlayedTurn,
  variant: 'unknown_tool' | 'non_object_input',
  toolNames: string[],
): PlayedTurn {
  const content = played.content.map((b) => ({ ...b }));
  let target = content.find((b) => b.type === 'tool_use') as { name: string; input: unknown } | undefined;
  if (!target) {
    const block = {
      type: 'tool_use',
      id: toolUseId(played.conversation, played.turn, content.length),
      name: toolNames[0] ?? UNKNOWN_TOOL_NAME,
      input: {} as unknown,
    };
    content.push(block);
    target = block;
  }
  if (variant === 'unknown_tool') target.name = UNKNOWN_TOOL_NAME;
  else target.input = 'not an object';
  return { ...played, content, stopReason: 'tool_use' };
}
