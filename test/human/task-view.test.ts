import { mkdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMachine } from 'xstate';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { formatEvent } from '../../cli/print-events.ts';
import { refundDesk } from '../../examples/refund-desk/agent.ts';
import { ApproverClient } from '../../human/approver-client.ts';
import { startApproverServer, statechartOf, summarize, type ApproverServer, type StatechartNode } from '../../human/web/index.ts';
import { agentLoopMachine } from '../../machines/agent-loop.machine.ts';
import { connectNats } from '../../runtime/connection.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { chromiumNote, hasChromium, launchChromium } from '../helpers/browser.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { spender, spenderScenario } from '../helpers/spender.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** The task view beside the approver page: statechart extraction, HTTP guards, then a real browser following a task. */

const ada = createUser();
let nats: NatsTestContext;
let sim: SimulatorHandle;
let host: Awaited<ReturnType<typeof startHost>>;
let approver: ApproverClient;

beforeAll(async () => {
  nats = await startNats();
  // Slow model turns, so the page can be seen in `thinking` before it moves on.
  const scenario = spenderScenario();
  scenario.scripts = scenario.scripts?.map((s) => ({ ...s, latencyMs: 700 }));
  sim = await startSimulator({ scenario });
  const model = createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url, routing: { default: { model: 'claude-opus-4-6', maxTokens: 4096 }, roles: {} } });
  host = await startHost(nats.url, [spender], model, { approvers: [{ name: 'Ada', publicKey: ada.getPublicKey() }] });
  approver = await ApproverClient.connect(await connectNats({ servers: [nats.url], name: 'troupe-test-approver' }), { key: ada });
});
afterAll(async () => {
  await approver?.close();
  await host?.stop();
  await sim?.close();
  await nats?.close();
});

const withTasks = (extra: Partial<Parameters<typeof startApproverServer>[0]> = {}) =>
  startApproverServer({ client: approver, port: 0, tasks: { agents: [spender, refundDesk], js: nats.js, prefix: 'troupe', formatEvent }, ...extra });

type Reply = { status: number; headers: Record<string, string | string[] | undefined>; body: string };

