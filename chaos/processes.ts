/**
 * What the chaos host and worker processes share: how they read their environment, connect and
 * log. Environment:
 *   NATS_URL (comma-separated), NATS_USER, NATS_PASSWORD   where and as whom to connect
 *   PREFIX, REPLICAS, LEASE_MS                             the deployment (subjects, replicas, host lease)
 *   NAME                                                   the process's id in logs and the report
 *   LOG_FILE                                               JSON log lines go here (appended, written synchronously so a SIGKILL loses none)
 */
import pino, { type Logger } from 'pino';
import { compileConfig } from '../config/load.ts';
import type { TroupeConfig } from '../config/schema.ts';
import { connectNats, type NatsConnection } from '../runtime/connection.ts';

const env = process.env;

/** The configuration every chaos process runs with. */
/**
 * The chaos hosts' `host.maxTaskBytes`: the echo agent's state holds its input about three times,
 * so the fuzz's largest valid tasks must stay well under the server's 1 MiB max_payload.
 */
export const CHAOS_MAX_TASK_BYTES = 128 * 1024;

export function chaosConfig(): TroupeConfig {
  const replicas = Number(env.REPLICAS ?? 3);
  return compileConfig({
    prefix: env.PREFIX ?? 'chaos',
    streams: { replicas: replicas as 1 | 3 | 5 },
    host: { leaseMs: Number(env.LEASE_MS ?? 4000), concurrency: 500, drainTimeoutMs: 8000, maxDeliver: Number(env.MAX_DELIVER ?? 20), maxTaskBytes: CHAOS_MAX_TASK_BYTES },
    tools: { workerConcurrency: 64, warmPoolSize: 4 },
    ...(env.METRICS === '1' ? { metrics: { port: 0 } } : {}),
  });
}

export function chaosLogger(): Logger {
  const dest = env.LOG_FILE ? pino.destination({ dest: env.LOG_FILE, sync: true, append: true }) : pino.destination(2);
  return pino({ level: env.LOG_LEVEL ?? 'info', base: { pid: process.pid, name: env.NAME } }, dest);
}

export function chaosConnect(kind: string): Promise<NatsConnection> {
  return connectNats({ servers: (env.NATS_URL ?? '').split(',').filter(Boolean), name: `chaos-${kind}-${env.NAME ?? process.pid}`, user: env.NATS_USER, password: env.NATS_PASSWORD });
}

/** Tells the parent the process is up (one line on stdout). */
export function ready(what: Record<string, string | undefined>): void {
  process.stdout.write(`ready ${JSON.stringify(what)}\n`);
}

/** On SIGTERM or SIGINT: shut down gracefully with `close`, then exit 0. */
export function onTerminate(logger: Logger, close: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'chaos process shutting down gracefully');
    void close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'graceful shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
