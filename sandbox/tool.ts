import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import type { SandboxLimits } from './isolation/limits.ts';

/** How bad it is if the tool runs when it should not have, or runs twice. */
export type Reversibility = 'read' | 'reversible' | 'irreversible';
/** Where a call runs. `inline` is in the host process: trusted, read-only code only. */
export type Isolation = 'inline' | 'thread' | 'bwrap';

/** Handed to a tool's `run`. */
export interface ToolContext {
  /** The call's idempotency key: forward it to downstream APIs (`Idempotency-Key`). */
  key: string;
  taskId: string;
  /** Aborted when the call times out or the host shuts down hard. */
  signal: AbortSignal;
}

/**
 * What a tool may touch and use when it runs isolated. `binds` apply to the `bwrap` level only;
 * `limits.memoryBytes` and `limits.wallClockMs` also bound the `thread` level (as the worker's heap
 * limit and its wall clock). An `inline` tool cannot have permissions: nothing would enforce them.
 */
export interface ToolPermissions {
  /**
   * Host paths mounted at the same path inside the `bwrap` sandbox: `ro` read-only, `rw` writable.
   * Absolute and normalised, not `/`, `/proc` or `/dev`. When troupe runs as root the sandbox runs
   * as host uid 65534, which must be able to read (or write) them. Nothing else of the host's
   * filesystem is visible but the system directories Node needs and the tool's own bundled code.
   * @default no binds
   */
  binds?: { ro?: readonly string[]; rw?: readonly string[] };
  /**
   * Resource limits of one call (see {@link SandboxLimits} for each field and its default).
   * `wallClockMs` defaults to the tool's `timeoutMs`.
   */
  limits?: Partial<SandboxLimits>;
}

/** What `reconcile` found out about a call whose outcome is unknown (its runner died). */
export type Reconciliation<O> = { happened: true; output: O } | { happened: false };

/** A tool as the user declares it. One definition feeds the model, the gates and the runner. */
export interface ToolDefinition<I = unknown, O = unknown> {
  /** Lower-case letters, digits, `_`, `-`; 1 to 64 characters (the model API's rule). */
  name: string;
  /** What the tool does and when to use it: the model reads this. */
  description: string;
  input: z.ZodType<I>;
  output: z.ZodType<O>;
  /** @default "read" */
  reversibility?: Reversibility;
  /** @default "inline" */
  isolation?: Isolation;
  /** Files and limits of the `thread` and `bwrap` levels. @default none: the level's defaults */
  permissions?: ToolPermissions;
  /**
   * The file URL of the module that exports this tool (pass `import.meta.url`), directly or in an
   * exported agent's `tools`. The `thread` and `bwrap` levels load that module in the worker or
   * sandbox and look the tool up there by name, since a function cannot cross into them.
   * @default inferred from the call stack: the module of the first stack frame outside
   *   `sandbox/tool.ts`, i.e. the module that called `defineTool`. Pass it explicitly when
   *   `defineTool` is called from a helper in another module than the one that exports the tool.
   */
  module?: string;
  /**
   * Its output comes from outside (web pages, emails, tickets) and may carry injected
   * instructions: once it is in a task's context, irreversible tools need a human.
   * @default false
   */
  untrusted?: boolean;
  /** Longest a call may run. @default 30000 */
  timeoutMs?: number;
  /**
   * The money a call with these arguments moves (in the unit approvers' `maxAmount` uses, e.g.
   * USD). Shown on approval requests; an approver may only approve calls up to their `maxAmount`.
   */
  amount?: (input: I) => number;
  /**
   * Authorization beyond the principal's tool list and amount: may the task's principal make this
   * call? Return a reason to refuse (for example "order 42 belongs to another customer").
   */
  authorize?: (principal: string, input: I) => string | undefined | Promise<string | undefined>;
  /** Semantic checks on parsed arguments before any side effect; return a reason to refuse. */
  validate?: (input: I) => string | undefined | Promise<string | undefined>;
  /**
   * Asks the outside system whether the call with this key already happened. Called when a
   * runner died mid-call, so a side effect is neither lost nor done twice.
   */
  reconcile?: (key: string, input: I) => Promise<Reconciliation<O>>;
  run: (input: I, context: ToolContext) => Promise<O>;
}

