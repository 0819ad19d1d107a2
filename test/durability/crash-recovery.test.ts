import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Kvm } from '@nats-io/kv';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { subjects } from '../../runtime/subjects.ts';
import { ensureTopology } from '../../runtime/topology.ts';
import { startChildHost, tempDir, type ChildHost } from '../helpers/child-host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

let nats: NatsTestContext;
const children: ChildHost[] = [];

beforeAll(async () => {
  nats = await startNats();
});
afterEach(async () => {
  // A failed assertion must not leave a host behind to steal the next test's task.
  await Promise.all(children.splice(0).map((c) => c.kill()));
});
afterAll(async () => {
  await nats?.close();
});

// Each test has its own subject prefix (its own streams and buckets), so a task a failed test
// leaves behind can never be picked up by the next test's hosts.
let prefix = 'crash0';
let tests = 0;
beforeEach(() => {
  prefix = `crash${++tests}`;
});
const opts = () => ({ prefix });

function host(env: Record<string, string>): ChildHost {
  const child = startChildHost('ledger-host.ts', { NATS_URL: nats.url, PREFIX: prefix, ...env });
  children.push(child);
  return child;
}

function linesOf(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

/**
 * SIGKILL a host at each point around an irreversible side effect, start a fresh host, and check
 * the task completes with the effect done exactly once.
 */
describe('a host killed with SIGKILL around a side effect', () => {
  const points = [
    ['beforeEffect', 'intent checkpointed, effect not started'],
    ['afterStarted', 'ledger says started, tool not yet run'],
    ['duringTool', 'tool wrote its line, result not recorded'],
    ['afterRecorded', 'result recorded, not yet checkpointed'],
  ] as const;

  for (const [point, what] of points) {
    it(`completes with the effect done exactly once when killed at ${point} (${what})`, async () => {
      const file = path.join(tempDir('troupe-effect-'), 'journal.txt');
      const taskId = `crash-${point}`;
      const first = host({ SIDE_EFFECT_FILE: file, PAUSE_AT: point });
      await first.waitForMark('ready');
      await submit(nats.nc, nats.js, 'ledgered', { taskId, input: { text: point } }, opts());
      const key = await first.waitForMark(point);
      expect(key).toBe(`${taskId}/0/1`);
      await first.kill('SIGKILL');

      const second = host({ SIDE_EFFECT_FILE: file });
      await second.waitForMark('ready');
      const events = await eventsUntilEnd(nats.js, taskId, { timeoutMs: 25_000, ...opts() });
      expect(events.at(-1)).toMatchObject({ type: 'done', output: `appended ${point}` });
      expect(events.some((e) => e.type === 'resumed')).toBe(true);
      const lines = linesOf(file);
      expect(lines).toEqual([`${taskId}/0/1 ${point}`]);
      await second.kill('SIGTERM');
    });
  }

  it('resumes a task killed during a read-only tool call that started without a write of its own, without asking the model again', async () => {
    // A round of read-only inline calls is not checkpointed first (one write per step): the
    // task resumes at the model turn that asked for it, which the ledger replays, and reads again.
    const dir = tempDir('troupe-read-');
    const reads = path.join(dir, 'reads.txt');
    const modelCalls = path.join(dir, 'model-calls.txt');
    const taskId = 'crash-read';
    const files = { SIDE_EFFECT_FILE: path.join(dir, 'journal.txt'), READS_FILE: reads, MODEL_CALLS_FILE: modelCalls };
    const first = host({ ...files, PAUSE_AT: 'duringRead' });
    await first.waitForMark('ready');
    await submit(nats.nc, nats.js, 'reader', { taskId, input: {} }, opts());
    expect(await first.waitForMark('duringRead')).toBe(`${taskId}/0/1`);
    await first.kill('SIGKILL');

    const second = host(files);
    await second.waitForMark('ready');
    const events = await eventsUntilEnd(nats.js, taskId, { timeoutMs: 25_000, ...opts() });
    expect(events.at(-1)).toMatchObject({ type: 'done', output: 'read it' });
    expect(events.some((e) => e.type === 'resumed')).toBe(true);
    // The first model turn was paid once, and replayed from the ledger on the second host.
    expect(linesOf(modelCalls)).toEqual(['turn 0', 'turn 1']);
    // The read ran again: harmless for a read, and the price of not writing before it.
    expect(linesOf(reads)).toEqual([`${taskId}/0/1`, `${taskId}/0/1`]);
    await second.kill('SIGTERM');
  });

  it('fails a task that kills its host on every delivery once host.maxDeliver is reached, instead of restarting forever', async () => {
    const file = path.join(tempDir('troupe-effect-'), 'journal.txt');
    const taskId = 'crash-loop';
    // No host has run on this prefix yet: create its streams before submitting.
    await ensureTopology(nats.nc, subjects(prefix), { replicas: 1, eventsMaxAgeMs: 600_000, rejectedMaxAgeMs: 600_000, duplicateWindowMs: 60_000, leaseMs: 1000 });
    await submit(nats.nc, nats.js, 'ledgered', { taskId, input: { text: 'boom' } }, opts());
    const ended = eventsUntilEnd(nats.js, taskId, { timeoutMs: 60_000, ...opts() });
    let starts = 0;
    let done = false;
    void ended.finally(() => (done = true));
    while (!done && starts < 8) {
      const h = host({ SIDE_EFFECT_FILE: file, TOOL_MODE: 'suicide', MAX_DELIVER: '3' });
      starts++;
      await Promise.race([h.exited, ended.catch(() => {})]);
      await h.kill();
    }
    const events = await ended;
    expect(events.at(-1)).toMatchObject({ type: 'failed', error: { code: 'restart_intensity_exceeded' } });
    expect(starts).toBeGreaterThanOrEqual(4);
    expect(starts).toBeLessThan(8);
  });

  it('counts the wall-clock cap from the task start across a restart', async () => {
    const file = path.join(tempDir('troupe-effect-'), 'journal.txt');
    const taskId = 'deadline';
    const first = host({ SIDE_EFFECT_FILE: file, TOOL_MODE: 'hang', WALL_CLOCK_MS: '4000' });
    await first.waitForMark('ready');
    await submit(nats.nc, nats.js, 'ledgered', { taskId, input: { text: 'slow' } }, opts());
    const kv = await new Kvm(nats.js).open(`${prefix}_snapshots`);
    let env: Record<string, any> | undefined;
    while (!env || env.state !== 'acting') {
      env = (await kv.get(taskId))?.json();
      await new Promise((r) => setTimeout(r, 20));
    }
    const deadlineAt = env.deadlineAt as number;
    expect(deadlineAt - env.createdAt).toBe(4000);
    await first.kill('SIGKILL');
    const second = host({ SIDE_EFFECT_FILE: file, TOOL_MODE: 'hang', WALL_CLOCK_MS: '60000' });
    await second.waitForMark('ready');
    const events = await eventsUntilEnd(nats.js, taskId, { timeoutMs: 30_000, ...opts() });
    const failed = events.at(-1)!;
    expect(failed).toMatchObject({ type: 'failed', error: { code: 'limit_exceeded', details: { limit: 'wallClock', max: 4000 } } });
    // The restored host kept the original deadline rather than granting a fresh 60 s.
    expect(failed.at).toBeGreaterThanOrEqual(deadlineAt);
    expect(failed.at).toBeLessThan(deadlineAt + 15_000);
    const after = (await kv.get(taskId))!.json<Record<string, any>>();
    expect(after).toMatchObject({ status: 'failed', deadlineAt });
    await second.kill('SIGTERM');
  });

  it('fails, rather than corrupts, a task whose snapshot came from another machine version', async () => {
    const file = path.join(tempDir('troupe-effect-'), 'journal.txt');
    const taskId = 'versioned';
    const first = host({ SIDE_EFFECT_FILE: file, TOOL_MODE: 'hang', AGENT_VERSION: '1' });
    await first.waitForMark('ready');
    await submit(nats.nc, nats.js, 'ledgered', { taskId, input: { text: 'v1' } }, opts());
    const kv = await new Kvm(nats.js).open(`${prefix}_snapshots`);
    while ((await kv.get(taskId))?.json<{ state: string }>().state !== 'acting') await new Promise((r) => setTimeout(r, 20));
    await first.kill('SIGKILL');
    const second = host({ SIDE_EFFECT_FILE: file, AGENT_VERSION: '2' });
    await second.waitForMark('ready');
    const events = await eventsUntilEnd(nats.js, taskId, { timeoutMs: 20_000, ...opts() });
    expect(events.at(-1)).toMatchObject({ type: 'failed', error: { code: 'machine_version_mismatch' } });
    expect((events.at(-1) as { error: { message: string } }).error.message).toMatch(/version "1".*version "2"/);
    await second.kill('SIGTERM');
  });
});
