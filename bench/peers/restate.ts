/**
 * The peer Restate, on troupe's workload: a restate-server (the binary shipped in
 * `@restatedev/restate-server-<os>-<arch>`) on loopback with its data in a temporary directory,
 * and a service endpoint (the TypeScript SDK, HTTP/2) in this process whose handler runs the
 * 10-step tool loop with each model call and each tool call journaled by `ctx.run`. Tasks are
 * invocations through the ingress HTTP API. The server is stopped when the bench ends, and killed
 * if the bench dies first: no restate-server outlives it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type * as Restate from '@restatedev/restate-sdk';
import { LOOP_STEPS } from '../workloads.ts';
import { checkSteps, scriptedTurn, stepClock, type Durability, type PeerLoop, type PeerRun } from './peer.ts';
import { installPromiseWithResolvers } from './with-resolvers.ts';

const require = createRequire(import.meta.url);

/** The restate-server binary for this platform, or an error saying which package is missing. */
export function restateServerBinary(): string {
  const pkg = `@restatedev/restate-server-${os.platform()}-${os.arch()}`;
  try {
    return require.resolve(`${pkg}/bin/restate-server`);
  } catch (e) {
    throw new Error(`The Restate peer needs ${pkg} (an optional dependency of the @restatedev/restate-server devDependency); it is not installed for this platform. Run "npm ci" with dev and optional dependencies, or skip the peers.`, { cause: e });
  }
}

/** A free TCP port on 127.0.0.1 (free when asked; the server binds it a moment later). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Children to kill if the bench process goes away without closing them. */
const live = new Set<ChildProcess>();
let exitHooked = false;
function killOnExit(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (exitHooked) return;
  exitHooked = true;
  // 'exit' runs on a normal end, process.exit() and an uncaught error; signals need their own hook.
  process.on('exit', () => {
    for (const c of live) c.kill('SIGKILL');
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      for (const c of live) c.kill('SIGKILL');
      process.kill(process.pid, signal);
    });
  }
}

/** Environment that configures restate-server: offline, loopback only, TCP only, data in `baseDir`. */
function serverEnv(baseDir: string, ports: { ingress: number; admin: number; fabric: number }): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: baseDir,
    RESTATE_DISABLE_TELEMETRY: 'true',
    DO_NOT_TRACK: '1',
    RESTATE_BASE_DIR: baseDir,
    RESTATE_NODE_NAME: 'bench',
    RESTATE_LISTEN_MODE: 'tcp',
    RESTATE_BIND_ADDRESS: `127.0.0.1:${ports.fabric}`,
    RESTATE_ADVERTISED_ADDRESS: `http://127.0.0.1:${ports.fabric}/`,
    RESTATE_INGRESS__BIND_ADDRESS: `127.0.0.1:${ports.ingress}`,
    RESTATE_ADMIN__BIND_ADDRESS: `127.0.0.1:${ports.admin}`,
    RESTATE_SHUTDOWN_TIMEOUT: '10s',
    RESTATE_LOG_FORMAT: 'compact',
    RESTATE_LOG_DISABLE_ANSI_CODES: 'true',
    RESTATE_LOG_FILTER: 'warn',
  };
}

/**
 * What the server's storage settings mean for an acknowledged step, read from the configuration
 * it runs with (`--dump-config` under the same environment), not from memory of the docs.
 */
function restateDurability(binary: string, env: NodeJS.ProcessEnv): Durability {
  const dump = spawnSync(binary, ['--dump-config'], { env, encoding: 'utf8' });
  if (dump.status !== 0) return { short: 'unknown', detail: `restate-server --dump-config failed: ${dump.stderr}` };
  const section = (name: string) => dump.stdout.split(/^\[/m).find((s) => s.startsWith(`${name}]`)) ?? '';
  // The journal (bifrost's log) lives in the log-server with the replicated provider, in bifrost.local with the local one.
  const provider = /default-provider\s*=\s*"(\w[\w-]*)"/.exec(section('bifrost'))?.[1] ?? '?';
  const store = provider === 'local' ? 'bifrost.local' : 'log-server';
  const disabled = /rocksdb-disable-wal-fsync\s*=\s*true/.test(section(store));
  const replication = /^default-replication\s*=\s*(\S+)/m.exec(dump.stdout)?.[1] ?? '?';
  const settings = `restate-server ${restateVersion(binary)}, one node, ${provider} log, replication ${replication}, ${store} rocksdb-disable-wal-fsync=${disabled}`;
  return disabled
    ? { short: 'crash: safe; power loss: last steps', detail: `${settings}: journal appends are not fsynced; survives a process crash, a power loss may lose the last steps` }
    : { short: 'crash: safe; power loss: safe', detail: `${settings}: every journal append is fsynced (fdatasync; appends arriving together share one) before it is acknowledged; survives a process crash and a power loss` };
}

function restateVersion(binary: string): string {
  return spawnSync(binary, ['--version'], { encoding: 'utf8' }).stdout.trim().split(/\s+/)[1] ?? '?';
}

async function until(what: string, timeoutMs: number, probe: () => Promise<boolean>, server: ChildProcess, logFile: string, spawnError: () => Error | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const failed = spawnError();
    if (failed) throw new Error(`restate-server could not be started: ${failed.message}`, { cause: failed });
    if (server.exitCode !== null || server.signalCode !== null) throw new Error(`restate-server exited (${server.exitCode ?? server.signalCode}) before ${what}; its log: ${logFile}\n${tail(logFile)}`);
    if (await probe().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`restate-server: no ${what} after ${timeoutMs} ms; its log: ${logFile}\n${tail(logFile)}`);
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '(no log)';
  }
}