/** A validated tool, ready for the gates and the runner. */
export interface Tool<I = unknown, O = unknown> extends Required<Pick<ToolDefinition<I, O>, 'name' | 'description' | 'input' | 'output' | 'reversibility' | 'isolation' | 'timeoutMs' | 'untrusted' | 'run'>> {
  validate: ToolDefinition<I, O>['validate'];
  amount: ToolDefinition<I, O>['amount'];
  authorize: ToolDefinition<I, O>['authorize'];
  /** The module that exports the tool, or `undefined` when it could not be inferred. */
  module: string | undefined;
  permissions: Readonly<ToolPermissions>;
  reconcile: ToolDefinition<I, O>['reconcile'];
  /** The input schema as JSON Schema, for the model's tool list. */
  inputJsonSchema: Record<string, unknown>;
  /** Whether running it twice could do harm (anything but `read`). */
  sideEffect: boolean;
  /**
   * Set on the built-in `delegate` and `handoff` tools of an agent with `delegates` or
   * `handoffs`: their calls start child tasks (and join them, or hand the task over) instead of
   * running `run`.
   */
  delegation?: 'delegate' | 'handoff';
}

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Declares a tool. Throws at definition time if the definition is unusable. */
export function defineTool<I, O>(definition: ToolDefinition<I, O>): Tool<I, O> {
  if (!TOOL_NAME.test(definition.name)) {
    throw new TypeError(`tool name ${JSON.stringify(definition.name)} must match ${TOOL_NAME}`);
  }
  if (!definition.description?.trim()) throw new TypeError(`tool "${definition.name}" needs a description: the model chooses tools by it`);
  const reversibility = definition.reversibility ?? 'read';
  const jsonSchema = z.toJSONSchema(definition.input, { target: 'draft-2020-12', io: 'input' }) as Record<string, unknown>;
  delete jsonSchema.$schema;
  if (jsonSchema.type !== 'object') throw new TypeError(`tool "${definition.name}" input must be a z.object(...) schema`);
  return Object.freeze({
    name: definition.name,
    description: definition.description,
    input: definition.input,
    output: definition.output,
    reversibility,
    isolation: definition.isolation ?? 'inline',
    timeoutMs: definition.timeoutMs ?? 30_000,
    untrusted: definition.untrusted ?? false,
    validate: definition.validate,
    amount: definition.amount,
    authorize: definition.authorize,
    module: definition.module === undefined ? definingModule() : checkModule(definition.name, definition.module),
    permissions: compilePermissions(definition.name, definition.isolation ?? 'inline', definition.permissions),
    reconcile: definition.reconcile,
    run: definition.run,
    inputJsonSchema: jsonSchema,
    sideEffect: reversibility !== 'read',
  });
}

const THIS_MODULE = moduleUrlOf(import.meta.url);

/** A stack frame's file as a `file:` URL without query or hash (tsx and Vite add them), if it is a file. */
function moduleUrlOf(file: string | null | undefined): string | undefined {
  if (!file) return undefined;
  if (file.startsWith('/')) return pathToFileURL(file).href; // Vite-based runners report paths
  if (!file.startsWith('file:')) return undefined; // node:internal, eval, data:
  const url = new URL(file);
  url.search = '';
  url.hash = '';
  return url.href;
}

/** The module of the first stack frame outside this file, or `undefined`. Never throws. */
function definingModule(): string | undefined {
  const prepare = Error.prepareStackTrace;
  const limit = Error.stackTraceLimit;
  try {
    Error.prepareStackTrace = (_error, sites) => sites;
    Error.stackTraceLimit = 20;
    const holder: { stack?: unknown } = {};
    Error.captureStackTrace(holder, defineTool);
    // Read now: the stack is formatted lazily, with whatever prepareStackTrace is set then.
    const sites = holder.stack;
    if (!Array.isArray(sites)) return undefined;
    for (const site of sites as NodeJS.CallSite[]) {
      const url = moduleUrlOf(site.getFileName());
      if (url !== undefined && url !== THIS_MODULE) return url;
    }
    return undefined;
  } catch {
    return undefined;
  } finally {
    Error.prepareStackTrace = prepare;
    Error.stackTraceLimit = limit;
  }
}

function checkModule(tool: string, module: string): string {
  const url = moduleUrlOf(module);
  if (url === undefined) throw new TypeError(`tool "${tool}" module must be a file: URL (import.meta.url), got ${JSON.stringify(module)}`);
  return url;
}

function compilePermissions(tool: string, isolation: Isolation, permissions: ToolPermissions | undefined): Readonly<ToolPermissions> {
  if (permissions === undefined) return Object.freeze({});
  // Declared permissions that nothing would enforce would run the tool weaker than its author meant.
  if (isolation === 'inline') throw new TypeError(`tool "${tool}" declares permissions but runs inline, where nothing enforces them; use isolation "thread" or "bwrap"`);
  if (isolation === 'thread' && permissions.binds !== undefined) throw new TypeError(`tool "${tool}" declares binds, which only the "bwrap" isolation level enforces`);
  const { binds, limits } = permissions;
  return Object.freeze({
    ...(binds !== undefined ? { binds: Object.freeze({ ro: Object.freeze([...(binds.ro ?? [])]), rw: Object.freeze([...(binds.rw ?? [])]) }) } : {}),
    ...(limits !== undefined ? { limits: Object.freeze({ ...limits }) } : {}),
  });
}
