import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import pino from 'pino';
import { z } from 'zod';
import { defineAgent, type Agent } from '../actors/agent.ts';
import { Host } from '../actors/host.ts';
import type { ContentBlock, ModelCallRequest, ModelCallResult, ModelClient } from '../actors/model/model-client.ts';
import { compileConfig } from '../config/load.ts';
import { subjects as makeSubjects } from '../runtime/subjects.ts';
import { defineTool } from '../sandbox/tool.ts';

/** Steps of the tool-loop workload: nine rounds of model call + tool call, then a final answer. */
export const LOOP_STEPS = 10;

/** An in-process model answering at once: a call of `tool` for the first `steps - 1` turns, then text. */
export function instantModelOf(steps: number, tool = 'noop'): ModelClient {
  return {
    async call(request: ModelCallRequest): Promise<ModelCallResult> {
      const turn = request.messages.filter((m) => m.role === 'assistant').length;
      const content: ContentBlock[] = turn < steps - 1 ? [{ type: 'tool_use', id: `tu_${turn}`, name: tool, input: { n: turn } }] : [{ type: 'text', text: 'done' }];
      return { content, stopReason: turn < steps - 1 ? 'tool_use' : 'end_turn', model: 'instant', role: request.role, usage: { inputTokens: 10, outputTokens: 5, cacheCreationInputTokens: 0, cacheReadInputTokens: 0 }, costUsd: 0, latencyMs: 0, attempts: 1 };
    },
  };
}

/** The loop's model: a tool call for the first nine turns, then text. */
export const instantModel = instantModelOf(LOOP_STEPS);

const noop = defineTool({ name: 'noop', description: 'does nothing', input: z.object({ n: z.number() }), output: z.object({ n: z.number() }), run: async ({ n }) => ({ n }) });
export const loopAgent = defineAgent({ name: 'loop', description: 'the 10-step tool loop', input: z.object({ i: z.number() }), system: 'bench', tools: [noop], limits: { steps: LOOP_STEPS + 2, wallClockMs: 600_000, noProgress: 100 }, prompt: (i) => `run ${i.i}` });

/** The floor: `writes` compare-and-set updates of one key per step, `steps` steps, on each of `tasks` keys at once. Returns elapsed ms. */
export async function kvFloor(nc: NatsConnection, tasks: number, steps: number, writes: number): Promise<number> {
  const kv = await new Kvm(jetstream(nc)).create(`bench_floor_${tasks}_${writes}_${Date.now()}`, { history: 1 });
  const body = new TextEncoder().encode(JSON.stringify({ step: 0, snapshot: { context: { messages: ['x'.repeat(512)] } } }));
  const started = performance.now();
  await Promise.all(
    Array.from({ length: tasks }, async (_, t) => {
      let revision = await kv.create(`t${t}`, body);
      for (let s = 0; s < steps * writes; s++) revision = await kv.update(`t${t}`, body, revision);
    }),
  );
  const elapsed = performance.now() - started;
  await kv.destroy();
  return elapsed;
}

/** Characters of each result of the long task's tool: a small JSON answer, like a lookup's. */
export const LONG_RESULT_CHARS = 200;

/** The long-task workload (`npm run bench -- long`): the loop with `steps` steps, each tool result {@link LONG_RESULT_CHARS} characters. */
export function longWorkload(steps: number): { agent: Agent<any>; model: ModelClient } {
  const lookup = defineTool({ name: 'lookup', description: 'answers with a small record', input: z.object({ n: z.number() }), output: z.object({ n: z.number(), text: z.string() }), run: async ({ n }) => ({ n, text: 'x'.repeat(LONG_RESULT_CHARS - 20) }) });
  const agent = defineAgent({ name: 'long', description: `the tool loop, ${steps} steps`, input: z.object({ i: z.number() }), system: 'bench', tools: [lookup], limits: { steps: steps + 2, wallClockMs: 3_600_000, noProgress: steps }, prompt: (i) => `run ${i.i}` });
  return { agent, model: instantModelOf(steps, 'lookup') };
}

/** A host running one agent (the loop agent unless told) in this process, with a {@link loopDriver} to run tasks through it. */
export async function loopHost(nc: NatsConnection, prefix: string, workload: { agent: Agent<any>; model: ModelClient } = { agent: loopAgent, model: instantModel }) {
  const host = new Host({ nc, config: compileConfig({ prefix, host: { concurrency: 2000 } }), agents: [workload.agent], model: workload.model, logger: pino({ level: 'silent' }) });
  await host.start();
  const driver = loopDriver(nc, prefix, workload.agent.name);
  return {
    ...driver,
    async close() {
      driver.close();
      await host.close();
    },
  };
}

/**
 * Submits loop tasks under `prefix` and waits for their ends, as a submitter does: from the
 * tasks' events, whichever host (in this process or another) runs them. Keeps the time between a
 * task's consecutive model calls (its steps) as it goes.
 */
export function loopDriver(nc: NatsConnection, prefix: string, agent = 'loop') {
  const s = makeSubjects(prefix);
  const js: JetStreamClient = jetstream(nc);
  const lastModelAt = new Map<string, number>();
  const stepLatencies: number[] = [];
  let waiting: { left: number; resolve: () => void } | undefined;
  const sub = nc.subscribe(s.allEvents, {
    callback: (_err, m) => {
      // Only model and end events matter here; the driver may share the host's CPU, so it parses nothing else.
      const text = m.string();
      if (!text.startsWith('{"type":"model"') && !text.startsWith('{"type":"done"') && !text.startsWith('{"type":"failed"')) return;
      const e = JSON.parse(text) as { type: string; taskId: string; at: number };
      if (e.type === 'model') {
        const prev = lastModelAt.get(e.taskId);
        if (prev !== undefined) stepLatencies.push(e.at - prev);
        lastModelAt.set(e.taskId, e.at);
      } else if ((e.type === 'done' || e.type === 'failed') && waiting && --waiting.left === 0) waiting.resolve();
    },
  });
  let next = 0;
  return {
    stepLatencies,
    /** Submits `tasks` tasks at once and resolves when all ended; returns elapsed ms. */
    async run(tasks: number): Promise<number> {
      const done = new Promise<void>((resolve) => (waiting = { left: tasks, resolve }));
      const started = performance.now();
      await Promise.all(Array.from({ length: tasks }, () => { const i = next++; return js.publish(s.task(agent), JSON.stringify({ taskId: `b${i}`, input: { i } }), { msgID: `b${i}` }); }));
      await done;
      return performance.now() - started;
    },
    close() {
      sub.unsubscribe();
    },
  };
}

/** An agent whose tasks park at once: one model call, then a step limit that escalates to an approver. */
export const parkingAgent = defineAgent({
  name: 'parking',
  description: 'parks for an approver after one step',
  input: z.object({ i: z.number() }),
  system: 'bench',
  tools: [noop],
  limits: { steps: 1, wallClockMs: 3_600_000, onBreach: { steps: 'escalate' } },
  prompt: (i) => `park ${i.i}`,
});
