/**
 * The irreversible tool of the chaos run, in a module of its own: a worker thread imports the
 * module of the tool it runs for every call, so this one imports nothing but the tool definition.
 *
 * The side effect is observed outside troupe: each execution of a charge appends one line,
 * `<effect key> <worker pid> <epoch ms>`, to the journal file named in its input, and each
 * attempt first appends `<key> <pid> <epoch ms> <delayMs>` to `<journal>.starts`. The chaos
 * runner counts the lines per key, so a charge run twice shows as a duplicate however troupe
 * recorded it. `reconcile` asks the journal, as a payment provider would be asked by
 * idempotency key.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { defineTool } from '../sandbox/tool.ts';

const chargeInput = z.object({
  journal: z.string().min(1),
  amount: z.number().positive(),
  /** How long the charge takes; the line is written half-way, so a kill can land on either side. */
  delayMs: z.number().int().min(0).max(10_000),
});

/** The lines of a journal (or of its `.starts` file). */
export function journalLines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An irreversible charge, recorded in the journal; reconciled by key against the journal. */
export const chaosCharge = defineTool({
  name: 'chaos_charge',
  description: 'Charge the customer. Cannot be undone.',
  input: chargeInput,
  output: z.object({ charged: z.number() }),
  reversibility: 'irreversible',
  isolation: 'thread',
  // The limit covers the call's thread starting cold (loading this module) on a busy machine.
  timeoutMs: 10_000,
  reconcile: async (key, { journal, amount }) => (journalLines(journal).some((l) => l.startsWith(`${key} `)) ? { happened: true, output: { charged: amount } } : { happened: false }),
  run: async ({ journal, amount, delayMs }, { key }) => {
    appendFileSync(`${journal}.starts`, `${key} ${process.pid} ${Date.now()} ${delayMs}\n`);
    await sleep(delayMs / 2);
    appendFileSync(journal, `${key} ${process.pid} ${Date.now()}\n`);
    await sleep(delayMs / 2);
    return { charged: amount };
  },
});
