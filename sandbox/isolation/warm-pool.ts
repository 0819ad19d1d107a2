/**
 * Warm pools of sandboxed processes for the `bwrap` level, so that a call does not pay for bubblewrap
 * and start-up (Node, a tool's module). Each process takes exactly one job and exits; the pool
 * refills itself in the background. No process, and so no state, is ever shared between two jobs.
 *
 * {@link createSandboxPool} pools any command that follows the marker protocol of the bootstraps
 * (see `javascript-bootstrap.ts`); {@link createWarmPool} is its JavaScript instance.
 */
import type { Clock } from '../../common/clock.ts';
import { SandboxPoolClosedError, SandboxSpecError } from './errors.ts';
import {
  decodeJavaScriptResult,
  encodeJavaScriptJob,
  javaScriptSandboxSpec,
  type EncodedJob,
  type JavaScriptJob,
  type JavaScriptResult,
} from './javascript-runner.ts';
import type { SandboxLimits } from './limits.ts';
import { spawnSandbox, type SandboxHostOptions, type SandboxProcess } from './sandbox-process.ts';
import type { SandboxResult } from './sandbox-result.ts';
import { compileSandboxSpec, type CompiledSandboxSpec, type SandboxSpec } from './sandbox-spec.ts';

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

/** A pool of pre-spawned, single-use sandboxed processes that take jobs `J` and give results `R`. */
export interface SandboxPool<J, R> extends AsyncDisposable {
  /**
   * Runs one job in a waiting process (or a fresh one if none is waiting) with the pool's limits;
   * the wall clock starts when the job is handed over. Rejects with what the codec's `decode` throws,
   * with SandboxPoolClosedError when the pool is closed before or during the run, with the signal's
   * reason when it aborts, and with SandboxUnavailableError / SandboxSetupError when bwrap fails.
   */
  run(job: J, options?: { signal?: AbortSignal }): Promise<R>;
  stats(): WarmPoolStats;
  /** SIGKILLs every process of the pool, waiting or running, and resolves when all are gone. Idempotent. */
  close(): Promise<void>;
}

/** A pool of pre-spawned, single-use sandboxed Node processes running JavaScript snippets. */
export type WarmPool = SandboxPool<JavaScriptJob, JavaScriptResult>;

/** How a pool's jobs are written to a sandboxed process and how its runs are judged. */
export interface SandboxJobCodec<J, R> {
  /** The job as stdin, with the marker of its result line and the end line to settle on. May throw. */
  encode(job: J): EncodedJob;
  /** Judges a finished run into a result, or throws the typed error that says why not. */
  decode(result: SandboxResult, limits: Readonly<SandboxLimits>, marker: string): R;
}

/** Options of a pool of any command; all optional but the spec and the codec. */
export interface SandboxPoolOptions<J, R> {
  /** What every process of the pool runs; its limits hold for every job. */
  spec: SandboxSpec;
  codec: SandboxJobCodec<J, R>;
  /** Processes kept spawned and waiting for a job. @default 2 */
  size?: number;
  /** Absolute path of the bwrap binary. @default '/usr/bin/bwrap' */
  bwrapPath?: string;
  /** Clock for durations and the wall-clock limit. @default systemClock */
  clock?: Clock;
}

const javaScriptCodec: SandboxJobCodec<JavaScriptJob, JavaScriptResult> = {
  encode: encodeJavaScriptJob,
  decode: decodeJavaScriptResult,
};

/**
 * Creates a JavaScript pool and starts filling it at once.
 * @throws SandboxSpecError for an invalid size or invalid limits.
 */
export function createWarmPool(options: WarmPoolOptions = {}): WarmPool {
  const { limits, ...rest } = options;
  return createSandboxPool({ ...rest, spec: javaScriptSandboxSpec(limits), codec: javaScriptCodec });
}

function checkSize(size: number | undefined): void {
  if (size === undefined) return;
  if (!Number.isInteger(size) || size < 0 || size > 64) throw new SandboxSpecError(`pool size must be an integer in 0..64, got ${size}`);
}

/**
 * Creates a pool of `spec` and starts filling it at once. Every process is spawned from the same
 * compiled spec, is handed exactly one job, and is never reused.
 * @throws SandboxSpecError for an invalid size or an invalid spec.
 */
export function createSandboxPool<J, R>(options: SandboxPoolOptions<J, R>): SandboxPool<J, R> {
  checkSize(options.size);
  const size = options.size ?? 2;
  const { codec } = options;
  const spec: CompiledSandboxSpec = compileSandboxSpec(options.spec);
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

  const run = async (job: J, runOptions: { signal?: AbortSignal } = {}): Promise<R> => {
    if (closing !== undefined) throw new SandboxPoolClosedError();
    runOptions.signal?.throwIfAborted();
    const { stdin, marker, settleOn } = codec.encode(job);
    let sandbox = idle.shift();
    while (sandbox !== undefined && !sandbox.alive) sandbox = idle.shift();
    if (sandbox === undefined) {
      coldStarts += 1;
      sandbox = spawnOne();
    } else {
      warmHits += 1;
    }
    const running = sandbox.start(stdin, { settleOn, ...(runOptions.signal ? { signal: runOptions.signal } : {}) });
    let result;
    try {
      result = await running;
    } catch (e: unknown) {
      if (killedByClose.has(sandbox) && !runOptions.signal?.aborted) throw new SandboxPoolClosedError();
      throw e;
    } finally {
      // The replacement is spawned once the job is done: starting a sandboxed Node (fork, exec,
      // loading the module) while the job runs competes with it for the CPU and doubled its time.
      setImmediate(fill);
    }
    // A job that finished just before close() keeps its result; one that close() killed does not.
    if (killedByClose.has(sandbox) && result.signal !== null) throw new SandboxPoolClosedError();
    return codec.decode(result, spec.limits, marker);
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
