import { canonicalJson } from '../common/canonical-json.ts';
import type { TaskEvent, TaskOutcome } from '../runtime/wire.ts';

/**
 * A task's trajectory: what its event stream shows of it (states entered, model calls, tool
 * calls) and how its machine ended. The recorded one is read from the task's events and
 * snapshot; a replay derives its own the way the runtime emits events, so the two compare
 * entry by entry.
 */

/** How a tool call went, as the `tool` event says. */
export type ToolCallStatus = 'succeeded' | 'failed' | 'rejected' | 'unavailable';

/** The effects a machine invokes. */
export type EffectKind = 'model' | 'tools' | 'delegate' | 'wait';

/** One entry of a trajectory, discriminated on `kind`. */
export type TrajectoryEntry =
  /** The machine entered a state (top-level machine only, as `state` events). */
  | { kind: 'state'; state: string; step?: number | undefined }
  /** A model call that returned a turn (failed calls publish no `model` event). */
  | { kind: 'model'; key: string; role: string }
  /** A tool call and how it went; `args` when known (replays always, recordings since tool events carry them). */
  | { kind: 'tool'; key: string; tool: string; status: ToolCallStatus; code?: string | undefined; args?: unknown }
  /** The machine's final output as a task outcome. */
  | { kind: 'end'; outcome: TaskOutcome }
  /**
   * Replays only: the replayed machine needed something the recording does not have (an
   * effect it never ran, a call it ran as another tool, an approval it never asked for). The
   * replay stops here.
   */
  | { kind: 'unrecorded'; effect: EffectKind; key: string; tool?: string | undefined; message: string };

/** Where a replay left the recorded trajectory. `at` indexes both trajectories (0-based). */
export interface Divergence {
  at: number;
  /** The recorded entry at `at`; undefined when the recording ended before it. */
  expected?: TrajectoryEntry | undefined;
  /** The replayed entry at `at`; undefined when the replay ended before it. */
  actual?: TrajectoryEntry | undefined;
  message: string;
}

type ToolEvent = Extract<TaskEvent, { type: 'tool' }>;

/**
 * The trajectory a task's events record. Effects are taken once per key and states once per
 * `(step, state)`: the runtime publishes them with those de-duplication ids, so a task resumed
 * after a crash shows each once (inside JetStream's window, and here beyond it). `end` is the
 * machine's own output from the final snapshot, only if the machine reached a final state.
 */
export function recordedTrajectory(events: readonly TaskEvent[], snapshot: unknown): TrajectoryEntry[] {
  const entries: TrajectoryEntry[] = [];
  const seen = new Set<string>();
  for (const e of events) {
    const entry = fromEvent(e);
    if (!entry) continue;
    const id = dedupId(entry);
    if (seen.has(id)) continue;
    seen.add(id);
    entries.push(entry);
  }
  const end = machineEnd(snapshot);
  if (end) entries.push({ kind: 'end', outcome: end });
  return entries;
}

/** The identity under which the runtime de-duplicates an entry's event. */
export function dedupId(entry: TrajectoryEntry): string {
  switch (entry.kind) {
    case 'state':
      return `state:${entry.step}:${entry.state}`;
    case 'end':
      return 'end';
    default:
      return `${entry.kind}:${entry.key}`;
  }
}

function fromEvent(e: TaskEvent): TrajectoryEntry | undefined {
  if (e.type === 'state') return { kind: 'state', state: e.state, step: e.step };
  if (e.type === 'model') return { kind: 'model', key: e.key, role: e.role };
  if (e.type !== 'tool') return undefined;
  // `args` arrived in tool events later than the events themselves: older recordings lack it.
  const args = (e as ToolEvent & { args?: unknown }).args;
  return { kind: 'tool', key: e.key, tool: e.tool, status: e.status, ...(e.error ? { code: e.error.code } : {}), ...(args !== undefined ? { args } : {}) };
}

/** Whether a persisted XState snapshot is of a machine that reached a final state. */
export function machineFinished(snapshot: unknown): boolean {
  return (snapshot as { status?: unknown } | null)?.status === 'done';
}

/** The machine's final output as a task outcome (the runtime's `toTaskOutcome`), if it finished. */
function machineEnd(snapshot: unknown): TaskOutcome | undefined {
  if (!machineFinished(snapshot)) return undefined;
  return asOutcome((snapshot as { output?: unknown }).output);
}

/** A final output as a task outcome: a machine without the `{status}` convention is `done`. */
export function asOutcome(output: unknown): TaskOutcome {
  const o = output as { status?: unknown } | null | undefined;
  if (o && (o.status === 'done' || o.status === 'failed')) return o as TaskOutcome;
  return { status: 'done', output: output ?? null };
}

/**
 * The first place where `replayed` leaves `recorded`, or undefined if it follows it.
 *
 * When the recording is `complete` (its machine reached a final state), the two must be equal.
 * Otherwise the recording stopped early (a limit, a cancellation, a hand-off, or the task is
 * still running or parked): the replay follows it if the recorded trajectory is a prefix of
 * the replayed one, whatever the replay did past the recording's end.
 */
