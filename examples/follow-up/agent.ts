import { z } from 'zod';
import { defineAgent } from '../../actors/agent.ts';
import { defineTool, type Tool } from '../../sandbox/tool.ts';
import { followUpMachine, type FollowUpInput } from './follow-up.machine.ts';

/** The demo's outbox: a stand-in for an email API, keyed by idempotency key (as such APIs are). */
export const outbox = new Map<string, { to: string; subject: string }>();

/** Sends an email: irreversible, so it runs once per key, and the key is forwarded as the provider's idempotency key. */
export const sendEmail = defineTool({
  name: 'send_email',
  description: 'Send an email to a customer.',
  input: z.object({ to: z.string().email(), subject: z.string().min(1), body: z.string().min(1) }),
  output: z.object({ messageId: z.string() }),
  reversibility: 'irreversible',
  reconcile: async (key) => (outbox.has(key) ? { happened: true, output: { messageId: `m-${key}` } } : { happened: false }),
  run: async ({ to, subject }, { key }) => {
    outbox.set(key, { to, subject });
    return { messageId: `m-${key}` };
  },
});

const input = z.object({
  customer: z.string().min(1),
  email: z.string().email(),
  question: z.string().min(1).max(4000),
  /** @default 24 hours */
  followUpAfterMs: z.number().int().positive().default(24 * 3600_000),
  /** @default 3 days */
  giveUpAfterMs: z.number().int().positive().default(3 * 24 * 3600_000),
});

/** The follow-up workflow with a given email tool (the tests use one that writes to a file). */
export function followUpAgent(email: Tool<any, any> = sendEmail) {
  return defineAgent<z.infer<typeof input>>({
    name: 'follow-up',
    description: 'Emails a customer a question and waits for the reply: one reminder after a day, a person after three.',
    input,
    exampleInput: { customer: 'Ada', email: 'ada@example.com', question: 'Should we refund order A-1003 or send a new one?', followUpAfterMs: 4_000, giveUpAfterMs: 8_000 },
    tools: [email],
    // Sending this email is what the workflow is for: no approver per message.
    approvals: { autoApprove: ['send_email'] },
    inbox: { reply: z.object({ text: z.string().min(1) }) },
    limits: { wallClockMs: 7 * 24 * 3600_000 },
    machine: followUpMachine,
    machineInput: ({ taskId, input }): FollowUpInput => ({ taskId, ...input }),
  });
}

export const followUp = followUpAgent();
