/**
 * A troupe host in its own process for the chaos run and `test/cluster`: runs the chaos agent with
 * its scripted model (MODEL_MS per call), and the echo agent the intake fuzz sends valid tasks to. Environment: see `processes.ts`, plus MODEL_MS.
 * Prints `ready {...}` once it takes tasks; SIGTERM shuts it down gracefully (hands its tasks over).
 */
import { Host } from '../actors/host.ts';
import { chaosAgent, chaosModel } from './agent.ts';
import { echoAgent, echoModel } from './echo-agent.ts';
import { chaosConfig, chaosConnect, chaosLogger, onTerminate, ready } from './processes.ts';

const logger = chaosLogger();
const nc = await chaosConnect('host');
const host = new Host({
  nc,
  config: chaosConfig(),
  // The echo agent takes the intake fuzz's valid tasks (see fuzz-slot.ts).
  agents: [chaosAgent, echoAgent],
  model: ((charges) => (agent: { name: string }) => (agent.name === echoAgent.name ? echoModel : charges))(chaosModel(Number(process.env.MODEL_MS ?? 50))),
  logger,
  hostId: `${process.env.NAME ?? 'chaos-host'}-${process.pid}`,
});
onTerminate(logger, async () => {
  await host.close();
  await nc.drain();
});
await host.start();
ready({ id: host.hostId, metrics: host.metricsUrl });
