import { createInterface } from 'node:readline';
import type { ApprovalRequest } from '../../runtime/approvals.ts';
import type { DecisionResult, Verdict } from '../approver-client.ts';

/** The part of {@link ApproverClient} the terminal uses. */
export interface InteractiveApproverClient {
  pending(): Promise<ApprovalRequest[]>;
  decide(request: ApprovalRequest, choice: Verdict): Promise<DecisionResult>;
}

/** Options of {@link runInteractiveApprover}. */
export interface InteractiveApproverOptions {
  client: InteractiveApproverClient;
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  /** The clock for waiting times and deadlines. @default Date.now */
  now?: () => number;
}

/** Formats a duration in ms as "42s", "5m 3s", "2h 10m", "3d 4h". */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

const indent = (text: string, by = '    ') => text.split('\n').map((l) => by + l).join('\n');
const pretty = (value: unknown) => (value === undefined ? '(none)' : JSON.stringify(value, null, 2));

/** One line per pending request, as the list shows it. */
export function summarize(r: ApprovalRequest, now: number): string {
  const what = r.kind === 'tool' ? `tool ${r.tool.name} (${r.tool.reversibility})` : `limit ${r.limit.name} (${r.limit.used}/${r.limit.max})`;
  return `task ${r.taskId}, agent ${r.agent}: ${what}, waiting ${formatDuration(now - r.createdAt)}`;
}

/** The whole approval surface of one request: what is asked, why, context, cost and deadline. */
export function renderSurface(r: ApprovalRequest, now: number): string {
  const lines = [`request ${r.requestId}`, `  task ${r.taskId} (agent ${r.agent}), waiting ${formatDuration(now - r.createdAt)}`];
  if (r.kind === 'tool') {
    lines.push(
      `  asks to call tool: ${r.tool.name} (${r.tool.reversibility})`,
      `    ${r.tool.description}`,
      '  arguments:',
      indent(pretty(r.args)),
      `  why: ${r.reason}`,
      `  escalated because: ${r.reasons.join(', ')}`,
    );
    if (r.rationale) lines.push('  agent rationale:', indent(r.rationale));
    if (r.confidence !== undefined) lines.push(`  agent confidence: ${r.confidence}`);
    if (r.amount !== undefined) lines.push(`  amount: ${r.amount}`);
    if (r.quorum) lines.push(`  needs ${r.quorum} different approvers`);
    lines.push('  task input:', indent(pretty(r.taskInput)));
  } else {
    lines.push(
      `  asks for more of limit: ${r.limit.name} (used ${r.limit.used} of ${r.limit.max})`,
      `    ${r.limit.message}`,
      `  approving grants ${r.ask.amount} more by default`,
      `  why: ${r.reason}`,
    );
  }
  lines.push(`  cost so far: $${r.spent.usd.toFixed(4)}, ${r.spent.tokens} tokens, ${r.spent.steps} steps`);
  const deadline = r.deadlineAt;
  const then = r.onDeadline === 'escalate' ? 'then escalated to the next tier' : 'then rejected';
  lines.push(`  deadline: ${deadline === undefined ? 'none' : `${new Date(deadline).toISOString()} (${deadline > now ? `in ${formatDuration(deadline - now)}` : 'passed'}), ${then}`}`);
  if (r.tier && r.tier > 1) lines.push(`  escalated to tier ${r.tier}`);
  return lines.join('\n');
}

/** Reads answers line by line; `undefined` once the input ends. */
class Prompter {
  private readonly lines: string[] = [];
  private waiting: ((line: string | undefined) => void) | undefined;
  private ended = false;
  private readonly rl;

  constructor(input: NodeJS.ReadableStream, private readonly output: NodeJS.WritableStream) {
    this.rl = createInterface({ input, terminal: false });
    this.rl.on('line', (line) => {
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w(line);
      } else this.lines.push(line);
    });
    this.rl.on('close', () => {
      this.ended = true;
      this.waiting?.(undefined);
      this.waiting = undefined;
    });
  }

  ask(prompt: string): Promise<string | undefined> {
    this.output.write(prompt);
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued.trim());
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve) => (this.waiting = (l) => resolve(l?.trim())));
  }

  close(): void {
    this.rl.close();
  }
}

