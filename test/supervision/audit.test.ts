import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { createAnthropicModelClient } from '../../actors/model/anthropic-client.ts';
import { subjects } from '../../runtime/subjects.ts';
import { auditHistory } from '../../runtime/task-watch.ts';
import { defineTool } from '../../sandbox/tool.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { runTroupe } from '../helpers/cli.ts';
import { startHost } from '../helpers/host.ts';
import { startNats, type NatsTestContext } from '../helpers/nats.ts';
import { until } from '../helpers/until.ts';
import { eventsUntilEnd, submit } from '../helpers/watch.ts';

/** The audit trail: every fact of a task, payloads stored once by hash, secrets never in clear. */

const SECRET = 'sk-audit-0123456789abcdef';
let nats: NatsTestContext;
let sim: SimulatorHandle;
const report = defineTool({
  name: 'report',
  description: 'fetch a long report',
  input: z.object({ id: z.string().regex(/^R-\d+$/) }),
  output: z.object({ body: z.string() }),
  run: async ({ id }) => ({ body: `${id}: ${'lorem ipsum '.repeat(200)} token ${SECRET}` }),
});
const desk = defineAgent({ name: 'audited', description: 'audited', input: z.object({ q: z.string() }), system: 'audit desk', tools: [report], prompt: (i) => i.q });
const use = (id: string) => ({ content: [{ type: 'tool_use' as const, name: 'report', input: { id } }] });

beforeAll(async () => {
  process.env.AUDIT_TEST_API_KEY = SECRET;
  nats = await startNats();
  sim = await startSimulator({ scenario: { name: 'audit', scripts: [{ name: 'audit', match: { system: 'audit desk' }, turns: [use('nope'), use('R-7'), use('R-7'), { text: 'read it' }] }] } });
});
afterAll(async () => {
  delete process.env.AUDIT_TEST_API_KEY;
  await sim?.close();
  await nats?.close();
});

describe('the audit trail', () => {
  it('records the task, every effect with its payload, the gate verdict and the end; large payloads once by hash; no secret in clear', async () => {
    const host = await startHost(nats.url, [desk], createAnthropicModelClient({ apiKey: 'k', baseURL: sim.url }));
    try {
      await submit(nats.nc, nats.js, 'audited', { taskId: 'au-1', input: { q: 'read report R-7 twice' } });
      await eventsUntilEnd(nats.js, 'au-1');
      // Records are written without holding up the task: wait for the last one to land.
      const records = await until('the end record', async () => {
        const all = await auditHistory(nats.js, subjects(), 'au-1');
        return all.some((r) => r.type === 'task.ended') ? all : undefined;
      });
      expect(records[0]).toMatchObject({ type: 'task.created', agent: 'audited', input: { inline: { q: 'read report R-7 twice' } } });
      expect(records.at(-1)).toMatchObject({ type: 'task.ended', status: 'done' });
      expect(records.find((r) => r.type === 'gate.refused')).toMatchObject({ key: 'au-1/0/1', tool: 'report', gate: 'schema', error: { code: 'invalid_tool_arguments' } });
      expect(records.filter((r) => r.type === 'effect.succeeded' && r.kind === 'model')).toHaveLength(4);
      const results = records.filter((r) => r.type === 'effect.succeeded' && r.kind === 'tool');
      expect(results.map((r) => (r as { key: string }).key)).toEqual(['au-1/1/1', 'au-1/2/1']);
      // The two identical reports are one blob, referenced twice.
      const refs = results.map((r) => (r as { result: { ref?: string } }).result.ref);
      expect(refs[0]).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(refs[1]).toBe(refs[0]);
      const blob = await (await new Kvm(jetstream(nats.nc)).open('troupe_audit_blobs')).get(refs[0]!.slice(7));
      const stored = new TextDecoder().decode(blob!.value);
      expect(stored).toContain('R-7: lorem ipsum');
      expect(stored).toContain('[REDACTED:AUDIT_TEST_API_KEY]');
      expect(JSON.stringify(records)).not.toContain(SECRET);
      expect(stored).not.toContain(SECRET);

      const cli = await runTroupe(nats.url, ['audit', 'au-1', '--payloads']);
      expect(cli.code).toBe(0);
      expect(cli.stdout).toMatch(/task\.created\s+agent audited/);
      expect(cli.stdout).toMatch(/gate\.refused\s+report au-1\/0\/1 by the schema gate/);
      expect(cli.stdout).toContain('R-7: lorem ipsum');
      expect(cli.stdout).not.toContain(SECRET);
    } finally {
      await host.stop();
    }
  });
});
