import { JetStreamApiError, type JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { z } from 'zod';
import { ErrorCode, RetryableError, TerminalError } from '../common/errors.ts';

/** JetStream's "wrong last sequence": someone else wrote the key since we read it. */
const WRONG_LAST_SEQUENCE = 10071;

/** A compare-and-set write lost: another writer advanced the key. Reload, never overwrite. */
export class RevisionConflictError extends RetryableError {
  override readonly name = 'RevisionConflictError';
  constructor(readonly bucket: string, readonly key: string, options?: { cause?: unknown }) {
    super(ErrorCode.revisionConflict, `${bucket}/${key} was changed by another writer`, options);
  }
}

/** A stored value that no known schema version can read. */
export class CorruptRecordError extends TerminalError {
  override readonly name = 'CorruptRecordError';
  constructor(bucket: string, key: string, detail: string) {
    super(ErrorCode.snapshotCorrupt, `${bucket}/${key} holds a record troupe cannot read: ${detail}`);
  }
}

/** A record and the revision it was read at (the token for the next compare-and-set). */
export interface Versioned<T> {
  value: T;
  revision: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A KV bucket of JSON records validated by a zod schema on read. Writes are compare-and-set:
 * {@link create} only if absent, {@link update} only at the revision last seen.
 */
export class JsonKv<T> {
  private readonly jsm: JetStreamManager;

  constructor(
    readonly kv: KV,
    readonly bucket: string,
    private readonly schema: z.ZodType<T>,
  ) {
    // The KV client's own manager: same connection, no second handshake.
    this.jsm = (kv as unknown as { jsm: JetStreamManager }).jsm;
  }

  async get(key: string): Promise<Versioned<T> | undefined> {
    const entry = await this.kv.get(key);
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return undefined;
    return { value: this.decode(key, entry.value), revision: entry.revision };
  }

  /** Writes `value` only if `key` does not exist; returns the new revision. */
  async create(key: string, value: T): Promise<number> {
    return this.cas(key, () => this.kv.create(key, encoder.encode(JSON.stringify(value))));
  }

  /** Writes `value` only if `key` is still at `revision`; returns the new revision. */
  async update(key: string, value: T, revision: number): Promise<number> {
    return this.cas(key, () => this.kv.update(key, encoder.encode(JSON.stringify(value)), revision));
  }

  /** Writes unconditionally. Only for records with a single writer by construction. */
  async put(key: string, value: T): Promise<number> {
    return this.kv.put(key, encoder.encode(JSON.stringify(value)));
  }

  /**
   * Every key with a value, read from the bucket stream's subject index in one request.
   * (nats.js's `kv.keys()` runs a consumer that can wait forever while keys are being written.)
   */
  async keys(): Promise<string[]> {
    const stream = `KV_${this.bucket}`;
    const prefix = `$KV.${this.bucket}.`;
    const info = await this.jsm.streams.info(stream, { subjects_filter: `${prefix}>` });
    return Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length));
  }

  private decode(key: string, bytes: Uint8Array): T {
    let raw: unknown;
    try {
      raw = JSON.parse(decoder.decode(bytes));
    } catch (err) {
      throw new CorruptRecordError(this.bucket, key, `not JSON (${(err as Error).message})`);
    }
    const parsed = this.schema.safeParse(raw);
    if (!parsed.success) throw new CorruptRecordError(this.bucket, key, parsed.error.issues[0]?.message ?? 'schema mismatch');
    return parsed.data;
  }

  private async cas(key: string, write: () => Promise<number>): Promise<number> {
    try {
      return await write();
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) {
        throw new RevisionConflictError(this.bucket, key, { cause: err });
      }
      throw err;
    }
  }
}