function http(url: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
const cookieOf = (r: Reply) => String((r.headers['set-cookie'] as string[] | undefined)?.[0] ?? '').split(';')[0]!;
const at = (server: ApproverServer, p: string) => new URL(p, server.url).href;
const find = (node: StatechartNode, p: string): StatechartNode | undefined => (node.path === p ? node : node.states.map((c) => find(c, p)).find(Boolean));

describe('summarize', () => {
  it('gives a task its place in the tree: the task that delegated it and the ones it delegated to', () => {
    const env = { v: 1 as const, taskId: 'p-0-1-1', agent: 'triage', machineVersion: '1', status: 'parked' as const, runSeq: null, runDelivery: 1, owner: null, createdAt: 1, updatedAt: 2, deadlineAt: null, state: 'acting', step: 0, snapshot: null, parent: { taskId: 'p', key: 'p/0/1' }, children: { 'p-0-1-1-0-1-1': { agent: 'billing', key: 'p-0-1-1/0/1' } }, waiting: { reason: 'children' as const, key: 'p-0-1-1/0/1', children: ['p-0-1-1-0-1-1'], join: 'all' as const, since: 1 } };
    expect(summarize(env, 3)).toMatchObject({ parent: 'p', children: [{ taskId: 'p-0-1-1-0-1-1', agent: 'billing' }], waiting: 'child tasks: p-0-1-1-0-1-1' });
  });
});

describe('statechartOf', () => {
  it('draws the agent loop: its states, initial state, invoked actors and labelled transitions', () => {
    const chart = statechartOf(agentLoopMachine);
    expect(chart).toMatchObject({ key: 'agent-loop', path: '', type: 'compound', initial: 'thinking' });
    expect(chart.states.map((s) => [s.key, s.type])).toEqual([
      ['thinking', 'atomic'],
      ['acting', 'atomic'],
      ['done', 'final'],
      ['failed', 'final'],
    ]);
    const thinking = find(chart, 'thinking')!;
    expect(thinking.invokes).toEqual(['model']);
    expect(thinking.transitions).toEqual([
      { event: 'always', targets: ['failed'], guard: 'stepsExhausted' },
      { event: 'done: model', targets: ['acting'], guard: 'guarded' },
      { event: 'done: model', targets: ['thinking'], guard: 'guarded' },
      { event: 'done: model', targets: ['done'] },
      { event: 'error: model', targets: ['failed'] },
    ]);
    expect(find(chart, 'acting')!.transitions).toContainEqual({ event: 'done: tools', targets: ['thinking'] });
  });

  it('draws workflows and nested, parallel and delayed states with dotted paths', () => {
    expect(statechartOf(refundDesk.machine).states.map((s) => s.key)).toEqual(['lookup', 'classify', 'decide', 'ticket', 'triage', 'done', 'failed']);
    const machine = createMachine({
      id: 'order',
      initial: 'review',
      on: { CANCEL: '.cancelled' },
      states: {
        review: {
          initial: 'waiting',
          states: { waiting: { on: { OK: 'approved' }, after: { 500: 'late' } }, late: {}, approved: { type: 'final' } },
          onDone: 'ship',
        },
        ship: { type: 'parallel', states: { pack: {}, bill: {} } },
        cancelled: { type: 'final' },
      },
    });
    const chart = statechartOf(machine);
    expect(chart.transitions).toEqual([{ event: 'CANCEL', targets: ['cancelled'] }]);
    const waiting = find(chart, 'review.waiting')!;
    expect(waiting.transitions).toEqual(expect.arrayContaining([{ event: 'OK', targets: ['review.approved'] }, { event: 'after 500 ms', targets: ['review.late'] }]));
    expect(find(chart, 'review')).toMatchObject({ type: 'compound', initial: 'waiting', transitions: [{ event: 'done', targets: ['ship'] }] });
    expect(find(chart, 'ship')).toMatchObject({ type: 'parallel', states: [{ path: 'ship.pack' }, { path: 'ship.bill' }] });
  });
});

describe('task view over HTTP', () => {
  it('serves the pages with the approver page guards, and the JSON API behind a session', async () => {
    await using server = await withTasks();
    const list = await http(at(server, '/tasks'));
    expect(list.status).toBe(200);
    expect(list.headers['content-security-policy']).toContain("default-src 'self'");
    expect(list.headers['x-frame-options']).toBe('DENY');
    expect(list.body).toContain('href="/"');
    expect(list.body).not.toMatch(/<script>|<style>/);
    const cookie = cookieOf(list);
    expect(cookie).toMatch(/^troupe_session=/);
    // The approver page links to the task view.
    expect((await http(server.url)).body).toContain('href="/tasks"');

    expect((await http(at(server, '/api/tasks'))).status).toBe(401);
    expect((await http(at(server, '/api/stream/tasks'))).status).toBe(401);
    const api = await http(at(server, '/api/tasks'), { Cookie: cookie });
    expect(api.status).toBe(200);
    expect(Array.isArray(JSON.parse(api.body))).toBe(true);
    expect((await http(at(server, '/api/tasks/nobody-here'), { Cookie: cookie })).status).toBe(404);
    expect((await http(at(server, '/tasks/not.a.task'), { Cookie: cookie })).status).toBe(404);
    expect((await http(at(server, '/tasks'), { Host: `evil.example:${new URL(server.url).port}` })).status).toBe(421);
    expect((await http(at(server, '/task-view.js'))).headers['content-type']).toContain('text/javascript');
  });

  it('is only served when asked for, and beyond loopback only with the access token', async () => {
    await using plain = await startApproverServer({ client: approver, port: 0 });
    expect((await http(at(plain, '/tasks'))).status).toBe(404);
    expect((await http(plain.url)).body).not.toContain('href="/tasks"');
    const token = 'a-long-enough-access-token-for-tests';
    await using open = await withTasks({ host: '0.0.0.0', accessToken: token });
    expect((await http(at(open, '/tasks'))).status).toBe(401);
    expect((await http(at(open, '/api/tasks'))).status).toBe(401);
    const entry = await http(at(open, `/tasks?token=${token}`));
    expect(entry.status).toBe(200);
    expect((await http(at(open, '/api/tasks'), { Cookie: cookieOf(entry) })).status).toBe(200);
  });

  it('describes one task: envelope without the snapshot, events, timeline lines and statechart', async () => {
    await using server = await withTasks();
    const { verdict } = await submit(nats.nc, nats.js, 'spender', { taskId: 'tv-api', input: { q: 'spend' } });
    await verdict;
    const cookie = cookieOf(await http(at(server, '/tasks')));
    let body: Record<string, any> = {};
    await expect
      .poll(async () => {
        const r = await http(at(server, '/api/tasks/tv-api'), { Cookie: cookie });
        body = r.status === 200 ? JSON.parse(r.body) : {};
        return body.summary?.status;
      }, { timeout: 20_000 })
      .toBe('parked');
    expect(body.envelope).toMatchObject({ taskId: 'tv-api', agent: 'spender', status: 'parked' });
    expect(body.envelope).not.toHaveProperty('snapshot');
    expect(body.summary.pending).toMatchObject({ kind: 'limit', what: expect.stringContaining('more usd') });
    expect(body.statechart).toMatchObject({ key: 'agent-loop', states: expect.arrayContaining([expect.objectContaining({ key: 'thinking' })]) });
    expect(body.events[0]).toMatchObject({ type: 'accepted', agent: 'spender' });
    expect(body.timeline).toContainEqual(expect.objectContaining({ type: 'accepted', line: 'accepted by agent spender' }));
    const request = (await approver.pending()).find((r) => r.taskId === 'tv-api')!;
    expect(await approver.decide(request, { verdict: 'reject', reason: 'test over' })).toMatchObject({ ok: true });
  }, 40_000);
});

describe.skipIf(!hasChromium)(`task view in headless Chromium${chromiumNote}`, () => {
  it('lists a new task live, draws its statechart, follows the current state and the timeline to the end', async () => {
    await using server = await withTasks();
    const browser = await launchChromium();
    try {
      const problems: string[] = [];
      const listPage = await browser.newPage({ viewport: { width: 1200, height: 700 } });
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      for (const p of [listPage, page]) {
        p.on('pageerror', (e) => problems.push(e.message));
        p.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
      }
      await listPage.goto(at(server, '/tasks'));
      await listPage.locator('#status', { hasText: 'live' }).waitFor();
      await listPage.evaluate(() => ((window as unknown as { loadedOnce: boolean }).loadedOnce = true));

      // The task page may be opened before the task exists: it follows it once it starts.
      await page.goto(at(server, '/tasks/tv-web'));
      await page.locator('#status', { hasText: 'live' }).waitFor();
      await page.locator('#task-status', { hasText: 'no such task yet' }).waitFor();
      await page.evaluate(() => {
        // Every state the page highlights, in order, however briefly.
        const seen: string[] = [];
        (window as unknown as { seen: string[] }).seen = seen;
        new MutationObserver(() => {
          const now = document.querySelector('.state.current')?.getAttribute('data-path');
          if (now && seen.at(-1) !== now) seen.push(now);
        }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['class'] });
      });

      await submit(nats.nc, nats.js, 'spender', { taskId: 'tv-web', input: { q: 'spend' } });

      const row = listPage.locator('tr[data-task-id="tv-web"]');
      await row.waitFor({ timeout: 20_000 });
      expect(await row.locator('td').nth(1).textContent()).toBe('spender');
      expect(await listPage.evaluate(() => (window as unknown as { loadedOnce?: boolean }).loadedOnce)).toBe(true);

      // The machine's states as boxes, nested in the machine's own box.
      for (const state of ['thinking', 'acting', 'done', 'failed']) await page.locator(`.state.root .state[data-path="${state}"]`).waitFor({ timeout: 20_000 });
      expect(await page.locator('.state[data-path="thinking"] ul.transitions').textContent()).toContain('done: model [guarded] → acting');
      await page.locator('.state.current[data-path="thinking"]').waitFor({ timeout: 10_000 });

      // The spender's budget runs out and it parks for an approver.
      await page.locator('#task-status', { hasText: 'parked' }).waitFor({ timeout: 20_000 });
      await page.locator('#task-pending', { hasText: 'more usd' }).waitFor();
      await expect.poll(() => listPage.locator('tr[data-task-id="tv-web"]').getAttribute('data-status'), { timeout: 10_000 }).toBe('parked');
      expect(await listPage.locator('tr[data-task-id="tv-web"]').textContent()).toContain('more usd');
      const timeline = page.locator('#timeline li');
      await expect.poll(() => page.locator('#timeline').textContent(), { timeout: 10_000 }).toContain('asking an approver');
      const beforeApproval = await timeline.count();
      expect(await timeline.first().textContent()).toContain('accepted by agent spender');
      mkdirSync('test-output', { recursive: true });
      await page.screenshot({ path: path.join('test-output', 'task-view-parked.png'), fullPage: true });

      const request = (await approver.pending()).find((r) => r.taskId === 'tv-web');
      expect(request).toBeDefined();
      expect(await approver.decide(request!, { verdict: 'approve', grant: 0.5 })).toMatchObject({ ok: true });

      await page.locator('.state.current[data-path="done"]', { hasText: 'done' }).waitFor({ timeout: 20_000 });
      await page.locator('#task-status', { hasText: 'done' }).waitFor();
      await page.locator('#timeline li.ev-done').waitFor({ timeout: 10_000 });
      expect(await timeline.count()).toBeGreaterThan(beforeApproval);
      expect(await page.locator('#timeline').textContent()).toContain('decision approve by Ada');
      expect(await page.locator('#task-outcome').textContent()).toContain('All done.');
      const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
      expect(seen[0]).toBe('thinking');
      expect(seen).toContain('acting');
      expect(seen.at(-1)).toBe('done');
      await page.screenshot({ path: path.join('test-output', 'task-view-done.png'), fullPage: true });

      await expect.poll(() => listPage.locator('tr[data-task-id="tv-web"]').getAttribute('data-status'), { timeout: 10_000 }).toBe('done');
      await listPage.screenshot({ path: path.join('test-output', 'task-view-list.png'), fullPage: true });
      const events = await eventsUntilEnd(nats.js, 'tv-web');
      expect(events.at(-1)).toMatchObject({ type: 'done', output: 'All done.' });
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 90_000);
});
