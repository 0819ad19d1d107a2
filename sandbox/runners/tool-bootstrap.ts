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
import { BOOTSTRAP_BAD_JOB_EXIT, END_TAG, RESULT_TAG } from '../isolation/internal.ts';
import { FIND_TOOL_SOURCE, LOAD_FAILED_ERROR, NOT_EXPORTED_ERROR, THROWN_SOURCE } from './tool-module.ts';

/** CommonJS source, passed to `node -e`. Kept ES2019 and dependency-free. */
export const TOOL_BOOTSTRAP = String.raw`'use strict';
const fs = require('fs');
const write = process.stdout.write.bind(process.stdout);
const writeErr = process.stderr.write.bind(process.stderr);
const exit = process.exit.bind(process);
const moduleUrl = process.argv[1];
const toolName = process.argv[2];
const chunks = [];
let marker;
let settled = false;
let exitedOnPurpose = false;
process.exit = function (code) { exitedOnPurpose = true; return exit(code); };
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
// The event loop emptied while the tool's promise was still pending: say so rather than exit 0.
process.on('exit', () => {
  if (settled || exitedOnPurpose || marker === undefined) return;
  const outcome = { ok: false, error: { name: 'UnsettledError', message: 'the tool never finished: its promise was still pending when nothing was left to run' } };
  try { fs.writeSync(1, '\n' + marker + '${RESULT_TAG}' + JSON.stringify(outcome) + '\n' + marker + '${END_TAG}\n'); } catch (_) {}
  try { fs.writeSync(2, '\n' + marker + '${END_TAG}\n'); } catch (_) {}
  process.exitCode = 1;
});
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  let job;
  try {
    job = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (_) {
    process.stderr.write('troupe tool bootstrap: the job on stdin is not JSON\n');
    exit(${BOOTSTRAP_BAD_JOB_EXIT});
    return;
  }
  chunks.length = 0;
  marker = String(job.marker);
  const report = (outcome, status) => {
    settled = true;
    const end = marker + '${END_TAG}\n';
    write('\n' + marker + '${RESULT_TAG}' + JSON.stringify(outcome) + '\n' + end, () => writeErr('\n' + end, () => exit(status)));
  };
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
});
`;
