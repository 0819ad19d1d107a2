import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitTask } from '../../cli/commands/submit.ts';
import { connectClient, serverConfigFile, urlFile, usersFile } from '../../cli/connect.ts';
import { startStack, type Stack } from '../../cli/stack.ts';
import { loadConfig, type LoadedConfig } from '../../config/load.ts';
import { supportDesk } from '../../examples/support-desk/agent.ts';
import { readNatsUsersFile, type NatsRole, type NatsUsers } from '../../runtime/nats-config/index.ts';
import { subjects } from '../../runtime/subjects.ts';
import { runTroupe } from '../helpers/cli.ts';

/**
 * `troupe up --secure`: the stack `troupe up` starts (startStack), with its embedded nats-server
 * run from the `troupe nats-config` file, and the users it leaves for the other commands.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const encoder = new TextEncoder();
const s = subjects();
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const input = supportDesk.exampleInput;
const REPLY = /Order A-1001 is shipped/;

let dir: string;
let loaded: LoadedConfig;
let stack: Stack | undefined;
const conns: NatsConnection[] = [];

/** Loaded as the CLI loads it, but blind to this process's NATS_* and model environment. */
const load = (config: string) => loadConfig({ file: config, env: {} });

async function client(name: string, role: NatsRole): Promise<NatsConnection> {
  const nc = await connectClient(loaded, name, role);
  conns.push(nc);
  return nc;
}

const mode = (file: string) => statSync(file).mode & 0o777;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'troupe-up-secure-'));
  const config = path.join(dir, 'troupe.config.json');
  writeFileSync(config, JSON.stringify({ agents: [path.join(ROOT, 'examples/support-desk/agent.ts')], model: { provider: 'simulator' } }));
  loaded = await load(config);
  stack = await startStack(loaded, logger, { embedded: true, secure: true });
}, 30_000);

