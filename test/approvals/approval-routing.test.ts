import { createUser } from '@nats-io/nkeys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent, type ApprovalPolicy } from '../../actors/agent.ts';
import { approvalNeed, statedConfidence } from '../../actors/approval-policy.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { ApproverClient } from '../../human/approver-client.ts';
import type { ApprovalRequest } from '../../runtime/approvals.ts';
import { connectNats } from '../../runtime/connection.ts';
import { subjects } from '../../runtime/subjects.ts';
import { taskHistory } from '../../runtime/task-watch.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/**
 * Who decides and when: quorum, approver roles (tools, amounts, tiers), deadline escalation to the
 * next tier, confidence routing and audit sampling — each against a real server and host.
 */

const wires = new Map<string, { to: string; amount: number }[]>();
const wireMoney = defineTool({
  name: 'wire_money',
  description: 'Wire an amount to an account. Cannot be undone.',
  input: z.object({ to: z.string(), amount: z.number().positive() }),
  output: z.object({ sent: z.number() }),
  reversibility: 'irreversible',
  amount: (a) => a.amount,
  run: async (args, { key }) => {
    wires.set(key, [...(wires.get(key) ?? []), args]);
    return { sent: args.amount };
  },
});
const tags = new Map<string, string[]>();
const tagTicket = defineTool({
  name: 'tag_ticket',
  description: 'Add a tag to the ticket (can be removed again).',
  input: z.object({ tag: z.string() }),
  output: z.object({ ok: z.boolean() }),
  reversibility: 'reversible',
  run: async ({ tag }, { key }) => {
    tags.set(key, [...(tags.get(key) ?? []), tag]);
    return { ok: true };
  },
});

const agent = (name: string, approvals: ApprovalPolicy) =>
  defineAgent({ name, description: 'routing', input: z.object({ q: z.string() }), system: `desk ${name}`, tools: [wireMoney, tagTicket], approvals, prompt: (i) => i.q });

const ada = createUser();
const bob = createUser();
const carol = createUser();
const boss = createUser();
const approvers = [
  { name: 'Ada', publicKey: ada.getPublicKey() },
  { name: 'Bob', publicKey: bob.getPublicKey() },
  { name: 'Carol', publicKey: carol.getPublicKey(), maxAmount: 100, tools: ['wire_money'] },
  { name: 'Boss', publicKey: boss.getPublicKey(), tier: 2 },
];
let nats: NatsTestContext;
let sim: SimulatorHandle;
const clients = new Map<string, ApproverClient>();
const as = (who: string) => clients.get(who)!;
const client = () => createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url });
const wire = (amount: number, text?: string) => ({ ...(text ? { text } : {}), content: [{ type: 'tool_use' as const, name: 'wire_money', input: { to: 'acct-7', amount } }] });
const tag = (text: string) => ({ text, content: [{ type: 'tool_use' as const, name: 'tag_ticket', input: { tag: 'vip' } }] });

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({
    scenario: {
      name: 'routing',
      scripts: [
        { name: 'quorum', match: { system: 'desk quorum' }, turns: [wire(400), { text: 'Result: {{lastToolResult}}' }] },
        { name: 'tiers', match: { system: 'desk tiers' }, turns: [wire(50), { text: 'Result: {{lastToolResult}}' }] },
        { name: 'unsure', match: { system: 'desk unsure' }, turns: [tag('This customer might be VIP. Confidence: 0.4'), { text: 'Result: {{lastToolResult}}' }] },
        { name: 'sure', match: { system: 'desk sure' }, turns: [tag('Clearly a VIP. Confidence: 95%'), { text: 'Result: {{lastToolResult}}' }] },
        { name: 'audited', match: { system: 'desk audited' }, turns: [tag('Tagging.'), { text: 'Result: {{lastToolResult}}' }] },
      ],
    },
  });
  for (const [name, key] of [['Ada', ada], ['Bob', bob], ['Carol', carol], ['Boss', boss]] as const) {
    clients.set(name, await ApproverClient.connect(await connectNats({ servers: [nats.url], name: `approver-${name}` }), { key }));
  }
});
afterAll(async () => {
  for (const c of clients.values()) await c.close();
  await sim?.close();
  await nats?.close();
});

