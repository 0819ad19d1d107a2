/**
 * The tool runner against real worker threads and the real bubblewrap: each level runs a real tool
 * from `fixtures/tools.ts` (found by name in its module), limits stop runaway tools with typed
 * errors while the host carries on, and a bwrap tool's escape attempts are contained, checked from
 * the host side where the host can see the effect.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  baseSandboxEnv,
  SandboxMemoryLimitError,
  SandboxOutputLimitError,
  SandboxSpecError,
  SandboxTimeoutError,
  SandboxUnavailableError,
} from '../../sandbox/isolation/index.ts';
import {
  BwrapTimeoutError,
  compileToolRunnerOptions,
  createToolRunner,
  ThreadExitError,
  ThreadMemoryLimitError,
  ThreadTimeoutError,
  ToolModuleError,
  ToolRunnerClosedError,
  ToolThrewError,
  UnknownIsolationError,
  type ToolRunner,
} from '../../sandbox/runners/index.ts';
import { createToolBundler } from '../../sandbox/runners/internal.ts';
import { defineTool, type Tool, type ToolContext } from '../../sandbox/tool.ts';
import * as fixtures from './fixtures/tools.ts';
import { bwrapSkipReason, marker } from './escape-helpers.ts';

const skipReason = await bwrapSkipReason();
const FIXTURES = new URL('./fixtures/tools.ts', import.meta.url).href;

function context(signal: AbortSignal = new AbortController().signal): ToolContext {
  return { key: 'call-key-1', taskId: 'task-1', signal };
}

function agentTool(name: string): Tool<any, any> {
  const tool = fixtures.fixtureAgent.tools.get(name);
  if (tool === undefined) throw new Error(`fixture agent has no tool ${name}`);
  return tool;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : 0);
    });
  });
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

describe('defineTool: module and permissions', () => {
  it('infers the defining module from the call stack', () => {
    expect(fixtures.threadSum.module).toBe(FIXTURES);
    expect(fixtures.bwrapSum.module).toBe(FIXTURES);
    expect(agentTool('agent_only').module).toBe(FIXTURES);
    const here = defineTool({ name: 'here', description: 'd', input: z.object({}), output: z.unknown(), run: async () => 1 });
    expect(here.module).toBe(import.meta.url);
  });

  it('keeps an explicit module and refuses one that is not a file URL', () => {
    const base = { name: 'explicit', description: 'd', input: z.object({}), output: z.unknown(), run: async () => 1 };
    expect(defineTool({ ...base, module: FIXTURES }).module).toBe(FIXTURES);
    expect(() => defineTool({ ...base, module: 'fixtures/tools.ts' })).toThrow(TypeError);
  });

  it('refuses permissions that nothing at the declared level would enforce', () => {
    const base = { name: 'perms', description: 'd', input: z.object({}), output: z.unknown(), run: async () => 1 };
    expect(() => defineTool({ ...base, permissions: { limits: { memoryBytes: 64 * 1024 * 1024 } } })).toThrow(/runs inline/);
    expect(() => defineTool({ ...base, isolation: 'thread', permissions: { binds: { ro: ['/srv'] } } })).toThrow(/only the "bwrap"/);
    const tool = defineTool({ ...base, isolation: 'bwrap', permissions: { binds: { ro: ['/srv'] }, limits: { wallClockMs: 1_000 } } });
    expect(tool.permissions).toEqual({ binds: { ro: ['/srv'], rw: [] }, limits: { wallClockMs: 1_000 } });
    expect(Object.isFrozen(tool.permissions)).toBe(true);
  });
});

describe('createToolRunner', () => {
  it('validates its options once', () => {
    expect(compileToolRunnerOptions()).toMatchObject({ threadPoolSize: 1, bwrapPoolSize: 1, bwrapPath: '/usr/bin/bwrap' });
    expect(() => createToolRunner({ threadPoolSize: -1 })).toThrow(SandboxSpecError);
    expect(() => createToolRunner({ bwrapPoolSize: 1.5 })).toThrow(SandboxSpecError);
  });

  it('has the documented public shape', () => {
    expectTypeOf(createToolRunner).returns.toEqualTypeOf<ToolRunner>();
    expectTypeOf<ToolRunner['run']>().parameters.toEqualTypeOf<[Tool<any, any>, unknown, ToolContext]>();
    expectTypeOf<ToolRunner>().toMatchTypeOf<AsyncDisposable>();
  });

  it('never runs a tool at a level it does not know', async () => {
    await using runner = createToolRunner();
    const docker = { ...fixtures.inlineSum, isolation: 'docker' } as unknown as Tool<any, any>;
    await expect(runner.run(docker, { a: 1, b: 2 }, context())).rejects.toBeInstanceOf(UnknownIsolationError);
  });

  it('refuses isolated tools whose module is unknown, or does not load', async () => {
    await using runner = createToolRunner();
    const orphan = { ...fixtures.threadSum, module: undefined };
    await expect(runner.run(orphan, { a: 1, b: 2 }, context())).rejects.toMatchObject({ name: 'ToolModuleError', reason: 'runner_no_module' });
    const missing = { ...fixtures.threadSum, module: 'file:///nonexistent/tools.ts' };
    await expect(runner.run(missing, { a: 1, b: 2 }, context())).rejects.toMatchObject({ name: 'ToolModuleError', reason: 'runner_module_failed' });
  });

  it('starts a thread call\'s time limit once its module has loaded, not before', async () => {
    await using runner = createToolRunner({ threadPoolSize: 0 });
    const { slowToLoad } = await import('./fixtures/slow-module-tool.ts');
    // Cold: the module takes 1.5 s to load and the call may take 0.5 s; the call itself is instant.
    await expect(runner.run(slowToLoad, { n: 7 }, { key: 'slow/0/1', taskId: 'slow', signal: new AbortController().signal })).resolves.toEqual({ n: 7 });
  });

  it('refuses calls once closed', async () => {
    const runner = createToolRunner();
    await runner.close();
    await expect(runner.run(fixtures.inlineSum, { a: 1, b: 2 }, context())).rejects.toBeInstanceOf(ToolRunnerClosedError);
    await runner.close(); // idempotent
  });
});

describe('inline level', () => {
  it('calls run in the host, and its errors are its own', async () => {
    await using runner = createToolRunner();
    const result = await runner.run(fixtures.inlineSum, { a: 2, b: 3 }, context());
    expect(result).toMatchObject({ sum: 5, pid: process.pid, isMainThread: true });
    const thrower = { ...fixtures.threadThrows, isolation: 'inline' as const };
    await expect(runner.run(thrower, { orderId: 'A-1' }, context())).rejects.toBeInstanceOf(fixtures.OrderNotFoundError);
  });
});

describe('thread level', { timeout: 20_000 }, () => {
  let runner: ToolRunner;
  beforeAll(() => {
    runner = createToolRunner();
  });
  afterAll(() => runner.close());

  it('runs the tool from its module in a worker thread of the host, with the call context', async () => {
    const result = await runner.run(fixtures.threadSum, { a: 2, b: 3 }, context());
    expect(result).toMatchObject({ sum: 5, key: 'call-key-1', taskId: 'task-1', pid: process.pid, isMainThread: false });
  });

  it('finds a tool exported only through an agent’s tools', async () => {
    await expect(runner.run(agentTool('agent_only'), { word: 'hello' }, context())).resolves.toBe('HELLO');
  });

  it('a tool’s own error becomes ToolThrewError with its name and message', async () => {
    const run = runner.run(fixtures.threadThrows, { orderId: 'A-1' }, context());
    await expect(run).rejects.toBeInstanceOf(ToolThrewError);
    await expect(run).rejects.toMatchObject({ errorName: 'OrderNotFoundError', message: 'order A-1 does not exist', isolation: 'thread', code: 'tool_failed' });
  });

  it('stops a memory bomb with ThreadMemoryLimitError; the host survives', async () => {
    const before = process.memoryUsage().heapUsed;
    const run = runner.run(fixtures.threadMemoryBomb, {}, context());
    await expect(run).rejects.toBeInstanceOf(ThreadMemoryLimitError);
    await expect(run).rejects.toMatchObject({ heapMiB: 32, tool: 'thread_memory_bomb' });
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(32 * 1024 * 1024);
    await expect(runner.run(fixtures.threadSum, { a: 1, b: 1 }, context())).resolves.toMatchObject({ sum: 2 });
  });

  it('stops an infinite loop with ThreadTimeoutError at its wall clock, without blocking the host', async () => {
    let ticks = 0;
    const ticker = setInterval(() => (ticks += 1), 20);
    const t0 = Date.now();
    try {
      await expect(runner.run(fixtures.threadSpin, {}, context())).rejects.toBeInstanceOf(ThreadTimeoutError);
    } finally {
      clearInterval(ticker);
    }
    expect(Date.now() - t0).toBeGreaterThanOrEqual(800);
    expect(ticks).toBeGreaterThan(5); // the host's event loop ran while the tool spun
    await expect(runner.run(fixtures.threadSum, { a: 1, b: 2 }, context())).resolves.toMatchObject({ sum: 3 });
  });

  it('process.exit ends only the worker: ThreadExitError', async () => {
    await expect(runner.run(fixtures.threadExits, {}, context())).rejects.toMatchObject({ name: 'ThreadExitError', exitCode: 3 });
    await expect(runner.run(fixtures.threadExits, {}, context())).rejects.toBeInstanceOf(ThreadExitError);
  });

  it('abort terminates the worker and rejects with the reason', async () => {
    const controller = new AbortController();
    const run = runner.run(fixtures.threadSleep, {}, context(controller.signal));
    setTimeout(() => controller.abort(new Error('cancelled by test')), 100);
    await expect(run).rejects.toThrow('cancelled by test');
  });

  it('a tool its module does not export is refused with ToolModuleError', async () => {
    const run = runner.run(fixtures.notExportedTool('thread'), {}, context());
    await expect(run).rejects.toBeInstanceOf(ToolModuleError);
    await expect(run).rejects.toMatchObject({ reason: 'runner_tool_not_exported', module: FIXTURES });
  });

  it('close() terminates a running call with ToolRunnerClosedError', async () => {
    const own = createToolRunner();
    const run = own.run(fixtures.threadSleep, {}, context()).catch((e: unknown) => e);
    await sleep(200);
    await own.close();
    expect(await run).toBeInstanceOf(ToolRunnerClosedError);
  });
});

describe('tool bundles for the bwrap level', () => {
  it('hold the module with its imports, readable by the sandbox only, and are removed on close', async () => {
    const bundler = createToolBundler();
    const bundle = await bundler.bundle(FIXTURES, 'bwrap_sum');
    const file = fileURLToPath(bundle.url);
    expect(dirname(file)).toBe(bundle.dir);
    expect(readFileSync(file, 'utf8')).toContain('bwrap_probe'); // the fixture, zod and all, in one file
    const asRoot = process.getuid?.() === 0;
    const { mode, uid, gid } = statSync(file);
    expect(mode & 0o007).toBe(0); // nothing for other users
    expect(mode & 0o022).toBe(0); // only the owner (root) may write, never the sandbox
    if (asRoot) expect({ uid, gid }).toEqual({ uid: 0, gid: 65534 });
    expect(await bundler.bundle(FIXTURES, 'bwrap_sum')).toBe(bundle); // once per module
    await expect(bundler.bundle('file:///nonexistent/tools.ts', 'x')).rejects.toBeInstanceOf(ToolModuleError);
    await bundler.close();
    expect(existsSync(bundle.dir)).toBe(false);
  });
});

describe('bwrap level, machine without bubblewrap', () => {
  it('fails with SandboxUnavailableError and never runs the tool any other way', async () => {
    await using runner = createToolRunner({ bwrapPath: '/nonexistent/bwrap' });
    const run = runner.run(fixtures.bwrapSum, { a: 1, b: 2 }, context());
    await expect(run).rejects.toBeInstanceOf(SandboxUnavailableError);
    await expect(run).rejects.toThrow(/bubblewrap/);
    await expect(runner.prewarm([fixtures.bwrapSum])).rejects.toBeInstanceOf(SandboxUnavailableError);
  });
});

describe.skipIf(skipReason !== undefined)('bwrap level (real bubblewrap)', { timeout: 20_000 }, () => {
  let runner: ToolRunner;
  const secretName = 'TROUPE_TOOL_RUNNER_SECRET';
  const secret = marker('SECRET');
  beforeAll(() => {
    process.env[secretName] = secret;
    runner = createToolRunner();
  });
  afterAll(async () => {
    delete process.env[secretName];
    await runner.close();
  });

  it('runs the tool from its module in a sandbox: uid 65534, clean environment, zod loaded there', async () => {
    const result = (await runner.run(fixtures.bwrapSum, { a: 2, b: 3 }, context())) as Record<string, unknown>;
    expect(result).toMatchObject({ sum: 5, key: 'call-key-1', taskId: 'task-1', uid: 65534, cwd: '/tmp' });
    expect(result.pid).not.toBe(process.pid);
    // Node itself sets PWD; nothing else beyond the sandbox's base environment.
    expect(result.env).toEqual([...Object.keys(baseSandboxEnv), 'PWD'].sort());
  });

  it('finds a tool exported only through an agent’s tools', async () => {
    await expect(runner.run(agentTool('agent_only_bwrap'), { word: 'hello' }, context())).resolves.toBe('HELLO');
  });

  it('contains a tool that reads secrets, opens sockets, writes outside /tmp and reads the host environment', async () => {
    const server = createServer();
    let connections = 0;
    server.on('connection', (socket) => {
      connections += 1;
      socket.destroy();
    });
    const port = await listen(server);
    const tag = marker('pwned');
    const hostTmp = join(tmpdir(), `${tag}.txt`);
    const project = join(process.cwd(), `${tag}.txt`);
    const writeTargets = [project, `/usr/${tag}`, `/etc/${tag}`, `/${tag}`, hostTmp];
    try {
      const probe = (await runner.run(fixtures.bwrapProbe, { loopbackPort: port, writeTargets, envName: secretName }, context())) as Record<string, any>;
      expect(probe.uid).toBe(65534);
      expect(probe.shadow).toMatch(/^error:/);
      expect(probe.passwd).toMatch(/^error:/);
      expect(probe.cloudflareDns).toMatch(/^error:/);
      expect(probe.cloudflareHttps).toMatch(/^error:/);
      expect(probe.loopback).toMatch(/^error:/);
      for (const path of writeTargets.slice(0, 4)) expect(probe.writes[path], path).toMatch(/^error:/);
      // /tmp inside is the sandbox's private scratch: the write works there and never reaches the host.
      expect(probe.writes[hostTmp]).toBe('ok:undefined');
      expect(probe.scratch).toBe('ok:mine');
      expect(probe.ownCode).toBe('error:EROFS');
      expect(probe.secret).toBeNull();
      expect(JSON.stringify(probe.env)).not.toContain(secret);
      expect(probe.env).not.toHaveProperty('NODE_EXTRA_CA_CERTS');
      // Checked from the host: nothing connected, nothing written.
      expect(connections).toBe(0);
      for (const path of writeTargets) expect(existsSync(path), path).toBe(false);
      // The next call of the pool still runs the tool's own code.
      await expect(runner.run(fixtures.bwrapProbe, { loopbackPort: port, writeTargets: [], envName: secretName }, context())).resolves.toMatchObject({ uid: 65534 });
    } finally {
      server.close();
    }
  });

  it('declared binds: ro is readable but not writable, rw is writable, and nothing else is visible', async () => {
    const ro = mkdtempSync(join(tmpdir(), 'troupe-tool-ro-'));
    const rw = mkdtempSync(join(tmpdir(), 'troupe-tool-rw-'));
    try {
      chmodSync(ro, 0o755);
      chmodSync(rw, 0o777);
      writeFileSync(join(ro, 'data.txt'), 'readable', { mode: 0o644 });
      const files = { read: join(ro, 'data.txt'), write: join(rw, 'out.txt'), readOnlyWrite: join(ro, 'data.txt') };
      const unbound = (await runner.run(fixtures.bwrapFiles, files, context())) as Record<string, string>;
      expect(unbound).toEqual({ read: 'error:ENOENT', write: 'error:ENOENT', readOnlyWrite: 'error:ENOENT' });

      const bound = { ...fixtures.bwrapFiles, permissions: { binds: { ro: [ro], rw: [rw] } } };
      const result = (await runner.run(bound, files, context())) as Record<string, string>;
      expect(result).toEqual({ read: 'ok:readable', write: 'ok:undefined', readOnlyWrite: 'error:EROFS' });
      expect(readFileSync(join(rw, 'out.txt'), 'utf8')).toBe('from the sandbox');
      expect(readFileSync(join(ro, 'data.txt'), 'utf8')).toBe('readable');
    } finally {
      rmSync(ro, { recursive: true, force: true });
      rmSync(rw, { recursive: true, force: true });
    }
  });

  it('a tool’s own error becomes ToolThrewError with its class name and message', async () => {
    const run = runner.run(fixtures.bwrapThrows, { orderId: 'B-2' }, context());
    await expect(run).rejects.toBeInstanceOf(ToolThrewError);
    await expect(run).rejects.toMatchObject({ errorName: 'OrderNotFoundError', message: 'order B-2 does not exist', isolation: 'bwrap', code: 'tool_failed' });
  });

  it('limits end runaway tools with typed errors: wall clock, memory (heap and buffers), output', async () => {
    await expect(runner.run(fixtures.bwrapSpin, {}, context())).rejects.toMatchObject({ name: 'BwrapTimeoutError', wallClockMs: 1_000, cause: expect.any(SandboxTimeoutError) });
    await expect(runner.run(fixtures.bwrapMemoryBomb, { kind: 'heap' }, context())).rejects.toBeInstanceOf(SandboxMemoryLimitError);
    await expect(runner.run(fixtures.bwrapMemoryBomb, { kind: 'buffers' }, context())).rejects.toBeInstanceOf(SandboxMemoryLimitError);
    await expect(runner.run(fixtures.bwrapFlood, {}, context())).rejects.toBeInstanceOf(SandboxOutputLimitError);
    await expect(runner.run(fixtures.bwrapSpin, {}, context())).rejects.toBeInstanceOf(BwrapTimeoutError);
  });

  it('abort kills the sandbox and rejects with the reason', async () => {
    const controller = new AbortController();
    const run = runner.run(fixtures.bwrapSleep, {}, context(controller.signal));
    setTimeout(() => controller.abort(new Error('cancelled by test')), 100);
    await expect(run).rejects.toThrow('cancelled by test');
  });

  it('refuses a tool its module does not export, or a module that cannot be bundled', async () => {
    await expect(runner.run(fixtures.notExportedTool('bwrap'), {}, context())).rejects.toMatchObject({ name: 'ToolModuleError', reason: 'runner_tool_not_exported' });
    const missing = { ...fixtures.bwrapSum, module: 'file:///nonexistent/tools.ts' };
    await expect(runner.run(missing, { a: 1, b: 2 }, context())).rejects.toMatchObject({ name: 'ToolModuleError', reason: 'runner_module_failed' });
  });

  it('close() kills a running call with ToolRunnerClosedError', async () => {
    const own = createToolRunner();
    const run = own.run(fixtures.bwrapSleep, {}, context()).catch((e: unknown) => e);
    await sleep(300);
    await own.close();
    expect(await run).toBeInstanceOf(ToolRunnerClosedError);
  });
});

describe.skipIf(skipReason !== undefined)('latency per level (printed, not asserted)', { timeout: 60_000 }, () => {
  const calls = 5;
  const gapMs = { thread: 700, bwrap: 400 } as const;

  it('measures cold (a worker or sandbox per call) against warm (pool of one, prewarmed)', async () => {
    const lines: string[] = [];
    const inline = createToolRunner();
    const inlineSamples: number[] = [];
    for (let i = 0; i < calls; i++) inlineSamples.push(await timed(() => inline.run(fixtures.inlineSum, { a: i, b: 1 }, context())));
    lines.push(`inline                      median ${median(inlineSamples).toFixed(2)} ms`);
    await inline.close();

    for (const [level, tool] of [['thread', fixtures.threadSum], ['bwrap', fixtures.bwrapSum]] as const) {
      const cold = createToolRunner({ threadPoolSize: 0, bwrapPoolSize: 0 });
      await cold.prewarm([tool]); // probe and bundle outside the measurement
      const coldSamples: number[] = [];
      for (let i = 0; i < calls; i++) coldSamples.push(await timed(() => cold.run(tool, { a: i, b: 1 }, context())));
      await cold.close();

      const warm = createToolRunner({ threadPoolSize: 1, bwrapPoolSize: 1 });
      await warm.prewarm([tool]);
      const warmSamples: number[] = [];
      for (let i = 0; i < calls; i++) {
        await sleep(gapMs[level]); // the pool refills after each call; give the next process time to load
        warmSamples.push(await timed(() => warm.run(tool, { a: i, b: 1 }, context())));
      }
      const stats = warm.stats()[level];
      await warm.close();
      expect(stats.warmHits).toBe(calls);
      lines.push(`${level.padEnd(7)} cold (new per call)  median ${median(coldSamples).toFixed(1)} ms  [${coldSamples.map((s) => s.toFixed(0)).join(', ')}]`);
      lines.push(`${level.padEnd(7)} warm (pool of 1)     median ${median(warmSamples).toFixed(1)} ms  [${warmSamples.map((s) => s.toFixed(0)).join(', ')}]`);
    }
    console.log(`tool runner latency, ${calls} calls each:\n  ${lines.join('\n  ')}`);
  });
});
