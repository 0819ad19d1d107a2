import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import type { z } from 'zod';
import { ErrorCode } from '../common/errors.ts';
import type { TaskId } from '../common/ids.ts';
import { formatIssues } from '../config/load.ts';
import { Headers, type Subjects } from './subjects.ts';
import { taskIdSchema, taskMessageSchema, type Budget, type WireErrorPayload } from './wire.ts';

/** What intake needs to know about an agent to accept a task for it. */
export interface IntakeAgent {
  name: string;
  input: z.ZodType;
}

/** The principals tasks may act for (config `principals`); none known: tasks need none. */
export interface IntakePrincipals {
  known: ReadonlySet<string>;
  /** Used when a task names none. */
  fallback: string | undefined;
}

/** A submission that passed every check. */
export interface Submission {
  kind: 'submission';
  taskId: TaskId;
  agent: string;
  input: unknown;
  budget: Budget | undefined;
  /** Who the task acts for; undefined when no principals are configured. */
  principal: string | undefined;
  /** The task that delegated this one. */
  parent: { taskId: string; key: string } | undefined;
  metadata: Record<string, unknown> | undefined;
  /** Whether the taskId was assigned by troupe (and must be reported back). */
  assignedId: boolean;
  replyTo: string | undefined;
}

/** An internal hand-over of a running task from a host that shut down. */
export interface Resumption {
  kind: 'resumption';
  taskId: TaskId;
  agent: string;
  /** Must match the token the handing host recorded in the task's envelope. */
  token: string;
}

/** A submission refused, with what to fix. */
export interface Refusal {
  kind: 'refusal';
  agent: string;
  taskId: string | undefined;
  error: WireErrorPayload;
  replyTo: string | undefined;
  payloadPreview: string;
}

export type IntakeResult = Submission | Resumption | Refusal;

const decoder = new TextDecoder();

/**
 * Checks one task message against the wire contract: size, JSON, shape, taskId, agent, and the
 * agent's input schema. Never throws: every problem becomes a {@link Refusal} whose message says
 * what was wrong and what to do.
 */
export function readTaskMessage(
  msg: JsMsg,
  subjects: Subjects,
  agents: (name: string) => IntakeAgent | undefined,
  maxTaskBytes: number,
  principals: IntakePrincipals = { known: new Set(), fallback: undefined },
): IntakeResult {
  const agentName = subjects.agentOfTaskSubject(msg.subject) ?? '_';
  const replyTo = msg.headers?.get(Headers.replyTo) || undefined;
  const preview = () => decoder.decode(msg.data.subarray(0, 200));
  const refuse = (code: string, message: string, taskId?: string): Refusal => ({
    kind: 'refusal',
    agent: agentName,
    taskId,
    error: { code, message },
    replyTo,
    payloadPreview: preview(),
  });

  const resumeOf = msg.headers?.get(Headers.resume);
  if (resumeOf) {
    const id = taskIdSchema.safeParse(resumeOf);
    if (!id.success) return refuse(ErrorCode.invalidTaskId, `hand-over names an invalid taskId`);
    return { kind: 'resumption', taskId: id.data as TaskId, agent: agentName, token: msg.headers?.get(Headers.resumeToken) ?? '' };
  }

  if (msg.data.length > maxTaskBytes) {
    return refuse(ErrorCode.payloadTooLarge, `task message is ${msg.data.length} bytes; the limit is ${maxTaskBytes} (host.maxTaskBytes). Send large inputs by reference (a URL or object-store key).`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(msg.data));
  } catch (err) {
    return refuse(ErrorCode.invalidJson, `task message is not valid JSON (${(err as Error).message}). Send {"taskId"?: string, "input": ...}.`);
  }
  // Echo the sender's taskId only if it is safe to build subjects from.
  const claimedId = typeof raw === 'object' && raw !== null ? taskIdSchema.safeParse((raw as { taskId?: unknown }).taskId) : undefined;
  const rawTaskId = claimedId?.success ? claimedId.data : undefined;
  const parsed = taskMessageSchema.safeParse(raw);
  if (!parsed.success) {
    return refuse(ErrorCode.invalidTask, `task message does not match {"taskId"?: string, "input": ..., "budget"?: {...}, "principal"?: string, "metadata"?: {...}}:\n${formatIssues(parsed.error)}`, rawTaskId);
  }
  const task = parsed.data;
  let taskId: string;
  let assignedId = false;
  if (task.taskId === undefined) {
    // Derived from the stored message, so a redelivery of the same message names the same task.
    taskId = `t-${msg.info.timestampNanos.toString(36)}-${msg.seq.toString(36)}`;
    assignedId = true;
  } else {
    const id = taskIdSchema.safeParse(task.taskId);
    if (!id.success) return refuse(ErrorCode.invalidTaskId, `taskId ${JSON.stringify(task.taskId.slice(0, 140))} is not allowed: ${id.error.issues[0]?.message}`, undefined);
    taskId = id.data;
  }
  const agent = subjects.agentOfTaskSubject(msg.subject) ? agents(agentName) : undefined;
  if (!agent) {
    return refuse(ErrorCode.unknownAgent, `no agent named "${agentName}" runs on this deployment. Run \`troupe agents\` to list agents, and publish to ${subjects.task('<agent>')}.`, taskId);
  }
  if (task.input === undefined) {
    return refuse(ErrorCode.invalidInput, `task has no "input"; agent "${agentName}" expects one (see \`troupe agents\`).`, taskId);
  }
  const input = agent.input.safeParse(task.input);
  if (!input.success) {
    return refuse(ErrorCode.invalidInput, `input does not match agent "${agentName}"'s input schema:\n${formatIssues(input.error)}`, taskId);
  }
  let principal: string | undefined;
  if (principals.known.size > 0) {
    principal = task.principal ?? principals.fallback;
    const known = [...principals.known].join(', ');
    if (principal === undefined) return refuse(ErrorCode.unknownPrincipal, `this deployment needs to know who a task acts for: set "principal" in the task message (one of: ${known}).`, taskId);
    if (!principals.known.has(principal)) return refuse(ErrorCode.unknownPrincipal, `principal ${JSON.stringify(principal.slice(0, 128))} is not configured (config "principals": ${known}).`, taskId);
  } else if (task.principal !== undefined) {
    return refuse(ErrorCode.unknownPrincipal, `this deployment has no principals configured, so "principal" cannot be honoured; remove it, or configure "principals".`, taskId);
  }
  return {
    kind: 'submission',
    taskId: taskId as TaskId,
    agent: agentName,
    input: input.data,
    budget: task.budget,
    principal,
    parent: task.parent,
    metadata: task.metadata,
    assignedId,
    replyTo,
  };
}

const encoder = new TextEncoder();

/**
 * Publishes the message that lets a host claim a running task: the counterpart of the
 * {@link Resumption} that {@link readTaskMessage} reads. Only a message whose `token` the
 * task's envelope records may claim the task; `msgId` makes a re-publication a no-op.
 */
export async function publishResumption(js: JetStreamClient, subjects: Subjects, r: { agent: string; taskId: string; token: string; msgId: string }): Promise<void> {
  const h = headers();
  h.set(Headers.resume, r.taskId);
  h.set(Headers.resumeToken, r.token);
  await js.publish(subjects.task(r.agent), encoder.encode(JSON.stringify({ taskId: r.taskId })), { headers: h, msgID: r.msgId });
}