async function parkedRequest(taskId: string, where: (r: ApprovalRequest) => boolean = () => true): Promise<ApprovalRequest> {
  for (let i = 0; i < 200; i++) {
    const r = (await as('Ada').pending()).find((p) => p.taskId === taskId && where(p));
    if (r) return r;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`${taskId} never parked`);
}
const ran = (runs: Map<string, unknown[]>, taskId: string) => [...runs.entries()].filter(([k]) => k.startsWith(`${taskId}/`)).flatMap(([, v]) => v);

describe('who may decide', () => {
  it('runs a quorum call only after two different approvers approved it, once', async () => {
    const host = await startHost(nats.url, [agent('quorum', { quorum: { wire_money: 2 } })], client(), { approvers });
    try {
      await submit(nats.nc, nats.js, 'quorum', { taskId: 'rt-q', input: { q: 'pay the supplier' } });
      const request = await parkedRequest('rt-q');
      expect(request).toMatchObject({ kind: 'tool', quorum: 2, amount: 400 });

      // Carol's role stops her: her amount limit is 100.
      expect(await as('Carol').decide(request, { verdict: 'approve' })).toMatchObject({ ok: false, error: { code: 'approver_not_allowed', message: expect.stringContaining('up to 100') } });
      expect(await as('Ada').decide(request, { verdict: 'approve' })).toMatchObject({ ok: true, awaiting: 1 });
      expect(await as('Ada').decide(request, { verdict: 'approve' })).toMatchObject({ ok: false, error: { code: 'duplicate_vote' } });
      expect(await as('Ada').decide(request, { verdict: 'edit', args: { to: 'acct-7', amount: 300 } })).toMatchObject({ ok: false, error: { code: 'invalid_decision' } });
      // One approval is not enough: the task is still parked and nothing was wired.
      await new Promise((r) => setTimeout(r, 300));
      expect((await as('Ada').pending()).some((p) => p.taskId === 'rt-q')).toBe(true);
      expect(ran(wires, 'rt-q')).toEqual([]);

      expect(await as('Bob').decide(request, { verdict: 'approve' })).toMatchObject({ ok: true });
      const events = await eventsUntilEnd(nats.js, 'rt-q');
      expect(events.at(-1)).toMatchObject({ type: 'done', output: 'Result: {"sent":400}' });
      expect(ran(wires, 'rt-q')).toEqual([{ to: 'acct-7', amount: 400 }]);
    } finally {
      await host.stop();
    }
  });

  it('escalates an overdue request to the next tier, where only that tier decides, and rejects when no tier is left', async () => {
    const tiers = agent('tiers', { deadlineMs: 400, onDeadline: 'escalate' });
    const host = await startHost(nats.url, [tiers], client(), { approvers, host: { approvalSweepMs: 100 } });
    try {
      await submit(nats.nc, nats.js, 'tiers', { taskId: 'rt-t1', input: { q: 'pay' } });
      const first = await parkedRequest('rt-t1');
      expect(first).toMatchObject({ tier: 1, onDeadline: 'escalate' });
      const raised = await parkedRequest('rt-t1', (r) => r.tier === 2);
      expect(raised.deadlineAt! - raised.createdAt).toBeGreaterThan(400);
      const history = await taskHistory(nats.js, subjects(), 'rt-t1');
      expect(history.find((e) => e.type === 'escalated' && e.tier === 2)).toBeDefined();
      expect(await as('Ada').decide(raised, { verdict: 'approve' })).toMatchObject({ ok: false, error: { code: 'approver_not_allowed', message: expect.stringContaining('tier 2') } });
      expect(await as('Boss').decide(raised, { verdict: 'approve' })).toMatchObject({ ok: true });
      expect((await eventsUntilEnd(nats.js, 'rt-t1')).at(-1)).toMatchObject({ type: 'done', output: 'Result: {"sent":50}' });
      expect(ran(wires, 'rt-t1')).toEqual([{ to: 'acct-7', amount: 50 }]);

      // Nobody at tier 2 either: there is no tier 3, so the call is rejected and the model told.
      await submit(nats.nc, nats.js, 'tiers', { taskId: 'rt-t2', input: { q: 'pay' } });
      const events = await eventsUntilEnd(nats.js, 'rt-t2');
      expect(events.filter((e) => e.type === 'escalated').map((e) => (e as { tier?: number }).tier)).toEqual([undefined, 2]);
      expect(events.find((e) => e.type === 'decision_refused')).toMatchObject({ error: { code: 'approval_expired' } });
      expect(events.at(-1)).toMatchObject({ type: 'done', output: expect.stringContaining('no approver decided before the deadline') });
      expect(ran(wires, 'rt-t2')).toEqual([]);
    } finally {
      await host.stop();
    }
  });
});

