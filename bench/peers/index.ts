/**
 * The `peers` section of `npm run bench`: troupe, LangGraph.js with SQLite and Restate on the same
 * 10-step tool loop in one run, with troupe's ratio against each peer and what each one's
 * acknowledged step survives. Prints figures; asserts nothing.
 */
import path from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';
import { CONCURRENT, HOSTS_PER_CORE, peerLoopFigures, SEQ_TASKS, stepSummary, troupeLoop, type LoopFigures, type TroupeFigures } from '../loop.ts';
import { fmt, table } from '../stats.ts';
import type { Durability, PeerLoop } from './peer.ts';

/** The targets: troupe at least this many times the peer's steps/s, sequential and concurrent. */
const TARGETS = { 'LangGraph.js + SQLite': 3, Restate: 1.5 } as const;

/** What nats-server's file store guarantees for an acknowledged KV write, for the server this run used. */
export function natsDurability(version: string): Durability {
  if (version.startsWith('2.9.')) {
    return {
      short: 'crash: safe; power loss: last ≤2 min',
      detail: `nats-server ${version}, one server, R1 file store: writes reach the file at once and are fsynced on a 2-minute timer (seen with strace; 2.9 has no setting for it); survives a process crash, a power loss may lose up to the last 2 minutes unless streams and buckets are replicated R3 on a cluster`,
    };
  }
  return { short: 'see note', detail: `nats-server ${version}, R1 file store: survives a process crash; what a power loss loses depends on its jetstream sync_interval (not measured for this version)` };
}

interface Row {
  name: string;
  figures?: LoopFigures;
  durability?: Durability;
  error?: string;
}

async function measure(name: string, start: () => Promise<PeerLoop>): Promise<Row> {
  let peer: PeerLoop | undefined;
  try {
    global.gc?.();
    peer = await start();
    return { name: peer.name, figures: await peerLoopFigures(peer), durability: peer.durability };
  } catch (e) {
    process.exitCode = 1;
    return { name, error: e instanceof Error ? e.message : String(e) };
  } finally {
    await peer?.close();
  }
}

/**
 * Runs the section. `troupe` is the loop section's figures when it ran in this process; without
 * them troupe's loop is measured here first, so every row comes from the same run.
 */
export async function peersSection(nc: NatsConnection, natsUrl: string, dir: string, troupe: TroupeFigures | undefined, log: (line: string) => void): Promise<void> {
  const reused = troupe !== undefined;
  troupe ??= await troupeLoop(nc, natsUrl, 'bpeer');
  const rows: Row[] = [{ name: 'troupe (NATS JetStream KV), 1 host', figures: troupe, durability: natsDurability(nc.info?.version ?? '?') }];

  rows.push(
    await measure('LangGraph.js + SQLite', async () => {
      const { ensureSqliteBinding, langgraphLoop } = await import('./langgraph.ts');
      ensureSqliteBinding(log);
      return langgraphLoop(path.join(dir, 'langgraph'));
    }),
  );
  rows.push(
    await measure('Restate', async () => {
      const { restateLoop } = await import('./restate.ts');
      return restateLoop(path.join(dir, 'restate'));
    }),
  );

  const header = ['runner', 'one at a time', 'p50 / p99 step ms', ...CONCURRENT.map((n) => `${fmt(n)} at once`), 'durability'];
  const cells: string[][] = rows.map((r, i) =>
    r.figures
      ? [r.name, fmt(r.figures.sequential), stepSummary(r.figures.stepMs), ...CONCURRENT.map((n) => fmt(r.figures!.concurrent.get(n) ?? Number.NaN)), `${r.durability?.short ?? '-'} [${i + 1}]`]
      : [r.name, '-', '-', ...CONCURRENT.map(() => '-'), 'not measured'],
  );
  // One task at a time runs on one host whatever the number of hosts: the row has the concurrent cases only.
  const perCore = troupe.perCore;
  const perCoreName = `troupe, ${HOSTS_PER_CORE} hosts (1 per core)`;
  if (perCore) cells.splice(1, 0, [perCoreName, '-', '-', ...CONCURRENT.map((n) => fmt(perCore.get(n) ?? Number.NaN)), 'as above [1]']);
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 ? `${fmt(a / b, 2)}x` : '-');
  for (const r of rows.slice(1)) {
    const target = TARGETS[r.name as keyof typeof TARGETS];
    cells.push([`troupe, 1 host / ${r.name}`, ratio(troupe.sequential, r.figures?.sequential), '', ...CONCURRENT.map((n) => ratio(troupe.concurrent.get(n), r.figures?.concurrent.get(n))), target ? `target ≥ ${target}x` : '']);
    if (perCore) cells.push([`${perCoreName} / ${r.name}`, '', '', ...CONCURRENT.map((n) => ratio(perCore.get(n), r.figures?.concurrent.get(n))), target ? `target ≥ ${target}x` : '']);
  }
  const notes = rows.map((r, i) => (r.error ? `[${i + 1}] ${r.name}: not measured: ${r.error}` : `[${i + 1}] ${r.durability?.detail ?? ''}`));
  if (reused) notes.push("troupe's rows are the loop section's figures from this same run.");
  if (perCore) notes.push(`${perCoreName}: each host in a process of its own, all taking tasks from the one queue, as \`troupe host\` started once per core; the bench process only submits and watches.`);
  table(
    `10-step tool loop on troupe and its peers, one run on this machine (steps/s; each step: a model call answered at once, a noop tool call, the runner's durable checkpoints; one at a time = ${SEQ_TASKS} tasks in a row)`,
    header,
    cells,
    'npm run bench -- peers   (with the loop section: npm run bench -- loop peers)',
    notes,
  );
}
