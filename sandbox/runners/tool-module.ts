/**
 * How an isolated worker or sandbox finds the tool it is to run: by importing the tool's defining
 * module and looking for an export, or an exported agent's `tools`, with the tool's name. A function
 * cannot cross into another thread or process, so this is the only way the tool's `run` gets there.
 */
import type { Tool } from '../tool.ts';
import { ToolModuleError, type ThrownError } from './errors.ts';

/**
 * JavaScript source of `findTool(namespace, name)`, embedded in the worker and sandbox bootstraps
 * (which cannot import troupe's TypeScript). It returns the first export that is a tool named `name`,
 * else the first such tool in an export's `tools` (a Map, an array or a plain object, as agents and
 * tool lists hold them), else `undefined`. ES2019, dependency-free.
 */
export const FIND_TOOL_SOURCE = String.raw`function findTool(namespace, name) {
  const isTool = (v) => v !== null && typeof v === 'object' && v.name === name && typeof v.run === 'function';
  const values = Object.values(namespace);
  for (const value of values) if (isTool(value)) return value;
  for (const value of values) {
    const tools = value !== null && typeof value === 'object' ? value.tools : undefined;
    if (tools === null || typeof tools !== 'object') continue;
    const list = tools instanceof Map ? Array.from(tools.values()) : Array.isArray(tools) ? tools : Object.values(tools);
    for (const tool of list) if (isTool(tool)) return tool;
  }
  return undefined;
}`;

/**
 * JavaScript source of `thrown(e)`, embedded in the worker and sandbox bootstraps: what they report
 * of a value the tool threw (see {@link ThrownError}). An Error gives its name, message and stack,
 * and its own `code` and `retryable` when it has a string code and a boolean flag, as a TroupeError
 * does (the host decides whether they make one: see `ToolThrewError`); any other value gives its
 * JSON, or its `String()`, as the message of a `NonError`. ES2019, dependency-free.
 */
export const THROWN_SOURCE = String.raw`function thrown(e) {
  if (e instanceof Error) {
    const error = { name: String(e.name), message: String(e.message), stack: String(e.stack) };
    if (typeof e.code === 'string' && typeof e.retryable === 'boolean') {
      error.code = e.code;
      error.retryable = e.retryable;
    }
    return error;
  }
  let text;
  try { text = JSON.stringify(e); } catch (_) { text = undefined; }
  return { name: 'NonError', message: text === undefined ? String(e) : text };
}`;

/**
 * The name of the error the bootstraps report when the module loaded but exports no such tool. Its
 * message, like that of {@link LOAD_FAILED_ERROR}, follows the module's URL: see {@link moduleErrorOf}.
 */
export const NOT_EXPORTED_ERROR = 'TroupeToolNotExported';
/** The name of the error the bootstraps report when the module could not be loaded at all. */
export const LOAD_FAILED_ERROR = 'TroupeToolLoadFailed';

/**
 * The tool's defining module, which an isolated level must load.
 * @throws ToolModuleError when the tool has none (its `module` could not be inferred).
 */
export function moduleOf(tool: Tool<any, any>): string {
  if (tool.module !== undefined) return tool.module;
  throw new ToolModuleError(
    tool.name,
    undefined,
    'no-module',
    `tool "${tool.name}" runs at isolation "${tool.isolation}" but its defining module is unknown; pass \`module: import.meta.url\` to defineTool in the module that exports it`,
  );
}

/**
 * The typed error for a bootstrap's report of an unusable module, or `undefined` when the error the
 * bootstrap reported is the tool's own.
 */
export function moduleErrorOf(tool: string, module: string, error: { name: string; message: string }, options?: { cause?: unknown }): ToolModuleError | undefined {
  if (error.name === NOT_EXPORTED_ERROR) return new ToolModuleError(tool, module, 'not-exported', `tool "${tool}": ${module} ${error.message}`, options);
  if (error.name === LOAD_FAILED_ERROR) return new ToolModuleError(tool, module, 'failed', `tool "${tool}": ${module} ${error.message}`, options);
  return undefined;
}

let tsxApi: string | undefined;

/** The file URL of tsx's ESM API (`register()`), which makes a fresh worker thread load TypeScript. */
export function tsxApiUrl(): string {
  tsxApi ??= import.meta.resolve('tsx/esm/api');
  return tsxApi;
}
