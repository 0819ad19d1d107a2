import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';
import { TerminalError, ErrorCode } from '../common/errors.ts';
import type { LoadedConfig } from '../config/load.ts';
import { connectNats } from '../runtime/connection.ts';

/** File where `troupe up` records its embedded server's URL, so other commands find it. */
export function urlFile(loaded: LoadedConfig): string {
  return path.join(path.resolve(loaded.baseDir, path.dirname(loaded.config.embedded.storeDir)), 'nats-url');
}

export function recordUrl(loaded: LoadedConfig, url: string): () => void {
  const file = urlFile(loaded);
  writeFileSync(file, `${url}\n`);
  return () => rmSync(file, { force: true });
}

/**
 * Connects a client command (submit, status, tasks): to `NATS_URL` / `nats.servers` if set,
 * else to the embedded server of a `troupe up` running in this project.
 */
export async function connectClient(loaded: LoadedConfig, name: string): Promise<NatsConnection> {
  const { nats } = loaded.config;
  let servers = nats.servers;
  if (!servers?.length) {
    const file = urlFile(loaded);
    if (!existsSync(file)) {
      throw new TerminalError(ErrorCode.notFound, 'no NATS to talk to: set NATS_URL, or start troupe in this directory with `npx troupe up` (in another terminal).');
    }
    servers = [readFileSync(file, 'utf8').trim()];
  }
  try {
    return await connectNats({ servers, name, credsFile: nats.credsFile, user: nats.user, password: nats.password });
  } catch (cause) {
    throw new TerminalError(ErrorCode.notFound, `cannot connect to NATS at ${servers.join(',')}: ${(cause as Error).message}. Is \`troupe up\` (or your NATS server) running?`, { cause });
  }
}
