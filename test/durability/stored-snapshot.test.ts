import { describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { headers } from '@nats-io/nats-core';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import type { ModelClient } from '../../actors/model/model-client.ts';
import { assign, createActor, createMachine, fromPromise, setup, spawnChild, type AnyActorRef } from 'xstate';
import { persistedWithoutWalk, restorableSnapshot, storedSnapshot } from '../../actors/stored-snapshot.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { useNats } from '../helpers/nats.ts';
import { startHost } from '../helpers/host.ts';
import { scriptedModel, turnOf } from '../helpers/scripted-model.ts';
import { eventsUntilEnd } from '../helpers/watch.ts';

/**
 * XState persists an invoked actor with its input, and the agent loop's model call is given the
 * whole conversation: stored as XState gives it, the conversation was in every write twice.
 */
describe('a stored snapshot keeps a child input it shares with the context once', () => {
  const conversation = [{ role: 'user', content: 'hello' }];
  const persisted = {
    status: 'active',
    value: 'thinking',
    context: { step: 3, messages: conversation, note: 'same' },
    children: {
      model: { snapshot: { status: 'active', input: { key: 't/3/0', step: 3, messages: conversation, note: 'same' } }, src: 'model', syncSnapshot: false },
    },
  };

  it('stores the shared field once, names where it comes from, and restores the input whole', () => {
    const stored = storedSnapshot(persisted) as typeof persisted & { children: { model: { inputFromContext: Record<string, string>; snapshot: { input: Record<string, unknown> } } } };
    expect(stored.children.model.snapshot.input).toEqual({ key: 't/3/0', step: 3, note: 'same' });
    expect(stored.children.model.inputFromContext).toEqual({ messages: 'messages' });
    // Through JSON, as it goes to the server and back.
    const restored = restorableSnapshot(JSON.parse(JSON.stringify(stored))) as unknown as typeof persisted;
    expect(restored.children.model).toEqual(persisted.children.model);
    expect(JSON.stringify(stored).length).toBeLessThan(JSON.stringify(persisted).length);
  });

  it('never changes the snapshot it is given (XState hands out its live objects)', () => {
    const before = JSON.stringify(persisted);
    storedSnapshot(persisted);
    expect(JSON.stringify(persisted)).toBe(before);
    expect(persisted.children.model.snapshot.input.messages).toBe(conversation);
  });

  it('keeps a value that is only equal (a string, or a copy) as it is', () => {
    const copy = { ...persisted, children: { model: { ...persisted.children.model, snapshot: { status: 'active', input: { messages: [...conversation], note: 'same' } } } } };
    expect(storedSnapshot(copy)).toBe(copy);
  });

  it('applies to the children of a child machine against that machine\'s own context', () => {
    const inner = [{ role: 'user', content: 'inner' }];
    const nested = { ...persisted, children: { sub: { snapshot: { status: 'active', context: { messages: inner }, children: { call: { snapshot: { status: 'active', input: { messages: inner } } } } } } } };
    const stored = storedSnapshot(nested) as { children: { sub: { snapshot: { children: { call: { inputFromContext: unknown; snapshot: { input: unknown } } } } } } };
    expect(stored.children.sub.snapshot.children.call.inputFromContext).toEqual({ messages: 'messages' });
    expect(stored.children.sub.snapshot.children.call.snapshot.input).toEqual({});
    expect(restorableSnapshot(JSON.parse(JSON.stringify(stored)))).toEqual(nested);
  });

  it('restores a snapshot stored before this form unchanged', () => {
    expect(restorableSnapshot(JSON.parse(JSON.stringify(persisted)))).toEqual(persisted);
    expect(restorableSnapshot(null)).toBeNull();
  });
});

/** XState walks the whole context for actor references each time it persists; troupe's contexts are JSON. */
describe('a machine persisted without the walk of its context', () => {
  const effect = fromPromise<string, { messages: unknown[] }>(() => new Promise(() => {}));
  const loop = () =>
    setup({ types: {} as { context: { messages: unknown[]; ref?: AnyActorRef } }, actors: { model: effect, helper: createMachine({}) } }).createMachine({
      context: { messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }] },
      initial: 'thinking',
      states: {
        thinking: { invoke: { src: 'model', input: ({ context }) => ({ messages: context.messages }) }, on: { spawn: 'spawning' } },
        spawning: { entry: assign({ ref: ({ spawn }) => spawn('helper', { id: 'h' }) }) },
      },
    });

  it('persists what XState persists, without looking inside the context', () => {
    const plain = createActor(loop()).start();
    const fast = createActor(persistedWithoutWalk(loop(), new Set(['model']))).start();
    expect(fast.getPersistedSnapshot()).toEqual(plain.getPersistedSnapshot());
    // A context XState walks is looked into (`'sessionId' in value`); this one never is.
    let looked = 0;
    const watched = new Proxy({ role: 'user', content: 'hi' }, { has: (target, key) => (looked++, key in target) });
    const machine = persistedWithoutWalk(loop(), new Set(['model']));
    const actor = createActor(machine, { snapshot: machine.resolveState({ value: 'thinking', context: { messages: [watched] } }) }).start();
    looked = 0;
    const persisted = actor.getPersistedSnapshot() as unknown as { context: { messages: unknown[] } };
    expect(looked).toBe(0);
    expect(persisted.context.messages[0]).toBe(watched);
    const walked = createActor(loop(), { snapshot: loop().resolveState({ value: 'thinking', context: { messages: [watched] } }) }).start();
    looked = 0;
    walked.getPersistedSnapshot();
    expect(looked).toBeGreaterThan(0);
  });

  it('leaves a snapshot with a spawned actor, whose reference the context may hold, to XState', () => {
    const actor = createActor(persistedWithoutWalk(loop(), new Set(['model']))).start();
    actor.send({ type: 'spawn' });
    const persisted = actor.getPersistedSnapshot() as unknown as { context: { ref: unknown } };
    expect(persisted.context.ref).toEqual({ xstate$$type: 1, id: 'h' });
    expect(() => JSON.stringify(persisted)).not.toThrow();
  });
});

