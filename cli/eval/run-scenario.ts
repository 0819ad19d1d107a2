/**
 * Runs one scenario for real: its own simulator (behind a tap) playing the scripted turns, its
 * own prefix on the run's NATS, a host (in a child process when it is to be killed), workers for
 * isolated tools (in a child process when one is to crash), an approver, the task submitted as
 * any client would, the faults driven, and what happened measured and checked.
 */
import { jetstream } from '@nats-io/jetstream';
import type { KeyPair } from '@nats-io/nkeys';
import type { Logger } from 'pino';
import type { Agent } from '../../actors/agent.ts';
import { Host } from '../../actors/host.ts';
import { isolatedTools, ToolWorker } from '../../actors/tool-worker.ts';
import { submitTask } from '../commands/submit.ts';
import { traceOf, type TraceNode } from '../commands/trace.ts';
import { createModel } from '../model.ts';
import { ensureError } from '../../common/errors.ts';
import type { LoadedConfig } from '../../config/load.ts';
import type { TroupeConfig } from '../../config/schema.ts';
import { ApproverClient } from '../../human/approver-client.ts';
import { JsonKv } from '../../runtime/json-kv.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { watchTask, WatchTimeoutError } from '../../runtime/task-watch.ts';
import { ensureTopology } from '../../runtime/topology.ts';
import { snapshotEnvelopeSchema, type TaskEvent } from '../../runtime/wire.ts';
import { startSimulator, type ScenarioInput, type SimulatorHandle } from '../../simulator/index.ts';
import { agentSourceOf, loadScenarioAgents } from './agents.ts';
import { ScenarioApprover } from './approver.ts';
import { checkExpectations, type Check } from './checks.ts';
import { startChild, type Child } from './child-process.ts';
import type { ChildSpec } from './child-spec.ts';
import { measure, type FaultRecord, type Metrics, type Observation, type Outcome } from './metrics.ts';
import { startModelTap, toolResultsSeen, type ModelTap } from './model-tap.ts';
import { connectFor, dropTopology, scenarioConfig } from './scenario-config.ts';
import { formatProblem, ScenarioFileError, type LoadedScenario } from './scenario-file.ts';
import { simulatorScenarioOf, TURNS_SCRIPT, type EvalFault, type EvalScenario } from './scenario.ts';

/** What every scenario of a run shares. */
export interface RunContext {
  /** NATS of the run. */
  servers: readonly string[];
  /** Whether the harness started that NATS (its data goes with it). */
  embedded: boolean;
  /** The project's configuration. */
  loaded: LoadedConfig;
  /** Short id of the run: in prefixes and task ids. */
  runId: string;
  /** The harness's approver key, trusted by every scenario's hosts. */
  approverKey: KeyPair;
  /** Keep each scenario's streams and buckets on a NATS the harness did not start. @default false */
  keep?: boolean;
  logger: Logger;
  logLevel?: TroupeConfig['log']['level'];
}

/** How one scenario went. */
export interface ScenarioResult {
  file: string;
  name: string;
  agent: string | undefined;
  /** `error`: the scenario could not be run (a bad file, a harness failure); not a verdict on the agent. */
  status: 'passed' | 'failed' | 'error';
  taskId: string | undefined;
  /** The scenario's subject prefix (with `--keep`, `TROUPE_PREFIX=<it> troupe trace <taskId>` shows the task). */
  prefix: string | undefined;
  outcome: Outcome | null;
  error: { code: string; message: string } | undefined;
  output: unknown;
  metrics: Metrics | null;
  checks: Check[];
  faults: FaultRecord[];
  /** Why the scenario could not be run: one line per problem, naming file, line and field. */
  problems: string[];
  /** The whole scenario: starting its processes, the task, and tearing down. */
  durationMs: number;
}

/** A result for a scenario that could not run. */
export function errorResult(file: string, name: string, problems: string[], extra: Partial<ScenarioResult> = {}): ScenarioResult {
  return { file, name, agent: undefined, status: 'error', taskId: undefined, prefix: undefined, outcome: null, error: undefined, output: undefined, metrics: null, checks: [], faults: [], problems, durationMs: 0, ...extra };
}

