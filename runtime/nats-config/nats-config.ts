import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { subjects as makeSubjects, type Subjects } from '../subjects.ts';
import { writePrivateFile } from './private-file.ts';

/** A user name and password in the generated configuration. */
export const natsCredentialsSchema = z.object({ user: z.string().min(1), password: z.string().min(1) });
export type NatsCredentials = z.infer<typeof natsCredentialsSchema>;

/** The roles troupe distinguishes on the transport, in the order the configuration lists them. */
export const natsRoles = ['hosts', 'submitters', 'approvers', 'observers'] as const;
export type NatsRole = (typeof natsRoles)[number];

/** Options of {@link writeNatsConfig}. */
export interface NatsConfigOptions {
  /** Where the configuration is written (parent directories are created). */
  file: string;
  /**
   * Client port on 127.0.0.1; 0 lets the server pick a free port when it starts (`url` then
   * says port 0: use the running server's address, as `startEmbeddedServer` reports it).
   * @default 4222
   */
  port?: number;
  /** JetStream store directory. */
  storeDir: string;
  /** Users per role; a missing user is named after its role, a missing password is random. */
  users?: Partial<Record<NatsRole, Partial<NatsCredentials>>>;
  /** Subject prefix of the deployment. @default "troupe" */
  prefix?: string;
}

/** Publish/subscribe allow-lists of one user (everything else is denied by nats-server). */
export interface RolePermissions {
  publish: string[];
  subscribe: string[];
}

/** What {@link writeNatsConfig} wrote. */
export interface NatsConfig {
  file: string;
  /** As given; 0 means the server picks one. */
  port: number;
  storeDir: string;
  /** `nats://127.0.0.1:<port>` */
  url: string;
  users: Record<NatsRole, NatsCredentials>;
  permissions: Record<NatsRole, RolePermissions>;
}

/**
 * The JetStream API subjects a client needs to read a stream through ordered consumers (which
 * is how `watchTask`, `taskHistory` and KV `keys()`/`watch()` read), to fetch single messages
 * (KV `get()`: direct get or STREAM.MSG.GET) and to look the stream up. No create/update/delete
 * of streams, no purge, no durable-consumer management beyond the ephemeral ones it creates.
 */
function streamReader(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.*`,
    `$JS.API.CONSUMER.DELETE.${stream}.*`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.*`,
  ];
}

/**
 * The allow-lists of each role for a prefix.
 *
 * - hosts (and workers): the whole troupe namespace, the JetStream API, acks and flow control
 *   (`$JS.>`), KV buckets (`$KV.>`) and reply inboxes. They create streams and buckets.
 * - submitters: publish tasks (`<prefix>.tasks.*`, which excludes `<prefix>.tasks.rejected.>`)
 *   cancellations (`<prefix>.control.cancel.*`) and inbox events (`<prefix>.task.*.inbox`),
 *   read task events (TROUPE_EVENTS), and receive replies (PubAcks and verdicts) on `_INBOX.>`.
 * - approvers: publish decisions (`<prefix>.decisions.*`), read the snapshot bucket (to list what
 *   is parked) and task events (to see a host's verdict on a decision), receive on `_INBOX.>`.
 *   They cannot write the bucket, submit tasks or touch streams.
 * - observers (`troupe status`, `tasks`, `approvals`, `breakers`, `trace`, `replay`, dashboards):
 *   read the snapshot, breaker, ledger and audit-blob buckets, task events and the audit trail,
 *   receive on `_INBOX.>`, and
 *   publish nothing else.
 */
export function rolePermissions(s: Subjects = makeSubjects()): Record<NatsRole, RolePermissions> {
  const kvStream = `KV_${s.buckets.snapshots}`;
  return {
    hosts: {
      publish: [`${s.prefix}.>`, '$JS.>', '$KV.>', '_INBOX.>'],
      subscribe: [`${s.prefix}.>`, '$JS.>', '$KV.>', '_INBOX.>'],
    },
    submitters: {
      publish: [s.allTasks, s.cancel('*'), s.allInbox, '$JS.API.INFO', ...streamReader(s.streams.events)],
      subscribe: ['_INBOX.>'],
    },
    approvers: {
      publish: [s.allDecisions, '$JS.API.INFO', '$JS.FC.>', ...streamReader(s.streams.events), ...streamReader(kvStream)],
      subscribe: ['_INBOX.>'],
    },
    observers: {
      publish: ['$JS.API.INFO', '$JS.FC.>', ...streamReader(s.streams.events), ...streamReader(kvStream), ...streamReader(`KV_${s.buckets.breakers}`), ...streamReader(`KV_${s.buckets.ledger}`), ...streamReader(s.streams.audit), ...streamReader(`KV_${s.buckets.auditBlobs}`)],
      subscribe: ['_INBOX.>'],
    },
  };
}

