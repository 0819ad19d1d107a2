/**
 * The agents a scenario's hosts and workers run: the project's agents (or a module's), with the
 * scenario's fake tools and tool faults swapped in. Built the same way in the harness and in its
 * child processes (a host that is killed, a worker that crashes), so every process on a
 * scenario's prefix runs the same agents.
 */
import path from 'node:path';
import type { Agent } from '../../actors/agent.ts';
import { loadAgents } from '../load-agents.ts';
import { systemClock } from '../../common/clock.ts';
import { ToolFailedError } from '../../sandbox/errors.ts';
import { defineTool, type Tool, type ToolContext } from '../../sandbox/tool.ts';
import type { EvalFault, EvalScenario, FakeTool } from './scenario.ts';
import { suggestion } from './scenario.ts';

/** A problem of a scenario that only the agents can reveal (an unknown agent or tool). */
export interface AgentProblem {
  path: PropertyKey[];
  message: string;
}

/** Which agent modules a scenario's processes load, and which agent gets the task. */
export interface AgentSource {
  /** Absolute paths of the agent modules. */
  modules: string[];
  /** The agent named by the scenario, if it names one. */
  agent?: string | undefined;
  /** What the modules are, for error messages. */
  origin: string;
}

/** The modules of a scenario: the config's agents, or the module it names (relative to its file). */
export function agentSourceOf(scenario: Pick<EvalScenario, 'agent'>, scenarioDir: string, configModules: readonly string[], configFile: string | undefined): AgentSource {
  if (typeof scenario.agent === 'string') {
    return { modules: [...configModules], agent: scenario.agent, origin: configFile ? path.basename(configFile) : 'the troupe config (no troupe.config.json found)' };
  }
  const module = path.resolve(scenarioDir, scenario.agent.module);
  return { modules: [module], agent: scenario.agent.name, origin: scenario.agent.module };
}

/** The agents of a scenario, built; or the problems that stop it. */
export type BuiltAgents = { agents: Agent<any>[]; agent: Agent<any> } | { problems: AgentProblem[] };

/** Loads the source's modules and builds the scenario's agents. A module that fails to load is a problem at `agent`. */
export async function loadScenarioAgents(scenario: EvalScenario, source: AgentSource, onFired?: FiredObserver): Promise<BuiltAgents> {
  let base: Agent<any>[];
  try {
    base = await loadAgents(source.modules);
  } catch (err) {
    return { problems: [{ path: ['agent'], message: (err as Error).message }] };
  }
  return buildAgents(scenario, base, source, onFired);
}

/** Told each time a tool fault takes effect: the index of the fault in the scenario's `faults`. */
export type FiredObserver = (faultIndex: number) => void;

/**
 * Applies the scenario's tool overrides and tool faults to every agent with a tool of that
 * name, and checks every tool name the scenario mentions. Pure: the same scenario and agents
 * give the same result in every process.
 */
export function buildAgents(scenario: EvalScenario, base: readonly Agent<any>[], source: AgentSource, onFired: FiredObserver = () => {}): BuiltAgents {
  const problems: AgentProblem[] = [];
  const names = base.map((a) => a.name);
  let agent: Agent<any> | undefined;
  if (source.agent !== undefined) {
    agent = base.find((a) => a.name === source.agent);
    if (!agent) {
      const close = suggestion(source.agent, names);
      problems.push({ path: typeof scenario.agent === 'string' ? ['agent'] : ['agent', 'name'], message: `no agent "${source.agent}" in ${source.origin}${close ? ` (did you mean "${close}"?)` : ''}; its agents are: ${names.join(', ') || 'none'}` });
    }
  } else if (base.length === 1) {
    agent = base[0];
  } else {
    problems.push({ path: ['agent'], message: `${source.origin} exports ${base.length} agents (${names.join(', ')}): name the one to run with \`name\`` });
  }

  const tools = new Map<string, Tool<any, any>>();
  for (const a of base) for (const t of a.tools.values()) if (!tools.has(t.name)) tools.set(t.name, t);
  const toolNames = [...tools.keys()];
  const unknown = (p: PropertyKey[], name: string) => {
    if (tools.has(name)) return false;
    const close = suggestion(name, toolNames);
    problems.push({ path: p, message: `no agent here has a tool "${name}"${close ? ` (did you mean "${close}"?)` : ''}; the tools are: ${toolNames.join(', ') || 'none'}` });
    return true;
  };

  for (const [name, override] of Object.entries(scenario.tools)) {
    if (unknown(['tools', name], name) || override === 'real') continue;
    const tool = tools.get(name)!;
    const outputs = override.output !== undefined ? [['output', override.output] as const] : (override.outputs ?? []).map((o, i) => [i, o] as const);
    for (const [key, value] of outputs) {
      const checked = tool.output.safeParse(value);
      if (!checked.success) {
        const issue = checked.error.issues[0]!;
        problems.push({ path: ['tools', name, ...(key === 'output' ? ['output'] : ['outputs', key]), ...issue.path], message: `does not match the output schema of "${name}": ${issue.message}` });
      }
    }
  }
  scenario.faults.forEach((fault, i) => {
    if (!('tool' in fault) || unknown(['faults', i, 'tool'], fault.tool)) return;
    const tool = tools.get(fault.tool)!;
    const faked = isFake(scenario.tools[fault.tool]);
    if (fault.type === 'worker_crash') {
      if (faked) problems.push({ path: ['faults', i, 'tool'], message: `"${fault.tool}" is faked in \`tools\`, and fake tools run inline in the host: a worker_crash needs the real isolated tool (remove its fake)` });
      else if (tool.isolation === 'inline') problems.push({ path: ['faults', i, 'tool'], message: `"${fault.tool}" runs inline in the host, not on a worker: a worker_crash needs a tool with isolation "thread" or "bwrap" (use host_kill to crash the host)` });
    } else if (!faked && tool.isolation !== 'inline') {
      problems.push({ path: ['faults', i, 'tool'], message: `${fault.type} changes how "${fault.tool}" behaves, which can only be done in the host, but it runs isolated (${tool.isolation}); give it a fake in \`tools\` (it then runs inline)` });
    }
  });
  const expected = scenario.expect;
  const mentioned: Array<[PropertyKey[], string[] | undefined]> = [
    [['expect', 'tools', 'required'], expected.tools?.required],
    [['expect', 'tools', 'forbidden'], expected.tools?.forbidden],
    [['expect', 'trajectory'], expected.trajectory],
    [['expect', 'untrusted'], expected.untrusted],
  ];
  for (const [p, list] of mentioned) list?.forEach((name, i) => unknown([...p, i], name));
  scenario.approvals.rules.forEach((r, i) => r.tool !== undefined && unknown(['approvals', 'rules', i, 'tool'], r.tool));
  if (problems.length || !agent) return { problems };

  const replaced = new Map<string, Tool<any, any>>();
  for (const tool of tools.values()) {
    const fake = scenario.tools[tool.name];
    const faults = scenario.faults.flatMap((f, index) => ((f.type === 'tool_timeout' || f.type === 'injection') && f.tool === tool.name ? [{ ...f, index }] : []));
    if (isFake(fake) || faults.length) replaced.set(tool.name, scenarioTool(tool, isFake(fake) ? fake : undefined, faults, onFired));
  }
  const agents = base.map((a) => {
    if (![...a.tools.keys()].some((n) => replaced.has(n))) return a;
    return Object.freeze({ ...a, tools: new Map([...a.tools].map(([n, t]) => [n, replaced.get(n) ?? t] as const)) }) as Agent<any>;
  });
  return { agents, agent: agents.find((a) => a.name === agent.name)! };
}