/** The problems of a {@link ScenarioFileError}, one formatted line each. */
export function problemLines(err: ScenarioFileError): string[] {
  return err.problems.map((p) => formatProblem(err.file, p));
}

/** Runs scenario number `index` of the run. Never throws: a failure of the harness is an `error` result. */
export async function runScenario(loaded: LoadedScenario, index: number, ctx: RunContext): Promise<ScenarioResult> {
  const started = Date.now();
  const s = loaded.scenario;
  const prefix = `ev${ctx.runId}${index.toString(36)}`;
  const taskId = `${s.name.replace(/[^A-Za-z0-9_-]/g, '_')}-${ctx.runId}`;
  const source = agentSourceOf(s, loaded.dir, ctx.loaded.agentModules, ctx.loaded.file);
  const faults: FaultRecord[] = s.faults.map((f) => ({ type: f.type, fired: false, detail: notFired(f) }));
  const fired = new Map<number, number>();
  const onFired = (i: number) => fired.set(i, (fired.get(i) ?? 0) + 1);
  const built = await loadScenarioAgents(s, source, onFired);
  if ('problems' in built) {
    const err = new ScenarioFileError(loaded.file, built.problems.map((p) => ({ path: p.path.map(String).join('.'), ...positionOf(loaded, p.path), message: p.message })));
    return errorResult(loaded.file, s.name, problemLines(err), { durationMs: Date.now() - started });
  }
  const closers: Array<() => Promise<unknown>> = [];
  const later = (close: () => Promise<unknown>) => closers.push(close);
  const base = { file: loaded.file, name: s.name, agent: built.agent.name, taskId, prefix };
  try {
    const sim = await startSimulator({ scenario: simulatorScenarioOf(s) as ScenarioInput });
    later(() => sim.close());
    const tap = await startModelTap(sim.url);
    later(() => tap.close());
    const config = scenarioConfig(ctx.loaded.config, { prefix, servers: ctx.servers, modelUrl: tap.url, approverKey: ctx.approverKey.getPublicKey(), embedded: ctx.embedded, ...(ctx.logLevel ? { logLevel: ctx.logLevel } : {}) });
    const nc = await connectFor(config, `troupe-eval-${s.name}`);
    later(() => nc.close());
    const subj = makeSubjects(prefix);
    const topology = await ensureTopology(nc, subj, { ...config.streams, leaseMs: config.host.leaseMs });
    if (!ctx.embedded && !ctx.keep) later(() => dropTopology(nc, subj));
    const model = await createModel({ ...ctx.loaded, config }, ctx.logger, { ANTHROPIC_API_KEY: 'troupe-eval' });
    later(() => model.close());
    const childSpec = (role: ChildSpec['role']): Omit<ChildSpec, 'kill' | 'crash'> => ({ role, scenarioFile: loaded.file, source, config, taskId });
    const children: Child[] = [];
    later(() => Promise.all(children.map((c) => c.kill())));

    // Workers first (hosts are closed before them): in-process for the isolated tools, in a child for the one to crash.
    const crash = s.faults.find((f): f is Extract<EvalFault, { type: 'worker_crash' }> => f.type === 'worker_crash');
    const workers: ToolWorker[] = [];
    later(() => Promise.all(workers.map((w) => w.close(1_000))));
    const startWorker = async (tools: ReturnType<typeof isolatedTools>) => {
      const worker = new ToolWorker({ nc, config, tools, logger: ctx.logger, workerId: `eval-worker-${prefix}-${workers.length}` });
      workers.push(worker);
      await worker.start();
    };
    const isolated = isolatedTools(built.agents).filter((t) => t.name !== crash?.tool);
    if (isolated.length) await startWorker(isolated);
    const crashChild = crash ? startChild({ ...childSpec('worker'), crash: { tool: crash.tool, call: crash.call } }) : undefined;
    if (crashChild) {
      children.push(crashChild);
      crashChild.onFired(onFired);
      await crashChild.ready;
    }

    const hosts: Host[] = [];
    later(() => Promise.all(hosts.map((h) => h.close())));
    const startHost = async () => {
      const host = new Host({ nc, config, agents: built.agents as Agent<any>[], model: (agent) => model.clientFor(agent), logger: ctx.logger, hostId: `eval-host-${prefix}-${hosts.length}` });
      hosts.push(host);
      await host.start();
    };
    const kill = s.faults.find((f): f is Extract<EvalFault, { type: 'host_kill' }> => f.type === 'host_kill');
    const hostChild = kill ? startChild({ ...childSpec('host'), kill: { step: kill.step, effect: kill.effect, point: kill.point } }) : undefined;
    if (hostChild) {
      children.push(hostChild);
      hostChild.onFired(onFired);
      await hostChild.ready;
    } else {
      await startHost();
    }

    const approver = new ScenarioApprover(await ApproverClient.connect(nc, { prefix, key: ctx.approverKey }), s.approvals);
    approver.start();
    later(() => approver.stop());

    // The faults that kill processes: when a child reaches its point, kill it and let another take over.
    const acting: Array<Promise<void>> = [];
    const driverErrors: Error[] = [];
    const drive = (reached: Promise<string>, act: (key: string) => Promise<void>) =>
      void reached.then((key) => acting.push(act(key).catch((err: unknown) => void driverErrors.push(ensureError(err)))));
    if (hostChild && kill) {
      const i = s.faults.indexOf(kill);
      drive(hostChild.fault, async (key) => {
        await hostChild.kill();
        faults[i] = { type: kill.type, fired: true, detail: `the host running the task was killed (SIGKILL) ${kill.point} effect ${key}` };
        await startHost();
      });
    }
    if (crashChild && crash) {
      const i = s.faults.indexOf(crash);
      drive(crashChild.fault, async (key) => {
        await crashChild.kill();
        faults[i] = { type: crash.type, fired: true, detail: `the worker running ${crash.tool} was killed (SIGKILL) mid-call at ${key}; a new worker took over` };
        await startWorker(isolatedTools(built.agents, [crash.tool]));
      });
    }

    const task = { taskId, input: s.input, ...(s.budget ? { budget: s.budget } : {}), ...(s.principal ? { principal: s.principal } : {}), metadata: { eval: s.name } };
    const submittedAt = Date.now();
    const submitted = await submitTask(nc, subj, built.agent.name, task, { wait: false, timeoutMs: s.timeoutMs });
    let outcome: Outcome;
    let error: { code: string; message: string } | undefined;
    let output: unknown;
    if ('error' in submitted.verdict) {
      outcome = 'rejected';
      error = submitted.verdict.error;
    } else {
      const end = await ended(jetstream(nc), subj, taskId, submittedAt + s.timeoutMs);
      outcome = end ? (end.type === 'done' ? 'done' : 'failed') : 'timeout';
      if (end?.type === 'done') output = end.output;
      if (end?.type === 'failed') error = end.error;
    }
    const taskMs = Date.now() - submittedAt;
    await approver.stop();
    // A replacement still starting must be up before anything is torn down.
    await Promise.all(acting);
    const tree = await traceOf(jetstream(nc), subj, new JsonKv(topology.snapshots, subj.buckets.snapshots, snapshotEnvelopeSchema), taskId);
    noteToolFaults(s, faults, fired, tap, sim);
    const observation: Observation = { taskId, outcome, error, output, tree, requests: tap.requests, approvals: approver.records, faults, durationMs: taskMs };
    const metrics = measure(observation, s.expect);
    const checks = checkExpectations(s, observation, metrics);
    for (const err of [approver.error, ...driverErrors]) if (err) checks.push({ name: 'harness', passed: false, reason: err.message });
    return { ...base, status: checks.every((c) => c.passed) ? 'passed' : 'failed', outcome, error, output, metrics, checks, faults, problems: [], durationMs: Date.now() - started };
  } catch (err) {
    return errorResult(loaded.file, s.name, [`${loaded.file}: the scenario could not be run: ${ensureError(err).message}`], { ...base, durationMs: Date.now() - started });
  } finally {
    for (const close of closers.reverse()) await close().catch((err: unknown) => ctx.logger.warn({ err, scenario: s.name }, 'eval teardown step failed'));
  }
}

