/**
 * What other troupe folders (the bundled tools, tests) may build on but users may not: the
 * registration of tools that sandbox themselves, the bootstraps, and the module lookup.
 */
export { registerSelfSandboxed, selfSandboxedFactory, type SelfSandboxedRun, type SelfSandboxHost } from './self-sandboxed.ts';
export { TOOL_BOOTSTRAP } from './tool-bootstrap.ts';
export { createToolBundler, type ToolBundle, type ToolBundler } from './tool-bundle.ts';
export { FIND_TOOL_SOURCE, LOAD_FAILED_ERROR, moduleErrorOf, moduleOf, NOT_EXPORTED_ERROR, THROWN_SOURCE } from './tool-module.ts';
export { THREAD_WORKER_SOURCE, type ThreadJob, type ThreadOutcome, type ThreadWorkerData } from './thread-worker.ts';
