import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import type { z } from 'zod';
import { ErrorCode, TerminalError } from '../common/errors.ts';
import { JsonKv } from '../runtime/json-kv.ts';

/**
 * Opens a bucket for a command to read, checking it is there and readable; otherwise a
 * `not_found` error whose message `unreadable(cause)` writes.
 */
export async function openBucket<T>(nc: NatsConnection, bucket: string, schema: z.ZodType<T>, unreadable: (cause: Error) => string): Promise<JsonKv<T>> {
  try {
    const kv = await new Kvm(jetstream(nc)).open(bucket);
    await kv.status();
    return new JsonKv(kv, bucket, schema);
  } catch (cause) {
    throw new TerminalError(ErrorCode.notFound, unreadable(cause as Error), { cause });
  }
}
