import { assign, fromPromise, setup } from 'xstate';
import { agentLoopMachine, type AgentLoopInput } from '../../machines/agent-loop.machine.ts';
import { parseToolResult, textOf, type ModelEffectInput, type ModelTurn, type ToolResultBlock, type ToolsEffectInput } from '../../machines/conversation.ts';
import { outcome, type MachineOutcome } from '../../machines/outcome.ts';

/** Input of a refund-desk task. */
export interface RefundInput {
  taskId: string;
  orderId: string;
  message: string;
  /** Step cap of the triage agent loop. */
  maxSteps: number;
}

export type Decision = 'refund' | 'replace' | 'unclear';

export interface RefundContext extends Omit<RefundInput, 'maxSteps'> {
  maxSteps: number;
  order: unknown;
  decision: Decision | null;
  outcome: MachineOutcome | null;
}

/** The classifier's instructions: a bounded model step with one-word answers. */
export const CLASSIFIER_SYSTEM =
  'You are the refund classifier of a coffee equipment shop. Read the customer message and the order. Answer with exactly one word: "refund" if the customer wants their money back, "replace" if the item is broken or wrong and should be replaced, "unclear" otherwise.';

/** Reads the classifier's answer; anything but a clean label is treated as unclear. */
export function parseDecision(text: string): Decision {
  const word = text.trim().toLowerCase().replace(/[^a-z]/g, '');
  return word === 'refund' || word === 'replace' ? word : 'unclear';
}

const effect = <O, I>() => fromPromise<O, I>(async () => {
  throw new Error('effect not provided');
});

/**
 * A workflow: the flowchart is known, so the statechart decides the order and the model only
 * reasons inside one bounded step (classify: no tools, 16 tokens). Only when that step cannot
 * decide does the workflow hand the case to an open-ended agent loop (the hybrid).
 *
 * lookup -> classify -> ticket (refund or replacement) | triage (agent loop) -> done
 */
export const refundMachine = setup({
  types: {} as { context: RefundContext; input: RefundInput; output: MachineOutcome },
  actors: {
    model: effect<ModelTurn, ModelEffectInput>(),
    tools: effect<ToolResultBlock[], ToolsEffectInput>(),
    agentLoop: agentLoopMachine,
  },
}).createMachine({
  id: 'refund-desk',
  context: ({ input }) => ({ ...input, order: null, decision: null, outcome: null }),
  initial: 'lookup',
  states: {
    lookup: {
      invoke: {
        src: 'tools',
        input: ({ context }): ToolsEffectInput => ({
          step: 0,
          calls: [{ key: `${context.taskId}/0/1`, toolUseId: 'lookup', name: 'lookup_order', input: { orderId: context.orderId } }],
        }),
        onDone: [
          {
            guard: ({ event }) => parseToolResult(event.output[0]!).ok,
            target: 'classify',
            actions: assign({ order: ({ event }) => (parseToolResult(event.output[0]!) as { value: unknown }).value }),
          },
          {
            target: 'failed',
            actions: assign({
              outcome: ({ event }) => {
                const r = parseToolResult(event.output[0]!);
                return r.ok ? outcome.failed('internal', 'unreachable') : outcome.failed(r.error.code, r.error.message);
              },
            }),
          },
        ],
      },
    },
    classify: {
      invoke: {
        src: 'model',
        input: ({ context }): ModelEffectInput => ({
          key: `${context.taskId}/1/0`,
          role: 'classify',
          step: 1,
          system: CLASSIFIER_SYSTEM,
          tools: [],
          maxTokens: 16,
          messages: [{ role: 'user', content: `Customer message: ${context.message}\n\nOrder: ${JSON.stringify(context.order)}` }],
        }),
        onDone: { target: 'decide', actions: assign({ decision: ({ event }) => parseDecision(textOf(event.output.content)) }) },
      },
    },
    decide: {
      always: [
        { guard: ({ context }) => context.decision !== 'unclear', target: 'ticket' },
        { target: 'triage' },
      ],
    },
    ticket: {
      invoke: {
        src: 'tools',
        input: ({ context }): ToolsEffectInput => ({
          step: 2,
          calls: [
            {
              key: `${context.taskId}/2/1`,
              toolUseId: 'ticket',
              name: 'open_ticket',
              input: { orderId: context.orderId, kind: context.decision === 'refund' ? 'refund' : 'replacement' },
            },
          ],
        }),
        onDone: {
          target: 'done',
          actions: assign({
            outcome: ({ context, event }) => {
              const r = parseToolResult<{ ticketId: string }>(event.output[0]!);
              return r.ok ? outcome.done({ decision: context.decision, ticket: r.value.ticketId }) : outcome.failed(r.error.code, r.error.message);
            },
          }),
        },
      },
    },
    triage: {
      invoke: {
        src: 'agentLoop',
        input: ({ context }): AgentLoopInput => ({
          // The loop's effect keys live under the task's, so they never collide with the workflow's.
          taskId: `${context.taskId}/triage`,
          prompt: `Customer message about order ${context.orderId}:\n\n${context.message}`,
          maxSteps: context.maxSteps,
        }),
        onDone: {
          target: 'done',
          actions: assign({
            outcome: ({ event }) => {
              const loop = event.output as MachineOutcome;
              return loop.status === 'done' ? outcome.done({ decision: 'triage', reply: loop.output }) : loop;
            },
          }),
        },
      },
    },
    done: { type: 'final' },
    failed: { type: 'final' },
  },
  output: ({ context }) => context.outcome ?? outcome.failed('internal', 'workflow ended without an outcome'),
});
