/**
 * Model-written JavaScript, run by Node inside a bwrap sandbox: no environment, no network, no host
 * files beyond the read-only system directories Node itself needs.
 */
import { randomUUID } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import type { RunInBwrapOptions } from './bwrap.ts';
import {
  SandboxCodeError,
  SandboxCpuLimitError,
  SandboxMemoryLimitError,
  SandboxOutputLimitError,
  SandboxSpecError,
  SandboxTimeoutError,
} from './errors.ts';
import { END_TAG, JAVASCRIPT_BOOTSTRAP, RESULT_TAG, type BootstrapOutcome } from './javascript-bootstrap.ts';
import { compileSandboxLimits, type SandboxLimits } from './limits.ts';
import { spawnSandbox } from './sandbox-process.ts';
import { looksOutOfMemory, sandboxFailure, type SandboxResult } from './sandbox-result.ts';
import { compileSandboxSpec, type SandboxSpec } from './sandbox-spec.ts';

/** One snippet of JavaScript to run. */
export interface JavaScriptJob {
  /**
   * The body of an async function `(input, require) => ...`: it may `await`, `return` a value and
   * print with `console.log`.
   */
  code: string;
  /** JSON data handed to the code as `input`. @default undefined */
  input?: unknown;
}

/** What a snippet that ran to completion produced. */
export interface JavaScriptResult {
  /**
   * The code's result as JSON data: its return value when it returned one; otherwise its stdout
   * parsed as JSON when that is valid JSON; otherwise `undefined`. A return value JSON cannot
   * represent is given as its `String()`.
   */
  value: unknown;
  /** Where `value` came from. */
  valueFrom: 'return' | 'return-string' | 'stdout' | 'none';
  /** What the code printed on stdout (the bootstrap's result line removed). */
  stdout: string;
  stderr: string;
  durationMs: number;
}

const MiB = 1024 * 1024;

/** Largest job (code plus input, as JSON) accepted. */
export const MAX_JOB_BYTES = 4 * 1024 * 1024;

/** Heap for V8's old space: half the memory limit, leaving the rest to buffers and the runtime. */
export function heapMiBFor(limits: Pick<SandboxLimits, 'memoryBytes'>): number {
  return Math.max(8, Math.floor(limits.memoryBytes / MiB / 2));
}

/**
 * V8's semi-space size (the young generation is three of them): 1/64 of the memory limit, from 1 to
 * 8 MiB, so that the whole heap stays within about 5/8 of the limit whatever V8's own defaults are.
 */
export function semiSpaceMiBFor(limits: Pick<SandboxLimits, 'memoryBytes'>): number {
  return Math.min(8, Math.max(1, Math.floor(limits.memoryBytes / MiB / 64)));
}

/**
 * Stack of each thread of a sandboxed Node (RLIMIT_STACK). V8 bounds JavaScript recursion at about
 * 1 MiB of stack on every thread, so 2 MiB is room enough; at the usual 8 MiB, Node's five threads
 * reserve 40 MiB of private memory before any code runs.
 */
export const NODE_THREAD_STACK_BYTES = 2 * MiB;

/**
 * Private writable memory a sandboxed Node reserves for itself, granted on top of `memoryBytes`:
 * its thread stacks (libuv's four pool threads take 8 MiB each whatever RLIMIT_STACK says, the
 * others {@link NODE_THREAD_STACK_BYTES}), its allocator's arenas and the code it loads, plus room
 * for V8's collector to work at the heap limit. Without it the runtime's own reservations would use
 * most of a tool's limit before the tool ran, and the kernel would refuse an allocation long before
 * V8's heap limit was reached, at a point where Node may crash without saying why (SIGSEGV).
 */
export const NODE_RUNTIME_RESERVE_BYTES = 80 * MiB;

let nodeBinary: string | undefined;

function resolveNode(): string {
  nodeBinary ??= realpathSync(process.execPath);
  return nodeBinary;
}

/**
 * A sandbox spec that starts the running Node binary on a trusted `script` (`node -e`), with `args`
 * after it (`process.argv[1]` onwards). The binary's directory is bound read-only when it is not under
 * `/usr`; no environment beyond the base; `binds` are added to the binary's own.
 *
 * Memory: V8's heap is sized from the memory limit (old space {@link heapMiBFor}, young generation
 * {@link semiSpaceMiBFor}) and Node's own reservations are granted on top of it
 * ({@link NODE_RUNTIME_RESERVE_BYTES}, with {@link NODE_THREAD_STACK_BYTES} stacks), so a heap that
 * outgrows its limit is always reported by V8 itself ("JavaScript heap out of memory") while the
 * kernel still has memory to give, and `memoryBytes` is what the code may use, not the runtime.
 */
export function nodeSandboxSpec(
  script: string,
  args: readonly string[] = [],
  options: { limits?: Partial<SandboxLimits>; binds?: { ro?: readonly string[]; rw?: readonly string[] } } = {},
): SandboxSpec {
  const node = resolveNode();
  const compiled = compileSandboxLimits(options.limits);
  const ro = [...(node.startsWith('/usr/') ? [] : [dirname(node)]), ...(options.binds?.ro ?? [])];
  const rw = options.binds?.rw ?? [];
  return {
    command: [node, `--max-old-space-size=${heapMiBFor(compiled)}`, `--max-semi-space-size=${semiSpaceMiBFor(compiled)}`, '-e', script, ...args],
    binds: { ...(ro.length > 0 ? { ro } : {}), ...(rw.length > 0 ? { rw } : {}) },
    limits: compiled,
    runtime: { reservedBytes: NODE_RUNTIME_RESERVE_BYTES, stackBytes: NODE_THREAD_STACK_BYTES },
  };
}

