import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assign, fromPromise, setup } from 'xstate';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import type { ModelEffectInput, ModelTurn } from '../../machines/conversation.ts';
import { outcome, type MachineOutcome } from '../../machines/outcome.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { scriptedModel } from '../helpers/scripted-model.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** Throws while `failures` says so: a machine with a bug that bites on some runs. */
let failures = 0;
const flaky = setup({
  types: {} as { context: { taskId: string; answer: string | null }; input: { taskId: string }; output: MachineOutcome },
  actors: { model: fromPromise<ModelTurn, ModelEffectInput>(async () => ({ content: [], stopReason: null })) },
}).createMachine({
  id: 'flaky',
  context: ({ input }) => ({ taskId: input.taskId, answer: null }),
  initial: 'asking',
  states: {
    asking: {
      invoke: {
        src: 'model',
        input: ({ context }) => ({ key: `${context.taskId}/0/0`, role: 'agent', step: 0, messages: [{ role: 'user' as const, content: 'hi' }] }),
        onDone: { target: 'using', actions: assign({ answer: ({ event }) => (event.output.content[0] as { text: string }).text }) },
      },
    },
    using: {
      entry: () => {
        if (failures > 0) {
          failures--;
          throw new Error('bug in the using state');
        }
      },
      always: 'done',
    },
    done: { type: 'final' },
  },
  output: ({ context }) => outcome.done(context.answer),
});

const agent = defineAgent({
  name: 'flaky',
  description: 'throws sometimes',
  input: z.object({}),
  machine: flaky,
  machineInput: ({ taskId }) => ({ taskId }),
});

const model = scriptedModel(() => [{ type: 'text', text: 'hello' }]);
let nats: NatsTestContext;
let host: Awaited<ReturnType<typeof startHost>>;

beforeAll(async () => {
  nats = await startNats();
  host = await startHost(nats.url, [agent], model, { host: { restartIntensity: 2, restartPeriodMs: 60_000, restartBackoffMs: 10 } });
});
afterAll(async () => {
  await host?.stop();
  await nats?.close();
});

describe('an actor that throws', () => {
  it('is restarted from its last snapshot and completes, without calling the model again', async () => {
    failures = 1;
    const calls = model.calls;
    await submit(nats.nc, nats.js, 'flaky', { taskId: 'flaky-once', input: {} });
    const events = await eventsUntilEnd(nats.js, 'flaky-once');
    expect(events.at(-1)).toMatchObject({ type: 'done', output: 'hello' });
    // The restart re-ran the model effect; the ledger answered it.
    expect(model.calls - calls).toBe(1);
  });

  it('is given up on past the restart intensity, with a clear outcome', async () => {
    failures = 100;
    await submit(nats.nc, nats.js, 'flaky', { taskId: 'flaky-always', input: {} });
    const events = await eventsUntilEnd(nats.js, 'flaky-always');
    expect(events.at(-1)).toMatchObject({
      type: 'failed',
      error: { code: 'restart_intensity_exceeded', message: expect.stringMatching(/threw 3 times within 60000 ms \(limit 2\); last error: bug in the using state/) },
    });
    expect(failures).toBe(97);
  });
});
