/**
 * A pass-through HTTP proxy in front of a scenario's simulator that keeps every Messages API
 * request body: what the model really received (tool results as the runtime delimited them,
 * injected text included), and how many requests it took (retries after faults, calls repeated
 * after a crash).
 */
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One content block of a request, with the fields the checks read. */
export interface TappedBlock {
  type: string;
  text?: string;
  id?: string;
  name?: string;
  tool_use_id?: string;
  content?: unknown;
  is_error?: boolean;
}

/** One `POST /v1/messages` body as the SDK sent it. */
export interface TappedRequest {
  messages: Array<{ role: string; content: string | TappedBlock[] }>;
}

/** A running tap. `close()` is idempotent. */
export interface ModelTap {
  /** Base URL for the SDK. */
  url: string;
  /** Every request body, in arrival order. */
  readonly requests: TappedRequest[];
  close(): Promise<void>;
}

/** Starts a proxy on a free loopback port that forwards everything to `target` unchanged. */
export async function startModelTap(target: string): Promise<ModelTap> {
  const upstream = new URL(target);
  const requests: TappedRequest[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.url?.startsWith('/v1/messages')) {
        try {
          requests.push(JSON.parse(body.toString('utf8')) as TappedRequest);
        } catch {
          // Not JSON: the simulator answers it with a 400; nothing to record.
        }
      }
      const headers: IncomingHttpHeaders = { ...req.headers, host: upstream.host };
      const out = request({ hostname: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      out.on('error', () => res.destroy());
      res.on('close', () => out.destroy());
      out.end(body);
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      })),
  };
}

/** The blocks of a message (a string content is one text block). */
export function blocksOf(message: TappedRequest['messages'][number]): TappedBlock[] {
  return typeof message.content === 'string' ? [{ type: 'text', text: message.content }] : message.content;
}

/** A tool result's text (the API allows a string or text blocks). */
export function resultText(block: TappedBlock): string {
  if (typeof block.content === 'string') return block.content;
  if (Array.isArray(block.content)) return block.content.map((b: { text?: string }) => b.text ?? '').join('');
  return '';
}

/**
 * Every tool result the model received, with the tool it answers (found from the `tool_use` it
 * answers), once each (later requests repeat the conversation).
 */
export function toolResultsSeen(requests: readonly TappedRequest[]): Array<{ tool: string; text: string; isError: boolean }> {
  const seen = new Map<string, { tool: string; text: string; isError: boolean }>();
  for (const r of requests) {
    const names = new Map<string, string>();
    for (const m of r.messages) {
      for (const b of blocksOf(m)) {
        if (b.type === 'tool_use' && b.id && b.name) names.set(b.id, b.name);
        if (b.type === 'tool_result' && b.tool_use_id && !seen.has(b.tool_use_id)) {
          seen.set(b.tool_use_id, { tool: names.get(b.tool_use_id) ?? '?', text: resultText(b), isError: b.is_error === true });
        }
      }
    }
  }
  return [...seen.values()];
}
