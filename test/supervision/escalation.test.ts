import { DeliverPolicy } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { createUser } from '@nats-io/nkeys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { approvalRequestSchema, signDecision, type ApprovalRequest } from '../../runtime/approvals.ts';
import type { TaskEvent } from '../../runtime/wire.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { spender, spenderScenario } from '../helpers/spender.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';


const ada = createUser();
const mallory = createUser();
const config = { approvers: [{ name: 'Ada', publicKey: ada.getPublicKey() }] };
const encoder = new TextEncoder();
let nats: NatsTestContext;
let sim: SimulatorHandle;
const client = () => createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url, routing: { default: { model: 'claude-opus-4-6', maxTokens: 4096 }, roles: {} } });

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({ scenario: spenderScenario('Working on it.') });
});
afterAll(async () => {
  await sim?.close();
  await nats?.close();
});

async function nextRequest(taskId: string): Promise<ApprovalRequest> {
  const consumer = await nats.js.consumers.get('TROUPE_APPROVALS', { filter_subjects: `troupe.approvals.spender.${taskId}` as unknown as string[], deliver_policy: DeliverPolicy.All });
  const m = await consumer.next({ expires: 15_000 });
  if (!m) throw new Error(`no approval request for ${taskId}`);
  return approvalRequestSchema.parse(m.json());
}

async function waitFor(taskId: string, predicate: (events: TaskEvent[]) => boolean): Promise<TaskEvent[]> {
  const { taskHistory } = await import('../../runtime/task-watch.ts');
  const { subjects } = await import('../../runtime/subjects.ts');
  for (let i = 0; i < 200; i++) {
    const events = await taskHistory(nats.js, subjects(), taskId);
    if (predicate(events)) return events;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`condition not met for ${taskId}`);
}

const decide = (taskId: string, body: object) => nats.js.publish(`troupe.decisions.${taskId}`, encoder.encode(JSON.stringify(body)));
const envelope = async (taskId: string) => (await (await new Kvm(nats.js).open('troupe_snapshots')).get(taskId))!.json<Record<string, any>>();

describe('escalating a limit to a human', () => {
  it('parks the task, refuses forged and stale decisions, and continues from the same state when a signed grant arrives on any host', async () => {
    let host = await startHost(nats.url, [spender], client(), config, { hostId: 'esc-a' });
    await submit(nats.nc, nats.js, 'spender', { taskId: 'esc-1', input: { q: 'spend' } });
    const request = await nextRequest('esc-1');
    expect(request).toMatchObject({ taskId: 'esc-1', agent: 'spender', kind: 'limit', limit: { name: 'usd', max: 0.1 }, ask: { amount: 0.1 } });
    expect(request.spent.usd).toBeLessThanOrEqual(0.1);
    await waitFor('esc-1', (e) => e.some((x) => x.type === 'escalated'));
    expect(await envelope('esc-1')).toMatchObject({ status: 'parked', pending: { requestId: request.requestId } });
    expect(host.running).toBe(0);

    // Forged: signed by someone who is not an approver.
    await decide('esc-1', signDecision({ v: 1, requestId: request.requestId, taskId: 'esc-1', verdict: 'approve', at: Date.now() }, mallory));
    // Tampered: Ada's signature, but the grant was changed after signing.
    const signed = signDecision({ v: 1, requestId: request.requestId, taskId: 'esc-1', verdict: 'approve', grant: { amount: 0.01 }, at: Date.now() }, ada);
    await decide('esc-1', { ...signed, grant: { amount: 100 } });
    // Stale: answers a request that does not exist.
    await decide('esc-1', signDecision({ v: 1, requestId: 'esc-1.usd.0.0', taskId: 'esc-1', verdict: 'approve', at: Date.now() }, ada));
    const refused = await waitFor('esc-1', (e) => e.filter((x) => x.type === 'decision_refused').length === 3);
    expect(refused.filter((e) => e.type === 'decision_refused').map((e) => (e as { error: { code: string } }).error.code)).toEqual(['unknown_approver', 'bad_signature', 'stale_decision']);
    expect(await envelope('esc-1')).toMatchObject({ status: 'parked' });

    // The host goes away; the parked task does not care. Another host takes the decision.
    await host.stop();
    host = await startHost(nats.url, [spender], client(), config, { hostId: 'esc-b' });
    try {
      await decide('esc-1', signDecision({ v: 1, requestId: request.requestId, taskId: 'esc-1', verdict: 'approve', grant: { amount: 0.5 }, at: Date.now() }, ada));
      const events = await eventsUntilEnd(nats.js, 'esc-1');
      expect(events.at(-1)).toMatchObject({ type: 'done', output: 'All done.' });
      expect(events.find((e) => e.type === 'decision')).toMatchObject({ verdict: 'approve', approverName: 'Ada' });
      expect(events.find((e) => e.type === 'resumed')).toMatchObject({ host: 'esc-b' });
      const spent = events.reduce((s, e) => s + (e.type === 'model' ? e.costUsd : 0), 0);
      expect(spent).toBeGreaterThan(0.1);
      expect(spent).toBeLessThanOrEqual(0.6);
      // The same signed decision again is a replay: refused, nothing happens.
      await decide('esc-1', signDecision({ v: 1, requestId: request.requestId, taskId: 'esc-1', verdict: 'approve', at: Date.now() }, ada));
      await waitFor('esc-1', (e) => e.filter((x) => x.type === 'decision_refused').length === 4);
    } finally {
      await host.stop();
    }
  });

  it('ends the task with limit_exceeded when the approver rejects', async () => {
    const host = await startHost(nats.url, [spender], client(), config, { hostId: 'esc-c' });
    try {
      await submit(nats.nc, nats.js, 'spender', { taskId: 'esc-2', input: { q: 'spend' } });
      const request = await nextRequest('esc-2');
      await decide('esc-2', signDecision({ v: 1, requestId: request.requestId, taskId: 'esc-2', verdict: 'reject', reason: 'too expensive', at: Date.now() }, ada));
      const events = await eventsUntilEnd(nats.js, 'esc-2');
      expect(events.at(-1)).toMatchObject({ type: 'failed', error: { code: 'limit_exceeded', details: { limit: 'usd' } } });
    } finally {
      await host.stop();
    }
  });
});
