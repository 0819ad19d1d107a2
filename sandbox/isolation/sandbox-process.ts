/**
 * One bwrap sandbox as a process: spawned at once, handed its job later (which is what lets the warm
 * pool pre-spawn), watched for its wall clock and output cap, and killed as a whole.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { systemClock, type Clock } from '../../common/clock.ts';
import { ensureError } from '../../common/errors.ts';
import { bwrapArguments, SANDBOX_ID } from './bwrap-args.ts';
import { SandboxSetupError, SandboxUnavailableError } from './errors.ts';
import { inheritableDescriptors } from './inherited-fds.ts';
import { seccompProgram } from './seccomp.ts';
import { killSandboxInit, sandboxInitOf, type SandboxInit } from './sandbox-init.ts';
import type { SandboxLimits } from './limits.ts';
import { decodeBwrapStatus, type SandboxResult } from './sandbox-result.ts';
import type { CompiledSandboxSpec } from './sandbox-spec.ts';

/** Where bubblewrap is looked for unless told otherwise (an absolute path: PATH is not trusted). */
export const DEFAULT_BWRAP_PATH = '/usr/bin/bwrap';

/** The hint every "not installed" error carries. */
export const INSTALL_HINT = 'install the Debian package `bubblewrap` (apt-get install bubblewrap)';

/** Options of the host side of a sandbox. */
export interface SandboxHostOptions {
  /** Absolute path of the bwrap binary. @default '/usr/bin/bwrap' */
  bwrapPath?: string;
  /** Clock used for `durationMs` and the wall-clock limit. @default systemClock */
  clock?: Clock;
}

/** Options of handing a job to a sandbox. */
export interface SandboxStartOptions {
  /** Aborting SIGKILLs the sandbox; the run then rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Lines (ASCII) that the command writes last on stdout and on stderr once its job is done. As soon
   * as both have been read, the run settles without waiting for the sandbox to tear down (the
   * sandbox is SIGKILLed then); its `exitCode` and `signal` are then both `null`.
   */
  settleOn?: string;
}

/** A spawned sandbox waiting for, or running, its one job. */
export interface SandboxProcess {
  readonly limits: Readonly<SandboxLimits>;
  /** Whether {@link SandboxProcess.start} has been called. */
  readonly started: boolean;
  /** False once the sandbox has exited or failed to spawn (it may then still be flushing output). */
  readonly alive: boolean;
  /**
   * Hands the job over: writes `stdin` and closes it, and starts the wall clock. Callable once.
   * Resolves with the result however the command ended (timeouts and truncation included); rejects
   * with `signal.reason` if the signal aborted (the sandbox is gone by then), with
   * SandboxSetupError / SandboxUnavailableError if bwrap could not build the sandbox.
   */
  start(stdin?: string | Buffer, options?: SandboxStartOptions): Promise<SandboxResult>;
  /** Settles when the sandbox is gone, started or not; never rejects. */
  readonly gone: Promise<void>;
  /**
   * SIGKILLs the sandbox: the host-side bwrap and its process group, and the sandbox's pid 1 by its
   * host pid, which takes every process of the sandbox's pid namespace with it, whatever the code
   * inside did to its own init. Idempotent.
   */
  kill(): void;
}

/** bwrap's messages when it cannot create namespaces: the machine cannot run this level at all. */
const NO_NAMESPACES = /No permissions to creat\w* new namespace|Creating new namespace failed|setting up [ug]id map|kernel does not (allow|support)/i;

const STATUS_FD = 3;
const SECCOMP_FD = 4;
/** How long after SIGKILL the sandbox's pipes may stay open before they are closed from this side. */
const KILL_GRACE_MS = 2_000;

/**
 * Spawns bwrap with stdin, stdout, stderr, the status and the seccomp descriptors as pipes, and every
 * descriptor this process holds without close-on-exec overwritten by `/dev/null`, so none reaches the
 * sandbox.
 */
