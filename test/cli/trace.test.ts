import { createUser } from '@nats-io/nkeys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { ApproverClient } from '../../human/approver-client.ts';
import { connectNats } from '../../runtime/connection.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { RetryableError, ErrorCode } from '../../common/errors.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { treeAgents, treeScenario } from '../fixtures/tree-agents.ts';
import { runTroupe } from '../helpers/cli.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { until } from '../helpers/until.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** `troupe trace`: a task's timeline with a retry, a gate rejection, an approval, a limit, and its children. */

let nats: NatsTestContext;
let sim: SimulatorHandle;
let flaky = 0;
const lookup = defineTool({
  name: 'lookup',
  description: 'look an order up (flaky at first)',
  input: z.object({ orderId: z.string().regex(/^A-\d+$/) }),
  output: z.object({ status: z.string() }),
  run: async () => {
    if (flaky++ < 1) throw new RetryableError(ErrorCode.toolFailed, 'upstream hiccup');
    return { status: 'shipped' };
  },
});
const refund = defineTool({ name: 'refund', description: 'refund an order', input: z.object({ orderId: z.string() }), output: z.object({ ok: z.boolean() }), reversibility: 'irreversible', run: async () => ({ ok: true }) });
const ada = createUser();
const desk = defineAgent({ name: 'tracedesk', description: 'traced', input: z.object({ q: z.string() }), system: 'trace desk', tools: [lookup, refund], limits: { steps: 3 }, prompt: (i) => i.q });

beforeAll(async () => {
  nats = await startNats();
  const base = treeScenario();
  const use = (name: string, input: Record<string, unknown>) => ({ content: [{ type: 'tool_use' as const, name, input }] });
  sim = await startSimulator({
    scenario: {
      ...base,
      scripts: [
        { name: 'tracedesk', match: { system: 'trace desk' }, turns: [use('lookup', { orderId: 'nope' }), use('lookup', { orderId: 'A-1' }), use('refund', { orderId: 'A-1' }), { text: 'more?' }, { text: 'still going' }] },
        ...base.scripts,
      ],
    },
  });
});
afterAll(async () => {
  await sim?.close();
  await nats?.close();
});

describe('troupe trace', () => {
  it('prints the timeline: a gate rejection, a retried call, an approval and the step limit', async () => {
    const host = await startHost(nats.url, [desk], createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }), { approvers: [{ name: 'Ada', publicKey: ada.getPublicKey() }], tools: { retryBackoffMs: 1 } });
    const approver = await ApproverClient.connect(await connectNats({ servers: [nats.url], name: 'trace-approver' }), { key: ada });
    try {
      await submit(nats.nc, nats.js, 'tracedesk', { taskId: 'tr-1', input: { q: 'refund A-1' } });
      const request = await until('the refund request', async () => (await approver.pending()).find((r) => r.taskId === 'tr-1'));
      expect(await approver.decide(request, { verdict: 'approve', reason: 'checked' })).toMatchObject({ ok: true });
      await eventsUntilEnd(nats.js, 'tr-1', { timeoutMs: 20_000 });
      const { stdout, code } = await runTroupe(nats.url, ['trace', 'tr-1']);
      expect(code).toBe(0);
      expect(stdout).toMatch(/task tr-1 \(agent tracedesk\) — failed/);
      expect(stdout).toMatch(/tool lookup\(\{"orderId":"nope"\}\) rejected by the schema gate: invalid_tool_arguments/);
      expect(stdout).toMatch(/tool lookup\(\{"orderId":"A-1"\}\) succeeded/);
      expect(stdout).toMatch(/escalated tr-1\.tool\.2-1: refund needs approval/);
      expect(stdout).toMatch(/decision approve by Ada/);
      expect(stdout).toMatch(/limit steps reached \(3 of 3\): stopping/);
      expect(stdout).toMatch(/model claude-\S+ \[agent\]/);
      // The lookup failed once and was retried inside one call: one event, and the tool ran twice.
      expect(flaky).toBe(2);
    } finally {
      await approver.close();
      await host.stop();
    }
  });

  it('shows the children of a delegation under their parent', async () => {
    const host = await startHost(nats.url, treeAgents, createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }));
    try {
      await submit(nats.nc, nats.js, 'triage', { taskId: 'tr-2', input: { q: 'both' } });
      await eventsUntilEnd(nats.js, 'tr-2', { timeoutMs: 20_000 });
      const { stdout } = await runTroupe(nats.url, ['trace', 'tr-2']);
      expect(stdout).toMatch(/parked until child tasks join \(all\): tr-2-0-1-1, tr-2-0-1-2/);
      expect(stdout).toMatch(/\n {4}task tr-2-0-1-1 \(agent billing\) — done/);
      expect(stdout).toMatch(/\n {4}task tr-2-0-1-2 \(agent shipping\) — done/);
      const missing = await runTroupe(nats.url, ['trace', 'no-such-task']);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('no task "no-such-task"');
    } finally {
      await host.stop();
    }
  });
});
