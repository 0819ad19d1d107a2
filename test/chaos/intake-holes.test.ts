/**
 * The holes the intake fuzz found, one test each, against a real nats-server and a host: each
 * message used to be accepted when it should not have been, or to get no answer at all while a host
 * failed on it at every redelivery. Now each gets a typed refusal that says what was wrong, is
 * recorded on the rejected stream, and leaves the work queue.
 */
import { headers } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { describeIssues, tooDeep } from '../../runtime/intake.ts';
import { MAX_TASK_DEPTH, rejectionSchema, type Rejection } from '../../runtime/wire.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { scriptedModel } from '../helpers/scripted-model.ts';
import { until } from '../helpers/until.ts';
import { eventsUntilEnd } from '../helpers/watch.ts';
import { echoAgent, echoed } from '../../chaos/echo-agent.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An agent whose input schema throws on some inputs instead of reporting an issue. */
const brittle = defineAgent({
  name: 'brittle',
  description: 'has a schema that throws',
  input: z.object({ n: z.number() }).refine((i) => {
    if (i.n === 13) throw new Error('unlucky number');
    return true;
  }),
  system: 'brittle',
  prompt: (i) => `n is ${i.n}`,
});

let nats: NatsTestContext;
let host: Awaited<ReturnType<typeof startHost>>;
const records: Array<Rejection & { subject: string }> = [];

beforeAll(async () => {
  nats = await startNats();
  host = await startHost(nats.url, [echoAgent, brittle], scriptedModel((request) => [{ type: 'text', text: echoed(String(request.messages[0]!.content)) }]));
  const feed = await (await nats.js.consumers.get('TROUPE_REJECTED')).consume();
  void (async () => {
    for await (const m of feed) records.push({ subject: m.subject, ...rejectionSchema.parse(JSON.parse(decoder.decode(m.data))) });
  })();
});
afterAll(async () => {
  await host?.stop();
  await nats?.close();
});

let sent = 0;
/** Publishes raw bytes like any client, and returns the host's verdict, its record, and the message's stream sequence. */
async function send(agent: string, payload: Uint8Array | string, extra: Record<string, string> = {}) {
  const inbox = `_INBOX.holes.${sent++}`;
  const sub = nats.nc.subscribe(inbox, { max: 1, timeout: 10_000 });
  const h = headers();
  h.set('Troupe-Reply-To', inbox);
  for (const [name, value] of Object.entries(extra)) h.set(name, value);
  const ack = await nats.js.publish(`troupe.tasks.${agent}`, typeof payload === 'string' ? encoder.encode(payload) : payload, { headers: h });
  let verdict: Record<string, any> | undefined;
  for await (const m of sub) verdict = JSON.parse(decoder.decode(m.data)) as Record<string, any>;
  // The host acks the message once it is handled: it must not stay in the work queue to fail again.
  await until(`message ${ack.seq} to leave the work queue`, async () => ((await nats.jsm.streams.getMessage('TROUPE_TASKS', { seq: ack.seq })) === null ? true : undefined), 10_000);
  return verdict!;
}

const recordOf = (code: string, message: string) => until(`a ${code} record`, () => records.find((r) => r.error.code === code && r.error.message === message), 10_000);

describe('pieces', () => {
  it('tooDeep names the top-level field that nests too deep, and walks iteratively', () => {
    const nest = (depth: number): unknown => (depth === 0 ? 1 : [nest(depth - 1)]);
    expect(tooDeep({ input: { a: 1 }, metadata: { m: nest(62) } }, 64)).toBeUndefined();
    expect(tooDeep({ input: { a: 1 }, metadata: { m: nest(63) } }, 64)).toBe('metadata');
    expect(tooDeep(nest(64), 64)).toBeUndefined();
    expect(tooDeep(nest(65), 64)).toBe('(root)');
    let deep: unknown = 0;
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(tooDeep({ input: deep }, 64)).toBe('input');
  });

  it('describeIssues lists a dozen issues, cuts long ones, and counts the rest', () => {
    const parsed = z.array(z.string()).safeParse(Array.from({ length: 5000 }, () => 0));
    expect(parsed.success).toBe(false);
    const text = describeIssues(parsed.error!);
    expect(text.split('\n')).toHaveLength(13);
    expect(text).toContain('… and 4988 more');
    const long = z.strictObject({}).safeParse(Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`key-${i}`, i])));
    expect(describeIssues(long.error!).length).toBeLessThan(300);
  });
});

