import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { breakerRecordSchema, type BreakerRecord } from '../../actors/breakers.ts';
import { ErrorCode, TerminalError } from '../../common/errors.ts';
import { JsonKv } from '../../runtime/json-kv.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { connectClient } from '../connect.ts';
import type { Command } from '../main.ts';
import { configFor } from './options.ts';

export const breakersCommand: Command = {
  summary: 'show the circuit breakers of tools and models, as every host sees them',
  usage: 'troupe breakers [--json]',
  options: { json: { type: 'boolean' } },
  async run({ values }) {
    const loaded = await configFor(values);
    const nc = await connectClient(loaded, 'troupe-breakers', 'observers');
    try {
      const bucket = makeSubjects(loaded.config.prefix).buckets.breakers;
      let store: JsonKv<BreakerRecord>;
      try {
        store = new JsonKv(await new Kvm(jetstream(nc)).open(bucket), bucket, breakerRecordSchema);
        await store.kv.status();
      } catch (cause) {
        throw new TerminalError(ErrorCode.notFound, `no breaker bucket (${bucket}) on this NATS: has a troupe host run here?`, { cause });
      }
      const rows: Array<[string, BreakerRecord]> = [];
      for (const key of await store.keys()) {
        const r = await store.get(key);
        if (r) rows.push([key, r.value]);
      }
      if (values.json) {
        process.stdout.write(`${JSON.stringify(Object.fromEntries(rows))}\n`);
        return 0;
      }
      if (!rows.length) {
        process.stdout.write('no breaker has recorded a failure; everything is closed\n');
        return 0;
      }
      for (const [key, r] of rows) {
        const since = r.openedAt ? ` since ${new Date(r.openedAt).toISOString()}` : '';
        process.stdout.write(`${key.padEnd(32)}  ${r.state}${since}  (${r.failures.length} recent failures)\n`);
      }
      return 0;
    } finally {
      await nc.close();
    }
  },
};
