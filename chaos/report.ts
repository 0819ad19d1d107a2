import type { FaultKind } from './faults.ts';
import type { ChaosReport } from './scenario.ts';

const n = (v: number) => v.toLocaleString('en-US');
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const mark = (good: boolean) => (good ? 'ok' : 'BAD');

/** The report of a chaos run, as printed by `npm run chaos`. */
export function formatReport(r: ChaosReport): string {
  const o = r.options;
  const failed = Object.entries(r.failed);
  const faultCounts = new Map<FaultKind, number>();
  for (const f of r.faults) faultCounts.set(f.kind, (faultCounts.get(f.kind) ?? 0) + 1);
  const failedTotal = failed.reduce((a, [, v]) => a + v, 0);
  const lines = [
    '',
    `troupe chaos run — ${o.nodes}-node NATS cluster (R${o.replicas}), ${o.hosts} hosts, ${o.workers} workers, loopback; seed ${o.seed}`,
    `  ${n(o.tasks)} tasks of ${o.charges} irreversible charges each, submitted over ${s(o.submitMs)}; host lease ${n(o.leaseMs)} ms; ran ${s(r.ms)}`,
    '',
    'tasks',
    `  submitted                 ${n(r.submitted)}${r.republished ? ` (${n(r.republished)} publishes repeated while a node was down)` : ''}`,
    `  completed                 ${n(r.done)}${r.doneWithToolErrors ? ` (${n(r.doneWithToolErrors)} of them saw a charge fail with a typed tool error: ${Object.entries(r.chargeErrors).map(([code, v]) => `${code} ${v}`).join(', ')})` : ''}`,
    `  failed, typed outcome     ${n(failedTotal)}${failed.length ? `  ${failed.map(([code, v]) => `${code}: ${v}`).join(', ')}` : ''}`,
    ...(r.failed.internal
      ? [`    ${r.failed.internal} of them with code internal: a NATS error inside one of the task's effects (a leader election outlasting the request) failed the task instead of leaving it to be resumed — a defect of the task runner, not of the cluster`]
      : []),
    `  lost                      ${n(r.lost.length)}  ${mark(r.lost.length === 0)}${r.lost.length ? `  ${r.lost.slice(0, 10).join(', ')}${r.lost.length > 10 ? ', ...' : ''}` : ''}`,
    `  end not announced         ${n(r.events.unannounced)}  ${mark(r.events.unannounced === 0)}`,
    `  latency, submit to end    p50 ${n(r.latencyMs.p50)} ms, p99 ${n(r.latencyMs.p99)} ms, max ${n(r.latencyMs.max)} ms`,
    '',
    'side effects (counted in the journal, outside troupe)',
    `  charges executed          ${n(r.effects.executed)}`,
    `  duplicate side effects    ${n(r.duplicates.length)}  ${mark(r.duplicates.length === 0)}`,
    ...r.duplicates.slice(0, 10).map((key) => `    ${key} ran ${r.duplicateExecutors[key]?.length ?? '?'} times: ${duplicateLine(r.duplicateExecutors[key] ?? [])}`),
    `  missing side effects      ${n(r.missingEffects.length)}  ${mark(r.missingEffects.length === 0)}${r.missingEffects.length ? `  ${r.missingEffects.slice(0, 10).join(', ')}` : ''}`,
    `  told failed, but happened ${n(r.misreportedFailures.length)}${r.misreportedFailures.length ? `  ${r.misreportedFailures.slice(0, 6).join(', ')} (the call's outcome was unknown — e.g. it hit its time limit after the side effect — and was reported to the model as a failure)` : ''}`,
    `  calls started again       ${n(r.effects.keysAttemptedMoreThanOnce)} (attempts ${n(r.effects.attempts)}: a worker died, or a run was reconciled)`,
    '',
    'faults injected',
    ...[...faultCounts].map(([kind, v]) => `  ${kind.padEnd(26)}${v}`),
    ...r.faults.map((f) => `    ${s(f.at).padStart(8)}  ${f.kind.padEnd(24)} ${f.target}: ${f.detail} (${n(f.ms)} ms)`),
    '',
    'recovery',
    `  tasks resumed elsewhere   ${n(r.events.resumed)} (resumed events)`,
    `  after a host SIGKILL      ${n(r.takeoverMs.count)} tasks resumed by another host ${n(r.takeoverMs.p50)} ms after the kill at p50, ${n(r.takeoverMs.max)} ms at most (lease ${n(o.leaseMs)} ms)`,
    `  hosts: handed over ${n(r.logs.hosts.handedOver)} tasks gracefully; stopped ${n(r.logs.hosts.conflicts)} times on a compare-and-set conflict (another host had advanced the task)`,
    `  NATS connections: hosts lost ${n(r.logs.hosts.disconnects)} and reconnected ${n(r.logs.hosts.reconnects)} times, workers lost ${n(r.logs.workers.disconnects)} and reconnected ${n(r.logs.workers.reconnects)} times (log lines)`,
    `  error log lines: hosts ${n(r.logs.hosts.errors)}, workers ${n(r.logs.workers.errors)}${[...r.logs.hosts.errorSamples, ...r.logs.workers.errorSamples].slice(0, 5).map((e) => `\n    ${e}`).join('')}`,
    '',
    '==== FUZZ (chaos/fuzz.ts) ====',
    ...fuzzLines(r.fuzz),
    '==============================',
    '',
    `verdict: ${r.ok ? 'PASS' : 'FAIL'} — lost ${r.lost.length}, duplicate side effects ${r.duplicates.length}, every task finished or failed with a typed outcome: ${r.lost.length === 0 && !r.failed.unknown ? 'yes' : 'no'}${r.failed.internal ? ` (${r.failed.internal} failed with code internal: look at their errors above)` : ''}`,
    `logs, journal and NATS stores: ${r.dir}`,
    '',
  ];
  return lines.join('\n');
}

/** Who ran a duplicated charge; the same worker twice points at a second dispatch of a call it was still running. */
function duplicateLine(executors: string[]): string {
  const same = executors.length > 1 && executors.every((e) => e === executors[0]);
  return same ? `both by ${executors[0]} — a second dispatch of a call that worker was still running` : executors.join(', ');
}

function fuzzLines(f: ChaosReport['fuzz']): string[] {
  switch (f.status) {
    case 'skipped':
      return ['  skipped (--no-fuzz)'];
    case 'failed':
      return [`  the fuzzer failed after ${n(f.ms)} ms:`, ...f.error.split('\n').slice(0, 8).map((l) => `    ${l}`)];
    case 'ran':
      return f.summary.split('\n').map((l) => `  ${l}`);
  }
}
