/**
 * A host or tool worker of one scenario in its own process, so that a fault can kill it for real
 * (SIGKILL): it runs the scenario's agents on the scenario's prefix and, at the effect the fault
 * names, tells the harness and stops there until the harness kills it. Started by
 * {@link startChild}; its spec comes in the `TROUPE_EVAL_CHILD` environment variable.
 */
import pino from 'pino';
import { Host } from '../../actors/host.ts';
import type { EffectFaults } from '../../actors/effect-gateway.ts';
import { isolatedTools, ToolWorker } from '../../actors/tool-worker.ts';
import { createModel } from '../model.ts';
import { compileConfig } from '../../config/load.ts';
import { connectFor } from './scenario-config.ts';
import { loadScenarioAgents } from './agents.ts';
import { CHILD_SPEC_ENV, childSpecSchema, type ChildMessage } from './child-spec.ts';
import { loadScenarioFile, ScenarioFileError } from './scenario-file.ts';

const send = (m: ChildMessage) => process.send?.(m);
// The harness is gone (it exited or was killed): so is this scenario.
process.on('disconnect', () => process.exit(1));
const never = () => new Promise<never>(() => {});

try {
  const spec = childSpecSchema.parse(JSON.parse(process.env[CHILD_SPEC_ENV] ?? 'null'));
  const config = compileConfig(spec.config, 'the eval child config');
  const logger = pino({ level: config.log.level }, pino.destination(2));
  const loaded = loadScenarioFile(spec.scenarioFile);
  if (loaded instanceof ScenarioFileError) throw loaded;
  const built = await loadScenarioAgents(loaded.scenario, spec.source, (index) => send({ type: 'fired', index }));
  if ('problems' in built) throw new Error(built.problems.map((p) => p.message).join('; '));
  const nc = await connectFor(config, `troupe-eval-${spec.role}`);
  let fired = false;
  const pauseAt = (matches: (key: string) => boolean) => async (key: string) => {
    if (fired || !matches(key)) return;
    fired = true;
    send({ type: 'fault', key });
    await never();
  };
  if (spec.role === 'host') {
    let faults: EffectFaults = {};
    if (spec.kill) {
      const target = `${spec.taskId}/${spec.kill.step}/${spec.kill.effect === 'model' ? 0 : 1}`;
      const hook = pauseAt((key) => key === target);
      faults = spec.kill.point === 'before' ? { beforeEffect: hook } : { afterRecorded: hook };
    }
    const model = await createModel({ config, file: undefined, baseDir: process.cwd(), agentModules: spec.source.modules }, logger, { ANTHROPIC_API_KEY: 'troupe-eval' });
    const host = new Host({ nc, config, agents: built.agents, model: (agent) => model.clientFor(agent), logger, faults, hostId: `eval-child-host-${process.pid}` });
    await host.start();
    send({ type: 'ready', id: host.hostId });
  } else {
    const crash = spec.crash!;
    const [tool] = isolatedTools(built.agents, [crash.tool]);
    const keys = new Set<string>();
    const hook = pauseAt((key) => {
      // Each call once: a re-dispatch of a key this worker already saw is not a new call.
      if (keys.has(key)) return false;
      keys.add(key);
      return keys.size === crash.call;
    });
    // A side-effecting call is killed once the ledger says it started (its outcome is then
    // unknown); a read-only one as it arrives (nothing is recorded for those before they run).
    const faults: EffectFaults = tool!.sideEffect ? { afterStarted: hook } : { beforeEffect: hook };
    const worker = new ToolWorker({ nc, config, tools: [tool!], logger, faults, workerId: `eval-child-worker-${process.pid}` });
    await worker.start();
    send({ type: 'ready', id: worker.workerId });
  }
} catch (err) {
  const message: ChildMessage = { type: 'error', message: err instanceof Error ? err.message : String(err) };
  // Exit only once the report is out: exiting at once could drop it.
  if (process.send) process.send(message, () => process.exit(1));
  else process.exit(1);
}
