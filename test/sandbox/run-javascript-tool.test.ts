/**
 * The bundled `run_javascript` tool: its declaration, and model-written code run through a tool
 * runner (the runner's warm pool) and directly (a cold sandbox), against the real bubblewrap.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxCodeError, SandboxUnavailableError } from '../../sandbox/isolation/index.ts';
import { createToolRunner, type ToolRunner } from '../../sandbox/runners/index.ts';
import type { ToolContext } from '../../sandbox/tool.ts';
import { runJavaScriptTool } from '../../sandbox/tools/index.ts';
import { bwrapSkipReason, marker } from './escape-helpers.ts';

const skipReason = await bwrapSkipReason();

function context(signal: AbortSignal = new AbortController().signal): ToolContext {
  return { key: 'js-call-1', taskId: 'task-js', signal };
}

describe('runJavaScriptTool declaration', () => {
  it('is a read-only bwrap tool the model can call', () => {
    expect(runJavaScriptTool).toMatchObject({ name: 'run_javascript', isolation: 'bwrap', reversibility: 'read', sideEffect: false });
    expect(runJavaScriptTool.module).toMatch(/sandbox\/tools\/run-javascript\.ts$/);
    expect(runJavaScriptTool.inputJsonSchema).toMatchObject({ type: 'object', required: ['code'] });
    expect(runJavaScriptTool.input.safeParse({ code: '' }).success).toBe(false);
    expect(runJavaScriptTool.timeoutMs).toBeGreaterThan(runJavaScriptTool.permissions.limits?.wallClockMs ?? Infinity);
  });

  it('is refused, not run unsandboxed, on a machine without bubblewrap', async () => {
    await using runner = createToolRunner({ bwrapPath: '/nonexistent/bwrap' });
    await expect(runner.run(runJavaScriptTool, { code: 'return 1' }, context())).rejects.toBeInstanceOf(SandboxUnavailableError);
  });
});

describe.skipIf(skipReason !== undefined)('runJavaScriptTool (real bubblewrap)', { timeout: 20_000 }, () => {
  let runner: ToolRunner;
  const secretName = 'TROUPE_JS_TOOL_SECRET';
  beforeAll(async () => {
    process.env[secretName] = marker('SECRET');
    runner = createToolRunner();
    await runner.prewarm([runJavaScriptTool]);
  });
  afterAll(async () => {
    delete process.env[secretName];
    await runner.close();
  });

  it('returns the value, stdout and stderr, with input passed in', async () => {
    const result = await runner.run(
      runJavaScriptTool,
      { code: 'console.log("working"); console.error("careful"); return { product: input.a * input.b }', input: { a: 6, b: 7 } },
      context(),
    );
    expect(result).toMatchObject({ value: { product: 42 }, valueFrom: 'return', stdout: 'working\n', stderr: 'careful\n' });
    expect(runJavaScriptTool.output.safeParse(result).success).toBe(true);
  });

  it('a throw in the code fails the call with SandboxCodeError', async () => {
    const run = runner.run(runJavaScriptTool, { code: 'throw new TypeError("bad input")' }, context());
    await expect(run).rejects.toBeInstanceOf(SandboxCodeError);
    await expect(run).rejects.toMatchObject({ errorName: 'TypeError', errorMessage: 'bad input' });
  });

  it('the code sees no network, no host environment and no host files', async () => {
    const result = (await runner.run(
      runJavaScriptTool,
      {
        code: `const fs = require('fs');
          const net = await new Promise((resolve) => {
            const s = require('net').connect({ host: '1.1.1.1', port: 443 });
            s.once('connect', () => { s.destroy(); resolve('connected'); });
            s.once('error', (e) => resolve(e.code));
          });
          let shadow; try { fs.readFileSync('/etc/shadow'); shadow = 'read'; } catch (e) { shadow = e.code; }
          return { net, shadow, env: Object.keys(process.env).sort(), uid: process.getuid() };`,
      },
      context(),
    )) as { value: { net: string; shadow: string; env: string[]; uid: number } };
    expect(result.value.net).not.toBe('connected');
    expect(result.value.shadow).toBe('ENOENT');
    expect(result.value.env).not.toContain(secretName);
    expect(result.value.uid).toBe(65534);
  });

  it('called directly (not through a runner) it still runs sandboxed, in a cold sandbox', async () => {
    const result = await runJavaScriptTool.run({ code: 'return process.getuid()' }, context());
    expect(result).toMatchObject({ value: 65534, valueFrom: 'return' });
  });

  it('abort kills the run and rejects with the reason', async () => {
    const controller = new AbortController();
    const run = runner.run(runJavaScriptTool, { code: 'await new Promise((r) => setTimeout(r, 60_000))' }, context(controller.signal));
    setTimeout(() => controller.abort(new Error('cancelled by test')), 100);
    await expect(run).rejects.toThrow('cancelled by test');
  });
});
