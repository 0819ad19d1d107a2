/**
 * Starting and killing the child processes of a scenario ({@link ./child.ts}): a host that
 * is killed at a step, a worker that is killed mid-call.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CHILD_SPEC_ENV, type ChildMessage, type ChildSpec } from './child-spec.ts';

const CHILD_SCRIPT = fileURLToPath(new URL('./child.ts', import.meta.url));
/** tsx's loader, by absolute URL: the project running `troupe eval` need not have tsx itself. */
const TSX = import.meta.resolve('tsx');

/** A started child. */
export interface Child {
  pid: number | undefined;
  /** Resolves with the host's or worker's id once it takes work; rejects if it dies or reports an error first. */
  ready: Promise<string>;
  /** Resolves with the effect key when the child reached its fault point (and waits to be killed). */
  fault: Promise<string>;
  /** SIGKILL, as a crash; resolves once it is gone. Idempotent. */
  kill(): Promise<void>;
  /** Calls `observer` with the index of each tool fault that takes effect in the child. */
  onFired(observer: (faultIndex: number) => void): void;
  /** The end of what it wrote to stderr, for error reports. */
  stderr(): string;
}

/** Starts a child process running `spec` under tsx. */
export function startChild(spec: ChildSpec, readyTimeoutMs = 60_000): Child {
  const proc = spawn(process.execPath, ['--import', TSX, CHILD_SCRIPT], {
    env: { ...process.env, [CHILD_SPEC_ENV]: JSON.stringify(spec) },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let tail = '';
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
    tail = (tail + d).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let onReady: (id: string) => void = () => {};
  let onFault: (key: string) => void = () => {};
  let fail: (err: Error) => void = () => {};
  const fired: Array<(faultIndex: number) => void> = [];
  const ready = new Promise<string>((resolve, reject) => {
    onReady = resolve;
    fail = reject;
  });
  const fault = new Promise<string>((resolve) => (onFault = resolve));
  // Nobody may be waiting for a fault that never comes, or for readiness after a kill.
  ready.catch(() => {});
  const timer = setTimeout(() => fail(new Error(`the eval ${spec.role} process did not start within ${readyTimeoutMs} ms${tail ? `: ${tail.trim()}` : ''}`)), readyTimeoutMs);
  proc.on('message', (m: ChildMessage) => {
    if (m.type === 'ready') onReady(m.id);
    else if (m.type === 'fault') onFault(m.key);
    else if (m.type === 'fired') for (const f of fired) f(m.index);
    else fail(new Error(`the eval ${spec.role} process failed: ${m.message}`));
  });
  proc.once('exit', (code, signal) => {
    clearTimeout(timer);
    fail(new Error(`the eval ${spec.role} process exited (${signal ?? code}) before it was ready${tail ? `: ${tail.trim()}` : ''}`));
  });
  void ready.then(() => clearTimeout(timer), () => clearTimeout(timer));
  let killing: Promise<void> | undefined;
  return {
    pid: proc.pid,
    ready,
    fault,
    stderr: () => tail,
    onFired: (observer) => void fired.push(observer),
    kill: () =>
      (killing ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
        await exited;
      })()),
  };
}
