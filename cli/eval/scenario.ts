/**
 * The eval scenario file format, as one zod schema: which agent, its input, the model's scripted
 * turns (played by the bundled simulator through the real SDK), tool overrides, faults to
 * inject, how the approver answers, and what is expected. Types are inferred from it.
 */
import { z } from 'zod';
import { AGENT_NAME_PATTERN } from '../../common/ids.ts';
import { escalationReasonSchema } from '../../runtime/approvals.ts';
import { budgetSchema } from '../../runtime/wire.ts';
import { scenarioSchema as simulatorScenarioSchema } from '../../simulator/index.ts';

/** The closest of `known` to `word`, when it is close enough to be a likely typo. */
export function suggestion(word: string, known: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const d = editDistance(word.toLowerCase(), name.toLowerCase());
    if (!best || d < best.distance) best = { name, distance: d };
  }
  return best && best.distance <= Math.max(1, Math.floor(best.name.length / 3)) ? best.name : undefined;
}

/** Levenshtein distance between two sequences (strings, or arrays compared with ===). */
export function editDistance<T>(a: ArrayLike<T>, b: ArrayLike<T>): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * A strict object whose unknown-field error names the field, the likely intended one, and every
 * field that may be written there.
 */
function strict<T extends z.ZodRawShape>(shape: T) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code !== 'unrecognized_keys') return undefined;
      const named = issue.keys.map((k) => {
        const close = suggestion(k, known);
        return `"${k}"${close ? ` (did you mean "${close}"?)` : ''}`;
      });
      return `unknown field${named.length > 1 ? 's' : ''} ${named.join(', ')}; the fields here are: ${known.join(', ')}`;
    },
  });
}

const toolName = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'a tool name: letters, digits, "_" and "-"');

const agentRefSchema = z.union([
  z.string().regex(AGENT_NAME_PATTERN, 'an agent name from troupe.config.json (lower-case letters, digits, "_", "-"), or { module: ./file.ts, name: agent }'),
  strict({
    /** An agent module (`defineAgent` exports), relative to the scenario file. Hosts run its agents only. */
    module: z.string().min(1),
    /** Which of the module's agents gets the task. @default the module's only agent */
    name: z.string().regex(AGENT_NAME_PATTERN).optional(),
  }),
]);

/** A fake tool: canned output (or error), after an optional delay. It keeps the real tool's schemas and gates and runs inline. */
const fakeToolSchema = strict({
  /** Returned by every call (checked against the real tool's output schema when the file is loaded). */
  output: z.unknown().optional(),
  /** Returned by successive calls; the last one repeats. */
  outputs: z.array(z.unknown()).min(1).optional(),
  /** Every call fails with this message instead. */
  error: z.string().min(1).optional(),
  /** How long each call takes before it answers. @default 0 */
  delayMs: z.number().int().min(0).max(600_000).default(0),
}).superRefine((t, ctx) => {
  const given = (['output', 'outputs', 'error'] as const).filter((k) => t[k] !== undefined);
  if (given.length !== 1) {
    ctx.addIssue({ code: 'custom', message: given.length ? `give one of output, outputs or error, not ${given.join(' and ')}` : 'a fake tool needs `output: <json>`, `outputs: [<json>, ...]` or `error: "message"` (or write `real` to keep the real tool)' });
  }
});

const toolOverrideSchema = z.union([z.literal('real'), fakeToolSchema]);

