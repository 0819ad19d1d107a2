/**
 * What a scenario's run is measured by, read from what the task published (its events and its
 * children's, as `troupe trace` reads them) and from what the model received (the tap).
 */
import { childIdOf } from '../../actors/delegation.ts';
import type { TraceNode } from '../commands/trace.ts';
import type { TaskEvent } from '../../runtime/wire.ts';
import type { ApprovalRecord } from './approver.ts';
import type { TappedRequest } from './model-tap.ts';
import { editDistance } from './scenario.ts';

/** How a scenario's task ended. `timeout`: it had not ended when the scenario's time was up. */
export type Outcome = 'done' | 'failed' | 'rejected' | 'timeout';

/** One tool call of the task tree, as its last event about the call's key says. */
export interface ToolCall {
  taskId: string;
  key: string;
  tool: string;
  status: 'succeeded' | 'failed' | 'rejected' | 'unavailable';
  args: unknown;
  gate?: string | undefined;
  error?: { code: string; message: string } | undefined;
}

/** What happened to one of the scenario's faults. */
export interface FaultRecord {
  type: string;
  fired: boolean;
  detail: string;
}

/** Everything observed about one scenario's run. */
export interface Observation {
  taskId: string;
  outcome: Outcome;
  error: { code: string; message: string } | undefined;
  output: unknown;
  /** The task and the tasks it delegated to, with their events. Undefined if it was never created. */
  tree: TraceNode | undefined;
  requests: readonly TappedRequest[];
  approvals: readonly ApprovalRecord[];
  faults: readonly FaultRecord[];
  /** From the task's submission to its end (or to the scenario's timeout). */
  durationMs: number;
}

/** The figures of one scenario. */
export interface Metrics {
  /** Model calls of the task tree (distinct effect keys: a call replayed after a crash counts once). */
  steps: number;
  /** Tokens of those calls: input, output, cache writes and reads. */
  tokens: number;
  costUsd: number;
  /** HTTP requests the model received (retries after faults and repeated calls included). */
  modelRequests: number;
  /** Approval requests the tasks raised. */
  approvals: number;
  /**
   * Times another host took the running task over (after its host died, or handed it over). A
   * parked task woken by a decision, its children or its inbox is not counted.
   */
  resumed: number;
  /** The root task's tool calls, in order: the trajectory. */
  toolCalls: ToolCall[];
  /** The tool calls of the whole task tree (delegated tasks included), in the order they were first reported. */
  treeToolCalls: ToolCall[];
  /** Share of tool-choice expectations met (required present, in order where asked; forbidden absent); null when none are set. */
  toolAccuracy: number | null;
  /** Similarity of the tool-call sequence to the expected trajectory (1 = identical); null when none is set. */
  trajectoryMatch: number | null;
  /** How long the task took, from its submission to its end. */
  durationMs: number;
}

/** Every node of a task tree, depth first. */
export function nodesOf(tree: TraceNode | undefined): TraceNode[] {
  if (!tree) return [];
  return [tree, ...tree.children.flatMap(nodesOf)];
}

/** A task's tool calls, one per effect key (its last event: a call replayed after a crash is one call), in order of first appearance. */
export function toolCallsOf(node: Pick<TraceNode, 'taskId' | 'events'>): ToolCall[] {
  const last = new Map<string, ToolCall>();
  for (const e of node.events) {
    if (e.type !== 'tool') continue;
    last.set(e.key, { taskId: node.taskId, key: e.key, tool: e.tool, status: e.status, args: e.args ?? last.get(e.key)?.args, gate: e.gate, error: e.error });
  }
  // A Map keeps the order in which keys were first set.
  return [...last.values()];
}

/** Model events once per effect key (the first: a replay repeats the same recorded call). */
function modelCallsOf(events: readonly TaskEvent[]): Array<Extract<TaskEvent, { type: 'model' }>> {
  const seen = new Set<string>();
  const out: Array<Extract<TaskEvent, { type: 'model' }>> = [];
  for (const e of events) {
    if (e.type === 'model' && !seen.has(e.key)) {
      seen.add(e.key);
      out.push(e);
    }
  }
  return out;
}

