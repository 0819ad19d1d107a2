/**
 * The `bwrap` isolation level for a tool's own `run`: one hardened bubblewrap sandbox per call (see
 * `../isolation/bwrap-args.ts` for every guarantee: uid 65534 in a new user namespace, no
 * capabilities, no network, seccomp, rlimits, a clean environment, a wall clock, an output cap), in
 * which Node imports the tool's bundled module, runs the tool on the call's JSON input and prints its
 * JSON result. A warm pool per tool keeps processes that have already loaded the module waiting;
 * each serves one call and exits, so nothing a call leaves behind reaches the next.
 *
 * The sandbox sees the system directories Node needs, the tool's bundle (read-only, see
 * `tool-bundle.ts`) and the tool's declared `permissions.binds`; nothing else of the host.
 */
import { systemClock, type Clock } from '../../common/clock.ts';
import {
  compileSandboxLimits,
  DEFAULT_BWRAP_PATH,
  requireBwrap,
  SandboxCodeError,
  SandboxPoolClosedError,
  SandboxTimeoutError,
  type SandboxLimits,
  type SandboxResult,
} from '../isolation/index.ts';
import { createSandboxPool, decodeJavaScriptResult, encodeSandboxJob, nodeSandboxSpec, type SandboxPool } from '../isolation/internal.ts';
import type { Tool, ToolContext } from '../tool.ts';
import { BwrapTimeoutError, ToolRunnerClosedError, ToolThrewError } from './errors.ts';
import { selfSandboxedFactory, type SelfSandboxedRun } from './self-sandboxed.ts';
import { checkPoolSize, type IsolatedRunStats } from './thread-runner.ts';
import { TOOL_BOOTSTRAP } from './tool-bootstrap.ts';
import { createToolBundler, type ToolBundle } from './tool-bundle.ts';
import { moduleErrorOf, moduleOf } from './tool-module.ts';

/** Options of the bwrap level; all optional. */
export interface BwrapToolRunnerOptions {
  /** Sandboxes kept loaded and waiting per tool (0 starts a sandbox per call). @default 1 */
  poolSize?: number;
  /** Absolute path of the bwrap binary. @default '/usr/bin/bwrap' */
  bwrapPath?: string;
  /** Clock of durations and the wall-clock limit. @default systemClock */
  clock?: Clock;
}

/** Runs tools at the `bwrap` level. */
export interface BwrapToolRunner extends AsyncDisposable {
  /**
   * Runs one call of `tool` in a sandbox and resolves with what `run` returned, as JSON data.
   * Rejects with SandboxUnavailableError when this machine lacks the level (never running the tool
   * any other way); BwrapTimeoutError (retryable) at the wall clock; SandboxCpuLimitError,
   * SandboxMemoryLimitError, SandboxOutputLimitError (the result counts toward `outputBytes`),
   * SandboxExitError (the process exited without a result); ToolThrewError (the tool threw; with
   * the code and retryability of a TroupeError it threw); ToolModuleError (its module is unknown,
   * cannot be bundled or loaded, or does not export it); SandboxSpecError (invalid permissions or
   * input that is not JSON); ToolRunnerClosedError; or the signal's reason. A tool that sandboxes
   * itself (see `self-sandboxed.ts`) rejects with its own errors instead.
   */
  run(tool: Tool<any, any>, input: unknown, context: ToolContext): Promise<unknown>;
  /** Probes bwrap, bundles `tool`'s module and starts its waiting sandboxes now. Rejects like `run`. */
  prewarm(tool: Tool<any, any>): Promise<void>;
  stats(): IsolatedRunStats;
  /** Kills every sandbox, waiting or running, removes the bundles, and resolves when done. Idempotent. */
  close(): Promise<void>;
}

/** One call as the tool bootstrap reads it. */
interface ToolCall {
  input: unknown;
  key: string;
  taskId: string;
}

/** The limits of one `bwrap` tool call: its declared ones, with the wall clock at `timeoutMs`. */
export function toolSandboxLimits(tool: Tool<any, any>): Readonly<SandboxLimits> {
  return compileSandboxLimits({ wallClockMs: tool.timeoutMs, ...tool.permissions.limits });
}

/** Judges one finished call: the tool's own result or the typed error that says why there is none. */
function decodeToolResult(tool: Tool<any, any>, module: string, result: SandboxResult, limits: Readonly<SandboxLimits>, marker: string): unknown {
  let decoded;
  try {
    decoded = decodeJavaScriptResult(result, limits, marker);
  } catch (e: unknown) {
    // The sandbox's wall clock is the tool's `timeoutMs`: the same timeout as an inline call's.
    if (e instanceof SandboxTimeoutError) throw new BwrapTimeoutError(tool.name, e.wallClockMs, { cause: e });
    if (!(e instanceof SandboxCodeError)) throw e;
    const unusable = moduleErrorOf(tool.name, module, { name: e.errorName, message: e.errorMessage }, { cause: e });
    if (unusable !== undefined) throw unusable;
    throw new ToolThrewError(
      tool.name,
      'bwrap',
      { name: e.errorName, message: e.errorMessage, ...(e.errorStack !== undefined ? { stack: e.errorStack } : {}), code: e.errorCode, retryable: e.errorRetryable },
      { cause: e },
    );
  }
  // Only what the tool returned is its result; anything it printed is not.
  return decoded.valueFrom === 'return' || decoded.valueFrom === 'return-string' ? decoded.value : undefined;
}

