import { ErrorCode } from '../common/errors.ts';
import { formatIssues } from '../config/load.ts';
import { ToolRejectedError } from './errors.ts';
import type { Tool } from './tool.ts';

/** A call that passed the gates: the tool and its parsed arguments. */
export interface AdmittedCall {
  tool: Tool;
  input: unknown;
}

/**
 * Gates 1 and 2: the tool exists and its arguments parse (schema), and its `validate` hook
 * accepts the values (semantic). Throws a {@link ToolRejectedError} naming what was wrong.
 */
export async function admitCall(tools: ReadonlyMap<string, Tool>, name: string, rawInput: unknown): Promise<AdmittedCall> {
  const tool = tools.get(name);
  if (!tool) {
    const known = [...tools.keys()].join(', ') || '(none)';
    throw new ToolRejectedError(ErrorCode.unknownTool, `there is no tool named "${name}". Available tools: ${known}.`, 'schema');
  }
  const parsed = tool.input.safeParse(rawInput);
  if (!parsed.success) {
    throw new ToolRejectedError(ErrorCode.invalidToolArguments, `arguments for "${name}" do not match its schema:\n${formatIssues(parsed.error)}`, 'schema');
  }
  const reason = await tool.validate?.(parsed.data);
  if (reason) throw new ToolRejectedError(ErrorCode.invalidToolArguments, `"${name}" refused these arguments: ${reason}`, 'semantic');
  return { tool, input: parsed.data };
}
