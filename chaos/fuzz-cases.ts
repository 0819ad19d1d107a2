/**
 * The seeded generator of the intake fuzz: malformed and adversarial task messages of every class
 * the wire contract must refuse, each with the typed refusal it must get, mixed with valid tasks
 * that must complete. The same seed gives the same messages (only the run tag in task ids differs,
 * so that a re-run on the same NATS does not collide with the last one).
 */
import { ErrorCode } from '../common/errors.ts';
import { MAX_TASK_DEPTH } from '../runtime/wire.ts';

/** The classes of message the fuzz sends. */
export const FUZZ_CATEGORIES = [
  'invalid_json',
  'wrong_type',
  'missing_field',
  'extra_field',
  'huge_payload',
  'deep_nesting',
  'unicode',
  'unknown_agent',
  'hostile_task_id',
  'duplicate_id',
  'valid',
] as const;
export type FuzzCategory = (typeof FUZZ_CATEGORIES)[number];

/** How one message must end. */
export type FuzzExpectation =
  /** The host refuses it with this typed code, on the reply subject and on the rejected stream. */
  | { outcome: 'rejected'; code: ErrorCode }
  /** NATS refuses to carry it at all (past the server's max_payload, an illegal subject): the publisher gets the error. */
  | { outcome: 'refused' }
  /** A valid task: accepted, then done. */
  | { outcome: 'completed'; taskId?: string; output?: unknown }
  /** A repeat of case `of`'s taskId: answered `accepted` with `duplicate: true`, or dropped by JetStream (its PubAck says duplicate). */
  | { outcome: 'duplicate'; of: number; taskId: string };

/** One message of the fuzz. */
export interface FuzzCase {
  /** Position in the run (also its reply subject's last token). */
  n: number;
  category: FuzzCategory;
  /** What is wrong with it (or what it is, for a valid one), for reports. */
  label: string;
  /** The subject token after `<prefix>.tasks.`. */
  agent: string;
  payload: Uint8Array;
  /** `Nats-Msg-Id` to publish with. */
  msgId?: string;
  /** Extra headers besides `Troupe-Reply-To`. */
  headers?: Record<string, string>;
  expect: FuzzExpectation;
}

/** The agent valid tasks are sent to, as the caller's deployment runs it. */
export interface FuzzAgent {
  /** Its name (the subject token of its tasks). */
  name: string;
  /**
   * A valid input carrying `text` somewhere the agent accepts any string: `text` is drawn from the
   * Unicode edge cases (lone surrogates, NUL, RTL overrides, emoji, non-NFC) or is a long filler,
   * and must appear in the payload verbatim, once (the fuzz sizes a message to the byte with it).
   */
  input(text: string): unknown;
  /** The output a task with `input(text)` must end with; omitted: any `done` counts. */
  output?(text: string): unknown;
  /** Inputs the agent's schema refuses (each must get `invalid_input`). At least one. */
  badInputs: readonly unknown[];
  /** Principal of valid tasks, when the deployment needs one. */
  principal?: string;
}

/** What the generator needs to know of the deployment. */
export interface FuzzCaseOptions {
  seed: number;
  count: number;
  agent: FuzzAgent;
  /** The hosts' `host.maxTaskBytes`. */
  maxTaskBytes: number;
  /** The server's max_payload. */
  maxPayload: number;
  /** Unique per run; goes into every task id the fuzz chooses. */
  runTag: string;
}