/**
 * Creates the bwrap level. Nothing is probed or spawned until a tool's first call or prewarm.
 * @throws SandboxSpecError for an invalid pool size.
 */
export function createBwrapToolRunner(options: BwrapToolRunnerOptions = {}): BwrapToolRunner {
  const poolSize = options.poolSize ?? 1;
  checkPoolSize(poolSize);
  const bwrapPath = options.bwrapPath ?? DEFAULT_BWRAP_PATH;
  const clock = options.clock ?? systemClock;
  const bundler = createToolBundler();
  const pools = new Map<string, Promise<SandboxPool<ToolCall, unknown>>>();
  const ready = new Set<SandboxPool<ToolCall, unknown>>();
  const selfSandboxed = new Map<Tool<any, any>, SelfSandboxedRun>();
  let closing: Promise<void> | undefined;

  const poolFor = (tool: Tool<any, any>): Promise<SandboxPool<ToolCall, unknown>> => {
    const module = moduleOf(tool);
    const limits = toolSandboxLimits(tool);
    const binds = tool.permissions.binds;
    const key = JSON.stringify([module, tool.name, limits, binds ?? null]);
    let pool = pools.get(key);
    if (pool === undefined) {
      pool = bundler.bundle(module, tool.name).then((bundle: ToolBundle) => {
        // Checked here, synchronously with the creation, so close() either sees this pool or it is never made.
        if (closing !== undefined) throw new ToolRunnerClosedError(tool.name);
        const created = createSandboxPool<ToolCall, unknown>({
          spec: nodeSandboxSpec(TOOL_BOOTSTRAP, [bundle.url, tool.name], {
            limits,
            binds: { ro: [bundle.dir, ...(binds?.ro ?? [])], rw: [...(binds?.rw ?? [])] },
          }),
          codec: {
            encode: (call) => encodeSandboxJob({ input: call.input, key: call.key, taskId: call.taskId }),
            decode: (result, compiled, marker) => decodeToolResult(tool, module, result, compiled, marker),
          },
          size: poolSize,
          bwrapPath,
          clock,
        });
        ready.add(created);
        return created;
      });
      pools.set(key, pool);
      pool.catch(() => pools.delete(key));
    }
    return pool;
  };

  const run = async (tool: Tool<any, any>, input: unknown, context: ToolContext): Promise<unknown> => {
    if (closing !== undefined) throw new ToolRunnerClosedError(tool.name);
    context.signal?.throwIfAborted();
    // No weaker fallback: a machine without the level refuses the call.
    await requireBwrap({ bwrapPath });
    if (closing !== undefined) throw new ToolRunnerClosedError(tool.name);
    const factory = selfSandboxedFactory(tool);
    if (factory !== undefined) {
      let instance = selfSandboxed.get(tool);
      if (instance === undefined) selfSandboxed.set(tool, (instance = factory({ bwrapPath, clock, poolSize })));
      return instance.run(input, context);
    }
    const pool = await poolFor(tool);
    try {
      return await pool.run({ input, key: context.key, taskId: context.taskId }, context.signal ? { signal: context.signal } : {});
    } catch (e: unknown) {
      if (e instanceof SandboxPoolClosedError) throw new ToolRunnerClosedError(tool.name);
      throw e;
    }
  };

  const close = (): Promise<void> => {
    closing ??= (async () => {
      const made = await Promise.allSettled(pools.values());
      await Promise.all(made.map((p) => (p.status === 'fulfilled' ? p.value.close() : undefined)));
      await Promise.all([...selfSandboxed.values()].map((instance) => instance.close()));
      await bundler.close();
    })();
    return closing;
  };

  return {
    run,
    async prewarm(tool) {
      if (closing !== undefined) throw new ToolRunnerClosedError(tool.name);
      await requireBwrap({ bwrapPath });
      if (closing !== undefined) throw new ToolRunnerClosedError(tool.name);
      const factory = selfSandboxedFactory(tool);
      if (factory === undefined) await poolFor(tool);
      else if (!selfSandboxed.has(tool)) selfSandboxed.set(tool, factory({ bwrapPath, clock, poolSize }));
    },
    stats: () => {
      let warmHits = 0;
      let coldStarts = 0;
      for (const pool of ready) {
        const stats = pool.stats();
        warmHits += stats.warmHits;
        coldStarts += stats.coldStarts;
      }
      return { warmHits, coldStarts };
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
