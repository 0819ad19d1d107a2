import { z } from 'zod';
import { MAX_TASK_ID_LENGTH, TASK_ID_PATTERN } from '../common/ids.ts';
import { approvalRequestSchema } from './approvals.ts';

/**
 * Every payload that crosses NATS or is persisted, as a zod schema. Types are inferred here and
 * nowhere else. Persisted records carry a version `v`; old versions stay readable.
 */

export const wireErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
  /** Structured facts about the error, e.g. which limit and the figures for `limit_exceeded`. */
  details: z.record(z.string(), z.unknown()).optional(),
});
export type WireErrorPayload = z.infer<typeof wireErrorSchema>;

export const taskIdSchema = z
  .string()
  .max(MAX_TASK_ID_LENGTH, `taskId must be at most ${MAX_TASK_ID_LENGTH} characters`)
  .regex(TASK_ID_PATTERN, 'taskId may contain only letters, digits, "_" and "-" (no ".", "*", ">" or whitespace)');

/** Per-task limits a submitter may set; each is capped by the agent's own limits. */
export const budgetSchema = z
  .object({
    usd: z.number().positive().optional(),
    tokens: z.number().int().positive().optional(),
    steps: z.number().int().positive().optional(),
    wallClockMs: z.number().int().positive().optional(),
  })
  .strict();
export type Budget = z.infer<typeof budgetSchema>;

/**
 * Deepest nesting of arrays and objects a task message may have (the message itself is level 1).
 * Far beyond any real input, and far below what would overflow the stack of the recursive
 * serialisation every accepted task goes through (snapshots, events, the audit log).
 */
export const MAX_TASK_DEPTH = 64;

/** Characters no id or key may carry: C0 and C1 controls, and Unicode line and paragraph separators. */
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/**
 * The delegating task of a child task: set by troupe when an agent delegates, never by a client.
 * Its taskId is a task id and its key the effect key of the delegation, which starts with that id.
 */
export const parentRefSchema = z
  .object({
    taskId: taskIdSchema,
    key: z
      .string()
      .min(1)
      .max(512, 'parent.key must be at most 512 characters')
      .refine((key) => !CONTROL_CHARACTERS.test(key), 'parent.key must not contain control characters'),
  })
  .strict()
  .refine((parent) => parent.key.startsWith(`${parent.taskId}/`), {
    message: 'parent.key must be an effect key of the parent task ("<parent.taskId>/..."); "parent" is set by troupe when an agent delegates, leave it out',
    path: ['key'],
  });

