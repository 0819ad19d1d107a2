import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import type { KeyPair } from '@nats-io/nkeys';
import { argsHash, decisionIdOf, signDecision, type ApprovalRequest, type Decision } from '../runtime/approvals.ts';
import { JsonKv } from '../runtime/json-kv.ts';
import { subjects as makeSubjects, type Subjects } from '../runtime/subjects.ts';
import { taskHistory } from '../runtime/task-watch.ts';
import { snapshotEnvelopeSchema, type SnapshotEnvelope, type WireErrorPayload } from '../runtime/wire.ts';

/** What an approver decides about one request. */
export type Verdict =
  | { verdict: 'approve'; grant?: number; reason?: string }
  | { verdict: 'reject'; reason?: string }
  | { verdict: 'edit'; args: unknown; reason?: string };

/** What the runtime made of a decision. */
export type DecisionResult =
  | { ok: true; decisionId: string; /** Approvals still needed before a quorum request takes effect. */ awaiting?: number }
  | { ok: false; error: WireErrorPayload };

const encoder = new TextEncoder();

/** Requests waiting for a decision in a task store, oldest first (no key needed to read them). */
export async function pendingRequests(store: JsonKv<SnapshotEnvelope>): Promise<ApprovalRequest[]> {
  const out: ApprovalRequest[] = [];
  for (const key of await store.keys()) {
    const e = await store.get(key).catch(() => undefined);
    if (e?.value.status === 'parked' && e.value.pending) out.push(e.value.pending);
  }
  return out.sort((a, b) => a.createdAt - b.createdAt);
}

/**
 * The approver's side of the human actor: lists what waits for a decision, follows changes
 * live, and signs decisions with the approver's own key (which never leaves this process) and
 * sends them, reporting whether a host applied or refused each one.
 */
export class ApproverClient {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly s: Subjects,
    private readonly store: JsonKv<SnapshotEnvelope>,
    private readonly key: KeyPair,
  ) {}

  static async connect(nc: NatsConnection, options: { prefix?: string; key: KeyPair }): Promise<ApproverClient> {
    const s = makeSubjects(options.prefix ?? 'troupe');
    const js = jetstream(nc);
    const store = new JsonKv(await new Kvm(js).open(s.buckets.snapshots), s.buckets.snapshots, snapshotEnvelopeSchema);
    return new ApproverClient(nc, js, s, store, options.key);
  }

  /** The approver's public key (`U...`). */
  get publicKey(): string {
    return this.key.getPublicKey();
  }

  /** Requests waiting for a decision, oldest first. */
  pending(): Promise<ApprovalRequest[]> {
    return pendingRequests(this.store);
  }

  /**
   * Calls `onChange` whenever a task is parked or leaves its parked state (so a list can be
   * refreshed without polling). Returns a function that stops watching.
   */
  async watch(onChange: () => void): Promise<() => void> {
    const iterator = await this.store.kv.watch({ include: 'updates' as never });
    const parkedNow = new Set<string>();
    void (async () => {
      for await (const e of iterator) {
        if (e.operation !== 'PUT') continue;
        let parked = false;
        try {
          parked = (e.json() as { status?: string }).status === 'parked';
        } catch {
          continue;
        }
        if (parked !== parkedNow.has(e.key)) {
          if (parked) parkedNow.add(e.key);
          else parkedNow.delete(e.key);
          onChange();
        }
      }
    })();
    return () => iterator.stop();
  }

  /** Signs and sends a decision on `request`, then waits (up to `timeoutMs`) for a host's verdict on it. */
  async decide(request: ApprovalRequest, choice: Verdict, timeoutMs = 10_000): Promise<DecisionResult> {
    const decision = this.sign(request, choice);
    await this.js.publish(this.s.decision(request.taskId), encoder.encode(JSON.stringify(decision)));
    const id = decisionIdOf(decision);
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const events = await taskHistory(this.js, this.s, request.taskId);
      const answer = events.find((e) => (e.type === 'decision' || e.type === 'decision_refused') && e.decisionId === id);
      if (answer?.type === 'decision') return { ok: true, decisionId: id, ...(answer.awaiting ? { awaiting: answer.awaiting } : {}) };
      if (answer?.type === 'decision_refused') return { ok: false, error: answer.error };
      await new Promise((r) => setTimeout(r, 100));
    }
    return { ok: false, error: { code: 'timeout', message: 'the decision is stored, but no host has handled it yet (is a troupe host running?)' } };
  }

  /** The signed decision for a choice: approvals and edits are bound to the exact arguments. */
  sign(request: ApprovalRequest, choice: Verdict): Decision {
    const base = { v: 1 as const, requestId: request.requestId, taskId: request.taskId, at: Date.now(), ...(choice.reason ? { reason: choice.reason } : {}) };
    if (choice.verdict === 'reject') return signDecision({ ...base, verdict: 'reject' }, this.key);
    if (choice.verdict === 'edit') return signDecision({ ...base, verdict: 'edit', args: choice.args, argsHash: argsHash(choice.args) }, this.key);
    return signDecision(
      {
        ...base,
        verdict: 'approve',
        ...(request.kind === 'tool' ? { argsHash: request.argsHash } : {}),
        ...(request.kind === 'limit' && choice.grant !== undefined ? { grant: { amount: choice.grant } } : {}),
      },
      this.key,
    );
  }

  async close(): Promise<void> {
    await this.nc.close();
  }
}
