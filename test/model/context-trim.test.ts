import { describe, expect, it } from 'vitest';
import { ELIDED_PREFIX, trimContext } from '../../actors/model/context-trim.ts';
import { estimateMessagesTokens } from '../../actors/model/estimate-tokens.ts';
import type { ContentBlock, ModelMessage } from '../../actors/model/model-client.ts';
import { LOOKUP_ORDER, simulator, testClient } from './helpers.ts';

const TASK: ModelMessage = { role: 'user', content: 'Task: reconcile the 40 open orders of customer C-77.' };

/** A conversation of `steps` tool round-trips, each tool result `resultChars` long. */
function conversation(steps: number, resultChars = 2_000): ModelMessage[] {
  const messages: ModelMessage[] = [TASK];
  for (let i = 0; i < steps; i++) {
    messages.push({
      role: 'assistant',
      content: [
        { type: 'text', text: `Step ${i}: checking order ${i}.` },
        { type: 'tool_use', id: `toolu_${i}`, name: 'lookup_order', input: { orderId: `A-${1000 + i}` } },
      ],
    });
    messages.push({
      role: 'user',
      content: [{ type: 'tool_result', tool_use_id: `toolu_${i}`, content: `result ${i}: ` + 'x'.repeat(resultChars) }],
    });
  }
  return messages;
}

const blocks = (m: ModelMessage): ContentBlock[] => (typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content);

/** Asserts the API's structural rules: first message user, alternation, tool_use/tool_result pairing. */
function expectValid(messages: ModelMessage[]): void {
  expect(messages[0]).toEqual(TASK);
  messages.forEach((m, i) => expect(m.role).toBe(i % 2 === 0 ? 'user' : 'assistant'));
  messages.forEach((m, i) => {
    const uses = blocks(m).flatMap((b) => (b.type === 'tool_use' ? [b.id] : []));
    const next = messages[i + 1];
    const answered = next ? blocks(next).flatMap((b) => (b.type === 'tool_result' ? [b.tool_use_id] : [])) : [];
    expect(answered.sort()).toEqual(uses.sort());
  });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.values(value).forEach(deepFreeze);
    Object.freeze(value);
  }
  return value;
}

describe('trimContext', () => {
  it('returns the input untouched when under the threshold', () => {
    const messages = conversation(3, 100);
    const result = trimContext(messages, { thresholdTokens: 10_000 });
    expect(result.messages).toBe(messages);
    expect(result).toMatchObject({ elidedToolResults: 0, droppedTurns: 0 });
    expect(result.estimatedTokens).toBe(estimateMessagesTokens(messages));
  });

  it('elides the oldest tool results first and keeps the most recent ones', () => {
    const messages = deepFreeze(conversation(6));
    const before = estimateMessagesTokens(messages);
    const result = trimContext(messages, { thresholdTokens: before - 1_000, keepRecentToolResults: 2 });
    expect(result.droppedTurns).toBe(0);
    expect(result.elidedToolResults).toBe(2);
    const contents = result.messages.flatMap((m) => blocks(m).flatMap((b) => (b.type === 'tool_result' ? [b.content] : [])));
    expect(contents.slice(0, 2).every((c) => c.startsWith(ELIDED_PREFIX))).toBe(true);
    expect(contents.slice(2).every((c) => c.startsWith('result '))).toBe(true);
    expect(result.estimatedTokens).toBeLessThanOrEqual(before - 1_000);
    expect(result.estimatedTokens).toBe(estimateMessagesTokens(result.messages));
    expectValid(result.messages);
  });

  it('trims down to targetTokens once over the threshold, counting overhead', () => {
    const messages = conversation(10);
    const result = trimContext(messages, { thresholdTokens: 6_000, targetTokens: 3_000, overheadTokens: 500 });
    expect(result.estimatedTokens).toBeLessThanOrEqual(3_000);
    expect(result.estimatedTokens).toBe(estimateMessagesTokens(result.messages) + 500);
    expectValid(result.messages);
  });

  it('drops whole turn pairs after the first message when eliding is not enough', () => {
    const messages = conversation(12, 100);
    const result = trimContext(messages, { thresholdTokens: 250, keepRecentTurns: 2 });
    expect(result.droppedTurns).toBeGreaterThan(0);
    expect(result.messages).toHaveLength(messages.length - 2 * result.droppedTurns);
    expect(result.messages.at(-1)).toEqual(messages.at(-1));
    expectValid(result.messages);
  });

  it('never drops the most recent turns or the task, even if the budget stays exceeded', () => {
    const messages = conversation(3, 5_000);
    const result = trimContext(messages, { thresholdTokens: 10, keepRecentTurns: 2, keepRecentToolResults: 1 });
    expect(result.messages).toHaveLength(5);
    expect(result.estimatedTokens).toBeGreaterThan(10);
    expectValid(result.messages);
  });

  it('keeps a 40-step agent conversation under budget with no orphaned tool_use, accepted by the API', async () => {
    const budget = 4_000;
    let messages: ModelMessage[] = [TASK];
    let peak = 0;
    let elided = 0;
    let dropped = 0;
    for (let step = 0; step < 40; step++) {
      messages = [
        ...messages,
        ...conversation(1, 1_500 + 37 * step)
          .slice(1)
          .map((m) => JSON.parse(JSON.stringify(m).replaceAll('toolu_0', `toolu_${step}`)) as ModelMessage),
      ];
      const trimmed = trimContext(messages, { thresholdTokens: budget, targetTokens: budget * 0.8 });
      messages = trimmed.messages;
      peak = Math.max(peak, trimmed.estimatedTokens);
      elided += trimmed.elidedToolResults;
      dropped += trimmed.droppedTurns;
      expectValid(messages);
    }
    expect(peak).toBeLessThanOrEqual(budget);
    // both mechanisms were needed to get there
    expect(elided).toBeGreaterThan(10);
    expect(dropped).toBeGreaterThan(0);
    expect(messages.at(-1)).toMatchObject({ content: [{ tool_use_id: 'toolu_39' }] });

    // The simulator validates tool_use / tool_result pairing exactly as the API does.
    await using sim = await simulator({ scripts: [{ name: 'long', turns: [{ text: 'Done.' }] }] });
    const result = await testClient(sim).call({ role: 'agent', system: 'Reconcile orders.', tools: [LOOKUP_ORDER], messages });
    expect(result.content).toEqual([{ type: 'text', text: 'I have nothing further to add.' }]);
    expect(sim.stats().byStatus).toEqual({ '200': 1 });
  });
});
