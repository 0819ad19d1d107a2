import { systemClock, type Clock } from '../common/clock.ts';
import { ensureError, TroupeError } from '../common/errors.ts';
import { InvalidToolOutputError, ToolTimeoutError } from './errors.ts';
import { redactText, sealOutput, type OutputPolicy } from './output.ts';
import { ToolThrewError, type ThrownError, type ToolRunner } from './runners/index.ts';
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
 *
 * A failure reads the same at every isolation level: what the tool itself threw, if not a
 * TroupeError, is a terminal ToolThrewError (`tool_failed`) with the thrown name and message, as the
 * `thread` and `bwrap` levels report it; a TroupeError keeps its code and retryability; the reason
 * of an abort is rethrown as it is.
 */
export async function executeTool(tool: Tool<any, any>, args: unknown, context: ToolContext, o: ExecuteOptions): Promise<unknown> {
  const clock = o.clock ?? systemClock;
  const random = o.random ?? Math.random;
  const attempts = tool.reversibility === 'irreversible' ? 1 : o.maxAttempts;
  for (let attempt = 1; ; attempt++) {
    try {
      return await once(tool, args, context, o);
    } catch (caught) {
      const err = failureOf(tool, caught, context.signal);
      // An error message is recorded and shown like output: a secret in it is redacted too.
      err.message = redactText(err.message, o.output).text;
      const retryable = err instanceof TroupeError && err.retryable;
      if (!retryable || attempt >= attempts || context.signal.aborted) throw err;
      await clock.sleep(random() * o.retryBackoffMs * 2 ** (attempt - 1));
    }
  }
}

/** What a thrown value reports of itself, as the isolated levels' bootstraps report it. */
function thrownOf(value: unknown): ThrownError {
  if (!(value instanceof Error)) {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch {
      text = undefined;
    }
    return { name: 'NonError', message: text ?? String(value) };
  }
  const own = value as Error & { code?: unknown; retryable?: unknown };
  return {
    name: String(own.name),
    message: String(own.message),
    ...(own.stack !== undefined ? { stack: own.stack } : {}),
    ...(typeof own.code === 'string' && typeof own.retryable === 'boolean' ? { code: own.code, retryable: own.retryable } : {}),
  };
}

/**
 * The typed error of a failed attempt. Only an inline tool's own throw can arrive untyped (the
 * isolated levels type theirs across the boundary); it is typed here the same way, so that a plain
 * Error is `tool_failed` whatever the level, never the `internal` of an unknown error.
 */
function failureOf(tool: Tool<any, any>, caught: unknown, signal: AbortSignal): Error {
  if (caught instanceof TroupeError) return caught;
  if (signal.aborted && caught === signal.reason) return ensureError(caught);
  return new ToolThrewError(tool.name, tool.isolation, thrownOf(caught), { cause: caught });
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
