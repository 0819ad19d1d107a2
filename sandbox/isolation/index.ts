/**
 * Isolation levels for tool execution. This folder provides the strongest one, `bwrap`: hardened
 * bubblewrap sandboxes for untrusted and model-written code, a JavaScript runner on top of them, and a
 * warm pool that keeps the per-call overhead small.
 */
export { bwrapAvailable, requireBwrap, runInBwrap, type BwrapAvailability, type RunInBwrapOptions } from './bwrap.ts';
export { SANDBOX_ID } from './bwrap-args.ts';
export {
  SandboxCodeError,
  SandboxCpuLimitError,
  SandboxError,
  SandboxErrorReason,
  SandboxExitError,
  SandboxMemoryLimitError,
  SandboxOutputLimitError,
  SandboxPoolClosedError,
  SandboxSetupError,
  SandboxSpecError,
  SandboxTimeoutError,
  SandboxUnavailableError,
} from './errors.ts';
export {
  MAX_JOB_BYTES,
  runJavaScript,
  type JavaScriptJob,
  type JavaScriptResult,
  type RunJavaScriptOptions,
} from './javascript-runner.ts';
export {
  ADDRESS_SPACE_HEADROOM_BYTES,
  compileSandboxLimits,
  defaultSandboxLimits,
  sandboxLimitsSchema,
  type SandboxLimits,
} from './limits.ts';
export { DEFAULT_BWRAP_PATH, type SandboxHostOptions } from './sandbox-process.ts';
export { DENIED_SYSCALLS } from './seccomp.ts';
export { sandboxFailure, type SandboxResult } from './sandbox-result.ts';
export { baseSandboxEnv, compileSandboxSpec, SCRATCH_DIR, type CompiledSandboxSpec, type SandboxSpec } from './sandbox-spec.ts';
export { createWarmPool, type WarmPool, type WarmPoolOptions, type WarmPoolStats } from './warm-pool.ts';
