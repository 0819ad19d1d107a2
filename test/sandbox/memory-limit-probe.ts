/**
 * Runs the bwrap memory bomb many times while other processes load every core, and prints how each
 * run was classified. A reproduction aid for the "memory bomb reported as a crash" flake, not a test:
 * it asserts nothing, but exits non-zero when any run was not a SandboxMemoryLimitError.
 *
 *   npx tsx test/sandbox/memory-limit-probe.ts [runs=60] [load=2] [kind=both|heap|buffers]
 */
import { fork } from 'node:child_process';
import { cpus } from 'node:os';
import { SandboxError, SandboxMemoryLimitError, type SandboxResult } from '../../sandbox/isolation/index.ts';
import { createToolRunner } from '../../sandbox/runners/index.ts';
import * as fixtures from './fixtures/tools.ts';

const runs = Number(process.argv[2] ?? 60);
const loaders = Number(process.argv[3] ?? cpus().length);
const kinds = (process.argv[4] ?? 'both') === 'both' ? (['heap', 'buffers'] as const) : ([process.argv[4]] as ('heap' | 'buffers')[]);

// CPU load: processes that spin and churn memory, so the sandbox's GC threads and allocations race.
const load = Array.from({ length: loaders }, () =>
  fork('-e', [], {
    execArgv: ['-e', 'const a = []; for (;;) { a.push(new Array(1000).fill(1)); if (a.length > 5000) a.length = 0; }'],
    stdio: 'ignore',
  }),
);

/** How a run said it ran out of memory: V8's fatal message, or the allocation error the code threw. */
function evidence(result: SandboxResult): string {
  const text = `${result.stderr}\n${result.stdout}`;
  const found = /FATAL ERROR: ([^\n]*?) Allocation failed|(Array buffer allocation failed)|(Cannot allocate memory)/.exec(text);
  const what = found?.[1] ?? found?.[2] ?? found?.[3] ?? 'no message';
  return `${result.signal ?? `exit ${result.exitCode}`}, ${what}`;
}

const runner = createToolRunner(); // a warm pool of one, as the tool-runner tests use
const tally = new Map<string, number>();
const odd: string[] = [];
try {
  for (let i = 0; i < runs; i++) {
    const kind = kinds[i % kinds.length]!;
    const caught = await runner.run(fixtures.bwrapMemoryBomb, { kind }, { key: `probe-${i}`, taskId: 'probe', signal: new AbortController().signal }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const outcome = caught === undefined ? 'resolved' : caught instanceof Error ? caught.name : String(caught);
    const result = caught instanceof SandboxError ? caught.result : undefined;
    const label = `${kind}:${outcome}${result === undefined ? '' : ` (${evidence(result)})`}`;
    tally.set(label, (tally.get(label) ?? 0) + 1);
    if (outcome !== SandboxMemoryLimitError.name) {
      const detail = result === undefined ? String(caught) : `exit ${result.exitCode} signal ${result.signal}, stderr ${JSON.stringify(result.stderr.slice(-300))}`;
      odd.push(`run ${i} (${kind}): ${outcome}: ${detail}`);
    }
    process.stdout.write(outcome === SandboxMemoryLimitError.name ? '.' : 'X');
  }
} finally {
  for (const child of load) child.kill('SIGKILL');
  await runner.close();
}
console.log(`\n${runs} runs of bwrap_memory_bomb with ${loaders} CPU loaders:`);
for (const [label, count] of [...tally].sort()) console.log(`  ${label.padEnd(40)} ${count}`);
for (const line of odd) console.log(`  ${line}`);
const misclassified = [...tally].filter(([label]) => !label.includes(`:${SandboxMemoryLimitError.name}`)).reduce((n, [, c]) => n + c, 0);
console.log(`misclassified: ${misclassified}/${runs}`);
process.exitCode = misclassified === 0 ? 0 : 1;
