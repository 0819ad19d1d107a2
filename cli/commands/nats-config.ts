import path from 'node:path';
import type { Command } from '../main.ts';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { writeNatsConfig, type NatsRole } from '../../runtime/nats-config/nats-config.ts';

const roles: Array<{ role: NatsRole; what: string }> = [
  { role: 'hosts', what: 'troupe host / troupe worker' },
  { role: 'submitters', what: 'troupe submit, and your applications that submit tasks' },
  { role: 'approvers', what: 'troupe approve / approver' },
  { role: 'observers', what: 'troupe status / tasks / approvals / breakers (read only)' },
];

/**
 * `troupe nats-config`: writes a nats-server configuration with JetStream and one user per role
 * (hosts, submitters, approvers, observers), each allowed only what its role needs, and prints
 * the environment each role connects with. `troupe up --secure` runs its embedded server with
 * the same configuration.
 */
export const natsConfigCommand: Command = {
  summary: 'write a nats-server config with per-role users (hosts, submitters, approvers, observers) and print their credentials',
  usage: 'troupe nats-config [--file troupe-nats.conf] [--port 4222] [--store-dir .troupe/nats] [--prefix troupe]',
  options: { file: { type: 'string' }, port: { type: 'string' }, 'store-dir': { type: 'string' }, prefix: { type: 'string' } },
  async run({ values }) {
    const port = values.port === undefined ? 4222 : Number(values.port);
    if (!Number.isInteger(port) || port <= 0 || port > 65_535) throw new TerminalError(ErrorCode.invalidInput, `--port must be a port number (got ${values.port})`);
    const file = typeof values.file === 'string' ? values.file : 'troupe-nats.conf';
    const storeDir = typeof values['store-dir'] === 'string' ? values['store-dir'] : path.join('.troupe', 'nats');
    const prefix = typeof values.prefix === 'string' ? values.prefix : (process.env.TROUPE_PREFIX ?? 'troupe');
    const conf = writeNatsConfig({ file, port, storeDir, prefix });
    const out = [
      `wrote ${conf.file} (mode 600: it holds the passwords)`,
      `start the server with: nats-server -c ${conf.file}`,
      '',
      ...roles.flatMap(({ role, what }) => [
        `# ${role}: ${what}`,
        `NATS_URL=${conf.url} NATS_USER=${conf.users[role].user} NATS_PASSWORD=${conf.users[role].password}`,
        '',
      ]),
    ];
    process.stdout.write(`${out.join('\n')}`);
    return 0;
  },
};