const q = (v: string) => JSON.stringify(v);
const list = (items: string[], indent: string) => `[\n${items.map((i) => `${indent}  ${q(i)}`).join(',\n')}\n${indent}]`;

/**
 * The text of a nats-server (2.9+) configuration with JetStream and a user per role. It is
 * complete: `nats-server -c <file>` needs no other flag (and must not get `-sd`, which
 * nats-server refuses next to the file's `store_dir`).
 */
export function renderNatsConfig(c: Omit<NatsConfig, 'file' | 'url'> & { serverName?: string; cluster?: ClusterSection }): string {
  const users = natsRoles.map((role) => {
    const u = c.users[role];
    const p = c.permissions[role];
    return [
      `    # ${role}`,
      '    {',
      `      user: ${q(u.user)}`,
      `      password: ${q(u.password)}`,
      '      permissions: {',
      `        publish: { allow: ${list(p.publish, '        ')} }`,
      `        subscribe: { allow: ${list(p.subscribe, '        ')} }`,
      '      }',
      '    }',
    ].join('\n');
  });
  return [
    '# Written by `troupe nats-config`. Every user may only do what its role needs.',
    ...(c.serverName ? [`server_name: ${q(c.serverName)}`] : []),
    // -1: nats-server picks a free port and logs it.
    `listen: "127.0.0.1:${c.port > 0 ? c.port : -1}"`,
    'jetstream {',
    `  store_dir: ${q(c.storeDir)}`,
    '}',
    ...(c.cluster ? renderCluster(c.cluster) : []),
    'authorization {',
    '  users: [',
    users.join('\n'),
    '  ]',
    '}',
    '',
  ].join('\n');
}

/** The `cluster {}` block of one node: where it listens for routes and which routes it dials. */
export interface ClusterSection {
  /** Cluster name, the same on every node. */
  name: string;
  /** Route port of this node on 127.0.0.1. */
  port: number;
  /** Route ports of the other nodes on 127.0.0.1. */
  routes: number[];
  /** The user every node authenticates its routes with. */
  user: NatsCredentials;
}

function renderCluster(c: ClusterSection): string[] {
  const auth = `${encodeURIComponent(c.user.user)}:${encodeURIComponent(c.user.password)}`;
  return [
    'cluster {',
    `  name: ${q(c.name)}`,
    `  listen: "127.0.0.1:${c.port}"`,
    '  authorization {',
    `    user: ${q(c.user.user)}`,
    `    password: ${q(c.user.password)}`,
    '  }',
    `  routes: ${list(c.routes.map((p) => `nats-route://${auth}@127.0.0.1:${p}`), '  ')}`,
    '}',
  ];
}

export const randomPassword = () => randomBytes(18).toString('base64url');

/**
 * Writes a complete nats-server configuration (JetStream in `storeDir`, loopback only) with a
 * user per role restricted to what the role needs (see {@link rolePermissions}). Passwords not
 * given are new random ones on every call. The file is mode 600 since it holds the passwords
 * (see {@link writePrivateFile}). Returns the users and their passwords.
 */
export function writeNatsConfig(options: NatsConfigOptions): NatsConfig {
  const port = options.port ?? 4222;
  const storeDir = path.resolve(options.storeDir);
  const users = roleUsers(options.users);
  const permissions = rolePermissions(makeSubjects(options.prefix ?? 'troupe'));
  const file = path.resolve(options.file);
  writePrivateFile(file, renderNatsConfig({ port, storeDir, users, permissions }));
  return { file, port, storeDir, url: `nats://127.0.0.1:${port}`, users, permissions };
}

/** Each role's user: as given, else named after the role with a new random password. */
export function roleUsers(given: NatsConfigOptions['users']): Record<NatsRole, NatsCredentials> {
  const role = (r: NatsRole): NatsCredentials => ({ user: given?.[r]?.user ?? `troupe-${r}`, password: given?.[r]?.password ?? randomPassword() });
  return Object.fromEntries(natsRoles.map((r) => [r, role(r)])) as Record<NatsRole, NatsCredentials>;
}
