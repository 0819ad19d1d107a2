import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { dispatchTool } from '../../actors/tool-dispatch.ts';
import { systemClock } from '../../common/clock.ts';
import { connectNats } from '../../runtime/connection.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { useNats } from '../helpers/nats.ts';

/**
 * A worker's reply sent while the host's connection is down is lost. The host used to notice only
 * when the dispatch timed out (twice the tool's limit plus 6 s, here 46 s); it now dispatches the
 * call again as soon as its connection is back. Against a real server, with a real reconnect.
 */
describe('a tool call whose reply is lost with the host connection', () => {
  const nats = useNats();

  it('is dispatched again when the connection is back, not after its timeout', async () => {
    const s = makeSubjects('dr');
    const tool = defineTool({ name: 'slow_lookup', description: 'looks up', isolation: 'thread', timeoutMs: 20_000, input: z.object({ q: z.string() }), output: z.object({ a: z.string() }), run: async ({ q }) => ({ a: q }) });
    const host = await connectNats({ servers: [nats.url], name: 'dr-host' });
    // A stand-in worker: it answers every dispatch but the first, whose reply is "lost".
    const seen: string[] = [];
    let firstSeen!: () => void;
    const first = new Promise<void>((r) => (firstSeen = r));
    nats.nc.subscribe(s.tool('slow_lookup'), {
      callback: (_err, m) => {
        const call = JSON.parse(m.string()) as { key: string };
        seen.push(call.key);
        if (seen.length === 1) return firstSeen();
        m.respond(JSON.stringify({ ok: true, result: { a: 'found' }, replayed: true, worker: 'stand-in' }));
      },
    });
    await nats.nc.flush();
    try {
      const pending = dispatchTool(tool, { key: 'dr-1/0/1', taskId: 'dr-1', args: { q: 'x' } }, new AbortController().signal, { nc: host, subjects: s, clock: systemClock });
      await first;
      await host.reconnect();
      await expect(pending).resolves.toEqual({ result: { a: 'found' }, replayed: true });
      expect(seen).toEqual(['dr-1/0/1', 'dr-1/0/1']);
    } finally {
      await host.close();
    }
  }, 15_000);
});