/** The sandbox spec that starts Node on the JavaScript bootstrap (see {@link nodeSandboxSpec}). */
export function javaScriptSandboxSpec(limits?: Partial<SandboxLimits>): SandboxSpec {
  return nodeSandboxSpec(JAVASCRIPT_BOOTSTRAP, [], limits === undefined ? {} : { limits });
}

/** A job ready for a bootstrap's stdin, the marker of its result line, and its end line. */
export interface EncodedJob {
  stdin: string;
  marker: string;
  /** The end line the bootstrap writes last on stdout and stderr (see `SandboxStartOptions.settleOn`). */
  settleOn: string;
}

/**
 * Encodes the JSON job of any bootstrap that follows the marker protocol: `fields` plus a fresh,
 * unguessable `marker`.
 * @throws SandboxSpecError if the job is not JSON or larger than {@link MAX_JOB_BYTES}.
 */
export function encodeSandboxJob(fields: Readonly<Record<string, unknown>>): EncodedJob {
  const marker = `\u001etroupe-result:${randomUUID()}:`;
  let stdin: string;
  try {
    stdin = JSON.stringify({ ...fields, marker });
  } catch (e: unknown) {
    throw new SandboxSpecError(`input is not JSON: ${String(e)}`);
  }
  if (Buffer.byteLength(stdin) > MAX_JOB_BYTES) throw new SandboxSpecError(`job is larger than ${MAX_JOB_BYTES} bytes`);
  return { stdin, marker, settleOn: `${marker}${END_TAG}\n` };
}

/** Encodes a JavaScript job with a fresh, unguessable result marker. @throws SandboxSpecError if too large or not JSON. */
export function encodeJavaScriptJob(job: JavaScriptJob): EncodedJob {
  if (typeof job.code !== 'string') throw new SandboxSpecError('code must be a string');
  return encodeSandboxJob({ code: job.code, input: job.input });
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

function readOutcome(stdout: string, marker: string): { outcome: BootstrapOutcome; codeStdout: string } | undefined {
  const tag = `\n${marker}${RESULT_TAG}`;
  const at = stdout.lastIndexOf(tag);
  if (at < 0) return undefined;
  const line = stdout.slice(at + tag.length).split('\n', 1)[0] ?? '';
  const parsed = parseJson(line);
  if (!parsed.ok || typeof parsed.value !== 'object' || parsed.value === null) return undefined;
  return { outcome: parsed.value as BootstrapOutcome, codeStdout: stdout.slice(0, at) };
}

/**
 * Judges a finished bootstrap run. Limits come first (a killed run's partial output proves nothing);
 * then the code's own outcome, which is authoritative when present (the run may have been settled on
 * its end lines, before any exit status); then the process's exit.
 * @throws the typed SandboxError for every way the run can end badly.
 */
export function decodeJavaScriptResult(result: SandboxResult, limits: Readonly<SandboxLimits>, marker: string): JavaScriptResult {
  const failure = sandboxFailure(result, limits);
  if (failure instanceof SandboxTimeoutError || failure instanceof SandboxOutputLimitError || failure instanceof SandboxCpuLimitError) {
    throw failure;
  }
  const read = readOutcome(result.stdout, marker);
  const base = { stdout: read?.codeStdout ?? result.stdout, stderr: result.stderr.replace(`\n${marker}${END_TAG}\n`, ''), durationMs: result.durationMs };
  if (read === undefined) {
    if (failure !== undefined) throw failure;
  } else if (!read.outcome.ok) {
    const thrown = read.outcome.error;
    if (looksOutOfMemory(`${thrown.name}: ${thrown.message}`)) throw new SandboxMemoryLimitError(limits.memoryBytes, result);
    throw new SandboxCodeError(thrown, result);
  } else {
    const { json, text } = read.outcome;
    if (json !== undefined) {
      const parsed = parseJson(json);
      if (parsed.ok) return { ...base, value: parsed.value, valueFrom: 'return' };
    }
    if (text !== undefined) return { ...base, value: text, valueFrom: 'return-string' };
  }
  const printed = base.stdout.trim();
  if (printed !== '') {
    const parsed = parseJson(printed);
    if (parsed.ok) return { ...base, value: parsed.value, valueFrom: 'stdout' };
  }
  return { ...base, value: undefined, valueFrom: 'none' };
}

/** Options of a cold JavaScript run. */
export interface RunJavaScriptOptions extends RunInBwrapOptions {
  /** Limits of this run; unspecified fields take the documented defaults. */
  limits?: Partial<SandboxLimits>;
}

/**
 * Runs one snippet in a freshly spawned sandboxed Node (the cold path; see the warm pool for the fast
 * one). Resolves only when the code completed; otherwise throws SandboxTimeoutError,
 * SandboxCpuLimitError, SandboxMemoryLimitError, SandboxOutputLimitError, SandboxCodeError (it threw),
 * SandboxExitError (it exited non-zero), SandboxUnavailableError or SandboxSetupError.
 */
export async function runJavaScript(job: JavaScriptJob, options: RunJavaScriptOptions = {}): Promise<JavaScriptResult> {
  const { stdin, marker, settleOn } = encodeJavaScriptJob(job);
  const spec = compileSandboxSpec(javaScriptSandboxSpec(options.limits));
  options.signal?.throwIfAborted();
  const result = await spawnSandbox(spec, options).start(stdin, { settleOn, ...(options.signal ? { signal: options.signal } : {}) });
  return decodeJavaScriptResult(result, spec.limits, marker);
}
