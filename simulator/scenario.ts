/**
 * The scenario file format played by the simulator, as one zod schema.
 *
 * A scenario is a list of scripts. A request is played by the first script whose `match` rule
 * holds (a script without `match` matches everything); within that script the turn index is the
 * number of assistant messages already in the request. See `simulator/README.md` for the format.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ErrorCode, TerminalError } from '../common/errors.ts';

/** A case-insensitive substring, or a regular expression with optional flags. */
const patternSchema = z.union([
  z.string().min(1),
  z.object({ regex: z.string().min(1), flags: z.string().regex(/^[dgimsuy]*$/).optional() }).strict(),
]);
export type Pattern = z.infer<typeof patternSchema>;

const matchSchema = z
  .object({
    /** Holds when the system prompt contains (or matches) this. */
    system: patternSchema.optional(),
    /** Holds when the first user message's text contains (or matches) this. */
    firstUser: patternSchema.optional(),
    /** Holds when the request offers a tool with this name. */
    tool: z.string().min(1).optional(),
  })
  .strict();

const faultBase = {
  /** How many requests this fault hits before the next fault (or the real reply) is served. @default 1 */
  times: z.number().int().min(1).default(1),
  /**
   * `conversation`: each conversation counts its own hits; `global`: all conversations share one
   * count per (script, turn). @default "conversation"
   */
  scope: z.enum(['conversation', 'global']).default('conversation'),
};

const faultSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('error'),
      /** HTTP status: 400, 401, 403, 404, 408, 409, 413, 429, 500, 529, ... */
      status: z.number().int().min(400).max(599),
      /** Anthropic error type; derived from the status when omitted. */
      errorType: z.string().optional(),
      message: z.string().optional(),
      /** Sent as the `retry-after` header (seconds). */
      retryAfterSeconds: z.number().min(0).optional(),
      /** Sent as the `retry-after-ms` header. */
      retryAfterMs: z.number().min(0).optional(),
      ...faultBase,
    })
    .strict(),
  z
    .object({
      type: z.literal('hang'),
      /** How long the request is held before the normal reply; omitted: until the client leaves. */
      ms: z.number().int().min(0).optional(),
      ...faultBase,
    })
    .strict(),
  z
    .object({
      type: z.literal('stream_cut'),
      /** SSE events (or, without streaming, a share of the body) sent before the socket is destroyed. @default 3 */
      afterEvents: z.number().int().min(0).default(3),
      ...faultBase,
    })
    .strict(),
  z
    .object({
      type: z.literal('stream_error'),
      /** SSE events sent before an `event: error` ends the stream. @default 2 */
      afterEvents: z.number().int().min(0).default(2),
      /** @default "overloaded_error" */
      errorType: z.string().default('overloaded_error'),
      ...faultBase,
    })
    .strict(),
  z
    .object({
      type: z.literal('malformed_tool_use'),
      /** `unknown_tool`: a tool name not in the request; `non_object_input`: input is a string. */
      variant: z.enum(['unknown_tool', 'non_object_input']),
      ...faultBase,
    })
    .strict(),
]);
export type Fault = z.infer<typeof faultSchema>;

const blockSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text'), text: z.string().min(1) }).strict(),
  z
    .object({
      type: z.literal('tool_use'),
      name: z.string().min(1),
      /** String values may hold `{{...}}` templates. */
      input: z.record(z.string(), z.unknown()).default({}),
    })
    .strict(),
]);
export type ScriptedBlock = z.infer<typeof blockSchema>;

const usageOverrideSchema = z
  .object({
    input_tokens: z.number().int().min(0).optional(),
    output_tokens: z.number().int().min(0).optional(),
    cache_creation_input_tokens: z.number().int().min(0).optional(),
    cache_read_input_tokens: z.number().int().min(0).optional(),
  })
  .strict();
export type UsageOverride = z.infer<typeof usageOverrideSchema>;

const turnSchema = z
  .object({
    /** Shorthand for a single leading text block. */
    text: z.string().min(1).optional(),
    content: z.array(blockSchema).default([]),
    /** @default "tool_use" when the turn has a tool_use block, else "end_turn" */
    stopReason: z.enum(['end_turn', 'tool_use', 'max_tokens', 'stop_sequence', 'refusal']).optional(),
    /** Exact usage numbers reported for this turn (the rest stay estimated). */
    usage: usageOverrideSchema.optional(),
    /** Delay before the reply, added to the script's latency. */
    latencyMs: z.number().int().min(0).optional(),
    /** Faults served, in order, before this turn's reply. Replaces the script's `faults`. */
    faults: z.array(faultSchema).optional(),
  })
  .strict()
  .refine((t) => t.text !== undefined || t.content.length > 0, 'a turn needs `text` or `content`');
