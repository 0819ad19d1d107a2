import type { ConsumerMessages } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { headers } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { rejectionSchema, type Rejection } from '../../runtime/wire.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { scriptedModel } from '../helpers/scripted-model.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/**
 * Invariant 8: bad input gets a clear error and nothing is lost. Every class of bad task is
 * answered on its Troupe-Reply-To subject and recorded on TROUPE_REJECTED
 * (`troupe.tasks.rejected.<agent>`), creates no snapshot, leaves the work queue, and never stops
 * the host from running the next valid task.
 */

const MAX_TASK_BYTES = 2048;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const agent = defineAgent({
  name: 'desk',
  description: 'answers order questions',
  input: z.object({ orderId: z.string().regex(/^A-\d+$/, 'an order id such as "A-1"'), note: z.string().optional() }),
  system: 'support desk',
  prompt: (i) => `Where is order ${i.orderId}?`,
});

const model = scriptedModel((req) => {
  const first = req.messages[0]!.content as string;
  return [{ type: 'text', text: `Order ${/order (\S+)\?/.exec(first)![1]} is on its way` }];
});

interface Recorded extends Rejection {
  subject: string;
}

let nats: NatsTestContext;
let host: Awaited<ReturnType<typeof startHost>>;
let snapshots: KV;
let rejectedFeed: ConsumerMessages;
const records: Recorded[] = [];
/** Every taskId a host said it accepted, and every valid taskId it rejected. */
const accepted = new Set<string>();
const rejectedValidIds = new Set<string>();

beforeAll(async () => {
  nats = await startNats();
  host = await startHost(nats.url, [agent], model, { host: { maxTaskBytes: MAX_TASK_BYTES } });
  snapshots = await new Kvm(nats.js).open('troupe_snapshots');
  // Everything recorded on the rejected stream, in order, for the whole file.
  rejectedFeed = await (await nats.js.consumers.get('TROUPE_REJECTED')).consume();
  void (async () => {
    for await (const m of rejectedFeed) records.push({ subject: m.subject, ...rejectionSchema.parse(JSON.parse(decoder.decode(m.data))) });
  })();
});
afterAll(async () => {
  rejectedFeed?.stop();
  await host?.stop();
  await nats?.close();
});

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let markerSeq = 0;
/** A unique string to find a submission's record on the rejected stream by its payload preview. */
const marker = () => `mk${(markerSeq++).toString(36)}z${Math.random().toString(36).slice(2, 8)}`;

/**
 * Publishes raw bytes to `troupe.tasks.<agentToken>` like any NATS client, with a
 * Troupe-Reply-To inbox, and returns the host's verdict (or throws after 10 s).
 */
async function sendBytes(agentToken: string, payload: Uint8Array, opts: { msgId?: string; replyTo?: string } = {}) {
  const inbox = opts.replyTo ?? `_INBOX.verdict.${Math.random().toString(36).slice(2)}`;
  const sub = nats.nc.subscribe(inbox, { max: 1, timeout: 10_000 });
  const h = headers();
  h.set('Troupe-Reply-To', inbox);
  const ack = await nats.js.publish(`troupe.tasks.${agentToken}`, payload, { headers: h, ...(opts.msgId ? { msgID: opts.msgId } : {}) });
  expect(ack.stream).toBe('TROUPE_TASKS');
  for await (const m of sub) return JSON.parse(decoder.decode(m.data)) as Record<string, any>;
  throw new Error('no verdict');
}

const sendText = (agentToken: string, text: string, opts: { msgId?: string } = {}) => sendBytes(agentToken, encoder.encode(text), opts);

/** The rejected-stream record whose payload preview contains `mark`. */
const recordOf = (mark: string) => until(`rejection record ${mark}`, () => records.find((r) => r.payloadPreview?.includes(mark)));

