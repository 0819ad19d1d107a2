import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ApproverClient, Verdict } from '../approver-client.ts';
import type { ApprovalRequest } from '../../runtime/approvals.ts';
import { APP_CSS, APP_JS, renderPage } from './page.ts';
import { startTaskView, type TaskViewOptions } from './task-view.ts';

/** Options of {@link startApproverServer}. */
export interface ApproverServerOptions {
  /** The approver's client; its signing key stays in this process and never reaches the browser. */
  client: ApproverClient;
  /** TCP port; 0 picks a free one. @default 8080 */
  port?: number;
  /** Interface to bind. Anything but loopback requires `accessToken`. @default '127.0.0.1' */
  host?: string;
  /**
   * A shared secret every request must present: `?token=` on the first page load, after which an
   * HttpOnly SameSite=Strict session cookie carries it. Required when not bound to loopback.
   */
  accessToken?: string;
  /**
   * Also serve the read-only task view (`/tasks`, `/tasks/<taskId>`): every task, and each task's
   * statechart and timeline, live. Behind the same host, token and session checks as the page.
   * @default off
   */
  tasks?: TaskViewOptions;
  logger?: Logger;
}

/** A running approver page; `close()` is idempotent. */
export interface ApproverServer extends AsyncDisposable {
  /** The page's address (for loopback binds, the exact origin the server accepts). */
  url: string;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const COOKIE = 'troupe_session';
export const CSRF_HEADER = 'x-troupe-csrf';
const MAX_BODY = 256 * 1024;

const decisionBodySchema = z.object({
  requestId: z.string().min(1),
  verdict: z.enum(['approve', 'reject', 'edit']),
  grant: z.number().positive().optional(),
  args: z.unknown().optional(),
  reason: z.string().max(2000).optional(),
});

type Session = { id: string; csrf: string };

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Serves the approver's web page (node:http only) from the process holding the approver's key.
 *
 * Guarantees: a non-loopback bind without `accessToken` is refused; with a token, every request
 * must present it (query on first load, then the session cookie); every POST must carry the
 * session's CSRF token in `X-Troupe-CSRF` and an `Origin` (or `Referer`) equal to the server's own
 * origin, or it gets 403; on loopback, requests naming any other `Host` are refused (DNS rebinding).
 * Every response sets a strict CSP (`default-src 'self'`, no inline code), `X-Frame-Options: DENY`
 * and `Cache-Control: no-store`.
 */
export async function startApproverServer(options: ApproverServerOptions): Promise<ApproverServer> {
  const { client, port = 8080, host = '127.0.0.1', accessToken, logger } = options;
  const loopback = LOOPBACK.has(host);
  if (!loopback && !accessToken) {
    throw new Error(`the approver page may bind to ${host} only with an accessToken (anyone who can reach it could otherwise decide as you); bind to 127.0.0.1 or set accessToken`);
  }
  if (accessToken !== undefined && accessToken.length < 16) throw new Error('accessToken must be at least 16 characters');
  // Sessions are stateless: the cookie is `id.mac` and the CSRF token a second MAC of the id, both
  // under a secret that lives only as long as this server.
  const secret = randomBytes(32);
  const mac = (purpose: string, id: string) => createHmac('sha256', secret).update(`${purpose}:${id}`).digest('base64url');
  const newSession = (): Session => {
    const id = randomBytes(18).toString('base64url');
    return { id, csrf: mac('csrf', id) };
  };

  const streams = new Set<ServerResponse>();
  let lastList = '[]';
  const broadcast = async () => {
    try {
      lastList = JSON.stringify(await client.pending());
    } catch (err) {
      logger?.warn({ err }, 'approver page could not list pending requests');
      return;
    }
    for (const res of streams) res.write(`event: requests\ndata: ${lastList}\n\n`);
  };
  let refreshing: Promise<void> | undefined;
  let again = false;
  // Coalesces bursts of changes: at most one listing in flight and one queued behind it.
  const refresh = () => {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = broadcast().finally(() => {
      refreshing = undefined;
      if (again) {
        again = false;
        refresh();
      }
    });
  };
  const stopWatch = await client.watch(refresh);
  const taskView = options.tasks ? await startTaskView({ ...options.tasks, logger }) : undefined;
  const heartbeat = setInterval(() => {
    for (const res of streams) res.write(': keep-alive\n\n');
  }, 15_000);
  heartbeat.unref();

  let origin = '';
  const allowedHosts = new Set<string>();

  const sessionOf = (req: IncomingMessage): Session | undefined => {
    const raw = parseCookies(req.headers.cookie)[COOKIE];
    const [id, m] = (raw ?? '').split('.');
    if (!id || !m || !safeEqual(m, mac('session', id))) return undefined;
    return { id, csrf: mac('csrf', id) };
  };
  const setSession = (res: ServerResponse, s: Session) =>
    res.setHeader('Set-Cookie', `${COOKIE}=${s.id}.${mac('session', s.id)}; HttpOnly; SameSite=Strict; Path=/`);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (loopback && !allowedHosts.has(req.headers.host ?? '')) throw new HttpError(421, 'wrong_host', 'this server answers only to its own loopback address');
    let session = sessionOf(req);
    const queryToken = url.searchParams.get('token');
    if (accessToken) {
      if (queryToken !== null) {
        if (!safeEqual(queryToken, accessToken)) throw new HttpError(401, 'unauthorized', 'wrong access token');
        session ??= newSession();
        setSession(res, session);
        if (req.method === 'GET' && url.pathname === '/') {
          // Drop the token from the address bar and history.
          res.writeHead(303, { Location: '/' }).end();
          return;
        }
      } else if (!session) {
        throw new HttpError(401, 'unauthorized', 'open the link with ?token=<access token> first');
      }
    }

    const view = taskView?.route(req.method, url.pathname);
    if (view) {
      if (view.kind === 'api' && !session) throw new HttpError(401, 'unauthorized', 'no session: load the page first');
      if (view.kind === 'page' && !session) {
        session = newSession();
        setSession(res, session);
      }
      return view.serve(req, res);
    }
    if (req.method === 'GET' && url.pathname === '/') {
      if (!session) {
        session = newSession();
        setSession(res, session);
      }
      return send(res, 200, 'text/html; charset=utf-8', renderPage({ csrf: session.csrf, tasksLink: taskView !== undefined }));
    }
    if (req.method === 'GET' && url.pathname === '/app.js') return send(res, 200, 'text/javascript; charset=utf-8', APP_JS);
    if (req.method === 'GET' && url.pathname === '/app.css') return send(res, 200, 'text/css; charset=utf-8', APP_CSS);
    if (req.method === 'GET' && url.pathname === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    if (!url.pathname.startsWith('/api/')) throw new HttpError(404, 'not_found', `no page at ${url.pathname}`);
    if (!session) throw new HttpError(401, 'unauthorized', 'no session: load the page first');

    if (req.method === 'GET' && url.pathname === '/api/session') return json(res, 200, { csrf: session.csrf, approver: client.publicKey });
    if (req.method === 'GET' && url.pathname === '/api/requests') return json(res, 200, await client.pending());
    if (req.method === 'GET' && url.pathname === '/api/events') {
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' });
      res.write('retry: 2000\n\n');
      streams.add(res);
      req.on('close', () => streams.delete(res));
      // Through the serialized refresh, so a slow first listing never lands after a newer one.
      refresh();
      return;
    }
    if (req.method === 'POST' && url.pathname === '/api/decisions') {
      checkCrossSite(req, session, origin);
      const body = decisionBodySchema.safeParse(await readJson(req));
      if (!body.success) throw new HttpError(422, 'invalid_decision', `${body.error.issues[0]?.path.join('.') || 'body'}: ${body.error.issues[0]?.message}`);
      const d = body.data;
      const request = (await client.pending()).find((r) => r.requestId === d.requestId);
      if (!request) throw new HttpError(404, 'not_found', `no pending request ${d.requestId} (already decided, expired, or never asked)`);
      const verdict = toVerdict(request, d);
      const result = await client.decide(request, verdict);
      logger?.info({ requestId: request.requestId, taskId: request.taskId, verdict: d.verdict, ok: result.ok }, 'decision sent from the approver page');
      if (result.ok) return json(res, 200, result);
      return json(res, result.error.code.startsWith('invalid') ? 422 : 409, result);
    }
    throw new HttpError(404, 'not_found', `no route ${req.method} ${url.pathname}`);
  };

  const server = createServer((req, res) => {
    res.setHeader('Content-Security-Policy', "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'same-origin');
    handle(req, res).catch((err: unknown) => {
      const e = err instanceof HttpError ? err : new HttpError(500, 'internal', 'internal error');
      if (!(err instanceof HttpError)) logger?.error({ err }, 'approver page request failed');
      if (res.headersSent) res.end();
      else json(res, e.status, { ok: false, error: { code: e.code, message: e.message } });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  for (const name of ['127.0.0.1', 'localhost', '[::1]']) allowedHosts.add(`${name}:${bound}`);
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const url = `http://${shownHost}:${bound}/`;
  origin = url.slice(0, -1);
  logger?.info({ url }, 'approver page listening');

  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      stopWatch();
      taskView?.close();
      clearInterval(heartbeat);
      for (const res of streams) res.end();
      streams.clear();
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await done;
    })());
  return { url, close, [Symbol.asyncDispose]: close };
}

/**
 * 403 unless the request carries the session's CSRF token and comes from this server's own
 * origin. On loopback that is the origin the server was opened at; otherwise it is the origin of
 * the `Host` the request was sent to (a cross-site page cannot forge its own `Origin`).
 */
function checkCrossSite(req: IncomingMessage, session: Session, loopbackOrigin: string): void {
  const token = req.headers[CSRF_HEADER];
  if (typeof token !== 'string' || !safeEqual(token, session.csrf)) throw new HttpError(403, 'csrf', `missing or wrong ${CSRF_HEADER} header`);
  const own = new Set([loopbackOrigin, `http://${req.headers.host ?? ''}`]);
  let from = req.headers.origin;
  if (!from && req.headers.referer) {
    try {
      from = new URL(req.headers.referer).origin;
    } catch {
      from = undefined;
    }
  }
  if (!from || !own.has(from)) throw new HttpError(403, 'cross_origin', 'requests must come from this page');
}

function toVerdict(request: ApprovalRequest, d: z.infer<typeof decisionBodySchema>): Verdict {
  const reason = d.reason?.trim() ? { reason: d.reason.trim() } : {};
  if (d.verdict === 'reject') return { verdict: 'reject', ...reason };
  if (d.verdict === 'edit') {
    if (request.kind !== 'tool') throw new HttpError(422, 'invalid_decision', 'only tool calls can be edited; grant or reject a limit');
    if (d.args === undefined) throw new HttpError(422, 'invalid_decision', 'an edit needs the new args');
    return { verdict: 'edit', args: d.args, ...reason };
  }
  return { verdict: 'approve', ...(request.kind === 'limit' && d.grant !== undefined ? { grant: d.grant } : {}), ...reason };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'Content-Type': type }).end(body);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) throw new HttpError(415, 'unsupported_media_type', 'send application/json');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, 'payload_too_large', `body over ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'invalid_json', 'body is not JSON');
  }
}

function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
