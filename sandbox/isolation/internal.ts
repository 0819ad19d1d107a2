/**
 * The pieces of the `bwrap` level that other troupe folders (the tool worker, benchmarks, tests) may
 * build on, but that are not part of the public API: the raw sandbox process, the bwrap command line,
 * the seccomp program, and the JavaScript job protocol.
 */
export { bwrapArguments, hostRootLayout, type RootEntry } from './bwrap-args.ts';
export { inheritableDescriptors } from './inherited-fds.ts';
export { JAVASCRIPT_BOOTSTRAP, type BootstrapOutcome } from './javascript-bootstrap.ts';
export { decodeJavaScriptResult, encodeJavaScriptJob, heapMiBFor, javaScriptSandboxSpec, type EncodedJob } from './javascript-runner.ts';
export { PRLIMIT_PATH, prlimitPrefix } from './limits.ts';
export { spawnSandbox, type SandboxProcess } from './sandbox-process.ts';
export { decodeBwrapStatus, looksOutOfMemory } from './sandbox-result.ts';
export { DENIED_SYSCALLS, seccompProgram } from './seccomp.ts';
