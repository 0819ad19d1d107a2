import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { DecisionResult, Verdict } from '../../human/approver-client.ts';
import { formatDuration, runInteractiveApprover } from '../../human/terminal/interactive-approve.ts';
import { argsHash, type ApprovalRequest } from '../../runtime/approvals.ts';

/** The dialogue itself, against an in-memory client: every branch a keyboard can take. */
const NOW = 1_750_000_000_000;
const toolRequest = (taskId: string, createdAt: number): ApprovalRequest => ({
  v: 1,
  kind: 'tool',
  callKey: `${taskId}.call.1`,
  requestId: `${taskId}.tool.1`,
  taskId,
  agent: 'payer',
  reason: 'refund is irreversible',
  reasons: ['irreversible', 'low_confidence'],
  spent: { usd: 0.0123, tokens: 1500, steps: 3 },
  createdAt,
  tool: { name: 'refund', description: 'refund an order', reversibility: 'irreversible', inputSchema: {} },
  args: { orderId: 'o-1', amount: 120 },
  argsHash: argsHash({ orderId: 'o-1', amount: 120 }),
  rationale: 'The customer was charged twice.',
  confidence: 0.55,
  taskInput: { ticket: 'T-9' },
  deadlineAt: NOW + 3_600_000,
});

function fakeClient(requests: ApprovalRequest[], results: DecisionResult[]) {
  const decided: Array<{ taskId: string; choice: Verdict }> = [];
  return {
    decided,
    pending: async () => [...requests].sort((a, b) => a.createdAt - b.createdAt),
    decide: async (r: ApprovalRequest, choice: Verdict) => {
      decided.push({ taskId: r.taskId, choice });
      requests.splice(requests.indexOf(r), 1);
      return results.shift()!;
    },
  };
}

async function session(client: ReturnType<typeof fakeClient>, lines: string[]): Promise<string> {
  const input = new PassThrough();
  const output = new PassThrough();
  let text = '';
  output.setEncoding('utf8').on('data', (d: string) => (text += d));
  input.end(lines.map((l) => `${l}\n`).join(''));
  await runInteractiveApprover({ client, input, output, now: () => NOW });
  return text;
}

describe('runInteractiveApprover', () => {
  it('lists oldest first, shows the tool surface, re-prompts bad JSON, edits, rejects with a reason and reports refusals', async () => {
    const client = fakeClient([toolRequest('newer', NOW - 5_000), toolRequest('older', NOW - 125_000)], [
      { ok: true, decisionId: 'd-1' },
      { ok: false, error: { code: 'stale_request', message: 'the task no longer waits on this request' } },
    ]);
    const out = await session(client, ['7', '1', 'x', 'b', '1', 'e', '{bad', '{"orderId":"o-1","amount":60}', '', '1', 'r', 'too much', 'q']);

    expect(out).toMatch(/2 requests waiting, oldest first:\n {2}1\) task older, agent payer: tool refund \(irreversible\), waiting 2m 5s\n {2}2\) task newer/);
    expect(out).toContain('no request 7');
    expect(out).toContain('unknown choice "x"');
    expect(out).toContain('asks to call tool: refund (irreversible)');
    expect(out).toContain('  arguments:\n    {\n      "orderId": "o-1",\n      "amount": 120\n    }');
    expect(out).toContain('escalated because: irreversible, low_confidence');
    expect(out).toContain('agent rationale:\n    The customer was charged twice.');
    expect(out).toContain('agent confidence: 0.55');
    expect(out).toContain('task input:\n    {\n      "ticket": "T-9"\n    }');
    expect(out).toContain('cost so far: $0.0123, 1500 tokens, 3 steps');
    expect(out).toContain('(in 1h 0m)');
    expect(out).toContain('[a]pprove / [e]dit / [r]eject / [b]ack: ');
    expect(out).toMatch(/not JSON: .*; try again/);
    expect(out).toContain('applied: edit of older.tool.1 (decision d-1)');
    expect(out).toContain('refused: stale_request: the task no longer waits on this request');
    expect(client.decided).toEqual([
      { taskId: 'older', choice: { verdict: 'edit', args: { orderId: 'o-1', amount: 60 } } },
      { taskId: 'newer', choice: { verdict: 'reject', reason: 'too much' } },
    ]);
    expect(out).toMatch(/nothing is waiting for an approver\n\[enter\] refresh, \[q\] quit: $/);
  });

  it('does not offer edit for a limit and returns when the input ends', async () => {
    const limit: ApprovalRequest = {
      v: 1, kind: 'limit', requestId: 't.usd.1', taskId: 't', agent: 'a', reason: 'usd limit reached', spent: { usd: 0.1, tokens: 1, steps: 1 }, createdAt: NOW,
      limit: { name: 'usd', used: 0.1, max: 0.1, message: 'usd limit reached' }, ask: { amount: 0.1 },
    };
    const client = fakeClient([limit], []);
    const out = await session(client, ['1', 'e', 'a', '-1']);
    expect(out).toContain('[a]pprove / [r]eject / [b]ack: ');
    expect(out).toContain('unknown choice "e"');
    expect(out).toContain('a grant must be a positive number (got "-1")');
    expect(client.decided).toEqual([]);
  });

  it('formats waiting times', () => {
    expect([formatDuration(999), formatDuration(61_000), formatDuration(7_260_000), formatDuration(90_000_000)]).toEqual(['1s', '1m 1s', '2h 1m', '1d 1h']);
  });
});
