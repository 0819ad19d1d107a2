import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ruleFor } from '../../cli/eval/approver.ts';
import { baselineOf, compareWithBaseline } from '../../cli/eval/baseline.ts';
import { measure, toolAccuracy, toolCallsOf, trajectoryMatch, treeToolCallsOf, type Observation } from '../../cli/eval/metrics.ts';
import { createProgress } from '../../cli/eval/progress.ts';
import type { ScenarioResult } from '../../cli/eval/run-scenario.ts';
import { findScenarioFiles, loadScenarioFile, ScenarioFileError } from '../../cli/eval/scenario-file.ts';
import { simulatorScenarioOf } from '../../cli/eval/scenario.ts';
import type { ApprovalRequest } from '../../runtime/approvals.ts';
import type { TaskEvent } from '../../runtime/wire.ts';

/** The harness's pure parts: scenario files, metrics, baselines, progress. The CLI test runs it all for real. */

const dir = mkdtempSync(path.join(tmpdir(), 'troupe-eval-units-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
}

describe('scenario files', () => {
  it('reads YAML with defaults: the name from the file, outcome done, reject unasked approvals', () => {
    const loaded = loadScenarioFile(file('plain.yaml', 'agent: support-desk\ninput: { customer: Ada, message: Hi }\nmodel:\n  turns:\n    - text: Hello.\n'));
    if (loaded instanceof ScenarioFileError) throw loaded;
    expect(loaded.scenario).toMatchObject({ name: 'plain', expect: { outcome: 'done' }, approvals: { default: 'reject', rules: [] }, timeoutMs: 60_000, faults: [], tools: {} });
  });

  it('names file, line, field and what to write for every problem of a bad file', () => {
    const f = file('bad.yaml', ['agent: support-desk', 'input: { customer: Ada }', 'model:', '  turns:', '    - content: [{ type: tool_use, input: {} }]', 'faults:', '  - { type: model_overloaded, turn: 4 }', 'expect:', '  maxStep: 2', '  approvals: many', ''].join('\n'));
    const err = loadScenarioFile(f);
    expect(err).toBeInstanceOf(ScenarioFileError);
    const lines = (err as ScenarioFileError).message.split('\n');
    expect(lines[0]).toBe(`${f}: 3 problems`);
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`${f}:5:\\d+: model\\.turns\\.0\\.content\\.0\\.name: required field is missing: write \`name: <string>\``)));
    expect(lines).toContainEqual(expect.stringMatching(/:9:3: expect: unknown field "maxStep" \(did you mean "maxSteps"\?\); the fields here are: outcome, .*maxSteps/));
    expect(lines).toContainEqual(expect.stringMatching(/:10:14: expect\.approvals: expected number or object, not string "many"/));
    // Refinements across fields run once the shapes are right.
    const turn = loadScenarioFile(file('turn.yaml', 'agent: a\ninput: 1\nmodel: { turns: [{ text: hi }] }\nfaults:\n  - { type: model_overloaded, turn: 4 }\n'));
    expect((turn as ScenarioFileError).problems).toEqual([{ path: 'faults.0.turn', line: 5, column: 37, message: 'turn 4 does not exist: the model has 1 scripted turn (0 to 0)' }]);
  });

  it('reports broken YAML and JSON with positions, never throwing', () => {
    const yaml = loadScenarioFile(file('broken.yaml', 'agent: x\ninput:\n  a: 1\n   b: "open\n'));
    expect((yaml as ScenarioFileError).problems[0]).toMatchObject({ path: '(file)', line: 3, message: expect.stringMatching(/^is not valid YAML: /) });
    const json = loadScenarioFile(file('broken.json', '{"agent": '));
    expect((json as ScenarioFileError).problems[0]!.message).toMatch(/^is not valid JSON: /);
    const list = loadScenarioFile(file('list.yaml', '- 1\n- 2\n'));
    expect((list as ScenarioFileError).problems[0]!.message).toMatch(/a scenario is a mapping/);
  });

  it('finds .yaml, .yml and .json files of a directory, leaving out the baseline, and reports a missing path', () => {
    const sub = mkdtempSync(path.join(dir, 'find-'));
    for (const n of ['b.yml', 'a.yaml', 'c.json', 'notes.md', 'base.json']) writeFileSync(path.join(sub, n), '{}');
    const found = findScenarioFiles([sub, path.join(dir, 'nope.yaml')], [path.join(sub, 'base.json')]);
    expect(found.map((f) => path.basename(f.file))).toEqual(['a.yaml', 'b.yml', 'c.json', 'nope.yaml']);
    expect(found[3]).toMatchObject({ error: expect.any(ScenarioFileError) });
  });

  it('turns model_overloaded faults into simulator errors on the turn, after the turn\'s own faults', () => {
    const sim = simulatorScenarioOf({
      model: { turns: [{ text: 'a', faults: [{ type: 'hang', ms: 5 }] }, { text: 'b' }] },
      faults: [{ type: 'model_overloaded', turn: 0, times: 2, status: 529 }],
    }) as { scripts: Array<{ turns: Array<{ faults?: unknown[] }> }> };
    expect(sim.scripts[0]!.turns[0]!.faults).toEqual([{ type: 'hang', ms: 5 }, expect.objectContaining({ type: 'error', status: 529, times: 2 })]);
    expect(sim.scripts[0]!.turns[1]!.faults).toBeUndefined();
  });
});

