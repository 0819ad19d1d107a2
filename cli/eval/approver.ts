/**
 * The approver of a scenario: a real approver client with its own key (trusted by the
 * scenario's hosts), answering each request as the scenario's `approvals` say, with decisions
 * signed and checked like anybody's.
 */
import type { ApproverClient, Verdict } from '../../human/approver-client.ts';
import type { ApprovalRequest } from '../../runtime/approvals.ts';
import type { ApprovalRule, EvalScenario } from './scenario.ts';

/** What the approver did about one request. */
export interface ApprovalRecord {
  requestId: string;
  kind: 'tool' | 'limit';
  /** The tool of a tool request. */
  tool: string | undefined;
  reasons: string[];
  answer: 'approve' | 'reject' | 'edit' | 'ignore';
  /** Index of the rule that chose the answer; undefined: the default. */
  rule: number | undefined;
  /** Whether a host applied the decision (always false for `ignore`). */
  applied: boolean;
  /** Why the runtime refused the decision, if it did. */
  error: string | undefined;
}

/** The rule (and its index) that answers a request, if any does. */
export function ruleFor(rules: readonly ApprovalRule[], request: ApprovalRequest): { rule: ApprovalRule; index: number } | undefined {
  const index = rules.findIndex(
    (r) =>
      (r.kind === undefined || r.kind === request.kind) &&
      (r.tool === undefined || (request.kind === 'tool' && request.tool.name === r.tool)) &&
      (r.reason === undefined || (request.kind === 'tool' && request.reasons.includes(r.reason))),
  );
  return index === -1 ? undefined : { rule: rules[index]!, index };
}

/** Polls for requests and answers each once, until stopped. */
export class ScenarioApprover {
  readonly records: ApprovalRecord[] = [];
  private readonly handled = new Set<string>();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private failure: Error | undefined;

  constructor(
    private readonly client: ApproverClient,
    private readonly policy: EvalScenario['approvals'],
    private readonly pollMs = 100,
  ) {}

  start(): void {
    this.loop ??= (async () => {
      while (!this.stopped) {
        try {
          for (const request of await this.client.pending()) {
            if (this.stopped) break;
            if (!this.handled.has(request.requestId)) await this.answer(request);
          }
        } catch (err) {
          // A scenario's buckets may be torn down under a last poll; anything else is reported.
          if (!this.stopped) this.failure = err as Error;
        }
        await new Promise((r) => setTimeout(r, this.pollMs));
      }
    })();
  }

  /** Stops polling; resolves after the decision in progress (if any) is out. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** An error that stopped the approver from reading requests, if one did. */
  get error(): Error | undefined {
    return this.failure;
  }

  private async answer(request: ApprovalRequest): Promise<void> {
    this.handled.add(request.requestId);
    const match = ruleFor(this.policy.rules, request);
    const answer = match?.rule.answer ?? this.policy.default;
    const record: ApprovalRecord = {
      requestId: request.requestId,
      kind: request.kind,
      tool: request.kind === 'tool' ? request.tool.name : undefined,
      reasons: request.kind === 'tool' ? [...request.reasons] : [`limit ${request.limit.name}`],
      answer,
      rule: match?.index,
      applied: false,
      error: undefined,
    };
    this.records.push(record);
    if (answer === 'ignore') return;
    const note = match?.rule.note;
    let verdict: Verdict;
    if (answer === 'approve') verdict = { verdict: 'approve', ...(match?.rule.grant !== undefined ? { grant: match.rule.grant } : {}), ...(note ? { reason: note } : {}) };
    else if (answer === 'edit') verdict = { verdict: 'edit', args: match!.rule.args, ...(note ? { reason: note } : {}) };
    else verdict = { verdict: 'reject', reason: note ?? (match ? 'rejected by the scenario' : 'the scenario does not say to approve this, so troupe eval rejects it') };
    const result = await this.client.decide(request, verdict);
    record.applied = result.ok;
    if (!result.ok) record.error = `${result.error.code}: ${result.error.message}`;
  }
}
