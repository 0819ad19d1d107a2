import type { Logger } from 'pino';
import { createAnthropicModelClient } from '../actors/model/anthropic-client.ts';
import type { Agent } from '../actors/agent.ts';
import type { AnthropicModelClientOptions } from '../actors/model/anthropic-options.ts';
import type { ModelClient } from '../actors/model/model-client.ts';
import type { LoadedConfig } from '../config/load.ts';
import { startSimulator, type SimulatorHandle } from '../simulator/index.ts';
import path from 'node:path';

/** The model a process uses, and what to close with it. */
export interface ModelSetup {
  /** The client of an agent: the config's routing with the agent's `models` over it. */
  clientFor(agent: Agent): ModelClient;
  provider: 'anthropic' | 'simulator';
  simulator: SimulatorHandle | undefined;
  close(): Promise<void>;
}

/**
 * The Anthropic API when `ANTHROPIC_API_KEY` is set (or `model.provider` says so); otherwise the
 * bundled simulator on a free loopback port, driven through the same SDK.
 */
export async function createModel(loaded: LoadedConfig, logger: Logger, env = process.env): Promise<ModelSetup> {
  const { model } = loaded.config;
  const provider = model.provider ?? (env.ANTHROPIC_API_KEY ? 'anthropic' : 'simulator');
  let simulator: SimulatorHandle | undefined;
  let connection: Pick<AnthropicModelClientOptions, 'apiKey' | 'baseURL'>;
  if (provider === 'anthropic') {
    if (!env.ANTHROPIC_API_KEY) throw new Error('model.provider is "anthropic" but ANTHROPIC_API_KEY is not set');
    connection = { apiKey: env.ANTHROPIC_API_KEY, ...(model.baseURL ? { baseURL: model.baseURL } : {}) };
  } else {
    simulator = await startSimulator({ ...(model.scenario ? { scenario: path.resolve(loaded.baseDir, model.scenario) } : {}) });
    connection = { apiKey: 'simulator', baseURL: simulator.url };
    logger.info({ url: simulator.url }, 'no ANTHROPIC_API_KEY: using the bundled model simulator');
  }
  const clients = new Map<string, ModelClient>();
  const clientFor = (agent: Agent): ModelClient => {
    let client = clients.get(agent.name);
    if (!client) {
      client = createAnthropicModelClient({
        ...connection,
        routing: routingFor(model.routing, agent),
        ...(model.pricing ? { pricing: model.pricing } : {}),
        ...(model.timeoutMs ? { timeoutMs: model.timeoutMs } : {}),
        ...(model.maxAttempts ? { maxAttempts: model.maxAttempts } : {}),
        logger: logger.child({ actor: 'model', agent: agent.name }),
      });
      clients.set(agent.name, client);
    }
    return client;
  };
  return {
    clientFor,
    provider,
    simulator,
    close: async () => {
      await Promise.all([...clients.values()].map((c) => c.close?.()));
      await simulator?.close();
    },
  };
}

type RoutingConfig = LoadedConfig['config']['model']['routing'];

/** The config's routing with the agent's roles over it; built-in defaults fill whatever neither sets. */
function routingFor(routing: RoutingConfig, agent: Agent): AnthropicModelClientOptions['routing'] {
  const agentRoles = Object.keys(agent.models).length ? agent.models : undefined;
  if (!routing && !agentRoles) return undefined;
  return {
    ...(routing?.default ? { default: routing.default } : {}),
    ...(routing?.roles || agentRoles ? { roles: { ...routing?.roles, ...agentRoles } } : {}),
  };
}
