import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kvm } from '@nats-io/kv';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assign, fromPromise, setup } from 'xstate';
import { defineAgent } from '../../actors/agent.ts';
import type { Agent } from '../../actors/agent.ts';
import { textOf, type ModelEffectInput, type ModelTurn } from '../../machines/conversation.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { replayTask, type ReplayTaskOptions } from '../../actors/replay.ts';
import { followUp } from '../../examples/follow-up/agent.ts';
import { refundDesk } from '../../examples/refund-desk/agent.ts';
import { supportDesk } from '../../examples/support-desk/agent.ts';
import { billingSpecialist, shippingSpecialist, triage } from '../../examples/triage/agent.ts';
import { JsonKv } from '../../runtime/json-kv.ts';
import { subjects } from '../../runtime/subjects.ts';
import { taskHistory } from '../../runtime/task-watch.ts';
import { ledgerRecordSchema, snapshotEnvelopeSchema, type LedgerRecord, type SnapshotEnvelope, type TaskEvent } from '../../runtime/wire.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { runTroupe, type Run } from '../helpers/cli.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';
import { refundDeskOnlyReplacements, supportDeskArchived } from './changed-agents.ts';

/**
 * `troupe replay`: tasks recorded by a real host (real nats-server, the bundled simulator through
 * the real SDK) are re-run offline from their ledger, and follow the same trajectory; an agent
 * changed since is reported where it leaves it.
 */

let nats: NatsTestContext;
let sim: SimulatorHandle;
let host: Awaited<ReturnType<typeof startHost>>;
let snapshots: JsonKv<SnapshotEnvelope>;
let ledger: JsonKv<LedgerRecord>;
const agents = [supportDesk, refundDesk, triage, billingSpecialist, shippingSpecialist, followUp];
const byName = new Map<string, Agent<any>>(agents.map((a) => [a.name, a]));
const s = subjects('troupe');

/** Runs a task to its end on the host. */
async function record(agent: string, taskId: string, input: unknown, extra: Record<string, unknown> = {}): Promise<void> {
  const { verdict } = await submit(nats.nc, nats.js, agent, { taskId, input, ...extra });
  expect(await verdict).toMatchObject({ taskId, status: 'accepted' });
  await eventsUntilEnd(nats.js, taskId, { timeoutMs: 20_000 });
}

/** What `troupe replay` reads of a task: its envelope, its events, its ledger and its children. */
async function recording(taskId: string): Promise<Omit<ReplayTaskOptions, 'agent'>> {
  const envelope = (await snapshots.get(taskId))!.value;
  return {
    envelope,
    events: await taskHistory(nats.js, s, taskId),
    ledger: async (key) => (await ledger.get(key))?.value,
    task: async (id) => (await snapshots.get(id))?.value,
    agents: byName,
  };
}

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator();
  host = await startHost(nats.url, agents, createAnthropicModelClient({ apiKey: 'test', baseURL: sim.url, routing: { roles: { ...refundDesk.models } } }), { host: { approvalSweepMs: 200 } });
  const kvm = new Kvm(nats.js);
  snapshots = new JsonKv(await kvm.open(s.buckets.snapshots), s.buckets.snapshots, snapshotEnvelopeSchema);
  ledger = new JsonKv(await kvm.open(s.buckets.ledger), s.buckets.ledger, ledgerRecordSchema);
  await record('support-desk', 'rp-support', { customer: 'Ada', message: 'Hi, where is my order A-1001?' });
  await record('refund-desk', 'rp-refund', { orderId: 'A-1001', message: 'Please give me my money back.' });
  await record('refund-desk', 'rp-unclear', { orderId: 'A-1002', message: 'Hmm, about this order...' });
  await record('triage', 'rp-triage', triage.exampleInput);
});
afterAll(async () => {
  await host?.stop();
  await sim?.close();
  await nats?.close();
});

