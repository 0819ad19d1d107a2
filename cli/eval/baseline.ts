/**
 * Saved baselines and what changed since: a scenario (or one of its checks) that passed and now
 * fails, and steps, tokens or cost up beyond a tolerance, are regressions.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import type { ScenarioResult } from './run-scenario.ts';

const entrySchema = z.object({
  status: z.enum(['passed', 'failed', 'error']),
  outcome: z.enum(['done', 'failed', 'rejected', 'timeout']).nullable(),
  steps: z.number().nullable(),
  tokens: z.number().nullable(),
  costUsd: z.number().nullable(),
  approvals: z.number().nullable(),
  toolAccuracy: z.number().nullable(),
  trajectoryMatch: z.number().nullable(),
  /** Each check's name and whether it passed. */
  checks: z.record(z.string(), z.boolean()),
});
export type BaselineEntry = z.infer<typeof entrySchema>;

/** A saved baseline file (version 1). */
export const evalBaselineSchema = z.object({
  troupeEvalBaseline: z.literal(1),
  createdAt: z.string(),
  /** By scenario name. */
  scenarios: z.record(z.string(), entrySchema),
});
export type EvalBaseline = z.infer<typeof evalBaselineSchema>;

/** One way a scenario got worse. */
export interface Regression {
  scenario: string;
  kind: 'status' | 'check' | 'steps' | 'tokens' | 'cost';
  detail: string;
}

/** What changed against a baseline. */
export interface BaselineComparison {
  file: string;
  tolerance: number;
  regressions: Regression[];
  /** Scenarios or checks that failed in the baseline and pass now. */
  improvements: string[];
  /** Scenarios of the baseline that this run did not have. */
  missing: string[];
  /** Scenarios of this run that the baseline did not have. */
  added: string[];
}

/** The baseline of a run's results. */
export function baselineOf(results: readonly ScenarioResult[], now = new Date()): EvalBaseline {
  const scenarios: Record<string, BaselineEntry> = {};
  for (const r of results) {
    scenarios[r.name] = {
      status: r.status,
      outcome: r.outcome,
      steps: r.metrics?.steps ?? null,
      tokens: r.metrics?.tokens ?? null,
      costUsd: r.metrics?.costUsd ?? null,
      approvals: r.metrics?.approvals ?? null,
      toolAccuracy: r.metrics?.toolAccuracy ?? null,
      trajectoryMatch: r.metrics?.trajectoryMatch ?? null,
      checks: Object.fromEntries(r.checks.map((c) => [c.name, c.passed])),
    };
  }
  return { troupeEvalBaseline: 1, createdAt: now.toISOString(), scenarios };
}

export function saveBaseline(file: string, baseline: EvalBaseline): void {
  writeFileSync(file, `${JSON.stringify(baseline, null, 2)}\n`);
}

/** Reads a baseline file; a missing or malformed one is a clear error naming the file. */
export function loadBaseline(file: string): EvalBaseline {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TerminalError(ErrorCode.notFound, `baseline ${file} cannot be read (${(err as Error).message}); write one with --save-baseline ${file}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new TerminalError(ErrorCode.invalidConfig, `baseline ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = evalBaselineSchema.safeParse(json);
  if (!parsed.success) {
    const first = parsed.error.issues[0]!;
    throw new TerminalError(ErrorCode.invalidConfig, `${file} is not a troupe eval baseline (${first.path.join('.') || '(root)'}: ${first.message}); write one with --save-baseline ${file}`);
  }
  return parsed.data;
}

/** Whether `now` is up on `before` by more than `tolerance` (a share: 0.1 = 10%). */
function upBeyond(before: number | null, now: number | null, tolerance: number): boolean {
  if (before === null || now === null) return false;
  return now > before * (1 + tolerance) + 1e-12;
}

const change = (before: number, now: number) => (before === 0 ? 'from 0' : `${now >= before ? '+' : ''}${Math.round(((now - before) / before) * 100)}%`);

/** Compares a run with a baseline. */
export function compareWithBaseline(file: string, baseline: EvalBaseline, results: readonly ScenarioResult[], tolerance: number): BaselineComparison {
  const regressions: Regression[] = [];
  const improvements: string[] = [];
  const added: string[] = [];
  const now = baselineOf(results).scenarios;
  for (const [name, current] of Object.entries(now)) {
    const before = baseline.scenarios[name];
    if (!before) {
      added.push(name);
      continue;
    }
    if (before.status === 'passed' && current.status !== 'passed') regressions.push({ scenario: name, kind: 'status', detail: `passed in the baseline, ${current.status === 'error' ? 'could not run' : 'fails'} now` });
    if (before.status !== 'passed' && current.status === 'passed') improvements.push(`${name}: ${before.status} in the baseline, passes now`);
    for (const [check, passed] of Object.entries(current.checks)) {
      const was = before.checks[check];
      if (was === true && !passed) regressions.push({ scenario: name, kind: 'check', detail: `"${check}" passed in the baseline, fails now` });
      if (was === false && passed) improvements.push(`${name}: "${check}" passes now`);
    }
    if (upBeyond(before.steps, current.steps, tolerance)) regressions.push({ scenario: name, kind: 'steps', detail: `steps ${before.steps} -> ${current.steps} (${change(before.steps!, current.steps!)})` });
    if (upBeyond(before.tokens, current.tokens, tolerance)) regressions.push({ scenario: name, kind: 'tokens', detail: `tokens ${before.tokens} -> ${current.tokens} (${change(before.tokens!, current.tokens!)})` });
    if (upBeyond(before.costUsd, current.costUsd, tolerance)) regressions.push({ scenario: name, kind: 'cost', detail: `cost $${before.costUsd!.toFixed(6)} -> $${current.costUsd!.toFixed(6)} (${change(before.costUsd!, current.costUsd!)})` });
  }
  const missing = Object.keys(baseline.scenarios).filter((n) => !(n in now));
  return { file, tolerance, regressions, improvements, missing, added };
}
