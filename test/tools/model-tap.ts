/**
 * The eval harness's model tap (`cli/eval/model-tap.ts`: a pass-through proxy in front of the
 * simulator that keeps every Messages API request body), with what the tool tests ask of it: the
 * requests of one conversation, and the tool results of one request.
 */
import { blocksOf, resultText, startModelTap as startTap, type ModelTap as Tap, type TappedBlock, type TappedRequest } from '../../cli/eval/model-tap.ts';

export { resultText, type TappedRequest };

export interface ModelTap extends Tap {
  /** The requests of the conversation whose first user message is exactly `text`, in order. */
  conversation(text: string): TappedRequest[];
}

/** Starts the tap in front of `target` (the simulator's URL). */
export async function startModelTap(target: string): Promise<ModelTap> {
  const tap = await startTap(target);
  const firstUser = (r: TappedRequest): string | undefined => {
    const first = r.messages[0];
    return first ? blocksOf(first).find((b) => b.type === 'text')?.text : undefined;
  };
  return Object.assign(tap, { conversation: (text: string) => tap.requests.filter((r) => firstUser(r) === text) });
}

/** The tool results of a request's last (user) message. */
export function toolResultsOf(r: TappedRequest): TappedBlock[] {
  const last = r.messages.at(-1);
  return last ? blocksOf(last).filter((b) => b.type === 'tool_result') : [];
}
