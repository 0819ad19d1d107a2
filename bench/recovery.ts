import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import pino from 'pino';
import { Host } from '../actors/host.ts';
import { compileConfig } from '../config/load.ts';
import { subjects as makeSubjects } from '../runtime/subjects.ts';
import { startHostProcess } from './hosts.ts';
import { instantModel, loopAgent } from './workloads.ts';

/**
 * Recovery: `tasks` tasks run on a host in its own process; it is SIGKILLed mid-flight; a second
 * host (already running) takes them over once their lease (`leaseMs`) runs out. Returns, per task,
 * the time from the kill to its resumption, and to the end of the last task.
 */
export async function recovery(nc: NatsConnection, natsUrl: string, tasks: number, leaseMs: number): Promise<{ resumed: number[]; allDoneMs: number; lost: number }> {
  const prefix = `brec${Date.now().toString(36)}`;
  const s = makeSubjects(prefix);
  const child = await startHostProcess({ natsUrl, prefix, leaseMs, modelMs: 300 });
  const js = jetstream(nc);
  const accepted = new Set<string>();
  const resumedAt = new Map<string, number>();
  let ended = 0;
  let allEnded!: () => void;
  const done = new Promise<void>((r) => (allEnded = r));
  const sub = nc.subscribe(s.allEvents, {
    callback: (_err, m) => {
      const e = JSON.parse(new TextDecoder().decode(m.data)) as { type: string; taskId: string };
      if (e.type === 'accepted') accepted.add(e.taskId);
      else if (e.type === 'resumed' && !resumedAt.has(e.taskId)) resumedAt.set(e.taskId, performance.now());
      else if ((e.type === 'done' || e.type === 'failed') && ++ended === tasks) allEnded();
    },
  });
  for (let i = 0; i < tasks; i++) await js.publish(s.task('loop'), JSON.stringify({ taskId: `r${i}`, input: { i } }), { msgID: `r${i}` });
  while (accepted.size < tasks) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 500)); // mid-flight
  const survivor = new Host({ nc, config: compileConfig({ prefix, host: { leaseMs, concurrency: 2000 } }), agents: [loopAgent], model: instantModel, logger: pino({ level: 'silent' }) });
  await survivor.start();
  const killedAt = performance.now();
  await child.kill();
  const finished = await Promise.race([done.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), leaseMs + 60_000))]);
  const allDoneMs = performance.now() - killedAt;
  sub.unsubscribe();
  await survivor.close();
  return { resumed: [...resumedAt.values()].map((t) => t - killedAt).filter((ms) => ms >= 0), allDoneMs, lost: finished ? 0 : tasks - ended };
}
