/**
 * Prints the per-call latency of the bwrap level: cold (spawn bwrap + Node per call) against the warm
 * pool. A measurement, not a test: it asserts nothing.
 *
 *   npx tsx test/sandbox/measure-latency.ts [calls=30]
 */
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { createWarmPool, runInBwrap, runJavaScript } from '../../sandbox/isolation/index.ts';

const calls = Number(process.argv[2] ?? 30);
const job = { code: 'return input.a + input.b', input: { a: 1, b: 2 } };

function summary(label: string, samples: number[]): void {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(1);
  const mean = (samples.reduce((a, b) => a + b, 0) / samples.length).toFixed(1);
  console.log(`${label.padEnd(44)} n=${samples.length}  median ${at(0.5)} ms  p90 ${at(0.9)} ms  mean ${mean} ms`);
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function series(n: number, fn: () => Promise<unknown>, gapMs = 0): Promise<number[]> {
  const samples: number[] = [];
  await fn(); // warm the host process's caches (module loading, layout probe)
  for (let i = 0; i < n; i++) {
    samples.push(await time(fn));
    if (gapMs > 0) await sleep(gapMs);
  }
  return samples;
}

const bare: number[] = [];
for (let i = 0; i < calls; i++) {
  const t0 = performance.now();
  spawnSync(process.execPath, ['-e', '1'], { env: {} });
  bare.push(performance.now() - t0);
}
summary('reference: node -e (no sandbox, clean env)', bare);
summary('bwrap + prlimit running `true`', await series(calls, () => runInBwrap({ command: ['true'] })));
summary('cold: runJavaScript (bwrap + Node per call)', await series(calls, () => runJavaScript(job)));

{
  await using pool = createWarmPool({ size: 2 });
  await sleep(300);
  summary('warm pool size 2, calls 100 ms apart', await series(calls, () => pool.run(job), 100));
  console.log('  pool stats', pool.stats());
}
{
  await using pool = createWarmPool({ size: 2 });
  await sleep(300);
  summary('warm pool size 2, back-to-back calls', await series(calls, () => pool.run(job)));
  console.log('  pool stats', pool.stats());
}