/** A task submission on `troupe.tasks.<agent>`. */
export const taskMessageSchema = z
  .object({
    taskId: z.string().optional(),
    // Optional here so that a missing input is reported as such (invalid_input), not as a bad shape.
    input: z.unknown().optional(),
    budget: budgetSchema.optional(),
    /** Who the task acts for: what its tool calls may do is that principal's (config `principals`). */
    principal: z.string().max(128).optional(),
    /** The task that delegated this one, and the effect key of the delegation (set by troupe). */
    parent: parentRefSchema.optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();
export type TaskMessage = z.infer<typeof taskMessageSchema>;

/** The host's answer to a submission, on the `Troupe-Reply-To` subject. */
export const taskVerdictSchema = z.union([
  z.object({ taskId: z.string(), status: z.literal('accepted'), duplicate: z.boolean().optional() }),
  z.object({ taskId: z.string().optional(), error: wireErrorSchema }),
]);
export type TaskVerdict = z.infer<typeof taskVerdictSchema>;

/** A rejected submission, kept on `troupe.tasks.rejected.<agent>`. */
export const rejectionSchema = z.object({
  taskId: z.string().optional(),
  agent: z.string(),
  error: wireErrorSchema,
  at: z.number(),
  /** The first bytes of the offending payload, for diagnosis. */
  payloadPreview: z.string().optional(),
});
export type Rejection = z.infer<typeof rejectionSchema>;

const usageSchema = z.object({
  inputTokens: z.number(),
  outputTokens: z.number(),
  cacheCreationInputTokens: z.number(),
  cacheReadInputTokens: z.number(),
});

const eventBase = { taskId: z.string(), at: z.number() };

/** A task's budget at a point in time: what it has used, and its limits (`null`: none). */
const budgetUseSchema = z.object({
  used: z.object({ usd: z.number(), tokens: z.number(), steps: z.number() }),
  limits: z.object({ usd: z.number().nullable(), tokens: z.number().nullable(), steps: z.number(), wallClock: z.number(), noProgress: z.number() }),
});

/** Everything a watcher sees on `troupe.task.<taskId>.events`, discriminated on `type`. */
export const taskEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('accepted'), ...eventBase, agent: z.string() }),
  z.object({ type: z.literal('resumed'), ...eventBase, host: z.string(), revision: z.number() }),
  z.object({ type: z.literal('state'), ...eventBase, state: z.string(), step: z.number().optional() }),
  z.object({ type: z.literal('progress'), ...eventBase, text: z.string() }),
  z.object({
    type: z.literal('model'),
    ...eventBase,
    key: z.string(),
    model: z.string(),
    role: z.string(),
    usage: usageSchema,
    costUsd: z.number(),
    latencyMs: z.number(),
    stopReason: z.string().nullable(),
    attempts: z.number(),
    replayed: z.boolean(),
    /** Present when older context was trimmed to fit the agent's context budget. */
    trimmed: z.object({ estimatedTokens: z.number(), elidedToolResults: z.number(), droppedTurns: z.number() }).optional(),
    /** The task's budget once this call is counted: what it has used, and its limits. Absent from events written by older hosts, which sent it as a `budget` event of its own. */
    budget: budgetUseSchema.optional(),
  }),
  z.object({
    type: z.literal('tool'),
    ...eventBase,
    key: z.string(),
    tool: z.string(),
    status: z.enum(['succeeded', 'failed', 'rejected', 'unavailable']),
    /** The arguments the model gave (a preview of at most 2 KB of JSON). */
    args: z.unknown().optional(),
    /** Which gate refused the call, when one did. */
    gate: z.enum(['schema', 'semantic', 'authorization']).optional(),
    error: wireErrorSchema.optional(),
    latencyMs: z.number(),
    replayed: z.boolean(),
  }),
  z.object({ type: z.literal('limit'), ...eventBase, limit: z.string(), used: z.number(), max: z.number(), message: z.string(), action: z.enum(['stop', 'escalate']) }),
  z.object({ type: z.literal('waiting'), ...eventBase, children: z.array(z.string()).optional(), join: z.union([z.literal('all'), z.literal('first'), z.number()]).optional(), inbox: z.object({ after: z.number(), until: z.number().nullable() }).optional() }),
  z.object({ type: z.literal('handoff'), ...eventBase, to: z.string(), childTaskId: z.string(), context: z.string() }),
  z.object({ type: z.literal('inbox'), ...eventBase, seq: z.number(), eventType: z.string(), accepted: z.boolean(), error: wireErrorSchema.optional() }),
  z.object({ type: z.literal('escalated'), ...eventBase, requestId: z.string(), reason: z.string(), tier: z.number().optional() }),
  z.object({ type: z.literal('decision'), ...eventBase, decisionId: z.string(), requestId: z.string(), verdict: z.enum(['approve', 'reject', 'edit']), approver: z.string(), approverName: z.string(), /** Approvals still needed for a quorum; absent once the decision took effect. */ awaiting: z.number().optional(), /** How long the request waited for this decision. */ waitedMs: z.number().optional() }),
  z.object({ type: z.literal('decision_refused'), ...eventBase, decisionId: z.string().optional(), requestId: z.string().optional(), error: wireErrorSchema }),
  z.object({
    type: z.literal('flag'),
    ...eventBase,
    /** What looks wrong although nothing crashed. */
    kind: z.enum(['output_schema', 'tool_output', 'cost_anomaly', 'steps_anomaly', 'judge']),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
  z.object({ type: z.literal('done'), ...eventBase, output: z.unknown() }),
  z.object({ type: z.literal('failed'), ...eventBase, error: wireErrorSchema }),
]);
export type TaskEvent = z.infer<typeof taskEventSchema>;
export type TaskEventType = TaskEvent['type'];
/** An event before the publisher stamps `taskId` and `at`. */
export type TaskEventBody = TaskEvent extends infer E ? (E extends TaskEvent ? Omit<E, 'taskId' | 'at'> : never) : never;

