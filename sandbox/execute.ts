import { systemClock, type Clock } from '../common/clock.ts';
import { ensureError, TroupeError } from '../common/errors.ts';
import { InvalidToolOutputError, ToolTimeoutError } from './errors.ts';
import { redactText, sealOutput, type OutputPolicy } from './output.ts';
import type { ToolRunner } from './runners/index.ts';
import type { Tool, ToolContext } from './tool.ts';

/** What executing a tool call needs besides the call. */
export interface ExecuteOptions {
  /** Runs the tool at its isolation level. */
  runner: ToolRunner;
  output: OutputPolicy;
  /** Attempts for failures a retry can fix; irreversible tools get one. */
  maxAttempts: number;
  retryBackoffMs: number;
  clock?: Clock;
  random?: () => number;
}

/**
 * Runs one admitted call of a tool: at its isolation level, within its time limit, its output
 * checked against its output schema (a garbage "success" is a semantic failure), secrets
 * redacted and size capped. Failures a retry can fix (timeouts, transient errors the tool
 * reports as retryable) are retried with full-jitter exponential backoff, unless the tool is
 * irreversible: repeating a call that may have happened is never done blindly. Validation and
 * permission failures are never retried.
 */
export async function executeTool(tool: Tool<any, any>, args: unknown, context: ToolContext, o: ExecuteOptions): Promise<unknown> {
  const clock = o.clock ?? systemClock;
  const random = o.random ?? Math.random;
  const attempts = tool.reversibility === 'irreversible' ? 1 : o.maxAttempts;
  for (let attempt = 1; ; attempt++) {
    try {
      return await once(tool, args, context, o);
    } catch (caught) {
      const err = ensureError(caught);
      // An error message is recorded and shown like output: a secret in it is redacted too.
      err.message = redactText(err.message, o.output).text;
      const retryable = err instanceof TroupeError && err.retryable;
      if (!retryable || attempt >= attempts || context.signal.aborted) throw err;
      await clock.sleep(random() * o.retryBackoffMs * 2 ** (attempt - 1));
    }
  }
}

async function once(tool: Tool<any, any>, args: unknown, context: ToolContext, o: ExecuteOptions): Promise<unknown> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(context.signal.reason);
  context.signal.addEventListener('abort', onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  try {
    const output = await Promise.race([
      o.runner.run(tool, args, { ...context, signal: controller.signal }),
      // Bounds inline tools; isolated levels enforce the limit themselves (typed errors of their
      // own), so for them this is only a safety net a moment later.
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => {
            const err = new ToolTimeoutError(tool.name, tool.timeoutMs);
            controller.abort(err);
            reject(err);
          },
          tool.isolation === 'inline' ? tool.timeoutMs : tool.timeoutMs + 1_000,
        );
      }),
    ]);
    const checked = tool.output.safeParse(output);
    if (!checked.success) throw new InvalidToolOutputError(tool.name, checked.error.issues[0]?.message ?? 'schema mismatch');
    return sealOutput(checked.data, o.output).value;
  } finally {
    clearTimeout(timer);
    context.signal.removeEventListener('abort', onAbort);
  }
}
