/**
 * The ways running a tool at its isolation level can fail, besides the sandbox failures of
 * `../isolation/errors.ts` (which the `bwrap` level raises as they are, but for its wall clock).
 *
 * Retryability is what it would be for an `inline` call, so that the isolation level never changes
 * whether a call is tried again: a wall-clock timeout ({@link ThreadTimeoutError},
 * {@link BwrapTimeoutError}) is retryable like an inline call's timeout; a {@link ToolThrewError}
 * carries the `code` and `retryable` of the TroupeError the tool threw; every other class is
 * terminal, since the same call with the same limits ends the same way.
 * `reason` is the stable discriminator; `code` stays one of the common {@link ErrorCode}s.
 */
import { ErrorCode, TroupeError } from '../../common/errors.ts';
import type { Isolation } from '../tool.ts';

/** Stable reasons, one per way a runner can fail. */
export const ToolRunnerErrorReason = {
  unknownIsolation: 'runner_unknown_isolation',
  noModule: 'runner_no_module',
  moduleFailed: 'runner_module_failed',
  notExported: 'runner_tool_not_exported',
  toolThrew: 'runner_tool_threw',
  threadTimeout: 'runner_thread_timeout',
  bwrapTimeout: 'runner_bwrap_timeout',
  threadMemoryLimit: 'runner_thread_memory_limit',
  threadExited: 'runner_thread_exited',
  closed: 'runner_closed',
} as const;

export type ToolRunnerErrorReason = (typeof ToolRunnerErrorReason)[keyof typeof ToolRunnerErrorReason];

/** Base class of every runner failure; terminal unless a subclass says otherwise. */
export class ToolRunnerError extends TroupeError {
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

/** What a worker or sandbox reports of a value the tool threw. */
export interface ThrownError {
  /** `name` of the thrown error (`'NonError'` when a non-Error was thrown). */
  name: string;
  message: string;
  stack?: string;
  /** The thrown error's own `code`, as reported (a TroupeError's is one of {@link ErrorCode}). */
  code?: unknown;
  /** The thrown error's own `retryable`, as reported (a TroupeError always has one). */
  retryable?: unknown;
}

const knownCodes: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/**
 * The `code` and `retryable` of a thrown TroupeError, recognised by its report (a known code and a
 * boolean flag: a class cannot cross a thread or a process), or `undefined` for any other value.
 */
function troupeFieldsOf(thrown: ThrownError): { code: ErrorCode; retryable: boolean } | undefined {
  const { code, retryable } = thrown;
  if (typeof code !== 'string' || !knownCodes.has(code) || typeof retryable !== 'boolean') return undefined;
  return { code: code as ErrorCode, retryable };
}

/**
 * The tool's own `run` threw (or rejected) inside its worker or sandbox; its name and message are
 * kept. When it threw a TroupeError, its `code` and `retryable` are kept too, so the call is retried
 * (or not) exactly as the same error thrown inline would be; anything else is `tool_failed` and
 * terminal.
 */
export class ToolThrewError extends ToolRunnerError {
  override readonly name: string = 'ToolThrewError';
  override readonly retryable: boolean;
  readonly isolation: Isolation;
  /** `name` of the thrown error (`'NonError'` when a non-Error was thrown). */
  readonly errorName: string;
  /** `message` of the thrown error; also this error's message, as an inline tool's error would read. */
  readonly errorMessage: string;
  readonly errorStack: string | undefined;
  constructor(tool: string, isolation: Isolation, thrown: ThrownError, options?: { cause?: unknown }) {
    const own = troupeFieldsOf(thrown);
    super(own?.code ?? ErrorCode.toolFailed, ToolRunnerErrorReason.toolThrew, tool, thrown.message, options);
    this.retryable = own?.retryable ?? false;
    this.isolation = isolation;
    this.errorName = thrown.name;
    this.errorMessage = thrown.message;
    this.errorStack = thrown.stack;
  }
}

/** A `thread` call outlived its wall clock; its worker was terminated. Retryable, like an inline call's timeout. */
export class ThreadTimeoutError extends ToolRunnerError {
  override readonly name: string = 'ThreadTimeoutError';
  override readonly retryable = true;
  readonly wallClockMs: number;
  constructor(tool: string, wallClockMs: number) {
    super(ErrorCode.toolTimeout, ToolRunnerErrorReason.threadTimeout, tool, `tool "${tool}" exceeded its wall-clock limit of ${wallClockMs} ms; its worker thread was terminated`);
    this.wallClockMs = wallClockMs;
  }
}

/**
 * A `bwrap` call outlived its wall clock; its sandbox was killed. Retryable, like an inline call's
 * timeout (a wall clock also counts time spent waiting, which may go better later; running out of
 * CPU time does not, and stays the terminal SandboxCpuLimitError). `cause` is the sandbox's
 * SandboxTimeoutError, with what the run printed.
 */
export class BwrapTimeoutError extends ToolRunnerError {
  override readonly name: string = 'BwrapTimeoutError';
  override readonly retryable = true;
  readonly wallClockMs: number;
  constructor(tool: string, wallClockMs: number, options?: { cause?: unknown }) {
    super(ErrorCode.toolTimeout, ToolRunnerErrorReason.bwrapTimeout, tool, `tool "${tool}" exceeded its wall-clock limit of ${wallClockMs} ms; its sandbox was killed`, options);
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
