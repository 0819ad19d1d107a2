import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, toPromise, type AnyStateMachine, type Snapshot } from 'xstate';
import type { ContentBlock, ModelEffectInput, ModelTurn, ToolResultBlock, ToolsEffectInput } from '../../machines/conversation.ts';
import { agentLoopMachine, CONTINUE, type AgentLoopInput } from '../../machines/agent-loop.machine.ts';
import type { MachineOutcome } from '../../machines/outcome.ts';

/**
 * Pure unit tests of the agent loop: effects are provided as promise actors, no NATS, no clock.
 * Each test records the idempotency keys the machine hands its effects.
 */

interface Trace {
  keys: string[];
  modelInputs: ModelEffectInput[];
  toolInputs: ToolsEffectInput[];
}

type Turn = (input: ModelEffectInput, call: number) => ContentBlock[] | Error;

const text = (t: string): ContentBlock => ({ type: 'text', text: t });
const toolUse = (id: string, name: string, input: unknown): ContentBlock => ({ type: 'tool_use', id, name, input });

/** The machine with scripted effects; tools answer `{"ok": <name>}` for every call. */
function scripted(turn: Turn, trace: Trace = { keys: [], modelInputs: [], toolInputs: [] }) {
  let calls = 0;
  const machine = agentLoopMachine.provide({
    actors: {
      model: fromPromise<ModelTurn, ModelEffectInput>(async ({ input }) => {
        trace.keys.push(input.key);
        trace.modelInputs.push(structuredClone(input));
        const out = turn(input, calls++);
        if (out instanceof Error) throw out;
        return { content: out, stopReason: out.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn' };
      }),
      tools: fromPromise<ToolResultBlock[], ToolsEffectInput>(async ({ input }) => {
        trace.toolInputs.push(structuredClone(input));
        for (const c of input.calls) trace.keys.push(c.key);
        return input.calls.map((c) => ({ type: 'tool_result', tool_use_id: c.toolUseId, content: JSON.stringify({ ok: c.name }) }));
      }),
    },
  });
  return { machine, trace };
}

async function run(turn: Turn, input: AgentLoopInput) {
  const { machine, trace } = scripted(turn);
  const actor = createActor(machine, { input });
  actor.start();
  const output = (await toPromise(actor)) as MachineOutcome;
  return { output, trace, snapshot: actor.getSnapshot() };
}

/** Two tools in step 0, one in step 1, then the final answer. */
const toolLoop: Turn = (_input, call) => {
  if (call === 0) return [text('let me look'), toolUse('tu_a', 'lookup', { id: 1 }), toolUse('tu_b', 'weather', { city: 'Oslo' })];
  if (call === 1) return [toolUse('tu_c', 'lookup', { id: 2 })];
  return [text('All '), text('done.')];
};

describe('agentLoopMachine', () => {
  it('runs a tool loop to done with the final text as output', async () => {
    const { output, trace, snapshot } = await run(toolLoop, { taskId: 'loop-1', prompt: 'hello', maxSteps: 8 });
    expect(output).toEqual({ status: 'done', output: 'All done.' });
    expect(snapshot.value).toBe('done');
    expect(snapshot.status).toBe('done');
    expect(snapshot.context.step).toBe(2);
    expect(trace.modelInputs.map((m) => m.role)).toEqual(['agent', 'agent', 'agent']);
    expect(trace.modelInputs.map((m) => m.step)).toEqual([0, 1, 2]);
    // The conversation the model sees grows by one assistant turn and one tool-result turn per step.
    expect(trace.modelInputs[0]!.messages).toEqual([{ role: 'user', content: 'hello' }]);
    expect(trace.modelInputs[2]!.messages).toHaveLength(5);
    expect(trace.modelInputs[1]!.messages[2]).toEqual({
      role: 'user',
      content: [
        { type: 'tool_result', tool_use_id: 'tu_a', content: '{"ok":"lookup"}' },
        { type: 'tool_result', tool_use_id: 'tu_b', content: '{"ok":"weather"}' },
      ],
    });
    // Tool calls carry the model's tool_use ids, names and inputs unchanged, and its words as the rationale.
    expect(trace.toolInputs).toEqual([
      {
        step: 0,
        rationale: 'let me look',
        calls: [
          { key: 'loop-1/0/1', toolUseId: 'tu_a', name: 'lookup', input: { id: 1 } },
          { key: 'loop-1/0/2', toolUseId: 'tu_b', name: 'weather', input: { city: 'Oslo' } },
        ],
      },
      { step: 1, calls: [{ key: 'loop-1/1/1', toolUseId: 'tu_c', name: 'lookup', input: { id: 2 } }] },
    ]);
  });

  it('answers without tools in one step', async () => {
    const { output, trace } = await run(() => [text('hi there')], { taskId: 'one', prompt: 'hi', maxSteps: 1 });
    expect(output).toEqual({ status: 'done', output: 'hi there' });
    expect(trace.keys).toEqual(['one/0/0']);
  });

  it('gives effect keys <taskId>/<step>/0 for model calls and <taskId>/<step>/<i+1> for tool calls', async () => {
    const { trace } = await run(toolLoop, { taskId: 'keys-1', prompt: 'p', maxSteps: 8 });
    expect(trace.keys).toEqual(['keys-1/0/0', 'keys-1/0/1', 'keys-1/0/2', 'keys-1/1/0', 'keys-1/1/1', 'keys-1/2/0']);
  });

  it('derives the same keys when the same trajectory is replayed', async () => {
    const first = await run(toolLoop, { taskId: 'replay', prompt: 'p', maxSteps: 8 });
    const second = await run(toolLoop, { taskId: 'replay', prompt: 'p', maxSteps: 8 });
    expect(second.trace.keys).toEqual(first.trace.keys);
    expect(second.trace.modelInputs).toEqual(first.trace.modelInputs);
    expect(second.trace.toolInputs).toEqual(first.trace.toolInputs);
    expect(second.output).toEqual(first.output);
    // Nothing random or time-based: a different task id is the only thing that changes the keys.
    const other = await run(toolLoop, { taskId: 'replay-2', prompt: 'p', maxSteps: 8 });
    expect(other.trace.keys).toEqual(first.trace.keys.map((k) => k.replace(/^replay\//, 'replay-2/')));
  });

  it('ends failed with limit_exceeded at the step cap, without calling the model again', async () => {
    let n = 0;
    const { output, trace, snapshot } = await run(() => [toolUse(`tu_${n++}`, 'lookup', {})], { taskId: 'cap', prompt: 'p', maxSteps: 3 });
    expect(output).toMatchObject({ status: 'failed', error: { code: 'limit_exceeded' } });
    expect((output as Extract<MachineOutcome, { status: 'failed' }>).error.message).toContain('3 of 3 steps');
    expect(snapshot.value).toBe('failed');
    // Three model turns and their tool calls; no fourth model call (it would be billed).
    expect(trace.keys).toEqual(['cap/0/0', 'cap/0/1', 'cap/1/0', 'cap/1/1', 'cap/2/0', 'cap/2/1']);
  });

  it('ends failed with the model error code when the model call fails', async () => {
    const boom = Object.assign(new Error('overloaded, try later'), { code: 'model_error' });
    const { output, snapshot } = await run((_i, call) => (call === 0 ? [toolUse('tu_1', 'lookup', {})] : boom), { taskId: 'merr', prompt: 'p', maxSteps: 8 });
    expect(output).toEqual({ status: 'failed', error: { code: 'model_error', message: 'overloaded, try later' } });
    expect(snapshot.value).toBe('failed');
  });

  it('ends failed with code internal for a model error without a code', async () => {
    const { output } = await run(() => new Error('socket hang up'), { taskId: 'merr2', prompt: 'p', maxSteps: 8 });
    expect(output).toEqual({ status: 'failed', error: { code: 'internal', message: 'socket hang up' } });
  });

  it('ends failed with the tools effect error code when the tools effect fails', async () => {
    const machine = agentLoopMachine.provide({
      actors: {
        model: fromPromise<ModelTurn, ModelEffectInput>(async () => ({ content: [toolUse('tu_1', 'charge', {})], stopReason: 'tool_use' })),
        tools: fromPromise<ToolResultBlock[], ToolsEffectInput>(async () => {
          throw Object.assign(new Error('charge may or may not have happened'), { code: 'unknown_outcome' });
        }),
      },
    });
    const actor = createActor(machine, { input: { taskId: 'terr', prompt: 'p', maxSteps: 8 } });
    actor.start();
    expect(await toPromise(actor)).toEqual({ status: 'failed', error: { code: 'unknown_outcome', message: 'charge may or may not have happened' } });
  });

  it('persists a JSON-safe snapshot and, restored, re-invokes the in-flight effect with the same key', async () => {
    const keys: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // First life: step 0's model call asks for a tool, and the tool call never returns (the host dies).
    const first = agentLoopMachine.provide({
      actors: {
        model: fromPromise<ModelTurn, ModelEffectInput>(async ({ input }) => {
          keys.push(input.key);
          return { content: [toolUse('tu_1', 'lookup', { id: 7 })], stopReason: 'tool_use' };
        }),
        tools: fromPromise<ToolResultBlock[], ToolsEffectInput>(async ({ input }) => {
          for (const c of input.calls) keys.push(c.key);
          await gate;
          throw new Error('unreachable: the first life is abandoned');
        }),
      },
    });
    const actor = createActor(first, { input: { taskId: 'persist', prompt: 'p', maxSteps: 8 } });
    actor.start();
    await new Promise<void>((resolve) => {
      const sub = actor.subscribe((s) => {
        if (s.matches('acting')) {
          sub.unsubscribe();
          resolve();
        }
      });
      if (actor.getSnapshot().matches('acting')) resolve();
    });
    // Let the invoked tools actor start.
    await new Promise((r) => setTimeout(r, 0));
    expect(keys).toEqual(['persist/0/0', 'persist/0/1']);
    const persisted = actor.getPersistedSnapshot();
    const json = JSON.stringify(persisted);
    const revived = JSON.parse(json) as Snapshot<unknown>;
    expect(revived).toEqual(persisted);
    actor.stop();
    release();

    // Second life, from the JSON only: the in-flight tools effect runs again with the same key.
    const replayKeys: string[] = [];
    const toolsInputs: ToolsEffectInput[] = [];
    const second = agentLoopMachine.provide({
      actors: {
        model: fromPromise<ModelTurn, ModelEffectInput>(async ({ input }) => {
          replayKeys.push(input.key);
          return { content: [text('order 7 is fine')], stopReason: 'end_turn' };
        }),
        tools: fromPromise<ToolResultBlock[], ToolsEffectInput>(async ({ input }) => {
          toolsInputs.push(input);
          for (const c of input.calls) replayKeys.push(c.key);
          return input.calls.map((c) => ({ type: 'tool_result', tool_use_id: c.toolUseId, content: '{"status":"ok"}' }));
        }),
      },
    });
    const restored = createActor(second as AnyStateMachine, { snapshot: revived });
    expect(restored.getSnapshot().value).toBe('acting');
    restored.start();
    expect(await toPromise(restored)).toEqual({ status: 'done', output: 'order 7 is fine' });
    expect(replayKeys).toEqual(['persist/0/1', 'persist/1/0']);
    expect(toolsInputs).toEqual([{ step: 0, calls: [{ key: 'persist/0/1', toolUseId: 'tu_1', name: 'lookup', input: { id: 7 } }] }]);
  });

  it('restores a snapshot taken during a model call and re-invokes that model call with the same key', async () => {
    const keys: string[] = [];
    const first = agentLoopMachine.provide({
      actors: {
        model: fromPromise<ModelTurn, ModelEffectInput>(async ({ input }) => {
          keys.push(input.key);
          return new Promise<ModelTurn>(() => {});
        }),
      },
    });
    const actor = createActor(first, { input: { taskId: 'mid-model', prompt: 'first prompt', maxSteps: 4 } });
    actor.start();
    await new Promise((r) => setTimeout(r, 0));
    expect(keys).toEqual(['mid-model/0/0']);
    const revived = JSON.parse(JSON.stringify(actor.getPersistedSnapshot())) as Snapshot<unknown>;
    actor.stop();

    const inputs: ModelEffectInput[] = [];
    const second = agentLoopMachine.provide({
      actors: {
        model: fromPromise<ModelTurn, ModelEffectInput>(async ({ input }) => {
          inputs.push(input);
          return { content: [text('answer')], stopReason: 'end_turn' };
        }),
      },
    });
    const restored = createActor(second as AnyStateMachine, { snapshot: revived });
    restored.start();
    expect(await toPromise(restored)).toEqual({ status: 'done', output: 'answer' });
    expect(inputs).toEqual([{ key: 'mid-model/0/0', role: 'agent', step: 0, messages: [{ role: 'user', content: 'first prompt' }] }]);
  });

  it('asks the model to continue a reply cut off at max_tokens, under a new key, instead of taking it as the answer', async () => {
    const keys: string[] = [];
    const inputs: ModelEffectInput[] = [];
    const machine = agentLoopMachine.provide({
      actors: {
        model: fromPromise<ModelTurn, ModelEffectInput>(async ({ input }) => {
          keys.push(input.key);
          inputs.push(structuredClone(input));
          return keys.length === 1 ? { content: [text('The answer is')], stopReason: 'max_tokens' } : { content: [text(' 42.')], stopReason: 'end_turn' };
        }),
      },
    });
    const actor = createActor(machine, { input: { taskId: 'cut', prompt: 'question' } }).start();
    const output = (await toPromise(actor)) as MachineOutcome;
    expect(output).toEqual({ status: 'done', output: ' 42.' });
    expect(keys).toEqual(['cut/0/0', 'cut/1/0']);
    expect(inputs[1]!.messages.slice(-2)).toEqual([
      { role: 'assistant', content: [text('The answer is')] },
      { role: 'user', content: CONTINUE },
    ]);
  });

  it('fails clearly when an effect is not provided', async () => {
    const actor = createActor(agentLoopMachine, { input: { taskId: 'bare', prompt: 'p', maxSteps: 2 } });
    actor.start();
    expect(await toPromise(actor)).toEqual({ status: 'failed', error: { code: 'internal', message: 'effect "model" was not provided to the machine' } });
  });
});
