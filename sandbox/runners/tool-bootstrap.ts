/**
 * The trusted bootstrap of a `bwrap` tool call, run by Node inside the sandbox as
 * `node -e TOOL_BOOTSTRAP <bundle URL> <tool name>`. At once it imports the tool's bundled module and
 * finds the tool (so a warm process has paid for that before its job arrives); then it reads exactly
 * one JSON job `{ marker, input, key, taskId }` from stdin (until EOF), runs
 * `tool.run(input, { key, taskId, signal })`, and reports with the marker protocol of the JavaScript
 * bootstrap (see `../isolation/javascript-bootstrap.ts`): one result line, then the end lines on
 * stdout and stderr, then exit. It never takes a second job.
 *
 * A load failure is kept and reported when the job arrives, as an error named
 * {@link LOAD_FAILED_ERROR} or {@link NOT_EXPORTED_ERROR}, so a waiting process never dies on its own.
 * The signal handed to the tool never aborts: the host ends a call by killing the sandbox.
 */
import { bootstrapSource } from '../isolation/internal.ts';
import { FIND_TOOL_SOURCE, LOAD_FAILED_ERROR, NOT_EXPORTED_ERROR, THROWN_SOURCE } from './tool-module.ts';

/** The bootstrap of one tool call in a sandbox (see above). */
export const TOOL_BOOTSTRAP = bootstrapSource(
  'tool',
  'troupe tool bootstrap',
  String.raw`const moduleUrl = process.argv[1];
const toolName = process.argv[2];
${FIND_TOOL_SOURCE}
${THROWN_SOURCE}
const loading = import(moduleUrl).then(
  (namespace) => {
    const tool = findTool(namespace, toolName);
    if (tool !== undefined) return tool;
    throw { ok: false, error: { name: '${NOT_EXPORTED_ERROR}', message: 'exports no tool named "' + toolName + '" (directly or in an exported agent\'s tools)' } };
  },
  (e) => {
    const error = thrown(e);
    throw { ok: false, error: { name: '${LOAD_FAILED_ERROR}', message: 'cannot be loaded: ' + error.name + ': ' + error.message, stack: error.stack } };
  },
);
loading.catch(() => {}); // reported when the job arrives
function runJob(job, report) {
  loading.then(
    (tool) => {
      const signal = new AbortController().signal;
      return Promise.resolve()
        .then(() => tool.run(job.input, { key: String(job.key), taskId: String(job.taskId), signal }))
        .then(
          (value) => {
            if (value === undefined) return report({ ok: true }, 0);
            let json;
            try { json = JSON.stringify(value); } catch (_) { json = undefined; }
            report(json === undefined ? { ok: true, text: String(value) } : { ok: true, json }, 0);
          },
          (e) => report({ ok: false, error: thrown(e) }, 1),
        );
    },
    (failure) => report(failure, 1),
  );
}`,
);
