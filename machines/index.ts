export { agentLoopMachine, type AgentLoopContext, type AgentLoopInput } from './agent-loop.machine.ts';
export * from './conversation.ts';
export { outcome, errorOf, type MachineOutcome } from './outcome.ts';
