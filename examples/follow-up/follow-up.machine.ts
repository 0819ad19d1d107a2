import { assign, fromPromise, setup } from 'xstate';
import { parseToolResult, type ToolResultBlock, type ToolsEffectInput, type WaitInput, type WaitOutput } from '../../machines/conversation.ts';
import { outcome, type MachineOutcome } from '../../machines/outcome.ts';

/** Input of a follow-up task. */
export interface FollowUpInput {
  taskId: string;
  customer: string;
  email: string;
  question: string;
  /** How long to wait for a reply before the one reminder. */
  followUpAfterMs: number;
  /** How long to wait in all before handing the case to a person. */
  giveUpAfterMs: number;
}

export interface FollowUpContext extends FollowUpInput {
  /** Inbox sequence of the last event read: the next wait starts after it. */
  cursor: number;
  reply: unknown;
  reminders: number;
  outcome: MachineOutcome | null;
}

const effect = <O, I>() => fromPromise<O, I>(async () => {
  throw new Error('effect not provided');
});

const email = (context: FollowUpContext, step: number, subject: string, body: string): ToolsEffectInput => ({
  step,
  calls: [{ key: `${context.taskId}/${step}/1`, toolUseId: `email-${step}`, name: 'send_email', input: { to: context.email, subject, body } }],
});

const failedSend = ({ event }: { event: { output: ToolResultBlock[] } }) => !parseToolResult(event.output[0]!).ok;
const sendError = ({ event }: { event: { output: ToolResultBlock[] } }) => {
  const r = parseToolResult(event.output[0]!);
  return r.ok ? outcome.failed('internal', 'unreachable') : outcome.failed(r.error.code, r.error.message);
};

/**
 * Asks a customer a question by email and waits for the reply — durably, for days: the task is
 * parked (no host memory) between events, and its deadlines are the task's own, so restarts
 * neither lose nor repeat anything. After `followUpAfterMs` without a reply it sends exactly one
 * reminder; after `giveUpAfterMs` it hands the case to a person. A reply (an inbox event of type
 * `reply`) ends it at any point.
 *
 * asking -> awaitingReply -> (reply) replied | (timeout) reminding -> awaitingLastChance -> replied | escalated
 */
export const followUpMachine = setup({
  types: {} as { context: FollowUpContext; input: FollowUpInput; output: MachineOutcome },
  actors: {
    tools: effect<ToolResultBlock[], ToolsEffectInput>(),
    wait: effect<WaitOutput, WaitInput>(),
  },
}).createMachine({
  id: 'follow-up',
  context: ({ input }) => ({ ...input, cursor: 0, reply: null, reminders: 0, outcome: null }),
  initial: 'asking',
  states: {
    asking: {
      invoke: {
        src: 'tools',
        input: ({ context }) => email(context, 0, 'A question about your order', `Hello ${context.customer},\n\n${context.question}`),
        onDone: [{ guard: failedSend, target: 'failed', actions: assign({ outcome: sendError }) }, { target: 'awaitingReply' }],
      },
    },
    awaitingReply: {
      invoke: {
        src: 'wait',
        input: ({ context }): WaitInput => ({ key: `${context.taskId}/1/0`, after: context.cursor, types: ['reply'], timeoutMs: context.followUpAfterMs }),
        onDone: [
          { guard: ({ event }) => event.output.kind === 'event', target: 'replied', actions: assign({ reply: ({ event }) => (event.output.kind === 'event' ? event.output.data : null) }) },
          { target: 'reminding', actions: assign({ cursor: ({ event }) => (event.output.kind === 'timeout' ? event.output.after : 0) }) },
        ],
      },
    },
    reminding: {
      invoke: {
        src: 'tools',
        input: ({ context }) => email(context, 2, 'Reminder: a question about your order', `Hello ${context.customer},\n\njust a reminder: ${context.question}`),
        onDone: [{ guard: failedSend, target: 'failed', actions: assign({ outcome: sendError }) }, { target: 'awaitingLastChance', actions: assign({ reminders: 1 }) }],
      },
    },
    awaitingLastChance: {
      invoke: {
        src: 'wait',
        input: ({ context }): WaitInput => ({ key: `${context.taskId}/3/0`, after: context.cursor, types: ['reply'], timeoutMs: Math.max(0, context.giveUpAfterMs - context.followUpAfterMs) }),
        onDone: [
          { guard: ({ event }) => event.output.kind === 'event', target: 'replied', actions: assign({ reply: ({ event }) => (event.output.kind === 'event' ? event.output.data : null) }) },
          { target: 'escalated' },
        ],
      },
    },
    replied: {
      type: 'final',
      entry: assign({ outcome: ({ context }) => outcome.done({ outcome: 'replied', reply: context.reply, reminders: context.reminders }) }),
    },
    escalated: {
      type: 'final',
      entry: assign({ outcome: ({ context }) => outcome.done({ outcome: 'escalated', reminders: context.reminders, note: `no reply from ${context.customer} after ${context.giveUpAfterMs} ms; handed to a person` }) }),
    },
    failed: { type: 'final' },
  },
  output: ({ context }) => context.outcome!,
});