describe('replaying a recorded task', () => {
  it('re-runs a loop agent from its ledger and follows the recorded trajectory to the same answer', async () => {
    const before = sim.stats().totalRequests;
    const report = await replayTask({ agent: supportDesk, ...(await recording('rp-support')) });
    expect(report.divergence).toBeUndefined();
    expect(report).toMatchObject({ same: true, complete: true, steps: 8, recordedOutcome: report.outcome, warnings: [] });
    expect(report.replayed).toEqual(report.recorded);
    expect(report.replayed).toEqual([
      { kind: 'state', state: 'thinking', step: 0 },
      { kind: 'model', key: 'rp-support/0/0', role: 'agent' },
      { kind: 'state', state: 'acting', step: 0 },
      { kind: 'tool', key: 'rp-support/0/1', tool: 'lookup_order', status: 'succeeded', args: { orderId: 'A-1001' } },
      { kind: 'state', state: 'thinking', step: 1 },
      { kind: 'model', key: 'rp-support/1/0', role: 'agent' },
      { kind: 'state', state: 'done', step: 1 },
      { kind: 'end', outcome: { status: 'done', output: expect.stringContaining('Order A-1001 is shipped') } },
    ]);
    // Offline: the model was not asked again.
    expect(sim.stats().totalRequests).toBe(before);
  });

  it('checks only the effects and the end of a task whose events have expired, and says so', async () => {
    const report = await replayTask({ agent: supportDesk, ...(await recording('rp-support')), events: [] });
    expect(report).toMatchObject({ same: true, complete: true, warnings: [expect.stringContaining('has no events')] });
    const changed = await replayTask({ agent: supportDeskArchived, ...(await recording('rp-support')), events: [] });
    expect(changed.same).toBe(false);
    // The model's next turn is the recorded one, so the answer is the same: the refusal shows in what the machine kept.
    expect(changed.divergence).toMatchObject({ at: 0, expected: { kind: 'end', outcome: { status: 'done' } }, actual: { kind: 'end', outcome: { status: 'done' } } });
    expect(changed.divergence!.message).toMatch(/^the machine ended the same way, but its context differs at messages\[2\]\.content\[0\]\.content: expected .*"status":"shipped".*, got .*invalid_tool_arguments.*refused these arguments/);
  });

  it('replays a workflow, including the agent loop it hands an unclear case to', async () => {
    const refund = await replayTask({ agent: refundDesk, ...(await recording('rp-refund')) });
    expect(refund.divergence).toBeUndefined();
    expect(refund.replayed.filter((e) => e.kind === 'state').map((e) => (e as { state: string }).state)).toEqual(['lookup', 'classify', 'ticket', 'done']);
    expect(refund.outcome).toEqual({ status: 'done', output: { decision: 'refund', ticket: expect.stringMatching(/^T-/) } });

    const unclear = await replayTask({ agent: refundDesk, ...(await recording('rp-unclear')) });
    expect(unclear.divergence).toBeUndefined();
    expect(unclear.same).toBe(true);
    expect(unclear.replayed.filter((e) => e.kind === 'model' || e.kind === 'tool').map((e) => (e as { key: string }).key)).toEqual([
      'rp-unclear/0/1',
      'rp-unclear/1/0',
      'rp-unclear/triage/0/0',
      'rp-unclear/triage/0/1',
      'rp-unclear/triage/1/0',
    ]);
  });

  it('reports a changed workflow where it takes another branch', async () => {
    const report = await replayTask({ agent: refundDeskOnlyReplacements, ...(await recording('rp-refund')) });
    expect(report.same).toBe(false);
    expect(report.versionMismatch).toEqual({ recorded: '1', current: '2' });
    expect(report.divergence).toMatchObject({
      at: 4,
      expected: { kind: 'state', state: 'ticket' },
      actual: { kind: 'state', state: 'triage' },
      message: 'the replayed machine entered state triage where the recorded one entered state ticket',
    });
  });

  it('reports a changed tool whose gate now refuses a call the recording ran', async () => {
    const report = await replayTask({ agent: supportDeskArchived, ...(await recording('rp-support')) });
    expect(report.same).toBe(false);
    expect(report.divergence).toMatchObject({
      at: 3,
      expected: { kind: 'tool', key: 'rp-support/0/1', status: 'succeeded' },
      actual: { kind: 'tool', key: 'rp-support/0/1', status: 'rejected', code: 'invalid_tool_arguments' },
    });
  });

  it('reports an effect the recording never ran as the divergence', async () => {
    const recorded = await recording('rp-support');
    const report = await replayTask({ agent: supportDesk, ...recorded, ledger: async (key) => (key === 'rp-support/1/0' ? undefined : recorded.ledger(key)) });
    expect(report.same).toBe(false);
    expect(report.divergence).toMatchObject({
      at: 5,
      expected: { kind: 'model', key: 'rp-support/1/0' },
      actual: { kind: 'unrecorded', effect: 'model', key: 'rp-support/1/0' },
    });
    expect(report.divergence!.message).toContain('the replayed machine asked for a model call rp-support/1/0, which the recording never ran');
  });

  it('follows a task stopped by a limit up to where the recording stops', async () => {
    await record('support-desk', 'rp-limit', { customer: 'Ada', message: 'Where is A-1003?' }, { budget: { steps: 1 } });
    const recorded = await recording('rp-limit');
    expect(recorded.envelope.outcome).toMatchObject({ status: 'failed', error: { code: 'limit_exceeded' } });
    const report = await replayTask({ agent: supportDesk, ...recorded });
    expect(report.divergence).toBeUndefined();
    expect(report).toMatchObject({ same: true, complete: false, stoppedAt: { key: 'rp-limit/1/0' }, recordedOutcome: { status: 'failed' } });
    expect(report.outcome).toBeUndefined();
  });

  it('replays delegations from the children\'s envelopes and waits from their recorded answers', async () => {
    const delegated = await replayTask({ agent: triage, ...(await recording('rp-triage')) });
    expect(delegated.divergence).toBeUndefined();
    expect(delegated.replayed).toContainEqual(expect.objectContaining({ kind: 'tool', tool: 'delegate', status: 'succeeded' }));
    expect(delegated.outcome).toEqual(delegated.recordedOutcome);

    const { verdict } = await submit(nats.nc, nats.js, 'follow-up', { taskId: 'rp-follow', input: { customer: 'Ada', email: 'ada@example.com', question: 'Refund or replacement?', followUpAfterMs: 60_000, giveUpAfterMs: 120_000 } });
    expect(await verdict).toMatchObject({ status: 'accepted' });
    await nats.js.publish(s.inbox('rp-follow'), JSON.stringify({ type: 'reply', data: { text: 'A refund, please' } }));
    await eventsUntilEnd(nats.js, 'rp-follow', { timeoutMs: 20_000 });
    const waited = await replayTask({ agent: followUp, ...(await recording('rp-follow')) });
    expect(waited.divergence).toBeUndefined();
    expect(waited.outcome).toEqual({ status: 'done', output: { outcome: 'replied', reply: { text: 'A refund, please' }, reminders: 0 } });
  });
});

