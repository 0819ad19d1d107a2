import { mkdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { ApproverClient } from '../../human/approver-client.ts';
import { startApproverServer, type ApproverServer } from '../../human/web/index.ts';
import { connectNats } from '../../runtime/connection.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { spender, spenderScenario } from '../helpers/spender.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { chromiumNote, hasChromium, launchChromium } from '../helpers/browser.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** The approver's web page: its HTTP guards, then a real browser approving a parked task. */

const ada = createUser();
const seed = new TextDecoder().decode(ada.getSeed());
const TOKEN = 'a-long-enough-access-token-for-tests';
let nats: NatsTestContext;
let sim: SimulatorHandle;
let host: Awaited<ReturnType<typeof startHost>>;
let approver: ApproverClient;

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({ scenario: spenderScenario() });
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

type Reply = { status: number; headers: Record<string, string | string[] | undefined>; body: string };

/** A raw HTTP request, so tests control every header (Host, Origin, Cookie) a browser would set. */
function http(url: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const cookieOf = (r: Reply) => String((r.headers['set-cookie'] as string[] | undefined)?.[0] ?? '').split(';')[0]!;
const csrfOf = (html: string) => /<meta name="troupe-csrf" content="([^"]+)">/.exec(html)?.[1] ?? '';

async function session(server: ApproverServer, first = '') {
  const page = await http(new URL(first, server.url).href);
  return { cookie: cookieOf(page), csrf: csrfOf(page.body), page };
}

function post(server: ApproverServer, s: { cookie: string; csrf?: string }, body: unknown, headers: Record<string, string> = {}) {
  const origin = new URL(server.url).origin;
  return http(new URL('/api/decisions', server.url).href, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Cookie: s.cookie, Origin: origin, ...(s.csrf ? { 'X-Troupe-CSRF': s.csrf } : {}), ...headers },
    body: JSON.stringify(body),
  });
}

describe('approver page over HTTP', () => {
  it('serves the page on loopback with strict headers and keeps the key in the process', async () => {
    await using server = await startApproverServer({ client: approver, port: 0 });
    const { cookie, csrf, page } = await session(server);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.headers['content-security-policy']).toContain("default-src 'self'");
    expect(page.headers['x-frame-options']).toBe('DENY');
    expect(page.headers['cache-control']).toBe('no-store');
    expect(page.headers['set-cookie']?.[0]).toMatch(/HttpOnly; SameSite=Strict/);
    expect(csrf.length).toBeGreaterThan(20);
    expect(page.body).not.toMatch(/<script>|<style>/);

    const js = await http(new URL('/app.js', server.url).href, { headers: { Cookie: cookie } });
    expect(js.status).toBe(200);
    const list = await http(new URL('/api/requests', server.url).href, { headers: { Cookie: cookie } });
    expect(list.status).toBe(200);
    expect(JSON.parse(list.body)).toEqual([]);
    for (const body of [page.body, js.body, list.body]) expect(body).not.toContain(seed);
    expect((await http(new URL('/api/requests', server.url).href)).status).toBe(401);
    // DNS rebinding: a page whose name resolves to 127.0.0.1 still sends its own Host.
    expect((await http(server.url, { headers: { Host: `evil.example:${new URL(server.url).port}` } })).status).toBe(421);
  });

  it('refuses to bind beyond loopback without an access token', async () => {
    await expect(startApproverServer({ client: approver, port: 0, host: '0.0.0.0' })).rejects.toThrow(/accessToken/);
  });

  it('with an access token, lets in only requests that present it, then a session cookie', async () => {
    await using server = await startApproverServer({ client: approver, port: 0, host: '0.0.0.0', accessToken: TOKEN });
    expect((await http(server.url)).status).toBe(401);
    expect((await http(new URL('/api/requests', server.url).href)).status).toBe(401);
    expect((await http(new URL('/api/events', server.url).href)).status).toBe(401);
    expect((await http(new URL('/?token=wrong', server.url).href)).status).toBe(401);
    const entry = await http(new URL(`/?token=${TOKEN}`, server.url).href);
    expect(entry.status).toBe(303);
    expect(entry.headers.location).toBe('/');
    const cookie = cookieOf(entry);
    expect(cookie).toMatch(/^troupe_session=/);
    expect(entry.headers['set-cookie']?.[0]).toMatch(/HttpOnly; SameSite=Strict/);
    const page = await http(server.url, { headers: { Cookie: cookie } });
    expect(page.status).toBe(200);
    const forged = await http(server.url, { headers: { Cookie: `${cookie.slice(0, -3)}xyz` } });
    expect(forged.status).toBe(401);
    const missing = await post(server, { cookie, csrf: csrfOf(page.body) }, { requestId: 'nope.usd.1', verdict: 'approve' });
    expect(missing.status).toBe(404);
  });

  it('refuses decisions without the CSRF header, from another origin, or for no pending request', async () => {
    await using server = await startApproverServer({ client: approver, port: 0 });
    const s = await session(server);
    const decision = { requestId: 'ghost.usd.1', verdict: 'approve' };

    const noCsrf = await post(server, { cookie: s.cookie }, decision);
    expect(noCsrf.status).toBe(403);
    expect(JSON.parse(noCsrf.body)).toMatchObject({ ok: false, error: { code: 'csrf' } });
    // A CSRF token from another session is no good either.
    const other = await session(server);
    expect((await post(server, { cookie: s.cookie, csrf: other.csrf }, decision)).status).toBe(403);

    const foreign = await post(server, s, decision, { Origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    expect(JSON.parse(foreign.body)).toMatchObject({ ok: false, error: { code: 'cross_origin' } });
    const noOrigin = await http(new URL('/api/decisions', server.url).href, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Cookie: s.cookie, 'X-Troupe-CSRF': s.csrf },
      body: JSON.stringify(decision),
    });
    expect(noOrigin.status).toBe(403);
    const byReferer = await post(server, s, decision, { Origin: '', Referer: server.url });
    expect(byReferer.status).toBe(404);

    const ghost = await post(server, s, decision);
    expect(ghost.status).toBe(404);
    expect(JSON.parse(ghost.body)).toMatchObject({ ok: false, error: { code: 'not_found', message: expect.stringContaining('ghost.usd.1') } });
    const malformed = await post(server, s, { requestId: 'ghost.usd.1', verdict: 'maybe' });
    expect(malformed.status).toBe(422);
  });
});

