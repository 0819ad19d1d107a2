import { pathToFileURL } from 'node:url';
import { isAgent, type Agent } from '../actors/agent.ts';
import { ConfigError } from '../config/errors.ts';

/** Imports every agent module listed in the config; each must export at least one agent. */
export async function loadAgents(modules: string[]): Promise<Agent<any>[]> {
  const agents: Agent<any>[] = [];
  for (const file of modules) {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    } catch (cause) {
      throw new ConfigError(`agent module ${file} could not be loaded: ${(cause as Error).message}`, { cause });
    }
    const found = Object.values(mod).filter(isAgent);
    if (found.length === 0) throw new ConfigError(`agent module ${file} exports no agent; export the result of defineAgent(...)`);
    for (const agent of new Set(found)) {
      if (agents.some((a) => a.name === agent.name)) throw new ConfigError(`two agents are named "${agent.name}" (second one in ${file})`);
      agents.push(agent);
    }
  }
  return agents;
}