describe('replaying on virtual time', () => {
  /** A workflow that rests an hour before it asks the model: replayed at once, not in an hour. */
  const resting = setup({
    types: {} as { context: { taskId: string; answer: string }; input: { taskId: string } },
    actors: { model: fromPromise<ModelTurn, ModelEffectInput>(async () => { throw new Error('effect not provided'); }) },
  }).createMachine({
    context: ({ input }) => ({ taskId: input.taskId, answer: '' }),
    initial: 'resting',
    states: {
      resting: { after: { 3_600_000: 'asking' } },
      asking: {
        invoke: {
          src: 'model',
          input: ({ context }) => ({ key: `${context.taskId}/0/0`, role: 'agent', step: 0, messages: [{ role: 'user', content: 'Anything new?' }] }),
          onDone: { target: 'done', actions: assign({ answer: ({ event }) => textOf(event.output.content) }) },
        },
      },
      done: { type: 'final' },
    },
    output: ({ context }) => ({ status: 'done' as const, output: context.answer }),
  });
  const agent = defineAgent<Record<string, never>>({ name: 'rester', description: 'rests, then asks', input: z.object({}), machine: resting, machineInput: ({ taskId }) => ({ taskId }) });
  const at = 0;
  const envelope = snapshotEnvelopeSchema.parse({
    v: 1, taskId: 't-rest', agent: 'rester', machineVersion: '1', status: 'done', runSeq: null, runDelivery: 1, owner: null, createdAt: at, updatedAt: at, deadlineAt: null, state: 'done', step: 0,
    snapshot: { status: 'done', value: 'done', context: { taskId: 't-rest', answer: 'Nothing new.' }, output: { status: 'done', output: 'Nothing new.' }, children: {}, historyValue: {} },
    outcome: { status: 'done', output: 'Nothing new.' },
  });
  const events: TaskEvent[] = [
    { type: 'state', taskId: 't-rest', at, state: 'resting' },
    { type: 'state', taskId: 't-rest', at, state: 'asking' },
    { type: 'model', taskId: 't-rest', at, key: 't-rest/0/0', model: 'm', role: 'agent', usage: { inputTokens: 1, outputTokens: 1, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 }, costUsd: 0, latencyMs: 1, stopReason: 'end_turn', attempts: 1, replayed: false },
    { type: 'state', taskId: 't-rest', at, state: 'done' },
  ];
  const answer: LedgerRecord = { v: 1, state: 'succeeded', kind: 'model', name: 'agent', result: { content: [{ type: 'text', text: 'Nothing new.' }], stopReason: 'end_turn' }, attempt: 1, at };

  it('fires delayed transitions on a virtual clock, without waiting', async () => {
    const report = await replayTask({ agent, envelope, events, ledger: (key) => (key === 't-rest/0/0' ? answer : undefined) });
    expect(report.divergence).toBeUndefined();
    expect(report).toMatchObject({ same: true, complete: true, outcome: { status: 'done', output: 'Nothing new.' } });
  });

  it('reports a recorded answer of another kind under the key the machine asks for', async () => {
    const report = await replayTask({ agent, envelope, events, ledger: () => ({ v: 1, state: 'succeeded', kind: 'tool', name: 'lookup_order', result: {}, attempt: 1, at }) });
    expect(report.divergence).toMatchObject({ at: 2, actual: { kind: 'unrecorded', key: 't-rest/0/0', message: 'the replayed machine asks for a model call under t-rest/0/0, where the recording ran a call of lookup_order' } });
  });
});

