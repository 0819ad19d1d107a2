import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JetStreamClient } from '@nats-io/jetstream';
import { Kvm, KvWatchInclude } from '@nats-io/kv';
import type { Logger } from 'pino';
import type { AnyStateMachine } from 'xstate';
import { TASK_ID_PATTERN } from '../../common/ids.ts';
import { JsonKv } from '../../runtime/json-kv.ts';
import { subjects as makeSubjects } from '../../runtime/subjects.ts';
import { taskHistory, watchTask } from '../../runtime/task-watch.ts';
import { snapshotEnvelopeSchema, type SnapshotEnvelope, type TaskEvent } from '../../runtime/wire.ts';
import { TASK_VIEW_CSS, TASK_VIEW_JS, renderTaskViewPage } from './task-view-page.ts';

/** What the task view needs of an agent: its name and the statechart it runs. `Agent` fits. */
export interface TaskViewAgent {
  readonly name: string;
  readonly machine: AnyStateMachine;
  /** The machine's version, compared with the one a task was started with. */
  readonly version?: string;
}

/** The `tasks` option of `startApproverServer`: what the read-only task view reads. */
export interface TaskViewOptions {
  /** The agents whose machines are drawn, by name or as a list. */
  agents: ReadonlyMap<string, TaskViewAgent> | readonly TaskViewAgent[];
  /** Read access to the snapshot bucket and the events stream (an approver or observer user is enough). */
  js: JetStreamClient;
  /** Subject prefix. @default 'troupe' */
  prefix?: string;
  /**
   * One line per event for the timeline (`formatEvent` of `cli/print-events.ts`); an event it
   * maps to `undefined` is left out. @default the event's type and its fields as JSON
   */
  formatEvent?: (e: TaskEvent) => string | undefined;
}

/** One state of a statechart, as drawn: nested boxes with their outgoing transitions. */
export interface StatechartNode {
  key: string;
  /** Dotted path from the machine's root (`review.waiting`); `''` for the root. */
  path: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** Key of the initial child state (compound states). */
  initial?: string;
  /** Sources of the actors the state invokes. */
  invokes: string[];
  transitions: StatechartTransition[];
  states: StatechartNode[];
}

/** One transition, labelled for people: `done: model [guarded] → acting`. */
export interface StatechartTransition {
  /** The event, with XState's internal names shortened (`done: model`, `error: tools`, `after 500`, `always`). */
  event: string;
  /** Dotted paths of the target states; empty for a transition that stays (actions only). */
  targets: string[];
  guard?: string;
}

/** A task as listed: the envelope without the machine snapshot, supervisor and conversation. */
export interface TaskSummary {
  taskId: string;
  agent: string;
  status: SnapshotEnvelope['status'];
  state: string;
  step: number;
  /** KV revision of the envelope: a summary with a lower one is older. */
  revision: number;
  createdAt: number;
  updatedAt: number;
  usage: NonNullable<SnapshotEnvelope['usage']> | null;
  pending: { requestId: string; kind: 'tool' | 'limit'; what: string; reason: string } | null;
  waiting: string | null;
  outcome: SnapshotEnvelope['outcome'] | null;
  /** The task that delegated this one, and the tasks this one delegated to (the tree, one level each way). */
  parent: string | null;
  children: Array<{ taskId: string; agent: string }>;
}

