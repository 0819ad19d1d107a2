import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import type { TroupeConfigInput } from '../../config/schema.ts';
import { subjects } from '../../runtime/subjects.ts';
import type { TaskEvent } from '../../runtime/wire.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startSimulator, type ScenarioInput, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';
import { resultText, startModelTap, toolResultsOf, type ModelTap, type TappedRequest } from './model-tap.ts';

/**
 * The three gates before a tool call's side effect — schema, semantic (`validate`) and
 * authorization (the task's principal) — with a real host, the real SDK and the simulator: a
 * bad call never reaches the tool, the model gets the structured error in its next request and
 * re-plans, and the task completes. Intake refuses tasks for unknown or missing principals.
 */

const ORDERS: Record<string, { customer: string; status: string }> = {
  'A-1': { customer: 'alice', status: 'shipped' },
  'A-2': { customer: 'bob', status: 'delivered' },
};

/** Side effects, by idempotency key (`<taskId>/<step>/<call>`): what really ran. */
const lookups: Array<{ key: string; orderId: string }> = [];
const refunds: Array<{ key: string; orderId: string; amount: number }> = [];
const cancels: Array<{ key: string; orderId: string }> = [];
const ranFor = <T extends { key: string }>(list: T[], taskId: string) => list.filter((e) => e.key.startsWith(`${taskId}/`));

const orderExists = ({ orderId }: { orderId: string }) => (orderId in ORDERS ? undefined : `order ${orderId} does not exist`);

const lookupOrder = defineTool({
  name: 'lookup_order',
  description: 'Look up an order by id.',
  input: z.object({ orderId: z.string() }),
  output: z.object({ status: z.string() }),
  validate: orderExists,
  run: async ({ orderId }, { key }) => {
    lookups.push({ key, orderId });
    return { status: ORDERS[orderId]!.status };
  },
});
const issueRefund = defineTool({
  name: 'issue_refund',
  description: 'Refund an amount (USD) on an order. Cannot be undone.',
  input: z.object({ orderId: z.string(), amount: z.number().positive() }),
  output: z.object({ refunded: z.number() }),
  reversibility: 'irreversible',
  amount: ({ amount }) => amount,
  validate: orderExists,
  // A customer may refund only their own orders; staff principals any.
  authorize: (principal, { orderId }) => (principal === 'ops' || ORDERS[orderId]?.customer === principal ? undefined : `order ${orderId} belongs to another customer`),
  run: async ({ orderId, amount }, { key }) => {
    refunds.push({ key, orderId, amount });
    return { refunded: amount };
  },
});
const cancelOrder = defineTool({
  name: 'cancel_order',
  description: 'Cancel an order.',
  input: z.object({ orderId: z.string() }),
  output: z.object({ cancelled: z.string() }),
  reversibility: 'reversible',
  validate: orderExists,
  run: async ({ orderId }, { key }) => {
    cancels.push({ key, orderId });
    return { cancelled: orderId };
  },
});

const agent = defineAgent({
  name: 'orders',
  description: 'handles orders',
  input: z.object({ q: z.string() }),
  system: 'order desk',
  tools: [lookupOrder, issueRefund, cancelOrder],
  approvals: { autoApprove: ['issue_refund'] },
  prompt: (i) => i.q,
});

const principals = {
  alice: { tools: ['lookup_order', 'issue_refund'], maxAmount: 100 },
  bob: { tools: ['lookup_order', 'issue_refund', 'cancel_order'] },
  ops: {},
};
/** Host without a default principal, and one whose default is alice, on separate prefixes. */
const strict = { prefix: 'gates', principals } satisfies TroupeConfigInput;
const defaulted = { prefix: 'gatesdef', principals, defaultPrincipal: 'alice' } satisfies TroupeConfigInput;

