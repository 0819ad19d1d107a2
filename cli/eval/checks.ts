/**
 * A scenario's expectations, checked one by one against what was observed: each check passes or
 * fails with a reason a person can act on.
 */
import { ran, type Metrics, type Observation } from './metrics.ts';
import { toolResultsSeen } from './model-tap.ts';
import type { EvalScenario } from './scenario.ts';

/** One expectation and how it went. */
export interface Check {
  /** What was expected, e.g. `outcome done`, `maxSteps 3`. */
  name: string;
  passed: boolean;
  /** What was observed. */
  reason: string;
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const usd = (n: number) => `$${n.toFixed(6)}`;
const brief = (text: string, max = 160) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** The text of an output: strings as they are, anything else as JSON. */
export function outputText(output: unknown): string {
  return typeof output === 'string' ? output : (JSON.stringify(output) ?? '');
}

/** Where the task stood when the scenario's time ran out, from its last events. */
function lastSeen(o: Observation): string {
  const events = o.tree?.events ?? [];
  const state = [...events].reverse().find((e) => e.type === 'state');
  const waiting = [...events].reverse().find((e) => e.type === 'escalated' || e.type === 'waiting');
  return state && state.type === 'state' ? `last in state ${state.state}${state.step !== undefined ? ` (step ${state.step})` : ''}${waiting?.type === 'escalated' ? `, waiting for an approver (${waiting.reason})` : ''}` : 'no state was ever reported';
}

/** Every check of a scenario, in a fixed order: outcome, output, tools, trajectory, limits, approvals, trust, resumption, faults. */
export function checkExpectations(s: EvalScenario, o: Observation, m: Metrics): Check[] {
  const e = s.expect;
  const checks: Check[] = [];
  const add = (name: string, passed: boolean, reason: string) => checks.push({ name, passed, reason });

  const ended =
    o.outcome === 'timeout'
      ? `it did not end within ${s.timeoutMs} ms (${lastSeen(o)})`
      : o.outcome === 'done'
        ? 'it ended done'
        : `it ended ${o.outcome}: ${o.error?.code}: ${brief(o.error?.message ?? '')}`;
  add(`outcome ${e.outcome}`, o.outcome === e.outcome, ended);
  if (e.error !== undefined) add(`error ${e.error}`, o.error?.code === e.error, o.error ? `the error was ${o.error.code}` : 'there was no error');

  const text = outputText(o.output);
  const shown = o.outcome === 'done' ? `the output was ${JSON.stringify(brief(text))}` : 'there is no output';
  for (const needle of list(e.output?.contains)) add(`output contains ${JSON.stringify(needle)}`, o.outcome === 'done' && text.toLowerCase().includes(needle.toLowerCase()), shown);
  for (const needle of list(e.output?.notContains)) add(`output does not contain ${JSON.stringify(needle)}`, !text.toLowerCase().includes(needle.toLowerCase()), shown);
  if (e.output?.matches !== undefined) add(`output matches /${e.output.matches}/`, o.outcome === 'done' && new RegExp(e.output.matches).test(text), shown);

  const sequence = m.toolCalls.map((c) => c.tool);
  const all = m.treeToolCalls;
  const called = all.map((c) => c.tool);
  if (e.tools?.required.length) {
    const missing = e.tools.required.filter((t) => !called.includes(t));
    const inOrder = orderedHolds(called, e.tools.required);
    const passed = missing.length === 0 && (!e.tools.ordered || inOrder);
    add(
      `tools called: ${e.tools.required.join(', ')}${e.tools.ordered ? ' (in this order)' : ''}`,
      passed,
      `the calls were [${called.join(', ')}]${missing.length ? `; missing: ${missing.join(', ')}` : ''}${missing.length === 0 && e.tools.ordered && !inOrder ? '; not in the required order' : ''}`,
    );
  }
  for (const tool of e.tools?.forbidden ?? []) {
    const runs = all.filter((c) => c.tool === tool && ran(c));
    const refused = all.filter((c) => c.tool === tool && !ran(c));
    add(
      `tool ${tool} never runs`,
      runs.length === 0,
      runs.length
        ? `it ran: ${runs.map((c) => `${c.key} ${c.status}`).join(', ')}`
        : refused.length
          ? `the model called it ${plural(refused.length, 'time')}, and every call was refused (${refused.map((c) => (c.gate ? `${c.gate} gate` : (c.error?.code ?? c.status))).join(', ')})`
          : 'it was never called',
    );
  }
  if (e.trajectory) {
    add(`trajectory [${e.trajectory.join(', ')}]`, m.trajectoryMatch === 1, `the calls were [${sequence.join(', ')}] (match ${pct(m.trajectoryMatch)})`);
  }

  if (e.maxSteps !== undefined) add(`maxSteps ${e.maxSteps}`, m.steps <= e.maxSteps, `took ${plural(m.steps, 'step')}`);
  if (e.maxCostUsd !== undefined) add(`maxCostUsd ${e.maxCostUsd}`, m.costUsd <= e.maxCostUsd, `cost ${usd(m.costUsd)}`);
  if (e.maxTokens !== undefined) add(`maxTokens ${e.maxTokens}`, m.tokens <= e.maxTokens, `used ${m.tokens} tokens`);
  if (e.approvals !== undefined) {
    const { min, max } = typeof e.approvals === 'number' ? { min: e.approvals, max: e.approvals } : e.approvals;
    const wanted = min === max ? `${min}` : `${min ?? 0}..${max ?? '∞'}`;
    const asked = o.approvals.map((a) => `${a.tool ?? a.kind} (${a.reasons.join(', ')}) -> ${a.answer}${a.error ? ` [refused: ${a.error}]` : ''}`);
    add(`approvals ${wanted}`, m.approvals >= (min ?? 0) && m.approvals <= (max ?? Infinity), `${plural(m.approvals, 'approval request')}${asked.length ? `: ${asked.join('; ')}` : ''}`);
  }

  if (e.untrusted?.length) {
    const results = toolResultsSeen(o.requests);
    for (const tool of e.untrusted) {
      const mine = results.filter((r) => r.tool === tool && !r.isError);
      const bare = mine.filter((r) => !r.text.startsWith(`<untrusted-data source="tool:${tool}">`));
      add(
        `output of ${tool} reaches the model delimited as untrusted`,
        mine.length > 0 && bare.length === 0,
        mine.length === 0 ? `no output of ${tool} reached the model` : bare.length ? `${plural(bare.length, 'result')} of ${plural(mine.length, 'result')} reached the model without <untrusted-data> delimiters (is the tool declared \`untrusted: true\`?)` : `all ${plural(mine.length, 'result')} were delimited`,
      );
    }
  }
  if (e.resumed !== undefined) add(e.resumed ? 'resumed by another host' : 'never resumed by another host', (m.resumed > 0) === e.resumed, m.resumed ? `another host took it over ${plural(m.resumed, 'time')}` : 'no other host took it over');

  s.faults.forEach((f, i) => {
    const record = o.faults[i];
    add(`fault ${f.type}${'tool' in f ? ` ${f.tool}` : ''}${f.type === 'host_kill' ? ` at step ${f.step}` : ''} fired`, record?.fired === true, record?.detail ?? 'not observed');
  });
  return checks;
}

function orderedHolds(sequence: readonly string[], required: readonly string[]): boolean {
  let from = 0;
  for (const tool of required) {
    const at = sequence.indexOf(tool, from);
    if (at === -1) return false;
    from = at + 1;
  }
  return true;
}

/** A share as a whole percentage, `-` when there is none. */
export function pct(share: number | null): string {
  return share === null ? '-' : `${Math.round(share * 100)}%`;
}
