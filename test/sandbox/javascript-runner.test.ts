/**
 * Model-written JavaScript through the real bwrap sandbox (cold path): results, printed JSON, thrown
 * errors and exits, each as its own typed outcome.
 */
import { describe, expect, it } from 'vitest';
import {
  runJavaScript,
  SandboxCodeError,
  SandboxExitError,
  SandboxSpecError,
} from '../../sandbox/isolation/index.ts';
import { decodeJavaScriptResult, encodeJavaScriptJob } from '../../sandbox/isolation/javascript-runner.ts';
import { compileSandboxLimits } from '../../sandbox/isolation/limits.ts';
import { bwrapSkipReason } from './escape-helpers.ts';

const skipReason = await bwrapSkipReason();
const limits = { wallClockMs: 5_000, memoryBytes: 128 * 1024 * 1024 };

describe('decodeJavaScriptResult', () => {
  const { marker } = encodeJavaScriptJob({ code: '' });
  const base = { exitCode: 0, signal: null, stderr: '', timedOut: false, outputTruncated: false, durationMs: 1 };

  it('ignores a result line carrying another marker (the code cannot guess the nonce)', () => {
    const forged = '\n\u001etroupe-result:00000000-0000-0000-0000-000000000000:result:{"ok":true,"json":"42"}\n';
    const decoded = decodeJavaScriptResult({ ...base, stdout: forged }, compileSandboxLimits(), marker);
    expect(decoded.valueFrom).toBe('none');
  });

  it('rejects jobs that are not JSON', () => {
    expect(() => encodeJavaScriptJob({ code: 'return 1', input: 10n })).toThrow(SandboxSpecError);
  });
});

describe.skipIf(skipReason !== undefined)('runJavaScript (real bubblewrap)', () => {
  it('returns the return value as JSON data, with input passed in', async () => {
    const r = await runJavaScript(
      { code: 'console.log("working"); console.error("a warning"); return { sum: input.a + input.b, at: new Date(0) }', input: { a: 2, b: 3 } },
      { limits },
    );
    expect(r).toMatchObject({ value: { sum: 5, at: '1970-01-01T00:00:00.000Z' }, valueFrom: 'return', stdout: 'working\n', stderr: 'a warning\n' });
  });

  it('parses printed JSON when nothing is returned, and supports await', async () => {
    const r = await runJavaScript({ code: 'await new Promise((r) => setTimeout(r, 10)); console.log(JSON.stringify([1, "two"]))' }, { limits });
    expect(r).toMatchObject({ value: [1, 'two'], valueFrom: 'stdout' });
  });

  it('gives the String() of a value JSON cannot hold, and undefined for nothing', async () => {
    await expect(runJavaScript({ code: 'return 12n' }, { limits })).resolves.toMatchObject({ value: '12', valueFrom: 'return-string' });
    await expect(runJavaScript({ code: 'console.log("plain text")' }, { limits })).resolves.toMatchObject({ value: undefined, valueFrom: 'none', stdout: 'plain text\n' });
  });

  it('a throw becomes SandboxCodeError with the thrown name and message', async () => {
    const run = runJavaScript({ code: 'throw new RangeError("out of range: " + input)', input: 7 }, { limits });
    await expect(run).rejects.toBeInstanceOf(SandboxCodeError);
    await expect(run).rejects.toMatchObject({ errorName: 'RangeError', errorMessage: 'out of range: 7', reason: 'sandbox_code_threw' });
    await expect(runJavaScript({ code: 'this is not javascript' }, { limits })).rejects.toMatchObject({ errorName: 'SyntaxError' });
    await expect(runJavaScript({ code: 'throw "a string"' }, { limits })).rejects.toMatchObject({ errorName: 'NonError', errorMessage: '"a string"' });
  });

  it('a promise that can never settle is reported, not taken for success', async () => {
    await expect(runJavaScript({ code: 'await new Promise(() => {})' }, { limits })).rejects.toMatchObject({ name: 'SandboxCodeError', errorName: 'UnsettledError' });
    await expect(runJavaScript({ code: 'console.log("[1]"); process.exit(0)' }, { limits })).resolves.toMatchObject({ value: [1], valueFrom: 'stdout' });
  });

  it('an explicit non-zero exit becomes SandboxExitError', async () => {
    const run = runJavaScript({ code: 'process.exit(4)' }, { limits });
    await expect(run).rejects.toBeInstanceOf(SandboxExitError);
    await expect(run).rejects.toMatchObject({ exitCode: 4 });
  });

  it('the code can use its scratch directory, and nothing else is writable', async () => {
    const r = await runJavaScript(
      {
        code: `const fs = require('fs');
          fs.writeFileSync('/tmp/a.txt', 'scratch');
          let usr; try { fs.writeFileSync('/usr/a.txt', 'x'); usr = 'written'; } catch (e) { usr = e.code; }
          return { tmp: fs.readFileSync('/tmp/a.txt', 'utf8'), usr, cwd: process.cwd(), uid: process.getuid() };`,
      },
      { limits },
    );
    expect(r.value).toEqual({ tmp: 'scratch', usr: 'EROFS', cwd: '/tmp', uid: 65534 });
  });
});
