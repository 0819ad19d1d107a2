/**
 * The ways a sandboxed run can end badly, one class each.
 *
 * Every class is a {@link TerminalError}: running the same code with the same limits again ends the
 * same way. `reason` is the stable, sandbox-specific discriminator (the shared `code` stays one of
 * the common {@link ErrorCode}s so wire consumers need no new vocabulary).
 */
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import type { SandboxResult } from './sandbox-result.ts';

/** Stable reasons, one per way a sandboxed run can fail. */
export const SandboxErrorReason = {
  unavailable: 'sandbox_unavailable',
  invalidSpec: 'sandbox_invalid_spec',
  setupFailed: 'sandbox_setup_failed',
  timeout: 'sandbox_timeout',
  cpuLimit: 'sandbox_cpu_limit',
  memoryLimit: 'sandbox_memory_limit',
  outputLimit: 'sandbox_output_limit',
  nonZeroExit: 'sandbox_non_zero_exit',
  codeThrew: 'sandbox_code_threw',
  poolClosed: 'sandbox_pool_closed',
} as const;

export type SandboxErrorReason = (typeof SandboxErrorReason)[keyof typeof SandboxErrorReason];

/** Base class of every sandbox failure; `result` is attached when the sandboxed command did run. */
export class SandboxError extends TerminalError {
  override readonly name: string = 'SandboxError';
  readonly reason: SandboxErrorReason;
  readonly result: SandboxResult | undefined;

  constructor(
    code: ErrorCode,
    reason: SandboxErrorReason,
    message: string,
    options?: { cause?: unknown; result?: SandboxResult },
  ) {
    super(code, message, options);
    this.reason = reason;
    this.result = options?.result;
  }
}

/**
 * The `bwrap` isolation level cannot run on this machine (bubblewrap or prlimit missing, user
 * namespaces disabled). Thrown instead of ever running the code with weaker isolation.
 */
export class SandboxUnavailableError extends SandboxError {
  override readonly name: string = 'SandboxUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.invalidConfig, SandboxErrorReason.unavailable, message, options);
  }
}

/** The run was refused before anything started: a bind, cwd, env or limit is not acceptable. */
export class SandboxSpecError extends SandboxError {
  override readonly name: string = 'SandboxSpecError';
  constructor(message: string) {
    super(ErrorCode.invalidConfig, SandboxErrorReason.invalidSpec, message);
  }
}

/** bubblewrap refused to build the sandbox (for example a declared bind does not exist). */
export class SandboxSetupError extends SandboxError {
  override readonly name: string = 'SandboxSetupError';
  readonly bwrapMessage: string;
  constructor(bwrapMessage: string, options?: { result?: SandboxResult }) {
    super(ErrorCode.invalidConfig, SandboxErrorReason.setupFailed, `sandbox setup failed: ${bwrapMessage}`, options);
    this.bwrapMessage = bwrapMessage;
  }
}

/** The run was killed because it outlived its wall-clock limit. */
export class SandboxTimeoutError extends SandboxError {
  override readonly name: string = 'SandboxTimeoutError';
  readonly wallClockMs: number;
  constructor(wallClockMs: number, result: SandboxResult) {
    super(ErrorCode.toolTimeout, SandboxErrorReason.timeout, `sandboxed run exceeded its wall-clock limit of ${wallClockMs} ms`, { result });
    this.wallClockMs = wallClockMs;
  }
}

/** The run was killed by the kernel for using more CPU time than its limit (RLIMIT_CPU). */
export class SandboxCpuLimitError extends SandboxError {
  override readonly name: string = 'SandboxCpuLimitError';
  readonly cpuSeconds: number;
  constructor(cpuSeconds: number, result: SandboxResult) {
    super(ErrorCode.toolTimeout, SandboxErrorReason.cpuLimit, `sandboxed run exceeded its CPU limit of ${cpuSeconds} s`, { result });
    this.cpuSeconds = cpuSeconds;
  }
}

/** The run failed because it tried to use more memory than its limit. */
export class SandboxMemoryLimitError extends SandboxError {
  override readonly name: string = 'SandboxMemoryLimitError';
  readonly memoryBytes: number;
  constructor(memoryBytes: number, result: SandboxResult) {
    super(ErrorCode.toolFailed, SandboxErrorReason.memoryLimit, `sandboxed run exceeded its memory limit of ${memoryBytes} bytes`, { result });
    this.memoryBytes = memoryBytes;
  }
}

/** The run printed more than its output limit; it was killed and its output truncated. */
export class SandboxOutputLimitError extends SandboxError {
  override readonly name: string = 'SandboxOutputLimitError';
  readonly outputBytes: number;
  constructor(outputBytes: number, result: SandboxResult) {
    super(ErrorCode.toolFailed, SandboxErrorReason.outputLimit, `sandboxed run exceeded its output limit of ${outputBytes} bytes`, { result });
    this.outputBytes = outputBytes;
  }
}

/** The sandboxed command exited with a non-zero status or was killed by a signal. */
export class SandboxExitError extends SandboxError {
  override readonly name: string = 'SandboxExitError';
  readonly exitCode: number | null;
  readonly signal: string | null;
  constructor(result: SandboxResult) {
    const how = result.signal !== null ? `was killed by ${result.signal}` : `exited with status ${result.exitCode}`;
    super(ErrorCode.toolFailed, SandboxErrorReason.nonZeroExit, `sandboxed command ${how}`, { result });
    this.exitCode = result.exitCode;
    this.signal = result.signal;
  }
}

/**
 * Sandboxed JavaScript threw (or rejected); the thrown value's name and message are kept, and its own
 * `code` and `retryable` when the bootstrap reported them. This error itself stays terminal: whether
 * what the code said of its error is to be believed is for the caller to decide.
 */
export class SandboxCodeError extends SandboxError {
  override readonly name: string = 'SandboxCodeError';
  readonly errorName: string;
  readonly errorMessage: string;
  readonly errorStack: string | undefined;
  /** The thrown error's own `code`, when one was reported and is a string. */
  readonly errorCode: string | undefined;
  /** The thrown error's own `retryable`, when one was reported and is a boolean. */
  readonly errorRetryable: boolean | undefined;
  constructor(thrown: { name: string; message: string; stack?: string; code?: unknown; retryable?: unknown }, result: SandboxResult) {
    super(ErrorCode.toolFailed, SandboxErrorReason.codeThrew, `sandboxed code threw ${thrown.name}: ${thrown.message}`, { result });
    this.errorName = thrown.name;
    this.errorMessage = thrown.message;
    this.errorStack = thrown.stack;
    this.errorCode = typeof thrown.code === 'string' ? thrown.code : undefined;
    this.errorRetryable = typeof thrown.retryable === 'boolean' ? thrown.retryable : undefined;
  }
}

/** The warm pool was closed while the job was waiting or running; the job's process was killed. */
export class SandboxPoolClosedError extends SandboxError {
  override readonly name: string = 'SandboxPoolClosedError';
  constructor() {
    super(ErrorCode.cancelled, SandboxErrorReason.poolClosed, 'the sandbox warm pool was closed');
  }
}