describe.skipIf(!hasChromium)(`approver page in headless Chromium${chromiumNote}`, () => {
  it('shows a new request live, approves it with a click, and the task completes', async () => {
    await using server = await startApproverServer({ client: approver, port: 0 });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
      const problems: string[] = [];
      page.on('pageerror', (e) => problems.push(e.message));
      page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
      await page.goto(server.url);
      await page.locator('#status', { hasText: 'live' }).waitFor();
      await page.locator('#empty').waitFor({ state: 'visible' });
      await page.evaluate(() => ((window as unknown as { loadedOnce: boolean }).loadedOnce = true));

      await submit(nats.nc, nats.js, 'spender', { taskId: 'web-esc', input: { q: 'spend' } });
      const item = page.locator('li[data-request-id^="web-esc.usd."]');
      await item.waitFor({ timeout: 20_000 });
      expect(await page.evaluate(() => (window as unknown as { loadedOnce?: boolean }).loadedOnce)).toBe(true);
      await expect.poll(() => item.textContent()).toContain('waiting');

      await item.click();
      const detail = page.locator('#detail');
      await detail.locator('#approve').waitFor();
      const text = await detail.textContent();
      expect(text).toContain('Grant more usd?');
      expect(text).toContain('usd limit reached');
      expect(text).toMatch(/Spent so far\$\d+\.\d{4}, \d+ tokens, \d+ steps/);
      mkdirSync('test-output', { recursive: true });
      await page.screenshot({ path: path.join('test-output', 'approver-page.png'), fullPage: true });

      await detail.locator('#grant').fill('0.5');
      await detail.locator('#approve').click();
      const outcome = page.locator('#outcome.ok');
      await outcome.waitFor({ timeout: 15_000 });
      expect(await outcome.textContent()).toContain('Approved: applied; task web-esc continues.');
      const events = await eventsUntilEnd(nats.js, 'web-esc');
      expect(events.at(-1)).toMatchObject({ type: 'done', output: 'All done.' });
      // The decided request leaves the list on its own, and the outcome stays readable.
      await page.locator('#empty').waitFor({ state: 'visible', timeout: 10_000 });
      expect(await page.locator('#requests li').count()).toBe(0);
      expect(await page.locator('#detail').textContent()).toContain('no longer waiting');
      await page.screenshot({ path: path.join('test-output', 'approver-page-decided.png'), fullPage: true });
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 90_000);
});
