import type { DelegateInput, DelegateOutput, WaitInput, WaitOutput, ModelEffectInput, ModelTurn, ToolResultBlock, ToolsEffectInput } from '../machines/conversation.ts';
import { childIdOf, runDelegation } from './delegation.ts';
import { runWait } from './inbox.ts';
import type { SnapshotEnvelope } from '../runtime/wire.ts';
import type { Agent } from './agent.ts';
import { LimitReachedSignal } from './errors.ts';
import { ErrorCode } from '../common/errors.ts';
import { runModelEffect } from './model-effect.ts';
import type { TaskRunnerDeps } from './task-runner.ts';
import type { TaskSupervisor } from './task-supervisor.ts';
import { runToolsEffect, type RecordedDecision } from './tool-effect.ts';
import type { PrincipalGrant } from '../sandbox/gates.ts';

type Usage = NonNullable<SnapshotEnvelope['usage']>;

/** What a task lends the bindings of its effects. */
export interface TaskEffectsOptions {
  taskId: string;
  agent: Agent;
  deps: TaskRunnerDeps;
  /** The task's supervisor (replaced when the actor restarts, hence a getter). */
  supervisor: () => TaskSupervisor;
  progress: ProgressStream;
  /** Updates the task's running totals. */
  count: (change: (usage: Usage) => Usage) => void;
  /** Lets the task act on a breach the supervisor just recorded. */
  actOnVerdict: () => void;
  /** Approvers' recorded decisions on this task's tool calls. */
  decision: (callKey: string) => RecordedDecision | undefined;
  /** Who the task acts for, if principals are configured. */
  principal: () => string | undefined;
  /** Records child tasks in the task's envelope. */
  adopt: (children: Record<string, { agent: string; key: string }>) => void;
  /** Fixes (once) and returns the deadline of the wait with this key. */
  timer: (key: string, at: number) => number;
  tainted: () => boolean;
  taint: () => void;
}

/**
 * The task's side of its model and tool effects: each model call is admitted by the
 * supervisor (worst-case reservation, clamped max_tokens) and settled with its actual cost;
 * each round of tool calls is reported as a step for no-progress detection; every call is
 * counted and published as an event.
 */
export class TaskEffects {
  constructor(private readonly o: TaskEffectsOptions) {}

  /** `fresh`: no runner ran this effect before (see {@link EffectSpec.fresh}). */
  model(input: ModelEffectInput, signal: AbortSignal, fresh = false): Promise<ModelTurn> {
    const { deps, agent, taskId } = this.o;
    const client = deps.model(agent);
    const supervisor = this.o.supervisor();
    return runModelEffect(
      input,
      {
        gateway: deps.gateway,
        client,
        system: agent.system,
        tools: agent.tools,
        deadlineAt: supervisor.deadlineAt,
        contextTokens: agent.contextTokens,
        breakers: deps.breakers,
        clock: deps.clock,
        fresh,
        admit: (key, quote) => {
          const granted = supervisor.reserve(key, quote);
          if (granted === undefined) {
            this.o.actOnVerdict();
            throw new LimitReachedSignal(key);
          }
          return quote ? granted : undefined;
        },
        onFailure: (key) => supervisor.release(key),
        onText: (delta) => this.o.progress.add(delta),
        onResult: (call, result, replayed, trim) => {
          this.o.progress.flush();
          const u = result.usage;
          this.o.count((usage) => ({
            ...usage,
            costUsd: usage.costUsd + result.costUsd,
            inputTokens: usage.inputTokens + u.inputTokens + u.cacheCreationInputTokens + u.cacheReadInputTokens,
            outputTokens: usage.outputTokens + u.outputTokens,
            modelCalls: usage.modelCalls + 1,
          }));
          const { stopReason, attempts, latencyMs, costUsd, model, role } = result;
          const trimmed = trim.elidedToolResults || trim.droppedTurns ? { trimmed: { estimatedTokens: trim.estimatedTokens, elidedToolResults: trim.elidedToolResults, droppedTurns: trim.droppedTurns } } : {};
          supervisor.settle(call.key, result);
          const { used, limits } = supervisor.context;
          const budget = { used: { usd: used.usd, tokens: used.tokens, steps: used.steps }, limits };
          deps.events.stepEvent(taskId, { type: 'model', key: call.key, model, role, usage: u, costUsd, latencyMs, stopReason, attempts, replayed, ...trimmed, budget }, `${call.key}:model`);
          this.o.actOnVerdict();
        },
      },
      signal,
    );
  }

