export { defineTool, type Tool, type ToolDefinition, type ToolContext, type ToolPermissions, type Reversibility, type Isolation, type Reconciliation } from './tool.ts';
export { admitCall, authorizeCall, type AdmittedCall, type PrincipalGrant } from './gates.ts';
export { ToolRejectedError, ToolFailedError, ToolTimeoutError, ToolUnavailableError, InvalidToolOutputError } from './errors.ts';
export { executeTool, type ExecuteOptions } from './execute.ts';
export { compileOutputPolicy, delimitUntrusted, environmentSecrets, sealOutput, type OutputPolicy, type SealedOutput } from './output.ts';
export { createToolRunner, type ToolRunner, type ToolRunnerOptions } from './runners/index.ts';
export { runJavaScriptTool } from './tools/index.ts';
