import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { fromPublic, type KeyPair } from '@nats-io/nkeys';
import { z } from 'zod';
import { canonicalJson } from '../common/canonical-json.ts';

/**
 * What goes between a parked task and its approvers: the request (published by the host on
 * `troupe.approvals.<agent>.<taskId>`) and the decision (published by an approver on
 * `troupe.decisions.<taskId>`), signed with the approver's nkey (ed25519).
 */

const figuresSchema = z.object({ usd: z.number(), tokens: z.number(), steps: z.number() });

const requestBase = {
  v: z.literal(1),
  /** Unique per request; a decision names the request it answers. */
  requestId: z.string(),
  taskId: z.string(),
  agent: z.string(),
  /** Why a human is asked, in a sentence. */
  reason: z.string(),
  spent: figuresSchema,
  createdAt: z.number(),
  /** After this (epoch ms) nobody decided in time: see `onDeadline`. */
  deadlineAt: z.number().optional(),
  /** What the deadline does: reject (a limit is not raised), or move the request to the next tier. @default "reject" */
  onDeadline: z.enum(['reject', 'escalate']).optional(),
  /** Approvers of this tier or above may decide. @default 1 */
  tier: z.number().int().min(1).optional(),
};

/** Why a tool call was sent to a human (any number of these). */
export const escalationReasonSchema = z.enum(['irreversible', 'rule', 'low_confidence', 'untrusted_content', 'unknown_outcome', 'sampled']);
export type EscalationReason = z.infer<typeof escalationReasonSchema>;

/** A limit was reached: grant more of it, or stop. */
export const limitRequestSchema = z.object({
  ...requestBase,
  kind: z.literal('limit'),
  /** The limit reached and its figures. */
  limit: z.object({ name: z.string(), used: z.number(), max: z.number(), message: z.string() }),
  /** What granting adds by default (a decision may grant another amount). */
  ask: z.object({ amount: z.number() }),
});

/** A tool call that needs a human before it runs: approve, edit the arguments, or reject. */
export const toolRequestSchema = z.object({
  ...requestBase,
  kind: z.literal('tool'),
  /** The call's idempotency key: the decision is recorded for this call only. */
  callKey: z.string(),
  reasons: z.array(escalationReasonSchema).min(1),
  tool: z.object({
    name: z.string(),
    description: z.string(),
    reversibility: z.enum(['read', 'reversible', 'irreversible']),
    /** JSON Schema of the arguments: what an edit must satisfy. */
    inputSchema: z.record(z.string(), z.unknown()),
  }),
  /** The validated arguments the agent wants to call the tool with. */
  args: z.unknown(),
  /** `argsHash(args)`: an approval is bound to exactly these arguments. */
  argsHash: z.string(),
  /** The agent's own words before the call, and its stated confidence (0..1) if it gave one. */
  rationale: z.string().optional(),
  confidence: z.number().min(0).max(1).optional(),
  /** The task's input, for context. */
  taskInput: z.unknown(),
  /** The tool's `amount(args)`: approvers with a lower `maxAmount` may not approve it. */
  amount: z.number().optional(),
  /**
   * Set when the call's runner vanished mid-call and its outcome is unknown (attempt N): approve
   * runs it again (you checked it did not happen), reject does not repeat it.
   */
  unknownOutcome: z.object({ attempt: z.number() }).optional(),
  /** Distinct approvers who must approve before the call runs (one rejection is enough). @default 1 */
  quorum: z.number().int().min(2).optional(),
});

export const approvalRequestSchema = z.discriminatedUnion('kind', [limitRequestSchema, toolRequestSchema]);
export type ApprovalRequest = z.infer<typeof approvalRequestSchema>;

const decisionBodySchema = z.object({
  v: z.literal(1),
  requestId: z.string(),
  taskId: z.string(),
  /** `edit` approves the call with changed arguments (tool requests only). */
  verdict: z.enum(['approve', 'reject', 'edit']),
  /** For a limit: how much to add (default: the request's ask). */
  grant: z.object({ amount: z.number().positive() }).optional(),
  /**
   * For a tool call: the hash of the exact arguments approved (the request's `argsHash` for
   * approve, `argsHash(args)` for edit). A decision whose hash does not match is refused.
   */
  argsHash: z.string().optional(),
  /** For an edit: the new arguments (re-validated against the tool's schema by the host). */
  args: z.unknown().optional(),
  reason: z.string().max(2000).optional(),
  /** The approver's public nkey (`U...`). */
  approver: z.string(),
  at: z.number(),
});
export type DecisionBody = z.infer<typeof decisionBodySchema>;

export const decisionSchema = decisionBodySchema.extend({
  /** base64url ed25519 signature over the canonical JSON of every other field. */
  signature: z.string(),
});
export type Decision = z.infer<typeof decisionSchema>;

const encoder = new TextEncoder();

/** Signs a decision with the approver's key pair; `approver` is filled from the key. */
export function signDecision(body: Omit<DecisionBody, 'approver'>, key: KeyPair): Decision {
  const full: DecisionBody = { ...body, approver: key.getPublicKey() };
  const signature = Buffer.from(key.sign(encoder.encode(canonicalJson(full)))).toString('base64url');
  return { ...full, signature };
}

/** The hash an approval of these arguments is bound to (sha256 of their canonical JSON). */
export function argsHash(args: unknown): string {
  return createHash('sha256').update(canonicalJson(args)).digest('base64url');
}

/** A decision's own identity (from its signature), to tell two decisions on one request apart. */
export function decisionIdOf(decision: Pick<Decision, 'signature'>): string {
  return decision.signature.slice(0, 22);
}

/** Whether the signature is the approver's over exactly these fields. Never throws. */
export function verifyDecision(decision: Decision): boolean {
  try {
    const { signature, ...body } = decision;
    return verify(null, encoder.encode(canonicalJson(body)), publicKeyOf(body.approver), Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}

const publicKeys = new Map<string, KeyObject>();
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/**
 * An approver's nkey (`U…`) as a key for Node's own Ed25519: nkeys verifies in JavaScript, at
 * milliseconds per signature, on the path of every decision that wakes a task. The key is checked
 * by nkeys (prefix and checksum) once, then kept.
 */
function publicKeyOf(nkey: string): KeyObject {
  let key = publicKeys.get(nkey);
  if (key) return key;
  fromPublic(nkey); // throws on a malformed key or a wrong checksum
  const bytes: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of nkey) {
    value = (value << 5) | BASE32.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  // One prefix byte, the 32-byte Ed25519 key, a two-byte checksum.
  const raw = Buffer.from(bytes.slice(1, 33));
  key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
  if (publicKeys.size > 10_000) publicKeys.clear();
  publicKeys.set(nkey, key);
  return key;
}
