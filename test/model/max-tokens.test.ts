import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';

let sim: SimulatorHandle;
beforeAll(async () => {
  sim = await startSimulator({
    scenario: {
      name: 'long',
      scripts: [
        { name: 'long-text', match: { firstUser: 'text' }, turns: [{ text: 'x'.repeat(4000) }] },
        { name: 'long-usage', match: { firstUser: 'usage' }, turns: [{ text: 'short', usage: { output_tokens: 900 } }] },
        { name: 'tool', match: { firstUser: 'tool' }, turns: [{ text: 'calling', content: [{ type: 'tool_use', name: 't', input: { long: 'y'.repeat(400) } }] }] },
      ],
    },
  });
});
afterAll(() => sim?.close());

const ask = (content: string, max_tokens: number) =>
  new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0 }).messages.create({
    model: 'claude-haiku-4-5',
    max_tokens,
    messages: [{ role: 'user', content }],
    tools: [{ name: 't', input_schema: { type: 'object' } }],
  });

describe('the simulator honours max_tokens like the real API', () => {
  it('cuts a long text at max_tokens and says so', async () => {
    const m = await ask('text', 50);
    expect(m.usage.output_tokens).toBe(50);
    expect(m.stop_reason).toBe('max_tokens');
    expect((m.content[0] as { text: string }).text.length).toBe(200);
  });
  it('caps scripted usage too', async () => {
    const m = await ask('usage', 100);
    expect(m.usage.output_tokens).toBe(100);
    expect(m.stop_reason).toBe('max_tokens');
  });
  it('drops a tool call that does not fit, and leaves one that does', async () => {
    const cut = await ask('tool', 20);
    expect(cut.stop_reason).toBe('max_tokens');
    expect(cut.content.map((b) => b.type)).toEqual(['text']);
    const whole = await ask('tool', 1000);
    expect(whole.stop_reason).toBe('tool_use');
    expect(whole.content.map((b) => b.type)).toEqual(['text', 'tool_use']);
  });
});
