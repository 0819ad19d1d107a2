import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import type { z } from 'zod';
import { ErrorCode } from '../common/errors.ts';
import type { TaskId } from '../common/ids.ts';
import { Headers, type Subjects } from './subjects.ts';
import { MAX_TASK_DEPTH, taskIdSchema, taskMessageSchema, type Budget, type WireErrorPayload } from './wire.ts';

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
/** Refuses bytes that are not UTF-8 rather than silently replacing them with U+FFFD. */
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/** Issues listed in a refusal; the rest are counted, so a refusal stays small whatever was sent. */
const MAX_LISTED_ISSUES = 12;
/** Longest line of a listed issue (a key or a message may echo what was sent). */
const MAX_ISSUE_CHARS = 240;

/**
 * The issues of a failed parse, one per line, at most {@link MAX_LISTED_ISSUES} of them and each
 * cut at {@link MAX_ISSUE_CHARS}: a message with thousands of bad fields gets a refusal that still
 * fits in a NATS message, instead of one too large to send.
 */
export function describeIssues(error: z.ZodError): string {
  const lines = error.issues.slice(0, MAX_LISTED_ISSUES).map((issue) => {
    const line = `  - ${issue.path.length ? issue.path.map(String).join('.') : '(root)'}: ${issue.message}`;
    return line.length > MAX_ISSUE_CHARS ? `${line.slice(0, MAX_ISSUE_CHARS)}…` : line;
  });
  const more = error.issues.length - lines.length;
  return more > 0 ? `${lines.join('\n')}\n  - … and ${more} more` : lines.join('\n');
}

/**
 * The first top-level field (or `(root)`) whose arrays and objects nest deeper than `limit`, the
 * message itself being level 1; `undefined` when none does. Iterative, so it cannot itself overflow.
 */
export function tooDeep(value: unknown, limit: number): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const stack: Array<{ node: object; depth: number; field: string }> = [{ node: value, depth: 1, field: '(root)' }];
  while (stack.length > 0) {
    const { node, depth, field } = stack.pop()!;
    if (depth > limit) return field;
    const topLevel = depth === 1 && !Array.isArray(node);
    for (const [key, child] of Object.entries(node)) {
      if (typeof child === 'object' && child !== null) stack.push({ node: child, depth: depth + 1, field: topLevel ? key : field });
    }
  }
  return undefined;
}

/** A subject token a rejection record may be filed under: printable ASCII, no wildcard; else `_`. */
function recordToken(agent: string): string {
  return /^[\x21-\x7e]{1,128}$/.test(agent) && !/[*>.]/.test(agent) ? agent : '_';
}

