/**
 * The pieces of the `bwrap` level that other troupe folders (the tool worker, benchmarks, tests) may
 * build on, but that are not part of the public API: the raw sandbox process, the bwrap command line,
 * the seccomp program, the JavaScript job protocol, and pools of any command that follows it.
 */
export { bwrapArguments, hostRootLayout, type RootEntry } from './bwrap-args.ts';
export { inheritableDescriptors } from './inherited-fds.ts';
export { BOOTSTRAP_BAD_JOB_EXIT, bootstrapSource, END_TAG, JAVASCRIPT_BOOTSTRAP, RESULT_TAG, type BootstrapOutcome } from './javascript-bootstrap.ts';
export {
  decodeJavaScriptResult,
  encodeJavaScriptJob,
  encodeSandboxJob,
  heapMiBFor,
  javaScriptSandboxSpec,
  nodeSandboxSpec,
  type EncodedJob,
} from './javascript-runner.ts';
export { PRLIMIT_PATH, prlimitPrefix } from './limits.ts';
export { killSandboxInit, sandboxInitOf, type SandboxInit } from './sandbox-init.ts';
export { spawnSandbox, type SandboxProcess } from './sandbox-process.ts';
export { decodeBwrapStatus, looksOutOfMemory } from './sandbox-result.ts';
export { DENIED_SYSCALLS, seccompProgram } from './seccomp.ts';
export { createSandboxPool, type SandboxJobCodec, type SandboxPool, type SandboxPoolOptions } from './warm-pool.ts';
