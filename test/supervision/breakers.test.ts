import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { ToolFailedError } from '../../sandbox/errors.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { scriptedModel, turnOf } from '../helpers/scripted-model.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

let broken = true;
let calls = 0;
const api = defineTool({
  name: 'shipping_api',
  description: 'Ask the shipping company',
  input: z.object({ q: z.string() }),
  output: z.object({ eta: z.string() }),
  run: async () => {
    calls++;
    if (broken) throw new ToolFailedError('shipping API answered 503');
    return { eta: 'tomorrow' };
  },
});
const agent = defineAgent({ name: 'shipper', description: 'asks the shipping API once', input: z.object({ q: z.string() }), tools: [api], prompt: (i) => i.q });
// Calls the API once, then reports what it got (the result or the error code).
const model = scriptedModel((req) => {
  if (turnOf(req) === 0) return [{ type: 'tool_use', id: 'tu', name: 'shipping_api', input: { q: 'eta' } }];
  const result = (req.messages.at(-1)!.content as Array<{ content: string; is_error?: boolean }>)[0]!;
  const parsed = JSON.parse(result.content) as { eta?: string; error?: { code: string } };
  return [{ type: 'text', text: parsed.eta ?? parsed.error!.code }];
});

const breakers = { failureThreshold: 3, windowMs: 30_000, openMs: 800, probeTimeoutMs: 5_000 };
let nats: NatsTestContext;
let a: Awaited<ReturnType<typeof startHost>>;
let b: Awaited<ReturnType<typeof startHost>>;

beforeAll(async () => {
  nats = await startNats();
  // At most 3 tasks each, so six concurrent tasks land on both hosts.
  a = await startHost(nats.url, [agent], model, { breakers, host: { concurrency: 3 } }, { hostId: 'brk-a' });
  b = await startHost(nats.url, [agent], model, { breakers, host: { concurrency: 3 } }, { hostId: 'brk-b' });
});
afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await nats?.close();
});

async function run(taskId: string): Promise<string> {
  await submit(nats.nc, nats.js, 'shipper', { taskId, input: { q: 'where?' } });
  const events = await eventsUntilEnd(nats.js, taskId);
  return (events.at(-1) as { output: string }).output;
}

describe('a circuit breaker shared by two hosts', () => {
  it('opens after repeated failures, fails fast without calling the tool, then half-opens and closes when the tool recovers', async () => {
    const kv = await new Kvm(nats.js).open('troupe_breakers');
    const state = async () => (await kv.get('tool.shipping_api'))?.json<{ state: string }>().state;

    for (const i of [1, 2, 3]) expect(await run(`brk-fail-${i}`)).toBe('tool_failed');
    expect(calls).toBe(3);
    expect(await state()).toBe('open');

    // Both hosts see it open: tasks on either get the typed error and the tool is not called.
    const fast = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => run(`brk-open-${i}`)));
    expect(fast).toEqual(Array(6).fill('tool_unavailable'));
    expect(calls).toBe(3);
    const hostsSeen = await Promise.all(
      [1, 2, 3, 4, 5, 6].map(async (i) => (await new Kvm(nats.js).open('troupe_snapshots')).get(`brk-open-${i}`).then((e) => e!.json<{ owner: string }>().owner)),
    );
    expect(new Set(hostsSeen)).toEqual(new Set(['brk-a', 'brk-b']));

    // The tool recovers; after the open period one call probes it and closes the breaker.
    broken = false;
    await new Promise((r) => setTimeout(r, breakers.openMs + 100));
    expect(await run('brk-probe')).toBe('tomorrow');
    expect(calls).toBe(4);
    expect(await state()).toBe('closed');
    expect(await Promise.all([run('brk-after-1'), run('brk-after-2')])).toEqual(['tomorrow', 'tomorrow']);
  });

  it('opens again when the probe fails', async () => {
    broken = true;
    for (const i of [1, 2, 3]) await run(`brk-again-${i}`);
    await new Promise((r) => setTimeout(r, breakers.openMs + 100));
    const before = calls;
    expect(await run('brk-bad-probe')).toBe('tool_failed');
    expect(calls).toBe(before + 1);
    expect(await run('brk-still-open')).toBe('tool_unavailable');
    expect(calls).toBe(before + 1);
  });
});
