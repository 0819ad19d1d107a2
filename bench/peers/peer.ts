import { LOOP_STEPS } from '../workloads.ts';

/** What one batch of the tool loop cost on a peer: elapsed wall-clock and the steps it ran. */
export interface PeerRun {
  /** Tasks in the batch, all started at once. */
  tasks: number;
  /** Wall-clock from the first start to the last task's end, ms. */
  ms: number;
  /** Model calls made: {@link LOOP_STEPS} per task when the loop ran as scripted. */
  steps: number;
}

/** What survives when an acknowledged step's process crashes or its machine loses power. */
export interface Durability {
  /** A few words for the table column. */
  short: string;
  /** The settings read from the runtime and what they mean, for the footnote. */
  detail: string;
}

/** A peer runtime, started once and driven with batches of the 10-step tool loop. */
export interface PeerLoop extends AsyncDisposable {
  /** The name printed in the tables. */
  readonly name: string;
  /** What a process crash and a power loss do to acknowledged steps, from the storage settings this run used. */
  readonly durability: Durability;
  /** Time between consecutive model calls of one task, ms, over the batches run so far. */
  readonly stepLatencies: number[];
  /** Runs `tasks` tasks at once and resolves when all ended; throws unless each made {@link LOOP_STEPS} model calls. */
  run(tasks: number): Promise<PeerRun>;
  close(): Promise<void>;
}

/** The scripted model's answer at `turn` (0-based), mirroring `instantModel`: a tool call for the first nine turns, then text. */
export function scriptedTurn(turn: number): { type: 'tool_use'; id: string; name: 'noop'; input: { n: number } } | { type: 'text'; text: string } {
  return turn < LOOP_STEPS - 1 ? { type: 'tool_use', id: `tu_${turn}`, name: 'noop', input: { n: turn } } : { type: 'text', text: 'done' };
}

/** Records, per task, the gap between its consecutive model calls. */
export function stepClock(latencies: number[]) {
  const last = new Map<string, number>();
  return {
    tick(task: string) {
      const now = performance.now();
      const prev = last.get(task);
      if (prev !== undefined) latencies.push(now - prev);
      last.set(task, now);
    },
    forget(task: string) {
      last.delete(task);
    },
  };
}

/** Throws when a peer did not run the workload it was asked to: a figure from a broken loop would be a lie. */
export function checkSteps(peer: string, task: string, steps: number): void {
  if (steps !== LOOP_STEPS) throw new Error(`${peer}: task ${task} made ${steps} model calls instead of ${LOOP_STEPS}; the benchmark's loop is broken, its figures would be meaningless`);
}