const note = defineTool({ name: 'note', description: 'notes a word', input: z.object({ word: z.string() }), output: z.object({ ok: z.boolean() }), run: async () => ({ ok: true }) });
const reader = defineAgent({
  name: 'reader',
  description: 'reads a long text, notes a word, answers',
  input: z.object({ text: z.string() }),
  system: 's',
  tools: [note],
  limits: { steps: 4 },
  prompt: (i) => i.text,
});

/** Its prompt quotes the input twice: its first state is twice the size of its task message. */
const quoter = defineAgent({ name: 'quoter', description: 'quotes its text twice', input: z.object({ text: z.string() }), system: 's', tools: [], limits: { steps: 2 }, prompt: (i) => `${i.text}\n\nOnce more:\n\n${i.text}` });

describe('a conversation larger than half of max_payload', () => {
  const nats = useNats();

  it('is saved at every step while a model call is in flight, and the task ends done', async () => {
    const s = makeSubjects('half');
    // 600 KB of text with a marker at its start: more than half of the server's 1 MiB max_payload.
    const text = `MARK-${'x'.repeat(600_000)}`;
    let storedWhileThinking: string | undefined;
    const scripted = scriptedModel((request) => (turnOf(request) === 0 ? [{ type: 'tool_use', id: 'tu0', name: 'note', input: { word: 'x' } }] : [{ type: 'text', text: 'read it' }]));
    const model: ModelClient = {
      async call(request) {
        // The second call is in flight: the task's stored snapshot has the call (and its input) in it.
        if (turnOf(request) === 1) storedWhileThinking = new TextDecoder().decode((await kv.get('half-1'))!.value);
        return scripted.call(request);
      },
    };
    const host = await startHost(nats.url, [reader], model, { prefix: 'half', host: { maxTaskBytes: 700_000 } });
    const kv = await new Kvm(nats.js).open(s.buckets.snapshots);
    try {
      await nats.js.publish(s.task('reader'), JSON.stringify({ taskId: 'half-1', input: { text } }), { msgID: 'half-1' });
      const events = await eventsUntilEnd(nats.js, 'half-1', { prefix: 'half', timeoutMs: 20_000 });
      expect(events.at(-1)).toMatchObject({ type: 'done', output: 'read it' });
      expect(storedWhileThinking).toBeDefined();
      const stored = JSON.parse(storedWhileThinking!) as { state: string; snapshot: { children: Record<string, { inputFromContext?: unknown }> } };
      expect(stored.state).toBe('thinking');
      expect(Object.values(stored.snapshot.children).map((c) => c.inputFromContext)).toEqual([{ messages: 'messages' }]);
      expect(storedWhileThinking!.split('MARK-').length - 1).toBe(1);
    } finally {
      await host.stop();
    }
  });

  it('is refused at once with payload_too_large when even its first state is over max_payload, not redelivered until poison', async () => {
    const s = makeSubjects('huge');
    const host = await startHost(nats.url, [quoter], scriptedModel(() => [{ type: 'text', text: 'never' }]), { prefix: 'huge', host: { maxTaskBytes: 1_000_000 } });
    const rejected = nats.nc.subscribe(s.rejected('quoter'), { max: 1, timeout: 10_000 });
    try {
      const inbox = `_INBOX.huge.${Date.now()}`;
      const verdict = nats.nc.subscribe(inbox, { max: 1, timeout: 10_000 });
      const h = headers();
      h.set('Troupe-Reply-To', inbox);
      await nats.js.publish(s.task('quoter'), JSON.stringify({ taskId: 'huge-1', input: { text: 'y'.repeat(600_000) } }), { msgID: 'huge-1', headers: h });
      for await (const m of verdict) expect(m.json()).toMatchObject({ taskId: 'huge-1', error: { code: 'payload_too_large', message: expect.stringContaining('max_payload') } });
      for await (const m of rejected) expect(m.json()).toMatchObject({ taskId: 'huge-1', agent: 'quoter', error: { code: 'payload_too_large' } });
      // Nothing was saved, and the message left the work queue (no redelivery).
      expect(await (await new Kvm(nats.js).open(s.buckets.snapshots)).get('huge-1')).toBeNull();
      const info = await (await nats.js.jetstreamManager()).consumers.info(s.streams.tasks, s.hostsConsumer);
      expect(info.num_ack_pending + info.num_pending).toBe(0);
    } finally {
      await host.stop();
    }
  });
});
