/**
 * Bundled `bwrap` tools whose `run` is itself the sandbox's host side (the JavaScript tool hands
 * model-written code to a bwrap sandbox). Running such a `run` inside another sandbox would nest
 * bubblewrap, which the sandbox forbids, so the bwrap runner calls them on the host instead, through
 * a per-runner instance that may keep warm resources (a warm pool) and is closed with the runner.
 *
 * Internal: only troupe's own tools register here. A registered tool is still refused when the
 * machine lacks the `bwrap` level, like any other `bwrap` tool.
 */
import type { Clock } from '../../common/clock.ts';
import type { Tool, ToolContext } from '../tool.ts';

/** What a runner hands a self-sandboxed tool's factory. */
export interface SelfSandboxHost {
  /** Absolute path of the bwrap binary the runner uses. */
  bwrapPath: string;
  clock: Clock;
  /** Warm sandboxes the runner keeps per `bwrap` tool. */
  poolSize: number;
}

/** One runner's instance of a self-sandboxed tool. */
export interface SelfSandboxedRun {
  /** Runs one call in the tool's own sandbox; `input` is unvalidated. */
  run(input: unknown, context: ToolContext): Promise<unknown>;
  /** Releases what the instance holds (kills its sandboxes). Idempotent. */
  close(): Promise<void>;
}

const registry = new WeakMap<Tool<any, any>, (host: SelfSandboxHost) => SelfSandboxedRun>();

/**
 * Registers `tool` as running its code in a bwrap sandbox of its own.
 * @throws TypeError when the tool is not declared at the `bwrap` level.
 */
export function registerSelfSandboxed(tool: Tool<any, any>, create: (host: SelfSandboxHost) => SelfSandboxedRun): void {
  if (tool.isolation !== 'bwrap') throw new TypeError(`tool "${tool.name}" must be declared with isolation "bwrap" to sandbox itself`);
  registry.set(tool, create);
}

/** The factory of a self-sandboxed tool, or `undefined` for every other tool. */
export function selfSandboxedFactory(tool: Tool<any, any>): ((host: SelfSandboxHost) => SelfSandboxedRun) | undefined {
  return registry.get(tool);
}