/** Sends a bad payload (which must contain a marker near its start) and returns verdict and record. */
async function expectRejected(agentToken: string, payload: string, mark: string, code: string) {
  const verdict = await sendText(agentToken, payload, { msgId: mark });
  expect(verdict.error?.code, JSON.stringify(verdict)).toBe(code);
  expect(verdict).not.toHaveProperty('status');
  const record = await recordOf(mark);
  expect(record.error).toEqual(verdict.error);
  expect(record.agent).toBe(agentToken);
  expect(record.subject).toBe(`troupe.tasks.rejected.${agentToken}`);
  expect(record.taskId).toBe(verdict.taskId);
  expect(record.at).toBeGreaterThan(Date.now() - 60_000);
  if (verdict.taskId !== undefined) rejectedValidIds.add(verdict.taskId);
  return { verdict, record };
}

const valid = (taskId: string, extra: Record<string, unknown> = {}) => JSON.stringify({ taskId, input: { orderId: 'A-1' }, ...extra });

async function runValid(taskId: string, orderId = 'A-7', extra: Record<string, unknown> = {}) {
  const { verdict } = await submit(nats.nc, nats.js, 'desk', { taskId, input: { orderId }, ...extra });
  expect(await verdict).toEqual({ taskId, status: 'accepted' });
  accepted.add(taskId);
  const events = await eventsUntilEnd(nats.js, taskId);
  expect(events.at(-1)).toMatchObject({ type: 'done', output: `Order ${orderId} is on its way` });
}

describe('malformed JSON', () => {
  it('is rejected with invalid_json and a hint of the expected shape', async () => {
    const m = marker();
    const { verdict, record } = await expectRejected('desk', `{"taskId":"${m}","input":{"orderId":"A-1"}`, m, 'invalid_json');
    expect(verdict.error.message).toContain('not valid JSON');
    expect(verdict.error.message).toContain('{"taskId"?: string, "input": ...}');
    // Unparseable: no taskId can be trusted, so none is echoed.
    expect(verdict).not.toHaveProperty('taskId');
    expect(record.payloadPreview).toBe(`{"taskId":"${m}","input":{"orderId":"A-1"}`);
  });

  it('rejects an empty payload, trailing garbage, single quotes and NaN as invalid_json', async () => {
    const emptyVerdict = await sendText('desk', '', { msgId: marker() });
    expect(emptyVerdict.error?.code).toBe('invalid_json');
    for (const bad of [(m: string) => `${valid(m)} trailing-${m}`, (m: string) => `{'taskId':'${m}','input':{}}`, (m: string) => `{"taskId":"${m}","input":NaN}`]) {
      const m = marker();
      await expectRejected('desk', bad(m), m, 'invalid_json');
    }
  });

  it('rejects bytes that are not UTF-8 as invalid_json', async () => {
    const m = marker();
    const bytes = new Uint8Array([0xff, 0xfe, 0x00, 0xc3, ...encoder.encode(m)]);
    const verdict = await sendBytes('desk', bytes, { msgId: m });
    expect(verdict.error?.code).toBe('invalid_json');
    expect((await recordOf(m)).error.code).toBe('invalid_json');
  });
});

