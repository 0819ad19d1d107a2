import { createServer } from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';

/** A running inspector relay. */
export interface InspectorRelay {
  /** Where hosts send inspection events (`createWebSocketInspector({ url })`) and viewers listen. */
  url: string;
  /** A page that shows the Stately inspector fed from this relay (the inspector UI itself is hosted by Stately). */
  pageUrl: string;
  close(): Promise<void>;
}

/** Messages kept for a viewer that connects late, so it sees the actors that already started. */
const BACKLOG = 500;

/**
 * The relay between troupe's hosts and the XState inspector: every message one WebSocket client
 * sends (a host's `@statelyai/inspect` WebSocket inspector) goes to every other client (the
 * Stately inspector page, or any viewer). It binds to loopback by default: inspection events
 * carry task context.
 */
export async function startInspectorRelay(options: { port?: number; host?: string } = {}): Promise<InspectorRelay> {
  const host = options.host ?? '127.0.0.1';
  const backlog: string[] = [];
  let wsUrl = '';
  const http = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(bridgePage(wsUrl));
  });
  const wss = new WebSocketServer({ server: http });
  wss.on('connection', (ws) => {
    for (const msg of backlog) ws.send(msg);
    ws.on('message', (data) => {
      const msg = data.toString();
      backlog.push(msg);
      if (backlog.length > BACKLOG) backlog.shift();
      for (const client of wss.clients) if (client !== ws && client.readyState === WebSocket.OPEN) client.send(msg);
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = http.address() as { port: number };
  const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  wsUrl = `ws://${authority}`;
  return {
    url: wsUrl,
    pageUrl: `http://${authority}/`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close(() => http.close(() => resolve()));
      }),
  };
}

/** The Stately inspector in a frame, fed with this relay's events (the same bridge `@statelyai/inspect/server` serves). */
function bridgePage(wsUrl: string): string {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>troupe · XState inspector</title>
<style>*{margin:0;padding:0}html,body{height:100%}iframe{width:100%;height:100%;border:none}</style></head>
<body><iframe id="inspector" src="https://stately.ai/inspect"></iframe>
<script>
const frame = document.getElementById('inspector');
const waiting = [];
let connected = false;
window.addEventListener('message', (e) => {
  if (e.data && e.data.type === '@statelyai.connected') {
    connected = true;
    for (const event of waiting.splice(0)) frame.contentWindow.postMessage(event, '*');
  }
});
const ws = new WebSocket(${JSON.stringify(wsUrl)});
ws.onmessage = (m) => {
  const data = JSON.parse(m.data);
  if (connected) frame.contentWindow.postMessage(data, '*');
  else waiting.push(data);
};
</script></body></html>`;
}
