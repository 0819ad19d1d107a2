import { ErrorCode, TerminalError } from '../common/errors.ts';

/**
 * A side-effecting call whose runner died mid-call, that the tool cannot reconcile and that is
 * not safe to repeat. It is never retried blindly; a human must decide.
 */
export class UnknownOutcomeError extends TerminalError {
  override readonly name = 'UnknownOutcomeError';
  constructor(
    readonly key: string,
    tool: string,
    /** The ledger attempt whose runner vanished: a human's go-ahead to repeat it names this attempt. */
    readonly attempt: number,
  ) {
    super(
      ErrorCode.unknownOutcome,
      `the outcome of "${tool}" call ${key} is unknown: its runner stopped mid-call, the tool has no reconcile() and is irreversible, so it is not repeated`,
    );
  }
}

/** A recorded failure returned again on replay, with its original code. */
export class RecordedEffectError extends TerminalError {
  override readonly name = 'RecordedEffectError';
  constructor(readonly wireCode: string, message: string) {
    super(ErrorCode.effectFailed, message);
  }
  override toWire() {
    return { code: this.wireCode, message: this.message };
  }
}

/**
 * Thrown inside an effect that the supervisor did not allow (a limit was reached). It never
 * reaches the machine: the task is stopped or parked by the runner instead.
 */
export class LimitReachedSignal extends Error {
  override readonly name = 'LimitReachedSignal';
}

/**
 * Thrown inside the tools effect when a call needs an approver. It never reaches the machine:
 * the runner parks the task with an approval request for this call.
 */
export class ApprovalNeededSignal extends Error {
  override readonly name = 'ApprovalNeededSignal';
  constructor(
    readonly callKey: string,
    readonly tool: import('../sandbox/tool.ts').Tool<any, any>,
    readonly args: unknown,
    readonly need: import('./approval-policy.ts').ApprovalNeed,
    /** What the model wrote alongside the call. */
    readonly rationale: string | undefined,
    /** Set when a person must settle an unknown outcome (this attempt's runner vanished). */
    readonly unknownOutcome?: { attempt: number },
  ) {
    super(`call ${callKey} of "${tool.name}" needs an approver`);
  }
}

/**
 * Thrown inside an effect that must wait for something outside the task (child tasks of a
 * delegation). It never reaches the machine: the runner parks the task, and it is woken when
 * what it waits for happens; the effect then runs again and finds it.
 */
export class WaitSignal extends Error {
  override readonly name = 'WaitSignal';
  constructor(readonly waiting: NonNullable<import('../runtime/wire.ts').SnapshotEnvelope['waiting']>) {
    super(`waiting for ${waiting.reason}`);
  }
}

/**
 * Thrown by the tools effect once a hand-off's new task ended: the runner ends this task with
 * that outcome (the new task's answer is this task's answer).
 */
export class HandoffSignal extends Error {
  override readonly name = 'HandoffSignal';
  constructor(
    readonly to: string,
    readonly outcome: import('../runtime/wire.ts').TaskOutcome,
  ) {
    super(`handed over to ${to}`);
  }
}