const ev = (e: Record<string, unknown>): TaskEvent => ({ taskId: 't', at: 0, ...e }) as TaskEvent;
const tool = (key: string, name: string, status: string, replayed = false) => ev({ type: 'tool', key, tool: name, status, latencyMs: 1, replayed });
const model = (key: string, costUsd: number, replayed = false) =>
  ev({ type: 'model', key, model: 'm', role: 'agent', usage: { inputTokens: 10, outputTokens: 5, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 }, costUsd, latencyMs: 1, stopReason: 'end_turn', attempts: 1, replayed });

describe('metrics', () => {
  it('counts a call replayed after a crash once, by its effect key, in the order calls were first made; a wake-up from parking is no takeover', () => {
    const calls = toolCallsOf({ taskId: 't', events: [tool('t/0/1', 'a', 'succeeded'), tool('t/1/1', 'b', 'failed'), tool('t/0/1', 'a', 'succeeded', true)] });
    expect(calls.map((c) => [c.key, c.tool])).toEqual([['t/0/1', 'a'], ['t/1/1', 'b']]);
    const o: Observation = {
      taskId: 't',
      outcome: 'done',
      error: undefined,
      output: 'x',
      tree: { taskId: 't', agent: 'x', status: 'done', events: [model('t/0/0', 0.5), model('t/1/0', 0.25), model('t/1/0', 0.25, true), ev({ type: 'resumed', host: 'h', revision: 2 }), ev({ type: 'escalated', requestId: 'r1', reason: 'x' }), ev({ type: 'resumed', host: 'h', revision: 3 })], children: [{ taskId: 'c', agent: 'y', status: 'done', events: [model('c/0/0', 1)], children: [] }] },
      requests: [],
      approvals: [],
      faults: [],
      durationMs: 5,
    };
    expect(measure(o, {})).toMatchObject({ steps: 3, tokens: 45, costUsd: 1.75, approvals: 1, resumed: 1, toolAccuracy: null, trajectoryMatch: null });
  });

  it('puts a delegated task\'s calls right after the call that delegated it', () => {
    const child = (taskId: string, events: TaskEvent[]) => ({ taskId, agent: 'c', status: 'done' as const, events, children: [] });
    const tree = {
      taskId: 't',
      agent: 'p',
      status: 'done' as const,
      // The delegate call is reported when its children are done, after their own calls.
      events: [tool('t/0/1', 'lookup', 'succeeded'), tool('t/1/1', 'delegate', 'succeeded'), tool('t/2/1', 'reply', 'succeeded')],
      children: [child('t-1-1-2', [tool('t-1-1-2/0/1', 'b', 'succeeded')]), child('t-1-1-1', [tool('t-1-1-1/0/1', 'a', 'succeeded')]), child('stray', [tool('stray/0/1', 'z', 'succeeded')])],
    };
    expect(treeToolCallsOf(tree).map((c) => c.tool)).toEqual(['lookup', 'delegate', 'a', 'b', 'reply', 'z']);
  });

  it('scores tool choice (required, in order, forbidden never run) and trajectory similarity', () => {
    const calls = toolCallsOf({ taskId: 't', events: [tool('k1', 'b', 'succeeded'), tool('k2', 'a', 'succeeded'), tool('k3', 'x', 'rejected')] });
    expect(toolAccuracy(calls, { required: ['a', 'b'], forbidden: ['x'], ordered: false })).toBe(1);
    // In order: a is found, b only before it.
    expect(toolAccuracy(calls, { required: ['a', 'b'], forbidden: [], ordered: true })).toBe(0.5);
    const ranX = toolCallsOf({ taskId: 't', events: [tool('k1', 'x', 'failed')] });
    expect(toolAccuracy(ranX, { required: [], forbidden: ['x'], ordered: false })).toBe(0);
    expect(trajectoryMatch(['a', 'b', 'c'], ['a', 'b', 'c'])).toBe(1);
    expect(trajectoryMatch(['a', 'c'], ['a', 'b', 'c'])).toBeCloseTo(2 / 3);
    expect(trajectoryMatch([], [])).toBe(1);
    expect(trajectoryMatch(['a'], undefined)).toBeNull();
  });
});

