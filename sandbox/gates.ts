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
 * Gates 1 and 2 (gate 3 is {@link authorizeCall}): the tool exists and its arguments parse (schema), and its `validate` hook
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

/** What a principal's tasks may call (config `principals.<name>`). */
export interface PrincipalGrant {
  tools?: string[] | undefined;
  maxAmount?: number | undefined;
}

/**
 * Gate 3: the task's principal may call this tool with these arguments — the tool is in the
 * principal's `tools`, the call's `amount` is within its `maxAmount`, and the tool's own
 * `authorize` hook agrees. No principal (none configured) passes. Throws a
 * {@link ToolRejectedError} (`permission_denied`) naming what was refused.
 */
export async function authorizeCall(principal: { name: string; grant: PrincipalGrant } | undefined, tool: Tool, input: unknown): Promise<void> {
  if (!principal) return;
  const { name, grant } = principal;
  const deny = (why: string) => {
    throw new ToolRejectedError(ErrorCode.permissionDenied, `${why}. This is a permission, not a mistake in the arguments: do not retry; tell the user it needs someone allowed to do it.`, 'authorization');
  };
  if (grant.tools && !grant.tools.includes(tool.name)) deny(`principal "${name}" may not call "${tool.name}" (allowed: ${grant.tools.join(', ') || 'none'})`);
  const amount = tool.amount?.(input);
  if (amount !== undefined && grant.maxAmount !== undefined && amount > grant.maxAmount) deny(`principal "${name}" may make "${tool.name}" calls up to ${grant.maxAmount}; this one is for ${amount}`);
  const objection = await tool.authorize?.(name, input);
  if (objection) deny(`"${tool.name}" refused principal "${name}": ${objection}`);
}
