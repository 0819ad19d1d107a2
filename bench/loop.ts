import type { NatsConnection } from '@nats-io/nats-core';
import { fmt, percentile } from './stats.ts';
import type { PeerLoop } from './peers/peer.ts';
import { LOOP_STEPS, loopHost } from './workloads.ts';

/** Tasks run one at a time in the sequential case, for troupe and each peer alike. */
export const SEQ_TASKS = 30;
/** Tasks started at once in the concurrent cases. */
export const CONCURRENT = [200, 1000] as const;
/**
 * Tasks run one at a time before measuring, so that no runner is timed while it loads its code,
 * warms its caches and V8 compiles its hot paths: a JavaScript runner's step got 30-40% faster
 * between its 3rd task and its 50th here (troupe's did), and a host runs for far longer than that.
 */
const WARM_UP = 30;

/** Runs `WARM_UP` tasks one after the other. */
async function warmUp(run: (tasks: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < WARM_UP; i++) await run(1);
}

/** The 10-step tool loop's figures for one runner. */
export interface LoopFigures {
  /** Steps per second, one task at a time. */
  sequential: number;
  /** Time between consecutive model calls of a task in the sequential case, ms. */
  stepMs: number[];
  /** Aggregate steps per second with that many tasks started at once. */
  concurrent: Map<number, number>;
}

const stepsPerSecond = (tasks: number, ms: number) => (tasks * LOOP_STEPS) / (ms / 1000);

/** troupe's loop, sequential: a host in this process, `SEQ_TASKS` tasks one after the other after a warm-up. */
export async function troupeSequential(nc: NatsConnection, prefix = 'bseq'): Promise<{ stepsPerSecond: number; stepMs: number[]; cpuMsPerStep: number; sendsPerStep: number }> {
  const loop = await loopHost(nc, prefix);
  const publish = nc.publish.bind(nc);
  let sends = 0;
  try {
    await warmUp((n) => loop.run(n));
    loop.stepLatencies.length = 0;
    // What a step costs the process (host and driver) in CPU, and in messages sent to the server
    // (KV writes and reads, events, audit records; the driver's own is one per task).
    nc.publish = ((...args: Parameters<typeof publish>) => {
      sends++;
      return publish(...args);
    }) as typeof nc.publish;
    const cpu = process.cpuUsage();
    let elapsed = 0;
    for (let i = 0; i < SEQ_TASKS; i++) elapsed += await loop.run(1);
    const used = process.cpuUsage(cpu);
    const steps = SEQ_TASKS * LOOP_STEPS;
    return { stepsPerSecond: stepsPerSecond(SEQ_TASKS, elapsed), stepMs: [...loop.stepLatencies], cpuMsPerStep: (used.user + used.system) / 1000 / steps, sendsPerStep: sends / steps };
  } finally {
    nc.publish = publish;
    await loop.close();
  }
}

/** troupe's loop, `tasks` tasks at once on a fresh host; aggregate steps per second. */
export async function troupeConcurrent(nc: NatsConnection, tasks: number, prefix = `bcon${tasks}`): Promise<number> {
  const host = await loopHost(nc, prefix);
  try {
    return stepsPerSecond(tasks, await host.run(tasks));
  } finally {
    await host.close();
  }
}

/** troupe's whole loop protocol: sequential, then each concurrent case. */
export async function troupeLoop(nc: NatsConnection, prefix: string): Promise<LoopFigures> {
  const seq = await troupeSequential(nc, `${prefix}seq`);
  const concurrent = new Map<number, number>();
  for (const tasks of CONCURRENT) concurrent.set(tasks, await troupeConcurrent(nc, tasks, `${prefix}con${tasks}`));
  return { sequential: seq.stepsPerSecond, stepMs: seq.stepMs, concurrent };
}

/** A peer under the same protocol as troupe: warm-up, `SEQ_TASKS` tasks one at a time, then each concurrent case. */
export async function peerLoopFigures(peer: PeerLoop): Promise<LoopFigures> {
  await warmUp((n) => peer.run(n));
  peer.stepLatencies.length = 0;
  let elapsed = 0;
  for (let i = 0; i < SEQ_TASKS; i++) elapsed += (await peer.run(1)).ms;
  const stepMs = [...peer.stepLatencies];
  const concurrent = new Map<number, number>();
  for (const tasks of CONCURRENT) {
    global.gc?.();
    const r = await peer.run(tasks);
    concurrent.set(tasks, stepsPerSecond(tasks, r.ms));
  }
  return { sequential: stepsPerSecond(SEQ_TASKS, elapsed), stepMs, concurrent };
}

/** "p50 / p99" of step times, ms. */
export const stepSummary = (ms: number[]) => `${fmt(percentile(ms, 50), 1)} / ${fmt(percentile(ms, 99), 1)}`;
