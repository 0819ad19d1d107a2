/**
 * Errors crossing the isolation boundary: a TroupeError a `thread` or `bwrap` tool throws comes back
 * with its code, message and retryability, so the call is retried exactly as it would be inline;
 * anything else stays a terminal `tool_failed`; the isolated levels' wall-clock timeouts are
 * retryable like the inline one. Through executeTool, an inline tool's failure reads exactly as the
 * same failure at the isolated levels.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, toWireError } from '../../common/errors.ts';
import { ToolTimeoutError } from '../../sandbox/errors.ts';
import { executeTool } from '../../sandbox/execute.ts';
import { SandboxTimeoutError } from '../../sandbox/isolation/index.ts';
import { compileOutputPolicy } from '../../sandbox/output.ts';
import { BwrapTimeoutError, createToolRunner, ThreadTimeoutError, ToolThrewError, type ToolRunner } from '../../sandbox/runners/index.ts';
import type { Tool, ToolContext } from '../../sandbox/tool.ts';
import { bwrapSkipReason } from './escape-helpers.ts';
import * as fixtures from './fixtures/tools.ts';

const skipReason = await bwrapSkipReason();

function context(): ToolContext {
  return { key: 'call-key-1', taskId: 'task-1', signal: new AbortController().signal };
}

async function failure(run: Promise<unknown>): Promise<Error> {
  const outcome = await run.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if (!('error' in outcome)) throw new Error(`expected a failure, got ${JSON.stringify(outcome.value)}`);
  expect(outcome.error).toBeInstanceOf(Error);
  return outcome.error as Error;
}

/** Runs `tool` through executeTool with up to `maxAttempts` attempts (three by default) and no backoff. */
function execute(runner: ToolRunner, tool: Tool<any, any>, args: unknown, maxAttempts = 3, ctx: ToolContext = context()): Promise<unknown> {
  const output = compileOutputPolicy({ maxOutputBytes: 4096, redact: [], redactEnv: false }, {});
  return executeTool(tool, args, ctx, { runner, output, maxAttempts, retryBackoffMs: 0, random: () => 0 });
}

/**
 * What a caller of executeTool acts on: the code, message and retryability, and the name of what the
 * tool threw (a TroupeError thrown inline arrives as itself, elsewhere inside a ToolThrewError).
 */
function reading(error: Error) {
  const own = error as Error & { code?: unknown; retryable?: unknown };
  const thrown = error instanceof ToolThrewError ? error.errorName : error.name;
  return { code: own.code, message: error.message, retryable: own.retryable, thrown };
}

const failureKinds = ['retryable', 'terminal', 'lookalike', 'plain', 'non-error'] as const;

describe('executeTool: a failure reads the same at every level', { timeout: 30_000 }, () => {
  let runner: ToolRunner;
  beforeAll(() => {
    runner = createToolRunner();
  });
  afterAll(() => runner.close());

  it('an inline tool’s plain Error is tool_failed and terminal, never internal', async () => {
    const error = await failure(execute(runner, fixtures.inlineTroupeError, { kind: 'plain' }, 1));
    expect(error).toBeInstanceOf(ToolThrewError);
    expect(error).toMatchObject({ code: ErrorCode.toolFailed, retryable: false, errorName: 'OrderNotFoundError', message: 'order C-3 does not exist', isolation: 'inline' });
    expect(error.cause).toBeInstanceOf(fixtures.OrderNotFoundError);
    expect(toWireError(error)).toEqual({ code: ErrorCode.toolFailed, message: 'order C-3 does not exist' });
  });

  it.each(failureKinds)('%s: inline and thread agree', async (kind) => {
    const inline = await failure(execute(runner, fixtures.inlineTroupeError, { kind }, 1));
    const thread = await failure(execute(runner, fixtures.threadTroupeError, { kind }, 1));
    expect(reading(inline)).toEqual(reading(thread));
    expect(toWireError(inline)).toEqual(toWireError(thread));
    expect(toWireError(inline).code).not.toBe(ErrorCode.internal);
  });

  it.skipIf(skipReason !== undefined).each(failureKinds)('%s: inline and bwrap agree', async (kind) => {
    const inline = await failure(execute(runner, fixtures.inlineTroupeError, { kind }, 1));
    const bwrap = await failure(execute(runner, fixtures.bwrapTroupeError, { kind }, 1));
    expect(reading(inline)).toEqual(reading(bwrap));
  });

  it('the reason of an abort is rethrown as it is, not typed as the tool’s failure', async () => {
    const controller = new AbortController();
    const reason = new Error('cancelled by the caller');
    const run = execute(runner, fixtures.threadSleep, {}, 1, { ...context(), signal: controller.signal });
    setTimeout(() => controller.abort(reason), 100);
    expect(await failure(run)).toBe(reason);
  });
});

