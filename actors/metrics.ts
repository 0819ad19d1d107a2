import { createServer, type Server } from 'node:http';
import type { TaskEvent } from '../runtime/wire.ts';

type Labels = Record<string, string>;

/** A counter family in the Prometheus text format. */
class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels, by = 1): void {
    // A family's series always name their labels in the same order; their values identify them.
    let key = '';
    for (const k in labels) key += `${labels[k]}\u0000`;
    const entry = this.values.get(key) ?? { labels, value: 0 };
    entry.value += by;
    this.values.set(key, entry);
  }
  render(type = 'counter'): string[] {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${type}`, ...[...this.values.values()].map((v) => `${this.name}${labelText(v.labels)} ${v.value}`)];
  }
}

const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labelText = (labels: Labels) => {
  const entries = Object.entries(labels);
  return entries.length ? `{${entries.map(([k, v]) => `${k}="${escape(v)}"`).join(',')}}` : '';
};

/**
 * One host's metrics, in the Prometheus text format: counters fed by the task events this host
 * publishes (a call answered from the ledger after a crash, its event marked `replayed`, is not
 * counted again), and gauges read when scraped. Every host exports its own; Prometheus sums them.
 */
export class HostMetrics {
  private readonly tasks = new Counter('troupe_tasks_total', 'Tasks accepted and ended on this host, by agent and outcome (accepted, done, failed) and error code.');
  private readonly steps = new Counter('troupe_model_calls_total', 'Model calls (steps), by agent and model.');
  private readonly tokens = new Counter('troupe_model_tokens_total', 'Model tokens, by agent, model and kind (input, output, cache_write, cache_read).');
  private readonly usd = new Counter('troupe_model_cost_usd_total', 'USD spent on model calls, by agent and model.');
  private readonly tools = new Counter('troupe_tool_calls_total', 'Tool calls, by agent, tool and status (succeeded, failed, rejected, unavailable).');
  private readonly gates = new Counter('troupe_gate_rejections_total', 'Tool calls refused before any side effect, by agent and gate (schema, semantic, authorization).');
  private readonly escalations = new Counter('troupe_escalations_total', 'Requests to approvers (tool calls and limits), by agent.');
  private readonly decisions = new Counter('troupe_decisions_total', 'Approvers\' decisions applied, by verdict.');
  private readonly waited = new Counter('troupe_approval_wait_seconds', 'Time requests waited for a decision (sum and count).');
  private readonly limits = new Counter('troupe_limit_breaches_total', 'Limits reached, by agent, limit and action (stop, escalate).');
  private readonly flags = new Counter('troupe_flags_total', 'Semantic failures flagged (output schema, tool output, cost or steps anomaly), by agent and kind.');
  private readonly writes = new Counter('troupe_snapshot_write_seconds', 'Snapshot writes (compare-and-set) and their latency (sum and count).');

  constructor(private readonly gauges: { running: () => number; breakers: () => ReadonlyMap<string, { state: string }>; connection?: () => { disconnects: number; reconnects: number } }) {}

  /** Counts a task event this host published (an acknowledged one only if JetStream did not drop it as a duplicate). */
  observe(agent: string, e: TaskEvent): void {
    switch (e.type) {
      case 'accepted':
        this.tasks.inc({ agent, outcome: 'accepted', code: '' });
        break;
      case 'done':
        this.tasks.inc({ agent, outcome: 'done', code: '' });
        break;
      case 'failed':
        this.tasks.inc({ agent, outcome: 'failed', code: e.error.code });
        break;
      case 'model':
        if (e.replayed) break;
        this.steps.inc({ agent, model: e.model });
        this.usd.inc({ agent, model: e.model }, e.costUsd);
        for (const [kind, n] of [['input', e.usage.inputTokens], ['output', e.usage.outputTokens], ['cache_write', e.usage.cacheCreationInputTokens], ['cache_read', e.usage.cacheReadInputTokens]] as const) {
          this.tokens.inc({ agent, model: e.model, kind }, n);
        }
        break;
      case 'tool':
        if (e.replayed) break;
        this.tools.inc({ agent, tool: e.tool, status: e.status });
        if (e.gate) this.gates.inc({ agent, gate: e.gate });
        break;
      case 'escalated':
        this.escalations.inc({ agent });
        break;
      case 'decision':
        this.decisions.inc({ verdict: e.awaiting ? 'vote' : e.verdict });
        if (e.waitedMs !== undefined) {
          this.waited.inc({ stat: 'sum' }, e.waitedMs / 1000);
          this.waited.inc({ stat: 'count' });
        }
        break;
      case 'limit':
        this.limits.inc({ agent, limit: e.limit, action: e.action });
        break;
      case 'flag':
        this.flags.inc({ agent, kind: e.kind });
        break;
      default:
        break;
    }
  }

  /** Records one snapshot write's latency. */
  snapshotWritten(ms: number): void {
    this.writes.inc({ stat: 'sum' }, ms / 1000);
    this.writes.inc({ stat: 'count' });
  }

  /** Everything, in the Prometheus text exposition format (0.0.4). */
  render(): string {
    const nats = this.gauges.connection?.() ?? { disconnects: 0, reconnects: 0 };
    const breakers = [...this.gauges.breakers()].map(([name, b]) => `troupe_breaker_open{breaker="${escape(name)}",state="${b.state}"} ${b.state === 'closed' ? 0 : 1}`);
    return [
      ...this.tasks.render(),
      '# HELP troupe_tasks_running Tasks running on this host now.',
      '# TYPE troupe_tasks_running gauge',
      `troupe_tasks_running ${this.gauges.running()}`,
      ...this.steps.render(),
      ...this.tokens.render(),
      ...this.usd.render(),
      ...this.tools.render(),
      ...this.gates.render(),
      ...this.escalations.render(),
      ...this.decisions.render(),
      ...this.waited.render('summary'),
      ...this.limits.render(),
      ...this.flags.render(),
      ...this.writes.render('summary'),
      '# HELP troupe_nats_disconnects_total Times this host lost its NATS connection.',
      '# TYPE troupe_nats_disconnects_total counter',
      `troupe_nats_disconnects_total ${nats.disconnects}`,
      '# HELP troupe_nats_reconnects_total Times this host reconnected to NATS (the same server or another node).',
      '# TYPE troupe_nats_reconnects_total counter',
      `troupe_nats_reconnects_total ${nats.reconnects}`,
      '# HELP troupe_breaker_open Circuit breakers shared by all hosts: 1 while open or half-open.',
      '# TYPE troupe_breaker_open gauge',
      ...breakers,
      '',
    ].join('\n');
  }

  /** Serves `GET /metrics` on `host:port` (0: a free port); resolves with the URL. */
  async serve(port: number, host: string): Promise<{ url: string; server: Server }> {
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(this.render());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const address = server.address() as { port: number };
    return { url: `http://${host.includes(':') ? `[${host}]` : host}:${address.port}/metrics`, server };
  }
}
