import { readFileSync } from 'node:fs';
import { credsAuthenticator, errors, type NatsConnection, type Payload } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import type { Logger } from 'pino';

/** Where and how to connect. */
export interface ConnectOptions {
  servers: string[];
  /** Connection name shown by the server. */
  name: string;
  credsFile?: string | undefined;
  user?: string | undefined;
  password?: string | undefined;
}

/**
 * Connects to NATS and keeps reconnecting forever: a host or worker rides out a server restart
 * or the loss of a cluster node instead of dying. Given several servers (a cluster), it moves to
 * another one; the servers a cluster announces are added to the list. Subscriptions are
 * re-established on the new server. While it is disconnected, publishes are held and sent once
 * it is back, and requests (JetStream publishes and API calls included) wait for it within
 * their own timeout (see {@link holdWhileDisconnected}).
 */
export async function connectNats(options: ConnectOptions): Promise<NatsConnection> {
  const nc = await connect({
    servers: options.servers,
    name: options.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // Each request would otherwise capture a stack trace up front (for its possible timeout):
    // measurable on every KV write and event of a task's step, and never read in practice.
    noAsyncTraces: true,
    reconnectJitter: 250,
    // A server that stops answering without closing the socket (a frozen node, a cut network)
    // is given up after about 30 s, not the client's default of several minutes.
    pingInterval: 10_000,
    maxPingOut: 3,
    ...(options.credsFile ? { authenticator: credsAuthenticator(readFileSync(options.credsFile)) } : {}),
    ...(options.user ? { user: options.user, pass: options.password ?? '' } : {}),
  });
  holdWhileDisconnected(nc);
  coalesceWrites(nc);
  return nc;
}

/**
 * Writes everything published in one turn of the event loop to the socket at once. nats.js
 * writes its buffer at the end of each microtask batch, so a step's dozen publishes, made across
 * several microtasks of the same turn (a write's acknowledgement resolves a promise that
 * publishes events, which resolves another...), cost a dozen socket writes: system calls and
 * Node's stream machinery, a quarter of a host's CPU in the loop benchmark. Here the buffer is
 * written when the turn ends (`setImmediate`), in one write. Nothing waits longer than the turn
 * it was published in, and closing the connection first writes what is buffered.
 */
function coalesceWrites(nc: NatsConnection): void {
  const protocol = (nc as unknown as { protocol?: { flushPending?: () => void; close?: (err?: Error) => Promise<void> } }).protocol;
  const flushPending = protocol?.flushPending?.bind(protocol);
  const close = protocol?.close?.bind(protocol);
  if (!protocol || !flushPending || !close) return;
  let scheduled: NodeJS.Immediate | undefined;
  const flushNow = () => {
    if (scheduled) clearImmediate(scheduled);
    scheduled = undefined;
    flushPending();
  };
  protocol.flushPending = () => {
    scheduled ??= setImmediate(flushNow);
  };
  protocol.close = (err?: Error) => {
    flushNow();
    protocol.flushPending = flushPending;
    return close(err);
  };
}

/** Most bytes of publishes held while disconnected; past it, `publish` throws. */
const MAX_HELD_BYTES = 32 * 1024 * 1024;
/** nats.js's own default request timeout. */
const DEFAULT_REQUEST_TIMEOUT_MS = 1000;

const sizeOf = (payload: Payload | undefined) => (payload === undefined ? 0 : typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength);

/**
 * Makes publishes and requests made while the connection is down wait for it instead of being
 * lost. nats.js 3 discards whatever was written while disconnected when it dials again (its
 * protocol handler resets the outbound buffer on every dial), so without this a publish during
 * a server restart vanishes and a request made then always times out, even when the server is
 * back within a second. Here, a publish is held (up to 32 MiB in all) and sent, in order, once
 * the connection is back; a request waits for the connection for at most its timeout, then is
 * sent with the time left. Both go to the same subscriptions as before (they are
 * re-established first). JetStream acknowledgements and message replies, which nats.js sends on
 * its own path, are not held: an ack lost this way means a redelivery.
 */
export function holdWhileDisconnected(nc: NatsConnection): void {
  // The client's own flag flips the moment the socket closes; the status events come a little later.
  const protocol = (nc as unknown as { protocol?: { connected?: unknown } }).protocol;
  let down = false;
  const isDown = () => !nc.isClosed() && (typeof protocol?.connected === 'boolean' ? !protocol.connected : down);
  let held: Array<() => void> = [];
  let heldBytes = 0;
  const listeners = new Set<() => void>();
  reconnectListeners.set(nc, listeners);
  /** Requests waiting for the connection: told `true` when it is back, `false` if it closed. */
  const waiters = new Set<(back: boolean) => void>();
  const back = () => {
    down = false;
    const release = held;
    held = [];
    heldBytes = 0;
    for (const send of release) {
      try {
        send();
      } catch {
        // The connection went down again, or closed: a publish is at most once.
      }
    }
    for (const wake of [...waiters]) wake(true);
    for (const listener of [...listeners]) listener();
  };
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') down = true;
      else if (s.type === 'reconnect') back();
      else if (s.type === 'close') break;
    }
  })()
    .catch(() => {})
    .finally(() => {
      for (const wake of [...waiters]) wake(false);
    });

  const publish = nc.publish.bind(nc);
  nc.publish = (subject, payload, options) => {
    if (!isDown()) return publish(subject, payload, options);
    const size = sizeOf(payload);
    if (heldBytes + size > MAX_HELD_BYTES) {
      throw new errors.RequestError(`NATS is unreachable and ${MAX_HELD_BYTES} bytes of publishes are already waiting for it; not publishing to ${subject}`);
    }
    heldBytes += size;
    held.push(() => publish(subject, payload, options));
  };

  const request = nc.request.bind(nc);
  nc.request = async (subject, payload, opts) => {
    if (!isDown()) return request(subject, payload, opts);
    const timeout = opts?.timeout ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const started = Date.now();
    const reconnected = await new Promise<boolean>((resolve) => {
      const wake = (isBack: boolean) => {
        clearTimeout(timer);
        waiters.delete(wake);
        resolve(isBack);
      };
      const timer = setTimeout(() => {
        waiters.delete(wake);
        resolve(false);
      }, timeout);
      waiters.add(wake);
    });
    if (!reconnected) throw nc.isClosed() ? new errors.ClosedConnectionError() : new errors.TimeoutError();
    return request(subject, payload, { ...opts, timeout: Math.max(1, timeout - (Date.now() - started)) });
  };
}

