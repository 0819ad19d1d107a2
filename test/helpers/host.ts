import pino from 'pino';
import type { Agent } from '../../actors/agent.ts';
import { Host } from '../../actors/host.ts';
import type { ModelClient } from '../../actors/model/model-client.ts';
import { compileConfig } from '../../config/load.ts';
import type { TroupeConfigInput } from '../../config/schema.ts';
import { connectNats } from '../../runtime/connection.ts';

/** A host in this process against a test server; dispose it to drain and disconnect. */
export async function startHost(url: string, agents: Agent<any>[], model: ModelClient, config: TroupeConfigInput = {}, extra: { hostId?: string; faults?: ConstructorParameters<typeof Host>[0]['faults']; inspect?: ConstructorParameters<typeof Host>[0]['inspect'] } = {}) {
  const nc = await connectNats({ servers: [url], name: 'troupe-test-host' });
  const host = new Host({
    nc,
    config: compileConfig(config),
    agents,
    model,
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    ...extra,
  });
  await host.start();
  return Object.assign(host, {
    nc,
    async stop() {
      await host.close();
      await nc.close();
    },
  });
}
