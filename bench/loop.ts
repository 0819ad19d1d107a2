import { availableParallelism } from 'node:os';
import type { NatsConnection } from '@nats-io/nats-core';
import { fmt, medianOf, percentile } from './stats.ts';
import type { PeerLoop } from './peers/peer.ts';
import { startHostProcess } from './hosts.ts';
import { LOOP_STEPS, loopDriver, loopHost } from './workloads.ts';

/** Tasks run one at a time in the sequential case, for troupe and each peer alike. */
export const SEQ_TASKS = 30;
/**
 * Each figure is the median of this many timed rounds (the sequential case's tasks split among
 * them). Rounds of the same case in one run differed by 10 to 20% here, and a single round let
 * one slow stretch of the machine decide a ratio.
 */
export const TIMED_ROUNDS = 3;
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

/**
 * One concurrent case: `tasks` tasks at once, once to warm up, then {@link TIMED_ROUNDS} measured
 * rounds (their median). Here the first round at a new concurrency ran 25-45% slower than the
 * rounds after it (V8 compiling the paths only many tasks at once take, the heap growing to hold
 * them), for a host in a process of its own the most; the same holds for every runner, which is
 * timed as it runs for long.
 */
async function concurrentCase(run: (tasks: number) => Promise<number>, tasks: number): Promise<number> {
  await run(tasks);
  return medianOf(TIMED_ROUNDS, async () => stepsPerSecond(tasks, await run(tasks)));
}

/** The sequential case: {@link SEQ_TASKS} tasks one after the other, in {@link TIMED_ROUNDS} rounds; the median round's steps per second. */
function sequentialCase(run: () => Promise<number>): Promise<number> {
  const perRound = Math.ceil(SEQ_TASKS / TIMED_ROUNDS);
  return medianOf(TIMED_ROUNDS, async () => {
    let elapsed = 0;
    for (let i = 0; i < perRound; i++) elapsed += await run();
    return stepsPerSecond(perRound, elapsed);
  });
}

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
    const rate = await sequentialCase(() => loop.run(1));
    const used = process.cpuUsage(cpu);
    const steps = SEQ_TASKS * LOOP_STEPS;
    return { stepsPerSecond: rate, stepMs: [...loop.stepLatencies], cpuMsPerStep: (used.user + used.system) / 1000 / steps, sendsPerStep: sends / steps };
  } finally {
    nc.publish = publish;
    await loop.close();
  }
}

/** troupe's loop, `tasks` tasks at once on a fresh host (see {@link concurrentCase}); aggregate steps per second. */
export async function troupeConcurrent(nc: NatsConnection, tasks: number, prefix = `bcon${tasks}`): Promise<number> {
  const host = await loopHost(nc, prefix);
  try {
    return await concurrentCase((n) => host.run(n), tasks);
  } finally {
    await host.close();
  }
}

/**
 * troupe's loop with a host per core: `hosts` hosts, each in a process of its own, take the tasks
 * from the one queue, as `troupe host` started once per core does; this process only submits and
 * watches. Each host is warmed up like the one host of the other cases (`WARM_UP` tasks one at a
 * time per host); then each case of `counts` runs as {@link concurrentCase}. Aggregate steps/s per count.
 */
async function troupeHostsConcurrent(nc: NatsConnection, natsUrl: string, hosts: number, counts: readonly number[], prefix = `bhosts${hosts}`): Promise<Map<number, number>> {
  const started = await Promise.allSettled(Array.from({ length: hosts }, () => startHostProcess({ natsUrl, prefix, modelMs: 0 })));
  const driver = loopDriver(nc, prefix);
  try {
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    for (let i = 0; i < hosts; i++) await warmUp((n) => driver.run(n));
    const figures = new Map<number, number>();
    for (const tasks of counts) figures.set(tasks, await concurrentCase((n) => driver.run(n), tasks));
    return figures;
  } finally {
    driver.close();
    await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.kill() : undefined)));
  }
}

/** Hosts of the host-per-core case: one per CPU this process may use. */
export const HOSTS_PER_CORE = availableParallelism();

/** The concurrent cases with a host per core (see {@link troupeHostsConcurrent}); undefined on a machine of one core, where it is the one host. */
export function troupePerCore(nc: NatsConnection, natsUrl: string, prefix?: string): Promise<Map<number, number> | undefined> {
  return HOSTS_PER_CORE > 1 ? troupeHostsConcurrent(nc, natsUrl, HOSTS_PER_CORE, CONCURRENT, prefix) : Promise.resolve(undefined);
}

/** troupe's figures: one host in this process, and (on a machine of more than one core) the concurrent cases with a host per core. */
export interface TroupeFigures extends LoopFigures {
  perCore?: Map<number, number>;
}

/** troupe's whole loop protocol: sequential, each concurrent case, then the concurrent cases with a host per core. */
export async function troupeLoop(nc: NatsConnection, natsUrl: string, prefix: string): Promise<TroupeFigures> {
  const seq = await troupeSequential(nc, `${prefix}seq`);
  const concurrent = new Map<number, number>();
  for (const tasks of CONCURRENT) concurrent.set(tasks, await troupeConcurrent(nc, tasks, `${prefix}con${tasks}`));
  const perCore = await troupePerCore(nc, natsUrl, `${prefix}hosts`);
  return { sequential: seq.stepsPerSecond, stepMs: seq.stepMs, concurrent, ...(perCore ? { perCore } : {}) };
}

/** A peer under the same protocol as troupe: warm-up, `SEQ_TASKS` tasks one at a time, then each concurrent case (see {@link concurrentCase}). */
export async function peerLoopFigures(peer: PeerLoop): Promise<LoopFigures> {
  await warmUp((n) => peer.run(n));
  peer.stepLatencies.length = 0;
  const sequential = await sequentialCase(async () => (await peer.run(1)).ms);
  const stepMs = [...peer.stepLatencies];
  const concurrent = new Map<number, number>();
  for (const tasks of CONCURRENT) {
    global.gc?.();
    concurrent.set(tasks, await concurrentCase(async (n) => (await peer.run(n)).ms, tasks));
  }
  return { sequential, stepMs, concurrent };
}

/** "p50 / p99" of step times, ms. */
export const stepSummary = (ms: number[]) => `${fmt(percentile(ms, 50), 1)} / ${fmt(percentile(ms, 99), 1)}`;
