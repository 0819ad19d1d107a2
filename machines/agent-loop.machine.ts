import { assign, fromPromise, setup } from 'xstate';
import { textOf, toolUses, type ContentBlock, type Message, type ModelEffectInput, type ModelTurn, type ToolResultBlock, type ToolsEffectInput } from './conversation.ts';
import { errorOf, outcome, type MachineOutcome } from './outcome.ts';

/** Input of an agent-loop task. */
export interface AgentLoopInput {
  taskId: string;
  /** The first user message. */
  prompt: string;
  /**
   * Most model turns before the loop stops with `limit_exceeded`. Omitted: no cap of its own
   * (a task's supervisor enforces the task's limits either way).
   */
  maxSteps?: number;
}

export interface AgentLoopContext {
  taskId: string;
  messages: Message[];
  /** Model turns completed. */
  step: number;
  maxSteps: number | null;
  outcome: MachineOutcome | null;
}

const notProvided = (name: string) =>
  fromPromise<never, unknown>(async () => {
    throw new Error(`effect "${name}" was not provided to the machine`);
  });

/**
 * The open-ended agent loop: think (a model call) -> act (the tool calls it asked for) -> observe
 * (results appended) -> think ..., until the model answers without tools or the step cap is hit.
 *
 * Pure: effects are the `model` and `tools` actors, provided by `actors/`. Every effect input
 * carries its idempotency key, derived from the task id, the step and the call index only.
 */
export const agentLoopMachine = setup({
  types: {} as {
    context: AgentLoopContext;
    input: AgentLoopInput;
    output: MachineOutcome;
  },
  actors: {
    model: notProvided('model') as unknown as ReturnType<typeof fromPromise<ModelTurn, ModelEffectInput>>,
    tools: notProvided('tools') as unknown as ReturnType<typeof fromPromise<ToolResultBlock[], ToolsEffectInput>>,
  },
  guards: {
    stepsExhausted: ({ context }) => context.maxSteps !== null && context.step >= context.maxSteps,
  },
}).createMachine({
  id: 'agent-loop',
  context: ({ input }) => ({
    taskId: input.taskId,
    messages: [{ role: 'user', content: input.prompt }],
    step: 0,
    maxSteps: input.maxSteps ?? null,
    outcome: null,
  }),
  initial: 'thinking',
  states: {
    thinking: {
      always: {
        guard: 'stepsExhausted',
        target: 'failed',
        actions: assign({
          outcome: ({ context }) => outcome.failed('limit_exceeded', `step limit reached: ${context.step} of ${context.maxSteps} steps used without a final answer`),
        }),
      },
      invoke: {
        src: 'model',
        input: ({ context }): ModelEffectInput => ({
          key: `${context.taskId}/${context.step}/0`,
          role: 'agent',
          step: context.step,
          messages: context.messages,
        }),
        onDone: [
          {
            guard: ({ event }) => toolUses(event.output.content).length > 0,
            target: 'acting',
            actions: assign({ messages: ({ context, event }) => [...context.messages, assistant(event.output.content)] }),
          },
          {
            // Cut off at max_tokens: not an answer yet. Keep what was said and ask for the rest
            // (a new call, so a budget raised meanwhile applies to it).
            guard: ({ event }) => event.output.stopReason === 'max_tokens',
            target: 'thinking',
            reenter: true,
            actions: assign({
              messages: ({ context, event }) => [...context.messages, assistant(nonEmpty(event.output.content)), { role: 'user', content: CONTINUE }],
              step: ({ context }) => context.step + 1,
            }),
          },
          {
            target: 'done',
            actions: assign({
              messages: ({ context, event }) => [...context.messages, assistant(event.output.content)],
              outcome: ({ event }) => outcome.done(textOf(event.output.content)),
            }),
          },
        ],
        onError: { target: 'failed', actions: assign({ outcome: ({ event }) => failedWith(event.error) }) },
      },
    },
    acting: {
      invoke: {
        src: 'tools',
        input: ({ context }): ToolsEffectInput => {
          const last = context.messages[context.messages.length - 1]!;
          const content = typeof last.content === 'string' ? [] : last.content;
          const uses = toolUses(content);
          const rationale = textOf(content);
          return {
            step: context.step,
            ...(rationale ? { rationale } : {}),
            calls: uses.map((u, i) => ({ key: `${context.taskId}/${context.step}/${i + 1}`, toolUseId: u.id, name: u.name, input: u.input })),
          };
        },
        onDone: {
          target: 'thinking',
          actions: assign({
            messages: ({ context, event }) => [...context.messages, { role: 'user', content: event.output }],
            step: ({ context }) => context.step + 1,
          }),
        },
        onError: { target: 'failed', actions: assign({ outcome: ({ event }) => failedWith(event.error) }) },
      },
    },
    done: { type: 'final' },
    failed: { type: 'final' },
  },
  output: ({ context }) => context.outcome ?? outcome.failed('internal', 'machine ended without an outcome'),
});

/** What the loop says when a reply was cut off at max_tokens. */
export const CONTINUE = 'Your reply was cut off. Continue exactly where you stopped.';

/** A cut-off reply may be empty; the API refuses empty assistant turns. */
function nonEmpty(content: ContentBlock[]): ContentBlock[] {
  return content.length ? content : [{ type: 'text', text: '…' }];
}

function assistant(content: ContentBlock[]): Message {
  return { role: 'assistant', content };
}

function failedWith(error: unknown): MachineOutcome {
  const e = errorOf(error);
  return { status: 'failed', error: e };
}
