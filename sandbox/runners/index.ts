/**
 * Runs a tool's own `run` at the isolation level it declares: `inline` in the host process,
 * `thread` in a worker thread with a heap limit and a wall clock, `bwrap` in a hardened bubblewrap
 * sandbox. Never at a weaker level than declared.
 */
export {
  compileToolRunnerOptions,
  createToolRunner,
  type CompiledToolRunnerOptions,
  type ToolRunner,
  type ToolRunnerOptions,
  type ToolRunnerStats,
} from './tool-runner.ts';
export { createThreadRunner, type IsolatedRunStats, type ThreadRunnerOptions, type ThreadToolRunner } from './thread-runner.ts';
export { createBwrapToolRunner, toolSandboxLimits, type BwrapToolRunner, type BwrapToolRunnerOptions } from './bwrap-tool-runner.ts';
export {
  BwrapTimeoutError,
  ThreadExitError,
  ThreadMemoryLimitError,
  ThreadTimeoutError,
  ToolModuleError,
  ToolRunnerClosedError,
  ToolRunnerError,
  ToolRunnerErrorReason,
  ToolThrewError,
  UnknownIsolationError,
  type ThrownError,
} from './errors.ts';
