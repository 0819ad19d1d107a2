/**
 * A warm pool of sandboxed Node processes for the `bwrap` level, so that a JavaScript call does not
 * pay for bubblewrap and Node start-up. Each process takes exactly one job and exits; the pool
 * refills itself in the background. No process, and so no state, is ever shared between two jobs.
 */
import type { Clock } from '../../common/clock.ts';
import { SandboxPoolClosedError, SandboxSpecError } from './errors.ts';
import {
  decodeJavaScriptResult,
  encodeJavaScriptJob,
  javaScriptSandboxSpec,
  type JavaScriptJob,
  type JavaScriptResult,
} from './javascript-runner.ts';
import type { SandboxLimits } from './limits.ts';
import { spawnSandbox, type SandboxHostOptions, type SandboxProcess } from './sandbox-process.ts';
import { compileSandboxSpec, type CompiledSandboxSpec } from './sandbox-spec.ts';

/** Options of a warm pool; all optional. */
export interface WarmPoolOptions {
  /** Processes kept spawned and waiting for a job. @default 2 */
  size?: number;
  /** Limits of every process of the pool (rlimits are fixed when a process is spawned). */
  limits?: Partial<SandboxLimits>;
  /** Absolute path of the bwrap binary. @default '/usr/bin/bwrap' */
  bwrapPath?: string;
  /** Clock for durations and the wall-clock limit. @default systemClock */
  clock?: Clock;
}

/** Counters, for benchmarks and health checks. */
export interface WarmPoolStats {
  /** Processes spawned and waiting for a job now. */
  idle: number;
  /** Jobs that found a waiting process. */
  warmHits: number;
  /** Jobs that had to spawn their own process because none was waiting. */
  coldStarts: number;
}

/** A pool of pre-spawned, single-use sandboxed Node processes. */
export interface WarmPool extends AsyncDisposable {
  /**
   * Runs one snippet in a waiting process (or a fresh one if none is waiting) with the pool's limits;
   * the wall clock starts when the job is handed over. Same results and errors as `runJavaScript`,
   * plus SandboxPoolClosedError when the pool is closed before or during the run.
   */
  run(job: JavaScriptJob, options?: { signal?: AbortSignal }): Promise<JavaScriptResult>;
  stats(): WarmPoolStats;
  /** SIGKILLs every process of the pool, waiting or running, and resolves when all are gone. Idempotent. */
  close(): Promise<void>;
}

/**
 * Creates a pool and starts filling it at once.
 * @throws SandboxSpecError for an invalid size or invalid limits.
 */
export function createWarmPool(options: WarmPoolOptions = {}): WarmPool {
  const size = options.size ?? 2;
  if (!Number.isInteger(size) || size < 0 || size > 64) throw new SandboxSpecError(`pool size must be an integer in 0..64, got ${size}`);
  const spec: CompiledSandboxSpec = compileSandboxSpec(javaScriptSandboxSpec(options.limits));
  const host: SandboxHostOptions = {
    ...(options.bwrapPath !== undefined ? { bwrapPath: options.bwrapPath } : {}),
    ...(options.clock !== undefined ? { clock: options.clock } : {}),
  };

  const idle: SandboxProcess[] = [];
  const live = new Set<SandboxProcess>();
  const killedByClose = new WeakSet<SandboxProcess>();
  let warmHits = 0;
  let coldStarts = 0;
  let closing: Promise<void> | undefined;

  const spawnOne = (): SandboxProcess => {
    const sandbox = spawnSandbox(spec, host);
    live.add(sandbox);
    void sandbox.gone.then(() => {
      live.delete(sandbox);
      // Died before it was given a job (killed from outside, or bwrap failed): never hand it out.
      const at = idle.indexOf(sandbox);
      if (at >= 0) idle.splice(at, 1);
    });
    return sandbox;
  };

  // A process that dies while waiting is not replaced here, only on the next run(), so a machine
  // where bwrap fails cannot turn the pool into a spawn loop.
  const fill = (): void => {
    while (closing === undefined && idle.length < size) idle.push(spawnOne());
  };

  const run = async (job: JavaScriptJob, runOptions: { signal?: AbortSignal } = {}): Promise<JavaScriptResult> => {
    if (closing !== undefined) throw new SandboxPoolClosedError();
    runOptions.signal?.throwIfAborted();
    const { stdin, marker, settleOn } = encodeJavaScriptJob(job);
    let sandbox = idle.shift();
    while (sandbox !== undefined && !sandbox.alive) sandbox = idle.shift();
    if (sandbox === undefined) {
      coldStarts += 1;
      sandbox = spawnOne();
    } else {
      warmHits += 1;
    }
    const running = sandbox.start(stdin, { settleOn, ...(runOptions.signal ? { signal: runOptions.signal } : {}) });
    // Spawning forks this process; do it after the job is on its way.
    setImmediate(fill);
    let result;
    try {
      result = await running;
    } catch (e: unknown) {
      if (killedByClose.has(sandbox) && !runOptions.signal?.aborted) throw new SandboxPoolClosedError();
      throw e;
    }
    // A job that finished just before close() keeps its result; one that close() killed does not.
    if (killedByClose.has(sandbox) && result.signal !== null) throw new SandboxPoolClosedError();
    return decodeJavaScriptResult(result, spec.limits, marker);
  };

  const close = (): Promise<void> => {
    closing ??= (async () => {
      idle.length = 0;
      const all = [...live];
      for (const sandbox of all) {
        killedByClose.add(sandbox);
        sandbox.kill();
      }
      await Promise.all(all.map((sandbox) => sandbox.gone));
    })();
    return closing;
  };

  fill();
  return {
    run,
    stats: () => ({ idle: idle.length, warmHits, coldStarts }),
    close,
    [Symbol.asyncDispose]: close,
  };
}
