import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { runTroupe } from '../helpers/cli.ts';
import { startHost } from '../helpers/host.ts';
import { spender, spenderScenario } from '../helpers/spender.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** An approver at a terminal: create a key, see what waits, approve it. */

let nats: NatsTestContext;
let sim: SimulatorHandle;
let host: Awaited<ReturnType<typeof startHost>>;
const keyFile = path.join(mkdtempSync(path.join(tmpdir(), 'troupe-key-')), 'approver.nk');
const troupe = (args: string[]) => runTroupe(nats.url, args);

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({ scenario: spenderScenario() });
});
afterAll(async () => {
  await host?.stop();
  await sim?.close();
  await nats?.close();
});

describe('troupe approver-key, approvals and approve', () => {
  it('lets an approver with a configured key grant more budget to a parked task', async () => {
    const created = await troupe(['approver-key', 'new', '--key', keyFile, '--name', 'Ada']);
    expect(created.code, created.stderr).toBe(0);
    const publicKey = /public key: (U[A-Z2-7]{55})/.exec(created.stdout)![1]!;
    expect(created.stdout).toContain(`"approvers": [{"name":"Ada","publicKey":"${publicKey}"}]`);
    expect((await troupe(['approver-key', 'new', '--key', keyFile])).code).toBe(1);

    const client = createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url, routing: { default: { model: 'claude-opus-4-6', maxTokens: 4096 }, roles: {} } });
    host = await startHost(nats.url, [spender], client, { approvers: [{ name: 'Ada', publicKey }] });
    await submit(nats.nc, nats.js, 'spender', { taskId: 'cli-esc', input: { q: 'spend' } });

    let listed = await troupe(['approvals']);
    for (let i = 0; i < 50 && !listed.stdout.includes('cli-esc.usd'); i++) listed = await troupe(['approvals']);
    expect(listed.stdout).toMatch(/^cli-esc\.usd\.\S+$/m);
    expect(listed.stdout).toContain('usd limit reached');
    const requestId = /^(cli-esc\.usd\.\S+)$/m.exec(listed.stdout)![1]!;

    const wrongKey = path.join(path.dirname(keyFile), 'other.nk');
    await troupe(['approver-key', 'new', '--key', wrongKey]);
    const refused = await troupe(['approve', requestId, '--approve', '--key', wrongKey]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('refused: unknown_approver');

    const approved = await troupe(['approve', requestId, '--approve', '--grant', '0.5', '--key', keyFile]);
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toContain('approved: task cli-esc continues');
    const events = await eventsUntilEnd(nats.js, 'cli-esc');
    expect(events.at(-1)).toMatchObject({ type: 'done', output: 'All done.' });
    expect((await troupe(['approvals'])).stdout).toContain('nothing is waiting');
  }, 90_000);
});