/** One HTTP/1.1 request with a JSON body; resolves with status, headers and body text. */
function request(agent: http.Agent, url: string, method: string, body?: unknown): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(url, { method, agent, headers: payload === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** How many `ctx.run` commands the server journaled for one invocation (admin SQL introspection). */
async function journaledRuns(agent: http.Agent, admin: string, invocationId: string): Promise<number> {
  if (!/^inv_\w+$/.test(invocationId)) throw new Error(`Restate: the ingress answered without a usable x-restate-id header (${JSON.stringify(invocationId)})`);
  const res = await request(agent, `${admin}/query`, 'POST', { query: `SELECT count(*) AS n FROM sys_journal WHERE id = '${invocationId}' AND entry_type = 'Command: Run'` });
  if (res.status !== 200) throw new Error(`Restate: the admin query API answered HTTP ${res.status}: ${res.text.slice(0, 300)}`);
  return Number((JSON.parse(res.text) as { rows: { n: number }[] }).rows[0]?.n ?? 0);
}

/** Starts restate-server and the loop service in `dir`, registers the service, and returns the peer. */
export async function restateLoop(dir: string): Promise<PeerLoop> {
  // Before the SDK is loaded: it calls Promise.withResolvers, which Node 20 lacks.
  installPromiseWithResolvers();
  const restate: typeof Restate = await import('@restatedev/restate-sdk');
  const binary = restateServerBinary();
  mkdirSync(dir, { recursive: true });
  const logFile = path.join(dir, 'restate-server.log');

  const stepLatencies: number[] = [];
  const clock = stepClock(stepLatencies);
  const sdkErrors: string[] = [];
  const loop = restate.service({
    name: 'Loop',
    handlers: {
      run: async (ctx: Restate.Context, input: { task: string }): Promise<{ steps: number }> => {
        for (let turn = 0; ; turn++) {
          const answer = await ctx.run('model', () => {
            clock.tick(input.task);
            return scriptedTurn(turn);
          });
          if (answer.type === 'text') return { steps: turn + 1 };
          await ctx.run('noop', () => ({ n: answer.input.n }));
        }
      },
    },
  });
  const endpoint = http2.createServer(
    restate.createEndpointHandler({
      services: [loop],
      logger: (meta, message, ...rest) => {
        if (meta.level === 'error' && sdkErrors.length < 20) sdkErrors.push([message, ...rest].map(String).join(' '));
      },
    }),
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  endpoint.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  const sdkPort = await new Promise<number>((resolve, reject) => {
    endpoint.once('error', reject);
    endpoint.listen(0, '127.0.0.1', () => resolve((endpoint.address() as net.AddressInfo).port));
  });

  const ports = { ingress: await freePort(), admin: await freePort(), fabric: await freePort() };
  const env = serverEnv(path.join(dir, 'data'), ports);
  const durability = restateDurability(binary, env);
  const log = createWriteStream(logFile);
  const server = spawn(binary, ['--no-logo'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let spawnError: Error | undefined;
  server.once('error', (err) => (spawnError = err));
  killOnExit(server);
  server.stdout?.pipe(log);
  server.stderr?.pipe(log);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const admin = `http://127.0.0.1:${ports.admin}`;
  const ingress = `http://127.0.0.1:${ports.ingress}`;

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      if (!spawnError && server.exitCode === null && server.signalCode === null) {
        const exited = new Promise<void>((r) => server.once('exit', () => r()));
        server.kill('SIGTERM');
        const timer = setTimeout(() => server.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      agent.destroy();
      for (const s of sessions) s.destroy();
      await new Promise<void>((r) => endpoint.close(() => r()));
      log.end();
    })());

  try {
    await until('admin API', 30_000, async () => (await request(agent, `${admin}/health`, 'GET')).status === 200, server, logFile, () => spawnError);
    const registered = await request(agent, `${admin}/deployments`, 'POST', { uri: `http://127.0.0.1:${sdkPort}/` });
    if (registered.status !== 201 && registered.status !== 200) throw new Error(`restate-server refused to register the loop service at 127.0.0.1:${sdkPort}: HTTP ${registered.status} ${registered.text}`);
    // The ingress answers once the partitions have leaders and it knows the new service.
    let probe = '';
    await until('ingress ready for Loop/run', 60_000, async () => {
      const res = await request(agent, `${ingress}/Loop/run`, 'POST', { task: 'ready' });
      probe = String(res.headers['x-restate-id'] ?? '');
      return res.status === 200;
    }, server, logFile, () => spawnError);
    // The figures only mean something if every model and tool call went through the journal.
    const runs = await journaledRuns(agent, admin, probe);
    if (runs !== 2 * LOOP_STEPS - 1) throw new Error(`Restate: invocation ${probe} journaled ${runs} ctx.run entries, expected ${2 * LOOP_STEPS - 1} (one per model call and per tool call)`);
  } catch (e) {
    await close();
    throw e;
  }

  let next = 0;
  const invoke = async (task: string) => {
    const res = await request(agent, `${ingress}/Loop/run`, 'POST', { task });
    if (res.status !== 200) throw new Error(`Restate: invocation ${task} answered HTTP ${res.status}: ${res.text.slice(0, 300)}${sdkErrors.length ? `\nSDK errors: ${sdkErrors.join('\n')}` : ''}`);
    checkSteps('Restate', task, (JSON.parse(res.text) as { steps: number }).steps);
    clock.forget(task);
    return res.headers['x-restate-id'];
  };

  return {
    name: 'Restate',
    durability,
    stepLatencies,
    async run(tasks: number): Promise<PeerRun> {
      const ids = Array.from({ length: tasks }, () => `rs${next++}`);
      const started = performance.now();
      await Promise.all(ids.map(invoke));
      return { tasks, ms: performance.now() - started, steps: tasks * LOOP_STEPS };
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
