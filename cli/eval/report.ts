/**
 * A run's results as people read them (a table per scenario and in total, then what failed and
 * why, then what regressed) and as machines do (one JSON document).
 */
import type { BaselineComparison } from './baseline.ts';
import { pct } from './checks.ts';
import type { ScenarioResult } from './run-scenario.ts';

/** The run's figures over all scenarios. */
export interface Totals {
  scenarios: number;
  passed: number;
  failed: number;
  /** Scenarios that could not run (bad files, harness failures). */
  errors: number;
  /** Scenarios whose task ended done. */
  completed: number;
  /** Scenarios whose task ended as expected (done, failed or rejected). */
  asExpected: number;
  steps: number;
  tokens: number;
  costUsd: number;
  approvals: number;
  /** Mean over the scenarios that set tool expectations; null when none does. */
  toolAccuracy: number | null;
  /** Mean over the scenarios that set a trajectory; null when none does. */
  trajectoryMatch: number | null;
  durationMs: number;
}

const mean = (values: number[]) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : null);

export function totalsOf(results: readonly ScenarioResult[], durationMs: number): Totals {
  const measured = results.flatMap((r) => (r.metrics ? [r.metrics] : []));
  return {
    scenarios: results.length,
    passed: results.filter((r) => r.status === 'passed').length,
    failed: results.filter((r) => r.status === 'failed').length,
    errors: results.filter((r) => r.status === 'error').length,
    completed: results.filter((r) => r.outcome === 'done').length,
    asExpected: results.filter((r) => r.checks[0]?.name.startsWith('outcome ') && r.checks[0].passed).length,
    steps: measured.reduce((n, m) => n + m.steps, 0),
    tokens: measured.reduce((n, m) => n + m.tokens, 0),
    costUsd: measured.reduce((n, m) => n + m.costUsd, 0),
    approvals: measured.reduce((n, m) => n + m.approvals, 0),
    toolAccuracy: mean(measured.flatMap((m) => (m.toolAccuracy === null ? [] : [m.toolAccuracy]))),
    trajectoryMatch: mean(measured.flatMap((m) => (m.trajectoryMatch === null ? [] : [m.trajectoryMatch]))),
    durationMs,
  };
}

/** Whether the run should fail a CI job: any scenario not passing, or any regression. */
export function runFailed(results: readonly ScenarioResult[], comparison: BaselineComparison | undefined): boolean {
  return results.some((r) => r.status !== 'passed') || (comparison?.regressions.length ?? 0) > 0;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;
const usd = (n: number) => `$${n.toFixed(6)}`;
const count = (n: number) => n.toLocaleString('en-US');
const share = (a: number, b: number) => (b === 0 ? '-' : `${Math.round((a / b) * 100)}%`);

const COLUMNS = ['scenario', 'result', 'outcome', 'steps', 'tokens', 'cost', 'approvals', 'tools', 'trajectory', 'time'] as const;
const RIGHT = new Set<string>(['steps', 'tokens', 'cost', 'approvals', 'tools', 'trajectory', 'time']);

function row(r: ScenarioResult): string[] {
  const m = r.metrics;
  const expected = r.checks[0]?.name.startsWith('outcome ') ? r.checks[0] : undefined;
  const outcome = r.outcome === null ? '-' : `${r.outcome}${expected && !expected.passed ? ` (expected ${expected.name.slice('outcome '.length)})` : ''}`;
  return [
    r.name,
    r.status === 'passed' ? 'pass' : r.status === 'failed' ? 'FAIL' : 'ERROR',
    outcome,
    m ? String(m.steps) : '-',
    m ? count(m.tokens) : '-',
    m ? usd(m.costUsd) : '-',
    m ? String(m.approvals) : '-',
    m ? pct(m.toolAccuracy) : '-',
    m ? pct(m.trajectoryMatch) : '-',
    // The task's own time; a scenario that could not run took none.
    m ? seconds(m.durationMs) : '-',
  ];
}

/** Aligns cells into columns (numbers to the right). */
function table(header: readonly string[], rows: string[][], footer: string[]): string[] {
  const all = [header as string[], ...rows, footer];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((cell, i) => (RIGHT.has(header[i]!) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const rule = '-'.repeat(widths.reduce((a, b) => a + b + 2, -2));
  return [line(header as string[]), ...rows.map(line), rule, line(footer)];
}

/** The whole human report: table, totals, failures with their reasons, errors, baseline changes. */
export function renderReport(results: readonly ScenarioResult[], totals: Totals, comparison: BaselineComparison | undefined, header: string, options: { kept?: boolean } = {}): string {
  const out: string[] = [header, ''];
  const footer = [
    'total',
    `${totals.passed}/${totals.scenarios}`,
    `${totals.completed}/${totals.scenarios} done`,
    String(totals.steps),
    count(totals.tokens),
    usd(totals.costUsd),
    String(totals.approvals),
    pct(totals.toolAccuracy),
    pct(totals.trajectoryMatch),
    seconds(totals.durationMs),
  ];
  out.push(...table(COLUMNS, results.map(row), footer), '');
  out.push(
    `completion ${share(totals.completed, totals.scenarios)} (${totals.completed} of ${totals.scenarios} done, ${totals.asExpected} of ${totals.scenarios} ended as expected) · passed ${totals.passed} · failed ${totals.failed} · could not run ${totals.errors}`,
  );
  const failed = results.filter((r) => r.status === 'failed');
  if (failed.length) {
    out.push('', 'failed:');
    for (const r of failed) {
      out.push(`  ${r.name} (${r.file}, task ${r.taskId})`);
      for (const c of r.checks.filter((c) => !c.passed)) out.push(`    ✗ ${c.name}: ${c.reason}`);
      if (options.kept) out.push(`    its timeline: TROUPE_PREFIX=${r.prefix} npx troupe trace ${r.taskId}`);
    }
  }
  const errors = results.filter((r) => r.status === 'error');
  if (errors.length) {
    out.push('', 'could not run:');
    for (const r of errors) for (const p of r.problems) out.push(`  ${p}`);
  }
  if (comparison) out.push('', ...renderComparison(comparison));
  return `${out.join('\n')}\n`;
}

function renderComparison(c: BaselineComparison): string[] {
  const out = [`against baseline ${c.file} (tolerance ${Math.round(c.tolerance * 100)}%): ${c.regressions.length ? `${c.regressions.length} regression${c.regressions.length === 1 ? '' : 's'}` : 'no regressions'}`];
  for (const r of c.regressions) out.push(`  ✗ ${r.scenario}: ${r.detail}`);
  for (const i of c.improvements) out.push(`  ✓ ${i}`);
  if (c.added.length) out.push(`  new (not in the baseline): ${c.added.join(', ')}`);
  if (c.missing.length) out.push(`  in the baseline but not run: ${c.missing.join(', ')}`);
  return out;
}

/** The machine report (`--json`). */
export function jsonReport(results: readonly ScenarioResult[], totals: Totals, comparison: BaselineComparison | undefined, run: { runId: string; nats: string; embedded: boolean }): string {
  return `${JSON.stringify({ run, totals, failed: runFailed(results, comparison), scenarios: results, baseline: comparison ?? null }, null, 2)}\n`;
}