  /** Starts child tasks on other agents and joins them (parks the task while they run). */
  delegate(input: DelegateInput): Promise<DelegateOutput> {
    const { deps, taskId } = this.o;
    if (input.handoff) {
      // What a hand-off passes on is stated by the agent and kept: here, and in the new task's metadata.
      deps.events.emit(taskId, { type: 'handoff', to: input.tasks[0]!.agent, childTaskId: childIdOf(input.key, 0), context: input.handoff.context }, `${input.key}:handoff`);
    }
    return runDelegation(input, { ...deps.delegation, taskId, supervisor: this.o.supervisor, actOnVerdict: this.o.actOnVerdict, adopt: this.o.adopt });
  }

  /** The next event on the task's inbox, or a timeout (parks the task until one of them). */
  wait(input: WaitInput): Promise<WaitOutput> {
    const { deps, taskId, agent } = this.o;
    return runWait(input, { taskId, inbox: deps.inbox, gateway: deps.gateway, events: deps.events, schemas: agent.inbox, timer: this.o.timer, now: () => deps.clock.now() });
  }

  async tools(input: ToolsEffectInput, signal: AbortSignal, fresh = false): Promise<ToolResultBlock[]> {
    const { deps, agent, taskId } = this.o;
    const results = await runToolsEffect(
      input,
      {
        gateway: deps.gateway,
        breakers: deps.breakers,
        execution: deps.execution,
        delegate: (d) => this.delegate(d),
        policy: agent.approvals,
        decision: this.o.decision,
        tainted: this.o.tainted,
        taint: this.o.taint,
        taskId,
        principal: principalOf(this.o.principal(), deps.principals),
        tools: agent.tools,
        fresh,
        now: () => deps.clock.now(),
        onResult: (report) => {
          this.o.count((usage) => ({ ...usage, toolCalls: usage.toolCalls + 1 }));
          deps.events.stepEvent(taskId, { type: 'tool', ...report, args: argsPreview(input.calls.find((c) => c.key === report.key)?.input) }, `${report.key}:tool`);
          if (report.error?.code === ErrorCode.invalidToolOutput) {
            deps.events.emit(taskId, { type: 'flag', kind: 'tool_output', message: `${report.tool} "succeeded" with output that breaks its own schema: ${report.error.message}` }, `${report.key}:flag`);
          }
        },
      },
      signal,
    );
    this.o.supervisor().step(input, results);
    this.o.actOnVerdict();
    return results;
  }
}

/**
 * The task's principal with its grant. A task whose principal is no longer configured may call
 * nothing: removing a principal revokes what its running tasks may do.
 */
function principalOf(name: string | undefined, principals: TaskRunnerDeps['principals']): { name: string; grant: PrincipalGrant } | undefined {
  if (name === undefined) return Object.keys(principals).length ? { name: '(none)', grant: { tools: [] } } : undefined;
  return { name, grant: principals[name] ?? { tools: [] } };
}

/** A tool call's arguments for its event: as given, or a truncated string when their JSON passes 2 KB. */
function argsPreview(args: unknown): unknown {
  const json = JSON.stringify(args) ?? 'null';
  return json.length <= 2048 ? args : `${json.slice(0, 2048)}… (${json.length} characters)`;
}

/** Streamed model text, published as `progress` events about five times a second. */
export class ProgressStream {
  private text = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly publish: (text: string) => void,
    private readonly everyMs = 200,
  ) {}

  add(delta: string): void {
    this.text += delta;
    this.timer ??= setTimeout(() => this.flush(), this.everyMs);
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.text) return;
    const text = this.text;
    this.text = '';
    this.publish(text);
  }
}