/** A route the approver server hands to the task view, and whether it needs a session. */
export interface TaskViewRoute {
  /** `page` and `asset` create a session like the approver page; `api` requires one. */
  kind: 'page' | 'asset' | 'api';
  serve(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

/** The read-only task view served next to the approver page; `close()` is idempotent. */
export interface TaskView {
  /** The route for a GET of `pathname`, or undefined if the task view does not serve it. */
  route(method: string | undefined, pathname: string): TaskViewRoute | undefined;
  close(): void;
}

const LIST_LIMIT = 500;

/**
 * Draws a machine's state tree from its definition (`machine.root`): every state with its type,
 * initial child, invoked actors and outgoing transitions, in document order.
 */
export function statechartOf(machine: AnyStateMachine): StatechartNode {
  type Node = AnyStateMachine['root'];
  const srcById = new Map<string, string>();
  const collect = (n: Node) => {
    for (const i of n.invoke) srcById.set(i.id, typeof i.src === 'string' ? i.src : 'actor');
    for (const c of Object.values(n.states)) collect(c);
  };
  collect(machine.root);
  const label = (event: string): string => {
    const m = /^xstate\.(done|error)\.actor\.(.+)$/.exec(event);
    if (m) return `${m[1]}: ${srcById.get(m[2]!) ?? m[2]}`;
    const after = /^xstate\.after\.([^.]+)\./.exec(event);
    if (after) return `after ${after[1]}${/^\d+$/.test(after[1]!) ? ' ms' : ''}`;
    if (event.startsWith('xstate.done.state.')) return 'done';
    return event;
  };
  const guardName = (guard: unknown): string | undefined => {
    if (guard === undefined || guard === null) return undefined;
    if (typeof guard === 'string') return guard;
    if (typeof guard === 'object' && typeof (guard as { type?: unknown }).type === 'string') return (guard as { type: string }).type;
    return 'guarded';
  };
  const transition = (event: string, t: { target?: readonly Node[] | undefined; guard?: unknown }): StatechartTransition => {
    const guard = guardName(t.guard);
    return { event, targets: (t.target ?? []).map((n) => n.path.join('.')), ...(guard ? { guard } : {}) };
  };
  const walk = (n: Node): StatechartNode => {
    const transitions: StatechartTransition[] = [];
    for (const t of n.always ?? []) transitions.push(transition('always', t));
    for (const [event, ts] of n.transitions) for (const t of ts) transitions.push(transition(label(event), t));
    const initial = n.type === 'compound' ? n.initial?.target?.[0]?.key : undefined;
    return {
      key: n.key,
      path: n.path.join('.'),
      type: n.type,
      ...(initial ? { initial } : {}),
      invokes: n.invoke.map((i) => (typeof i.src === 'string' ? i.src : 'actor')),
      transitions,
      states: Object.values(n.states).map(walk),
    };
  };
  return walk(machine.root);
}

/** What the list and the live streams show of an envelope. */
export function summarize(e: SnapshotEnvelope, revision: number): TaskSummary {
  const p = e.pending;
  return {
    taskId: e.taskId,
    agent: e.agent,
    status: e.status,
    state: e.state,
    step: e.step,
    revision,
    createdAt: e.createdAt,
    updatedAt: e.updatedAt,
    usage: e.usage ?? null,
    pending: p
      ? { requestId: p.requestId, kind: p.kind, what: p.kind === 'tool' ? `call ${p.tool.name}` : `more ${p.limit.name} (${p.limit.used} of ${p.limit.max} used)`, reason: p.reason }
      : null,
    waiting: e.waiting ? (e.waiting.reason === 'children' ? `child tasks: ${e.waiting.children.join(', ')}` : 'an inbox event') : null,
    outcome: e.outcome ?? null,
    parent: e.parent?.taskId ?? null,
    children: Object.entries(e.children ?? {}).map(([taskId, c]) => ({ taskId, agent: c.agent })),
  };
}

/**
 * Starts the task view's data side: one watch of the snapshot bucket feeds every open page.
 * Serves `/tasks` (every task, live), `/tasks/<taskId>` (its statechart with the current state
 * highlighted, and its timeline, live), `/api/tasks`, `/api/tasks/<taskId>`, and the event streams
 * `/api/stream/tasks` and `/api/stream/tasks/<taskId>`. Everything is GET and read-only.
 */
export async function startTaskView(options: TaskViewOptions & { logger?: Logger | undefined }): Promise<TaskView> {
  const { js, logger } = options;
  const s = makeSubjects(options.prefix ?? 'troupe');
  const format = options.formatEvent ?? defaultFormat;
  const agents = new Map<string, TaskViewAgent>(options.agents instanceof Map ? options.agents : (options.agents as readonly TaskViewAgent[]).map((a) => [a.name, a]));
  const charts = new Map<string, StatechartNode>();
  const chartOf = (agent: string): StatechartNode | null => {
    const a = agents.get(agent);
    if (!a) return null;
    let chart = charts.get(agent);
    if (!chart) charts.set(agent, (chart = statechartOf(a.machine)));
    return chart;
  };
  const store = new JsonKv(await new Kvm(js).open(s.buckets.snapshots), s.buckets.snapshots, snapshotEnvelopeSchema);

  const listStreams = new Set<ServerResponse>();
  const taskStreams = new Map<string, Set<ServerResponse>>();
  const aborts = new Set<AbortController>();
  const watcher = await store.kv.watch({ include: KvWatchInclude.UpdatesOnly });
  void (async () => {
    for await (const e of watcher) {
      const followers = taskStreams.get(e.key);
      if (listStreams.size === 0 && !followers) continue;
      let data: string;
      if (e.operation === 'PUT') {
        const parsed = snapshotEnvelopeSchema.safeParse(safeJson(e.string()));
        if (!parsed.success) continue;
        data = `event: task\ndata: ${JSON.stringify(summarize(parsed.data, e.revision))}\n\n`;
      } else {
        data = `event: removed\ndata: ${JSON.stringify({ taskId: e.key, revision: e.revision })}\n\n`;
      }
      for (const res of listStreams) res.write(data);
      for (const res of followers ?? []) res.write(data);
    }
  })().catch((err: unknown) => logger?.warn({ err }, 'task view stopped following the snapshot bucket'));
  const heartbeat = setInterval(() => {
    for (const res of [...listStreams, ...[...taskStreams.values()].flatMap((set) => [...set])]) res.write(': keep-alive\n\n');
  }, 15_000);
  heartbeat.unref();

  const list = async (): Promise<TaskSummary[]> => {
    const out: TaskSummary[] = [];
    for (const key of await store.keys()) {
      const found = await store.get(key).catch(() => undefined);
      if (found) out.push(summarize(found.value, found.revision));
    }
    return out.sort((a, b) => b.updatedAt - a.updatedAt).slice(0, LIST_LIMIT);
  };
  const timelineEntry = (e: TaskEvent) => {
    const line = format(e);
    if (line === undefined) return undefined;
    // State changes move the page's highlight: a state the task passes through without a snapshot
    // write of its own (a round of read-only tool calls) is still shown.
    return { type: e.type, at: e.at, line, ...(e.type === 'state' ? { state: e.state } : {}) };
  };

  const openStream = (req: IncomingMessage, res: ServerResponse, set: Set<ServerResponse>, onClose: () => void = () => {}) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' });
    res.write('retry: 2000\n\n');
    set.add(res);
    req.on('close', () => {
      set.delete(res);
      onClose();
    });
  };

  const streamTask = async (req: IncomingMessage, res: ServerResponse, taskId: string) => {
    let set = taskStreams.get(taskId);
    if (!set) taskStreams.set(taskId, (set = new Set()));
    const followers = set;
    const abort = new AbortController();
    aborts.add(abort);
    openStream(req, res, followers, () => {
      abort.abort();
      aborts.delete(abort);
      if (followers.size === 0 && taskStreams.get(taskId) === followers) taskStreams.delete(taskId);
    });
    // Updates that arrive meanwhile carry a higher revision; the page keeps the newest.
    const found = await store.get(taskId).catch(() => undefined);
    res.write(found ? `event: task\ndata: ${JSON.stringify(summarize(found.value, found.revision))}\n\n` : 'event: missing\ndata: {}\n\n');
    // Every (re)connection replays the timeline from the first event.
    res.write('event: reset\ndata: {}\n\n');
    void (async () => {
      for await (const e of watchTask(js, s, taskId, { signal: abort.signal })) {
        const entry = timelineEntry(e);
        if (entry) res.write(`event: timeline\ndata: ${JSON.stringify(entry)}\n\n`);
      }
    })().catch((err: unknown) => {
      if (!abort.signal.aborted) logger?.warn({ err, taskId }, 'task view stopped following a task');
    });
  };

  const detail = async (taskId: string) => {
    const found = await store.get(taskId).catch(() => undefined);
    if (!found) return undefined;
    const { snapshot: _raw, ...envelope } = found.value;
    const agent = agents.get(envelope.agent);
    const events = await taskHistory(js, s, taskId);
    return {
      envelope,
      revision: found.revision,
      summary: summarize(found.value, found.revision),
      statechart: chartOf(envelope.agent),
      ...(agent?.version !== undefined && envelope.machineVersion && agent.version !== envelope.machineVersion ? { versionNote: `drawn from version ${agent.version} of ${agent.name}; the task runs version ${envelope.machineVersion}` } : {}),
      events,
      timeline: events.map(timelineEntry).filter((x) => x !== undefined),
    };
  };

  const route = (method: string | undefined, pathname: string): TaskViewRoute | undefined => {
    if (method !== 'GET') return undefined;
    if (pathname === '/task-view.js') return { kind: 'asset', serve: async (_q, res) => send(res, 200, 'text/javascript; charset=utf-8', TASK_VIEW_JS) };
    if (pathname === '/task-view.css') return { kind: 'asset', serve: async (_q, res) => send(res, 200, 'text/css; charset=utf-8', TASK_VIEW_CSS) };
    if (pathname === '/tasks' || pathname === '/tasks/') return { kind: 'page', serve: async (_q, res) => send(res, 200, 'text/html; charset=utf-8', renderTaskViewPage({})) };
    if (pathname === '/api/tasks') return { kind: 'api', serve: async (_q, res) => json(res, 200, await list()) };
    if (pathname === '/api/stream/tasks') {
      return {
        kind: 'api',
        serve: async (req, res) => {
          openStream(req, res, listStreams);
          res.write(`event: tasks\ndata: ${JSON.stringify(await list())}\n\n`);
        },
      };
    }
    const m = /^\/(tasks|api\/tasks|api\/stream\/tasks)\/([^/]+)$/.exec(pathname);
    if (!m) return undefined;
    const [, where, taskId] = m as unknown as [string, string, string];
    if (!TASK_ID_PATTERN.test(taskId)) {
      return { kind: where === 'tasks' ? 'page' : 'api', serve: async (_q, res) => json(res, 404, { ok: false, error: { code: 'not_found', message: 'not a task id' } }) };
    }
    if (where === 'tasks') return { kind: 'page', serve: async (_q, res) => send(res, 200, 'text/html; charset=utf-8', renderTaskViewPage({ taskId })) };
    if (where === 'api/stream/tasks') return { kind: 'api', serve: (req, res) => streamTask(req, res, taskId) };
    return {
      kind: 'api',
      serve: async (_q, res) => {
        const found = await detail(taskId);
        if (found) json(res, 200, found);
        else json(res, 404, { ok: false, error: { code: 'not_found', message: `no task ${taskId}` } });
      },
    };
  };

  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    watcher.stop();
    clearInterval(heartbeat);
    for (const a of aborts) a.abort();
    aborts.clear();
    for (const res of listStreams) res.end();
    for (const set of taskStreams.values()) for (const res of set) res.end();
    listStreams.clear();
    taskStreams.clear();
  };
  return { route, close };
}

function defaultFormat(e: TaskEvent): string {
  const { type, taskId: _t, at: _a, ...rest } = e;
  const fields = JSON.stringify(rest);
  return fields === '{}' ? type : `${type} ${fields.length > 200 ? `${fields.slice(0, 197)}...` : fields}`;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'Content-Type': type }).end(body);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(body));
}