export type ScriptedTurn = z.infer<typeof turnSchema>;

const scriptSchema = z
  .object({
    name: z.string().min(1),
    /** Every given condition must hold. Omitted: the script matches every request. */
    match: matchSchema.optional(),
    /** Variables for templates: name -> regex run on the first user message (group 1, else the whole match). */
    extract: z.record(z.string().regex(/^\w+$/), z.string().min(1)).default({}),
    turns: z.array(turnSchema).default([]),
    /** Reply once the scripted turns are used up. @default the scenario's `finalText` */
    finalText: z.string().min(1).optional(),
    /** Delay before every reply of this script. @default 0 */
    latencyMs: z.number().int().min(0).default(0),
    /** Faults served before every turn that has no `faults` of its own. */
    faults: z.array(faultSchema).default([]),
  })
  .strict();
export type Script = z.infer<typeof scriptSchema>;

/** The zod schema of a scenario file. */
export const scenarioSchema = z
  .object({
    name: z.string().min(1).default('scenario'),
    description: z.string().optional(),
    scripts: z.array(scriptSchema).min(1),
    /** Reply when a script's turns are used up, or no script matches. @default "I have nothing further to add." */
    finalText: z.string().min(1).default('I have nothing further to add.'),
    /** Accepted models; others get a 404. Omitted: any model whose name starts with `claude-`. */
    models: z.array(z.string().min(1)).optional(),
    /** API key the simulator demands (`x-api-key` or `Authorization: Bearer`). Omitted: any non-empty key. */
    apiKey: z.string().min(1).optional(),
    cache: z
      .object({
        /** Shortest cacheable prefix, in tokens (the real API wants 1024-4096). @default 0 */
        minTokens: z.number().int().min(0).default(0),
        /** How long an unused prefix stays cached. @default 300000 */
        ttlMs: z.number().int().positive().default(300_000),
      })
      .strict()
      .prefault({}),
    /** Largest request body accepted before a 413. @default 33554432 */
    maxRequestBytes: z.number().int().positive().default(32 * 1024 * 1024),
    /** Characters per streamed `text_delta`. @default 16 */
    streamChunkChars: z.number().int().positive().default(16),
  })
  .strict()
  .superRefine((s, ctx) => {
    const names = new Set<string>();
    const checkRegex = (source: string, flags: string | undefined, path: (string | number)[]) => {
      try {
        new RegExp(source, flags);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path, message: `invalid regex: ${(err as Error).message}` });
      }
    };
    s.scripts.forEach((script, i) => {
      if (names.has(script.name)) {
        ctx.addIssue({ code: 'custom', path: ['scripts', i, 'name'], message: `duplicate script name "${script.name}"` });
      }
      names.add(script.name);
      for (const [name, source] of Object.entries(script.extract)) {
        checkRegex(source, undefined, ['scripts', i, 'extract', name]);
      }
      for (const key of ['system', 'firstUser'] as const) {
        const pattern = script.match?.[key];
        if (typeof pattern === 'object') checkRegex(pattern.regex, pattern.flags, ['scripts', i, 'match', key, 'regex']);
      }
    });
  });

/** A scenario as written in a file (defaults optional). */
export type ScenarioInput = z.input<typeof scenarioSchema>;
/** A validated scenario with every default filled in. */
export type Scenario = z.output<typeof scenarioSchema>;

/** A scenario file or object that does not satisfy {@link scenarioSchema}. */
export class ScenarioError extends TerminalError {
  override readonly name = 'ScenarioError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.invalidConfig, message, options);
  }
}

/**
 * Validates a scenario object. Throws a {@link ScenarioError} naming every offending path.
 * `source` (a file name) prefixes the message.
 */
export function parseScenario(input: unknown, source = 'scenario'): Scenario {
  const parsed = scenarioSchema.safeParse(input);
  if (!parsed.success) {
    throw new ScenarioError(`invalid ${source}:\n${z.prettifyError(parsed.error)}`, { cause: parsed.error });
  }
  return parsed.data;
}

/** Reads, parses and validates a scenario JSON file. Throws a {@link ScenarioError} on any problem. */
export async function loadScenario(path: string | URL): Promise<Scenario> {
  const file = path instanceof URL ? fileURLToPath(path) : path;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ScenarioError(`cannot read scenario file ${file}: ${(err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ScenarioError(`scenario file ${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  return parseScenario(json, `scenario file ${file}`);
}

/** Path of the bundled support-desk scenario, the default of `startSimulator`. */
export const SUPPORT_DESK_SCENARIO = fileURLToPath(new URL('./scenarios/support-desk.json', import.meta.url));