describe('holes the fuzz found', () => {
  it('bytes that are not UTF-8 inside a string are invalid_json, not silently replaced and run', async () => {
    const payload = Uint8Array.from([...encoder.encode('{"taskId":"utf8-hole","input":{"text":"a'), 0xed, 0xa0, 0x80, ...encoder.encode('b"}}')]);
    const verdict = await send('echo', payload);
    expect(verdict.error.code).toBe('invalid_json');
    expect(verdict.error.message).toContain('not UTF-8');
    await recordOf('invalid_json', verdict.error.message);
    expect(await nats.jsm.streams.getMessage('TROUPE_EVENTS', { last_by_subj: 'troupe.task.utf8-hole.events' })).toBeNull();
  });

  it(`metadata nested past ${MAX_TASK_DEPTH} levels is refused (it used to overflow the stack at every redelivery); at the limit it runs`, async () => {
    const nest = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
    const verdict = await send('echo', `{"taskId":"deep-hole","input":{"text":"x"},"metadata":{"m":${nest(5000)}}}`);
    expect(verdict).toMatchObject({ taskId: 'deep-hole', error: { code: 'invalid_task' } });
    expect(verdict.error.message).toContain('field "metadata" nests arrays and objects more than 64 levels deep');
    expect((await recordOf('invalid_task', verdict.error.message)).taskId).toBe('deep-hole');
    const inInput = await send('echo', `{"taskId":"deep-input","input":{"text":"x","tags":${nest(100)}}}`);
    expect(inInput).toMatchObject({ error: { code: 'invalid_input' } });
    // The message is level 1 and metadata level 2: 62 more arrays reach the limit exactly.
    expect(await send('echo', `{"taskId":"deep-ok","input":{"text":"x"},"metadata":{"m":${nest(62)}}}`)).toEqual({ taskId: 'deep-ok', status: 'accepted' });
    expect((await eventsUntilEnd(nats.js, 'deep-ok')).at(-1)).toMatchObject({ type: 'done', output: 'echo: x' });
  });

  it('a refusal listing sixty thousand bad items still fits in a message, and reaches its sender', async () => {
    const verdict = await send('echo', JSON.stringify({ taskId: 'issues-hole', input: { text: 'x', tags: Array.from({ length: 60_000 }, () => 0) } }));
    expect(verdict).toMatchObject({ taskId: 'issues-hole', error: { code: 'invalid_input' } });
    expect(verdict.error.message).toContain('tags.0: Invalid input: expected string, received number');
    expect(verdict.error.message).toContain('… and 59988 more');
    expect(verdict.error.message.length).toBeLessThan(4096);
    await recordOf('invalid_input', verdict.error.message);
  });

  it('a parent that troupe did not set is refused: a hostile parent taskId, or a key of another task', async () => {
    const hostile = await send('echo', JSON.stringify({ taskId: 'parent-hole', input: { text: 'x' }, parent: { taskId: 'a.*', key: 'a.*/1/0' } }));
    expect(hostile).toMatchObject({ taskId: 'parent-hole', error: { code: 'invalid_task' } });
    expect(hostile.error.message).toContain('parent.taskId');
    const forged = await send('echo', JSON.stringify({ taskId: 'parent-key', input: { text: 'x' }, parent: { taskId: 'p-1', key: 'other/1/0' } }));
    expect(forged.error.message).toContain('parent.key must be an effect key of the parent task');
    // A reference of the shape troupe writes is accepted.
    expect(await send('echo', JSON.stringify({ taskId: 'parent-ok', input: { text: 'x' }, parent: { taskId: 'p-1', key: 'p-1/3/1' } }))).toEqual({ taskId: 'parent-ok', status: 'accepted' });
  });

  it('a client that sets the internal hand-over header is answered, not silently dropped', async () => {
    const verdict = await send('echo', JSON.stringify({ taskId: 'resume-hole', input: { text: 'x' } }), { 'Troupe-Resume': 'resume-hole', 'Troupe-Resume-Token': 'guess' });
    expect(verdict.error).toMatchObject({ code: 'invalid_task' });
    expect(verdict.error.message).toContain('Troupe-Resume header is internal');
    await recordOf('invalid_task', verdict.error.message);
  });

  it('a hand-over header without a reply subject or a token is refused on the rejected stream, not acknowledged silently', async () => {
    const h = headers();
    h.set('Troupe-Resume', 'resume-quiet');
    const ack = await nats.js.publish('troupe.tasks.echo', encoder.encode(JSON.stringify({ taskId: 'resume-quiet' })), { headers: h });
    const record = await until('a refusal of the forged hand-over', () => records.find((r) => r.error.code === 'invalid_task' && r.error.message.includes('without a Troupe-Resume-Token')), 10_000);
    expect(record.error.message).toContain('remove it to submit a task');
    await until(`message ${ack.seq} to leave the work queue`, async () => ((await nats.jsm.streams.getMessage('TROUPE_TASKS', { seq: ack.seq })) === null ? true : undefined), 10_000);
  });

  it('a wildcard agent token is refused by name, and its record is filed under "_", not a wildcard subject', async () => {
    const verdict = await send('*', JSON.stringify({ taskId: 'star-hole', input: { text: 'x' } }));
    expect(verdict).toMatchObject({ taskId: 'star-hole', error: { code: 'unknown_agent' } });
    expect(verdict.error.message).toContain('no agent named "*"');
    const record = await recordOf('unknown_agent', verdict.error.message);
    expect(record).toMatchObject({ subject: 'troupe.tasks.rejected._', agent: '_', taskId: 'star-hole' });
  });

  it('an agent schema that throws gets invalid_input instead of a message redelivered forever', async () => {
    const verdict = await send('brittle', JSON.stringify({ taskId: 'brittle-13', input: { n: 13 } }));
    expect(verdict).toMatchObject({ taskId: 'brittle-13', error: { code: 'invalid_input' } });
    expect(verdict.error.message).toContain('unlucky number');
    expect(await send('brittle', JSON.stringify({ taskId: 'brittle-7', input: { n: 7 } }))).toEqual({ taskId: 'brittle-7', status: 'accepted' });
    expect((await eventsUntilEnd(nats.js, 'brittle-7')).at(-1)).toMatchObject({ type: 'done', output: 'echo: n is 7' });
  });
});
