import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chaosAgent, chaosModel, type ChaosInput } from '../../chaos/agent.ts';
import { chaosCharge, journalLines } from '../../chaos/charge-tool.ts';
import type { TaskEvent } from '../../runtime/wire.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';
import { startWorker, type TestWorker } from '../helpers/worker.ts';

/**
 * A rolling restart: each of two hosts is stopped gracefully (SIGTERM's path) and started again
 * in turn while tasks run. The tasks a stopping host holds are handed over at once, none fails,
 * and every charge happens once.
 */

const prefix = 'roll';
const config = { prefix, host: { leaseMs: 30_000, drainTimeoutMs: 5000 } };
const dir = mkdtempSync(path.join(tmpdir(), 'troupe-roll-'));
const journal = path.join(dir, 'journal.txt');
let nats: NatsTestContext;
let worker: TestWorker;

beforeAll(async () => {
  nats = await startNats();
  worker = await startWorker(nats.url, [chaosCharge], config);
}, 30_000);
afterAll(async () => {
  await worker?.stop();
  await nats?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a rolling restart of the hosts', () => {
  it('fails no task: each stopping host hands its tasks over, and every charge happens once', async () => {
    // Two charges per task, the model taking its time: tasks are mid-flight at every restart.
    const start = (name: string) => startHost(nats.url, [chaosAgent], chaosModel(300), config, { hostId: name });
    let a = await start('roll-a1');
    let b = await start('roll-b1');
    const ids = Array.from({ length: 12 }, (_, i) => `roll-${i}`);
    const ends = ids.map(async (taskId) => {
      await submit(nats.nc, nats.js, 'chaos', { taskId, input: { journal, charges: 2, delayMs: 400 } satisfies ChaosInput }, { prefix });
      return eventsUntilEnd(nats.js, taskId, { prefix, timeoutMs: 60_000 });
    });
    await new Promise((r) => setTimeout(r, 1000));
    // The lease is 30 s: only a hand-over, not a lease running out, can move a task in time.
    expect(a.running + b.running).toBeGreaterThan(0);
    await a.stop();
    a = await start('roll-a2');
    await new Promise((r) => setTimeout(r, 500));
    await b.stop();
    b = await start('roll-b2');
    try {
      const events: TaskEvent[][] = await Promise.all(ends);
      for (const [i, e] of events.entries()) expect(e.at(-1), ids[i]).toMatchObject({ type: 'done', output: '["{\\"charged\\":1}","{\\"charged\\":2}"]' });
      const resumedBy = events.flat().filter((e): e is Extract<TaskEvent, { type: 'resumed' }> => e.type === 'resumed').map((e) => e.host);
      expect(resumedBy.length).toBeGreaterThan(0);
      expect(resumedBy.every((h) => h !== 'roll-a1')).toBe(true);
      for (const id of ids) {
        for (const step of [0, 1]) expect(journalLines(journal).filter((l) => l.startsWith(`${id}/${step}/1 `)), `${id}/${step}/1`).toHaveLength(1);
      }
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 90_000);
});
