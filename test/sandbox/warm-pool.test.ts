/**
 * The warm pool against the real bubblewrap: jobs find waiting processes, no state crosses from one
 * job to the next, limits still hold per job, and close() kills everything.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  createWarmPool,
  SandboxCodeError,
  SandboxPoolClosedError,
  SandboxSpecError,
  SandboxTimeoutError,
  type JavaScriptResult,
  type WarmPool,
} from '../../sandbox/isolation/index.ts';
import { bwrapSkipReason, eventually, hostProcesses } from './escape-helpers.ts';

const skipReason = await bwrapSkipReason();
const limits = { wallClockMs: 5_000, memoryBytes: 128 * 1024 * 1024 };

describe('createWarmPool options', () => {
  it('rejects an invalid size or invalid limits before spawning anything', () => {
    expect(() => createWarmPool({ size: -1 })).toThrow(SandboxSpecError);
    expect(() => createWarmPool({ size: 1.5 })).toThrow(SandboxSpecError);
    expect(() => createWarmPool({ limits: { processes: 0 } })).toThrow(SandboxSpecError);
  });

  it('has the documented public shape', () => {
    expectTypeOf(createWarmPool).returns.toEqualTypeOf<WarmPool>();
    expectTypeOf<WarmPool['run']>().returns.toEqualTypeOf<Promise<JavaScriptResult>>();
    expectTypeOf<WarmPool>().toMatchTypeOf<AsyncDisposable>();
  });
});

describe.skipIf(skipReason !== undefined)('warm pool (real bubblewrap)', () => {
  it('pre-spawns, serves jobs from waiting processes, and refills', async () => {
    await using pool = createWarmPool({ size: 2, limits });
    expect(pool.stats().idle).toBe(2);
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await pool.run({ code: 'return input * 2', input: i }));
    expect(results.map((r) => r.value)).toEqual([0, 2, 4, 6]);
    expect(pool.stats()).toMatchObject({ warmHits: 4, coldStarts: 0 });
    expect(await eventually(() => pool.stats().idle === 2)).toBe(true);
  });

  it('never lets state from one job reach the next (globals, scratch files, processes)', async () => {
    await using pool = createWarmPool({ size: 1, limits });
    const first = await pool.run({
      code: `globalThis.leak = 'from job 1'; require('fs').writeFileSync('/tmp/leak.txt', 'job 1');
        require('child_process').spawn('sleep', ['30'], { detached: true, stdio: 'ignore' }).unref();
        return process.pid;`,
    });
    const second = await pool.run({
      code: `const fs = require('fs');
        return { global: typeof globalThis.leak, file: fs.existsSync('/tmp/leak.txt'),
                 others: fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).map((p) => fs.readFileSync('/proc/' + p + '/cmdline', 'utf8')).filter((c) => c.startsWith('sleep')) };`,
    });
    expect(typeof first.value).toBe('number');
    expect(second.value).toEqual({ global: 'undefined', file: false, others: [] });
  });

  it('starts the wall clock at hand-over, not at spawn, and still enforces it', async () => {
    await using pool = createWarmPool({ size: 1, limits: { ...limits, wallClockMs: 1_500 } });
    await sleep(1_700); // longer than the wall clock: an idle process must not have been killed
    await expect(pool.run({ code: 'await new Promise((r) => setTimeout(r, 100)); return "in time"' })).resolves.toMatchObject({ value: 'in time' });
    await expect(pool.run({ code: 'for (;;) {}' })).rejects.toBeInstanceOf(SandboxTimeoutError);
  });

  it('a waiting process that dies is dropped, never handed a job', async () => {
    const heapMiB = 100 + Math.floor(Math.random() * 900); // makes this pool's processes recognisable
    await using pool = createWarmPool({ size: 2, limits: { ...limits, memoryBytes: heapMiB * 2 * 1024 * 1024 } });
    const flag = `--max-old-space-size=${heapMiB}`;
    const ours = () => hostProcesses().filter((p) => p.cmdline.startsWith(`${process.execPath}\0${flag}\0`));
    expect(await eventually(() => ours().length === 2)).toBe(true);
    for (const p of ours()) process.kill(p.pid, 'SIGKILL');
    expect(await eventually(() => pool.stats().idle === 0)).toBe(true);
    await expect(pool.run({ code: 'return "still works"' })).resolves.toMatchObject({ value: 'still works' });
    expect(pool.stats()).toMatchObject({ coldStarts: 1, warmHits: 0 });
  });

  it('reports errors like the cold runner', async () => {
    await using pool = createWarmPool({ size: 1, limits });
    await expect(pool.run({ code: 'throw new Error("nope")' })).rejects.toBeInstanceOf(SandboxCodeError);
  });

  it('size 0 spawns per job (cold) and still works', async () => {
    await using pool = createWarmPool({ size: 0, limits });
    await expect(pool.run({ code: 'return 1' })).resolves.toMatchObject({ value: 1 });
    expect(pool.stats()).toMatchObject({ idle: 0, warmHits: 0, coldStarts: 1 });
  });

  it('abort kills the job’s process and rejects with the reason', async () => {
    await using pool = createWarmPool({ size: 1, limits });
    const controller = new AbortController();
    const run = pool.run({ code: 'await new Promise((r) => setTimeout(r, 60_000))' }, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('cancelled by test')), 100);
    await expect(run).rejects.toThrow('cancelled by test');
  });

  it('close() kills waiting and running processes; later runs are refused', async () => {
    const pool = createWarmPool({ size: 2, limits });
    const running = pool.run({ code: 'await new Promise((r) => setTimeout(r, 60_000))' }).catch((e: unknown) => e);
    await sleep(100);
    const t0 = Date.now();
    await pool.close();
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(await running).toBeInstanceOf(SandboxPoolClosedError);
    expect(pool.stats().idle).toBe(0);
    await expect(pool.run({ code: 'return 1' })).rejects.toBeInstanceOf(SandboxPoolClosedError);
    await pool.close(); // idempotent
  });
});
