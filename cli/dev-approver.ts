import { createUser } from '@nats-io/nkeys';
import { ApproverClient } from '../human/approver-client.ts';
import { startApproverServer } from '../human/web/index.ts';
import { compileConfig, type LoadedConfig } from '../config/load.ts';
import { connectClient } from './connect.ts';

/** The approver page of a `troupe up --ui`, with the key it signs with. */
export interface DevApprover {
  url: string;
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
 * Serves the approver page on loopback, signing with the development key. It connects like
 * `troupe approver` does, so under `--secure` it is the approvers user.
 */
export async function startDevApprover(loaded: LoadedConfig, key: ReturnType<typeof createUser>, port: number): Promise<DevApprover> {
  const client = await ApproverClient.connect(await connectClient(loaded, 'troupe-dev-approver', 'approvers'), { prefix: loaded.config.prefix, key });
  const server = await startApproverServer({ client, port });
  return {
    url: server.url,
    close: async () => {
      await server.close();
      await client.close();
    },
  };
}