function spawnBwrap(bwrapPath: string, args: string[], ids: { uid: number; gid: number } | undefined): ChildProcess {
  const leaking = inheritableDescriptors(SECCOMP_FD + 1);
  const devNull = leaking.length > 0 ? openSync('/dev/null', 'r') : undefined;
  try {
    const stdio: Array<'pipe' | 'ignore' | number> = ['pipe', 'pipe', 'pipe', 'pipe', 'pipe'];
    for (const fd of leaking) {
      while (stdio.length < fd) stdio.push('ignore');
      stdio[fd] = devNull!;
    }
    return spawn(bwrapPath, args, { stdio, env: {}, cwd: '/', detached: true, ...ids });
  } finally {
    // uv_spawn has forked and dup'ed synchronously; the child holds its own copies.
    if (devNull !== undefined) closeSync(devNull);
  }
}

/**
 * Spawns a sandbox for `spec` immediately; the command starts and may block reading stdin until
 * {@link SandboxProcess.start}. The host-side bwrap runs with an empty environment in its own process
 * group; when troupe runs as root it runs as host uid/gid 65534, so the sandbox holds no host
 * privilege at all and RLIMIT_NPROC is enforced (the kernel exempts uid 0 from it).
 */
export function spawnSandbox(spec: CompiledSandboxSpec, options: SandboxHostOptions = {}): SandboxProcess {
  const clock = options.clock ?? systemClock;
  const limits = spec.limits;
  const bwrapPath = options.bwrapPath ?? DEFAULT_BWRAP_PATH;
  const asRoot = process.getuid?.() === 0;

  let child: ChildProcess | undefined;
  let spawnError: Error | undefined;
  try {
    const seccomp = seccompProgram();
    const args = bwrapArguments(spec, seccomp === undefined ? { status: STATUS_FD } : { status: STATUS_FD, seccomp: SECCOMP_FD });
    child = spawnBwrap(bwrapPath, args, asRoot ? { uid: SANDBOX_ID, gid: SANDBOX_ID } : undefined);
    const seccompPipe = child.stdio[SECCOMP_FD] as Writable | null;
    seccompPipe?.on('error', () => {});
    seccompPipe?.end(seccomp);
  } catch (e: unknown) {
    spawnError = ensureError(e);
  }

  const spawnedAt = clock.now();
  let startedAt: number | undefined;
  let started = false;
  let killed = false;
  let timedOut = false;
  let outputTruncated = false;
  let commandRan = false;
  let alive = child !== undefined;
  let outputTotal = 0;
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  const wallClock = new AbortController();
  /** The sandbox's pid 1, once bwrap has reported it on the status descriptor. */
  let init: SandboxInit | undefined;
  let initReported = false;

  // Nothing of a sandbox may outlive it: its pid 1 is in a session of its own, out of reach of the
  // group kill, and the code inside can clear its parent-death signal (see sandbox-init.ts).
  const killInit = (): void => {
    if (init !== undefined) killSandboxInit(init);
  };

  const kill = (): void => {
    if (killed || child === undefined) return;
    killed = true;
    // pid 1 first, while the host-side bwrap is still its parent: its namespace dies with it.
    killInit();
    // Then the whole host-side group.
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
    // Safety net: should anything still hold the pipes open, stop waiting for them so the run ends.
    const sandbox = child;
    setTimeout(() => {
      for (const stream of sandbox.stdio) stream?.destroy();
    }, KILL_GRACE_MS).unref();
  };

  // Completion sentinels: the last characters of each stream, searched as latin1 so that byte
  // offsets stay put and a sentinel split across two chunks is still found.
  let settleOn: string | undefined;
  let settleEarly: ((result: SandboxResult) => void) | undefined;
  const tails = new Map<Buffer[], string>();
  const sentinelSeen = new Set<Buffer[]>();
  const watchSentinel = (into: Buffer[], chunk: Buffer) => {
    if (settleOn === undefined || sentinelSeen.has(into)) return;
    const text = (tails.get(into) ?? '') + chunk.toString('latin1');
    if (text.includes(settleOn)) sentinelSeen.add(into);
    tails.set(into, text.slice(-settleOn.length));
    if (sentinelSeen.size === 2 && !killed && settleEarly !== undefined) {
      settleEarly(snapshot(null, null));
      kill();
    }
  };

  const collect = (into: Buffer[]) => (chunk: Buffer) => {
    if (outputTruncated) return;
    const room = limits.outputBytes - outputTotal;
    if (chunk.length <= room) {
      into.push(chunk);
      outputTotal += chunk.length;
      watchSentinel(into, chunk);
      return;
    }
    into.push(chunk.subarray(0, room));
    outputTotal = limits.outputBytes;
    outputTruncated = true;
    child?.stdout?.destroy();
    child?.stderr?.destroy();
    kill();
  };

  function snapshot(code: number | null, signal: NodeJS.Signals | null): SandboxResult {
    return {
      ...decodeBwrapStatus(code, signal),
      stdout: Buffer.concat(stdout).toString('utf8'),
      stderr: Buffer.concat(stderr).toString('utf8'),
      timedOut,
      outputTruncated,
      durationMs: clock.now() - (startedAt ?? spawnedAt),
    };
  }

  const outcome = new Promise<SandboxResult>((resolve, reject) => {
    if (child === undefined) {
      reject(new SandboxUnavailableError(`cannot start ${bwrapPath}: ${spawnError?.message}; ${INSTALL_HINT}`, { cause: spawnError }));
      return;
    }
    let statusText = '';
    child.stdio[STATUS_FD]?.on('data', (chunk: Buffer) => {
      statusText += chunk.toString('utf8');
      const lineEnd = statusText.indexOf('\n');
      if (!initReported && lineEnd >= 0) {
        initReported = true;
        init = sandboxInitOf(statusText.slice(0, lineEnd));
        // Reported only after the sandbox was killed or bwrap had exited: its pid 1 may still be up.
        if (killed || !alive) killInit();
      }
      // bwrap reports the exit code only when the command itself ran and exited; a failed mount or
      // exec ends the sandbox without one.
      if (statusText.includes('"exit-code"')) commandRan = true;
    });
    child.stdio[STATUS_FD]?.on('error', () => {});
    child.stdout?.on('data', collect(stdout));
    child.stderr?.on('data', collect(stderr));
    child.stdin?.on('error', () => {}); // EPIPE when the command exits without reading its stdin
    child.once('exit', () => {
      alive = false;
      // bwrap ends once its pid 1 has; should it have been killed from outside, its pid 1 has not.
      killInit();
    });
    child.once('error', (err) => {
      alive = false;
      wallClock.abort();
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      reject(new SandboxUnavailableError(`cannot start ${bwrapPath}: ${err.message}${missing ? `; ${INSTALL_HINT}` : ''}`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      wallClock.abort();
      const result = snapshot(code, signal);
      if (!commandRan && !killed) {
        const message = result.stderr.trim() || `bwrap exited with status ${code}`;
        reject(
          NO_NAMESPACES.test(message)
            ? new SandboxUnavailableError(`bubblewrap cannot create the sandbox on this machine (${message}); user namespaces must be enabled for the bwrap isolation level`)
            : new SandboxSetupError(message, { result }),
        );
        return;
      }
      resolve(result);
    });
  });
  const gone = outcome.then(
    () => undefined,
    () => undefined,
  );

  const start = (input?: string | Buffer, runOptions: SandboxStartOptions = {}): Promise<SandboxResult> => {
    if (started) throw new Error('a sandbox process runs exactly one job');
    started = true;
    startedAt = clock.now();
    settleOn = runOptions.settleOn;
    const settled = new Promise<SandboxResult>((resolve, reject) => {
      settleEarly = resolve;
      outcome.then(resolve, reject);
    });
    const signal = runOptions.signal;
    const onAbort = () => kill();
    if (signal?.aborted) kill();
    else signal?.addEventListener('abort', onAbort, { once: true });
    if (!killed) {
      clock.sleep(limits.wallClockMs, wallClock.signal).then(
        () => {
          timedOut = true;
          kill();
        },
        () => {}, // cleared: the sandbox ended first
      );
      if (child?.stdin) {
        if (input !== undefined && input.length > 0) child.stdin.write(input);
        child.stdin.end();
      }
    }
    return settled.then(
      (result) => {
        signal?.removeEventListener('abort', onAbort);
        if (signal?.aborted) throw signal.reason;
        return result;
      },
      (err: unknown) => {
        signal?.removeEventListener('abort', onAbort);
        throw signal?.aborted ? signal.reason : err;
      },
    );
  };

  return {
    limits,
    get started() {
      return started;
    },
    get alive() {
      return alive;
    },
    start,
    gone,
    kill,
  };
}
