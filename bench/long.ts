import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { subjects as makeSubjects } from '../runtime/subjects.ts';
import { longWorkload, loopHost } from './workloads.ts';

/** One stretch of the long task's steps. */
export interface LongPhase {
  /** First and last step of the stretch (1-based). */
  from: number;
  to: number;
  /** Mean time between the task's consecutive model calls, ms. */
  troupeMs: number;
  /** Mean size of the task's snapshot writes in the stretch, bytes. */
  bytes: number;
  /** Mean time of a bare compare-and-set write of the same sizes, ms. */
  floorMs: number;
}

/**
 * A long task: one task of `steps` steps (the loop, each tool result a small record), run once to
 * warm up and once measured, while the sizes of its snapshot writes are taken off the KV stream.
 * The floor writes the same sizes, in order, to one key as bare compare-and-set updates: what
 * writing the task's whole state at every step costs by itself, against which the growth of a
 * troupe step can be read. Returns the first, middle and last tenth of the steps.
 */
export async function longTask(nc: NatsConnection, raw: NatsConnection, steps: number): Promise<LongPhase[]> {
  const prefix = `blong${Date.now().toString(36)}`;
  const s = makeSubjects(prefix);
  const host = await loopHost(nc, prefix, longWorkload(steps));
  const sizes: number[] = [];
  let measuring = false;
  const sub = nc.subscribe(`$KV.${s.buckets.snapshots}.>`, { callback: (_err, m) => void (measuring && sizes.push(m.data.length)) });
  let latencies: number[];
  try {
    await host.run(1);
    host.stepLatencies.length = 0;
    measuring = true;
    await host.run(1);
    measuring = false;
    latencies = [...host.stepLatencies];
  } finally {
    sub.unsubscribe();
    await host.close();
  }
  const floor = await floorWrites(raw, sizes);
  const tenth = Math.max(1, Math.floor(steps / 10));
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  // Write i of n falls at the same point of the task as step i * steps / n.
  const at = <T>(values: T[], from: number, to: number) => values.slice(Math.floor(((from - 1) / steps) * values.length), Math.floor((to / steps) * values.length));
  return [1, Math.floor(steps / 2 - tenth / 2) + 1, steps - tenth + 1].map((from) => {
    const to = from + tenth - 1;
    // latencies[i] is the time from step i + 1 to step i + 2.
    return { from, to, troupeMs: mean(latencies.slice(from - 1, to - 1)), bytes: mean(at(sizes, from, to)), floorMs: mean(at(floor, from, to)) };
  });
}

/** Bare compare-and-set writes of one key with values of these sizes, in order; ms each. */
async function floorWrites(raw: NatsConnection, sizes: number[]): Promise<number[]> {
  const kv = await new Kvm(jetstream(raw)).create(`bench_long_floor_${Date.now()}`, { history: 1 });
  const max = Math.max(1, ...sizes);
  const body = new Uint8Array(max).fill(120);
  const times: number[] = [];
  try {
    let revision = await kv.create('t', body.subarray(0, sizes[0] ?? 1));
    for (const size of sizes) {
      const t0 = performance.now();
      revision = await kv.update('t', body.subarray(0, size), revision);
      times.push(performance.now() - t0);
    }
  } finally {
    await kv.destroy();
  }
  return times;
}
