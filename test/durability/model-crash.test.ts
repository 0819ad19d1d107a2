import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { startChildHost, tempDir, type ChildHost } from '../helpers/child-host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

let nats: NatsTestContext;
let sim: SimulatorHandle;
const children: ChildHost[] = [];

beforeAll(async () => {
  nats = await startNats();
  sim = await startSimulator({
    scenario: {
      name: 'ledgered',
      scripts: [
        {
          name: 'append',
          extract: { text: 'append: (\\w+)' },
          turns: [{ content: [{ type: 'tool_use', name: 'append_line', input: { text: '{{vars.text}}' } }] }, { text: 'appended {{vars.text}}' }],
        },
      ],
    },
  });
});
afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => c.kill()));
});
afterAll(async () => {
  await sim?.close();
  await nats?.close();
});

function host(env: Record<string, string>): ChildHost {
  const child = startChildHost('ledger-host.ts', { NATS_URL: nats.url, MODEL_URL: sim.url, ...env });
  children.push(child);
  return child;
}

describe('a host killed after the model answered but before the next checkpoint', () => {
  it('resumes without calling (or paying for) the model again', async () => {
    const file = path.join(tempDir('troupe-effect-'), 'journal.txt');
    const first = host({ SIDE_EFFECT_FILE: file, PAUSE_AT: 'afterRecorded', PAUSE_ON: 'model' });
    await first.waitForMark('ready');
    await submit(nats.nc, nats.js, 'ledgered', { taskId: 'billed-once', input: { text: 'once' } });
    expect(await first.waitForMark('afterRecorded')).toBe('billed-once/0/0');
    await first.kill('SIGKILL');

    const second = host({ SIDE_EFFECT_FILE: file });
    await second.waitForMark('ready');
    const events = await eventsUntilEnd(nats.js, 'billed-once', { timeoutMs: 20_000 });
    expect(events.at(-1)).toMatchObject({ type: 'done', output: 'appended once' });

    const conversation = Object.values(sim.stats().conversations);
    expect(conversation).toHaveLength(1);
    // Turn 0 (the call the first host got an answer to) was requested exactly once.
    expect(conversation[0]!.turns).toEqual({ '0': 1, '1': 1 });
    // The resumed host reported that call as replayed from the ledger.
    const models = events.filter((e) => e.type === 'model') as Array<{ key: string; replayed: boolean }>;
    expect(models.find((m) => m.key === 'billed-once/0/0' && m.replayed)).toBeDefined();
    expect(existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n') : []).toEqual(['billed-once/0/1 once']);
  });
});
