import { describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { useNats } from '../helpers/nats.ts';
import { startHost } from '../helpers/host.ts';
import { scriptedModel, turnOf } from '../helpers/scripted-model.ts';
import { eventsUntilEnd } from '../helpers/watch.ts';

/**
 * A task whose state outgrows what the server accepts in one message (max_payload, 1 MiB by
 * default) cannot be saved. It must end with a clear error, not retry the write forever.
 */
const echo = defineTool({ name: 'echo', description: 'echoes the text', input: z.object({ text: z.string() }), output: z.object({ text: z.string() }), run: async ({ text }) => ({ text }) });
const agent = defineAgent({
  name: 'grows',
  description: 'repeats its input back through a tool until its state is too large',
  input: z.object({ text: z.string() }),
  system: 's',
  tools: [echo],
  limits: { steps: 10 },
  prompt: (i) => i.text,
});
const model = scriptedModel((request) => {
  const turn = turnOf(request);
  const first = request.messages[0]!.content;
  return turn < 5 ? [{ type: 'tool_use', id: `tu${turn}`, name: 'echo', input: { text: typeof first === 'string' ? first : 'x' } }] : [{ type: 'text', text: 'done' }];
});

describe('a task state larger than max_payload', () => {
  const nats = useNats();

  it('fails the task with snapshot_too_large, saving its outcome, instead of retrying the write forever', async () => {
    const host = await startHost(nats.url, [agent], model, { prefix: 'big', host: { maxTaskBytes: 400_000 } });
    const s = makeSubjects('big');
    try {
      await nats.js.publish(s.task('grows'), JSON.stringify({ taskId: 'big-1', input: { text: 'x'.repeat(300_000) } }), { msgID: 'big-1' });
      const events = await eventsUntilEnd(nats.js, 'big-1', { prefix: 'big', timeoutMs: 20_000 });
      const end = events.at(-1)!;
      expect(end.type).toBe('failed');
      expect((end as { error: { code: string; message: string } }).error.code).toBe('snapshot_too_large');
      expect((end as { error: { message: string } }).error.message).toMatch(/max_payload/);
      // The outcome is saved (without the machine snapshot), so `troupe status` tells the same.
      const kv = await new Kvm(nats.js).open(s.buckets.snapshots);
      const saved = JSON.parse(new TextDecoder().decode((await kv.get('big-1'))!.value)) as { status: string; outcome: { error: { code: string } }; snapshot: unknown };
      expect(saved.status).toBe('failed');
      expect(saved.outcome.error.code).toBe('snapshot_too_large');
      expect(saved.snapshot).toBeNull();
    } finally {
      await host.stop();
    }
  });
});