afterAll(async () => {
  for (const nc of conns) await nc.close().catch(() => {});
  await stack?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('troupe up --secure (startStack)', () => {
  it('runs the embedded server from the nats-config file alone and leaves the users in private files', () => {
    const conf = serverConfigFile(loaded);
    expect(conf).toBe(path.join(dir, '.troupe', 'nats-server.conf'));
    expect(mode(conf)).toBe(0o600);
    expect(readFileSync(conf, 'utf8')).toContain(`store_dir: ${JSON.stringify(path.join(dir, '.troupe', 'nats'))}`);
    // The server got the file and its pid file, and none of the flags that clash with the file.
    const argv = readFileSync(`/proc/${stack!.server!.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    expect(argv.slice(1)).toEqual(['-c', conf, '-P', path.join(dir, '.troupe', 'nats', 'nats-server.pid')]);

    expect(stack!.usersFile).toBe(usersFile(loaded));
    expect(mode(usersFile(loaded))).toBe(0o600);
    const users = readNatsUsersFile(usersFile(loaded))!;
    expect(Object.keys(users).sort()).toEqual(['approvers', 'hosts', 'observers', 'submitters']);
    expect(new Set(Object.values(users).map((u) => u.password)).size).toBe(4);
    for (const u of Object.values(users)) expect(readFileSync(conf, 'utf8')).toContain(JSON.stringify(u.password));
    expect(readFileSync(urlFile(loaded), 'utf8').trim()).toBe(stack!.url);
  });

  it('refuses a connection without a user, and one with a wrong password', async () => {
    await expect(connect({ servers: [stack!.url], reconnect: false })).rejects.toThrow(/Authorization Violation/i);
    await expect(connect({ servers: [stack!.url], user: 'troupe-submitters', pass: 'guess', reconnect: false })).rejects.toThrow(/Authorization Violation/i);
  });

  it('runs a task submitted with the submitter credentials to completion', async () => {
    const nc = await client('troupe-submit', 'submitters');
    const { verdict, events } = await submitTask(nc, s, 'support-desk', { taskId: 'secure-1', input }, { wait: true, timeoutMs: 30_000 });
    expect(verdict).toEqual({ taskId: 'secure-1', status: 'accepted' });
    expect(events.at(-1)).toMatchObject({ type: 'done', output: expect.stringMatching(REPLY) });
  });

  it("refuses the submitter's publish to a decisions subject", async () => {
    const nc = await client('troupe-submit', 'submitters');
    const errors: string[] = [];
    void (async () => {
      for await (const st of nc.status()) if (st.type === 'error') errors.push(String(st.error));
    })();
    await expect(jetstream(nc).publish(s.decision('secure-1'), encoder.encode('{}'), { timeout: 3000 })).rejects.toThrow(
      /Permissions Violation for Publish to "troupe\.decisions\.secure-1"/,
    );
    expect(errors.join('\n')).toContain('Permissions Violation for Publish to "troupe.decisions.secure-1"');
  });

  it('connects every other command with its role: status reads as an observer, approve publishes only decisions', async () => {
    const observer = await client('troupe-status', 'observers');
    const kv = await new Kvm(jetstream(observer)).open(s.buckets.snapshots);
    expect(JSON.parse((await kv.get('secure-1'))!.string())).toMatchObject({ taskId: 'secure-1', status: 'done' });
    await expect(jetstream(observer).publish(s.task('support-desk'), encoder.encode('{}'), { timeout: 3000 })).rejects.toThrow(/Permissions Violation/);
    await expect(kv.put('secure-1', '{}', { timeout: 3000 })).rejects.toThrow(/Permissions Violation/);

    const approver = jetstream(await client('troupe-approver', 'approvers'));
    await expect(approver.publish(s.task('support-desk'), encoder.encode('{}'), { timeout: 3000 })).rejects.toThrow(/Permissions Violation for Publish to "troupe\.tasks\.support-desk"/);
    expect((await approver.publish(s.decision('nobody'), encoder.encode('{}'), { timeout: 3000 })).stream).toBe(s.streams.decisions);
  });

  it('restarts on the existing store with new passwords, and the old ones stop working', async () => {
    const before = readNatsUsersFile(usersFile(loaded))!;
    for (const nc of conns.splice(0)) await nc.close();
    await stack!.close();
    expect(existsSync(usersFile(loaded))).toBe(false);
    expect(existsSync(serverConfigFile(loaded))).toBe(false);

    stack = await startStack(loaded, logger, { embedded: true, secure: true });
    const after: NatsUsers = readNatsUsersFile(usersFile(loaded))!;
    for (const role of ['hosts', 'submitters', 'approvers', 'observers'] as const) expect(after[role].password).not.toBe(before[role].password);
    await expect(connect({ servers: [stack.url], user: before.submitters.user, pass: before.submitters.password, reconnect: false })).rejects.toThrow(/Authorization Violation/i);

    // The task of the first run is still there, and a new one runs.
    const kv = await new Kvm(jetstream(await client('troupe-status', 'observers'))).open(s.buckets.snapshots);
    expect(JSON.parse((await kv.get('secure-1'))!.string())).toMatchObject({ status: 'done' });
    const { events } = await submitTask(await client('troupe-submit', 'submitters'), s, 'support-desk', { taskId: 'secure-2', input }, { wait: true, timeoutMs: 30_000 });
    expect(events.at(-1)).toMatchObject({ type: 'done', output: expect.stringMatching(REPLY) });
  }, 30_000);

  it('is refused with NATS_URL set: it only secures the server it starts', async () => {
    const withUrl = await loadConfig({ file: loaded.file!, env: { NATS_URL: 'nats://127.0.0.1:1' } });
    await expect(startStack(withUrl, logger, { embedded: true, secure: true })).rejects.toThrow(/--secure secures the nats-server troupe starts itself/);
  });
});

describe('troupe up --secure (command line)', () => {
  it('says what it did without printing a password, and submit and status connect with the users it wrote', async () => {
    const projectDir = mkdtempSync(path.join(dir, 'cli-'));
    const config = path.join(projectDir, 'troupe.config.json');
    writeFileSync(config, JSON.stringify({ agents: [path.join(ROOT, 'examples/support-desk/agent.ts')], model: { provider: 'simulator' }, log: { pretty: false } }));
    const env: Record<string, string | undefined> = { ...process.env, LOG_LEVEL: 'info' };
    delete env.NATS_URL;
    delete env.NATS_USER;
    delete env.NATS_PASSWORD;
    delete env.NATS_CREDS;
    delete env.ANTHROPIC_API_KEY;
    const child = spawn(process.execPath, ['bin/troupe.js', 'up', '--secure', '--config', config], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const until = Date.now() + 30_000;
      while (!stdout.includes('secure mode:') && child.exitCode === null && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      const users = path.join(projectDir, '.troupe', 'nats-users.json');
      expect(stdout, `stderr: ${stderr}`).toContain(`written to ${users} (mode 600)`);
      expect(stdout).toContain('submitters may only publish tasks, approvers only decisions');

      const other = { env: { NATS_USER: '', NATS_PASSWORD: '', NATS_CREDS: '' } };
      const submitted = await runTroupe(undefined, ['submit', 'support-desk', '--input', JSON.stringify(input), '--task-id', 'cli-secure-1', '--wait', '--config', config], other);
      expect(submitted.code, submitted.stderr).toBe(0);
      expect(submitted.stdout).toMatch(REPLY);
      const status = await runTroupe(undefined, ['status', 'cli-secure-1', '--config', config], other);
      expect(status.code, status.stderr).toBe(0);
      expect(status.stdout).toMatch(/^status +done$/m);

      for (const u of Object.values(readNatsUsersFile(users)!)) expect(stdout + stderr).not.toContain(u.password);
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(existsSync(users)).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 60_000);
});
