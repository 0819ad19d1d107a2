/**
 * ============================ FUZZ SLOT ============================
 * The place in the chaos run for the fuzzer, `chaos/fuzz.ts`, which is written separately: at
 * least 1,000 malformed or adversarial task messages against the running cluster. This file only
 * loads it and reports what it returns; it does not fuzz anything itself.
 *
 * The contract assumed here: `chaos/fuzz.ts` exports a function — `runFuzz`, `fuzz` or the default
 * export — taking a {@link FuzzContext} and resolving with its findings (any JSON-safe value; an
 * object with a `summary` string or a `lines` array of strings is printed as such). It runs after
 * the faults, while every host and worker is still up. Adjust {@link runFuzzSlot} if the
 * fuzzer's export ends up different.
 * ==================================================================
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** What the fuzzer gets: the live deployment of the chaos run. */
export interface FuzzContext {
  /** Client URLs of every NATS node. */
  servers: string[];
  /** The hosts role's user (may publish anything under the prefix). */
  user: string;
  password: string;
  /** Subject prefix of the deployment (`<prefix>.tasks.<agent>`). */
  prefix: string;
  /** The agent the hosts run, with an example of a valid input. */
  agent: { name: string; exampleInput: unknown };
  /** Aborted when the chaos run's time is up. */
  signal: AbortSignal;
}

/** What became of the fuzz slot. */
export type FuzzOutcome =
  | { status: 'absent'; message: string }
  | { status: 'ran'; ms: number; exportName: string; result: unknown }
  | { status: 'failed'; ms: number; error: string };

const FUZZ_FILE = path.join(import.meta.dirname, 'fuzz.ts');

/** Runs `chaos/fuzz.ts` if it is there; never throws. */
export async function runFuzzSlot(ctx: FuzzContext): Promise<FuzzOutcome> {
  if (!existsSync(FUZZ_FILE)) return { status: 'absent', message: 'chaos/fuzz.ts is not in this tree yet: the fuzz part of the run was skipped' };
  const started = performance.now();
  try {
    // A computed specifier: the module is optional, so the type-checker must not require it.
    const mod = (await import(pathToFileURL(FUZZ_FILE).href)) as Record<string, unknown>;
    const exportName = ['runFuzz', 'fuzz', 'default'].find((name) => typeof mod[name] === 'function');
    if (!exportName) return { status: 'failed', ms: 0, error: `chaos/fuzz.ts exports no function named runFuzz or fuzz, and no default function (exports: ${Object.keys(mod).join(', ') || 'none'})` };
    const result = await (mod[exportName] as (ctx: FuzzContext) => Promise<unknown>)(ctx);
    return { status: 'ran', ms: Math.round(performance.now() - started), exportName, result };
  } catch (err) {
    return { status: 'failed', ms: Math.round(performance.now() - started), error: (err as Error).stack ?? String(err) };
  }
}
