/**
 * Runs a tool's own `run` at the isolation level the tool declares: `inline` in the host, `thread` in
 * a worker thread, `bwrap` in a bubblewrap sandbox. A call never runs at a weaker level than
 * declared: a level this machine lacks, or one this runner does not know, fails the call.
 */
import { systemClock, type Clock } from '../../common/clock.ts';
import { DEFAULT_BWRAP_PATH } from '../isolation/index.ts';
import type { Tool, ToolContext } from '../tool.ts';
import { createBwrapToolRunner, type BwrapToolRunner } from './bwrap-tool-runner.ts';
import { ToolRunnerClosedError, UnknownIsolationError } from './errors.ts';
import { checkPoolSize, createThreadRunner, type IsolatedRunStats, type ThreadToolRunner } from './thread-runner.ts';

/** Options of a tool runner; all optional. */
export interface ToolRunnerOptions {
  /** Worker threads kept loaded and waiting per `thread` tool; 0 starts one per call. @default 1 */
  threadPoolSize?: number;
  /** Sandboxes kept loaded and waiting per `bwrap` tool; 0 starts one per call. @default 1 */
  bwrapPoolSize?: number;
  /** Absolute path of the bwrap binary. @default '/usr/bin/bwrap' */
  bwrapPath?: string;
  /** Clock of the wall-clock limits. @default systemClock */
  clock?: Clock;
}

/** Options after validation, with every default filled in; frozen. */
export type CompiledToolRunnerOptions = Readonly<Required<ToolRunnerOptions>>;

/**
 * Validates options once and fills in defaults.
 * @throws SandboxSpecError for a pool size that is not an integer in 0..64.
 */
export function compileToolRunnerOptions(options: ToolRunnerOptions = {}): CompiledToolRunnerOptions {
  const compiled = {
    threadPoolSize: options.threadPoolSize ?? 1,
    bwrapPoolSize: options.bwrapPoolSize ?? 1,
    bwrapPath: options.bwrapPath ?? DEFAULT_BWRAP_PATH,
    clock: options.clock ?? systemClock,
  };
  checkPoolSize(compiled.threadPoolSize);
  checkPoolSize(compiled.bwrapPoolSize);
  return Object.freeze(compiled);
}

/** Counters per isolated level, for benchmarks and health checks. */
export interface ToolRunnerStats {
  thread: IsolatedRunStats;
  bwrap: IsolatedRunStats;
}

/** Runs tool calls at their declared isolation level. */
export interface ToolRunner extends AsyncDisposable {
  /**
   * Runs one call of `tool` with already validated `input` and resolves with what the tool's `run`
   * returned; the caller checks it against `tool.output`. `inline` calls `tool.run(input, context)`
   * as it is, errors and all. `thread` and `bwrap` enforce `tool.timeoutMs` (or
   * `permissions.limits.wallClockMs`) and the memory limit themselves, kill the call when
   * `context.signal` aborts (rejecting with its reason), and report failures as typed errors: see
   * {@link ThreadToolRunner.run} and {@link BwrapToolRunner.run}. Their results cross as data:
   * structured clones from a thread, JSON from a sandbox. There the tool's own `context.signal`
   * never aborts: the call is ended by terminating its worker or killing its sandbox.
   *
   * @throws SandboxUnavailableError for a `bwrap` tool on a machine without bubblewrap or user namespaces.
   * @throws UnknownIsolationError for a level other than the three.
   * @throws ToolRunnerClosedError once the runner is closed.
   */
  run(tool: Tool<any, any>, input: unknown, context: ToolContext): Promise<unknown>;
  /**
   * Prepares the given tools' levels now (probes bwrap, bundles modules, starts waiting workers and
   * sandboxes), so their first calls are warm too; `inline` tools need nothing. Rejects like `run`
   * would for a tool that cannot run here.
   */
  prewarm(tools: Iterable<Tool<any, any>>): Promise<void>;
  stats(): ToolRunnerStats;
  /** Stops intake, kills every worker and sandbox (running calls reject with ToolRunnerClosedError). Idempotent. */
  close(): Promise<void>;
}

/**
 * Creates a runner. Nothing starts until a `thread` or `bwrap` tool is first called or prewarmed.
 * @throws SandboxSpecError for invalid options.
 */
export function createToolRunner(options: ToolRunnerOptions = {}): ToolRunner {
  const compiled = compileToolRunnerOptions(options);
  const threads = createThreadRunner({ poolSize: compiled.threadPoolSize, clock: compiled.clock });
  const sandboxes = createBwrapToolRunner({ poolSize: compiled.bwrapPoolSize, bwrapPath: compiled.bwrapPath, clock: compiled.clock });
  let closing: Promise<void> | undefined;

  const run = async (tool: Tool<any, any>, input: unknown, context: ToolContext): Promise<unknown> => {
    if (closing !== undefined) throw new ToolRunnerClosedError(tool.name);
    const isolation: unknown = tool.isolation;
    switch (isolation) {
      case 'inline':
        return tool.run(input, context);
      case 'thread':
        return threads.run(tool, input, context);
      case 'bwrap':
        return sandboxes.run(tool, input, context);
      default:
        throw new UnknownIsolationError(tool.name, isolation);
    }
  };

  const close = (): Promise<void> => {
    closing ??= Promise.all([threads.close(), sandboxes.close()]).then(() => undefined);
    return closing;
  };

  return {
    run,
    async prewarm(tools) {
      const pending: Promise<void>[] = [];
      for (const tool of tools) {
        if (closing !== undefined) throw new ToolRunnerClosedError(tool.name);
        const isolation: unknown = tool.isolation;
        if (isolation === 'thread') threads.prewarm(tool);
        else if (isolation === 'bwrap') pending.push(sandboxes.prewarm(tool));
        else if (isolation !== 'inline') throw new UnknownIsolationError(tool.name, isolation);
      }
      await Promise.all(pending);
    },
    stats: () => ({ thread: threads.stats(), bwrap: sandboxes.stats() }),
    close,
    [Symbol.asyncDispose]: close,
  };
}
