/**
 * A tool worker in its own process for the chaos run and `test/cluster`: serves `chaos_charge`.
 * Environment: see `processes.ts`. Prints `ready {...}` once it answers calls; SIGTERM lets
 * running calls finish, then exits.
 */
import { ToolWorker } from '../actors/tool-worker.ts';
import { chaosCharge } from './charge-tool.ts';
import { chaosConfig, chaosConnect, chaosLogger, onTerminate, ready } from './processes.ts';

const logger = chaosLogger();
const nc = await chaosConnect('worker');
const worker = new ToolWorker({ nc, config: chaosConfig(), tools: [chaosCharge], logger, workerId: `${process.env.NAME ?? 'chaos-worker'}-${process.pid}` });
onTerminate(logger, async () => {
  await worker.close();
  await nc.drain();
});
await worker.start();
ready({ id: worker.workerId });
