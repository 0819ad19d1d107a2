import { RequestError, TimeoutError, type NatsConnection } from '@nats-io/nats-core';
import type { Clock } from '../common/clock.ts';
import { ErrorCode, RetryableError, TroupeError, type WireError } from '../common/errors.ts';
import { onReconnect } from '../runtime/connection.ts';
import type { Subjects } from '../runtime/subjects.ts';
import { toolReplySchema, type ToolDispatch } from '../runtime/wire.ts';
import type { Tool } from '../sandbox/tool.ts';
import { UnknownOutcomeError } from './errors.ts';

/** A tool call's failure as a worker reported it, with the worker's code. */
export class RemoteToolError extends TroupeError {
  override readonly name = 'RemoteToolError';
  override readonly retryable: boolean;
  constructor(
    readonly wire: WireError,
    retryable: boolean,
  ) {
    super(ErrorCode.toolFailed, wire.message);
    this.retryable = retryable;
  }
  override toWire(): WireError {
    return this.wire;
  }
}

/** No worker answered for a tool: none runs it, or all that did are gone. */
export class NoWorkerError extends RetryableError {
  override readonly name = 'NoWorkerError';
  constructor(tool: string, why: string) {
    super(ErrorCode.toolUnavailable, `no worker ran tool "${tool}" (${why}). Start one with \`npx troupe worker\` (or \`troupe up\`, which starts one); the call can be tried again.`);
  }
}

/** How a host dispatches calls to workers. */
export interface DispatchOptions {
  nc: NatsConnection;
  subjects: Subjects;
  clock: Clock;
  /** Dispatches of one call before giving up when no worker answers. @default 4 */
  maxDispatches?: number;
  /** First wait between dispatches; doubles each time. @default 500 */
  backoffMs?: number;
}

/** Dispatches of one call made again because the host's connection came back, at most. */
const MAX_REDISPATCHES = 10;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Sends one admitted call to a worker on `troupe.tools.<tool>` and returns its (recorded)
 * result. The worker owns the ledger entry of the call, so dispatching the same key again is
 * always safe: when no reply comes (the worker died, or the reply was lost), the call is
 * dispatched again and whichever worker takes it finds the ledger's record — the result, a
 * live lease it waits out, or a vanished attempt it reconciles or reports as an unknown
 * outcome. The wait per dispatch covers one lease and one run.
 */
export async function dispatchTool(tool: Tool<any, any>, call: Omit<ToolDispatch, 'v' | 'tool'>, signal: AbortSignal, o: DispatchOptions): Promise<{ result: unknown; replayed: boolean }> {
  const max = o.maxDispatches ?? 4;
  const backoff = o.backoffMs ?? 500;
  const body = encoder.encode(JSON.stringify({ v: 1, tool: tool.name, ...call } satisfies ToolDispatch));
  // A worker may first wait out a vanished runner's lease (time limit + 5 s), then run the call.
  const timeout = tool.timeoutMs * 2 + 6_000;
  let why = '';
  let redispatches = 0;
  for (let dispatch = 1; dispatch <= max; dispatch++) {
    signal.throwIfAborted();
    // A reply sent while this host's connection was down is lost for good: when the connection is
    // back, the call is dispatched again at once (the worker's ledger makes that safe) instead of
    // waiting out the timeout. It does not count as a dispatch nobody answered.
    let stopWatching = () => {};
    const lost = new Promise<'lost'>((resolve) => (stopWatching = onReconnect(o.nc, () => resolve('lost'))));
    try {
      const answer = await abortable(Promise.race([o.nc.request(o.subjects.tool(tool.name), body, { timeout }), lost]), signal);
      if (answer === 'lost') {
        if (redispatches++ < MAX_REDISPATCHES) dispatch--;
        why = 'the connection to NATS was lost while waiting for the reply';
        continue;
      }
      const reply = toolReplySchema.parse(JSON.parse(decoder.decode(answer.data)));
      if (reply.ok) return { result: reply.result, replayed: reply.replayed };
      if (reply.error.code === ErrorCode.unknownOutcome) throw new UnknownOutcomeError(call.key, tool.name, reply.attempt ?? 0);
      throw new RemoteToolError(reply.error, reply.retryable);
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (err instanceof RequestError && err.isNoResponders()) why = 'no worker is subscribed';
      else if (err instanceof TimeoutError || (err instanceof RequestError && err.cause instanceof TimeoutError)) why = `no answer within ${timeout} ms`;
      else if (err instanceof RemoteToolError && err.wire.code === ErrorCode.toolUnavailable) why = err.message;
      else throw err;
    } finally {
      stopWatching();
    }
    if (dispatch < max) await o.clock.sleep(backoff * 2 ** (dispatch - 1));
  }
  throw new NoWorkerError(tool.name, `${why}, ${max} dispatches`);
}

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
