import type { EscalationReason } from '../runtime/approvals.ts';
import type { Tool } from '../sandbox/tool.ts';
import type { ApprovalPolicy } from './agent.ts';

/** Why a call needs a human, and the sentences that explain it. */
export interface ApprovalNeed {
  reasons: EscalationReason[];
  details: string[];
}

/**
 * Whether a tool call (after its gates) needs an approver: irreversible tools unless the
 * policy auto-approves them and the context is clean; any tool whose rule objects to these
 * arguments. Empty `reasons`: the call may run.
 */
export function approvalNeed(policy: ApprovalPolicy, tool: Tool<any, any>, args: unknown, tainted: boolean): ApprovalNeed {
  const need: ApprovalNeed = { reasons: [], details: [] };
  if (tool.reversibility === 'irreversible') {
    if (!policy.autoApprove?.includes(tool.name)) {
      need.reasons.push('irreversible');
      need.details.push(`"${tool.name}" cannot be undone`);
    } else if (tainted) {
      need.reasons.push('untrusted_content');
      need.details.push(`untrusted content (output of an untrusted tool) is in the conversation, so the auto-approval of "${tool.name}" does not apply`);
    }
  }
  const rule = policy.rules?.[tool.name];
  const objection = rule?.(args);
  if (objection) {
    need.reasons.push('rule');
    need.details.push(objection);
  }
  return need;
}
