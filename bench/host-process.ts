/**
 * A host in its own process, running the loop agent: for the recovery bench (a model that takes
 * `MODEL_MS` per call, so tasks are mid-flight when the bench kills it) and for the loop bench's
 * host per core (`MODEL_MS` 0: the instant model). Environment: NATS_URL, PREFIX, LEASE_MS,
 * MODEL_MS. Prints "ready" on stdout once started; started through {@link startHostProcess}.
 */
import pino from 'pino';
import { Host } from '../actors/host.ts';
import type { ModelCallRequest } from '../actors/model/model-client.ts';
import { compileConfig } from '../config/load.ts';
import { connectNats } from '../runtime/connection.ts';
import { instantModel, loopAgent } from './workloads.ts';

const env = process.env;
const delay = Number(env.MODEL_MS ?? 200);
const nc = await connectNats({ servers: [env.NATS_URL!], name: 'bench-host' });
const host = new Host({
  nc,
  config: compileConfig({ prefix: env.PREFIX!, host: { ...(env.LEASE_MS ? { leaseMs: Number(env.LEASE_MS) } : {}), concurrency: 2000 } }),
  agents: [loopAgent],
  model: delay > 0 ? { call: async (r: ModelCallRequest) => (await new Promise((res) => setTimeout(res, delay)), instantModel.call(r)) } : instantModel,
  logger: pino({ level: 'silent' }),
});
await host.start();
process.stdout.write('ready\n');