/** A deterministic PRNG (mulberry32): the whole run follows from the seed. */
export function seededRandom(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const encoder = new TextEncoder();

/** Strings that break naive handling of Unicode: lone surrogates, NUL, bidi overrides, emoji, non-NFC, separators. */
export const UNICODE_EDGES: readonly string[] = [
  '\ud800',
  'a\udfffb',
  '\udc00\ud800',
  'nul\u0000byte',
  'rtl\u202eoverride\u202c',
  '\u2066isolate\u2069',
  'emoji😀🏳️‍🌈',
  'e\u0301 vs \u00e9',
  'zero\u200bwidth\u2060joiner',
  '\ufeffbom',
  'line\u2028para\u2029sep',
  'cyrillicа latin a',
  'ｆｕｌｌ．ｗｉｄｔｈ',
  '\u0007bell\u001b[31mansi',
  '\uffff\ufffe',
  '𝕌𝕟𝕚𝕔𝕠𝕕𝕖',
];

const HOSTILE_TASK_IDS: readonly string[] = [
  '*', '>', '.', ' ', '', '..', 'a..b', 'a.b', 'a.*', 'a.>', '*.*', '$JS.API.STREAM.LIST', '_INBOX.x', 'a b', 'a\tb', 'a\r\nb',
  '\u0000', 'x\u0000y', '\u007f', '\u001b', 'tâche', 'a\u00a0b', 'a\uff0eb', '\ud800', 'e\u0301', '😀', 'a\u202eb', '-'.repeat(129),
];

/**
 * The fuzz's messages: `count` of them, about one in eight a valid task, the rest spread over
 * every bad category, in a seeded order; a duplicate always comes after the task it repeats.
 */
export function fuzzCases(o: FuzzCaseOptions): FuzzCase[] {
  const rnd = seededRandom(o.seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const { agent } = o;
  const principal = agent.principal !== undefined ? { principal: agent.principal } : {};
  const json = (value: unknown) => encoder.encode(JSON.stringify(value));
  const text = (s: string) => encoder.encode(s);
  const bytes = (...parts: Array<string | number[]>) => Uint8Array.from(parts.flatMap((p) => (typeof p === 'string' ? [...encoder.encode(p)] : p)));
  const nest = (depth: number, leaf: string) => '['.repeat(depth) + leaf + ']'.repeat(depth);
  const cases: FuzzCase[] = [];
  let nextId = 0;
  const taskId = () => `fz-${o.runTag}-${(nextId++).toString(36)}`;
  const validBody = (id: string | undefined, t: string, extra: Record<string, unknown> = {}) => ({ ...(id !== undefined ? { taskId: id } : {}), input: agent.input(t), ...principal, ...extra });
  const rejected = (code: ErrorCode) => ({ outcome: 'rejected', code }) as const;
  type Made = Omit<FuzzCase, 'n' | 'category'>;
  /** Past host.maxTaskBytes: refused by the host, or by NATS itself when it is past max_payload too (headers count). */
  const tooBig = (payload: Uint8Array): FuzzExpectation => (payload.length + 1024 > o.maxPayload ? { outcome: 'refused' } : rejected(ErrorCode.payloadTooLarge));
  const completed = (t: string, id?: string): FuzzExpectation => ({ outcome: 'completed', ...(id ? { taskId: id } : {}), ...(agent.output ? { output: agent.output(t) } : {}) });

  /** A valid task whose payload is exactly `bytes` long (the text is ASCII filler, counted byte for byte). */
  const sized = (bytes: number): { id: string; payload: Uint8Array; t: string } | undefined => {
    const id = taskId();
    const base = encoder.encode(JSON.stringify(validBody(id, ''))).length;
    const t = 'f'.repeat(Math.max(0, bytes - base));
    const payload = json(validBody(id, t));
    return payload.length === bytes ? { id, payload, t } : undefined;
  };

  const generators: Record<Exclude<FuzzCategory, 'duplicate_id'>, () => Made> = {
    invalid_json: () => {
      const whole = JSON.stringify(validBody(taskId(), 'x'));
      return pick<() => Made>([
        () => ({ label: 'truncated', agent: agent.name, payload: text(whole.slice(0, 1 + int(whole.length - 1))), expect: rejected(ErrorCode.invalidJson) }),
        () => ({ label: 'trailing garbage', agent: agent.name, payload: text(`${whole} ${pick(['x', '}', '{}', ',', 'null'])}`), expect: rejected(ErrorCode.invalidJson) }),
        () => ({ label: 'single quotes', agent: agent.name, payload: text(whole.replace(/"/g, "'")), expect: rejected(ErrorCode.invalidJson) }),
        () => ({ label: 'NaN / Infinity / undefined', agent: agent.name, payload: text(`{"input":${pick(['NaN', 'Infinity', '-Infinity', 'undefined', '0x10', '01', '.5', '+1'])}}`), expect: rejected(ErrorCode.invalidJson) }),
        () => ({ label: 'empty', agent: agent.name, payload: new Uint8Array(0), expect: rejected(ErrorCode.invalidJson) }),
        () => ({ label: 'a comment', agent: agent.name, payload: text(`// a task\n${whole}`), expect: rejected(ErrorCode.invalidJson) }),
        () => ({ label: 'control character in a string', agent: agent.name, payload: text(whole.replace('"x"', '"x\ty"')), expect: rejected(ErrorCode.invalidJson) }),
        () => {
          const broken = pick([[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80]]);
          return { label: `bytes that are not UTF-8 (${broken.map((b) => b.toString(16)).join(' ')}) inside a string`, agent: agent.name, payload: bytes(whole.slice(0, whole.indexOf('"x"') + 2), broken, whole.slice(whole.indexOf('"x"') + 2)), expect: rejected(ErrorCode.invalidJson) };
        },
        () => ({ label: 'UTF-16', agent: agent.name, payload: Uint8Array.from([0xff, 0xfe, ...[...whole].flatMap((c) => [c.charCodeAt(0) & 0xff, c.charCodeAt(0) >> 8])]), expect: rejected(ErrorCode.invalidJson) }),
        () => ({ label: 'random bytes', agent: agent.name, payload: Uint8Array.from([0xfe, ...Array.from({ length: int(400) }, () => int(256))]), expect: rejected(ErrorCode.invalidJson) }),
      ])();
    },
    wrong_type: () =>
      pick<() => Made>([
        () => ({ label: 'not an object', agent: agent.name, payload: text(pick(['null', 'true', '42', '"a task"', '[]', `[${JSON.stringify(validBody(undefined, 'x'))}]`])), expect: rejected(ErrorCode.invalidTask) }),
        () => ({ label: 'taskId not a string', agent: agent.name, payload: json({ ...validBody(undefined, 'x'), taskId: pick([42, null, true, [], {}, ['a']]) }), expect: rejected(ErrorCode.invalidTask) }),
        () => ({ label: 'bad budget', agent: agent.name, payload: json(validBody(taskId(), 'x', { budget: pick(['cheap', 5, [], { usd: 'ten' }, { usd: -1 }, { usd: 0 }, { steps: 1.5 }, { tokens: 2 ** 60 }, { wallClockMs: -5 }, { steps: null }]) })), expect: rejected(ErrorCode.invalidTask) }),
        () => ({ label: 'metadata not a record', agent: agent.name, payload: json(validBody(taskId(), 'x', { metadata: pick([[], 'm', 3, null, true]) })), expect: rejected(ErrorCode.invalidTask) }),
        () => ({ label: 'principal not a string', agent: agent.name, payload: json({ ...validBody(taskId(), 'x'), principal: pick([1, {}, [], null, true]) }), expect: rejected(ErrorCode.invalidTask) }),
        () => ({ label: 'parent not a reference', agent: agent.name, payload: json(validBody(taskId(), 'x', { parent: pick(['p', 7, [], { taskId: 1, key: 2 }, { taskId: 'p' }, { taskId: 'p', key: 'q/1/0' }]) })), expect: rejected(ErrorCode.invalidTask) }),
        () => {
          const payload = json({ taskId: taskId(), input: pick(agent.badInputs), ...principal });
          return { label: 'input the agent refuses', agent: agent.name, payload, expect: payload.length > o.maxTaskBytes ? tooBig(payload) : rejected(ErrorCode.invalidInput) };
        },
      ])(),
    missing_field: () =>
      pick<() => Made>([
        () => ({ label: 'empty object', agent: agent.name, payload: text('{}'), expect: rejected(ErrorCode.invalidInput) }),
        () => ({ label: 'no input', agent: agent.name, payload: json({ taskId: taskId(), ...principal }), expect: rejected(ErrorCode.invalidInput) }),
        () => ({ label: 'budget but no input', agent: agent.name, payload: json({ budget: { steps: 5 }, ...principal }), expect: rejected(ErrorCode.invalidInput) }),
        () => ({ label: 'parent without its key', agent: agent.name, payload: json(validBody(taskId(), 'x', { parent: { taskId: 'p-1' } })), expect: rejected(ErrorCode.invalidTask) }),
      ])(),
    extra_field: () =>
      pick<() => Made>([
        () => {
          const key = pick(['priority', 'Input', 'taskid', 'agent', '__proto__', 'constructor', 'prototype', '😀', '', ' input', 'input\u0000']);
          const body = JSON.stringify(validBody(taskId(), 'x')).replace(/^\{/, `{${JSON.stringify(key)}:{"polluted":true},`);
          return { label: `unknown field ${JSON.stringify(key)}`, agent: agent.name, payload: text(body), expect: rejected(ErrorCode.invalidTask) };
        },
        () => ({ label: 'unknown budget field', agent: agent.name, payload: json(validBody(taskId(), 'x', { budget: { steps: 5, dollars: 1 } })), expect: rejected(ErrorCode.invalidTask) }),
        () => ({ label: 'unknown parent field', agent: agent.name, payload: json(validBody(taskId(), 'x', { parent: { taskId: 'p', key: 'p/1/0', extra: 1 } })), expect: rejected(ErrorCode.invalidTask) }),
        () => ({ label: 'thousands of unknown fields', agent: agent.name, payload: json({ ...validBody(taskId(), 'x'), ...Object.fromEntries(Array.from({ length: 500 + int(3000) }, (_, i) => [`k${i}`, i])) }), expect: rejected(ErrorCode.invalidTask) }),
        () => ({ label: 'a principal nobody configured', agent: agent.name, payload: json({ ...validBody(taskId(), 'x'), principal: `fuzz-nobody-${int(1e6)}` }), expect: rejected(ErrorCode.unknownPrincipal) }),
        () => ({ label: 'a forged hand-over header', agent: agent.name, payload: json(validBody(taskId(), 'x')), headers: { 'Troupe-Resume': taskId(), 'Troupe-Resume-Token': 'forged' }, expect: rejected(ErrorCode.invalidTask) }),
      ])(),
    huge_payload: () => {
      const big = (label: string, payload: Uint8Array): Made => {
        // A deployment whose host.maxTaskBytes is near the server's max_payload: still one byte too many.
        const sent = payload.length > o.maxTaskBytes ? payload : new Uint8Array(o.maxTaskBytes + 1).fill(0x20);
        return { label, agent: agent.name, payload: sent, expect: tooBig(sent) };
      };
      return pick<() => Made>([
        () => ({ label: 'past the server max_payload', agent: agent.name, payload: json(validBody(taskId(), 'x'.repeat(o.maxPayload + int(64 * 1024)))), expect: { outcome: 'refused' } }),
        () => big('just under the server max_payload', json(validBody(taskId(), '🎉'.repeat(Math.max(0, Math.floor((o.maxPayload - 4096) / 4) - int(64)))))),
        () => {
          const over = sized(o.maxTaskBytes + 1 + int(16));
          return big('a few bytes past host.maxTaskBytes', over?.payload ?? new Uint8Array(o.maxTaskBytes + 1).fill(0x20));
        },
        () => big('emoji past host.maxTaskBytes in bytes, not in characters', json(validBody(taskId(), '😀'.repeat(Math.ceil(o.maxTaskBytes / 4) + 1 + int(100))))),
        () => big('deep nesting past host.maxTaskBytes', text(`{"input":${nest(Math.ceil(o.maxTaskBytes / 2) + int(1000), '0')}}`)),
      ])();
    },
    deep_nesting: () => {
      const depth = MAX_TASK_DEPTH + 1 + int(Math.min(20_000, o.maxTaskBytes / 4));
      return pick<() => Made>([
        () => ({ label: `input nested ${depth} deep`, agent: agent.name, payload: text(`{"taskId":"${taskId()}","input":${nest(depth, '{}')}}`), expect: rejected(ErrorCode.invalidInput) }),
        () => ({ label: `metadata nested ${depth} deep`, agent: agent.name, payload: text(JSON.stringify(validBody(taskId(), 'x')).replace(/\}$/, `,"metadata":{"m":${nest(depth, '1')}}}`)), expect: rejected(ErrorCode.invalidTask) }),
        () => ({ label: `a message nested ${depth} deep`, agent: agent.name, payload: text(nest(depth, '{}')), expect: rejected(ErrorCode.invalidTask) }),
        () => ({ label: `unknown field nested ${depth} deep`, agent: agent.name, payload: text(JSON.stringify(validBody(taskId(), 'x')).replace(/\}$/, `,"deep":${nest(depth, '[]')}}`)), expect: rejected(ErrorCode.invalidTask) }),
      ])();
    },
    unicode: () =>
      pick<() => Made>([
        () => ({ label: 'Unicode edge case in the taskId', agent: agent.name, payload: json(validBody(`${pick(UNICODE_EDGES)}`, 'x')), expect: rejected(ErrorCode.invalidTaskId) }),
        () => ({ label: 'Unicode edge case in the agent name', agent: pick(['écho', `${agent.name}\u202e`, `${agent.name}😀`, `x\u0000y`, `${agent.name}\u0301`, 'ａｇｅｎｔ', `\u200b${agent.name}`]), payload: json(validBody(undefined, 'x')), expect: rejected(ErrorCode.unknownAgent) }),
        () => ({ label: 'Unicode edge case in the principal', agent: agent.name, payload: json({ ...validBody(taskId(), 'x'), principal: pick(UNICODE_EDGES) }), expect: rejected(ErrorCode.unknownPrincipal) }),
        () => ({ label: 'Unicode edge case in a budget key', agent: agent.name, payload: json(validBody(taskId(), 'x', { budget: { [`usd${pick(UNICODE_EDGES)}`]: 1 } })), expect: rejected(ErrorCode.invalidTask) }),
      ])(),
    unknown_agent: () =>
      pick<() => Made>([
        () => ({ label: 'an agent nobody runs', agent: pick(['nosuch', agent.name.toUpperCase(), `${agent.name}_`, `${agent.name}-2`, 'rejected', '_', `x${int(1e6)}`, 'a'.repeat(200)]), payload: json(validBody(taskId(), 'x')), expect: rejected(ErrorCode.unknownAgent) }),
        () => ({ label: 'a wildcard as the agent', agent: pick(['*', '>']), payload: json(validBody(taskId(), 'x')), expect: rejected(ErrorCode.unknownAgent) }),
        () => ({ label: 'an illegal subject token', agent: pick(['a b', '', '\t', 'a\r\nb']), payload: json(validBody(taskId(), 'x')), expect: { outcome: 'refused' } }),
      ])(),
    hostile_task_id: () =>
      pick<() => Made>([
        () => {
          const id = pick(HOSTILE_TASK_IDS);
          return { label: `taskId ${JSON.stringify(id.slice(0, 24))}`, agent: agent.name, payload: json(validBody(id, 'x')), expect: rejected(ErrorCode.invalidTaskId) };
        },
        () => ({ label: 'a very long taskId', agent: agent.name, payload: json(validBody('L'.repeat(129 + int(20_000)), 'x')), expect: rejected(ErrorCode.invalidTaskId) }),
        () => ({ label: 'a hostile parent taskId', agent: agent.name, payload: json(validBody(taskId(), 'x', { parent: { taskId: pick(HOSTILE_TASK_IDS), key: '>' } })), expect: rejected(ErrorCode.invalidTask) }),
      ])(),
    valid: () => {
      const id = taskId();
      const t = pick(UNICODE_EDGES);
      const plain = `plain ${int(1e6)}`;
      return pick<() => Made>([
        () => ({ label: 'valid', agent: agent.name, payload: json(validBody(id, plain)), expect: completed(plain, id) }),
        () => ({ label: 'valid, Unicode edge cases in the input', agent: agent.name, payload: json(validBody(id, t)), expect: completed(t, id) }),
        () => ({ label: 'valid, no taskId (assigned)', agent: agent.name, payload: json(validBody(undefined, t)), expect: completed(t) }),
        () => ({ label: 'valid, Nats-Msg-Id', agent: agent.name, payload: json(validBody(id, t)), msgId: id, expect: completed(t, id) }),
        () => ({ label: 'valid, budget and metadata', agent: agent.name, payload: json(validBody(id, t, { budget: { steps: 20, usd: 10 }, metadata: { [t]: t, n: [1, { deep: true }] } })), expect: completed(t, id) }),
        () => ({ label: 'valid, metadata at the nesting limit', agent: agent.name, payload: text(JSON.stringify(validBody(id, t)).replace(/\}$/, `,"metadata":{"m":${nest(MAX_TASK_DEPTH - 2, '1')}}}`)), expect: completed(t, id) }),
      ])();
    },
  };
  /** Valid tasks this big are rare: each carries its whole input through the run. */
  const atLimit = (): Made | undefined => {
    const exact = sized(o.maxTaskBytes);
    return exact ? { label: 'valid, exactly host.maxTaskBytes', agent: agent.name, payload: exact.payload, expect: completed(exact.t, exact.id) } : undefined;
  };

  const bad = FUZZ_CATEGORIES.filter((c) => c !== 'valid' && c !== 'duplicate_id') as Exclude<FuzzCategory, 'valid' | 'duplicate_id'>[];
  const originals: FuzzCase[] = [];
  for (let n = 0; n < o.count; n++) {
    const roll = rnd();
    let made: Made | undefined;
    let category: FuzzCategory;
    if (roll < 0.12) {
      category = 'valid';
      made = n % 200 === 7 ? atLimit() : undefined;
      made ??= generators.valid();
    } else if (roll < 0.16 && originals.length > 0) {
      category = 'duplicate_id';
      const of = pick(originals);
      const id = (of.expect as { taskId: string }).taskId;
      const sameBytes = rnd() < 0.6;
      made = {
        label: of.msgId ? 'a repeat with the same Nats-Msg-Id' : sameBytes ? 'a repeat of the same task' : 'the same taskId with another input',
        agent: of.agent,
        payload: sameBytes || of.msgId ? of.payload : json(validBody(id, `another ${int(1e6)}`)),
        ...(of.msgId ? { msgId: of.msgId } : {}),
        expect: { outcome: 'duplicate', of: of.n, taskId: id },
      };
    } else {
      category = pick(bad);
      made = generators[category as keyof typeof generators]();
    }
    const c: FuzzCase = { n, category, ...made };
    cases.push(c);
    if (c.expect.outcome === 'completed' && c.expect.taskId !== undefined) originals.push(c);
  }
  return cases;
}
