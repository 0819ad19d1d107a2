import type { AnyStateMachine } from 'xstate';
import { z } from 'zod';
import { AGENT_NAME_PATTERN } from '../common/ids.ts';
import { agentLoopMachine, type AgentLoopInput } from '../machines/agent-loop.machine.ts';
import type { BreachPolicy, LimitName } from '../machines/supervisor.machine.ts';
import { defineTool, type Tool } from '../sandbox/tool.ts';

/** Limits of one agent over the config's `limits`; a task's `budget` may lower them, never raise them. */
export interface AgentLimits {
  /** Most model calls. @default config `limits.steps` (8) */
  steps?: number;
  /** Wall-clock cap from the task's start, across restarts. @default config `limits.wallClockMs` (90 s) */
  wallClockMs?: number;
  /** Most USD spent on model calls. @default config `limits.usd` (none) */
  usd?: number;
  /** Most model tokens. @default config `limits.tokens` (none) */
  tokens?: number;
  /** Consecutive repeated steps that stop the task. @default config `limits.noProgress` (3) */
  noProgress?: number;
  /** Per limit, `stop` or `escalate` to an approver. @default config `limits.onBreach` */
  onBreach?: Partial<Record<LimitName, BreachPolicy>>;
}

/** A call as a confidence scorer sees it. */
export interface ScoredCall {
  tool: string;
  args: unknown;
  /** What the model wrote before its tool calls in this step. */
  rationale: string | undefined;
}

/**
 * Which tool calls need an approver. Irreversible tools always do, unless listed in
 * `autoApprove` (recorded as auto-approved); even then, once untrusted content is in the
 * task's context they do again. `rules` send any call to a human when they return a reason;
 * `confidence` sends calls the model (or a scorer) is unsure of; `sampleRate` sends a share of
 * the calls that would otherwise run unasked, for auditing.
 */
export interface ApprovalPolicy {
  /** Irreversible tools this agent may call without asking. @default [] */
  autoApprove?: string[];
  /** Per tool: a reason to ask a human about these (parsed) arguments, or undefined. */
  rules?: Record<string, (args: any) => string | undefined>;
  /**
   * Confidence routing: a side-effecting call whose confidence is below `below` goes to a
   * human. The confidence is `scorer(call)` if given, else the one the model stated in its text
   * before the call ("confidence: 0.8" or "confidence: 80%"); a call with no confidence at all
   * counts as unsure. `tools` limits it to some tools. @default off
   */
  confidence?: { below: number; tools?: string[]; scorer?: (call: ScoredCall) => number | undefined };
  /**
   * Share (0..1) of side-effecting calls that would run without a human which are sent to one
   * anyway, for auditing. The choice is a hash of the call's key, so a replayed call is
   * sampled the same way. @default 0
   */
  sampleRate?: number;
  /** Distinct approvers who must approve a call of these tools (`{ wire_money: 2 }`). @default 1 */
  quorum?: Record<string, number>;
  /** How long a request may wait for a decision. @default none */
  deadlineMs?: number;
  /**
   * What a passed deadline does: `reject` the call (or not raise the limit), or `escalate` the
   * request to the next tier of approvers (config `approvers[].tier`), with a fresh deadline;
   * with no higher tier left it is rejected. @default "reject"
   */
  onDeadline?: 'reject' | 'escalate';
}

/** The limits of one task, resolved from config, agent and task budget. */
export interface ResolvedLimits {
  steps: number;
  wallClockMs: number;
  usd: number | null;
  tokens: number | null;
  noProgress: number;
  onBreach: Record<LimitName, BreachPolicy>;
}

/** Everything a machine's input may be derived from. */
export interface TaskStart<I> {
  taskId: string;
  input: I;
  /** Resolved limits for this task. */
  limits: ResolvedLimits;
}

