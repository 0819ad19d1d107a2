import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { useNats } from '../helpers/nats.ts';
import { startHost } from '../helpers/host.ts';
import { scriptedModel, turnOf } from '../helpers/scripted-model.ts';
import { eventsUntilEnd } from '../helpers/watch.ts';

/**
 * What a step costs in NATS operations, counted on the host's own connection to a real server.
 * The step rate of a task is bound by these round trips (see the README's Performance section):
 * this guards the count, not a timing.
 */
const STEPS = 6;
const echo = defineTool({ name: 'echo', description: 'echoes', input: z.object({ n: z.number() }), output: z.object({ n: z.number() }), run: async ({ n }) => ({ n }) });
// The same call, but a side effect (reversible): its intent must be written before it runs.
const note = defineTool({ name: 'note', description: 'notes', reversibility: 'reversible', input: z.object({ n: z.number() }), output: z.object({ n: z.number() }), run: async ({ n }) => ({ n }) });
const agent = defineAgent({ name: 'counted', description: 'a tool loop', input: z.object({}), system: 's', tools: [echo], limits: { steps: STEPS + 2 }, prompt: () => 'go' });
const writer = defineAgent({ name: 'writer', description: 'a tool loop with side effects', input: z.object({}), system: 's', tools: [note], limits: { steps: STEPS + 2 }, approvals: { autoApprove: ['note'] }, prompt: () => 'go' });
const model = scriptedModel((request) => {
  const turn = turnOf(request);
  const tool = request.tools?.some((t) => t.name === 'note') ? 'note' : 'echo';
  return turn < STEPS - 1 ? [{ type: 'tool_use', id: `tu${turn}`, name: tool, input: { n: turn } }] : [{ type: 'text', text: 'done' }];
});

describe('round trips per step', () => {
  const nats = useNats();

  let nc: NatsConnection | undefined;

  /** Runs one task of `agentName` on a fresh host and counts what its connection sent. */
  async function count(agentName: string, prefix: string, faults?: NonNullable<Parameters<typeof startHost>[4]>['faults']): Promise<Map<string, number>> {
    const host = await startHost(nats.url, [agent, writer], model, { prefix }, faults ? { faults } : {});
    nc = host.nc;
    const s = makeSubjects(prefix);
    const counted = new Map<string, number>();
    const kinds = [
      [`$KV.${s.buckets.snapshots}.`, 'snapshot write'],
      [`$KV.${s.buckets.ledger}.`, 'ledger write'],
      [`$JS.API.DIRECT.GET.KV_${s.buckets.ledger}`, 'ledger read'],
      [`$JS.API.DIRECT.GET.KV_${s.buckets.snapshots}`, 'snapshot read'],
      [s.events(`${prefix}-1`), 'event'],
    ] as const;
    const original = host.nc.publish.bind(host.nc);
    host.nc.publish = ((subject: string, ...rest: Parameters<typeof original> extends [string, ...infer R] ? R : never) => {
      const kind = kinds.find(([prefix]) => subject.startsWith(prefix))?.[1] ?? 'other';
      counted.set(kind, (counted.get(kind) ?? 0) + 1);
      return original(subject, ...rest);
    }) as typeof host.nc.publish;
    try {
      await nats.js.publish(s.task(agentName), JSON.stringify({ taskId: `${prefix}-1`, input: {} }), { msgID: `${prefix}-1` });
      const events = await eventsUntilEnd(nats.js, `${prefix}-1`, { prefix });
      expect(events.at(-1)?.type).toBe('done');
      return counted;
    } finally {
      host.nc.publish = original;
      await host.stop();
    }
  }

  it('writes the snapshot once per step when the tools only read, and reads no ledger record for effects it starts itself', async () => {
    const counted = await count('counted', 'rt');
    // The intent of each model call is written before it; a round of read-only inline calls
    // needs no write of its own (its results ride on the write before the next model call).
    // Plus the task's creation, its outcome, and a claim of the message.
    expect(counted.get('snapshot write') ?? 0).toBeLessThanOrEqual(STEPS + 2);
    expect(counted.get('ledger write') ?? 0).toBe(STEPS + (STEPS - 1));
    expect(counted.get('ledger read') ?? 0).toBe(0);
    // A new task is created without first reading whether it exists (the create would fail if it did).
    expect(counted.get('snapshot read') ?? 0).toBe(0);
    // Events for watchers: a state event as each model call and each tool round starts, one event
    // per model call (its budget in it) and per tool call; and `accepted`, the final state, `done`.
    expect(counted.get('event') ?? 0).toBe(1 + 2 * STEPS + 2 * (STEPS - 1) + 2);
  });

  it('writes the intent of every side-effecting call before it runs', async () => {
    // What the snapshot bucket holds as each tool call starts, read on the host's own connection
    // (so behind any write the host sent before it).
    const atStart: string[] = [];
    const beforeEffect = async (key: string) => {
      if (key.endsWith('/0')) return;
      const kv = await new Kvm(jetstream(nc!)).open(makeSubjects('rw').buckets.snapshots);
      const saved = JSON.parse((await kv.get('rw-1'))!.string()) as { state: string; step: number };
      atStart.push(`${key} ${saved.state} ${saved.step}`);
    };
    const counted = await count('writer', 'rw', { beforeEffect });
    expect(atStart).toEqual(Array.from({ length: STEPS - 1 }, (_, i) => `rw-1/${i}/1 acting ${i}`));
    const effects = STEPS + (STEPS - 1);
    expect(counted.get('snapshot write') ?? 0).toBeGreaterThanOrEqual(effects);
    expect(counted.get('snapshot write') ?? 0).toBeLessThanOrEqual(effects + 2);
    // A side-effecting call claims its key (`started`) and then records its outcome.
    expect(counted.get('ledger write') ?? 0).toBe(STEPS + 2 * (STEPS - 1));
    expect(counted.get('ledger read') ?? 0).toBe(0);
  });
});