/** `parked`: waiting for an approver's decision; no host holds it and it costs no memory. */
export const taskStatusSchema = z.enum(['running', 'parked', 'done', 'failed']);
export type TaskStatus = z.infer<typeof taskStatusSchema>;

/** How a task ended: its output, or a typed error. */
export const taskOutcomeSchema = z.union([
  z.object({ status: z.literal('done'), output: z.unknown() }),
  z.object({ status: z.literal('failed'), error: wireErrorSchema }),
]);
export type TaskOutcome = z.infer<typeof taskOutcomeSchema>;

/**
 * The record stored under a taskId in the snapshot bucket (version 1). `snapshot` is the XState
 * persisted snapshot; everything else is what hosts and `troupe status` need without the machine.
 */
export const snapshotEnvelopeV1Schema = z.object({
  v: z.literal(1),
  taskId: z.string(),
  agent: z.string(),
  machineVersion: z.string(),
  status: taskStatusSchema,
  /** Stream sequence of the task message that currently owns the task; null once it ended. */
  runSeq: z.number().nullable(),
  /** Delivery count of that message when its holder claimed the task. */
  runDelivery: z.number(),
  /**
   * A hand-over in progress: the hand-over message carrying this token may claim the task
   * (as may the run message itself, until the hand-over message does).
   */
  handover: z.object({ token: z.string() }).optional(),
  /** Host that last wrote the record. */
  owner: z.string().nullable(),
  createdAt: z.number(),
  updatedAt: z.number(),
  /** Absolute wall-clock deadline (epoch ms); survives restarts. */
  deadlineAt: z.number().nullable(),
  /** Current state value, dotted (`acting`, `review.waiting`). */
  state: z.string(),
  step: z.number(),
  snapshot: z.unknown(),
  /** Approvers' decisions on tool calls, by call key: what the call may (or may not) run with. */
  approvals: z
    .record(
      z.string(),
      z.object({
        verdict: z.enum(['approve', 'reject', 'edit']),
        args: z.unknown().optional(),
        reason: z.string().optional(),
        approver: z.string(),
        at: z.number(),
        /** The decision settles an unknown outcome: attempt N's runner vanished; approve runs it again, reject does not. */
        unknownOutcome: z.object({ attempt: z.number() }).optional(),
      }),
    )
    .optional(),
  /** Who the task acts for (authorization gate of its tool calls). */
  principal: z.string().optional(),
  /** The task that delegated this one, and the effect key of that delegation. */
  parent: z.object({ taskId: z.string(), key: z.string() }).optional(),
  /** Tasks this one delegated to, by taskId. */
  children: z.record(z.string(), z.object({ agent: z.string(), key: z.string() })).optional(),
  /** What a parked task waits for besides an approver: child tasks of a delegation, or an inbox event (or its timer). */
  waiting: z
    .discriminatedUnion('reason', [
      z.object({ reason: z.literal('children'), key: z.string(), children: z.array(z.string()), join: z.union([z.literal('all'), z.literal('first'), z.number()]), since: z.number() }),
      z.object({ reason: z.literal('inbox'), key: z.string(), after: z.number(), wakeAt: z.number().nullable(), since: z.number() }),
    ])
    .optional(),
  /** Deadlines of the task's waits, by effect key (epoch ms): fixed when first set, so restarts keep them. */
  timers: z.record(z.string(), z.number()).optional(),
  /** A cancellation that could not reach the host running the task: whoever resumes it cancels it. */
  cancel: z.object({ reason: z.string(), at: z.number() }).optional(),
  /** Untrusted content (output of a tool marked `untrusted`) has entered the conversation. */
  tainted: z.boolean().optional(),
  /** The approval request a parked task waits on. */
  pending: approvalRequestSchema.optional(),
  /** Approvals of `pending` so far, when it needs a quorum of distinct approvers. */
  votes: z.array(z.object({ approver: z.string(), name: z.string(), at: z.number() })).optional(),
  /** The task's supervisor (budget, limits), persisted with the agent in the same write. */
  supervisor: z.unknown().optional(),
  outcome: taskOutcomeSchema.optional(),
  /** Running totals shown by `troupe status`. */
  usage: z
    .object({ costUsd: z.number(), inputTokens: z.number(), outputTokens: z.number(), modelCalls: z.number(), toolCalls: z.number() })
    .optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});
