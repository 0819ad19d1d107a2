/**
 * Anthropic-shaped error responses: `{"type":"error","error":{"type":...,"message":...}}` with the
 * status codes and headers of the real Messages API.
 */
import type { ServerResponse } from 'node:http';

/** The `error.type` the real API sends for each status. */
export const ERROR_TYPE_BY_STATUS: Readonly<Record<number, string>> = Object.freeze({
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  408: 'timeout_error',
  409: 'conflict_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  504: 'timeout_error',
  529: 'overloaded_error',
});

const DEFAULT_MESSAGE_BY_TYPE: Readonly<Record<string, string>> = {
  invalid_request_error: 'Invalid request.',
  authentication_error: 'invalid x-api-key',
  billing_error: 'Your credit balance is too low to access the Anthropic API.',
  permission_error: 'Your API key does not have permission to use the specified resource.',
  not_found_error: 'The requested resource could not be found.',
  timeout_error: 'Request timed out.',
  conflict_error: 'Conflict.',
  request_too_large: 'Request exceeds the maximum allowed number of bytes.',
  rate_limit_error: 'Number of request tokens has exceeded your per-minute rate limit.',
  api_error: 'Internal server error',
  overloaded_error: 'Overloaded',
};

/** An error reply the simulator sends: status, Anthropic error type, message and extra headers. */
export interface ApiFailure {
  status: number;
  type: string;
  message: string;
  headers?: Record<string, string>;
}

/** Builds an {@link ApiFailure}, deriving the type and message from the status when not given. */
export function apiFailure(
  status: number,
  message?: string,
  type?: string,
  headers?: Record<string, string>,
): ApiFailure {
  const errorType = type ?? ERROR_TYPE_BY_STATUS[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
  return { status, type: errorType, message: message ?? DEFAULT_MESSAGE_BY_TYPE[errorType] ?? errorType, headers };
}

/** The JSON body of an error reply, identical in shape to the real API's. */
export function errorBody(failure: Pick<ApiFailure, 'type' | 'message'>): string {
  return JSON.stringify({ type: 'error', error: { type: failure.type, message: failure.message } });
}

/** Writes `failure` as a complete JSON response with a `request-id` header. */
export function sendApiError(res: ServerResponse, failure: ApiFailure, requestId: string): void {
  const body = errorBody(failure);
  res.writeHead(failure.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'request-id': requestId,
    ...failure.headers,
  });
  res.end(body);
}
