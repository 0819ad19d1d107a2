/**
 * The intake fuzz (issue 10): over a thousand malformed and adversarial task messages mixed with
 * valid ones, against a real nats-server and a host in its own process. Every bad message ends
 * with a typed refusal its sender sees (and a record on the rejected stream), every valid task
 * completes with its own output, no message is left in the work queue, and the host process that
 * took it all is the one still running. The seed is printed; set TROUPE_FUZZ_SEED to repeat a run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../common/errors.ts';
import { FUZZ_CATEGORIES, formatFuzzReport, fuzzCases, runFuzz, type FuzzCase } from '../../chaos/fuzz.ts';
import { startChildHost, type ChildHost } from '../helpers/child-host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';
import { fuzzEcho } from '../../chaos/echo-agent.ts';

/**
 * Below the default 256 KiB on purpose: the echo agent's snapshot holds its input three times
 * (input, prompt, answer), and a task whose snapshot passes the server's 1 MiB max_payload is
 * failed with `snapshot_too_large` (test/durability/oversize.test.ts), where this test wants every
 * valid task to complete.
 */
const MAX_TASK_BYTES = 128 * 1024;
const COUNT = 1200;

describe('the fuzz generator', () => {
  const options = { count: 1000, agent: fuzzEcho, maxTaskBytes: MAX_TASK_BYTES, maxPayload: 1024 * 1024, runTag: 'tag' };
  const shape = (c: FuzzCase) => ({ ...c, payload: Buffer.from(c.payload).toString('base64') });

  it('sends the same messages for the same seed, and others for another', () => {
    const a = fuzzCases({ ...options, seed: 42 });
    expect(a.map(shape)).toEqual(fuzzCases({ ...options, seed: 42 }).map(shape));
    expect(a.map(shape)).not.toEqual(fuzzCases({ ...options, seed: 43 }).map(shape));
  });

  it('covers every category, expects only typed codes, and repeats a task only after it', () => {
    const cases = fuzzCases({ ...options, seed: 7 });
    expect(cases).toHaveLength(1000);
    for (const category of FUZZ_CATEGORIES) expect(cases.filter((c) => c.category === category).length, category).toBeGreaterThanOrEqual(20);
    const codes = new Set<string>(Object.values(ErrorCode));
    for (const c of cases) {
      if (c.expect.outcome === 'rejected') expect(codes.has(c.expect.code), `${c.label}: ${c.expect.code}`).toBe(true);
      if (c.expect.outcome === 'duplicate') expect(cases[c.expect.of]!.n).toBeLessThan(c.n);
    }
    // The size cases straddle both limits.
    expect(cases.some((c) => c.payload.length > 1024 * 1024)).toBe(true);
    expect(cases.some((c) => c.payload.length > MAX_TASK_BYTES && c.payload.length < 1024 * 1024)).toBe(true);
  });
});

describe('fuzzing a host in its own process', { timeout: 120_000 }, () => {
  let nats: NatsTestContext;
  let host: ChildHost;
  let hostId: string;

  beforeAll(async () => {
    nats = await startNats();
    host = startChildHost('../chaos/fuzz-host.ts', { NATS_URL: nats.url, MAX_TASK_BYTES: String(MAX_TASK_BYTES) });
    hostId = await host.waitForMark('ready');
  });
  afterAll(async () => {
    await host?.kill('SIGKILL');
    await nats?.close();
  });

  it(`refuses every bad message with a typed error and completes every valid task, ${COUNT} messages`, async () => {
    const pid = host.proc.pid;
    const seed = process.env.TROUPE_FUZZ_SEED === undefined ? undefined : Number(process.env.TROUPE_FUZZ_SEED);
    const lines: string[] = [];
    const report = await runFuzz({
      nc: nats.nc,
      agent: fuzzEcho,
      count: COUNT,
      maxTaskBytes: MAX_TASK_BYTES,
      ...(seed !== undefined ? { seed } : {}),
      health: () => (host.proc.exitCode !== null || host.proc.signalCode !== null ? `host process ${pid} ended (${host.proc.exitCode ?? host.proc.signalCode})` : undefined),
      log: (line) => lines.push(line),
    });
    const summary = formatFuzzReport(report, 20);
    console.log(`${lines.join('\n')}\n${summary}`);

    expect(report.failures, summary).toEqual([]);
    expect(report.hostProblems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.sent).toBe(COUNT);
    expect(report.bad).toBeGreaterThan(COUNT * 0.7);
    expect(report.valid).toBeGreaterThan(COUNT * 0.08);
    expect(report.validCompleted).toBe(report.valid);
    expect(report.duplicatesAnswered).toBe(report.duplicates);
    expect(Object.values(report.rejectedByCode).reduce((a, b) => a + b, 0) + Object.values(report.refusedByNats).reduce((a, b) => a + b, 0)).toBe(report.bad);
    expect(report.rejectionRecords).toBeGreaterThanOrEqual(Object.values(report.rejectedByCode).reduce((a, b) => a + b, 0));
    for (const category of FUZZ_CATEGORIES) expect(report.byCategory[category]?.sent ?? 0, category).toBeGreaterThan(0);
    expect(report.stuck).toBe(0);
    expect(report.redeliveries).toBe(0);
    // The process that took every message is still the one running, and still serving.
    expect(host.proc.pid).toBe(pid);
    expect(host.proc.exitCode).toBeNull();
    expect(host.proc.signalCode).toBeNull();
    const { verdict } = await submit(nats.nc, nats.js, 'echo', { taskId: 'after-the-fuzz', input: { text: 'still here' } });
    expect(await verdict).toEqual({ taskId: 'after-the-fuzz', status: 'accepted' });
    expect((await eventsUntilEnd(nats.js, 'after-the-fuzz')).at(-1)).toMatchObject({ type: 'done', output: 'echo: still here' });
    expect(hostId).toMatch(/\S/);
  });
});
