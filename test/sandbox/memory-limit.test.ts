/**
 * The memory limit of a sandboxed Node tool, against the real bubblewrap: Node's own reservations are
 * not charged to the tool, so a heap that outgrows its limit is stopped by V8's own heap limit (which
 * says so) while the kernel still has memory to give, never by a refused allocation at a point where
 * Node may die without a word; and a tool that crashes below its limit is still reported as a crash.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { SandboxExitError, SandboxMemoryLimitError, type SandboxError } from '../../sandbox/isolation/index.ts';
import { NODE_RUNTIME_RESERVE_BYTES } from '../../sandbox/isolation/javascript-runner.ts';
import { createToolRunner, type ToolRunner } from '../../sandbox/runners/index.ts';
import type { Tool, ToolContext } from '../../sandbox/tool.ts';
import { bwrapSkipReason } from './escape-helpers.ts';
import * as fixtures from './fixtures/tools.ts';

const skipReason = await bwrapSkipReason();
const MiB = 1024 * 1024;

function context(): ToolContext {
  return { key: 'call-key-1', taskId: 'task-1', signal: new AbortController().signal };
}

function withMemory(tool: Tool<any, any>, memoryBytes: number): Tool<any, any> {
  return { ...tool, permissions: { ...tool.permissions, limits: { ...tool.permissions.limits, memoryBytes } } };
}

async function rejection(run: Promise<unknown>): Promise<SandboxError> {
  const outcome = await run.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if (!('error' in outcome)) throw new Error(`expected a failure, got ${JSON.stringify(outcome.value)}`);
  return outcome.error as SandboxError;
}

/** V8's message when the old generation reaches `--max-old-space-size`, as opposed to a refused mmap. */
const V8_HEAP_LIMIT = /Reached heap limit|Ineffective mark-compacts near heap limit/;

describe.skipIf(skipReason !== undefined)('memory limit of a sandboxed Node tool (real bubblewrap)', { timeout: 60_000 }, () => {
  let runner: ToolRunner;
  beforeAll(() => {
    runner = createToolRunner({ bwrapPoolSize: 0 });
  });
  afterAll(() => runner.close());

  it('Node’s own reservations, with the tool’s bundle loaded, fit in the reserve granted for them', async () => {
    const status = z.object({ VmData: z.number(), Threads: z.number() }).parse(await runner.run(fixtures.bwrapStatus, {}, context()));
    // The reserve also leaves V8's collector room to work at the heap limit: at least 16 MiB of it is spare.
    expect(status.VmData * 1024).toBeLessThan(NODE_RUNTIME_RESERVE_BYTES - 16 * MiB);
    expect(status.Threads).toBeGreaterThan(4); // Node's own threads are there, so they were counted
  });

  it.each([16, 48, 96, 256])('a heap bomb under a %i MiB limit is stopped by V8 at its heap limit, and says so', async (mib) => {
    const error = await rejection(runner.run(withMemory(fixtures.bwrapMemoryBomb, mib * MiB), { kind: 'heap' }, context()));
    expect(error).toBeInstanceOf(SandboxMemoryLimitError);
    expect(error).toMatchObject({ memoryBytes: mib * MiB });
    expect(error.result?.stderr).toMatch(V8_HEAP_LIMIT);
  });

  it('a buffer bomb is stopped by the kernel’s limit and reported as the memory limit', async () => {
    const error = await rejection(runner.run(fixtures.bwrapMemoryBomb, { kind: 'buffers' }, context()));
    expect(error).toBeInstanceOf(SandboxMemoryLimitError);
  });

  it.each([0, 40])('a crash while holding %i MiB, below the limit, is still a crash', async (mib) => {
    const error = await rejection(runner.run(fixtures.bwrapCrash, { mib }, context()));
    expect(error).toBeInstanceOf(SandboxExitError);
    expect(error).toMatchObject({ signal: 'SIGSEGV', exitCode: null });
  });
});
