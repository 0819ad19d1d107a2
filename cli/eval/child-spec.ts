/**
 * What the harness tells a child process (a host to be killed at a step, or a worker to crash
 * mid-call), and what the child tells back over the IPC channel.
 */
import { z } from 'zod';

export const CHILD_SPEC_ENV = 'TROUPE_EVAL_CHILD';

export const childSpecSchema = z.object({
  role: z.enum(['host', 'worker']),
  /** The scenario file: the child builds the same agents from it. */
  scenarioFile: z.string(),
  source: z.object({ modules: z.array(z.string()), agent: z.string().optional(), origin: z.string() }),
  /** The compiled troupe config of the scenario (prefix, servers, model URL, approvers). */
  config: z.unknown(),
  /** The task the fault is about. */
  taskId: z.string(),
  /** Host: pause at this effect, report it, and wait to be killed. */
  kill: z.object({ step: z.number(), effect: z.enum(['model', 'tool']), point: z.enum(['before', 'after']) }).optional(),
  /** Worker: serve this tool and pause at its Nth call, report it, and wait to be killed. */
  crash: z.object({ tool: z.string(), call: z.number() }).optional(),
});
export type ChildSpec = z.infer<typeof childSpecSchema>;

/** Messages from a child. */
export type ChildMessage = { type: 'ready'; id: string } | { type: 'fault'; key: string } | { type: 'fired'; index: number } | { type: 'error'; message: string };