/**
 * An approver's terminal session: lists what waits for a decision (oldest first), shows the
 * chosen request's whole surface and sends the approver's decision (approve, edit the
 * arguments of a tool call, or reject with a reason), printing whether a host applied or
 * refused it. Returns when the approver quits (`q`) or the input ends.
 */
export async function runInteractiveApprover(options: InteractiveApproverOptions): Promise<void> {
  const { client, output } = options;
  const now = options.now ?? Date.now;
  const say = (text: string) => output.write(`${text}\n`);
  const io = new Prompter(options.input, output);
  try {
    for (;;) {
      const pending = await client.pending();
      say('');
      if (!pending.length) say('nothing is waiting for an approver');
      else {
        say(`${pending.length} request${pending.length === 1 ? '' : 's'} waiting, oldest first:`);
        pending.forEach((r, i) => say(`  ${i + 1}) ${summarize(r, now())}`));
      }
      const answer = await io.ask(pending.length ? `choose 1-${pending.length}, [enter] refresh, [q] quit: ` : '[enter] refresh, [q] quit: ');
      if (answer === undefined) {
        say('');
        return;
      }
      if (answer === 'q') return;
      if (answer === '') continue;
      const request = pending[Number(answer) - 1];
      if (!/^\d+$/.test(answer) || !request) {
        say(`no request ${answer}`);
        continue;
      }
      if (!(await decideOn(request, io, say, client, now))) {
        say('');
        return;
      }
    }
  } finally {
    io.close();
  }
}

/** The surface and the decision on one request; false if the input ended. */
async function decideOn(request: ApprovalRequest, io: Prompter, say: (t: string) => void, client: InteractiveApproverClient, now: () => number): Promise<boolean> {
  say('');
  say(renderSurface(request, now()));
  for (;;) {
    const choice = await io.ask(request.kind === 'tool' ? '[a]pprove / [e]dit / [r]eject / [b]ack: ' : '[a]pprove / [r]eject / [b]ack: ');
    if (choice === undefined) return false;
    let verdict: Verdict | undefined;
    if (choice === 'b') return true;
    if (choice === 'a') {
      if (request.kind === 'limit') {
        const grant = await askGrant(request.ask.amount, io, say);
        if (grant === undefined) return false;
        verdict = { verdict: 'approve', grant };
      } else verdict = { verdict: 'approve' };
    } else if (choice === 'e' && request.kind === 'tool') {
      const args = await askJson(io, say);
      if (args === undefined) return false;
      verdict = { verdict: 'edit', args: args.value };
    } else if (choice === 'r') {
      const reason = await io.ask('reason (sent to the agent): ');
      if (reason === undefined) return false;
      verdict = { verdict: 'reject', ...(reason ? { reason } : {}) };
    } else {
      say(`unknown choice "${choice}"`);
      continue;
    }
    say('sending the signed decision...');
    const result = await client.decide(request, verdict);
    if (result.ok && result.awaiting) say(`counted: your approval of ${request.requestId} is recorded; ${result.awaiting} more approver(s) needed`);
    else if (result.ok) say(`applied: ${verdict.verdict} of ${request.requestId} (decision ${result.decisionId}); task ${request.taskId} continues on the next free host`);
    else say(`refused: ${result.error.code}: ${result.error.message}`);
    return true;
  }
}

async function askGrant(ask: number, io: Prompter, say: (t: string) => void): Promise<number | undefined> {
  for (;;) {
    const text = await io.ask(`grant how much more? [${ask}]: `);
    if (text === undefined) return undefined;
    if (text === '') return ask;
    const n = Number(text);
    if (n > 0) return n;
    say(`a grant must be a positive number (got "${text}")`);
  }
}

async function askJson(io: Prompter, say: (t: string) => void): Promise<{ value: unknown } | undefined> {
  for (;;) {
    const text = await io.ask('new arguments as JSON on one line: ');
    if (text === undefined) return undefined;
    try {
      return { value: JSON.parse(text) };
    } catch (err) {
      say(`not JSON: ${(err as Error).message}; try again`);
    }
  }
}