export type SnapshotEnvelope = z.infer<typeof snapshotEnvelopeV1Schema>;

/** Reads any known envelope version into the current shape. */
export const snapshotEnvelopeSchema = snapshotEnvelopeV1Schema;

/** One record in the effect ledger, keyed by the effect's idempotency key. */
export const ledgerRecordSchema = z.discriminatedUnion('state', [
  z.object({
    v: z.literal(1),
    state: z.literal('started'),
    kind: z.enum(['model', 'tool', 'wait']),
    name: z.string(),
    owner: z.string(),
    leaseUntil: z.number(),
    attempt: z.number(),
    at: z.number(),
  }),
  z.object({
    v: z.literal(1),
    state: z.literal('succeeded'),
    kind: z.enum(['model', 'tool', 'wait']),
    name: z.string(),
    result: z.unknown(),
    attempt: z.number(),
    at: z.number(),
  }),
  z.object({
    v: z.literal(1),
    state: z.literal('failed'),
    kind: z.enum(['model', 'tool', 'wait']),
    name: z.string(),
    error: wireErrorSchema,
    retryable: z.boolean(),
    attempt: z.number(),
    at: z.number(),
  }),
]);
export type LedgerRecord = z.infer<typeof ledgerRecordSchema>;

/** A tool call dispatched to a worker on `troupe.tools.<tool>` (NATS request, queue group). */
export const toolDispatchSchema = z.object({
  v: z.literal(1),
  /** The call's idempotency key: the worker's ledger entry, and what the tool forwards downstream. */
  key: z.string().min(1),
  taskId: z.string(),
  tool: z.string(),
  /** Arguments that passed the host's gates; the worker parses them again. */
  args: z.unknown(),
  /** A person said attempt N, whose runner vanished, did not happen: it may run again. */
  rerunAttempt: z.number().optional(),
});
export type ToolDispatch = z.infer<typeof toolDispatchSchema>;

/** A worker's answer to a {@link ToolDispatch}. */
export const toolReplySchema = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), result: z.unknown(), replayed: z.boolean(), worker: z.string() }),
  z.object({
    ok: z.literal(false),
    error: wireErrorSchema,
    retryable: z.boolean(),
    /** Set for `unknown_outcome`: the attempt whose runner vanished. */
    attempt: z.number().optional(),
    worker: z.string(),
  }),
]);
export type ToolReply = z.infer<typeof toolReplySchema>;

/** A request to cancel a task and its subtree, on `troupe.control.cancel.<taskId>`. */
export const cancelMessageSchema = z.object({
  v: z.literal(1),
  taskId: z.string(),
  reason: z.string().max(2000),
  /** The task's agent, when the sender knows it: a task cancelled before it exists is then created cancelled. */
  agent: z.string().optional(),
  at: z.number(),
});
export type CancelMessage = z.infer<typeof cancelMessageSchema>;

