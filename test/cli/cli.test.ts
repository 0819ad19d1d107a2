import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Kvm, type KV } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContentBlock, ModelCallRequest } from '../../actors/model/model-client.ts';
import { supportDesk } from '../../examples/support-desk/agent.ts';
import { startHost } from '../helpers/host.ts';
import { runTroupe, type Run } from '../helpers/cli.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { scriptedModel, turnOf } from '../helpers/scripted-model.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/**
 * The real `troupe` command, spawned as a child process against a real nats-server and an
 * in-process host running the repository's support-desk example with a scripted model.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ORDER_ID = /[A-Z]-\d{3,}/;

/**
 * The support desk's model: looks up the order named in the customer's message, then answers
 * with the order's status. When the lookup is refused (no such order) it keeps trying, which
 * runs the task into its step cap: a task that ends `failed`.
 */
const model = scriptedModel((req: ModelCallRequest): ContentBlock[] => {
  const first = req.messages[0]!.content as string;
  const customer = /^Customer (.+) writes:/.exec(first)?.[1] ?? 'there';
  const orderId = ORDER_ID.exec(first)?.[0];
  if (!orderId) return [{ type: 'text', text: `Hi ${customer}, which order do you mean?` }];
  const turn = turnOf(req);
  if (turn === 0) return [{ type: 'tool_use', id: `tu_${turn}`, name: 'lookup_order', input: { orderId } }];
  const last = req.messages[req.messages.length - 1]!;
  const result = (last.content as Array<{ type: string; content?: string; is_error?: boolean }>)[0]!;
  if (result.is_error) return [{ type: 'tool_use', id: `tu_${turn}`, name: 'lookup_order', input: { orderId } }];
  const order = JSON.parse(result.content!) as { status: string; carrier: string | null };
  return [{ type: 'text', text: `Hi ${customer}, order ${orderId} is ${order.status}${order.carrier ? ` with ${order.carrier}` : ''}.` }];
});

let nats: NatsTestContext;
let host: Awaited<ReturnType<typeof startHost>>;
let snapshots: KV;

/** A task submitted in-process and finished before the CLI tests that read tasks. */
const SEEDED = 'cli-seeded-1';
const SEEDED_REPLY = 'Hi Grace, order A-1003 is delivered with UPS.';

beforeAll(async () => {
  nats = await startNats();
  host = await startHost(nats.url, [supportDesk], model);
  snapshots = await new Kvm(nats.js).open('troupe_snapshots');
  const { verdict } = await submit(nats.nc, nats.js, 'support-desk', { taskId: SEEDED, input: { customer: 'Grace', message: 'Did order A-1003 arrive?' } });
  expect(await verdict).toEqual({ taskId: SEEDED, status: 'accepted' });
  expect((await eventsUntilEnd(nats.js, SEEDED)).at(-1)).toMatchObject({ type: 'done', output: SEEDED_REPLY });
});
afterAll(async () => {
  await host?.stop();
  await nats?.close();
});

