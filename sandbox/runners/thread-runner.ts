/**
 * The `thread` isolation level: a tool's `run` in a `worker_threads` Worker of the host process, with
 * a heap limit, a wall clock that terminates the worker, and the call's abort signal honoured by
 * terminating it too. Each worker serves exactly one call and is never reused; a small pool per tool
 * keeps workers that have already loaded the tool's module waiting, so a call skips that start-up.
 *
 * A thread is a fault boundary, not a security boundary: the worker shares the host's process, file
 * system, network and environment, and only its JavaScript heap is limited (Buffers and other
 * off-heap memory are not). Untrusted code belongs at the `bwrap` level.
 */
import { Worker } from 'node:worker_threads';
import { systemClock, type Clock } from '../../common/clock.ts';
import { compileSandboxLimits, SandboxSpecError } from '../isolation/index.ts';
import { heapMiBFor } from '../isolation/internal.ts';
import type { Tool, ToolContext } from '../tool.ts';
import {
  ThreadExitError,
  ThreadMemoryLimitError,
  ThreadTimeoutError,
  ToolModuleError,
  ToolRunnerClosedError,
  ToolThrewError,
  type ThrownError,
  type ToolRunnerError,
} from './errors.ts';
import { moduleErrorOf, moduleOf, tsxApiUrl } from './tool-module.ts';
import { THREAD_WORKER_SOURCE, type ThreadJob, type ThreadLoaded, type ThreadOutcome, type ThreadWorkerData } from './thread-worker.ts';

/** Options of the thread level; all optional. */
export interface ThreadRunnerOptions {
  /** Workers kept loaded and waiting per tool (0 starts a worker per call). @default 1 */
  poolSize?: number;
  /** Clock of the wall-clock limit. @default systemClock */
  clock?: Clock;
}

/** Counters, for benchmarks and health checks. */
export interface IsolatedRunStats {
  /** Calls that found a waiting worker or sandbox. */
  warmHits: number;
  /** Calls that had to start their own. */
  coldStarts: number;
}

/** Runs tools at the `thread` level. */
export interface ThreadToolRunner extends AsyncDisposable {
  /**
   * Runs one call of `tool` in its own worker and resolves with what `run` returned (structured-
   * cloned). Rejects with ThreadTimeoutError (retryable), ThreadMemoryLimitError, ThreadExitError
   * (the worker ended without a result), ToolThrewError (the tool threw; with the code and
   * retryability of a TroupeError it threw), ToolModuleError (its module is unknown,
   * does not load, or does not export it), ToolRunnerClosedError, SandboxSpecError (invalid
   * `permissions.limits`), or the signal's reason when `context.signal` aborts.
   */
  run(tool: Tool<any, any>, input: unknown, context: ToolContext): Promise<unknown>;
  /** Starts `tool`'s waiting workers now rather than at its first call. */
  prewarm(tool: Tool<any, any>): void;
  stats(): IsolatedRunStats;
  /** Terminates every worker, waiting or running, and resolves when all are gone. Idempotent. */
  close(): Promise<void>;
}

/** Where and under which limits one tool's workers run. */
interface ThreadTarget {
  key: string;
  data: ThreadWorkerData;
  heapMiB: number;
  wallClockMs: number;
}

function targetOf(tool: Tool<any, any>): ThreadTarget {
  const module = moduleOf(tool);
  const limits = compileSandboxLimits({ wallClockMs: tool.timeoutMs, ...tool.permissions.limits });
  const heapMiB = heapMiBFor(limits);
  return {
    key: `${module}\0${tool.name}\0${heapMiB}\0${limits.wallClockMs}`,
    data: { module, name: tool.name, tsx: tsxApiUrl() },
    heapMiB,
    wallClockMs: limits.wallClockMs,
  };
}