export function firstDivergence(recorded: readonly TrajectoryEntry[], replayed: readonly TrajectoryEntry[], complete: boolean): Divergence | undefined {
  const n = Math.min(recorded.length, replayed.length);
  for (let at = 0; at < n; at++) {
    const expected = recorded[at]!;
    const actual = replayed[at]!;
    if (!sameEntry(expected, actual)) return { at, expected, actual, message: mismatch(expected, actual) };
  }
  if (replayed.length < recorded.length) {
    const expected = recorded[n]!;
    return { at: n, expected, message: `the replay ended here; the recording goes on with ${describeEntry(expected)}` };
  }
  if (replayed.length > recorded.length && complete) {
    const actual = replayed[n]!;
    return { at: n, actual, message: actual.kind === 'unrecorded' ? actual.message : `the recording ended here; the replay goes on with ${describeEntry(actual)}` };
  }
  return undefined;
}

function mismatch(expected: TrajectoryEntry, actual: TrajectoryEntry): string {
  if (actual.kind === 'unrecorded') return `${actual.message} (the recording has ${describeEntry(expected)} here)`;
  if (expected.kind === 'state' && actual.kind === 'state') return `the replayed machine entered ${describeEntry(actual)} where the recorded one entered ${describeEntry(expected)}`;
  if (expected.kind === 'end' && actual.kind === 'end') return `the machine ended differently: expected ${describeEntry(expected)}, got ${describeEntry(actual)}`;
  if (expected.kind === 'tool' && actual.kind === 'tool' && expected.key === actual.key && expected.tool === actual.tool && expected.status === actual.status && expected.code === actual.code) {
    return `call ${actual.key} of ${actual.tool} has other arguments: expected ${brief(expected.args)}, got ${brief(actual.args)}`;
  }
  return `expected ${describeEntry(expected)}, got ${describeEntry(actual)}`;
}

/** Whether a replayed entry is the recorded one. Arguments count only when the recording has them. */
export function sameEntry(expected: TrajectoryEntry, actual: TrajectoryEntry): boolean {
  switch (expected.kind) {
    case 'state':
      return actual.kind === 'state' && actual.state === expected.state && actual.step === expected.step;
    case 'model':
      return actual.kind === 'model' && actual.key === expected.key && actual.role === expected.role;
    case 'tool':
      return (
        actual.kind === 'tool' &&
        actual.key === expected.key &&
        actual.tool === expected.tool &&
        actual.status === expected.status &&
        actual.code === expected.code &&
        (expected.args === undefined || sameArgs(expected.args, actual.args))
      );
    case 'end':
      return actual.kind === 'end' && sameOutcome(expected.outcome, actual.outcome);
    case 'unrecorded':
      return false;
  }
}

/** Recorded arguments are the model's, or a preview string when their JSON passed 2 KB. */
function sameArgs(recorded: unknown, replayed: unknown): boolean {
  if (typeof recorded === 'string' && typeof replayed !== 'string') return recorded === argsPreview(replayed);
  return canonicalJson(recorded) === canonicalJson(replayed);
}

/** The preview a `tool` event carries for large arguments (same rule as the runtime's). */
function argsPreview(args: unknown): unknown {
  const json = JSON.stringify(args) ?? 'null';
  return json.length <= 2048 ? args : `${json.slice(0, 2048)}… (${json.length} characters)`;
}

function sameOutcome(a: TaskOutcome, b: TaskOutcome): boolean {
  if (a.status === 'done' && b.status === 'done') return canonicalJson(a.output) === canonicalJson(b.output);
  if (a.status === 'failed' && b.status === 'failed') return a.error.code === b.error.code && a.error.message === b.error.message;
  return false;
}

/** One entry as a line of text. */
export function describeEntry(entry: TrajectoryEntry): string {
  switch (entry.kind) {
    case 'state':
      return `state ${entry.state}${entry.step !== undefined ? ` (step ${entry.step})` : ''}`;
    case 'model':
      return `model call ${entry.key} [${entry.role}]`;
    case 'tool':
      return `tool ${entry.tool}${entry.args !== undefined ? `(${brief(entry.args)})` : ''} ${entry.key} ${entry.status}${entry.code ? ` (${entry.code})` : ''}`;
    case 'end':
      return entry.outcome.status === 'done' ? `end: done ${brief(entry.outcome.output)}` : `end: failed ${entry.outcome.error.code}: ${entry.outcome.error.message}`;
    case 'unrecorded':
      return `unrecorded ${entry.effect} ${entry.key}: ${entry.message}`;
  }
}

/** Compact JSON for one line, cut at 120 characters. */
function brief(value: unknown): string {
  const json = typeof value === 'string' ? value : (JSON.stringify(value) ?? 'undefined');
  return json.length > 120 ? `${json.slice(0, 117)}...` : json;
}

/**
 * Where two JSON values first differ, as a path (`messages[2].content`) with both sides, or
 * undefined when they are equal. Fields set to `undefined` count as absent.
 */
export function firstDifference(expected: unknown, actual: unknown, path = ''): { path: string; expected: unknown; actual: unknown } | undefined {
  if (canonicalJson(expected) === canonicalJson(actual)) return undefined;
  const here = { path: path || '(root)', expected, actual };
  if (Array.isArray(expected) && Array.isArray(actual)) {
    for (let i = 0; i < Math.max(expected.length, actual.length); i++) {
      const inner = firstDifference(expected[i], actual[i], `${path}[${i}]`);
      if (inner) return inner;
    }
    return here;
  }
  if (isPlainObject(expected) && isPlainObject(actual)) {
    for (const key of [...new Set([...Object.keys(expected), ...Object.keys(actual)])].sort()) {
      const inner = firstDifference(expected[key], actual[key], path ? `${path}.${key}` : key);
      if (inner) return inner;
    }
  }
  return here;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A value for a one-line message. */
export function briefValue(value: unknown): string {
  return brief(value);
}
