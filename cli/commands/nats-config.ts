import path from 'node:path';
import type { Command } from '../main.ts';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { writeNatsClusterConfig } from '../../runtime/nats-config/cluster-config.ts';
import { writeNatsConfig, type NatsCredentials, type NatsRole } from '../../runtime/nats-config/nats-config.ts';

const roles: Array<{ role: NatsRole; what: string }> = [
  { role: 'hosts', what: 'troupe host / troupe worker' },
  { role: 'submitters', what: 'troupe submit, and your applications that submit tasks' },
  { role: 'approvers', what: 'troupe approve / approver' },
  { role: 'observers', what: 'troupe status / tasks / approvals / breakers (read only)' },
];

function portOf(value: string | boolean | undefined, flag: string, fallback: number): number {
  const port = value === undefined ? fallback : Number(value);
  if (!Number.isInteger(port) || port <= 0 || port > 65_535) throw new TerminalError(ErrorCode.invalidInput, `--${flag} must be a port number (got ${value})`);
  return port;
}

function environments(url: string, users: Record<NatsRole, NatsCredentials>): string[] {
  return roles.flatMap(({ role, what }) => [`# ${role}: ${what}`, `NATS_URL=${url} NATS_USER=${users[role].user} NATS_PASSWORD=${users[role].password}`, '']);
}

/**
 * `troupe nats-config`: writes a nats-server configuration with JetStream and one user per role
 * (hosts, submitters, approvers, observers), each allowed only what its role needs, and prints
 * the environment each role connects with. `troupe up --secure` runs its embedded server with
 * the same configuration. With `--cluster N`, one configuration per node of an N-node JetStream
 * cluster on this machine's loopback (a starting point for one node per machine).
 */
export const natsConfigCommand: Command = {
  summary: 'write a nats-server config (--cluster N: one per node of a cluster) with per-role users (hosts, submitters, approvers, observers) and print their credentials',
  usage: 'troupe nats-config [--file troupe-nats.conf] [--port 4222] [--store-dir .troupe/nats] [--prefix troupe] [--cluster 3 [--route-port 6222]]',
  options: { file: { type: 'string' }, port: { type: 'string' }, 'store-dir': { type: 'string' }, prefix: { type: 'string' }, cluster: { type: 'string' }, 'route-port': { type: 'string' } },
  async run({ values }) {
    const port = portOf(values.port, 'port', 4222);
    const file = typeof values.file === 'string' ? values.file : 'troupe-nats.conf';
    const prefix = typeof values.prefix === 'string' ? values.prefix : (process.env.TROUPE_PREFIX ?? 'troupe');
    if (values.cluster === undefined) {
      if (values['route-port'] !== undefined) throw new TerminalError(ErrorCode.invalidInput, '--route-port is for a cluster: give --cluster N too');
      const storeDir = typeof values['store-dir'] === 'string' ? values['store-dir'] : path.join('.troupe', 'nats');
      const conf = writeNatsConfig({ file, port, storeDir, prefix });
      const out = [`wrote ${conf.file} (mode 600: it holds the passwords)`, `start the server with: nats-server -c ${conf.file}`, '', ...environments(conf.url, conf.users)];
      process.stdout.write(`${out.join('\n')}`);
      return 0;
    }
    const nodes = Number(values.cluster);
    if (!Number.isInteger(nodes) || nodes < 2 || nodes > 9) {
      throw new TerminalError(ErrorCode.invalidInput, `--cluster must be the number of nodes, 2 to 9 (got ${values.cluster}); 3 holds streams and buckets with 3 replicas, 5 with 5`);
    }
    const routePort = portOf(values['route-port'], 'route-port', 6222);
    const storeDir = typeof values['store-dir'] === 'string' ? values['store-dir'] : path.join('.troupe', 'nats-cluster');
    const conf = writeNatsClusterConfig({ nodes, file, port, routePort, storeDir, prefix });
    const replicas = nodes >= 5 ? 5 : nodes >= 3 ? 3 : 1;
    const out = [
      `wrote ${conf.nodes.length} node configurations (mode 600: they hold the passwords) for the cluster "${conf.name}" on 127.0.0.1:`,
      ...conf.nodes.map((n) => `  ${n.name}: clients on ${n.port}, routes on ${n.routePort}, store ${n.storeDir}`),
      'start every node (each in its own terminal, or in the background):',
      ...conf.nodes.map((n) => `  nats-server -c ${n.file}`),
      `then give troupe ${replicas === 1 ? '"streams": {"replicas": 1} (2 nodes cannot hold 3 replicas)' : `"streams": {"replicas": ${replicas}}`} in troupe.config.json, and every node's URL:`,
      '',
      ...environments(conf.urls.join(','), conf.users),
    ];
    process.stdout.write(`${out.join('\n')}`);
    return 0;
  },
};
