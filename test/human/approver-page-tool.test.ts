import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { ApproverClient } from '../../human/approver-client.ts';
import { startApproverServer } from '../../human/web/index.ts';
import { connectNats } from '../../runtime/connection.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { chromiumNote, hasChromium, launchChromium } from '../helpers/browser.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** The approver's web page on a tool request: what it shows, and its Edit box, in a real browser. */

/** Payments actually sent: the side effect under test. */
const payments: { to: string; amount: number }[] = [];
const sendPayment = defineTool({
  name: 'send_payment',
  description: 'Send money to a supplier. Cannot be undone.',
  input: z.object({ to: z.string().regex(/^SUP-\d+$/), amount: z.number().positive().max(1000) }),
  output: z.object({ sent: z.number(), to: z.string() }),
  reversibility: 'irreversible',
  run: async (args) => {
    payments.push(args);
    return { sent: args.amount, to: args.to };
  },
});
const payer = defineAgent({
  name: 'payer',
  description: 'pays suppliers',
  input: z.object({ q: z.string() }),
  system: 'payment desk',
  tools: [sendPayment],
  prompt: (i) => i.q,
});

const ada = createUser();
const ASKED = { to: 'SUP-7', amount: 120 };
let nats: NatsTestContext;
let sim: SimulatorHandle;
let host: Awaited<ReturnType<typeof startHost>>;
let approver: ApproverClient;

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({
    scenario: {
      name: 'payments',
      scripts: [{ name: 'payer', turns: [{ content: [{ type: 'tool_use', name: 'send_payment', input: ASKED }] }, { text: 'Outcome: {{lastToolResult}}' }] }],
    },
  });
  host = await startHost(nats.url, [payer], createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }), { approvers: [{ name: 'Ada', publicKey: ada.getPublicKey() }] });
  approver = await ApproverClient.connect(await connectNats({ servers: [nats.url], name: 'troupe-test-approver' }), { key: ada });
});
afterAll(async () => {
  await approver?.close();
  await host?.stop();
  await sim?.close();
  await nats?.close();
});

describe.skipIf(!hasChromium)(`approver page on a tool request in headless Chromium${chromiumNote}`, () => {
  it('shows the call, refuses an edit that breaks the schema on the page, and runs a valid edit with the new arguments', async () => {
    await using server = await startApproverServer({ client: approver, port: 0 });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const problems: string[] = [];
      const refusedLoads: string[] = [];
      page.on('pageerror', (e) => problems.push(e.message));
      page.on('console', (m) => {
        if (m.type() !== 'error') return;
        // Chromium logs every non-2xx fetch; the refused edit is meant to get a 422.
        if (/Failed to load resource: the server responded with a status of 422/.test(m.text())) refusedLoads.push(m.text());
        else problems.push(m.text());
      });
      await page.goto(server.url);
      await page.locator('#status', { hasText: 'live' }).waitFor();
      await page.locator('#empty').waitFor({ state: 'visible' });
      await page.evaluate(() => ((window as unknown as { loadedOnce: boolean }).loadedOnce = true));

      // 1. The request appears without a reload, and its surface says what would run and why.
      await submit(nats.nc, nats.js, 'payer', { taskId: 'web-tool', input: { q: 'pay supplier 7' } });
      const item = page.locator('li[data-request-id^="web-tool.tool."]');
      await item.waitFor({ timeout: 20_000 });
      expect(await page.evaluate(() => (window as unknown as { loadedOnce?: boolean }).loadedOnce)).toBe(true);
      expect(await item.locator('.title').textContent()).toBe('Run send_payment');
      await item.click();
      const detail = page.locator('#detail');
      await detail.locator('#edit').waitFor();
      expect(await detail.locator('h2').textContent()).toBe('Run send_payment?');
      const field = (label: string) => detail.locator(`dt:text-is("${label}") + dd`);
      expect(await field('Tool').textContent()).toBe('send_payment — Send money to a supplier. Cannot be undone.');
      expect(await field('Reversibility').locator('.badge.irreversible').textContent()).toBe('irreversible');
      expect(JSON.parse((await detail.locator('#args').textContent()) ?? '')).toEqual(ASKED);
      expect(await field('Escalated because').locator('.badge').allTextContents()).toEqual(['irreversible']);
      expect(await field('Why you are asked').textContent()).toBe('send_payment needs approval: "send_payment" cannot be undone');
      expect(payments).toEqual([]);
      mkdirSync('test-output', { recursive: true });
      await page.screenshot({ path: path.join('test-output', 'approver-page-tool.png'), fullPage: true });

      // 2. The Edit box opens prefilled; arguments that break the schema are refused, visibly.
      const argsBox = detail.locator('#edit-args');
      expect(await argsBox.isVisible()).toBe(false);
      await detail.locator('#edit').click();
      await argsBox.waitFor({ state: 'visible' });
      expect(JSON.parse(await argsBox.inputValue())).toEqual(ASKED);
      const outcome = page.locator('#outcome');

      await argsBox.fill('{"to": "SUP-7", "amount": ');
      await detail.locator('#send-edit').click();
      await page.locator('#outcome.error').waitFor();
      expect(await outcome.textContent()).toMatch(/^The arguments are not valid JSON: /);

      await argsBox.fill(JSON.stringify({ to: 'SUP-7', amount: 5000 }));
      await detail.locator('#send-edit').click();
      await expect.poll(() => outcome.textContent(), { timeout: 15_000 }).toMatch(/^Refused \(invalid_edit\)/);
      expect(await outcome.getAttribute('class')).toBe('error');
      const refusal = (await outcome.textContent()) ?? '';
      expect(refusal).toContain("the edited arguments do not match send_payment's schema");
      expect(refusal).toMatch(/amount: .*1000/);
      // Refused over HTTP as well (422), not merely a message painted by the page.
      await expect.poll(() => refusedLoads.length).toBe(1);
      // The task is still waiting on the same request, and the form keeps what was typed.
      expect(await item.count()).toBe(1);
      expect(await detail.locator('#send-edit').isEnabled()).toBe(true);
      expect(JSON.parse(await argsBox.inputValue())).toEqual({ to: 'SUP-7', amount: 5000 });
      expect(payments).toEqual([]);
      await page.screenshot({ path: path.join('test-output', 'approver-page-tool-refused.png'), fullPage: true });

      // 3. A valid edit is applied, and the tool runs with exactly the edited arguments.
      const edited = { to: 'SUP-8', amount: 75 };
      await argsBox.fill(JSON.stringify(edited, null, 2));
      await detail.locator('#send-edit').click();
      await page.locator('#outcome.ok').waitFor({ timeout: 15_000 });
      expect(await outcome.textContent()).toBe('Approved with edited arguments: applied; task web-tool continues.');
      const events = await eventsUntilEnd(nats.js, 'web-tool');
      expect(events.find((e) => e.type === 'decision')).toMatchObject({ verdict: 'edit', approverName: 'Ada' });
      expect(events.at(-1)).toMatchObject({ type: 'done', output: `Outcome: ${JSON.stringify({ sent: 75, to: 'SUP-8' })}` });
      expect(payments).toEqual([edited]);
      await page.locator('#empty').waitFor({ state: 'visible', timeout: 10_000 });
      expect(await detail.textContent()).toContain('no longer waiting');
      await page.screenshot({ path: path.join('test-output', 'approver-page-tool-decided.png'), fullPage: true });
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 90_000);
});
