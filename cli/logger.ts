import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { TroupeConfig } from '../config/schema.ts';
import { compileOutputPolicy, redactText, type OutputPolicy } from '../sandbox/output.ts';

/**
 * The one root logger of a troupe process: JSON lines, or readable lines on a terminal. Every
 * line passes the same redaction as tool output (secret-looking environment values and
 * `tools.redact` patterns) before it is written, wherever in the line a secret appears.
 */
export function createLogger(config: TroupeConfig, stream: NodeJS.WritableStream = process.stderr): Logger {
  const usePretty = config.log.pretty ?? Boolean((stream as NodeJS.WriteStream).isTTY);
  const options = { level: config.log.level, base: { pid: process.pid }, redact: { paths: ['*.apiKey', '*.password', 'apiKey', 'password'], censor: '[redacted]' } };
  const policy = compileOutputPolicy(config.tools);
  if (!usePretty) return pino(options, redacting(stream, policy));
  return pino(options, pretty({ destination: redacting(stream, policy), sync: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' }));
}

/** A stream that redacts each chunk (pino writes whole lines) before passing it on. */
function redacting(out: NodeJS.WritableStream, policy: OutputPolicy): Writable {
  if (!policy.secrets.length && !policy.patterns.length) return out as Writable;
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      out.write(redactText(chunk.toString(), policy).text);
      done();
    },
  });
}