function result(name: string, over: Partial<ScenarioResult> & { steps?: number; costUsd?: number; checks?: ScenarioResult['checks'] } = {}): ScenarioResult {
  const { steps = 2, costUsd = 0.001, ...rest } = over;
  return {
    file: `${name}.yaml`,
    name,
    agent: 'a',
    status: 'passed',
    taskId: name,
    prefix: 'p',
    outcome: 'done',
    error: undefined,
    output: 'x',
    metrics: { steps, tokens: 100, costUsd, modelRequests: steps, approvals: 0, resumed: 0, toolCalls: [], treeToolCalls: [], toolAccuracy: null, trajectoryMatch: null, durationMs: 1 },
    checks: [{ name: 'outcome done', passed: true, reason: '' }],
    faults: [],
    problems: [],
    durationMs: 1,
    ...rest,
  };
}

describe('baselines', () => {
  it('flags a pass that now fails, a check that now fails, and steps or cost up beyond the tolerance', () => {
    const base = baselineOf([result('a'), result('b'), result('c', { steps: 10 }), result('gone')]);
    const now = [
      result('a', { status: 'failed', checks: [{ name: 'outcome done', passed: false, reason: '' }] }),
      result('b', { steps: 3, costUsd: 0.0011 }),
      result('c', { steps: 11 }),
      result('new'),
    ];
    const cmp = compareWithBaseline('base.json', base, now, 0.1);
    expect(cmp.regressions.map((r) => [r.scenario, r.kind])).toEqual([
      ['a', 'status'],
      ['a', 'check'],
      ['b', 'steps'],
    ]);
    expect(cmp.regressions[2]!.detail).toBe('steps 2 -> 3 (+50%)');
    expect(cmp.missing).toEqual(['gone']);
    expect(cmp.added).toEqual(['new']);
    // c: 10 -> 11 is within 10%; b's cost +10% is not beyond it.
    expect(compareWithBaseline('base.json', base, [result('b', { costUsd: 0.00111 })], 0.1).regressions).toEqual([{ scenario: 'b', kind: 'cost', detail: 'cost $0.001000 -> $0.001110 (+11%)' }]);
    expect(compareWithBaseline('base.json', baselineOf(now), [result('a')], 0).improvements).toEqual(['a: failed in the baseline, passes now', 'a: "outcome done" passes now']);
  });
});

describe('progress', () => {
  it('draws a bar in place on a terminal and a line per scenario elsewhere', () => {
    let tty = '';
    const bar = createProgress({ isTTY: true, columns: 100, write: (t: string) => (tty += t) }, 2);
    bar.started('one');
    bar.finished(result('one'));
    bar.close();
    expect(tty).toContain('\r\x1b[2K[############............] 1/2');
    expect(tty).toContain('running: one');
    expect(tty.endsWith('\r\x1b[2K')).toBe(true);
    let plain = '';
    const lines = createProgress({ write: (t: string) => (plain += t) }, 2);
    lines.started('one');
    lines.finished(result('one'));
    lines.finished(result('two', { status: 'failed', checks: [{ name: 'x', passed: false, reason: '' }] }));
    expect(plain).toBe('eval [1/2] one: passed in 0.0 s\neval [2/2] two: FAILED (1 of 1 checks) in 0.0 s\n');
  });
});

describe('approval rules', () => {
  it('picks the first rule matching kind, tool and reason', () => {
    const request = { kind: 'tool', tool: { name: 'refund' }, reasons: ['untrusted_content'] } as unknown as ApprovalRequest;
    const rules = [
      { tool: 'other', answer: 'approve' as const },
      { tool: 'refund', reason: 'rule' as const, answer: 'approve' as const },
      { tool: 'refund', reason: 'untrusted_content' as const, answer: 'reject' as const },
    ];
    expect(ruleFor(rules, request)?.index).toBe(2);
    expect(ruleFor(rules, { kind: 'limit' } as unknown as ApprovalRequest)).toBeUndefined();
  });
});
