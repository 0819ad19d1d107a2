/**
 * The bwrap runner against the real bubblewrap: availability, the happy path, setup failures,
 * cancellation, an injected clock, and per-sandbox process accounting.
 */
import { describe, expect, it } from 'vitest';
import type { Clock } from '../../common/clock.ts';
import {
  bwrapAvailable,
  compileSandboxSpec,
  requireBwrap,
  runInBwrap,
  SandboxSetupError,
  SandboxUnavailableError,
} from '../../sandbox/isolation/index.ts';
import { spawnSandbox } from '../../sandbox/isolation/internal.ts';
import { bwrapSkipReason, eventually, hostCommandLines } from './escape-helpers.ts';

const skipReason = await bwrapSkipReason();
const availability = await bwrapAvailable();

describe('availability', () => {
  it('a missing bwrap binary is reported, naming the Debian package', async () => {
    const missing = await bwrapAvailable({ bwrapPath: '/nonexistent/bwrap' });
    expect(missing).toMatchObject({ ok: false, problem: 'not-installed' });
    expect(!missing.ok && missing.reason).toContain('bubblewrap');
    const demanded = requireBwrap({ bwrapPath: '/nonexistent/bwrap' });
    await expect(demanded).rejects.toBeInstanceOf(SandboxUnavailableError);
    await expect(demanded).rejects.toThrow(/bubblewrap/);
    await expect(demanded).rejects.toMatchObject({ code: 'invalid_config', reason: 'sandbox_unavailable' });
  });

  it('a run with a missing bwrap fails with SandboxUnavailableError instead of running unsandboxed', async () => {
    await expect(runInBwrap({ command: ['true'] }, { bwrapPath: '/nonexistent/bwrap' })).rejects.toThrow(SandboxUnavailableError);
  });

  it('a binary that is not bubblewrap fails the probe', async () => {
    const fake = await bwrapAvailable({ bwrapPath: '/usr/bin/false' });
    expect(fake).toMatchObject({ ok: false, problem: 'probe-failed' });
  });
});

describe.skipIf(skipReason !== undefined)('runInBwrap (real bubblewrap)', () => {
  it('the probe succeeds here and reports a version; requireBwrap agrees', async () => {
    expect(availability).toMatchObject({ ok: true, version: expect.stringMatching(/^\d+\.\d+/) });
    await expect(requireBwrap()).resolves.toMatch(/^\d+\.\d+/);
  });

  it('feeds stdin, captures stdout and stderr separately, reports the exit status', async () => {
    const r = await runInBwrap({ command: ['sh', '-c', 'cat; echo err >&2; exit 3'], stdin: 'hello' });
    expect(r).toMatchObject({ exitCode: 3, signal: null, stdout: 'hello', stderr: 'err\n', timedOut: false, outputTruncated: false });
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('applies env and cwd, and leaves stdin empty when none is given', async () => {
    const r = await runInBwrap({ command: ['sh', '-c', 'echo "$GREETING"; pwd; wc -c'], env: { GREETING: 'hi' }, cwd: '/usr' });
    expect(r.stdout).toBe('hi\n/usr\n0\n');
  });

  it('reports a command killed by a signal by the signal’s name', async () => {
    const r = await runInBwrap({ command: ['sh', '-c', 'kill -TERM $$'] });
    expect(r).toMatchObject({ exitCode: null, signal: 'SIGTERM' });
  });

  it('a bind whose source does not exist fails with SandboxSetupError carrying bwrap’s message', async () => {
    const run = runInBwrap({ command: ['true'], binds: { ro: ['/nonexistent-troupe-path'] } });
    await expect(run).rejects.toBeInstanceOf(SandboxSetupError);
    await expect(run).rejects.toThrow(/nonexistent-troupe-path/);
  });

  it('abort kills the sandbox and rejects with the signal’s reason', async () => {
    const tag = `62.${Math.floor(Math.random() * 1e6)}`;
    const controller = new AbortController();
    const run = runInBwrap({ command: ['sh', '-c', `sleep ${tag} & echo started; sleep ${tag}`] }, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('stop now')), 200);
    await expect(run).rejects.toThrow('stop now');
    expect(await eventually(() => !hostCommandLines().some((line) => line.includes(tag)))).toBe(true);
    const already = AbortSignal.abort(new Error('before'));
    await expect(runInBwrap({ command: ['true'] }, { signal: already })).rejects.toThrow('before');
  });

  it('uses the injected clock for the wall clock and the duration', async () => {
    let fire: (() => void) | undefined;
    let now = 1_000;
    const clock: Clock = {
      now: () => (now += 5),
      sleep: (_ms, signal) =>
        new Promise<void>((resolve, reject) => {
          fire = resolve;
          signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
        }),
    };
    const run = runInBwrap({ command: ['sleep', '30'] }, { clock });
    await eventually(() => fire !== undefined);
    fire!();
    const r = await run;
    expect(r).toMatchObject({ timedOut: true, signal: 'SIGKILL', durationMs: 5 });
  });

  it('settles on completion lines without waiting for teardown, and kills what is left', async () => {
    const tag = `63.${Math.floor(Math.random() * 1e6)}`;
    const sandbox = spawnSandbox(compileSandboxSpec({ command: ['sh', '-c', `echo out; echo DONE; echo DONE >&2; sleep ${tag}`] }));
    const t0 = Date.now();
    const r = await sandbox.start(undefined, { settleOn: 'DONE\n' });
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(r).toMatchObject({ exitCode: null, signal: null, stdout: 'out\nDONE\n', stderr: 'DONE\n', timedOut: false });
    await sandbox.gone;
    expect(hostCommandLines().some((line) => line.includes(tag))).toBe(false);
  });

  it('counts processes per sandbox: concurrent sandboxes do not share the limit', async () => {
    const script = 'n=0; while [ $n -lt 10 ]; do sleep 1 & n=$((n+1)); done; echo "started $n"';
    const runs = await Promise.all([1, 2, 3].map(() => runInBwrap({ command: ['sh', '-c', script], limits: { processes: 14 } })));
    for (const r of runs) expect(r.stdout).toBe('started 10\n');
  });
});