const faultSchema = z.discriminatedUnion('type', [
  strict({
    type: z.literal('tool_timeout'),
    tool: toolName,
    /** The tool's time limit during the scenario; each affected call hangs past it. @default 200 */
    timeoutMs: z.number().int().min(10).max(60_000).default(200),
    /** How many calls hang (retries included); later calls answer normally. @default every call */
    times: z.number().int().min(1).optional(),
  }),
  strict({
    type: z.literal('worker_crash'),
    /** An isolated (`thread` or `bwrap`) tool of the agent: a worker process runs it and is killed (SIGKILL) mid-call. */
    tool: toolName,
    /** Which call of that tool (1 = the first) kills its worker. @default 1 */
    call: z.number().int().min(1).default(1),
  }),
  strict({
    type: z.literal('model_overloaded'),
    /** The model turn (0 = the first) that is answered with errors first. @default 0 */
    turn: z.number().int().min(0).default(0),
    /** How many requests for that turn fail before it is answered. @default 1 */
    times: z.number().int().min(1).max(100).default(1),
    /** HTTP status of the failures. @default 529 */
    status: z.union([z.literal(529), z.literal(500), z.literal(502), z.literal(503), z.literal(429)]).default(529),
    /** With `model.scripts`: the script whose turn it is. @default the only script */
    script: z.string().min(1).optional(),
  }),
  strict({
    type: z.literal('host_kill'),
    /** The step (0 = the first model call) at which the host running the task is killed (SIGKILL). */
    step: z.number().int().min(0),
    /** The step's `model` call, or its first `tool` call. @default "model" */
    effect: z.enum(['model', 'tool']).default('model'),
    /** `before` the effect runs (its intent is saved), or `after` its outcome is recorded. @default "before" */
    point: z.enum(['before', 'after']).default('before'),
  }),
  strict({
    type: z.literal('injection'),
    /** The tool whose output carries the injected instructions. */
    tool: toolName,
    /** The instructions, appended to the tool's output. */
    text: z.string().min(1),
    /** Which string field of an object output gets the text. @default the first string field */
    field: z.string().min(1).optional(),
  }),
]);

const answerSchema = z.enum(['approve', 'reject', 'edit', 'ignore']);

const approvalRuleSchema = strict({
  /** Requests about calls of this tool. @default any tool */
  tool: toolName.optional(),
  /** `tool` call requests or `limit` (budget) requests. @default both */
  kind: z.enum(['tool', 'limit']).optional(),
  /** Requests with this among their reasons. @default any */
  reason: escalationReasonSchema.optional(),
  /** What the approver does; `ignore` leaves the request waiting. */
  answer: answerSchema,
  /** The reason the approver gives. */
  note: z.string().min(1).max(2000).optional(),
  /** For `edit`: the arguments to run the call with instead. */
  args: z.record(z.string(), z.unknown()).optional(),
  /** For approving a limit request: how much more to grant. */
  grant: z.number().positive().optional(),
}).superRefine((r, ctx) => {
  if (r.answer === 'edit' && r.args === undefined) ctx.addIssue({ code: 'custom', path: ['args'], message: 'answer "edit" needs `args`: the arguments the call should run with' });
  if (r.answer !== 'edit' && r.args !== undefined) ctx.addIssue({ code: 'custom', path: ['args'], message: '`args` goes with answer "edit" only' });
});

const approvalsSchema = z.preprocess(
  (v) => (typeof v === 'string' ? { default: v } : v),
  strict({
    /** What requests that no rule matches get. @default "reject" */
    default: z.enum(['approve', 'reject', 'ignore']).default('reject'),
    /** First matching rule wins. */
    rules: z.array(approvalRuleSchema).default([]),
  }),
);

const countRangeSchema = z.union([z.number().int().min(0), strict({ min: z.number().int().min(0).optional(), max: z.number().int().min(0).optional() })]);

const expectSchema = strict({
  /** How the task should end: `done`, `failed`, or `rejected` at intake. @default "done" */
  outcome: z.enum(['done', 'failed', 'rejected']).default('done'),
  /** The error code it should fail (or be rejected) with. */
  error: z.string().min(1).optional(),
  output: strict({
    /** Text the output must contain (case-insensitive). */
    contains: z.union([z.string().min(1), z.array(z.string().min(1))]).optional(),
    /** Text the output must not contain (case-insensitive). */
    notContains: z.union([z.string().min(1), z.array(z.string().min(1))]).optional(),
    /** A regular expression the output must match. */
    matches: z.string().min(1).optional(),
  }).optional(),
  tools: strict({
    /** Tools the model must call, in the task or a task it delegated to (whatever came of the call). */
    required: z.array(toolName).default([]),
    /** Tools that must never run, in the task or a task it delegated to (a call refused by a gate or an approver did not run). */
    forbidden: z.array(toolName).default([]),
    /** The required calls must come in the order listed. @default false */
    ordered: z.boolean().default(false),
  }).optional(),
  /** The exact sequence of the task's own tool calls (names, in order; delegated tasks' calls are not in it). */
  trajectory: z.array(toolName).optional(),
  /** Most steps (model calls) for the whole task tree. */
  maxSteps: z.number().int().min(0).optional(),
  /** Most USD spent on model calls by the whole task tree. */
  maxCostUsd: z.number().positive().optional(),
  /** Most model tokens (input, cache and output) of the whole task tree. */
  maxTokens: z.number().int().positive().optional(),
  /** Approval requests: an exact number, or `{ min, max }`. */
  approvals: countRangeSchema.optional(),
  /** Tools whose output must reach the model delimited as untrusted data. */
  untrusted: z.array(toolName).optional(),
  /** Whether another host must have taken the running task over (after its host was killed). A parked task woken up does not count. */
  resumed: z.boolean().optional(),
});