const use = (name: string, input: Record<string, unknown>) => ({ content: [{ type: 'tool_use' as const, name, input }] });
/** The first user message of each case: the simulator picks the case's script by it. */
const Q = {
  hallucinate: 'case hallucinated-tool',
  schema: 'case schema-invalid-args',
  validate: 'case missing-order',
  notListed: 'case tool-not-granted',
  amount: 'case amount-over-limit',
  authorize: 'case authorize-hook',
  defaulted: 'case default-principal',
  unknownPrincipal: 'case unknown-principal',
  noPrincipal: 'case no-principal',
};
const scenario: ScenarioInput = {
  name: 'gates',
  scripts: [
    { name: 'hallucinate', match: { firstUser: Q.hallucinate }, turns: [use('refund_everything', { all: true }), use('lookup_order', { orderId: 'A-1' }), { text: 'Status: {{lastToolResult.status}}' }] },
    { name: 'schema', match: { firstUser: Q.schema }, turns: [use('issue_refund', { orderId: 'A-1', amount: 'lots' }), use('issue_refund', { orderId: 'A-1', amount: 20 }), { text: 'Refunded {{lastToolResult.refunded}}' }] },
    { name: 'validate', match: { firstUser: Q.validate }, turns: [use('lookup_order', { orderId: 'A-999' }), { text: 'Sorry: {{lastToolResult}}' }] },
    { name: 'not-listed', match: { firstUser: Q.notListed }, turns: [use('cancel_order', { orderId: 'A-1' }), use('lookup_order', { orderId: 'A-1' }), { text: 'Status: {{lastToolResult.status}}' }] },
    { name: 'amount', match: { firstUser: Q.amount }, turns: [use('issue_refund', { orderId: 'A-1', amount: 500 }), use('issue_refund', { orderId: 'A-1', amount: 50 }), { text: 'Refunded {{lastToolResult.refunded}}' }] },
    { name: 'authorize', match: { firstUser: Q.authorize }, turns: [use('issue_refund', { orderId: 'A-2', amount: 10 }), { text: 'Cannot: {{lastToolResult}}' }] },
    { name: 'defaulted', match: { firstUser: Q.defaulted }, turns: [use('cancel_order', { orderId: 'A-1' }), use('lookup_order', { orderId: 'A-1' }), { text: 'Status: {{lastToolResult.status}}' }] },
    // Reached only if intake let a refused task through.
    { name: 'refused', match: { firstUser: 'principal' }, turns: [use('cancel_order', { orderId: 'A-1' }), { text: 'Cancelled.' }] },
  ],
};

let nats: NatsTestContext;
let sim: SimulatorHandle;
let tap: ModelTap;
let hosts: Array<Awaited<ReturnType<typeof startHost>>> = [];

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({ scenario });
  tap = await startModelTap(sim.url);
  const model = () => createAnthropicModelClient({ apiKey: 'k', baseURL: tap.url });
  hosts = [await startHost(nats.url, [agent], model(), strict), await startHost(nats.url, [agent], model(), defaulted)];
});
afterAll(async () => {
  for (const h of hosts) await h.stop();
  await tap?.close();
  await sim?.close();
  await nats?.close();
});

/** Submits a task, waits for its end, and returns its events and the model requests it made. */
async function runTask(prefix: string, taskId: string, q: string, principal?: string): Promise<{ events: TaskEvent[]; requests: TappedRequest[] }> {
  const { verdict } = await submit(nats.nc, nats.js, 'orders', { taskId, input: { q }, ...(principal !== undefined ? { principal } : {}) }, { prefix });
  expect(await verdict).toEqual({ taskId, status: 'accepted' });
  const events = await eventsUntilEnd(nats.js, taskId, { prefix });
  return { events, requests: tap.conversation(q) };
}

/**
 * The first call (step 0) was refused with `code`: the request after it carries an `is_error`
 * tool result for that very tool_use with the structured error, and the task recorded a
 * `rejected` tool event. Returns the error the model saw.
 */
function expectRefused(taskId: string, tool: string, { events, requests }: { events: TaskEvent[]; requests: TappedRequest[] }, code: string): { code: string; message: string } {
  expect(requests.length).toBeGreaterThanOrEqual(2);
  const asked = requests[1]!.messages.at(-2)!;
  const use = (asked.content as Array<{ type: string; id?: string; name?: string }>).find((b) => b.type === 'tool_use')!;
  expect(use.name).toBe(tool);
  const results = toolResultsOf(requests[1]!);
  expect(results).toHaveLength(1);
  expect(results[0]).toMatchObject({ tool_use_id: use.id, is_error: true });
  const seen = JSON.parse(resultText(results[0]!)) as { error: { code: string; message: string } };
  expect(seen.error.code).toBe(code);
  expect(events.find((e) => e.type === 'tool' && e.key === `${taskId}/0/1`)).toMatchObject({ tool, status: 'rejected', error: { code } });
  return seen.error;
}

const done = (events: TaskEvent[]) => {
  const last = events.at(-1)!;
  expect(last.type).toBe('done');
  return (last as Extract<TaskEvent, { type: 'done' }>).output;
};

describe('gate 1, schema', () => {
  it('refuses a hallucinated tool name, lists the real tools, and the model re-plans with a valid call', async () => {
    const run = await runTask('gates', 'g-hallucinate', Q.hallucinate, 'ops');
    const error = expectRefused('g-hallucinate', 'refund_everything', run, 'unknown_tool');
    expect(error.message).toContain('"refund_everything"');
    expect(error.message).toContain('lookup_order, issue_refund, cancel_order');
    // Nothing ran for the refused call; the re-planned lookup did.
    expect(ranFor(refunds, 'g-hallucinate')).toEqual([]);
    expect(ranFor(cancels, 'g-hallucinate')).toEqual([]);
    expect(ranFor(lookups, 'g-hallucinate')).toEqual([{ key: 'g-hallucinate/1/1', orderId: 'A-1' }]);
    expect(done(run.events)).toBe('Status: shipped');
  });

  it('refuses arguments that do not parse, naming the field, before the refund runs', async () => {
    const run = await runTask('gates', 'g-schema', Q.schema, 'ops');
    const error = expectRefused('g-schema', 'issue_refund', run, 'invalid_tool_arguments');
    expect(error.message).toContain('amount');
    expect(ranFor(refunds, 'g-schema')).toEqual([{ key: 'g-schema/1/1', orderId: 'A-1', amount: 20 }]);
    expect(done(run.events)).toBe('Refunded 20');
  });
});