/** Runs `node bin/troupe.js ...args` in the repository, against the test server. */
function troupe(args: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Run> {
  return runTroupe(nats?.url, args, options);
}

const show = (r: Run) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
const tasksStreamSeq = async () => (await nats.jsm.streams.info('TROUPE_TASKS')).state.last_seq;

describe('troupe: arguments', () => {
  it('with no arguments exits 2 and prints the usage and every command', async () => {
    const r = await troupe([]);
    expect(r.code, show(r)).toBe(2);
    const out = r.stdout + r.stderr;
    expect(out).toContain('usage: troupe <command> [options]');
    for (const c of ['up', 'host', 'submit', 'status', 'tasks', 'agents', 'demo']) expect(out).toMatch(new RegExp(`^ {2}${c} +\\S`, 'm'));
  });

  it('exits 2 on an unknown command, naming it, with the usage on stderr', async () => {
    const r = await troupe(['frobnicate']);
    expect(r.code, show(r)).toBe(2);
    expect(r.stderr).toContain('troupe: unknown command "frobnicate"');
    expect(r.stderr).toContain('usage: troupe <command>');
    expect(r.stdout).toBe('');
  });

  it('exits 2 on an unknown option, with the command usage', async () => {
    const r = await troupe(['submit', 'support-desk', '--inptu', '{}']);
    expect(r.code, show(r)).toBe(2);
    expect(r.stderr).toContain('--inptu');
    expect(r.stderr).toContain("usage: troupe submit <agent> --input '<json>'");
  });

  it('--help exits 0 with the usage on stdout', async () => {
    const r = await troupe(['--help']);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toContain('usage: troupe <command>');
    const sub = await troupe(['status', '--help']);
    expect(sub.code, show(sub)).toBe(0);
    expect(sub.stdout).toBe('usage: troupe status <taskId> [--json]\n');
  }, 60_000);
});

describe('troupe agents', () => {
  it('--json lists support-desk with its subject, tools, input JSON schema and example input', async () => {
    const r = await troupe(['agents', '--json']);
    expect(r.code, show(r)).toBe(0);
    const agents = JSON.parse(r.stdout) as Array<Record<string, any>>;
    const desk = agents.find((a) => a.name === 'support-desk');
    expect(desk, r.stdout).toBeDefined();
    expect(desk).toMatchObject({
      name: 'support-desk',
      description: supportDesk.description,
      version: '1',
      subject: 'troupe.tasks.support-desk',
      tools: ['lookup_order'],
      exampleInput: { customer: 'Ada', message: 'Hi, where is my order A-1001? It has been a week.' },
    });
    expect(desk!.inputSchema).toMatchObject({
      type: 'object',
      properties: { customer: { type: 'string', minLength: 1 }, message: { type: 'string', minLength: 1, maxLength: 4000 } },
    });
    expect([...desk!.inputSchema.required].sort()).toEqual(['customer', 'message']);
    // The example it advertises is accepted by the agent's own schema.
    expect(supportDesk.input.safeParse(desk!.exampleInput).success).toBe(true);
  });

  it('without --json prints a ready-to-run example', async () => {
    const r = await troupe(['agents']);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toContain('support-desk  (version 1, subject troupe.tasks.support-desk)');
    expect(r.stdout).toContain('tools: lookup_order');
    expect(r.stdout).toContain(`example: troupe submit support-desk --input '${JSON.stringify(supportDesk.exampleInput)}' --wait`);
  });
});

describe('troupe submit', () => {
  it('--wait runs the task to done, prints the reply on stdout and exits 0', async () => {
    const taskId = 'cli-ok-1';
    const r = await troupe(['submit', 'support-desk', '--input', JSON.stringify({ customer: 'Ada', message: 'Where is my order A-1001?' }), '--task-id', taskId, '--wait']);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toBe('Hi Ada, order A-1001 is shipped with DHL.\n');
    expect(r.stderr).toContain(`task ${taskId} accepted`);
    expect(r.stderr).toContain('tool lookup_order({"orderId":"A-1001"}) succeeded');
    expect(r.stderr).toContain('done');
    // It really ran on the host: the tool was called once, and the snapshot says done.
    const events = await eventsUntilEnd(nats.js, taskId);
    expect(events.filter((e) => e.type === 'tool')).toMatchObject([{ tool: 'lookup_order', status: 'succeeded', key: `${taskId}/0/1` }]);
    const env = (await snapshots.get(taskId))!.json<Record<string, any>>();
    expect(env).toMatchObject({ agent: 'support-desk', status: 'done', outcome: { status: 'done', output: 'Hi Ada, order A-1001 is shipped with DHL.' } });

    const status = await troupe(['status', taskId, '--json']);
    expect(status.code, show(status)).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ taskId, status: 'done', outcome: { output: 'Hi Ada, order A-1001 is shipped with DHL.' } });
  }, 60_000);

  it('--json --wait prints every event as a JSON line, ending with done', async () => {
    const r = await troupe(['submit', 'support-desk', '--input', JSON.stringify({ customer: 'Bo', message: 'Any news on A-1002?' }), '--task-id', 'cli-json-1', '--wait', '--json']);
    expect(r.code, show(r)).toBe(0);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; taskId: string; output?: unknown });
    expect(events[0]).toMatchObject({ type: 'accepted', taskId: 'cli-json-1' });
    expect(events.at(-1)).toEqual(expect.objectContaining({ type: 'done', output: 'Hi Bo, order A-1002 is processing.' }));
    expect(events.every((e) => e.taskId === 'cli-json-1')).toBe(true);
  }, 60_000);

  it('without --wait prints the taskId and exits 0 once the host accepted it', async () => {
    const r = await troupe(['submit', 'support-desk', '--input', JSON.stringify({ customer: 'Cy', message: 'Status of A-1004?' }), '--task-id', 'cli-nowait-1']);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toBe('cli-nowait-1\n');
    expect((await eventsUntilEnd(nats.js, 'cli-nowait-1')).at(-1)).toMatchObject({ type: 'done', output: 'Hi Cy, order A-1004 is cancelled.' });
  }, 60_000);

  it('exits 1 with the error code on stderr when the host rejects the input', async () => {
    const r = await troupe(['submit', 'support-desk', '--input', JSON.stringify({ customer: '' }), '--task-id', 'cli-rejected-1', '--wait']);
    expect(r.code, show(r)).toBe(1);
    expect(r.stderr).toContain('rejected: invalid_input:');
    expect(r.stderr).toContain('customer');
    expect(r.stderr).toContain('message');
    expect(r.stdout).toBe('');
    expect(await snapshots.get('cli-rejected-1')).toBeNull();
  }, 60_000);

  it('exits 1 with unknown_agent for an agent nobody runs', async () => {
    const r = await troupe(['submit', 'no-such-agent', '--input', '{}', '--task-id', 'cli-noagent-1']);
    expect(r.code, show(r)).toBe(1);
    expect(r.stderr).toContain('rejected: unknown_agent:');
    expect(r.stderr).toContain('troupe agents');
  }, 60_000);

  it('exits 1 and shows the failure when the task ends failed', async () => {
    // No such order: lookup_order refuses, the model keeps asking the same thing, and the
    // supervisor stops the task once three consecutive steps repeat an earlier one.
    const r = await troupe(['submit', 'support-desk', '--input', JSON.stringify({ customer: 'Dee', message: 'Where is A-9999?' }), '--task-id', 'cli-failed-1', '--wait']);
    expect(r.code, show(r)).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('tool lookup_order({"orderId":"A-9999"}) rejected by the semantic gate');
    expect(r.stderr).toContain('order A-9999 does not exist');
    expect(r.stderr).toContain('failed: limit_exceeded:');
    const env = (await snapshots.get('cli-failed-1'))!.json<Record<string, any>>();
    expect(env).toMatchObject({ status: 'failed', outcome: { status: 'failed', error: { code: 'limit_exceeded', details: { limit: 'noProgress', used: 3, max: 3 } } } });
    expect(env.step).toBe(3);
  }, 60_000);

  it('exits non-zero without publishing anything when --input is not JSON', async () => {
    const before = await tasksStreamSeq();
    const r = await troupe(['submit', 'support-desk', '--input', '{customer: Ada', '--task-id', 'cli-badjson-1']);
    expect(r.code, show(r)).toBe(1);
    expect(r.stderr).toContain('troupe submit: --input is not valid JSON');
    expect(r.stderr).toContain('[invalid_json]');
    expect(r.stdout).toBe('');
    expect(await tasksStreamSeq()).toBe(before);
  });

  it('exits non-zero when --input is missing, saying it is required', async () => {
    const before = await tasksStreamSeq();
    const r = await troupe(['submit', 'support-desk']);
    expect(r.code, show(r)).toBe(1);
    expect(r.stderr).toContain("--input '<json>' is required");
    expect(await tasksStreamSeq()).toBe(before);
  });

  it('exits non-zero when no agent is named', async () => {
    const r = await troupe(['submit', '--input', '{}']);
    expect(r.code, show(r)).toBe(1);
    expect(r.stderr).toContain('name the agent');
  });

  it('resubmitting a finished taskId right away reports a duplicate and the result, without waiting for a verdict that never comes', async () => {
    const input = JSON.stringify({ customer: 'Eve', message: 'Where is A-1001?' });
    const first = await troupe(['submit', 'support-desk', '--input', input, '--task-id', 'cli-dup-1', '--wait']);
    expect(first.code, show(first)).toBe(0);
    // Same Nats-Msg-Id inside JetStream's duplicate window: the message is dropped at the stream,
    // no host ever sees it, so no verdict will arrive on Troupe-Reply-To.
    const again = await troupe(['submit', 'support-desk', '--input', input, '--task-id', 'cli-dup-1', '--wait'], { timeoutMs: 40_000 });
    expect(again.code, show(again)).toBe(0);
    expect(again.stderr).toContain('already submitted');
    expect(again.stdout).toBe(first.stdout);
    expect(again.ms).toBeLessThan(10_000);
  }, 90_000);
});

