/**
 * Model-call errors. Every one has code `model_error` and a `reason` from {@link ModelErrorReason};
 * {@link ModelRetryableError} and {@link ModelTerminalError} say whether another attempt may help.
 */
import { ErrorCode, TroupeError, type WireError } from '../../common/errors.ts';
import type { ModelCallResult } from './model-client.ts';

/** Why a model call failed. Stable: callers and the audit log may switch on these. */
export const ModelErrorReason = {
  // retried by the client
  rateLimited: 'rate_limited',
  overloaded: 'overloaded',
  serverError: 'server_error',
  requestTimeout: 'request_timeout',
  conflict: 'conflict',
  timeout: 'timeout',
  connection: 'connection',
  streamCut: 'stream_cut',
  // retryable, but the caller decides (the model must be told what it did wrong)
  malformedToolUse: 'malformed_tool_use',
  // terminal
  invalidRequest: 'invalid_request',
  authentication: 'authentication',
  permission: 'permission',
  notFound: 'not_found',
  requestTooLarge: 'request_too_large',
  clientError: 'client_error',
  aborted: 'aborted',
  deadlineExceeded: 'deadline_exceeded',
  unknownModel: 'unknown_model',
  unexpected: 'unexpected',
} as const;
export type ModelErrorReason = (typeof ModelErrorReason)[keyof typeof ModelErrorReason];

/** Reasons the client retries by itself, with back-off, within `maxAttempts` and `deadlineAt`. */
export const CLIENT_RETRIED_REASONS: ReadonlySet<ModelErrorReason> = new Set([
  ModelErrorReason.rateLimited,
  ModelErrorReason.overloaded,
  ModelErrorReason.serverError,
  ModelErrorReason.requestTimeout,
  ModelErrorReason.conflict,
  ModelErrorReason.timeout,
  ModelErrorReason.connection,
  ModelErrorReason.streamCut,
]);

/** Details every model error carries. */
export interface ModelErrorDetails {
  /** HTTP status, when the provider answered. */
  status?: number;
  /** Provider's error type, e.g. `rate_limit_error`. */
  providerType?: string;
  /** Provider's request id, for support tickets. */
  requestId?: string;
  /** Wait the provider asked for (`retry-after-ms` / `retry-after`). */
  retryAfterMs?: number;
  /** Attempts made before this error was thrown. */
  attempts?: number;
  cause?: unknown;
}

/**
 * What every model failure carries, whether another attempt may fix it or not: the subclasses
 * differ only in `retryable`.
 */
abstract class ModelFailure extends TroupeError {
  readonly reason: ModelErrorReason;
  readonly status: number | undefined;
  readonly providerType: string | undefined;
  readonly requestId: string | undefined;
  readonly retryAfterMs: number | undefined;
  attempts: number;

  constructor(reason: ModelErrorReason, message: string, details: ModelErrorDetails = {}) {
    super(ErrorCode.modelError, message, { cause: details.cause });
    this.reason = reason;
    this.status = details.status;
    this.providerType = details.providerType;
    this.requestId = details.requestId;
    this.retryAfterMs = details.retryAfterMs;
    this.attempts = details.attempts ?? 0;
  }

  override toWire(): WireError & { reason: ModelErrorReason } {
    return { code: this.code, message: this.message, reason: this.reason };
  }
}

/** A model failure that another attempt may fix (overload, rate limit, timeout, cut stream...). */
export class ModelRetryableError extends ModelFailure {
  override readonly name: string = 'ModelRetryableError';
  override readonly retryable = true;
}

/** A model failure that repeating the same request cannot fix (bad request, auth, unknown model...). */
export class ModelTerminalError extends ModelFailure {
  override readonly name: string = 'ModelTerminalError';
}

/** Any error a {@link ModelClient} rejects with. */
export type ModelError = ModelRetryableError | ModelTerminalError;

/** Whether `value` is a model error (of either kind). */
export function isModelError(value: unknown): value is ModelError {
  return value instanceof ModelRetryableError || value instanceof ModelTerminalError;
}

/** One offending tool call of a malformed reply. */
export interface ToolUseProblem {
  toolUseId: string;
  name: string;
  problem: 'unknown_tool' | 'input_not_object' | 'invalid_json';
}

/**
 * The model answered, and was billed, but asked for a tool that was not offered or gave an input
 * that is not a JSON object. Not retried by the client: the agent decides (typically it returns an
 * error `tool_result` so the model re-plans). `response` is the full billed result, raw content included.
 */
export class MalformedToolUseError extends ModelRetryableError {
  override readonly name: string = 'MalformedToolUseError';
  readonly response: ModelCallResult;
  readonly problems: ToolUseProblem[];

  constructor(response: ModelCallResult, problems: ToolUseProblem[]) {
    const list = problems.map((p) => `${p.name} (${p.toolUseId}): ${p.problem}`).join('; ');
    super(ModelErrorReason.malformedToolUse, `model produced a malformed tool_use: ${list}`, {
      attempts: response.attempts,
    });
    this.response = response;
    this.problems = problems;
  }
}

/** Whether `value` is the "model asked for a tool it was not offered / gave a non-object input" error. */
export function isMalformedToolUse(value: unknown): value is MalformedToolUseError {
  return value instanceof MalformedToolUseError;
}
