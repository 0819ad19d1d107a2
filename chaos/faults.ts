import type { EmbeddedCluster } from '../runtime/embedded-cluster.ts';
import { journalLines } from './agent.ts';
import type { ChaosProcess } from './fleet.ts';

/** One fault injected, for the report. */
export interface FaultRecord {
  /** ms since the run started */
  at: number;
  kind: 'host SIGKILL' | 'worker SIGKILL mid-call' | 'NATS node restart' | 'host SIGSTOP' | 'rolling restart';
  target: string;
  /** What exactly happened (how long it was down, which call it was in, ...). */
  detail: string;
  /** How long the fault took from injection to the target being back. */
  ms: number;
}

export type FaultKind = FaultRecord['kind'];

/** What the faults act on. */
export interface FaultTargets {
  cluster: EmbeddedCluster;
  hosts: ChaosProcess[];
  workers: ChaosProcess[];
  journal: string;
  leaseMs: number;
  random: () => number;
  /** ms since the run started */
  now: () => number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts a process again; a start that fails (the cluster busy electing leaders, say) is tried twice more. */
async function restart(p: ChaosProcess): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      await p.start();
      return attempt === 1 ? '' : ` (started on attempt ${attempt})`;
    } catch (err) {
      if (attempt === 3) throw err;
      await sleep(2000);
    }
  }
}
const pick = <T>(items: T[], random: () => number): T => items[Math.floor(random() * items.length)]!;

/** Injects one fault and waits until its target is back. */
export async function inject(kind: FaultKind, t: FaultTargets, nth: number): Promise<FaultRecord> {
  const at = t.now();
  const record = (target: string, detail: string): FaultRecord => ({ at, kind, target, detail, ms: t.now() - at });
  switch (kind) {
    case 'host SIGKILL': {
      const { host, running } = await busyHost(t);
      await host.kill('SIGKILL');
      // Back after a short while: its tasks have to wait out their lease anyway.
      const down = 300 + Math.floor(t.random() * 1200);
      await sleep(down);
      const note = await restart(host);
      return record(host.name, `killed running ${running} tasks, restarted after ${down} ms as ${host.id}${note}`);
    }
    case 'worker SIGKILL mid-call': {
      // Odd kills land before the charge's line is written, even ones after it (before the answer).
      const { worker, key, phase } = await workerInCall(t, nth % 2 === 0 ? 'before' : 'after');
      await worker.kill('SIGKILL');
      await sleep(1000);
      await restart(worker);
      return record(worker.name, key ? `killed in call ${key}, ${phase} its side effect; restarted` : 'no call in flight within 15 s: killed anyway; restarted');
    }
    case 'NATS node restart': {
      const node = pick(t.cluster.nodes, t.random);
      await node.kill();
      const down = 2000;
      await sleep(down);
      await node.start();
      return record(node.name, `SIGKILLed, down ${down} ms, restarted on the same store`);
    }
    case 'host SIGSTOP': {
      const { host, running } = await busyHost(t);
      const paused = t.leaseMs * 2;
      host.pause();
      await sleep(paused);
      host.resume();
      return record(host.name, `frozen running ${running} tasks for ${paused} ms (lease ${t.leaseMs} ms), then resumed`);
    }
    case 'rolling restart': {
      const how: string[] = [];
      for (const host of t.hosts) {
        const exit = await host.terminate();
        how.push(`${host.name} ${exit}${await restart(host)}`);
      }
      return record('every host', `SIGTERM one by one, each restarted before the next: ${how.join(', ')}`);
    }
  }
}

/**
 * A random host among those that run at least two tasks right now, so that the fault strands
 * some (waiting up to 10 s for one); else among those running any, else among all live ones.
 */
async function busyHost(t: FaultTargets): Promise<{ host: ChaosProcess; running: number }> {
  const until = Date.now() + 10_000;
  for (;;) {
    const alive = t.hosts.filter((h) => h.alive);
    const running = await Promise.all(alive.map((h) => h.running()));
    const hosts = alive.map((host, i) => ({ host, running: running[i]! }));
    const busy = hosts.filter((h) => h.running >= 2);
    if (busy.length) return pick(busy, t.random);
    if (Date.now() > until) return pick(hosts.filter((h) => h.running > 0).length ? hosts.filter((h) => h.running > 0) : hosts, t.random);
    await sleep(100);
  }
}

/**
 * Waits (up to 15 s) for a worker to be inside a charge: `before` its journal line is written, or
 * `after` it (still sleeping before it answers).
 */
async function workerInCall(t: FaultTargets, phase: 'before' | 'after'): Promise<{ worker: ChaosProcess; key?: string; phase: string }> {
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    const effects = new Map(journalLines(t.journal).map((l) => l.split(' ')).map(([key, , at]) => [key!, Number(at)]));
    const now = Date.now();
    for (const line of journalLines(`${t.journal}.starts`).reverse()) {
      const [key, pid, at, delay] = line.split(' ');
      const worker = t.workers.find((w) => w.alive && String(w.pid) === pid);
      if (!worker || !key) continue;
      const started = Number(at);
      const half = Number(delay) / 2;
      const effectAt = effects.get(key);
      // A margin on each side: the kill must land while the call is surely still running.
      if (phase === 'before' && effectAt === undefined && now < started + half - 40) return { worker, key, phase };
      if (phase === 'after' && effectAt !== undefined && effectAt >= started && now < effectAt + half - 40) return { worker, key, phase };
    }
    await sleep(10);
  }
  return { worker: pick(t.workers.filter((w) => w.alive), t.random), phase };
}
