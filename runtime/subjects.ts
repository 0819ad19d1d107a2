/**
 * Every subject, stream and bucket name troupe uses, built and parsed here and nowhere else.
 * The prefix (default `troupe`) is configurable so several deployments can share one NATS.
 */

export interface Subjects {
  readonly prefix: string;
  /** `troupe.tasks.<agent>`: submit a task (stream TROUPE_TASKS, work-queue). */
  task(agent: string): string;
  /** `troupe.tasks.*`: every submission. */
  readonly allTasks: string;
  /** `troupe.tasks.rejected.<agent>`: rejected submissions (stream TROUPE_REJECTED). */
  rejected(agent: string): string;
  /** `troupe.tasks.rejected.>` */
  readonly allRejected: string;
  /** `troupe.task.<taskId>.events`: progress for watchers (stream TROUPE_EVENTS). */
  events(taskId: string): string;
  /** `troupe.task.*.events` */
  readonly allEvents: string;
  /** `troupe.task.<taskId>.inbox`: events for a task from outside (stream TROUPE_INBOX). */
  inbox(taskId: string): string;
  /** `troupe.task.*.inbox` */
  readonly allInbox: string;
  /** `troupe.approvals.<agent>.<taskId>`: requests for a human decision (stream TROUPE_APPROVALS). */
  approval(agent: string, taskId: string): string;
  /** `troupe.approvals.>` */
  readonly allApprovals: string;
  /** `troupe.decisions.<taskId>`: signed decisions of approvers (stream TROUPE_DECISIONS). */
  decision(taskId: string): string;
  /** `troupe.decisions.*` */
  readonly allDecisions: string;
  /** `troupe.control.cancel.<taskId>`: cancel a task and its subtree (stream TROUPE_CONTROL). */
  cancel(taskId: string): string;
  /** `troupe.control.>` */
  readonly allControl: string;
  /** `troupe.host.<hostId>.cancel`: asks the host running a task to cancel it now (core request). */
  hostCancel(hostId: string): string;
  /** `troupe.tools.<tool>`: dispatch to sandboxed workers. */
  tool(name: string): string;
  /** `troupe.audit.<taskId>`: the task's audit records (stream TROUPE_AUDIT). */
  audit(taskId: string): string;
  /** `troupe.audit.*` */
  readonly allAudit: string;
  /** The agent named by a task subject, or undefined if the subject is not one. */
  agentOfTaskSubject(subject: string): string | undefined;
  readonly streams: {
    readonly tasks: string;
    readonly rejected: string;
    readonly events: string;
    readonly approvals: string;
    readonly decisions: string;
    readonly control: string;
    readonly inbox: string;
    readonly audit: string;
  };
  readonly buckets: {
    readonly snapshots: string;
    readonly ledger: string;
    readonly breakers: string;
    readonly baselines: string;
    readonly auditBlobs: string;
    /** Parked tasks by the minute they fall due (see `due-index.ts`). */
    readonly due: string;
  };
  /** Durable consumer shared by all hosts on the task stream. */
  readonly hostsConsumer: string;
  /** Queue group of the workers answering `troupe.tools.<tool>`: each call goes to one of them. */
  readonly workersQueue: string;
  /** Durable consumer shared by all hosts on the decisions stream. */
  readonly decisionsConsumer: string;
  /** Durable consumer shared by all hosts on the control stream. */
  readonly controlConsumer: string;
  /** Durable consumer shared by all hosts on the inbox stream (wake-ups). */
  readonly inboxConsumer: string;
}

/** Builds the naming scheme for one prefix. */
export function subjects(prefix = 'troupe'): Subjects {
  const upper = prefix.toUpperCase().replace(/-/g, '_');
  const taskPrefix = `${prefix}.tasks.`;
  return Object.freeze({
    prefix,
    task: (agent: string) => `${taskPrefix}${agent}`,
    allTasks: `${taskPrefix}*`,
    rejected: (agent: string) => `${taskPrefix}rejected.${agent}`,
    allRejected: `${taskPrefix}rejected.>`,
    events: (taskId: string) => `${prefix}.task.${taskId}.events`,
    allEvents: `${prefix}.task.*.events`,
    inbox: (taskId: string) => `${prefix}.task.${taskId}.inbox`,
    allInbox: `${prefix}.task.*.inbox`,
    approval: (agent: string, taskId: string) => `${prefix}.approvals.${agent}.${taskId}`,
    allApprovals: `${prefix}.approvals.>`,
    decision: (taskId: string) => `${prefix}.decisions.${taskId}`,
    allDecisions: `${prefix}.decisions.*`,
    tool: (name: string) => `${prefix}.tools.${name}`,
    cancel: (taskId: string) => `${prefix}.control.cancel.${taskId}`,
    allControl: `${prefix}.control.>`,
    hostCancel: (hostId: string) => `${prefix}.host.${hostId.replace(/[^A-Za-z0-9_-]/g, '_')}.cancel`,
    audit: (taskId: string) => `${prefix}.audit.${taskId}`,
    allAudit: `${prefix}.audit.*`,
    agentOfTaskSubject(subject: string) {
      if (!subject.startsWith(taskPrefix)) return undefined;
      const rest = subject.slice(taskPrefix.length);
      return rest.length > 0 && !rest.includes('.') ? rest : undefined;
    },
    streams: Object.freeze({
      tasks: `${upper}_TASKS`,
      rejected: `${upper}_REJECTED`,
      events: `${upper}_EVENTS`,
      approvals: `${upper}_APPROVALS`,
      decisions: `${upper}_DECISIONS`,
      control: `${upper}_CONTROL`,
      inbox: `${upper}_INBOX`,
      audit: `${upper}_AUDIT`,
    }),
    buckets: Object.freeze({
      snapshots: `${prefix.replace(/-/g, '_')}_snapshots`,
      ledger: `${prefix.replace(/-/g, '_')}_ledger`,
      breakers: `${prefix.replace(/-/g, '_')}_breakers`,
      baselines: `${prefix.replace(/-/g, '_')}_baselines`,
      auditBlobs: `${prefix.replace(/-/g, '_')}_audit_blobs`,
      due: `${prefix.replace(/-/g, '_')}_due`,
    }),
    hostsConsumer: `${prefix}-hosts`,
    workersQueue: `${prefix}-workers`,
    decisionsConsumer: `${prefix}-hosts-decisions`,
    controlConsumer: `${prefix}-hosts-control`,
    inboxConsumer: `${prefix}-hosts-inbox`,
  });
}

/** Message headers of the wire contract. */
export const Headers = {
  /** Where the host sends its verdict on a submission (a JetStream reply subject carries the PubAck). */
  replyTo: 'Troupe-Reply-To',
  /** Marks an internal hand-over of a running task from a host that is shutting down. */
  resume: 'Troupe-Resume',
  /** The hand-over's token, recorded in the task's envelope before the message is published. */
  resumeToken: 'Troupe-Resume-Token',
  /** JetStream de-duplication id; the taskId for submissions. */
  msgId: 'Nats-Msg-Id',
} as const;
