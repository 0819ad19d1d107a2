import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatReport } from '../../chaos/report.ts';
import { runChaos } from '../../chaos/scenario.ts';

/**
 * The small version of `npm run chaos`: a 3-node NATS cluster (R3), two hosts and a worker in
 * their own processes, two dozen tasks each making an irreversible charge; one host is SIGKILLed while
 * it runs tasks and one NATS node is SIGKILLed and restarted. Counted outside troupe (the charges'
 * journal): nothing is lost, no charge happens twice, every task ends and its end is announced,
 * and the killed host's tasks were taken over by the other.
 */
describe('a 3-node cluster with two hosts and a worker', () => {
  it('loses nothing and repeats no side effect when a host is SIGKILLed and a NATS node restarts', async () => {
    const report = await runChaos({
      hosts: 2,
      workers: 1,
      tasks: 24,
      charges: 1,
      submitMs: 12_000,
      leaseMs: 3000,
      toolMs: [300, 1200],
      faults: { 'host SIGKILL': 1, 'NATS node restart': 1 },
      settleMs: 60_000,
      fuzz: false,
    });
    try {
      const summary = formatReport(report);
      expect(report.submitted, summary).toBe(24);
      expect(report.lost, summary).toEqual([]);
      expect(report.duplicates, summary).toEqual([]);
      expect(report.missingEffects, summary).toEqual([]);
      expect(report.done + Object.values(report.failed).reduce((a, b) => a + b, 0), summary).toBe(24);
      expect(report.events.unannounced, summary).toBe(0);
      expect(report.faults.map((f) => f.kind).sort(), summary).toEqual(['NATS node restart', 'host SIGKILL']);
      // The host was killed holding tasks, and another host resumed them from their snapshots.
      expect(report.faults.find((f) => f.kind === 'host SIGKILL')!.detail, summary).toMatch(/^killed running [1-9]\d* tasks/);
      expect(report.events.resumed, summary).toBeGreaterThan(0);
    } finally {
      rmSync(report.dir, { recursive: true, force: true });
    }
  }, 120_000);
});