interface AgentCommon<I> {
  /** Subject token: `troupe.tasks.<name>`. Lower-case letters, digits, `_`, `-`. */
  name: string;
  description: string;
  /** Schema of a task's `input`; submissions that do not parse are rejected with the reason. */
  input: z.ZodType<I>;
  /**
   * Schema of a task's output. A task that ends done with output that does not match is flagged
   * (a `flag` event): the semantic failure a crash detector would miss. @default not checked
   */
  output?: z.ZodType;
  /** A valid input, shown by `troupe agents` and used by the demo. */
  exampleInput?: I;
  /**
   * Version of the machine. Bump it whenever a change would make old snapshots unreadable: a
   * host refuses (fails with a clear error) to restore a snapshot of another version.
   * @default "1"
   */
  version?: string;
  /** The system prompt of every model call. @default "" */
  system?: string;
  /** Tools the model may call. @default [] */
  tools?: Tool<any, any>[];
  limits?: AgentLimits;
  /** When a tool call needs a human before it runs. */
  approvals?: ApprovalPolicy;
  /**
   * A judge: one bounded model call (role `judge`, no tools) at the end of every task that ends
   * done, given the task's input and output and these instructions; an answer that does not
   * start with PASS raises a `judge` flag with its reason. It counts against the task's budget.
   * @default none
   */
  judge?: { instructions: string; maxTokens?: number };
  /**
   * Events this agent's tasks accept on their inbox (`troupe.task.<taskId>.inbox`), by `type`,
   * with a schema for their `data`. A wait refuses (and reports) events of other types or with
   * bad data. @default any event
   */
  inbox?: Record<string, z.ZodType>;
  /**
   * Agents this one may delegate to. A loop agent gets a `delegate` tool: the model starts child
   * tasks on these agents (several at once, joined all / first / N) and gets their results; the
   * task waits parked meanwhile. Workflows invoke the `delegate` actor instead. @default []
   */
  delegates?: string[];
  /**
   * Agents this one may hand its task over to (triage -> a specialist). A loop agent gets a
   * `handoff` tool: the model names the agent, its input, and the context it passes (stated
   * explicitly, recorded in the new task and in a `handoff` event); the new task carries on,
   * and this task ends with its outcome. @default []
   */
  handoffs?: string[];
  /**
   * This agent's model routing by step role, over the config's `model.routing`
   * (for example `{ plan: { model: 'claude-opus-4-6', maxTokens: 8192 } }`).
   */
  models?: Record<string, { model: string; maxTokens: number }>;
  /**
   * Estimated tokens of conversation sent per model call; past it, the oldest tool results are
   * elided and old turns dropped (never leaving a tool_use without its tool_result).
   * @default 100000
   */
  contextTokens?: number;
}

/** An agent run by the built-in agent loop (think -> act -> observe). */
export interface LoopAgentDefinition<I> extends AgentCommon<I> {
  /** The first user message, from the task input. */
  prompt: (input: I) => string;
}

/** An agent with a statechart of its own. Its effects are `model` and `tools` actors. */
export interface MachineAgentDefinition<I> extends AgentCommon<I> {
  machine: AnyStateMachine;
  /** The machine's input for a new task. */
  machineInput: (start: TaskStart<I>) => unknown;
}

/** A validated agent, as hosts use it. */
export interface Agent<I = unknown> {
  readonly name: string;
  readonly description: string;
  readonly input: z.ZodType<I>;
  readonly output: z.ZodType | undefined;
  readonly judge: { instructions: string; maxTokens?: number } | undefined;
  readonly exampleInput: I | undefined;
  readonly version: string;
  readonly system: string;
  readonly tools: ReadonlyMap<string, Tool<any, any>>;
  readonly limits: AgentLimits;
  readonly models: Readonly<Record<string, { model: string; maxTokens: number }>>;
  readonly approvals: ApprovalPolicy;
  readonly inbox: Readonly<Record<string, z.ZodType>> | undefined;
  readonly contextTokens: number;
  readonly machine: AnyStateMachine;
  readonly machineInput: (start: TaskStart<I>) => unknown;
}

/** Declares an agent. Throws at definition time if the definition is unusable. */
export function defineAgent<I>(definition: LoopAgentDefinition<I> | MachineAgentDefinition<I>): Agent<I> {
  if (!AGENT_NAME_PATTERN.test(definition.name) || definition.name === 'rejected') {
    throw new TypeError(`agent name ${JSON.stringify(definition.name)} must match ${AGENT_NAME_PATTERN} and not be "rejected"`);
  }
  const tools = new Map<string, Tool<any, any>>();
  const own = [...(definition.tools ?? []), ...(definition.delegates?.length ? [delegateTool(definition.delegates)] : []), ...(definition.handoffs?.length ? [handoffTool(definition.handoffs)] : [])];
  for (const tool of own) {
    if (tools.has(tool.name)) throw new TypeError(`agent "${definition.name}" lists tool "${tool.name}" twice`);
    tools.set(tool.name, tool);
  }
  checkPolicy(definition.name, definition.approvals ?? {}, tools);
  const base = {
    name: definition.name,
    description: definition.description,
    input: definition.input,
    output: definition.output,
    judge: definition.judge,
    exampleInput: definition.exampleInput,
    version: definition.version ?? '1',
    system: definition.system ?? '',
    tools,
    limits: { ...definition.limits },
    models: { ...definition.models },
    approvals: { ...definition.approvals },
    inbox: definition.inbox ? { ...definition.inbox } : undefined,
    contextTokens: definition.contextTokens ?? 100_000,
  };
  if ('machine' in definition) {
    return Object.freeze({ ...base, machine: definition.machine, machineInput: definition.machineInput });
  }
  const prompt = definition.prompt;
  return Object.freeze({
    ...base,
    machine: agentLoopMachine,
    // No step cap of its own: the task's supervisor enforces every limit.
    machineInput: (start: TaskStart<I>): AgentLoopInput => ({ taskId: start.taskId, prompt: prompt(start.input) }),
  });
}