const modelSchema = strict({
  /**
   * The assistant turns of the conversation, in the simulator's turn format (`text`, `content`
   * with `tool_use` blocks, `stopReason`, `usage`, `latencyMs`, `faults`). Every request plays
   * them: the turn is the number of assistant messages already sent.
   */
  turns: z.array(z.unknown()).min(1).optional(),
  /** Simulator scripts with `match` rules, for scenarios with several agents (delegation). */
  scripts: z.array(z.unknown()).min(1).optional(),
  /** The reply once the turns are used up. @default "I have nothing further to add." */
  finalText: z.string().min(1).optional(),
  /** Delay before every reply. @default 0 */
  latencyMs: z.number().int().min(0).max(600_000).optional(),
}).superRefine((model, ctx) => {
  // The turns and scripts are the simulator's own format: its schema says what is wrong.
  const simulated = simulatorScenarioSchema.safeParse(simulatorScenarioOf({ model, faults: [] }));
  if (!simulated.success) {
    for (const issue of simulated.error.issues) ctx.addIssue({ ...issue, path: modelPath(model, issue.path) } as never);
  }
});

/** The zod schema of an eval scenario file (YAML or JSON). */
export const evalScenarioSchema = strict({
  /** Unique in a run; keys the baseline. @default the file name without its extension */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$/, 'letters, digits, ".", "_" and "-", at most 80').optional(),
  description: z.string().optional(),
  agent: agentRefSchema,
  /** The task's input; it must match the agent's input schema (or the task is rejected). */
  input: z.unknown().refine((v) => v !== undefined, 'required field is missing: write `input:` with what a client would submit to the agent'),
  /** The task's budget (it can lower the agent's limits, never raise them). */
  budget: budgetSchema.optional(),
  /** Who the task acts for (config `principals`). @default none */
  principal: z.string().min(1).max(128).optional(),
  model: modelSchema,
  /** Per tool: `real` (the default) or a fake. */
  tools: z.record(toolName, toolOverrideSchema).default({}),
  faults: z.array(faultSchema).default([]),
  /** How the harness's approver answers; a string is the default answer. @default reject everything */
  approvals: approvalsSchema.default({ default: 'reject', rules: [] }),
  expect: expectSchema.prefault({}),
  /** Longest the task may take, from its submission, before the scenario fails as timed out. @default 60000 */
  timeoutMs: z.number().int().min(100).max(3_600_000).default(60_000),
}).superRefine((s, ctx) => {
  const { turns, scripts } = s.model;
  if ((turns === undefined) === (scripts === undefined)) {
    ctx.addIssue({ code: 'custom', path: ['model'], message: 'give the model either `turns: [...]` (one conversation) or `scripts: [...]` (simulator scripts with match rules), not both or neither' });
  }
  const kinds = new Set<string>();
  s.faults.forEach((f, i) => {
    if ((f.type === 'host_kill' || f.type === 'worker_crash') && kinds.has(`${f.type}:${'tool' in f ? f.tool : ''}`)) {
      ctx.addIssue({ code: 'custom', path: ['faults', i], message: `one ${f.type} fault per ${f.type === 'host_kill' ? 'scenario' : 'tool'}` });
    }
    kinds.add(`${f.type}:${'tool' in f ? f.tool : ''}`);
    if (f.type === 'model_overloaded' && scripts !== undefined && f.script === undefined && scripts.length > 1) {
      ctx.addIssue({ code: 'custom', path: ['faults', i, 'script'], message: 'with several model scripts, name the one whose turn fails: `script: <name>`' });
    }
  });
  if (s.expect.error !== undefined && s.expect.outcome === 'done') {
    ctx.addIssue({ code: 'custom', path: ['expect', 'error'], message: 'an expected error code needs `outcome: failed` or `outcome: rejected`' });
  }
  if (s.expect.output?.matches !== undefined) {
    try {
      new RegExp(s.expect.output.matches);
    } catch (err) {
      ctx.addIssue({ code: 'custom', path: ['expect', 'output', 'matches'], message: `not a valid regular expression: ${(err as Error).message}` });
    }
  }
  for (const problem of faultProblems(s)) ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
});