const reconnectListeners = new WeakMap<NatsConnection, Set<() => void>>();

/**
 * Calls `listener` each time `nc` (a connection made by {@link connectNats}) is back after being
 * lost, once its subscriptions are in place again, until the returned function is called. What was
 * sent to this connection while it was down, replies included, is gone: a caller waiting for one
 * can ask again at once instead of waiting out its timeout.
 */
export function onReconnect(nc: NatsConnection, listener: () => void): () => void {
  const listeners = reconnectListeners.get(nc);
  if (!listeners) return () => {};
  listeners.add(listener);
  return () => void listeners.delete(listener);
}

/** What a {@link watchConnection} has seen of a connection so far. */
export interface ConnectionWatch {
  /** Times the connection was lost. */
  readonly disconnects: number;
  /** Times it came back (to the same server or another one). */
  readonly reconnects: number;
  /** When the connection was last lost, while it is not back yet (epoch ms). */
  readonly disconnectedSince: number | undefined;
  /** The server it is connected to now. */
  readonly server: string;
}

const watches = new WeakMap<NatsConnection, ConnectionWatch>();

/**
 * Logs what happens to a connection (lost, back and after how long, stale, lame-duck servers,
 * async errors) and counts disconnects and reconnects for metrics. One watch per connection:
 * watching the same connection again (a host and a worker sharing one) returns the first watch.
 */
export function watchConnection(nc: NatsConnection, logger: Logger): ConnectionWatch {
  const existing = watches.get(nc);
  if (existing) return existing;
  const state = { disconnects: 0, reconnects: 0, disconnectedSince: undefined as number | undefined, server: nc.getServer() };
  const watch: ConnectionWatch = {
    get disconnects() {
      return state.disconnects;
    },
    get reconnects() {
      return state.reconnects;
    },
    get disconnectedSince() {
      return state.disconnectedSince;
    },
    get server() {
      return state.server;
    },
  };
  watches.set(nc, watch);
  const log = logger.child({ component: 'nats' });
  void (async () => {
    for await (const s of nc.status()) {
      switch (s.type) {
        case 'disconnect':
          state.disconnects++;
          state.disconnectedSince ??= Date.now();
          log.warn({ server: s.server, disconnects: state.disconnects }, 'lost the NATS connection; publishes are buffered while reconnecting');
          break;
        case 'reconnect': {
          state.reconnects++;
          const downMs = state.disconnectedSince === undefined ? 0 : Date.now() - state.disconnectedSince;
          state.disconnectedSince = undefined;
          state.server = s.server;
          log.info({ server: s.server, downMs, reconnects: state.reconnects }, 'reconnected to NATS');
          break;
        }
        case 'staleConnection':
          log.warn('the NATS server stopped answering pings; reconnecting');
          break;
        case 'ldm':
          log.info({ server: s.server }, 'the NATS server is shutting down (lame duck mode); moving to another');
          break;
        case 'error':
          log.warn({ err: s.error }, 'NATS reported an error');
          break;
        case 'update':
          log.debug({ added: s.added, deleted: s.deleted }, 'the NATS cluster changed');
          break;
        default:
          break;
      }
    }
  })().catch((err: unknown) => log.warn({ err }, 'stopped watching the NATS connection'));
  return watch;
}

/** Errors the NATS client raises when the server or the connection fails a request. */
const NATS_FAILURES = new Set([
  'TimeoutError',
  'RequestError',
  'NoRespondersError',
  'ConnectionError',
  'ClosedConnectionError',
  'DrainingConnectionError',
  'ProtocolError',
  'JetStreamError',
  'JetStreamApiError',
  'JetStreamNotEnabled',
  'JetStreamStatusError',
]);

/**
 * Whether `err` is NATS failing (a timeout, a lost connection, JetStream refusing or unable to
 * answer) rather than the work itself: a task that meets one is let go and resumed from what is
 * durable, never failed with it, and a tool call's outcome is not reported from it.
 */
export function isNatsFailure(err: unknown): boolean {
  return err instanceof Error && NATS_FAILURES.has(err.name);
}

/** Whether nats.js refused a publish as larger than the server's max_payload (before sending it). */
export function isOverMaxPayload(err: unknown): boolean {
  return err instanceof Error && err.name === 'InvalidArgumentError' && err.message.includes('max_payload');
}

export type { NatsConnection };
