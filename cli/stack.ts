import path from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Logger } from 'pino';
import { Host } from '../actors/host.ts';
import type { LoadedConfig } from '../config/load.ts';
import { connectNats } from '../runtime/connection.ts';
import { startEmbeddedServer, type EmbeddedServer } from '../runtime/embedded-server.ts';
import { recordUrl } from './connect.ts';
import { loadAgents } from './load-agents.ts';
import { createModel, type ModelSetup } from './model.ts';

/** A running troupe: (embedded) NATS, a model, a host. */
export interface Stack extends AsyncDisposable {
  url: string;
  nc: NatsConnection;
  host: Host;
  model: ModelSetup;
  server: EmbeddedServer | undefined;
  close(): Promise<void>;
}

/**
 * Starts what `troupe up` (embedded: no `NATS_URL`) or `troupe host` (against `NATS_URL`) run.
 * `close()` shuts down in order: hand tasks over, then the model, NATS connection and server.
 */
export async function startStack(loaded: LoadedConfig, logger: Logger, options: { embedded: boolean }): Promise<Stack> {
  const { config } = loaded;
  const agents = await loadAgents(loaded.agentModules);
  let server: EmbeddedServer | undefined;
  let forgetUrl = () => {};
  let servers = config.nats.servers;
  if (options.embedded && !servers?.length) {
    server = await startEmbeddedServer({
      storeDir: path.resolve(loaded.baseDir, config.embedded.storeDir),
      port: config.embedded.port,
      binary: config.embedded.binary,
    });
    servers = [server.url];
    forgetUrl = recordUrl(loaded, server.url);
    logger.info({ url: server.url, storeDir: server.storeDir }, 'embedded nats-server started');
  }
  if (!servers?.length) throw new Error('no NATS servers: set NATS_URL (or nats.servers in troupe.config.json)');
  const model = await createModel(loaded, logger);
  const nc = await connectNats({ servers, name: `${config.nats.name}-host`, credsFile: config.nats.credsFile, user: config.nats.user, password: config.nats.password });
  const host = new Host({ nc, config, agents, model: (agent) => model.clientFor(agent), logger });
  await host.start();
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      await host.close();
      await model.close();
      await nc.drain().catch(() => {});
      forgetUrl();
      await server?.close();
    })());
  return { url: servers[0]!, nc, host, model, server, close, [Symbol.asyncDispose]: close };
}
