/**
 * Classification of everything an Anthropic SDK call can throw into a {@link ModelError}.
 *
 * Retried: 408, 409, 429, 5xx (529 included), connection failures, timeouts, cut streams and
 * `overloaded_error` / `api_error` / `rate_limit_error` events inside a stream. Never retried:
 * 400, 401, 403, 404, 413 and every other 4xx. Terminal errors carry the API's own message.
 */
import {
  AnthropicError,
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
} from '@anthropic-ai/sdk';
import { retryAfterMsOf } from './backoff.ts';
import { isModelError, ModelErrorReason, ModelRetryableError, ModelTerminalError, type ModelError } from './errors.ts';
import { IncompleteStreamError } from './anthropic-stream.ts';

/** What the caller knows about the attempt that failed. */
export interface AttemptContext {
  /** The attempt's own time limit fired. */
  timedOut: boolean;
  /** The caller's signal aborted. */
  callerAborted: boolean;
  timeoutMs: number;
  now: number;
}

const RETRIED_STATUS: Readonly<Record<number, ModelErrorReason>> = {
  408: ModelErrorReason.requestTimeout,
  409: ModelErrorReason.conflict,
  429: ModelErrorReason.rateLimited,
  529: ModelErrorReason.overloaded,
};
const TERMINAL_STATUS: Readonly<Record<number, ModelErrorReason>> = {
  400: ModelErrorReason.invalidRequest,
  401: ModelErrorReason.authentication,
  403: ModelErrorReason.permission,
  404: ModelErrorReason.notFound,
  413: ModelErrorReason.requestTooLarge,
};
/** Error types an SSE `error` event may carry mid-stream (no HTTP status then). */
const RETRIED_STREAM_TYPES: Readonly<Record<string, ModelErrorReason>> = {
  overloaded_error: ModelErrorReason.overloaded,
  api_error: ModelErrorReason.serverError,
  rate_limit_error: ModelErrorReason.rateLimited,
  timeout_error: ModelErrorReason.timeout,
};

/** Socket-level failures while reading a body that was already under way. */
function isBodyInterrupted(error: Error): boolean {
  const cause = (error as { cause?: { code?: unknown } }).cause;
  const code = typeof cause?.code === 'string' ? cause.code : '';
  return (
    error instanceof SyntaxError ||
    (error instanceof TypeError && error.message === 'terminated') ||
    code.startsWith('UND_ERR') ||
    code === 'ECONNRESET'
  );
}

/** Maps a thrown value of one attempt to a typed model error. Never throws. */
export function classifyAnthropicError(error: unknown, ctx: AttemptContext): ModelError {
  if (isModelError(error)) return error;
  // Checked before the error's own type: an abort surfaces as several different SDK errors.
  if (ctx.callerAborted) {
    return new ModelTerminalError(ModelErrorReason.aborted, 'model call aborted by the caller', { cause: error });
  }
  if (ctx.timedOut || error instanceof APIConnectionTimeoutError) {
    return new ModelRetryableError(ModelErrorReason.timeout, `model call attempt timed out after ${ctx.timeoutMs} ms`, {
      cause: error,
    });
  }
  if (error instanceof IncompleteStreamError) {
    return new ModelRetryableError(ModelErrorReason.streamCut, `model reply cut short: ${error.message}`, { cause: error });
  }
  if (error instanceof APIUserAbortError) {
    return new ModelTerminalError(ModelErrorReason.aborted, 'model call aborted', { cause: error });
  }
  if (error instanceof APIConnectionError) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    return new ModelRetryableError(ModelErrorReason.connection, `cannot reach the model API${cause}`, { cause: error });
  }
  if (error instanceof APIError) return classifyApiError(error, ctx.now);
  if (error instanceof Error && isBodyInterrupted(error)) {
    return new ModelRetryableError(ModelErrorReason.streamCut, `model reply interrupted: ${error.message}`, { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  const kind = error instanceof AnthropicError ? 'Anthropic SDK error' : 'unexpected error';
  return new ModelTerminalError(ModelErrorReason.unexpected, `${kind} during model call: ${message}`, { cause: error });
}

function classifyApiError(error: APIError, now: number): ModelError {
  const status = error.status;
  const type = error.type ?? undefined;
  const apiMessage = error.apiMessage ?? error.message;
  const details = {
    status,
    providerType: type,
    requestId: error.requestID ?? undefined,
    retryAfterMs: retryAfterMsOf(error.headers, now),
    cause: error,
  };
  const label = status === undefined ? `Anthropic API stream error ${type ?? ''}`.trim() : `Anthropic API ${status}`;
  const message = `${label}${type && status !== undefined ? ` ${type}` : ''}: ${apiMessage}`;
  if (status === undefined) {
    const reason = type ? RETRIED_STREAM_TYPES[type] : undefined;
    return reason
      ? new ModelRetryableError(reason, message, details)
      : new ModelTerminalError(ModelErrorReason.unexpected, message, details);
  }
  const retried = RETRIED_STATUS[status] ?? (status >= 500 ? ModelErrorReason.serverError : undefined);
  if (retried) return new ModelRetryableError(retried, message, details);
  return new ModelTerminalError(TERMINAL_STATUS[status] ?? ModelErrorReason.clientError, message, details);
}