describe('troupe status', () => {
  it('prints a task’s status and output', async () => {
    const r = await troupe(['status', SEEDED]);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^task +${SEEDED}$`, 'm'));
    expect(r.stdout).toMatch(/^agent +support-desk \(machine version 1\)$/m);
    expect(r.stdout).toMatch(/^status +done$/m);
    expect(r.stdout).toMatch(/^state +done \(step 1\)$/m);
    expect(r.stdout).toContain(`output    ${SEEDED_REPLY}`);
    expect(r.stdout).toMatch(/^usage +2 model calls, 1 tool calls/m);
  });

  it('--json prints the envelope without the machine snapshot', async () => {
    const r = await troupe(['status', SEEDED, '--json']);
    expect(r.code, show(r)).toBe(0);
    const env = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(env).toMatchObject({ v: 1, taskId: SEEDED, agent: 'support-desk', status: 'done', state: 'done', outcome: { status: 'done', output: SEEDED_REPLY } });
    expect(env).not.toHaveProperty('snapshot');
    expect(typeof env.revision).toBe('number');
  });

  it('exits 1 with a not-found message for an unknown task', async () => {
    const r = await troupe(['status', 'nope']);
    expect(r.code, show(r)).toBe(1);
    expect(r.stderr).toContain('no task "nope"');
    expect(r.stderr).toContain('troupe tasks');
    expect(r.stderr).toContain('[not_found]');
    expect(r.stdout).toBe('');
  });

  it('exits non-zero when no taskId is given', async () => {
    const r = await troupe(['status']);
    expect(r.code, show(r)).toBe(1);
    expect(r.stderr).toContain('troupe status <taskId>');
  });

  it('exits 1 with a clear message when NATS is unreachable', async () => {
    const r = await troupe(['status', SEEDED], { env: { NATS_URL: 'nats://127.0.0.1:1' } });
    expect(r.code, show(r)).toBe(1);
    expect(r.stderr).toContain('cannot connect to NATS at nats://127.0.0.1:1');
    expect(r.stderr).toContain('[not_found]');
  });
});

describe('troupe tasks', () => {
  it('lists the tasks with their agent and status', async () => {
    const r = await troupe(['tasks']);
    expect(r.code, show(r)).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]!.trimEnd()).toMatch(/^TASK +AGENT +STATUS +STATE +STEP +COST +UPDATED$/);
    expect(lines.find((l) => l.startsWith(`${SEEDED} `))).toMatch(new RegExp(`^${SEEDED} +support-desk +done +done +1 +\\$0\\.0000 +\\d{4}-`));
  });

  it('--json prints one envelope per line, most recently updated first', async () => {
    const r = await troupe(['tasks', '--json']);
    expect(r.code, show(r)).toBe(0);
    const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { taskId: string; status: string; updatedAt: number });
    expect(rows.find((t) => t.taskId === SEEDED)).toMatchObject({ status: 'done' });
    const times = rows.map((t) => t.updatedAt);
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(rows.every((t) => !('snapshot' in t))).toBe(true);
  });

  it('--limit caps the list and says how many more there are', async () => {
    const all = (await troupe(['tasks', '--json'])).stdout.trim().split('\n').length;
    expect(all).toBeGreaterThanOrEqual(2);
    const r = await troupe(['tasks', '--limit', '1']);
    expect(r.code, show(r)).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe(`(${all - 1} more; --limit N)`);
  }, 60_000);

  it('refuses a --limit that is not a number instead of claiming there are no tasks', async () => {
    const r = await troupe(['tasks', '--limit', 'ten']);
    expect(r.stdout, show(r)).not.toContain('no tasks yet');
    expect(r.code, show(r)).not.toBe(0);
    expect(r.stderr).toContain('--limit');
  });
});
