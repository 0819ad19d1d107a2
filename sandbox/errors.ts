import { ErrorCode, RetryableError, TerminalError, type ErrorCode as Code } from '../common/errors.ts';

/** A tool call refused by a gate before any side effect. The model sees it and re-plans. */
export class ToolRejectedError extends TerminalError {
  override readonly name = 'ToolRejectedError';
  constructor(
    code: Code,
    message: string,
    /** Which gate refused: `schema`, `semantic` or `authorization`. */
    readonly gate: 'schema' | 'semantic' | 'authorization',
  ) {
    super(code, message);
  }
}

/** A tool ran and failed in a way that trying again will not fix. */
export class ToolFailedError extends TerminalError {
  override readonly name = 'ToolFailedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.toolFailed, message, options);
  }
}

/** The tool's circuit breaker is open: it failed repeatedly, and calls fail fast for a while. */
export class ToolUnavailableError extends RetryableError {
  override readonly name = 'ToolUnavailableError';
  constructor(tool: string, failures: number, retryAt: number) {
    super(
      ErrorCode.toolUnavailable,
      `tool "${tool}" is unavailable: its circuit breaker opened after ${failures} recent failures; it will be tried again after ${new Date(retryAt).toISOString()}. Plan around it or try later.`,
    );
  }
}

/** A tool call ran past its time limit. */
export class ToolTimeoutError extends RetryableError {
  override readonly name = 'ToolTimeoutError';
  constructor(tool: string, ms: number) {
    super(ErrorCode.toolTimeout, `tool "${tool}" did not finish within ${ms} ms`);
  }
}

/** A tool "succeeded" with a payload that breaks its own output schema: a semantic failure. */
export class InvalidToolOutputError extends TerminalError {
  override readonly name = 'InvalidToolOutputError';
  constructor(tool: string, detail: string) {
    super(ErrorCode.invalidToolOutput, `tool "${tool}" returned output that does not match its output schema: ${detail}`);
  }
}