/** The task's last event (done or failed), or undefined if it has not ended by `deadline`. */
async function ended(js: ReturnType<typeof jetstream>, subj: ReturnType<typeof makeSubjects>, taskId: string, deadline: number): Promise<Extract<TaskEvent, { type: 'done' | 'failed' }> | undefined> {
  try {
    let last: TaskEvent | undefined;
    for await (const e of watchTask(js, subj, taskId, { timeoutMs: Math.max(1, deadline - Date.now()) })) last = e;
    return last?.type === 'done' || last?.type === 'failed' ? last : undefined;
  } catch (err) {
    if (err instanceof WatchTimeoutError) return undefined;
    throw err;
  }
}

function positionOf(loaded: LoadedScenario, path: PropertyKey[]): { line?: number; column?: number } {
  const at = loaded.locate(path);
  return at ? { line: at.line, column: at.column } : {};
}

function notFired(f: EvalFault): string {
  switch (f.type) {
    case 'host_kill':
      return `the task never reached the ${f.effect} effect of step ${f.step}, so the host was not killed`;
    case 'worker_crash':
      return `${f.tool} was never called ${f.call === 1 ? '' : `${f.call} times `}on a worker, so no worker was killed`;
    case 'tool_timeout':
      return `${f.tool} was never called, so it never hung`;
    case 'injection':
      return `no output of ${f.tool} carrying the injected text reached the model`;
    case 'model_overloaded':
      return `turn ${f.turn} was never requested, so no ${f.status} was served`;
  }
}

