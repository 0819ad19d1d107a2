import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Subscription } from '@nats-io/nats-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { ErrorCode, RetryableError } from '../../common/errors.ts';
import type { TroupeConfigInput } from '../../config/schema.ts';
import type { TaskEvent } from '../../runtime/wire.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startSimulator, type ScenarioInput, type SimulatorHandle } from '../../simulator/index.ts';
import { archiveOrder, fetchReport } from '../fixtures/tools-under-test.ts';
import { tempDir } from '../helpers/child-host.ts';
import { runTroupe } from '../helpers/cli.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';
import { startWorker, type TestWorker } from '../helpers/worker.ts';
import { resultText, startModelTap, toolResultsOf, type ModelTap } from './model-tap.ts';

/**
 * Isolated tools on in-process workers (`troupe.tools.<tool>`, one queue group), what the model
 * sees when no worker runs a tool, and the retry policy of tool calls.
 */

const config = { prefix: 'wk', tools: { maxAttempts: 3, retryBackoffMs: 5 } } satisfies TroupeConfigInput;

/** Attempts per call key: the side effect of the retry tools. */
const attempts = new Map<string, number>();
const attempt = (key: string) => {
  const n = (attempts.get(key) ?? 0) + 1;
  attempts.set(key, n);
  return n;
};
const syncInventory = defineTool({
  name: 'sync_inventory',
  description: 'Push stock levels to the warehouse system.',
  // Fails its first `failures` attempts of a call: retryably, or with a plain Error.
  input: z.object({ failures: z.number().int().min(0), error: z.enum(['retryable', 'plain']) }),
  output: z.object({ synced: z.boolean(), attempt: z.number() }),
  reversibility: 'reversible',
  run: async ({ failures, error }, { key }) => {
    const n = attempt(key);
    if (n <= failures) throw error === 'retryable' ? new RetryableError(ErrorCode.toolFailed, `warehouse busy (attempt ${n})`) : new Error(`warehouse refused (attempt ${n})`);
    return { synced: true, attempt: n };
  },
});
const chargeCard = defineTool({
  name: 'charge_card',
  description: 'Charge the card on file. Cannot be undone.',
  input: z.object({ amount: z.number().positive() }),
  output: z.object({ charged: z.number() }),
  reversibility: 'irreversible',
  run: async (_args, { key }) => {
    const n = attempt(key);
    throw new RetryableError(ErrorCode.toolFailed, `payment gateway timed out (attempt ${n})`);
  },
});

const agent = defineAgent({
  name: 'ops',
  description: 'runs tools on workers',
  input: z.object({ q: z.string() }),
  system: 'ops desk',
  tools: [fetchReport, archiveOrder, syncInventory, chargeCard],
  approvals: { autoApprove: ['charge_card'] },
  prompt: (i) => i.q,
});

const once = (name: string, input: Record<string, unknown>) => [{ content: [{ type: 'tool_use' as const, name, input }] }, { text: 'Result: {{lastToolResult}}' }];
const Q = {
  report: 'fetch the status report',
  archive: 'archive order A-7',
  flaky: 'sync inventory, flaky twice',
  down: 'sync inventory, warehouse down',
  refused: 'sync inventory, warehouse refuses',
  charge: 'charge the card',
};
const scenario: ScenarioInput = {
  name: 'workers',
  scripts: [
    { name: 'report', match: { firstUser: Q.report }, turns: once('fetch_report', { kind: 'plain' }) },
    { name: 'archive', match: { firstUser: Q.archive }, turns: once('archive_order', { orderId: 'A-7' }) },
    { name: 'flaky', match: { firstUser: Q.flaky }, turns: once('sync_inventory', { failures: 2, error: 'retryable' }) },
    { name: 'down', match: { firstUser: Q.down }, turns: once('sync_inventory', { failures: 10, error: 'retryable' }) },
    { name: 'refused', match: { firstUser: Q.refused }, turns: once('sync_inventory', { failures: 10, error: 'plain' }) },
    { name: 'charge', match: { firstUser: Q.charge }, turns: once('charge_card', { amount: 12 }) },
  ],
};

let nats: NatsTestContext;
let sim: SimulatorHandle;
let tap: ModelTap;
let host: Awaited<ReturnType<typeof startHost>>;
const workers: TestWorker[] = [];

/** Every tool reply a worker sent (they go to the host's request inboxes), with the worker that sent it. */
const replies: Array<{ worker: string; ok: boolean; result?: unknown }> = [];
let replySnoop: Subscription;

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({ scenario });
  tap = await startModelTap(sim.url);
  host = await startHost(nats.url, [agent], createAnthropicModelClient({ apiKey: 'k', baseURL: tap.url }), config);
  replySnoop = nats.nc.subscribe('_INBOX.>');
  void (async () => {
    for await (const m of replySnoop) {
      try {
        const body = m.json<Record<string, unknown>>();
        if (typeof body.worker === 'string' && typeof body.ok === 'boolean') replies.push(body as (typeof replies)[number]);
      } catch {
        // not a tool reply
      }
    }
  })();
  await nats.nc.flush(); // the server has the subscription before any call is made
});
// A worker left running would answer the next test's calls.
afterEach(async () => {
  for (const w of workers.splice(0)) await w.stop();
});
afterAll(async () => {
  replySnoop?.unsubscribe();
  await host?.stop();
  await tap?.close();
  await sim?.close();
  await nats?.close();
});

async function worker(workerId: string): Promise<TestWorker> {
  const w = await startWorker(nats.url, [fetchReport], config, { workerId });
  workers.push(w);
  return w;
}

