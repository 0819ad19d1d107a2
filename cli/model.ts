import type { Logger } from 'pino';
import { createAnthropicModelClient } from '../actors/model/anthropic-client.ts';
import type { ModelClient } from '../actors/model/model-client.ts';
import type { LoadedConfig } from '../config/load.ts';
import { startSimulator, type SimulatorHandle } from '../simulator/index.ts';
import path from 'node:path';

/** The model a process uses, and what to close with it. */
export interface ModelSetup {
  client: ModelClient;
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
  if (provider === 'anthropic') {
    if (!env.ANTHROPIC_API_KEY) throw new Error('model.provider is "anthropic" but ANTHROPIC_API_KEY is not set');
    const client = createAnthropicModelClient({ apiKey: env.ANTHROPIC_API_KEY, ...(model.baseURL ? { baseURL: model.baseURL } : {}), logger: logger.child({ actor: 'model' }) });
    return { client, provider, simulator: undefined, close: async () => client.close?.() };
  }
  const simulator = await startSimulator({
    ...(model.scenario ? { scenario: path.resolve(loaded.baseDir, model.scenario) } : {}),
  });
  const client = createAnthropicModelClient({ apiKey: 'simulator', baseURL: simulator.url, logger: logger.child({ actor: 'model' }) });
  logger.info({ url: simulator.url }, 'no ANTHROPIC_API_KEY: using the bundled model simulator');
  return {
    client,
    provider,
    simulator,
    close: async () => {
      await client.close?.();
      await simulator.close();
    },
  };
}
