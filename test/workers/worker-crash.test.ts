import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { ApproverClient } from '../../human/approver-client.ts';
import type { ApprovalRequest } from '../../runtime/approvals.ts';
import { connectNats } from '../../runtime/connection.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { chargeCard, chargeCardReconciled } from '../fixtures/worker-tools.ts';
import { startChildHost, tempDir, type ChildHost } from '../helpers/child-host.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { until } from '../helpers/until.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/**
 * Tool workers in their own processes, killed with SIGKILL in the middle of an irreversible
 * call: the side effect happens exactly once, or a person is asked — never twice.
 */

const prefix = 'wcrash';
const ada = createUser();
let nats: NatsTestContext;
let sim: SimulatorHandle;
let approver: ApproverClient;
const dir = tempDir('troupe-charges-');
const children: ChildHost[] = [];

const call = (tool: string, mode: string, amount: number) => ({ content: [{ type: 'tool_use' as const, name: tool, input: { dir, amount, mode } }] });
const agent = defineAgent({
  name: 'billing',
  description: 'charges cards',
  input: z.object({ q: z.string() }),
  system: 'billing desk',
  tools: [chargeCard, chargeCardReconciled],
  approvals: { autoApprove: ['charge_card', 'charge_card_reconciled'] },
  prompt: (i) => i.q,
});
const worker = () => {
  const w = startChildHost('tool-worker.ts', { NATS_URL: nats.url, PREFIX: prefix });
  children.push(w);
  return w;
};
const charges = () => (existsSync(path.join(dir, 'charges')) ? readFileSync(path.join(dir, 'charges'), 'utf8').split('\n').filter(Boolean) : []);
const startsOf = (key: string) => readFileSync(path.join(dir, 'starts'), 'utf8').split('\n').filter((l) => l.startsWith(`${key} `));

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({
    scenario: {
      name: 'billing',
      scripts: [
        { name: 'before', match: { firstUser: 'kill before' }, turns: [call('charge_card', 'hang-before', 30), { text: 'Result: {{lastToolResult}}' }] },
        { name: 'after', match: { firstUser: 'kill after' }, turns: [call('charge_card', 'hang-after', 40), { text: 'Result: {{lastToolResult}}' }] },
        { name: 'reconciled', match: { firstUser: 'kill reconciled' }, turns: [call('charge_card_reconciled', 'hang-after', 50), { text: 'Result: {{lastToolResult}}' }] },
      ],
    },
  });
  approver = await ApproverClient.connect(await connectNats({ servers: [nats.url], name: 'approver' }), { prefix, key: ada });
}, 30_000);
// Each test's workers go with it: a worker left running would take the next test's calls.
afterEach(async () => {
  for (const c of children.splice(0)) await c.kill();
});
afterAll(async () => {
  await approver?.close();
  await sim?.close();
  await nats?.close();
});

describe('a worker killed mid-call', () => {
  it('of a tool with reconcile: the next worker finds the charge and the task completes with one charge', async () => {
    const host = await startHost(nats.url, [agent], createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }), { prefix, approvers: [{ name: 'Ada', publicKey: ada.getPublicKey() }] });
    try {
      const first = worker();
      await first.waitForMark('ready');
      await submit(nats.nc, nats.js, 'billing', { taskId: 'wc-rec', input: { q: 'kill reconciled' } }, { prefix });
      await until('the charge', () => (charges().some((l) => l.startsWith('wc-rec/')) ? true : undefined));
      await first.kill('SIGKILL');
      const second = worker();
      await second.waitForMark('ready');
      const events = await eventsUntilEnd(nats.js, 'wc-rec', { prefix, timeoutMs: 40_000 });
      expect(events.at(-1)).toMatchObject({ type: 'done', output: expect.stringMatching(/^Result: \{"charged":50,"line":\d+\}$/) });
      expect(charges().filter((l) => l.startsWith('wc-rec/'))).toEqual(['wc-rec/0/1 50']);
      // Only the killed worker ever started the call: the second reconciled it instead of running it.
      expect(startsOf('wc-rec/0/1')).toHaveLength(1);
    } finally {
      await host.stop();
    }
  }, 60_000);

  it('before the charge, with nothing to reconcile: a person is asked, says it did not happen, and it runs once', async () => {
    const host = await startHost(nats.url, [agent], createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }), { prefix, approvers: [{ name: 'Ada', publicKey: ada.getPublicKey() }] });
    try {
      const first = worker();
      await first.waitForMark('ready');
      await submit(nats.nc, nats.js, 'billing', { taskId: 'wc-before', input: { q: 'kill before' } }, { prefix });
      await until('the first attempt', () => (existsSync(path.join(dir, 'starts')) && startsOf('wc-before/0/1').length ? true : undefined));
      await first.kill('SIGKILL');
      const second = worker();
      await second.waitForMark('ready');
      const request = await until('the unknown-outcome request', async () => (await approver.pending()).find((r) => r.taskId === 'wc-before'), 40_000);
      expect(request).toMatchObject({ kind: 'tool', reasons: ['unknown_outcome'], unknownOutcome: { attempt: 1 }, tool: { name: 'charge_card' }, args: { amount: 30 } });
      expect(charges().filter((l) => l.startsWith('wc-before/'))).toEqual([]);
      expect(await approver.decide(request as ApprovalRequest, { verdict: 'approve', reason: 'checked the provider: no charge' })).toMatchObject({ ok: true });
      const events = await eventsUntilEnd(nats.js, 'wc-before', { prefix, timeoutMs: 40_000 });
      expect(events.at(-1)).toMatchObject({ type: 'done', output: expect.stringMatching(/^Result: \{"charged":30,"line":\d+\}$/) });
      expect(charges().filter((l) => l.startsWith('wc-before/'))).toEqual(['wc-before/0/1 30']);
    } finally {
      await host.stop();
    }
  }, 90_000);

  it('after the charge, with nothing to reconcile: a person says not to repeat it, the model is told, and there is one charge', async () => {
    const host = await startHost(nats.url, [agent], createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }), { prefix, approvers: [{ name: 'Ada', publicKey: ada.getPublicKey() }] });
    try {
      const first = worker();
      await first.waitForMark('ready');
      await submit(nats.nc, nats.js, 'billing', { taskId: 'wc-after', input: { q: 'kill after' } }, { prefix });
      await until('the charge', () => (charges().some((l) => l.startsWith('wc-after/')) ? true : undefined));
      await first.kill('SIGKILL');
      const second = worker();
      await second.waitForMark('ready');
      const request = await until('the unknown-outcome request', async () => (await approver.pending()).find((r) => r.taskId === 'wc-after'), 40_000);
      expect(request).toMatchObject({ reasons: ['unknown_outcome'] });
      expect(await approver.decide(request, { verdict: 'reject', reason: 'the provider shows the charge' })).toMatchObject({ ok: true });
      const events = await eventsUntilEnd(nats.js, 'wc-after', { prefix, timeoutMs: 40_000 });
      const done = events.at(-1) as { type: string; output: string };
      expect(done.type).toBe('done');
      expect(done.output).toContain('unknown_outcome');
      expect(done.output).toContain('the provider shows the charge');
      expect(charges().filter((l) => l.startsWith('wc-after/'))).toEqual(['wc-after/0/1 40']);
    } finally {
      await host.stop();
    }
  }, 90_000);
});
