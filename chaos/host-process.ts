/**
 * A troupe host in its own process for the chaos run and `test/cluster`: runs the chaos agent with
 * its scripted model (MODEL_MS per call). Environment: see `processes.ts`, plus MODEL_MS.
 * Prints `ready {...}` once it takes tasks; SIGTERM shuts it down gracefully (hands its tasks over).
 */
import { Host } from '../actors/host.ts';
import { chaosAgent, chaosModel } from './agent.ts';
import { chaosConfig, chaosConnect, chaosLogger, onTerminate, ready } from './processes.ts';

const logger = chaosLogger();
const nc = await chaosConnect('host');
const host = new Host({
  nc,
  config: chaosConfig(),
  agents: [chaosAgent],
  model: chaosModel(Number(process.env.MODEL_MS ?? 50)),
  logger,
  hostId: `${process.env.NAME ?? 'chaos-host'}-${process.pid}`,
});
onTerminate(logger, async () => {
  await host.close();
  await nc.drain();
});
await host.start();
ready({ id: host.hostId, metrics: host.metricsUrl });
