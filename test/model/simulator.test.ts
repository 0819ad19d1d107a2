/**
 * The simulator on its own: raw HTTP (so the wire format itself is checked) and the real SDK.
 */
import Anthropic from '@anthropic-ai/sdk';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadScenario, parseScenario, ScenarioError, startSimulator, SUPPORT_DESK_SCENARIO } from '../../simulator/index.ts';
import type { SimulatorHandle } from '../../simulator/index.ts';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/scenarios/${name}`, import.meta.url));
const HEADERS = { 'content-type': 'application/json', 'x-api-key': 'k', 'anthropic-version': '2023-06-01' };

function post(sim: SimulatorHandle, body: unknown, headers: Record<string, string> = HEADERS) {
  return fetch(`${sim.url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify(body) });
}

const base = { model: 'claude-sonnet-4-6', max_tokens: 100 };
const hello = { ...base, messages: [{ role: 'user' as const, content: 'hello' }] };

describe('scenario files', () => {
  it('loads the bundled support-desk scenario', async () => {
    const scenario = await loadScenario(SUPPORT_DESK_SCENARIO);
    expect(scenario.scripts.map((s) => s.name)).toEqual(['support-desk', 'refund-classifier-refund', 'refund-classifier-replace', 'refund-classifier-unclear', 'refund-triage', 'triage', 'billing-specialist', 'shipping-specialist', 'default']);
  });

  it('rejects an invalid file with a typed error naming each bad path', async () => {
    const error = await loadScenario(fixture('invalid-scenario.json')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ScenarioError);
    const message = (error as ScenarioError).message;
    expect(message).toContain('invalid-scenario.json');
    expect(message).toContain('scripts[0].turns[0].content[0].name');
    expect(message).toContain('scripts[0].turns[1].faults[0].status');
    expect((error as ScenarioError).code).toBe('invalid_config');
  });

  it('rejects a file that is not JSON, and a missing file', async () => {
    await expect(loadScenario(fixture('not-json.json'))).rejects.toThrow(/is not valid JSON/);
    await expect(loadScenario(fixture('no-such-file.json'))).rejects.toThrow(/cannot read scenario file/);
  });

  it('rejects bad regexes and duplicate script names', () => {
    let message = '';
    try {
      parseScenario({
        scripts: [
          { name: 'a', extract: { x: '(' } },
          { name: 'a', match: { system: { regex: '[' } } },
        ],
      });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain('duplicate script name "a"');
    expect(message).toContain('scripts[0].extract.x');
    expect(message).toContain('scripts[1].match.system.regex');
  });
});

describe('wire format', () => {
  it('streams the exact SSE event sequence of the real API', async () => {
    await using sim = await startSimulator({
      scenario: { scripts: [{ name: 's', turns: [{ text: 'Hi!', content: [{ type: 'tool_use', name: 't', input: { a: 1 } }] }] }] },
    });
    const res = await post(sim, { ...hello, stream: true, tools: [{ name: 't', input_schema: { type: 'object' } }] });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text();
    const events = [...text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
    expect(events).toEqual([
      'message_start',
      'ping',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    const datas = [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]!) as Record<string, any>);
    expect(datas[0]!.message.stop_reason).toBeNull();
    expect(datas[5]!.content_block).toMatchObject({ type: 'tool_use', name: 't', input: {} });
    expect(datas[6]!.delta).toEqual({ type: 'input_json_delta', partial_json: '' });
    expect(datas[7]!.delta).toEqual({ type: 'input_json_delta', partial_json: '{"a":1}' });
    expect(datas[9]!.delta).toEqual({ stop_reason: 'tool_use', stop_sequence: null });
  });

  it('sends Anthropic-shaped error bodies with retry-after headers', async () => {
    await using sim = await startSimulator({
      scenario: { scripts: [{ name: 's', faults: [{ type: 'error', status: 429, retryAfterSeconds: 7 }], turns: [{ text: 'x' }] }] },
    });
    const res = await post(sim, hello);
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('7');
    expect(res.headers.get('request-id')).toMatch(/^req_sim/);
    expect(await res.json()).toEqual({
      type: 'error',
      error: { type: 'rate_limit_error', message: 'Number of request tokens has exceeded your per-minute rate limit.' },
    });
    const overloaded = await startSimulator({
      scenario: { scripts: [{ name: 's', faults: [{ type: 'error', status: 529 }], turns: [{ text: 'x' }] }] },
    });
    await using _ = overloaded;
    const body = (await (await post(overloaded, hello)).json()) as { error: { type: string } };
    expect(body.error.type).toBe('overloaded_error');
  });

  it.each([
    ['missing api key', hello, { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, 401, 'x-api-key header is required'],
    ['missing anthropic-version', hello, { 'content-type': 'application/json', 'x-api-key': 'k' }, 400, 'anthropic-version'],
    ['missing max_tokens', { model: 'claude-x', messages: hello.messages }, HEADERS, 400, 'max_tokens: Field required'],
    ['missing model', { max_tokens: 5, messages: hello.messages }, HEADERS, 400, 'model: Field required'],
    ['missing messages', base, HEADERS, 400, 'messages: Field required'],
    ['empty text block', { ...base, messages: [{ role: 'user', content: [{ type: 'text', text: '' }] }] }, HEADERS, 400, 'text content blocks must be non-empty'],
    ['unknown model', { ...hello, model: 'gpt-4' }, HEADERS, 404, 'model: gpt-4'],
    [
      'tool_result without its tool_use',
      { ...base, messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_x', content: 'r' }] }] },
      HEADERS,
      400,
      'unexpected `tool_use_id` found in `tool_result` blocks: toolu_x',
    ],
    [
      'a trailing unanswered tool_use',
      { ...base, messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_y', name: 't', input: {} }] }] },
      HEADERS,
      400,
      '`tool_use` ids were found without `tool_result` blocks immediately after: toolu_y',
    ],
    [
      'five cache breakpoints',
      { ...base, system: [1, 2, 3, 4, 5].map((n) => ({ type: 'text', text: `s${n}`, cache_control: { type: 'ephemeral' } })), messages: hello.messages },
      HEADERS,
      400,
      'A maximum of 4 blocks with cache_control may be provided. Found 5.',
    ],
  ])('validates like the real API: %s', async (_label, body, headers, status, message) => {
    await using sim = await startSimulator();
    const res = await post(sim, body, headers as Record<string, string>);
    expect(res.status).toBe(status);
    const json = (await res.json()) as { type: string; error: { message: string } };
    expect(json.type).toBe('error');
    expect(json.error.message).toContain(message);
  });

  it('answers invalid JSON with a 400', async () => {
    await using sim = await startSimulator();
    const res = await fetch(`${sim.url}/v1/messages`, { method: 'POST', headers: HEADERS, body: '{"model": ' });
    expect(res.status).toBe(400);
  });
});

describe('scripts, templates and counters', () => {
  it('extracts values, renders templates (typed and interpolated), then falls back to the final text', async () => {
    await using sim = await startSimulator({ scenario: fixture('templating.json') });
    const client = new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0 });
    const tools = [{ name: 'refund', input_schema: { type: 'object' as const } }];
    const user = { role: 'user' as const, content: 'Please refund ticket #4711 ($30).' };
    const t0 = await client.messages.create({ ...base, tools, messages: [user] });
    const use = t0.content[0];
    if (use?.type !== 'tool_use') throw new Error('expected tool_use');
    expect(use.input).toEqual({ ticket: '4711', note: 'refund for ticket 4711', missing: 'n/a' });
    const history = [
      user,
      { role: 'assistant' as const, content: t0.content },
      { role: 'user' as const, content: [{ type: 'tool_result' as const, tool_use_id: use.id, content: '{"refund":{"id":"R-9","amount":30}}' }] },
    ];
    const t1 = await client.messages.create({ ...base, tools, messages: history });
    expect(t1.content).toEqual([{ type: 'text', text: 'Refund R-9 of 30 USD is unknown.' }]);
    const t2 = await client.messages.create({
      ...base,
      tools,
      messages: [...history, { role: 'assistant', content: t1.content }, { role: 'user', content: 'and now?' }],
    });
    expect(t2.content).toEqual([{ type: 'text', text: 'Nothing more for 4711.' }]);
    expect(t2.stop_reason).toBe('end_turn');
    expect(sim.stats().scripts.ticket!.turns).toEqual({ '0': 1, '1': 1, '2': 1 });
  });

  it('gives an agent without a matching script the default reply', async () => {
    await using sim = await startSimulator();
    const client = new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0 });
    const reply = await client.messages.create({ ...hello, system: 'You are a poet.' });
    expect(reply.content).toEqual([{ type: 'text', text: 'Done. I have handled your request.' }]);
    expect(sim.stats().scripts.default!.requests).toBe(1);
  });

  it('replies with the scenario final text when no script matches at all', async () => {
    await using sim = await startSimulator({ scenario: { scripts: [{ name: 'only', match: { system: 'xyz' }, turns: [{ text: 'a' }] }] } });
    const reply = (await (await post(sim, hello)).json()) as { content: unknown };
    expect(reply.content).toEqual([{ type: 'text', text: 'I have nothing further to add.' }]);
    expect(sim.stats().scripts['(none)']!.requests).toBe(1);
  });

  it('counts faults per conversation by default, and once for all with scope "global"', async () => {
    const scenario = (scope: 'conversation' | 'global') => ({
      scripts: [{ name: 's', faults: [{ type: 'error' as const, status: 500, scope }], turns: [{ text: 'ok' }] }],
    });
    const askTwice = async (sim: SimulatorHandle) => {
      const statuses: number[] = [];
      for (const who of ['ann', 'bob']) {
        for (let i = 0; i < 2; i++) statuses.push((await post(sim, { ...base, messages: [{ role: 'user', content: who }] })).status);
      }
      return statuses;
    };
    await using perConversation = await startSimulator({ scenario: scenario('conversation') });
    expect(await askTwice(perConversation)).toEqual([500, 200, 500, 200]);
    await using global = await startSimulator({ scenario: scenario('global') });
    expect(await askTwice(global)).toEqual([500, 200, 200, 200]);
  });

  it('exposes counters over HTTP, and reset() zeroes them and the fault counts', async () => {
    await using sim = await startSimulator({
      scenario: { scripts: [{ name: 's', faults: [{ type: 'error', status: 529 }], turns: [{ text: 'ok' }] }] },
    });
    expect((await post(sim, hello)).status).toBe(529);
    expect((await post(sim, hello)).status).toBe(200);
    const overHttp = (await (await fetch(`${sim.url}/_simulator/stats`)).json()) as unknown;
    expect(overHttp).toEqual(sim.stats());
    expect(sim.stats()).toMatchObject({ totalRequests: 2, byStatus: { '200': 1, '529': 1 }, faults: { error: 1 } });
    sim.reset();
    expect(sim.stats().totalRequests).toBe(0);
    expect((await post(sim, hello)).status).toBe(529);
    expect((await fetch(`${sim.url}/_simulator/reset`, { method: 'POST' })).status).toBe(200);
    expect(sim.stats().totalRequests).toBe(0);
    expect((await post(sim, hello)).status).toBe(529);
  });

  it('close() frees held requests and sockets promptly, and is idempotent', async () => {
    const sim = await startSimulator({ scenario: { scripts: [{ name: 's', faults: [{ type: 'hang' }], turns: [{ text: 'x' }] }] } });
    const pending = post(sim, hello).then(
      (r) => r.status,
      (e: unknown) => e,
    );
    while (sim.stats().totalRequests === 0) await new Promise((r) => setTimeout(r, 5));
    const started = Date.now();
    await Promise.all([sim.close(), sim.close()]);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(await pending).toBeInstanceOf(Error);
    await expect(fetch(`${sim.url}/_simulator/stats`)).rejects.toThrow();
  });
});
