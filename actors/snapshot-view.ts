import type { AnyMachineSnapshot } from 'xstate';
import { textOf, type Message } from '../machines/conversation.ts';
import type { MachineOutcome } from '../machines/outcome.ts';
import type { TaskOutcome } from '../runtime/wire.ts';

/**
 * What hosts read from any task machine's snapshot without knowing the machine: its state as
 * text, its step, its outcome, and what it had produced so far.
 */

/** `thinking`, `review.waiting`, or `a.x,b.y` for parallel states. */
export function stateString(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value !== 'object' || value === null) return String(value);
  return Object.entries(value as Record<string, unknown>)
    .map(([k, v]) => {
      const inner = stateString(v);
      return inner ? `${k}.${inner}` : k;
    })
    .join(',');
}

/** The machine's `context.step`, if it keeps one. */
export function stepOf(snapshot: AnyMachineSnapshot): number | undefined {
  const step = (snapshot.context as { step?: unknown } | undefined)?.step;
  return typeof step === 'number' ? step : undefined;
}

/** A final state's output as a task outcome; a machine without the convention is `done`. */
export function toTaskOutcome(output: MachineOutcome | undefined): TaskOutcome {
  if (output && (output.status === 'done' || output.status === 'failed')) return output;
  return { status: 'done', output: output ?? null };
}

/** What the task had produced when it was stopped: the agent's last words, if it has any. */
export function partialOf(snapshot: AnyMachineSnapshot): unknown {
  const messages = (snapshot.context as { messages?: Message[] } | undefined)?.messages;
  if (!Array.isArray(messages)) return null;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role !== 'assistant') continue;
    const text = typeof m.content === 'string' ? m.content : textOf(m.content);
    if (text) return text;
  }
  return null;
}

/** The task's input as the machine keeps it: `context.input`, or the first user message. */
export function taskInputOf(snapshot: AnyMachineSnapshot): unknown {
  const context = snapshot.context as { input?: unknown; messages?: Message[] } | undefined;
  if (context?.input !== undefined) return context.input;
  const first = context?.messages?.[0];
  return first ? (typeof first.content === 'string' ? first.content : textOf(first.content)) : null;
}
