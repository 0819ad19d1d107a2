import { rmSync } from 'node:fs';
import path from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Logger } from 'pino';
import { createWebSocketInspector } from '@statelyai/inspect';
import type { Agent } from '../actors/agent.ts';
import { Host } from '../actors/host.ts';
import { startInspectorRelay } from '../inspect/relay.ts';
import { isolatedTools, ToolWorker } from '../actors/tool-worker.ts';
import { ErrorCode, TerminalError } from '../common/errors.ts';
import type { LoadedConfig } from '../config/load.ts';
import { connectNats } from '../runtime/connection.ts';
import { startEmbeddedServer, type EmbeddedServer } from '../runtime/embedded-server.ts';
import { writeNatsConfig, type NatsUsers } from '../runtime/nats-config/index.ts';
import { recordUrl, serverConfigFile, usersFile } from './connect.ts';
import { loadAgents } from './load-agents.ts';
import { createModel, type ModelSetup } from './model.ts';

/** What {@link startStack} starts. */
export interface StackOptions {
  /** Start an embedded nats-server when no NATS servers are configured (`troupe up`). */
  embedded: boolean;
  /**
   * Run the embedded server with the per-role users of `troupe nats-config`, new passwords for
   * this run, and connect the host as the hosts user (`troupe up --secure`). Other commands in
   * the project find the users in {@link usersFile}. Refused when NATS servers are configured:
   * troupe does not start a server then. @default false
   */
  secure?: boolean;
  /** Connect every actor to the XState inspector, through a relay started here (`troupe up --inspect`). @default config `inspect.enabled` */
  inspect?: boolean;
}

/** A running troupe: (embedded) NATS, a model, a host. */
export interface Stack extends AsyncDisposable {
  url: string;
  nc: NatsConnection;
  host: Host;
  /** The agents the host runs, as loaded from the config's agent modules. */
  agents: readonly Agent<any>[];
  /** The XState inspector's relay (`--inspect`): where viewers connect, and a page that shows it. */
  inspector: { url: string; pageUrl: string | undefined } | undefined;
  /** The worker for the agents' isolated tools (`troupe up` only, when there are any). */
  worker: ToolWorker | undefined;
  model: ModelSetup;
  server: EmbeddedServer | undefined;
  /** In secure mode, the file (mode 600) holding each role's user and password; removed by `close()`. */
  usersFile: string | undefined;
  close(): Promise<void>;
}

/**
 * Starts what `troupe up` (embedded: no `NATS_URL`) or `troupe host` (against `NATS_URL`) run.
 * `close()` shuts down in order: hand tasks over, then the model, NATS connection and server.
 */
export async function startStack(loaded: LoadedConfig, logger: Logger, options: StackOptions): Promise<Stack> {
  const { config } = loaded;
  let servers = config.nats.servers;
  if (options.secure && (!options.embedded || servers?.length)) {
    throw new TerminalError(
      ErrorCode.invalidConfig,
      '--secure secures the nats-server troupe starts itself, and with NATS_URL (nats.servers) it starts none. Secure your own server with `troupe nats-config` and give each process its user (NATS_USER / NATS_PASSWORD).',
    );
  }
  const agents = await loadAgents(loaded.agentModules);
  let server: EmbeddedServer | undefined;
  let users: NatsUsers | undefined;
  let forgetServer = () => {};
  if (options.embedded && !servers?.length) {
    const storeDir = path.resolve(loaded.baseDir, config.embedded.storeDir);
    const binary = config.embedded.binary;
    if (options.secure) {
      const conf = writeNatsConfig({ file: serverConfigFile(loaded), port: config.embedded.port, storeDir, prefix: config.prefix });
      users = conf.users;
      const forgetConfig = () => rmSync(conf.file, { force: true });
      try {
        server = await startEmbeddedServer({ storeDir, configFile: conf.file, binary });
      } catch (err) {
        forgetConfig();
        throw err;
      }
      const forgetUrl = recordUrl(loaded, server.url, users);
      forgetServer = () => {
        forgetUrl();
        forgetConfig();
      };
    } else {
      server = await startEmbeddedServer({ storeDir, port: config.embedded.port, binary });
      forgetServer = recordUrl(loaded, server.url);
    }
    servers = [server.url];
    logger.info({ url: server.url, storeDir: server.storeDir, secure: users !== undefined }, 'embedded nats-server started');
  }
  if (!servers?.length) throw new Error('no NATS servers: set NATS_URL (or nats.servers in troupe.config.json)');
  const model = await createModel(loaded, logger);
  const credentials = users ? { user: users.hosts.user, password: users.hosts.password } : { credsFile: config.nats.credsFile, user: config.nats.user, password: config.nats.password };
  const nc = await connectNats({ servers, name: `${config.nats.name}-host`, ...credentials });
  // The XState inspector: a relay of our own (or the configured one) that the Stately inspector page reads.
  const wantInspector = options.inspect || config.inspect.enabled;
  const relay = wantInspector && !config.inspect.url ? await startInspectorRelay({ port: config.inspect.port }) : undefined;
  const inspectorUrl = config.inspect.url ?? relay?.url;
  const inspector = wantInspector && inspectorUrl ? createWebSocketInspector({ url: inspectorUrl }) : undefined;
  const host = new Host({ nc, config, agents, model: (agent) => model.clientFor(agent), logger, ...(inspector ? { inspect: inspector.inspect } : {}) });
  await host.start();
  // `troupe up` runs everything on one machine, workers included; in production `troupe worker` does.
  const tools = options.embedded ? isolatedTools(agents) : [];
  const worker = tools.length ? new ToolWorker({ nc, config, tools, logger }) : undefined;
  await worker?.start();
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      await host.close();
      await worker?.close();
      inspector?.stop();
      await relay?.close();
      await model.close();
      await nc.drain().catch(() => {});
      forgetServer();
      await server?.close();
    })());
  return { url: servers[0]!, nc, host, agents, worker, inspector: inspectorUrl && wantInspector ? { url: inspectorUrl, pageUrl: relay?.pageUrl } : undefined, model, server, usersFile: users ? usersFile(loaded) : undefined, close, [Symbol.asyncDispose]: close };
}
