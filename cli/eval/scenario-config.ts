/**
 * The troupe configuration a scenario's processes run with: the project's, on the scenario's own
 * prefix (so scenarios never see each other's tasks, and every host on a prefix runs the same
 * agents), with the harness's approver trusted, the model behind the scenario's tap, and short
 * leases so a killed host's task moves on quickly.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { compileConfig } from '../../config/load.ts';
import { connectNats } from '../../runtime/connection.ts';
import type { TroupeConfig } from '../../config/schema.ts';
import type { Subjects } from '../../runtime/subjects.ts';

/** Name of the harness's approver in the scenario configs. */
export const EVAL_APPROVER = 'troupe-eval';

/** How long a silent (killed) host keeps a scenario's task before another host gets it. */
export const EVAL_LEASE_MS = 1_500;

export interface ScenarioConfigOptions {
  prefix: string;
  servers: readonly string[];
  /** The harness started these servers itself: they take no credentials. */
  embedded: boolean;
  /** Base URL of the model (the scenario's tap in front of its simulator). */
  modelUrl: string;
  /** Public nkey of the harness's approver. */
  approverKey: string;
  /** @default "silent" */
  logLevel?: TroupeConfig['log']['level'];
}

/** The project's config, adapted for one scenario. */
export function scenarioConfig(base: TroupeConfig, o: ScenarioConfigOptions): TroupeConfig {
  const input = JSON.parse(JSON.stringify(base)) as Record<string, any>;
  input.prefix = o.prefix;
  input.nats = o.embedded ? { name: input.nats.name, servers: [...o.servers] } : { ...input.nats, servers: [...o.servers] };
  input.host = { ...input.host, leaseMs: EVAL_LEASE_MS, drainTimeoutMs: Math.min(input.host.drainTimeoutMs, 2_000) };
  input.approvers = [...input.approvers.filter((a: { name: string }) => a.name !== EVAL_APPROVER), { name: EVAL_APPROVER, publicKey: o.approverKey }];
  // Several hosts run at once: no fixed metrics port, no inspector.
  delete input.metrics.port;
  input.inspect = { enabled: false, port: 0 };
  input.model = { ...input.model, provider: 'anthropic', baseURL: o.modelUrl };
  input.log = { ...input.log, level: o.logLevel ?? 'silent' };
  return compileConfig(input, 'the eval configuration');
}

/** A connection to a scenario's NATS, with the config's credentials. */
export function connectFor(config: TroupeConfig, name: string): Promise<NatsConnection> {
  const { servers, credsFile, user, password } = config.nats;
  return connectNats({ servers: [...(servers ?? [])], name, credsFile, user, password });
}

/** Deletes a scenario's streams and buckets (on a NATS the harness did not start, so nothing is left behind). */
export async function dropTopology(nc: NatsConnection, s: Subjects): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const names = [...Object.values(s.streams), ...Object.values(s.buckets).map((b) => `KV_${b}`)];
  await Promise.all(names.map((name) => jsm.streams.delete(name).catch(() => false)));
}
