import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { TroupeConfig } from '../config/schema.ts';

/** The one root logger of a troupe process: JSON lines, or readable lines on a terminal. */
export function createLogger(config: TroupeConfig, stream: NodeJS.WritableStream = process.stderr): Logger {
  const usePretty = config.log.pretty ?? Boolean((stream as NodeJS.WriteStream).isTTY);
  const options = { level: config.log.level, base: { pid: process.pid }, redact: { paths: ['*.apiKey', '*.password', 'apiKey', 'password'], censor: '[redacted]' } };
  if (!usePretty) return pino(options, stream);
  return pino(options, pretty({ destination: stream, sync: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' }));
}
