import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';
import { TerminalError, ErrorCode } from '../common/errors.ts';
import type { LoadedConfig } from '../config/load.ts';
import { connectNats, type ConnectOptions } from '../runtime/connection.ts';
import { readNatsUsersFile, writeNatsUsersFile, type NatsRole, type NatsUsers } from '../runtime/nats-config/index.ts';

/** Directory of what `troupe up` leaves for other commands: the parent of the embedded store (`.troupe/`). */
function stateDir(loaded: LoadedConfig): string {
  return path.resolve(loaded.baseDir, path.dirname(loaded.config.embedded.storeDir));
}

/** File where `troupe up` records its embedded server's URL, so other commands find it. */
export function urlFile(loaded: LoadedConfig): string {
  return path.join(stateDir(loaded), 'nats-url');
}

/** File (mode 600) where `troupe up --secure` records each role's user and password for the other commands. */
export function usersFile(loaded: LoadedConfig): string {
  return path.join(stateDir(loaded), 'nats-users.json');
}

/** The nats-server configuration (mode 600) that `troupe up --secure` runs its embedded server with. */
export function serverConfigFile(loaded: LoadedConfig): string {
  return path.join(stateDir(loaded), 'nats-server.conf');
}

/**
 * Records the embedded server's URL and, in secure mode, its users (a users file left by an
 * earlier secure run is removed otherwise). Returns a function that removes both again.
 */
export function recordUrl(loaded: LoadedConfig, url: string, users?: NatsUsers): () => void {
  const file = urlFile(loaded);
  const credentials = usersFile(loaded);
  if (users) writeNatsUsersFile(credentials, users);
  else rmSync(credentials, { force: true });
  writeFileSync(file, `${url}\n`);
  return () => {
    rmSync(file, { force: true });
    rmSync(credentials, { force: true });
  };
}

/**
 * Connects a client command: to `NATS_URL` / `nats.servers` with the configured credentials if
 * set, else to the embedded server of a `troupe up` running in this project, as the user of
 * `role` when that server is secured (`troupe up --secure`): `submitters` publish tasks,
 * `approvers` decisions, `observers` only read. Configured credentials (`NATS_USER`,
 * `NATS_CREDS`) always win.
 */
export async function connectClient(loaded: LoadedConfig, name: string, role: NatsRole): Promise<NatsConnection> {
  const { nats } = loaded.config;
  let servers = nats.servers;
  const options: ConnectOptions = { servers: [], name, credsFile: nats.credsFile, user: nats.user, password: nats.password };
  if (!servers?.length) {
    const file = urlFile(loaded);
    if (!existsSync(file)) {
      throw new TerminalError(ErrorCode.notFound, 'no NATS to talk to: set NATS_URL, or start troupe in this directory with `npx troupe up` (in another terminal).');
    }
    servers = [readFileSync(file, 'utf8').trim()];
    const users = nats.credsFile || nats.user ? undefined : readNatsUsersFile(usersFile(loaded));
    if (users) Object.assign(options, { user: users[role].user, password: users[role].password });
  }
  try {
    return await connectNats({ ...options, servers });
  } catch (cause) {
    throw new TerminalError(ErrorCode.notFound, `cannot connect to NATS at ${servers.join(',')}: ${(cause as Error).message}. Is \`troupe up\` (or your NATS server) running?`, { cause });
  }
}
