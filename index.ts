/**
 * troupe's public API: define agents and tools, run hosts, and talk to troupe over NATS.
 */
export { defineAgent, type Agent, type AgentLimits, type LoopAgentDefinition, type MachineAgentDefinition, type TaskStart } from './actors/agent.ts';
export { Host, type HostOptions } from './actors/host.ts';
export { ToolWorker, isolatedTools, type ToolWorkerOptions } from './actors/tool-worker.ts';
export { defineTool, runJavaScriptTool, type Tool, type ToolDefinition, type ToolContext, type ToolPermissions, type Reversibility, type Isolation, type Reconciliation } from './sandbox/index.ts';
export { agentLoopMachine, outcome, type MachineOutcome, type Message, type ContentBlock, type ModelEffectInput, type ToolsEffectInput } from './machines/index.ts';
export { loadConfig, compileConfig, ConfigError, type TroupeConfig, type TroupeConfigInput } from './config/index.ts';
export { subjects, Headers } from './runtime/subjects.ts';
export { watchTask } from './runtime/task-watch.ts';
export { connectNats, watchConnection, type ConnectionWatch } from './runtime/connection.ts';
export { startEmbeddedServer } from './runtime/embedded-server.ts';
export { startEmbeddedCluster, type EmbeddedCluster, type ClusterNode } from './runtime/embedded-cluster.ts';
export * from './runtime/wire.ts';
export * from './common/index.ts';
