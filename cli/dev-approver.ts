import { jetstream } from '@nats-io/jetstream';
import { createUser } from '@nats-io/nkeys';
import type { Agent } from '../actors/agent.ts';
import { ApproverClient } from '../human/approver-client.ts';
import { startApproverServer } from '../human/web/index.ts';
import { compileConfig, type LoadedConfig } from '../config/load.ts';
import { connectClient } from './connect.ts';
import { formatEvent } from './print-events.ts';

/** The approver page of a `troupe up --ui`, with the key it signs with. */
export interface DevApprover {
  url: string;
  /** The task view beside it (`/tasks`), when agents were given. */
  tasksUrl: string | undefined;
  close(): Promise<void>;
}

/**
 * A development key for this run only, added to the approvers of `loaded`: for trying
 * approvals on a laptop. In production each approver runs `troupe approver` with their own key.
 */
export function withDevApprover(loaded: LoadedConfig): { loaded: LoadedConfig; key: ReturnType<typeof createUser> } {
  const key = createUser();
  const approvers = [...loaded.config.approvers, { name: 'development key (troupe up --ui)', publicKey: key.getPublicKey() }];
  return { loaded: { ...loaded, config: compileConfig({ ...loaded.config, approvers }) }, key };
}

/**
 * Serves the approver page on loopback, signing with the development key, and with `agents`
 * the task view (`/tasks`) drawing their statecharts. It connects like `troupe approver` does,
 * so under `--secure` it is the approvers user (who may read tasks' state and events).
 */
export async function startDevApprover(loaded: LoadedConfig, key: ReturnType<typeof createUser>, port: number, agents?: readonly Agent<any>[]): Promise<DevApprover> {
  const nc = await connectClient(loaded, 'troupe-dev-approver', 'approvers');
  const client = await ApproverClient.connect(nc, { prefix: loaded.config.prefix, key });
  const tasks = agents ? { agents, js: jetstream(nc), prefix: loaded.config.prefix, formatEvent } : undefined;
  const server = await startApproverServer({ client, port, ...(tasks ? { tasks } : {}) }).catch(async (err: unknown) => {
    await client.close();
    throw err;
  });
  return {
    url: server.url,
    tasksUrl: tasks ? new URL('/tasks', server.url).href : undefined,
    close: async () => {
      await server.close();
      await client.close();
    },
  };
}