type ToolFault = Extract<EvalFault, { type: 'tool_timeout' | 'injection' }>;

const isFake = (o: EvalScenario['tools'][string] | undefined): o is FakeTool => o !== undefined && o !== 'real';

/**
 * A tool with the scenario's fake and faults: the real tool's name, description, schemas,
 * reversibility, trust and gates (`validate`, `authorize`, `amount`), run inline in the host.
 */
function scenarioTool(original: Tool<any, any>, fake: FakeTool | undefined, faults: Array<ToolFault & { index: number }>, onFired: FiredObserver): Tool<any, any> {
  const timeout = faults.find((f): f is Extract<ToolFault, { type: 'tool_timeout' }> & { index: number } => f.type === 'tool_timeout');
  const injections = faults.filter((f): f is Extract<ToolFault, { type: 'injection' }> & { index: number } => f.type === 'injection');
  let calls = 0;
  let hung = 0;
  const run = async (input: unknown, ctx: ToolContext): Promise<unknown> => {
    const call = calls++;
    if (timeout && (timeout.times === undefined || hung < timeout.times)) {
      hung++;
      onFired(timeout.index);
      // Outlives its time limit: the runtime's timeout aborts the call, never this.
      await new Promise<void>((resolve) => (ctx.signal.aborted ? resolve() : ctx.signal.addEventListener('abort', () => resolve(), { once: true })));
      throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('aborted');
    }
    let output: unknown;
    if (fake) {
      if (fake.delayMs > 0) await systemClock.sleep(fake.delayMs, ctx.signal);
      if (fake.error !== undefined) throw new ToolFailedError(fake.error);
      output = fake.output !== undefined ? structuredClone(fake.output) : structuredClone(fake.outputs![Math.min(call, fake.outputs!.length - 1)]);
    } else {
      output = await original.run(input, ctx);
    }
    for (const injection of injections) {
      output = inject(original.name, output, injection.text, injection.field);
      onFired(injection.index);
    }
    return output;
  };
  return defineTool({
    name: original.name,
    description: original.description,
    input: original.input,
    output: original.output,
    reversibility: original.reversibility,
    isolation: 'inline',
    untrusted: original.untrusted,
    timeoutMs: timeout?.timeoutMs ?? original.timeoutMs,
    ...(original.validate ? { validate: original.validate } : {}),
    ...(original.authorize ? { authorize: original.authorize } : {}),
    ...(original.amount ? { amount: original.amount } : {}),
    // A fake's effects are its canned answers: there is nothing outside to reconcile with.
    ...(!fake && original.reconcile ? { reconcile: original.reconcile } : {}),
    module: original.module ?? import.meta.url,
    run,
  });
}

/** The output with the injected text appended: to a string output, or to a string field of an object. */
export function inject(tool: string, output: unknown, text: string, field: string | undefined): unknown {
  if (typeof output === 'string') return `${output}\n\n${text}`;
  if (typeof output === 'object' && output !== null && !Array.isArray(output)) {
    const record = output as Record<string, unknown>;
    const key = field ?? Object.keys(record).find((k) => typeof record[k] === 'string');
    if (key !== undefined && (record[key] === undefined || typeof record[key] === 'string')) {
      return { ...record, [key]: record[key] === undefined || record[key] === '' ? text : `${record[key] as string}\n\n${text}` };
    }
    throw new ToolFailedError(`troupe eval could not inject into the output of "${tool}": ${field ? `its field "${field}" is not a string` : 'it has no string field'}; name a string field with \`field\``);
  }
  throw new ToolFailedError(`troupe eval could not inject into the output of "${tool}": it is neither a string nor an object`);
}
