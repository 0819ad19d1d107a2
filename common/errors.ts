/**
 * The error vocabulary shared by every troupe folder.
 *
 * Every error troupe raises is a {@link TroupeError} with a stable `code` from {@link ErrorCode}.
 * Subclasses say whether trying again can help: {@link TerminalError} never, {@link RetryableError}
 * maybe. On the wire an error is always `{ code, message }` ({@link toWireError}).
 */

/** Stable machine-readable error codes. Wire consumers may switch on these. */
export const ErrorCode = {
  // configuration and set-up
  invalidConfig: 'invalid_config',
  natsServerMissing: 'nats_server_missing',
  // task intake
  invalidJson: 'invalid_json',
  invalidTask: 'invalid_task',
  invalidTaskId: 'invalid_task_id',
  unknownAgent: 'unknown_agent',
  invalidInput: 'invalid_input',
  unknownPrincipal: 'unknown_principal',
  payloadTooLarge: 'payload_too_large',
  poisonMessage: 'poison_message',
  // task execution
  machineVersionMismatch: 'machine_version_mismatch',
  snapshotCorrupt: 'snapshot_corrupt',
  snapshotTooLarge: 'snapshot_too_large',
  revisionConflict: 'revision_conflict',
  effectInFlight: 'effect_in_flight',
  machineError: 'machine_error',
  restartIntensityExceeded: 'restart_intensity_exceeded',
  cancelled: 'cancelled',
  limitExceeded: 'limit_exceeded',
  invalidDecision: 'invalid_decision',
  staleDecision: 'stale_decision',
  unknownApprover: 'unknown_approver',
  approverNotAllowed: 'approver_not_allowed',
  badSignature: 'bad_signature',
  argsHashMismatch: 'args_hash_mismatch',
  invalidEdit: 'invalid_edit',
  approvalExpired: 'approval_expired',
  duplicateVote: 'duplicate_vote',
  // effects
  effectFailed: 'effect_failed',
  unknownOutcome: 'unknown_outcome',
  unknownTool: 'unknown_tool',
  invalidToolArguments: 'invalid_tool_arguments',
  invalidToolOutput: 'invalid_tool_output',
  toolFailed: 'tool_failed',
  toolTimeout: 'tool_timeout',
  toolUnavailable: 'tool_unavailable',
  permissionDenied: 'permission_denied',
  // model
  modelError: 'model_error',
  // generic
  internal: 'internal',
  notFound: 'not_found',
  timeout: 'timeout',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The wire form of an error: what senders, watchers and the audit log see. */
export interface WireError {
  code: string;
  message: string;
}

/** Base class of every error troupe raises on purpose. */
export class TroupeError extends Error {
  override readonly name: string = 'TroupeError';
  readonly code: ErrorCode;
  /** Whether repeating the same operation later may succeed. */
  readonly retryable: boolean = false;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  toWire(): WireError {
    return { code: this.code, message: this.message };
  }
}

/** An error that repeating the operation cannot fix (bad input, permission, schema). */
export class TerminalError extends TroupeError {
  override readonly name: string = 'TerminalError';
}

/** An error that may go away on its own (timeouts, overload, a lost connection). */
export class RetryableError extends TroupeError {
  override readonly name: string = 'RetryableError';
  override readonly retryable = true;
}

/** Normalises anything caught into an `Error`, once, at the `catch` site. */
export function ensureError(value: unknown): Error {
  if (value instanceof Error) return value;
  let text: string;
  try {
    text = typeof value === 'string' ? value : JSON.stringify(value);
  } catch {
    text = String(value);
  }
  return new Error(`non-error thrown: ${text}`);
}

/** The `{code, message}` form of any caught value; unknown errors become `internal`. */
export function toWireError(value: unknown): WireError {
  if (value instanceof TroupeError) return value.toWire();
  const err = ensureError(value);
  return { code: ErrorCode.internal, message: err.message };
}
