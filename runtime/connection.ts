import { readFileSync } from 'node:fs';
import { credsAuthenticator, type NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';

/** Where and how to connect. */
export interface ConnectOptions {
  servers: string[];
  /** Connection name shown by the server. */
  name: string;
  credsFile?: string | undefined;
  user?: string | undefined;
  password?: string | undefined;
}

/**
 * Connects to NATS and keeps reconnecting forever: a host or worker rides out a server restart
 * with buffered publishes instead of dying.
 */
export async function connectNats(options: ConnectOptions): Promise<NatsConnection> {
  return connect({
    servers: options.servers,
    name: options.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // Each request would otherwise capture a stack trace up front (for its possible timeout):
    // measurable on every KV write and event of a task's step, and never read in practice.
    noAsyncTraces: true,
    ...(options.credsFile ? { authenticator: credsAuthenticator(readFileSync(options.credsFile)) } : {}),
    ...(options.user ? { user: options.user, pass: options.password ?? '' } : {}),
  });
}

export type { NatsConnection };