/** A scenario as written in a file (defaults optional). */
export type EvalScenarioInput = z.input<typeof evalScenarioSchema>;
/** A validated scenario with every default filled in. */
export type EvalScenario = z.output<typeof evalScenarioSchema>;
export type EvalFault = EvalScenario['faults'][number];
export type FakeTool = Exclude<EvalScenario['tools'][string], 'real'>;
export type ApprovalRule = EvalScenario['approvals']['rules'][number];
export type Expectations = EvalScenario['expect'];

/** Name of the one simulator script made from `model.turns`. */
export const TURNS_SCRIPT = 'scenario';

/**
 * The simulator scenario that plays a scenario's model section, with its `model_overloaded`
 * faults added to the turns they name (after any faults the turn lists itself).
 */
export function simulatorScenarioOf(s: { model: EvalScenario['model']; faults: readonly EvalFault[]; name?: string | undefined }): unknown {
  const { turns, scripts, finalText, latencyMs } = s.model;
  const list: Array<Record<string, unknown>> = turns
    ? [{ name: TURNS_SCRIPT, turns: turns.map(copy), ...(latencyMs !== undefined ? { latencyMs } : {}) }]
    : (scripts ?? []).map((script) => ({ ...(copy(script) as Record<string, unknown>), ...(latencyMs !== undefined && typeof script === 'object' && script !== null && !('latencyMs' in script) ? { latencyMs } : {}) }));
  for (const fault of s.faults) {
    if (fault.type !== 'model_overloaded') continue;
    const script = fault.script === undefined ? list[0] : list.find((x) => x.name === fault.script);
    const turnsOf = script?.turns;
    if (!script || !Array.isArray(turnsOf)) continue;
    const turn = turnsOf[fault.turn];
    if (typeof turn !== 'object' || turn === null) continue;
    const t = turn as Record<string, unknown>;
    // A turn's own `faults` replace its script's, so the script's must be carried over.
    const before = Array.isArray(t.faults) ? t.faults : Array.isArray(script.faults) ? script.faults : [];
    t.faults = [...before, { type: 'error', status: fault.status, times: fault.times, message: 'Overloaded (injected by troupe eval)' }];
  }
  return { name: s.name ?? 'eval', scripts: list, ...(finalText !== undefined ? { finalText } : {}) };
}

const copy = (v: unknown): unknown => (v === undefined ? v : structuredClone(v));

/** Maps a path in the generated simulator scenario back to the path under the file's `model` section (relative to it). */
function modelPath(model: Pick<EvalScenario['model'], 'turns'>, path: PropertyKey[]): PropertyKey[] {
  if (path[0] !== 'scripts' || !model.turns) return path;
  return path[2] === 'turns' ? ['turns', ...path.slice(3)] : path.slice(2);
}

/** Model faults that name a script or turn the scenario does not have. */
function faultProblems(s: EvalScenario): Array<{ path: PropertyKey[]; message: string }> {
  const problems: Array<{ path: PropertyKey[]; message: string }> = [];
  s.faults.forEach((f, i) => {
    if (f.type !== 'model_overloaded') return;
    const scripts = (s.model.turns ? [{ name: TURNS_SCRIPT, turns: s.model.turns }] : (s.model.scripts as Array<{ name?: unknown; turns?: unknown[] }>)) ?? [];
    const script = f.script === undefined ? scripts[0] : scripts.find((x) => x.name === f.script);
    if (!script) {
      problems.push({ path: ['faults', i, 'script'], message: `no model script named "${f.script}"; the scripts are: ${scripts.map((x) => String(x.name)).join(', ')}` });
      return;
    }
    const count = Array.isArray(script.turns) ? script.turns.length : 0;
    if (f.turn >= count) problems.push({ path: ['faults', i, 'turn'], message: `turn ${f.turn} does not exist: the model has ${count} scripted turn${count === 1 ? '' : 's'} (0 to ${count - 1})` });
  });
  return problems;
}
