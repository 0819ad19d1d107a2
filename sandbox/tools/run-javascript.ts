/**
 * A bundled tool that lets the model run JavaScript it wrote, in the `bwrap` sandbox: no network, no
 * host files beyond the system directories Node needs, no environment, bounded memory, CPU, time and
 * output. Through a tool runner the code runs in the runner's warm pool; called directly (`run`) it
 * runs in a freshly started sandbox, so it is sandboxed either way.
 */
import { z } from 'zod';
import {
  createWarmPool,
  MAX_JOB_BYTES,
  runJavaScript,
  type JavaScriptResult,
  type SandboxLimits,
} from '../isolation/index.ts';
import { registerSelfSandboxed } from '../runners/internal.ts';
import { defineTool, type ToolContext } from '../tool.ts';

/** Limits of one run of model-written code. */
const LIMITS: Partial<SandboxLimits> = Object.freeze({
  memoryBytes: 256 * 1024 * 1024,
  cpuSeconds: 10,
  wallClockMs: 10_000,
  outputBytes: 256 * 1024,
});

const input = z.object({
  code: z
    .string()
    .min(1)
    .max(MAX_JOB_BYTES / 4)
    .describe(
      'The body of an async function (input, require) => ...: it may await, `return` a JSON value and print with console.log. ' +
        'Node built-ins only (require("crypto"), ...); no network, no files but a private /tmp.',
    ),
  input: z.unknown().optional().describe('JSON data handed to the code as `input`.'),
});

const output = z.object({
  /** The code's return value as JSON; else its stdout parsed as JSON when it is JSON; else absent. */
  value: z.unknown(),
  valueFrom: z.enum(['return', 'return-string', 'stdout', 'none']),
  stdout: z.string(),
  stderr: z.string(),
  durationMs: z.number(),
});

type RunJavaScriptInput = z.infer<typeof input>;
type RunJavaScriptOutput = z.infer<typeof output>;

function outputOf(result: JavaScriptResult): RunJavaScriptOutput {
  return { value: result.value, valueFrom: result.valueFrom, stdout: result.stdout, stderr: result.stderr, durationMs: result.durationMs };
}

/**
 * `run_javascript`: runs model-written JavaScript in a bwrap sandbox and returns its value, stdout
 * and stderr. A throw, a timeout or a limit fails the call with the sandbox's typed error
 * (SandboxCodeError, SandboxTimeoutError, SandboxMemoryLimitError, ...). Read-only: the code can
 * change nothing outside its sandbox.
 */
export const runJavaScriptTool = defineTool({
  name: 'run_javascript',
  description:
    'Run JavaScript (Node.js) in an isolated sandbox to compute something: arithmetic, parsing, data transformation. ' +
    'Returns the value the code returns, and what it printed. The sandbox has no network and no files.',
  input,
  output,
  reversibility: 'read',
  isolation: 'bwrap',
  // Past the sandbox's own wall clock, so its typed timeout is what the caller sees.
  timeoutMs: 15_000,
  permissions: { limits: LIMITS },
  module: import.meta.url,
  run: async (args: RunJavaScriptInput, context: ToolContext) =>
    outputOf(await runJavaScript({ code: args.code, input: args.input }, { limits: LIMITS, signal: context.signal })),
});

registerSelfSandboxed(runJavaScriptTool, (host) => {
  const pool = createWarmPool({ size: host.poolSize, limits: LIMITS, bwrapPath: host.bwrapPath, clock: host.clock });
  return {
    async run(args, context) {
      const { code, input: data } = input.parse(args);
      return outputOf(await pool.run({ code, input: data }, { signal: context.signal }));
    },
    close: () => pool.close(),
  };
});
