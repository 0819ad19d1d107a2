import path from 'node:path';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { subjects as makeSubjects } from '../subjects.ts';
import { randomPassword, renderNatsConfig, roleUsers, rolePermissions, type NatsConfigOptions, type NatsCredentials, type NatsRole, type RolePermissions } from './nats-config.ts';
import { writePrivateFile } from './private-file.ts';

/** Options of {@link writeNatsClusterConfig}. */
export interface NatsClusterConfigOptions {
  /** Nodes in the cluster: 3 for streams and buckets with 3 replicas, 5 for 5. At least 2, at most 9. */
  nodes: number;
  /**
   * Configuration file name; node n's file gets `-n` before the extension
   * (`troupe-nats.conf` -> `troupe-nats-1.conf`, `troupe-nats-2.conf`, ...).
   */
  file: string;
  /**
   * JetStream store directory; node n keeps its store in `<storeDir>/node-n`. Every node needs
   * its own: two nodes must never share a store.
   */
  storeDir: string;
  /** Client port of node 1; node n listens on `port + n - 1`. Ignored with `ports`. @default 4222 */
  port?: number;
  /** Route port of node 1; node n on `routePort + n - 1`. Ignored with `routePorts`. @default 6222 */
  routePort?: number;
  /** Each node's client port (tests pick free ones). */
  ports?: number[];
  /** Each node's route port. */
  routePorts?: number[];
  /** Cluster name, also the prefix of the nodes' server names. @default "troupe" */
  name?: string;
  /** Users per role, as for a single server; a missing password is random. */
  users?: NatsConfigOptions['users'];
  /** Subject prefix of the deployment. @default "troupe" */
  prefix?: string;
}

/** One node of a written cluster configuration. */
export interface NatsClusterNode {
  /** `server_name`, unique in the cluster: `<name>-<n>`. */
  name: string;
  file: string;
  port: number;
  routePort: number;
  storeDir: string;
  /** `nats://127.0.0.1:<port>` */
  url: string;
}

/** What {@link writeNatsClusterConfig} wrote. */
export interface NatsClusterConfig {
  name: string;
  nodes: NatsClusterNode[];
  /** Every node's client URL: give them all to clients (`NATS_URL`, comma-separated). */
  urls: string[];
  users: Record<NatsRole, NatsCredentials>;
  permissions: Record<NatsRole, RolePermissions>;
  /** The user nodes authenticate their routes with (never a client's). */
  routeUser: NatsCredentials;
}

/** The file of node `n` for a file name given for the whole cluster. */
export function nodeConfigFile(file: string, n: number): string {
  const ext = path.extname(file);
  return `${file.slice(0, file.length - ext.length)}-${n}${ext || '.conf'}`;
}

const isPort = (p: number) => Number.isInteger(p) && p > 0 && p <= 65_535;

/**
 * Writes one nats-server (2.9+) configuration per node of a JetStream cluster on 127.0.0.1:
 * each node with its own client port, route port and store directory, routes to every other
 * node (authenticated with a route user of their own), and the same per-role users as the
 * single-server configuration (`writeNatsConfig`), so every client connects to any node with
 * its role's user. Files are mode 600 (they hold passwords). Start each node with
 * `nats-server -c <its file>`.
 *
 * @throws TerminalError naming the problem for a node count or ports that cannot work.
 */
export function writeNatsClusterConfig(options: NatsClusterConfigOptions): NatsClusterConfig {
  const n = options.nodes;
  if (!Number.isInteger(n) || n < 2 || n > 9) {
    throw new TerminalError(ErrorCode.invalidConfig, `a cluster needs 2 to 9 nodes (got ${n}); use 3 for streams and buckets with 3 replicas, 5 for 5`);
  }
  const ports = options.ports ?? Array.from({ length: n }, (_, i) => (options.port ?? 4222) + i);
  const routePorts = options.routePorts ?? Array.from({ length: n }, (_, i) => (options.routePort ?? 6222) + i);
  for (const [what, list] of [['client ports', ports], ['route ports', routePorts]] as const) {
    if (list.length !== n) throw new TerminalError(ErrorCode.invalidConfig, `${n} nodes need ${n} ${what} (got ${list.length})`);
    const bad = list.find((p) => !isPort(p));
    if (bad !== undefined) throw new TerminalError(ErrorCode.invalidConfig, `${what}: ${bad} is not a port number`);
  }
  const all = [...ports, ...routePorts];
  const clash = all.find((p, i) => all.indexOf(p) !== i);
  if (clash !== undefined) throw new TerminalError(ErrorCode.invalidConfig, `port ${clash} is given twice: every node needs its own client port and route port`);

  const name = options.name ?? 'troupe';
  const users = roleUsers(options.users);
  const permissions = rolePermissions(makeSubjects(options.prefix ?? 'troupe'));
  const routeUser = { user: `${name}-route`, password: randomPassword() };
  const file = path.resolve(options.file);
  const storeRoot = path.resolve(options.storeDir);
  const nodes = ports.map((port, i): NatsClusterNode => ({
    name: `${name}-${i + 1}`,
    file: nodeConfigFile(file, i + 1),
    port,
    routePort: routePorts[i]!,
    storeDir: path.join(storeRoot, `node-${i + 1}`),
    url: `nats://127.0.0.1:${port}`,
  }));
  for (const node of nodes) {
    const routes = nodes.filter((other) => other !== node).map((other) => other.routePort);
    writePrivateFile(
      node.file,
      renderNatsConfig({
        serverName: node.name,
        port: node.port,
        storeDir: node.storeDir,
        users,
        permissions,
        cluster: { name, port: node.routePort, routes, user: routeUser },
      }),
    );
  }
  return { name, nodes, urls: nodes.map((node) => node.url), users, permissions, routeUser };
}
