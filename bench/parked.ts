import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { createUser } from '@nats-io/nkeys';
import pino from 'pino';
import { Host } from '../actors/host.ts';
import { compileConfig } from '../config/load.ts';
import { signDecision } from '../runtime/approvals.ts';
import { subjects as makeSubjects } from '../runtime/subjects.ts';
import { instantModel, parkingAgent } from './workloads.ts';

/**
 * Parked agents: `count` tasks parked for an approver on one host, the host's memory then, and
 * how long a decision takes to wake a task (decision published -> task resumed).
 */
export async function parkedTasks(nc: NatsConnection, count: number, wakeSample: number): Promise<{ rssBeforeMb: number; rssParkedMb: number; heapBeforeMb: number; heapParkedMb: number; parkMs: number; wake: number[] }> {
  const prefix = `bpark${count}`;
  const s = makeSubjects(prefix);
  const key = createUser();
  const host = new Host({ nc, config: compileConfig({ prefix, approvers: [{ name: 'bench', publicKey: key.getPublicKey() }] }), agents: [parkingAgent], model: instantModel, logger: pino({ level: 'silent' }) });
  await host.start();
  const js = jetstream(nc);
  const requests = new Map<string, string>();
  const resumedAt = new Map<string, number>();
  let parked = 0;
  let allParked!: () => void;
  const parkedAll = new Promise<void>((r) => (allParked = r));
  const sub = nc.subscribe(s.allEvents, {
    callback: (_err, m) => {
      const e = JSON.parse(new TextDecoder().decode(m.data)) as { type: string; taskId: string; requestId?: string };
      if (e.type === 'escalated') {
        // Only the tasks the wake-up sample will decide: the driver shares the host's heap, and
        // 100,000 ids it never uses would be counted as the host's.
        if (requests.size < wakeSample) requests.set(e.taskId, e.requestId!);
        if (++parked === count) allParked();
      } else if (e.type === 'resumed') resumedAt.set(e.taskId, performance.now());
    },
  });
  global.gc?.();
  const rssBeforeMb = process.memoryUsage().rss / 2 ** 20;
  const heapBeforeMb = process.memoryUsage().heapUsed / 2 ** 20;
  const started = performance.now();
  for (let i = 0; i < count; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, count - i) }, (_, j) => js.publish(s.task('parking'), JSON.stringify({ taskId: `p${i + j}`, input: { i: i + j } }), { msgID: `p${i + j}` })));
  }
  await parkedAll;
  const parkMs = performance.now() - started;
  // Parked tasks are released by the host: let it settle, then measure.
  while (host.running > 0) await new Promise((r) => setTimeout(r, 50));
  global.gc?.();
  const rssParkedMb = process.memoryUsage().rss / 2 ** 20;
  const heapParkedMb = process.memoryUsage().heapUsed / 2 ** 20;

  const wake: number[] = [];
  for (const [taskId, requestId] of requests) {
    const decision = signDecision({ v: 1, requestId, taskId, verdict: 'approve', at: Date.now() }, key);
    const sent = performance.now();
    await js.publish(s.decision(taskId), JSON.stringify(decision));
    while (!resumedAt.has(taskId)) await new Promise((r) => setImmediate(r));
    wake.push(resumedAt.get(taskId)! - sent);
  }
  sub.unsubscribe();
  await host.close();
  return { rssBeforeMb, rssParkedMb, heapBeforeMb, heapParkedMb, parkMs, wake };
}
