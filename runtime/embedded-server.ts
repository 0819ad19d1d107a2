import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, TerminalError, TroupeError } from '../common/errors.ts';

/** Options of {@link startEmbeddedServer}. */
export interface EmbeddedServerOptions {
  /** JetStream store directory; created if missing. */
  storeDir: string;
  /** Client port on 127.0.0.1; 0 picks a free one. Not allowed with `configFile`. @default 0 */
  port?: number;
  /** `nats-server` binary. @default "nats-server" */
  binary?: string;
  /** Extra command-line arguments. Not allowed with `configFile`. */
  args?: string[];
  /**
   * A complete nats-server configuration to run with instead of the built-in flags, such as the
   * per-role users `writeNatsConfig` writes. It must listen on 127.0.0.1 and keep JetStream in
   * `storeDir`, as `writeNatsConfig({ storeDir })` does. The server then gets `-c configFile`
   * and only the flag for its pid file: nats-server refuses a store dir given both in the file
   * and by `-sd`.
   */
  configFile?: string;
  /** How long to wait for "Server is ready". @default 15000 */
  readyTimeoutMs?: number;
}

/** A running nats-server child process. */
export interface EmbeddedServer extends AsyncDisposable {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly storeDir: string;
  /** Stops the server gracefully (SIGTERM, then SIGKILL after 5 s). Idempotent. */
  close(): Promise<void>;
  /** Kills the server at once (SIGKILL), as a crash would. */
  kill(): Promise<void>;
}

/** The server could not be started; the message says what to install or fix. */
export class NatsServerError extends TerminalError {
  override readonly name = 'NatsServerError';
}

/**
 * Starts `nats-server -js` on loopback with its store under `storeDir` (or `nats-server -c
 * configFile`) and resolves once it accepts clients. A server left behind by a killed troupe on
 * the same store is stopped first, so two servers never share one store.
 */
export async function startEmbeddedServer(options: EmbeddedServerOptions): Promise<EmbeddedServer> {
  if (options.configFile && (options.port || options.args?.length)) {
    throw new TerminalError(ErrorCode.invalidConfig, 'startEmbeddedServer: with configFile, the port and any other setting come from the file; do not pass port or args');
  }
  const storeDir = path.resolve(options.storeDir);
  mkdirSync(storeDir, { recursive: true });
  const pidFile = path.join(storeDir, 'nats-server.pid');
  await stopStaleServer(pidFile);

  const binary = options.binary ?? 'nats-server';
  const args = options.configFile
    ? ['-c', path.resolve(options.configFile), '-P', pidFile]
    : [
        '-js',
        '-a', '127.0.0.1',
        '-p', String(options.port && options.port > 0 ? options.port : -1),
        '-sd', storeDir,
        '-P', pidFile,
        ...(options.args ?? []),
      ];
  const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const port = await waitReady(child, binary, options.readyTimeoutMs ?? 15_000);
  let closing: Promise<void> | undefined;
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const stop = (signal: NodeJS.Signals) => {
    closing ??= (async () => {
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      rmSync(pidFile, { force: true });
    })();
    return closing;
  };
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    storeDir,
    close: () => stop('SIGTERM'),
    kill: () => stop('SIGKILL'),
    [Symbol.asyncDispose]: () => stop('SIGTERM'),
  };
}

function waitReady(child: ChildProcess, binary: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let log = '';
    let port = 0;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new NatsServerError(ErrorCode.natsServerMissing, `nats-server did not become ready in ${timeoutMs} ms:\n${log}`));
    }, timeoutMs);
    const done = (err?: TroupeError) => {
      clearTimeout(timer);
      child.stderr?.removeAllListeners('data');
      child.removeAllListeners('error');
      if (err) reject(err);
      else resolve(port);
      // Keep draining stderr so the server never blocks on a full pipe.
      child.stderr?.resume();
    };
    child.once('error', (err: NodeJS.ErrnoException) => {
      done(
        new NatsServerError(
          ErrorCode.natsServerMissing,
          err.code === 'ENOENT'
            ? `${binary} not found. Install it (Debian/Ubuntu: sudo apt-get install nats-server) or set NATS_URL to an existing NATS server with JetStream.`
            : `could not start ${binary}: ${err.message}`,
          { cause: err },
        ),
      );
    });
    child.once('exit', (code) => done(new NatsServerError(ErrorCode.natsServerMissing, `nats-server exited with code ${code} before it was ready:\n${log}`)));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      log += chunk;
      const m = /Listening for client connections on [^\s]+:(\d+)/.exec(log);
      if (m) port = Number(m[1]);
      if (port && log.includes('Server is ready')) {
        child.removeAllListeners('exit');
        done();
      }
    });
  });
}

async function stopStaleServer(pidFile: string): Promise<void> {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0 || !isNatsServer(pid)) {
    rmSync(pidFile, { force: true });
    return;
  }
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(pidFile, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function isNatsServer(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('nats-server');
  } catch {
    return false;
  }
}
