import { spender, spenderScenario } from '../helpers/spender.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import path from 'node:path';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { createUser } from '@nats-io/nkeys';
import { connect } from '@nats-io/transport-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Host } from '../../actors/host.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { compileConfig } from '../../config/load.ts';
import { ApproverClient } from '../../human/approver-client.ts';
import { writeNatsConfig, type NatsConfig, type NatsRole } from '../../runtime/nats-config/nats-config.ts';
import { connectNats } from '../../runtime/connection.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** A nats-server run with `troupe nats-config`'s file: each role can do its job and nothing else. */

const encoder = new TextEncoder();
const ada = createUser();
let dir: string;
let conf: NatsConfig;
let server: { url: string; child: ChildProcess };
let sim: SimulatorHandle;
let host: Host | undefined;
const conns: NatsConnection[] = [];

async function as(role: NatsRole): Promise<{ nc: NatsConnection; js: JetStreamClient }> {
  const nc = await connect({ servers: [server.url], user: conf.users[role].user, pass: conf.users[role].password, name: `perm-${role}` });
  conns.push(nc);
  return { nc, js: jetstream(nc) };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** `nats-server -c <file>`, resolved once it accepts clients. */
function startServer(c: NatsConfig): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn('nats-server', ['-c', c.file], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`nats-server not ready:\n${log}`)), 15_000);
    child.once('exit', (code) => reject(new Error(`nats-server exited with ${code}:\n${log}`)));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      log += d;
      if (log.includes('Server is ready')) {
        clearTimeout(timer);
        resolve({ url: c.url, child });
      }
    });
  });
}

/** Publishes through JetStream (a request for a PubAck): resolves to the ack, or rejects as the server refused. */
const jsPublish = (js: JetStreamClient, subject: string) => js.publish(subject, encoder.encode('{}'), { timeout: 3000 });

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'troupe-perm-'));
  const storeDir = path.join(dir, 'store');
  conf = writeNatsConfig({ file: path.join(dir, 'nats.conf'), port: await freePort(), storeDir, users: { submitters: { user: 'alice' } } });
  // Started with the file alone: startEmbeddedServer's -sd would clash with the file's store_dir
  // ("Duplicate 'store_dir' configuration"), so this runs nats-server exactly as an operator would.
  server = await startServer(conf);
  sim = await startSimulator({ scenario: spenderScenario() });
  const hostNc = await connectNats({ servers: [server.url], name: 'perm-host', user: conf.users.hosts.user, password: conf.users.hosts.password });
  conns.push(hostNc);
  const model = createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url, routing: { default: { model: 'claude-opus-4-6', maxTokens: 4096 }, roles: {} } });
  host = new Host({ nc: hostNc, config: compileConfig({ approvers: [{ name: 'Ada', publicKey: ada.getPublicKey() }] }), agents: [spender], model, logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) });
  await host.start();
}, 30_000);

afterAll(async () => {
  await host?.close();
  for (const nc of conns) await nc.close().catch(() => {});
  await sim?.close();
  server?.child.kill('SIGTERM');
  if (server) await new Promise((r) => server.child.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
});

describe('writeNatsConfig', () => {
  it('writes a private file with three users, random passwords and the given names', () => {
    expect(statSync(conf.file).mode & 0o777).toBe(0o600);
    const text = readFileSync(conf.file, 'utf8');
    expect(conf.users.submitters.user).toBe('alice');
    expect(conf.users.hosts.user).toBe('troupe-hosts');
    expect(new Set([conf.users.hosts.password, conf.users.submitters.password, conf.users.approvers.password]).size).toBe(3);
    for (const u of Object.values(conf.users)) expect(text).toContain(JSON.stringify(u.password));
    expect(conf.permissions.submitters.publish).not.toContain('troupe.decisions.*');
    expect(conf.permissions.approvers.publish).not.toContain('troupe.tasks.*');
  });

  it('refuses a connection without a known user', async () => {
    await expect(connect({ servers: [server.url], user: 'alice', pass: 'wrong', reconnect: false })).rejects.toThrow(/Authorization/i);
  });
});

describe('transport permissions', () => {
  it('lets a submitter publish tasks but refuses its decisions', async () => {
    const { js, nc } = await as('submitters');
    const statuses: string[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === 'error') statuses.push(String(s.error));
    })();
    await expect(jsPublish(js, 'troupe.decisions.x')).rejects.toThrow(/Permissions Violation for Publish to "troupe.decisions.x"/);
    await expect(jsPublish(js, 'troupe.tasks.rejected.spender')).rejects.toThrow(/Permissions Violation/);
    expect((await jsPublish(js, 'troupe.tasks.demo')).stream).toBe('TROUPE_TASKS');
    expect(statuses.join('\n')).toContain('Permissions Violation for Publish to "troupe.decisions.x"');
    // Nor may it read the task queue (taking tasks meant for hosts) or manage streams.
    await expect(nc.request('$JS.API.CONSUMER.CREATE.TROUPE_TASKS', encoder.encode('{}'), { timeout: 3000 })).rejects.toThrow(/Permissions Violation/);
    await expect(nc.request('$JS.API.STREAM.DELETE.TROUPE_EVENTS', encoder.encode(''), { timeout: 3000 })).rejects.toThrow(/Permissions Violation/);
    expect(nc.isClosed()).toBe(false);
  });

  it('lets an approver publish decisions but refuses its tasks and writes to the snapshot bucket', async () => {
    const { js } = await as('approvers');
    await expect(jsPublish(js, 'troupe.tasks.demo')).rejects.toThrow(/Permissions Violation for Publish to "troupe.tasks.demo"/);
    await expect(jsPublish(js, '$KV.troupe_snapshots.forged')).rejects.toThrow(/Permissions Violation/);
    await expect(js.publish('$JS.API.STREAM.PURGE.KV_troupe_snapshots', encoder.encode(''), { timeout: 3000 })).rejects.toThrow(/Permissions Violation/);
    expect((await jsPublish(js, 'troupe.decisions.x')).stream).toBe('TROUPE_DECISIONS');
  });

  it('lets the hosts user do both', async () => {
    const { js } = await as('hosts');
    expect((await jsPublish(js, 'troupe.tasks.demo')).stream).toBe('TROUPE_TASKS');
    expect((await jsPublish(js, 'troupe.decisions.y')).stream).toBe('TROUPE_DECISIONS');
  });

  it('runs a task submitted by the submitter user and approved by the approver user to its end', async () => {
    const submitter = await as('submitters');
    const approver = await ApproverClient.connect((await as('approvers')).nc, { key: ada });
    let changes = 0;
    const stopWatching = await approver.watch(() => changes++);
    const { verdict } = await submit(submitter.nc, submitter.js, 'spender', { taskId: 'perm-1', input: { q: 'spend' } });
    expect(await verdict).toMatchObject({ taskId: 'perm-1', status: 'accepted' });

    let request = (await approver.pending()).find((r) => r.taskId === 'perm-1');
    for (let i = 0; i < 100 && !request; i++) {
      await new Promise((r) => setTimeout(r, 100));
      request = (await approver.pending()).find((r) => r.taskId === 'perm-1');
    }
    expect(request).toMatchObject({ kind: 'limit', agent: 'spender' });
    for (let i = 0; i < 50 && changes === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(changes).toBeGreaterThan(0);
    stopWatching();
    expect(await approver.decide(request!, { verdict: 'approve', grant: 0.5 })).toMatchObject({ ok: true });

    const events = await eventsUntilEnd(submitter.js, 'perm-1');
    expect(events.at(-1)).toMatchObject({ type: 'done', output: 'All done.' });
  }, 60_000);
});