describe('messages that are not a task', () => {
  it.each([
    ['a number', (m: string) => `4${m.length}`],
    ['a string', (m: string) => JSON.stringify(m)],
    ['null', () => 'null'],
    ['an array', (m: string) => JSON.stringify([m, { input: { orderId: 'A-1' } }])],
    ['a boolean', () => 'true'],
  ])('rejects %s as invalid_task', async (_name, make) => {
    const m = marker();
    const payload = make(m);
    const verdict = await sendText('desk', payload, { msgId: m });
    expect(verdict.error?.code).toBe('invalid_task');
    expect(verdict.error.message).toContain('task message does not match {"taskId"?: string, "input": ...');
    expect(verdict.error.message).toContain('(root)');
    expect(verdict).not.toHaveProperty('taskId');
    // The record is found by exact preview (some of these payloads cannot carry a marker).
    const record = await until('record', () => records.find((r) => r.payloadPreview === payload && r.error.code === 'invalid_task'));
    expect(record.subject).toBe('troupe.tasks.rejected.desk');
  });

  it.each([
    ['taskId of the wrong type', { taskId: 42, input: { orderId: 'A-1' } }, 'taskId'],
    ['taskId null', { taskId: null, input: { orderId: 'A-1' } }, 'taskId'],
    ['budget not an object', { budget: 5, input: { orderId: 'A-1' } }, 'budget'],
    ['budget.usd a string', { budget: { usd: 'ten' }, input: { orderId: 'A-1' } }, 'budget.usd'],
    ['budget.steps zero', { budget: { steps: 0 }, input: { orderId: 'A-1' } }, 'budget.steps'],
    ['budget.tokens fractional', { budget: { tokens: 1.5 }, input: { orderId: 'A-1' } }, 'budget.tokens'],
    ['an unknown budget key', { budget: { dollars: 1 }, input: { orderId: 'A-1' } }, 'dollars'],
    ['metadata an array', { metadata: ['x'], input: { orderId: 'A-1' } }, 'metadata'],
  ])('rejects %s as invalid_task naming the field', async (_name, body, field) => {
    const m = marker();
    // The marker leads the payload so the record can be found by its preview.
    const payload = JSON.stringify({ marker: undefined, ...body }).replace(/^\{/, `{"__m":"${m}",`);
    const { verdict } = await expectRejected('desk', payload, m, 'invalid_task');
    expect(verdict.error.message).toContain(field);
    // Two problems here (the marker is an unknown key too): each is listed.
    expect(verdict.error.message).toContain('"__m"');
  });

  it('rejects an unknown top-level field as invalid_task, naming it, and echoes the valid taskId', async () => {
    const m = marker();
    const { verdict, record } = await expectRejected('desk', JSON.stringify({ taskId: m, input: { orderId: 'A-1' }, priority: 'high' }), m, 'invalid_task');
    expect(verdict.error.message).toContain('"priority"');
    expect(verdict.taskId).toBe(m);
    expect(record.taskId).toBe(m);
  });

  it.each([
    ['__proto__', (m: string) => `{"taskId":"${m}","input":{"orderId":"A-1"},"__proto__":{"polluted":true}}`],
    ['constructor', (m: string) => `{"taskId":"${m}","input":{"orderId":"A-1"},"constructor":{"prototype":{"polluted":true}}}`],
  ])('rejects a %s key as an unknown field and pollutes nothing', async (key, make) => {
    const m = marker();
    const { verdict } = await expectRejected('desk', make(m), m, 'invalid_task');
    expect(verdict.error.message).toContain(key);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });
});

describe('unknown agents', () => {
  it('rejects a task for an agent nobody runs with unknown_agent, pointing at `troupe agents`', async () => {
    const m = marker();
    const { verdict, record } = await expectRejected('nosuch', valid(m), m, 'unknown_agent');
    expect(verdict.taskId).toBe(m);
    expect(verdict.error.message).toContain('"nosuch"');
    expect(verdict.error.message).toContain('troupe agents');
    expect(verdict.error.message).toContain('troupe.tasks.<agent>');
    expect(record.subject).toBe('troupe.tasks.rejected.nosuch');
  });

  it('treats agent names as case-sensitive tokens', async () => {
    const m = marker();
    await expectRejected('DESK', valid(m), m, 'unknown_agent');
  });

  it('rejects a task published to troupe.tasks.rejected itself (no agent may be called "rejected")', async () => {
    const m = marker();
    const { record } = await expectRejected('rejected', valid(m), m, 'unknown_agent');
    expect(record.subject).toBe('troupe.tasks.rejected.rejected');
  });
});

describe('input that does not fit the agent', () => {
  it('rejects input failing the agent schema with invalid_input naming the field', async () => {
    const m = marker();
    const { verdict, record } = await expectRejected('desk', JSON.stringify({ taskId: m, input: { orderId: 42 } }), m, 'invalid_input');
    expect(verdict.taskId).toBe(m);
    expect(record.taskId).toBe(m);
    expect(verdict.error.message).toContain('agent "desk"');
    expect(verdict.error.message).toMatch(/orderId: .*string/);
  });

  it('shows the schema’s own message for a refined field', async () => {
    const m = marker();
    const { verdict } = await expectRejected('desk', JSON.stringify({ taskId: m, input: { orderId: 'B-1', note: 7 } }), m, 'invalid_input');
    expect(verdict.error.message).toContain('orderId: an order id such as "A-1"');
    expect(verdict.error.message).toMatch(/note: .*string/);
  });

  it('rejects a task without input as invalid_input and says the agent expects one', async () => {
    const m = marker();
    const { verdict } = await expectRejected('desk', JSON.stringify({ taskId: m }), m, 'invalid_input');
    expect(verdict.taskId).toBe(m);
    expect(verdict.error.message).toContain('no "input"');
    expect(verdict.error.message).toContain('"desk"');
  });

  it('rejects input: null as invalid_input', async () => {
    const m = marker();
    const { verdict } = await expectRejected('desk', JSON.stringify({ taskId: m, input: null }), m, 'invalid_input');
    expect(verdict.error.message).toContain('(root)');
  });
});

describe('oversized payloads', () => {
  it(`rejects a message over host.maxTaskBytes (${MAX_TASK_BYTES}) with payload_too_large, before parsing it`, async () => {
    const m = marker();
    const payload = `{"taskId":"${m}","input":{"orderId":"A-1","note":"${'x'.repeat(MAX_TASK_BYTES)}"}}`;
    const size = encoder.encode(payload).length;
    const { verdict, record } = await expectRejected('desk', payload, m, 'payload_too_large');
    expect(verdict.error.message).toContain(`${size} bytes`);
    expect(verdict.error.message).toContain(`the limit is ${MAX_TASK_BYTES} (host.maxTaskBytes)`);
    expect(verdict.error.message).toContain('by reference');
    // Only a preview is kept, not the whole payload.
    expect(record.payloadPreview!.length).toBeLessThanOrEqual(200);
  });

  it('rejects a deeply nested payload over the limit without parsing it', async () => {
    const m = marker();
    const payload = `{"taskId":"${m}","input":${'['.repeat(200_000)}${']'.repeat(200_000)}}`;
    const { verdict } = await expectRejected('desk', payload, m, 'payload_too_large');
    expect(verdict.error.message).toContain(`${encoder.encode(payload).length} bytes`);
  });

  it('accepts a message of exactly host.maxTaskBytes and rejects one byte more', async () => {
    const fit = (taskId: string, bytes: number) => {
      const base = JSON.stringify({ taskId, input: { orderId: 'A-5', note: '' } });
      return JSON.stringify({ taskId, input: { orderId: 'A-5', note: 'n'.repeat(bytes - base.length) } });
    };
    const exact = fit('size-exact', MAX_TASK_BYTES);
    expect(encoder.encode(exact).length).toBe(MAX_TASK_BYTES);
    const ok = await sendText('desk', exact, { msgId: 'size-exact' });
    expect(ok).toEqual({ taskId: 'size-exact', status: 'accepted' });
    accepted.add('size-exact');
    expect((await eventsUntilEnd(nats.js, 'size-exact')).at(-1)).toMatchObject({ type: 'done', output: 'Order A-5 is on its way' });

    const over = fit('size-over', MAX_TASK_BYTES + 1);
    const verdict = await sendText('desk', over, { msgId: 'size-over' });
    expect(verdict.error?.code).toBe('payload_too_large');
    expect(verdict.error.message).toContain(`${MAX_TASK_BYTES + 1} bytes`);
  });
});

describe('unsafe task ids', () => {
  it.each([
    ['a dot', 'a.b'],
    ['a star', 'a*'],
    ['a lone star', '*'],
    ['a greater-than', 'a>'],
    ['a lone greater-than', '>'],
    ['a space', 'a b'],
    ['a tab', 'a\tb'],
    ['a newline', 'a\nb'],
    ['nothing', ''],
    ['129 characters', 'x'.repeat(129)],
    ['a non-ASCII letter', 'tâche'],
    ['a no-break space', 'a\u00a0b'],
    ['a full-width dot', 'a\uff0eb'],
  ])('rejects a taskId with %s as invalid_task_id and does not echo it', async (_name, taskId) => {
    const m = marker();
    const payload = JSON.stringify({ taskId, input: { orderId: 'A-1' }, metadata: { m } });
    const verdict = await sendText('desk', payload, { msgId: m });
    expect(verdict.error?.code).toBe('invalid_task_id');
    expect(verdict.error.message).toContain('is not allowed');
    expect(verdict.error.message).toMatch(/at most 128 characters|only letters, digits/);
    expect(verdict).not.toHaveProperty('taskId');
    const record = await recordOf(m);
    expect(record.error).toEqual(verdict.error);
    expect(record.taskId).toBeUndefined();
    if (taskId.length > 0 && taskId.length <= 128) expect((await snapshots.get(taskId).catch(() => null)) ?? null).toBeNull();
  });

  it('accepts a taskId of exactly 128 safe characters', async () => {
    await runValid(`${'Az09_-'.repeat(21)}ab`);
  });

  it('never echoes an unsafe taskId, whatever else is wrong with the message', async () => {
    // The shape check fails first (unknown field), before the taskId is validated: the raw id must
    // not be copied into the verdict, where a watcher would build `troupe.task.<taskId>.events` from it.
    for (const unsafe of ['a.b', 'x.*', '>', 'a b', 'y'.repeat(500)]) {
      const m = marker();
      const verdict = await sendText('desk', JSON.stringify({ bogus: m, taskId: unsafe, input: { orderId: 'A-1' } }), { msgId: m });
      expect(verdict.error?.code).toBe('invalid_task');
      expect(verdict, `verdict for taskId ${JSON.stringify(unsafe.slice(0, 20))}`).not.toHaveProperty('taskId');
      expect((await until('record', () => records.find((r) => r.payloadPreview?.includes(m)))).taskId).toBeUndefined();
    }
  });
});

describe('a hostile Troupe-Reply-To', () => {
  it('still records the rejection and keeps the host running when the reply subject is unusable', async () => {
    const m = marker();
    const h = headers();
    h.set('Troupe-Reply-To', 'not a subject.*.>');
    await nats.js.publish('troupe.tasks.desk', encoder.encode(`{"taskId":"${m}"`), { headers: h });
    const record = await recordOf(m);
    expect(record.error.code).toBe('invalid_json');
    await runValid(`after-hostile-reply-${m}`);
  });

  it('rejects a message without Troupe-Reply-To all the same (recorded, not answered)', async () => {
    const m = marker();
    await nats.js.publish('troupe.tasks.desk', encoder.encode(JSON.stringify({ taskId: m, input: { orderId: 'nope' } })));
    const record = await recordOf(m);
    expect(record.error.code).toBe('invalid_input');
    expect(record.taskId).toBe(m);
    rejectedValidIds.add(m);
  });
});

/** A deterministic PRNG, so a failing fuzz case can be reproduced from the seed. */
function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface FuzzCase {
  kind: string;
  agent: string;
  payload: Uint8Array;
  code: string;
}

function fuzzCases(seed: number, count: number): FuzzCase[] {
  const rnd = mulberry32(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const text = (s: string) => encoder.encode(s);
  const validInput = { orderId: 'A-1' };
  const weirdIds = ['\ud800', 'a\udfffb', 'zero\u200bwidth', 'rtl\u202eoverride', 'emoji😀', 'nul\u0000byte', 'line\u2028sep', 'a\u0301', 'cyrillicа', 'a.b', 'a*', '>', 'a.>', '*.*', 'a b', ' ', '\t', '', '..', 'a\r\nb'];
  const wildcard = () => Array.from({ length: 1 + int(12) }, () => pick(['a', 'Z', '9', '_', '-', '.', '*', '>', ' ', '\t'])).join('') + pick(['.', '*', '>', ' ']);
  const nest = (depth: number, leaf: string) => '['.repeat(depth) + leaf + ']'.repeat(depth);
  const generators: Array<() => Omit<FuzzCase, 'kind'>> = [
    // Random bytes that are never UTF-8 text, let alone JSON.
    () => ({ agent: 'desk', payload: Uint8Array.from([0xff, ...Array.from({ length: int(300) }, () => int(256))]), code: 'invalid_json' }),
    // An object that is never closed.
    () => ({ agent: 'desk', payload: text(`{"taskId":"t${int(1e9)}","input":{"orderId":"A-1"${Array.from({ length: int(50) }, () => String.fromCharCode(32 + int(90))).join('').replace(/[{}]/g, '')}`), code: 'invalid_json' }),
    // Valid JSON that is not an object.
    () => ({ agent: 'desk', payload: text(pick(['null', 'true', '[]', `${rnd()}`, JSON.stringify('x'.repeat(int(1000))), nest(1 + int(900), '1')])), code: 'invalid_task' }),
    // Unicode edge cases and wildcards in the taskId.
    () => ({ agent: 'desk', payload: text(JSON.stringify({ taskId: pick(weirdIds), input: validInput })), code: 'invalid_task_id' }),
    () => ({ agent: 'desk', payload: text(JSON.stringify({ taskId: wildcard(), input: validInput })), code: 'invalid_task_id' }),
    // Too-long ids that still fit in the payload.
    () => ({ agent: 'desk', payload: text(JSON.stringify({ taskId: 'L'.repeat(129 + int(1500)), input: validInput })), code: 'invalid_task_id' }),
    // Huge strings and deep nesting past the size limit.
    () => ({ agent: 'desk', payload: text(JSON.stringify({ input: { orderId: 'A-1', note: '🎉'.repeat(600 + int(5000)) } })), code: 'payload_too_large' }),
    () => ({ agent: 'desk', payload: text(`{"input":${nest(MAX_TASK_BYTES + int(50_000), '0')}}`), code: 'payload_too_large' }),
    // Deep nesting that fits: a wrong input, or an unknown field.
    () => ({ agent: 'desk', payload: text(`{"input":${nest(1 + int(900), '"A-1"')}}`), code: 'invalid_input' }),
    () => ({ agent: 'desk', payload: text(`{"input":{"orderId":"A-1"},"deep":${nest(1 + int(900), '{}')}}`), code: 'invalid_task' }),
    // Wrong types in the envelope.
    () => ({ agent: 'desk', payload: text(JSON.stringify({ taskId: pick([1, null, [], {}, true]), input: validInput })), code: 'invalid_task' }),
    () => ({ agent: 'desk', payload: text(JSON.stringify({ input: validInput, budget: pick([{ usd: -1 }, { steps: 'x' }, { wallClockMs: 0.5 }, [], 'cheap', { usd: 1, extra: 1 }]) })), code: 'invalid_task' }),
    () => ({ agent: 'desk', payload: text(JSON.stringify({ input: validInput, metadata: pick([[], 'm', 3, null]) })), code: 'invalid_task' }),
    () => ({ agent: 'desk', payload: text(`{"input":{"orderId":"A-1"},"${pick(['__proto__', 'constructor', 'prototype', 'Input', 'taskid'])}":{"x":1}}`), code: 'invalid_task' }),
    // Input the agent's schema refuses, or no input at all.
    () => ({ agent: 'desk', payload: text(JSON.stringify({ input: pick([{}, { orderId: 7 }, { orderId: 'A-1\u0000' }, { orderId: 'Ａ-1' }, 'A-1', [validInput], { orderId: 'A-1', note: {} }]) })), code: 'invalid_input' }),
    () => ({ agent: 'desk', payload: text(JSON.stringify({ taskId: `noinput-${int(1e9)}` })), code: 'invalid_input' }),
    // Agents nobody runs.
    () => ({ agent: pick(['nosuch', 'Desk', 'desk_', 'desk-2', 'rejected', `x${int(1e6)}`]), payload: text(JSON.stringify({ input: validInput })), code: 'unknown_agent' }),
  ];
  return Array.from({ length: count }, (_, i) => {
    const g = i % generators.length;
    return { kind: `generator ${g} #${i}`, ...generators[g]!() };
  });
}

describe('fuzz: hostile payloads mixed with valid tasks', () => {
  it('rejects every one of 200 bad payloads with the expected code and completes all 20 valid tasks', async () => {
    const seed = Number(process.env.TROUPE_FUZZ_SEED ?? 20_241_122);
    const bad = fuzzCases(seed, 200);
    const recordsBefore = records.length;
    const valids = Array.from({ length: 20 }, (_, i) => `fuzz-ok-${i}`);
    // Interleave: a valid task after every tenth bad one, all in flight at once.
    const verdicts: Promise<Record<string, any>>[] = [];
    const completions: Promise<void>[] = [];
    bad.forEach((c, i) => {
      verdicts.push(sendBytes(c.agent, c.payload));
      if (i % 10 === 9) completions.push(runValid(valids[(i - 9) / 10]!, `A-${100 + i}`));
    });
    // Every valid task completes with a done event (runValid asserts it).
    await Promise.all(completions);
    // Every bad payload gets an error verdict; collected first so one report lists every mismatch.
    const got = await Promise.all(verdicts);
    for (const v of got) {
      expect(v).not.toHaveProperty('status');
      expect(typeof v.error?.code).toBe('string');
      expect(v.error.message.length).toBeGreaterThan(10);
      if (v.taskId !== undefined) expect(v.taskId).toMatch(/^[A-Za-z0-9_-]{1,128}$/);
    }
    // Each bad payload is on the rejected stream exactly once.
    await until('200 rejection records', () => records.length - recordsBefore >= 200 || undefined, 10_000);
    await new Promise((r) => setTimeout(r, 200));
    const fuzzRecords = records.slice(recordsBefore);
    expect(fuzzRecords).toHaveLength(200);
    for (const r of fuzzRecords) expect(r.subject).toBe(`troupe.tasks.rejected.${r.agent}`);
    for (const r of fuzzRecords) if (r.taskId) rejectedValidIds.add(r.taskId);
    // And each got the code its class of fault deserves.
    const mismatches = bad.flatMap((c, i) =>
      got[i]!.error.code === c.code ? [] : [`${c.kind} (seed ${seed}): expected ${c.code}, got ${got[i]!.error.code} for ${JSON.stringify(decoder.decode(c.payload.subarray(0, 80)))}`],
    );
    expect(mismatches).toEqual([]);
  }, 60_000);
});

describe('after every rejection', () => {
  it('still runs a valid task, kept no snapshot of any rejected task, and emptied the work queue', async () => {
    await runValid('final-valid', 'A-42');
    expect(rejectedValidIds.size).toBeGreaterThan(5);
    for (const id of rejectedValidIds) expect(await snapshots.get(id), `snapshot of rejected task ${id}`).toBeNull();
    const keys: string[] = [];
    for await (const k of await snapshots.keys()) keys.push(k);
    expect(keys.sort()).toEqual([...accepted].sort());
    const info = await until('an empty work queue', async () => {
      const i = await nats.jsm.streams.info('TROUPE_TASKS');
      return i.state.messages === 0 ? i : undefined;
    }, 10_000);
    expect(info.state.messages).toBe(0);
    // Everything that was ever submitted went through the queue (nothing was refused at the door).
    expect(info.state.last_seq).toBeGreaterThan(250);
    expect(host.running).toBe(0);
  });
});
