/**
 * The evaluation harness behind `troupe eval`: scenario files run against real NATS, with the
 * bundled simulator playing the model's turns, faults injected, and results scored against
 * expectations and a saved baseline.
 */
export { EvalInterruptedError, runEval, type EvalOptions, type EvalRun } from './run.ts';
export { runScenario, type RunContext, type ScenarioResult } from './run-scenario.ts';
export { evalScenarioSchema, type EvalScenario, type EvalScenarioInput, type EvalFault, type Expectations } from './scenario.ts';
export { findScenarioFiles, loadScenarioFile, ScenarioFileError, type LoadedScenario, type ScenarioProblem } from './scenario-file.ts';
export { measure, type Metrics, type Observation, type Outcome, type ToolCall, type FaultRecord } from './metrics.ts';
export { checkExpectations, type Check } from './checks.ts';
export { baselineOf, compareWithBaseline, loadBaseline, saveBaseline, evalBaselineSchema, type EvalBaseline, type BaselineComparison, type Regression } from './baseline.ts';
export { jsonReport, renderReport, runFailed, totalsOf, type Totals } from './report.ts';
export { createProgress, type ProgressSink, type ProgressStream } from './progress.ts';