/**
 * Checks one task message against the wire contract: size, UTF-8, JSON, nesting depth, shape,
 * taskId, agent, and the agent's input schema. Never throws: every problem becomes a
 * {@link Refusal} whose message says what was wrong and what to do, and whose `agent` is a token
 * the rejection can be filed under (`_` for a subject token that is no agent name at all: a
 * wildcard, a control character, non-ASCII).
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
  const refuse = (code: string, message: string, taskId?: string): Refusal => ({
    kind: 'refusal',
    agent: recordToken(agentName),
    taskId,
    error: { code, message },
    replyTo,
    payloadPreview: decoder.decode(msg.data.subarray(0, 200)),
  });
  try {
    return readChecked(msg, { agentName, replyTo, refuse, agents, maxTaskBytes, principals, subjects });
  } catch (err) {
    // A check that throws must not leave the message to be redelivered, and fail again, forever.
    return refuse(ErrorCode.invalidTask, `task message could not be checked (${thrownText(err)}); it is dropped. Send {"taskId"?: string, "input": ...}.`);
  }
}

/** The message of something thrown, short enough to quote in a refusal. */
function thrownText(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

interface CheckContext {
  agentName: string;
  replyTo: string | undefined;
  refuse: (code: string, message: string, taskId?: string) => Refusal;
  agents: (name: string) => IntakeAgent | undefined;
  maxTaskBytes: number;
  principals: IntakePrincipals;
  subjects: Subjects;
}

function readChecked(msg: JsMsg, { agentName, replyTo, refuse, agents, maxTaskBytes, principals, subjects }: CheckContext): IntakeResult {
  const resumeOf = msg.headers?.get(Headers.resume);
  if (resumeOf) {
    // Hosts hand tasks over without a reply subject; a client setting the header is refused, not silently dropped.
    if (replyTo !== undefined) return refuse(ErrorCode.invalidTask, `the ${Headers.resume} header is internal to hand-overs between hosts; remove it (and ${Headers.resumeToken}) to submit a task.`);
    // A host always sends its token; a hand-over without one is not from a host.
    const token = msg.headers?.get(Headers.resumeToken);
    if (!token) return refuse(ErrorCode.invalidTask, `a hand-over without a ${Headers.resumeToken} header is not from a host; the ${Headers.resume} header is internal to hand-overs between hosts: remove it to submit a task.`);
    const id = taskIdSchema.safeParse(resumeOf);
    if (!id.success) return refuse(ErrorCode.invalidTaskId, `hand-over names an invalid taskId`);
    return { kind: 'resumption', taskId: id.data as TaskId, agent: agentName, token };
  }

  if (msg.data.length > maxTaskBytes) {
    return refuse(ErrorCode.payloadTooLarge, `task message is ${msg.data.length} bytes; the limit is ${maxTaskBytes} (host.maxTaskBytes). Send large inputs by reference (a URL or object-store key).`);
  }
  let text: string;
  try {
    text = strictDecoder.decode(msg.data);
  } catch {
    return refuse(ErrorCode.invalidJson, `task message is not UTF-8 text (it has bytes that are not valid UTF-8). Send {"taskId"?: string, "input": ...} as UTF-8 JSON.`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return refuse(ErrorCode.invalidJson, `task message is not valid JSON (${(err as Error).message}). Send {"taskId"?: string, "input": ...}.`);
  }
  // Echo the sender's taskId only if it is safe to build subjects from.
  const claimedId = typeof raw === 'object' && raw !== null ? taskIdSchema.safeParse((raw as { taskId?: unknown }).taskId) : undefined;
  const rawTaskId = claimedId?.success ? claimedId.data : undefined;
  const deep = tooDeep(raw, MAX_TASK_DEPTH);
  if (deep !== undefined) {
    const where = deep === '(root)' ? 'task message' : `field ${JSON.stringify(deep.slice(0, 64))}`;
    return refuse(
      deep === 'input' ? ErrorCode.invalidInput : ErrorCode.invalidTask,
      `${where} nests arrays and objects more than ${MAX_TASK_DEPTH} levels deep (the limit of a task message); flatten it, or send it by reference.`,
      rawTaskId,
    );
  }
  const parsed = taskMessageSchema.safeParse(raw);
  if (!parsed.success) {
    return refuse(ErrorCode.invalidTask, `task message does not match {"taskId"?: string, "input": ..., "budget"?: {...}, "principal"?: string, "metadata"?: {...}}:\n${describeIssues(parsed.error)}`, rawTaskId);
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
    return refuse(ErrorCode.unknownAgent, `no agent named ${JSON.stringify(agentName.slice(0, 128))} runs on this deployment. Run \`troupe agents\` to list agents, and publish to ${subjects.task('<agent>')}.`, taskId);
  }
  if (task.input === undefined) {
    return refuse(ErrorCode.invalidInput, `task has no "input"; agent "${agentName}" expects one (see \`troupe agents\`).`, taskId);
  }
  let input: ReturnType<z.ZodType['safeParse']>;
  try {
    input = agent.input.safeParse(task.input);
  } catch (err) {
    return refuse(ErrorCode.invalidInput, `agent "${agentName}"'s input schema could not check this input (${thrownText(err)}); send an input that matches it (see \`troupe agents\`).`, taskId);
  }
  if (!input.success) {
    return refuse(ErrorCode.invalidInput, `input does not match agent "${agentName}"'s input schema:\n${describeIssues(input.error)}`, taskId);
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
