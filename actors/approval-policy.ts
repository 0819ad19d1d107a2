import { createHash } from 'node:crypto';
import type { EscalationReason } from '../runtime/approvals.ts';
import type { Tool } from '../sandbox/tool.ts';
import type { ApprovalPolicy } from './agent.ts';

/** Why a call needs a human, and the sentences that explain it. */
export interface ApprovalNeed {
  reasons: EscalationReason[];
  details: string[];
  /** The call's confidence, when the policy routes on confidence and one was found. */
  confidence?: number;
}

/** The call being judged, beyond its tool and parsed arguments. */
export interface CallContext {
  /** Its idempotency key (sampling hashes it, so a replay is judged the same way). */
  key: string;
  /** What the model wrote before its tool calls in this step. */
  rationale: string | undefined;
  /** Whether untrusted content is in the conversation. */
  tainted: boolean;
}

/**
 * Whether a tool call (after its gates) needs an approver: irreversible tools unless the
 * policy auto-approves them and the context is clean; any tool whose rule objects to these
 * arguments; side-effecting calls below the confidence threshold; and a sampled share of the
 * side-effecting calls that would otherwise run unasked. Empty `reasons`: the call may run.
 */
export function approvalNeed(policy: ApprovalPolicy, tool: Tool<any, any>, args: unknown, call: CallContext): ApprovalNeed {
  const need: ApprovalNeed = { reasons: [], details: [] };
  if (tool.reversibility === 'irreversible') {
    if (!policy.autoApprove?.includes(tool.name)) {
      need.reasons.push('irreversible');
      need.details.push(`"${tool.name}" cannot be undone`);
    } else if (call.tainted) {
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
  const routing = policy.confidence;
  if (routing && tool.sideEffect && (!routing.tools || routing.tools.includes(tool.name))) {
    const confidence = routing.scorer ? routing.scorer({ tool: tool.name, args, rationale: call.rationale }) : statedConfidence(call.rationale);
    if (confidence !== undefined) need.confidence = confidence;
    if (confidence === undefined || confidence < routing.below) {
      need.reasons.push('low_confidence');
      need.details.push(confidence === undefined ? 'no confidence was stated for this call' : `confidence ${confidence} is below ${routing.below}`);
    }
  }
  if (!need.reasons.length && tool.sideEffect && policy.sampleRate && sampled(call.key, policy.sampleRate)) {
    need.reasons.push('sampled');
    need.details.push(`picked for an audit (${policy.sampleRate * 100}% of unasked calls are)`);
  }
  return need;
}

const STATED = /confiden(?:ce|t)\b[^0-9\n]{0,20}(\d{1,3}(?:\.\d+)?\s*%|[01](?:\.\d+)?|\.\d+)/gi;

/**
 * The confidence a model stated in its own words ("Confidence: 0.82", "I am 90% confident",
 * "confidence 85%"), as a number in 0..1; the last one stated wins. Undefined when none is.
 */
export function statedConfidence(text: string | undefined): number | undefined {
  if (!text) return undefined;
  let found: number | undefined;
  for (const m of text.matchAll(STATED)) {
    const raw = m[1]!.trim();
    const value = raw.endsWith('%') ? Number.parseFloat(raw) / 100 : Number.parseFloat(raw);
    if (Number.isFinite(value) && value >= 0 && value <= 1) found = value;
  }
  if (found !== undefined) return found;
  // "90% confident": the figure comes first.
  for (const m of text.matchAll(/(\d{1,3}(?:\.\d+)?)\s*%\s*(?:sure|certain|confident)/gi)) {
    const value = Number.parseFloat(m[1]!) / 100;
    if (value >= 0 && value <= 1) found = value;
  }
  return found;
}

/** A stable draw in [0, 1) from the call key: whether this call is in the audited sample. */
function sampled(key: string, rate: number): boolean {
  const draw = createHash('sha256').update(key).digest().readUInt32BE(0) / 2 ** 32;
  return draw < rate;
}