describe('which calls are routed to a human', () => {
  it('asks about a call the model stated low confidence in, and lets a confident one run', async () => {
    const policy: ApprovalPolicy = { confidence: { below: 0.7 } };
    const host = await startHost(nats.url, [agent('unsure', policy), agent('sure', policy)], client(), { approvers });
    try {
      await submit(nats.nc, nats.js, 'unsure', { taskId: 'rt-c1', input: { q: 'tag' } });
      const request = await parkedRequest('rt-c1');
      expect(request).toMatchObject({ kind: 'tool', reasons: ['low_confidence'], confidence: 0.4, rationale: expect.stringContaining('might be VIP') });
      expect(ran(tags, 'rt-c1')).toEqual([]);

      await submit(nats.nc, nats.js, 'sure', { taskId: 'rt-c2', input: { q: 'tag' } });
      expect((await eventsUntilEnd(nats.js, 'rt-c2')).at(-1)).toMatchObject({ type: 'done', output: 'Result: {"ok":true}' });
      expect(ran(tags, 'rt-c2')).toEqual(['vip']);
    } finally {
      await host.stop();
    }
  });

  it('sends a sampled share of unasked side-effecting calls to an auditor', async () => {
    const host = await startHost(nats.url, [agent('audited', { sampleRate: 1 })], client(), { approvers });
    try {
      await submit(nats.nc, nats.js, 'audited', { taskId: 'rt-s1', input: { q: 'tag' } });
      const request = await parkedRequest('rt-s1');
      expect(request).toMatchObject({ reasons: ['sampled'] });
      expect(await as('Bob').decide(request, { verdict: 'approve' })).toMatchObject({ ok: true });
      expect((await eventsUntilEnd(nats.js, 'rt-s1')).at(-1)).toMatchObject({ type: 'done' });
      expect(ran(tags, 'rt-s1')).toEqual(['vip']);
    } finally {
      await host.stop();
    }
  });
});

describe('the approval policy, without a server', () => {
  it('reads the confidence a model states in its own words', () => {
    expect(statedConfidence('Confidence: 0.82')).toBe(0.82);
    expect(statedConfidence('I am fairly sure (confidence 85%).')).toBe(0.85);
    expect(statedConfidence("I'm 90% confident this is right")).toBe(0.9);
    expect(statedConfidence('confidence: .3 then later Confidence: 0.6')).toBe(0.6);
    expect(statedConfidence('refund order 12345 for 500 dollars')).toBeUndefined();
    expect(statedConfidence(undefined)).toBeUndefined();
  });

  it('samples a stable share of calls by their key', () => {
    const policy: ApprovalPolicy = { sampleRate: 0.25 };
    const picked = (key: string) => approvalNeed(policy, tagTicket, { tag: 'x' }, { key, rationale: undefined, tainted: false }).reasons.includes('sampled');
    const keys = Array.from({ length: 2000 }, (_, i) => `t-${i}/1/1`);
    const share = keys.filter(picked).length / keys.length;
    expect(share).toBeGreaterThan(0.2);
    expect(share).toBeLessThan(0.3);
    expect(keys.map(picked)).toEqual(keys.map(picked));
    // Read-only calls are never sampled, and neither are calls already going to a human.
    expect(approvalNeed({ sampleRate: 1 }, defineTool({ name: 'look', description: 'read', input: z.object({}), output: z.unknown(), run: async () => 1 }), {}, { key: 'k', rationale: undefined, tainted: false }).reasons).toEqual([]);
    expect(approvalNeed({ sampleRate: 1 }, wireMoney, { to: 'a', amount: 1 }, { key: 'k', rationale: undefined, tainted: false }).reasons).toEqual(['irreversible']);
  });

  it('refuses a policy that names a tool the agent does not have', () => {
    expect(() => agent('typo', { quorum: { wire_monee: 2 } })).toThrow(/wire_monee/);
    expect(() => agent('rate', { sampleRate: 2 })).toThrow(/sampleRate/);
  });
});
