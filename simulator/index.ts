/**
 * The bundled Anthropic-compatible Messages API simulator: a local HTTP server that plays scripted
 * turns and injected faults, so the real `@anthropic-ai/sdk` path runs in demos and tests.
 */
export { startSimulator, type SimulatorHandle, type SimulatorLogger, type StartSimulatorOptions } from './server.ts';
export {
  loadScenario,
  parseScenario,
  scenarioSchema,
  ScenarioError,
  SUPPORT_DESK_SCENARIO,
  type Fault,
  type Scenario,
  type ScenarioInput,
  type Script,
  type ScriptedTurn,
} from './scenario.ts';
export type { SimulatorStats, RequestRecord } from './stats.ts';