/** The `delegate` tool of an agent that may delegate to `agents`. */
function delegateTool(agents: string[]): Tool<any, any> {
  const tool = defineTool({
    name: 'delegate',
    description: `Start tasks on other agents (${agents.join(', ')}) and wait for their results. Give every task at once to run them in parallel. join: "all" (default) waits for every task, "first" for the first success, a number N for N successes. Returns each task's output or error.`,
    input: z.object({
      tasks: z.array(z.object({ agent: z.enum(agents as [string, ...string[]]), input: z.unknown() })).min(1).max(16),
      join: z.union([z.literal('all'), z.literal('first'), z.number().int().positive()]).optional(),
    }),
    output: z.unknown(),
    reversibility: 'reversible',
    module: import.meta.url,
    run: async () => {
      throw new Error('delegate calls are run by the task, not as a tool');
    },
  });
  return Object.freeze({ ...tool, delegation: 'delegate' as const });
}

/** The `handoff` tool of an agent that may hand its task over to `agents`. */
function handoffTool(agents: string[]): Tool<any, any> {
  const tool = defineTool({
    name: 'handoff',
    description: `Hand this task over to another agent (${agents.join(', ')}) when it is theirs to handle: it continues from here and its answer becomes this task's answer. State in "context" everything it needs to know from this conversation; nothing else is passed.`,
    input: z.object({ agent: z.enum(agents as [string, ...string[]]), input: z.unknown(), context: z.string().min(1).max(8000) }),
    output: z.unknown(),
    reversibility: 'reversible',
    module: import.meta.url,
    run: async () => {
      throw new Error('handoff calls are run by the task, not as a tool');
    },
  });
  return Object.freeze({ ...tool, delegation: 'handoff' as const });
}

/** Refuses, at definition time, an approval policy that names unknown tools or impossible figures. */
function checkPolicy(agent: string, policy: ApprovalPolicy, tools: ReadonlyMap<string, Tool<any, any>>): void {
  const named = [...(policy.autoApprove ?? []), ...Object.keys(policy.rules ?? {}), ...Object.keys(policy.quorum ?? {}), ...(policy.confidence?.tools ?? [])];
  for (const name of named) {
    if (!tools.has(name)) throw new TypeError(`agent "${agent}": its approval policy names tool "${name}", which is not one of its tools (${[...tools.keys()].join(', ') || 'none'})`);
  }
  for (const [name, n] of Object.entries(policy.quorum ?? {})) {
    if (!Number.isInteger(n) || n < 1) throw new TypeError(`agent "${agent}": quorum of "${name}" must be a whole number of approvers (1 or more), not ${n}`);
  }
  if (policy.sampleRate !== undefined && !(policy.sampleRate >= 0 && policy.sampleRate <= 1)) {
    throw new TypeError(`agent "${agent}": sampleRate must be between 0 and 1, not ${policy.sampleRate}`);
  }
  if (policy.confidence && !(policy.confidence.below > 0 && policy.confidence.below <= 1)) {
    throw new TypeError(`agent "${agent}": confidence.below must be in (0, 1], not ${policy.confidence.below}`);
  }
  if (policy.onDeadline && !policy.deadlineMs) throw new TypeError(`agent "${agent}": onDeadline needs a deadlineMs`);
}

/** Whether a module export looks like an agent made by {@link defineAgent}. */
export function isAgent(value: unknown): value is Agent {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Agent).name === 'string' &&
    typeof (value as Agent).machineInput === 'function' &&
    (value as Agent).tools instanceof Map
  );
}