/**
 * The tool calls of every task of a tree: each task's in the order it made them, with the calls
 * of the tasks a call delegated to right after that call (children are found by the ids
 * delegation derives from the call's key; any other child's calls follow its parent's).
 */
export function treeToolCallsOf(tree: TraceNode | undefined): ToolCall[] {
  const out: ToolCall[] = [];
  const placed = new Set<string>();
  const visit = (node: TraceNode): void => {
    const take = (child: TraceNode) => {
      placed.add(child.taskId);
      visit(child);
    };
    for (const call of toolCallsOf(node)) {
      out.push(call);
      for (let i = 0; ; i++) {
        const child = node.children.find((c) => c.taskId === childIdOf(call.key, i));
        if (!child) break;
        if (!placed.has(child.taskId)) take(child);
      }
    }
    for (const child of node.children) if (!placed.has(child.taskId)) take(child);
  };
  if (tree) visit(tree);
  return out;
}

/** `resumed` events of a task that was running, not parked (a wake-up from parking resumes a task too). */
export function takeovers(events: readonly TaskEvent[]): number {
  let parked = false;
  let n = 0;
  for (const e of events) {
    if (e.type === 'escalated' || e.type === 'waiting') parked = true;
    else if (e.type === 'resumed') {
      if (!parked) n++;
      parked = false;
    }
  }
  return n;
}

/** A tool "ran" when it was executed, whatever its result: refused calls did not run. */
export const ran = (c: ToolCall) => c.status === 'succeeded' || c.status === 'failed';

/**
 * Tool-choice accuracy over a task tree's calls: each required tool counts 1 if called (after
 * the previous one, when `ordered`), each forbidden tool 1 if it never ran; divided by how many
 * there are.
 */
export function toolAccuracy(calls: readonly ToolCall[], expected: { required: string[]; forbidden: string[]; ordered: boolean } | undefined): number | null {
  if (!expected || expected.required.length + expected.forbidden.length === 0) return null;
  let hits = 0;
  let from = 0;
  for (const tool of expected.required) {
    if (expected.ordered) {
      const at = calls.findIndex((c, i) => i >= from && c.tool === tool);
      if (at !== -1) {
        hits++;
        from = at + 1;
      }
    } else if (calls.some((c) => c.tool === tool)) hits++;
  }
  for (const tool of expected.forbidden) if (!calls.some((c) => c.tool === tool && ran(c))) hits++;
  return hits / (expected.required.length + expected.forbidden.length);
}

/** 1 - edit distance / the longer length: 1 for the same sequence, 0 for nothing in common. */
export function trajectoryMatch(actual: readonly string[], expected: readonly string[] | undefined): number | null {
  if (!expected) return null;
  const longest = Math.max(actual.length, expected.length);
  return longest === 0 ? 1 : 1 - editDistance(actual, expected) / longest;
}

/** The metrics of an observation, given what the scenario expects of tool choice and trajectory. */
export function measure(o: Observation, expected: { tools?: { required: string[]; forbidden: string[]; ordered: boolean } | undefined; trajectory?: string[] | undefined }): Metrics {
  const nodes = nodesOf(o.tree);
  const models = nodes.flatMap((n) => modelCallsOf(n.events));
  const approvalIds = new Set<string>();
  for (const n of nodes) for (const e of n.events) if (e.type === 'escalated') approvalIds.add(e.requestId);
  for (const a of o.approvals) approvalIds.add(a.requestId);
  const toolCalls = o.tree ? toolCallsOf(o.tree) : [];
  const treeToolCalls = treeToolCallsOf(o.tree);
  return {
    steps: models.length,
    tokens: models.reduce((sum, m) => sum + m.usage.inputTokens + m.usage.outputTokens + m.usage.cacheCreationInputTokens + m.usage.cacheReadInputTokens, 0),
    costUsd: models.reduce((sum, m) => sum + m.costUsd, 0),
    modelRequests: o.requests.length,
    approvals: approvalIds.size,
    resumed: takeovers(o.tree?.events ?? []),
    toolCalls,
    treeToolCalls,
    toolAccuracy: toolAccuracy(treeToolCalls, expected.tools),
    trajectoryMatch: trajectoryMatch(
      toolCalls.map((c) => c.tool),
      expected.trajectory,
    ),
    durationMs: o.durationMs,
  };
}
