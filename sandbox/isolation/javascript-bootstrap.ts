/**
 * The trusted bootstrap that runs inside a sandboxed Node process: it reads exactly one JSON job
 * `{ marker, code, input }` from stdin (until EOF), runs `code` as the body of an async function
 * `(input, require)`, writes one result line `<marker>result:<json>` to stdout, then the end line
 * `<marker>end` to stdout and to stderr, and exits. The end lines come after everything the code
 * wrote, so once both are read the job's output is complete and the host need not wait for the
 * sandbox to tear down. It never takes a second job, so nothing the code leaves behind can reach
 * another call.
 *
 * The result line is data the sandboxed code could imitate; it is only ever the code's own result.
 */

/** Exit status of the bootstrap when the job on stdin is not readable JSON. */
export const BOOTSTRAP_BAD_JOB_EXIT = 70;

/** What follows the marker on the result line. */
export const RESULT_TAG = 'result:';
/** What follows the marker on the end lines. */
export const END_TAG = 'end';

/**
 * The outcome a bootstrap reports on its result line. Of a thrown error, a bootstrap may also report
 * the error's own `code` and `retryable` (the tool bootstrap does; this one does not).
 */
export type BootstrapOutcome =
  | { ok: true; json?: string; text?: string }
  | { ok: false; error: { name: string; message: string; stack?: string; code?: unknown; retryable?: unknown } };

/**
 * The job protocol every sandboxed bootstrap speaks, around the script's own `body`: read one JSON
 * job from stdin, call the body's `runJob(job, report)`, and write the result and end lines (see
 * above); an event loop that empties before `report` is called is reported as unsettled. `what`
 * names what runs ("code", "tool") in that message, `label` the script in its own errors. CommonJS
 * source for `node -e`, kept ES2019 and dependency-free.
 */
export function bootstrapSource(what: string, label: string, body: string): string {
  return String.raw`'use strict';
const fs = require('fs');
const write = process.stdout.write.bind(process.stdout);
const writeErr = process.stderr.write.bind(process.stderr);
const exit = process.exit.bind(process);
const chunks = [];
let marker;
let settled = false;
let exitedOnPurpose = false;
process.exit = function (code) { exitedOnPurpose = true; return exit(code); };
${body}
// The event loop emptied while the ${what}'s promise was still pending: say so rather than exit 0.
process.on('exit', () => {
  if (settled || exitedOnPurpose || marker === undefined) return;
  const outcome = { ok: false, error: { name: 'UnsettledError', message: 'the ${what} never finished: its promise was still pending when nothing was left to run' } };
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
    process.stderr.write('${label}: the job on stdin is not JSON\n');
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
  runJob(job, report);
});
`;
}

/** The bootstrap of model-written JavaScript: runs `job.code` as the body of an async function `(input, require)`. */
export const JAVASCRIPT_BOOTSTRAP = bootstrapSource(
  'code',
  'troupe bootstrap',
  String.raw`const AsyncFunction = (async function () {}).constructor;
function thrown(e) {
  if (e instanceof Error) return { ok: false, error: { name: String(e.name), message: String(e.message), stack: String(e.stack) } };
  let text;
  try { text = JSON.stringify(e); } catch (_) { text = undefined; }
  return { ok: false, error: { name: 'NonError', message: text === undefined ? String(e) : text } };
}
function runJob(job, report) {
  let fn;
  try {
    fn = new AsyncFunction('input', 'require', String(job.code));
  } catch (e) {
    report(thrown(e), 1);
    return;
  }
  fn(job.input, require).then(
    (value) => {
      if (value === undefined) return report({ ok: true }, 0);
      let json;
      try { json = JSON.stringify(value); } catch (_) { json = undefined; }
      report(json === undefined ? { ok: true, text: String(value) } : { ok: true, json }, 0);
    },
    (e) => report(thrown(e), 1),
  );
}`,
);
