/**
 * `npm run chaos`: the chaos run with its report (see README, "Chaos"). Not part of `npm test`:
 * it takes a few minutes, on loopback only. Options:
 *   --tasks N       tasks to submit (default 300)
 *   --submit-s S    seconds over which they are submitted and faults injected (default 150)
 *   --seed N        replay the random choices of an earlier run
 *   --no-fuzz       skip the intake fuzz (chaos/fuzz.ts)
 *   --json FILE     also write the report as JSON
 * Exits 0 when nothing was lost and no side effect happened twice, 1 otherwise.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatReport } from './report.ts';
import { runChaos } from './scenario.ts';

const { values } = parseArgs({
  options: { tasks: { type: 'string' }, 'submit-s': { type: 'string' }, seed: { type: 'string' }, 'no-fuzz': { type: 'boolean' }, json: { type: 'string' } },
  strict: true,
});
const positive = (v: string | undefined, name: string, fallback: number) => {
  if (v === undefined) return fallback;
  const x = Number(v);
  if (!Number.isInteger(x) || x <= 0) throw new Error(`--${name} must be a positive whole number (got ${v})`);
  return x;
};

// The whole run is bounded: past this, it stops waiting and reports what it has.
const HARD_LIMIT_MS = 15 * 60_000;
const watchdog = setTimeout(() => {
  process.stderr.write(`chaos run exceeded ${HARD_LIMIT_MS / 60_000} minutes; giving up\n`);
  process.exit(2);
}, HARD_LIMIT_MS);
watchdog.unref();

const started = Date.now();
const report = await runChaos({
  tasks: positive(values.tasks, 'tasks', 300),
  submitMs: positive(values['submit-s'], 'submit-s', 150) * 1000,
  fuzz: !values['no-fuzz'],
  ...(values.seed ? { seed: positive(values.seed, 'seed', 1) } : {}),
  progress: (line) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`),
});
process.stdout.write(formatReport(report));
if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
process.exit(report.ok ? 0 : 1);
