/**
 * The ways running a tool at its isolation level can fail, besides the sandbox failures of
 * `../isolation/errors.ts` (which the `bwrap` level raises as they are).
 *
 * Every class is a {@link TerminalError}: the same call with the same limits ends the same way.
 * `reason` is the stable discriminator; `code` stays one of the common {@link ErrorCode}s.
 */
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import type { Isolation } from '../tool.ts';

/** Stable reasons, one per way a runner can fail. */
export const ToolRunnerErrorReason = {
  unknownIsolation: 'runner_unknown_isolation',
  noModule: 'runner_no_module',
  moduleFailed: 'runner_module_failed',
  notExported: 'runner_tool_not_exported',
  toolThrew: 'runner_tool_threw',
  threadTimeout: 'runner_thread_timeout',
  threadMemoryLimit: 'runner_thread_memory_limit',
  threadExited: 'runner_thread_exited',
  closed: 'runner_closed',
} as const;

export type ToolRunnerErrorReason = (typeof ToolRunnerErrorReason)[keyof typeof ToolRunnerErrorReason];

/** Base class of every runner failure. */
export class ToolRunnerError extends TerminalError {
  override readonly name: string = 'ToolRunnerError';
  readonly reason: ToolRunnerErrorReason;
  /** The tool whose call failed. */
  readonly tool: string;

  constructor(code: ErrorCode, reason: ToolRunnerErrorReason, tool: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.reason = reason;
    this.tool = tool;
  }
}

/** The tool declares an isolation level this runner does not know; it is never run at another one. */
export class UnknownIsolationError extends ToolRunnerError {
  override readonly name: string = 'UnknownIsolationError';
  constructor(tool: string, isolation: unknown) {
    super(ErrorCode.invalidConfig, ToolRunnerErrorReason.unknownIsolation, tool, `tool "${tool}" declares unknown isolation ${JSON.stringify(isolation)}; expected "inline", "thread" or "bwrap"`);
  }
}

/**
 * The tool's defining module cannot serve an isolated call: it is unknown (`no-module`), it failed
 * to load or bundle (`failed`), or it exports no tool of that name (`not-exported`).
 */
export class ToolModuleError extends ToolRunnerError {
  override readonly name: string = 'ToolModuleError';
  readonly module: string | undefined;
  constructor(tool: string, module: string | undefined, problem: 'no-module' | 'failed' | 'not-exported', detail: string, options?: { cause?: unknown }) {
    const reason =
      problem === 'no-module' ? ToolRunnerErrorReason.noModule : problem === 'failed' ? ToolRunnerErrorReason.moduleFailed : ToolRunnerErrorReason.notExported;
    super(ErrorCode.invalidConfig, reason, tool, detail, options);
    this.module = module;
  }
}

/** The tool's own `run` threw (or rejected) inside its worker or sandbox; its name and message are kept. */
export class ToolThrewError extends ToolRunnerError {
  override readonly name: string = 'ToolThrewError';
  readonly isolation: Isolation;
  /** `name` of the thrown error (`'NonError'` when a non-Error was thrown). */
  readonly errorName: string;
  /** `message` of the thrown error; also this error's message, as an inline tool's error would read. */
  readonly errorMessage: string;
  readonly errorStack: string | undefined;
  constructor(tool: string, isolation: Isolation, thrown: { name: string; message: string; stack?: string }, options?: { cause?: unknown }) {
    super(ErrorCode.toolFailed, ToolRunnerErrorReason.toolThrew, tool, thrown.message, options);
    this.isolation = isolation;
    this.errorName = thrown.name;
    this.errorMessage = thrown.message;
    this.errorStack = thrown.stack;
  }
}

/** A `thread` call outlived its wall clock; its worker was terminated. */
export class ThreadTimeoutError extends ToolRunnerError {
  override readonly name: string = 'ThreadTimeoutError';
  readonly wallClockMs: number;
  constructor(tool: string, wallClockMs: number) {
    super(ErrorCode.toolTimeout, ToolRunnerErrorReason.threadTimeout, tool, `tool "${tool}" exceeded its wall-clock limit of ${wallClockMs} ms; its worker thread was terminated`);
    this.wallClockMs = wallClockMs;
  }
}

/** A `thread` call ran its worker out of heap; the worker is gone, the host is not. */
export class ThreadMemoryLimitError extends ToolRunnerError {
  override readonly name: string = 'ThreadMemoryLimitError';
  readonly heapMiB: number;
  constructor(tool: string, heapMiB: number, options?: { cause?: unknown }) {
    super(ErrorCode.toolFailed, ToolRunnerErrorReason.threadMemoryLimit, tool, `tool "${tool}" exceeded its worker's heap limit of ${heapMiB} MiB`, options);
    this.heapMiB = heapMiB;
  }
}

/** A `thread` call's worker ended without a result (it called `process.exit`, or crashed). */
export class ThreadExitError extends ToolRunnerError {
  override readonly name: string = 'ThreadExitError';
  readonly exitCode: number | undefined;
  constructor(tool: string, exitCode: number | undefined, options?: { cause?: unknown }) {
    const how = exitCode === undefined ? `crashed: ${String((options?.cause as Error | undefined)?.message)}` : `exited with status ${exitCode}`;
    super(ErrorCode.toolFailed, ToolRunnerErrorReason.threadExited, tool, `tool "${tool}" ended its worker thread without a result: the worker ${how}`, options);
    this.exitCode = exitCode;
  }
}

/** The runner was closed before or during the call; the call's worker or sandbox was killed. */
export class ToolRunnerClosedError extends ToolRunnerError {
  override readonly name: string = 'ToolRunnerClosedError';
  constructor(tool: string) {
    super(ErrorCode.cancelled, ToolRunnerErrorReason.closed, tool, `the tool runner was closed; tool "${tool}" did not complete`);
  }
}
