/**
 * The trusted script a `thread` worker runs (`new Worker(source, { eval: true })`). At once it
 * registers tsx (so TypeScript modules load), imports the tool's module, finds the tool and says it
 * is `loaded`; then it waits for exactly one job message, runs the tool, posts one outcome message,
 * and ends. A load failure is kept and reported when the job arrives, so a waiting worker never
 * fails on its own.
 */
import type { ThrownError } from './errors.ts';
import { FIND_TOOL_SOURCE, LOAD_FAILED_ERROR, NOT_EXPORTED_ERROR, THROWN_SOURCE } from './tool-module.ts';

/** What the host hands a worker at start (`workerData`). */
export interface ThreadWorkerData {
  /** The tool's defining module (file URL). */
  module: string;
  /** The tool's name. */
  name: string;
  /** File URL of tsx's ESM API, or `null` to load JavaScript modules only. */
  tsx: string | null;
}

/** The one job a worker takes. */
export interface ThreadJob {
  input: unknown;
  key: string;
  taskId: string;
}

/** The one message a worker posts back. */
export type ThreadOutcome = { type: 'ok'; value: unknown } | { type: 'threw'; error: ThrownError };

/** Posted once the tool's module has loaded (or failed to): the call's wall clock starts then. */
export interface ThreadLoaded {
  type: 'loaded';
}

/** CommonJS source of the worker. ES2019, dependency-free. */
export const THREAD_WORKER_SOURCE = String.raw`'use strict';
const { parentPort, workerData } = require('node:worker_threads');
${FIND_TOOL_SOURCE}
${THROWN_SOURCE}
const loading = (async () => {
  let namespace;
  try {
    if (workerData.tsx !== null) (await import(workerData.tsx)).register();
    namespace = await import(workerData.module);
  } catch (e) {
    const error = thrown(e);
    throw { name: '${LOAD_FAILED_ERROR}', message: 'cannot be loaded: ' + error.name + ': ' + error.message, stack: error.stack };
  }
  const tool = findTool(namespace, workerData.name);
  if (tool === undefined) {
    throw { name: '${NOT_EXPORTED_ERROR}', message: 'exports no tool named "' + workerData.name + '" (directly or in an exported agent\'s tools)' };
  }
  return tool;
})();
loading.then(
  () => parentPort.postMessage({ type: 'loaded' }),
  () => parentPort.postMessage({ type: 'loaded' }), // the failure is reported when the job arrives
);
parentPort.once('message', async (job) => {
  let tool;
  try {
    tool = await loading;
  } catch (e) {
    parentPort.postMessage({ type: 'threw', error: e });
    return;
  }
  const controller = new AbortController();
  let outcome;
  try {
    outcome = { type: 'ok', value: await tool.run(job.input, { key: job.key, taskId: job.taskId, signal: controller.signal }) };
  } catch (e) {
    outcome = { type: 'threw', error: thrown(e) };
  }
  try {
    parentPort.postMessage(outcome);
  } catch (e) {
    parentPort.postMessage({ type: 'threw', error: thrown(e) }); // the output cannot be cloned
  }
});
`;
