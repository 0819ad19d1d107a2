/**
 * The intake fuzz in the chaos run (`fuzz.ts`): after the faults, with every host and worker up
 * again, at least 1,000 malformed or adversarial task messages mixed with valid tasks for the
 * hosts' echo agent. Every bad one must get its typed refusal, every valid one must complete, and
 * no host process may go down while it runs.
 */
import { connectNats } from '../runtime/connection.ts';
import { fuzzEcho } from './echo-agent.ts';
import { formatFuzzReport, runFuzz, type FuzzReport } from './fuzz.ts';
import { CHAOS_MAX_TASK_BYTES } from './processes.ts';

/** What the fuzz gets: the live deployment of the chaos run. */
export interface FuzzContext {
  /** Client URLs of every NATS node. */
  servers: string[];
  /** A user that may publish tasks under the prefix. */
  user: string;
  password: string;
  /** Subject prefix of the deployment (`<prefix>.tasks.<agent>`). */
  prefix: string;
  /** Messages to send. @default 1000 */
  count?: number;
  /** A description of what is wrong with the hosts (one exited or restarted), or undefined. */
  health: () => string | undefined;
  /** Where the fuzz's progress lines go (its seed first). */
  log: (line: string) => void;
}

/** What became of the fuzz. */
export type FuzzOutcome = { status: 'ran'; ms: number; report: FuzzReport; summary: string } | { status: 'failed'; ms: number; error: string };

/** Runs the fuzz against the deployment; never throws. */
export async function runFuzzSlot(ctx: FuzzContext): Promise<FuzzOutcome> {
  const started = performance.now();
  const nc = await connectNats({ servers: ctx.servers, name: 'chaos-fuzz', user: ctx.user, password: ctx.password });
  try {
    const report = await runFuzz({ nc, agent: fuzzEcho, prefix: ctx.prefix, count: ctx.count ?? 1000, maxTaskBytes: CHAOS_MAX_TASK_BYTES, health: ctx.health, log: ctx.log });
    return { status: 'ran', ms: Math.round(performance.now() - started), report, summary: formatFuzzReport(report) };
  } catch (err) {
    return { status: 'failed', ms: Math.round(performance.now() - started), error: (err as Error).stack ?? String(err) };
  } finally {
    await nc.close().catch(() => {});
  }
}
