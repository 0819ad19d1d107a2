import { fromPublic, type KeyPair } from '@nats-io/nkeys';
import { z } from 'zod';
import { canonicalJson } from '../common/canonical-json.ts';

/**
 * What goes between a parked task and its approvers: the request (published by the host on
 * `troupe.approvals.<agent>.<taskId>`) and the decision (published by an approver on
 * `troupe.decisions.<taskId>`), signed with the approver's nkey (ed25519).
 */

const figuresSchema = z.object({ usd: z.number(), tokens: z.number(), steps: z.number() });

export const approvalRequestSchema = z.object({
  v: z.literal(1),
  /** Unique per escalation; a decision names the request it answers. */
  requestId: z.string(),
  taskId: z.string(),
  agent: z.string(),
  kind: z.literal('limit'),
  /** Why a human is asked, in a sentence. */
  reason: z.string(),
  /** The limit reached and its figures. */
  limit: z.object({ name: z.string(), used: z.number(), max: z.number(), message: z.string() }),
  /** What granting adds by default (a decision may grant another amount). */
  ask: z.object({ amount: z.number() }),
  spent: figuresSchema,
  createdAt: z.number(),
});
export type ApprovalRequest = z.infer<typeof approvalRequestSchema>;

const decisionBodySchema = z.object({
  v: z.literal(1),
  requestId: z.string(),
  taskId: z.string(),
  verdict: z.enum(['approve', 'reject']),
  /** For a limit: how much to add (default: the request's ask). */
  grant: z.object({ amount: z.number().positive() }).optional(),
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

/** A decision's own identity (from its signature), to tell two decisions on one request apart. */
export function decisionIdOf(decision: Pick<Decision, 'signature'>): string {
  return decision.signature.slice(0, 22);
}

/** Whether the signature is the approver's over exactly these fields. Never throws. */
export function verifyDecision(decision: Decision): boolean {
  try {
    const { signature, ...body } = decision;
    return fromPublic(body.approver).verify(encoder.encode(canonicalJson(body)), Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}