describe('troupe replay', () => {
  const ROOT = fileURLToPath(new URL('../..', import.meta.url));
  const show = (r: Run) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

  it('prints the trajectory and exits 0 when the replay follows the recording', async () => {
    const r = await runTroupe(nats.url, ['replay', 'rp-refund']);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toContain('tool open_ticket');
    expect(r.stdout).toMatch(/same trajectory: 8 entries/);
    const json = await runTroupe(nats.url, ['replay', 'rp-refund', '--json']);
    expect(json.code, show(json)).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ taskId: 'rp-refund', agent: 'refund-desk', same: true, complete: true });
  });

  it('exits 1 naming the step where a changed agent diverges, and warns of the version change', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'troupe-replay-'));
    try {
      const config = path.join(dir, 'troupe.config.json');
      writeFileSync(config, JSON.stringify({ agents: [path.join(ROOT, 'test/replay/changed-agents.ts')] }));
      const r = await runTroupe(nats.url, ['replay', 'rp-refund', '--config', config]);
      expect(r.code, show(r)).toBe(1);
      expect(r.stdout).toContain('diverged at #5');
      expect(r.stdout).toContain('expected  state ticket');
      expect(r.stdout).toContain('got       state triage');
      expect(r.stderr).toContain('the task ran version 1 of refund-desk\'s machine; replaying version 2');
      const unknown = await runTroupe(nats.url, ['replay', 'rp-triage', '--config', config]);
      expect(unknown.code, show(unknown)).toBe(1);
      expect(unknown.stderr).toContain('[unknown_agent]');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('exits 1 with a clear error for a task that does not exist', async () => {
    const r = await runTroupe(nats.url, ['replay', 'no-such-task']);
    expect(r.code, show(r)).toBe(1);
    expect(r.stderr).toContain('no task "no-such-task"');
  });
});