describe('gate 2, semantic', () => {
  it("refuses an order id the tool's validate does not know; the model tells the user", async () => {
    const run = await runTask('gates', 'g-validate', Q.validate, 'ops');
    const error = expectRefused('g-validate', 'lookup_order', run, 'invalid_tool_arguments');
    expect(error.message).toContain('order A-999 does not exist');
    expect(ranFor(lookups, 'g-validate')).toEqual([]);
    const output = done(run.events) as string;
    expect(output).toMatch(/^Sorry: /);
    expect(JSON.parse(output.slice('Sorry: '.length))).toEqual({ error: error });
  });
});

describe('gate 3, authorization', () => {
  it("refuses a tool that is not in the principal's list, before it runs", async () => {
    const run = await runTask('gates', 'g-not-listed', Q.notListed, 'alice');
    const error = expectRefused('g-not-listed', 'cancel_order', run, 'permission_denied');
    expect(error.message).toContain('principal "alice" may not call "cancel_order"');
    expect(ranFor(cancels, 'g-not-listed')).toEqual([]);
    expect(ranFor(lookups, 'g-not-listed')).toEqual([{ key: 'g-not-listed/1/1', orderId: 'A-1' }]);
    expect(done(run.events)).toBe('Status: shipped');
  });

  it("refuses an amount over the principal's maxAmount; a smaller refund then runs once", async () => {
    const run = await runTask('gates', 'g-amount', Q.amount, 'alice');
    const error = expectRefused('g-amount', 'issue_refund', run, 'permission_denied');
    expect(error.message).toContain('up to 100; this one is for 500');
    expect(ranFor(refunds, 'g-amount')).toEqual([{ key: 'g-amount/1/1', orderId: 'A-1', amount: 50 }]);
    expect(done(run.events)).toBe('Refunded 50');
  });

  it("refuses what the tool's authorize hook objects to; the model sees why", async () => {
    const run = await runTask('gates', 'g-authorize', Q.authorize, 'alice');
    const error = expectRefused('g-authorize', 'issue_refund', run, 'permission_denied');
    expect(error.message).toContain('order A-2 belongs to another customer');
    expect(ranFor(refunds, 'g-authorize')).toEqual([]);
    const output = done(run.events) as string;
    expect(output).toContain('permission_denied');
    expect(output).toContain('belongs to another customer');
  });

  it('applies defaultPrincipal to a task that names none', async () => {
    const run = await runTask('gatesdef', 'g-default', Q.defaulted);
    const error = expectRefused('g-default', 'cancel_order', run, 'permission_denied');
    // alice's grant (not "no principal", which may call nothing, nor every tool).
    expect(error.message).toContain('principal "alice" may not call "cancel_order"');
    expect(ranFor(cancels, 'g-default')).toEqual([]);
    expect(ranFor(lookups, 'g-default')).toEqual([{ key: 'g-default/1/1', orderId: 'A-1' }]);
    expect(done(run.events)).toBe('Status: shipped');
    const envelope = (await (await new Kvm(nats.js).open('gatesdef_snapshots')).get('g-default'))!.json<{ principal?: string }>();
    expect(envelope.principal).toBe('alice');
  });
});

describe('intake', () => {
  async function expectUnknownPrincipal(taskId: string, q: string, principal: string | undefined, says: string) {
    const s = subjects('gates');
    const { verdict } = await submit(nats.nc, nats.js, 'orders', { taskId, input: { q }, ...(principal !== undefined ? { principal } : {}) }, { prefix: 'gates' });
    expect(await verdict).toMatchObject({ taskId, error: { code: 'unknown_principal', message: expect.stringContaining(says) } });
    const rejected = await nats.jsm.streams.getMessage(s.streams.rejected, { last_by_subj: s.rejected('orders') });
    expect(rejected?.json()).toMatchObject({ taskId, agent: 'orders', error: { code: 'unknown_principal' } });
    expect(await (await new Kvm(nats.js).open('gates_snapshots')).get(taskId)).toBeNull();
    expect(tap.conversation(q)).toEqual([]);
    expect(ranFor(cancels, taskId)).toEqual([]);
  }

  it('rejects a task whose principal is not configured', async () => {
    await expectUnknownPrincipal('g-mallory', Q.unknownPrincipal, 'mallory', 'principal "mallory" is not configured');
  });

  it('rejects a task that names no principal when principals are configured and there is no default', async () => {
    await expectUnknownPrincipal('g-nobody', Q.noPrincipal, undefined, 'set "principal" in the task message');
  });
});
