import { createInbox, errors, headers as makeHeaders, type Msg, type MsgHdrs, type NatsConnection, type Payload } from '@nats-io/nats-core';
import { JetStreamError, PubHeaders, type JetStreamClient, type JetStreamPublishOptions, type PubAck } from '@nats-io/jetstream';

/** nats.js's error for a publish that no stream took ("no responders"): the same name, so the same checks apply. */
class JetStreamNotEnabled extends Error {
  override readonly name = 'JetStreamNotEnabled';
}

/** How often publishes past their deadline are looked for. */
const SWEEP_MS = 250;

interface Pending {
  subject: string;
  payload: Payload;
  headers: MsgHdrs | undefined;
  deadline: number;
  /** Wait before sending again after "no responders". */
  backoff: number;
  resolve: (ack: PubAck) => void;
  reject: (err: unknown) => void;
}

/**
 * JetStream publishes whose acknowledgements all come back on one subscription, the way nats.go's
 * `PublishAsync` works, instead of one request each. nats.js makes every `js.publish` a request:
 * a reply subscription entry, a timer, and an error object built with its stack trace for the
 * moment the request ends (`RequestOne.cancel`), whether it failed or not. A task's step publishes
 * about a dozen times (snapshot and ledger writes, events, audit records), so that bookkeeping
 * was a tenth of a host's CPU. Here a publish is one entry in a map, its acknowledgement is
 * matched by the last token of its reply subject, and one timer fails those past their deadline.
 *
 * Same semantics as nats.js's `js.publish`: resolves with the `PubAck`; rejects with the
 * JetStream API error (a compare-and-set conflict keeps its code), a `TimeoutError`, or, when no
 * stream took the message for the whole timeout (a stream without a leader during a fail-over),
 * `JetStreamNotEnabled`; until then it is sent again with backoff. Publishes go through
 * `nc.publish`, so they are held while the connection is down (see `holdWhileDisconnected`).
 */
export class PublishAcks {
  private readonly inbox: string;
  private readonly pending = new Map<number, Pending>();
  private next = 0;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly timeoutMs: number,
  ) {
    this.inbox = createInbox((nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
    nc.subscribe(`${this.inbox}.*`, { callback: (_err, msg) => this.settle(msg) });
    void nc.closed().then(() => this.failAll(new errors.ClosedConnectionError()));
  }

  /** A `js.publish` with the options troupe uses, or `undefined` when `options` asks for more (use nats.js's own). */
  publish(subject: string, payload: Payload, options?: Partial<JetStreamPublishOptions>): Promise<PubAck> | undefined {
    const headers = publishHeaders(options);
    if (headers === null) return undefined;
    return new Promise<PubAck>((resolve, reject) => {
      const token = this.next++;
      this.pending.set(token, { subject, payload, headers, deadline: Date.now() + (options?.timeout ?? this.timeoutMs), backoff: 100, resolve, reject });
      this.send(token);
      this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
    });
  }

  private send(token: number): void {
    const p = this.pending.get(token);
    if (!p) return;
    try {
      this.nc.publish(p.subject, p.payload, { reply: `${this.inbox}.${token}`, ...(p.headers ? { headers: p.headers } : {}) });
    } catch (err) {
      // Refused before sending: over max_payload, a closed or draining connection.
      this.pending.delete(token);
      p.reject(err);
    }
  }

  private settle(msg: Msg): void {
    const token = Number(msg.subject.slice(this.inbox.length + 1));
    const p = this.pending.get(token);
    if (!p) return; // already timed out
    if (msg.headers?.code === 503) {
      // No stream took it (no leader right now): nothing was stored, so sending again is safe,
      // until the deadline.
      const left = p.deadline - Date.now();
      if (left <= 0) {
        this.pending.delete(token);
        p.reject(new JetStreamNotEnabled(`no stream took the publish to ${p.subject} within its timeout (JetStream unavailable, or the stream has no leader)`));
        return;
      }
      setTimeout(() => this.send(token), Math.min(p.backoff, left)).unref();
      p.backoff = Math.min(p.backoff * 2, 1000);
      return;
    }
    this.pending.delete(token);
    if (msg.headers?.hasError) {
      // Any other status instead of an acknowledgement: the server's failure, not the message's.
      p.reject(new JetStreamError(`the server answered the publish to ${p.subject} with ${msg.headers.status} instead of an acknowledgement`));
      return;
    }
    let parsed: PubAck & { error?: unknown };
    try {
      parsed = JSON.parse(msg.string()) as PubAck & { error?: unknown };
    } catch {
      p.reject(new JetStreamError(`the acknowledgement of the publish to ${p.subject} is not JSON`));
      return;
    }
    try {
      // An error answer raises what nats.js raises for it (the API error with its code).
      const ack = parsed.error === undefined ? parsed : (this.js as unknown as { parseJsResponse(m: Msg): PubAck }).parseJsResponse(msg);
      if (!ack.stream) throw new JetStreamError('invalid ack response');
      ack.duplicate = ack.duplicate ?? false;
      p.resolve(ack);
    } catch (err) {
      p.reject(err);
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const [token, p] of this.pending) {
      if (p.deadline > now) continue;
      this.pending.delete(token);
      p.reject(new errors.TimeoutError());
    }
    if (this.pending.size === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    if (this.sweeper) clearInterval(this.sweeper);
  }
}

/** The headers nats.js would send for `options`; `null` for options handled only by nats.js (TTLs, schedules, retries). */
function publishHeaders(options: Partial<JetStreamPublishOptions> | undefined): MsgHdrs | undefined | null {
  if (!options) return undefined;
  const { msgID, expect, headers, timeout: _timeout, ...rest } = options;
  if (Object.keys(rest).length) return null;
  if (expect && Object.keys(expect).some((k) => !['lastMsgID', 'streamName', 'lastSequence', 'lastSubjectSequence'].includes(k))) return null;
  if (!msgID && !expect) return headers;
  const h = headers ?? makeHeaders();
  if (msgID) h.set(PubHeaders.MsgIdHdr, msgID);
  if (expect?.lastMsgID) h.set(PubHeaders.ExpectedLastMsgIdHdr, expect.lastMsgID);
  if (expect?.streamName) h.set(PubHeaders.ExpectedStreamHdr, expect.streamName);
  if (typeof expect?.lastSequence === 'number') h.set(PubHeaders.ExpectedLastSeqHdr, `${expect.lastSequence}`);
  if (typeof expect?.lastSubjectSequence === 'number') h.set(PubHeaders.ExpectedLastSubjectSequenceHdr, `${expect.lastSubjectSequence}`);
  return h;
}