let seq = 0;
/** Runs one task to its end; returns its output and its events. */
async function runTask(q: string, timeoutMs = 20_000) {
  const taskId = `wk-${seq++}`;
  const { verdict } = await submit(nats.nc, nats.js, 'ops', { taskId, input: { q } }, { prefix: config.prefix });
  expect(await verdict).toEqual({ taskId, status: 'accepted' });
  const events = await eventsUntilEnd(nats.js, taskId, { prefix: config.prefix, timeoutMs });
  const last = events.at(-1)!;
  expect(last).toMatchObject({ type: 'done' });
  return { taskId, events, output: (last as Extract<TaskEvent, { type: 'done' }>).output as string };
}
/** The tool event of a task's first call. */
const toolEvent = (taskId: string, events: TaskEvent[]) => events.find((e) => e.type === 'tool' && e.key === `${taskId}/0/1`);

describe('thread tools on workers', () => {
  it('runs a thread tool on an in-process worker; the task completes with its result', async () => {
    await worker('w-solo');
    const { taskId, events, output } = await runTask(Q.report);
    expect(output).toBe('Result: {"body":"all systems nominal"}');
    expect(toolEvent(taskId, events)).toMatchObject({ tool: 'fetch_report', status: 'succeeded' });
    expect(replies).toContainEqual({ ok: true, result: { body: 'all systems nominal' }, replayed: false, worker: 'w-solo' });
  });

  it('shares calls between two workers of the queue group, each call answered once', async () => {
    await worker('w-a');
    await worker('w-b');
    const before = replies.length;
    const n = 16;
    const runs = await Promise.all(Array.from({ length: n }, () => runTask(Q.report)));
    for (const r of runs) expect(r.output).toBe('Result: {"body":"all systems nominal"}');
    const served = replies.slice(before);
    // One reply per call (a call is never run by both), from one of the two.
    expect(served).toHaveLength(n);
    const by = (id: string) => served.filter((r) => r.worker === id && r.ok).length;
    expect(by('w-a') + by('w-b')).toBe(n);
    // Random queue-group delivery: all 16 on one worker has probability 2^-15.
    expect(by('w-a')).toBeGreaterThan(0);
    expect(by('w-b')).toBeGreaterThan(0);
  });

  it('with no worker for a thread tool, the call ends as tool_unavailable, the model sees it, and the task completes', async () => {
    const started = Date.now();
    const { taskId, events, output } = await runTask(Q.archive, 25_000);
    expect(Date.now() - started).toBeLessThan(25_000);
    expect(toolEvent(taskId, events)).toMatchObject({ tool: 'archive_order', status: 'unavailable', error: { code: 'tool_unavailable' } });
    expect(output).toMatch(/^Result: /);
    const seen = JSON.parse(output.slice('Result: '.length)) as { error: { code: string; message: string } };
    expect(seen.error).toMatchObject({ code: 'tool_unavailable', message: expect.stringContaining('no worker ran tool "archive_order"') });
    // What the model received was an error result, not a success.
    const request = tap.conversation(Q.archive)[1]!;
    expect(toolResultsOf(request)[0]).toMatchObject({ is_error: true });
    expect(resultText(toolResultsOf(request)[0]!)).toBe(output.slice('Result: '.length));
  }, 30_000);
});

describe('retries', () => {
  it('retries a reversible tool that fails retryably twice: three calls, and the third result reaches the model', async () => {
    const { taskId, output } = await runTask(Q.flaky);
    expect(attempts.get(`${taskId}/0/1`)).toBe(3);
    expect(JSON.parse(output.slice('Result: '.length))).toEqual({ synced: true, attempt: 3 });
  });

  it('stops after tools.maxAttempts and hands the last error to the model', async () => {
    const { taskId, events, output } = await runTask(Q.down);
    expect(attempts.get(`${taskId}/0/1`)).toBe(3);
    expect(toolEvent(taskId, events)).toMatchObject({ status: 'failed', error: { code: 'tool_failed', message: 'warehouse busy (attempt 3)' } });
    expect(JSON.parse(output.slice('Result: '.length))).toEqual({ error: { code: 'tool_failed', message: 'warehouse busy (attempt 3)' } });
  });

  it('never retries an error that is not retryable', async () => {
    const { taskId, output } = await runTask(Q.refused);
    expect(attempts.get(`${taskId}/0/1`)).toBe(1);
    expect(output).toContain('warehouse refused (attempt 1)');
  });

  it('never retries an irreversible tool, even on a retryable error', async () => {
    const { taskId, events, output } = await runTask(Q.charge);
    expect(attempts.get(`${taskId}/0/1`)).toBe(1);
    expect(toolEvent(taskId, events)).toMatchObject({ tool: 'charge_card', status: 'failed', error: { code: 'tool_failed' } });
    expect(JSON.parse(output.slice('Result: '.length))).toEqual({ error: { code: 'tool_failed', message: 'payment gateway timed out (attempt 1)' } });
  });
});

describe('troupe worker', () => {
  it('refuses to serve an inline tool, saying it is inline', async () => {
    const dir = tempDir('troupe-worker-cli-');
    const file = path.join(dir, 'troupe.config.json');
    const agentModule = fileURLToPath(new URL('../fixtures/tools-under-test.ts', import.meta.url));
    writeFileSync(file, JSON.stringify({ prefix: 'wkcli', agents: [agentModule] }));
    const r = await runTroupe(nats.url, ['worker', '--tools', 'read_note', '--config', file], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(r.stderr).toContain('tool "read_note" is inline');
    expect(r.stderr).toContain('[invalid_config]');
  }, 40_000);
});
