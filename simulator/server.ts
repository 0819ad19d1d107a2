/**
 * The simulator's HTTP server: `POST /v1/messages` (JSON and SSE), `GET /_simulator/stats`,
 * `POST /_simulator/reset`. Built on node:http so the real `@anthropic-ai/sdk` talks to it through
 * `baseURL` exactly as to the real API.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { apiFailure, errorBody, sendApiError, type ApiFailure } from './api-error.ts';
import { validateRequest, type ApiBlock, type ApiRequest } from './api-request.ts';
import { buildMessage, formatSse, streamEvents, type ApiMessageResponse } from './message-events.ts';
import { loadScenario, parseScenario, SUPPORT_DESK_SCENARIO, type Scenario, type ScenarioInput } from './scenario.ts';
import { malformToolUse, playRequest, type PlayedTurn } from './script-player.ts';
import { StatsRecorder, type RequestRecord, type SimulatorStats } from './stats.ts';
import { outputTokensOf, PromptCache, promptSegments, type UsageNumbers } from './usage.ts';
import type { Fault } from './scenario.ts';

/** The logging the simulator needs; a pino logger fits. */
export interface SimulatorLogger {
  debug(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface StartSimulatorOptions {
  /** A scenario object, or the path of a scenario file. @default the bundled support-desk scenario */
  scenario?: ScenarioInput | string;
  /** @default 0 (a free port) */
  port?: number;
  /** @default "127.0.0.1" */
  host?: string;
  logger?: SimulatorLogger;
  /** Clock of the prompt cache's TTL. @default Date.now */
  now?: () => number;
}

/** A running simulator. `close()` is idempotent and frees every socket, held requests included. */
export interface SimulatorHandle extends AsyncDisposable {
  /** Base URL for the SDK's `baseURL`, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  readonly port: number;
  readonly scenario: Scenario;
  /** An independent snapshot of the counters. */
  stats(): SimulatorStats;
  /** Zeroes the counters, fault counts and the prompt cache. */
  reset(): void;
  close(): Promise<void>;
}

const json = (res: ServerResponse, status: number, value: unknown) => {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
};

/** Resolves after `ms` (or never, when undefined) unless `signal` aborts first; returns whether it slept fully. */
function pause(ms: number | undefined, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = ms === undefined ? undefined : setTimeout(done, ms, true);
    function done(full: boolean) {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(full);
    }
    const onAbort = () => done(false);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

const write = (res: ServerResponse, chunk: string) =>
  new Promise<void>((resolve) => {
    res.write(chunk, () => resolve());
  });

/** Starts a simulator on `host:port` playing `scenario`. */
export async function startSimulator(options: StartSimulatorOptions = {}): Promise<SimulatorHandle> {
  const source = options.scenario ?? SUPPORT_DESK_SCENARIO;
  const scenario = typeof source === 'string' ? await loadScenario(source) : parseScenario(source);
  const stats = new StatsRecorder();
  const cache = new PromptCache({ ...scenario.cache, now: options.now ?? Date.now });
  const closing = new AbortController();
  const sockets = new Set<Socket>();
  const logger = options.logger;
  let seq = 0;

  const server = createServer((req, res) => {
    const gone = new AbortController();
    const abort = () => gone.abort();
    // 'close' before the response finished means the client left (timeout, abort, cut).
    res.on('close', abort);
    closing.signal.addEventListener('abort', abort, { once: true });
    res.on('close', () => closing.signal.removeEventListener('abort', abort));
    handle(req, res, gone.signal).catch((err: unknown) => {
      logger?.error({ err }, 'simulator request failed');
      if (!res.headersSent && !res.destroyed) sendApiError(res, apiFailure(500), 'req_sim_error');
      else res.destroy();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  async function handle(req: IncomingMessage, res: ServerResponse, gone: AbortSignal): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://simulator').pathname;
    if (path === '/_simulator/stats' && req.method === 'GET') return json(res, 200, stats.snapshot());
    if (path === '/_simulator/reset' && req.method === 'POST') {
      reset();
      return json(res, 200, { ok: true });
    }
    const requestId = `req_sim${String(++seq).padStart(8, '0')}`;
    if (path !== '/v1/messages' || req.method !== 'POST') {
      req.resume();
      return sendApiError(res, apiFailure(404, `${req.method} ${path}: not found`), requestId);
    }
    const record = stats.begin({ script: null, conversation: null, turn: null, model: null, maxTokens: null, stream: false });
    const fail = (failure: ApiFailure, fault: string | null = null) => {
      stats.finish(record, failure.status, fault);
      logger?.debug({ requestId, status: failure.status, fault, message: failure.message }, 'simulator error reply');
      sendApiError(res, failure, requestId);
    };

    const auth = authFailure(req, scenario);
    if (auth) {
      req.resume();
      return fail(auth);
    }
    const read = await readBody(req, scenario.maxRequestBytes);
    if ('gone' in read) return stats.finish(record, 0, null);
    if ('tooLarge' in read) return fail(apiFailure(413));
    let parsed: unknown;
    try {
      parsed = JSON.parse(read.body);
    } catch {
      return fail(apiFailure(400, 'There was an error parsing the body of your request. Please check that it is valid JSON.'));
    }
    const validated = validateRequest(parsed);
    if ('failure' in validated) return fail(validated.failure);
    const request = validated.request;
    Object.assign(record, { model: request.model, maxTokens: request.max_tokens, stream: request.stream === true });
    const known = scenario.models ? scenario.models.includes(request.model) : request.model.startsWith('claude-');
    if (!known) return fail(apiFailure(404, `model: ${request.model}`));

    let played = playRequest(scenario, request);
    Object.assign(record, { script: played.script, conversation: played.conversation, turn: played.turn });
    stats.played(played.script, played.conversation, played.turn);
    const fault = pickFault(played);

    if (played.latencyMs > 0 && !(await pause(played.latencyMs, gone))) return stats.finish(record, 0, fault?.type ?? null);
    if (fault?.type === 'error') {
      const headers: Record<string, string> = {};
      if (fault.retryAfterSeconds !== undefined) headers['retry-after'] = String(fault.retryAfterSeconds);
      if (fault.retryAfterMs !== undefined) headers['retry-after-ms'] = String(fault.retryAfterMs);
      return fail(apiFailure(fault.status, fault.message, fault.errorType, headers), 'error');
    }
    if (fault?.type === 'hang' && !(await pause(fault.ms, gone))) return stats.finish(record, 0, 'hang');
    if (fault?.type === 'malformed_tool_use') {
      played = malformToolUse(played, fault.variant, (request.tools ?? []).map((t) => t.name));
    }
    const message = reply(request, played, requestId);
    logger?.debug({ requestId, script: played.script, turn: played.turn, fault: fault?.type }, 'simulator reply');
    await send(res, request, message, requestId, fault, record);
  }

  function pickFault(played: PlayedTurn): Fault | undefined {
    return played.faults.find((fault, index) => {
      const scope = fault.scope === 'global' ? '*' : played.conversation;
      return stats.takeFault(`${played.script}\u0000${played.turn}\u0000${index}\u0000${scope}`, fault.times);
    });
  }

  function reply(request: ApiRequest, played: PlayedTurn, requestId: string): ApiMessageResponse {
    const usage: UsageNumbers = {
      ...cache.account(request.model, promptSegments(request)),
      output_tokens: outputTokensOf(played.content),
      ...played.usage,
    };
    const capped = capAtMaxTokens(played, usage.output_tokens, request.max_tokens);
    return buildMessage({
      id: `msg_sim${requestId.slice('req_sim'.length)}`,
      model: request.model,
      content: capped.content,
      stopReason: capped.stopReason,
      usage: { ...usage, output_tokens: Math.min(usage.output_tokens, request.max_tokens) },
    });
  }

  async function send(
    res: ServerResponse,
    request: ApiRequest,
    message: ApiMessageResponse,
    requestId: string,
    fault: Fault | undefined,
    record: RequestRecord,
  ): Promise<void> {
    stats.finish(record, 200, fault?.type ?? null);
    if (request.stream !== true) {
      const body = JSON.stringify(message);
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'request-id': requestId,
      });
      if (fault?.type === 'stream_cut') {
        // Half the promised body, then the socket dies: the client sees a truncated response.
        await write(res, body.slice(0, Math.floor(body.length / 2)));
        res.destroy();
        return;
      }
      res.end(body);
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'request-id': requestId,
    });
    res.flushHeaders();
    const events = streamEvents(message, scenario.streamChunkChars);
    const stopAt = fault?.type === 'stream_cut' || fault?.type === 'stream_error' ? fault.afterEvents : events.length;
    for (const event of events.slice(0, stopAt)) {
      if (res.destroyed) return;
      await write(res, formatSse(event));
    }
    if (fault?.type === 'stream_cut') {
      res.destroy();
      return;
    }
    if (fault?.type === 'stream_error') {
      const data = JSON.parse(errorBody(apiFailure(529, undefined, fault.errorType))) as unknown;
      await write(res, formatSse({ event: 'error', data }));
    }
    res.end();
  }

  function reset(): void {
    stats.reset();
    cache.clear();
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closed: Promise<void> | undefined;

  const close = () =>
    (closed ??= new Promise<void>((resolve) => {
      closing.abort();
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    }));

  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    scenario,
    stats: () => stats.snapshot(),
    reset,
    close,
    [Symbol.asyncDispose]: close,
  };
}

function authFailure(req: IncomingMessage, scenario: Scenario): ApiFailure | undefined {
  const header = req.headers['x-api-key'];
  const bearer = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
  const key = (Array.isArray(header) ? header[0] : header) ?? bearer;
  if (!key) return apiFailure(401, 'x-api-key header is required');
  if (scenario.apiKey !== undefined && key !== scenario.apiKey) return apiFailure(401, 'invalid x-api-key');
  if (!req.headers['anthropic-version']) return apiFailure(400, 'anthropic-version: header is required');
  return undefined;
}

type BodyResult = { body: string } | { tooLarge: true } | { gone: true };

/** Reads the body; past `limit` bytes the rest is drained, not kept. */
function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.once('end', () => resolve(size > limit ? { tooLarge: true } : { body: Buffer.concat(chunks).toString('utf8') }));
    // Settles a request whose client left mid-body ('end' never comes); a second resolve is a no-op.
    req.once('close', () => resolve({ gone: true }));
  });
}

/**
 * As the real API does, a reply never has more than `max_tokens` output tokens: past it the text
 * is cut, an unfinished tool call is dropped, and `stop_reason` is `max_tokens`.
 */
export function capAtMaxTokens(played: PlayedTurn, outputTokens: number, maxTokens: number): Pick<PlayedTurn, 'content' | 'stopReason'> {
  if (outputTokens <= maxTokens) return played;
  const text = played.content
    .filter((b): b is Extract<ApiBlock, { type: 'text' }> => b.type === 'text')
    .map((b) => String(b.text))
    .join('')
    .slice(0, maxTokens * 4);
  return { content: [{ type: 'text', text: text || '…' }], stopReason: 'max_tokens' };
}