/** Calls `use` with a fresh directory the sandbox user (host uid 65534 when the tests run as root) can write. */
async function withScratchDir<T>(use: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-flaky-'));
  try {
    chmodSync(dir, 0o777);
    return await use(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('ToolThrewError', () => {
  it('takes the code and retryability of a reported TroupeError, and nothing from anything else', () => {
    const own = new ToolThrewError('t', 'thread', { name: 'RetryableError', message: 'busy', code: 'tool_unavailable', retryable: true });
    expect(own).toMatchObject({ code: 'tool_unavailable', retryable: true, message: 'busy', errorName: 'RetryableError' });
    expect(own.toWire()).toEqual({ code: 'tool_unavailable', message: 'busy' });
    // A code troupe does not know, a flag that is not a boolean, or none at all: a plain failure.
    for (const fields of [{ code: 'ThrottlingException', retryable: true }, { code: 'timeout', retryable: 'yes' }, { code: 'timeout' }, {}]) {
      expect(new ToolThrewError('t', 'bwrap', { name: 'Error', message: 'x', ...fields })).toMatchObject({ code: 'tool_failed', retryable: false });
    }
  });

  it('timeouts of every level are retryable, with the timeout code', () => {
    expect(new ToolTimeoutError('t', 1_000)).toMatchObject({ code: 'tool_timeout', retryable: true });
    expect(new ThreadTimeoutError('t', 1_000)).toMatchObject({ code: 'tool_timeout', retryable: true });
    expect(new BwrapTimeoutError('t', 1_000)).toMatchObject({ code: 'tool_timeout', retryable: true });
  });
});

describe('thread level', { timeout: 20_000 }, () => {
  let runner: ToolRunner;
  beforeAll(() => {
    runner = createToolRunner();
  });
  afterAll(() => runner.close());

  it('a RetryableError the tool throws comes back retryable, with its code and message', async () => {
    const error = await failure(runner.run(fixtures.threadTroupeError, { kind: 'retryable' }, context()));
    expect(error).toBeInstanceOf(ToolThrewError);
    expect(error).toMatchObject({ errorName: 'RetryableError', code: ErrorCode.toolUnavailable, message: 'the upstream is busy', retryable: true, isolation: 'thread' });
  });

  it('a TerminalError keeps its code and stays terminal; a plain Error is tool_failed whatever it carries', async () => {
    const terminal = await failure(runner.run(fixtures.threadTroupeError, { kind: 'terminal' }, context()));
    expect(terminal).toMatchObject({ errorName: 'TerminalError', code: ErrorCode.permissionDenied, message: 'the upstream refused', retryable: false });
    const lookalike = await failure(runner.run(fixtures.threadTroupeError, { kind: 'lookalike' }, context()));
    expect(lookalike).toMatchObject({ errorName: 'Error', code: ErrorCode.toolFailed, message: 'throttled', retryable: false });
  });

  it('so does a RetryableError thrown where nothing in the worker catches it', async () => {
    const error = await failure(runner.run(fixtures.threadTroupeError, { kind: 'uncaught' }, context()));
    expect(error).toMatchObject({ name: 'ToolThrewError', code: ErrorCode.timeout, message: 'the upstream timed out', retryable: true });
  });

  it('the wall-clock timeout is retryable', async () => {
    const error = await failure(runner.run(fixtures.threadSpin, {}, context()));
    expect(error).toBeInstanceOf(ThreadTimeoutError);
    expect(error).toMatchObject({ code: ErrorCode.toolTimeout, retryable: true, wallClockMs: 800 });
  });

  it('executeTool retries a call that asks for it until it succeeds, as it would inline', async () => {
    await withScratchDir(async (dir) => {
      await expect(execute(runner, fixtures.threadFlaky, { dir, failures: 2 })).resolves.toEqual({ attempts: 3 });
    });
    // Retried only up to its attempts: the last error is the tool's own.
    await withScratchDir(async (dir) => {
      const error = await failure(execute(runner, fixtures.threadFlaky, { dir, failures: 5 }));
      expect(error).toMatchObject({ code: ErrorCode.toolUnavailable, message: 'attempt 3 failed; try again', retryable: true });
    });
  });
});

describe.skipIf(skipReason !== undefined)('bwrap level (real bubblewrap)', { timeout: 20_000 }, () => {
  let runner: ToolRunner;
  beforeAll(() => {
    runner = createToolRunner();
  });
  afterAll(() => runner.close());

  it('a RetryableError the tool throws comes back retryable, with its code and message', async () => {
    const error = await failure(runner.run(fixtures.bwrapTroupeError, { kind: 'retryable' }, context()));
    expect(error).toBeInstanceOf(ToolThrewError);
    expect(error).toMatchObject({ errorName: 'RetryableError', code: ErrorCode.toolUnavailable, message: 'the upstream is busy', retryable: true, isolation: 'bwrap' });
  });

  it('a TerminalError keeps its code and stays terminal; a plain Error is tool_failed whatever it carries', async () => {
    const terminal = await failure(runner.run(fixtures.bwrapTroupeError, { kind: 'terminal' }, context()));
    expect(terminal).toMatchObject({ errorName: 'TerminalError', code: ErrorCode.permissionDenied, message: 'the upstream refused', retryable: false });
    const lookalike = await failure(runner.run(fixtures.bwrapTroupeError, { kind: 'lookalike' }, context()));
    expect(lookalike).toMatchObject({ errorName: 'Error', code: ErrorCode.toolFailed, message: 'throttled', retryable: false });
  });

  it('the wall-clock timeout is retryable, and keeps the sandbox’s report as its cause', async () => {
    const error = await failure(runner.run(fixtures.bwrapSpin, {}, context()));
    expect(error).toBeInstanceOf(BwrapTimeoutError);
    expect(error).toMatchObject({ code: ErrorCode.toolTimeout, retryable: true, wallClockMs: 1_000 });
    expect(error.cause).toBeInstanceOf(SandboxTimeoutError);
    expect((error.cause as SandboxTimeoutError).result?.timedOut).toBe(true);
  });

  it('executeTool retries a call that asks for it until it succeeds, as it would inline', async () => {
    await withScratchDir(async (dir) => {
      const tool = { ...fixtures.bwrapFlaky, permissions: { binds: { rw: [dir] } } };
      await expect(execute(runner, tool, { dir, failures: 2 })).resolves.toEqual({ attempts: 3 });
    });
  });
});