/** Fills in the records of the faults whose effect is seen in the counters, the tap and the simulator. */
function noteToolFaults(s: EvalScenario, faults: FaultRecord[], fired: ReadonlyMap<number, number>, tap: ModelTap, sim: SimulatorHandle): void {
  const results = toolResultsSeen(tap.requests);
  const requests = sim.stats().requests;
  s.faults.forEach((f, i) => {
    if (f.type === 'tool_timeout') {
      const n = fired.get(i) ?? 0;
      if (n) faults[i] = { type: f.type, fired: true, detail: `${n} call${n === 1 ? '' : 's'} of ${f.tool} hung past the ${f.timeoutMs} ms time limit` };
    } else if (f.type === 'injection') {
      const carried = results.filter((r) => r.tool === f.tool && r.text.includes(f.text));
      if (carried.length) {
        const delimited = carried.every((r) => r.text.startsWith(`<untrusted-data source="tool:${f.tool}">`));
        faults[i] = { type: f.type, fired: true, detail: `the model received the injected text in ${carried.length} result${carried.length === 1 ? '' : 's'} of ${f.tool}, ${delimited ? 'delimited as untrusted data' : 'NOT delimited as untrusted data'}` };
      } else if (fired.get(i)) {
        faults[i] = { type: f.type, fired: false, detail: `the text was injected into ${f.tool}'s output, but no such result reached the model (did the call fail?)` };
      }
    } else if (f.type === 'model_overloaded') {
      const script = f.script ?? (s.model.turns ? TURNS_SCRIPT : String((s.model.scripts?.[0] as { name?: unknown } | undefined)?.name));
      const hits = requests.filter((r) => r.fault === 'error' && r.script === script && r.turn === f.turn).length;
      if (hits) faults[i] = { type: f.type, fired: true, detail: `${hits} request${hits === 1 ? '' : 's'} for turn ${f.turn} were answered ${f.status}` };
    }
  });
}

export type { TraceNode };
