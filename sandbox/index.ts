export { defineTool, type Tool, type ToolDefinition, type ToolContext, type Reversibility, type Isolation, type Reconciliation } from './tool.ts';
export { admitCall, type AdmittedCall } from './gates.ts';
export { ToolRejectedError, ToolFailedError, ToolTimeoutError, ToolUnavailableError, InvalidToolOutputError } from './errors.ts';