/**
 * An event for a task from the outside world, on `troupe.task.<taskId>.inbox` (stream
 * TROUPE_INBOX). Any NATS client may publish one; set `Nats-Msg-Id` to have a repeat dropped.
 */
export const inboxMessageSchema = z
  .object({
    /** What happened (`reply`, `payment_received`, ...); a wait may ask for some types only. */
    type: z.string().min(1).max(64),
    data: z.unknown().optional(),
  })
  .strict();
export type InboxMessage = z.infer<typeof inboxMessageSchema>;

/** An agent's running averages of what a finished task costs (KV `<prefix>_baselines`, by agent). */
export const baselineSchema = z.object({ v: z.literal(1), tasks: z.number(), meanUsd: z.number(), meanSteps: z.number(), updatedAt: z.number() });
export type Baseline = z.infer<typeof baselineSchema>;

/** A payload in an audit record: inline when small, else stored once by its content hash. */
export const auditPayloadSchema = z.union([z.object({ inline: z.unknown() }), z.object({ ref: z.string(), bytes: z.number() })]);
export type AuditPayload = z.infer<typeof auditPayloadSchema>;

const auditBase = { v: z.literal(1), taskId: z.string(), at: z.number(), source: z.string() };

/**
 * One fact of the audit trail, on `troupe.audit.<taskId>` (stream TROUPE_AUDIT): enough to
 * reconstruct what a task did and why, and to replay it. Written by the effect gateway (effects
 * and their payloads, on hosts and workers), and from what hosts publish about gates, approvals,
 * decisions, limits, flags and ends. Secrets are redacted before anything is written.
 */
export const auditRecordSchema = z.discriminatedUnion('type', [
  z.object({ ...auditBase, type: z.literal('task.created'), agent: z.string(), input: auditPayloadSchema, principal: z.string().optional(), parent: z.object({ taskId: z.string(), key: z.string() }).optional() }),
  z.object({ ...auditBase, type: z.literal('effect.started'), key: z.string(), kind: z.string(), name: z.string(), attempt: z.number() }),
  z.object({ ...auditBase, type: z.literal('effect.succeeded'), key: z.string(), kind: z.string(), name: z.string(), attempt: z.number(), result: auditPayloadSchema }),
  z.object({ ...auditBase, type: z.literal('effect.failed'), key: z.string(), kind: z.string(), name: z.string(), attempt: z.number(), error: wireErrorSchema, retryable: z.boolean() }),
  z.object({ ...auditBase, type: z.literal('gate.refused'), key: z.string(), tool: z.string(), gate: z.string(), error: wireErrorSchema }),
  z.object({ ...auditBase, type: z.literal('approval.requested'), requestId: z.string(), reason: z.string(), tier: z.number().optional() }),
  z.object({ ...auditBase, type: z.literal('decision.applied'), requestId: z.string(), verdict: z.string(), approver: z.string(), approverName: z.string(), waitedMs: z.number().optional() }),
  z.object({ ...auditBase, type: z.literal('decision.refused'), requestId: z.string().optional(), error: wireErrorSchema }),
  z.object({ ...auditBase, type: z.literal('limit.reached'), limit: z.string(), used: z.number(), max: z.number(), action: z.string() }),
  z.object({ ...auditBase, type: z.literal('flag'), kind: z.string(), message: z.string() }),
  z.object({ ...auditBase, type: z.literal('task.ended'), status: z.enum(['done', 'failed']), error: wireErrorSchema.optional() }),
]);
export type AuditRecord = z.infer<typeof auditRecordSchema>;
export type AuditRecordBody = AuditRecord extends infer R ? (R extends AuditRecord ? Omit<R, 'v' | 'taskId' | 'at' | 'source'> : never) : never;
