import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connectNats } from '../../runtime/connection.ts';
import { startEmbeddedServer, type EmbeddedServer } from '../../runtime/embedded-server.ts';

/** A real `nats-server -js` on a free loopback port with a temporary store, and a client. */
export interface NatsTestContext extends AsyncDisposable {
  url: string;
  server: EmbeddedServer;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  storeDir: string;
  close(): Promise<void>;
}

/** Starts a fresh server for a test file; dispose it in `afterAll`. */
export async function startNats(): Promise<NatsTestContext> {
  const storeDir = mkdtempSync(path.join(tmpdir(), 'troupe-test-nats-'));
  const server = await startEmbeddedServer({ storeDir });
  const nc = await connectNats({ servers: [server.url], name: 'troupe-test' });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await nc.close().catch(() => {});
      await server.close();
      rmSync(storeDir, { recursive: true, force: true });
    })());
  return { url: server.url, server, nc, js, jsm, storeDir, close, [Symbol.asyncDispose]: close };
}

/**
 * A fresh server for the enclosing file or `describe`: started in `beforeAll`, closed in
 * `afterAll`. The returned context is filled in once `beforeAll` has run.
 */
export function useNats(): NatsTestContext {
  const context = {} as NatsTestContext;
  beforeAll(async () => {
    Object.assign(context, await startNats());
  });
  afterAll(async () => {
    await context.close?.();
  });
  return context;
}
