import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One `POST /v1/messages` body as the SDK sent it (the fields the tool tests read). */
export interface TappedRequest {
  system?: unknown;
  messages: Array<{ role: string; content: string | Array<{ type: string; text?: string; tool_use_id?: string; content?: unknown; is_error?: boolean; name?: string; input?: unknown }> }>;
}

/** A pass-through HTTP proxy in front of the simulator that keeps every request body. */
export interface ModelTap {
  url: string;
  requests: TappedRequest[];
  /** The requests of the conversation whose first user message is exactly `text`, in order. */
  conversation(text: string): TappedRequest[];
  close(): Promise<void>;
}

/**
 * Starts a proxy that forwards every request to `target` unchanged (streaming responses
 * included) and records the JSON bodies of `/v1/messages` requests: what the model really
 * received, to assert on tool results the runtime sent it.
 */
export async function startModelTap(target: string): Promise<ModelTap> {
  const upstream = new URL(target);
  const requests: TappedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.url?.startsWith('/v1/messages')) {
        try {
          requests.push(JSON.parse(body.toString('utf8')) as TappedRequest);
        } catch {
          // not JSON: the simulator answers it with a 400; nothing to record
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
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const firstUser = (r: TappedRequest): string | undefined => {
    const first = r.messages[0];
    if (!first) return undefined;
    if (typeof first.content === 'string') return first.content;
    return first.content.find((b) => b.type === 'text')?.text;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    conversation: (text) => requests.filter((r) => firstUser(r) === text),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The tool results of a request's last (user) message. */
export function toolResultsOf(r: TappedRequest): Array<{ tool_use_id?: string; content?: unknown; is_error?: boolean }> {
  const last = r.messages.at(-1);
  if (!last || typeof last.content === 'string') return [];
  return last.content.filter((b) => b.type === 'tool_result');
}

/** A tool result's text (the API allows a string or text blocks). */
export function resultText(block: { content?: unknown }): string {
  if (typeof block.content === 'string') return block.content;
  if (Array.isArray(block.content)) return block.content.map((b: { text?: string }) => b.text ?? '').join('');
  return '';
}