/** A worker that has been started on a tool's module and takes one job. */
interface ThreadSlot {
  /** False once the worker has ended (or failed) before being handed its job. */
  readonly alive: boolean;
  start(job: ThreadJob, signal: AbortSignal | undefined): Promise<unknown>;
  /** Terminates the worker; a running call rejects with ToolRunnerClosedError. */
  kill(): Promise<void>;
}

function errorOfOutcome(target: ThreadTarget, error: ThrownError): ToolRunnerError {
  const { name, module } = target.data;
  return moduleErrorOf(name, module, error) ?? new ToolThrewError(name, 'thread', error);
}

function errorOfWorker(target: ThreadTarget, err: Error): ToolRunnerError {
  if ((err as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY') return new ThreadMemoryLimitError(target.data.name, target.heapMiB, { cause: err });
  // An exception nothing caught inside the worker: the tool's own code threw it asynchronously.
  // Node clones it across with its own properties, a TroupeError's code and retryable among them.
  const { code, retryable } = err as Error & { code?: unknown; retryable?: unknown };
  return new ToolThrewError(target.data.name, 'thread', { name: err.name, message: err.message, ...(err.stack !== undefined ? { stack: err.stack } : {}), code, retryable }, { cause: err });
}

/** Longest a worker may take to load its tool's module (not counted in the tool's own time limit). */
const MODULE_LOAD_LIMIT_MS = 60_000;

function spawnSlot(target: ThreadTarget, clock: Clock): ThreadSlot {
  const worker = new Worker(THREAD_WORKER_SOURCE, {
    eval: true,
    workerData: target.data,
    // Not the host's flags (an inspector port, a preload): the worker registers tsx itself.
    execArgv: [],
    resourceLimits: { maxOldGenerationSizeMb: target.heapMiB },
  });
  // A waiting worker must not keep the host alive; a running one does.
  worker.unref();
  let alive = true;
  let killed = false;
  let early: { error?: Error; exitCode?: number } | undefined;
  let onEvent: ((event: { message?: ThreadOutcome; error?: Error; exitCode?: number }) => void) | undefined;
  const gone = new Promise<void>((resolve) => worker.once('exit', () => resolve()));

  let loaded = false;
  let onLoaded: (() => void) | undefined;
  worker.on('message', (message: ThreadOutcome | ThreadLoaded) => {
    if (message.type !== 'loaded') return onEvent?.({ message });
    loaded = true;
    onLoaded?.();
  });
  worker.on('error', (error: Error) => {
    alive = false;
    if (onEvent) onEvent({ error });
    else early ??= { error };
  });
  worker.on('exit', (exitCode: number) => {
    alive = false;
    if (onEvent) onEvent({ exitCode });
    else early ??= { exitCode };
  });

  const start = (job: ThreadJob, signal: AbortSignal | undefined): Promise<unknown> =>
    new Promise<unknown>((resolve, reject) => {
      const wallClock = new AbortController();
      let settled = false;
      const settle = (outcome: () => void): void => {
        if (settled) return;
        settled = true;
        wallClock.abort();
        signal?.removeEventListener('abort', onAbort);
        void worker.terminate();
        outcome();
      };
      const onAbort = (): void => settle(() => reject(signal!.reason));
      onEvent = ({ message, error, exitCode }) => {
        if (message !== undefined) {
          settle(() => (message.type === 'ok' ? resolve(message.value) : reject(errorOfOutcome(target, message.error))));
        } else if (error !== undefined) {
          settle(() => reject(killed ? new ToolRunnerClosedError(target.data.name) : errorOfWorker(target, error)));
        } else {
          settle(() => reject(killed ? new ToolRunnerClosedError(target.data.name) : new ThreadExitError(target.data.name, exitCode)));
        }
      };
      if (early !== undefined) {
        onEvent(early);
        return;
      }
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      // The tool's time limit is for its call, not for loading its module (tsx, imports), which a
      // busy machine can stretch past a short limit: the clock starts once the module is loaded.
      const startClock = () =>
        clock.sleep(target.wallClockMs, wallClock.signal).then(
          () => settle(() => reject(new ThreadTimeoutError(target.data.name, target.wallClockMs))),
          () => {}, // cleared: the call ended first
        );
      if (loaded) startClock();
      else {
        onLoaded = startClock;
        clock.sleep(MODULE_LOAD_LIMIT_MS, wallClock.signal).then(
          () => settle(() => reject(new ToolModuleError(target.data.name, target.data.module, 'failed', `the module of tool "${target.data.name}" (${target.data.module}) did not load within ${MODULE_LOAD_LIMIT_MS} ms`))),
          () => {},
        );
      }
      worker.ref();
      try {
        worker.postMessage(job);
      } catch (e: unknown) {
        // The input cannot be cloned into the worker.
        settle(() => reject(new ToolThrewError(target.data.name, 'thread', { name: 'DataCloneError', message: `the input cannot be passed to the worker: ${String(e)}` }, { cause: e })));
      }
    });

  return {
    get alive() {
      return alive;
    },
    start,
    async kill() {
      killed = true;
      await worker.terminate();
      await gone;
    },
  };
}

/**
 * Creates the thread level. Workers start lazily, on a tool's first call or {@link ThreadToolRunner.prewarm}.
 * @throws SandboxSpecError for an invalid pool size.
 */
export function createThreadRunner(options: ThreadRunnerOptions = {}): ThreadToolRunner {
  const poolSize = options.poolSize ?? 1;
  checkPoolSize(poolSize);
  const clock = options.clock ?? systemClock;
  const idle = new Map<string, ThreadSlot[]>();
  const live = new Set<ThreadSlot>();
  let warmHits = 0;
  let coldStarts = 0;
  let closing: Promise<void> | undefined;

  const spawn = (target: ThreadTarget): ThreadSlot => {
    const slot = spawnSlot(target, clock);
    live.add(slot);
    return slot;
  };

  const fill = (target: ThreadTarget): void => {
    let waiting = idle.get(target.key);
    if (waiting === undefined) idle.set(target.key, (waiting = []));
    // A worker that died while waiting is dropped, and replaced only on the next call, so a module
    // that cannot load does not turn into a spawn loop.
    for (let i = waiting.length - 1; i >= 0; i--) if (!waiting[i]!.alive) live.delete(waiting.splice(i, 1)[0]!);
    while (closing === undefined && waiting.length < poolSize) waiting.push(spawn(target));
  };

  const run = async (tool: Tool<any, any>, input: unknown, context: ToolContext): Promise<unknown> => {
    if (closing !== undefined) throw new ToolRunnerClosedError(tool.name);
    context.signal?.throwIfAborted();
    const target = targetOf(tool);
    const waiting = idle.get(target.key) ?? [];
    let slot = waiting.shift();
    while (slot !== undefined && !slot.alive) {
      live.delete(slot);
      slot = waiting.shift();
    }
    if (slot === undefined) {
      coldStarts += 1;
      slot = spawn(target);
    } else {
      warmHits += 1;
    }
    const running = slot.start({ input, key: context.key, taskId: context.taskId }, context.signal);
    try {
      return await running;
    } finally {
      live.delete(slot);
      // The replacement starts once the call is done: a new worker (tsx, the tool's module) loading
      // while the call runs competes with it for the CPU.
      setImmediate(() => fill(target));
    }
  };

  const close = (): Promise<void> => {
    closing ??= (async () => {
      idle.clear();
      const all = [...live];
      live.clear();
      await Promise.all(all.map((slot) => slot.kill()));
    })();
    return closing;
  };

  return {
    run,
    prewarm: (tool) => {
      if (closing === undefined) fill(targetOf(tool));
    },
    stats: () => ({ warmHits, coldStarts }),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** @throws SandboxSpecError unless `size` is an integer in 0..64 (the bounds of the sandbox pools). */
export function checkPoolSize(size: number): void {
  if (!Number.isInteger(size) || size < 0 || size > 64) throw new SandboxSpecError(`pool size must be an integer in 0..64, got ${size}`);
}
