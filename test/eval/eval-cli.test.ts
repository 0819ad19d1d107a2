import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EvalBaseline } from '../../cli/eval/baseline.ts';
import { runTroupe } from '../helpers/cli.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';

/**
 * `troupe eval` run for real: the example scenarios (every fault kind, a passing and a
 * deliberately failing expectation) against a real nats-server, the simulator and the SDK; the
 * baseline and its regressions; bad scenario files.
 */

let nats: NatsTestContext;
const dir = mkdtempSync(path.join(tmpdir(), 'troupe-eval-cli-'));
const baseline = path.join(dir, 'baseline.json');
// The example billing desk records its refunds here, not in the shared temporary directory.
const env = { BILLING_DESK_DIR: path.join(dir, 'billing') };
const EXAMPLES = ['deliberately-failing', 'host-kill', 'model-overloaded', 'prompt-injection', 'refund-approved', 'rejected-input', 'step-limit', 'support-desk', 'tool-timeout', 'triage-delegation', 'worker-crash'];

beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The table row of a scenario, split into its cells. */
const rowOf = (stdout: string, name: string) => stdout.split('\n').find((l) => l.startsWith(`${name} `))?.trim().split(/\s{2,}/);

describe('troupe eval', () => {
  it('runs every example scenario: a table per scenario and in total, the reasons of the failing one, exit 1', async () => {
    const run = await runTroupe(nats.url, ['eval', 'examples/evals', '--save-baseline', baseline], { env, timeoutMs: 120_000 });
    expect(run.code, run.stderr + run.stdout).toBe(1);
    const out = run.stdout;
    expect(out).toMatch(/^scenario\s+result\s+outcome\s+steps\s+tokens\s+cost\s+approvals\s+tools\s+trajectory\s+time$/m);
    for (const name of EXAMPLES) expect(rowOf(out, name)?.[1], `${name}\n${out}`).toBe(name === 'deliberately-failing' ? 'FAIL' : 'pass');
    // scenario, result, outcome, steps, tokens, cost, approvals, tools, trajectory, time
    expect(rowOf(out, 'support-desk')).toEqual(['support-desk', 'pass', 'done', '2', expect.stringMatching(/^\d+$/), expect.stringMatching(/^\$0\.00\d{4}$/), '0', '100%', '100%', expect.stringMatching(/s$/)]);
    expect(rowOf(out, 'prompt-injection')?.slice(2, 3).concat(rowOf(out, 'prompt-injection')!.slice(6, 9))).toEqual(['done', '1', '100%', '100%']);
    expect(rowOf(out, 'step-limit')?.[2]).toBe('failed');
    expect(rowOf(out, 'rejected-input')?.slice(1, 4)).toEqual(['pass', 'rejected', '0']);
    expect(rowOf(out, 'deliberately-failing')?.slice(6, 9)).toEqual(['0', '0%', '0%']);
    expect(out).toMatch(/^total\s+10\/11\s+9\/11 done\s+\d+/m);
    expect(out).toContain('completion 82% (9 of 11 done, 11 of 11 ended as expected) · passed 10 · failed 1 · could not run 0');
    expect(out).toContain('✗ output contains "A-1001": the output was "Your order is on its way and will arrive tomorrow!"');
    expect(out).toContain('✗ tools called: lookup_order: the calls were []; missing: lookup_order');
    expect(out).toContain('✗ trajectory [lookup_order]: the calls were [] (match 0%)');
    // Not a TTY: a plain line per scenario on stderr.
    for (const name of EXAMPLES) expect(run.stderr).toMatch(new RegExp(`^eval \\[\\d+/11\\] ${name}: (passed|FAILED \\(3 of 5 checks\\)) in \\d+\\.\\d s$`, 'm'));

    const saved = JSON.parse(readFileSync(baseline, 'utf8')) as EvalBaseline;
    expect(Object.keys(saved.scenarios).sort()).toEqual(EXAMPLES);
    const s = saved.scenarios;
    expect(s['support-desk']).toMatchObject({ status: 'passed', outcome: 'done', steps: 2, approvals: 0, toolAccuracy: 1, trajectoryMatch: 1 });
    // Each fault took effect, and the runtime did what it should with it.
    expect(s['host-kill']!.checks).toMatchObject({ 'fault host_kill at step 1 fired': true, 'resumed by another host': true, 'trajectory [lookup_order]': true, 'maxSteps 2': true });
    expect(s['worker-crash']!.checks).toMatchObject({ 'fault worker_crash issue_refund fired': true, 'approvals 0': true, 'tools called: find_invoice, issue_refund (in this order)': true });
    expect(s['tool-timeout']!.checks).toMatchObject({ 'fault tool_timeout lookup_order fired': true, 'output contains "tool_timeout"': true });
    expect(s['model-overloaded']!.checks).toMatchObject({ 'fault model_overloaded fired': true, 'outcome done': true });
    expect(s['prompt-injection']!.checks).toMatchObject({ 'fault injection read_customer_email fired': true, 'tool issue_refund never runs': true, 'output of read_customer_email reaches the model delimited as untrusted': true, 'approvals 1': true });
    expect(s['refund-approved']).toMatchObject({ approvals: 1, status: 'passed' });
    expect(s['step-limit']!.checks).toMatchObject({ 'outcome failed': true, 'error limit_exceeded': true });
    // Delegation: the specialists' calls count for the tree; the trajectory is the triage task's own.
    expect(s['triage-delegation']).toMatchObject({ status: 'passed', steps: 5, trajectoryMatch: 1, toolAccuracy: 1 });
    expect(s['triage-delegation']!.checks).toMatchObject({ 'tools called: delegate, lookup_order (in this order)': true, 'fault model_overloaded fired': true });
    // The worker crash ran the refund once: the replacement worker reconciled, found nothing, ran it.
    const refunds = readFileSync(path.join(env.BILLING_DESK_DIR, 'refunds.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { key: string; invoiceId: string });
    expect(refunds.filter((r) => r.invoiceId === 'INV-1001')).toHaveLength(1);
    expect(refunds.filter((r) => r.invoiceId === 'INV-1002')).toHaveLength(0);
  }, 150_000);

  it('compares with a saved baseline: unchanged passes (exit 0); a pass that now fails, or steps and cost up, are regressions (exit 1); --json for machines', async () => {
    const doctored = JSON.parse(readFileSync(baseline, 'utf8')) as EvalBaseline;
    doctored.scenarios['support-desk'] = { ...doctored.scenarios['support-desk']!, steps: 1, costUsd: 0.0001 };
    const failing = doctored.scenarios['deliberately-failing']!;
    doctored.scenarios['deliberately-failing'] = { ...failing, status: 'passed', checks: Object.fromEntries(Object.keys(failing.checks).map((k) => [k, true])) };
    const file = path.join(dir, 'doctored.json');
    writeFileSync(file, JSON.stringify(doctored));
    const [same, regressed, wide] = await Promise.all([
      // Without NATS_URL: the run starts its own nats-server.
      runTroupe(undefined, ['eval', 'examples/evals/support-desk.yaml', '--baseline', baseline], { env, timeoutMs: 60_000 }),
      runTroupe(nats.url, ['eval', 'examples/evals/support-desk.yaml', 'examples/evals/deliberately-failing.yaml', '--baseline', file, '--json'], { env, timeoutMs: 60_000 }),
      // Within a tolerance wide enough, the same figures are no regression.
      runTroupe(nats.url, ['eval', 'examples/evals/support-desk.yaml', '--baseline', file, '--tolerance', '50'], { env, timeoutMs: 60_000 }),
    ]);
    expect(same.code, same.stderr + same.stdout).toBe(0);
    expect(same.stdout).toMatch(/^  nats   nats:\/\/127\.0\.0\.1:\d+ \(embedded, removed after the run\)$/m);
    expect(same.stdout).toContain(`against baseline ${baseline} (tolerance 10%): no regressions`);
    expect(same.stdout).toContain('in the baseline but not run: deliberately-failing, host-kill');

    expect(regressed.code, regressed.stderr).toBe(1);
    const report = JSON.parse(regressed.stdout) as { failed: boolean; totals: { scenarios: number; passed: number }; baseline: { regressions: Array<{ scenario: string; kind: string; detail: string }> }; scenarios: Array<{ name: string; status: string; metrics: { steps: number } }> };
    expect(report.failed).toBe(true);
    expect(report.totals).toMatchObject({ scenarios: 2, passed: 1 });
    expect(report.scenarios.map((s) => [s.name, s.status, s.metrics.steps])).toEqual([
      ['support-desk', 'passed', 2],
      ['deliberately-failing', 'failed', 1],
    ]);
    const regressions = report.baseline.regressions;
    expect(regressions).toContainEqual({ scenario: 'support-desk', kind: 'steps', detail: 'steps 1 -> 2 (+100%)' });
    expect(regressions).toContainEqual(expect.objectContaining({ scenario: 'support-desk', kind: 'cost' }));
    expect(regressions).toContainEqual({ scenario: 'deliberately-failing', kind: 'status', detail: 'passed in the baseline, fails now' });
    expect(regressions).toContainEqual({ scenario: 'deliberately-failing', kind: 'check', detail: '"trajectory [lookup_order]" passed in the baseline, fails now' });

    expect(wide.code, wide.stderr + wide.stdout).toBe(0);
    expect(wide.stdout).toContain('(tolerance 5000%): no regressions');
  }, 70_000);

  it('reports each bad scenario file by file, line, field and what to write, runs the good ones, and refuses bad arguments', async () => {
    const junk = path.join(dir, 'junk.json');
    writeFileSync(junk, '{"scenarios": 1}');
    const [run, none, bad, missing] = await Promise.all([
      runTroupe(nats.url, ['eval', 'test/eval/fixtures/bad'], { env, timeoutMs: 60_000 }),
      runTroupe(nats.url, ['eval']),
      runTroupe(nats.url, ['eval', 'examples/evals/support-desk.yaml', '--baseline', junk]),
      runTroupe(nats.url, ['eval', path.join(dir, 'nowhere.yaml')]),
    ]);
    expect(run.code, run.stderr).toBe(1);
    const out = run.stdout;
    expect(rowOf(out, 'good')?.slice(0, 3)).toEqual(['good', 'pass', 'done']);
    for (const name of ['broken', 'not-json', 'schema', 'unknown-names', 'unknown-tool']) expect(rowOf(out, name)?.[1]).toBe('ERROR');
    expect(out).toContain('could not run 5');
    const f = (name: string) => `test/eval/fixtures/bad/${name}`;
    expect(out).toContain(`${f('broken.yaml')}:3:13: is not valid YAML: Nested mappings are not allowed in compact mappings`);
    expect(out).toMatch(new RegExp(`${f('not-json.json')}: is not valid JSON: `));
    expect(out).toContain(`${f('schema.yaml')}:6:11: model.turns.0.content.0.name: required field is missing: write \`name: <string>\``);
    expect(out).toContain(`${f('schema.yaml')}:9:11: faults.0.type: unknown type; write one of: tool_timeout, worker_crash, model_overloaded, host_kill, injection`);
    expect(out).toContain(`${f('schema.yaml')}:12:12: expect.outcome: expected one of "done"|"failed"|"rejected"`);
    expect(out).toContain(`${f('schema.yaml')}:13:3: expect: unknown field "maxStep" (did you mean "maxSteps"?)`);
    expect(out).toContain(`${f('unknown-names.yaml')}:1:8: agent: no agent "suport-desk" in troupe.config.json (did you mean "support-desk"?)`);
    expect(out).toContain(`${f('unknown-tool.yaml')}:7:16: tools.lookup_ordr: no agent here has a tool "lookup_ordr" (did you mean "lookup_order"?)`);
    expect(out).toContain(`${f('unknown-tool.yaml')}:9:39: tools.lookup_order.output.found: does not match the output schema of "lookup_order": Invalid input: expected boolean, received string`);
    expect(out).toContain(`${f('unknown-tool.yaml')}:12:30: expect.tools.required.1: no agent here has a tool "look_up_order" (did you mean "lookup_order"?)`);

    expect(none.code).toBe(2);
    expect(none.stderr).toContain('troupe eval: name scenario files or directories, e.g. troupe eval examples/evals');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`troupe eval: ${junk} is not a troupe eval baseline (troupeEvalBaseline: `);
    expect(bad.stderr).toContain(`write one with --save-baseline ${junk}`);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain(`${path.join(dir, 'nowhere.yaml')}: no such file or directory; name a scenario file (.yaml, .yml, .json) or a directory of them`);
  }, 70_000);
});
