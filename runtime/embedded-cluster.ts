import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { jetstreamManager, StorageType } from '@nats-io/jetstream';
import { ErrorCode } from '../common/errors.ts';
import { connectNats } from './connection.ts';
import { NatsServerError, startEmbeddedServer, type EmbeddedServer } from './embedded-server.ts';
import { writeNatsClusterConfig, type NatsClusterConfig, type NatsClusterNode } from './nats-config/cluster-config.ts';
import type { NatsCredentials, NatsRole } from './nats-config/nats-config.ts';

/** Options of {@link startEmbeddedCluster}. */
export interface EmbeddedClusterOptions {
  /** Directory for the nodes' configuration files and JetStream stores (created if missing). */
  dir: string;
  /** Nodes to start. @default 3 */
  nodes?: number;
  /** `nats-server` binary. @default "nats-server" */
  binary?: string;
  /** Cluster name. @default "troupe" */
  name?: string;
  /** Subject prefix the per-role permissions are written for. @default "troupe" */
  prefix?: string;
  /** How long to wait for every node and for JetStream to place replicated streams. @default 30000 */
  readyTimeoutMs?: number;
}

/** One nats-server process of an {@link EmbeddedCluster}; it can be stopped, killed and started again on the same ports and store. */
export interface ClusterNode {
  /** 1-based. */
  readonly index: number;
  /** `server_name` */
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly routePort: number;
  readonly storeDir: string;
  readonly configFile: string;
  /** Process id while running. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Starts the node again (same config, ports and store); resolves once it accepts clients. No-op if running. */
  start(): Promise<void>;
  /** Stops it gracefully (SIGTERM). */
  stop(): Promise<void>;
  /** Kills it at once (SIGKILL), as a crash would. */
  kill(): Promise<void>;
}

/** A JetStream cluster of nats-server processes on 127.0.0.1, with the per-role users of `troupe nats-config --cluster`. */
export interface EmbeddedCluster extends AsyncDisposable {
  /** Every node's client URL. */
  readonly urls: string[];
  readonly nodes: ClusterNode[];
  /** Each role's user and password (clients must authenticate). */
  readonly users: Record<NatsRole, NatsCredentials>;
  readonly config: NatsClusterConfig;
  /**
   * Resolves once JetStream can place a stream with `replicas` replicas (a metadata leader is
   * elected and enough peers have joined). @default replicas: min(nodes, 3)
   */
  waitReady(replicas?: number, timeoutMs?: number): Promise<void>;
  /** Stops every node (SIGTERM). Idempotent. */
  close(): Promise<void>;
}

/** `n` distinct free TCP ports on 127.0.0.1 (held together while chosen, so they differ). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

/**
 * Starts an N-node JetStream cluster on loopback: writes each node's configuration with
 * `writeNatsClusterConfig` (free client and route ports, a store per node, per-role users),
 * starts every node, and resolves once JetStream can place replicated streams. For tests, the
 * chaos run, and trying a cluster on one machine; in production each node runs on its own machine.
 */
export async function startEmbeddedCluster(options: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
  const count = options.nodes ?? 3;
  const dir = path.resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  const all = await freePorts(count * 2);
  const config = writeNatsClusterConfig({
    nodes: count,
    file: path.join(dir, 'nats.conf'),
    storeDir: path.join(dir, 'store'),
    ports: all.slice(0, count),
    routePorts: all.slice(count),
    name: options.name ?? 'troupe',
    prefix: options.prefix ?? 'troupe',
  });
  const readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
  const nodes = config.nodes.map((c, i) => new Node(i + 1, c, options.binary ?? 'nats-server', readyTimeoutMs));
  try {
    // Together: a node waits for its routes, so starting them one by one would be slower.
    await Promise.all(nodes.map((n) => n.start()));
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw err;
  }
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= Promise.all(nodes.map((n) => n.stop())).then(() => {}));
  const cluster: EmbeddedCluster = {
    urls: config.urls,
    nodes,
    users: config.users,
    config,
    waitReady: (replicas = Math.min(count, 3), timeoutMs = readyTimeoutMs) => waitForPlacement(config, replicas, timeoutMs),
    close,
    [Symbol.asyncDispose]: close,
  };
  try {
    await cluster.waitReady();
  } catch (err) {
    await close();
    throw err;
  }
  return cluster;
}

class Node implements ClusterNode {
  private server: EmbeddedServer | undefined;
  private starting: Promise<void> | undefined;

  constructor(
    readonly index: number,
    private readonly c: NatsClusterNode,
    private readonly binary: string,
    private readonly readyTimeoutMs: number,
  ) {}

  get name() {
    return this.c.name;
  }
  get url() {
    return this.c.url;
  }
  get port() {
    return this.c.port;
  }
  get routePort() {
    return this.c.routePort;
  }
  get storeDir() {
    return this.c.storeDir;
  }
  get configFile() {
    return this.c.file;
  }
  get pid() {
    return this.server?.pid;
  }
  get running() {
    return this.server !== undefined;
  }

  start(): Promise<void> {
    if (this.server) return Promise.resolve();
    this.starting ??= (async () => {
      try {
        this.server = await startEmbeddedServer({ storeDir: this.c.storeDir, configFile: this.c.file, binary: this.binary, readyTimeoutMs: this.readyTimeoutMs });
      } finally {
        this.starting = undefined;
      }
    })();
    return this.starting;
  }

  async stop(): Promise<void> {
    await this.starting?.catch(() => {});
    const s = this.server;
    this.server = undefined;
    await s?.close();
  }

  async kill(): Promise<void> {
    await this.starting?.catch(() => {});
    const s = this.server;
    this.server = undefined;
    await s?.kill();
  }
}

/** Creates (and deletes) a small in-memory stream with `replicas` replicas until JetStream accepts one. */
async function waitForPlacement(config: NatsClusterConfig, replicas: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  const { user, password } = config.users.hosts;
  const nc = await connectNats({ servers: config.urls, name: 'troupe-cluster-probe', user, password });
  let last = '';
  try {
    // No API check up front: it would time out before the cluster has a metadata leader.
    const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 1000 });
    const name = `TROUPE_READY_${Math.random().toString(36).slice(2, 10).toUpperCase()}`;
    while (Date.now() < until) {
      try {
        await jsm.streams.add({ name, subjects: [`_troupe_ready.${name}`], storage: StorageType.Memory, num_replicas: replicas });
        await jsm.streams.delete(name);
        return;
      } catch (err) {
        last = (err as Error).message;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  } finally {
    await nc.close();
  }
  throw new NatsServerError(ErrorCode.natsServerMissing, `the NATS cluster (${config.urls.join(', ')}) could not place a stream with ${replicas} replicas within ${timeoutMs} ms: ${last}`);
}
